//! qcloud-core: the domain model of qcloud (devices, sessions, jobs, their states and transitions,
//! see [`states`]) and the scheduling rules of `docs/architecture.md` as pure functions of (facts,
//! now). No I/O, no SQL, no clock: the service layer loads facts from the store, asks these rules
//! what to do, and applies it.
#![forbid(unsafe_code)]

pub mod model;
pub mod rules;
pub mod states;
pub mod views;

pub use model::*;

/// A string that names no variant of an enumeration (device status, job status, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} '{value}' (expected one of: {})", expected.join(", "))]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
    pub expected: &'static [&'static str],
}
