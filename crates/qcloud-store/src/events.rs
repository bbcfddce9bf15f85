//! Events: the rows the triggers of `migrations/0009_events.sql` write in the transaction of each
//! job and session state change, the sequencer that gives them their public, commit-ordered `seq`
//! and fans them out to the webhook outbox, reads for the event stream, and retention pruning.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Postgres, QueryBuilder};
use uuid::Uuid;

/// An event as the stream and the webhooks show it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct EventRow {
    pub seq: i64,
    pub project: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub job_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub device: String,
    pub status: String,
    pub reason: Option<String>,
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// Which events a reader wants (always one project's).
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub project: String,
    pub job_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub device: Option<String>,
    /// Event types (`job.completed`, ...); empty = every type.
    pub types: Vec<String>,
}

/// What one sequencer pass did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sequenced {
    /// Events numbered by this pass.
    pub events: i64,
    /// The last `seq` given (by this pass or an earlier one).
    pub last_seq: i64,
    /// Webhook deliveries queued by this pass.
    pub deliveries: i64,
    /// Another pass held the sequencer: nothing was done.
    pub busy: bool,
    /// What the numbered events were, for this replica's metrics.
    pub stats: Vec<EventStat>,
}

/// One numbered event, as metrics count it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct EventStat {
    #[sqlx(rename = "type")]
    pub kind: String,
    pub device: String,
    pub program: Option<String>,
    pub previous_status: Option<String>,
    pub reason_code: Option<String>,
    /// Submit to start, for `job.running`.
    pub queue_s: Option<f64>,
    /// Start to finish, for terminal job events.
    pub run_s: Option<f64>,
    /// The session's previous job finished to this one started, for `job.running` in a session.
    pub gap_s: Option<f64>,
}

/// Most events one sequencer pass numbers (the next pass takes the rest).
pub const SEQUENCE_BATCH: i64 = 10_000;

/// Number the committed events that have no `seq` yet, in insertion order, and queue their webhook
/// deliveries. Run it inside a transaction of its own: the row lock on `event_sequencer` makes
/// passes one at a time, and each statement after it sees every row committed before the lock
/// was granted, so a `seq` once visible is never followed by a smaller one.
pub async fn sequence(conn: &mut PgConnection) -> sqlx::Result<Sequenced> {
    // SKIP LOCKED: a pass already running elsewhere will be followed by another, because every
    // replica's hub runs one every poll interval.
    let last: Option<i64> =
        sqlx::query_scalar("SELECT last_seq FROM event_sequencer WHERE id = 1 FOR UPDATE SKIP LOCKED")
            .fetch_optional(&mut *conn)
            .await?;
    let Some(last) = last else { return Ok(Sequenced { busy: true, ..Sequenced::default() }) };
    let numbered: i64 = sqlx::query_scalar(
        "WITH todo AS (
            SELECT id, row_number() OVER (ORDER BY id) AS n FROM events WHERE seq IS NULL ORDER BY id LIMIT $2),
         upd AS (UPDATE events e SET seq = $1 + todo.n FROM todo WHERE e.id = todo.id RETURNING 1)
         SELECT count(*) FROM upd",
    )
    .bind(last)
    .bind(SEQUENCE_BATCH)
    .fetch_one(&mut *conn)
    .await?;
    if numbered == 0 {
        return Ok(Sequenced { last_seq: last, ..Sequenced::default() });
    }
    let new_last = last + numbered;
    sqlx::query("UPDATE event_sequencer SET last_seq = $1 WHERE id = 1").bind(new_last).execute(&mut *conn).await?;
    let deliveries = sqlx::query(
        "INSERT INTO webhook_deliveries (webhook_id, event_seq)
         SELECT w.id, e.seq FROM events e
         JOIN webhooks w ON w.project = e.project AND w.deleted_at IS NULL
              AND (w.job_id IS NULL OR w.job_id = e.job_id)
              AND (w.session_id IS NULL OR w.session_id = e.session_id)
              AND (cardinality(w.event_types) = 0 OR e.type = ANY(w.event_types))
         WHERE e.seq > $1 AND e.seq <= $2
         ORDER BY w.id, e.seq
         ON CONFLICT DO NOTHING",
    )
    .bind(last)
    .bind(new_last)
    .execute(&mut *conn)
    .await?
    .rows_affected() as i64;
    let stats: Vec<EventStat> = sqlx::query_as(
        "SELECT type, device, data->>'program' AS program, data->>'previous_status' AS previous_status,
                data->>'reason_code' AS reason_code,
                extract(epoch FROM (data->>'started_at')::timestamptz - (data->>'created_at')::timestamptz)::float8
                    AS queue_s,
                CASE WHEN status IN ('completed', 'failed', 'canceled') THEN
                    extract(epoch FROM (data->>'finished_at')::timestamptz - (data->>'started_at')::timestamptz)::float8
                END AS run_s,
                extract(epoch FROM (data->>'started_at')::timestamptz
                    - (data->>'session_last_job_completed')::timestamptz)::float8 AS gap_s
         FROM events WHERE seq > $1 AND seq <= $2",
    )
    .bind(last)
    .bind(new_last)
    .fetch_all(&mut *conn)
    .await?;
    crate::notify(conn, crate::channel::EVENTS_SEQUENCED, &new_last.to_string()).await?;
    if deliveries > 0 {
        crate::notify(conn, crate::channel::DELIVERIES, "").await?;
    }
    Ok(Sequenced { events: numbered, last_seq: new_last, deliveries, busy: false, stats })
}

/// Whether committed events wait for a `seq` (a probe of the partial index).
pub async fn unsequenced(conn: &mut PgConnection) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM events WHERE seq IS NULL)").fetch_one(conn).await
}

/// The last `seq` given.
pub async fn last_seq(conn: &mut PgConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT last_seq FROM event_sequencer WHERE id = 1").fetch_one(conn).await
}

/// Events after `after` (by `seq`) that match `f`, oldest first, at most `limit`.
pub async fn after(conn: &mut PgConnection, f: &EventFilter, after: i64, limit: i64) -> sqlx::Result<Vec<EventRow>> {
    let mut q: QueryBuilder<'_, Postgres> = QueryBuilder::new(
        "SELECT seq, project, type, job_id, session_id, device, status, reason, data, created_at FROM events
         WHERE seq IS NOT NULL AND project = ",
    );
    q.push_bind(f.project.clone()).push(" AND seq > ").push_bind(after);
    if let Some(v) = f.job_id {
        q.push(" AND job_id = ").push_bind(v);
    }
    if let Some(v) = f.session_id {
        q.push(" AND session_id = ").push_bind(v);
    }
    if let Some(v) = &f.device {
        q.push(" AND device = ").push_bind(v.clone());
    }
    if !f.types.is_empty() {
        q.push(" AND type = ANY(").push_bind(f.types.clone()).push(")");
    }
    q.push(" ORDER BY seq LIMIT ").push_bind(limit);
    q.build_query_as().fetch_all(conn).await
}

/// One event by `seq`, if it is this project's.
pub async fn get(conn: &mut PgConnection, project: &str, seq: i64) -> sqlx::Result<Option<EventRow>> {
    sqlx::query_as(
        "SELECT seq, project, type, job_id, session_id, device, status, reason, data, created_at FROM events
         WHERE seq = $1 AND project = $2",
    )
    .bind(seq)
    .bind(project)
    .fetch_optional(conn)
    .await
}

/// Delete sequenced events older than `before` that no pending delivery still needs, and
/// finished deliveries older than `before`. Returns (events, deliveries) deleted.
pub async fn prune(conn: &mut PgConnection, before: DateTime<Utc>) -> sqlx::Result<(u64, u64)> {
    let deliveries = sqlx::query("DELETE FROM webhook_deliveries WHERE status <> 'pending' AND finished_at < $1")
        .bind(before)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    let events = sqlx::query(
        "DELETE FROM events e WHERE e.created_at < $1 AND e.seq IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_seq = e.seq AND d.status = 'pending')",
    )
    .bind(before)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok((events, deliveries))
}

/// The cluster-wide gauges, read only when `replica` holds the leader lease (else `None`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterGauges {
    pub queued: Vec<(String, i64)>,
    pub running: Vec<(String, i64)>,
    pub sessions: Vec<(String, i64)>,
    pub deliveries_pending: i64,
}

pub async fn cluster_gauges(conn: &mut PgConnection, replica: Uuid) -> sqlx::Result<Option<ClusterGauges>> {
    let leader: bool =
        sqlx::query_scalar("SELECT COALESCE(holder = $1 AND expires_at > now(), false) FROM leader_lease WHERE id = 1")
            .bind(replica)
            .fetch_optional(&mut *conn)
            .await?
            .unwrap_or(false);
    if !leader {
        return Ok(None);
    }
    // Every device appears (0 when idle), so that a series does not vanish.
    let jobs: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT d.name,
                (SELECT count(*) FROM job_queue q WHERE q.device = d.name),
                (SELECT count(*) FROM jobs j WHERE j.device = d.name AND j.status = 'running')
         FROM devices d ORDER BY d.name",
    )
    .fetch_all(&mut *conn)
    .await?;
    let sessions: Vec<(String, i64)> = sqlx::query_as(
        "SELECT s.state, (SELECT count(*) FROM sessions x WHERE x.state = s.state)
         FROM unnest(ARRAY['pending', 'active', 'inactive', 'closed']) AS s(state)",
    )
    .fetch_all(&mut *conn)
    .await?;
    let deliveries_pending = crate::webhooks::pending_count(conn).await?;
    Ok(Some(ClusterGauges {
        queued: jobs.iter().map(|(d, q, _)| (d.clone(), *q)).collect(),
        running: jobs.iter().map(|(d, _, r)| (d.clone(), *r)).collect(),
        sessions,
        deliveries_pending,
    }))
}
