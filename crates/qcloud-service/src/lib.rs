//! qcloud-service: the use cases of qcloud as typed commands (open a session, submit a job,
//! cancel, close, list, add a device, ...) and the state changes of the job pipeline (dispatch,
//! claim, complete, timers, rescue of lost jobs). Each command applies the pure rules of
//! `qcloud-core` to facts loaded through `qcloud-store`, in one Postgres transaction (with NOTIFY on
//! commit). It is the one place where the front doors (native, IBM, Pasqal) and the scheduler change
//! state; it knows no HTTP. See `docs/architecture.md`.
#![forbid(unsafe_code)]

pub mod agents;
pub mod auth;
pub mod batches;
pub mod bulk;
pub mod checks;
pub mod config;
pub mod devices;
pub mod error;
pub mod events;
pub mod job_search;
pub mod jobs;
pub mod list;
pub mod pipeline;
pub mod projects;
pub mod retention;
pub mod sessions;
pub mod users;
pub mod validate;
pub mod webhooks;

pub use auth::Principal;
pub use config::ServiceConfig;
pub use error::{Result, ServiceError};

/// The domain vocabulary the commands and views are written in, so front doors and the scheduler
/// need no other crate for it.
pub use qcloud_core::rules::SessionTtls;
pub use qcloud_core::views;
pub use qcloud_core::{
    ClosedReason, DeviceKind, DeviceStatus, DriverKind, IdlePolicy, JobStatus, Priority, SessionMode, SessionState,
    Timing, UnknownValue,
};

use qcloud_store::PgPool;
use std::sync::Arc;

/// The service: a connection pool, the server's settings and a token cache. Cheap to clone.
#[derive(Clone)]
pub struct Service {
    pool: PgPool,
    pub cfg: Arc<ServiceConfig>,
    tokens: Arc<auth::TokenCache>,
    /// Submit-time checks of program inputs (none: every payload is left to the run).
    checks: Option<Arc<dyn checks::ProgramCheck>>,
    /// This replica's event hub, once started ([`Service::start_event_hub`]).
    hub: Arc<std::sync::OnceLock<events::EventHub>>,
    /// Wake-ups of agents' waiting claims.
    claim_wake: Arc<agents::ClaimWake>,
}

impl Service {
    pub fn new(pool: PgPool, cfg: ServiceConfig) -> Self {
        Service {
            pool,
            cfg: Arc::new(cfg),
            tokens: Arc::default(),
            checks: None,
            hub: Arc::default(),
            claim_wake: Arc::default(),
        }
    }

    /// Check program inputs at submit with `check` (the drivers' validate steps).
    pub fn with_program_check(mut self, check: Arc<dyn checks::ProgramCheck>) -> Self {
        self.checks = Some(check);
        self
    }

    /// This replica's event hub, when it was started.
    pub fn event_hub(&self) -> Option<&events::EventHub> {
        self.hub.get()
    }

    /// The connection pool, for start-up, shutdown and tests that inspect the database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Whether the database answers and every migration is applied.
    pub async fn ready(&self) -> Result<bool> {
        Ok(qcloud_store::migrations_applied(&self.pool).await?)
    }
}
