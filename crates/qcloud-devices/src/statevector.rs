//! The `statevector` driver: programs `sampler` and `estimator` on `qcloud-qsim`. Parsing, binding
//! and size checks happen in `prepare` (so batch sessions prepare in parallel); `run` simulates on
//! a blocking thread. The device's `num_qubits` and the configured memory bound refuse circuits
//! that do not fit.

use crate::{Driver, DriverError, JobOutput, JobSpec, Prepared, Validated};
use async_trait::async_trait;
use qcloud_qsim::primitives::{self, PreparedEstimator, PreparedSampler, SimError, SimLimits};
use tokio_util::sync::CancellationToken;

/// Largest state vector the driver admits unless the device config says otherwise
/// (`config.max_memory_bytes`): 4 GiB, 28 qubits.
pub const DEFAULT_MAX_MEMORY_BYTES: u64 = 4 << 30;

#[derive(Default)]
pub struct StatevectorDriver;

enum Program {
    Sampler(PreparedSampler),
    Estimator(PreparedEstimator),
}

fn sim_error(e: SimError) -> DriverError {
    match e {
        SimError::TooLarge(m) => DriverError::TooLarge(m),
        other => DriverError::Invalid(other.to_string()),
    }
}

/// The shots per pub a Sampler payload asks for (the largest, when pubs differ): what the job view
/// shows when the request gave no `shots`.
fn sampler_shots(payload: &serde_json::Value) -> Option<u64> {
    let default = payload
        .get("shots")
        .filter(|v| !v.is_null())
        .or_else(|| payload.pointer("/options/default_shots").filter(|v| !v.is_null()))
        .and_then(|v| v.as_u64());
    let pubs = payload.get("pubs")?.as_array()?;
    pubs.iter()
        .filter_map(|p| p.as_array()?.get(2).filter(|v| !v.is_null()).and_then(|v| v.as_u64()).or(default))
        .max()
        .or(default)
}

#[async_trait]
impl Driver for StatevectorDriver {
    fn validate(&self, job: &JobSpec) -> Result<Validated, DriverError> {
        self.prepare(job)?;
        let shots = match job.program.as_str() {
            "sampler" => job.shots.or_else(|| sampler_shots(&job.payload)),
            _ => job.shots,
        };
        Ok(Validated { shots })
    }

    fn prepare(&self, job: &JobSpec) -> Result<Prepared, DriverError> {
        let limits = SimLimits {
            max_qubits: job.device.num_qubits as usize,
            max_memory_bytes: job
                .device
                .config
                .get("max_memory_bytes")
                .and_then(|v| v.as_u64())
                .unwrap_or(DEFAULT_MAX_MEMORY_BYTES),
            ..SimLimits::default()
        };
        let mut payload = job.payload.clone();
        if let (Some(shots), Some(obj)) = (job.shots, payload.as_object_mut()) {
            obj.entry("shots").or_insert(shots.into());
        }
        let (program, shots) = match job.program.as_str() {
            "sampler" => {
                let p = primitives::prepare_sampler(&payload, &limits).map_err(sim_error)?;
                let shots = p.total_shots();
                (Program::Sampler(p), shots)
            }
            "estimator" => {
                let p = primitives::prepare_estimator(&payload, &limits).map_err(sim_error)?;
                (Program::Estimator(p), 0)
            }
            other => {
                return Err(DriverError::Invalid(format!(
                    "the statevector driver runs programs 'sampler' and 'estimator', not '{other}'"
                )))
            }
        };
        Ok(Prepared { job_id: job.id, shots, inner: Box::new(program) })
    }

    async fn run(&self, job: Prepared, cancel: CancellationToken) -> Result<JobOutput, DriverError> {
        let program = job
            .inner
            .downcast::<Program>()
            .map_err(|_| DriverError::Fault("statevector driver got a job prepared by another driver".into()))?;
        // Simulation is CPU-bound: it runs on a blocking thread (rayon inside). Cancellation is
        // checked before the run starts and when it ends; a running simulation is not preempted.
        if cancel.is_cancelled() {
            return Err(DriverError::Canceled);
        }
        let work = tokio::task::spawn_blocking(move || match *program {
            Program::Sampler(p) => primitives::run_sampler(&p),
            Program::Estimator(p) => primitives::run_estimator(&p),
        });
        let result = tokio::select! {
            r = work => r.map_err(|e| DriverError::Fault(format!("simulation task: {e}")))?,
            _ = cancel.cancelled() => return Err(DriverError::Canceled),
        };
        Ok(JobOutput { result: result.map_err(sim_error)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeviceSpec, Timing};
    use qcloud_core::DriverKind;
    use uuid::Uuid;

    fn spec(program: &str, payload: serde_json::Value, num_qubits: u32) -> JobSpec {
        JobSpec {
            id: Uuid::now_v7(),
            program: program.into(),
            payload,
            shots: None,
            device: DeviceSpec {
                name: "sv".into(),
                driver: DriverKind::Statevector,
                num_qubits,
                timing: Timing::default(),
                config: serde_json::json!({}),
            },
        }
    }

    const BELL: &str =
        "OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n";

    #[tokio::test]
    async fn sampler_runs_a_bell_circuit() {
        let d = StatevectorDriver;
        let job = spec("sampler", serde_json::json!({"pubs": [[BELL, null, 400]], "seed": 7}), 5);
        let out = d.run(d.prepare(&job).unwrap(), CancellationToken::new()).await.unwrap();
        let counts = &out.result["pub_results"][0]["data"]["c"]["counts"];
        let n00 = counts["00"].as_u64().unwrap_or(0);
        let n11 = counts["11"].as_u64().unwrap_or(0);
        assert_eq!(n00 + n11, 400, "{counts}");
        assert!(n00 > 100 && n11 > 100);
    }

    #[tokio::test]
    async fn estimator_gives_exact_values() {
        let d = StatevectorDriver;
        let bell = "OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[2];\nh q[0];\ncx q[0],q[1];\n";
        let job = spec("estimator", serde_json::json!({"pubs": [[bell, {"ZZ": 1.0, "XI": 0.5}]]}), 5);
        let out = d.run(d.prepare(&job).unwrap(), CancellationToken::new()).await.unwrap();
        let ev = out.result["pub_results"][0]["evs"].as_f64().unwrap();
        assert!((ev - 1.0).abs() < 1e-12, "{ev}");
    }

    #[test]
    fn circuits_larger_than_the_device_are_refused() {
        let d = StatevectorDriver;
        let job = spec("sampler", serde_json::json!({"pubs": [[BELL]]}), 1);
        assert!(matches!(d.prepare(&job), Err(DriverError::TooLarge(_))));
        let job = spec("sampler", serde_json::json!({"pubs": [["OPENQASM 2.0; qreg q[2]; garbage"]]}), 5);
        assert!(matches!(d.prepare(&job), Err(DriverError::Invalid(_))));
    }
}
