//! Webhook subscriptions and their outbox (`webhook_deliveries`): the rows the sequencer queues
//! per (subscription, event), claimed by any replica with SKIP LOCKED under a lease, in event
//! order per subscription.

use crate::events::EventRow;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct WebhookRow {
    pub id: Uuid,
    pub project: String,
    pub url: String,
    pub event_types: Vec<String>,
    pub secret: String,
    pub job_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub format: String,
    pub created_at: DateTime<Utc>,
}

pub struct NewWebhook<'a> {
    pub id: Uuid,
    pub project: &'a str,
    pub url: &'a str,
    pub event_types: &'a [String],
    pub secret: &'a str,
    pub job_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    /// `event` or `pasqal_job`.
    pub format: &'a str,
}

const COLUMNS: &str = "id, project, url, event_types, secret, job_id, session_id, format, created_at";

pub async fn insert(conn: &mut PgConnection, w: NewWebhook<'_>) -> sqlx::Result<WebhookRow> {
    sqlx::query_as(&format!(
        "INSERT INTO webhooks (id, project, url, event_types, secret, job_id, session_id, format)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"
    ))
    .bind(w.id)
    .bind(w.project)
    .bind(w.url)
    .bind(w.event_types)
    .bind(w.secret)
    .bind(w.job_id)
    .bind(w.session_id)
    .bind(w.format)
    .fetch_one(conn)
    .await
}

/// A project's live subscriptions, newest first, at most `limit`, older than `cursor`.
pub async fn list(
    conn: &mut PgConnection,
    project: &str,
    cursor: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> sqlx::Result<Vec<WebhookRow>> {
    let (t, id) = cursor.unzip();
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM webhooks WHERE project = $1 AND deleted_at IS NULL
           AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
         ORDER BY created_at DESC, id DESC LIMIT $4"
    ))
    .bind(project)
    .bind(t)
    .bind(id)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// A live subscription of this project.
pub async fn get(conn: &mut PgConnection, project: &str, id: Uuid) -> sqlx::Result<Option<WebhookRow>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM webhooks WHERE id = $1 AND project = $2 AND deleted_at IS NULL"))
        .bind(id)
        .bind(project)
        .fetch_optional(conn)
        .await
}

/// Delete a subscription: no new deliveries; its pending ones are marked failed (`deleted`).
pub async fn delete(conn: &mut PgConnection, project: &str, id: Uuid) -> sqlx::Result<bool> {
    let done =
        sqlx::query("UPDATE webhooks SET deleted_at = now() WHERE id = $1 AND project = $2 AND deleted_at IS NULL")
            .bind(id)
            .bind(project)
            .execute(&mut *conn)
            .await?
            .rows_affected()
            > 0;
    if done {
        sqlx::query(
            "UPDATE webhook_deliveries SET status = 'failed', last_error = 'subscription deleted', finished_at = now(),
                    locked_by = NULL, locked_until = NULL
             WHERE webhook_id = $1 AND status = 'pending'",
        )
        .bind(id)
        .execute(conn)
        .await?;
    }
    Ok(done)
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: i64,
    pub webhook_id: Uuid,
    pub event_seq: i64,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

const DELIVERY_COLUMNS: &str =
    "id, webhook_id, event_seq, status, attempts, next_attempt_at, last_status, last_error, created_at, finished_at";

/// A subscription's deliveries, newest first, at most `limit`, older than `before` (an id).
pub async fn deliveries(
    conn: &mut PgConnection,
    webhook_id: Uuid,
    status: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<DeliveryRow>> {
    sqlx::query_as(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = $1
           AND ($2::text IS NULL OR status = $2) AND ($3::bigint IS NULL OR id < $3)
         ORDER BY id DESC LIMIT $4"
    ))
    .bind(webhook_id)
    .bind(status)
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// A delivery claimed for sending: the row, its subscription and its event.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub delivery: DeliveryRow,
    pub webhook: WebhookRow,
    pub event: EventRow,
}

/// Claim up to `limit` deliveries that are due, each the oldest pending one of its subscription,
/// for `lease_ms` (SKIP LOCKED: replicas never claim the same row at once; a lease that runs out
/// lets another replica deliver it again). Each claim counts as an attempt.
pub async fn claim(
    conn: &mut PgConnection,
    owner: Uuid,
    lease_ms: i64,
    limit: i64,
) -> sqlx::Result<Vec<ClaimedDelivery>> {
    let rows: Vec<DeliveryRow> = sqlx::query_as(&format!(
        "WITH heads AS (
            SELECT DISTINCT ON (webhook_id) id FROM webhook_deliveries WHERE status = 'pending'
            ORDER BY webhook_id, event_seq),
         ready AS (
            SELECT d.id FROM webhook_deliveries d JOIN heads h ON h.id = d.id
            WHERE d.status = 'pending' AND d.next_attempt_at <= now()
              AND (d.locked_until IS NULL OR d.locked_until < now())
            ORDER BY d.next_attempt_at LIMIT $3
            FOR UPDATE OF d SKIP LOCKED)
         UPDATE webhook_deliveries d SET locked_by = $1, attempts = attempts + 1,
                locked_until = now() + make_interval(secs => $2::float8 / 1000)
         FROM ready WHERE d.id = ready.id RETURNING {}",
        DELIVERY_COLUMNS.split(", ").map(|c| format!("d.{c}")).collect::<Vec<_>>().join(", ")
    ))
    .bind(owner)
    .bind(lease_ms)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for d in rows {
        let webhook: WebhookRow = sqlx::query_as(&format!("SELECT {COLUMNS} FROM webhooks WHERE id = $1"))
            .bind(d.webhook_id)
            .fetch_one(&mut *conn)
            .await?;
        let event: EventRow = sqlx::query_as(
            "SELECT seq, project, type, job_id, session_id, device, status, reason, data, created_at FROM events
             WHERE seq = $1",
        )
        .bind(d.event_seq)
        .fetch_one(&mut *conn)
        .await?;
        out.push(ClaimedDelivery { delivery: d, webhook, event });
    }
    Ok(out)
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Delivered {
        status: i32,
    },
    /// Try again at `retry_at`.
    Retry {
        status: Option<i32>,
        error: String,
        retry_at: DateTime<Utc>,
    },
    /// Give up: the delivery is marked failed.
    Failed {
        status: Option<i32>,
        error: String,
    },
}

/// Record an attempt's outcome, only while this owner's claim (attempt) still holds. Returns
/// whether it was recorded.
pub async fn finish(
    conn: &mut PgConnection,
    id: i64,
    owner: Uuid,
    attempts: i32,
    outcome: &Outcome,
) -> sqlx::Result<bool> {
    let (status, code, error, retry_at) = match outcome {
        Outcome::Delivered { status } => ("delivered", Some(*status), None, None),
        Outcome::Retry { status, error, retry_at } => ("pending", *status, Some(error.as_str()), Some(*retry_at)),
        Outcome::Failed { status, error } => ("failed", *status, Some(error.as_str()), None),
    };
    let n = sqlx::query(
        "UPDATE webhook_deliveries SET status = $4, last_status = $5, last_error = $6,
                next_attempt_at = COALESCE($7, next_attempt_at), locked_by = NULL, locked_until = NULL,
                finished_at = CASE WHEN $4 = 'pending' THEN NULL ELSE now() END
         WHERE id = $1 AND locked_by = $2 AND attempts = $3 AND status = 'pending'",
    )
    .bind(id)
    .bind(owner)
    .bind(attempts)
    .bind(status)
    .bind(code)
    .bind(error)
    .bind(retry_at)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n > 0)
}

/// Delivery counts by status (for metrics).
pub async fn pending_count(conn: &mut PgConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'").fetch_one(conn).await
}

/// Lock a project's row (serialises its subscription-count check).
pub async fn lock_project(conn: &mut PgConnection, project: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT 1 FROM projects WHERE name = $1 FOR NO KEY UPDATE").bind(project).execute(conn).await?;
    Ok(())
}
