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
        Ok(d) if target::is_backend(&d) => Ok(d),
        Ok(_) | Err(qcloud_service::ServiceError::NotFound { .. }) => Err(IbmError::not_found("backend", name)),
        Err(e) => Err(e.into()),
    }
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
