//! Idle qubits dropped before allocation, as Aer does.
//!
//! A circuit transpiled for a device spans all of the device's qubits (127 on an IBM Eagle) even
//! when it acts on three of them. The qubits no gate, measurement, reset or conditional body
//! touches stay |0> for the whole run, so the state vector is allocated on the touched qubits
//! only: they are renumbered onto a compact register `0..k` in ascending order. Barriers, delays
//! and identity gates act on nothing; they keep their touched qubits and vanish when none is left.
//! Classical bits, registers and so the result layout are unchanged.

use crate::ir::{body_qubits, Circuit, Gate, Instruction, Operation};

/// Where each qubit of the circuit went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QubitMap {
    /// `compact[q]`: the compact index of qubit `q`, `None` for an idle qubit.
    pub compact: Vec<Option<usize>>,
    /// Number of qubits simulated.
    pub width: usize,
}

impl QubitMap {
    /// The identity map of `n` qubits (nothing dropped).
    pub fn identity(n: usize) -> Self {
        QubitMap { compact: (0..n).map(Some).collect(), width: n }
    }
}

/// An instruction with no effect on the state: it touches no qubit by itself.
fn is_inert(i: &Instruction) -> bool {
    matches!(i.op, Operation::Barrier | Operation::Delay | Operation::Gate { gate: Gate::I, .. })
}

fn mark(ins: &[Instruction], touched: &mut [bool]) -> bool {
    for i in ins {
        if let Operation::IfElse { true_body, false_body, .. } = &i.op {
            if !mark(true_body, touched) || !mark(false_body, touched) {
                return false;
            }
            continue;
        }
        if is_inert(i) {
            continue;
        }
        for &q in &i.qubits {
            match touched.get_mut(q) {
                Some(t) => *t = true,
                None => return false,
            }
        }
    }
    true
}

/// The qubits the circuit acts on, as a map onto a compact register. A circuit with an
/// out-of-range qubit index gets the identity map (the engine reports the index); a circuit that
/// touches no qubit keeps qubit 0 (a state vector has at least one qubit).
pub fn qubit_map(c: &Circuit) -> QubitMap {
    let mut touched = vec![false; c.num_qubits];
    if !mark(&c.instructions, &mut touched) {
        return QubitMap::identity(c.num_qubits);
    }
    if c.num_qubits > 0 && !touched.iter().any(|&t| t) {
        touched[0] = true;
    }
    let mut width = 0;
    let compact = touched
        .into_iter()
        .map(|t| {
            t.then(|| {
                width += 1;
                width - 1
            })
        })
        .collect();
    QubitMap { compact, width }
}

fn remap(ins: &[Instruction], map: &QubitMap) -> Vec<Instruction> {
    let at = |q: usize| map.compact.get(q).copied().flatten();
    let mut out = Vec::with_capacity(ins.len());
    for i in ins {
        let mut i = i.clone();
        if let Operation::IfElse { true_body, false_body, .. } = &mut i.op {
            *true_body = remap(true_body, map);
            *false_body = remap(false_body, map);
            i.qubits = body_qubits(true_body, false_body);
        } else if is_inert(&i) {
            i.qubits = i.qubits.iter().filter_map(|&q| at(q)).collect();
            if i.qubits.is_empty() {
                continue;
            }
        } else {
            // Every qubit of a state-changing instruction was marked touched.
            i.qubits = i.qubits.iter().map(|&q| at(q).unwrap_or(q)).collect();
        }
        out.push(i);
    }
    out
}

/// The circuit on its compact register, and the map that took it there.
pub fn compact(c: &Circuit) -> (Circuit, QubitMap) {
    let map = qubit_map(c);
    if map.width == c.num_qubits && map.compact.iter().enumerate().all(|(q, m)| *m == Some(q)) {
        return (c.clone(), map);
    }
    let mut out = c.clone();
    out.num_qubits = map.width;
    out.instructions = remap(&c.instructions, &map);
    (out, map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Condition, ParamExpr};

    fn ins(op: Operation, qubits: &[usize]) -> Instruction {
        Instruction { op, qubits: qubits.to_vec(), condition: None }
    }
    fn gate(g: Gate, qubits: &[usize]) -> Instruction {
        let params = vec![ParamExpr::Const(0.5); g.num_params()];
        ins(Operation::Gate { gate: g, params }, qubits)
    }

    #[test]
    fn touched_qubits_are_renumbered_in_order() {
        let mut c = Circuit::new(10, 2);
        c.instructions = vec![
            gate(Gate::H, &[7]),
            ins(Operation::Barrier, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
            gate(Gate::I, &[5]),
            gate(Gate::CX, &[7, 2]),
            ins(Operation::Delay, &[9]),
            ins(Operation::Measure { clbit: 1 }, &[2]),
            ins(
                Operation::IfElse {
                    condition: Condition { bits: vec![1], value: 1 },
                    true_body: vec![gate(Gate::X, &[8])],
                    false_body: vec![ins(Operation::Reset, &[4])],
                },
                &[4, 8],
            ),
        ];
        let (k, map) = compact(&c);
        assert_eq!(map.width, 4);
        assert_eq!(map.compact[2], Some(0));
        assert_eq!(map.compact[4], Some(1));
        assert_eq!(map.compact[7], Some(2));
        assert_eq!(map.compact[8], Some(3));
        assert_eq!(map.compact[5], None);
        assert_eq!((k.num_qubits, k.num_clbits), (4, 2));
        let qubits: Vec<Vec<usize>> = k.instructions.iter().map(|i| i.qubits.clone()).collect();
        // The identity on idle qubit 5 and the delay on idle qubit 9 are gone.
        assert_eq!(qubits, vec![vec![2], vec![0, 1, 2, 3], vec![2, 0], vec![0], vec![1, 3]]);
        let Operation::IfElse { true_body, false_body, .. } = &k.instructions[4].op else { panic!("if") };
        assert_eq!((true_body[0].qubits.clone(), false_body[0].qubits.clone()), (vec![3], vec![1]));
    }

    #[test]
    fn a_circuit_touching_everything_is_unchanged_and_one_touching_nothing_keeps_a_qubit() {
        let mut c = Circuit::new(2, 0);
        c.instructions = vec![gate(Gate::CZ, &[1, 0])];
        assert_eq!(compact(&c).0, c);
        let mut idle = Circuit::new(5, 0);
        idle.instructions = vec![ins(Operation::Barrier, &[0, 1, 2, 3, 4])];
        let (k, map) = compact(&idle);
        assert_eq!((k.num_qubits, map.width), (1, 1));
        assert_eq!(k.instructions[0].qubits, vec![0]);
        let mut bad = Circuit::new(2, 0);
        bad.instructions = vec![gate(Gate::X, &[5])];
        assert_eq!(compact(&bad).0, bad, "out-of-range indices are left for the engine to report");
    }
}
