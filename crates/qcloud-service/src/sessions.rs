//! Session use cases: open, inspect, list, close (drain) and cancel.

use crate::auth::Principal;
use crate::error::{Result, ServiceError};
use crate::list::{next_page, ListWindow, Page};
use crate::validate;
use crate::Service;
use chrono::{DateTime, Utc};
use qcloud_core::rules::{SessionFacts, SessionTtls};
use qcloud_core::{ClosedReason, IdlePolicy, JobStatus, Priority, SessionMode, SessionState};
use qcloud_store::sessions::{NewSession, Session, SessionFilter};
use std::collections::BTreeMap;
use tracing::instrument;
use uuid::Uuid;

/// Open a session on a device.
#[derive(Debug, Clone)]
pub struct OpenSession {
    pub device: String,
    pub mode: SessionMode,
    /// Seconds from the first activation until the session closes (default: the server's, IBM 8 h).
    pub max_ttl: Option<f64>,
    /// Seconds an active session with no job keeps the device (default: the server's, IBM 60 s).
    pub interactive_ttl: Option<f64>,
    pub idle_policy: IdlePolicy,
    pub priority: Priority,
    pub tags: Vec<String>,
}

impl OpenSession {
    /// A session with the defaults: server TTLs, `deactivate` when idle, medium priority, no tags.
    pub fn new(device: impl Into<String>, mode: SessionMode) -> Self {
        OpenSession {
            device: device.into(),
            mode,
            max_ttl: None,
            interactive_ttl: None,
            idle_policy: IdlePolicy::Deactivate,
            priority: Priority::Medium,
            tags: Vec::new(),
        }
    }
}

/// Rule 6: stop accepting jobs; the session closes when its jobs are done.
#[derive(Debug, Clone, Copy)]
pub struct CloseSession {
    pub id: Uuid,
}

/// Rule 7: cancel the queued jobs and close now.
#[derive(Debug, Clone, Copy)]
pub struct CancelSession {
    pub id: Uuid,
}

/// List the caller's sessions.
#[derive(Debug, Clone, Default)]
pub struct ListSessions {
    pub state: Option<SessionState>,
    pub device: Option<String>,
    pub mode: Option<SessionMode>,
    pub window: ListWindow,
}

/// A session, with its job counts.
#[derive(Debug, Clone)]
pub struct SessionView {
    pub id: Uuid,
    pub device: String,
    pub mode: SessionMode,
    pub state: SessionState,
    pub closed_reason: Option<ClosedReason>,
    pub accepting_jobs: bool,
    pub ttls: SessionTtls,
    pub idle_policy: IdlePolicy,
    pub priority: Priority,
    pub tags: Vec<String>,
    pub user: String,
    pub created_at: DateTime<Utc>,
    /// First activation.
    pub started_at: Option<DateTime<Utc>>,
    pub activated_at: Option<DateTime<Utc>>,
    pub last_job_started: Option<DateTime<Utc>>,
    pub last_job_completed: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub usage_seconds: f64,
    /// Number of jobs per status.
    pub jobs: BTreeMap<JobStatus, i64>,
}

pub(crate) fn facts(row: &Session, queued: bool, running: bool) -> SessionFacts {
    SessionFacts {
        state: row.state,
        accepting_jobs: row.accepting_jobs,
        idle_policy: row.idle_policy,
        ttls: row.ttls,
        created_at: row.created_at,
        started_at: row.started_at,
        activated_at: row.activated_at,
        last_job_submitted: row.last_job_submitted,
        last_job_completed: row.last_job_completed,
        queued_jobs: queued as i64,
        running_jobs: running as i64,
    }
}

fn session_view(row: Session, counts: Vec<(JobStatus, i64)>) -> SessionView {
    SessionView {
        id: row.id,
        mode: row.mode,
        state: row.state,
        closed_reason: row.closed_reason,
        accepting_jobs: row.accepting_jobs,
        ttls: row.ttls,
        idle_policy: row.idle_policy,
        priority: row.priority,
        tags: row.tags,
        user: row.user_name,
        created_at: row.created_at,
        started_at: row.started_at,
        activated_at: row.activated_at,
        last_job_started: row.last_job_started,
        last_job_completed: row.last_job_completed,
        closed_at: row.closed_at,
        usage_seconds: row.usage_seconds,
        jobs: counts.into_iter().collect(),
        device: row.device,
    }
}

impl Service {
    #[instrument(skip_all, fields(device = %req.device))]
    pub async fn open_session(&self, who: &Principal, req: OpenSession) -> Result<SessionView> {
        self.open_session_with_webhook(who, req, None).await
    }

    /// [`Service::open_session`] with a webhook subscribed to the session's events (and its
    /// jobs') in the same transaction.
    pub async fn open_session_with_webhook(
        &self,
        who: &Principal,
        req: OpenSession,
        webhook: Option<&crate::webhooks::WebhookSpec>,
    ) -> Result<SessionView> {
        if let Some(w) = webhook {
            self.check_webhook_spec(w).await?;
        }
        validate::text("device", &req.device)?;
        validate::tags(&req.tags)?;
        let ttls = self
            .cfg
            .ttl
            .resolve(req.max_ttl, req.interactive_ttl)
            .map_err(|e| ServiceError::invalid("invalid_ttl", e.to_string()))?;
        let mut tx = self.pool.begin().await?;
        qcloud_store::devices::get(&mut tx, &req.device)
            .await?
            .ok_or_else(|| ServiceError::not_found("device", &req.device))?;
        let row = qcloud_store::sessions::insert(
            &mut tx,
            NewSession {
                id: Uuid::now_v7(),
                project: &who.project,
                user: &who.user,
                device: &req.device,
                mode: req.mode,
                ttls,
                idle_policy: req.idle_policy,
                priority: req.priority,
                tags: &req.tags,
                webhook: webhook.map(|w| w.url.as_str()),
                default_program: None,
            },
        )
        .await?;
        if let Some(w) = webhook {
            self.subscribe_scoped(&mut tx, &who.project, w, None, Some(row.id)).await?;
        }
        tx.commit().await?;
        Ok(session_view(row, Vec::new()))
    }

    pub async fn get_session(&self, who: &Principal, id: Uuid) -> Result<SessionView> {
        let mut conn = self.pool.acquire().await?;
        let row = qcloud_store::sessions::get(&mut conn, &who.project, id)
            .await?
            .ok_or_else(|| ServiceError::not_found("session", id))?;
        let counts = qcloud_store::sessions::job_counts(&mut conn, id).await?;
        Ok(session_view(row, counts))
    }

    pub async fn list_sessions(&self, who: &Principal, q: ListSessions) -> Result<Page<SessionView>> {
        validate::opt_text("device", q.device.as_deref())?;
        let (window, limit) = q.window.to_store()?;
        let filter = SessionFilter { state: q.state, device: q.device, mode: q.mode, window };
        let mut conn = self.pool.acquire().await?;
        let mut rows = qcloud_store::sessions::list(&mut conn, &who.project, &filter).await?;
        let next_cursor = next_page(&mut rows, limit, |r| (r.created_at, r.id));
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            let counts = qcloud_store::sessions::job_counts(&mut conn, row.id).await?;
            items.push(session_view(row, counts));
        }
        Ok(Page { items, next_cursor })
    }

    /// Rule 6: stop accepting jobs; queued and running ones finish, then the session closes.
    #[instrument(skip_all, fields(session_id = %id))]
    pub async fn close_session(&self, who: &Principal, CloseSession { id }: CloseSession) -> Result<SessionView> {
        let mut tx = self.pool.begin().await?;
        let row = self.lock_own_session(&mut tx, who, id).await?;
        if row.state.is_open() {
            qcloud_store::sessions::stop_accepting(&mut tx, id).await?;
            self.settle_session(&mut tx, id).await?;
        }
        tx.commit().await?;
        self.get_session(who, id).await
    }

    /// Rule 7: no new jobs, queued jobs canceled, the running job finishes, closed now.
    #[instrument(skip_all, fields(session_id = %id))]
    pub async fn cancel_session(&self, who: &Principal, CancelSession { id }: CancelSession) -> Result<SessionView> {
        let mut tx = self.pool.begin().await?;
        let row = self.lock_own_session(&mut tx, who, id).await?;
        if row.state.is_open() {
            qcloud_store::jobs::end_queued_in_session(
                &mut tx,
                id,
                JobStatus::Canceled,
                "the session was canceled",
                "session_canceled",
            )
            .await?;
            qcloud_store::sessions::close(&mut tx, id, ClosedReason::Canceled).await?;
            qcloud_store::notify(&mut tx, qcloud_store::channel::WAKE, &row.device).await?;
        }
        tx.commit().await?;
        self.get_session(who, id).await
    }

    async fn lock_own_session(
        &self,
        conn: &mut qcloud_store::PgConnection,
        who: &Principal,
        id: Uuid,
    ) -> Result<Session> {
        match qcloud_store::sessions::lock(conn, id).await? {
            Some(row) if row.project == who.project => Ok(row),
            _ => Err(ServiceError::not_found("session", id)),
        }
    }
}
