//! OpenQASM 2 reader: a small hand-written lexer and recursive-descent parser.
//!
//! Why not the `openqasm` crate: it was checked on the fixtures (it parses them) but its newest
//! release (0.1.3) is yanked and the crate is unmaintained since 2022; its include handling reads the
//! filesystem or silently ignores includes (we need "built-in file or error"); and its `Linearize`
//! expands nested gate definitions without any budget, so `gate g1 a { g0 a; g0 a; } ...` grows
//! exponentially. Here every bound of [`ReadLimits`] is checked before work is done: source size,
//! registers, gate-definition nesting, expression nesting, and the number of instructions a gate
//! expands to (known per definition before it is inlined).
//!
//! `include "qelib1.inc";` loads our built-in extended `qelib1.inc` (see `src/qelib1.inc`), whose
//! gates map to native IR gates; any other include is an error. Custom gates are inlined; opaque
//! gates other than the built-in ones are an error. Identifiers that are not defined in a
//! top-level parameter expression are free parameters (Qiskit writes unbound parameters that way).

use crate::error::{ReadError, ReadLimits};
use crate::ir::{Circuit, ClassicalRegister, Condition, Func, Gate, Instruction, Operation, ParamExpr};
use std::collections::HashMap;

const FORMAT: &str = "OpenQASM 2";
const QELIB1: &str = include_str!("qelib1.inc");

/// Read an OpenQASM 2 program.
pub fn parse(src: &str, limits: &ReadLimits) -> Result<Circuit, ReadError> {
    if src.len() > limits.max_source_bytes {
        return Err(too_large(format!(
            "source of {} bytes exceeds the limit of {} bytes",
            src.len(),
            limits.max_source_bytes
        )));
    }
    let tokens = lex(src)?;
    let mut p = Parser {
        toks: tokens,
        pos: 0,
        limits,
        circuit: Circuit::new(0, 0),
        qregs: HashMap::new(),
        cregs: HashMap::new(),
        gates: HashMap::new(),
        included: false,
    };
    p.header()?;
    while !p.at_end() {
        p.statement()?;
    }
    Ok(p.circuit)
}

fn too_large(message: String) -> ReadError {
    ReadError::TooLarge { format: FORMAT, message }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Num(f64, Option<u64>),
    Str(String),
    Sym(&'static str),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
}

const SYMS: [&str; 15] = ["->", "==", ";", ",", "(", ")", "[", "]", "{", "}", "+", "-", "*", "/", "^"];

fn lex(src: &str) -> Result<Vec<Token>, ReadError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    while i < b.len() {
        let c = b[i];
        if c == b'\n' {
            line += 1;
            i += 1;
            continue;
        }
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if b[i..].starts_with(b"//") || b[i..].starts_with(b"/*") {
            i = skip_comment(b, i, &mut line);
            continue;
        }
        let (tok, end) = if c.is_ascii_alphabetic() || c == b'_' {
            let end = scan(b, i, |d| d.is_ascii_alphanumeric() || d == b'_');
            (Tok::Ident(src[i..end].to_string()), end)
        } else if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            lex_number(src, i, line)?
        } else if c == b'"' {
            lex_string(src, i, line)?
        } else {
            lex_symbol(src, i, line)?
        };
        out.push(Token { tok, line });
        i = end;
    }
    Ok(out)
}

fn lex_err(line: usize, message: String) -> ReadError {
    ReadError::Syntax { format: FORMAT, message, location: Some(format!("line {line}")) }
}

/// The end of the run of bytes from `i` that satisfy `f`.
fn scan(b: &[u8], mut i: usize, f: impl Fn(u8) -> bool) -> usize {
    while i < b.len() && f(b[i]) {
        i += 1;
    }
    i
}

/// Skip the `//` or `/*` comment at `i` (counting its newlines); returns where it ends, which
/// may be past the end of an unterminated block comment.
fn skip_comment(b: &[u8], mut i: usize, line: &mut usize) -> usize {
    if b[i..].starts_with(b"//") {
        return scan(b, i, |d| d != b'\n');
    }
    i += 2;
    while i < b.len() && !b[i..].starts_with(b"*/") {
        if b[i] == b'\n' {
            *line += 1;
        }
        i += 1;
    }
    i + 2
}

/// A number at `start`: digits and dots, an optional exponent; the integer value too when it is
/// all digits.
fn lex_number(src: &str, start: usize, line: usize) -> Result<(Tok, usize), ReadError> {
    let b = src.as_bytes();
    let mut i = scan(b, start, |d| d.is_ascii_digit() || d == b'.');
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            i = scan(b, j, |d| d.is_ascii_digit());
        }
    }
    let text = &src[start..i];
    let v: f64 = text.parse().map_err(|_| lex_err(line, format!("invalid number '{text}'")))?;
    let int = if text.bytes().all(|d| d.is_ascii_digit()) { text.parse::<u64>().ok() } else { None };
    Ok((Tok::Num(v, int), i))
}

/// A string literal at `start` (on one line), without its quotes.
fn lex_string(src: &str, start: usize, line: usize) -> Result<(Tok, usize), ReadError> {
    let b = src.as_bytes();
    let i = scan(b, start + 1, |d| d != b'"' && d != b'\n');
    if i >= b.len() || b[i] != b'"' {
        return Err(lex_err(line, "unterminated string".into()));
    }
    Ok((Tok::Str(src[start + 1..i].to_string()), i + 1))
}

fn lex_symbol(src: &str, i: usize, line: usize) -> Result<(Tok, usize), ReadError> {
    let b = src.as_bytes();
    for s in SYMS {
        if b[i..].starts_with(s.as_bytes()) {
            return Ok((Tok::Sym(s), i + s.len()));
        }
    }
    let ch = src[i..].chars().next().unwrap_or('?');
    Err(lex_err(line, format!("unexpected character {ch:?}")))
}

/// An argument of a gate call: a whole register or one element.
#[derive(Debug, Clone)]
enum Arg {
    Reg(String),
    Bit(String, u64),
}

/// A gate call inside a gate definition.
#[derive(Debug, Clone)]
struct Call {
    name: String,
    params: Vec<ParamExpr>,
    /// Indices into the definition's qubit arguments.
    args: Vec<usize>,
}

#[derive(Debug, Clone)]
struct GateDef {
    params: Vec<String>,
    num_qubits: usize,
    /// `None`: opaque (native when `native` is set).
    body: Option<Vec<Call>>,
    native: Option<Gate>,
    /// Instructions one application expands to.
    cost: u64,
    /// Nesting depth of definitions (1 for a native or an empty definition).
    depth: usize,
}

struct Parser<'a> {
    toks: Vec<Token>,
    pos: usize,
    limits: &'a ReadLimits,
    circuit: Circuit,
    /// name -> (first qubit, size)
    qregs: HashMap<String, (usize, usize)>,
    /// name -> index in circuit.cregs
    cregs: HashMap<String, usize>,
    gates: HashMap<String, GateDef>,
    included: bool,
}

fn native_gate(name: &str) -> Option<Gate> {
    use Gate::*;
    Some(match name {
        "u3" | "u" => U,
        "u2" => U2,
        "u1" | "p" => P,
        "u0" | "id" => I,
        "x" => X,
        "y" => Y,
        "z" => Z,
        "h" => H,
        "s" => S,
        "sdg" => Sdg,
        "t" => T,
        "tdg" => Tdg,
        "sx" => SX,
        "sxdg" => SXdg,
        "rx" => RX,
        "ry" => RY,
        "rz" => RZ,
        "r" => R,
        "cx" => CX,
        "cy" => CY,
        "cz" => CZ,
        "ch" => CH,
        "cs" => CS,
        "csdg" => CSdg,
        "csx" => CSX,
        "swap" => Swap,
        "iswap" => ISwap,
        "ecr" => ECR,
        "dcx" => DCX,
        "crx" => CRX,
        "cry" => CRY,
        "crz" => CRZ,
        "cu1" | "cp" => CP,
        "cu3" => CU3,
        "cu" => CU,
        "rxx" => RXX,
        "ryy" => RYY,
        "rzz" => RZZ,
        "rzx" => RZX,
        "xx_minus_yy" => XXMinusYY,
        "xx_plus_yy" => XXPlusYY,
        "ccx" => CCX,
        "ccz" => CCZ,
        "cswap" => CSwap,
        "rccx" => RCCX,
        "rc3x" => RC3X,
        "c3x" => C3X,
        "c3sqrtx" => C3SX,
        "c4x" => MCX,
        _ => return None,
    })
}

impl<'a> Parser<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.toks.len()
    }

    fn line(&self) -> Option<String> {
        self.toks.get(self.pos.min(self.toks.len().saturating_sub(1))).map(|t| format!("line {}", t.line))
    }

    fn err<T>(&self, message: impl Into<String>) -> Result<T, ReadError> {
        Err(ReadError::Syntax { format: FORMAT, message: message.into(), location: self.line() })
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|t| t.tok.clone());
        self.pos += 1;
        t
    }

    fn is_sym(&self, s: &str) -> bool {
        matches!(self.peek(), Some(Tok::Sym(x)) if *x == s)
    }

    fn expect_sym(&mut self, s: &str) -> Result<(), ReadError> {
        if self.is_sym(s) {
            self.pos += 1;
            Ok(())
        } else {
            self.err(format!("expected '{s}'"))
        }
    }

    fn ident(&mut self) -> Result<String, ReadError> {
        match self.next() {
            Some(Tok::Ident(s)) => Ok(s),
            _ => {
                self.pos -= 1;
                self.err("expected an identifier")
            }
        }
    }

    fn int(&mut self) -> Result<u64, ReadError> {
        match self.next() {
            Some(Tok::Num(_, Some(i))) => Ok(i),
            _ => {
                self.pos -= 1;
                self.err("expected a non-negative integer")
            }
        }
    }

    fn header(&mut self) -> Result<(), ReadError> {
        match (self.next(), self.next()) {
            (Some(Tok::Ident(k)), Some(Tok::Num(v, _))) if k == "OPENQASM" => {
                if !(2.0..3.0).contains(&v) {
                    return self.err(format!("unsupported OpenQASM version {v}"));
                }
            }
            _ => {
                self.pos = 0;
                return self.err("a program starts with 'OPENQASM 2.0;'");
            }
        }
        self.expect_sym(";")
    }

    fn statement(&mut self) -> Result<(), ReadError> {
        let kw = match self.peek() {
            Some(Tok::Ident(s)) => s.clone(),
            _ => return self.err("expected a statement"),
        };
        match kw.as_str() {
            "include" => {
                self.pos += 1;
                self.include()
            }
            "qreg" | "creg" => {
                self.pos += 1;
                self.register_decl(kw == "qreg")
            }
            "gate" | "opaque" => {
                self.pos += 1;
                self.gate_def(kw == "opaque", false)
            }
            "if" => {
                self.pos += 1;
                self.expect_sym("(")?;
                let name = self.ident()?;
                self.expect_sym("==")?;
                let value = self.int()?;
                self.expect_sym(")")?;
                let &ri = match self.cregs.get(&name) {
                    Some(r) => r,
                    None => return self.err(format!("unknown classical register '{name}'")),
                };
                let bits = self.circuit.cregs[ri].bits.clone();
                let cond = Condition { bits, value };
                self.qop(Some(cond))
            }
            _ => self.qop(None),
        }
    }

    /// `include "qelib1.inc";` (the only file there is, built in).
    fn include(&mut self) -> Result<(), ReadError> {
        let file = match self.next() {
            Some(Tok::Str(s)) => s,
            _ => return self.err("include needs a file name in quotes"),
        };
        self.expect_sym(";")?;
        if file != "qelib1.inc" {
            return self.err(format!(
                "cannot include \"{}\": only the built-in \"qelib1.inc\" is available",
                file.chars().take(100).collect::<String>()
            ));
        }
        if !self.included {
            self.included = true;
            self.load_qelib1()?;
        }
        Ok(())
    }

    /// `qreg name[size];` or `creg name[size];`
    fn register_decl(&mut self, quantum: bool) -> Result<(), ReadError> {
        let name = self.ident()?;
        self.expect_sym("[")?;
        let size = self.int()?;
        self.expect_sym("]")?;
        self.expect_sym(";")?;
        if self.qregs.contains_key(&name) || self.cregs.contains_key(&name) {
            return self.err(format!("register '{name}' is declared twice"));
        }
        if quantum {
            let total = (self.circuit.num_qubits as u64).saturating_add(size);
            if total > self.limits.max_qubits as u64 {
                return Err(too_large(format!("{total} qubits exceed the limit of {}", self.limits.max_qubits)));
            }
            self.qregs.insert(name, (self.circuit.num_qubits, size as usize));
            self.circuit.num_qubits = total as usize;
        } else {
            let total = (self.circuit.num_clbits as u64).saturating_add(size);
            if total > self.limits.max_clbits as u64 {
                return Err(too_large(format!("{total} clbits exceed the limit of {}", self.limits.max_clbits)));
            }
            let first = self.circuit.num_clbits;
            self.cregs.insert(name.clone(), self.circuit.cregs.len());
            self.circuit.cregs.push(ClassicalRegister { name, bits: (first..total as usize).collect() });
            self.circuit.num_clbits = total as usize;
        }
        Ok(())
    }

    fn load_qelib1(&mut self) -> Result<(), ReadError> {
        let toks = lex(QELIB1)?;
        let saved = std::mem::replace(&mut self.toks, toks);
        let saved_pos = std::mem::replace(&mut self.pos, 0);
        let mut result = Ok(());
        while !self.at_end() {
            // Every statement of the built-in file is `opaque name(params) args;`.
            if let Err(e) = self.ident().and_then(|_| self.gate_def(true, true)) {
                result = Err(e);
                break;
            }
        }
        self.toks = saved;
        self.pos = saved_pos;
        result
    }

    fn id_list(&mut self, end: &str) -> Result<Vec<String>, ReadError> {
        let mut out = Vec::new();
        if self.is_sym(end) {
            return Ok(out);
        }
        loop {
            out.push(self.ident()?);
            if self.is_sym(",") {
                self.pos += 1;
            } else {
                return Ok(out);
            }
        }
    }

    fn gate_def(&mut self, opaque: bool, builtin: bool) -> Result<(), ReadError> {
        let name = self.ident()?;
        let params = if self.is_sym("(") {
            self.pos += 1;
            let p = self.id_list(")")?;
            self.expect_sym(")")?;
            p
        } else {
            Vec::new()
        };
        let qargs = self.id_list("{")?;
        if qargs.is_empty() {
            return self.err(format!("gate '{name}' has no qubit arguments"));
        }
        if let Some(d) = qargs.iter().enumerate().find(|(i, a)| qargs[..*i].contains(a)) {
            return self.err(format!("gate '{name}' repeats argument '{}'", d.1));
        }
        if opaque {
            self.expect_sym(";")?;
            let native = if builtin { native_gate(&name) } else { None };
            if let Some(g) = &native {
                if g.num_params() != params.len() && !matches!(g, Gate::I) {
                    return self.err(format!("built-in gate '{name}' has a wrong signature"));
                }
            }
            self.gates.insert(name, GateDef { params, num_qubits: qargs.len(), body: None, native, cost: 1, depth: 1 });
            return Ok(());
        }
        self.expect_sym("{")?;
        let (body, cost, depth) = self.gate_body(&name, &params, &qargs)?;
        self.gates
            .insert(name, GateDef { params, num_qubits: qargs.len(), body: Some(body), native: None, cost, depth });
        Ok(())
    }

    /// The calls of a gate body up to and including its `}`, with the number of instructions one
    /// application expands to and the nesting depth of the definition.
    fn gate_body(
        &mut self,
        name: &str,
        params: &[String],
        qargs: &[String],
    ) -> Result<(Vec<Call>, u64, usize), ReadError> {
        let mut body = Vec::new();
        let mut cost = 0u64;
        let mut depth = 1usize;
        while !self.is_sym("}") {
            if self.at_end() {
                return self.err(format!("gate '{name}': missing '}}'"));
            }
            let callee = self.ident()?;
            if callee == "barrier" {
                self.id_list(";")?;
                self.expect_sym(";")?;
                continue;
            }
            let cparams = self.param_list(Some(params))?;
            let names = self.id_list(";")?;
            self.expect_sym(";")?;
            let mut args = Vec::with_capacity(names.len());
            for a in &names {
                match qargs.iter().position(|q| q == a) {
                    Some(i) => args.push(i),
                    None => return self.err(format!("gate '{name}': unknown qubit '{a}'")),
                }
            }
            let (ccost, cdepth) = match (callee.as_str(), self.gates.get(&callee)) {
                ("U" | "CX", _) => (1, 1),
                (_, Some(d)) => (d.cost, d.depth),
                (_, None) => return self.err(format!("gate '{name}' uses '{callee}', which is not defined before it")),
            };
            cost = cost.saturating_add(ccost);
            depth = depth.max(cdepth + 1);
            if depth > self.limits.max_depth {
                return Err(too_large(format!("gate definitions nest deeper than {}", self.limits.max_depth)));
            }
            body.push(Call { name: callee, params: cparams, args });
        }
        self.pos += 1;
        Ok((body, cost, depth))
    }

    /// An optional parenthesised, comma-separated list of parameter expressions.
    fn param_list(&mut self, scope: Option<&[String]>) -> Result<Vec<ParamExpr>, ReadError> {
        if !self.is_sym("(") {
            return Ok(Vec::new());
        }
        self.pos += 1;
        let mut v = Vec::new();
        if !self.is_sym(")") {
            loop {
                v.push(self.expr(0, scope)?);
                if self.is_sym(",") {
                    self.pos += 1;
                } else {
                    break;
                }
            }
        }
        self.expect_sym(")")?;
        Ok(v)
    }

    /// Expression with precedence climbing; `scope` = gate parameter names inside a definition.
    fn expr(&mut self, depth: usize, scope: Option<&[String]>) -> Result<ParamExpr, ReadError> {
        if depth > self.limits.max_depth {
            return Err(too_large(format!("expression nests deeper than {}", self.limits.max_depth)));
        }
        let mut lhs = self.term(depth + 1, scope)?;
        while self.is_sym("+") || self.is_sym("-") {
            let add = self.is_sym("+");
            self.pos += 1;
            let rhs = self.term(depth + 1, scope)?;
            lhs = fold(if add {
                ParamExpr::Add(Box::new(lhs), Box::new(rhs))
            } else {
                ParamExpr::Sub(Box::new(lhs), Box::new(rhs))
            });
        }
        Ok(lhs)
    }

    fn term(&mut self, depth: usize, scope: Option<&[String]>) -> Result<ParamExpr, ReadError> {
        let mut lhs = self.factor(depth + 1, scope)?;
        while self.is_sym("*") || self.is_sym("/") {
            let mul = self.is_sym("*");
            self.pos += 1;
            let rhs = self.factor(depth + 1, scope)?;
            lhs = fold(if mul {
                ParamExpr::Mul(Box::new(lhs), Box::new(rhs))
            } else {
                ParamExpr::Div(Box::new(lhs), Box::new(rhs))
            });
        }
        Ok(lhs)
    }

    fn factor(&mut self, depth: usize, scope: Option<&[String]>) -> Result<ParamExpr, ReadError> {
        if depth > self.limits.max_depth {
            return Err(too_large(format!("expression nests deeper than {}", self.limits.max_depth)));
        }
        if self.is_sym("-") {
            self.pos += 1;
            let e = self.factor(depth + 1, scope)?;
            return Ok(fold(ParamExpr::Neg(Box::new(e))));
        }
        if self.is_sym("+") {
            self.pos += 1;
            return self.factor(depth + 1, scope);
        }
        let base = self.primary(depth + 1, scope)?;
        if self.is_sym("^") {
            self.pos += 1;
            let exp = self.factor(depth + 1, scope)?;
            return Ok(fold(ParamExpr::Pow(Box::new(base), Box::new(exp))));
        }
        Ok(base)
    }

    fn primary(&mut self, depth: usize, scope: Option<&[String]>) -> Result<ParamExpr, ReadError> {
        match self.next() {
            Some(Tok::Num(v, _)) => Ok(ParamExpr::Const(v)),
            Some(Tok::Sym("(")) => {
                let e = self.expr(depth + 1, scope)?;
                self.expect_sym(")")?;
                Ok(e)
            }
            Some(Tok::Ident(name)) => {
                let func = match name.as_str() {
                    "sin" => Some(Func::Sin),
                    "cos" => Some(Func::Cos),
                    "tan" => Some(Func::Tan),
                    "exp" => Some(Func::Exp),
                    "ln" => Some(Func::Ln),
                    "sqrt" => Some(Func::Sqrt),
                    "asin" => Some(Func::Asin),
                    "acos" => Some(Func::Acos),
                    "atan" => Some(Func::Atan),
                    _ => None,
                };
                if let Some(f) = func {
                    self.expect_sym("(")?;
                    let e = self.expr(depth + 1, scope)?;
                    self.expect_sym(")")?;
                    return Ok(fold(ParamExpr::Func(f, Box::new(e))));
                }
                if name == "pi" {
                    return Ok(ParamExpr::Const(std::f64::consts::PI));
                }
                match scope {
                    Some(s) if s.contains(&name) => Ok(ParamExpr::Symbol(name)),
                    Some(_) => {
                        self.pos -= 1;
                        self.err(format!("unknown parameter '{name}'"))
                    }
                    // A free parameter of the circuit; `name[i]` is a ParameterVector element.
                    None => {
                        if self.is_sym("[") {
                            self.pos += 1;
                            let i = self.int()?;
                            self.expect_sym("]")?;
                            Ok(ParamExpr::Symbol(format!("{name}[{i}]")))
                        } else {
                            Ok(ParamExpr::Symbol(name))
                        }
                    }
                }
            }
            _ => {
                self.pos -= 1;
                self.err("expected an expression")
            }
        }
    }

    fn arg(&mut self) -> Result<Arg, ReadError> {
        let name = self.ident()?;
        if self.is_sym("[") {
            self.pos += 1;
            let i = self.int()?;
            self.expect_sym("]")?;
            Ok(Arg::Bit(name, i))
        } else {
            Ok(Arg::Reg(name))
        }
    }

    /// Resolve register arguments to lists of bit indices (broadcasting whole registers).
    fn resolve(&self, args: &[Arg], quantum: &[bool]) -> Result<Vec<Vec<usize>>, ReadError> {
        let mut width: Option<usize> = None;
        let mut resolved = Vec::with_capacity(args.len());
        for (a, &q) in args.iter().zip(quantum) {
            let (name, idx) = match a {
                Arg::Reg(n) => (n, None),
                Arg::Bit(n, i) => (n, Some(*i)),
            };
            let (first, size) = if q {
                match self.qregs.get(name) {
                    Some(&r) => r,
                    None => return self.err(format!("unknown quantum register '{name}'")),
                }
            } else {
                match self.cregs.get(name) {
                    Some(&ri) => {
                        let bits = &self.circuit.cregs[ri].bits;
                        (bits.first().copied().unwrap_or(0), bits.len())
                    }
                    None => return self.err(format!("unknown classical register '{name}'")),
                }
            };
            match idx {
                Some(i) => {
                    if i >= size as u64 {
                        return self.err(format!("index {i} is out of range for register '{name}' of size {size}"));
                    }
                    resolved.push((first + i as usize, None));
                }
                None => {
                    if let Some(w) = width {
                        if w != size {
                            return self.err("registers of different sizes in one statement");
                        }
                    }
                    width = Some(size);
                    resolved.push((first, Some(size)));
                }
            }
        }
        let n = width.unwrap_or(1);
        Ok((0..n).map(|k| resolved.iter().map(|&(b, reg)| if reg.is_some() { b + k } else { b }).collect()).collect())
    }

    fn push(&mut self, ins: Instruction) -> Result<(), ReadError> {
        if self.circuit.instructions.len() >= self.limits.max_instructions {
            return Err(too_large(format!("more than {} instructions", self.limits.max_instructions)));
        }
        self.circuit.instructions.push(ins);
        Ok(())
    }

    fn qop(&mut self, cond: Option<Condition>) -> Result<(), ReadError> {
        let name = self.ident()?;
        match name.as_str() {
            "measure" => {
                let q = self.arg()?;
                self.expect_sym("->")?;
                let c = self.arg()?;
                self.expect_sym(";")?;
                for bits in self.resolve(&[q, c], &[true, false])? {
                    self.push(Instruction {
                        op: Operation::Measure { clbit: bits[1] },
                        qubits: vec![bits[0]],
                        condition: cond.clone(),
                    })?;
                }
                Ok(())
            }
            "reset" => {
                let q = self.arg()?;
                self.expect_sym(";")?;
                for bits in self.resolve(&[q], &[true])? {
                    self.push(Instruction { op: Operation::Reset, qubits: bits, condition: cond.clone() })?;
                }
                Ok(())
            }
            "barrier" => {
                let mut qubits = Vec::new();
                loop {
                    let a = self.arg()?;
                    for bits in self.resolve(&[a], &[true])? {
                        qubits.extend(bits);
                    }
                    if self.is_sym(",") {
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
                self.expect_sym(";")?;
                if cond.is_some() {
                    return Ok(());
                }
                self.push(Instruction { op: Operation::Barrier, qubits, condition: None })
            }
            _ => self.gate_call(&name, cond),
        }
    }

    /// `name(params) args;` at the top level, broadcast over whole-register arguments.
    fn gate_call(&mut self, name: &str, cond: Option<Condition>) -> Result<(), ReadError> {
        let params = self.param_list(None)?;
        let mut args = Vec::new();
        loop {
            args.push(self.arg()?);
            if self.is_sym(",") {
                self.pos += 1;
            } else {
                break;
            }
        }
        self.expect_sym(";")?;
        let quantum = vec![true; args.len()];
        for qubits in self.resolve(&args, &quantum)? {
            if qubits.iter().enumerate().any(|(i, q)| qubits[..i].contains(q)) {
                return self.err(format!("'{name}' is applied to the same qubit twice"));
            }
            self.apply(name, &params, &qubits, &cond, 0)?;
        }
        Ok(())
    }

    /// Apply gate `name` (inlining custom definitions).
    fn apply(
        &mut self,
        name: &str,
        params: &[ParamExpr],
        qubits: &[usize],
        cond: &Option<Condition>,
        depth: usize,
    ) -> Result<(), ReadError> {
        let prim = match name {
            "U" => Some((Gate::U, 3, 1)),
            "CX" => Some((Gate::CX, 0, 2)),
            _ => None,
        };
        if let Some((gate, np, nq)) = prim {
            if params.len() != np || qubits.len() != nq {
                return self.err(format!("'{name}' takes {np} parameters and {nq} qubits"));
            }
            return self.push(Instruction {
                op: Operation::Gate { gate, params: params.to_vec() },
                qubits: qubits.to_vec(),
                condition: cond.clone(),
            });
        }
        let Some(def) = self.gates.get(name) else {
            return self.err(format!("unknown gate '{name}'"));
        };
        if def.params.len() != params.len() || def.num_qubits != qubits.len() {
            return self.err(format!(
                "gate '{name}' takes {} parameters and {} qubits, got {} and {}",
                def.params.len(),
                def.num_qubits,
                params.len(),
                qubits.len()
            ));
        }
        let budget = self.limits.max_instructions as u64;
        if (self.circuit.instructions.len() as u64).saturating_add(def.cost) > budget {
            return Err(too_large(format!("gate '{name}' expands past the limit of {budget} instructions")));
        }
        if depth > self.limits.max_depth {
            return Err(too_large("gate definitions nest too deeply".into()));
        }
        match (&def.body, &def.native) {
            (None, Some(gate)) => {
                let (gate, params) = match gate {
                    // u0(gamma) and id are identities.
                    Gate::I => (Gate::I, Vec::new()),
                    g => (g.clone(), params.to_vec()),
                };
                self.push(Instruction {
                    op: Operation::Gate { gate, params },
                    qubits: qubits.to_vec(),
                    condition: cond.clone(),
                })
            }
            (None, None) => self.err(format!("gate '{name}' is opaque: it has no definition to simulate")),
            (Some(body), _) => {
                let body = body.clone();
                let pnames = def.params.clone();
                let env: HashMap<&str, &ParamExpr> = pnames.iter().map(String::as_str).zip(params.iter()).collect();
                for call in &body {
                    let cparams: Vec<ParamExpr> = call.params.iter().map(|e| substitute(e, &env)).collect();
                    if cparams.iter().any(|e| expr_size(e, MAX_EXPR_NODES) > MAX_EXPR_NODES) {
                        return Err(too_large(format!(
                            "parameter expressions of gate '{name}' grow past {MAX_EXPR_NODES} nodes"
                        )));
                    }
                    let cq: Vec<usize> = call.args.iter().map(|&i| qubits[i]).collect();
                    self.apply(&call.name, &cparams, &cq, cond, depth + 1)?;
                }
                Ok(())
            }
        }
    }
}

/// Largest parameter expression (in nodes) after inlining gate definitions.
const MAX_EXPR_NODES: usize = 4096;

/// Number of nodes of `e`, counting stops once past `cap`.
fn expr_size(e: &ParamExpr, cap: usize) -> usize {
    use ParamExpr::*;
    match e {
        Const(_) | Symbol(_) => 1,
        Neg(a) | Func(_, a) => 1 + expr_size(a, cap),
        Add(x, y) | Sub(x, y) | Mul(x, y) | Div(x, y) | Pow(x, y) => {
            let l = expr_size(x, cap);
            if l > cap {
                return l;
            }
            1 + l + expr_size(y, cap)
        }
    }
}

/// Replace gate-parameter symbols by the caller's expressions.
fn substitute(e: &ParamExpr, env: &HashMap<&str, &ParamExpr>) -> ParamExpr {
    use ParamExpr::*;
    let b = |x: &ParamExpr| Box::new(substitute(x, env));
    fold(match e {
        Const(c) => Const(*c),
        Symbol(s) => match env.get(s.as_str()) {
            Some(v) => (*v).clone(),
            None => Symbol(s.clone()),
        },
        Neg(a) => Neg(b(a)),
        Add(x, y) => Add(b(x), b(y)),
        Sub(x, y) => Sub(b(x), b(y)),
        Mul(x, y) => Mul(b(x), b(y)),
        Div(x, y) => Div(b(x), b(y)),
        Pow(x, y) => Pow(b(x), b(y)),
        Func(f, a) => Func(*f, b(a)),
    })
}

/// Fold an expression whose operands are constants (keeping non-finite results symbolic so that
/// evaluation reports them).
fn fold(e: ParamExpr) -> ParamExpr {
    let symbolic = {
        let mut v = Vec::new();
        e.symbols(&mut v);
        !v.is_empty()
    };
    if symbolic {
        return e;
    }
    match e.as_const() {
        Some(c) => ParamExpr::Const(c),
        None => e,
    }
}
