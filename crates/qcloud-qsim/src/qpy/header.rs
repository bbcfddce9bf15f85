//! The fixed parts of a circuit payload around its instructions: the header (name, global phase,
//! sizes, registers, standalone variables) and the trailing layout.

use super::condition::read_expr_type;
use super::cursor::{Cursor, Generic};
use super::{syntax, too_large, Reader};
use crate::error::ReadError;

/// A classical register as declared in a circuit payload: circuit-local clbit indices.
pub(super) struct RegInfo {
    pub(super) name: String,
    pub(super) bits: Vec<Option<usize>>,
}

/// What the header of a circuit payload declares.
pub(super) struct Header<'a> {
    pub(super) name: String,
    pub(super) phase: Generic<'a>,
    pub(super) num_qubits: usize,
    pub(super) num_clbits: usize,
    pub(super) num_instructions: u64,
    /// Registers in declaration order: (is_quantum, in_circuit, info).
    pub(super) registers: Vec<(bool, bool, RegInfo)>,
}

impl Reader<'_> {
    pub(super) fn header<'a>(&self, c: &mut Cursor<'a>) -> Result<Header<'a>, ReadError> {
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

    /// LAYOUT (v10+ form): parsed and discarded (the IR works on physical qubits).
    pub(super) fn layout(&self, c: &mut Cursor<'_>) -> Result<(), ReadError> {
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
}
