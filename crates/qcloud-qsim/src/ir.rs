//! The circuit IR that all three readers (OpenQASM 2, OpenQASM 3, QPY) produce and the engine runs.
//!
//! Qubits and clbits are flat indices (`0..num_qubits`, `0..num_clbits`); classical registers name
//! ordered groups of clbits, in declaration order (this is the order of Qiskit's `circuit.cregs`,
//! and the order of the Sampler's result fields). Gate parameters are symbolic expressions so that a
//! circuit can be parsed once and bound many times (parameter sweeps).

use std::collections::HashMap;
use std::fmt;

/// A quantum circuit, as read from any of the three formats.
#[derive(Debug, Clone, PartialEq)]
pub struct Circuit {
    pub name: Option<String>,
    pub num_qubits: usize,
    pub num_clbits: usize,
    /// Classical registers in declaration order. A clbit may belong to no register (QPY) or to
    /// several (aliasing registers); bit `i` of a register is `bits[i]` (bit 0 is the rightmost
    /// character of the register's bitstring).
    pub cregs: Vec<ClassicalRegister>,
    pub instructions: Vec<Instruction>,
    pub global_phase: ParamExpr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClassicalRegister {
    pub name: String,
    pub bits: Vec<usize>,
}

/// One instruction: an operation applied to qubits (and clbits for measurement).
#[derive(Debug, Clone, PartialEq)]
pub struct Instruction {
    pub op: Operation,
    pub qubits: Vec<usize>,
    /// Legacy `c_if`-style condition (OpenQASM 2 `if (c == 1) x q[0];`); `None` almost always.
    pub condition: Option<Condition>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// A unitary gate with its parameters (`params.len() == gate.num_params()`).
    Gate { gate: Gate, params: Vec<ParamExpr> },
    /// Measure `qubits[0]` into `clbit`.
    Measure { clbit: usize },
    /// Reset `qubits[0]` to |0>.
    Reset,
    /// A scheduling hint: no effect on the state.
    Barrier,
    /// A delay: no effect on an ideal simulator.
    Delay,
    /// `if (condition) { true_body } else { false_body }`; bodies use the circuit's own qubit and
    /// clbit indices. The instruction's `qubits` are the qubits the bodies touch, ascending (as
    /// Qiskit's `IfElseOp` acts on them): see [`body_qubits`].
    IfElse { condition: Condition, true_body: Vec<Instruction>, false_body: Vec<Instruction> },
}

/// A classical condition: the value of one clbit, or of a group of clbits read as an unsigned
/// integer (bit 0 = least significant), compared for equality with `value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub bits: Vec<usize>,
    pub value: u64,
}

/// The gates the engine knows natively. Custom gate definitions are inlined by the readers;
/// anything else can be given as a dense matrix ([`Gate::Unitary`]) or a controlled gate.
#[derive(Debug, Clone, PartialEq)]
pub enum Gate {
    I,
    X,
    Y,
    Z,
    H,
    S,
    Sdg,
    T,
    Tdg,
    SX,
    SXdg,
    /// RX(theta)
    RX,
    RY,
    RZ,
    /// Phase(lambda) = U1(lambda)
    P,
    /// U(theta, phi, lambda) = U3
    U,
    /// U2(phi, lambda)
    U2,
    /// R(theta, phi)
    R,
    CX,
    CY,
    CZ,
    CH,
    CS,
    CSdg,
    CSX,
    /// CP(lambda) = CU1
    CP,
    CRX,
    CRY,
    CRZ,
    /// CU(theta, phi, lambda, gamma)
    CU,
    /// CU3(theta, phi, lambda)
    CU3,
    Swap,
    ISwap,
    ECR,
    DCX,
    RXX,
    RYY,
    RZZ,
    RZX,
    /// XXMinusYY(theta, beta)
    XXMinusYY,
    /// XXPlusYY(theta, beta)
    XXPlusYY,
    CCX,
    CCZ,
    CSwap,
    RCCX,
    /// 3-controlled X
    C3X,
    /// 3-controlled sqrt(X)
    C3SX,
    /// Relative-phase 3-controlled X
    RC3X,
    /// Multi-controlled X on `qubits.len() - 1` controls.
    MCX,
    /// A dense unitary on `k` qubits: `2^k x 2^k`, row-major. Row/column index bit `j` is
    /// `qubits[j]` (Qiskit's little-endian convention).
    Unitary(std::sync::Arc<Vec<num_complex::Complex64>>),
    /// `base` controlled on the first `num_ctrl` qubits, active when those qubits read
    /// `ctrl_state` (bit `j` for control `j`); the base acts on the remaining qubits and takes
    /// the instruction's parameters.
    Controlled {
        num_ctrl: usize,
        ctrl_state: u64,
        base: Box<Gate>,
    },
    /// The inverse of `base` (with the same parameters).
    Inverse(Box<Gate>),
}

impl Gate {
    /// Number of parameters the gate takes.
    pub fn num_params(&self) -> usize {
        use Gate::*;
        match self {
            RX | RY | RZ | P | CP | CRX | CRY | CRZ | RXX | RYY | RZZ | RZX => 1,
            U2 | R | XXMinusYY | XXPlusYY => 2,
            U | CU3 => 3,
            CU => 4,
            Controlled { base, .. } | Inverse(base) => base.num_params(),
            _ => 0,
        }
    }

    /// Number of qubits, where fixed (`None` for `MCX`, which takes any number >= 2, and for
    /// `Unitary`, whose size follows from its matrix).
    pub fn num_qubits(&self) -> Option<usize> {
        use Gate::*;
        Some(match self {
            I | X | Y | Z | H | S | Sdg | T | Tdg | SX | SXdg | RX | RY | RZ | P | U | U2 | R => 1,
            CX | CY | CZ | CH | CS | CSdg | CSX | CP | CRX | CRY | CRZ | CU | CU3 | Swap | ISwap | ECR | DCX | RXX
            | RYY | RZZ | RZX | XXMinusYY | XXPlusYY => 2,
            CCX | CCZ | CSwap | RCCX => 3,
            C3X | C3SX | RC3X => 4,
            MCX => return None,
            Unitary(m) => {
                let dim = (m.len() as f64).sqrt() as usize;
                dim.trailing_zeros() as usize
            }
            Controlled { num_ctrl, base, .. } => num_ctrl + base.num_qubits()?,
            Inverse(base) => base.num_qubits()?,
        })
    }
}

/// A symbolic gate parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamExpr {
    Const(f64),
    /// A named parameter. A `ParameterVector` element is named `"vec[i]"`.
    Symbol(String),
    Neg(Box<ParamExpr>),
    Add(Box<ParamExpr>, Box<ParamExpr>),
    Sub(Box<ParamExpr>, Box<ParamExpr>),
    Mul(Box<ParamExpr>, Box<ParamExpr>),
    Div(Box<ParamExpr>, Box<ParamExpr>),
    Pow(Box<ParamExpr>, Box<ParamExpr>),
    Func(Func, Box<ParamExpr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Exp,
    Ln,
    Sqrt,
    Abs,
    Sign,
}

/// A parameter that was not given a value, or an expression with no finite value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BindError {
    #[error("parameter '{0}' has no value")]
    Unbound(String),
    #[error("parameter expression evaluates to a non-finite value")]
    NotFinite,
}

impl ParamExpr {
    pub fn constant(v: f64) -> Self {
        ParamExpr::Const(v)
    }

    /// The value of a constant expression, if it has no symbols.
    pub fn as_const(&self) -> Option<f64> {
        self.eval(&HashMap::new()).ok()
    }

    /// Evaluate with the given parameter values.
    pub fn eval(&self, values: &HashMap<String, f64>) -> Result<f64, BindError> {
        use ParamExpr::*;
        let v = match self {
            Const(c) => *c,
            Symbol(s) => *values.get(s).ok_or_else(|| BindError::Unbound(s.clone()))?,
            Neg(a) => -a.eval(values)?,
            Add(a, b) => a.eval(values)? + b.eval(values)?,
            Sub(a, b) => a.eval(values)? - b.eval(values)?,
            Mul(a, b) => a.eval(values)? * b.eval(values)?,
            Div(a, b) => a.eval(values)? / b.eval(values)?,
            Pow(a, b) => a.eval(values)?.powf(b.eval(values)?),
            Func(f, a) => {
                let x = a.eval(values)?;
                match f {
                    self::Func::Sin => x.sin(),
                    self::Func::Cos => x.cos(),
                    self::Func::Tan => x.tan(),
                    self::Func::Asin => x.asin(),
                    self::Func::Acos => x.acos(),
                    self::Func::Atan => x.atan(),
                    self::Func::Exp => x.exp(),
                    self::Func::Ln => x.ln(),
                    self::Func::Sqrt => x.sqrt(),
                    self::Func::Abs => x.abs(),
                    self::Func::Sign => x.signum(),
                }
            }
        };
        if v.is_finite() {
            Ok(v)
        } else {
            Err(BindError::NotFinite)
        }
    }

    /// Every symbol that appears in the expression (with repetitions).
    pub fn symbols<'a>(&'a self, out: &mut Vec<&'a str>) {
        use ParamExpr::*;
        match self {
            Const(_) => {}
            Symbol(s) => out.push(s),
            Neg(a) | Func(_, a) => a.symbols(out),
            Add(a, b) | Sub(a, b) | Mul(a, b) | Div(a, b) | Pow(a, b) => {
                a.symbols(out);
                b.symbols(out);
            }
        }
    }
}

impl fmt::Display for ParamExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ParamExpr::*;
        match self {
            Const(c) => write!(f, "{c}"),
            Symbol(s) => write!(f, "{s}"),
            Neg(a) => write!(f, "(-{a})"),
            Add(a, b) => write!(f, "({a} + {b})"),
            Sub(a, b) => write!(f, "({a} - {b})"),
            Mul(a, b) => write!(f, "({a} * {b})"),
            Div(a, b) => write!(f, "({a} / {b})"),
            Pow(a, b) => write!(f, "({a} ** {b})"),
            Func(func, a) => write!(f, "{}({a})", format!("{func:?}").to_lowercase()),
        }
    }
}

impl Circuit {
    pub fn new(num_qubits: usize, num_clbits: usize) -> Self {
        Circuit {
            name: None,
            num_qubits,
            num_clbits,
            cregs: Vec::new(),
            instructions: Vec::new(),
            global_phase: ParamExpr::Const(0.0),
        }
    }

    /// The circuit's free parameters in Qiskit's order (`QuantumCircuit.parameters`): sorted by
    /// name, with `ParameterVector` elements `"v[i]"` ordered by vector name, then index.
    pub fn parameters(&self) -> Vec<String> {
        fn walk<'a>(ins: &'a [Instruction], out: &mut Vec<&'a str>) {
            for i in ins {
                match &i.op {
                    Operation::Gate { params, .. } => params.iter().for_each(|p| p.symbols(out)),
                    Operation::IfElse { true_body, false_body, .. } => {
                        walk(true_body, out);
                        walk(false_body, out);
                    }
                    _ => {}
                }
            }
        }
        let mut names = Vec::new();
        walk(&self.instructions, &mut names);
        self.global_phase.symbols(&mut names);
        let mut names: Vec<String> = names.into_iter().map(str::to_owned).collect();
        names.sort_by(|a, b| parameter_sort_key(a).cmp(&parameter_sort_key(b)));
        names.dedup();
        names
    }

    /// True when the circuit needs per-shot simulation: a measurement followed by more quantum
    /// operations on a measured qubit, a reset, or a classical condition.
    pub fn needs_per_shot(&self) -> bool {
        fn dynamic(ins: &[Instruction], measured: &mut [bool]) -> bool {
            for i in ins {
                match &i.op {
                    Operation::Reset | Operation::IfElse { .. } => return true,
                    _ if i.condition.is_some() => return true,
                    Operation::Measure { .. } => {
                        // Out-of-range indices are reported by the engine, never a panic here.
                        for &q in &i.qubits {
                            if let Some(m) = measured.get_mut(q) {
                                *m = true;
                            }
                        }
                    }
                    Operation::Gate { .. } => {
                        if i.qubits.iter().any(|&q| measured.get(q).copied().unwrap_or(false)) {
                            return true;
                        }
                    }
                    Operation::Barrier | Operation::Delay => {}
                }
            }
            false
        }
        let mut measured = vec![false; self.num_qubits];
        dynamic(&self.instructions, &mut measured)
    }
}

/// The qubits an `IfElse` acts on: every qubit its bodies touch, ascending, once each.
pub fn body_qubits(true_body: &[Instruction], false_body: &[Instruction]) -> Vec<usize> {
    let mut qs: Vec<usize> = true_body.iter().chain(false_body).flat_map(|i| i.qubits.iter().copied()).collect();
    qs.sort_unstable();
    qs.dedup();
    qs
}

/// Sort key of Qiskit's parameter order: the name, with a trailing `[index]` compared numerically.
fn parameter_sort_key(name: &str) -> (&str, Option<u64>, &str) {
    if let Some(open) = name.rfind('[') {
        if let Some(idx) = name[open + 1..].strip_suffix(']') {
            if let Ok(i) = idx.parse::<u64>() {
                return (&name[..open], Some(i), "");
            }
        }
    }
    (name, None, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_order_is_qiskits() {
        let mut c = Circuit::new(1, 0);
        for name in ["theta[10]", "theta[2]", "beta", "theta[0]"] {
            c.instructions.push(Instruction {
                op: Operation::Gate { gate: Gate::RX, params: vec![ParamExpr::Symbol(name.into())] },
                qubits: vec![0],
                condition: None,
            });
        }
        assert_eq!(c.parameters(), vec!["beta", "theta[0]", "theta[2]", "theta[10]"]);
    }

    #[test]
    fn eval_reports_unbound_and_non_finite() {
        let e = ParamExpr::Div(Box::new(ParamExpr::Const(1.0)), Box::new(ParamExpr::Symbol("x".into())));
        assert_eq!(e.eval(&HashMap::new()), Err(BindError::Unbound("x".into())));
        let vals = HashMap::from([("x".to_string(), 0.0)]);
        assert_eq!(e.eval(&vals), Err(BindError::NotFinite));
        let vals = HashMap::from([("x".to_string(), 4.0)]);
        assert_eq!(e.eval(&vals), Ok(0.25));
    }
}
