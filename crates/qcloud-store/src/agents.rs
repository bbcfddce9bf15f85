//! The agent driver's rows: device tokens, the agent's contact with its device, and the leases of
//! jobs an agent runs (claimed per device, extended and finished per job, fenced by epoch).

use crate::devices::{Device, DEVICE_COLUMNS};
use crate::jobs::{Claimed, Job};
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::PgConnection;
use uuid::Uuid;

/// A device token as admins see it: never the token nor its hash.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeviceTokenInfo {
    pub id: Uuid,
    pub device: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

const INFO: &str = "id, device, created_at, revoked_at";

pub async fn insert_token(conn: &mut PgConnection, hash: &[u8], device: &str) -> sqlx::Result<Option<DeviceTokenInfo>> {
    sqlx::query_as(&format!(
        "INSERT INTO device_tokens (id, token_hash, device) VALUES ($1, $2, $3)
         ON CONFLICT (token_hash) DO NOTHING RETURNING {INFO}"
    ))
    .bind(Uuid::now_v7())
    .bind(hash)
    .bind(device)
    .fetch_optional(conn)
    .await
}

/// The device token with this hash, unless revoked.
pub async fn find_token(conn: &mut PgConnection, hash: &[u8]) -> sqlx::Result<Option<DeviceTokenInfo>> {
    sqlx::query_as(&format!("SELECT {INFO} FROM device_tokens WHERE token_hash = $1 AND revoked_at IS NULL"))
        .bind(hash)
        .fetch_optional(conn)
        .await
}

pub async fn list_tokens(conn: &mut PgConnection, device: &str) -> sqlx::Result<Vec<DeviceTokenInfo>> {
    sqlx::query_as(&format!("SELECT {INFO} FROM device_tokens WHERE device = $1 ORDER BY created_at DESC, id DESC"))
        .bind(device)
        .fetch_all(conn)
        .await
}

/// Revoke a device token (a revoked token keeps its first revocation time); `None`: no such token.
pub async fn revoke_token(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<DeviceTokenInfo>> {
    sqlx::query_as(&format!(
        "UPDATE device_tokens SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1 RETURNING {INFO}"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Record that the device's agent was heard from. Written at most once a second per device (the
/// row is the device's dispatch lock), or at once when the agent was disconnected. Returns
/// whether it was disconnected (then the device may take assignments again).
pub async fn touch(conn: &mut PgConnection, device: &str) -> sqlx::Result<bool> {
    let was_disconnected: Option<bool> = sqlx::query_scalar(
        "UPDATE devices d SET agent_seen_at = now(), agent_connected = true
         FROM (SELECT name, agent_connected AS was FROM devices WHERE name = $1) o
         WHERE d.name = o.name
           AND (NOT d.agent_connected OR d.agent_seen_at IS NULL OR d.agent_seen_at < now() - interval '1 second')
         RETURNING NOT o.was",
    )
    .bind(device)
    .fetch_optional(conn)
    .await?;
    Ok(was_disconnected.unwrap_or(false))
}

/// Agent devices whose agent has not been heard from for `after_ms`: disconnected (no new
/// assignments until it returns). Returns their names.
pub async fn disconnect_stale(conn: &mut PgConnection, after_ms: i64) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "UPDATE devices SET agent_connected = false
         WHERE driver = 'agent' AND agent_connected
           AND agent_seen_at < now() - make_interval(secs => $1::float8 / 1000)
         RETURNING name",
    )
    .bind(after_ms)
    .fetch_all(conn)
    .await
}

/// Store the agent's report: its status and what it says about the device (a key it leaves out
/// or sends as null keeps its earlier value).
pub async fn report(
    conn: &mut PgConnection,
    device: &str,
    status: &str,
    report: &serde_json::Value,
) -> sqlx::Result<Option<Device>> {
    sqlx::query_as(
        "UPDATE devices SET agent_status = $2, agent_report = COALESCE(agent_report, '{}'::jsonb) || jsonb_strip_nulls($3),
                agent_seen_at = now(), agent_connected = true,
                updated_at = now()
         WHERE name = $1 RETURNING *",
    )
    .bind(device)
    .bind(status)
    .bind(Json(report))
    .fetch_optional(conn)
    .await
}

/// Claim the job the scheduler started on `device` that no agent holds (at most one runs per
/// device), leased to `owner` for `lease_ms`; its maximum execution time counts from now.
pub async fn claim(conn: &mut PgConnection, device: &str, owner: Uuid, lease_ms: i64) -> sqlx::Result<Option<Claimed>> {
    sqlx::query_as(&format!(
        "WITH claimed AS (
            UPDATE jobs SET lease_owner = $2, lease_epoch = lease_epoch + 1, attempt = attempt + 1,
                   lease_expires_at = now() + make_interval(secs => $3::float8 / 1000),
                   claimed_at = clock_timestamp(), progress_message = NULL, progress_fraction = NULL
            WHERE id IN (SELECT id FROM jobs WHERE device = $1 AND status = 'running' AND lease_owner IS NULL
                         ORDER BY started_at LIMIT 1 FOR NO KEY UPDATE SKIP LOCKED)
            RETURNING *)
         SELECT claimed.*, s.mode AS session_mode, {DEVICE_COLUMNS}
         FROM claimed JOIN devices d ON d.name = claimed.device LEFT JOIN sessions s ON s.id = claimed.session_id"
    ))
    .bind(device)
    .bind(owner)
    .bind(lease_ms)
    .fetch_optional(conn)
    .await
}

/// A running job of `device` whose lease is (epoch, some owner): the job an agent holds.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Held {
    #[sqlx(flatten)]
    pub job: Job,
    /// Whether its maximum execution time, counted from the claim, has passed (database clock).
    pub overrun: bool,
}

/// Extend the lease of a job an agent holds, when (job, epoch) is still its lease. `None`: lost.
pub async fn extend(
    conn: &mut PgConnection,
    device: &str,
    id: Uuid,
    epoch: i64,
    lease_ms: i64,
) -> sqlx::Result<Option<Held>> {
    sqlx::query_as(
        "UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $4::float8 / 1000)
         WHERE id = $2 AND device = $1 AND status = 'running' AND lease_owner IS NOT NULL AND lease_epoch = $3
         RETURNING *, (claimed_at + max_execution_ms * interval '1 millisecond' < clock_timestamp()) AS overrun",
    )
    .bind(device)
    .bind(id)
    .bind(epoch)
    .bind(lease_ms)
    .fetch_optional(conn)
    .await
}

/// The job an agent holds by (job, epoch), without changing it. `None`: lost.
pub async fn held(conn: &mut PgConnection, device: &str, id: Uuid, epoch: i64) -> sqlx::Result<Option<Held>> {
    sqlx::query_as(
        "SELECT *, (claimed_at + max_execution_ms * interval '1 millisecond' < clock_timestamp()) AS overrun
         FROM jobs WHERE id = $2 AND device = $1 AND status = 'running' AND lease_owner IS NOT NULL
           AND lease_epoch = $3",
    )
    .bind(device)
    .bind(id)
    .bind(epoch)
    .fetch_optional(conn)
    .await
}

/// Progress of a job an agent holds; `false`: the lease is lost.
pub async fn progress(
    conn: &mut PgConnection,
    device: &str,
    id: Uuid,
    epoch: i64,
    message: Option<&str>,
    fraction: Option<f64>,
) -> sqlx::Result<bool> {
    Ok(sqlx::query(
        "UPDATE jobs SET progress_message = COALESCE($4, progress_message),
                progress_fraction = COALESCE($5, progress_fraction)
         WHERE id = $2 AND device = $1 AND status = 'running' AND lease_owner IS NOT NULL AND lease_epoch = $3",
    )
    .bind(device)
    .bind(id)
    .bind(epoch)
    .bind(message)
    .bind(fraction)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// Seconds between the claim of a job and now (database clock): its device time on the agent.
pub async fn seconds_since_claim(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<f64> {
    Ok(sqlx::query_scalar::<_, Option<f64>>(
        "SELECT EXTRACT(EPOCH FROM clock_timestamp() - claimed_at)::float8 FROM jobs WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?
    .flatten()
    .unwrap_or(0.0)
    .max(0.0))
}
