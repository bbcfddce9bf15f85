//! qcloud-api: the HTTP front door. Axum routers for the native API `/v1` (devices, sessions,
//! jobs), the IBM Quantum facade `/ibm` (Qiskit Runtime, IAM, Global Search/Catalog), health and
//! readiness probes, bearer-token authentication, one JSON error format, request
//! limits, and the OpenAPI description generated from the handlers (served at
//! `/v1/openapi.yaml`, kept equal to `openapi.yaml` by a test).
#![forbid(unsafe_code)]

mod de;
pub mod error;
pub mod extract;
pub mod ibm;
pub mod openapi;
pub mod pasqal;
pub mod ratelimit;
pub mod schema;
pub mod v1;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use error::ApiError;
use qcloud_service::Service;
pub use ratelimit::RateLimit;
use std::sync::Arc;
use std::time::Duration;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
use tower_http::trace::TraceLayer;

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Longest time a request may take.
    pub request_timeout: Duration,
    /// Longest wait for the next piece of a request body (a client that stops sending gets 408).
    pub body_timeout: Duration,
    /// Requests per caller.
    pub rate_limit: RateLimit,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_body_bytes: 16 << 20,
            request_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            rate_limit: RateLimit::default(),
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub svc: Service,
    /// Rate limits per caller, checked by the [`extract::Caller`] extractor.
    pub limiter: Arc<ratelimit::Limiter>,
}

/// The whole HTTP application.
pub fn router(svc: Service, cfg: &ApiConfig) -> Router {
    let v1 = Router::new()
        .route("/devices", get(v1::devices::list).post(v1::devices::create))
        .route("/devices/{name}", get(v1::devices::get).patch(v1::devices::update))
        .route("/sessions", get(v1::sessions::list).post(v1::sessions::create))
        .route("/sessions/{id}", get(v1::sessions::get))
        .route("/sessions/{id}/close", post(v1::sessions::close))
        .route("/sessions/{id}/cancel", post(v1::sessions::cancel))
        .route("/jobs", get(v1::jobs::list).post(v1::jobs::submit))
        .route("/jobs:batch", post(v1::jobs::submit_batch))
        .route("/jobs/{id}", get(v1::jobs::get))
        .route("/jobs/{id}/result", get(v1::jobs::result))
        .route("/jobs/{id}/cancel", post(v1::jobs::cancel))
        .route("/tokens", get(v1::tokens::list).post(v1::tokens::create))
        .route("/tokens/{id}", delete(v1::tokens::revoke))
        .route("/openapi.yaml", get(openapi::serve_yaml))
        .route("/openapi.json", get(openapi::serve_json));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .nest("/v1", v1)
        .nest("/ibm", ibm::router(svc.clone()))
        .nest("/pasqal", pasqal::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(AppState { svc, limiter: Arc::new(ratelimit::Limiter::new(cfg.rate_limit)) })
        .layer(DefaultBodyLimit::max(cfg.max_body_bytes))
        .layer(RequestBodyTimeoutLayer::new(cfg.body_timeout))
        .layer(TimeoutLayer::with_status_code(StatusCode::GATEWAY_TIMEOUT, cfg.request_timeout))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error").into_response()
        }))
        .layer(TraceLayer::new_for_http())
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// Longest `/readyz` waits for the database. Probes want an answer within a second, and the
/// pool's acquire timeout (seconds) would make a lost database a hang instead of "not ready".
pub const READY_TIMEOUT: Duration = Duration::from_millis(800);

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let not_ready = |m: &str| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", m).into_response();
    match tokio::time::timeout(READY_TIMEOUT, s.svc.ready()).await {
        Ok(Ok(true)) => (StatusCode::OK, Json(serde_json::json!({"status": "ready"}))).into_response(),
        Ok(Ok(false)) => not_ready("database migrations are not applied"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check failed");
            not_ready("the database does not answer")
        }
        Err(_) => {
            tracing::warn!(timeout_ms = READY_TIMEOUT.as_millis() as u64, "readiness check timed out");
            not_ready("the database did not answer in time")
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not take that method")
}
