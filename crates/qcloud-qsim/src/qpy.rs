//! QPY reader: Qiskit's binary circuit format, versions 13 to 18.
//!
//! Written from the QPY specification (`qiskit/qpy/__init__.py`) as shipped with Qiskit 2.6.2,
//! whose version 18 differs from earlier drafts (register attachment byte, parameter-vector
//! table, tagged register payloads, no calibrations block, big-endian instruction parameters).
//!
//! The reader covers what Qiskit 2.x writes for transpiled and untranspiled circuits: registers
//! and standalone bits, the standard gate library, `measure`, `reset`, `barrier`, `delay`,
//! `if_else` (and `box`, which is inlined), custom gates with definitions (inlined, bounded
//! depth), `Parameter`, `ParameterVectorElement`, `ParameterExpression` (the v13+ replay
//! encoding) and the global phase. Anything else is reported as [`ReadError::Unsupported`].
//!
//! Input is hostile: every length is checked against the remaining bytes before anything is
//! allocated, nesting (circuits inside circuits, expressions) is bounded by
//! [`ReadLimits::max_depth`], and the total work is bounded by [`ReadLimits::max_instructions`].

use std::collections::HashMap;

use crate::error::{ReadError, ReadLimits};
use crate::ir::{Circuit, ClassicalRegister, Condition, Func, Gate, Instruction, Operation, ParamExpr};

const FORMAT: &str = "QPY";
/// Oldest and newest QPY versions this reader accepts.
pub const MIN_VERSION: u8 = 13;
pub const MAX_VERSION: u8 = 18;

/// Read every circuit of a QPY file (uncompressed bytes, starting with `QISKIT`).
pub fn parse(bytes: &[u8], limits: &ReadLimits) -> Result<Vec<Circuit>, ReadError> {
    if bytes.len() > limits.max_source_bytes {
        return Err(too_large(format!("{} bytes of QPY exceed the limit of {}", bytes.len(), limits.max_source_bytes)));
    }
    let mut cur = Cursor::new(bytes);
    let magic = cur.take(6)?;
    if magic != b"QISKIT" {
        return Err(cur.err("not a QPY file (missing 'QISKIT' magic)"));
    }
    let version = cur.u8()?;
    if !(MIN_VERSION..=MAX_VERSION).contains(&version) {
        return Err(unsupported(format!("QPY version {version} (supported: {MIN_VERSION} to {MAX_VERSION})")));
    }
    let _qiskit_version = cur.take(3)?;
    let num_programs = cur.u64()?;
    let _symbolic_encoding = cur.u8()?;
    match cur.u8()? {
        b'q' => {}
        b's' => return Err(unsupported("QPY payloads of schedule blocks".into())),
        other => return Err(cur.err(&format!("invalid program type key {other:#04x}"))),
    }
    let mut offsets = Vec::new();
    if version >= 16 {
        // One u64 per program: never allocate more than the bytes can hold.
        if num_programs > (cur.remaining() / 8) as u64 {
            return Err(cur.err("circuit offset table is longer than the file"));
        }
        for _ in 0..num_programs {
            offsets.push(cur.u64()?);
        }
    }
    let mut reader = Reader {
        version,
        limits,
        work: 0,
        work_limit: limits.max_instructions.saturating_mul(2).saturating_add(1024),
        emitted: 0,
        nested_bytes: 0,
    };
    let mut circuits = Vec::new();
    let mut i: u64 = 0;
    while i < num_programs {
        if let Some(&off) = offsets.get(i as usize) {
            if off != cur.pos as u64 {
                return Err(cur.err(&format!("circuit {i} starts at byte {} but the offset table says {off}", cur.pos)));
            }
        }
        circuits.push(reader.top_level_circuit(&mut cur)?);
        i += 1;
    }
    Ok(circuits)
}

// ------------------------------------------------------------------------------------------------
// Errors

fn syntax(message: String, pos: usize) -> ReadError {
    ReadError::Syntax { format: FORMAT, message, location: Some(format!("byte {pos}")) }
}

fn unsupported(message: String) -> ReadError {
    ReadError::Unsupported { format: FORMAT, message }
}

fn too_large(message: String) -> ReadError {
    ReadError::TooLarge { format: FORMAT, message }
}

// ------------------------------------------------------------------------------------------------
// Checked cursor

/// A read position in a byte slice; every read is bounds-checked.
#[derive(Clone, Copy)]
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    /// Offset of `data[0]` in the whole file, for error locations.
    base: usize,
}

impl<'a> Cursor<'a> {
    fn new(data: &'a [u8]) -> Self {
        Cursor { data, pos: 0, base: 0 }
    }

    fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    fn at_end(&self) -> bool {
        self.remaining() == 0
    }

    fn err(&self, message: &str) -> ReadError {
        syntax(message.to_string(), self.base + self.pos)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ReadError> {
        if n > self.remaining() {
            return Err(self.err(&format!("unexpected end of data: need {n} bytes, {} left", self.remaining())));
        }
        let start = self.pos;
        self.pos += n;
        self.data.get(start..start + n).ok_or_else(|| self.err("unexpected end of data"))
    }

    /// Take a length-prefixed payload given as u64.
    fn take_u64_len(&mut self, n: u64) -> Result<&'a [u8], ReadError> {
        let n = usize::try_from(n).map_err(|_| self.err("length does not fit in memory"))?;
        self.take(n)
    }

    /// A sub-cursor over the next `n` bytes (which are consumed).
    fn sub(&mut self, n: usize) -> Result<Cursor<'a>, ReadError> {
        let base = self.base + self.pos;
        let data = self.take(n)?;
        Ok(Cursor { data, pos: 0, base })
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ReadError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, ReadError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, ReadError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, ReadError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn i32(&mut self) -> Result<i32, ReadError> {
        Ok(i32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, ReadError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, ReadError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    fn string(&mut self, n: usize) -> Result<String, ReadError> {
        let pos = self.base + self.pos;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| syntax("string is not valid UTF-8".into(), pos))
    }

    /// Check that `count` items of at least `width` bytes each can still follow.
    fn check_count(&self, count: u64, width: usize, what: &str) -> Result<(), ReadError> {
        let max = (self.remaining() / width.max(1)) as u64;
        if count > max {
            return Err(
                self.err(&format!("{what}: {count} entries announced but only {} bytes left", self.remaining()))
            );
        }
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------------
// Values

/// A generic `(type key, payload)` pair (INSTRUCTION_PARAM), decoded lazily.
#[derive(Clone, Copy)]
struct Generic<'a> {
    key: u8,
    data: Cursor<'a>,
}

fn read_generic<'a>(c: &mut Cursor<'a>) -> Result<Generic<'a>, ReadError> {
    let key = c.u8()?;
    let len = c.u64()?;
    let len = usize::try_from(len).map_err(|_| c.err("length does not fit in memory"))?;
    let data = c.sub(len)?;
    Ok(Generic { key, data })
}

/// A `ParameterVector` of the v18 per-circuit table.
struct VectorInfo {
    name: String,
    uuid: u128,
    size: u64,
}

/// A classical register as declared in a circuit payload: circuit-local clbit indices.
struct RegInfo {
    name: String,
    bits: Vec<Option<usize>>,
}

/// A custom instruction definition from the CUSTOM_DEFINITIONS table.
struct CustomDef<'a> {
    kind: u8,
    num_qubits: u32,
    num_clbits: u32,
    has_definition: bool,
    data: Cursor<'a>,
}

/// Per-circuit-payload state needed to decode values and instructions.
struct Scope<'a> {
    cregs: Vec<RegInfo>,
    vectors: Vec<VectorInfo>,
    customs: HashMap<String, CustomDef<'a>>,
    /// Where this payload's qubits / clbits land in the output circuit.
    qmap: Vec<usize>,
    cmap: Vec<usize>,
}

impl Scope<'_> {
    fn creg(&self, name: &str) -> Option<&RegInfo> {
        self.cregs.iter().find(|r| r.name == name)
    }

    fn global_clbit(&self, local: usize) -> Option<usize> {
        self.cmap.get(local).copied()
    }

    /// The output clbits of a classical register of this scope.
    fn register_bits(&self, name: &str, pos: usize) -> Result<Vec<usize>, ReadError> {
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

struct Reader<'l> {
    version: u8,
    limits: &'l ReadLimits,
    /// Instruction records parsed (including re-parses of inlined definitions).
    work: usize,
    work_limit: usize,
    /// Instructions emitted into the output.
    emitted: usize,
    /// Bytes of nested circuit payloads read so far (re-reads included).
    nested_bytes: usize,
}

/// What the header of a circuit payload declares.
struct Header<'a> {
    name: String,
    phase: Generic<'a>,
    num_qubits: usize,
    num_clbits: usize,
    num_instructions: u64,
    /// Registers in declaration order: (is_quantum, in_circuit, info).
    registers: Vec<(bool, bool, RegInfo)>,
}

impl<'l> Reader<'l> {
    fn top_level_circuit(&mut self, c: &mut Cursor<'_>) -> Result<Circuit, ReadError> {
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

    fn check_depth(&self, depth: usize, pos: usize) -> Result<(), ReadError> {
        if depth > self.limits.max_depth {
            return Err(too_large(format!("nesting deeper than {} (at byte {pos})", self.limits.max_depth)));
        }
        Ok(())
    }

    fn header<'a>(&self, c: &mut Cursor<'a>) -> Result<Header<'a>, ReadError> {
        let name_size = c.u16()? as usize;
        let phase_key = c.u8()?;
        let phase_size = c.u16()? as usize;
        let num_qubits = c.u32()? as usize;
        let num_clbits = c.u32()? as usize;
        let metadata_size = c.u64()?;
        let num_registers = c.u32()?;
        let num_instructions = c.u64()?;
        let num_vars = c.u32()?;
        if num_qubits > self.limits.max_qubits {
            return Err(too_large(format!("{num_qubits} qubits exceed the limit of {}", self.limits.max_qubits)));
        }
        if num_clbits > self.limits.max_clbits {
            return Err(too_large(format!("{num_clbits} clbits exceed the limit of {}", self.limits.max_clbits)));
        }
        let name = c.string(name_size)?;
        let phase = Generic { key: phase_key, data: c.sub(phase_size)? };
        let _metadata = c.take_u64_len(metadata_size)?;
        let mut registers = Vec::new();
        c.check_count(u64::from(num_registers), 9, "registers")?;
        for _ in 0..num_registers {
            registers.push(self.register(c, Some((num_qubits, num_clbits)))?);
        }
        // Standalone classical variables: parsed only to be skipped.
        c.check_count(u64::from(num_vars), 20, "standalone variables")?;
        for _ in 0..num_vars {
            let _uuid = c.take(16)?;
            let _usage = c.u8()?;
            let name_size = c.u16()? as usize;
            read_expr_type(c)?;
            c.take(name_size)?;
        }
        Ok(Header { name, phase, num_qubits, num_clbits, num_instructions, registers })
    }

    /// One REGISTER. With `limits` = `None` (layout registers) the bit indices are skipped
    /// without being collected or range-checked.
    fn register(&self, c: &mut Cursor<'_>, limits: Option<(usize, usize)>) -> Result<(bool, bool, RegInfo), ReadError> {
        let pos = c.base + c.pos;
        let kind = c.u8()?;
        let quantum = match kind {
            b'q' | b'a' => true,
            b'c' => false,
            _ => return Err(c.err(&format!("invalid register type {kind:#04x}"))),
        };
        let _standalone = c.u8()?;
        let size = c.u32()?;
        let name_size = c.u16()? as usize;
        let in_circuit = c.u8()? != 0;
        let attachment = if self.version >= 18 { c.u8()? } else { 0 };
        let name = c.string(name_size)?;
        let mut bits = Vec::new();
        let Some((num_qubits, num_clbits)) = limits else {
            match attachment {
                1 => {
                    c.u32()?;
                }
                _ => {
                    let width = if self.version >= 18 { 4 } else { 8 };
                    c.check_count(u64::from(size), width, "register bits")?;
                    c.take(size as usize * width)?;
                }
            }
            return Ok((quantum, in_circuit, RegInfo { name, bits }));
        };
        let limit = if quantum { num_qubits } else { num_clbits };
        match attachment {
            1 => {
                let start = c.u32()? as usize;
                let end = start.checked_add(size as usize);
                if end.is_none_or(|e| e > limit) {
                    return Err(syntax(format!("register '{name}' runs past the circuit's bits"), pos));
                }
                bits.extend((start..start + size as usize).map(Some));
            }
            0 => {
                let width = if self.version >= 18 { 4 } else { 8 };
                c.check_count(u64::from(size), width, "register bits")?;
                for _ in 0..size {
                    let idx: i64 = if self.version >= 18 {
                        match c.u32()? {
                            u32::MAX => -1,
                            v => i64::from(v),
                        }
                    } else {
                        c.i64()?
                    };
                    if idx < 0 {
                        bits.push(None);
                    } else if (idx as u64) < limit as u64 {
                        bits.push(Some(idx as usize));
                    } else {
                        return Err(syntax(format!("register '{name}' refers to bit {idx} of {limit}"), pos));
                    }
                }
            }
            other => return Err(syntax(format!("invalid register attachment {other}"), pos)),
        }
        Ok((quantum, in_circuit, RegInfo { name, bits }))
    }

    /// Read one circuit payload. `target` is `Some((qmap, cmap))` for a nested payload (custom
    /// definition, control-flow block): its bits are mapped onto those output bits. Instructions
    /// go to `out`; unconditional global phases of inlined definitions go to `phase` if given.
    fn circuit_payload<'a>(
        &mut self,
        c: &mut Cursor<'a>,
        depth: usize,
        target: Option<(Vec<usize>, Vec<usize>)>,
        out: &mut Vec<Instruction>,
        phase: Option<&mut Vec<ParamExpr>>,
    ) -> Result<PayloadInfo, ReadError> {
        self.check_depth(depth, c.base + c.pos)?;
        if depth > 0 {
            // Definitions are re-read at every use: bound the total bytes read that way.
            self.nested_bytes = self.nested_bytes.saturating_add(c.remaining());
            if self.nested_bytes > self.limits.max_source_bytes.saturating_mul(16) {
                return Err(too_large("custom definitions and blocks expand to too much data".into()));
            }
        }
        let header_pos = c.base + c.pos;
        let header = self.header(c)?;
        let (qmap, cmap) = match target {
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
                (q, cl)
            }
            None => ((0..header.num_qubits).collect(), (0..header.num_clbits).collect()),
        };
        // Annotation states (v15+): skipped.
        if self.version >= 15 {
            let n = c.u32()?;
            c.check_count(u64::from(n), 12, "annotation namespaces")?;
            for _ in 0..n {
                let ns = c.u32()?;
                let state = c.u64()?;
                c.take(ns as usize)?;
                c.take_u64_len(state)?;
            }
        }
        let mut vectors = Vec::new();
        if self.version >= 18 {
            let n = c.u16()?;
            c.check_count(u64::from(n), 26, "parameter vectors")?;
            for _ in 0..n {
                let name_size = c.u16()? as usize;
                let size = c.u64()?;
                let uuid = u128::from_be_bytes(c.array()?);
                let name = c.string(name_size)?;
                vectors.push(VectorInfo { name, uuid, size });
            }
        }
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
        let mut cregs_out = Vec::new();
        let mut scope_regs = Vec::new();
        for (quantum, in_circuit, reg) in header.registers {
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

    /// LAYOUT (v10+ form): parsed and discarded (the IR works on physical qubits).
    fn layout(&self, c: &mut Cursor<'_>) -> Result<(), ReadError> {
        let _exists = c.u8()?;
        let initial = c.i32()?.max(0) as u64;
        let input_mapping = c.i32()?.max(0) as u64;
        let final_layout = c.i32()?.max(0) as u64;
        let extra = c.u32()?;
        let _input_qubit_count = c.i32()?;
        c.check_count(u64::from(extra), 9, "layout registers")?;
        for _ in 0..extra {
            // Layout registers may name bits beyond the circuit: no range check.
            self.register(c, None)?;
        }
        c.check_count(initial, 4, "initial layout")?;
        for _ in 0..initial {
            let first = c.i32()?;
            if first < 0 {
                if self.version < 18 {
                    c.i32()?;
                }
            } else {
                let len = c.i32()?;
                if len < 0 {
                    return Err(c.err("negative register name length in layout"));
                }
                c.take(len as usize)?;
            }
        }
        c.check_count(input_mapping, 4, "input mapping")?;
        c.take(input_mapping as usize * 4)?;
        c.check_count(final_layout, 4, "final layout")?;
        c.take(final_layout as usize * 4)?;
        Ok(())
    }

    fn count_work(&mut self) -> Result<(), ReadError> {
        self.work += 1;
        if self.work > self.work_limit {
            return Err(too_large(format!("more than {} instructions to read", self.work_limit)));
        }
        Ok(())
    }

    fn emit(&mut self, out: &mut Vec<Instruction>, ins: Instruction) -> Result<(), ReadError> {
        self.emitted += 1;
        if self.emitted > self.limits.max_instructions {
            return Err(too_large(format!("more than {} instructions", self.limits.max_instructions)));
        }
        out.push(ins);
        Ok(())
    }

    fn instruction<'a>(
        &mut self,
        c: &mut Cursor<'a>,
        scope: &Scope<'a>,
        depth: usize,
        out: &mut Vec<Instruction>,
        phase: Option<&mut Vec<ParamExpr>>,
    ) -> Result<(), ReadError> {
        self.count_work()?;
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
        let condition = match extras & 0b11 {
            0 => None,
            1 => {
                let mut reg = c.sub(cond_size)?;
                Some(self.register_condition(&mut reg, cond_value, scope)?)
            }
            2 => {
                let g = read_generic(c)?;
                Some(self.expr_condition(&g, scope, depth)?)
            }
            _ => return Err(syntax("invalid condition type 3".into(), pos)),
        };
        if let Some(cond) = &condition {
            // Register conditions copy the register's bits: count them as work.
            for _ in 1..cond.bits.len() {
                self.count_work()?;
            }
        }
        c.check_count(u64::from(num_qargs) + u64::from(num_cargs), 5, "arguments")?;
        let mut qargs = Vec::new();
        for _ in 0..num_qargs {
            let (kind, idx) = (c.u8()?, c.u32()? as usize);
            if kind != b'q' {
                return Err(c.err("expected a qubit argument"));
            }
            let q = scope.qmap.get(idx).copied().ok_or_else(|| c.err(&format!("qubit {idx} out of range")))?;
            if qargs.contains(&q) {
                return Err(c.err(&format!("qubit {idx} used twice by '{name}'")));
            }
            qargs.push(q);
        }
        let mut cargs = Vec::new();
        for _ in 0..num_cargs {
            let (kind, idx) = (c.u8()?, c.u32()? as usize);
            if kind != b'c' {
                return Err(c.err("expected a clbit argument"));
            }
            let cl = scope.global_clbit(idx).ok_or_else(|| c.err(&format!("clbit {idx} out of range")))?;
            cargs.push(cl);
        }
        let mut params = Vec::new();
        c.check_count(u64::from(num_params), 9, "parameters")?;
        for _ in 0..num_params {
            params.push(read_generic(c)?);
        }
        if extras & 0x80 != 0 {
            let n = c.u32()?;
            c.check_count(u64::from(n), 12, "annotations")?;
            for _ in 0..n {
                let _ns = c.u32()?;
                let size = c.u64()?;
                c.take_u64_len(size)?;
            }
        }

        // Control flow carries its condition itself; any other conditioned instruction (legacy
        // `c_if`) becomes an if-else around it.
        if name == "IfElseOp" {
            let condition = condition.ok_or_else(|| syntax("IfElseOp without a condition".into(), pos))?;
            let mut true_body = Vec::new();
            let mut false_body = Vec::new();
            let blocks = [params.first(), params.get(1)];
            for (i, block) in blocks.into_iter().enumerate() {
                let body = if i == 0 { &mut true_body } else { &mut false_body };
                match block {
                    Some(g) if g.key == b'q' => {
                        let mut data = g.data;
                        self.circuit_payload(&mut data, depth + 1, Some((qargs.clone(), cargs.clone())), body, None)?;
                    }
                    Some(g) if g.key == b'z' && i == 1 => {}
                    None if i == 1 => {}
                    _ => {
                        return Err(syntax("IfElseOp block is not a circuit".into(), pos));
                    }
                }
            }
            return self.emit(
                out,
                Instruction {
                    op: Operation::IfElse { condition, true_body, false_body },
                    qubits: qargs,
                    condition: None,
                },
            );
        }
        if let Some(condition) = condition {
            let mut body = Vec::new();
            self.operation(&name, &params, &qargs, &cargs, num_ctrl, ctrl_state, scope, depth, &mut body, None, pos)?;
            return self.emit(
                out,
                Instruction {
                    op: Operation::IfElse { condition, true_body: body, false_body: Vec::new() },
                    qubits: qargs,
                    condition: None,
                },
            );
        }
        self.operation(&name, &params, &qargs, &cargs, num_ctrl, ctrl_state, scope, depth, out, phase, pos)
    }

    #[allow(clippy::too_many_arguments)]
    fn operation<'a>(
        &mut self,
        name: &str,
        params: &[Generic<'a>],
        qargs: &[usize],
        cargs: &[usize],
        num_ctrl: u32,
        ctrl_state: u32,
        scope: &Scope<'a>,
        depth: usize,
        out: &mut Vec<Instruction>,
        phase: Option<&mut Vec<ParamExpr>>,
        pos: usize,
    ) -> Result<(), ReadError> {
        let simple = |op: Operation| Instruction { op, qubits: qargs.to_vec(), condition: None };
        let arity = |nq: usize, nc: usize| -> Result<(), ReadError> {
            if qargs.len() != nq || cargs.len() != nc {
                return Err(syntax(
                    format!(
                        "'{name}' applied to {} qubits and {} clbits (expected {nq} and {nc})",
                        qargs.len(),
                        cargs.len()
                    ),
                    pos,
                ));
            }
            Ok(())
        };
        match name {
            "Measure" => {
                arity(1, 1)?;
                let clbit = cargs.first().copied().unwrap_or_default();
                return self.emit(out, simple(Operation::Measure { clbit }));
            }
            "Reset" => {
                arity(1, 0)?;
                return self.emit(out, simple(Operation::Reset));
            }
            "Barrier" => {
                return self.emit(out, simple(Operation::Barrier));
            }
            "Delay" => {
                arity(1, 0)?;
                return self.emit(out, simple(Operation::Delay));
            }
            "GlobalPhaseGate" => {
                arity(0, 0)?;
                let p = self.param(params, 0, 1, name, scope, depth, pos)?;
                if let Some(phase) = phase {
                    phase.push(p);
                }
                return Ok(());
            }
            "BoxOp" => {
                let g = params
                    .first()
                    .filter(|g| g.key == b'q')
                    .ok_or_else(|| syntax("BoxOp without a body".into(), pos))?;
                let mut data = g.data;
                self.circuit_payload(&mut data, depth + 1, Some((qargs.to_vec(), cargs.to_vec())), out, None)?;
                return Ok(());
            }
            "WhileLoopOp" | "ForLoopOp" | "SwitchCaseOp" | "BreakLoopOp" | "ContinueLoopOp" | "Store" => {
                return Err(unsupported(format!("control-flow instruction '{name}'")));
            }
            _ => {}
        }
        if let Some(def) = scope.customs.get(name) {
            return self.custom(name, def, qargs, cargs, depth, out, phase, pos);
        }
        if !cargs.is_empty() {
            return Err(unsupported(format!("instruction '{name}' with classical arguments")));
        }
        let gate = self.standard_gate(name, qargs.len(), num_ctrl, ctrl_state, pos)?;
        let n = gate.num_params();
        if params.len() != n {
            return Err(syntax(format!("'{name}' has {} parameters, expected {n}", params.len()), pos));
        }
        let mut exprs = Vec::new();
        for i in 0..n {
            exprs.push(self.param(params, i, n, name, scope, depth, pos)?);
        }
        self.emit(out, simple(Operation::Gate { gate, params: exprs }))
    }

    #[allow(clippy::too_many_arguments)]
    fn custom(
        &mut self,
        name: &str,
        def: &CustomDef<'_>,
        qargs: &[usize],
        cargs: &[usize],
        depth: usize,
        out: &mut Vec<Instruction>,
        phase: Option<&mut Vec<ParamExpr>>,
        pos: usize,
    ) -> Result<(), ReadError> {
        let display = display_custom_name(name, self.version);
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
        if def.num_qubits as usize != qargs.len() || def.num_clbits as usize != cargs.len() {
            return Err(syntax(format!("custom instruction '{display}' applied to the wrong number of bits"), pos));
        }
        let mut data = def.data;
        let mut local_phase = Vec::new();
        let info = self.circuit_payload(
            &mut data,
            depth + 1,
            Some((qargs.to_vec(), cargs.to_vec())),
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

    fn standard_gate(
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

    #[allow(clippy::too_many_arguments)]
    fn param(
        &self,
        params: &[Generic<'_>],
        i: usize,
        n: usize,
        name: &str,
        scope: &Scope<'_>,
        depth: usize,
        pos: usize,
    ) -> Result<ParamExpr, ReadError> {
        let g = params
            .get(i)
            .ok_or_else(|| syntax(format!("'{name}' has {} parameters, expected {n}", params.len()), pos))?;
        // Instruction parameters: int and float were little-endian up to v17.
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

    /// A big-endian value (global phase, or a symbolic instruction parameter) as an expression.
    fn value_expr(&self, g: &Generic<'_>, scope: &Scope<'_>, depth: usize) -> Result<ParamExpr, ReadError> {
        let mut d = g.data;
        match g.key {
            b'f' => Ok(ParamExpr::Const(f64::from_be_bytes(exact(&mut d)?))),
            b'i' => Ok(ParamExpr::Const(i64::from_be_bytes(exact(&mut d)?) as f64)),
            b'p' => {
                let (_, name) = read_parameter(&mut d)?;
                end(&d)?;
                Ok(ParamExpr::Symbol(name))
            }
            b'v' => {
                let (_, name) = self.read_vector_element(&mut d, scope)?;
                end(&d)?;
                Ok(ParamExpr::Symbol(name))
            }
            b'e' => {
                let e = self.param_expression(&mut d, scope, depth + 1)?;
                end(&d)?;
                Ok(e)
            }
            b'c' => {
                let re = f64::from_be_bytes(d.array()?);
                let im = f64::from_be_bytes(d.array()?);
                end(&d)?;
                if im == 0.0 {
                    Ok(ParamExpr::Const(re))
                } else {
                    Err(unsupported("complex-valued parameter".into()))
                }
            }
            other => Err(unsupported(format!("parameter of type '{}'", char::from(other).escape_default()))),
        }
    }

    /// A PARAMETER_VECTOR_ELEMENT: (uuid, "name[index]").
    fn read_vector_element(&self, d: &mut Cursor<'_>, scope: &Scope<'_>) -> Result<(u128, String), ReadError> {
        if self.version >= 18 {
            let vi = d.u16()? as usize;
            let index = d.u64()?;
            let v = scope
                .vectors
                .get(vi)
                .ok_or_else(|| d.err(&format!("parameter vector {vi} is not in the circuit's table")))?;
            if index >= v.size {
                return Err(d.err(&format!("index {index} out of range for vector '{}' of size {}", v.name, v.size)));
            }
            Ok((v.uuid.wrapping_add(u128::from(index)), format!("{}[{index}]", v.name)))
        } else {
            let name_size = d.u16()? as usize;
            let size = d.u64()?;
            let uuid = u128::from_be_bytes(d.array()?);
            let index = d.u64()?;
            let name = d.string(name_size)?;
            if index >= size {
                return Err(d.err(&format!("index {index} out of range for vector '{name}' of size {size}")));
            }
            Ok((uuid, format!("{name}[{index}]")))
        }
    }

    /// PARAMETER_EXPR (v13+): header, replay ops, symbol table.
    fn param_expression(&self, d: &mut Cursor<'_>, scope: &Scope<'_>, depth: usize) -> Result<ParamExpr, ReadError> {
        self.check_depth(depth, d.base + d.pos)?;
        let num_symbols = d.u64()?;
        let expr_len = d.u64()?;
        let mut ops = d.sub(usize::try_from(expr_len).map_err(|_| d.err("length does not fit in memory"))?)?;
        let mut symbols: HashMap<u128, String> = HashMap::new();
        d.check_count(num_symbols, 10, "expression symbols")?;
        for _ in 0..num_symbols {
            let kind = d.u8()?;
            let _value_key = d.u8()?;
            let value_len = d.u64()?;
            match kind {
                b'p' => {
                    let (uuid, name) = read_parameter(d)?;
                    symbols.insert(uuid, name);
                }
                b'v' => {
                    let (uuid, name) = self.read_vector_element(d, scope)?;
                    symbols.insert(uuid, name);
                }
                b'e' => {
                    // Obsolete nested-expression keys (substitutions); parsed and ignored.
                    self.param_expression(d, scope, depth + 1)?;
                }
                other => {
                    return Err(d.err(&format!("invalid expression symbol type {other:#04x}")));
                }
            }
            // The symbol's value: for plain symbols the symbol itself (empty payload).
            d.take_u64_len(value_len)?;
        }
        self.replay(&mut ops, &symbols)
    }

    /// Evaluate the replay of PARAM_EXPR_ELEM_V13 records into an expression tree.
    fn replay(&self, ops: &mut Cursor<'_>, symbols: &HashMap<u128, String>) -> Result<ParamExpr, ReadError> {
        // Each stack entry carries its tree depth so that hostile input cannot build trees deep
        // enough to overflow the native stack when they are later evaluated or dropped.
        let max_tree = self.limits.max_depth.saturating_mul(16).max(16);
        let mut stack: Vec<(ParamExpr, usize)> = Vec::new();
        while !ops.at_end() {
            let pos = ops.base + ops.pos;
            let op = ops.u8()?;
            let lhs_type = ops.u8()?;
            let lhs: [u8; 16] = ops.array()?;
            let rhs_type = ops.u8()?;
            let rhs: [u8; 16] = ops.array()?;
            let err = |m: &str| syntax(format!("parameter expression: {m}"), pos);
            let operand = |stack: &mut Vec<(ParamExpr, usize)>,
                           ty: u8,
                           data: [u8; 16]|
             -> Result<(ParamExpr, usize), ReadError> {
                let mut hi = [0u8; 8];
                hi.copy_from_slice(&data[8..]);
                let mut lo = [0u8; 8];
                lo.copy_from_slice(&data[..8]);
                match ty {
                    b'i' => Ok((ParamExpr::Const(i64::from_be_bytes(hi) as f64), 1)),
                    b'f' => Ok((ParamExpr::Const(f64::from_be_bytes(hi)), 1)),
                    b'c' => {
                        // Complex literal: real part first, then imaginary part.
                        let re = f64::from_be_bytes(lo);
                        let im = f64::from_be_bytes(hi);
                        if im == 0.0 {
                            Ok((ParamExpr::Const(re), 1))
                        } else {
                            Err(unsupported("complex literal in a parameter expression".into()))
                        }
                    }
                    b'p' => {
                        let uuid = u128::from_be_bytes(data);
                        let name = symbols.get(&uuid).ok_or_else(|| err("reference to an unknown parameter"))?;
                        Ok((ParamExpr::Symbol(name.clone()), 1))
                    }
                    b'n' => stack.pop().ok_or_else(|| err("stack is empty")),
                    _ => Err(err("invalid operand type")),
                }
            };
            let binary =
                |a: (ParamExpr, usize), b: (ParamExpr, usize), f: fn(Box<ParamExpr>, Box<ParamExpr>) -> ParamExpr| {
                    (f(Box::new(a.0), Box::new(b.0)), a.1.max(b.1) + 1)
                };
            let result = match op {
                255 => continue,
                0..=4 | 18..=20 => {
                    let r = operand(&mut stack, rhs_type, rhs)?;
                    let l = operand(&mut stack, lhs_type, lhs)?;
                    match op {
                        0 => binary(l, r, ParamExpr::Add),
                        1 => binary(l, r, ParamExpr::Sub),
                        2 => binary(l, r, ParamExpr::Mul),
                        3 => binary(l, r, ParamExpr::Div),
                        4 => binary(l, r, ParamExpr::Pow),
                        18 => binary(r, l, ParamExpr::Sub),
                        19 => binary(r, l, ParamExpr::Div),
                        _ => binary(r, l, ParamExpr::Pow),
                    }
                }
                5..=12 | 14 | 16 | 17 => {
                    let (a, dp) = operand(&mut stack, lhs_type, lhs)?;
                    let f = match op {
                        5 => Func::Sin,
                        6 => Func::Cos,
                        7 => Func::Tan,
                        8 => Func::Asin,
                        9 => Func::Acos,
                        10 => Func::Exp,
                        11 => Func::Ln,
                        12 => Func::Sign,
                        16 => Func::Abs,
                        17 => Func::Atan,
                        // Conjugate of a real parameter is itself.
                        _ => {
                            stack.push((a, dp));
                            continue;
                        }
                    };
                    (ParamExpr::Func(f, Box::new(a)), dp + 1)
                }
                13 => return Err(unsupported("gradient in a parameter expression".into())),
                15 => return Err(unsupported("substitution in a parameter expression".into())),
                _ => return Err(err(&format!("invalid op code {op}"))),
            };
            if result.1 > max_tree {
                return Err(too_large(format!("parameter expression nested deeper than {max_tree}")));
            }
            stack.push(result);
        }
        match (stack.pop(), stack.is_empty()) {
            (Some((e, _)), true) => Ok(e),
            (None, _) => Err(ops.err("empty parameter expression")),
            (Some(_), false) => Err(ops.err("parameter expression leaves extra values")),
        }
    }

    /// A two-tuple condition: register or clbit payload, compared with `value`.
    fn register_condition(&self, d: &mut Cursor<'_>, value: i64, scope: &Scope<'_>) -> Result<Condition, ReadError> {
        let pos = d.base + d.pos;
        enum Target {
            Clbit(usize),
            Register(String),
        }
        let target = if self.version >= 18 {
            match d.u8()? {
                0 => {
                    let i = d.u32()? as usize;
                    end(d)?;
                    Target::Clbit(i)
                }
                1 => {
                    let n = d.remaining();
                    Target::Register(d.string(n)?)
                }
                t => return Err(syntax(format!("invalid register tag {t}"), pos)),
            }
        } else {
            let n = d.remaining();
            let raw = d.take(n)?;
            match raw.split_first() {
                None => return Err(syntax("empty register payload".into(), pos)),
                Some((0, digits)) => {
                    let s = std::str::from_utf8(digits).map_err(|_| syntax("invalid clbit index".into(), pos))?;
                    let i: usize = s.parse().map_err(|_| syntax("invalid clbit index".into(), pos))?;
                    Target::Clbit(i)
                }
                Some(_) => Target::Register(
                    String::from_utf8(raw.to_vec()).map_err(|_| syntax("register name is not UTF-8".into(), pos))?,
                ),
            }
        };
        match target {
            Target::Clbit(i) => {
                let g =
                    scope.global_clbit(i).ok_or_else(|| syntax(format!("condition clbit {i} out of range"), pos))?;
                Ok(Condition { bits: vec![g], value: u64::from(value != 0) })
            }
            Target::Register(name) => {
                let bits = scope.register_bits(&name, pos)?;
                Ok(Condition { bits, value: register_value(value, pos)? })
            }
        }
    }

    /// A classical-expression condition, in the forms a [`Condition`] can express.
    fn expr_condition(&self, g: &Generic<'_>, scope: &Scope<'_>, depth: usize) -> Result<Condition, ReadError> {
        let pos = g.data.base;
        if g.key != b'x' {
            return Err(syntax("condition is not an expression".into(), pos));
        }
        let mut d = g.data;
        let e = read_expr(&mut d, depth, self.limits.max_depth)?;
        let unsupported_cond = || unsupported("classical-expression condition of this form".into());
        let strip = |mut e: &CExpr| {
            while let CExpr::Cast(inner) = e {
                e = inner;
            }
            e.clone()
        };
        let var_bits = |v: &CExpr| -> Result<Option<(Vec<usize>, bool)>, ReadError> {
            match v {
                CExpr::Clbit(i) => {
                    let g = scope
                        .global_clbit(*i)
                        .ok_or_else(|| syntax(format!("condition clbit {i} out of range"), pos))?;
                    Ok(Some((vec![g], true)))
                }
                CExpr::Register(name) => Ok(Some((scope.register_bits(name, pos)?, false))),
                _ => Ok(None),
            }
        };
        match strip(&e) {
            CExpr::Clbit(_) => {
                let (bits, _) = var_bits(&strip(&e))?.ok_or_else(unsupported_cond)?;
                Ok(Condition { bits, value: 1 })
            }
            CExpr::Unary(op, inner) if op == 1 || op == 2 => match strip(&inner) {
                v @ CExpr::Clbit(_) => {
                    let (bits, _) = var_bits(&v)?.ok_or_else(unsupported_cond)?;
                    Ok(Condition { bits, value: 0 })
                }
                _ => Err(unsupported_cond()),
            },
            CExpr::Binary(6, a, b) => {
                let (a, b) = (strip(&a), strip(&b));
                let (var, val) = match (&a, &b) {
                    (_, CExpr::Int(_) | CExpr::Bool(_)) => (a.clone(), b.clone()),
                    (CExpr::Int(_) | CExpr::Bool(_), _) => (b.clone(), a.clone()),
                    _ => return Err(unsupported_cond()),
                };
                let (bits, _) = var_bits(&var)?.ok_or_else(unsupported_cond)?;
                let value = match val {
                    CExpr::Bool(v) => u64::from(v),
                    CExpr::Int(v) => register_value(v, pos)?,
                    _ => return Err(unsupported_cond()),
                };
                Ok(Condition { bits, value })
            }
            _ => Err(unsupported_cond()),
        }
    }
}

struct PayloadInfo {
    name: String,
    num_qubits: usize,
    num_clbits: usize,
    cregs: Vec<ClassicalRegister>,
    phase: ParamExpr,
}

fn register_value(v: i64, pos: usize) -> Result<u64, ReadError> {
    u64::try_from(v).map_err(|_| syntax(format!("negative condition value {v}"), pos))
}

fn add_phase(a: ParamExpr, b: ParamExpr) -> ParamExpr {
    match (&a, &b) {
        (ParamExpr::Const(x), ParamExpr::Const(y)) => ParamExpr::Const(x + y),
        (ParamExpr::Const(x), _) if *x == 0.0 => b,
        (_, ParamExpr::Const(y)) if *y == 0.0 => a,
        _ => ParamExpr::Add(Box::new(a), Box::new(b)),
    }
}

/// Custom-instruction names carry a suffix (`_<uuid hex>` up to v17, `_<counter>` in v18).
fn display_custom_name(name: &str, _version: u8) -> &str {
    match name.rsplit_once('_') {
        Some((base, _)) if !base.is_empty() => base,
        _ => name,
    }
}

fn exact<const N: usize>(d: &mut Cursor<'_>) -> Result<[u8; N], ReadError> {
    if d.remaining() != N {
        return Err(d.err(&format!("value payload has {} bytes, expected {N}", d.remaining())));
    }
    d.array()
}

fn end(d: &Cursor<'_>) -> Result<(), ReadError> {
    if d.at_end() {
        Ok(())
    } else {
        Err(d.err("trailing bytes in value payload"))
    }
}

/// A PARAMETER: (uuid, name).
fn read_parameter(d: &mut Cursor<'_>) -> Result<(u128, String), ReadError> {
    let name_size = d.u16()? as usize;
    let uuid = u128::from_be_bytes(d.array()?);
    let name = d.string(name_size)?;
    Ok((uuid, name))
}

fn read_expr_type(c: &mut Cursor<'_>) -> Result<(), ReadError> {
    match c.u8()? {
        b'b' | b'f' | b'd' => Ok(()),
        b'u' => c.u32().map(|_| ()),
        other => Err(c.err(&format!("invalid expression type {other:#04x}"))),
    }
}

/// The subset of Qiskit's classical expressions that conditions use.
#[derive(Clone)]
enum CExpr {
    Clbit(usize),
    Register(String),
    Bool(bool),
    Int(i64),
    Other,
    Cast(Box<CExpr>),
    Unary(u8, Box<CExpr>),
    Binary(u8, Box<CExpr>, Box<CExpr>),
}

fn read_expr(c: &mut Cursor<'_>, depth: usize, max_depth: usize) -> Result<CExpr, ReadError> {
    if depth > max_depth {
        return Err(too_large(format!("classical expression nested deeper than {max_depth}")));
    }
    let kind = c.u8()?;
    read_expr_type(c)?;
    Ok(match kind {
        b'x' => match c.u8()? {
            b'C' => CExpr::Clbit(c.u32()? as usize),
            b'R' => {
                let n = c.u16()? as usize;
                CExpr::Register(c.string(n)?)
            }
            b'U' => return Err(unsupported("standalone classical variables".into())),
            other => return Err(c.err(&format!("invalid variable kind {other:#04x}"))),
        },
        b's' => return Err(unsupported("stretch variables".into())),
        b'v' => match c.u8()? {
            b'b' => CExpr::Bool(c.u8()? != 0),
            b'i' => {
                let n = c.u8()? as usize;
                let bytes = c.take(n)?;
                // Big-endian two's complement of arbitrary width; keep what fits in i64.
                let mut v: i64 = if bytes.first().is_some_and(|b| b & 0x80 != 0) { -1 } else { 0 };
                for &b in bytes {
                    v = v.checked_shl(8).map(|x| x | i64::from(b)).unwrap_or(v);
                }
                if n > 8 {
                    CExpr::Other
                } else {
                    CExpr::Int(v)
                }
            }
            b'f' => {
                c.take(8)?;
                CExpr::Other
            }
            b't' => {
                c.u8()?;
                c.take(8)?;
                CExpr::Other
            }
            other => return Err(c.err(&format!("invalid value kind {other:#04x}"))),
        },
        b'c' => {
            c.u8()?;
            CExpr::Cast(Box::new(read_expr(c, depth + 1, max_depth)?))
        }
        b'u' => {
            let op = c.u8()?;
            CExpr::Unary(op, Box::new(read_expr(c, depth + 1, max_depth)?))
        }
        b'b' => {
            let op = c.u8()?;
            let a = read_expr(c, depth + 1, max_depth)?;
            let b = read_expr(c, depth + 1, max_depth)?;
            CExpr::Binary(op, Box::new(a), Box::new(b))
        }
        b'i' => {
            read_expr(c, depth + 1, max_depth)?;
            read_expr(c, depth + 1, max_depth)?;
            CExpr::Other
        }
        other => return Err(c.err(&format!("invalid expression kind {other:#04x}"))),
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal QPY v18 file: one circuit on `nq` qubits with the given instruction records
    /// (already encoded) and layout bytes.
    fn file(nq: u32, instructions: &[Vec<u8>], layout: &[u8]) -> Vec<u8> {
        let mut b = b"QISKIT".to_vec();
        b.push(18);
        b.extend_from_slice(&[2, 6, 2]);
        b.extend_from_slice(&1u64.to_be_bytes());
        b.extend_from_slice(b"pq");
        b.extend_from_slice(&28u64.to_be_bytes());
        b.extend_from_slice(&0u16.to_be_bytes()); // name
        b.push(b'f');
        b.extend_from_slice(&8u16.to_be_bytes());
        b.extend_from_slice(&nq.to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes()); // clbits
        b.extend_from_slice(&0u64.to_be_bytes()); // metadata
        b.extend_from_slice(&0u32.to_be_bytes()); // registers
        b.extend_from_slice(&(instructions.len() as u64).to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes()); // vars
        b.extend_from_slice(&0f64.to_be_bytes()); // global phase
        b.extend_from_slice(&0u32.to_be_bytes()); // annotations
        b.extend_from_slice(&0u16.to_be_bytes()); // parameter vectors
        b.extend_from_slice(&0u64.to_be_bytes()); // custom definitions
        for i in instructions {
            b.extend_from_slice(i);
        }
        b.extend_from_slice(layout);
        b
    }

    fn no_layout() -> Vec<u8> {
        let mut l = vec![0u8];
        for v in [-1i32, -1, -1] {
            l.extend_from_slice(&v.to_be_bytes());
        }
        l.extend_from_slice(&0u32.to_be_bytes());
        l.extend_from_slice(&0i32.to_be_bytes());
        l
    }

    /// One-qubit gate `name` on qubit 0 with one parameter of type `key`.
    fn gate(name: &str, key: u8, param: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&(name.len() as u16).to_be_bytes());
        b.extend_from_slice(&0u16.to_be_bytes());
        b.extend_from_slice(&1u16.to_be_bytes());
        b.extend_from_slice(&1u32.to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
        b.push(0);
        b.extend_from_slice(&0u16.to_be_bytes());
        b.extend_from_slice(&0i64.to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(name.as_bytes());
        b.push(b'q');
        b.extend_from_slice(&0u32.to_be_bytes());
        b.push(key);
        b.extend_from_slice(&(param.len() as u64).to_be_bytes());
        b.extend_from_slice(param);
        b
    }

    fn elem(op: u8, lt: u8, l: [u8; 16], rt: u8, r: [u8; 16]) -> Vec<u8> {
        let mut b = vec![op, lt];
        b.extend_from_slice(&l);
        b.push(rt);
        b.extend_from_slice(&r);
        b
    }

    fn float(v: f64) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[8..].copy_from_slice(&v.to_be_bytes());
        a
    }

    /// PARAMETER_EXPR with one symbol `x` (uuid 7) and the given replay.
    fn expr(ops: &[Vec<u8>]) -> Vec<u8> {
        let data: Vec<u8> = ops.concat();
        let mut b = Vec::new();
        b.extend_from_slice(&1u64.to_be_bytes());
        b.extend_from_slice(&(data.len() as u64).to_be_bytes());
        b.extend_from_slice(&data);
        b.extend_from_slice(b"pp");
        b.extend_from_slice(&0u64.to_be_bytes());
        b.extend_from_slice(&1u16.to_be_bytes());
        b.extend_from_slice(&7u128.to_be_bytes());
        b.push(b'x');
        b
    }

    fn first_param(b: &[u8]) -> Result<ParamExpr, ReadError> {
        let c = parse(b, &ReadLimits::default())?;
        match &c[0].instructions[0].op {
            Operation::Gate { params, .. } => Ok(params[0].clone()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cursor_reads_are_checked() {
        let mut c = Cursor::new(&[1, 2, 3]);
        assert_eq!(c.u16().unwrap(), 0x0102);
        assert!(c.u16().is_err());
        assert_eq!(c.u8().unwrap(), 3);
        assert!(c.u8().is_err());
        let mut c = Cursor::new(&[0; 4]);
        assert!(c.take_u64_len(u64::MAX).is_err());
        assert!(c.check_count(u64::MAX, 1, "x").is_err());
        assert!(c.check_count(4, 1, "x").is_ok());
    }

    #[test]
    fn minimal_file_and_float_param() {
        let b = file(1, &[gate("RZGate", b'f', &0.5f64.to_be_bytes())], &no_layout());
        assert_eq!(first_param(&b), Ok(ParamExpr::Const(0.5)));
    }

    #[test]
    fn reverse_ops_swap_operands() {
        let x = 7u128.to_be_bytes();
        // RSUB(lhs = x, rhs = 1.0) = 1.0 - x
        let e = expr(&[elem(18, b'p', x, b'f', float(1.0))]);
        let b = file(1, &[gate("RZGate", b'e', &e)], &no_layout());
        assert_eq!(
            first_param(&b),
            Ok(ParamExpr::Sub(Box::new(ParamExpr::Const(1.0)), Box::new(ParamExpr::Symbol("x".into()))))
        );
        // sin(x) then (stack) * 2: operands 'n' pop the stack.
        let e = expr(&[
            elem(5, b'p', x, b'n', [0; 16]),
            elem(2, b'n', [0; 16], b'i', {
                let mut a = [0u8; 16];
                a[8..].copy_from_slice(&2i64.to_be_bytes());
                a
            }),
        ]);
        let b = file(1, &[gate("RZGate", b'e', &e)], &no_layout());
        assert_eq!(
            first_param(&b),
            Ok(ParamExpr::Mul(
                Box::new(ParamExpr::Func(Func::Sin, Box::new(ParamExpr::Symbol("x".into())))),
                Box::new(ParamExpr::Const(2.0))
            ))
        );
    }

    #[test]
    fn malformed_expressions_are_errors() {
        let x = 7u128.to_be_bytes();
        // Empty stack.
        let e = expr(&[elem(0, b'n', [0; 16], b'n', [0; 16])]);
        let b = file(1, &[gate("RZGate", b'e', &e)], &no_layout());
        assert!(matches!(first_param(&b), Err(ReadError::Syntax { .. })));
        // Unknown symbol.
        let e = expr(&[elem(5, b'p', [9; 16], b'n', [0; 16])]);
        let b = file(1, &[gate("RZGate", b'e', &e)], &no_layout());
        assert!(matches!(first_param(&b), Err(ReadError::Syntax { .. })));
        // Very deep expression: sin(sin(...)) is refused before it gets deep.
        let mut ops = vec![elem(5, b'p', x, b'n', [0; 16])];
        for _ in 0..5000 {
            ops.push(elem(5, b'n', [0; 16], b'n', [0; 16]));
        }
        let b = file(1, &[gate("RZGate", b'e', &expr(&ops))], &no_layout());
        assert!(matches!(first_param(&b), Err(ReadError::TooLarge { .. })));
    }

    #[test]
    fn huge_counts_do_not_allocate() {
        // A layout register announcing 2^32-1 contiguous bits: skipped, not materialised.
        let mut layout = vec![0u8];
        for v in [-1i32, -1, -1] {
            layout.extend_from_slice(&v.to_be_bytes());
        }
        layout.extend_from_slice(&1u32.to_be_bytes());
        layout.extend_from_slice(&0i32.to_be_bytes());
        layout.extend_from_slice(&[b'q', 1]);
        layout.extend_from_slice(&u32::MAX.to_be_bytes());
        layout.extend_from_slice(&1u16.to_be_bytes());
        layout.extend_from_slice(&[1, 1, b'r']);
        layout.extend_from_slice(&0u32.to_be_bytes());
        let b = file(1, &[], &layout);
        assert_eq!(parse(&b, &ReadLimits::default()).unwrap()[0].num_qubits, 1);
        // The same with explicit indices: the announced count exceeds the bytes.
        let pos = layout.len() - 5;
        layout[pos - 1] = 0; // attachment 0
        let b = file(1, &[], &layout);
        assert!(matches!(parse(&b, &ReadLimits::default()), Err(ReadError::Syntax { .. })));
        // u64::MAX instructions announced.
        let mut b = file(1, &[], &no_layout());
        let at = 28 + 2 + 1 + 2 + 4 + 4 + 8 + 4;
        b[at..at + 8].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(matches!(parse(&b, &ReadLimits::default()), Err(ReadError::Syntax { .. })));
    }

    #[test]
    fn v17_params_are_little_endian() {
        let mut b = file(1, &[gate("RZGate", b'f', &0.5f64.to_le_bytes())], &no_layout());
        b[6] = 17;
        // v17 has no parameter-vector table (after header, phase and annotation count)...
        b.drain(28 + 37 + 8 + 4..28 + 37 + 8 + 4 + 2);
        // ...and has the calibrations count before the layout.
        let layout_at = b.len() - no_layout().len();
        b.splice(layout_at..layout_at, [0u8, 0]);
        assert_eq!(first_param(&b), Ok(ParamExpr::Const(0.5)));
    }
}
