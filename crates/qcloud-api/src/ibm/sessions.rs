//! Sessions and batches: `POST /sessions` (mode dedicated | batch), `GET /sessions/{id}`,
//! `PATCH /sessions/{id}` `{"accepting_jobs": false}` (close: drain, 204) and
//! `DELETE /sessions/{id}/close` (cancel the queued jobs and close, 204).

use super::auth::IbmCaller;
use super::error::{IbmError, IbmJson, IbmPath, IbmResult};
use super::translate;
use super::IbmState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use qcloud_service::sessions::{CancelSession, CloseSession, OpenSession, SessionView};
use qcloud_service::{IdlePolicy, SessionMode, SessionState};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

#[derive(Debug, Deserialize)]
pub struct CreateSession {
    pub backend: Option<String>,
    #[serde(default)]
    pub mode: Option<String>,
    /// The instance CRN (the `Service-CRN` header already names it).
    #[serde(default)]
    pub instance: Option<String>,
    /// Seconds.
    #[serde(default)]
    pub max_ttl: Option<f64>,
    /// Seconds.
    #[serde(default)]
    pub interactive_ttl: Option<f64>,
}

fn iso(t: Option<DateTime<Utc>>) -> Value {
    t.map(|t| json!(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))).unwrap_or(Value::Null)
}

fn secs(d: chrono::Duration) -> Value {
    let ms = d.num_milliseconds();
    if ms % 1000 == 0 {
        json!(ms / 1000)
    } else {
        json!(ms as f64 / 1000.0)
    }
}

/// IBM's session document: a pure function of the session.
pub fn view(s: &SessionView, now: DateTime<Utc>) -> Value {
    let started = s.last_job_started.is_some();
    let state = translate::session_state(s.state, started);
    // Time left of max_ttl, which counts from the first activation and never pauses.
    let active_ttl = match s.started_at {
        Some(at) if s.state != SessionState::Closed => {
            secs((s.ttls.max_ttl - (now - at)).max(chrono::Duration::zero()))
        }
        Some(_) => json!(0),
        None => secs(s.ttls.max_ttl),
    };
    let mut timestamps = vec![json!({"status": "open", "timestamp": iso(Some(s.created_at))})];
    if let Some(t) = s.activated_at {
        timestamps.push(json!({"status": "active", "timestamp": iso(Some(t))}));
    }
    if let Some(t) = s.closed_at {
        timestamps.push(json!({"status": "closed", "timestamp": iso(Some(t))}));
    }
    json!({
        "id": s.id,
        "backend_name": s.device,
        "mode": s.mode.as_str(),
        "state": state,
        "accepting_jobs": s.accepting_jobs && s.state != SessionState::Closed,
        "interactive_ttl": secs(s.ttls.interactive_ttl),
        "max_ttl": secs(s.ttls.max_ttl),
        "active_ttl": active_ttl,
        "created_at": iso(Some(s.created_at)),
        "started_at": iso(s.started_at),
        "activated_at": iso(s.activated_at),
        "last_job_started": iso(s.last_job_started),
        "last_job_completed": iso(s.last_job_completed),
        "closed_at": iso(s.closed_at),
        "closed_reason": translate::session_closed_reason(s.closed_reason),
        "elapsed_time": s.usage_seconds,
        "usage_time": s.usage_seconds,
        "user_id": s.user,
        "timestamps": timestamps,
    })
}

fn session_id(id: &str) -> IbmResult<Uuid> {
    id.parse().map_err(|_| IbmError::not_found("session", id))
}

/// `POST /sessions`.
pub async fn create(
    c: IbmCaller,
    State(s): State<IbmState>,
    IbmJson(req): IbmJson<CreateSession>,
) -> IbmResult<Json<Value>> {
    let backend = req.backend.ok_or_else(|| IbmError::bad_request("'backend' is required"))?;
    let mode = match req.mode.as_deref() {
        None | Some("dedicated") => SessionMode::Dedicated,
        Some("batch") => SessionMode::Batch,
        Some(other) => return Err(IbmError::bad_request(format!("mode '{other}': use 'dedicated' or 'batch'"))),
    };
    if let Some(crn) = req.instance.as_deref() {
        if super::crn::project_id(crn) != Some(c.project_id) {
            return Err(IbmError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("the instance '{crn}' is not yours"),
            ));
        }
    }
    super::backends::backend(&s, &c, &backend).await?;
    let open = OpenSession {
        max_ttl: req.max_ttl,
        interactive_ttl: req.interactive_ttl,
        idle_policy: IdlePolicy::Deactivate,
        ..OpenSession::new(backend, mode)
    };
    let v = s.svc.open_session(&c.who, open).await?;
    Ok(Json(view(&v, Utc::now())))
}

/// `GET /sessions/{id}`.
pub async fn get(c: IbmCaller, State(s): State<IbmState>, IbmPath(id): IbmPath<String>) -> IbmResult<Json<Value>> {
    let v = s.svc.get_session(&c.who, session_id(&id)?).await?;
    Ok(Json(view(&v, Utc::now())))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchSession {
    pub accepting_jobs: bool,
}

/// `PATCH /sessions/{id}` `{"accepting_jobs": false}`: no new jobs; the session closes when its
/// jobs are done. A closed session is refused (409).
pub async fn patch(
    c: IbmCaller,
    State(s): State<IbmState>,
    IbmPath(id): IbmPath<String>,
    IbmJson(req): IbmJson<PatchSession>,
) -> IbmResult<StatusCode> {
    let id = session_id(&id)?;
    if req.accepting_jobs {
        return Err(IbmError::bad_request("a session cannot be reopened: only accepting_jobs=false is accepted"));
    }
    let current = s.svc.get_session(&c.who, id).await?;
    if current.state == SessionState::Closed {
        return Err(IbmError::new(StatusCode::CONFLICT, "session_closed", format!("session {id} is already closed")));
    }
    s.svc.close_session(&c.who, CloseSession { id }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /sessions/{id}/close`: cancel the queued jobs, close now (a running job finishes).
pub async fn cancel(c: IbmCaller, State(s): State<IbmState>, IbmPath(id): IbmPath<String>) -> IbmResult<StatusCode> {
    s.svc.cancel_session(&c.who, CancelSession { id: session_id(&id)? }).await?;
    Ok(StatusCode::NO_CONTENT)
}
