//! Sessions (IBM sessions and batches, Pasqal batches).

use crate::{enum_col, ms_col, opt_enum_col, parse_text, push_window, Window};
use chrono::{DateTime, Utc};
use qcloud_core::rules::SessionTtls;
use qcloud_core::{ClosedReason, IdlePolicy, JobStatus, Priority, SessionMode, SessionState};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{FromRow, PgConnection, QueryBuilder, Row};
use uuid::Uuid;

/// A session as stored.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: Uuid,
    pub project: String,
    pub user_name: String,
    pub device: String,
    pub mode: SessionMode,
    pub state: SessionState,
    pub closed_reason: Option<ClosedReason>,
    pub accepting_jobs: bool,
    pub ttls: SessionTtls,
    pub idle_policy: IdlePolicy,
    pub priority: Priority,
    pub tags: Vec<String>,
    pub webhook: Option<String>,
    pub default_program: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub activated_at: Option<DateTime<Utc>>,
    pub last_job_submitted: Option<DateTime<Utc>>,
    pub last_job_started: Option<DateTime<Utc>>,
    pub last_job_completed: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub next_deadline: Option<DateTime<Utc>>,
    pub usage_seconds: f64,
}

impl<'r> FromRow<'r, PgRow> for Session {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        Ok(Session {
            id: row.try_get("id")?,
            project: row.try_get("project")?,
            user_name: row.try_get("user_name")?,
            device: row.try_get("device")?,
            mode: enum_col(row, "mode")?,
            state: enum_col(row, "state")?,
            closed_reason: opt_enum_col(row, "closed_reason")?,
            accepting_jobs: row.try_get("accepting_jobs")?,
            ttls: SessionTtls {
                max_ttl: ms_col(row, "max_ttl_ms")?,
                interactive_ttl: ms_col(row, "interactive_ttl_ms")?,
                pending_ttl: ms_col(row, "pending_ttl_ms")?,
            },
            idle_policy: enum_col(row, "idle_policy")?,
            priority: Priority::from_rank(row.try_get("priority")?),
            tags: row.try_get("tags")?,
            webhook: row.try_get("webhook")?,
            default_program: row.try_get::<Option<Json<serde_json::Value>>, _>("default_program")?.map(|j| j.0),
            created_at: row.try_get("created_at")?,
            started_at: row.try_get("started_at")?,
            activated_at: row.try_get("activated_at")?,
            last_job_submitted: row.try_get("last_job_submitted")?,
            last_job_started: row.try_get("last_job_started")?,
            last_job_completed: row.try_get("last_job_completed")?,
            closed_at: row.try_get("closed_at")?,
            next_deadline: row.try_get("next_deadline")?,
            usage_seconds: row.try_get("usage_seconds")?,
        })
    }
}

pub struct NewSession<'a> {
    pub id: Uuid,
    pub project: &'a str,
    pub user: &'a str,
    pub device: &'a str,
    pub mode: SessionMode,
    pub ttls: SessionTtls,
    pub idle_policy: IdlePolicy,
    pub priority: Priority,
    pub tags: &'a [String],
    pub webhook: Option<&'a str>,
    pub default_program: Option<serde_json::Value>,
}

pub async fn insert(conn: &mut PgConnection, s: NewSession<'_>) -> sqlx::Result<Session> {
    sqlx::query_as(
        "INSERT INTO sessions (id, project, user_name, device, mode, max_ttl_ms, interactive_ttl_ms,
                pending_ttl_ms, idle_policy, priority, tags, webhook, default_program, next_deadline)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
                 now() + make_interval(secs => $8::float8 / 1000))
         RETURNING *",
    )
    .bind(s.id)
    .bind(s.project)
    .bind(s.user)
    .bind(s.device)
    .bind(s.mode.as_str())
    .bind(s.ttls.max_ttl.num_milliseconds())
    .bind(s.ttls.interactive_ttl.num_milliseconds())
    .bind(s.ttls.pending_ttl.num_milliseconds())
    .bind(s.idle_policy.as_str())
    .bind(s.priority.rank())
    .bind(s.tags)
    .bind(s.webhook)
    .bind(s.default_program.map(Json))
    .fetch_one(conn)
    .await
}

/// A session of `project` (another project's session is not found).
pub async fn get(conn: &mut PgConnection, project: &str, id: Uuid) -> sqlx::Result<Option<Session>> {
    sqlx::query_as("SELECT * FROM sessions WHERE id = $1 AND project = $2")
        .bind(id)
        .bind(project)
        .fetch_optional(conn)
        .await
}

/// Lock a session row for a state change.
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Session>> {
    sqlx::query_as("SELECT * FROM sessions WHERE id = $1 FOR NO KEY UPDATE").bind(id).fetch_optional(conn).await
}

/// The active session holding a device, locked, with the database clock and whether it has queued
/// and running jobs (what its timers need), in one query.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Holder {
    #[sqlx(flatten)]
    pub session: Session,
    pub db_now: DateTime<Utc>,
    pub has_queued: bool,
    pub has_running: bool,
}

pub async fn lock_holder(conn: &mut PgConnection, device: &str) -> sqlx::Result<Option<Holder>> {
    sqlx::query_as(&format!("{HOLDERS} WHERE s.device = $1 AND s.state = 'active' FOR NO KEY UPDATE OF s"))
        .bind(device)
        .fetch_optional(conn)
        .await
}

/// [`lock_holder`] of several devices, locked in session id order (planned at each run, as the
/// other statements of a batched completion: see `jobs::lock_devices`).
pub async fn lock_holders(conn: &mut PgConnection, devices: &[String]) -> sqlx::Result<Vec<Holder>> {
    sqlx::query_as(&format!(
        "{HOLDERS} WHERE s.device = ANY($1) AND s.state = 'active' ORDER BY s.id FOR NO KEY UPDATE OF s"
    ))
    .persistent(false)
    .bind(devices)
    .fetch_all(conn)
    .await
}

const HOLDERS: &str = "SELECT s.*, now() AS db_now,
        EXISTS (SELECT 1 FROM job_queue j WHERE j.session_id = s.id) AS has_queued,
        EXISTS (SELECT 1 FROM jobs j WHERE j.session_id = s.id AND j.status = 'running') AS has_running
    FROM sessions s";

/// Whether the session has queued jobs and running jobs.
pub async fn job_presence(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<(bool, bool)> {
    sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM job_queue WHERE session_id = $1),
                EXISTS (SELECT 1 FROM jobs WHERE session_id = $1 AND status = 'running')",
    )
    .bind(id)
    .fetch_one(conn)
    .await
}

/// Job counts per status.
pub async fn job_counts(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Vec<(JobStatus, i64)>> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM jobs WHERE session_id = $1 GROUP BY status")
            .bind(id)
            .fetch_all(conn)
            .await?;
    rows.into_iter().map(|(s, n)| Ok((parse_text("status", &s)?, n))).collect()
}

pub async fn activate(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE sessions SET state = 'active', activated_at = now(), started_at = COALESCE(started_at, now())
         WHERE id = $1 AND state IN ('pending', 'inactive')",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn deactivate(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<()> {
    sqlx::query("UPDATE sessions SET state = 'inactive' WHERE id = $1 AND state = 'active'")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn close(conn: &mut PgConnection, id: Uuid, reason: ClosedReason) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE sessions SET state = 'closed', closed_reason = $2, accepting_jobs = false, closed_at = now(),
                next_deadline = NULL
         WHERE id = $1 AND state <> 'closed'",
    )
    .bind(id)
    .bind(reason.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn stop_accepting(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<()> {
    sqlx::query("UPDATE sessions SET accepting_jobs = false WHERE id = $1").bind(id).execute(conn).await?;
    Ok(())
}

/// Record a submission into a session of `project` and return the session (locked by the update
/// until the transaction ends), in one statement; `None` when there is no such session.
pub async fn submit_into(conn: &mut PgConnection, id: Uuid, project: &str) -> sqlx::Result<Option<Session>> {
    sqlx::query_as("UPDATE sessions SET last_job_submitted = now() WHERE id = $1 AND project = $2 RETURNING *")
        .bind(id)
        .bind(project)
        .fetch_optional(conn)
        .await
}

pub async fn record_completion(conn: &mut PgConnection, id: Uuid, usage_seconds: f64) -> sqlx::Result<()> {
    sqlx::query("UPDATE sessions SET last_job_completed = now(), usage_seconds = usage_seconds + $2 WHERE id = $1")
        .bind(id)
        .bind(usage_seconds)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_deadline(conn: &mut PgConnection, id: Uuid, deadline: Option<DateTime<Utc>>) -> sqlx::Result<()> {
    sqlx::query("UPDATE sessions SET next_deadline = $2 WHERE id = $1").bind(id).bind(deadline).execute(conn).await?;
    Ok(())
}

/// Open sessions whose next timer may have fired.
pub async fn due(conn: &mut PgConnection, limit: i64) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT id FROM sessions WHERE state <> 'closed' AND next_deadline <= now() ORDER BY next_deadline LIMIT $1",
    )
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Filters of a session listing.
#[derive(Debug, Default, Clone)]
pub struct SessionFilter {
    pub state: Option<SessionState>,
    pub device: Option<String>,
    pub mode: Option<SessionMode>,
    pub window: Window,
}

pub async fn list(conn: &mut PgConnection, project: &str, f: &SessionFilter) -> sqlx::Result<Vec<Session>> {
    let mut q = QueryBuilder::new("SELECT * FROM sessions WHERE project = ");
    q.push_bind(project);
    if let Some(v) = f.state {
        q.push(" AND state = ").push_bind(v.as_str());
    }
    if let Some(v) = &f.device {
        q.push(" AND device = ").push_bind(v);
    }
    if let Some(v) = f.mode {
        q.push(" AND mode = ").push_bind(v.as_str());
    }
    push_window(&mut q, &f.window);
    q.build_query_as().fetch_all(conn).await
}
