//! `/v1/tokens` (admin): list, create and revoke API tokens. A token is shown once, in the
//! answer that creates it; no other answer holds a token or its hash.

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Admin, ApiJson, ApiPath};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use qcloud_service::auth::{self as svc, NewToken};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::ToSchema;
use uuid::Uuid;

/// A token as admins see it (never the token itself).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenView {
    pub id: Uuid,
    pub project: String,
    pub user: String,
    pub admin: bool,
    pub created_at: DateTime<Utc>,
    /// When the token stops working; null: until revoked.
    pub expires_at: Option<DateTime<Utc>>,
    /// When the token was revoked; null: not revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<svc::TokenView> for TokenView {
    fn from(t: svc::TokenView) -> Self {
        TokenView {
            id: t.id,
            project: t.project,
            user: t.user,
            admin: t.admin,
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// `POST /v1/tokens`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenRequest {
    /// The project (created if it does not exist).
    pub project: String,
    pub user: String,
    /// An admin token (default: false).
    #[serde(default)]
    pub admin: bool,
    /// Seconds until the token stops working (at least 1, at most 100 years); absent: until
    /// revoked.
    #[schema(minimum = 1, maximum = 3153600000.0)]
    pub expires_in_seconds: Option<u64>,
}

/// The answer to `POST /v1/tokens`: the token, shown this once, and its view.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NewTokenResponse {
    /// The bearer token. It is stored hashed: keep it, it cannot be shown again.
    pub token: String,
    #[serde(flatten)]
    pub view: TokenView,
}

/// List every token, newest first (admin).
#[utoipa::path(get, path = "/v1/tokens", operation_id = "list_tokens", tag = "tokens", security(("bearer" = [])),
    responses((status = 200, body = [TokenView]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(State(s): State<AppState>, _a: Admin) -> ApiResult<Json<Vec<TokenView>>> {
    Ok(Json(s.svc.list_tokens().await?.into_iter().map(TokenView::from).collect()))
}

/// Create a token (admin); the answer holds the token, once.
#[utoipa::path(post, path = "/v1/tokens", operation_id = "create_token", tag = "tokens", security(("bearer" = [])), request_body = NewTokenRequest,
    responses((status = 201, body = NewTokenResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    _a: Admin,
    ApiJson(req): ApiJson<NewTokenRequest>,
) -> ApiResult<(StatusCode, Json<NewTokenResponse>)> {
    let cmd = NewToken {
        project: req.project,
        user: req.user,
        admin: req.admin,
        expires_in: req.expires_in_seconds.map(Duration::from_secs),
    };
    let issued = s.svc.issue_token(cmd).await?;
    Ok((StatusCode::CREATED, Json(NewTokenResponse { token: issued.token, view: issued.view.into() })))
}

/// Revoke a token (admin): every replica refuses it from now on.
#[utoipa::path(delete, path = "/v1/tokens/{id}", operation_id = "revoke_token", tag = "tokens", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Token id")),
    responses((status = 204, description = "Revoked (or already revoked)"), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke(State(s): State<AppState>, _a: Admin, ApiPath(id): ApiPath<Uuid>) -> ApiResult<StatusCode> {
    s.svc.revoke_token(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
