//! The integrator: per 1 ns sample (H piecewise constant, Pulser's model) `m` symmetric Strang
//! steps `e^{-iDh/2} e^{-iXh} e^{-iDh/2}` with `h = 1 ns / m`. The diagonal part D (interaction
//! and detuning) is applied exactly; the drive X is a product of commuting one-atom 2×2
//! rotations, also exact. Adjacent half steps of D merge, so a Strang step costs one pass for the
//! drive and the diagonal together (atoms of the low `CHUNK_BITS` bits are done chunk by chunk in
//! cache) plus one pass per higher atom. The only error is the splitting's, O(h³[D,[D,X]]) per
//! step; `m` is chosen from that bound so the estimated state error stays below the tolerance
//! (measured against dense matrix exponentials in the tests).

use super::Model;
use crate::error::{AnalogError, Result};
use num_complex::Complex64;
use rayon::prelude::*;

/// Low atoms processed inside one cache-resident chunk of 2^CHUNK_BITS amplitudes (16 KiB of
/// real and imaginary parts: L1).
const CHUNK_BITS: usize = 10;
/// Most Strang steps per ns.
pub const MAX_SUBSTEPS: usize = 64;
const DT_US: f64 = 1e-3;

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Bound on the estimated 2-norm error of the final state. Measured errors are 0.2–0.5 of the
    /// estimate, and the total-variation distance of the probabilities 20–50 times smaller again
    /// (`substep_error_by_size`, `benchmark_sequence_error_at_the_default_tolerance`).
    pub tolerance: f64,
    /// Fixed number of Strang steps per ns (tests); `None` chooses from the tolerance.
    pub substeps: Option<usize>,
    /// Atoms from which passes run on rayon. Two syncs per Strang step cost more than the second
    /// core gives below 15 atoms on the shared 2-core VM (benchmark run at load ~2.5: 12 atoms
    /// 145 ms parallel vs 30 ms serial, 14 atoms 170-215 vs 142 ms; 16 atoms 0.58 s vs 1.04 s).
    pub parallel_from: usize,
    /// Low atoms done chunk by chunk (at least 2; the others take one pass each).
    pub chunk_bits: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { tolerance: 1e-3, substeps: None, parallel_from: 15, chunk_bits: CHUNK_BITS }
    }
}

/// Bytes the engine allocates for n atoms at its peak: the state (16 · 2^n), the interaction
/// phase table (16 · 2^n) and the interaction energies (8 · 2^n).
pub fn bytes_needed(n: usize) -> u64 {
    1u64.checked_shl(n as u32).and_then(|d| d.checked_mul(40)).unwrap_or(u64::MAX)
}

pub struct Evolution {
    pub state: Vec<Complex64>,
    pub substeps: usize,
    /// The a-priori error estimate for the chosen substeps.
    pub error_estimate: f64,
}

/// The real part of a one-atom propagator: `exp(-iθσx)` = [[c, -is], [-is, c]], θ = |A| h / 2.
/// The drive's phase α is moved into the diagonal passes (`e^{-iXh} = P R P†`, P = diag(1, e^{iα})).
#[derive(Clone, Copy)]
struct Rot {
    c: f64,
    s: f64,
}

/// Per-atom diagonal phases `Π_{i∈s} e^{iθ_i}` from two half tables (the low one as separate
/// real and imaginary parts, which the vectorized diagonal pass reads).
struct PhaseTables {
    nlo: usize,
    lo: Vec<Complex64>,
    lo_re: Vec<f64>,
    lo_im: Vec<f64>,
    hi: Vec<Complex64>,
}

impl PhaseTables {
    fn new(n: usize) -> Self {
        let nlo = n / 2;
        let one = Complex64::new(1.0, 0.0);
        PhaseTables {
            nlo,
            lo: vec![one; 1 << nlo],
            lo_re: vec![1.0; 1 << nlo],
            lo_im: vec![0.0; 1 << nlo],
            hi: vec![one; 1 << (n - nlo)],
        }
    }

    fn fill(&mut self, angles: &[f64]) {
        let nlo = self.nlo;
        let fill = |t: &mut [Complex64], a: &[f64]| {
            t[0] = Complex64::new(1.0, 0.0);
            let mut prev: Option<(f64, Complex64)> = None;
            for (b, x) in a.iter().enumerate() {
                let w = match prev {
                    Some((px, pw)) if px == *x => pw,
                    _ => Complex64::from_polar(1.0, *x),
                };
                prev = Some((*x, w));
                let half = 1 << b;
                for s in 0..half {
                    t[half + s] = t[s] * w;
                }
            }
        };
        fill(&mut self.lo, &angles[..nlo]);
        fill(&mut self.hi, &angles[nlo..]);
        for ((r, i), z) in self.lo_re.iter_mut().zip(self.lo_im.iter_mut()).zip(&self.lo) {
            *r = z.re;
            *i = z.im;
        }
    }

    #[inline]
    fn get(&self, s: usize) -> Complex64 {
        self.lo[s & ((1 << self.nlo) - 1)] * self.hi[s >> self.nlo]
    }
}

enum Interaction<'a> {
    /// `exp(-i h E[s])` precomputed, as (re, im).
    Table(&'a [f64], &'a [f64]),
    /// `exp(-i h E[s])` computed on the fly (the two half steps at the ends).
    Energies(&'a [f64], f64),
}

/// Pairs (g, r) of atom `k` inside a block: g' = c g − i s r, r' = −i s g + c r.
#[inline(always)]
fn rotate<const FMA: bool>(re: &mut [f64], im: &mut [f64], stride: usize, r: Rot) {
    let (c, s) = (r.c, r.s);
    for (br, bi) in re.chunks_exact_mut(2 * stride).zip(im.chunks_exact_mut(2 * stride)) {
        let (gr, er) = br.split_at_mut(stride);
        let (gi, ei) = bi.split_at_mut(stride);
        rotate_halves_body::<FMA>(gr, gi, er, ei, c, s);
    }
}

/// Atoms 0 and 1 together on groups of 4 amplitudes (strides 1 and 2 are too short for the
/// generic loop to run well).
#[inline(always)]
fn rotate01(re: &mut [f64], im: &mut [f64], r0: Option<Rot>, r1: Option<Rot>) {
    let one = Rot { c: 1.0, s: 0.0 };
    let (a, b) = (r0.unwrap_or(one), r1.unwrap_or(one));
    if r0.is_none() && r1.is_none() {
        return;
    }
    for (r, i) in re.chunks_exact_mut(4).zip(im.chunks_exact_mut(4)) {
        let mut x = [r[0], r[1], r[2], r[3]];
        let mut y = [i[0], i[1], i[2], i[3]];
        // Atom 0: pairs (0,1), (2,3).
        for (g, e) in [(0, 1), (2, 3)] {
            let (gr, gi, er, ei) = (x[g], y[g], x[e], y[e]);
            x[g] = a.c * gr + a.s * ei;
            y[g] = a.c * gi - a.s * er;
            x[e] = a.c * er + a.s * gi;
            y[e] = a.c * ei - a.s * gr;
        }
        // Atom 1: pairs (0,2), (1,3).
        for (g, e) in [(0, 2), (1, 3)] {
            let (gr, gi, er, ei) = (x[g], y[g], x[e], y[e]);
            x[g] = b.c * gr + b.s * ei;
            y[g] = b.c * gi - b.s * er;
            x[e] = b.c * er + b.s * gi;
            y[e] = b.c * ei - b.s * gr;
        }
        r.copy_from_slice(&x);
        i.copy_from_slice(&y);
    }
}

/// Whether the CPU runs the AVX2+FMA kernels. The release build targets baseline x86-64 (SSE2,
/// two doubles a vector); the same loops compiled for AVX2 with fused multiply-adds run four wide
/// (the benchmark's run at 10 atoms: 14 ms -> 6 ms). Detected once, then a cached load.
#[cfg(target_arch = "x86_64")]
#[inline]
fn fast_simd() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

/// `a * b + c`, fused when `FMA` (the AVX2 path; elsewhere `mul_add` would be a libm call).
#[inline(always)]
fn madd<const FMA: bool>(a: f64, b: f64, c: f64) -> f64 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

#[inline(always)]
fn rotate_halves_body<const FMA: bool>(gr: &mut [f64], gi: &mut [f64], er: &mut [f64], ei: &mut [f64], c: f64, s: f64) {
    let n = gr.len().min(gi.len()).min(er.len()).min(ei.len());
    let (gr, gi, er, ei) = (&mut gr[..n], &mut gi[..n], &mut er[..n], &mut ei[..n]);
    for j in 0..n {
        let (ar, ai, xr, xi) = (gr[j], gi[j], er[j], ei[j]);
        gr[j] = madd::<FMA>(c, ar, s * xi);
        gi[j] = madd::<FMA>(c, ai, -(s * xr));
        er[j] = madd::<FMA>(c, xr, s * ai);
        ei[j] = madd::<FMA>(c, xi, -(s * ar));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn rotate_halves_avx2(gr: &mut [f64], gi: &mut [f64], er: &mut [f64], ei: &mut [f64], c: f64, s: f64) {
    rotate_halves_body::<true>(gr, gi, er, ei, c, s)
}

/// Kept out of line so the four `&mut` halves are known not to alias, which lets LLVM vectorize.
#[inline(never)]
#[allow(unsafe_code)]
fn rotate_halves(gr: &mut [f64], gi: &mut [f64], er: &mut [f64], ei: &mut [f64], c: f64, s: f64) {
    #[cfg(target_arch = "x86_64")]
    if fast_simd() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above); the function is otherwise safe.
        unsafe { rotate_halves_avx2(gr, gi, er, ei, c, s) };
        return;
    }
    rotate_halves_body::<false>(gr, gi, er, ei, c, s)
}

/// Low-atom rotations then the diagonal factor, on one chunk starting at basis index `base`.
#[inline(always)]
fn chunk_pass_body<const FMA: bool>(
    re: &mut [f64],
    im: &mut [f64],
    base: usize,
    rots: &[Option<Rot>],
    inter: &Interaction,
    ph: Option<&PhaseTables>,
) {
    let bits = re.len().trailing_zeros() as usize;
    if bits >= 2 {
        rotate01(re, im, rots[0], rots[1]);
    } else if let Some(r) = rots.first().copied().flatten() {
        rotate::<FMA>(re, im, 1, r);
    }
    for (k, r) in rots.iter().enumerate().take(bits).skip(2) {
        if let Some(r) = r {
            rotate::<FMA>(re, im, 1 << k, *r);
        }
    }
    let Some(ph) = ph else { return };
    match inter {
        Interaction::Table(pr, pi) => {
            // Segments over which the high phase table is constant, so every operand is a
            // contiguous slice and the loop vectorizes. `base` is a multiple of the chunk length,
            // which like 2^nlo is a power of two, so a segment never wraps the low table.
            let len = re.len();
            let seg = (1usize << ph.nlo).min(len);
            let mask = (1usize << ph.nlo) - 1;
            for o in (0..len).step_by(seg) {
                let s0 = base + o;
                let hc = ph.hi[s0 >> ph.nlo];
                let l0 = s0 & mask;
                let (lr, li) = (&ph.lo_re[l0..l0 + seg], &ph.lo_im[l0..l0 + seg]);
                let (qr, qi) = (&pr[s0..s0 + seg], &pi[s0..s0 + seg]);
                let (vr, vi) = (&mut re[o..o + seg], &mut im[o..o + seg]);
                for j in 0..seg {
                    let ar = madd::<FMA>(qr[j], lr[j], -(qi[j] * li[j]));
                    let ai = madd::<FMA>(qr[j], li[j], qi[j] * lr[j]);
                    let fr = madd::<FMA>(ar, hc.re, -(ai * hc.im));
                    let fi = madd::<FMA>(ar, hc.im, ai * hc.re);
                    let (a, b) = (vr[j], vi[j]);
                    vr[j] = madd::<FMA>(a, fr, -(b * fi));
                    vi[j] = madd::<FMA>(a, fi, b * fr);
                }
            }
        }
        Interaction::Energies(e, h) => {
            for (j, (vr, vi)) in re.iter_mut().zip(im.iter_mut()).enumerate() {
                let f = Complex64::from_polar(1.0, -h * e[base + j]) * ph.get(base + j);
                let (a, b) = (*vr, *vi);
                *vr = a * f.re - b * f.im;
                *vi = a * f.im + b * f.re;
            }
        }
    }
}

struct Sweeper {
    n: usize,
    chunk: usize,
    parallel: bool,
}

/// The rotations of the atoms above the chunk bits (`rots[0]` is atom `cb`) in one pass: tiles
/// of `t` amplitudes at the same offset of every chunk stay in L1 while all those atoms are done.
#[inline(always)]
fn high_tiled<const FMA: bool>(re: &mut [f64], im: &mut [f64], chunk: usize, rots: &[Option<Rot>]) {
    let nh = rots.len();
    if rots.iter().all(Option::is_none) {
        return;
    }
    let t = (2048usize >> nh).max(8).min(chunk);
    for j0 in (0..chunk).step_by(t) {
        for (kh, r) in rots.iter().enumerate() {
            let Some(r) = *r else { continue };
            let sc = 1usize << kh;
            for c in (0..1usize << nh).filter(|c| c & sc == 0) {
                let (lo_r, hi_r) = re.split_at_mut((c + sc) * chunk);
                let (lo_i, hi_i) = im.split_at_mut((c + sc) * chunk);
                let g = c * chunk + j0;
                rotate_halves_body::<FMA>(
                    &mut lo_r[g..g + t],
                    &mut lo_i[g..g + t],
                    &mut hi_r[j0..j0 + t],
                    &mut hi_i[j0..j0 + t],
                    r.c,
                    r.s,
                );
            }
        }
    }
}

/// All of a step on a contiguous part of the state (`base` its first basis index): high atoms
/// tiled, then the low atoms and the diagonal chunk by chunk.
#[allow(unsafe_code)]
fn serial_step(
    re: &mut [f64],
    im: &mut [f64],
    base: usize,
    chunk: usize,
    rots: &[Option<Rot>],
    inter: &Interaction,
    ph: Option<&PhaseTables>,
) {
    #[cfg(target_arch = "x86_64")]
    if fast_simd() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above); the function is otherwise safe.
        unsafe { serial_step_avx2(re, im, base, chunk, rots, inter, ph) };
        return;
    }
    serial_step_body::<false>(re, im, base, chunk, rots, inter, ph)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn serial_step_avx2(
    re: &mut [f64],
    im: &mut [f64],
    base: usize,
    chunk: usize,
    rots: &[Option<Rot>],
    inter: &Interaction,
    ph: Option<&PhaseTables>,
) {
    serial_step_body::<true>(re, im, base, chunk, rots, inter, ph)
}

#[inline(always)]
fn serial_step_body<const FMA: bool>(
    re: &mut [f64],
    im: &mut [f64],
    base: usize,
    chunk: usize,
    rots: &[Option<Rot>],
    inter: &Interaction,
    ph: Option<&PhaseTables>,
) {
    let bits = re.len().trailing_zeros() as usize;
    let cb = chunk.trailing_zeros() as usize;
    if bits > cb {
        high_tiled::<FMA>(re, im, chunk, &rots[cb..bits]);
    }
    for (i, (r, m)) in re.chunks_mut(chunk).zip(im.chunks_mut(chunk)).enumerate() {
        chunk_pass_body::<FMA>(r, m, base + i * chunk, rots, inter, ph);
    }
}

impl Sweeper {
    /// `e^{-iXh}` (rotations) then, if given, a diagonal factor. In parallel the top atom is one
    /// pass on both cores, then each half of the state does the rest on its own.
    fn step(
        &self,
        re: &mut [f64],
        im: &mut [f64],
        rots: &[Option<Rot>],
        inter: &Interaction,
        ph: Option<&PhaseTables>,
    ) {
        let ch = self.chunk;
        if !self.parallel || self.n <= ch.trailing_zeros() as usize {
            serial_step(re, im, 0, ch, rots, inter, ph);
            return;
        }
        let half = 1usize << (self.n - 1);
        let (rl, rh) = re.split_at_mut(half);
        let (il, ih) = im.split_at_mut(half);
        if let Some(r) = rots[self.n - 1] {
            rl.par_chunks_mut(ch)
                .zip(il.par_chunks_mut(ch))
                .zip(rh.par_chunks_mut(ch).zip(ih.par_chunks_mut(ch)))
                .for_each(|((a, b), (x, y))| rotate_halves(a, b, x, y, r.c, r.s));
        }
        let sub = &rots[..self.n - 1];
        rayon::join(|| serial_step(rl, il, 0, ch, sub, inter, ph), || serial_step(rh, ih, half, ch, sub, inter, ph));
    }
}

/// The a-priori splitting error for one Strang step per ns, summed over the sequence: the
/// local error h³(‖[D,[D,X]]‖/24 + ‖[X,[X,D]]‖/12) bounded atom by atom.
fn error_bound_one_substep(model: &Model) -> f64 {
    let n = model.n;
    let mut amps = vec![Complex64::new(0.0, 0.0); n];
    let mut dets = vec![0.0; n];
    let h3 = DT_US.powi(3);
    let vsum: Vec<f64> = (0..n).map(|i| model.flip_energy(&vec![0.0; n], i)).collect();
    let mut total = 0.0;
    for k in 0..model.drive.duration {
        model.step(k, &mut amps, &mut dets);
        for (i, amp) in amps.iter().enumerate() {
            let a = amp.norm() / 2.0;
            if a == 0.0 {
                continue;
            }
            let dd = dets[i].abs() + vsum[i];
            total += h3 * (a * dd * dd / 24.0 + a * a * dd / 12.0);
        }
    }
    total
}

/// The measured error of the Strang scheme is a fraction of the bound above (0.023 on the
/// hardest test case, `error_against_dense_expm_reference`): the estimate is the bound times
/// this factor, which keeps a 4x margin over what was measured.
const ESTIMATE_FACTOR: f64 = 0.1;

/// Evolves |g…g⟩ through the model's drive; `cancel` is polled after every ns.
pub fn evolve(model: &Model, opts: &EngineOptions, cancel: &dyn Fn() -> bool) -> Result<Evolution> {
    let n = model.n;
    let dim = 1usize << n;
    let t = model.drive.duration;
    let est1 = error_bound_one_substep(model) * ESTIMATE_FACTOR;
    let m = match opts.substeps {
        Some(m) => m.clamp(1, MAX_SUBSTEPS),
        None => ((est1 / opts.tolerance.max(1e-300)).sqrt().ceil() as usize).clamp(1, MAX_SUBSTEPS),
    };
    let h = DT_US / m as f64;
    let mut re = vec![0.0; dim];
    let mut im = vec![0.0; dim];
    re[0] = 1.0;
    if t > 0 {
        let energies = model.interaction_energies();
        let (pr, pi): (Vec<f64>, Vec<f64>) = energies.iter().map(|e| ((-h * e).cos(), (-h * e).sin())).unzip();
        let parallel = n >= opts.parallel_from;
        // In parallel, at least 4 chunks so both cores get work.
        let bits = opts.chunk_bits.max(2);
        let cb = if parallel { bits.min(n.saturating_sub(2)) } else { bits.min(n) };
        let sw = Sweeper { n, chunk: 1 << cb, parallel };
        let mut ph = PhaseTables::new(n);
        let mut amps = vec![Complex64::new(0.0, 0.0); n];
        let mut dets = vec![0.0; n];
        let mut next_amps = amps.clone();
        let mut next_dets = dets.clone();
        let mut angles = vec![0.0; n];
        let alpha = |a: &Complex64| if a.norm() > 0.0 { a.arg() } else { 0.0 };
        let none = vec![None; n];

        model.step(0, &mut amps, &mut dets);
        // D(h/2) and P_0†.
        for i in 0..n {
            angles[i] = h / 2.0 * dets[i] - alpha(&amps[i]);
        }
        ph.fill(&angles);
        sw.step(&mut re, &mut im, &none, &Interaction::Energies(&energies, h / 2.0), Some(&ph));
        let mut rots = vec![None; n];
        for k in 0..t {
            if cancel() {
                return Err(AnalogError::Canceled);
            }
            for i in 0..n {
                // Atoms under the same drive (all of them for a global drive) share the rotation.
                if i > 0 && amps[i] == amps[i - 1] {
                    rots[i] = rots[i - 1];
                    continue;
                }
                let (s, c) = (amps[i].norm() * h / 2.0).sin_cos();
                rots[i] = if s == 0.0 { None } else { Some(Rot { c, s }) };
            }
            if k + 1 < t {
                model.step(k + 1, &mut next_amps, &mut next_dets);
            }
            for sub in 0..m {
                if sub + 1 < m {
                    for i in 0..n {
                        angles[i] = h * dets[i];
                    }
                    ph.fill(&angles);
                    sw.step(&mut re, &mut im, &rots, &Interaction::Table(&pr, &pi), Some(&ph));
                } else if k + 1 < t {
                    // P_{k+1}† D(h) P_k, with D at the mean detuning of the two samples.
                    for i in 0..n {
                        angles[i] = if i > 0 && amps[i] == amps[i - 1] && next_amps[i] == next_amps[i - 1] {
                            h * (dets[i] + next_dets[i]) / 2.0
                                + (angles[i - 1] - h * (dets[i - 1] + next_dets[i - 1]) / 2.0)
                        } else {
                            h * (dets[i] + next_dets[i]) / 2.0 + alpha(&amps[i]) - alpha(&next_amps[i])
                        };
                    }
                    ph.fill(&angles);
                    sw.step(&mut re, &mut im, &rots, &Interaction::Table(&pr, &pi), Some(&ph));
                } else {
                    for i in 0..n {
                        angles[i] = h / 2.0 * dets[i] + alpha(&amps[i]);
                    }
                    ph.fill(&angles);
                    sw.step(&mut re, &mut im, &rots, &Interaction::Energies(&energies, h / 2.0), Some(&ph));
                }
            }
            std::mem::swap(&mut amps, &mut next_amps);
            std::mem::swap(&mut dets, &mut next_dets);
        }
    }
    let state = re.into_iter().zip(im).map(|(a, b)| Complex64::new(a, b)).collect();
    Ok(Evolution { state, substeps: m, error_estimate: est1 / (m * m) as f64 })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::schedule::{Drive, DriveSamples};

    type Mat = Vec<Vec<Complex64>>;

    fn matmul(a: &Mat, b: &Mat) -> Mat {
        let d = a.len();
        let mut c = vec![vec![Complex64::new(0.0, 0.0); d]; d];
        for i in 0..d {
            for k in 0..d {
                let x = a[i][k];
                if x == Complex64::new(0.0, 0.0) {
                    continue;
                }
                for j in 0..d {
                    c[i][j] += x * b[k][j];
                }
            }
        }
        c
    }

    /// exp(-i H dt) by scaling and squaring a 30-term Taylor series (accurate to ~1e-15 here).
    fn expm_minus_i(h: &Mat, dt: f64) -> Mat {
        let d = h.len();
        let norm: f64 = h.iter().map(|r| r.iter().map(|x| x.norm()).sum::<f64>()).fold(0.0, f64::max) * dt;
        let s = (norm.max(1e-300).log2().ceil().max(0.0) as i32) + 4;
        let scale = dt / 2f64.powi(s);
        let a: Mat = h.iter().map(|r| r.iter().map(|x| x * Complex64::new(0.0, -scale)).collect()).collect();
        let mut result: Mat =
            (0..d).map(|i| (0..d).map(|j| Complex64::new(if i == j { 1.0 } else { 0.0 }, 0.0)).collect()).collect();
        let mut term = result.clone();
        for k in 1..30 {
            term = matmul(&term, &a);
            for r in term.iter_mut() {
                for x in r.iter_mut() {
                    *x /= k as f64;
                }
            }
            for i in 0..d {
                for j in 0..d {
                    result[i][j] += term[i][j];
                }
            }
        }
        for _ in 0..s {
            result = matmul(&result, &result);
        }
        result
    }

    /// The piecewise-constant 1 ns reference: dense H per ns, exact exponential.
    pub fn dense_reference(model: &Model) -> Vec<Complex64> {
        let n = model.n;
        let d = 1usize << n;
        let e = model.interaction_energies();
        let mut psi = vec![Complex64::new(0.0, 0.0); d];
        psi[0] = Complex64::new(1.0, 0.0);
        let mut amps = vec![Complex64::new(0.0, 0.0); n];
        let mut dets = vec![0.0; n];
        for k in 0..model.drive.duration {
            model.step(k, &mut amps, &mut dets);
            let mut h = vec![vec![Complex64::new(0.0, 0.0); d]; d];
            for s in 0..d {
                let mut diag = e[s];
                for i in 0..n {
                    if s >> i & 1 == 1 {
                        diag -= dets[i];
                    } else {
                        // |r⟩⟨g|_i: s (g at i) → s | bit i, coefficient A_i / 2.
                        let r = s | 1 << i;
                        h[r][s] += amps[i] / 2.0;
                        h[s][r] += amps[i].conj() / 2.0;
                    }
                }
                h[s][s] += Complex64::new(diag, 0.0);
            }
            let u = expm_minus_i(&h, DT_US);
            psi = (0..d).map(|i| (0..d).map(|j| u[i][j] * psi[j]).sum()).collect();
        }
        psi
    }

    pub fn state_error(a: &[Complex64], b: &[Complex64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| (x - y).norm_sqr()).sum::<f64>().sqrt()
    }

    /// A hard case for splitting: 4 atoms at 5 µm (C6 of level 60: V = 55 rad/µs between
    /// neighbours), a global Blackman-like drive near the maximum, a detuning ramp, and a local
    /// drive with a phase on atom 2.
    fn test_model(len: usize) -> Model {
        let coords = [[0.0, 0.0, 0.0], [5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [5.0, 5.0, 0.0]];
        let mut g = DriveSamples::default();
        let mut l = DriveSamples::default();
        for k in 0..len {
            let x = k as f64 / (len - 1) as f64;
            g.amp.push(12.0 * (std::f64::consts::PI * x).sin().powi(2));
            g.det.push(-20.0 + 40.0 * x);
            g.phase.push(0.3);
            l.amp.push(if (len / 4..len / 2).contains(&k) { 6.0 } else { 0.0 });
            l.det.push(if k > len / 3 { 5.0 } else { 0.0 });
            l.phase.push(1.1);
        }
        let drive = Drive { duration: len, global: g, local: vec![None, None, Some(l), None] };
        Model::new(&coords, 865723.02, drive)
    }

    #[test]
    fn error_against_dense_expm_reference() {
        let model = test_model(600);
        let reference = dense_reference(&model);
        let norm: f64 = reference.iter().map(|x| x.norm_sqr()).sum();
        assert!((norm - 1.0).abs() < 1e-12);
        let never = || false;
        let mut errs = Vec::new();
        for m in [1, 2, 4] {
            let opts = EngineOptions { substeps: Some(m), ..Default::default() };
            let ev = evolve(&model, &opts, &never).unwrap();
            let err = state_error(&ev.state, &reference);
            errs.push((m, err, ev.error_estimate));
        }
        eprintln!("(substeps, measured error, estimate): {errs:?}");
        // Second order: doubling the substeps divides the error by ~4.
        assert!(errs[1].1 < errs[0].1 / 3.0 && errs[2].1 < errs[1].1 / 3.0, "{errs:?}");
        // The estimate bounds the measured error.
        for (_, err, est) in &errs {
            assert!(err <= est, "{errs:?}");
        }
        // The high-atom passes (atoms above the chunk) give the same state.
        for chunk_bits in [2, 3] {
            let opts = EngineOptions { substeps: Some(2), chunk_bits, ..Default::default() };
            let ev = evolve(&model, &opts, &never).unwrap();
            assert!((state_error(&ev.state, &reference) - errs[1].1).abs() < 1e-12);
        }
        // The default tolerance holds.
        let ev = evolve(&model, &EngineOptions::default(), &never).unwrap();
        let err = state_error(&ev.state, &reference);
        eprintln!("default: {} substeps, error {err:e}", ev.substeps);
        assert!(err < EngineOptions::default().tolerance && err < ev.error_estimate, "{err}");
    }

    #[test]
    fn benchmark_sequence_error_at_the_default_tolerance() {
        // The benchmark's shape on 4 atoms: a ladder at 6.5 µm, a 2.5 µs Blackman of area π
        // (peak 3 rad/µs) and a detuning ramp from -6 to 6 rad/µs.
        let coords = [[-3.25, -3.25, 0.0], [-3.25, 3.25, 0.0], [3.25, -3.25, 0.0], [3.25, 3.25, 0.0]];
        let len = 2500;
        let bl = crate::waveforms::Waveform::Blackman { duration: len, area: std::f64::consts::PI }.samples();
        let g = DriveSamples {
            amp: bl,
            det: (0..len).map(|k| -6.0 + 12.0 * k as f64 / (len - 1) as f64).collect(),
            phase: vec![0.0; len],
        };
        let model = Model::new(&coords, 865723.02, Drive { duration: len, global: g, local: vec![None; 4] });
        let reference = dense_reference(&model);
        let ev = evolve(&model, &EngineOptions::default(), &|| false).unwrap();
        let err = state_error(&ev.state, &reference);
        let tv: f64 =
            ev.state.iter().zip(&reference).map(|(a, b)| (a.norm_sqr() - b.norm_sqr()).abs()).sum::<f64>() / 2.0;
        eprintln!(
            "benchmark case: {} substeps, state error {err:e}, TV {tv:e}, estimate {:e}",
            ev.substeps, ev.error_estimate
        );
        assert!(err < ev.error_estimate && tv < 1e-5, "{err} {tv}");
    }

    /// The benchmark's own sequence (area 10, detuning ±10) on n = 4..10 ladders: the error of
    /// one Strang step per ns against 16 (whose own error is 1/256 of it), next to the estimate.
    /// `cargo test --release -p qcloud-analog -- --ignored --nocapture substep_error_by_size`
    #[test]
    #[ignore]
    fn substep_error_by_size() {
        for n in [4, 6, 8, 10] {
            let coords: Vec<[f64; 3]> = (0..n).map(|i| [(i / 2) as f64 * 6.5, (i % 2) as f64 * 6.5, 0.0]).collect();
            let len = 2500;
            let bl = crate::waveforms::Waveform::Blackman { duration: len, area: 10.0 }.samples();
            let g = DriveSamples {
                amp: bl,
                det: (0..len).map(|k| -10.0 + 20.0 * k as f64 / (len - 1) as f64).collect(),
                phase: vec![0.0; len],
            };
            let model = Model::new(&coords, 865723.02, Drive { duration: len, global: g, local: vec![None; n] });
            let fine = evolve(&model, &EngineOptions { substeps: Some(16), ..Default::default() }, &|| false).unwrap();
            for m in [1, 2] {
                let ev = evolve(&model, &EngineOptions { substeps: Some(m), ..Default::default() }, &|| false).unwrap();
                let err = state_error(&ev.state, &fine.state);
                let tv: f64 =
                    ev.state.iter().zip(&fine.state).map(|(a, b)| (a.norm_sqr() - b.norm_sqr()).abs()).sum::<f64>()
                        / 2.0;
                eprintln!("n={n} m={m}: error {err:.2e} TV {tv:.2e} estimate {:.2e}", ev.error_estimate);
            }
        }
    }

    /// The baseline (SSE2) kernels give the state the AVX2+FMA ones do (the tests above run
    /// whichever the CPU picks): one step of every pass kind on a 12-atom state.
    #[test]
    fn baseline_and_fma_kernels_agree() {
        let n = 12;
        let dim = 1usize << n;
        let re0: Vec<f64> = (0..dim).map(|s| ((s * 7919) % 1000) as f64 / 1000.0 - 0.5).collect();
        let im0: Vec<f64> = (0..dim).map(|s| ((s * 104729) % 997) as f64 / 997.0 - 0.5).collect();
        let rots: Vec<Option<Rot>> = (0..n)
            .map(|i| if i == 5 { None } else { Some(Rot { c: (0.1 * i as f64).cos(), s: (0.1 * i as f64).sin() }) })
            .collect();
        let energies: Vec<f64> = (0..dim).map(|s| (s.count_ones() as f64) * 3.7 + (s % 13) as f64).collect();
        let (pr, pi): (Vec<f64>, Vec<f64>) = energies.iter().map(|e| ((-1e-3 * e).cos(), (-1e-3 * e).sin())).unzip();
        let mut ph = PhaseTables::new(n);
        ph.fill(&(0..n).map(|i| 0.01 * i as f64 - 0.03).collect::<Vec<_>>());
        for inter in [Interaction::Table(&pr, &pi), Interaction::Energies(&energies, 5e-4)] {
            for chunk_bits in [4, 10] {
                let (mut ar, mut ai) = (re0.clone(), im0.clone());
                let (mut br, mut bi) = (re0.clone(), im0.clone());
                serial_step_body::<false>(&mut ar, &mut ai, 0, 1 << chunk_bits, &rots, &inter, Some(&ph));
                serial_step_body::<true>(&mut br, &mut bi, 0, 1 << chunk_bits, &rots, &inter, Some(&ph));
                let diff = ar.iter().zip(&br).chain(ai.iter().zip(&bi)).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
                let moved = ar.iter().zip(&re0).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
                assert!(diff < 1e-14 && moved > 1e-3, "{diff} {moved}");
            }
        }
    }

    #[test]
    fn parallel_and_chunked_paths_agree_with_the_serial_one() {
        // 13 atoms in a line: chunked low atoms + one high atom, serial vs rayon.
        let coords: Vec<[f64; 3]> = (0..13).map(|i| [i as f64 * 6.0, 0.0, 0.0]).collect();
        let len = 40;
        let mut g = DriveSamples::default();
        for k in 0..len {
            g.amp.push(10.0);
            g.det.push(k as f64 * 0.5);
            g.phase.push(0.2);
        }
        let model = Model::new(&coords, 865723.02, Drive { duration: len, global: g, local: vec![None; 13] });
        let never = || false;
        let a = evolve(&model, &EngineOptions { parallel_from: 100, substeps: Some(2), ..Default::default() }, &never)
            .unwrap();
        let b = evolve(&model, &EngineOptions { parallel_from: 1, substeps: Some(2), ..Default::default() }, &never)
            .unwrap();
        assert!(state_error(&a.state, &b.state) < 1e-13);
        let norm: f64 = a.state.iter().map(|x| x.norm_sqr()).sum();
        assert!((norm - 1.0).abs() < 1e-10);
    }
}
