//! `/v1/sessions`.

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Caller};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use qcloud_service::sessions::{NewSessionRequest, Page, SessionQuery, SessionView};
use uuid::Uuid;

/// Open a session on a device.
#[utoipa::path(post, path = "/v1/sessions", operation_id = "create_session", tag = "sessions", security(("bearer" = [])), request_body = NewSessionRequest,
    responses((status = 201, body = SessionView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiJson(req): ApiJson<NewSessionRequest>,
) -> ApiResult<(StatusCode, Json<SessionView>)> {
    Ok((StatusCode::CREATED, Json(s.svc.create_session(&who, req).await?)))
}

/// One session.
#[utoipa::path(get, path = "/v1/sessions/{id}", operation_id = "get_session", tag = "sessions", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Session id")),
    responses((status = 200, body = SessionView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<SessionView>> {
    Ok(Json(s.svc.get_session(&who, id).await?))
}

/// The project's sessions, newest first.
#[utoipa::path(get, path = "/v1/sessions", operation_id = "list_sessions", tag = "sessions", security(("bearer" = [])), params(SessionQuery),
    responses((status = 200, body = Page<SessionView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiQuery(q): ApiQuery<SessionQuery>,
) -> ApiResult<Json<Page<SessionView>>> {
    Ok(Json(s.svc.list_sessions(&who, q).await?))
}

/// Close: accept no new jobs; queued and running jobs finish, then the session closes.
#[utoipa::path(post, path = "/v1/sessions/{id}/close", operation_id = "close_session", tag = "sessions", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Session id")),
    responses((status = 200, body = SessionView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn close(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<SessionView>> {
    Ok(Json(s.svc.close_session(&who, id).await?))
}

/// Cancel: queued jobs are canceled, the running job finishes, the session closes now.
#[utoipa::path(post, path = "/v1/sessions/{id}/cancel", operation_id = "cancel_session", tag = "sessions", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Session id")),
    responses((status = 200, body = SessionView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn cancel(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<SessionView>> {
    Ok(Json(s.svc.cancel_session(&who, id).await?))
}
