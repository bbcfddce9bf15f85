//! Projects and API tokens (stored as SHA-256 hashes).

use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenRow {
    pub id: Uuid,
    pub project: String,
    pub user_name: String,
    pub is_admin: bool,
}

pub async fn ensure_project(conn: &mut PgConnection, name: &str) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO projects (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .execute(conn)
        .await?;
    Ok(())
}

/// Insert a token hash; `ON CONFLICT DO NOTHING` makes re-registering the configured admin
/// token at every start harmless.
pub async fn insert(conn: &mut PgConnection, hash: &[u8], project: &str, user: &str, admin: bool) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO tokens (id, token_hash, project, user_name, is_admin) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (token_hash) DO NOTHING",
    )
    .bind(Uuid::now_v7())
    .bind(hash)
    .bind(project)
    .bind(user)
    .bind(admin)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn find_by_hash(conn: &mut PgConnection, hash: &[u8]) -> sqlx::Result<Option<TokenRow>> {
    sqlx::query_as("SELECT id, project, user_name, is_admin FROM tokens WHERE token_hash = $1 AND revoked_at IS NULL")
        .bind(hash)
        .fetch_optional(conn)
        .await
}

/// Device seconds a project has used (rule 13).
pub async fn usage(conn: &mut PgConnection, project: &str) -> sqlx::Result<f64> {
    sqlx::query_scalar("SELECT COALESCE(SUM(seconds), 0)::float8 FROM device_usage WHERE project = $1")
        .bind(project)
        .fetch_one(conn)
        .await
}
