//! State-vector kernels: 1-qubit, controlled 1-qubit, 2-qubit and diagonal gates, in safe Rust.
//!
//! The amplitude of basis state `i` is `amps[i]`; bit `q` of `i` is qubit `q` (Qiskit's
//! little-endian convention). A gate on qubit `q` pairs index `i` (bit `q` clear) with `i | 1<<q`:
//! the vector is cut into chunks of `2^(q+1)` amplitudes whose two halves are the pairs. Big states
//! are split over rayon's pool: many small chunks are grouped into blocks, a few big chunks are
//! split into matching sub-slices of their two halves, so that every qubit gets parallel work.

use num_complex::Complex64 as C;
use rayon::prelude::*;

/// Amplitudes per unit of parallel work (128 KiB).
const BLOCK: usize = 1 << 13;

/// Call `f(base, lo, hi)` for matching slices of amplitudes with bit `q` clear (`lo`) and set (`hi`);
/// `lo[j]` is basis state `base + j`. `min_sub` is the smallest slice length allowed (a power of two
/// `<= 2^q`), used by the 2-qubit kernels that further split each slice.
#[inline]
fn for_each_pair<F>(amps: &mut [C], q: usize, par: bool, min_sub: usize, f: F)
where
    F: Fn(usize, &mut [C], &mut [C]) + Sync + Send,
{
    let half = 1usize << q;
    let chunk = half << 1;
    if !par || amps.len() <= BLOCK {
        for (ci, ch) in amps.chunks_exact_mut(chunk).enumerate() {
            let (lo, hi) = ch.split_at_mut(half);
            f(ci * chunk, lo, hi);
        }
    } else if chunk >= BLOCK {
        let sub = (BLOCK / 2).max(min_sub).min(half);
        amps.par_chunks_mut(chunk).enumerate().for_each(|(ci, ch)| {
            let (lo, hi) = ch.split_at_mut(half);
            lo.par_chunks_mut(sub)
                .zip(hi.par_chunks_mut(sub))
                .enumerate()
                .for_each(|(k, (l, h))| f(ci * chunk + k * sub, l, h));
        });
    } else {
        amps.par_chunks_mut(BLOCK).enumerate().for_each(|(bi, blk)| {
            for (ci, ch) in blk.chunks_exact_mut(chunk).enumerate() {
                let (lo, hi) = ch.split_at_mut(half);
                f(bi * BLOCK + ci * chunk, lo, hi);
            }
        });
    }
}

/// Call `f(base, s00, s01, s10, s11)` for matching slices where `sXY` has bit `b` = X and bit `a` =
/// Y (`a != b`); `s00[j]` is basis state `base + j`.
#[inline]
fn for_each_quad<F>(amps: &mut [C], a: usize, b: usize, par: bool, f: F)
where
    F: Fn(usize, &mut [C], &mut [C], &mut [C], &mut [C]) + Sync + Send,
{
    let (lo_q, hi_q, swapped) = if a < b { (a, b, false) } else { (b, a, true) };
    let lhalf = 1usize << lo_q;
    let lchunk = lhalf << 1;
    for_each_pair(amps, hi_q, par, lchunk, |base, lo, hi| {
        for (ci, (cl, ch)) in lo.chunks_exact_mut(lchunk).zip(hi.chunks_exact_mut(lchunk)).enumerate() {
            let (l0, l1) = cl.split_at_mut(lhalf);
            let (h0, h1) = ch.split_at_mut(lhalf);
            // l0: hi_q=0, lo_q=0; l1: lo_q=1; h0: hi_q=1; h1: both.
            if swapped {
                // a is the high qubit: sXY has bit b = X (low), bit a = Y (high).
                f(base + ci * lchunk, l0, h0, l1, h1);
            } else {
                f(base + ci * lchunk, l0, l1, h0, h1);
            }
        }
    });
}

/// Structure of a 2x2 matrix, to pick the cheapest kernel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind1 {
    Identity,
    Diagonal,
    /// `[[0, b], [c, 0]]`
    AntiDiagonal,
    General,
}

pub fn classify(m: &[C; 4]) -> Kind1 {
    let zero = |c: C| c.re == 0.0 && c.im == 0.0;
    let one = |c: C| c.re == 1.0 && c.im == 0.0;
    if zero(m[1]) && zero(m[2]) {
        if one(m[0]) && one(m[3]) {
            Kind1::Identity
        } else {
            Kind1::Diagonal
        }
    } else if zero(m[0]) && zero(m[3]) {
        Kind1::AntiDiagonal
    } else {
        Kind1::General
    }
}

#[inline(always)]
fn apply_slices(m: &[C; 4], kind: Kind1, lo: &mut [C], hi: &mut [C]) {
    match kind {
        Kind1::Identity => {}
        Kind1::Diagonal => {
            let (d0, d1) = (m[0], m[3]);
            if d0 != C::new(1.0, 0.0) {
                lo.iter_mut().for_each(|x| *x *= d0);
            }
            hi.iter_mut().for_each(|x| *x *= d1);
        }
        Kind1::AntiDiagonal => {
            let (b, c) = (m[1], m[2]);
            if b == C::new(1.0, 0.0) && c == C::new(1.0, 0.0) {
                lo.swap_with_slice(hi);
            } else {
                for (l, h) in lo.iter_mut().zip(hi.iter_mut()) {
                    let (x0, x1) = (*l, *h);
                    *l = b * x1;
                    *h = c * x0;
                }
            }
        }
        Kind1::General => {
            let (m00, m01, m10, m11) = (m[0], m[1], m[2], m[3]);
            for (l, h) in lo.iter_mut().zip(hi.iter_mut()) {
                let (x0, x1) = (*l, *h);
                *l = m00 * x0 + m01 * x1;
                *h = m10 * x0 + m11 * x1;
            }
        }
    }
}

/// `apply_slices` restricted to the positions `j` where `(base + j) & lmask == lval`.
#[inline(always)]
fn apply_masked(m: &[C; 4], kind: Kind1, lo: &mut [C], hi: &mut [C], base: usize, lmask: usize, lval: usize) {
    let one = C::new(1.0, 0.0);
    let pairs = lo.iter_mut().zip(hi.iter_mut()).enumerate();
    match kind {
        Kind1::Identity => {}
        Kind1::Diagonal if m[0] == one => {
            let d1 = m[3];
            for (j, (_, h)) in pairs {
                if (base + j) & lmask == lval {
                    *h *= d1;
                }
            }
        }
        Kind1::Diagonal => {
            let (d0, d1) = (m[0], m[3]);
            for (j, (l, h)) in pairs {
                if (base + j) & lmask == lval {
                    *l *= d0;
                    *h *= d1;
                }
            }
        }
        _ => {
            let (m00, m01, m10, m11) = (m[0], m[1], m[2], m[3]);
            for (j, (l, h)) in pairs {
                if (base + j) & lmask == lval {
                    let (x0, x1) = (*l, *h);
                    *l = m00 * x0 + m01 * x1;
                    *h = m10 * x0 + m11 * x1;
                }
            }
        }
    }
}

/// Apply the 2x2 matrix `m` (row-major) to qubit `q`.
pub fn apply_1q(amps: &mut [C], q: usize, m: &[C; 4], par: bool) {
    let kind = classify(m);
    if kind == Kind1::Identity {
        return;
    }
    for_each_pair(amps, q, par, 1, |_, lo, hi| apply_slices(m, kind, lo, hi));
}

/// Apply the 2x2 matrix `m` to qubit `q` where the basis state `i` satisfies
/// `i & cmask == cval` (controls; `q` not in `cmask`).
pub fn apply_ctrl_1q(amps: &mut [C], cmask: usize, cval: usize, q: usize, m: &[C; 4], par: bool) {
    let kind = classify(m);
    if kind == Kind1::Identity {
        return;
    }
    if cmask == 0 {
        return apply_1q(amps, q, m, par);
    }
    let low = (1usize << q) - 1;
    let hmask = cmask & !low;
    let lmask = cmask & low;
    let hval = cval & !low;
    let lval = cval & low;
    // The smallest run of consecutive indices with constant low control bits.
    let run = if lmask == 0 { usize::MAX } else { 1usize << lmask.trailing_zeros() };
    for_each_pair(amps, q, par, 1, |base, lo, hi| {
        if base & hmask != hval {
            return;
        }
        if lmask == 0 {
            apply_slices(m, kind, lo, hi);
            return;
        }
        // Runs of length `run` share their low control bits (base is a multiple of `run` when
        // the slice is longer than `run`; otherwise the slice lies within one run).
        if lo.len() <= run {
            if base & lmask == lval {
                apply_slices(m, kind, lo, hi);
            }
        } else if run < 8 {
            // Short runs: test every index rather than iterate over tiny chunks.
            apply_masked(m, kind, lo, hi, base, lmask, lval);
        } else {
            for (k, (l, h)) in lo.chunks_exact_mut(run).zip(hi.chunks_exact_mut(run)).enumerate() {
                if (base + k * run) & lmask == lval {
                    apply_slices(m, kind, l, h);
                }
            }
        }
    });
}

/// Multiply by a diagonal on qubits `(a, b)`: `d[bit_a + 2*bit_b]`.
pub fn apply_diag_2q(amps: &mut [C], a: usize, b: usize, d: &[C; 4], par: bool) {
    let one = C::new(1.0, 0.0);
    let skip = [d[0] == one, d[1] == one, d[2] == one, d[3] == one];
    for_each_quad(amps, a, b, par, |_, s00, s01, s10, s11| {
        // sXY: X = bit b, Y = bit a -> index Y + 2X.
        for (k, s) in [(0, s00), (1, s01), (2, s10), (3, s11)] {
            if !skip[k] {
                let f = d[k];
                s.iter_mut().for_each(|x| *x *= f);
            }
        }
    });
}

/// Swap qubits `a` and `b`.
pub fn apply_swap(amps: &mut [C], a: usize, b: usize, par: bool) {
    for_each_quad(amps, a, b, par, |_, _, s01, s10, _| s01.swap_with_slice(s10));
}

/// Apply a 4x4 matrix (row-major; row/column index `bit_a + 2*bit_b`) to qubits `(a, b)`.
pub fn apply_2q(amps: &mut [C], a: usize, b: usize, m: &[C; 16], par: bool) {
    for_each_quad(amps, a, b, par, |_, s00, s01, s10, s11| {
        // s01: bit a set (index 1), s10: bit b set (index 2).
        for (((x0, x1), x2), x3) in s00.iter_mut().zip(s01.iter_mut()).zip(s10.iter_mut()).zip(s11.iter_mut()) {
            let v = [*x0, *x1, *x2, *x3];
            let r =
                |row: usize| m[row * 4] * v[0] + m[row * 4 + 1] * v[1] + m[row * 4 + 2] * v[2] + m[row * 4 + 3] * v[3];
            *x0 = r(0);
            *x1 = r(1);
            *x2 = r(2);
            *x3 = r(3);
        }
    });
}

/// Apply a dense `2^k x 2^k` matrix (row/column bit `j` = `qubits[j]`) where `i & cmask == cval`.
/// Generic and serial: used only for rare gates (unitaries on 3+ qubits, controlled 2-qubit gates).
pub fn apply_dense(amps: &mut [C], qubits: &[usize], m: &[C], cmask: usize, cval: usize) {
    let k = qubits.len();
    let dim = 1usize << k;
    let tmask: usize = qubits.iter().map(|&q| 1usize << q).sum();
    let offsets: Vec<usize> =
        (0..dim).map(|r| (0..k).filter(|&j| r >> j & 1 == 1).map(|j| 1usize << qubits[j]).sum()).collect();
    let mut v = vec![C::new(0.0, 0.0); dim];
    for i in 0..amps.len() {
        if i & tmask != 0 || i & cmask != cval {
            continue;
        }
        for (r, off) in offsets.iter().enumerate() {
            v[r] = amps[i + off];
        }
        for (r, off) in offsets.iter().enumerate() {
            let row = &m[r * dim..(r + 1) * dim];
            amps[i + off] = row.iter().zip(v.iter()).map(|(a, b)| a * b).sum();
        }
    }
}

/// Probability that qubit `q` reads 1.
pub fn prob_one(amps: &[C], q: usize, par: bool) -> f64 {
    let bit = 1usize << q;
    if par && amps.len() > BLOCK {
        amps.par_chunks(BLOCK)
            .enumerate()
            .map(|(bi, blk)| {
                blk.iter()
                    .enumerate()
                    .filter(|(j, _)| (bi * BLOCK + j) & bit != 0)
                    .map(|(_, a)| a.norm_sqr())
                    .sum::<f64>()
            })
            .sum()
    } else {
        amps.iter().enumerate().filter(|(i, _)| i & bit != 0).map(|(_, a)| a.norm_sqr()).sum()
    }
}

/// Project qubit `q` on `outcome` and renormalise with `1/sqrt(p)` (`p` its probability).
pub fn collapse(amps: &mut [C], q: usize, outcome: bool, p: f64, par: bool) {
    let scale = if p > 0.0 { 1.0 / p.sqrt() } else { 0.0 };
    let z = C::new(0.0, 0.0);
    let s = C::new(scale, 0.0);
    let m = if outcome { [z, z, z, s] } else { [s, z, z, z] };
    for_each_pair(amps, q, par, 1, |_, lo, hi| apply_slices(&m, Kind1::Diagonal, lo, hi));
}

/// Sum of squared magnitudes.
pub fn norm_sqr(amps: &[C], par: bool) -> f64 {
    if par && amps.len() > BLOCK {
        amps.par_iter().map(|a| a.norm_sqr()).sum()
    } else {
        amps.iter().map(|a| a.norm_sqr()).sum()
    }
}

/// `<psi| P |psi>` for the Pauli string with X/Y positions `x_mask`, Y/Z positions `z_mask` and
/// `ny` Y factors: `P|i> = i^ny (-1)^{|i & z_mask|} |i ^ x_mask>`.
pub fn pauli_expectation(amps: &[C], x_mask: usize, z_mask: usize, ny: u32, par: bool) -> f64 {
    let term = |i: usize, a: &C| -> C {
        let sign = if (i & z_mask).count_ones() & 1 == 1 { -1.0 } else { 1.0 };
        amps[i ^ x_mask].conj() * a * sign
    };
    let sum: C = if par && amps.len() > BLOCK {
        amps.par_chunks(BLOCK)
            .enumerate()
            .map(|(bi, blk)| blk.iter().enumerate().map(|(j, a)| term(bi * BLOCK + j, a)).sum::<C>())
            .sum()
    } else {
        amps.iter().enumerate().map(|(i, a)| term(i, a)).sum()
    };
    // Multiply by i^ny and keep the real part (the expectation of a Hermitian operator).
    match ny % 4 {
        0 => sum.re,
        1 => -sum.im,
        2 => -sum.re,
        _ => sum.im,
    }
}
