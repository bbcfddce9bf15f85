//! OpenQASM 3 reader (placeholder until the reader lands).
use crate::error::{ReadError, ReadLimits};
use crate::ir::Circuit;

/// Read an OpenQASM 3 program.
pub fn parse(_src: &str, _limits: &ReadLimits) -> Result<Circuit, ReadError> {
    Err(ReadError::Unsupported {
        format: "OpenQASM 3",
        message: "reader not built yet".into(),
    })
}
