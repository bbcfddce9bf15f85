//! Gate matrices (Qiskit's conventions) and the lowering of IR gates to engine operations.

use super::Op;
use crate::ir::Gate;
use num_complex::Complex64 as C;
use std::f64::consts::{FRAC_1_SQRT_2, PI};

const C0: C = C::new(0.0, 0.0);
const C1: C = C::new(1.0, 0.0);
const CI: C = C::new(0.0, 1.0);

fn cis(t: f64) -> C {
    C::from_polar(1.0, t)
}

/// Why a gate could not be lowered.
#[derive(Debug, Clone, PartialEq)]
pub struct GateError(pub String);

/// The 2x2 matrix (row-major) of a 1-qubit gate.
pub fn matrix_1q(gate: &Gate, p: &[f64]) -> Option<[C; 4]> {
    use Gate::*;
    let h = FRAC_1_SQRT_2;
    let arg = |i: usize| p.get(i).copied().unwrap_or(0.0);
    let u = |t: f64, ph: f64, l: f64| {
        let (c, s) = ((t / 2.0).cos(), (t / 2.0).sin());
        [C::new(c, 0.0), -cis(l) * s, cis(ph) * s, cis(ph + l) * c]
    };
    Some(match gate {
        Gate::I => [C1, C0, C0, C1],
        X => [C0, C1, C1, C0],
        Y => [C0, -CI, CI, C0],
        Gate::Z => [C1, C0, C0, -C1],
        H => [C::new(h, 0.0), C::new(h, 0.0), C::new(h, 0.0), C::new(-h, 0.0)],
        S => [C1, C0, C0, CI],
        Sdg => [C1, C0, C0, -CI],
        T => [C1, C0, C0, cis(PI / 4.0)],
        Tdg => [C1, C0, C0, cis(-PI / 4.0)],
        SX => [C::new(0.5, 0.5), C::new(0.5, -0.5), C::new(0.5, -0.5), C::new(0.5, 0.5)],
        SXdg => [C::new(0.5, -0.5), C::new(0.5, 0.5), C::new(0.5, 0.5), C::new(0.5, -0.5)],
        RX => {
            let (c, s) = ((arg(0) / 2.0).cos(), (arg(0) / 2.0).sin());
            [C::new(c, 0.0), C::new(0.0, -s), C::new(0.0, -s), C::new(c, 0.0)]
        }
        RY => {
            let (c, s) = ((arg(0) / 2.0).cos(), (arg(0) / 2.0).sin());
            [C::new(c, 0.0), C::new(-s, 0.0), C::new(s, 0.0), C::new(c, 0.0)]
        }
        RZ => [cis(-arg(0) / 2.0), C0, C0, cis(arg(0) / 2.0)],
        P => [C1, C0, C0, cis(arg(0))],
        U => u(arg(0), arg(1), arg(2)),
        U2 => u(PI / 2.0, arg(0), arg(1)),
        R => {
            let (t, ph) = (arg(0), arg(1));
            let (c, s) = ((t / 2.0).cos(), (t / 2.0).sin());
            [C::new(c, 0.0), -CI * cis(-ph) * s, -CI * cis(ph) * s, C::new(c, 0.0)]
        }
        Inverse(base) => {
            let m = matrix_1q(base, p)?;
            [m[0].conj(), m[2].conj(), m[1].conj(), m[3].conj()]
        }
        _ => return None,
    })
}

/// For a gate that is a 1-qubit gate controlled on its first qubit(s): (number of controls,
/// control state, target matrix).
fn controlled_1q(gate: &Gate, p: &[f64], nq: usize) -> Option<(usize, u64, [C; 4])> {
    use Gate::*;
    let all = |k: usize| (1u64 << k) - 1;
    Some(match gate {
        CX => (1, 1, matrix_1q(&X, p)?),
        CY => (1, 1, matrix_1q(&Y, p)?),
        CZ => (1, 1, matrix_1q(&Gate::Z, p)?),
        CH => (1, 1, matrix_1q(&H, p)?),
        CS => (1, 1, matrix_1q(&S, p)?),
        CSdg => (1, 1, matrix_1q(&Sdg, p)?),
        CSX => (1, 1, matrix_1q(&SX, p)?),
        CP => (1, 1, matrix_1q(&P, p)?),
        CRX => (1, 1, matrix_1q(&RX, p)?),
        CRY => (1, 1, matrix_1q(&RY, p)?),
        CRZ => (1, 1, matrix_1q(&RZ, p)?),
        CU3 => (1, 1, matrix_1q(&U, p)?),
        CU => {
            let m = matrix_1q(&U, p)?;
            let g = cis(p.get(3).copied().unwrap_or(0.0));
            (1, 1, [g * m[0], g * m[1], g * m[2], g * m[3]])
        }
        CCX => (2, all(2), matrix_1q(&X, p)?),
        CCZ => (2, all(2), matrix_1q(&Gate::Z, p)?),
        C3X => (3, all(3), matrix_1q(&X, p)?),
        C3SX => (3, all(3), matrix_1q(&SX, p)?),
        MCX if (2..=64).contains(&nq) => (nq - 1, all(nq - 1), matrix_1q(&X, p)?),
        Controlled { num_ctrl, ctrl_state, base } => {
            let m = matrix_1q(base, p)?;
            (*num_ctrl, *ctrl_state, m)
        }
        _ => return None,
    })
}

/// The 4x4 matrix (row/column index `bit(q0) + 2*bit(q1)`) of a 2-qubit gate.
pub fn matrix_2q(gate: &Gate, p: &[f64]) -> Option<[C; 16]> {
    use Gate::*;
    let arg = |i: usize| p.get(i).copied().unwrap_or(0.0);
    let (c, s) = ((arg(0) / 2.0).cos(), (arg(0) / 2.0).sin());
    let (cc, ss) = (C::new(c, 0.0), C::new(s, 0.0));
    let h = C::new(FRAC_1_SQRT_2, 0.0);
    if let Some((1, st, m)) = controlled_1q(gate, p, 2) {
        // qubit 0 is the control.
        let mut u = [C0; 16];
        let (act, idle) = if st & 1 == 1 { (1, 0) } else { (0, 1) };
        u[idle * 5] = C1; // |t=0,c=idle>
        u[(idle + 2) * 4 + idle + 2] = C1;
        u[act * 4 + act] = m[0];
        u[act * 4 + act + 2] = m[1];
        u[(act + 2) * 4 + act] = m[2];
        u[(act + 2) * 4 + act + 2] = m[3];
        return Some(u);
    }
    Some(match gate {
        Swap => [C1, C0, C0, C0, C0, C0, C1, C0, C0, C1, C0, C0, C0, C0, C0, C1],
        ISwap => [C1, C0, C0, C0, C0, C0, CI, C0, C0, CI, C0, C0, C0, C0, C0, C1],
        DCX => [C1, C0, C0, C0, C0, C0, C0, C1, C0, C1, C0, C0, C0, C0, C1, C0],
        ECR => [C0, h, C0, CI * h, h, C0, -CI * h, C0, C0, CI * h, C0, h, -CI * h, C0, h, C0],
        RXX => {
            let m = -CI * ss;
            [cc, C0, C0, m, C0, cc, m, C0, C0, m, cc, C0, m, C0, C0, cc]
        }
        RYY => {
            let m = -CI * ss;
            let pl = CI * ss;
            [cc, C0, C0, pl, C0, cc, m, C0, C0, m, cc, C0, pl, C0, C0, cc]
        }
        RZZ => {
            let (a, b) = (cis(-arg(0) / 2.0), cis(arg(0) / 2.0));
            [a, C0, C0, C0, C0, b, C0, C0, C0, C0, b, C0, C0, C0, C0, a]
        }
        RZX => {
            let m = -CI * ss;
            let pl = CI * ss;
            [cc, C0, m, C0, C0, cc, C0, pl, m, C0, cc, C0, C0, pl, C0, cc]
        }
        XXMinusYY => {
            let b = arg(1);
            [cc, C0, C0, -CI * ss * cis(-b), C0, C1, C0, C0, C0, C0, C1, C0, -CI * ss * cis(b), C0, C0, cc]
        }
        XXPlusYY => {
            let b = arg(1);
            [C1, C0, C0, C0, C0, cc, -CI * ss * cis(-b), C0, C0, -CI * ss * cis(b), cc, C0, C0, C0, C0, C1]
        }
        Inverse(base) => dagger(&matrix_2q(base, p)?, 4).try_into().ok()?,
        _ => return None,
    })
}

/// Conjugate transpose of a `dim x dim` row-major matrix.
pub fn dagger(m: &[C], dim: usize) -> Vec<C> {
    let mut out = vec![C0; dim * dim];
    for r in 0..dim {
        for c in 0..dim {
            out[c * dim + r] = m[r * dim + c].conj();
        }
    }
    out
}

/// The dense matrix of any gate on `nq` qubits (row/column bit `j` = qubit `j` of the gate),
/// built by applying its lowering to basis states. Used for rare gates and by the tests.
pub fn dense_matrix(gate: &Gate, p: &[f64], nq: usize) -> Result<Vec<C>, GateError> {
    if nq > 10 {
        return Err(GateError(format!("gate on {nq} qubits is too large for a dense matrix")));
    }
    let dim = 1usize << nq;
    let qubits: Vec<usize> = (0..nq).collect();
    let mut ops = Vec::new();
    lower(gate, p, &qubits, &mut ops)?;
    let mut out = vec![C0; dim * dim];
    for col in 0..dim {
        let mut v = vec![C0; dim];
        v[col] = C1;
        for op in &ops {
            super::apply_op_unitary(&mut v, op, false);
        }
        for (row, x) in v.iter().enumerate() {
            out[row * dim + col] = *x;
        }
    }
    Ok(out)
}

/// Lower a gate applied to `qubits` with bound parameters `p` to engine operations.
pub fn lower(gate: &Gate, p: &[f64], qubits: &[usize], out: &mut Vec<Op>) -> Result<(), GateError> {
    use Gate::*;
    let nq = qubits.len();
    if let Some(k) = gate.num_qubits() {
        if k != nq {
            return Err(GateError(format!("gate {gate:?} takes {k} qubits, got {nq}")));
        }
    }
    let mut sorted = qubits.to_vec();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w[0] == w[1]) {
        return Err(GateError("a gate is applied to the same qubit twice".into()));
    }
    if nq == 1 {
        if let Some(m) = matrix_1q(gate, p) {
            out.push(Op::M1 { q: qubits[0], m });
            return Ok(());
        }
    }
    if let Some((k, st, m)) = controlled_1q(gate, p, nq) {
        if k + 1 == nq {
            let mut cmask = 0usize;
            let mut cval = 0usize;
            for (j, &q) in qubits[..k].iter().enumerate() {
                cmask |= 1 << q;
                if st >> j & 1 == 1 {
                    cval |= 1 << q;
                }
            }
            out.push(Op::Ctrl1 { cmask, cval, q: qubits[k], m });
            return Ok(());
        }
    }
    match gate {
        Swap => {
            out.push(Op::Swap { a: qubits[0], b: qubits[1] });
            return Ok(());
        }
        CSwap => {
            // cx c,b; ccx a,b,c; cx c,b
            let (a, b, c) = (qubits[0], qubits[1], qubits[2]);
            lower(&CX, &[], &[c, b], out)?;
            lower(&CCX, &[], &[a, b, c], out)?;
            lower(&CX, &[], &[c, b], out)?;
            return Ok(());
        }
        RCCX => {
            let (a, b, c) = (qubits[0], qubits[1], qubits[2]);
            let seq: [(Gate, f64, &[usize]); 9] = [
                (H, 0.0, &[c]),
                (P, PI / 4.0, &[c]),
                (CX, 0.0, &[b, c]),
                (P, -PI / 4.0, &[c]),
                (CX, 0.0, &[a, c]),
                (P, PI / 4.0, &[c]),
                (CX, 0.0, &[b, c]),
                (P, -PI / 4.0, &[c]),
                (H, 0.0, &[c]),
            ];
            for (g, t, qs) in seq {
                lower(&g, &[t], qs, out)?;
            }
            return Ok(());
        }
        RC3X => {
            let (a, b, c, d) = (qubits[0], qubits[1], qubits[2], qubits[3]);
            let q4 = PI / 4.0;
            let seq: [(Gate, f64, &[usize]); 18] = [
                (H, 0.0, &[d]),
                (P, q4, &[d]),
                (CX, 0.0, &[c, d]),
                (P, -q4, &[d]),
                (H, 0.0, &[d]),
                (CX, 0.0, &[a, d]),
                (P, q4, &[d]),
                (CX, 0.0, &[b, d]),
                (P, -q4, &[d]),
                (CX, 0.0, &[a, d]),
                (P, q4, &[d]),
                (CX, 0.0, &[b, d]),
                (P, -q4, &[d]),
                (H, 0.0, &[d]),
                (P, q4, &[d]),
                (CX, 0.0, &[c, d]),
                (P, -q4, &[d]),
                (H, 0.0, &[d]),
            ];
            for (g, t, qs) in seq {
                lower(&g, &[t], qs, out)?;
            }
            return Ok(());
        }
        _ => {}
    }
    if nq == 2 {
        if let Some(m) = matrix_2q(gate, p) {
            let diag = (0..4).all(|r| (0..4).all(|c| r == c || m[r * 4 + c] == C0));
            if diag {
                out.push(Op::Diag2 { a: qubits[0], b: qubits[1], d: [m[0], m[5], m[10], m[15]] });
            } else {
                out.push(Op::M2 { a: qubits[0], b: qubits[1], m });
            }
            return Ok(());
        }
    }
    match gate {
        Unitary(m) => {
            let dim = 1usize << nq;
            if m.len() != dim * dim {
                return Err(GateError(format!("unitary of {} entries on {nq} qubits", m.len())));
            }
            out.push(Op::Dense { qubits: qubits.to_vec(), m: m.to_vec(), cmask: 0, cval: 0 });
            Ok(())
        }
        Controlled { num_ctrl, ctrl_state, base } if *num_ctrl < nq => {
            let k = *num_ctrl;
            let m = dense_matrix(base, p, nq - k)?;
            let mut cmask = 0usize;
            let mut cval = 0usize;
            for (j, &q) in qubits[..k].iter().enumerate() {
                cmask |= 1 << q;
                if ctrl_state >> j & 1 == 1 {
                    cval |= 1 << q;
                }
            }
            out.push(Op::Dense { qubits: qubits[k..].to_vec(), m, cmask, cval });
            Ok(())
        }
        Inverse(base) => {
            let m = dense_matrix(base, p, nq)?;
            out.push(Op::Dense { qubits: qubits.to_vec(), m: dagger(&m, 1 << nq), cmask: 0, cval: 0 });
            Ok(())
        }
        _ => Err(GateError(format!("gate {gate:?} on {nq} qubits is not supported"))),
    }
}
