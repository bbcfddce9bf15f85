//! qcloud-wire: the agent protocol's wire types, shared by the server (`/v1/agent/...`) and the
//! agents that serve devices from outside it (`qcloud-agent`). Serde only; the server turns on
//! the `openapi` feature to describe them. The protocol is documented in
//! `docs/agent-protocol.md`.
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// The path prefix of the agent routes.
pub const PREFIX: &str = "/v1/agent";

/// Longest a claim waits for a job, in seconds.
pub const MAX_WAIT_SECONDS: f64 = 30.0;

/// `POST /v1/agent/claim`: wait up to `wait_seconds` (at most 30) for the next job the scheduler
/// starts on this device. 200 with a [`Claim`], or 204 when none came.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// Seconds to wait for a job (default 30, at most 30; 0: answer at once).
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 30))]
    pub wait_seconds: Option<f64>,
}

/// The lease on a claimed job: the agent holds the job while it heartbeats within
/// `expires_in_ms`; every later call names the job and its `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Lease {
    pub job_id: Uuid,
    /// Fencing token: bumped at every claim; a call with an older epoch is refused (409).
    pub epoch: i64,
    /// The lease lasts this long after each heartbeat.
    pub expires_in_ms: u64,
    /// Send a heartbeat this often (a third of the lease).
    pub heartbeat_ms: u64,
}

/// A job the agent is to run, with its lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Claim {
    pub lease: Lease,
    pub job: AgentJob,
}

/// What the agent runs: the job's spec, as the `--exec` program gets it on stdin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AgentJob {
    pub id: Uuid,
    pub device: String,
    /// `sampler`, `estimator`, `pulser`, or whatever the lab's device runs.
    pub program: String,
    /// The program's input (for `sampler`: Qiskit's `{"pubs": [...]}`).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub payload: serde_json::Value,
    pub shots: Option<i64>,
    pub session_id: Option<Uuid>,
    /// Which run of the job this is (more than 1 after a lost agent).
    pub attempt: i32,
    /// The maximum execution time, in seconds from the claim (rule 10): past it the server fails
    /// the job and the heartbeat says stop.
    pub max_execution_seconds: f64,
    /// The device's qubit count and its configuration, as the server has them.
    pub num_qubits: i32,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub device_config: serde_json::Value,
}

/// `POST /v1/agent/jobs/{id}/heartbeat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    pub epoch: i64,
}

/// Why an agent should stop its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The user canceled the job: stop, then report it with `fail` (it is recorded canceled).
    Canceled,
    /// The job ran past its maximum execution time: it is failed already; stop it.
    MaxExecutionTime,
}

/// The heartbeat's answer: the lease was extended; stop the job if `stop` says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct HeartbeatAnswer {
    pub expires_in_ms: u64,
    pub stop: Option<StopReason>,
}

/// `POST /v1/agent/jobs/{id}/progress`: optional status text and fraction done, shown on the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Progress {
    pub epoch: i64,
    pub message: Option<String>,
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1))]
    pub fraction: Option<f64>,
}

/// `POST /v1/agent/jobs/{id}/complete`: the result (any JSON; may be sent gzip-compressed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Complete {
    pub epoch: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub result: serde_json::Value,
    /// The job's log (its last 64 KiB are kept).
    pub log: Option<String>,
}

/// `POST /v1/agent/jobs/{id}/fail`: the job could not run, or stopped after a cancel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Fail {
    pub epoch: i64,
    /// Why, for the user (the job's `reason`).
    pub reason: String,
    pub log: Option<String>,
}

/// How the server recorded the job's end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Finished {
    pub job_id: Uuid,
    /// `completed`, `failed` or `canceled`.
    pub status: String,
}

/// The device's status as its agent reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// Takes jobs.
    Online,
    /// Takes no new jobs for now (calibration); the running job finishes.
    Paused,
    /// Takes no jobs.
    Offline,
}

/// `PUT /v1/agent/device`: what the agent says about its device. `target` is served by the IBM
/// facade's `configuration` / `properties`, `pulser_device` by the Pasqal facade's `specs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DeviceReport {
    pub status: AgentStatus,
    /// Free text (e.g. "calibrating until 14:00").
    pub message: Option<String>,
    /// A gate-model target (see [`Target`]).
    pub target: Option<Target>,
    /// A Pulser device specification (the JSON of `pulser.devices.Device.to_abstract_repr()`).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub pulser_device: Option<serde_json::Value>,
    /// Calibration data as the lab keeps it (shown, not interpreted).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub calibration: Option<serde_json::Value>,
}

/// A gate-model device as its agent describes it: qubits, coupling, operations with their
/// durations and errors. The IBM facade serves it as the backend's configuration and
/// properties, so Qiskit transpiles for it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub num_qubits: u32,
    /// Directed pairs of qubits a two-qubit gate acts on; empty: all to all.
    #[serde(default)]
    pub coupling_map: Vec<[u32; 2]>,
    pub operations: Vec<Operation>,
    /// Per-qubit T1 / T2 in seconds and readout error, when known.
    #[serde(default)]
    pub qubits: Vec<QubitProperties>,
}

/// One operation of a [`Target`], by its OpenQASM / Qiskit name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Operation {
    pub name: String,
    /// Qubits it acts on (1 or 2; 0 for a barrier-like operation).
    pub num_qubits: u32,
    /// Seconds, when known.
    pub duration: Option<f64>,
    /// 1 - fidelity, when known.
    pub error: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct QubitProperties {
    pub t1: Option<f64>,
    pub t2: Option<f64>,
    pub readout_error: Option<f64>,
}

/// The device as its agent sees it (`GET /v1/agent/device`, and the answer to a report).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AgentDevice {
    pub name: String,
    /// `gate` or `analog`.
    pub kind: String,
    pub num_qubits: i32,
    /// The status the scheduler goes by: the operator's, and the agent's.
    pub status: String,
    /// What the agent last reported (null: never).
    pub agent_status: Option<AgentStatus>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub config: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_reads_from_json_and_refuses_unknown_fields() {
        let r: DeviceReport = serde_json::from_value(serde_json::json!({
            "status": "paused", "message": "calibrating",
            "target": {"num_qubits": 2, "coupling_map": [[0, 1]],
                       "operations": [{"name": "cx", "num_qubits": 2, "duration": 3e-7, "error": 0.01}]}
        }))
        .unwrap();
        assert_eq!(r.status, AgentStatus::Paused);
        assert_eq!(r.target.unwrap().coupling_map, vec![[0, 1]]);
        assert!(serde_json::from_value::<DeviceReport>(serde_json::json!({"status": "online", "x": 1})).is_err());
        assert!(serde_json::from_value::<DeviceReport>(serde_json::json!({"status": "broken"})).is_err());
    }

    #[test]
    fn stop_reasons_are_snake_case() {
        let a = HeartbeatAnswer { expires_in_ms: 10, stop: Some(StopReason::MaxExecutionTime) };
        assert_eq!(serde_json::to_value(a).unwrap()["stop"], "max_execution_time");
    }
}
