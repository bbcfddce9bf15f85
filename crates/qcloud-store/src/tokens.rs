//! Projects and API tokens (stored as SHA-256 hashes; the token itself is never stored).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// What authentication needs of a token.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenRow {
    pub id: Uuid,
    pub project: String,
    pub user_name: String,
    pub is_admin: bool,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A token as an admin sees it: never the token nor its hash.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TokenInfo {
    pub id: Uuid,
    pub project: String,
    pub user_name: String,
    pub is_admin: bool,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Key of the advisory lock that serialises the first-admin-token check of replicas starting
/// together ("qctokens" in ASCII).
const FIRST_ADMIN_LOCK: i64 = 0x7163_746f_6b65_6e73;

pub async fn ensure_project(conn: &mut PgConnection, name: &str) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO projects (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .execute(conn)
        .await?;
    Ok(())
}

/// Insert a token hash, valid for `expires_in_ms` from now by the database's clock (`None`: no
/// expiry). Returns the new token, or `None` when the hash was already there (`ON CONFLICT DO
/// NOTHING` makes re-registering the configured admin token at every start harmless).
pub async fn insert(
    conn: &mut PgConnection,
    hash: &[u8],
    project: &str,
    user: &str,
    admin: bool,
    expires_in_ms: Option<i64>,
) -> sqlx::Result<Option<TokenInfo>> {
    sqlx::query_as(&format!(
        "INSERT INTO tokens (id, token_hash, project, user_name, is_admin, expires_at)
         VALUES ($1, $2, $3, $4, $5, now() + $6::bigint * interval '1 millisecond')
         ON CONFLICT (token_hash) DO NOTHING RETURNING {INFO_COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(hash)
    .bind(project)
    .bind(user)
    .bind(admin)
    .bind(expires_in_ms)
    .fetch_optional(conn)
    .await
}

/// The token with this hash, if it is neither revoked nor expired (by the database's clock).
pub async fn find_by_hash(conn: &mut PgConnection, hash: &[u8]) -> sqlx::Result<Option<TokenRow>> {
    sqlx::query_as(
        "SELECT id, project, user_name, is_admin, expires_at FROM tokens
         WHERE token_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())",
    )
    .bind(hash)
    .fetch_optional(conn)
    .await
}

const INFO_COLUMNS: &str = "id, project, user_name, is_admin, created_at, expires_at, revoked_at";

/// Every token, newest first.
pub async fn list(conn: &mut PgConnection) -> sqlx::Result<Vec<TokenInfo>> {
    sqlx::query_as(&format!("SELECT {INFO_COLUMNS} FROM tokens ORDER BY created_at DESC, id DESC"))
        .fetch_all(conn)
        .await
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<TokenInfo>> {
    sqlx::query_as(&format!("SELECT {INFO_COLUMNS} FROM tokens WHERE id = $1")).bind(id).fetch_optional(conn).await
}

/// Revoke a token (a token already revoked keeps its first revocation time). `None`: no such
/// token.
pub async fn revoke(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<TokenInfo>> {
    sqlx::query_as(&format!(
        "UPDATE tokens SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1 RETURNING {INFO_COLUMNS}"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Take the first-admin-token lock until the end of the transaction.
pub async fn lock_first_admin(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(FIRST_ADMIN_LOCK).execute(conn).await?;
    Ok(())
}

/// Whether an admin token that is neither revoked nor expired exists.
pub async fn active_admin_exists(conn: &mut PgConnection) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM tokens WHERE is_admin AND revoked_at IS NULL
                        AND (expires_at IS NULL OR expires_at > now()))",
    )
    .fetch_one(conn)
    .await
}

/// Device seconds a project has used (rule 13).
pub async fn usage(conn: &mut PgConnection, project: &str) -> sqlx::Result<f64> {
    sqlx::query_scalar("SELECT COALESCE(SUM(seconds), 0)::float8 FROM device_usage WHERE project = $1")
        .bind(project)
        .fetch_one(conn)
        .await
}
