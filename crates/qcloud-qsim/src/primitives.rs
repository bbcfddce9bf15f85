//! Sampler and Estimator primitives with Qiskit V2 semantics, as JSON in / JSON out.
//!
//! Each primitive is split in two: `prepare_*` parses, binds and validates the payload (CPU work
//! done before device time, and the place where every limit is checked), `run_*` simulates.
//!
//! Sampler payload: `{"pubs": [[circuit, parameter_values?, shots?], ...], "shots"?, "seed"?}`.
//! Estimator payload: `{"pubs": [[circuit, observables, parameter_values?, precision?], ...],
//! "precision"?, "seed"?}`. A circuit is OpenQASM 2/3 text or `{"qpy": "<base64>"}`.

mod estimator;
pub mod input;
mod sampler;

pub use estimator::{prepare_estimator, run_estimator, PreparedEstimator};
pub use sampler::{prepare_sampler, run_sampler, PreparedSampler};

use crate::error::{ReadError, ReadLimits};
use crate::ir::Circuit;
use crate::isa::Isa;

/// Bounds of one primitive job, set by the device that runs it.
#[derive(Debug, Clone)]
pub struct SimLimits {
    /// Bounds of the circuit readers.
    pub read: ReadLimits,
    /// The device's number of qubits: larger circuits are refused.
    pub max_qubits: usize,
    /// Largest state vector (16 * 2^n bytes, twice that for per-shot simulation), in bytes.
    pub max_memory_bytes: u64,
    /// Most shots of one pub.
    pub max_shots: u64,
    /// Most pubs in one job.
    pub max_pubs: usize,
    /// Most circuit executions (parameter points / observable points summed over pubs).
    pub max_executions: u64,
    /// The device's instruction set, when it has a target: circuits must be ISA.
    pub isa: Option<Isa>,
}

impl Default for SimLimits {
    fn default() -> Self {
        SimLimits {
            read: ReadLimits::default(),
            max_qubits: 30,
            max_memory_bytes: 16 << 30,
            max_shots: 1_000_000,
            max_pubs: 1000,
            max_executions: 100_000,
            isa: None,
        }
    }
}

/// Why a primitive job was refused or failed. Messages are meant for the user.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    /// The payload does not have the expected shape or values.
    #[error("invalid payload: {0}")]
    BadPayload(String),
    /// The circuit of a pub could not be read.
    #[error("pub {index}: cannot read circuit: {source}")]
    Circuit {
        index: usize,
        #[source]
        source: ReadError,
    },
    /// The job exceeds a [`SimLimits`] bound.
    #[error("too large: {0}")]
    TooLarge(String),
    /// Valid input that this simulator does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A circuit uses a gate or a qubit pair the device's target does not have.
    #[error("not an ISA circuit: {0}")]
    NotIsa(String),
    /// A pub could not be bound or lowered to the engine.
    #[error("pub {index}: {message}")]
    Execution { index: usize, message: String },
}

/// Check a pub's circuit against the device: its width (all of its qubits, idle or not) against
/// the device's qubits, its gates against the device's instruction set, and the state vector of
/// the `simulated` qubits it touches (times `copies`) against the memory limit.
fn check_size(
    index: usize,
    circuit: &Circuit,
    simulated: usize,
    copies: u64,
    limits: &SimLimits,
) -> Result<(), SimError> {
    let n = circuit.num_qubits;
    if n > limits.max_qubits {
        return Err(SimError::TooLarge(format!(
            "pub {index}: circuit has {n} qubits, the device has {}",
            limits.max_qubits
        )));
    }
    if let Some(isa) = &limits.isa {
        crate::isa::check(circuit, isa).map_err(|m| SimError::NotIsa(format!("pub {index}: {m}")))?;
    }
    let bytes = if simulated >= 60 { u64::MAX } else { (16u64 << simulated).saturating_mul(copies) };
    if bytes > limits.max_memory_bytes {
        return Err(SimError::TooLarge(format!(
            "pub {index}: simulating the {simulated} qubits the circuit acts on needs {bytes} bytes of state \
             vector ({copies} x 16 x 2^{simulated}), more than the limit of {} bytes",
            limits.max_memory_bytes
        )));
    }
    Ok(())
}

/// Bytes of state vector for `simulated` qubits, `copies` times (saturating).
pub fn state_bytes(simulated: usize, copies: u64) -> u64 {
    if simulated >= 60 {
        u64::MAX
    } else {
        (16u64 << simulated).saturating_mul(copies)
    }
}

/// A seedable source for a job: the payload's seed, or a random one.
fn job_rng(seed: Option<u64>) -> rand_chacha::ChaCha8Rng {
    use rand::SeedableRng;
    match seed {
        Some(s) => rand_chacha::ChaCha8Rng::seed_from_u64(s),
        None => rand_chacha::ChaCha8Rng::from_entropy(),
    }
}
