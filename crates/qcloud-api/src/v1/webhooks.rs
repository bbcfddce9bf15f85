//! `/v1/webhooks`: a project's webhook subscriptions and their deliveries. The `webhook` of a
//! job or a session (`POST /v1/jobs`, `POST /v1/sessions`) is a subscription scoped to it and is
//! listed here too.

use super::Page;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Caller};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use qcloud_service::list::Cursor;
use qcloud_service::webhooks::{self as svc, CreateWebhook, WebhookSpec};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// An event type.
#[derive(ToSchema)]
#[schema(as = EventType)]
#[allow(dead_code)]
pub enum EventTypeSchema {
    #[schema(rename = "job.queued")]
    JobQueued,
    #[schema(rename = "job.running")]
    JobRunning,
    #[schema(rename = "job.completed")]
    JobCompleted,
    #[schema(rename = "job.failed")]
    JobFailed,
    #[schema(rename = "job.canceled")]
    JobCanceled,
    #[schema(rename = "session.active")]
    SessionActive,
    #[schema(rename = "session.inactive")]
    SessionInactive,
    #[schema(rename = "session.closed")]
    SessionClosed,
}

/// `POST /v1/webhooks`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhookRequest {
    /// Where to POST: http(s); loopback, private and link-local hosts are refused unless the
    /// operator allows them (`--webhook-allow`).
    #[schema(max_length = 2048, pattern = r"^[hH][tT][tT][pP][sS]?://[^\u0000]*$")]
    pub url: String,
    /// The event types to send (default: every type).
    #[serde(default)]
    #[schema(value_type = Vec<EventTypeSchema>, max_items = 8)]
    pub event_types: Vec<String>,
    /// The signing secret: `whsec_` + base64 (Standard Webhooks), or any text of 16 to 256 bytes.
    /// Absent: one is made and shown once in the answer.
    #[schema(min_length = 16, max_length = 256, pattern = r"^[^\u0000]*$")]
    pub secret: Option<String>,
}

/// The `webhook` of a job or a session: a subscription to its events (a session's includes its
/// jobs').
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpecRequest {
    #[schema(max_length = 2048, pattern = r"^[hH][tT][tT][pP][sS]?://[^\u0000]*$")]
    pub url: String,
    /// The signing secret (`whsec_` + base64, or 16 to 256 bytes of text).
    #[schema(min_length = 16, max_length = 256, pattern = r"^[^\u0000]*$")]
    pub secret: String,
    /// Default: every type.
    #[serde(default)]
    #[schema(value_type = Vec<EventTypeSchema>, max_items = 8)]
    pub event_types: Vec<String>,
}

impl From<WebhookSpecRequest> for WebhookSpec {
    fn from(w: WebhookSpecRequest) -> Self {
        WebhookSpec { url: w.url, secret: w.secret, event_types: w.event_types }
    }
}

/// A subscription (never its secret).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookView {
    pub id: Uuid,
    pub url: String,
    /// Empty: every type.
    #[schema(value_type = Vec<EventTypeSchema>)]
    pub event_types: Vec<String>,
    /// Set when the subscription is a job's `webhook`.
    pub job_id: Option<Uuid>,
    /// Set when the subscription is a session's (or a Pasqal batch's) `webhook`.
    pub session_id: Option<Uuid>,
    /// `event` (the event JSON) or `pasqal_job` (Pasqal's job object with its result).
    pub format: String,
    pub created_at: DateTime<Utc>,
}

impl From<svc::WebhookView> for WebhookView {
    fn from(w: svc::WebhookView) -> Self {
        WebhookView {
            id: w.id,
            url: w.url,
            event_types: w.event_types,
            job_id: w.job_id,
            session_id: w.session_id,
            format: w.format,
            created_at: w.created_at,
        }
    }
}

/// The answer to `POST /v1/webhooks`: the subscription and its secret, shown this once.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NewWebhookResponse {
    pub secret: String,
    #[serde(flatten)]
    pub view: WebhookView,
}

/// One delivery of one event to one subscription.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: i64,
    pub webhook_id: Uuid,
    /// The event id (the `webhook-id` header is `evt_<event id>`).
    pub event_id: i64,
    /// `pending` (to be tried at `next_attempt_at`), `delivered` or `failed` (gave up).
    #[schema(pattern = "^(pending|delivered|failed)$")]
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    /// HTTP status of the last attempt (absent: no answer).
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<svc::DeliveryView> for DeliveryView {
    fn from(d: svc::DeliveryView) -> Self {
        DeliveryView {
            id: d.id,
            webhook_id: d.webhook_id,
            event_id: d.event_seq,
            status: d.status,
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at,
            last_status: d.last_status,
            last_error: d.last_error,
            created_at: d.created_at,
            finished_at: d.finished_at,
        }
    }
}

/// `GET /v1/webhooks` query.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WebhookQuery {
    /// Opaque cursor from a previous page's `next_cursor`.
    #[param(pattern = "^[0-9]{1,16}_[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// `GET /v1/webhooks/{id}/deliveries` query.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// Only deliveries of this status.
    #[param(pattern = "^(pending|delivered|failed)$")]
    pub status: Option<String>,
    /// Opaque cursor from a previous page's `next_cursor`.
    #[param(pattern = "^[0-9]{1,18}$")]
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// Subscribe to the project's events. The answer holds the signing secret, once.
#[utoipa::path(post, path = "/v1/webhooks", operation_id = "create_webhook", tag = "webhooks", security(("bearer" = [])), request_body = NewWebhookRequest,
    responses((status = 201, body = NewWebhookResponse),
        (status = 400, body = ErrorBody, description = "A bad URL, a forbidden host (`invalid_webhook`), an unknown event type or a bad secret"),
        (status = 409, body = ErrorBody, description = "The project has 100 webhooks (`too_many_webhooks`)")))]
pub async fn create(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiJson(req): ApiJson<NewWebhookRequest>,
) -> ApiResult<(StatusCode, Json<NewWebhookResponse>)> {
    let (view, secret) = s
        .svc
        .create_webhook(&who, CreateWebhook { url: req.url, event_types: req.event_types, secret: req.secret })
        .await?;
    Ok((StatusCode::CREATED, Json(NewWebhookResponse { secret, view: view.into() })))
}

/// The project's subscriptions, newest first.
#[utoipa::path(get, path = "/v1/webhooks", operation_id = "list_webhooks", tag = "webhooks", security(("bearer" = [])), params(WebhookQuery),
    responses((status = 200, body = Page<WebhookView>), (status = 400, body = ErrorBody, description = "A query parameter is malformed")))]
pub async fn list(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiQuery(q): ApiQuery<WebhookQuery>,
) -> ApiResult<Json<Page<WebhookView>>> {
    let limit = qcloud_service::validate::page_limit(q.limit)?;
    let cursor = q.cursor.as_deref().map(str::parse::<Cursor>).transpose()?;
    let items = s.svc.list_webhooks(&who, cursor.map(|c| (c.created_at, c.id)), limit + 1).await?;
    let mut items: Vec<WebhookView> = items.into_iter().map(WebhookView::from).collect();
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|w| Cursor { created_at: w.created_at, id: w.id }.to_string())
    } else {
        None
    };
    Ok(Json(Page { items, next_cursor }))
}

/// One subscription.
#[utoipa::path(get, path = "/v1/webhooks/{id}", operation_id = "get_webhook", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Webhook id")),
    responses((status = 200, body = WebhookView), (status = 404, body = ErrorBody, description = "No such webhook")))]
pub async fn get(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<WebhookView>> {
    Ok(Json(s.svc.get_webhook(&who, id).await?.into()))
}

/// Delete a subscription: nothing more is sent; its pending deliveries end `failed`.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", operation_id = "delete_webhook", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Webhook id")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody, description = "No such webhook")))]
pub async fn delete(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    s.svc.delete_webhook(&who, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A subscription's deliveries, newest first: what was sent, what is pending, what failed.
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", operation_id = "list_webhook_deliveries", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Webhook id"), DeliveryQuery),
    responses((status = 200, body = Page<DeliveryView>), (status = 400, body = ErrorBody, description = "A query parameter is malformed"),
        (status = 404, body = ErrorBody, description = "No such webhook")))]
pub async fn deliveries(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<DeliveryQuery>,
) -> ApiResult<Json<Page<DeliveryView>>> {
    let limit = qcloud_service::validate::page_limit(q.limit)?;
    let before = match q.cursor.as_deref() {
        Some(c) => Some(c.parse::<i64>().ok().filter(|v| *v >= 0 && c.len() <= 18).ok_or_else(|| {
            qcloud_service::ServiceError::invalid("invalid_cursor", "cursor is not one this server issued")
        })?),
        None => None,
    };
    let rows = s.svc.list_deliveries(&who, id, q.status.as_deref(), before, limit + 1).await?;
    let mut items: Vec<DeliveryView> = rows.into_iter().map(DeliveryView::from).collect();
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|d| d.id.to_string())
    } else {
        None
    };
    Ok(Json(Page { items, next_cursor }))
}
