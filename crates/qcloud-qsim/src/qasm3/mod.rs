//! OpenQASM 3 reader.
//!
//! A self-contained lexer (`lexer`) and recursive-descent parser (`parser`) for the subset of
//! OpenQASM 3 that Qiskit writes and that a gate-model simulator can run, then a lowering pass (this
//! module) that resolves names, inlines custom gates, applies gate modifiers, unrolls constant
//! `for` loops and produces the circuit IR.
//!
//! Why not `oq3_semantics` / `oq3_syntax` (Qiskit's openqasm3_parser, 0.7): its parser rejects
//! `qreg`/`creg`, `measure q -> c;`, `**` and brace-less `if` bodies (all of which Qiskit's own
//! exporters write), and its semantic pass panics on inputs such as `sin(x)` in gate arguments,
//! `if (!c[0])`, array declarations and `cal` blocks. A small parser we own is easier to keep
//! panic-free and bounded than a large one we would have to wrap in `catch_unwind`.
//!
//! Hostile input: the source size is checked first; every recursive rule counts its depth against
//! [`ReadLimits::max_depth`]; qubit/clbit counts, emitted instructions and expansion work are
//! bounded; `include` is only ever compared with `"stdgates.inc"` (the gates are built in) and
//! never opens a file.
//!
//! Semantics worth knowing:
//! - Only `U` and `gphase` are builtin; the other standard gates need `include "stdgates.inc";`
//!   and map to the IR's native gates (`u1`/`phase` -> `P`, `u3` -> `U`, `CX` -> `CX`, ...).
//! - `bit[n] c;`, `creg c[n];` and classical `let` aliases are registers (`Circuit::cregs`, in
//!   declaration order); `bit c;` is a loose clbit, as in Qiskit. Qubits and clbits are numbered
//!   in declaration order. Physical qubits `$n` (in programs without qubit declarations) are
//!   qubit `n`, and the circuit has `max(n) + 1` qubits.
//! - Modifiers: `ctrl`/`negctrl` become [`Gate::Controlled`] (or the named controlled gate when
//!   one exists, e.g. `ctrl @ x` -> `CX`); `inv` and integer `pow(k)` fold into one signed
//!   exponent: the inverse gate (rotations get negated angles, `s` -> `sdg`, ...) repeated `|k|`
//!   times. On custom gates they are pushed down through the definition. A controlled `gphase`
//!   is a phase gate on the last control.
//! - `gphase` outside any `if` adds to `Circuit::global_phase`; inside an `if` body it is a
//!   phase on one classical branch only, which no measurement can observe, and is dropped.
//! - `if` conditions: a bit (`c[0]`, `!c[0]`), or a bit/register compared with `==`/`!=` to an
//!   integer, boolean or bit string. A negated register comparison swaps the two bodies.
//! - `for` loops over constant ranges/sets are unrolled; the loop variable is a constant.
//! - Gate parameters: `input float|angle|int|uint` names become [`ParamExpr::Symbol`]s; constant
//!   sub-expressions are folded.

mod lexer;
mod parser;
pub mod writer;

pub use writer::{write, WriteError};

use std::collections::HashMap;
use std::f64::consts::{E, PI, TAU};

use crate::error::{ReadError, ReadLimits};
use crate::ir::{Circuit, ClassicalRegister, Condition, Func, Gate, Instruction, Operation, ParamExpr};
use parser::{BinOp, Expr, ForIter, Index, Modifier, Operand, Stmt, StmtKind};

pub(crate) const FORMAT: &str = "OpenQASM 3";

/// Most nodes in one parameter expression of the IR.
const MAX_EXPR_NODES: usize = 4096;
/// Most parameters of a custom gate.
const MAX_GATE_PARAMS: usize = 1024;

/// Node count and depth of an expression; stops descending below `max_depth` (so the recursion
/// is bounded and the reported depth is then `max_depth + 1`).
fn expr_size(p: &ParamExpr, max_depth: usize) -> (usize, usize) {
    fn walk(p: &ParamExpr, d: usize, max: usize, nodes: &mut usize, deepest: &mut usize) {
        *nodes = nodes.saturating_add(1);
        *deepest = (*deepest).max(d);
        if d > max {
            return;
        }
        match p {
            ParamExpr::Const(_) | ParamExpr::Symbol(_) => {}
            ParamExpr::Neg(a) | ParamExpr::Func(_, a) => walk(a, d + 1, max, nodes, deepest),
            ParamExpr::Add(a, b)
            | ParamExpr::Sub(a, b)
            | ParamExpr::Mul(a, b)
            | ParamExpr::Div(a, b)
            | ParamExpr::Pow(a, b) => {
                walk(a, d + 1, max, nodes, deepest);
                walk(b, d + 1, max, nodes, deepest);
            }
        }
    }
    let (mut nodes, mut depth) = (0, 0);
    walk(p, 1, max_depth, &mut nodes, &mut depth);
    (nodes, depth)
}

pub(crate) fn syntax(msg: &str, line: u32, col: u32) -> ReadError {
    ReadError::Syntax { format: FORMAT, message: msg.to_string(), location: Some(format!("line {line}, column {col}")) }
}

pub(crate) fn unsupported(msg: &str) -> ReadError {
    ReadError::Unsupported { format: FORMAT, message: msg.to_string() }
}

fn too_large(msg: String) -> ReadError {
    ReadError::TooLarge { format: FORMAT, message: msg }
}

/// Read an OpenQASM 3 program (also accepts the `OPENQASM 2.0;` + `stdgates.inc` + `qreg`/`creg`
/// dialect that Qiskit's `qasm3.dumps` writes for some circuits).
pub fn parse(src: &str, limits: &ReadLimits) -> Result<Circuit, ReadError> {
    if src.len() > limits.max_source_bytes {
        return Err(too_large(format!("source is {} bytes, the limit is {}", src.len(), limits.max_source_bytes)));
    }
    let toks = lexer::tokenize(src)?;
    let stmts = parser::Parser::new(&toks, limits.max_depth.max(1)).program()?;
    let mut l = Lowerer::new(limits);
    let mut out = Vec::new();
    l.block(&stmts, &mut out, &mut Scope::default(), true)?;
    let num_qubits = if let Some(hw) = l.hw_max { hw + 1 } else { l.num_qubits };
    Ok(Circuit {
        name: None,
        num_qubits,
        num_clbits: l.num_clbits,
        cregs: l.cregs,
        instructions: out,
        global_phase: l.global_phase,
    })
}

/// A native gate of `stdgates.inc` (or a builtin): name, IR gate, parameter and qubit counts.
fn std_gate(name: &str, stdgates: bool) -> Option<(Gate, usize, usize)> {
    use Gate::*;
    if name == "U" {
        return Some((U, 3, 1));
    }
    if !stdgates {
        return None;
    }
    Some(match name {
        "p" | "phase" | "u1" => (P, 1, 1),
        "x" => (X, 0, 1),
        "y" => (Y, 0, 1),
        "z" => (Z, 0, 1),
        "h" => (H, 0, 1),
        "s" => (S, 0, 1),
        "sdg" => (Sdg, 0, 1),
        "t" => (T, 0, 1),
        "tdg" => (Tdg, 0, 1),
        "sx" => (SX, 0, 1),
        "rx" => (RX, 1, 1),
        "ry" => (RY, 1, 1),
        "rz" => (RZ, 1, 1),
        "cx" | "CX" => (CX, 0, 2),
        "cy" => (CY, 0, 2),
        "cz" => (CZ, 0, 2),
        "cp" | "cphase" => (CP, 1, 2),
        "crx" => (CRX, 1, 2),
        "cry" => (CRY, 1, 2),
        "crz" => (CRZ, 1, 2),
        "ch" => (CH, 0, 2),
        "swap" => (Swap, 0, 2),
        "ccx" => (CCX, 0, 3),
        "cswap" => (CSwap, 0, 3),
        "cu" => (CU, 4, 2),
        "id" => (I, 0, 1),
        "u2" => (U2, 2, 1),
        "u3" => (U, 3, 1),
        _ => return None,
    })
}

struct GateDef<'a> {
    params: &'a [String],
    qubits: &'a [String],
    body: &'a [Stmt],
}

enum Sym<'a> {
    Qubits {
        bits: Vec<usize>,
        single: bool,
    },
    Bits {
        bits: Vec<usize>,
        single: bool,
    },
    /// An `input` parameter or a `const`.
    Value(ParamExpr),
    Gate(GateDef<'a>),
}

/// Local names: loop variables (global context) or gate parameters and qubits (inside a gate).
#[derive(Default)]
struct Scope {
    /// Loop variables, innermost last (few: bounded by the nesting depth).
    values: Vec<(String, ParamExpr)>,
    /// Parameters of the gate being inlined.
    params: HashMap<String, ParamExpr>,
    gate_qubits: Option<HashMap<String, usize>>,
    /// Inside an `if` body: a global phase there is conditional, hence unobservable, and dropped.
    in_branch: bool,
}

impl Scope {
    fn value(&self, name: &str) -> Option<&ParamExpr> {
        self.values.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v).or_else(|| self.params.get(name))
    }
}

/// Native gates that `stdgates.inc` lacks, by the name Qiskit's exporter defines them under.
fn qiskit_native(name: &str) -> Option<Gate> {
    use Gate::*;
    Some(match name {
        "ecr" => ECR,
        "sxdg" => SXdg,
        "iswap" => ISwap,
        "dcx" => DCX,
        "rzx" => RZX,
        "rxx" => RXX,
        "ryy" => RYY,
        "rzz" => RZZ,
        "cs" => CS,
        "csdg" => CSdg,
        "csx" => CSX,
        "ccz" => CCZ,
        "r" => R,
        "xx_minus_yy" => XXMinusYY,
        "xx_plus_yy" => XXPlusYY,
        _ => return None,
    })
}

/// Controls added by modifiers (outermost first) and the inverse flag, pushed down while
/// inlining custom gates.
#[derive(Clone, Default)]
struct Mods {
    ctrls: Vec<(usize, bool)>,
    inverse: bool,
}

struct Lowerer<'a> {
    limits: &'a ReadLimits,
    syms: HashMap<String, Sym<'a>>,
    stdgates: bool,
    num_qubits: usize,
    num_clbits: usize,
    cregs: Vec<ClassicalRegister>,
    hw_max: Option<usize>,
    global_phase: ParamExpr,
    emitted: usize,
    steps: usize,
    statements_seen: usize,
    /// Custom gates found to be native gates (see [`Lowerer::recognized_native`]).
    natives: HashMap<String, Option<Gate>>,
}

fn c(v: f64) -> ParamExpr {
    ParamExpr::Const(v)
}

fn neg(p: ParamExpr) -> ParamExpr {
    match p {
        ParamExpr::Const(v) => c(-v),
        ParamExpr::Neg(inner) => *inner,
        p => ParamExpr::Neg(Box::new(p)),
    }
}

fn add(a: ParamExpr, b: ParamExpr) -> ParamExpr {
    match (&a, &b) {
        (ParamExpr::Const(x), ParamExpr::Const(y)) => c(x + y),
        (ParamExpr::Const(x), _) if *x == 0.0 => b,
        (_, ParamExpr::Const(y)) if *y == 0.0 => a,
        _ => ParamExpr::Add(Box::new(a), Box::new(b)),
    }
}

/// Fold a constant result, rejecting non-finite constants.
///
/// Expressions are built bottom-up with every constant subtree already folded, so only the
/// immediate operands need looking at (constant time per node).
fn fold(e: ParamExpr, line: u32, col: u32) -> Result<ParamExpr, ReadError> {
    let is_c = |p: &ParamExpr| matches!(p, ParamExpr::Const(_));
    let constant = match &e {
        ParamExpr::Const(_) => return Ok(e),
        ParamExpr::Symbol(_) => false,
        ParamExpr::Neg(a) | ParamExpr::Func(_, a) => is_c(a),
        ParamExpr::Add(a, b)
        | ParamExpr::Sub(a, b)
        | ParamExpr::Mul(a, b)
        | ParamExpr::Div(a, b)
        | ParamExpr::Pow(a, b) => is_c(a) && is_c(b),
    };
    if !constant {
        return Ok(e);
    }
    match e.as_const() {
        Some(v) => Ok(c(v)),
        None => Err(syntax("constant expression has no finite value", line, col)),
    }
}

impl<'a> Lowerer<'a> {
    fn new(limits: &'a ReadLimits) -> Self {
        Lowerer {
            limits,
            syms: HashMap::new(),
            stdgates: false,
            num_qubits: 0,
            num_clbits: 0,
            cregs: Vec::new(),
            hw_max: None,
            global_phase: c(0.0),
            emitted: 0,
            steps: 0,
            statements_seen: 0,
            natives: HashMap::new(),
        }
    }

    /// A custom gate that is a native gate under its Qiskit name (Qiskit's exporter defines
    /// `ecr`, `rzx`, `iswap`, ... in every file, since `stdgates.inc` lacks them): the native
    /// gate when the definition has the same unitary (checked once per name, numerically, at
    /// generic parameter values), so that a transpiled circuit keeps its basis gates.
    fn recognized_native(&mut self, name: &str, def: &GateDef<'a>, depth: usize) -> Result<Option<Gate>, ReadError> {
        if let Some(known) = self.natives.get(name) {
            return Ok(known.clone());
        }
        let found = match qiskit_native(name) {
            Some(g) if g.num_params() == def.params.len() && g.num_qubits() == Some(def.qubits.len()) => {
                let n = def.qubits.len();
                let targets: Vec<usize> = (0..n).collect();
                let mut same = true;
                for probe in [[0.37, 1.21, -0.83, 2.05], [-1.4, 0.52, 0.91, -2.3]] {
                    let params: Vec<ParamExpr> = probe.iter().take(g.num_params()).map(|&v| c(v)).collect();
                    let mut body = Vec::new();
                    // In a branch scope a `gphase` of the body is dropped: phases are compared apart.
                    let probe_scope = Scope { in_branch: true, ..Scope::default() };
                    self.inline(def, &params, &targets, &Mods::default(), &probe_scope, &mut body, depth)?;
                    let native =
                        vec![Instruction { op: gate_op(g.clone(), params), qubits: targets.clone(), condition: None }];
                    same &= crate::engine::same_unitary(n, &body, &native);
                    if g.num_params() == 0 {
                        break;
                    }
                }
                same.then_some(g)
            }
            _ => None,
        };
        self.natives.insert(name.to_string(), found.clone());
        Ok(found)
    }

    fn step(&mut self) -> Result<(), ReadError> {
        self.step_by(1)
    }

    /// Account for `cost` units of expansion work (a gate application costs the size of its
    /// parameters, which are cloned into every instruction).
    fn step_by(&mut self, cost: usize) -> Result<(), ReadError> {
        self.steps = self.steps.saturating_add(cost);
        let max = self.limits.max_instructions.saturating_mul(16).max(4096);
        if self.steps > max {
            return Err(too_large(format!(
                "program expands to more than {max} steps (gate inlining / loop unrolling)"
            )));
        }
        Ok(())
    }

    fn emit(&mut self, out: &mut Vec<Instruction>, op: Operation, qubits: Vec<usize>) -> Result<(), ReadError> {
        self.emitted += 1;
        if self.emitted > self.limits.max_instructions {
            return Err(too_large(format!(
                "more than {} instructions after inlining and unrolling",
                self.limits.max_instructions
            )));
        }
        out.push(Instruction { op, qubits, condition: None });
        Ok(())
    }

    fn declare(&mut self, name: &str, sym: Sym<'a>, line: u32, col: u32) -> Result<(), ReadError> {
        // Gate names may not shadow builtin gates; registers and parameters live apart from
        // gates in this reader (a register may be called `x`).
        let gate_clash = matches!(sym, Sym::Gate(_)) && (std_gate(name, self.stdgates).is_some() || name == "gphase");
        if self.syms.contains_key(name) || gate_clash || matches!(name, "pi" | "π" | "tau" | "τ" | "euler" | "ℇ") {
            return Err(syntax(&format!("'{name}' is already defined"), line, col));
        }
        self.syms.insert(name.to_string(), sym);
        Ok(())
    }

    /// Symbolic expressions grow when gates pass their parameters on; keep every expression in
    /// the IR small and shallow (evaluation, cloning and dropping recurse over it).
    fn check_expr(&self, p: &ParamExpr, line: u32) -> Result<(), ReadError> {
        let max_depth = self.limits.max_depth.saturating_mul(4).max(16);
        let (nodes, depth) = expr_size(p, max_depth);
        if depth > max_depth || nodes > MAX_EXPR_NODES {
            return Err(too_large(format!(
                "parameter expression (line {line}) has more than {MAX_EXPR_NODES} terms or is \
                 nested deeper than {max_depth}"
            )));
        }
        Ok(())
    }

    fn block(
        &mut self,
        stmts: &'a [Stmt],
        out: &mut Vec<Instruction>,
        scope: &mut Scope,
        top: bool,
    ) -> Result<(), ReadError> {
        for s in stmts {
            self.stmt(s, out, scope, top)?;
            if top {
                self.statements_seen += 1;
            }
        }
        Ok(())
    }

    fn stmt(&mut self, s: &'a Stmt, out: &mut Vec<Instruction>, scope: &mut Scope, top: bool) -> Result<(), ReadError> {
        let (line, col) = (s.line, s.col);
        let global_only = |what: &str| -> Result<(), ReadError> {
            if top {
                Ok(())
            } else {
                Err(syntax(&format!("{what} is only allowed at the top level of the program"), line, col))
            }
        };
        match &s.kind {
            StmtKind::Version(v) => self.version(v, top, line, col)?,
            StmtKind::Include(path) => {
                global_only("'include'")?;
                self.include(path, line)?;
            }
            StmtKind::QubitDecl { name, size } => {
                global_only("a qubit declaration")?;
                self.qubit_decl(name, size.as_ref(), line, col)?;
            }
            StmtKind::BitDecl { name, size } => {
                global_only("a bit declaration")?;
                self.bit_decl(name, size.as_ref(), line, col)?;
            }
            StmtKind::Alias { name, parts } => {
                global_only("'let'")?;
                self.alias(name, parts, scope, line, col)?;
            }
            StmtKind::Input { ty, name } => {
                global_only("an input declaration")?;
                if !matches!(ty.as_str(), "float" | "angle" | "int" | "uint") {
                    return Err(unsupported(&format!("'input {ty}' (line {line})")));
                }
                self.declare(name, Sym::Value(ParamExpr::Symbol(name.clone())), line, col)?;
            }
            StmtKind::Const { name, value } => {
                global_only("a const declaration")?;
                let v = self.param(value, scope, line, col)?;
                if v.as_const().is_none() {
                    return Err(syntax(&format!("const '{name}' needs a constant value"), line, col));
                }
                self.declare(name, Sym::Value(v), line, col)?;
            }
            StmtKind::GateDef { name, params, qubits, body } => {
                global_only("a gate definition")?;
                self.check_gate_def(name, params, qubits, body)?;
                self.declare(name, Sym::Gate(GateDef { params, qubits, body }), line, col)?;
            }
            StmtKind::GateCall { modifiers, name, args, operands } => {
                self.call(modifiers, name, args, operands, scope, &Mods::default(), out, 0, line, col)?;
            }
            StmtKind::Measure { qubits, target } => self.measure(qubits, target.as_ref(), scope, out, line, col)?,
            StmtKind::Reset(op) => {
                let (qs, _) = self.qubit_operand(op, scope, line, col)?;
                for q in qs {
                    self.emit(out, Operation::Reset, vec![q])?;
                }
            }
            StmtKind::Barrier(ops) => self.barrier_or_delay(ops, true, scope, out, line, col)?,
            StmtKind::Delay(ops) => self.barrier_or_delay(ops, false, scope, out, line, col)?,
            StmtKind::If { cond, then_body, else_body } => {
                self.if_else(cond, then_body, else_body, scope, out, line, col)?;
            }
            StmtKind::For { var, iter, body } => {
                let values = self.loop_values(iter, scope, line, col)?;
                for v in values {
                    self.step()?;
                    scope.values.push((var.clone(), v));
                    let r = self.block(body, out, scope, false);
                    scope.values.pop();
                    r?;
                }
            }
        }
        Ok(())
    }

    fn version(&self, v: &str, top: bool, line: u32, col: u32) -> Result<(), ReadError> {
        if !top || self.statements_seen != 0 {
            return Err(syntax("the OPENQASM version must be the first statement", line, col));
        }
        let major = v.split('.').next().unwrap_or_default();
        if major != "3" && major != "2" {
            return Err(unsupported(&format!("OpenQASM version {v}")));
        }
        Ok(())
    }

    fn include(&mut self, path: &str, line: u32) -> Result<(), ReadError> {
        if path == "stdgates.inc" {
            self.stdgates = true;
            Ok(())
        } else {
            Err(unsupported(&format!(
                "include of \"{path}\" (line {line}): only \"stdgates.inc\" is available, \
                 built in; the reader never reads files"
            )))
        }
    }

    fn qubit_decl(&mut self, name: &str, size: Option<&Expr>, line: u32, col: u32) -> Result<(), ReadError> {
        if self.hw_max.is_some() {
            return Err(unsupported("declaring qubits in a program that uses physical qubits ($n)"));
        }
        let n = self.size(size, line, col)?;
        let total = self.num_qubits.saturating_add(n);
        if total > self.limits.max_qubits {
            return Err(too_large(format!("{total} qubits declared, the limit is {}", self.limits.max_qubits)));
        }
        let bits = (self.num_qubits..total).collect();
        self.num_qubits = total;
        let single = size.is_none();
        self.declare(name, Sym::Qubits { bits, single }, line, col)
    }

    fn bit_decl(&mut self, name: &str, size: Option<&Expr>, line: u32, col: u32) -> Result<(), ReadError> {
        let n = self.size(size, line, col)?;
        let total = self.num_clbits.saturating_add(n);
        if total > self.limits.max_clbits {
            return Err(too_large(format!("{total} clbits declared, the limit is {}", self.limits.max_clbits)));
        }
        let bits: Vec<usize> = (self.num_clbits..total).collect();
        self.num_clbits = total;
        // As in Qiskit: `bit[n] c;` is a register, `bit c;` a loose clbit.
        let single = size.is_none();
        if !single {
            self.cregs.push(ClassicalRegister { name: name.to_string(), bits: bits.clone() });
        }
        self.declare(name, Sym::Bits { bits, single }, line, col)
    }

    /// `let name = parts;`: a quantum alias, or a classical one (which is also a register).
    fn alias(&mut self, name: &str, parts: &[Operand], scope: &Scope, line: u32, col: u32) -> Result<(), ReadError> {
        let quantum = match parts.first() {
            Some(Operand::Hw(_)) => true,
            Some(Operand::Named { name: n, .. }) => {
                matches!(self.syms.get(n), Some(Sym::Qubits { .. }))
            }
            None => false,
        };
        let mut bits = Vec::new();
        for part in parts {
            let (b, _) = if quantum {
                self.qubit_operand(part, scope, line, col)?
            } else {
                self.bit_operand(part, scope, line, col)?
            };
            bits.extend(b);
        }
        let mut seen = bits.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != bits.len() || bits.is_empty() {
            return Err(syntax(&format!("alias '{name}' is empty or repeats a bit"), line, col));
        }
        if quantum {
            self.declare(name, Sym::Qubits { bits, single: false }, line, col)?;
        } else {
            // Qiskit reads a classical alias as a register (aliasing the bits).
            self.declare(name, Sym::Bits { bits: bits.clone(), single: false }, line, col)?;
            self.cregs.push(ClassicalRegister { name: name.to_string(), bits });
        }
        Ok(())
    }

    fn measure(
        &mut self,
        qubits: &Operand,
        target: Option<&Operand>,
        scope: &Scope,
        out: &mut Vec<Instruction>,
        line: u32,
        col: u32,
    ) -> Result<(), ReadError> {
        let Some(target) = target else {
            return Err(unsupported(&format!("'measure' without a target bit (line {line})")));
        };
        let (qs, _) = self.qubit_operand(qubits, scope, line, col)?;
        let (bs, _) = self.bit_operand(target, scope, line, col)?;
        if qs.len() != bs.len() {
            return Err(syntax(&format!("measuring {} qubits into {} bits", qs.len(), bs.len()), line, col));
        }
        for (q, b) in qs.into_iter().zip(bs) {
            self.emit(out, Operation::Measure { clbit: b }, vec![q])?;
        }
        Ok(())
    }

    /// `barrier` (one instruction) or `delay` (one per qubit, as Qiskit represents them); no
    /// operands means every qubit.
    fn barrier_or_delay(
        &mut self,
        ops: &[Operand],
        barrier: bool,
        scope: &Scope,
        out: &mut Vec<Instruction>,
        line: u32,
        col: u32,
    ) -> Result<(), ReadError> {
        let mut qs = Vec::new();
        if ops.is_empty() {
            qs = (0..self.num_qubits).collect();
        } else {
            for op in ops {
                qs.extend(self.qubit_operand(op, scope, line, col)?.0);
            }
        }
        let mut seen = qs.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != qs.len() {
            return Err(syntax("duplicate qubit operand", line, col));
        }
        if barrier {
            self.emit(out, Operation::Barrier, qs)?;
        } else {
            for q in qs {
                self.emit(out, Operation::Delay, vec![q])?;
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn if_else(
        &mut self,
        cond: &Expr,
        then_body: &'a [Stmt],
        else_body: &'a [Stmt],
        scope: &mut Scope,
        out: &mut Vec<Instruction>,
        line: u32,
        col: u32,
    ) -> Result<(), ReadError> {
        let (condition, negated) = self.condition(cond, scope, false, line, col)?;
        let was = scope.in_branch;
        scope.in_branch = true;
        let mut t = Vec::new();
        let mut f = Vec::new();
        // Count the IfElse itself before its bodies.
        self.emitted += 1;
        if self.emitted > self.limits.max_instructions {
            return Err(too_large(format!("more than {} instructions", self.limits.max_instructions)));
        }
        let r = self.block(then_body, &mut t, scope, false).and_then(|_| self.block(else_body, &mut f, scope, false));
        scope.in_branch = was;
        r?;
        let (true_body, false_body) = if negated { (f, t) } else { (t, f) };
        let qubits = crate::ir::body_qubits(&true_body, &false_body);
        out.push(Instruction { op: Operation::IfElse { condition, true_body, false_body }, qubits, condition: None });
        Ok(())
    }

    /// A declared size: `None` is 1.
    fn size(&mut self, e: Option<&Expr>, line: u32, col: u32) -> Result<usize, ReadError> {
        let Some(e) = e else {
            return Ok(1);
        };
        let v = self.const_int(e, &Scope::default(), line, col)?;
        if v < 1 {
            return Err(syntax("register size must be at least 1", line, col));
        }
        // Sizes beyond the limits are reported by the callers; saturate here.
        Ok(usize::try_from(v).unwrap_or(usize::MAX))
    }

    fn const_int(&mut self, e: &Expr, scope: &Scope, line: u32, col: u32) -> Result<i128, ReadError> {
        // Integers are kept within +-2^62 so that range arithmetic cannot overflow; anything that
        // large exceeds every limit anyway.
        const BIG: i128 = 1 << 62;
        self.step()?;
        if let Expr::Int(v) = e {
            return Ok(match v {
                Some(v) => i128::try_from(*v).unwrap_or(BIG).min(BIG),
                None => BIG,
            });
        }
        let p = self.param(e, scope, line, col)?;
        let Some(v) = p.as_const() else {
            return Err(syntax("expected a constant integer", line, col));
        };
        if v.fract() != 0.0 || v.abs() > 9.0e15 {
            return Err(syntax(&format!("expected an integer, got {v}"), line, col));
        }
        Ok(v as i128)
    }

    fn loop_values(&mut self, iter: &ForIter, scope: &Scope, line: u32, col: u32) -> Result<Vec<ParamExpr>, ReadError> {
        match iter {
            ForIter::Set(items) => items
                .iter()
                .map(|e| {
                    let v = self.param(e, scope, line, col)?;
                    if v.as_const().is_none() {
                        return Err(unsupported("'for' loops over non-constant values"));
                    }
                    Ok(v)
                })
                .collect(),
            ForIter::Range(start, step, stop) => {
                let (Some(start), Some(stop)) = (start, stop) else {
                    return Err(syntax("a loop range needs a start and a stop", line, col));
                };
                let a = self.loop_bound(start, scope, line, col)?;
                let b = self.loop_bound(stop, scope, line, col)?;
                let s = match step {
                    Some(s) => self.loop_bound(s, scope, line, col)?,
                    None => 1,
                };
                if s == 0 {
                    return Err(syntax("loop range step is zero", line, col));
                }
                let count = if s > 0 && b >= a {
                    (b - a) / s + 1
                } else if s < 0 && a >= b {
                    (a - b) / (-s) + 1
                } else {
                    0
                };
                if count > self.limits.max_instructions as i128 {
                    return Err(too_large(format!(
                        "'for' loop of {count} iterations (the instruction limit is {})",
                        self.limits.max_instructions
                    )));
                }
                Ok((0..count).map(|k| c((a + k * s) as f64)).collect())
            }
        }
    }

    fn loop_bound(&mut self, e: &Expr, scope: &Scope, line: u32, col: u32) -> Result<i128, ReadError> {
        match self.const_int(e, scope, line, col) {
            Err(ReadError::Syntax { message, .. }) if message.starts_with("expected a constant integer") => {
                Err(unsupported(&format!("'for' loops with non-constant bounds (line {line})")))
            }
            r => r,
        }
    }

    /// A gate-parameter expression.
    fn param(&mut self, e: &Expr, scope: &Scope, line: u32, col: u32) -> Result<ParamExpr, ReadError> {
        // Every expression node evaluated is work (constant expressions fold to one node, so
        // the IR size alone would not account for them inside unrolled loops).
        self.step()?;
        let p = match e {
            Expr::Num(v) => c(*v),
            Expr::Int(Some(v)) => c(*v as f64),
            Expr::Int(None) => return Err(syntax("integer literal too large", line, col)),
            Expr::Bool(_) | Expr::BitStr(_) => return Err(syntax("expected a number", line, col)),
            Expr::Ident(name) => self.ident_value(name, scope, line, col)?,
            Expr::Index(name, _) => {
                return Err(unsupported(&format!("classical values ('{name}[...]') in gate arguments (line {line})")))
            }
            Expr::Neg(a) => neg(self.param(a, scope, line, col)?),
            Expr::Not(_) => return Err(syntax("'!' in a numeric expression", line, col)),
            Expr::Bin(op, a, b) => {
                let x = self.param(a, scope, line, col)?;
                let y = self.param(b, scope, line, col)?;
                let (x, y) = (Box::new(x), Box::new(y));
                let r = match op {
                    BinOp::Add => ParamExpr::Add(x, y),
                    BinOp::Sub => ParamExpr::Sub(x, y),
                    BinOp::Mul => ParamExpr::Mul(x, y),
                    BinOp::Div => ParamExpr::Div(x, y),
                    BinOp::Pow => ParamExpr::Pow(x, y),
                    BinOp::Eq => return Err(unsupported("'==' in a gate argument")),
                    BinOp::Ne => return Err(unsupported("'!=' in a gate argument")),
                    BinOp::Other(o) => {
                        return Err(unsupported(&format!("operator '{o}' in a numeric expression (line {line})")))
                    }
                };
                fold(r, line, col)?
            }
            Expr::Call(f, args) => {
                let func = match f.as_str() {
                    "sin" => Func::Sin,
                    "cos" => Func::Cos,
                    "tan" => Func::Tan,
                    "arcsin" | "asin" => Func::Asin,
                    "arccos" | "acos" => Func::Acos,
                    "arctan" | "atan" => Func::Atan,
                    "exp" => Func::Exp,
                    "log" | "ln" => Func::Ln,
                    "sqrt" => Func::Sqrt,
                    "abs" => Func::Abs,
                    _ => return Err(unsupported(&format!("function or subroutine call '{f}(...)' (line {line})"))),
                };
                if args.len() != 1 {
                    return Err(syntax(&format!("'{f}' takes one argument, got {}", args.len()), line, col));
                }
                let a = self.param(&args[0], scope, line, col)?;
                fold(ParamExpr::Func(func, Box::new(a)), line, col)?
            }
        };
        Ok(p)
    }

    fn ident_value(&self, name: &str, scope: &Scope, line: u32, col: u32) -> Result<ParamExpr, ReadError> {
        if let Some(v) = scope.value(name) {
            return Ok(v.clone());
        }
        // Inside a gate body only the gate's own parameters and global constants are visible.
        if let Some(Sym::Value(v)) = self.syms.get(name) {
            let visible = scope.gate_qubits.is_none() || v.as_const().is_some();
            if visible {
                return Ok(v.clone());
            }
        }
        match name {
            "pi" | "π" => Ok(c(PI)),
            "tau" | "τ" => Ok(c(TAU)),
            "euler" | "ℇ" => Ok(c(E)),
            _ => Err(syntax(&format!("unknown identifier '{name}' in an expression"), line, col)),
        }
    }

    /// Resolve an index into a register of length `len` (negative indices count from the end).
    fn indices(
        &mut self,
        index: &Index,
        len: usize,
        scope: &Scope,
        line: u32,
        col: u32,
    ) -> Result<Vec<usize>, ReadError> {
        let one = |i: i128| -> Result<usize, ReadError> {
            let l = len as i128;
            let j = if i < 0 { i + l } else { i };
            if j < 0 || j >= l {
                return Err(syntax(&format!("index {i} out of range for a register of size {len}"), line, col));
            }
            Ok(j as usize)
        };
        match index {
            Index::Single(e) => Ok(vec![one(self.const_int(e, scope, line, col)?)?]),
            Index::Set(items) => {
                let mut v = Vec::with_capacity(items.len());
                for e in items {
                    v.push(one(self.const_int(e, scope, line, col)?)?);
                }
                Ok(v)
            }
            Index::Range(a, s, b) => {
                let a = match a {
                    Some(e) => self.const_int(e, scope, line, col)?,
                    None => 0,
                };
                let b = match b {
                    Some(e) => self.const_int(e, scope, line, col)?,
                    None => len as i128 - 1,
                };
                let s = match s {
                    Some(e) => self.const_int(e, scope, line, col)?,
                    None => 1,
                };
                if s == 0 {
                    return Err(syntax("range step is zero", line, col));
                }
                let (a, b) = (one(a)? as i128, one(b)? as i128);
                let mut v = Vec::new();
                let mut i = a;
                while (s > 0 && i <= b) || (s < 0 && i >= b) {
                    v.push(i as usize);
                    i += s;
                }
                Ok(v)
            }
        }
    }

    /// Qubits of an operand, and whether it is a single qubit (not broadcast).
    fn qubit_operand(
        &mut self,
        op: &Operand,
        scope: &Scope,
        line: u32,
        col: u32,
    ) -> Result<(Vec<usize>, bool), ReadError> {
        if let Some(gq) = &scope.gate_qubits {
            return match op {
                Operand::Named { name, index: None } => match gq.get(name) {
                    Some(&q) => Ok((vec![q], true)),
                    None => Err(syntax(&format!("'{name}' is not a qubit argument of this gate"), line, col)),
                },
                _ => Err(syntax("inside a gate body, operands must be the gate's qubit arguments", line, col)),
            };
        }
        match op {
            Operand::Hw(n) => {
                if self.num_qubits > 0 {
                    return Err(unsupported("physical qubits ($n) in a program that declares qubits"));
                }
                let q: usize = n.parse().unwrap_or(usize::MAX);
                if q >= self.limits.max_qubits {
                    return Err(too_large(format!(
                        "physical qubit ${n}: the limit is {} qubits",
                        self.limits.max_qubits
                    )));
                }
                self.hw_max = Some(self.hw_max.map_or(q, |m| m.max(q)));
                Ok((vec![q], true))
            }
            Operand::Named { name, index } => {
                let bits = match self.syms.get(name) {
                    Some(Sym::Qubits { bits, single }) => {
                        if index.is_none() {
                            return Ok((bits.clone(), *single));
                        }
                        bits.clone()
                    }
                    Some(_) => return Err(syntax(&format!("'{name}' is not a qubit"), line, col)),
                    None => return Err(syntax(&format!("unknown qubit '{name}'"), line, col)),
                };
                let Some(index) = index else {
                    return Ok((bits, false));
                };
                let single = matches!(index, Index::Single(_));
                let idx = self.indices(index, bits.len(), scope, line, col)?;
                Ok((idx.into_iter().map(|i| bits[i]).collect(), single))
            }
        }
    }

    fn bit_operand(
        &mut self,
        op: &Operand,
        scope: &Scope,
        line: u32,
        col: u32,
    ) -> Result<(Vec<usize>, bool), ReadError> {
        match op {
            Operand::Hw(_) => Err(syntax("expected a bit, found a physical qubit", line, col)),
            Operand::Named { name, index } => {
                let (bits, single) = match self.syms.get(name) {
                    Some(Sym::Bits { bits, single }) => (bits.clone(), *single),
                    Some(_) => return Err(syntax(&format!("'{name}' is not a bit"), line, col)),
                    None => return Err(syntax(&format!("unknown bit '{name}'"), line, col)),
                };
                let Some(index) = index else {
                    return Ok((bits, single));
                };
                let single = matches!(index, Index::Single(_));
                let idx = self.indices(index, bits.len(), scope, line, col)?;
                Ok((idx.into_iter().map(|i| bits[i]).collect(), single))
            }
        }
    }

    /// The condition of an `if`, and whether the branches must be swapped.
    fn condition(
        &mut self,
        e: &Expr,
        scope: &Scope,
        negated: bool,
        line: u32,
        col: u32,
    ) -> Result<(Condition, bool), ReadError> {
        match e {
            Expr::Not(inner) => self.condition(inner, scope, !negated, line, col),
            Expr::Ident(_) | Expr::Index(..) => {
                let Some(bits) = self.condition_bits(e, scope, line, col)? else {
                    return Err(unsupported(&format!(
                        "this 'if' condition (line {line}): only bits and bit registers compared \
                         with constants are supported"
                    )));
                };
                if bits.len() != 1 {
                    return Err(unsupported(&format!(
                        "a multi-bit register used as a boolean (line {line}); compare it with \
                         '==' instead"
                    )));
                }
                // `!b` is `b == 0`.
                let value = if negated { 0 } else { 1 };
                Ok((Condition { bits, value }, false))
            }
            Expr::Bin(op @ (BinOp::Eq | BinOp::Ne), a, b) => {
                let neg_here = matches!(op, BinOp::Ne) != negated;
                self.comparison(a, b, neg_here, scope, line, col)
            }
            _ => Err(unsupported(&format!(
                "this 'if' condition (line {line}): only bits and bit registers compared with \
                 constants are supported"
            ))),
        }
    }

    /// The bits a condition operand names, or `None` if it does not name declared bits.
    fn condition_bits(
        &mut self,
        e: &Expr,
        scope: &Scope,
        line: u32,
        col: u32,
    ) -> Result<Option<Vec<usize>>, ReadError> {
        let op = match e {
            Expr::Ident(name) => Operand::Named { name: name.clone(), index: None },
            Expr::Index(name, i) => Operand::Named { name: name.clone(), index: Some(Index::Single((**i).clone())) },
            _ => return Ok(None),
        };
        if let Operand::Named { name, .. } = &op {
            if !matches!(self.syms.get(name), Some(Sym::Bits { .. })) {
                return Ok(None);
            }
        }
        Ok(Some(self.bit_operand(&op, scope, line, col)?.0))
    }

    /// `bits == value` or `bits != value` (in either order); `neg_here`: the test is negated.
    fn comparison(
        &mut self,
        a: &Expr,
        b: &Expr,
        neg_here: bool,
        scope: &Scope,
        line: u32,
        col: u32,
    ) -> Result<(Condition, bool), ReadError> {
        let (bits, other) = match (self.condition_bits(a, scope, line, col)?, self.condition_bits(b, scope, line, col)?)
        {
            (Some(bits), None) => (bits, b),
            (None, Some(bits)) => (bits, a),
            _ => {
                return Err(unsupported(&format!(
                    "this 'if' condition (line {line}): only a bit or register compared \
                     with a constant is supported"
                )))
            }
        };
        let value = self.comparison_value(other, bits.len(), scope, line, col)?;
        if bits.len() > 64 {
            return Err(unsupported("conditions on more than 64 bits"));
        }
        if bits.len() < 128 && value >> bits.len() != 0 {
            return Err(syntax(
                &format!("value {value} does not fit in {} bit(s): the condition is never true", bits.len()),
                line,
                col,
            ));
        }
        let value = value as u64;
        if neg_here && bits.len() == 1 {
            return Ok((Condition { bits, value: 1 - value }, false));
        }
        Ok((Condition { bits, value }, neg_here))
    }

    /// The constant a condition compares `nbits` bits with.
    fn comparison_value(
        &mut self,
        other: &Expr,
        nbits: usize,
        scope: &Scope,
        line: u32,
        col: u32,
    ) -> Result<u128, ReadError> {
        Ok(match other {
            Expr::Bool(v) => *v as u128,
            Expr::BitStr(s) => {
                let s: String = s.chars().filter(|&ch| ch != '_').collect();
                if s.is_empty() || s.len() > 64 || !s.chars().all(|ch| ch == '0' || ch == '1') {
                    return Err(syntax("malformed bit string", line, col));
                }
                if s.len() != nbits {
                    return Err(syntax(
                        &format!("bit string of {} bits compared with {} bits", s.len(), nbits),
                        line,
                        col,
                    ));
                }
                u128::from_str_radix(&s, 2).unwrap_or(u128::MAX)
            }
            other => {
                let v = self.const_int(other, scope, line, col)?;
                if v < 0 {
                    return Err(syntax("cannot compare bits with a negative value", line, col));
                }
                v as u128
            }
        })
    }

    /// Validate a gate definition: only gate calls on the gate's own qubits, of gates defined
    /// before it (so definitions cannot recurse).
    fn check_gate_def(&self, name: &str, params: &[String], qubits: &[String], body: &[Stmt]) -> Result<(), ReadError> {
        // A gate acts on at most 64 qubits (its controls are a 64-bit mask), however wide circuits are.
        let max_gate_qubits = self.limits.max_qubits.min(64);
        if qubits.len() > max_gate_qubits || params.len() > MAX_GATE_PARAMS {
            return Err(too_large(format!(
                "gate '{name}' has {} parameters and {} qubits (limits: {MAX_GATE_PARAMS} and {max_gate_qubits})",
                params.len(),
                qubits.len(),
            )));
        }
        let qubit_set: std::collections::HashSet<&String> = qubits.iter().collect();
        let mut names: Vec<&String> = params.iter().chain(qubits).collect();
        names.sort();
        let n = names.len();
        names.dedup();
        if names.len() != n {
            return Err(unsupported(&format!("gate '{name}' repeats a parameter or qubit name")));
        }
        for s in body {
            let StmtKind::GateCall { name: callee, operands, .. } = &s.kind else {
                if let StmtKind::Barrier(_) = s.kind {
                    continue;
                }
                return Err(syntax(
                    &format!("only gate calls are allowed in the body of gate '{name}'"),
                    s.line,
                    s.col,
                ));
            };
            if callee == name {
                return Err(syntax(
                    &format!("gate '{name}' calls itself (recursive definitions are not allowed)"),
                    s.line,
                    s.col,
                ));
            }
            let known = callee == "gphase"
                || std_gate(callee, self.stdgates).is_some()
                || matches!(self.syms.get(callee), Some(Sym::Gate(_)));
            if !known {
                return Err(syntax(
                    &format!("gate '{name}' uses '{callee}', which is not a gate defined before it"),
                    s.line,
                    s.col,
                ));
            }
            for op in operands {
                match op {
                    Operand::Named { name: q, index: None } if qubit_set.contains(q) => {}
                    _ => {
                        return Err(syntax(
                            &format!("in gate '{name}', operands must be its qubit arguments"),
                            s.line,
                            s.col,
                        ))
                    }
                }
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn call(
        &mut self,
        modifiers: &[Modifier],
        name: &str,
        args: &[Expr],
        operands: &[Operand],
        scope: &Scope,
        outer: &Mods,
        out: &mut Vec<Instruction>,
        depth: usize,
        line: u32,
        col: u32,
    ) -> Result<(), ReadError> {
        self.step()?;
        let (ctrl_spec, exponent) = self.modifiers(modifiers, scope, line, col)?;
        // Parameters.
        let mut params = Vec::with_capacity(args.len());
        for a in args {
            let p = self.param(a, scope, line, col)?;
            self.check_expr(&p, line)?;
            params.push(p);
        }
        // Operands, broadcast over registers.
        let mut ops = Vec::with_capacity(operands.len());
        for op in operands {
            ops.push(self.qubit_operand(op, scope, line, col)?);
        }
        let width = broadcast_width(&ops, line, col)?;
        for k in 0..width {
            let qubits: Vec<usize> = ops.iter().map(|(qs, single)| if *single { qs[0] } else { qs[k] }).collect();
            let mut sorted = qubits.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted.len() != qubits.len() {
                return Err(syntax("a qubit appears twice in one gate call", line, col));
            }
            if qubits.len() < ctrl_spec.len() {
                return Err(syntax(
                    &format!(
                        "'{name}' with {} control modifier(s) needs at least {} qubits, got {}",
                        ctrl_spec.len(),
                        ctrl_spec.len(),
                        qubits.len()
                    ),
                    line,
                    col,
                ));
            }
            let (ctrl_qs, targets) = qubits.split_at(ctrl_spec.len());
            let mut mods = outer.clone();
            mods.ctrls.extend(ctrl_qs.iter().copied().zip(ctrl_spec.iter().copied()));
            let reps = exponent.unsigned_abs();
            if exponent < 0 {
                mods.inverse = !mods.inverse;
            }
            for _ in 0..reps {
                self.apply(name, &params, targets, &mods, scope, out, depth, line, col)?;
            }
        }
        Ok(())
    }

    /// Fold gate modifiers: the controls in order (`true` for a positive control) and one signed
    /// exponent.
    fn modifiers(
        &mut self,
        modifiers: &[Modifier],
        scope: &Scope,
        line: u32,
        col: u32,
    ) -> Result<(Vec<bool>, i128), ReadError> {
        // Modifiers: controls in order; inv and pow commute with ctrl and with each other for
        // integer exponents, so they fold into one signed exponent.
        let mut ctrl_spec: Vec<bool> = Vec::new();
        let mut exponent: i128 = 1;
        for m in modifiers {
            match m {
                Modifier::Inv => exponent = -exponent,
                Modifier::Pow(e) => {
                    let p = self.param(e, scope, line, col)?;
                    let Some(k) = p.as_const() else {
                        return Err(unsupported(&format!("pow() with a non-constant exponent (line {line})")));
                    };
                    if k.fract() != 0.0 {
                        return Err(unsupported(&format!("pow({k}) with a non-integer exponent (line {line})")));
                    }
                    if k.abs() > self.limits.max_instructions as f64 {
                        return Err(too_large(format!("pow({k}) (line {line})")));
                    }
                    exponent = exponent.saturating_mul(k as i128);
                    if exponent.unsigned_abs() > self.limits.max_instructions as u128 {
                        return Err(too_large(format!("combined pow() exponent {exponent} (line {line})")));
                    }
                }
                Modifier::Ctrl(n) | Modifier::NegCtrl(n) => {
                    let k = match n {
                        Some(e) => self.const_int(e, scope, line, col)?,
                        None => 1,
                    };
                    if k < 1 || k > self.limits.max_qubits as i128 {
                        return Err(syntax(&format!("invalid number of controls {k}"), line, col));
                    }
                    for _ in 0..k {
                        ctrl_spec.push(matches!(m, Modifier::Ctrl(_)));
                    }
                }
            }
        }
        Ok((ctrl_spec, exponent))
    }

    /// Apply one (possibly controlled / inverted) gate to concrete qubits.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        name: &str,
        params: &[ParamExpr],
        targets: &[usize],
        mods: &Mods,
        scope: &Scope,
        out: &mut Vec<Instruction>,
        depth: usize,
        line: u32,
        col: u32,
    ) -> Result<(), ReadError> {
        let cost: usize = params.iter().map(|p| expr_size(p, usize::MAX).0).sum();
        self.step_by(1 + cost + targets.len())?;
        if name == "gphase" {
            return self.gphase(params, targets, mods, scope, out, line, col);
        }
        // Custom gates shadow nothing (redefinitions are rejected), so the order does not matter.
        if let Some((gate, np, nq)) = std_gate(name, self.stdgates) {
            check_arity(name, np, nq, params.len(), targets.len(), line, col)?;
            return self.native(gate, params.to_vec(), targets, mods, out);
        }
        let def = match self.syms.get(name) {
            Some(Sym::Gate(d)) => GateDef { params: d.params, qubits: d.qubits, body: d.body },
            Some(_) => return Err(syntax(&format!("'{name}' is not a gate"), line, col)),
            None => {
                let hint = if !self.stdgates { " (is `include \"stdgates.inc\";` missing?)" } else { "" };
                return Err(syntax(&format!("unknown gate '{name}'{hint}"), line, col));
            }
        };
        check_arity(name, def.params.len(), def.qubits.len(), params.len(), targets.len(), line, col)?;
        if depth + 1 > self.limits.max_depth {
            return Err(too_large(format!("gate definitions nested deeper than {}", self.limits.max_depth)));
        }
        if let Some(gate) = self.recognized_native(name, &def, depth)? {
            return self.native(gate, params.to_vec(), targets, mods, out);
        }
        self.inline(&def, params, targets, mods, scope, out, depth)
    }

    /// A global phase: added to the circuit's phase (outside any `if`), or, when controlled, a
    /// phase gate on the last control.
    #[allow(clippy::too_many_arguments)]
    fn gphase(
        &mut self,
        params: &[ParamExpr],
        targets: &[usize],
        mods: &Mods,
        scope: &Scope,
        out: &mut Vec<Instruction>,
        line: u32,
        col: u32,
    ) -> Result<(), ReadError> {
        if params.len() != 1 || !targets.is_empty() {
            return Err(syntax("gphase takes one parameter and no qubits (beyond controls)", line, col));
        }
        let theta = if mods.inverse { neg(params[0].clone()) } else { params[0].clone() };
        let Some((&(last, last_pos), rest)) = mods.ctrls.split_last() else {
            if !scope.in_branch {
                let gp = add(std::mem::replace(&mut self.global_phase, c(0.0)), theta);
                self.check_expr(&gp, line)?;
                self.global_phase = gp;
            }
            return Ok(());
        };
        // Controlled global phase = phase gate on the last control, controlled by the rest.
        if !last_pos {
            self.emit(out, gate_op(Gate::X, vec![]), vec![last])?;
        }
        let inner = Mods { ctrls: rest.to_vec(), inverse: false };
        self.native(Gate::P, vec![theta], &[last], &inner, out)?;
        if !last_pos {
            self.emit(out, gate_op(Gate::X, vec![]), vec![last])?;
        }
        Ok(())
    }

    /// Inline a custom gate's body on `targets`, in reverse when inverted.
    #[allow(clippy::too_many_arguments)]
    fn inline(
        &mut self,
        def: &GateDef<'a>,
        params: &[ParamExpr],
        targets: &[usize],
        mods: &Mods,
        scope: &Scope,
        out: &mut Vec<Instruction>,
        depth: usize,
    ) -> Result<(), ReadError> {
        let inner_scope = Scope {
            values: Vec::new(),
            params: def.params.iter().cloned().zip(params.iter().cloned()).collect(),
            gate_qubits: Some(def.qubits.iter().cloned().zip(targets.iter().copied()).collect()),
            in_branch: scope.in_branch,
        };
        let body: Box<dyn Iterator<Item = &Stmt>> =
            if mods.inverse { Box::new(def.body.iter().rev()) } else { Box::new(def.body.iter()) };
        for s in body {
            match &s.kind {
                StmtKind::GateCall { modifiers, name, args, operands } => {
                    self.call(modifiers, name, args, operands, &inner_scope, mods, out, depth + 1, s.line, s.col)?
                }
                StmtKind::Barrier(ops) => {
                    if mods.ctrls.is_empty() {
                        let mut qs = Vec::new();
                        if ops.is_empty() {
                            qs = targets.to_vec();
                        } else {
                            for op in ops {
                                qs.extend(self.qubit_operand(op, &inner_scope, s.line, s.col)?.0);
                            }
                        }
                        self.emit(out, Operation::Barrier, qs)?;
                    }
                }
                _ => return Err(syntax("only gate calls are allowed in a gate body", s.line, s.col)),
            }
        }
        Ok(())
    }

    /// Emit a native gate with modifiers folded into the IR gate.
    fn native(
        &mut self,
        gate: Gate,
        params: Vec<ParamExpr>,
        targets: &[usize],
        mods: &Mods,
        out: &mut Vec<Instruction>,
    ) -> Result<(), ReadError> {
        let (gate, params) = if mods.inverse { invert(gate, params) } else { (gate, params) };
        if mods.ctrls.is_empty() {
            return self.emit(out, gate_op(gate, params), targets.to_vec());
        }
        if mods.ctrls.len() > 64 {
            return Err(unsupported("more than 64 controls"));
        }
        let mut qubits: Vec<usize> = mods.ctrls.iter().map(|&(q, _)| q).collect();
        qubits.extend_from_slice(targets);
        let all_pos = mods.ctrls.iter().all(|&(_, p)| p);
        let gate = if all_pos { controlled_native(&gate, mods.ctrls.len()) } else { None }.unwrap_or_else(|| {
            let ctrl_state =
                mods.ctrls.iter().enumerate().fold(0u64, |acc, (j, &(_, p))| if p { acc | (1u64 << j) } else { acc });
            Gate::Controlled { num_ctrl: mods.ctrls.len(), ctrl_state, base: Box::new(gate) }
        });
        self.emit(out, gate_op(gate, params), qubits)
    }
}

fn gate_op(gate: Gate, params: Vec<ParamExpr>) -> Operation {
    Operation::Gate { gate, params }
}

/// The common size of the register operands of a gate call (1 if all are single qubits).
fn broadcast_width(ops: &[(Vec<usize>, bool)], line: u32, col: u32) -> Result<usize, ReadError> {
    let mut width: Option<usize> = None;
    for (qs, single) in ops {
        if !*single {
            match width {
                None => width = Some(qs.len()),
                Some(w) if w != qs.len() => {
                    return Err(syntax("registers of different sizes in one gate call", line, col))
                }
                _ => {}
            }
        }
    }
    Ok(width.unwrap_or(1))
}

fn check_arity(name: &str, np: usize, nq: usize, gp: usize, gq: usize, line: u32, col: u32) -> Result<(), ReadError> {
    if np != gp {
        return Err(syntax(&format!("gate '{name}' takes {np} parameter(s), got {gp}"), line, col));
    }
    if nq != gq {
        return Err(syntax(&format!("gate '{name}' acts on {nq} qubit(s), got {gq}"), line, col));
    }
    Ok(())
}

/// The inverse of a native gate, as Qiskit's `Gate.inverse()` writes it.
fn invert(gate: Gate, mut params: Vec<ParamExpr>) -> (Gate, Vec<ParamExpr>) {
    use Gate::*;
    match gate {
        I | X | Y | Z | H | CX | CY | CZ | CH | Swap | CCX | CCZ | CSwap | C3X | MCX => (gate, params),
        S => (Sdg, params),
        Sdg => (S, params),
        T => (Tdg, params),
        Tdg => (T, params),
        SX => (SXdg, params),
        SXdg => (SX, params),
        CS => (CSdg, params),
        CSdg => (CS, params),
        RX | RY | RZ | P | CP | CRX | CRY | CRZ | RXX | RYY | RZZ | RZX => {
            let params = params.into_iter().map(neg).collect();
            (gate, params)
        }
        U | CU3 if params.len() == 3 => {
            let lam = params.pop().map(neg).unwrap_or(c(0.0));
            let phi = params.pop().map(neg).unwrap_or(c(0.0));
            let theta = params.pop().map(neg).unwrap_or(c(0.0));
            (gate, vec![theta, lam, phi])
        }
        CU if params.len() == 4 => {
            let gamma = params.pop().map(neg).unwrap_or(c(0.0));
            let lam = params.pop().map(neg).unwrap_or(c(0.0));
            let phi = params.pop().map(neg).unwrap_or(c(0.0));
            let theta = params.pop().map(neg).unwrap_or(c(0.0));
            (CU, vec![theta, lam, phi, gamma])
        }
        Inverse(base) => (*base, params),
        g => (Inverse(Box::new(g)), params),
    }
}

/// `ctrl(n) @ gate` as a named IR gate, where one exists (all controls positive).
fn controlled_native(gate: &Gate, n: usize) -> Option<Gate> {
    use Gate::*;
    Some(match (gate, n) {
        (X, 1) => CX,
        (X, 2) | (CX, 1) => CCX,
        (X, 3) | (CX, 2) | (CCX, 1) => C3X,
        (X, _) => MCX,
        (CX, _) | (CCX, _) | (C3X, _) | (MCX, _) => MCX,
        (Y, 1) => CY,
        (Z, 1) => CZ,
        (Z, 2) | (CZ, 1) => CCZ,
        (H, 1) => CH,
        (S, 1) => CS,
        (Sdg, 1) => CSdg,
        (SX, 1) => CSX,
        (P, 1) => CP,
        (RX, 1) => CRX,
        (RY, 1) => CRY,
        (RZ, 1) => CRZ,
        (U, 1) => CU3,
        (Swap, 1) => CSwap,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(src: &str) -> Result<Circuit, ReadError> {
        parse(src, &ReadLimits::default())
    }

    #[test]
    fn minimal_program() {
        let c = p("OPENQASM 3; include \"stdgates.inc\"; qubit q; h q;").unwrap();
        assert_eq!(c.num_qubits, 1);
        assert_eq!(c.instructions.len(), 1);
    }

    #[test]
    fn inverse_of_rotations_negates() {
        let (g, ps) = invert(Gate::RX, vec![c(0.5)]);
        assert_eq!(g, Gate::RX);
        assert_eq!(ps, vec![c(-0.5)]);
        let (g, ps) = invert(Gate::U, vec![c(1.0), c(2.0), c(3.0)]);
        assert_eq!(g, Gate::U);
        assert_eq!(ps, vec![c(-1.0), c(-3.0), c(-2.0)]);
    }

    #[test]
    fn operator_precedence_and_associativity() {
        let val = |e: &str| {
            let circ = p(&format!("OPENQASM 3; qubit q; U({e}, 0, 0) q;")).unwrap();
            match &circ.instructions[0].op {
                Operation::Gate { params, .. } => params[0].as_const().unwrap(),
                _ => unreachable!(),
            }
        };
        assert_eq!(val("10 - 4 - 3"), 3.0);
        assert_eq!(val("2 * 3 + 4 / 2"), 8.0);
        assert_eq!(val("-2 ** 2"), -4.0);
        assert_eq!(val("2 ** -1"), 0.5);
        assert_eq!(val("2 ** 3 ** 2"), 512.0);
        assert_eq!(val("(1 + 2) * 3"), 9.0);
        assert_eq!(val("- - 1"), 1.0);
        assert_eq!(val("24 / 4 / 3"), 2.0);
    }

    #[test]
    fn folding_keeps_symbols() {
        let circ = p("OPENQASM 3; input float t; qubit q; U(t * (1 + 1), 0, 0) q;").unwrap();
        let Operation::Gate { params, .. } = &circ.instructions[0].op else { unreachable!() };
        assert_eq!(params[0], ParamExpr::Mul(Box::new(ParamExpr::Symbol("t".into())), Box::new(c(2.0))));
    }

    #[test]
    fn controlled_names() {
        assert_eq!(controlled_native(&Gate::X, 1), Some(Gate::CX));
        assert_eq!(controlled_native(&Gate::CX, 1), Some(Gate::CCX));
        assert_eq!(controlled_native(&Gate::X, 5), Some(Gate::MCX));
        assert_eq!(controlled_native(&Gate::RXX, 1), None);
    }

    #[test]
    fn lexer_errors_are_located() {
        match p("OPENQASM 3;\nqubit q;\n h q; `") {
            Err(ReadError::Syntax { location, .. }) => {
                assert_eq!(location.as_deref(), Some("line 3, column 7"))
            }
            other => panic!("{other:?}"),
        }
    }
}
