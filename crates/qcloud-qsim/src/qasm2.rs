//! OpenQASM 2 reader (placeholder until the reader lands).
use crate::error::{ReadError, ReadLimits};
use crate::ir::Circuit;

/// Read an OpenQASM 2 program.
pub fn parse(_src: &str, _limits: &ReadLimits) -> Result<Circuit, ReadError> {
    Err(ReadError::Unsupported {
        format: "OpenQASM 2",
        message: "reader not built yet".into(),
    })
}
