//! qcloud-api: the HTTP front door. Axum routers for the native API `/v1` (devices, sessions,
//! jobs), the IBM Quantum facade `/ibm` (Qiskit Runtime, IAM, Global Search/Catalog), health and
//! readiness probes, bearer-token authentication, one JSON error format, request
//! limits, and the OpenAPI description generated from the handlers (served at
//! `/v1/openapi.yaml`, kept equal to `openapi.yaml` by a test).
#![forbid(unsafe_code)]

pub mod agent;
mod de;
pub mod error;
pub mod extract;
pub mod ibm;
pub mod metrics;
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
use tower_http::decompression::RequestDecompressionLayer;
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
    /// How long the IBM facade may hold a status poll of an unfinished job for the job to finish
    /// (see `ibm::jobs::get`); zero answers at once.
    pub ibm_status_hold: Duration,
    /// Comment lines on an idle event stream, so that proxies keep it open.
    pub sse_keep_alive: Duration,
    /// Serve `GET /metrics` on this router for this replica id (`None`: not here; it may be on
    /// its own listener, `--metrics-listen`).
    pub metrics_replica: Option<uuid::Uuid>,
    /// Largest result an agent may post (after gzip decompression), in bytes.
    pub agent_max_result_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_body_bytes: 16 << 20,
            request_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            rate_limit: RateLimit::default(),
            ibm_status_hold: ibm::jobs::STATUS_HOLD,
            sse_keep_alive: Duration::from_secs(15),
            metrics_replica: None,
            agent_max_result_bytes: 256 << 20,
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub svc: Service,
    /// Rate limits per caller, checked by the [`extract::Caller`] extractor.
    pub limiter: Arc<ratelimit::Limiter>,
    /// Keep-alive interval of `GET /v1/events`.
    pub sse_keep_alive: Duration,
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
        .route("/events", get(v1::events::stream_events))
        .route("/webhooks", get(v1::webhooks::list).post(v1::webhooks::create))
        .route("/webhooks/{id}", get(v1::webhooks::get).delete(v1::webhooks::delete))
        .route("/webhooks/{id}/deliveries", get(v1::webhooks::deliveries))
        .route("/devices/{name}/tokens", get(agent::list_tokens).post(agent::create_token))
        .route("/agent/claim", post(agent::claim))
        .route("/agent/device", get(agent::device).put(agent::report))
        .route("/agent/jobs/{id}/heartbeat", post(agent::heartbeat))
        .route("/agent/jobs/{id}/progress", post(agent::progress))
        .route(
            "/agent/jobs/{id}/complete",
            // Results may be large: their own limit, counted after gzip decompression.
            post(agent::complete).layer(
                tower::ServiceBuilder::new()
                    .layer(DefaultBodyLimit::max(cfg.agent_max_result_bytes))
                    .layer(RequestDecompressionLayer::new().gzip(true)),
            ),
        )
        .route("/agent/jobs/{id}/fail", post(agent::fail))
        .route("/openapi.yaml", get(openapi::serve_yaml))
        .route("/openapi.json", get(openapi::serve_json));
    let mut app = Router::new();
    if let Some(replica) = cfg.metrics_replica {
        app = app.merge(metrics::router(svc.clone(), replica));
    }
    app.route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .nest("/v1", v1)
        .nest("/ibm", ibm::router(svc.clone(), cfg))
        .nest("/pasqal", pasqal::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(AppState {
            svc,
            limiter: Arc::new(ratelimit::Limiter::new(cfg.rate_limit)),
            sse_keep_alive: cfg.sse_keep_alive,
        })
        .layer(axum::middleware::from_fn(metrics::track_http))
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
