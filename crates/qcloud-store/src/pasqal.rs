//! What the Pasqal facade needs besides sessions and jobs: project UUIDs, users with password
//! hashes, batch lineage, batch and job listings with Pasqal's filters (offset pagination with a
//! total), and results-link capabilities.

use crate::jobs::Job;
use crate::sessions::Session;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};
use uuid::Uuid;

/// The stable UUID of a project (Pasqal's `project_id`).
pub async fn project_uuid(conn: &mut PgConnection, project: &str) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar("SELECT id FROM projects WHERE name = $1").bind(project).fetch_optional(conn).await
}

/// A project with its UUID and creation time.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProjectRow {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

pub async fn project(conn: &mut PgConnection, project: &str) -> sqlx::Result<Option<ProjectRow>> {
    sqlx::query_as("SELECT id, name, created_at FROM projects WHERE name = $1").bind(project).fetch_optional(conn).await
}

/// Create or replace a user's password hash.
pub async fn upsert_user(conn: &mut PgConnection, user: &str, project: &str, hash: &str) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO users (user_name, project, password_hash) VALUES ($1, $2, $3)
         ON CONFLICT (user_name) DO UPDATE SET project = EXCLUDED.project, password_hash = EXCLUDED.password_hash",
    )
    .bind(user)
    .bind(project)
    .bind(hash)
    .execute(conn)
    .await?;
    Ok(())
}

/// A user's project and password hash.
pub async fn user(conn: &mut PgConnection, user: &str) -> sqlx::Result<Option<(String, String)>> {
    let row = sqlx::query("SELECT project, password_hash FROM users WHERE user_name = $1")
        .bind(user)
        .fetch_optional(conn)
        .await?;
    row.map(|r| Ok((r.try_get("project")?, r.try_get("password_hash")?))).transpose()
}

pub async fn set_session_parent(conn: &mut PgConnection, id: Uuid, parent: Uuid) -> sqlx::Result<()> {
    sqlx::query("UPDATE sessions SET parent_id = $2 WHERE id = $1").bind(id).bind(parent).execute(conn).await?;
    Ok(())
}

pub async fn session_parent(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar("SELECT parent_id FROM sessions WHERE id = $1").bind(id).fetch_one(conn).await
}

pub async fn set_job_parent(conn: &mut PgConnection, id: Uuid, parent: Uuid) -> sqlx::Result<()> {
    sqlx::query("UPDATE jobs SET parent_id = $2 WHERE id = $1").bind(id).bind(parent).execute(conn).await?;
    Ok(())
}

pub async fn set_session_tags(conn: &mut PgConnection, id: Uuid, tags: &[String]) -> sqlx::Result<()> {
    sqlx::query("UPDATE sessions SET tags = $2 WHERE id = $1").bind(id).bind(tags).execute(conn).await?;
    Ok(())
}

/// Session conditions of one Pasqal batch status (DESIGN.md §2: the view is a function of
/// state and closed reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchState {
    Pending,
    Running,
    Done,
    Canceled,
    TimedOut,
    Error,
}

impl BatchState {
    fn sql(self) -> &'static str {
        match self {
            BatchState::Pending => "(s.state = 'pending')",
            BatchState::Running => "(s.state IN ('active', 'inactive'))",
            BatchState::Done => "(s.closed_reason = 'completed')",
            BatchState::Canceled => "(s.closed_reason = 'canceled')",
            BatchState::TimedOut => "(s.closed_reason = 'idle_timeout')",
            BatchState::Error => "(s.closed_reason IN ('max_ttl', 'failed'))",
        }
    }
}

/// Filters of a batch listing; every list is a membership test, all are ANDed.
#[derive(Debug, Clone, Default)]
pub struct BatchFilter {
    pub ids: Vec<Uuid>,
    pub users: Vec<String>,
    pub devices: Vec<String>,
    pub states: Vec<BatchState>,
    pub open: Option<bool>,
    pub priorities: Vec<i16>,
    pub tag: Option<String>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
    pub offset: i64,
    pub limit: i64,
}

/// Pasqal batches are batch sessions whose default program carries a sequence.
const IS_BATCH: &str = " AND s.mode = 'batch' AND s.default_program ? 'sequence_builder'";

/// A page of batches of `project`, newest first, and the total matching.
pub async fn list_batches(
    conn: &mut PgConnection,
    project: &str,
    f: &BatchFilter,
) -> sqlx::Result<(Vec<Session>, i64)> {
    let mut q =
        QueryBuilder::<Postgres>::new("SELECT s.*, count(*) OVER () AS total FROM sessions s WHERE s.project = ");
    q.push_bind(project.to_owned()).push(IS_BATCH);
    if !f.ids.is_empty() {
        q.push(" AND s.id = ANY(").push_bind(f.ids.clone()).push(")");
    }
    if !f.users.is_empty() {
        q.push(" AND s.user_name = ANY(").push_bind(f.users.clone()).push(")");
    }
    if !f.devices.is_empty() {
        q.push(" AND s.device = ANY(").push_bind(f.devices.clone()).push(")");
    }
    if !f.states.is_empty() {
        let conds: Vec<&str> = f.states.iter().map(|s| s.sql()).collect();
        q.push(" AND (").push(conds.join(" OR ")).push(")");
    }
    if let Some(open) = f.open {
        q.push(" AND (s.accepting_jobs AND s.state <> 'closed') = ").push_bind(open);
    }
    if !f.priorities.is_empty() {
        q.push(" AND s.priority = ANY(").push_bind(f.priorities.clone()).push(")");
    }
    if let Some(t) = &f.tag {
        q.push(" AND ").push_bind(t.clone()).push(" = ANY(s.tags)");
    }
    if let Some(t) = f.created_from {
        q.push(" AND s.created_at >= ").push_bind(t);
    }
    if let Some(t) = f.created_to {
        q.push(" AND s.created_at <= ").push_bind(t);
    }
    q.push(" ORDER BY s.created_at DESC, s.id DESC OFFSET ").push_bind(f.offset).push(" LIMIT ").push_bind(f.limit);
    let rows = q.build().fetch_all(&mut *conn).await?;
    let total = match rows.first() {
        Some(r) => r.try_get("total")?,
        None => count_batches_beyond(conn, project, f).await?,
    };
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(<Session as sqlx::FromRow<_>>::from_row(r)?);
    }
    Ok((out, total))
}

/// The total when the page is empty (an offset past the end): the same filters, no window.
async fn count_batches_beyond(conn: &mut PgConnection, project: &str, f: &BatchFilter) -> sqlx::Result<i64> {
    if f.offset == 0 {
        return Ok(0);
    }
    let g = BatchFilter { offset: 0, limit: i64::MAX, ..f.clone() };
    let (rows, _) = Box::pin(list_batches(conn, project, &g)).await?;
    Ok(rows.len() as i64)
}

/// Filters of a job listing (jobs of Pasqal batches only).
#[derive(Debug, Clone, Default)]
pub struct PasqalJobFilter {
    pub ids: Vec<Uuid>,
    pub batch_ids: Vec<Uuid>,
    pub users: Vec<String>,
    pub statuses: Vec<String>,
    pub min_runs: Option<i64>,
    pub max_runs: Option<i64>,
    /// `Some(true)`: only failed jobs; `Some(false)`: only jobs without errors.
    pub errors: Option<bool>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
    /// Submission order (oldest first) instead of newest first.
    pub creation_order: bool,
    pub offset: i64,
    pub limit: i64,
}

/// A page of jobs of `project` in Pasqal batches, and the total matching.
pub async fn list_jobs(conn: &mut PgConnection, project: &str, f: &PasqalJobFilter) -> sqlx::Result<(Vec<Job>, i64)> {
    let mut q = QueryBuilder::<Postgres>::new(
        "SELECT j.*, count(*) OVER () AS total FROM jobs j JOIN sessions s ON s.id = j.session_id WHERE j.project = ",
    );
    q.push_bind(project.to_owned()).push(IS_BATCH);
    if !f.ids.is_empty() {
        q.push(" AND j.id = ANY(").push_bind(f.ids.clone()).push(")");
    }
    if !f.batch_ids.is_empty() {
        q.push(" AND j.session_id = ANY(").push_bind(f.batch_ids.clone()).push(")");
    }
    if !f.users.is_empty() {
        q.push(" AND j.user_name = ANY(").push_bind(f.users.clone()).push(")");
    }
    if !f.statuses.is_empty() {
        q.push(" AND j.status = ANY(").push_bind(f.statuses.clone()).push(")");
    }
    if let Some(v) = f.min_runs {
        q.push(" AND j.shots >= ").push_bind(v);
    }
    if let Some(v) = f.max_runs {
        q.push(" AND j.shots <= ").push_bind(v);
    }
    match f.errors {
        Some(true) => {
            q.push(" AND j.status = 'failed'");
        }
        Some(false) => {
            q.push(" AND j.status <> 'failed'");
        }
        None => {}
    }
    if let Some(t) = f.created_from {
        q.push(" AND j.created_at >= ").push_bind(t);
    }
    if let Some(t) = f.created_to {
        q.push(" AND j.created_at <= ").push_bind(t);
    }
    if f.creation_order {
        q.push(" ORDER BY j.seq ASC");
    } else {
        q.push(" ORDER BY j.created_at DESC, j.id DESC");
    }
    q.push(" OFFSET ").push_bind(f.offset).push(" LIMIT ").push_bind(f.limit);
    let rows = q.build().fetch_all(&mut *conn).await?;
    let total = match rows.first() {
        Some(r) => r.try_get("total")?,
        None if f.offset == 0 => 0,
        None => {
            let g = PasqalJobFilter { offset: 0, limit: i64::MAX, ..f.clone() };
            Box::pin(list_jobs(conn, project, &g)).await?.0.len() as i64
        }
    };
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(<Job as sqlx::FromRow<_>>::from_row(r)?);
    }
    Ok((out, total))
}

/// Every job of a session, in submission order.
pub async fn session_jobs(conn: &mut PgConnection, session: Uuid) -> sqlx::Result<Vec<Job>> {
    sqlx::query_as("SELECT * FROM jobs WHERE session_id = $1 ORDER BY seq").bind(session).fetch_all(conn).await
}

pub async fn insert_result_link(
    conn: &mut PgConnection,
    hash: &[u8],
    job: Uuid,
    expires_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    // Expired links are dropped as new ones are made, so the table stays small.
    sqlx::query("DELETE FROM result_links WHERE expires_at < now()").execute(&mut *conn).await?;
    sqlx::query("INSERT INTO result_links (token_hash, job_id, expires_at) VALUES ($1, $2, $3)")
        .bind(hash)
        .bind(job)
        .bind(expires_at)
        .execute(conn)
        .await?;
    Ok(())
}

/// The job a live (unexpired) results link names.
pub async fn result_link_job(conn: &mut PgConnection, hash: &[u8]) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar("SELECT job_id FROM result_links WHERE token_hash = $1 AND expires_at > now()")
        .bind(hash)
        .fetch_optional(conn)
        .await
}
