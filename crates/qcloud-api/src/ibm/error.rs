//! IBM's error shape, `{"errors": [{"code", "message", "more_info"}], "trace", "status_code"}`,
//! and extractors whose rejections use it. Every caller mistake is a 4xx: the client retries 5xx
//! answers (POST included) five times.

use crate::error::ApiError;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use qcloud_service::ServiceError;
use serde::de::DeserializeOwned;
use serde_json::json;

#[derive(Debug)]
pub struct IbmError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

pub type IbmResult<T> = Result<T, IbmError>;

impl IbmError {
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        IbmError { status, code: code.into(), message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        IbmError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        IbmError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn not_found(what: &str, id: &str) -> Self {
        IbmError::new(StatusCode::NOT_FOUND, "not_found", format!("{what} '{id}' not found"))
    }
}

impl IntoResponse for IbmError {
    fn into_response(self) -> Response {
        let trace = uuid::Uuid::new_v4().simple().to_string();
        let body = json!({
            "errors": [{"code": self.code, "message": self.message, "more_info": ""}],
            "trace": trace,
            "status_code": self.status.as_u16(),
        });
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(crate::error::RETRY_AFTER_SECONDS),
            );
        }
        resp
    }
}

impl From<ApiError> for IbmError {
    fn from(e: ApiError) -> Self {
        IbmError { status: e.status, code: e.code, message: e.message }
    }
}

impl From<ServiceError> for IbmError {
    fn from(e: ServiceError) -> Self {
        ApiError::from(e).into()
    }
}

/// JSON body, rejected in IBM's shape.
pub struct IbmJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for IbmJson<T> {
    type Rejection = IbmError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        crate::extract::ApiJson::<T>::from_request(req, state).await.map(|j| IbmJson(j.0)).map_err(Into::into)
    }
}

/// Path parameters, rejected in IBM's shape (a malformed id names nothing: 404).
pub struct IbmPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for IbmPath<T> {
    type Rejection = IbmError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        crate::extract::ApiPath::<T>::from_request_parts(parts, state).await.map(|p| IbmPath(p.0)).map_err(Into::into)
    }
}

/// Query string, rejected in IBM's shape.
pub struct IbmQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for IbmQuery<T> {
    type Rejection = IbmError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        crate::extract::ApiQuery::<T>::from_request_parts(parts, state).await.map(|q| IbmQuery(q.0)).map_err(Into::into)
    }
}
