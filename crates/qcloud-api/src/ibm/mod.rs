//! The IBM Quantum facade: the Qiskit Runtime REST API (`docs` in the shared protocol notes,
//! verified against qiskit-ibm-runtime 0.51.0), IBM Cloud IAM's token exchange, Global Search and
//! Global Catalog, mounted under `/ibm`. A translation onto the service commands `/v1` uses,
//! never a second scheduler: every view is a pure function of the internal state
//! ([`translate`], [`target`]).
//!
//! Routes, relative to `/ibm`:
//! - `POST /identity/token` (IAM_URL), `POST /v3/resources/search` (GLOBAL_SEARCH_URL),
//!   `GET /catalog/{plan}` (GLOBAL_CATALOG_URL);
//! - the runtime API under `/api/v1`, and the same under `/experimental/api/v1` and
//!   `/experimental` (a URL containing "experimental" is used verbatim by the client).

pub mod auth;
mod backends;
pub mod check;
pub mod crn;
pub mod error;
mod identity;
pub mod jobs;
pub mod npy;
mod sessions;
pub mod target;
pub mod translate;

use crate::AppState;
use axum::routing::{get, post};
use axum::Router;
use error::IbmError;
use qcloud_service::Service;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// What the facade's handlers share: the service, the token signing key (read once from the
/// database, the same on every replica) and the projects' stable ids (they never change).
#[derive(Clone)]
pub struct IbmState {
    pub svc: Service,
    key: Arc<tokio::sync::OnceCell<Vec<u8>>>,
    project_ids: Arc<Mutex<HashMap<String, Uuid>>>,
    /// Longest hold of a status poll (`jobs::get`).
    pub status_hold: std::time::Duration,
    /// Gate devices seen lately by a backend route: name -> (when, qubits). See
    /// [`backends::submit_target`].
    recent_backends: Arc<Mutex<HashMap<String, (std::time::Instant, i32)>>>,
}

impl IbmState {
    pub fn new(svc: Service, status_hold: std::time::Duration) -> Self {
        IbmState { svc, key: Arc::default(), project_ids: Arc::default(), status_hold, recent_backends: Arc::default() }
    }

    /// The HS256 secret of the facade's tokens.
    pub async fn signing_key(&self) -> Result<&[u8], IbmError> {
        let key = self.key.get_or_try_init(|| self.svc.signing_key(auth::KEY_NAME)).await?;
        Ok(key.as_slice())
    }

    /// The stable id of `project`.
    pub async fn project_id(&self, who: &qcloud_service::Principal) -> Result<Uuid, IbmError> {
        if let Some(id) = self.project_ids.lock().ok().and_then(|m| m.get(&who.project).copied()) {
            return Ok(id);
        }
        let id = self.svc.my_project(who).await?.id;
        if let Ok(mut m) = self.project_ids.lock() {
            if m.len() > 100_000 {
                m.clear();
            }
            m.insert(who.project.clone(), id);
        }
        Ok(id)
    }
}

/// The runtime API (mounted at each of its prefixes).
fn runtime() -> Router<IbmState> {
    Router::new()
        .route("/backends", get(backends::list))
        .route("/backends/{name}/configuration", get(backends::configuration))
        .route("/backends/{name}/properties", get(backends::properties))
        .route("/backends/{name}/status", get(backends::status))
        .route("/backends/{name}/defaults", get(backends::defaults))
        .route("/instances/usage", get(backends::usage))
        .route("/sessions", post(sessions::create))
        .route("/sessions/{id}", get(sessions::get).patch(sessions::patch))
        .route("/sessions/{id}/close", axum::routing::delete(sessions::cancel))
        .route("/jobs", get(jobs::list).post(jobs::submit))
        .route("/jobs/{id}", get(jobs::get).delete(jobs::delete))
        .route("/jobs/{id}/results", get(jobs::results))
        .route("/jobs/{id}/cancel", post(jobs::cancel))
        .route("/jobs/{id}/metrics", get(jobs::metrics))
        .route("/jobs/{id}/logs", get(jobs::logs))
        .route("/jobs/{id}/tags", axum::routing::put(jobs::tags))
}

/// The facade, to nest under `/ibm`.
pub fn router(svc: Service, cfg: &crate::ApiConfig) -> Router<AppState> {
    Router::new()
        .route("/identity/token", post(identity::token))
        .route("/v3/resources/search", post(identity::search))
        .route("/catalog/{id}", get(identity::catalog))
        .nest("/api/v1", runtime())
        .nest("/experimental/api/v1", runtime())
        .nest("/experimental", runtime())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(IbmState::new(svc, cfg.ibm_status_hold))
}

async fn not_found() -> IbmError {
    IbmError::new(axum::http::StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> IbmError {
    IbmError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}
