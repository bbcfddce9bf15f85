//! Backends (gate devices) and the instance's usage.

use super::auth::IbmCaller;
use super::error::{IbmError, IbmPath, IbmResult};
use super::target;
use super::IbmState;
use axum::extract::State;
use axum::Json;
use qcloud_service::devices::DeviceView;
use serde_json::{json, Value};

/// The gate device `name`, or IBM's 404 (analog devices are not IBM backends).
pub(super) async fn backend(s: &IbmState, c: &IbmCaller, name: &str) -> IbmResult<DeviceView> {
    match s.svc.get_device(&c.who, name).await {
        Ok(d) if target::is_backend(&d) => {
            remember(s, &d);
            Ok(d)
        }
        Ok(_) | Err(qcloud_service::ServiceError::NotFound { .. }) => Err(IbmError::not_found("backend", name)),
        Err(e) => Err(e.into()),
    }
}

/// How long a backend read by one route spares a submission the same read.
const RECENT: std::time::Duration = std::time::Duration::from_secs(2);

fn remember(s: &IbmState, d: &DeviceView) {
    if let Ok(mut m) = s.recent_backends.lock() {
        if m.len() >= 10_000 {
            m.clear();
        }
        m.insert(d.name.clone(), (std::time::Instant::now(), d.num_qubits));
    }
}

/// A submission's backend: its name and number of qubits. The client reads the backend's status
/// just before every submission, so the device read then (at most [`RECENT`] ago) answers; else
/// it is read. Only a pre-check: the service reads the device again as it stores the job, so a
/// device deleted since is still a 404, and a paused one takes the job as it would.
pub(super) async fn submit_target(s: &IbmState, c: &IbmCaller, name: &str) -> IbmResult<(String, i32)> {
    let seen = s.recent_backends.lock().ok().and_then(|m| m.get(name).copied());
    if let Some((at, qubits)) = seen {
        if at.elapsed() < RECENT {
            return Ok((name.to_owned(), qubits));
        }
    }
    let d = backend(s, c, name).await?;
    Ok((d.name, d.num_qubits))
}

/// `GET /backends`.
pub async fn list(c: IbmCaller, State(s): State<IbmState>) -> IbmResult<Json<Value>> {
    let devices = s.svc.list_devices(&c.who).await?;
    let list: Vec<Value> = devices.iter().filter(|d| target::is_backend(d)).map(target::list_entry).collect();
    Ok(Json(json!({"devices": list})))
}

pub async fn configuration(
    c: IbmCaller,
    State(s): State<IbmState>,
    IbmPath(name): IbmPath<String>,
) -> IbmResult<Json<Value>> {
    Ok(Json(target::configuration(&backend(&s, &c, &name).await?)))
}

pub async fn properties(
    c: IbmCaller,
    State(s): State<IbmState>,
    IbmPath(name): IbmPath<String>,
) -> IbmResult<Json<Value>> {
    Ok(Json(target::properties(&backend(&s, &c, &name).await?)))
}

/// Pulse defaults: qcloud devices have none (`open_pulse: false`).
pub async fn defaults(
    c: IbmCaller,
    State(s): State<IbmState>,
    IbmPath(name): IbmPath<String>,
) -> IbmResult<Json<Value>> {
    backend(&s, &c, &name).await?;
    Ok(Json(json!({})))
}

pub async fn status(c: IbmCaller, State(s): State<IbmState>, IbmPath(name): IbmPath<String>) -> IbmResult<Json<Value>> {
    Ok(Json(target::status(&backend(&s, &c, &name).await?)))
}

/// `GET /instances/usage`: the project's device seconds against its quota.
pub async fn usage(c: IbmCaller, State(s): State<IbmState>) -> IbmResult<Json<Value>> {
    let p = s.svc.my_project(&c.who).await?;
    let reached = p.quota_seconds.is_some_and(|q| p.used_seconds >= q);
    let mut u = json!({
        "instance_id": c.crn(),
        "plan_id": super::identity::PLAN_ID,
        "usage_consumed_seconds": p.used_seconds,
        "usage_limit_reached": reached,
        "usage_allocation_seconds": p.quota_seconds,
        "usage_limit_seconds": p.quota_seconds,
    });
    if let Some(q) = p.quota_seconds {
        u["usage_remaining_seconds"] = json!((q - p.used_seconds).max(0.0));
    }
    Ok(Json(u))
}
