//! Job commands of the vendor facades: a counted listing with offset paging and every IBM
//! filter, the stored input of a job, tag updates and deletion.

use crate::auth::Principal;
use crate::error::{Result, ServiceError};
use crate::jobs::{job_view, JobView};
use crate::validate;
use crate::Service;
use chrono::{DateTime, Utc};
use qcloud_core::JobStatus;
use tracing::instrument;
use uuid::Uuid;

/// List the caller's jobs with a total count (IBM `GET /jobs`).
#[derive(Debug, Clone, Default)]
pub struct SearchJobs {
    pub device: Option<String>,
    pub program: Option<String>,
    pub session_id: Option<Uuid>,
    /// Jobs carrying every one of these tags.
    pub tags: Vec<String>,
    /// `Some(true)`: queued or running; `Some(false)`: finished.
    pub pending: Option<bool>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub ascending: bool,
    /// Rows to skip (default 0).
    pub offset: Option<i64>,
    /// Page size, 1 to [`validate::MAX_PAGE`] (default [`validate::DEFAULT_PAGE`]).
    pub limit: Option<i64>,
}

/// One page of jobs and how many match in all.
#[derive(Debug, Clone)]
pub struct CountedPage {
    pub items: Vec<JobView>,
    pub count: i64,
}

/// Most rows a listing may skip.
pub const MAX_OFFSET: i64 = 1_000_000;

impl Service {
    pub async fn search_jobs(&self, who: &Principal, q: SearchJobs) -> Result<CountedPage> {
        validate::opt_text("backend", q.device.as_deref())?;
        validate::opt_text("program", q.program.as_deref())?;
        q.tags.iter().try_for_each(|t| validate::text("tags", t))?;
        let limit = validate::page_limit(q.limit)?;
        let offset = q.offset.unwrap_or(0);
        if !(0..=MAX_OFFSET).contains(&offset) {
            return Err(ServiceError::invalid(
                "invalid_field",
                format!("offset must be between 0 and {MAX_OFFSET}, got {offset}"),
            ));
        }
        let f = qcloud_store::job_search::JobSearch {
            device: q.device,
            program: q.program,
            session_id: q.session_id,
            tags: q.tags,
            pending: q.pending,
            created_after: q.created_after,
            created_before: q.created_before,
            ascending: q.ascending,
            offset,
            limit,
        };
        let mut conn = self.pool.acquire().await?;
        let (rows, count) = qcloud_store::job_search::search(&mut conn, &who.project, &f).await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            let pos = if row.status == JobStatus::Queued {
                Some(qcloud_store::jobs::queue_position(&mut conn, &row).await?)
            } else {
                None
            };
            items.push(job_view(row, pos));
        }
        Ok(CountedPage { items, count })
    }

    /// The job's stored input (`payload`), as submitted.
    pub async fn job_payload(&self, who: &Principal, id: Uuid) -> Result<serde_json::Value> {
        let mut conn = self.pool.acquire().await?;
        let row = qcloud_store::jobs::get(&mut conn, &who.project, id)
            .await?
            .ok_or_else(|| ServiceError::not_found("job", id))?;
        Ok(row.payload)
    }

    /// Replace a job's tags (any status).
    #[instrument(skip_all, fields(job_id = %id))]
    pub async fn update_job_tags(&self, who: &Principal, id: Uuid, tags: Vec<String>) -> Result<JobView> {
        validate::tags(&tags)?;
        let mut conn = self.pool.acquire().await?;
        if !qcloud_store::job_search::set_tags(&mut conn, &who.project, id, &tags).await? {
            return Err(ServiceError::not_found("job", id));
        }
        drop(conn);
        self.get_job(who, id).await
    }

    /// Delete a finished job and its result. A queued or running job is refused (409): cancel
    /// it first.
    #[instrument(skip_all, fields(job_id = %id))]
    pub async fn delete_job(&self, who: &Principal, id: Uuid) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let row = qcloud_store::jobs::get(&mut tx, &who.project, id)
            .await?
            .ok_or_else(|| ServiceError::not_found("job", id))?;
        if !row.status.is_terminal() {
            return Err(ServiceError::conflict(
                "job_not_finished",
                format!("job {id} is {}; cancel it before deleting it", row.status),
            ));
        }
        if !qcloud_store::job_search::delete_finished(&mut tx, &who.project, id).await? {
            return Err(ServiceError::not_found("job", id));
        }
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::AddDevice;
    use crate::jobs::SubmitJob;
    use crate::{DriverKind, ServiceConfig};
    use serde_json::json;

    #[sqlx::test(migrator = "qcloud_store::MIGRATOR")]
    async fn search_counts_filters_pages_and_tags(pool: qcloud_store::PgPool) {
        let svc = Service::new(pool, ServiceConfig::default());
        svc.add_device(AddDevice::new("n1", DriverKind::Noop, 5)).await.unwrap();
        let who = svc.authenticate(&svc.create_token("p", "u", false).await.unwrap()).await.unwrap();
        let other = svc.authenticate(&svc.create_token("q", "v", false).await.unwrap()).await.unwrap();
        let mut ids = Vec::new();
        for i in 0..5 {
            let tags = if i % 2 == 0 { vec!["even".to_string(), "x".to_string()] } else { vec!["odd".to_string()] };
            let cmd = SubmitJob { tags, ..SubmitJob::to_device("n1", "noop", json!({})) };
            ids.push(svc.submit_job(&who, cmd).await.unwrap().0.id);
        }
        svc.submit_job(&other, SubmitJob::to_device("n1", "noop", json!({}))).await.unwrap();
        let all = svc.search_jobs(&who, SearchJobs::default()).await.unwrap();
        assert_eq!(all.count, 5);
        assert_eq!(all.items.iter().map(|j| j.id).collect::<Vec<_>>(), ids.iter().rev().copied().collect::<Vec<_>>());
        let even = svc
            .search_jobs(&who, SearchJobs { tags: vec!["even".into(), "x".into()], ..Default::default() })
            .await
            .unwrap();
        assert_eq!(even.count, 3);
        let page = SearchJobs { limit: Some(2), offset: Some(4), ascending: true, ..Default::default() };
        let page = svc.search_jobs(&who, page).await.unwrap();
        assert_eq!((page.count, page.items.len(), page.items[0].id), (5, 1, ids[4]));
        assert_eq!(
            svc.search_jobs(&who, SearchJobs { pending: Some(false), ..Default::default() }).await.unwrap().count,
            0
        );
        assert!(svc.search_jobs(&who, SearchJobs { offset: Some(-1), ..Default::default() }).await.is_err());
        // Tags: replaced; another project's job is not found.
        let j = svc.update_job_tags(&who, ids[1], vec!["new".into()]).await.unwrap();
        assert_eq!(j.tags, vec!["new".to_string()]);
        assert!(matches!(svc.update_job_tags(&other, ids[1], vec![]).await, Err(ServiceError::NotFound { .. })));
        // Delete: refused while queued, done once canceled.
        assert!(matches!(svc.delete_job(&who, ids[0]).await, Err(ServiceError::Conflict { .. })));
        svc.cancel_job(&who, crate::jobs::CancelJob { id: ids[0] }).await.unwrap();
        svc.delete_job(&who, ids[0]).await.unwrap();
        assert!(matches!(svc.get_job(&who, ids[0]).await, Err(ServiceError::NotFound { .. })));
        assert_eq!(svc.search_jobs(&who, SearchJobs::default()).await.unwrap().count, 4);
    }
}
