//! Qiskit's standard gate classes as IR gates, including multi-controlled families and open
//! controls (`ctrl_state` other than all ones).

use super::{syntax, unsupported, Reader};
use crate::error::ReadError;
use crate::ir::Gate;

impl Reader<'_> {
    pub(super) fn standard_gate(
        &self,
        name: &str,
        num_qubits: usize,
        num_ctrl: u32,
        ctrl_state: u32,
        pos: usize,
    ) -> Result<Gate, ReadError> {
        let all_ones = |n: u32| -> u64 {
            if n >= 64 {
                u64::MAX
            } else {
                (1u64 << n) - 1
            }
        };
        let open = num_ctrl > 0 && u64::from(ctrl_state) != all_ones(num_ctrl);
        // Multi-controlled families: the number of controls comes from the header.
        let multi = match name {
            "MCXGate" | "MCXGrayCode" => Some(Gate::X),
            "MCPhaseGate" | "MCU1Gate" => Some(Gate::P),
            "MCXRecursive" | "MCXVChain" => return Err(unsupported(format!("'{name}' (uses ancilla qubits)"))),
            _ => None,
        };
        if let Some(base) = multi {
            let n = num_ctrl as usize;
            if n == 0 || n + 1 != num_qubits {
                return Err(syntax(format!("'{name}' with {n} controls applied to {num_qubits} qubits"), pos));
            }
            if open || base != Gate::X {
                if n == 1 && !open {
                    return Ok(Gate::CP);
                }
                return Ok(Gate::Controlled { num_ctrl: n, ctrl_state: u64::from(ctrl_state), base: Box::new(base) });
            }
            return Ok(match n {
                1 => Gate::CX,
                2 => Gate::CCX,
                _ => Gate::MCX,
            });
        }
        let (gate, base) =
            std_gate(name).ok_or_else(|| unsupported(format!("instruction '{name}' (not a known standard gate)")))?;
        let gate = if open {
            match base {
                Some((n, b)) if n == num_ctrl as usize => {
                    Gate::Controlled { num_ctrl: n, ctrl_state: u64::from(ctrl_state), base: Box::new(b) }
                }
                _ => {
                    return Err(unsupported(format!("'{name}' with control state {ctrl_state} on {num_ctrl} controls")))
                }
            }
        } else {
            gate
        };
        if gate.num_qubits() != Some(num_qubits) {
            return Err(syntax(format!("'{name}' applied to {num_qubits} qubits"), pos));
        }
        Ok(gate)
    }
}

/// Qiskit gate class name -> IR gate, plus (number of controls, base gate) for controlled gates
/// so that open controls (`ctrl_state` other than all ones) can be expressed.
fn std_gate(name: &str) -> Option<(Gate, Option<(usize, Gate)>)> {
    use Gate::*;
    let g = |g: Gate| Some((g, None));
    let c = |g: Gate, n: usize, b: Gate| Some((g, Some((n, b))));
    match name {
        "IGate" => g(I),
        "XGate" => g(X),
        "YGate" => g(Y),
        "ZGate" => g(Z),
        "HGate" => g(H),
        "SGate" => g(S),
        "SdgGate" => g(Sdg),
        "TGate" => g(T),
        "TdgGate" => g(Tdg),
        "SXGate" => g(SX),
        "SXdgGate" => g(SXdg),
        "RXGate" => g(RX),
        "RYGate" => g(RY),
        "RZGate" => g(RZ),
        "PhaseGate" | "U1Gate" => g(P),
        "UGate" | "U3Gate" => g(U),
        "U2Gate" => g(U2),
        "RGate" => g(R),
        "CXGate" => c(CX, 1, X),
        "CYGate" => c(CY, 1, Y),
        "CZGate" => c(CZ, 1, Z),
        "CHGate" => c(CH, 1, H),
        "CSGate" => c(CS, 1, S),
        "CSdgGate" => c(CSdg, 1, Sdg),
        "CSXGate" => c(CSX, 1, SX),
        "CPhaseGate" | "CU1Gate" => c(CP, 1, P),
        "CRXGate" => c(CRX, 1, RX),
        "CRYGate" => c(CRY, 1, RY),
        "CRZGate" => c(CRZ, 1, RZ),
        "CUGate" => g(CU),
        "CU3Gate" => c(CU3, 1, U),
        "SwapGate" => g(Swap),
        "iSwapGate" => g(ISwap),
        "ECRGate" => g(ECR),
        "DCXGate" => g(DCX),
        "RXXGate" => g(RXX),
        "RYYGate" => g(RYY),
        "RZZGate" => g(RZZ),
        "RZXGate" => g(RZX),
        "XXMinusYYGate" => g(XXMinusYY),
        "XXPlusYYGate" => g(XXPlusYY),
        "CCXGate" => c(CCX, 2, X),
        "CCZGate" => c(CCZ, 2, Z),
        "CSwapGate" => c(CSwap, 1, Swap),
        "RCCXGate" => g(RCCX),
        "C3XGate" => c(C3X, 3, X),
        "C3SXGate" => c(C3SX, 3, SX),
        "RC3XGate" | "RCCCXGate" => g(RC3X),
        _ => None,
    }
}
