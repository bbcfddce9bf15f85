//! qcloud-service: the use cases of qcloud (open a session, submit a job, cancel, close, ...)
//! and the state changes of the job pipeline (dispatch, claim, complete, timers, recovery).
//! Each public function applies the pure rules of `qcloud-core` to facts loaded through
//! `qcloud-store`, in one Postgres transaction (with NOTIFY on commit). It is the one place
//! where the API and the scheduler change state.
#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod devices;
pub mod dispatch;
pub mod error;
pub mod jobs;
pub mod sessions;

pub use auth::Principal;
pub use config::ServiceConfig;
pub use error::{Result, ServiceError};

use qcloud_store::PgPool;
use std::sync::Arc;

/// The service: a connection pool, the server's settings and a token cache. Cheap to clone.
#[derive(Clone)]
pub struct Service {
    pub pool: PgPool,
    pub cfg: Arc<ServiceConfig>,
    tokens: Arc<auth::TokenCache>,
}

impl Service {
    pub fn new(pool: PgPool, cfg: ServiceConfig) -> Self {
        Service { pool, cfg: Arc::new(cfg), tokens: Arc::default() }
    }

    /// Whether the database answers and every migration is applied.
    pub async fn ready(&self) -> Result<bool> {
        Ok(qcloud_store::migrations_applied(&self.pool).await?)
    }
}
