//! qcloud-devices: the `Driver` trait (prepare, then run with a cancellation token), the registry
//! that maps a device's driver kind to its implementation, and the built-in drivers: `noop`
//! (measures the scheduler, emulates a busy QPU with the timing model) and `statevector`
//! (Sampler and Estimator on `qcloud-qsim`). CPU work never runs on the async runtime's threads.
#![forbid(unsafe_code)]

pub mod analog;
pub mod memory;
pub mod noop;
pub mod statevector;
pub mod target;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use qcloud_core::{DriverKind, Timing};
use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The device a job runs on, as a driver sees it.
#[derive(Debug, Clone)]
pub struct DeviceSpec {
    pub name: String,
    pub driver: DriverKind,
    pub num_qubits: u32,
    pub timing: Timing,
    pub config: serde_json::Value,
}

/// A job handed to a driver.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub id: Uuid,
    pub program: String,
    pub payload: serde_json::Value,
    pub shots: Option<u64>,
    pub device: DeviceSpec,
}

/// A prepared job: parsed, validated and compiled, ready for device time.
pub struct Prepared {
    pub job_id: Uuid,
    /// Shots the device will spend (for the timing model).
    pub shots: u64,
    /// Circuits (pubs) of the job, for the preparation time of the timing model.
    pub circuits: u64,
    /// When [`prepare`] started and ended the preparation (set by it, not by drivers).
    pub prepared: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Memory the run allocates (its state vector), reserved from the server's budget while it
    /// runs; 0 for drivers that allocate little.
    pub memory_bytes: u64,
    pub inner: Box<dyn Any + Send + Sync>,
}

impl Prepared {
    /// A prepared job of `shots` shots and `circuits` circuits.
    pub fn new(job_id: Uuid, shots: u64, circuits: u64, inner: Box<dyn Any + Send + Sync>) -> Self {
        Prepared { job_id, shots, circuits, prepared: None, memory_bytes: 0, inner }
    }

    /// The same, allocating `bytes` when it runs.
    pub fn with_memory(mut self, bytes: u64) -> Self {
        self.memory_bytes = bytes;
        self
    }
}

/// What [`Driver::validate`] learned from a payload.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Validated {
    /// Shots per circuit the payload asks for (e.g. the Sampler pubs'), when the request gave none.
    pub shots: Option<u64>,
    /// Memory the run will allocate, checked against the server's budget.
    pub memory_bytes: u64,
}

/// What a driver returns.
#[derive(Debug, Clone)]
pub struct JobOutput {
    pub result: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DriverError {
    /// The job's input is wrong: the job fails with this message (a user error, not a fault).
    #[error("{0}")]
    Invalid(String),
    /// The job asks for more than the device can do (too many qubits, too much memory).
    #[error("{0}")]
    TooLarge(String),
    /// The run was stopped through its cancellation token.
    #[error("canceled")]
    Canceled,
    /// Something broke in the driver or the device.
    #[error("device fault: {0}")]
    Fault(String),
}

impl DriverError {
    /// A short machine-readable code for the job's `reason_code`.
    pub fn code(&self) -> &'static str {
        match self {
            DriverError::Invalid(_) => "invalid_input",
            DriverError::TooLarge(_) => "too_large",
            DriverError::Canceled => "canceled",
            DriverError::Fault(_) => "device_fault",
        }
    }
}

/// A device driver. `prepare` is CPU work called on a blocking thread; `run` uses device time
/// and must stop soon after `cancel` fires.
#[async_trait]
pub trait Driver: Send + Sync {
    /// The cheap checks of `prepare`, at submit time (structure, field names, sizes, circuits that
    /// parse, qubits against the device), and what the payload says that the request did not.
    /// By default: `prepare`, with the result thrown away. Called on a blocking thread for large
    /// payloads.
    fn validate(&self, job: &JobSpec) -> Result<Validated, DriverError> {
        let p = self.prepare(job)?;
        Ok(Validated { shots: job.shots.or(Some(p.shots).filter(|s| *s > 0)), memory_bytes: p.memory_bytes })
    }

    fn prepare(&self, job: &JobSpec) -> Result<Prepared, DriverError>;
    async fn run(&self, job: Prepared, cancel: CancellationToken) -> Result<JobOutput, DriverError>;
}

/// Driver implementations by kind.
#[derive(Clone)]
pub struct Registry {
    drivers: HashMap<DriverKind, Arc<dyn Driver>>,
    /// The memory budget of every job these drivers run (one per replica).
    budget: memory::MemoryBudget,
}

impl Default for Registry {
    fn default() -> Self {
        let mut drivers: HashMap<DriverKind, Arc<dyn Driver>> = HashMap::new();
        drivers.insert(DriverKind::Noop, Arc::new(noop::NoopDriver));
        drivers.insert(DriverKind::Statevector, Arc::new(statevector::StatevectorDriver));
        drivers.insert(DriverKind::Analog, Arc::new(analog::AnalogDriver));
        Registry { drivers, budget: memory::MemoryBudget::new(memory::MemoryBudget::machine_default_bytes()) }
    }
}

impl Registry {
    pub fn get(&self, kind: DriverKind) -> Option<Arc<dyn Driver>> {
        self.drivers.get(&kind).cloned()
    }

    /// The same drivers under a simulation memory budget of `bytes`.
    pub fn with_memory_budget(mut self, bytes: u64) -> Self {
        self.budget = memory::MemoryBudget::new(bytes);
        self
    }

    pub fn memory_budget(&self) -> &memory::MemoryBudget {
        &self.budget
    }
}

/// Prepare a job as the device would: the driver's preparation, then the classical preparation
/// time of the device's timing model (`prep_ms` + `prep_per_circuit_ms` per circuit), spent on
/// the calling thread. Call it on a blocking thread, never on the async runtime: the scheduler
/// does, just in time for most jobs and ahead of their turn for batch sessions (rule 12).
pub fn prepare(driver: &dyn Driver, job: &JobSpec) -> Result<Prepared, DriverError> {
    let started_at = Utc::now();
    let t0 = Instant::now();
    let mut prepared = driver.prepare(job)?;
    let wanted = Duration::from_secs_f64(job.device.timing.preparation_ms(prepared.circuits) / 1000.0);
    if let Some(rest) = wanted.checked_sub(t0.elapsed()) {
        std::thread::sleep(rest);
    }
    prepared.prepared = Some((started_at, Utc::now()));
    Ok(prepared)
}

/// Run a prepared job: the driver's work, then the device's own occupancy from its timing model,
/// both stopped by `cancel`. Returns the output and the device seconds used.
pub async fn execute(
    driver: &dyn Driver,
    prepared: Prepared,
    timing: &Timing,
    budget: &memory::MemoryBudget,
    cancel: CancellationToken,
) -> (Result<JobOutput, DriverError>, f64) {
    let started = Instant::now();
    let occupancy = Duration::from_secs_f64(timing.occupancy_ms(prepared.shots) / 1000.0);
    // The job's memory is reserved for its run; it waits here while other jobs hold the budget.
    let reservation = match budget.reserve(prepared.memory_bytes, &cancel).await {
        Ok(r) => r,
        Err(e) => return (Err(e), started.elapsed().as_secs_f64()),
    };
    let out = driver.run(prepared, cancel.clone()).await;
    drop(reservation);
    if out.is_ok() && !occupancy.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(occupancy) => {}
            _ = cancel.cancelled() => return (Err(DriverError::Canceled), started.elapsed().as_secs_f64()),
        }
    }
    (out, started.elapsed().as_secs_f64())
}
