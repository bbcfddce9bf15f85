//! Bulk submit (`POST /v1/jobs:batch`): up to [`MAX_BULK_JOBS`] job-mode jobs of one caller,
//! checked like single submissions, then stored all or nothing in one transaction of one
//! multi-row insert (`UNNEST`).

use crate::auth::Principal;
use crate::error::{Result, ServiceError};
use crate::jobs::{JobView, SubmitJob};
use crate::pipeline::Device;
use crate::Service;
use crate::{checks, validate};
use qcloud_core::JobStatus;
use qcloud_store::jobs::BulkJob;
use std::collections::HashMap;
use tracing::instrument;
use uuid::Uuid;

/// Most jobs in one bulk submission.
pub const MAX_BULK_JOBS: usize = 10_000;

/// An error of one job of a bulk submission, naming its index (0-based).
fn at(index: usize) -> impl FnOnce(ServiceError) -> ServiceError {
    move |e| ServiceError::AtIndex { index, source: Box::new(e) }
}

impl Service {
    /// Submit many job-mode jobs at once: every job is checked as [`Service::submit_job`] checks
    /// one (a refused job is an error naming its index, and nothing is stored), then all are
    /// inserted in one statement. Returns the jobs in the order given.
    #[instrument(skip_all, fields(jobs = reqs.len()))]
    pub async fn submit_jobs(&self, who: &Principal, reqs: Vec<SubmitJob>) -> Result<Vec<JobView>> {
        if reqs.is_empty() {
            return Err(ServiceError::invalid("empty_batch", "give at least one job in 'jobs'"));
        }
        if reqs.len() > MAX_BULK_JOBS {
            return Err(ServiceError::invalid(
                "batch_too_large",
                format!("{} jobs in one batch; at most {MAX_BULK_JOBS}", reqs.len()),
            ));
        }
        let mut conn = self.pool.acquire().await?;
        // Devices (and the project's quota) read once per distinct device.
        let mut devices: HashMap<String, (Device, Option<f64>)> = HashMap::new();
        let mut rows = Vec::with_capacity(reqs.len());
        for (i, req) in reqs.iter().enumerate() {
            let (shots, max_exec) =
                self.check_bulk_job(&mut conn, &who.project, &mut devices, req).await.map_err(at(i))?;
            rows.push((shots, max_exec));
        }
        if let Some(quota) = devices.values().find_map(|(_, q)| *q) {
            let used = qcloud_store::tokens::usage(&mut conn, &who.project).await?;
            if used >= quota {
                return Err(ServiceError::QuotaExceeded(format!(
                    "project '{}' used {used:.1} of its {quota:.1} device seconds",
                    who.project
                )));
            }
        }
        let jobs: Vec<BulkJob<'_>> = reqs
            .iter()
            .zip(&rows)
            .map(|(req, (shots, max_exec))| BulkJob {
                id: Uuid::now_v7(),
                // Checked above: every job names a device.
                device: req.device.as_deref().unwrap_or_default(),
                program: &req.program,
                payload: &req.payload,
                shots: *shots,
                tags: &req.tags,
                priority: req.priority.unwrap_or_default(),
                max_execution: *max_exec,
            })
            .collect();
        // One statement: its implicit transaction stores all of the jobs or none.
        let stored = qcloud_store::jobs::insert_bulk(&mut conn, &who.project, &who.user, &jobs).await?;
        let (Ok(count), Some(created_at)) = (usize::try_from(stored.count), stored.created_at) else {
            return Err(ServiceError::Internal(format!("bulk insert stored {} of {} jobs", stored.count, jobs.len())));
        };
        if count != jobs.len() {
            return Err(ServiceError::Internal(format!("bulk insert stored {count} of {} jobs", jobs.len())));
        }
        let ids: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
        drop(jobs);
        // The jobs as stored: the columns given, and every other one its default for a new job.
        Ok(reqs
            .into_iter()
            .zip(rows)
            .zip(ids)
            .map(|((req, (shots, max_execution)), id)| JobView {
                id,
                device: req.device.unwrap_or_default(),
                session_id: None,
                program: req.program,
                status: JobStatus::Queued,
                reason: None,
                reason_code: None,
                queue_position: None,
                shots,
                tags: req.tags,
                priority: req.priority.unwrap_or_default(),
                user: who.user.clone(),
                created_at,
                started_at: None,
                finished_at: None,
                usage_seconds: 0.0,
                attempt: 0,
                parent_id: None,
                max_execution,
                progress: None,
                log: None,
            })
            .collect())
    }

    /// The checks of one job of a bulk submission; returns its shots and maximum execution time.
    async fn check_bulk_job(
        &self,
        conn: &mut qcloud_store::PgConnection,
        project: &str,
        devices: &mut HashMap<String, (Device, Option<f64>)>,
        req: &SubmitJob,
    ) -> Result<(Option<i64>, chrono::Duration)> {
        if req.idempotency_key.is_some() {
            return Err(ServiceError::invalid("invalid_field", "a job of a batch takes no idempotency key"));
        }
        if req.session_id.is_some() {
            return Err(ServiceError::invalid(
                "invalid_field",
                "a batch holds job-mode jobs only; submit session jobs with POST /v1/jobs",
            ));
        }
        let Some(name) = req.device.as_deref() else {
            return Err(ServiceError::invalid("missing_field", "give a device"));
        };
        validate::text("device", name)?;
        validate::text("program", &req.program)?;
        validate::json_text("payload", &req.payload)?;
        validate::tags(&req.tags)?;
        validate::shots(req.shots, &self.cfg)?;
        let payload_bytes = validate::payload(&req.payload, &self.cfg)?;
        let max_exec = validate::max_execution(req.max_execution_time, &self.cfg)?;
        if !devices.contains_key(name) {
            let found = qcloud_store::devices::get_with_quota(conn, name, project)
                .await?
                .ok_or_else(|| ServiceError::not_found("device", name))?;
            devices.insert(name.to_owned(), found);
        }
        let (device, _) = &devices[name];
        let driver = device.driver;
        if !driver.accepts_program(&req.program) {
            return Err(ServiceError::conflict(
                "unknown_program",
                format!(
                    "device '{}' ({} driver) does not run program '{}'; it runs: {}",
                    device.name,
                    driver,
                    req.program,
                    driver.programs().map(|p| p.join(", ")).unwrap_or_default()
                ),
            ));
        }
        let mut shots = req.shots;
        if let Some(check) = &self.checks {
            let checked = checks::run(check, device, &req.program, &req.payload, req.shots, payload_bytes).await?;
            shots = shots.or(checked.shots);
        }
        Ok((shots, max_exec))
    }
}
