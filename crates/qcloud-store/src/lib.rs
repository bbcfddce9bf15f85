//! qcloud-store: Postgres persistence through sqlx. Typed records (built from `qcloud-core` types:
//! no state string leaves this crate), the queries of every resource, migrations, LISTEN/NOTIFY
//! channel names and the leader lease. Functions take a `&mut PgConnection` so the service layer
//! decides the transaction boundaries; nothing here decides a scheduling rule.
#![forbid(unsafe_code)]

pub mod agents;
pub mod devices;
pub mod events;
pub mod job_search;
pub mod jobs;
pub mod lease;
pub mod pasqal;
pub mod projects;
pub mod sessions;
pub mod tokens;
pub mod webhooks;

pub use sqlx::postgres::{PgListener, PgNotification};
pub use sqlx::{Error, PgConnection, PgPool, Postgres, Transaction};

use sqlx::postgres::PgRow;
use sqlx::Row;

/// A stored name of a core enumeration, decoded (a name no variant has is a decode error).
pub(crate) fn parse_text<T>(col: &str, s: &str) -> sqlx::Result<T>
where
    T: std::str::FromStr<Err = qcloud_core::UnknownValue>,
{
    s.parse()
        .map_err(|e: qcloud_core::UnknownValue| sqlx::Error::ColumnDecode { index: col.into(), source: Box::new(e) })
}

/// A text column holding one of a core enumeration's names.
pub(crate) fn enum_col<T>(row: &PgRow, col: &str) -> sqlx::Result<T>
where
    T: std::str::FromStr<Err = qcloud_core::UnknownValue>,
{
    parse_text(col, &row.try_get::<String, _>(col)?)
}

/// A nullable text column holding one of a core enumeration's names.
pub(crate) fn opt_enum_col<T>(row: &PgRow, col: &str) -> sqlx::Result<Option<T>>
where
    T: std::str::FromStr<Err = qcloud_core::UnknownValue>,
{
    row.try_get::<Option<String>, _>(col)?.map(|s| parse_text(col, &s)).transpose()
}

/// A bigint column of milliseconds.
pub(crate) fn ms_col(row: &PgRow, col: &str) -> sqlx::Result<chrono::Duration> {
    Ok(chrono::Duration::milliseconds(row.try_get::<i64, _>(col)?))
}

/// The embedded migrations (`migrations/` at the repository root).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// NOTIFY channels.
pub mod channel {
    /// Something changed on a device (payload: device name): the leader should look at it.
    pub const WAKE: &str = "qcloud_wake";
    /// Jobs were assigned without an owner: workers should claim.
    pub const RUN: &str = "qcloud_run";
    /// A running job should stop (payload: job id).
    pub const CANCEL: &str = "qcloud_cancel";
    /// A token was revoked (payload: token id): every replica drops it from its token cache.
    pub const TOKENS: &str = "qcloud_tokens";
    /// Events were numbered up to the payload's `seq`: event streams should read.
    pub const EVENTS_SEQUENCED: &str = "qcloud_events_seq";
    /// Webhook deliveries were queued or became due: deliverers should claim.
    pub const DELIVERIES: &str = "qcloud_deliveries";
}

/// What every listing shares: a tag, a creation range, the keyset cursor and the page size.
/// Rows come newest first, by (created_at, id).
#[derive(Debug, Default, Clone)]
pub struct Window {
    pub tag: Option<String>,
    pub created_after: Option<chrono::DateTime<chrono::Utc>>,
    pub created_before: Option<chrono::DateTime<chrono::Utc>>,
    /// Keyset cursor: rows strictly older than (created_at, id).
    pub cursor: Option<(chrono::DateTime<chrono::Utc>, uuid::Uuid)>,
    pub limit: i64,
}

/// Append a [`Window`]'s conditions, order and limit to a list query of a table with `tags`,
/// `created_at` and `id`.
pub(crate) fn push_window(q: &mut sqlx::QueryBuilder<'_, Postgres>, w: &Window) {
    if let Some(v) = &w.tag {
        // Containment, not `= ANY(tags)`: `@>` is what the GIN index `jobs_tags` serves.
        q.push(" AND tags @> ARRAY[").push_bind(v.clone()).push("]::text[]");
    }
    if let Some(v) = w.created_after {
        q.push(" AND created_at >= ").push_bind(v);
    }
    if let Some(v) = w.created_before {
        q.push(" AND created_at < ").push_bind(v);
    }
    if let Some((t, id)) = w.cursor {
        q.push(" AND (created_at, id) < (").push_bind(t).push(", ").push_bind(id).push(")");
    }
    q.push(" ORDER BY created_at DESC, id DESC LIMIT ").push_bind(w.limit);
}

/// Queue a notification; Postgres delivers it when the transaction commits.
pub async fn notify(conn: &mut PgConnection, channel: &str, payload: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)").bind(channel).bind(payload).execute(conn).await?;
    Ok(())
}

/// Database time, so that every replica uses one clock for TTL rules.
pub async fn now(conn: &mut PgConnection) -> sqlx::Result<chrono::DateTime<chrono::Utc>> {
    sqlx::query_scalar("SELECT now()").fetch_one(conn).await
}

/// Whether every embedded migration has been applied (for `/readyz`).
pub async fn migrations_applied(pool: &PgPool) -> sqlx::Result<bool> {
    let applied: Vec<i64> =
        match sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success").fetch_all(pool).await {
            Ok(v) => v,
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => return Ok(false),
            Err(e) => return Err(e),
        };
    Ok(MIGRATOR.iter().all(|m| applied.contains(&m.version)))
}
