//! One circuit payload (top level, custom definition or control-flow block): its header, the
//! per-payload tables (annotation states, parameter vectors, custom definitions), its
//! instructions and its layout.

use std::collections::HashMap;

use super::cursor::Cursor;
use super::header::{Header, RegInfo};
use super::{syntax, too_large, unsupported, Reader};
use crate::error::ReadError;
use crate::ir::{Circuit, ClassicalRegister, Instruction, ParamExpr};

/// A `ParameterVector` of the v18 per-circuit table.
pub(super) struct VectorInfo {
    pub(super) name: String,
    pub(super) uuid: u128,
    pub(super) size: u64,
}

/// A custom instruction definition from the CUSTOM_DEFINITIONS table.
pub(super) struct CustomDef<'a> {
    pub(super) kind: u8,
    pub(super) num_qubits: u32,
    pub(super) num_clbits: u32,
    pub(super) has_definition: bool,
    pub(super) data: Cursor<'a>,
}

/// Per-circuit-payload state needed to decode values and instructions.
pub(super) struct Scope<'a> {
    pub(super) cregs: Vec<RegInfo>,
    pub(super) vectors: Vec<VectorInfo>,
    pub(super) customs: HashMap<String, CustomDef<'a>>,
    /// Where this payload's qubits / clbits land in the output circuit.
    pub(super) qmap: Vec<usize>,
    pub(super) cmap: Vec<usize>,
}

impl Scope<'_> {
    fn creg(&self, name: &str) -> Option<&RegInfo> {
        self.cregs.iter().find(|r| r.name == name)
    }

    pub(super) fn global_clbit(&self, local: usize) -> Option<usize> {
        self.cmap.get(local).copied()
    }

    /// The output clbits of a classical register of this scope.
    pub(super) fn register_bits(&self, name: &str, pos: usize) -> Result<Vec<usize>, ReadError> {
        let reg = self
            .creg(name)
            .ok_or_else(|| syntax(format!("condition names an unknown classical register '{name}'"), pos))?;
        let mut bits = Vec::new();
        for b in &reg.bits {
            let g = b
                .and_then(|l| self.global_clbit(l))
                .ok_or_else(|| syntax(format!("register '{name}' has a bit that is not in the circuit"), pos))?;
            bits.push(g);
        }
        Ok(bits)
    }
}

/// What a payload tells its caller besides its instructions.
pub(super) struct PayloadInfo {
    pub(super) name: String,
    pub(super) num_qubits: usize,
    pub(super) num_clbits: usize,
    pub(super) cregs: Vec<ClassicalRegister>,
    pub(super) phase: ParamExpr,
}

impl Reader<'_> {
    pub(super) fn top_level_circuit(&mut self, c: &mut Cursor<'_>) -> Result<Circuit, ReadError> {
        let mut out = Vec::new();
        let mut phase = Vec::new();
        let info = self.circuit_payload(c, 0, None, &mut out, Some(&mut phase))?;
        let mut global_phase = info.phase;
        for p in phase {
            global_phase = add_phase(global_phase, p);
        }
        Ok(Circuit {
            name: Some(info.name),
            num_qubits: info.num_qubits,
            num_clbits: info.num_clbits,
            cregs: info.cregs,
            instructions: out,
            global_phase,
        })
    }

    /// Read one circuit payload. `target` is `Some((qmap, cmap))` for a nested payload (custom
    /// definition, control-flow block): its bits are mapped onto those output bits. Instructions
    /// go to `out`; unconditional global phases of inlined definitions go to `phase` if given.
    pub(super) fn circuit_payload<'a>(
        &mut self,
        c: &mut Cursor<'a>,
        depth: usize,
        target: Option<(Vec<usize>, Vec<usize>)>,
        out: &mut Vec<Instruction>,
        phase: Option<&mut Vec<ParamExpr>>,
    ) -> Result<PayloadInfo, ReadError> {
        self.check_depth(depth, c.base + c.pos)?;
        if depth > 0 {
            self.count_nested_bytes(c.remaining())?;
        }
        let header_pos = c.base + c.pos;
        let header = self.header(c)?;
        let (qmap, cmap) = bit_maps(&header, target, header_pos)?;
        // Annotation states (v15+): skipped.
        if self.version >= 15 {
            skip_annotation_states(c)?;
        }
        let vectors = if self.version >= 18 { vector_table(c)? } else { Vec::new() };
        let customs = custom_table(c)?;
        let (cregs_out, scope_regs) = classical_registers(header.registers, depth, header_pos)?;
        let scope = Scope { cregs: scope_regs, vectors, customs, qmap, cmap };
        let global_phase = self.value_expr(&header.phase, &scope, depth)?;
        let mut phase = phase;
        c.check_count(header.num_instructions, 33, "instructions")?;
        for _ in 0..header.num_instructions {
            self.instruction(c, &scope, depth, out, phase.as_deref_mut())?;
        }
        if self.version < 18 {
            let num_cals = c.u16()?;
            if num_cals != 0 {
                return Err(unsupported("pulse calibrations".into()));
            }
        }
        self.layout(c)?;
        Ok(PayloadInfo {
            name: header.name,
            num_qubits: header.num_qubits,
            num_clbits: header.num_clbits,
            cregs: cregs_out,
            phase: global_phase,
        })
    }

    /// Definitions are re-read at every use: bound the total bytes read that way.
    fn count_nested_bytes(&mut self, bytes: usize) -> Result<(), ReadError> {
        self.nested_bytes = self.nested_bytes.saturating_add(bytes);
        if self.nested_bytes > self.limits.max_source_bytes.saturating_mul(16) {
            return Err(too_large("custom definitions and blocks expand to too much data".into()));
        }
        Ok(())
    }
}

/// Where the payload's qubits and clbits land: the caller's bits for a nested payload (which
/// must match the header's counts), the identity at the top level.
fn bit_maps(
    header: &Header<'_>,
    target: Option<(Vec<usize>, Vec<usize>)>,
    header_pos: usize,
) -> Result<(Vec<usize>, Vec<usize>), ReadError> {
    match target {
        Some((q, cl)) => {
            if q.len() != header.num_qubits || cl.len() != header.num_clbits {
                return Err(syntax(
                    format!(
                        "nested circuit has {} qubits and {} clbits but is applied to {} and {}",
                        header.num_qubits,
                        header.num_clbits,
                        q.len(),
                        cl.len()
                    ),
                    header_pos,
                ));
            }
            Ok((q, cl))
        }
        None => Ok(((0..header.num_qubits).collect(), (0..header.num_clbits).collect())),
    }
}

/// The annotation-state table (v15+): namespaces and their serialised states, not needed.
fn skip_annotation_states(c: &mut Cursor<'_>) -> Result<(), ReadError> {
    let n = c.u32()?;
    c.check_count(u64::from(n), 12, "annotation namespaces")?;
    for _ in 0..n {
        let ns = c.u32()?;
        let state = c.u64()?;
        c.take(ns as usize)?;
        c.take_u64_len(state)?;
    }
    Ok(())
}

/// The v18 parameter-vector table.
fn vector_table(c: &mut Cursor<'_>) -> Result<Vec<VectorInfo>, ReadError> {
    let mut vectors = Vec::new();
    let n = c.u16()?;
    c.check_count(u64::from(n), 26, "parameter vectors")?;
    for _ in 0..n {
        let name_size = c.u16()? as usize;
        let size = c.u64()?;
        let uuid = u128::from_be_bytes(c.array()?);
        let name = c.string(name_size)?;
        vectors.push(VectorInfo { name, uuid, size });
    }
    Ok(vectors)
}

/// The CUSTOM_DEFINITIONS table; each definition's payload is kept unread until it is used.
fn custom_table<'a>(c: &mut Cursor<'a>) -> Result<HashMap<String, CustomDef<'a>>, ReadError> {
    let mut customs = HashMap::new();
    let n = c.u64()?;
    c.check_count(n, 36, "custom definitions")?;
    for _ in 0..n {
        let name_size = c.u16()? as usize;
        let kind = c.u8()?;
        let num_qubits = c.u32()?;
        let num_clbits = c.u32()?;
        let has_definition = c.u8()? != 0;
        let size = c.u64()?;
        let _num_ctrl = c.u32()?;
        let _ctrl_state = c.u32()?;
        let base_size = c.u64()?;
        let name = c.string(name_size)?;
        let size = usize::try_from(size).map_err(|_| c.err("length does not fit"))?;
        let data = c.sub(size)?;
        c.take_u64_len(base_size)?;
        customs.insert(name, CustomDef { kind, num_qubits, num_clbits, has_definition, data });
    }
    Ok(customs)
}

/// The classical registers of a payload: those of the output circuit (top level, in the
/// circuit, every bit present) and all of them for the payload's scope.
fn classical_registers(
    registers: Vec<(bool, bool, RegInfo)>,
    depth: usize,
    header_pos: usize,
) -> Result<(Vec<ClassicalRegister>, Vec<RegInfo>), ReadError> {
    let mut cregs_out = Vec::new();
    let mut scope_regs = Vec::new();
    for (quantum, in_circuit, reg) in registers {
        if quantum {
            continue;
        }
        if in_circuit && depth == 0 {
            let mut bits = Vec::new();
            for b in &reg.bits {
                bits.push(b.ok_or_else(|| {
                    syntax(format!("register '{}' has a bit outside the circuit", reg.name), header_pos)
                })?);
            }
            cregs_out.push(ClassicalRegister { name: reg.name.clone(), bits });
        }
        scope_regs.push(reg);
    }
    Ok((cregs_out, scope_regs))
}

fn add_phase(a: ParamExpr, b: ParamExpr) -> ParamExpr {
    match (&a, &b) {
        (ParamExpr::Const(x), ParamExpr::Const(y)) => ParamExpr::Const(x + y),
        (ParamExpr::Const(x), _) if *x == 0.0 => b,
        (_, ParamExpr::Const(y)) if *y == 0.0 => a,
        _ => ParamExpr::Add(Box::new(a), Box::new(b)),
    }
}
