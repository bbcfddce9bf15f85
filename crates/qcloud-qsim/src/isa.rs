//! The instruction set of a device with a target: the gates it runs natively and the qubit pairs
//! its 2-qubit gates act on. A circuit is checked on its physical qubits, before idle qubits
//! are dropped, as a QPU would refuse a circuit that is not ISA.

use crate::ir::{Circuit, Gate, Instruction, Operation};
use std::collections::{BTreeSet, HashSet};

/// Instructions every target runs besides its basis gates.
pub const ALWAYS_ALLOWED: [&str; 6] = ["measure", "barrier", "delay", "reset", "id", "if_else"];

/// A device's instruction set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Isa {
    /// Gate names as Qiskit writes them (`ecr`, `rz`, `sx`, `x`, ...).
    pub basis_gates: BTreeSet<String>,
    /// Directed pairs `(control, target)` a 2-qubit gate may act on.
    pub coupling: HashSet<(usize, usize)>,
}

/// Qiskit's name of a gate (`Gate::Controlled` and `Gate::Inverse` by their parts).
pub fn gate_name(g: &Gate) -> String {
    use Gate::*;
    let s = match g {
        I => "id",
        X => "x",
        Y => "y",
        Z => "z",
        H => "h",
        S => "s",
        Sdg => "sdg",
        T => "t",
        Tdg => "tdg",
        SX => "sx",
        SXdg => "sxdg",
        RX => "rx",
        RY => "ry",
        RZ => "rz",
        P => "p",
        U => "u",
        U2 => "u2",
        R => "r",
        CX => "cx",
        CY => "cy",
        CZ => "cz",
        CH => "ch",
        CS => "cs",
        CSdg => "csdg",
        CSX => "csx",
        CP => "cp",
        CRX => "crx",
        CRY => "cry",
        CRZ => "crz",
        CU => "cu",
        CU3 => "cu3",
        Swap => "swap",
        ISwap => "iswap",
        ECR => "ecr",
        DCX => "dcx",
        RXX => "rxx",
        RYY => "ryy",
        RZZ => "rzz",
        RZX => "rzx",
        XXMinusYY => "xx_minus_yy",
        XXPlusYY => "xx_plus_yy",
        CCX => "ccx",
        CCZ => "ccz",
        CSwap => "cswap",
        RCCX => "rccx",
        C3X => "mcx",
        C3SX => "c3sx",
        RC3X => "rcccx",
        MCX => "mcx",
        Unitary(_) => "unitary",
        Controlled { num_ctrl, base, .. } => return format!("c{num_ctrl}{}", gate_name(base)),
        Inverse(base) => return format!("{}_dg", gate_name(base)),
    };
    s.to_string()
}

fn check_block(ins: &[Instruction], isa: &Isa) -> Result<(), String> {
    for i in ins {
        let name = match &i.op {
            Operation::Gate { gate, .. } => gate_name(gate),
            Operation::IfElse { true_body, false_body, .. } => {
                check_block(true_body, isa)?;
                check_block(false_body, isa)?;
                continue;
            }
            Operation::Measure { .. } | Operation::Reset | Operation::Barrier | Operation::Delay => continue,
        };
        if !isa.basis_gates.contains(&name) && !ALWAYS_ALLOWED.contains(&name.as_str()) {
            let basis: Vec<&str> = isa.basis_gates.iter().map(String::as_str).collect();
            return Err(format!(
                "gate '{name}' on qubit(s) {:?} is not in the device's basis gates [{}]: transpile the circuit \
                 for this device",
                i.qubits,
                basis.join(", ")
            ));
        }
        if let [a, b] = i.qubits[..] {
            if !isa.coupling.contains(&(a, b)) {
                return Err(format!(
                    "gate '{name}' on qubits ({a}, {b}): the pair is not in the device's coupling map: \
                     transpile the circuit for this device"
                ));
            }
        }
    }
    Ok(())
}

/// Check that a circuit runs on the instruction set as it is.
pub fn check(c: &Circuit, isa: &Isa) -> Result<(), String> {
    check_block(&c.instructions, isa)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::ParamExpr;

    #[test]
    fn basis_and_coupling_are_enforced() {
        let isa = Isa {
            basis_gates: ["ecr", "rz", "sx", "x"].into_iter().map(String::from).collect(),
            coupling: [(0, 1), (1, 0)].into_iter().collect(),
        };
        let g = |gate: Gate, qubits: Vec<usize>| Instruction {
            op: Operation::Gate { params: vec![ParamExpr::Const(0.1); gate.num_params()], gate },
            qubits,
            condition: None,
        };
        let mut c = Circuit::new(3, 1);
        c.instructions = vec![
            g(Gate::RZ, vec![2]),
            g(Gate::ECR, vec![1, 0]),
            g(Gate::I, vec![2]),
            Instruction { op: Operation::Measure { clbit: 0 }, qubits: vec![0], condition: None },
        ];
        assert_eq!(check(&c, &isa), Ok(()));
        c.instructions.push(g(Gate::H, vec![1]));
        let e = check(&c, &isa).unwrap_err();
        assert!(e.contains("gate 'h' on qubit(s) [1]") && e.contains("ecr, rz, sx, x"), "{e}");
        c.instructions.pop();
        c.instructions.push(g(Gate::ECR, vec![1, 2]));
        let e = check(&c, &isa).unwrap_err();
        assert!(e.contains("gate 'ecr' on qubits (1, 2)") && e.contains("coupling map"), "{e}");
    }
}
