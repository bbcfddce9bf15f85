//! The `statevector` driver: programs `sampler` and `estimator` on `qcloud-qsim`. Parsing, binding
//! and size checks happen in `prepare` (so batch sessions prepare in parallel); `run` simulates on
//! a blocking thread. The device's `num_qubits` bounds a circuit's width and the configured memory
//! bound the qubits it acts on (idle qubits are not simulated). A device with a `config.target`
//! runs only ISA circuits: gates of its `basis_gates` (and measure, barrier, delay, reset, id),
//! 2-qubit gates on pairs of its `coupling_map`.

use crate::target::Target;
use crate::{Driver, DriverError, JobOutput, JobSpec, Prepared, Validated};
use async_trait::async_trait;
use qcloud_qsim::primitives::{self, PreparedEstimator, PreparedSampler, SimError, SimLimits};
use qcloud_qsim::ReadLimits;
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
        let prepared = self.prepare(job)?;
        let shots = match job.program.as_str() {
            "sampler" => job.shots.or_else(|| sampler_shots(&job.payload)),
            _ => job.shots,
        };
        Ok(Validated { shots, memory_bytes: prepared.memory_bytes })
    }

    fn prepare(&self, job: &JobSpec) -> Result<Prepared, DriverError> {
        let isa = match Target::from_config(&job.device.config) {
            None => None,
            Some(Ok(t)) => Some(t.isa()),
            Some(Err(e)) => return Err(DriverError::Fault(format!("device '{}': {e}", job.device.name))),
        };
        let max_qubits = job.device.num_qubits as usize;
        let limits = SimLimits {
            isa,
            // The readers take circuits as wide as the device (the width check names the device).
            read: ReadLimits {
                max_qubits: ReadLimits::default().max_qubits.max(max_qubits + 1),
                ..ReadLimits::default()
            },
            max_qubits,
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
        let (program, shots, circuits) = match job.program.as_str() {
            "sampler" => {
                let p = primitives::prepare_sampler(&payload, &limits).map_err(sim_error)?;
                let n = p.num_pubs() as u64;
                // The device spends every shot of every pub and parameter point.
                let shots = p.total_shots();
                (Program::Sampler(p), shots, n)
            }
            "estimator" => {
                let p = primitives::prepare_estimator(&payload, &limits).map_err(sim_error)?;
                let n = p.num_pubs() as u64;
                (Program::Estimator(p), 0, n)
            }
            other => {
                return Err(DriverError::Invalid(format!(
                    "the statevector driver runs programs 'sampler' and 'estimator', not '{other}'"
                )))
            }
        };
        let memory = match &program {
            Program::Sampler(p) => p.memory_bytes(),
            Program::Estimator(p) => p.memory_bytes(),
        };
        Ok(Prepared::new(job.id, shots, circuits, Box::new(program)).with_memory(memory))
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

    fn heavy_hex_job(program: &str, payload: serde_json::Value) -> JobSpec {
        let mut job = spec(program, payload, 127);
        let target = crate::target::eagle_like(127).unwrap();
        job.device.config = serde_json::json!({ "target": target });
        job
    }

    /// An ISA circuit for the heavy-hex target: ECR on the coupled pair (14, 0), idle qubits elsewhere.
    const ISA: &str = "OPENQASM 3.0;\ninclude \"stdgates.inc\";\ngate ecr _gate_q_0, _gate_q_1 {\n  s _gate_q_0;\n  \
        sx _gate_q_1;\n  cx _gate_q_0, _gate_q_1;\n  x _gate_q_0;\n}\nbit[3] c;\nx $126;\necr $14, $0;\nrz(0.5) $0;\n\
        sx $0;\nid $3;\ndelay[100dt] $7;\nbarrier $0, $14, $126;\nc[0] = measure $0;\nc[1] = measure $14;\n\
        c[2] = measure $126;\n";

    #[tokio::test]
    async fn a_heavy_hex_device_runs_isa_circuits_on_the_qubits_they_touch() {
        let d = StatevectorDriver;
        let job = heavy_hex_job("sampler", serde_json::json!({"pubs": [[ISA, null, 500]], "seed": 3}));
        let prepared = d.prepare(&job).unwrap();
        assert_eq!((prepared.shots, prepared.circuits), (500, 1));
        let out = d.run(prepared, CancellationToken::new()).await.unwrap();
        let counts = out.result["pub_results"][0]["data"]["c"]["counts"].as_object().unwrap();
        assert_eq!(counts.values().filter_map(|v| v.as_u64()).sum::<u64>(), 500);
        assert!(counts.keys().all(|k| k.starts_with('1')), "qubit 126 is flipped: {counts:?}");
        let obs = format!("Z{}", "I".repeat(126));
        let job = heavy_hex_job("estimator", serde_json::json!({"pubs": [[ISA, obs]]}));
        let out = d.run(d.prepare(&job).unwrap(), CancellationToken::new()).await.unwrap();
        let ev = out.result["pub_results"][0]["evs"].as_f64().unwrap();
        assert!((ev + 1.0).abs() < 1e-9, "<Z_126> = {ev}");
    }

    #[test]
    fn a_heavy_hex_device_refuses_circuits_that_are_not_isa() {
        let d = StatevectorDriver;
        let reason = |src: &str| match d.prepare(&heavy_hex_job("sampler", serde_json::json!({"pubs": [[src]]}))) {
            Err(DriverError::Invalid(m)) => m,
            Err(e) => panic!("{e:?}"),
            Ok(_) => panic!("accepted: {src}"),
        };
        let m = reason(BELL);
        assert!(m.contains("gate 'h' on qubit(s) [0]") && m.contains("ecr, id, rz, sx, x"), "{m}");
        let m = reason(&ISA.replace("ecr $14, $0", "ecr $0, $2"));
        assert!(m.contains("gate 'ecr' on qubits (0, 2)") && m.contains("coupling map"), "{m}");
        let m = reason("OPENQASM 3.0;\ninclude \"stdgates.inc\";\nbit[1] c;\ncx $0, $14;\nc[0] = measure $0;\n");
        assert!(m.contains("gate 'cx'"), "{m}");
        // Without a target the same circuits run.
        assert!(d.prepare(&spec("sampler", serde_json::json!({"pubs": [[BELL]]}), 127)).is_ok());
        // A broken target is the device's fault, not the job's.
        let mut job = spec("sampler", serde_json::json!({"pubs": [[BELL]]}), 127);
        job.device.config = serde_json::json!({"target": {"basis_gates": "x"}});
        assert!(matches!(d.prepare(&job), Err(DriverError::Fault(m)) if m.contains("config.target")));
    }

    #[test]
    fn preparation_time_is_spent_in_prepare() {
        let d = StatevectorDriver;
        let mut job = spec("sampler", serde_json::json!({"pubs": [[BELL], [BELL], [BELL]]}), 5);
        job.device.timing = Timing { prep_ms: 20.0, prep_per_circuit_ms: 10.0, ..Timing::default() };
        let p = crate::prepare(&d, &job).unwrap();
        assert_eq!(p.circuits, 3);
        let (start, end) = p.prepared.expect("prepare records when it ran");
        // At least prep_ms + 3 x prep_per_circuit_ms (a lower bound: sleeping never ends early).
        assert!(end - start >= chrono::Duration::milliseconds(50), "{start} .. {end}");
        assert!(d.prepare(&job).unwrap().prepared.is_none(), "drivers alone spend no modelled time");
    }
}
