//! The state-vector engine: a circuit, bound to parameter values, is compiled to a list of
//! [`Op`]s (gate kernels, measurements, resets, conditions), consecutive 1-qubit gates are fused,
//! and the ops run on a vector of `2^n` complex amplitudes.

pub mod blocked;
pub mod gates;
pub mod kernels;

use crate::ir::{Circuit, Condition, Instruction, Operation};
use num_complex::Complex64 as C;
use rand::Rng;
use std::collections::HashMap;

/// States with at least this many qubits use rayon's pool (measured: below it the split costs
/// more than it gains).
pub const PAR_QUBITS: usize = 14;

/// One engine operation on the state vector.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// 2x2 matrix (row-major) on qubit `q`.
    M1 {
        q: usize,
        m: [C; 4],
    },
    /// 2x2 matrix on `q` where `i & cmask == cval`.
    Ctrl1 {
        cmask: usize,
        cval: usize,
        q: usize,
        m: [C; 4],
    },
    /// Diagonal on `(a, b)`, indexed `bit_a + 2*bit_b`.
    Diag2 {
        a: usize,
        b: usize,
        d: [C; 4],
    },
    /// 4x4 matrix on `(a, b)`, indexed `bit_a + 2*bit_b`.
    M2 {
        a: usize,
        b: usize,
        m: [C; 16],
    },
    Swap {
        a: usize,
        b: usize,
    },
    /// Dense matrix on `qubits` (bit `j` = `qubits[j]`) where `i & cmask == cval`.
    Dense {
        qubits: Vec<usize>,
        m: Vec<C>,
        cmask: usize,
        cval: usize,
    },
    Measure {
        q: usize,
        clbit: usize,
    },
    Reset {
        q: usize,
    },
    /// `if (cond) { then } else { otherwise }`.
    If {
        cond: Condition,
        then: Vec<Op>,
        otherwise: Vec<Op>,
    },
}

impl Op {
    pub fn is_unitary(&self) -> bool {
        !matches!(self, Op::Measure { .. } | Op::Reset { .. } | Op::If { .. })
    }
}

/// Apply a unitary op (measurement/reset/condition are ignored here).
pub fn apply_op_unitary(amps: &mut [C], op: &Op, par: bool) {
    match op {
        Op::M1 { q, m } => kernels::apply_1q(amps, *q, m, par),
        Op::Ctrl1 { cmask, cval, q, m } => kernels::apply_ctrl_1q(amps, *cmask, *cval, *q, m, par),
        Op::Diag2 { a, b, d } => kernels::apply_diag_2q(amps, *a, *b, d, par),
        Op::M2 { a, b, m } => kernels::apply_2q(amps, *a, *b, m, par),
        Op::Swap { a, b } => kernels::apply_swap(amps, *a, *b, par),
        Op::Dense { qubits, m, cmask, cval } => kernels::apply_dense(amps, qubits, m, *cmask, *cval),
        Op::Measure { .. } | Op::Reset { .. } | Op::If { .. } => {}
    }
}

/// Why a circuit could not be compiled for the engine.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CompileError {
    #[error("{0}")]
    Bind(#[from] crate::ir::BindError),
    #[error("{0}")]
    Gate(String),
    #[error("instruction refers to qubit {0} or clbit beyond the circuit")]
    OutOfRange(usize),
}

/// A circuit bound to parameter values and lowered to engine ops.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    pub num_qubits: usize,
    pub num_clbits: usize,
    pub ops: Vec<Op>,
}

/// Options of compilation.
#[derive(Debug, Clone, Copy)]
pub struct CompileOptions {
    /// Multiply runs of 1-qubit gates on the same qubit into one matrix.
    pub fuse: bool,
    /// Drop measurements (the Estimator's view of a circuit).
    pub drop_measurements: bool,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions { fuse: true, drop_measurements: false }
    }
}

/// Bind `circuit` to `values` and lower it to ops.
pub fn compile(
    circuit: &Circuit,
    values: &HashMap<String, f64>,
    opts: CompileOptions,
) -> Result<Program, CompileError> {
    let mut ops = Vec::with_capacity(circuit.instructions.len());
    lower_block(circuit, &circuit.instructions, values, opts, &mut ops)?;
    if opts.fuse {
        ops = fuse_1q(ops, circuit.num_qubits);
    }
    Ok(Program { num_qubits: circuit.num_qubits, num_clbits: circuit.num_clbits, ops })
}

fn check_cond(c: &Circuit, cond: &Condition) -> Result<(), CompileError> {
    match cond.bits.iter().find(|&&b| b >= c.num_clbits) {
        Some(&b) => Err(CompileError::OutOfRange(b)),
        None => Ok(()),
    }
}

fn lower_block(
    c: &Circuit,
    ins: &[Instruction],
    values: &HashMap<String, f64>,
    opts: CompileOptions,
    out: &mut Vec<Op>,
) -> Result<(), CompileError> {
    for i in ins {
        if let Some(&q) = i.qubits.iter().find(|&&q| q >= c.num_qubits) {
            return Err(CompileError::OutOfRange(q));
        }
        let mut local = Vec::new();
        let target: &mut Vec<Op> = if i.condition.is_some() { &mut local } else { out };
        match &i.op {
            Operation::Gate { gate, params } => {
                if params.len() != gate.num_params() {
                    return Err(CompileError::Gate(format!(
                        "gate {gate:?} takes {} parameters, got {}",
                        gate.num_params(),
                        params.len()
                    )));
                }
                let p = params.iter().map(|e| e.eval(values)).collect::<Result<Vec<f64>, _>>()?;
                gates::lower(gate, &p, &i.qubits, target).map_err(|e| CompileError::Gate(e.0))?;
            }
            Operation::Measure { clbit } => {
                if *clbit >= c.num_clbits || i.qubits.len() != 1 {
                    return Err(CompileError::OutOfRange(*clbit));
                }
                if !opts.drop_measurements {
                    target.push(Op::Measure { q: i.qubits[0], clbit: *clbit });
                }
            }
            Operation::Reset => {
                for &q in &i.qubits {
                    target.push(Op::Reset { q });
                }
            }
            Operation::Barrier | Operation::Delay => {}
            Operation::IfElse { condition, true_body, false_body } => {
                check_cond(c, condition)?;
                let mut then = Vec::new();
                let mut otherwise = Vec::new();
                lower_block(c, true_body, values, opts, &mut then)?;
                lower_block(c, false_body, values, opts, &mut otherwise)?;
                target.push(Op::If { cond: condition.clone(), then, otherwise });
            }
        }
        if let Some(cond) = &i.condition {
            check_cond(c, cond)?;
            out.push(Op::If { cond: cond.clone(), then: local, otherwise: Vec::new() });
        }
    }
    Ok(())
}

fn mul2(a: &[C; 4], b: &[C; 4]) -> [C; 4] {
    // a * b
    [a[0] * b[0] + a[1] * b[2], a[0] * b[1] + a[1] * b[3], a[2] * b[0] + a[3] * b[2], a[2] * b[1] + a[3] * b[3]]
}

/// Fuse runs of 1-qubit gates on the same qubit (gates on other qubits in between commute with
/// them) into one 2x2 matrix, emitted just before the next op that touches the qubit.
pub fn fuse_1q(ops: Vec<Op>, n: usize) -> Vec<Op> {
    let mut pending: Vec<Option<[C; 4]>> = vec![None; n];
    let mut out = Vec::with_capacity(ops.len());
    fn flush(q: usize, pending: &mut [Option<[C; 4]>], out: &mut Vec<Op>) {
        if let Some(m) = pending.get_mut(q).and_then(Option::take) {
            if kernels::classify(&m) != kernels::Kind1::Identity {
                out.push(Op::M1 { q, m });
            }
        }
    }
    for op in ops {
        match op {
            Op::M1 { q, m } if q < n => {
                pending[q] = Some(match pending[q] {
                    Some(prev) => mul2(&m, &prev),
                    None => m,
                });
            }
            Op::If { .. } => {
                // Conditions read clbits: flush everything before them.
                for q in 0..n {
                    flush(q, &mut pending, &mut out);
                }
                out.push(op);
            }
            _ => {
                for q in op_qubits(&op) {
                    flush(q, &mut pending, &mut out);
                }
                out.push(op);
            }
        }
    }
    for q in 0..n {
        flush(q, &mut pending, &mut out);
    }
    out
}

/// The qubits an op touches (not for `If`).
fn op_qubits(op: &Op) -> Vec<usize> {
    let bits = |mask: usize| (0..usize::BITS as usize).filter(move |b| mask >> b & 1 == 1);
    match op {
        Op::M1 { q, .. } | Op::Measure { q, .. } | Op::Reset { q } => vec![*q],
        Op::Ctrl1 { cmask, q, .. } => bits(*cmask).chain([*q]).collect(),
        Op::Diag2 { a, b, .. } | Op::M2 { a, b, .. } | Op::Swap { a, b } => vec![*a, *b],
        Op::Dense { qubits, cmask, .. } => bits(*cmask).chain(qubits.iter().copied()).collect(),
        Op::If { .. } => Vec::new(),
    }
}

/// Whether two unitary instruction lists on `n` (few) qubits have the same unitary up to a global
/// phase. Lists that do not compile, or are not unitary, are not the same.
pub fn same_unitary(n: usize, a: &[Instruction], b: &[Instruction]) -> bool {
    if n > 6 {
        return false;
    }
    let columns = |ins: &[Instruction]| -> Option<Vec<C>> {
        let mut c = Circuit::new(n, 0);
        c.instructions = ins.to_vec();
        let prog = compile(&c, &HashMap::new(), CompileOptions::default()).ok()?;
        if !prog.is_static() || prog.ops.iter().any(|op| matches!(op, Op::Measure { .. } | Op::Reset { .. })) {
            return None;
        }
        let mut all = Vec::with_capacity(1 << (2 * n));
        for basis in 0..1usize << n {
            let mut sv = StateVector::zero(n);
            sv.amps[0] = C::new(0.0, 0.0);
            sv.amps[basis] = C::new(1.0, 0.0);
            sv.apply_unitaries_unblocked(&prog.ops);
            all.extend(sv.amps);
        }
        Some(all)
    };
    let (Some(ua), Some(ub)) = (columns(a), columns(b)) else { return false };
    // The phase between them, from the largest entry of `b`.
    let Some(k) = (0..ub.len()).max_by(|&i, &j| ub[i].norm().total_cmp(&ub[j].norm())) else { return false };
    if ub[k].norm() < 1e-9 {
        return false;
    }
    let phase = ua[k] / ub[k];
    (phase.norm() - 1.0).abs() < 1e-9 && ua.iter().zip(&ub).all(|(x, y)| (x - phase * y).norm() < 1e-9)
}

/// A state vector of `n` qubits.
#[derive(Debug, Clone)]
pub struct StateVector {
    pub n: usize,
    pub amps: Vec<C>,
}

impl StateVector {
    /// |0...0> on `n` qubits (the caller checks memory limits first).
    pub fn zero(n: usize) -> Self {
        let mut amps = vec![C::new(0.0, 0.0); 1usize << n];
        amps[0] = C::new(1.0, 0.0);
        StateVector { n, amps }
    }

    fn par(&self) -> bool {
        self.n >= PAR_QUBITS
    }

    /// Apply unitary ops; non-unitary ops are skipped.
    pub fn apply_unitaries(&mut self, ops: &[Op]) {
        let par = self.par();
        blocked::apply_blocked(&mut self.amps, self.n, ops, par);
    }

    /// Apply unitary ops one pass per op (no cache blocking): the reference for tests.
    pub fn apply_unitaries_unblocked(&mut self, ops: &[Op]) {
        let par = self.par();
        for op in ops {
            apply_op_unitary(&mut self.amps, op, par);
        }
    }

    /// Measure qubit `q`, collapsing the state.
    pub fn measure<R: Rng>(&mut self, q: usize, rng: &mut R) -> bool {
        let par = self.par();
        let p1 = kernels::prob_one(&self.amps, q, par).clamp(0.0, 1.0);
        let outcome = rng.gen::<f64>() < p1;
        let p = if outcome { p1 } else { 1.0 - p1 };
        kernels::collapse(&mut self.amps, q, outcome, p, par);
        outcome
    }

    /// Run all ops (measurements, resets, conditions included) for one shot.
    pub fn run_shot<R: Rng>(&mut self, ops: &[Op], clbits: &mut [bool], rng: &mut R) {
        let par = self.par();
        for op in ops {
            match op {
                Op::Measure { q, clbit } => {
                    let v = self.measure(*q, rng);
                    if let Some(b) = clbits.get_mut(*clbit) {
                        *b = v;
                    }
                }
                Op::Reset { q } => {
                    if self.measure(*q, rng) {
                        let x = gates::matrix_1q(&crate::ir::Gate::X, &[]);
                        if let Some(m) = x {
                            kernels::apply_1q(&mut self.amps, *q, &m, par);
                        }
                    }
                }
                Op::If { cond, then, otherwise } => {
                    if condition_holds(cond, clbits) {
                        self.run_shot(then, clbits, rng);
                    } else {
                        self.run_shot(otherwise, clbits, rng);
                    }
                }
                _ => apply_op_unitary(&mut self.amps, op, par),
            }
        }
    }

    /// Sample `shots` basis states from the current state: returns (basis index, count) pairs.
    pub fn sample<R: Rng>(&self, shots: u64, rng: &mut R) -> Vec<(usize, u64)> {
        let mut u: Vec<f64> = (0..shots).map(|_| rng.gen::<f64>()).collect();
        u.sort_unstable_by(f64::total_cmp);
        let total = kernels::norm_sqr(&self.amps, self.par());
        let mut out: Vec<(usize, u64)> = Vec::new();
        let mut acc = 0.0;
        let mut k = 0usize;
        let mut last_nonzero = 0usize;
        for (i, a) in self.amps.iter().enumerate() {
            if k >= u.len() {
                break;
            }
            let p = a.norm_sqr();
            if p == 0.0 {
                continue;
            }
            last_nonzero = i;
            acc += p / total;
            let start = k;
            while k < u.len() && u[k] < acc {
                k += 1;
            }
            if k > start {
                out.push((i, (k - start) as u64));
            }
        }
        if k < u.len() {
            // Rounding left a few draws above the accumulated total: give them to the last state.
            let rest = (u.len() - k) as u64;
            match out.last_mut() {
                Some((i, c)) if *i == last_nonzero => *c += rest,
                _ => out.push((last_nonzero, rest)),
            }
        }
        out
    }
}

/// Whether a classical condition holds for the given clbit values.
pub fn condition_holds(cond: &Condition, clbits: &[bool]) -> bool {
    if cond.bits.len() > 64 {
        // Values are u64: more bits than that compare equal only if the high bits are zero.
        let high_zero = cond.bits[64..].iter().all(|&b| !clbits.get(b).copied().unwrap_or(false));
        let low = Condition { bits: cond.bits[..64].to_vec(), value: cond.value };
        return high_zero && condition_holds(&low, clbits);
    }
    let mut v = 0u64;
    for (j, &b) in cond.bits.iter().enumerate() {
        if clbits.get(b).copied().unwrap_or(false) {
            v |= 1 << j;
        }
    }
    v == cond.value
}

/// Run a compiled program for `shots` shots and return the clbit outcomes with their counts.
///
/// Without mid-circuit measurement, reset or condition (see [`Program::is_static`]) the final state
/// is computed once and all shots are sampled from it; otherwise the unitary prefix is computed once
/// and each shot continues from a copy of it.
pub fn run_counts<R: Rng>(prog: &Program, shots: u64, rng: &mut R) -> Vec<(Vec<bool>, u64)> {
    let mut sv = StateVector::zero(prog.num_qubits);
    if let Some(measure_map) = prog.final_measurements() {
        let par = sv.par();
        blocked::apply_blocked(&mut sv.amps, sv.n, &prog.ops, par);
        let mut counts: HashMap<Vec<bool>, u64> = HashMap::new();
        for (idx, c) in sv.sample(shots, rng) {
            let mut bits = vec![false; prog.num_clbits];
            for &(q, clbit) in &measure_map {
                bits[clbit] = idx >> q & 1 == 1;
            }
            *counts.entry(bits).or_insert(0) += c;
        }
        return counts.into_iter().collect();
    }
    let prefix = prog.ops.iter().take_while(|o| o.is_unitary()).count();
    sv.apply_unitaries(&prog.ops[..prefix]);
    let rest = &prog.ops[prefix..];
    let mut counts: HashMap<Vec<bool>, u64> = HashMap::new();
    for _ in 0..shots {
        let mut s = sv.clone();
        let mut bits = vec![false; prog.num_clbits];
        s.run_shot(rest, &mut bits, rng);
        *counts.entry(bits).or_insert(0) += 1;
    }
    counts.into_iter().collect()
}

impl Program {
    /// If every measurement comes after the last gate on its qubit and there is no reset or
    /// condition: the (qubit, clbit) pairs in order (a later pair for the same clbit wins).
    pub fn final_measurements(&self) -> Option<Vec<(usize, usize)>> {
        let mut measured = vec![false; self.num_qubits];
        let mut map = Vec::new();
        for op in &self.ops {
            match op {
                Op::Measure { q, clbit } => {
                    measured[*q] = true;
                    map.push((*q, *clbit));
                }
                Op::Reset { .. } | Op::If { .. } => return None,
                _ => {
                    if op_qubits(op).iter().any(|&q| measured[q]) {
                        return None;
                    }
                }
            }
        }
        Some(map)
    }

    /// True when the program has no measurement-dependent behaviour.
    pub fn is_static(&self) -> bool {
        self.final_measurements().is_some()
    }
}
