//! What runs a job on the agent's side: the simulator engines (`statevector` on qcloud-qsim,
//! `analog` on qcloud-analog), an external program per job (`--exec`), or a QDMI device.

use qcloud_analog::{AnalogError, Limits};
use qcloud_qsim::primitives::{self, SimError, SimLimits};
use qcloud_qsim::ReadLimits;
use qcloud_wire as wire;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// A boxed future (engines are trait objects).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// How a run ended.
#[derive(Debug)]
pub enum RunError {
    /// The job cannot run here, or its input is wrong: the job fails with this reason.
    Failed { reason: String, log: Option<String> },
    /// Stopped through the token (cancel, overrun or a lost lease).
    Stopped { log: Option<String> },
}

impl RunError {
    pub fn failed(reason: impl Into<String>) -> RunError {
        RunError::Failed { reason: reason.into(), log: None }
    }
}

/// A finished run: the result and, optionally, a log.
pub struct RunOutput {
    pub result: Value,
    pub log: Option<String>,
}

pub trait Engine: Send + Sync {
    /// The programs it runs (`None`: whatever it is given).
    fn programs(&self) -> Option<&'static [&'static str]>;
    /// What the agent reports of the device when it starts.
    fn report(&self) -> wire::DeviceReport {
        wire::DeviceReport {
            status: wire::AgentStatus::Online,
            message: None,
            target: None,
            pulser_device: None,
            calibration: None,
        }
    }
    /// Run one job; stop soon after `stop` fires.
    fn run<'a>(
        &'a self,
        job: &'a wire::AgentJob,
        stop: CancellationToken,
    ) -> BoxFuture<'a, Result<RunOutput, RunError>>;
}

/// Default memory a simulation may take when the device config gives no `max_memory_bytes`.
const DEFAULT_MAX_MEMORY_BYTES: u64 = 4 << 30;

fn max_memory(job: &wire::AgentJob) -> u64 {
    job.device_config.get("max_memory_bytes").and_then(|v| v.as_u64()).unwrap_or(DEFAULT_MAX_MEMORY_BYTES)
}

/// Sampler and Estimator on qcloud-qsim's state vector.
pub struct Statevector;

enum SvProgram {
    Sampler(primitives::PreparedSampler),
    Estimator(primitives::PreparedEstimator),
}

fn sim_error(e: SimError) -> RunError {
    RunError::failed(e.to_string())
}

impl Engine for Statevector {
    fn programs(&self) -> Option<&'static [&'static str]> {
        Some(&["sampler", "estimator"])
    }

    fn run<'a>(
        &'a self,
        job: &'a wire::AgentJob,
        stop: CancellationToken,
    ) -> BoxFuture<'a, Result<RunOutput, RunError>> {
        Box::pin(async move {
            let max_qubits = job.num_qubits.max(0) as usize;
            let limits = SimLimits {
                read: ReadLimits {
                    max_qubits: ReadLimits::default().max_qubits.max(max_qubits + 1),
                    ..ReadLimits::default()
                },
                max_qubits,
                max_memory_bytes: max_memory(job),
                ..SimLimits::default()
            };
            let mut payload = job.payload.clone();
            if let (Some(shots), Some(obj)) = (job.shots, payload.as_object_mut()) {
                obj.entry("shots").or_insert(shots.into());
            }
            let program = job.program.clone();
            let work = tokio::task::spawn_blocking(move || -> Result<Value, RunError> {
                let p = match program.as_str() {
                    "sampler" => SvProgram::Sampler(primitives::prepare_sampler(&payload, &limits).map_err(sim_error)?),
                    "estimator" => {
                        SvProgram::Estimator(primitives::prepare_estimator(&payload, &limits).map_err(sim_error)?)
                    }
                    other => {
                        return Err(RunError::failed(format!(
                            "this agent runs 'sampler' and 'estimator', not '{other}'"
                        )))
                    }
                };
                match p {
                    SvProgram::Sampler(p) => primitives::run_sampler(&p),
                    SvProgram::Estimator(p) => primitives::run_estimator(&p),
                }
                .map_err(sim_error)
            });
            tokio::select! {
                r = work => Ok(RunOutput { result: r.map_err(|e| RunError::failed(format!("simulation task: {e}")))??, log: None }),
                // The simulation thread finishes on its own; its result is dropped.
                _ = stop.cancelled() => Err(RunError::Stopped { log: None }),
            }
        })
    }
}

/// Pulser sequences on qcloud-analog's emulator.
pub struct Analog {
    /// The Pulser device the agent reports (and checks sequences against).
    pub device_spec: Value,
}

impl Analog {
    pub fn new() -> Analog {
        let spec =
            serde_json::from_str(include_str!("../../qcloud-analog/devices/AnalogDevice.json")).unwrap_or(Value::Null);
        Analog { device_spec: spec }
    }
}

impl Default for Analog {
    fn default() -> Self {
        Analog::new()
    }
}

impl Engine for Analog {
    fn programs(&self) -> Option<&'static [&'static str]> {
        Some(&["pulser"])
    }

    fn report(&self) -> wire::DeviceReport {
        wire::DeviceReport {
            status: wire::AgentStatus::Online,
            message: None,
            target: None,
            pulser_device: self.device_spec.is_object().then(|| self.device_spec.clone()),
            calibration: None,
        }
    }

    fn run<'a>(
        &'a self,
        job: &'a wire::AgentJob,
        stop: CancellationToken,
    ) -> BoxFuture<'a, Result<RunOutput, RunError>> {
        Box::pin(async move {
            let target_device = qcloud_analog::Device::from_object(&self.device_spec).ok();
            let limits = Limits {
                max_atoms: job.num_qubits.max(0) as usize,
                max_memory_bytes: max_memory(job),
                target_device,
                ..Limits::default()
            };
            let mut payload = job.payload.clone();
            if let (Some(shots), Some(obj)) = (job.shots, payload.as_object_mut()) {
                obj.entry("runs").or_insert(shots.into());
            }
            let flag = Arc::new(AtomicBool::new(false));
            let seen = flag.clone();
            let mut work = tokio::task::spawn_blocking(move || -> Result<Value, AnalogError> {
                let p = qcloud_analog::prepare(&payload, &limits)?;
                qcloud_analog::run(&p, &|| seen.load(Ordering::Relaxed))
            });
            let result = tokio::select! {
                r = &mut work => r,
                _ = stop.cancelled() => {
                    flag.store(true, Ordering::Relaxed);
                    let _ = work.await;
                    return Err(RunError::Stopped { log: None });
                }
            };
            match result {
                Ok(Ok(v)) => Ok(RunOutput { result: v, log: None }),
                Ok(Err(AnalogError::Canceled)) => Err(RunError::Stopped { log: None }),
                Ok(Err(e)) => Err(RunError::failed(e.to_string())),
                Err(e) => Err(RunError::failed(format!("emulation task: {e}"))),
            }
        })
    }
}
