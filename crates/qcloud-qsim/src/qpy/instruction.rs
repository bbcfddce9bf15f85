//! Instruction records: the record header, its condition, bits, parameters and annotations, and
//! what each operation becomes in the IR (standard gates, directives, `if_else`, `box` and
//! inlined custom definitions).

use super::circuit::{CustomDef, Scope};
use super::cursor::{exact, read_generic, Cursor, Generic};
use super::{syntax, unsupported, Reader};
use crate::error::ReadError;
use crate::ir::{Condition, Instruction, Operation, ParamExpr};

/// The fixed-size fields of a CIRCUIT_INSTRUCTION record, with its name.
struct Record {
    pos: usize,
    name: String,
    num_params: u16,
    num_qargs: u32,
    num_cargs: u32,
    extras: u8,
    cond_size: usize,
    cond_value: i64,
    num_ctrl: u32,
    ctrl_state: u32,
}

/// One decoded instruction, ready to become IR: its name, parameters (undecoded), output bits,
/// control count and state (from the record header) and its byte position for errors.
pub(super) struct Op<'r, 'a> {
    name: &'r str,
    params: &'r [Generic<'a>],
    qargs: &'r [usize],
    cargs: &'r [usize],
    num_ctrl: u32,
    ctrl_state: u32,
    pos: usize,
}

impl Op<'_, '_> {
    fn simple(&self, op: Operation) -> Instruction {
        Instruction { op, qubits: self.qargs.to_vec(), condition: None }
    }

    fn arity(&self, nq: usize, nc: usize) -> Result<(), ReadError> {
        if self.qargs.len() != nq || self.cargs.len() != nc {
            return Err(syntax(
                format!(
                    "'{}' applied to {} qubits and {} clbits (expected {nq} and {nc})",
                    self.name,
                    self.qargs.len(),
                    self.cargs.len()
                ),
                self.pos,
            ));
        }
        Ok(())
    }
}

fn read_record(c: &mut Cursor<'_>) -> Result<Record, ReadError> {
    let pos = c.base + c.pos;
    let name_size = c.u16()? as usize;
    let label_size = c.u16()? as usize;
    let num_params = c.u16()?;
    let num_qargs = c.u32()?;
    let num_cargs = c.u32()?;
    let extras = c.u8()?;
    let cond_size = c.u16()? as usize;
    let cond_value = c.i64()?;
    let num_ctrl = c.u32()?;
    let ctrl_state = c.u32()?;
    let name = c.string(name_size)?;
    let _label = c.take(label_size)?;
    Ok(Record { pos, name, num_params, num_qargs, num_cargs, extras, cond_size, cond_value, num_ctrl, ctrl_state })
}

/// The instruction's qubits and clbits, mapped to output bits.
fn read_bits(c: &mut Cursor<'_>, scope: &Scope<'_>, rec: &Record) -> Result<(Vec<usize>, Vec<usize>), ReadError> {
    c.check_count(u64::from(rec.num_qargs) + u64::from(rec.num_cargs), 5, "arguments")?;
    let mut qargs = Vec::new();
    for _ in 0..rec.num_qargs {
        let (kind, idx) = (c.u8()?, c.u32()? as usize);
        if kind != b'q' {
            return Err(c.err("expected a qubit argument"));
        }
        let q = scope.qmap.get(idx).copied().ok_or_else(|| c.err(&format!("qubit {idx} out of range")))?;
        if qargs.contains(&q) {
            return Err(c.err(&format!("qubit {idx} used twice by '{}'", rec.name)));
        }
        qargs.push(q);
    }
    let mut cargs = Vec::new();
    for _ in 0..rec.num_cargs {
        let (kind, idx) = (c.u8()?, c.u32()? as usize);
        if kind != b'c' {
            return Err(c.err("expected a clbit argument"));
        }
        let cl = scope.global_clbit(idx).ok_or_else(|| c.err(&format!("clbit {idx} out of range")))?;
        cargs.push(cl);
    }
    Ok((qargs, cargs))
}

/// The instruction's parameters (decoded later, by what the operation expects), then its
/// annotations, which are skipped.
fn read_params<'a>(c: &mut Cursor<'a>, rec: &Record) -> Result<Vec<Generic<'a>>, ReadError> {
    let mut params = Vec::new();
    c.check_count(u64::from(rec.num_params), 9, "parameters")?;
    for _ in 0..rec.num_params {
        params.push(read_generic(c)?);
    }
    if rec.extras & 0x80 != 0 {
        let n = c.u32()?;
        c.check_count(u64::from(n), 12, "annotations")?;
        for _ in 0..n {
            let _ns = c.u32()?;
            let size = c.u64()?;
            c.take_u64_len(size)?;
        }
    }
    Ok(params)
}

/// Custom-instruction names carry a suffix (`_<uuid hex>` up to v17, `_<counter>` in v18).
fn display_custom_name(name: &str, _version: u8) -> &str {
    match name.rsplit_once('_') {
        Some((base, _)) if !base.is_empty() => base,
        _ => name,
    }
}

impl Reader<'_> {
    pub(super) fn instruction<'a>(
        &mut self,
        c: &mut Cursor<'a>,
        scope: &Scope<'a>,
        depth: usize,
        out: &mut Vec<Instruction>,
        phase: Option<&mut Vec<ParamExpr>>,
    ) -> Result<(), ReadError> {
        self.count_work()?;
        let rec = read_record(c)?;
        let condition = self.read_condition(c, &rec, scope, depth)?;
        let (qargs, cargs) = read_bits(c, scope, &rec)?;
        let params = read_params(c, &rec)?;
        let op = Op {
            name: &rec.name,
            params: &params,
            qargs: &qargs,
            cargs: &cargs,
            num_ctrl: rec.num_ctrl,
            ctrl_state: rec.ctrl_state,
            pos: rec.pos,
        };
        // Control flow carries its condition itself; any other conditioned instruction (legacy
        // `c_if`) becomes an if-else around it.
        if op.name == "IfElseOp" {
            let condition = condition.ok_or_else(|| syntax("IfElseOp without a condition".into(), op.pos))?;
            return self.if_else(&op, condition, depth, out);
        }
        if let Some(condition) = condition {
            let mut body = Vec::new();
            self.operation(&op, scope, depth, &mut body, None)?;
            return self.emit(
                out,
                Instruction {
                    op: Operation::IfElse { condition, true_body: body, false_body: Vec::new() },
                    qubits: qargs,
                    condition: None,
                },
            );
        }
        self.operation(&op, scope, depth, out, phase)
    }

    /// The record's condition, if it has one (register/clbit or classical expression).
    fn read_condition(
        &mut self,
        c: &mut Cursor<'_>,
        rec: &Record,
        scope: &Scope<'_>,
        depth: usize,
    ) -> Result<Option<Condition>, ReadError> {
        let condition = match rec.extras & 0b11 {
            0 => None,
            1 => {
                let mut reg = c.sub(rec.cond_size)?;
                Some(self.register_condition(&mut reg, rec.cond_value, scope)?)
            }
            2 => {
                let g = read_generic(c)?;
                Some(self.expr_condition(&g, scope, depth)?)
            }
            _ => return Err(syntax("invalid condition type 3".into(), rec.pos)),
        };
        if let Some(cond) = &condition {
            // Register conditions copy the register's bits: count them as work.
            for _ in 1..cond.bits.len() {
                self.count_work()?;
            }
        }
        Ok(condition)
    }

    /// An `IfElseOp`: its two blocks are nested circuits on the instruction's bits.
    fn if_else(
        &mut self,
        op: &Op<'_, '_>,
        condition: Condition,
        depth: usize,
        out: &mut Vec<Instruction>,
    ) -> Result<(), ReadError> {
        let mut true_body = Vec::new();
        let mut false_body = Vec::new();
        let blocks = [op.params.first(), op.params.get(1)];
        for (i, block) in blocks.into_iter().enumerate() {
            let body = if i == 0 { &mut true_body } else { &mut false_body };
            match block {
                Some(g) if g.key == b'q' => {
                    let mut data = g.data;
                    let target = Some((op.qargs.to_vec(), op.cargs.to_vec()));
                    self.circuit_payload(&mut data, depth + 1, target, body, None)?;
                }
                Some(g) if g.key == b'z' && i == 1 => {}
                None if i == 1 => {}
                _ => {
                    return Err(syntax("IfElseOp block is not a circuit".into(), op.pos));
                }
            }
        }
        self.emit(
            out,
            Instruction {
                op: Operation::IfElse { condition, true_body, false_body },
                qubits: op.qargs.to_vec(),
                condition: None,
            },
        )
    }

    fn operation<'a>(
        &mut self,
        op: &Op<'_, 'a>,
        scope: &Scope<'a>,
        depth: usize,
        out: &mut Vec<Instruction>,
        phase: Option<&mut Vec<ParamExpr>>,
    ) -> Result<(), ReadError> {
        let mut phase = phase;
        if self.directive(op, scope, depth, out, phase.as_deref_mut())? {
            return Ok(());
        }
        if let Some(def) = scope.customs.get(op.name) {
            return self.custom(op, def, depth, out, phase);
        }
        if !op.cargs.is_empty() {
            return Err(unsupported(format!("instruction '{}' with classical arguments", op.name)));
        }
        let gate = self.standard_gate(op.name, op.qargs.len(), op.num_ctrl, op.ctrl_state, op.pos)?;
        let n = gate.num_params();
        if op.params.len() != n {
            return Err(syntax(format!("'{}' has {} parameters, expected {n}", op.name, op.params.len()), op.pos));
        }
        let mut exprs = Vec::new();
        for i in 0..n {
            exprs.push(self.param(op, i, n, scope, depth)?);
        }
        self.emit(out, op.simple(Operation::Gate { gate, params: exprs }))
    }

    /// The operations that are not gates (measure, reset, barrier, delay, global phase, box) and
    /// the control flow this reader refuses. `Ok(false)`: not one of them.
    fn directive<'a>(
        &mut self,
        op: &Op<'_, 'a>,
        scope: &Scope<'a>,
        depth: usize,
        out: &mut Vec<Instruction>,
        phase: Option<&mut Vec<ParamExpr>>,
    ) -> Result<bool, ReadError> {
        match op.name {
            "Measure" => {
                op.arity(1, 1)?;
                let clbit = op.cargs.first().copied().unwrap_or_default();
                self.emit(out, op.simple(Operation::Measure { clbit }))?;
            }
            "Reset" => {
                op.arity(1, 0)?;
                self.emit(out, op.simple(Operation::Reset))?;
            }
            "Barrier" => {
                self.emit(out, op.simple(Operation::Barrier))?;
            }
            "Delay" => {
                op.arity(1, 0)?;
                self.emit(out, op.simple(Operation::Delay))?;
            }
            "GlobalPhaseGate" => {
                op.arity(0, 0)?;
                let p = self.param(op, 0, 1, scope, depth)?;
                if let Some(phase) = phase {
                    phase.push(p);
                }
            }
            "BoxOp" => {
                let g = op
                    .params
                    .first()
                    .filter(|g| g.key == b'q')
                    .ok_or_else(|| syntax("BoxOp without a body".into(), op.pos))?;
                let mut data = g.data;
                self.circuit_payload(&mut data, depth + 1, Some((op.qargs.to_vec(), op.cargs.to_vec())), out, None)?;
            }
            "WhileLoopOp" | "ForLoopOp" | "SwitchCaseOp" | "BreakLoopOp" | "ContinueLoopOp" | "Store" => {
                return Err(unsupported(format!("control-flow instruction '{}'", op.name)));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// A custom instruction with a definition: its definition is inlined on the instruction's bits.
    fn custom(
        &mut self,
        op: &Op<'_, '_>,
        def: &CustomDef<'_>,
        depth: usize,
        out: &mut Vec<Instruction>,
        phase: Option<&mut Vec<ParamExpr>>,
    ) -> Result<(), ReadError> {
        let display = display_custom_name(op.name, self.version);
        if def.kind == b'p' {
            return Err(unsupported(format!("PauliEvolutionGate '{display}'")));
        }
        if !matches!(def.kind, b'g' | b'i' | b'c') {
            return Err(unsupported(format!(
                "custom operation '{display}' of kind '{}'",
                char::from(def.kind).escape_default()
            )));
        }
        if !def.has_definition {
            return Err(unsupported(format!("opaque instruction '{display}' (no definition)")));
        }
        if def.num_qubits as usize != op.qargs.len() || def.num_clbits as usize != op.cargs.len() {
            return Err(syntax(format!("custom instruction '{display}' applied to the wrong number of bits"), op.pos));
        }
        let mut data = def.data;
        let mut local_phase = Vec::new();
        let info = self.circuit_payload(
            &mut data,
            depth + 1,
            Some((op.qargs.to_vec(), op.cargs.to_vec())),
            out,
            Some(&mut local_phase),
        )?;
        if let Some(phase) = phase {
            if info.phase != ParamExpr::Const(0.0) {
                phase.push(info.phase);
            }
            phase.extend(local_phase);
        }
        Ok(())
    }

    /// Parameter `i` of `n` of a gate. Instruction parameters: int and float were little-endian
    /// up to v17.
    fn param(
        &self,
        op: &Op<'_, '_>,
        i: usize,
        n: usize,
        scope: &Scope<'_>,
        depth: usize,
    ) -> Result<ParamExpr, ReadError> {
        let g = op
            .params
            .get(i)
            .ok_or_else(|| syntax(format!("'{}' has {} parameters, expected {n}", op.name, op.params.len()), op.pos))?;
        let little = self.version < 18;
        let mut d = g.data;
        match g.key {
            b'f' => {
                let b: [u8; 8] = exact(&mut d)?;
                Ok(ParamExpr::Const(if little { f64::from_le_bytes(b) } else { f64::from_be_bytes(b) }))
            }
            b'i' => {
                let b: [u8; 8] = exact(&mut d)?;
                Ok(ParamExpr::Const(if little { i64::from_le_bytes(b) } else { i64::from_be_bytes(b) } as f64))
            }
            _ => self.value_expr(g, scope, depth),
        }
    }
}
