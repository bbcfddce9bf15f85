//! Job use cases: submit, inspect, fetch results, cancel, list.

use crate::auth::Principal;
use crate::devices::parse_enum;
use crate::error::{Result, ServiceError};
use crate::sessions::{next_page, validate_tags, window, Page};
use crate::Service;
use chrono::{DateTime, Utc};
use qcloud_core::{DriverKind, JobStatus, Priority};
use qcloud_store::jobs::{JobFilter, JobRow, NewJob};
use serde::{Deserialize, Serialize};
use tracing::instrument;
use utoipa::ToSchema;
use uuid::Uuid;

/// `POST /v1/jobs`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewJobRequest {
    /// The device; taken from the session when `session_id` is given.
    pub device: Option<String>,
    pub session_id: Option<Uuid>,
    /// What the device runs: `noop` on noop devices, `sampler` / `estimator` on statevector ones.
    pub program: String,
    /// The program's input.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub shots: Option<i64>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// low | medium | high (default: the session's, else medium).
    pub priority: Option<String>,
    /// Rule 10: maximum execution time in seconds (IBM `cost`).
    pub max_execution_time: Option<f64>,
}

/// A job as clients see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobView {
    pub id: Uuid,
    pub device: String,
    pub session_id: Option<Uuid>,
    pub program: String,
    #[schema(value_type = String, example = "queued")]
    pub status: JobStatus,
    /// Why the job failed or was canceled.
    pub reason: Option<String>,
    pub reason_code: Option<String>,
    /// 1-based position in the device's queue, while queued.
    pub queue_position: Option<i64>,
    pub shots: Option<i64>,
    pub tags: Vec<String>,
    #[schema(value_type = String)]
    pub priority: Priority,
    pub user: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub usage_seconds: f64,
    /// How many times a worker started the job (more than 1 after a lost worker).
    pub attempt: i32,
    pub parent_id: Option<Uuid>,
    /// Seconds.
    pub max_execution_time: f64,
}

/// `GET /v1/jobs` query.
#[derive(Debug, Clone, Default, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    pub status: Option<String>,
    pub device: Option<String>,
    pub session_id: Option<Uuid>,
    pub tag: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub cursor: Option<String>,
    pub limit: Option<i64>,
}

/// `GET /v1/jobs/{id}/result`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobResult {
    pub job_id: Uuid,
    #[schema(value_type = Object)]
    pub result: serde_json::Value,
}

pub(crate) fn job_view(row: JobRow, queue_position: Option<i64>) -> Result<JobView> {
    let bad = |e: qcloud_core::UnknownValue| ServiceError::Internal(format!("stored job: {e}"));
    Ok(JobView {
        id: row.id,
        device: row.device,
        session_id: row.session_id,
        program: row.program,
        status: row.status.parse().map_err(bad)?,
        reason: row.reason,
        reason_code: row.reason_code,
        queue_position,
        shots: row.shots,
        tags: row.tags,
        priority: Priority::from_rank(row.priority),
        user: row.user_name,
        created_at: row.created_at,
        started_at: row.started_at,
        finished_at: row.finished_at,
        usage_seconds: row.usage_seconds,
        attempt: row.attempt,
        parent_id: row.parent_id,
        max_execution_time: row.max_execution_ms as f64 / 1000.0,
    })
}

impl Service {
    async fn view_with_position(&self, conn: &mut qcloud_store::PgConnection, row: JobRow) -> Result<JobView> {
        let pos =
            if row.status == "queued" { Some(qcloud_store::jobs::queue_position(conn, &row).await?) } else { None };
        job_view(row, pos)
    }

    /// Submit a job. With an idempotency key the project has used before, the earlier job is
    /// returned and `false` says nothing new was created.
    #[instrument(skip_all, fields(device = req.device.as_deref().unwrap_or(""), session_id = ?req.session_id))]
    pub async fn submit_job(
        &self,
        who: &Principal,
        req: NewJobRequest,
        idempotency_key: Option<&str>,
    ) -> Result<(JobView, bool)> {
        if let Some(k) = idempotency_key {
            if k.is_empty() || k.len() > 255 {
                return Err(ServiceError::invalid(
                    "invalid_idempotency_key",
                    "Idempotency-Key must be 1 to 255 characters",
                ));
            }
        }
        validate_tags(&req.tags)?;
        if let Some(s) = req.shots {
            if !(1..=self.cfg.max_shots).contains(&s) {
                return Err(ServiceError::invalid(
                    "invalid_field",
                    format!("shots must be between 1 and {}, got {s}", self.cfg.max_shots),
                ));
            }
        }
        let payload_len = serde_json::to_vec(&req.payload).map(|v| v.len()).unwrap_or(usize::MAX);
        if payload_len > self.cfg.max_payload_bytes {
            return Err(ServiceError::invalid(
                "payload_too_large",
                format!("payload is {payload_len} bytes; the limit is {}", self.cfg.max_payload_bytes),
            ));
        }
        let max_exec = match req.max_execution_time {
            None => self.cfg.default_max_execution,
            Some(s) => {
                let max_s = self.cfg.max_max_execution.num_seconds() as f64;
                if !s.is_finite() || s <= 0.0 || s > max_s {
                    return Err(ServiceError::invalid(
                        "invalid_field",
                        format!("max_execution_time must be between 0 and {max_s} seconds, got {s}"),
                    ));
                }
                chrono::Duration::milliseconds((s * 1000.0).ceil() as i64)
            }
        };
        let mut priority = match &req.priority {
            Some(p) => Some(parse_enum::<Priority>("priority", p)?),
            None => None,
        };

        let mut tx = self.pool.begin().await?;
        if let Some(k) = idempotency_key {
            if let Some(existing) = qcloud_store::jobs::by_idempotency_key(&mut tx, &who.project, k).await? {
                let view = self.view_with_position(&mut tx, existing).await?;
                return Ok((view, false));
            }
        }
        let device_name = match (req.session_id, &req.device) {
            (Some(sid), dev) => {
                // Locks the session row (by updating it) and checks the project in one statement; a
                // refused submission rolls the update back.
                let s = qcloud_store::sessions::submit_into(&mut tx, sid, &who.project)
                    .await?
                    .ok_or_else(|| ServiceError::not_found("session", sid))?;
                if s.state == "closed" {
                    return Err(ServiceError::conflict(
                        "session_closed",
                        format!("session {sid} is closed ({})", s.closed_reason.as_deref().unwrap_or("closed")),
                    ));
                }
                if !s.accepting_jobs {
                    return Err(ServiceError::conflict(
                        "session_not_accepting",
                        format!("session {sid} does not accept new jobs"),
                    ));
                }
                if let Some(d) = dev {
                    if *d != s.device {
                        return Err(ServiceError::invalid(
                            "device_mismatch",
                            format!("session {sid} runs on device '{}', not '{d}'", s.device),
                        ));
                    }
                }
                priority = priority.or(Some(Priority::from_rank(s.priority)));
                s.device
            }
            (None, Some(d)) => d.clone(),
            (None, None) => {
                return Err(ServiceError::invalid("missing_field", "give a device or a session_id"));
            }
        };
        let (device, quota) = qcloud_store::devices::get_with_quota(&mut tx, &device_name, &who.project)
            .await?
            .ok_or_else(|| ServiceError::not_found("device", &device_name))?;
        let driver: DriverKind =
            device.driver.parse().map_err(|e| ServiceError::Internal(format!("stored device: {e}")))?;
        if !driver.accepts_program(&req.program) {
            return Err(ServiceError::invalid(
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
        if let Some(quota) = quota {
            let used = qcloud_store::tokens::usage(&mut tx, &who.project).await?;
            if used >= quota {
                return Err(ServiceError::QuotaExceeded(format!(
                    "project '{}' used {used:.1} of its {quota:.1} device seconds",
                    who.project
                )));
            }
        }
        let inserted = qcloud_store::jobs::insert(
            &mut tx,
            NewJob {
                id: Uuid::now_v7(),
                project: &who.project,
                user: &who.user,
                device: &device.name,
                session_id: req.session_id,
                program: &req.program,
                payload: &req.payload,
                shots: req.shots,
                tags: &req.tags,
                priority: priority.unwrap_or_default().rank(),
                idempotency_key,
                max_execution_ms: max_exec.num_milliseconds(),
            },
        )
        .await?;
        let Some(qcloud_store::jobs::Inserted { job: row, device_idle }) = inserted else {
            // A concurrent request with the same key won the race: answer with its job.
            drop(tx);
            let mut conn = self.pool.acquire().await?;
            let k = idempotency_key.unwrap_or_default();
            let existing = qcloud_store::jobs::by_idempotency_key(&mut conn, &who.project, k)
                .await?
                .ok_or_else(|| ServiceError::Internal("idempotency conflict without a job".into()))?;
            return Ok((self.view_with_position(&mut conn, existing).await?, false));
        };
        // No deadline refresh: a new job only moves a session's timers later, and a stored deadline
        // that is early costs one extra evaluation by the leader, never a missed rule.
        // Wake the leader only for an idle device: a busy device's completion starts its next job in
        // the same transaction. (A completion that raced this insert and saw no queued job leaves
        // the job to the leader's periodic sweep.) NOTIFY serialises commits, so this matters.
        if device_idle {
            qcloud_store::notify(&mut tx, qcloud_store::channel::WAKE, &device.name).await?;
        }
        let view = job_view(row, None)?;
        tx.commit().await?;
        Ok((view, true))
    }

    pub async fn get_job(&self, who: &Principal, id: Uuid) -> Result<JobView> {
        let mut conn = self.pool.acquire().await?;
        let row = qcloud_store::jobs::get(&mut conn, &who.project, id)
            .await?
            .ok_or_else(|| ServiceError::not_found("job", id))?;
        self.view_with_position(&mut conn, row).await
    }

    pub async fn job_result(&self, who: &Principal, id: Uuid) -> Result<JobResult> {
        let mut conn = self.pool.acquire().await?;
        let row = qcloud_store::jobs::get(&mut conn, &who.project, id)
            .await?
            .ok_or_else(|| ServiceError::not_found("job", id))?;
        match row.status.as_str() {
            "completed" => {
                let result = qcloud_store::jobs::result(&mut conn, id)
                    .await?
                    .ok_or_else(|| ServiceError::Internal(format!("completed job {id} has no stored result")))?;
                Ok(JobResult { job_id: id, result: result.0 })
            }
            "failed" | "canceled" => Err(ServiceError::conflict(
                "job_has_no_result",
                format!("job {id} is {}: {}", row.status, row.reason.as_deref().unwrap_or("no result")),
            )),
            other => Err(ServiceError::conflict("job_not_finished", format!("job {id} is {other}; no result yet"))),
        }
    }

    /// Rule 9: a queued job is canceled at once; a running one is asked to stop and is canceled
    /// when its driver stops.
    #[instrument(skip_all, fields(job_id = %id))]
    pub async fn cancel_job(&self, who: &Principal, id: Uuid) -> Result<JobView> {
        let mut tx = self.pool.begin().await?;
        // Lock order: session before job (see dispatch.rs).
        let session = match qcloud_store::jobs::get(&mut tx, &who.project, id).await? {
            Some(r) => r.session_id,
            None => return Err(ServiceError::not_found("job", id)),
        };
        if let Some(sid) = session {
            qcloud_store::sessions::lock(&mut tx, sid).await?;
        }
        let row = match qcloud_store::jobs::lock(&mut tx, id).await? {
            Some(r) if r.project == who.project => r,
            _ => return Err(ServiceError::not_found("job", id)),
        };
        match row.status.as_str() {
            "queued" => {
                qcloud_store::jobs::cancel_queued(&mut tx, id).await?;
                if let Some(sid) = row.session_id {
                    self.settle_session(&mut tx, sid).await?;
                }
            }
            "running" => {
                qcloud_store::jobs::request_cancel(&mut tx, id).await?;
                qcloud_store::notify(&mut tx, qcloud_store::channel::CANCEL, &id.to_string()).await?;
            }
            other => {
                return Err(ServiceError::conflict("job_finished", format!("job {id} is already {other}")));
            }
        }
        tx.commit().await?;
        self.get_job(who, id).await
    }

    pub async fn list_jobs(&self, who: &Principal, q: JobQuery) -> Result<Page<JobView>> {
        if let Some(s) = &q.status {
            parse_enum::<JobStatus>("status", s)?;
        }
        let (window, limit) = window(q.tag, q.created_after, q.created_before, q.cursor.as_deref(), q.limit)?;
        let filter = JobFilter { status: q.status, device: q.device, session_id: q.session_id, window };
        let mut conn = self.pool.acquire().await?;
        let mut rows = qcloud_store::jobs::list(&mut conn, &who.project, &filter).await?;
        let next_cursor = next_page(&mut rows, limit, |r| (r.created_at, r.id));
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            items.push(self.view_with_position(&mut conn, row).await?);
        }
        Ok(Page { items, next_cursor })
    }
}
