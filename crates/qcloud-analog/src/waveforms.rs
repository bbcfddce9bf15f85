//! Pulser's waveforms (`pulser/waveforms.py`), bound to numbers: their 1 ns samples, the
//! `with_new_duration` rule used by clock-period rounding, and the `from_max_val` constructors.
//! Windows follow numpy (`np.blackman`, `np.kaiser`); interpolation is SciPy's PCHIP.

use crate::error::{AnalogError, Result};

/// A waveform with all parameters bound. Durations are in ns, values in rad/µs.
#[derive(Debug, Clone, PartialEq)]
pub enum Waveform {
    Constant { duration: usize, value: f64 },
    Ramp { duration: usize, start: f64, stop: f64 },
    Blackman { duration: usize, area: f64 },
    Kaiser { duration: usize, area: f64, beta: f64 },
    Interpolated { duration: usize, values: Vec<f64>, times: Vec<f64> },
    Composite(Vec<Waveform>),
    Custom(Vec<f64>),
}

/// Pulser's check on every waveform's duration (`Waveform.__init__`), plus our upper bound.
pub fn check_duration(d: i64, max: usize) -> Result<usize> {
    if d <= 0 {
        return Err(AnalogError::invalid(format!("A waveform must have a positive duration, not {d}.")));
    }
    if d as u64 > max as u64 {
        return Err(AnalogError::too_large(format!("a waveform of {d} ns is longer than the limit of {max} ns")));
    }
    Ok(d as usize)
}

impl Waveform {
    pub fn ramp(duration: usize, start: f64, stop: f64) -> Result<Self> {
        if duration < 2 && start != stop {
            // Pulser divides by duration - 1: the samples would be NaN.
            return Err(AnalogError::invalid("a ramp of 1 ns between different values has no defined slope"));
        }
        Ok(Waveform::Ramp { duration, start, stop })
    }

    pub fn kaiser(duration: usize, area: f64, beta: f64) -> Result<Self> {
        if beta < 0.0 {
            return Err(AnalogError::invalid(format!("The beta parameter (`beta` = {beta}) must be greater than 0.")));
        }
        if !bessel_i0(beta).is_finite() {
            return Err(AnalogError::invalid(format!("kaiser beta = {beta} is too large (I0(beta) overflows)")));
        }
        Ok(Waveform::Kaiser { duration, area, beta })
    }

    pub fn interpolated(duration: usize, values: Vec<f64>, times: Option<Vec<f64>>) -> Result<Self> {
        let times = match times {
            Some(t) => t,
            None if values.len() >= 2 => (0..values.len()).map(|i| i as f64 / (values.len() - 1) as f64).collect(),
            None => vec![0.0; values.len()],
        };
        if times.iter().any(|&t| t < 0.0) {
            return Err(AnalogError::invalid("All values in `times` must be greater than or equal to 0."));
        }
        if times.iter().any(|&t| t > 1.0) {
            return Err(AnalogError::invalid("All values in `times` must be less than or equal to 1."));
        }
        if times.len() != values.len() {
            return Err(AnalogError::invalid(format!(
                "When specified, the number of time coordinates in `times` ({}) must match the number of `values` ({}).",
                times.len(),
                values.len()
            )));
        }
        if values.len() < 2 {
            return Err(AnalogError::invalid("an interpolated waveform needs at least 2 points"));
        }
        let xs: Vec<f64> = times.iter().map(|t| t * (duration as f64 - 1.0)).collect();
        if xs.windows(2).any(|w| w[1] <= w[0]) {
            return Err(AnalogError::invalid(
                "interpolated waveform: `times` (scaled to the duration) must be a strictly increasing sequence",
            ));
        }
        Ok(Waveform::Interpolated { duration, values, times })
    }

    pub fn composite(parts: Vec<Waveform>, max: usize) -> Result<Self> {
        if parts.len() < 2 {
            return Err(AnalogError::invalid("Needs at least two waveforms to form a CompositeWaveform."));
        }
        let total: usize = parts.iter().map(Waveform::duration).sum();
        if total > max {
            return Err(AnalogError::too_large(format!(
                "a waveform of {total} ns is longer than the limit of {max} ns"
            )));
        }
        Ok(Waveform::Composite(parts))
    }

    pub fn duration(&self) -> usize {
        match self {
            Waveform::Constant { duration, .. }
            | Waveform::Ramp { duration, .. }
            | Waveform::Blackman { duration, .. }
            | Waveform::Kaiser { duration, .. }
            | Waveform::Interpolated { duration, .. } => *duration,
            Waveform::Composite(parts) => parts.iter().map(Waveform::duration).sum(),
            Waveform::Custom(s) => s.len(),
        }
    }

    /// One sample per ns.
    pub fn samples(&self) -> Vec<f64> {
        match self {
            Waveform::Constant { duration, value } => vec![*value; *duration],
            Waveform::Ramp { duration, start, stop } => {
                if *duration == 1 {
                    return vec![*start];
                }
                let slope = (stop - start) / (*duration as f64 - 1.0);
                let (lo, hi) = if start <= stop { (*start, *stop) } else { (*stop, *start) };
                (0..*duration).map(|k| (slope * k as f64 + start).clamp(lo, hi)).collect()
            }
            Waveform::Blackman { duration, area } => scaled_window(blackman(*duration), *area),
            Waveform::Kaiser { duration, area, beta } => scaled_window(kaiser(*duration, *beta), *area),
            Waveform::Interpolated { duration, values, times } => {
                let xs: Vec<f64> = times.iter().map(|t| t * (*duration as f64 - 1.0)).collect();
                let p = Pchip::new(&xs, values);
                let lo = values.iter().cloned().fold(f64::INFINITY, f64::min);
                let hi = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                (0..*duration).map(|k| p.eval(k as f64).clamp(lo, hi)).collect()
            }
            Waveform::Composite(parts) => parts.iter().flat_map(Waveform::samples).collect(),
            Waveform::Custom(s) => s.clone(),
        }
    }

    /// Pulser's `with_new_duration`: area kept for windows, end points for ramps, the same
    /// interpolation points for interpolated waveforms. Composite and custom waveforms refuse.
    pub fn with_new_duration(&self, d: usize, clock_period: usize) -> Result<Waveform> {
        Ok(match self {
            Waveform::Constant { value, .. } => Waveform::Constant { duration: d, value: *value },
            Waveform::Ramp { start, stop, .. } => Waveform::ramp(d, *start, *stop)?,
            Waveform::Blackman { area, .. } => Waveform::Blackman { duration: d, area: *area },
            Waveform::Kaiser { area, beta, .. } => Waveform::Kaiser { duration: d, area: *area, beta: *beta },
            Waveform::Interpolated { values, times, .. } => {
                Waveform::interpolated(d, values.clone(), Some(times.clone()))?
            }
            Waveform::Composite(_) | Waveform::Custom(_) => {
                return Err(AnalogError::invalid(format!(
                    "Failed to automatically adjust one of the pulse's waveforms to the channel duration \
                     constraints. Choose a duration that is a multiple of {clock_period} ns."
                )))
            }
        })
    }

    /// `ConstantWaveform` with value 0 (used to spot Pulser's "detuned delays").
    pub fn is_constant(&self) -> Option<f64> {
        match self {
            Waveform::Constant { value, .. } => Some(*value),
            _ => None,
        }
    }
}

fn scaled_window(w: Vec<f64>, area: f64) -> Vec<f64> {
    let sum: f64 = w.iter().sum();
    let scaling = area / sum * 1e3;
    w.into_iter().map(|x| x * scaling).collect()
}

/// `np.clip(np.blackman(m), 0, inf)` (numpy's symmetric form `0.42 + 0.5cos(πn/(M-1)) + 0.08cos(2πn/(M-1))`,
/// n = 1-M, 3-M, ..., M-1).
pub fn blackman(m: usize) -> Vec<f64> {
    if m == 1 {
        return vec![1.0];
    }
    let d = (m - 1) as f64;
    (0..m)
        .map(|k| {
            let n = (2 * k) as f64 - d;
            (0.42 + 0.5 * (std::f64::consts::PI * n / d).cos() + 0.08 * (2.0 * std::f64::consts::PI * n / d).cos())
                .max(0.0)
        })
        .collect()
}

/// `np.clip(np.kaiser(m, beta), 0, inf)`.
pub fn kaiser(m: usize, beta: f64) -> Vec<f64> {
    if m == 1 {
        return vec![1.0];
    }
    let alpha = (m - 1) as f64 / 2.0;
    let norm = bessel_i0(beta);
    (0..m)
        .map(|n| {
            let r = (n as f64 - alpha) / alpha;
            (bessel_i0(beta * (1.0 - r * r).max(0.0).sqrt()) / norm).max(0.0)
        })
        .collect()
}

/// The modified Bessel function I0 by its power series Σ ((x/2)^k / k!)^2 (all terms positive, so
/// the sum is accurate to a few ulps; numpy uses a Chebyshev fit of the same function).
pub fn bessel_i0(x: f64) -> f64 {
    let q = x * x / 4.0;
    let mut term = 1.0;
    let mut sum = 1.0;
    let mut k = 1.0;
    while k < 2000.0 {
        term *= q / (k * k);
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
        k += 1.0;
    }
    sum
}

/// `BlackmanWaveform.from_max_val`: the shortest duration whose peak stays at or below `max_val`.
pub fn blackman_from_max_val(max_val: f64, area: f64, max_duration: usize) -> Result<Waveform> {
    if area == 0.0 || max_val == 0.0 {
        return Err(AnalogError::invalid("blackman_max: the area and max_val must be non-zero"));
    }
    if max_val.signum() != area.signum() {
        return Err(AnalogError::invalid("The maximum value and the area must have matching signs."));
    }
    let sign = area.signum();
    let (a, mv) = (area * sign, max_val * sign);
    let guess = (a / (0.42 * mv) * 1e3).ceil();
    if !(guess >= 1.0 && guess <= max_duration as f64) {
        return Err(AnalogError::too_large(format!(
            "blackman_max: the waveform would last {guess} ns, beyond the limit of {max_duration} ns"
        )));
    }
    let mut duration = guess as usize;
    let scaling = |d: usize| a / blackman(d).iter().sum::<f64>() * 1e3;
    let peak = |d: usize| Waveform::Blackman { duration: d, area: a }.samples().into_iter().fold(f64::MIN, f64::max);
    let mut previous = None;
    // A handful of steps in practice; bounded because each costs O(duration).
    let mut budget = 1000;
    while scaling(duration) > mv {
        budget -= 1;
        if duration >= max_duration || budget == 0 {
            return Err(AnalogError::too_large(
                "blackman_max: no duration within the limit keeps the peak below max_val",
            ));
        }
        previous = Some(duration);
        duration += 1;
    }
    // numpy.blackman reaches 1 only for odd sizes: the previous even duration may come closer.
    if let Some(p) = previous {
        let now = peak(duration);
        let before = peak(p);
        if duration % 2 == 1 && now < before && before <= mv {
            duration = p;
        }
    }
    Ok(Waveform::Blackman { duration, area })
}

/// `KaiserWaveform.from_max_val`.
pub fn kaiser_from_max_val(max_val: f64, area: f64, beta: f64, max_duration: usize) -> Result<Waveform> {
    if area == 0.0 || max_val == 0.0 {
        return Err(AnalogError::invalid("kaiser_max: the area and max_val must be non-zero"));
    }
    if max_val.signum() != area.signum() {
        return Err(AnalogError::invalid("The maximum value and the area must have matching signs."));
    }
    Waveform::kaiser(1, area, beta)?;
    let (a, mv) = (area.abs(), max_val.abs());
    let peak_of = |d: usize| {
        let k = kaiser(d, beta);
        let scaling = 1000.0 * a / k.iter().sum::<f64>();
        k.iter().cloned().fold(f64::MIN, f64::max) * scaling
    };
    let ratio = mv * kaiser(100, beta).iter().sum::<f64>() / 100.0;
    let guess_f = a * 1000.0 / ratio;
    if !(guess_f.is_finite() && guess_f <= max_duration as f64) {
        return Err(AnalogError::too_large(format!(
            "kaiser_max: the waveform would last about {guess_f} ns, beyond the limit of {max_duration} ns"
        )));
    }
    let guess = guess_f as usize;
    let best = if guess < 11 {
        let mut best_val = 0.0;
        let mut best = 0;
        for d in 1..16 {
            let v = peak_of(d);
            if best_val < v && v <= mv {
                best_val = v;
                best = d;
            }
        }
        best
    } else {
        let mut v = peak_of(guess);
        let step: i64 = if v >= mv { 1 } else { -1 };
        let mut d = guess as i64;
        let mut budget = 1000;
        while sign(v - mv) == step {
            d += step;
            budget -= 1;
            if d < 1 || d as usize > max_duration || budget == 0 {
                return Err(AnalogError::too_large("kaiser_max: no duration within the limit fits max_val"));
            }
            v = peak_of(d as usize);
        }
        if step == 1 {
            d as usize
        } else {
            (d + 1) as usize
        }
    };
    let duration = check_duration(best as i64, max_duration)?;
    Waveform::kaiser(duration, area, beta)
}

fn sign(x: f64) -> i64 {
    if x > 0.0 {
        1
    } else if x < 0.0 {
        -1
    } else {
        0
    }
}

/// SciPy's `PchipInterpolator` (with extrapolation), coefficients as in `CubicHermiteSpline`.
pub struct Pchip {
    x: Vec<f64>,
    c: Vec<[f64; 4]>,
}

impl Pchip {
    /// `x` strictly increasing, at least 2 points (checked by the caller).
    pub fn new(x: &[f64], y: &[f64]) -> Self {
        let n = x.len();
        let h: Vec<f64> = x.windows(2).map(|w| w[1] - w[0]).collect();
        let m: Vec<f64> = (0..n - 1).map(|k| (y[k + 1] - y[k]) / h[k]).collect();
        let mut d = vec![0.0; n];
        if n == 2 {
            d[0] = m[0];
            d[1] = m[0];
        } else {
            for k in 1..n - 1 {
                let (m0, m1) = (m[k - 1], m[k]);
                if m0.signum() != m1.signum() || m0 == 0.0 || m1 == 0.0 {
                    d[k] = 0.0;
                } else {
                    let w1 = 2.0 * h[k] + h[k - 1];
                    let w2 = h[k] + 2.0 * h[k - 1];
                    let whmean = (w1 / m0 + w2 / m1) / (w1 + w2);
                    d[k] = 1.0 / whmean;
                }
            }
            d[0] = edge(h[0], h[1], m[0], m[1]);
            d[n - 1] = edge(h[n - 2], h[n - 3], m[n - 2], m[n - 3]);
        }
        let c = (0..n - 1)
            .map(|k| {
                let t = (d[k] + d[k + 1] - 2.0 * m[k]) / h[k];
                [t / h[k], (m[k] - d[k]) / h[k] - t, d[k], y[k]]
            })
            .collect();
        Pchip { x: x.to_vec(), c }
    }

    pub fn eval(&self, xv: f64) -> f64 {
        // PPoly: the interval i with x[i] <= xv < x[i+1]; the end intervals extrapolate.
        let last = self.c.len() - 1;
        let i = match self.x.partition_point(|&b| b <= xv) {
            0 => 0,
            p => (p - 1).min(last),
        };
        let s = xv - self.x[i];
        let c = &self.c[i];
        ((c[0] * s + c[1]) * s + c[2]) * s + c[3]
    }
}

/// SciPy's one-sided three-point end slope, shape-preserving.
fn edge(h0: f64, h1: f64, m0: f64, m1: f64) -> f64 {
    let d = ((2.0 * h0 + h1) * m0 - h0 * m1) / (h0 + h1);
    let sgn = |v: f64| {
        if v > 0.0 {
            1
        } else if v < 0.0 {
            -1
        } else {
            0
        }
    };
    if sgn(d) != sgn(m0) {
        0.0
    } else if sgn(m0) != sgn(m1) && d.abs() > 3.0 * m0.abs() {
        3.0 * m0
    } else {
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramp_and_constant() {
        let r = Waveform::ramp(5, 0.0, 2.0).unwrap().samples();
        assert_eq!(r, vec![0.0, 0.5, 1.0, 1.5, 2.0]);
        assert_eq!(Waveform::Constant { duration: 3, value: 1.5 }.samples(), vec![1.5; 3]);
        // with_new_duration keeps the end points.
        let r8 = Waveform::ramp(5, 0.0, 2.0).unwrap().with_new_duration(8, 4).unwrap().samples();
        assert_eq!(r8.len(), 8);
        assert_eq!(r8[0], 0.0);
        assert!((r8[7] - 2.0).abs() < 1e-15);
    }

    #[test]
    fn blackman_samples_match_the_formula() {
        // np.blackman(5) = [0, 0.34, 1, 0.34, 0] (0.42 - 0.5cos(πk/2) + 0.08cos(πk)): sum 1.68,
        // so area 1 (rad/µs·µs) gives samples w * 1000 / 1.68.
        let s = Waveform::Blackman { duration: 5, area: 1.0 }.samples();
        let expect = [0.0, 0.34, 1.0, 0.34, 0.0].map(|w| w * 1000.0 / 1.68);
        for (a, b) in s.iter().zip(expect) {
            assert!((a - b).abs() < 1e-9, "{s:?}");
        }
        // The area is kept (sum of samples * 1 ns = area * 1e3) whatever the duration.
        let s = Waveform::Blackman { duration: 401, area: 1.6 }.samples();
        assert!((s.iter().sum::<f64>() - 1600.0).abs() < 1e-9);
    }

    #[test]
    fn blackman_from_max_val_respects_the_peak() {
        // area π, max 2π rad/µs: guess ceil(π/(0.42·2π)·1e3) = 1191 ns; the peak may not exceed max_val.
        let w = blackman_from_max_val(2.0 * std::f64::consts::PI, std::f64::consts::PI, 100_000).unwrap();
        let peak = w.samples().into_iter().fold(0.0, f64::max);
        assert!(peak <= 2.0 * std::f64::consts::PI);
        assert!(w.duration() >= 1191 && w.duration() < 1200, "{}", w.duration());
        let w2 = blackman_from_max_val(-2.0, -1.0, 100_000).unwrap();
        assert!(w2.samples().iter().all(|&x| x <= 0.0));
    }

    #[test]
    fn kaiser_window_and_i0() {
        // I0(0) = 1, I0(1) = 1.2660658777520082 (A&S table 9.8).
        assert_eq!(bessel_i0(0.0), 1.0);
        assert!((bessel_i0(1.0) - 1.266_065_877_752_008_2).abs() < 1e-15);
        // np.kaiser(3, 14) = [1/I0(14), 1, 1/I0(14)]; I0(14) = Σ 49^k/(k!)² = 129418.56270064856
        // (summed exactly in Python with math.factorial).
        let k = kaiser(3, 14.0);
        assert!((k[0] * 129_418.562_700_648_56 - 1.0).abs() < 1e-14, "{k:?}");
        assert_eq!(k[1], 1.0);
        let w = kaiser_from_max_val(3.0, 1.0, 14.0, 100_000).unwrap();
        assert!(w.samples().into_iter().fold(0.0, f64::max) <= 3.0);
    }

    #[test]
    fn pchip_matches_scipy() {
        // scipy.interpolate.PchipInterpolator([0,1,2,3],[0,1,0,1]): slopes are 0 at the interior
        // extrema, end slope ((2+1)*1 - 1*(-1))/2 = 2 → sign change with m1 and |2| <= 3: kept.
        // On [0,1] the Hermite cubic with y0=0, y1=1, d0=2, d1=0 is 2(s³-2s²+s) + (-2s³+3s²) = 2s - s²:
        // 0.75 at s = 0.5.
        let p = Pchip::new(&[0.0, 1.0, 2.0, 3.0], &[0.0, 1.0, 0.0, 1.0]);
        assert!((p.eval(0.5) - 0.75).abs() < 1e-15, "{}", p.eval(0.5));
        assert_eq!(p.eval(1.0), 1.0);
        // Middle interval: y0=1,y1=0,d=0,0: smoothstep 1 - 3s² + 2s³ at 0.5 = 0.5.
        assert!((p.eval(1.5) - 0.5).abs() < 1e-15);
        // Non-uniform: x=[0,1,3], y=[0,2,3]: m=[2,0.5], h=[1,2]; interior d1 = (w1+w2)/(w1/m0+w2/m1)
        // with w1 = 2*2+1 = 5, w2 = 2+2 = 4 → 9/(2.5+8) = 0.857142857...
        let p = Pchip::new(&[0.0, 1.0, 3.0], &[0.0, 2.0, 3.0]);
        let d1 = 9.0 / 10.5;
        let eps = 1e-7;
        let num = (p.eval(1.0 + eps) - p.eval(1.0 - eps)) / (2.0 * eps);
        assert!((num - d1).abs() < 1e-6, "{num} vs {d1}");
        // Two points: a straight line.
        let p = Pchip::new(&[0.0, 4.0], &[1.0, 3.0]);
        assert!((p.eval(1.0) - 1.5).abs() < 1e-15);
    }

    #[test]
    fn interpolated_clips_to_the_value_range() {
        let w = Waveform::interpolated(2000, vec![1e-9, 6.0, 6.0, 1e-9], None).unwrap();
        let s = w.samples();
        assert_eq!(s.len(), 2000);
        assert!(s.iter().all(|&x| (1e-9..=6.0).contains(&x)));
        assert!((s[0] - 1e-9).abs() < 1e-15 && (s[1999] - 1e-9).abs() < 1e-12);
        assert!(Waveform::interpolated(10, vec![0.0, 1.0], Some(vec![0.5, 0.2])).is_err());
    }
}
