//! Recursive-descent parser for the accepted OpenQASM 3 subset. Every recursive rule (blocks,
//! statements, expressions) counts its depth and fails cleanly past the limit, so hostile nesting
//! cannot overflow the stack.

use super::lexer::{Tok, Token};
use super::{syntax, unsupported, FORMAT};
use crate::error::ReadError;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Num(f64),
    Int(Option<u128>),
    Bool(bool),
    BitStr(String),
    Ident(String),
    /// `name[index]` (one index) in an expression (conditions).
    Index(String, Box<Expr>),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Bin(BinOp, Box<Expr>, Box<Expr>),
    Call(String, Vec<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Eq,
    Ne,
    Other(&'static str),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Index {
    Single(Expr),
    Range(Option<Expr>, Option<Expr>, Option<Expr>),
    Set(Vec<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Operand {
    Named { name: String, index: Option<Index> },
    Hw(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Modifier {
    Inv,
    Pow(Expr),
    Ctrl(Option<Expr>),
    NegCtrl(Option<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ForIter {
    Range(Option<Expr>, Option<Expr>, Option<Expr>),
    Set(Vec<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StmtKind {
    Version(String),
    Include(String),
    QubitDecl {
        name: String,
        size: Option<Expr>,
    },
    BitDecl {
        name: String,
        size: Option<Expr>,
    },
    Input {
        ty: String,
        name: String,
    },
    Const {
        name: String,
        value: Expr,
    },
    GateDef {
        name: String,
        params: Vec<String>,
        qubits: Vec<String>,
        body: Vec<Stmt>,
    },
    GateCall {
        modifiers: Vec<Modifier>,
        name: String,
        args: Vec<Expr>,
        operands: Vec<Operand>,
    },
    Measure {
        qubits: Operand,
        target: Option<Operand>,
    },
    Reset(Operand),
    Barrier(Vec<Operand>),
    Delay(Vec<Operand>),
    /// `let name = a ++ {b, c[1]} ++ d[0:2];`: the operands, in order.
    Alias {
        name: String,
        parts: Vec<Operand>,
    },
    If {
        cond: Expr,
        then_body: Vec<Stmt>,
        else_body: Vec<Stmt>,
    },
    For {
        var: String,
        iter: ForIter,
        body: Vec<Stmt>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stmt {
    pub kind: StmtKind,
    pub line: u32,
    pub col: u32,
}

/// `start`, `step`, `stop` of a range.
type RangeParts = (Option<Expr>, Option<Expr>, Option<Expr>);

pub(crate) struct Parser<'t> {
    toks: &'t [Token],
    pos: usize,
    depth: usize,
    max_depth: usize,
}

/// Words that start constructs this reader does not support, with the name used in the error.
const UNSUPPORTED_WORDS: &[(&str, &str)] = &[
    ("def", "subroutine definitions ('def')"),
    ("extern", "'extern' declarations"),
    ("cal", "'cal' blocks"),
    ("defcal", "'defcal' calibrations"),
    ("defcalgrammar", "'defcalgrammar'"),
    ("box", "timing 'box'"),
    ("stretch", "'stretch' timing variables"),
    ("duration", "'duration' variables"),
    ("while", "'while' loops"),
    ("switch", "'switch' statements"),
    ("array", "arrays"),
    ("return", "'return'"),
    ("break", "'break'"),
    ("continue", "'continue'"),
    ("end", "'end'"),
    ("output", "'output' declarations"),
    ("int", "classical variables"),
    ("uint", "classical variables"),
    ("float", "classical variables"),
    ("angle", "classical variables"),
    ("bool", "classical variables"),
    ("complex", "classical variables"),
];

impl<'t> Parser<'t> {
    pub(crate) fn new(toks: &'t [Token], max_depth: usize) -> Self {
        Parser { toks, pos: 0, depth: 0, max_depth }
    }

    fn peek(&self) -> &Tok {
        self.toks.get(self.pos).map(|t| &t.tok).unwrap_or(&Tok::Eof)
    }

    fn peek_at(&self, n: usize) -> &Tok {
        self.toks.get(self.pos + n).map(|t| &t.tok).unwrap_or(&Tok::Eof)
    }

    fn here(&self) -> (u32, u32) {
        self.toks.get(self.pos).or_else(|| self.toks.last()).map(|t| (t.line, t.col)).unwrap_or((1, 1))
    }

    fn bump(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.pos < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn err<T>(&self, msg: &str) -> Result<T, ReadError> {
        let (l, c) = self.here();
        let found = match self.peek() {
            Tok::Eof => "end of input".to_string(),
            Tok::Ident(s) => format!("'{s}'"),
            Tok::Punct(p) => format!("'{p}'"),
            Tok::Int(_) | Tok::Float(_) => "a number".to_string(),
            Tok::Str(_) => "a string".to_string(),
            Tok::HwQubit(s) => format!("'${s}'"),
            Tok::Duration => "a duration".to_string(),
        };
        Err(syntax(&format!("{msg}, found {found}"), l, c))
    }

    fn is_punct(&self, p: &str) -> bool {
        matches!(self.peek(), Tok::Punct(q) if *q == p)
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s == w)
    }

    fn eat_punct(&mut self, p: &str) -> bool {
        if self.is_punct(p) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_punct(&mut self, p: &str) -> Result<(), ReadError> {
        if self.eat_punct(p) {
            Ok(())
        } else {
            self.err(&format!("expected '{p}'"))
        }
    }

    fn ident(&mut self, what: &str) -> Result<String, ReadError> {
        match self.peek() {
            Tok::Ident(s) => {
                let s = s.clone();
                self.pos += 1;
                Ok(s)
            }
            _ => self.err(&format!("expected {what}")),
        }
    }

    fn enter(&mut self) -> Result<(), ReadError> {
        self.depth += 1;
        if self.depth > self.max_depth {
            let (l, c) = self.here();
            return Err(ReadError::TooLarge {
                format: FORMAT,
                message: format!("nesting deeper than {} (line {l}, column {c})", self.max_depth),
            });
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    pub(crate) fn program(&mut self) -> Result<Vec<Stmt>, ReadError> {
        let mut out = Vec::new();
        while !matches!(self.peek(), Tok::Eof) {
            out.push(self.statement()?);
        }
        Ok(out)
    }

    /// `{ stmt* }` or a single statement.
    fn block_or_stmt(&mut self) -> Result<Vec<Stmt>, ReadError> {
        self.enter()?;
        let r = if self.eat_punct("{") {
            let mut out = Vec::new();
            loop {
                if self.eat_punct("}") {
                    break;
                }
                if matches!(self.peek(), Tok::Eof) {
                    return self.err("unterminated block: expected '}'");
                }
                out.push(self.statement()?);
            }
            Ok(out)
        } else {
            Ok(vec![self.statement()?])
        };
        self.leave();
        r
    }

    fn statement(&mut self) -> Result<Stmt, ReadError> {
        let (line, col) = self.here();
        let kind = self.statement_kind()?;
        Ok(Stmt { kind, line, col })
    }

    fn statement_kind(&mut self) -> Result<StmtKind, ReadError> {
        let word = match self.peek() {
            Tok::Ident(s) => s.clone(),
            Tok::Punct("@") => return Err(self.unsup_here("annotations ('@...')")),
            Tok::Punct("{") => return Err(self.unsup_here("bare scope blocks")),
            Tok::HwQubit(_) => return self.err("expected a statement"),
            _ => return self.err("expected a statement"),
        };
        match word.as_str() {
            "OPENQASM" => self.version(),
            "include" => self.include(),
            "qubit" | "bit" | "qreg" | "creg" => self.declaration(&word),
            "input" => self.input(),
            "const" => self.constant(),
            "gate" => self.gate_def(),
            "measure" => {
                self.pos += 1;
                let qubits = self.operand()?;
                let target = if self.eat_punct("->") { Some(self.operand()?) } else { None };
                self.expect_punct(";")?;
                Ok(StmtKind::Measure { qubits, target })
            }
            "reset" => {
                self.pos += 1;
                let op = self.operand()?;
                self.expect_punct(";")?;
                Ok(StmtKind::Reset(op))
            }
            "barrier" => {
                self.pos += 1;
                let ops = self.operand_list()?;
                self.expect_punct(";")?;
                Ok(StmtKind::Barrier(ops))
            }
            "delay" => self.delay(),
            "if" => self.if_else(),
            "for" => self.for_loop(),
            "let" => self.alias(),
            "else" => self.err("'else' without 'if'"),
            w => {
                if let Some((_, what)) = UNSUPPORTED_WORDS.iter().find(|(k, _)| *k == w) {
                    return Err(self.unsup_here(what));
                }
                self.gate_call_or_assignment()
            }
        }
    }

    /// `OPENQASM <version>;`
    fn version(&mut self) -> Result<StmtKind, ReadError> {
        self.pos += 1;
        let v = match self.bump() {
            Tok::Int(Some(v)) => v.to_string(),
            Tok::Float(f) => format!("{f}"),
            _ => {
                self.pos -= 1;
                return self.err("expected a version number");
            }
        };
        self.expect_punct(";")?;
        Ok(StmtKind::Version(v))
    }

    /// `include "<file>";`
    fn include(&mut self) -> Result<StmtKind, ReadError> {
        self.pos += 1;
        let path = match self.bump() {
            Tok::Str(s) => s,
            _ => {
                self.pos -= 1;
                return self.err("expected a file name string");
            }
        };
        self.expect_punct(";")?;
        Ok(StmtKind::Include(path))
    }

    /// `qubit[n] q;`, `bit[n] c;` and the OpenQASM 2 forms `qreg q[n];`, `creg c[n];`.
    fn declaration(&mut self, word: &str) -> Result<StmtKind, ReadError> {
        self.pos += 1;
        let quantum = word == "qubit" || word == "qreg";
        let (name, size) = if word == "qubit" || word == "bit" {
            let size = self.optional_size()?;
            if matches!(self.peek(), Tok::HwQubit(_)) {
                return Err(self.unsup_here("declaring physical qubits"));
            }
            (self.ident("a register name")?, size)
        } else {
            let name = self.ident("a register name")?;
            let size = self.optional_size()?;
            (name, size)
        };
        if self.is_punct("=") {
            return Err(self.unsup_here("initialized bit declarations"));
        }
        self.expect_punct(";")?;
        Ok(if quantum { StmtKind::QubitDecl { name, size } } else { StmtKind::BitDecl { name, size } })
    }

    /// An optional `[size]` of a declaration.
    fn optional_size(&mut self) -> Result<Option<Expr>, ReadError> {
        if self.eat_punct("[") {
            let e = self.expr()?;
            self.expect_punct("]")?;
            Ok(Some(e))
        } else {
            Ok(None)
        }
    }

    /// An optional `[width]` of a type, which the reader does not use.
    fn skip_type_width(&mut self) -> Result<(), ReadError> {
        if self.eat_punct("[") {
            self.expr()?;
            self.expect_punct("]")?;
        }
        Ok(())
    }

    /// `input <type> name;`
    fn input(&mut self) -> Result<StmtKind, ReadError> {
        self.pos += 1;
        let ty = self.ident("a type")?;
        self.skip_type_width()?;
        let name = self.ident("a parameter name")?;
        self.expect_punct(";")?;
        Ok(StmtKind::Input { ty, name })
    }

    /// `const <type> name = value;`
    fn constant(&mut self) -> Result<StmtKind, ReadError> {
        self.pos += 1;
        let ty = self.ident("a type")?;
        if !matches!(ty.as_str(), "int" | "uint" | "float" | "angle") {
            return Err(unsupported(&format!("'const {ty}' declarations")));
        }
        self.skip_type_width()?;
        let name = self.ident("a constant name")?;
        self.expect_punct("=")?;
        let value = self.expr()?;
        self.expect_punct(";")?;
        Ok(StmtKind::Const { name, value })
    }

    /// `gate name(params) qubits { body }`
    fn gate_def(&mut self) -> Result<StmtKind, ReadError> {
        self.pos += 1;
        let name = self.ident("a gate name")?;
        let mut params = Vec::new();
        if self.eat_punct("(") && !self.eat_punct(")") {
            loop {
                params.push(self.ident("a parameter name")?);
                if self.eat_punct(")") {
                    break;
                }
                self.expect_punct(",")?;
            }
        }
        let mut qubits = Vec::new();
        loop {
            qubits.push(self.ident("a qubit argument name")?);
            if !self.eat_punct(",") {
                break;
            }
        }
        if !self.is_punct("{") {
            return self.err("expected '{' to start the gate body");
        }
        let body = self.block_or_stmt()?;
        Ok(StmtKind::GateDef { name, params, qubits, body })
    }

    /// `delay[duration] operands;`
    fn delay(&mut self) -> Result<StmtKind, ReadError> {
        self.pos += 1;
        self.expect_punct("[")?;
        if matches!(self.peek(), Tok::Duration) {
            self.pos += 1;
        } else {
            return Err(self.unsup_here("delays that are not a duration literal"));
        }
        self.expect_punct("]")?;
        let ops = self.operand_list()?;
        self.expect_punct(";")?;
        Ok(StmtKind::Delay(ops))
    }

    /// `if (cond) body [else body]`
    fn if_else(&mut self) -> Result<StmtKind, ReadError> {
        self.pos += 1;
        self.expect_punct("(")?;
        let cond = self.expr()?;
        self.expect_punct(")")?;
        let then_body = self.block_or_stmt()?;
        let else_body = if self.is_word("else") {
            self.pos += 1;
            self.block_or_stmt()?
        } else {
            Vec::new()
        };
        Ok(StmtKind::If { cond, then_body, else_body })
    }

    /// `for [type] var in [range] | {set} body`
    fn for_loop(&mut self) -> Result<StmtKind, ReadError> {
        self.pos += 1;
        // Optional loop-variable type (`int`, `uint[32]`, ...).
        if !matches!(self.peek_at(1), Tok::Ident(w) if w == "in") {
            let ty = self.ident("a type")?;
            if !matches!(ty.as_str(), "int" | "uint" | "float" | "angle") {
                return Err(unsupported(&format!("'for' loops over '{ty}'")));
            }
            self.skip_type_width()?;
        }
        let var = self.ident("a loop variable")?;
        if !self.is_word("in") {
            return self.err("expected 'in'");
        }
        self.pos += 1;
        let iter = self.for_iter()?;
        let body = self.block_or_stmt()?;
        Ok(StmtKind::For { var, iter, body })
    }

    /// What a `for` loop runs over: a range in brackets or a set in braces.
    fn for_iter(&mut self) -> Result<ForIter, ReadError> {
        if self.eat_punct("[") {
            let (a, b, c) = self.range_parts()?;
            self.expect_punct("]")?;
            Ok(ForIter::Range(a, b, c))
        } else if self.eat_punct("{") {
            let mut items = Vec::new();
            if !self.eat_punct("}") {
                loop {
                    items.push(self.expr()?);
                    if self.eat_punct("}") {
                        break;
                    }
                    self.expect_punct(",")?;
                }
            }
            Ok(ForIter::Set(items))
        } else {
            Err(self.unsup_here("'for' loops over anything but a constant range or set"))
        }
    }

    /// `let name = a ++ {b, c[1]} ++ d[0:2];`
    fn alias(&mut self) -> Result<StmtKind, ReadError> {
        self.pos += 1;
        let name = self.ident("an alias name")?;
        self.expect_punct("=")?;
        let mut parts = Vec::new();
        loop {
            if self.eat_punct("{") {
                loop {
                    parts.push(self.operand()?);
                    if self.eat_punct("}") {
                        break;
                    }
                    self.expect_punct(",")?;
                }
            } else {
                parts.push(self.operand()?);
            }
            if !self.eat_punct("++") {
                break;
            }
        }
        self.expect_punct(";")?;
        Ok(StmtKind::Alias { name, parts })
    }

    fn unsup_here(&self, what: &str) -> ReadError {
        let (l, c) = self.here();
        unsupported(&format!("{what} (line {l}, column {c})"))
    }

    /// `[a:b]`, `[a:s:b]` (inside brackets; the opening bracket is consumed).
    fn range_parts(&mut self) -> Result<RangeParts, ReadError> {
        let first = if self.is_punct(":") { None } else { Some(self.expr()?) };
        if !self.eat_punct(":") {
            return self.err("expected ':' in a range");
        }
        let second = if self.is_punct(":") || self.is_punct("]") { None } else { Some(self.expr()?) };
        if self.eat_punct(":") {
            let third = if self.is_punct("]") { None } else { Some(self.expr()?) };
            Ok((first, second, third))
        } else {
            Ok((first, None, second))
        }
    }

    fn gate_call_or_assignment(&mut self) -> Result<StmtKind, ReadError> {
        // Assignment `c = measure q;` / `c[i] = measure q[j];`
        let save = self.pos;
        if let Tok::Ident(_) = self.peek() {
            if matches!(self.peek_at(1), Tok::Punct("=") | Tok::Punct("[")) {
                let target = self.operand()?;
                if self.eat_punct("=") {
                    if self.is_word("measure") {
                        self.pos += 1;
                        let qubits = self.operand()?;
                        self.expect_punct(";")?;
                        return Ok(StmtKind::Measure { qubits, target: Some(target) });
                    }
                    return Err(self.unsup_here("classical assignments"));
                }
                self.pos = save;
            }
        }
        if matches!(
            self.peek_at(1),
            Tok::Punct("+=" | "-=" | "*=" | "/=" | "%=" | "&=" | "|=" | "^=" | "<<=" | ">>=" | "**=")
        ) {
            return Err(self.unsup_here("classical assignments"));
        }
        let modifiers = self.modifiers()?;
        let name = self.ident("a gate name")?;
        let mut args = Vec::new();
        if self.eat_punct("(") && !self.eat_punct(")") {
            loop {
                args.push(self.expr()?);
                if self.eat_punct(")") {
                    break;
                }
                self.expect_punct(",")?;
            }
        }
        let operands = if self.is_punct(";") { Vec::new() } else { self.operand_list()? };
        self.expect_punct(";")?;
        Ok(StmtKind::GateCall { modifiers, name, args, operands })
    }

    /// Gate modifiers before a gate name (`inv @`, `pow(k) @`, `ctrl(n) @`, `negctrl @`).
    fn modifiers(&mut self) -> Result<Vec<Modifier>, ReadError> {
        let mut modifiers = Vec::new();
        loop {
            let m = match self.peek() {
                Tok::Ident(w) if w == "inv" && matches!(self.peek_at(1), Tok::Punct("@")) => {
                    self.pos += 1;
                    Modifier::Inv
                }
                Tok::Ident(w) if w == "pow" && matches!(self.peek_at(1), Tok::Punct("(")) => {
                    self.pos += 2;
                    let e = self.expr()?;
                    self.expect_punct(")")?;
                    Modifier::Pow(e)
                }
                Tok::Ident(w)
                    if (w == "ctrl" || w == "negctrl") && matches!(self.peek_at(1), Tok::Punct("@" | "(")) =>
                {
                    let neg = w == "negctrl";
                    self.pos += 1;
                    let n = if self.eat_punct("(") {
                        let e = self.expr()?;
                        self.expect_punct(")")?;
                        Some(e)
                    } else {
                        None
                    };
                    if neg {
                        Modifier::NegCtrl(n)
                    } else {
                        Modifier::Ctrl(n)
                    }
                }
                _ => break,
            };
            self.expect_punct("@")?;
            modifiers.push(m);
            if modifiers.len() > self.max_depth {
                return Err(ReadError::TooLarge {
                    format: FORMAT,
                    message: format!("more than {} gate modifiers", self.max_depth),
                });
            }
        }
        Ok(modifiers)
    }

    fn operand_list(&mut self) -> Result<Vec<Operand>, ReadError> {
        let mut ops = Vec::new();
        if self.is_punct(";") {
            return Ok(ops);
        }
        loop {
            ops.push(self.operand()?);
            if !self.eat_punct(",") {
                break;
            }
        }
        Ok(ops)
    }

    fn operand(&mut self) -> Result<Operand, ReadError> {
        match self.peek().clone() {
            Tok::HwQubit(n) => {
                self.pos += 1;
                Ok(Operand::Hw(n))
            }
            Tok::Ident(name) => {
                self.pos += 1;
                let index = if self.eat_punct("[") {
                    let idx = if self.eat_punct("{") {
                        let mut items = Vec::new();
                        loop {
                            items.push(self.expr()?);
                            if self.eat_punct("}") {
                                break;
                            }
                            self.expect_punct(",")?;
                        }
                        Index::Set(items)
                    } else {
                        let first = if self.is_punct(":") { None } else { Some(self.expr()?) };
                        if self.is_punct(":") {
                            self.pos += 1;
                            let second =
                                if self.is_punct(":") || self.is_punct("]") { None } else { Some(self.expr()?) };
                            if self.eat_punct(":") {
                                let third = if self.is_punct("]") { None } else { Some(self.expr()?) };
                                Index::Range(first, second, third)
                            } else {
                                Index::Range(first, None, second)
                            }
                        } else {
                            match first {
                                Some(e) => Index::Single(e),
                                None => return self.err("expected an index"),
                            }
                        }
                    };
                    self.expect_punct("]")?;
                    if self.is_punct("[") {
                        return Err(self.unsup_here("multiple indexing"));
                    }
                    Some(idx)
                } else {
                    None
                };
                Ok(Operand::Named { name, index })
            }
            _ => self.err("expected a qubit or bit operand"),
        }
    }

    // ---- expressions: precedence climbing, depth-limited ----

    pub(crate) fn expr(&mut self) -> Result<Expr, ReadError> {
        Ok(self.expr_d()?.0)
    }

    /// An expression and the depth of its tree. The tree depth is bounded by `4 * max_depth` so
    /// that everything walking it later (lowering, evaluation, dropping) stays shallow.
    fn expr_d(&mut self) -> Result<(Expr, usize), ReadError> {
        self.enter()?;
        let r = self.binary(0);
        self.leave();
        r
    }

    fn check_tree_depth(&self, d: usize) -> Result<usize, ReadError> {
        let max = self.max_depth.saturating_mul(4);
        if d > max {
            let (l, c) = self.here();
            return Err(ReadError::TooLarge {
                format: FORMAT,
                message: format!("expression nested deeper than {max} (line {l}, column {c})"),
            });
        }
        Ok(d)
    }

    fn binop_info(&self) -> Option<(u8, BinOp, bool)> {
        // (precedence, op, right-assoc)
        let Tok::Punct(p) = self.peek() else {
            return None;
        };
        Some(match *p {
            "||" => (1, BinOp::Other("||"), false),
            "&&" => (2, BinOp::Other("&&"), false),
            "|" => (3, BinOp::Other("|"), false),
            "^" => (4, BinOp::Other("^"), false),
            "&" => (5, BinOp::Other("&"), false),
            "==" => (6, BinOp::Eq, false),
            "!=" => (6, BinOp::Ne, false),
            "<" => (7, BinOp::Other("<"), false),
            ">" => (7, BinOp::Other(">"), false),
            "<=" => (7, BinOp::Other("<="), false),
            ">=" => (7, BinOp::Other(">="), false),
            "<<" => (8, BinOp::Other("<<"), false),
            ">>" => (8, BinOp::Other(">>"), false),
            "+" => (9, BinOp::Add, false),
            "-" => (9, BinOp::Sub, false),
            "*" => (10, BinOp::Mul, false),
            "/" => (10, BinOp::Div, false),
            "%" => (10, BinOp::Other("%"), false),
            "**" => (12, BinOp::Pow, true),
            _ => return None,
        })
    }

    fn binary(&mut self, min_prec: u8) -> Result<(Expr, usize), ReadError> {
        let (mut lhs, mut d) = self.unary()?;
        while let Some((prec, op, right)) = self.binop_info() {
            if prec < min_prec {
                break;
            }
            self.pos += 1;
            let next_min = if right { prec } else { prec + 1 };
            self.enter()?;
            let rhs = self.binary(next_min);
            self.leave();
            let (rhs, dr) = rhs?;
            d = self.check_tree_depth(d.max(dr) + 1)?;
            lhs = Expr::Bin(op, Box::new(lhs), Box::new(rhs));
        }
        Ok((lhs, d))
    }

    fn unary(&mut self) -> Result<(Expr, usize), ReadError> {
        for (p, neg) in [("-", true), ("!", false)] {
            if self.eat_punct(p) {
                self.enter()?;
                let e = self.unary();
                self.leave();
                let (e, d) = e?;
                let d = self.check_tree_depth(d + 1)?;
                let e = if neg { Expr::Neg(Box::new(e)) } else { Expr::Not(Box::new(e)) };
                return Ok((e, d));
            }
        }
        if self.eat_punct("+") {
            self.enter()?;
            let e = self.unary();
            self.leave();
            return e;
        }
        if self.is_punct("~") {
            return Err(self.unsup_here("the '~' operator"));
        }
        let (base, db) = self.atom()?;
        if self.is_punct("**") {
            // `**` binds tighter than unary minus on its left (`-a**b == -(a**b)`) and accepts a
            // unary operand on its right (`a ** -b`); right-associative.
            self.pos += 1;
            self.enter()?;
            let rhs = self.unary();
            self.leave();
            let (rhs, dr) = rhs?;
            let d = self.check_tree_depth(db.max(dr) + 1)?;
            return Ok((Expr::Bin(BinOp::Pow, Box::new(base), Box::new(rhs)), d));
        }
        Ok((base, db))
    }

    fn atom(&mut self) -> Result<(Expr, usize), ReadError> {
        match self.peek().clone() {
            Tok::Int(v) => {
                self.pos += 1;
                Ok((Expr::Int(v), 1))
            }
            Tok::Float(f) => {
                self.pos += 1;
                Ok((Expr::Num(f), 1))
            }
            Tok::Str(s) => {
                self.pos += 1;
                Ok((Expr::BitStr(s), 1))
            }
            Tok::Duration => Err(self.unsup_here("durations in expressions")),
            Tok::Punct("(") => {
                self.pos += 1;
                let e = self.expr_d()?;
                self.expect_punct(")")?;
                Ok(e)
            }
            Tok::Ident(name) => {
                self.pos += 1;
                match name.as_str() {
                    "true" => return Ok((Expr::Bool(true), 1)),
                    "false" => return Ok((Expr::Bool(false), 1)),
                    "measure" => return Err(self.unsup_here("'measure' inside an expression")),
                    _ => {}
                }
                if self.eat_punct("(") {
                    let mut args = Vec::new();
                    let mut d = 1;
                    if !self.eat_punct(")") {
                        loop {
                            let (a, da) = self.expr_d()?;
                            d = self.check_tree_depth(d.max(da + 1))?;
                            args.push(a);
                            if self.eat_punct(")") {
                                break;
                            }
                            self.expect_punct(",")?;
                        }
                    }
                    return Ok((Expr::Call(name, args), d));
                }
                if self.eat_punct("[") {
                    let (e, d) = self.expr_d()?;
                    let d = self.check_tree_depth(d + 1)?;
                    if self.is_punct(":") {
                        return Err(self.unsup_here("range indexing in expressions"));
                    }
                    self.expect_punct("]")?;
                    if self.is_punct("[") {
                        return Err(self.unsup_here("multiple indexing"));
                    }
                    return Ok((Expr::Index(name, Box::new(e)), d));
                }
                Ok((Expr::Ident(name), 1))
            }
            _ => self.err("expected an expression"),
        }
    }
}
