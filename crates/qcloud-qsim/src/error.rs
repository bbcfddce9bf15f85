//! Errors and input limits shared by the readers.

/// Bounds every reader enforces, so that hostile input costs bounded time and memory.
#[derive(Debug, Clone)]
pub struct ReadLimits {
    /// Largest accepted source (text or decoded binary), in bytes.
    pub max_source_bytes: usize,
    /// Most qubits a circuit may declare (its width: circuits transpiled for a device span all of
    /// the device's qubits, though they may act on few; see `compact`).
    pub max_qubits: usize,
    /// Most clbits a circuit may declare.
    pub max_clbits: usize,
    /// Most instructions after inlining custom gates and unrolling.
    pub max_instructions: usize,
    /// Deepest nesting of gate definitions / control flow / expressions.
    pub max_depth: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_source_bytes: 8 << 20,
            max_qubits: 1024,
            max_clbits: 4096,
            max_instructions: 1_000_000,
            max_depth: 64,
        }
    }
}

/// Why a circuit could not be read. Messages are meant for the user who sent the circuit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReadError {
    /// The input is not valid in its format (syntax, unknown name, wrong arity, ...).
    #[error("{format} parse error{}: {message}", location.as_ref().map(|l| format!(" at {l}")).unwrap_or_default())]
    Syntax { format: &'static str, message: String, location: Option<String> },
    /// Valid input that uses something this reader does not support.
    #[error("{format}: unsupported: {message}")]
    Unsupported { format: &'static str, message: String },
    /// The input exceeds a [`ReadLimits`] bound.
    #[error("{format}: too large: {message}")]
    TooLarge { format: &'static str, message: String },
}
