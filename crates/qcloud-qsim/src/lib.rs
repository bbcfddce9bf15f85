//! qcloud-qsim: the gate-model simulator of qcloud, a pure library (no tokio, no sqlx).
//!
//! Circuits arrive as OpenQASM 2, OpenQASM 3 or QPY and are read into one circuit IR ([`ir`]); the
//! state-vector engine runs them; the Sampler and Estimator primitives give Qiskit V2 semantics on top.
//! Every reader treats its input as hostile: no file access, bounded sizes and nesting, no panics.
#![forbid(unsafe_code)]

pub mod compact;
pub mod engine;
pub mod error;
pub mod ir;
pub mod isa;
pub mod primitives;
pub mod qasm2;
pub mod qasm3;
pub mod qpy;

pub use error::{ReadError, ReadLimits};
pub use ir::{Circuit, ClassicalRegister, Condition, Gate, Instruction, Operation, ParamExpr};
pub use primitives::{
    prepare_estimator, prepare_sampler, run_estimator, run_sampler, PreparedEstimator, PreparedSampler, SimError,
    SimLimits,
};
