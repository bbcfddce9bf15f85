//! `/v1/agent`: the agent protocol (docs/agent-protocol.md). An agent authenticates with a device
//! token, which names its one device; it claims the job the scheduler started there (a long
//! poll), heartbeats its lease, reports progress, completes or fails the job with the lease's
//! epoch (a stale epoch is 409 and changes nothing), and reports its device. The wire types are
//! `qcloud-wire`'s, shared with the agents. Also the admin routes that make device tokens.

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Admin, ApiJson, ApiPath};
use crate::AppState;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use qcloud_service::agents::{AgentOutcome, DeviceAgent, DeviceReport as SvcReport, Stop};
use qcloud_service::devices::DeviceView as SvcDevice;
use qcloud_service::pipeline::ClaimedJob;
use qcloud_service::DeviceStatus;
use qcloud_wire as wire;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use utoipa::ToSchema;
use uuid::Uuid;

/// The agent calling, from `Authorization: Bearer <device token>`.
pub struct Agent(pub DeviceAgent);

impl FromRequestParts<AppState> for Agent {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = crate::extract::bearer(parts)?;
        Ok(Agent(state.svc.authenticate_device(token).await?))
    }
}

fn lease(s: &AppState, job_id: Uuid, epoch: i64) -> wire::Lease {
    let ms = s.svc.cfg.lease.num_milliseconds().max(1) as u64;
    wire::Lease { job_id, epoch, expires_in_ms: ms, heartbeat_ms: (ms / 3).max(50) }
}

fn claim_of(s: &AppState, j: ClaimedJob) -> wire::Claim {
    wire::Claim {
        lease: lease(s, j.id, j.lease.epoch),
        job: wire::AgentJob {
            id: j.id,
            device: j.device.name.clone(),
            program: j.program,
            payload: j.payload,
            shots: j.shots,
            session_id: j.session_id,
            attempt: j.attempt,
            max_execution_seconds: j.max_execution.num_milliseconds() as f64 / 1000.0,
            num_qubits: j.device.num_qubits,
            device_config: j.device.config,
        },
    }
}

fn agent_status(s: DeviceStatus) -> wire::AgentStatus {
    match s {
        DeviceStatus::Online => wire::AgentStatus::Online,
        DeviceStatus::Paused => wire::AgentStatus::Paused,
        DeviceStatus::Offline => wire::AgentStatus::Offline,
    }
}

fn device_of(d: SvcDevice) -> wire::AgentDevice {
    wire::AgentDevice {
        name: d.name,
        kind: d.kind.to_string(),
        num_qubits: d.num_qubits,
        status: d.status.to_string(),
        agent_status: d.agent.and_then(|a| a.status).map(agent_status),
        config: d.config,
    }
}

/// Claim the next job the scheduler started on this device (a long poll of up to 30 s, woken
/// when a job starts). 200 with the job and its lease, 204 when none came in time.
#[utoipa::path(post, path = "/v1/agent/claim", operation_id = "agent_claim", tag = "agent", security(("device_token" = [])),
    request_body = wire::ClaimRequest,
    responses((status = 200, body = wire::Claim), (status = 204, description = "No job came within the wait"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn claim(
    State(s): State<AppState>,
    Agent(agent): Agent,
    ApiJson(req): ApiJson<wire::ClaimRequest>,
) -> ApiResult<Response> {
    let wait = req.wait_seconds.unwrap_or(wire::MAX_WAIT_SECONDS);
    if !wait.is_finite() || !(0.0..=wire::MAX_WAIT_SECONDS).contains(&wait) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_wait", "wait_seconds: a number from 0 to 30"));
    }
    match s.svc.agent_claim(&agent, Duration::from_secs_f64(wait)).await? {
        Some(job) => Ok(Json(claim_of(&s, job)).into_response()),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// Extend the lease of the job this agent runs; the answer says whether to stop it (canceled, or
/// past its maximum execution time). 409 `lease_lost` when the lease is no longer this epoch's.
#[utoipa::path(post, path = "/v1/agent/jobs/{id}/heartbeat", operation_id = "agent_heartbeat", tag = "agent",
    security(("device_token" = [])), params(("id" = Uuid, Path, description = "Job id")), request_body = wire::Heartbeat,
    responses((status = 200, body = wire::HeartbeatAnswer), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn heartbeat(
    State(s): State<AppState>,
    Agent(agent): Agent,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<wire::Heartbeat>,
) -> ApiResult<Json<wire::HeartbeatAnswer>> {
    let stop = s.svc.agent_heartbeat(&agent, id, req.epoch).await?.map(|st| match st {
        Stop::Canceled => wire::StopReason::Canceled,
        Stop::MaxExecutionTime => wire::StopReason::MaxExecutionTime,
    });
    Ok(Json(wire::HeartbeatAnswer { expires_in_ms: lease(&s, id, req.epoch).expires_in_ms, stop }))
}

/// Status text and a fraction done of the running job, shown on the job.
#[utoipa::path(post, path = "/v1/agent/jobs/{id}/progress", operation_id = "agent_progress", tag = "agent",
    security(("device_token" = [])), params(("id" = Uuid, Path, description = "Job id")), request_body = wire::Progress,
    responses((status = 204, description = "Recorded"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn progress(
    State(s): State<AppState>,
    Agent(agent): Agent,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<wire::Progress>,
) -> ApiResult<StatusCode> {
    s.svc.agent_progress(&agent, id, req.epoch, req.message.as_deref(), req.fraction).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The job's result (`Content-Encoding: gzip` accepted; up to the server's
/// `agent_max_result_bytes`). Accepted only with the lease's current epoch: a late answer is 409
/// and changes nothing.
#[utoipa::path(post, path = "/v1/agent/jobs/{id}/complete", operation_id = "agent_complete", tag = "agent",
    security(("device_token" = [])), params(("id" = Uuid, Path, description = "Job id")), request_body = wire::Complete,
    responses((status = 200, body = wire::Finished), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody)))]
pub async fn complete(
    State(s): State<AppState>,
    Agent(agent): Agent,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<wire::Complete>,
) -> ApiResult<Json<wire::Finished>> {
    let outcome = AgentOutcome::Completed { result: req.result };
    let status = s.svc.agent_finish(&agent, id, req.epoch, outcome, req.log.as_deref()).await?;
    Ok(Json(wire::Finished { job_id: id, status: status.to_string() }))
}

/// The job could not run (its reason becomes the job's), or stopped after a cancel (recorded
/// canceled). Accepted only with the lease's current epoch.
#[utoipa::path(post, path = "/v1/agent/jobs/{id}/fail", operation_id = "agent_fail", tag = "agent",
    security(("device_token" = [])), params(("id" = Uuid, Path, description = "Job id")), request_body = wire::Fail,
    responses((status = 200, body = wire::Finished), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn fail(
    State(s): State<AppState>,
    Agent(agent): Agent,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<wire::Fail>,
) -> ApiResult<Json<wire::Finished>> {
    let outcome = AgentOutcome::Failed { reason: req.reason };
    let status = s.svc.agent_finish(&agent, id, req.epoch, outcome, req.log.as_deref()).await?;
    Ok(Json(wire::Finished { job_id: id, status: status.to_string() }))
}

/// The agent's device, as the server has it.
#[utoipa::path(get, path = "/v1/agent/device", operation_id = "agent_device", tag = "agent", security(("device_token" = [])),
    responses((status = 200, body = wire::AgentDevice), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn device(State(s): State<AppState>, Agent(agent): Agent) -> ApiResult<Json<wire::AgentDevice>> {
    Ok(Json(device_of(s.svc.agent_device(&agent).await?)))
}

/// Report the device: its status (online, paused for calibration, offline), its target or Pulser
/// device spec, and calibration data. The IBM facade's `configuration` / `properties` and the
/// Pasqal facade's `specs` serve what is reported here.
#[utoipa::path(put, path = "/v1/agent/device", operation_id = "agent_report", tag = "agent", security(("device_token" = [])),
    request_body = wire::DeviceReport,
    responses((status = 200, body = wire::AgentDevice), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn report(
    State(s): State<AppState>,
    Agent(agent): Agent,
    ApiJson(r): ApiJson<wire::DeviceReport>,
) -> ApiResult<Json<wire::AgentDevice>> {
    let status = match r.status {
        wire::AgentStatus::Online => DeviceStatus::Online,
        wire::AgentStatus::Paused => DeviceStatus::Paused,
        wire::AgentStatus::Offline => DeviceStatus::Offline,
    };
    let target = r.target.as_ref().map(target_config).transpose()?;
    if r.pulser_device.as_ref().is_some_and(|p| !p.is_object()) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_report", "pulser_device: a JSON object"));
    }
    let report = json!({
        "message": r.message,
        "target": target,
        "pulser_device": r.pulser_device,
        "calibration": r.calibration,
    });
    Ok(Json(device_of(s.svc.agent_report(&agent, SvcReport { status, report }).await?)))
}

/// Operations that are not gates of a basis (Qiskit adds measure itself).
const NOT_GATES: &[&str] = &["measure", "barrier", "reset", "delay"];

/// A reported target in the shape of a device's `config.target` (what the IBM facade serves):
/// basis gates (the one- and two-qubit gates of Qiskit's standard library, aliases under their
/// standard names, other operations left out), coupling map (all-to-all when empty), per-gate
/// figures, per-qubit figures (their mean: the stored shape has one set).
pub fn target_config(t: &wire::Target) -> Result<Value, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_target", m);
    if t.num_qubits == 0 || t.num_qubits > 100_000 {
        return Err(bad("num_qubits: from 1 to 100000".into()));
    }
    if t.operations.is_empty() || t.operations.len() > 1000 {
        return Err(bad("operations: from 1 to 1000 operations".into()));
    }
    if t.coupling_map.is_empty() && t.num_qubits > 1024 {
        return Err(bad(
            "coupling_map: give one for more than 1024 qubits (all-to-all is implied only up to 1024)".into()
        ));
    }
    if t.coupling_map.len() > 1_000_000 {
        return Err(bad("coupling_map: at most 1000000 pairs".into()));
    }
    for [a, b] in &t.coupling_map {
        if *a >= t.num_qubits || *b >= t.num_qubits || a == b {
            return Err(bad(format!("coupling_map: [{a}, {b}] is not a pair of two of the {} qubits", t.num_qubits)));
        }
    }
    let finite = |name: &str, v: Option<f64>, max: f64| match v {
        Some(x) if !x.is_finite() || !(0.0..=max).contains(&x) => Err(bad(format!("{name}: {x} is out of range"))),
        _ => Ok(()),
    };
    let mut basis: Vec<String> = Vec::new();
    let mut gates = BTreeMap::new();
    let mut dropped = Vec::new();
    for op in &t.operations {
        if op.name.is_empty() || op.name.len() > 64 || !op.name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
        {
            return Err(bad(format!("operations: '{}' is not an operation name", op.name)));
        }
        finite("duration", op.duration, 3600.0)?;
        finite("error", op.error, 1.0)?;
        if NOT_GATES.contains(&op.name.as_str()) {
            continue;
        }
        // Only gates Qiskit's Target can build are published, under their standard names
        // (`cu1` as `cp`, ...); others (`rccx`, `mcx`, a lab's own) are left out, and the
        // transpiler decomposes circuits into what is left.
        let Some(name) = crate::ibm::target::standard_gate(&op.name, op.num_qubits as usize) else {
            dropped.push(op.name.as_str());
            continue;
        };
        if !basis.iter().any(|g| g == name) {
            basis.push(name.to_string());
        }
        if op.duration.is_some() || op.error.is_some() {
            // A gate reported twice (`cu1` and `cp`) keeps its first figures.
            gates
                .entry(name.to_string())
                .or_insert_with(|| json!({"duration": op.duration.unwrap_or(0.0), "error": op.error.unwrap_or(0.0)}));
        }
    }
    if basis.is_empty() {
        return Err(bad(format!(
            "operations: none is a one- or two-qubit gate of Qiskit's standard library (got {})",
            dropped.join(", ")
        )));
    }
    let coupling: Vec<[u32; 2]> = if t.coupling_map.is_empty() {
        (0..t.num_qubits).flat_map(|a| (0..t.num_qubits).filter(move |&b| b != a).map(move |b| [a, b])).collect()
    } else {
        t.coupling_map.clone()
    };
    let mean = |f: &dyn Fn(&wire::QubitProperties) -> Option<f64>| {
        let v: Vec<f64> = t.qubits.iter().filter_map(f).filter(|x| x.is_finite() && *x >= 0.0).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let mut out = json!({"basis_gates": basis, "coupling_map": coupling, "gates": gates, "num_qubits": t.num_qubits});
    if let (Some(t1), Some(t2)) = (mean(&|q| q.t1), mean(&|q| q.t2)) {
        let readout = mean(&|q| q.readout_error).unwrap_or(0.0).min(1.0);
        out["qubits"] =
            json!({"t1": t1, "t2": t2, "frequency": 5.0e9, "readout_error": readout, "readout_length": 1e-6});
    }
    Ok(out)
}

/// A device token as admins see it (never the token itself).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeviceTokenView {
    pub id: Uuid,
    pub device: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<qcloud_service::agents::DeviceTokenView> for DeviceTokenView {
    fn from(t: qcloud_service::agents::DeviceTokenView) -> Self {
        DeviceTokenView { id: t.id, device: t.device, created_at: t.created_at, revoked_at: t.revoked_at }
    }
}

/// The answer that makes a device token: the token, shown this once.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NewDeviceTokenResponse {
    /// For the agent's `--token`. Stored hashed: keep it, it cannot be shown again. Revoke it
    /// with `DELETE /v1/tokens/{id}`.
    pub token: String,
    #[serde(flatten)]
    pub view: DeviceTokenView,
}

/// Make a device token for an agent device (admin): it can use only the agent routes, and only
/// for this device.
#[utoipa::path(post, path = "/v1/devices/{name}/tokens", operation_id = "create_device_token", tag = "devices",
    security(("bearer" = [])), params(("name" = String, Path, description = "Device name")),
    responses((status = 201, body = NewDeviceTokenResponse), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_token(
    State(s): State<AppState>,
    _a: Admin,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<(StatusCode, Json<NewDeviceTokenResponse>)> {
    let (token, view) = s.svc.issue_device_token(&name).await?;
    Ok((StatusCode::CREATED, Json(NewDeviceTokenResponse { token, view: view.into() })))
}

/// The device tokens of a device, newest first (admin).
#[utoipa::path(get, path = "/v1/devices/{name}/tokens", operation_id = "list_device_tokens", tag = "devices",
    security(("bearer" = [])), params(("name" = String, Path, description = "Device name")),
    responses((status = 200, body = [DeviceTokenView]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn list_tokens(
    State(s): State<AppState>,
    _a: Admin,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Vec<DeviceTokenView>>> {
    Ok(Json(s.svc.list_device_tokens(&name).await?.into_iter().map(Into::into).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(name: &str, n: u32, d: Option<f64>, e: Option<f64>) -> wire::Operation {
        wire::Operation { name: name.into(), num_qubits: n, duration: d, error: e }
    }

    #[test]
    fn a_reported_target_becomes_a_config_target() {
        let t = wire::Target {
            num_qubits: 2,
            coupling_map: vec![[0, 1]],
            operations: vec![
                op("rz", 1, None, None),
                op("cz", 2, Some(3e-7), Some(0.01)),
                op("measure", 1, None, None),
            ],
            qubits: vec![
                wire::QubitProperties { t1: Some(1e-4), t2: Some(5e-5), readout_error: Some(0.02) },
                wire::QubitProperties { t1: Some(3e-4), t2: Some(1e-4), readout_error: None },
            ],
        };
        let c = target_config(&t).unwrap();
        assert_eq!(c["basis_gates"], json!(["rz", "cz"]));
        assert_eq!(c["coupling_map"], json!([[0, 1]]));
        assert_eq!(c["gates"]["cz"], json!({"duration": 3e-7, "error": 0.01}));
        assert!((c["qubits"]["t1"].as_f64().unwrap() - 2e-4).abs() < 1e-12, "{c}");
        let all = target_config(&wire::Target { coupling_map: vec![], ..t.clone() }).unwrap();
        assert_eq!(all["coupling_map"], json!([[0, 1], [1, 0]]));
    }

    #[test]
    fn only_gates_qiskit_can_build_are_published_under_their_standard_names() {
        // What MQT Core's DDSIM QDMI device reports (mqt-core 4.1.1), less gphase and the
        // operations of no fixed arity, which the agent leaves out.
        let ddsim = [
            ("id", 1),
            ("x", 1),
            ("cx", 2),
            ("ccx", 3),
            ("y", 1),
            ("cy", 2),
            ("z", 1),
            ("cz", 2),
            ("ccz", 3),
            ("h", 1),
            ("ch", 2),
            ("s", 1),
            ("cs", 2),
            ("sdg", 1),
            ("csdg", 2),
            ("t", 1),
            ("tdg", 1),
            ("sx", 1),
            ("csx", 2),
            ("sxdg", 1),
            ("r", 1),
            ("rx", 1),
            ("crx", 2),
            ("ry", 1),
            ("cry", 2),
            ("rz", 1),
            ("crz", 2),
            ("p", 1),
            ("cp", 2),
            ("u1", 1),
            ("cu1", 2),
            ("u2", 1),
            ("u", 1),
            ("u3", 1),
            ("cu3", 2),
            ("swap", 2),
            ("cswap", 3),
            ("iswap", 2),
            ("dcx", 2),
            ("ecr", 2),
            ("rxx", 2),
            ("ryy", 2),
            ("rzz", 2),
            ("rzx", 2),
            ("xx_minus_yy", 2),
            ("xx_plus_yy", 2),
            ("rccx", 3),
            ("measure", 1),
            ("reset", 1),
        ];
        let mut operations: Vec<wire::Operation> = ddsim.iter().map(|(n, q)| op(n, *q, None, None)).collect();
        operations[2] = op("cx", 2, Some(2e-7), Some(0.01));
        operations.push(op("cu1", 2, Some(9e-7), Some(0.5)));
        operations.push(op("my_gate", 1, None, None));
        operations.push(op("cx", 1, None, None));
        let t = wire::Target { num_qubits: 3, coupling_map: vec![[0, 1]], operations, qubits: vec![] };
        let c = target_config(&t).unwrap();
        let basis: Vec<&str> = c["basis_gates"].as_array().unwrap().iter().map(|g| g.as_str().unwrap()).collect();
        for gone in ["ccx", "ccz", "cswap", "rccx", "u1", "u3", "cu1", "measure", "reset", "my_gate"] {
            assert!(!basis.contains(&gone), "{gone} is published: {basis:?}");
        }
        for kept in ["id", "cx", "cp", "p", "u", "u2", "cu3", "rzz", "xx_plus_yy", "ecr", "sxdg"] {
            assert_eq!(basis.iter().filter(|g| **g == kept).count(), 1, "{kept} once: {basis:?}");
        }
        assert_eq!(basis.len(), 40, "{basis:?}");
        assert_eq!(c["gates"]["cx"], json!({"duration": 2e-7, "error": 0.01}));
        // Aliases map to the gate they are; an operation with another arity is not that gate.
        assert_eq!(crate::ibm::target::standard_gate("cu1", 2), Some("cp"));
        assert_eq!(crate::ibm::target::standard_gate("u1", 1), Some("p"));
        assert_eq!(crate::ibm::target::standard_gate("u3", 1), Some("u"));
        assert_eq!(crate::ibm::target::standard_gate("i", 1), Some("id"));
        assert_eq!(crate::ibm::target::standard_gate("cx", 1), None);
        assert_eq!(crate::ibm::target::standard_gate("rccx", 3), None);
        // Nothing Qiskit knows: refused, with the names.
        let none = wire::Target { operations: vec![op("my_gate", 1, None, None)], ..t };
        let e = format!("{:?}", target_config(&none).unwrap_err());
        assert!(e.contains("my_gate"), "{e}");
    }

    #[test]
    fn a_bad_target_is_refused() {
        let t = wire::Target {
            num_qubits: 2,
            coupling_map: vec![[0, 2]],
            operations: vec![op("x", 1, None, None)],
            qubits: vec![],
        };
        assert!(target_config(&t).is_err());
        let t = wire::Target { coupling_map: vec![], operations: vec![op("x y", 1, None, None)], ..t };
        assert!(target_config(&t).is_err());
        let t = wire::Target { operations: vec![op("x", 1, Some(f64::NAN), None)], ..t };
        assert!(target_config(&t).is_err());
    }
}
