//! QPY reader (placeholder until the reader lands).
use crate::error::{ReadError, ReadLimits};
use crate::ir::Circuit;

/// Read every circuit of a QPY file (uncompressed bytes, starting with `QISKIT`).
pub fn parse(_bytes: &[u8], _limits: &ReadLimits) -> Result<Vec<Circuit>, ReadError> {
    Err(ReadError::Unsupported {
        format: "QPY",
        message: "reader not built yet".into(),
    })
}
