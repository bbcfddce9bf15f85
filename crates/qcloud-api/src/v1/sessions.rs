//! `/v1/sessions`.

use super::{seconds, window, Page};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Caller};
use crate::schema::{
    self, ClosedReasonSchema, DeviceNameSchema, IdlePolicySchema, PrioritySchema, SessionModeSchema, SessionStateSchema,
};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use qcloud_service::sessions::{self as svc, CancelSession, CloseSession, ListSessions, OpenSession};
use qcloud_service::validate::{enum_field, opt_enum_field};
use qcloud_service::{ClosedReason, IdlePolicy, Priority, SessionMode, SessionState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;
use uuid::Uuid;

/// `POST /v1/sessions`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSessionRequest {
    #[schema(value_type = DeviceNameSchema)]
    pub device: String,
    #[schema(value_type = SessionModeSchema)]
    pub mode: String,
    /// Seconds from the first activation until the session closes, 0.001 to the server's limit
    /// (default limit one day; default value: the server's, IBM 8 h).
    #[schema(minimum = 0.001, maximum = 86400)]
    pub max_ttl: Option<f64>,
    /// Seconds an active session with no job keeps the device, 0.001 to the server's limit
    /// (default limit one day; default value: the server's, IBM 60 s).
    #[schema(minimum = 0.001, maximum = 86400)]
    pub interactive_ttl: Option<f64>,
    /// Default: deactivate.
    #[schema(value_type = Option<IdlePolicySchema>)]
    pub idle_policy: Option<String>,
    /// Default: medium.
    #[schema(value_type = Option<PrioritySchema>)]
    pub priority: Option<String>,
    #[serde(default)]
    #[schema(schema_with = schema::tags)]
    pub tags: Vec<String>,
    /// POST this session's events and its jobs' (signed) to a URL: a subscription scoped to the
    /// session, listed under `/v1/webhooks`.
    pub webhook: Option<super::webhooks::WebhookSpecRequest>,
}

impl NewSessionRequest {
    fn into_command(self) -> qcloud_service::Result<OpenSession> {
        Ok(OpenSession {
            mode: enum_field("mode", &self.mode)?,
            idle_policy: enum_field("idle_policy", self.idle_policy.as_deref().unwrap_or("deactivate"))?,
            priority: enum_field("priority", self.priority.as_deref().unwrap_or("medium"))?,
            device: self.device,
            max_ttl: self.max_ttl,
            interactive_ttl: self.interactive_ttl,
            tags: self.tags,
        })
    }
}

/// A session as clients see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionView {
    pub id: Uuid,
    pub device: String,
    #[schema(value_type = SessionModeSchema)]
    pub mode: SessionMode,
    #[schema(value_type = SessionStateSchema)]
    pub state: SessionState,
    /// Why the session closed; null while it is open.
    #[schema(value_type = Option<ClosedReasonSchema>)]
    pub closed_reason: Option<ClosedReason>,
    pub accepting_jobs: bool,
    /// Seconds.
    pub max_ttl: f64,
    /// Seconds.
    pub interactive_ttl: f64,
    #[schema(value_type = IdlePolicySchema)]
    pub idle_policy: IdlePolicy,
    #[schema(value_type = PrioritySchema)]
    pub priority: Priority,
    pub tags: Vec<String>,
    pub user: String,
    pub created_at: DateTime<Utc>,
    /// First activation.
    pub started_at: Option<DateTime<Utc>>,
    pub activated_at: Option<DateTime<Utc>>,
    pub last_job_started: Option<DateTime<Utc>>,
    pub last_job_completed: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub usage_seconds: f64,
    /// Number of jobs per status (a status with none is absent).
    #[schema(schema_with = schema::job_counts)]
    pub jobs: BTreeMap<String, i64>,
}

impl From<svc::SessionView> for SessionView {
    fn from(s: svc::SessionView) -> Self {
        SessionView {
            id: s.id,
            device: s.device,
            mode: s.mode,
            state: s.state,
            closed_reason: s.closed_reason,
            accepting_jobs: s.accepting_jobs,
            max_ttl: seconds(s.ttls.max_ttl),
            interactive_ttl: seconds(s.ttls.interactive_ttl),
            idle_policy: s.idle_policy,
            priority: s.priority,
            tags: s.tags,
            user: s.user,
            created_at: s.created_at,
            started_at: s.started_at,
            activated_at: s.activated_at,
            last_job_started: s.last_job_started,
            last_job_completed: s.last_job_completed,
            closed_at: s.closed_at,
            usage_seconds: s.usage_seconds,
            jobs: s.jobs.into_iter().map(|(k, v)| (k.as_str().to_string(), v)).collect(),
        }
    }
}

/// `GET /v1/sessions` query.
#[derive(Debug, Clone, Default, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SessionQuery {
    /// Only sessions in this state.
    #[param(value_type = Option<SessionStateSchema>)]
    pub state: Option<String>,
    /// Only sessions on this device.
    #[param(pattern = r"^[^\u0000]*$")]
    pub device: Option<String>,
    /// Only sessions of this mode.
    #[param(value_type = Option<SessionModeSchema>)]
    pub mode: Option<String>,
    /// Only sessions with this tag.
    #[param(pattern = r"^[^\u0000]*$")]
    pub tag: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    /// Opaque cursor from a previous page's `next_cursor`.
    #[param(pattern = "^[0-9]{1,16}_[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

impl SessionQuery {
    fn into_command(self) -> qcloud_service::Result<ListSessions> {
        Ok(ListSessions {
            state: opt_enum_field("state", self.state.as_deref())?,
            mode: opt_enum_field("mode", self.mode.as_deref())?,
            device: self.device,
            window: window(self.tag, self.created_after, self.created_before, self.cursor.as_deref(), self.limit)?,
        })
    }
}

/// Open a session on a device.
#[utoipa::path(post, path = "/v1/sessions", operation_id = "create_session", tag = "sessions", security(("bearer" = [])), request_body = NewSessionRequest,
    responses((status = 201, body = SessionView), (status = 404, body = ErrorBody, description = "No such device")))]
pub async fn create(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiJson(req): ApiJson<NewSessionRequest>,
) -> ApiResult<(StatusCode, Json<SessionView>)> {
    let webhook: Option<qcloud_service::webhooks::WebhookSpec> = req.webhook.clone().map(Into::into);
    let view = s.svc.open_session_with_webhook(&who, req.into_command()?, webhook.as_ref()).await?;
    Ok((StatusCode::CREATED, Json(view.into())))
}

/// One session.
#[utoipa::path(get, path = "/v1/sessions/{id}", operation_id = "get_session", tag = "sessions", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Session id")),
    responses((status = 200, body = SessionView), (status = 404, body = ErrorBody, description = "No such session")))]
pub async fn get(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<SessionView>> {
    Ok(Json(s.svc.get_session(&who, id).await?.into()))
}

/// The project's sessions, newest first.
#[utoipa::path(get, path = "/v1/sessions", operation_id = "list_sessions", tag = "sessions", security(("bearer" = [])), params(SessionQuery),
    responses((status = 200, body = Page<SessionView>),
        (status = 400, body = ErrorBody, description = "A query parameter is malformed or out of range")))]
pub async fn list(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiQuery(q): ApiQuery<SessionQuery>,
) -> ApiResult<Json<Page<SessionView>>> {
    Ok(Json(Page::from_service(s.svc.list_sessions(&who, q.into_command()?).await?, SessionView::from)))
}

/// Close: accept no new jobs; queued and running jobs finish, then the session closes.
#[utoipa::path(post, path = "/v1/sessions/{id}/close", operation_id = "close_session", tag = "sessions", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Session id")),
    responses((status = 200, body = SessionView), (status = 404, body = ErrorBody, description = "No such session")))]
pub async fn close(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<SessionView>> {
    Ok(Json(s.svc.close_session(&who, CloseSession { id }).await?.into()))
}

/// Cancel: queued jobs are canceled, the running job finishes, the session closes now.
#[utoipa::path(post, path = "/v1/sessions/{id}/cancel", operation_id = "cancel_session", tag = "sessions", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Session id")),
    responses((status = 200, body = SessionView), (status = 404, body = ErrorBody, description = "No such session")))]
pub async fn cancel(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<SessionView>> {
    Ok(Json(s.svc.cancel_session(&who, CancelSession { id }).await?.into()))
}
