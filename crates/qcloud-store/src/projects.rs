//! Projects as the vendor facades see them: the stable UUID of each (IBM instance CRN, Pasqal
//! `project_id`), its quota, and the signing keys the facades share across replicas.

use sqlx::PgConnection;
use uuid::Uuid;

/// A project's stable identity and quota.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProjectRow {
    pub name: String,
    pub id: Uuid,
    pub quota_seconds: Option<f64>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

pub async fn by_name(conn: &mut PgConnection, name: &str) -> sqlx::Result<Option<ProjectRow>> {
    sqlx::query_as("SELECT name, id, quota_seconds, created_at FROM projects WHERE name = $1")
        .bind(name)
        .fetch_optional(conn)
        .await
}

/// A project with the device seconds it has used (the sum of its usage rows), in one query.
pub async fn by_name_with_usage(conn: &mut PgConnection, name: &str) -> sqlx::Result<Option<(ProjectRow, f64)>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        project: ProjectRow,
        used_seconds: f64,
    }
    let row: Option<Row> = sqlx::query_as(
        "SELECT p.name, p.id, p.quota_seconds, p.created_at,
                COALESCE((SELECT SUM(u.seconds) FROM device_usage u WHERE u.project = p.name), 0)::float8
                    AS used_seconds
         FROM projects p WHERE p.name = $1",
    )
    .bind(name)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| (r.project, r.used_seconds)))
}

pub async fn by_id(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<ProjectRow>> {
    sqlx::query_as("SELECT name, id, quota_seconds, created_at FROM projects WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// The secret stored under `name`; `candidate` is stored first when there is none. Race-free:
/// concurrent callers insert with `ON CONFLICT DO NOTHING` and all read the one row that won.
pub async fn signing_key(conn: &mut PgConnection, name: &str, candidate: &[u8]) -> sqlx::Result<Vec<u8>> {
    sqlx::query("INSERT INTO signing_keys (name, secret) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .bind(candidate)
        .execute(&mut *conn)
        .await?;
    sqlx::query_scalar("SELECT secret FROM signing_keys WHERE name = $1").bind(name).fetch_one(conn).await
}
