//! Cache-blocked execution: runs of gates that act within aligned blocks of `2^BLOCK_QUBITS`
//! amplitudes (gates on low qubits, diagonal gates anywhere, controls anywhere) are applied
//! block by block, so one pass over memory serves the whole run instead of one pass per gate.
//! A gate that pairs amplitudes across blocks (a non-diagonal gate on a high qubit) runs alone
//! over the whole vector, as before.

use super::kernels::{self, Kind1};
use super::Op;
use num_complex::Complex64 as C;
use rayon::prelude::*;

/// Default qubits inside one block (see [`block_qubits`]).
pub const BLOCK_QUBITS: usize = 14;

/// Qubits inside one block: [`BLOCK_QUBITS`], or `QSIM_BLOCK_QUBITS` (10..=24) for tuning.
pub fn block_qubits() -> usize {
    static B: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *B.get_or_init(|| {
        std::env::var("QSIM_BLOCK_QUBITS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|b| (10..=24).contains(b))
            .unwrap_or(BLOCK_QUBITS)
    })
}

fn diag_m(m: &[C; 4]) -> bool {
    matches!(kernels::classify(m), Kind1::Diagonal | Kind1::Identity)
}

/// Whether `op` can run inside a block of `2^b` amplitudes.
fn is_local(op: &Op, b: usize) -> bool {
    match op {
        Op::M1 { q, m } => *q < b || diag_m(m),
        Op::Ctrl1 { q, m, .. } => *q < b || diag_m(m),
        Op::Diag2 { .. } => true,
        Op::M2 { a, b: b2, .. } | Op::Swap { a, b: b2 } => *a < b && *b2 < b,
        _ => false,
    }
}

fn scale_masked(blk: &mut [C], lmask: usize, lval: usize, s: C) {
    if s == C::new(1.0, 0.0) {
        return;
    }
    if lmask == 0 {
        blk.iter_mut().for_each(|x| *x *= s);
    } else {
        blk.iter_mut().enumerate().filter(|(i, _)| i & lmask == lval).for_each(|(_, x)| *x *= s);
    }
}

/// Apply a local op to the block whose first basis state is `base`.
fn apply_local(op: &Op, blk: &mut [C], base: usize, b: usize) {
    let low = (1usize << b) - 1;
    let bit = |q: usize| base >> q & 1;
    match op {
        Op::M1 { q, m } => {
            if *q < b {
                kernels::apply_1q(blk, *q, m, false);
            } else {
                scale_masked(blk, 0, 0, m[3 * bit(*q)]);
            }
        }
        Op::Ctrl1 { cmask, cval, q, m } => {
            let hmask = cmask & !low;
            if base & hmask != cval & hmask {
                return;
            }
            let (lmask, lval) = (cmask & low, cval & low);
            if *q < b {
                kernels::apply_ctrl_1q(blk, lmask, lval, *q, m, false);
            } else {
                scale_masked(blk, lmask, lval, m[3 * bit(*q)]);
            }
        }
        Op::Diag2 { a, b: b2, d } => {
            let (a, b2) = (*a, *b2);
            let z = C::new(0.0, 0.0);
            match (a < b, b2 < b) {
                (true, true) => kernels::apply_diag_2q(blk, a, b2, d, false),
                (true, false) => {
                    let k = 2 * bit(b2);
                    kernels::apply_1q(blk, a, &[d[k], z, z, d[k + 1]], false)
                }
                (false, true) => {
                    let k = bit(a);
                    kernels::apply_1q(blk, b2, &[d[k], z, z, d[k + 2]], false)
                }
                (false, false) => scale_masked(blk, 0, 0, d[bit(a) + 2 * bit(b2)]),
            }
        }
        Op::M2 { a, b: b2, m } => kernels::apply_2q(blk, *a, *b2, m, false),
        Op::Swap { a, b: b2 } => kernels::apply_swap(blk, *a, *b2, false),
        _ => {}
    }
}

/// Apply unitary ops (others are skipped) to a state of `n` qubits with cache blocking.
pub fn apply_blocked<'a>(amps: &mut [C], n: usize, ops: impl IntoIterator<Item = &'a Op>, par: bool) {
    let b = block_qubits();
    let mut run: Vec<&Op> = Vec::new();
    let flush = |run: &mut Vec<&Op>, amps: &mut [C]| {
        if run.is_empty() {
            return;
        }
        if run.len() == 1 {
            super::apply_op_unitary(amps, run[0], par);
        } else {
            let f = |(bi, blk): (usize, &mut [C])| {
                for op in run.iter() {
                    apply_local(op, blk, bi << b, b);
                }
            };
            if par {
                amps.par_chunks_mut(1 << b).enumerate().for_each(f);
            } else {
                amps.chunks_mut(1 << b).enumerate().for_each(f);
            }
        }
        run.clear();
    };
    for op in ops {
        if !op.is_unitary() {
            continue;
        }
        if n > b && is_local(op, b) {
            run.push(op);
        } else {
            flush(&mut run, amps);
            super::apply_op_unitary(amps, op, par);
        }
    }
    flush(&mut run, amps);
}
