//! The API's error: every failure is a JSON body `{"error": {"code", "message", "details"}}` with a
//! 4xx status for anything the caller can fix, 5xx only for real faults (logged once, here).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use qcloud_service::ServiceError;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable, stable: `not_found`, `invalid_json`, `session_closed`, ...
    pub code: String,
    /// What is wrong, for a person.
    pub message: String,
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub details: Option<serde_json::Value>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError { status, code: code.into(), message: message.into(), details: None }
    }
}

/// Seconds a client should wait before retrying a 503 (a lost database, a server not ready yet):
/// short, since a database restart or a failover takes seconds.
pub const RETRY_AFTER_SECONDS: u32 = 1;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let retry_after = self.details.as_ref().and_then(|d| d.get("retry_after_seconds")).and_then(|v| v.as_u64());
        let body = ErrorBody { error: ErrorDetail { code: self.code, message: self.message, details: self.details } };
        let mut resp = (status, Json(body)).into_response();
        // Every 503 is a passing state (the database is away or busy): say when to come back.
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        // A rate limit says how long to wait.
        if let (StatusCode::TOO_MANY_REQUESTS, Some(s)) = (status, retry_after) {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        use ServiceError::*;
        match e {
            AtIndex { index, source } => {
                let mut e = ApiError::from(*source);
                e.message = format!("jobs[{index}]: {}", e.message);
                e.details = Some(serde_json::json!({ "index": index }));
                e
            }
            Unauthenticated(m) => ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", m),
            Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", m),
            NotFound { what, id } => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("{what} '{id}' not found"))
            }
            Invalid { code: "payload_too_large", message } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
            }
            Invalid { code, message } => ApiError::new(StatusCode::BAD_REQUEST, code, message),
            Conflict { code, message } => ApiError::new(StatusCode::CONFLICT, code, message),
            Unprocessable { code, message } => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message),
            QuotaExceeded(m) => ApiError::new(StatusCode::FORBIDDEN, "quota_exceeded", m),
            // Scheduler-side errors never answer a request; if one does, it is a fault.
            e @ (NotLeader | LeaseLost) => {
                tracing::error!(error = %e, "scheduler error in a request");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
            }
            e @ Db(_) => {
                let unavailable = e.is_unavailable();
                tracing::error!(error = %e, "database error");
                if unavailable {
                    ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        "the database is busy or unavailable; retry",
                    )
                } else {
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
                }
            }
            Internal(m) => {
                tracing::error!(error = %m, "internal error");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_database_is_503_with_retry_after_and_faults_are_500_without() {
        let r = ApiError::from(ServiceError::Db(sqlx::Error::PoolTimedOut)).into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()), Some("1"));
        let r = ApiError::from(ServiceError::Internal("boom".into())).into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(r.headers().get(header::RETRY_AFTER).is_none());
        let r = ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", "x").into_response();
        assert!(r.headers().get(header::RETRY_AFTER).is_none());
    }
}
