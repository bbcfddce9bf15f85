//! Submit-time checks of a program's input (issue 7): what can be checked cheaply — structure,
//! field names, sizes, circuits that parse, qubits against the device — is checked when the job is
//! submitted, so a mistake is a 400 at once rather than a failed job later. The drivers know the
//! programs, and the service knows no driver, so the server hands the service a [`ProgramCheck`]
//! (the scheduler crate implements it over the driver registry: each driver's `validate` step).

use crate::error::{Result, ServiceError};
use crate::pipeline::Device;
use std::sync::Arc;

/// Checks a program's input against the device that will run it.
pub trait ProgramCheck: Send + Sync {
    fn check(
        &self,
        device: &Device,
        program: &str,
        payload: &serde_json::Value,
        shots: Option<i64>,
    ) -> Result<Checked, CheckError>;
}

/// What a check learned from the payload.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checked {
    /// Shots per circuit that the payload asks for when the request did not say (the pubs' shots).
    pub shots: Option<i64>,
}

/// Why a payload was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CheckError {
    /// The input is wrong (a 400 naming what).
    #[error("{0}")]
    Invalid(String),
    /// The input asks for more than the device or the server can give (a 400 too).
    #[error("{0}")]
    TooLarge(String),
    /// The device itself is misconfigured: not the caller's fault.
    #[error("{0}")]
    Fault(String),
}

impl From<CheckError> for ServiceError {
    fn from(e: CheckError) -> Self {
        match e {
            CheckError::Invalid(m) => ServiceError::invalid("invalid_payload", m),
            CheckError::TooLarge(m) => ServiceError::invalid("too_large", m),
            CheckError::Fault(m) => ServiceError::Internal(format!("device check failed: {m}")),
        }
    }
}

/// Payloads up to this size (bytes of JSON) are checked on the request's task; larger ones on a
/// blocking thread, so that parsing a large circuit does not stall the runtime.
const INLINE_CHECK_BYTES: usize = 64 << 10;

pub(crate) async fn run(
    check: &Arc<dyn ProgramCheck>,
    device: &Device,
    program: &str,
    payload: &serde_json::Value,
    shots: Option<i64>,
    payload_bytes: usize,
) -> Result<Checked> {
    if payload_bytes <= INLINE_CHECK_BYTES {
        return Ok(check.check(device, program, payload, shots)?);
    }
    let (check, device, program, payload) = (check.clone(), device.clone(), program.to_owned(), payload.clone());
    tokio::task::spawn_blocking(move || check.check(&device, &program, &payload, shots))
        .await
        .map_err(|e| ServiceError::Internal(format!("payload check panicked: {e}")))?
        .map_err(ServiceError::from)
}
