//! Job queries of the vendor facades: listing with offset paging and a total count (IBM's
//! `GET /jobs`), tag updates and deletion.

use crate::jobs::Job;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Postgres, QueryBuilder};
use uuid::Uuid;

/// Filters of a counted job listing. Every field narrows the result.
#[derive(Debug, Default, Clone)]
pub struct JobSearch {
    pub device: Option<String>,
    pub program: Option<String>,
    pub session_id: Option<Uuid>,
    /// Every one of these tags.
    pub tags: Vec<String>,
    /// `Some(true)`: queued or running; `Some(false)`: finished.
    pub pending: Option<bool>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    /// Oldest first (default newest first).
    pub ascending: bool,
    pub offset: i64,
    pub limit: i64,
}

fn push_filters(q: &mut QueryBuilder<'_, Postgres>, project: &str, f: &JobSearch) {
    q.push(" WHERE project = ").push_bind(project.to_owned());
    if let Some(v) = &f.device {
        q.push(" AND device = ").push_bind(v.clone());
    }
    if let Some(v) = &f.program {
        q.push(" AND program = ").push_bind(v.clone());
    }
    if let Some(v) = f.session_id {
        q.push(" AND session_id = ").push_bind(v);
    }
    if !f.tags.is_empty() {
        q.push(" AND tags @> ").push_bind(f.tags.clone());
    }
    match f.pending {
        Some(true) => {
            q.push(" AND status IN ('queued', 'running')");
        }
        Some(false) => {
            q.push(" AND status IN ('completed', 'failed', 'canceled')");
        }
        None => {}
    }
    if let Some(v) = f.created_after {
        q.push(" AND created_at >= ").push_bind(v);
    }
    if let Some(v) = f.created_before {
        q.push(" AND created_at <= ").push_bind(v);
    }
}

/// One page of the project's jobs matching `f`, and how many match in all.
pub async fn search(conn: &mut PgConnection, project: &str, f: &JobSearch) -> sqlx::Result<(Vec<Job>, i64)> {
    let mut q = QueryBuilder::new("SELECT count(*) FROM jobs");
    push_filters(&mut q, project, f);
    let count: i64 = q.build_query_scalar().fetch_one(&mut *conn).await?;
    let mut q = QueryBuilder::new("SELECT * FROM jobs");
    push_filters(&mut q, project, f);
    q.push(if f.ascending { " ORDER BY created_at, id" } else { " ORDER BY created_at DESC, id DESC" });
    q.push(" LIMIT ").push_bind(f.limit).push(" OFFSET ").push_bind(f.offset);
    let rows = q.build_query_as().fetch_all(conn).await?;
    Ok((rows, count))
}

/// Replace a job's tags; `false` when the project has no such job.
pub async fn set_tags(conn: &mut PgConnection, project: &str, id: Uuid, tags: &[String]) -> sqlx::Result<bool> {
    Ok(sqlx::query("UPDATE jobs SET tags = $3 WHERE id = $1 AND project = $2")
        .bind(id)
        .bind(project)
        .bind(tags)
        .execute(conn)
        .await?
        .rows_affected()
        == 1)
}

/// Delete a finished job of the project (its result goes with it; jobs derived from it keep
/// running without the link). `false` when there is no such finished job.
pub async fn delete_finished(conn: &mut PgConnection, project: &str, id: Uuid) -> sqlx::Result<bool> {
    sqlx::query("UPDATE jobs SET parent_id = NULL WHERE parent_id = $1").bind(id).execute(&mut *conn).await?;
    Ok(sqlx::query("DELETE FROM jobs WHERE id = $1 AND project = $2 AND status IN ('completed', 'failed', 'canceled')")
        .bind(id)
        .bind(project)
        .execute(conn)
        .await?
        .rows_affected()
        == 1)
}
