//! Output modulation, only as far as scheduling needs it: Pulser inserts fall times (the time a
//! pulse takes to ramp down after modulation) into phase-jump buffers, `align`, `wait-for-all` and
//! retargeting. The modulated samples follow `Channel.modulate` / `apply_modulation` exactly: pad
//! by the rise time, multiply the FFT by `exp(-f²/fc²)`, take the real part of the inverse FFT.
//! The FFT is Bluestein's over a radix-2 transform, so any length works.

use crate::device::Channel;
use num_complex::Complex64;

/// `Waveform.modulation_buffers(channel)[1]`: the end buffer, the first index of the trailing
/// `rise_time` samples where the modulated output is within 1e-2 of the (zero) padded input.
pub fn end_buffer(samples: &[f64], ch: &Channel) -> usize {
    let Some(bw) = ch.mod_bandwidth.filter(|b| *b > 0.0) else {
        return 0;
    };
    let tr = ch.rise_time();
    if tr == 0 {
        return 0;
    }
    let n = samples.len() + 2 * tr;
    let mut x = vec![Complex64::new(0.0, 0.0); n];
    for (i, s) in samples.iter().enumerate() {
        x[tr + i] = Complex64::new(*s, 0.0);
    }
    let fc = bw * 1e-3 / (2.0 * std::f64::consts::LN_2).sqrt();
    let mut spec = dft(&x, false);
    for (k, v) in spec.iter_mut().enumerate() {
        let f = fftfreq(k, n);
        *v *= (-(f * f) / (fc * fc)).exp();
    }
    let out = dft(&spec, true);
    for k in 0..tr {
        let j = n - tr + k;
        if out[j].re.abs() <= 1e-2 {
            return k;
        }
    }
    tr
}

/// `numpy.fft.fftfreq(n)[k]`.
fn fftfreq(k: usize, n: usize) -> f64 {
    let half = n.div_ceil(2);
    if k < half {
        k as f64 / n as f64
    } else {
        (k as f64 - n as f64) / n as f64
    }
}

/// The DFT (`inverse`: numpy's `ifft`, scaled by 1/n) of any length, by Bluestein's algorithm.
pub fn dft(x: &[Complex64], inverse: bool) -> Vec<Complex64> {
    let n = x.len();
    if n == 0 {
        return Vec::new();
    }
    let sign = if inverse { 1.0 } else { -1.0 };
    // Chirp w_k = exp(sign·iπ k²/n), with k² reduced mod 2n to keep the angle exact.
    let w: Vec<Complex64> = (0..n)
        .map(|k| {
            let k2 = ((k as u128 * k as u128) % (2 * n as u128)) as f64;
            Complex64::from_polar(1.0, sign * std::f64::consts::PI * k2 / n as f64)
        })
        .collect();
    let m = (2 * n - 1).next_power_of_two();
    let mut a = vec![Complex64::new(0.0, 0.0); m];
    for k in 0..n {
        a[k] = x[k] * w[k];
    }
    let mut b = vec![Complex64::new(0.0, 0.0); m];
    b[0] = w[0].conj();
    for k in 1..n {
        b[k] = w[k].conj();
        b[m - k] = w[k].conj();
    }
    fft_pow2(&mut a, false);
    fft_pow2(&mut b, false);
    for (p, q) in a.iter_mut().zip(&b) {
        *p *= q;
    }
    fft_pow2(&mut a, true);
    let scale = if inverse { 1.0 / n as f64 } else { 1.0 };
    (0..n).map(|k| a[k] * w[k] * scale).collect()
}

/// In-place iterative radix-2 FFT (the inverse is unscaled but divided by the length here, so a
/// forward-inverse pair is the identity).
fn fft_pow2(a: &mut [Complex64], inverse: bool) {
    let n = a.len();
    let mut j = 0;
    for i in 1..n {
        let mut bit = n >> 1;
        while j & bit != 0 {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
        if i < j {
            a.swap(i, j);
        }
    }
    // Twiddles of the largest stage; stage `len` uses every (n/len)-th.
    let sign = if inverse { 2.0 } else { -2.0 };
    let tw: Vec<Complex64> =
        (0..n / 2).map(|k| Complex64::from_polar(1.0, sign * std::f64::consts::PI * k as f64 / n as f64)).collect();
    let mut len = 2;
    while len <= n {
        let step = n / len;
        for start in (0..n).step_by(len) {
            for k in 0..len / 2 {
                let w = tw[k * step];
                let u = a[start + k];
                let v = a[start + k + len / 2] * w;
                a[start + k] = u + v;
                a[start + k + len / 2] = u - v;
            }
        }
        len <<= 1;
    }
    if inverse {
        let s = 1.0 / n as f64;
        for v in a.iter_mut() {
            *v *= s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dft_matches_the_definition() {
        let x: Vec<Complex64> = (0..7).map(|i| Complex64::new(i as f64, (i * i) as f64 * 0.1)).collect();
        let f = dft(&x, false);
        for (k, fk) in f.iter().enumerate() {
            let mut s = Complex64::new(0.0, 0.0);
            for (j, xj) in x.iter().enumerate() {
                s += xj * Complex64::from_polar(1.0, -2.0 * std::f64::consts::PI * (j * k) as f64 / 7.0);
            }
            assert!((s - fk).norm() < 1e-12);
        }
        let back = dft(&f, true);
        for (a, b) in back.iter().zip(&x) {
            assert!((a - b).norm() < 1e-12);
        }
    }
}
