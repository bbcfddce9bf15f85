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
//!
//! Layout: `cursor` (checked byte reads), `header` (payload header and layout), `circuit` (one
//! circuit payload and its tables), `instruction` (instruction records and operations), `gates`
//! (the standard gate table), `expr` (parameter values and expressions) and `condition`
//! (register and classical-expression conditions).

mod circuit;
mod condition;
mod cursor;
mod expr;
mod gates;
mod header;
mod instruction;
#[cfg(test)]
mod tests;

use crate::error::{ReadError, ReadLimits};
use crate::ir::{Circuit, Instruction};
use cursor::Cursor;

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
// The reader

/// State shared by every payload of one file: the version and the work budgets.
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

impl Reader<'_> {
    fn check_depth(&self, depth: usize, pos: usize) -> Result<(), ReadError> {
        if depth > self.limits.max_depth {
            return Err(too_large(format!("nesting deeper than {} (at byte {pos})", self.limits.max_depth)));
        }
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
}
