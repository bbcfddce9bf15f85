//! Outputs of a run: seeded shots, exact probabilities and occupations. Bitstring character k is
//! atom k in register order (basis bit k), `'1'` = Rydberg; leading zeros are kept.

use num_complex::Complex64;
use rand::Rng;
use serde_json::{Map, Value};

/// Probabilities below this are left out of the `probabilities` output.
pub const MIN_PROBABILITY: f64 = 1e-15;

pub fn bitstring(s: usize, n: usize) -> String {
    (0..n).map(|k| if s >> k & 1 == 1 { '1' } else { '0' }).collect()
}

/// `runs` shots from |ψ|²: sorted uniforms swept once against the cumulative sum, so no extra
/// array of the state's size is needed. The norm (1 up to the integrator's error) is the scale.
pub fn counts(state: &[Complex64], n: usize, runs: u64, rng: &mut impl Rng) -> Map<String, Value> {
    let total: f64 = state.iter().map(|a| a.norm_sqr()).sum();
    let mut u: Vec<f64> = (0..runs).map(|_| rng.gen::<f64>() * total).collect();
    u.sort_by(f64::total_cmp);
    let mut out = Map::new();
    let mut acc = 0.0;
    let mut idx = 0usize;
    let last_nonzero = state.iter().rposition(|a| a.norm_sqr() > 0.0).unwrap_or(0);
    for (s, a) in state.iter().enumerate() {
        acc += a.norm_sqr();
        let start = idx;
        while idx < u.len() && (u[idx] < acc || s == last_nonzero) {
            idx += 1;
        }
        if idx > start {
            out.insert(bitstring(s, n), Value::from((idx - start) as u64));
        }
        if idx == u.len() {
            break;
        }
    }
    out
}

pub fn probabilities(state: &[Complex64], n: usize) -> Map<String, Value> {
    state
        .iter()
        .enumerate()
        .filter(|(_, a)| a.norm_sqr() >= MIN_PROBABILITY)
        .map(|(s, a)| (bitstring(s, n), Value::from(a.norm_sqr())))
        .collect()
}

/// ⟨n_i⟩ for every atom.
pub fn occupation(state: &[Complex64], n: usize) -> Vec<f64> {
    let mut occ = vec![0.0; n];
    for (s, a) in state.iter().enumerate() {
        let p = a.norm_sqr();
        let mut r = s;
        while r != 0 {
            occ[r.trailing_zeros() as usize] += p;
            r &= r - 1;
        }
    }
    occ
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn bit_order_and_counts() {
        assert_eq!(bitstring(0b001, 3), "100");
        assert_eq!(bitstring(0b110, 3), "011");
        // |ψ|² = 0.25 on "00", 0.75 on "01" (atom 1 excited).
        let st = [
            Complex64::new(0.5, 0.0),
            Complex64::new(0.0, 0.0),
            Complex64::new(0.0, 0.75f64.sqrt()),
            Complex64::new(0.0, 0.0),
        ];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let c = counts(&st, 2, 4000, &mut rng);
        let n00 = c["00"].as_u64().unwrap();
        let n01 = c["01"].as_u64().unwrap();
        assert_eq!(n00 + n01, 4000);
        assert!((n01 as f64 / 4000.0 - 0.75).abs() < 0.03, "{c:?}");
        let occ = occupation(&st, 2);
        assert!(occ[0] == 0.0 && (occ[1] - 0.75).abs() < 1e-15, "{occ:?}");
        assert_eq!(probabilities(&st, 2).len(), 2);
    }
}
