//! Job use cases: submit, inspect, fetch results, cancel, list.

use crate::auth::Principal;
use crate::error::{Result, ServiceError};
use crate::list::{next_page, ListWindow, Page};
use crate::Service;
use crate::{checks, validate};
use chrono::{DateTime, Duration, Utc};
use qcloud_core::{JobStatus, Priority};
use qcloud_store::jobs::{Job, JobFilter, NewJob};
use tracing::instrument;
use uuid::Uuid;

/// Submit a job to a device or into a session.
#[derive(Debug, Clone)]
pub struct SubmitJob {
    /// The device; taken from the session when `session_id` is given (then it must match).
    pub device: Option<String>,
    pub session_id: Option<Uuid>,
    /// What the device runs: `noop` on noop devices, `sampler` / `estimator` on statevector ones.
    pub program: String,
    /// The program's input.
    pub payload: serde_json::Value,
    pub shots: Option<i64>,
    pub tags: Vec<String>,
    /// Default: the session's, else medium.
    pub priority: Option<Priority>,
    /// Rule 10: maximum execution time in seconds (IBM `cost`); default: the server's.
    pub max_execution_time: Option<f64>,
    /// The same key from the same project returns the job the first submission created.
    pub idempotency_key: Option<String>,
}

impl SubmitJob {
    /// A job of `program` on `device` with no options.
    pub fn to_device(device: impl Into<String>, program: impl Into<String>, payload: serde_json::Value) -> Self {
        SubmitJob {
            device: Some(device.into()),
            session_id: None,
            program: program.into(),
            payload,
            shots: None,
            tags: Vec::new(),
            priority: None,
            max_execution_time: None,
            idempotency_key: None,
        }
    }
}

impl SubmitJob {
    /// SHA-256 of the request in canonical form (object keys sorted, the idempotency key left
    /// out): two submissions with one key must agree on it.
    fn fingerprint(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let canonical = serde_json::json!({
            "device": self.device,
            "session_id": self.session_id,
            "program": self.program,
            "payload": self.payload,
            "shots": self.shots,
            "tags": self.tags,
            "priority": self.priority.map(|p| p.as_str()),
            "max_execution_time": self.max_execution_time,
        });
        Sha256::digest(canonical.to_string().as_bytes()).into()
    }
}

/// An idempotency key may be sent again only with the request that first used it. (Jobs stored
/// before request hashes were kept have none and match any request.)
fn same_request(key: &str, hit: &qcloud_store::jobs::KeyedJob, hash: Option<&[u8; 32]>) -> Result<()> {
    match (hit.request_hash.as_deref(), hash) {
        (Some(stored), Some(now)) if stored != now.as_slice() => Err(ServiceError::Unprocessable {
            code: "idempotency_key_reused",
            message: format!(
                "Idempotency-Key '{key}' was used for job {} with a different request; use a new key for a new \
                 request",
                hit.job.id
            ),
        }),
        _ => Ok(()),
    }
}

/// Rule 9: cancel a job.
#[derive(Debug, Clone, Copy)]
pub struct CancelJob {
    pub id: Uuid,
}

/// List the caller's jobs.
#[derive(Debug, Clone, Default)]
pub struct ListJobs {
    pub status: Option<JobStatus>,
    pub device: Option<String>,
    pub session_id: Option<Uuid>,
    pub window: ListWindow,
}

/// A job, with its place in the queue while it waits.
#[derive(Debug, Clone)]
pub struct JobView {
    pub id: Uuid,
    pub device: String,
    pub session_id: Option<Uuid>,
    pub program: String,
    pub status: JobStatus,
    /// Why the job failed or was canceled.
    pub reason: Option<String>,
    pub reason_code: Option<String>,
    /// 1-based position in the device's queue, while queued.
    pub queue_position: Option<i64>,
    pub shots: Option<i64>,
    pub tags: Vec<String>,
    pub priority: Priority,
    pub user: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub usage_seconds: f64,
    /// How many times a worker started the job (more than 1 after a lost worker).
    pub attempt: i32,
    pub parent_id: Option<Uuid>,
    pub max_execution: Duration,
    /// What an agent last reported of the running job (agent devices).
    pub progress: Option<Progress>,
    /// The job's log (an agent's program output), if it sent one.
    pub log: Option<String>,
}

/// Status text and a fraction done, as an agent reports them.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub message: Option<String>,
    pub fraction: Option<f64>,
}

/// The result of a completed job.
#[derive(Debug, Clone)]
pub struct JobResult {
    pub job_id: Uuid,
    pub result: serde_json::Value,
}

pub(crate) fn job_view(row: Job, queue_position: Option<i64>) -> JobView {
    JobView {
        id: row.id,
        device: row.device,
        session_id: row.session_id,
        program: row.program,
        status: row.status,
        reason: row.reason,
        reason_code: row.reason_code,
        queue_position,
        shots: row.shots,
        tags: row.tags,
        priority: row.priority,
        user: row.user_name,
        created_at: row.created_at,
        started_at: row.started_at,
        finished_at: row.finished_at,
        usage_seconds: row.usage_seconds,
        attempt: row.attempt,
        parent_id: row.parent_id,
        max_execution: row.max_execution,
        progress: (row.progress_message.is_some() || row.progress_fraction.is_some())
            .then(|| Progress { message: row.progress_message.clone(), fraction: row.progress_fraction }),
        log: row.log,
    }
}

/// The programs a device runs: its driver's, or for an agent device the `programs` its config
/// lists (`None`: any; the agent fails a job it cannot run).
pub fn device_programs(device: &qcloud_store::devices::Device) -> Option<Vec<String>> {
    match device.driver.programs() {
        Some(p) => Some(p.iter().map(|s| s.to_string()).collect()),
        None => device
            .config
            .get("programs")
            .and_then(|p| p.as_array())
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()),
    }
}

impl Service {
    async fn view_with_position(&self, conn: &mut qcloud_store::PgConnection, row: Job) -> Result<JobView> {
        let pos = if row.status == JobStatus::Queued {
            Some(qcloud_store::jobs::queue_position(conn, &row).await?)
        } else {
            None
        };
        Ok(job_view(row, pos))
    }

    /// Submit a job. With an idempotency key the project has used before, the earlier job is
    /// returned and `false` says nothing new was created.
    #[instrument(skip_all, fields(device = req.device.as_deref().unwrap_or(""), session_id = ?req.session_id))]
    pub async fn submit_job(&self, who: &Principal, req: SubmitJob) -> Result<(JobView, bool)> {
        self.submit_job_with_webhook(who, req, None).await
    }

    /// [`Service::submit_job`] with a webhook subscribed to the job's events in the same
    /// transaction (a replay of an idempotent submission makes no second one).
    pub async fn submit_job_with_webhook(
        &self,
        who: &Principal,
        req: SubmitJob,
        webhook: Option<&crate::webhooks::WebhookSpec>,
    ) -> Result<(JobView, bool)> {
        if let Some(w) = webhook {
            self.check_webhook_spec(w).await?;
        }
        let idempotency_key = req.idempotency_key.as_deref();
        validate::idempotency_key(idempotency_key)?;
        validate::opt_text("idempotency_key", idempotency_key)?;
        validate::opt_text("device", req.device.as_deref())?;
        validate::text("program", &req.program)?;
        validate::json_text("payload", &req.payload)?;
        validate::tags(&req.tags)?;
        validate::shots(req.shots, &self.cfg)?;
        let payload_bytes = validate::payload(&req.payload, &self.cfg)?;
        let max_exec = validate::max_execution(req.max_execution_time, &self.cfg)?;
        let request_hash = idempotency_key.map(|_| req.fingerprint());

        // Everything that only reads is done before the transaction, so that checking a payload
        // (which may parse a large circuit) holds no lock and no transaction open.
        let mut conn = self.pool.acquire().await?;
        let mut expired_key = None;
        if let Some(k) = idempotency_key {
            if let Some(hit) = qcloud_store::jobs::by_idempotency_key(&mut conn, &who.project, k).await? {
                if Utc::now() - hit.job.created_at >= self.cfg.idempotency_window {
                    // The key has expired: it names the new job from now on.
                    expired_key = Some(hit.job.id);
                } else {
                    // A replay answers with the job, whatever has happened since (a closed
                    // session, a paused device).
                    same_request(k, &hit, request_hash.as_ref())?;
                    let view = self.view_with_position(&mut conn, hit.job).await?;
                    return Ok((view, false));
                }
            }
        }
        // A session job that names its device, with no idempotency key or webhook, is one
        // statement that checks the session as it inserts (below); its session is read only to
        // say why it was refused.
        let one_statement_session_job =
            req.session_id.is_some() && req.device.is_some() && idempotency_key.is_none() && webhook.is_none();
        let device_name = match (req.session_id, &req.device) {
            (Some(_), Some(d)) if one_statement_session_job => d.clone(),
            (Some(sid), dev) => {
                let s = qcloud_store::sessions::get(&mut conn, &who.project, sid)
                    .await?
                    .ok_or_else(|| ServiceError::not_found("session", sid))?;
                // 409, not 400: the request is well formed (the schema cannot know which device a
                // session runs on); it conflicts with the session it names.
                if let Some(d) = dev {
                    if *d != s.device {
                        return Err(ServiceError::conflict(
                            "device_mismatch",
                            format!("session {sid} runs on device '{}', not '{d}'", s.device),
                        ));
                    }
                }
                s.device
            }
            (None, Some(d)) => d.clone(),
            (None, None) => {
                return Err(ServiceError::invalid("missing_field", "give a device or a session_id"));
            }
        };
        let (device, quota) = qcloud_store::devices::get_with_quota(&mut conn, &device_name, &who.project)
            .await?
            .ok_or_else(|| ServiceError::not_found("device", &device_name))?;
        let driver = device.driver;
        // 409 like a device mismatch: which programs a device runs is the device's state, not a
        // rule the request's schema can state.
        let programs = device_programs(&device);
        if programs.as_ref().is_some_and(|p| !p.contains(&req.program)) {
            return Err(ServiceError::conflict(
                "unknown_program",
                format!(
                    "device '{}' ({} driver) does not run program '{}'; it runs: {}",
                    device.name,
                    driver,
                    req.program,
                    programs.map(|p| p.join(", ")).unwrap_or_default()
                ),
            ));
        }
        if let Some(quota) = quota {
            let used = qcloud_store::tokens::usage(&mut conn, &who.project).await?;
            if used >= quota {
                return Err(ServiceError::QuotaExceeded(format!(
                    "project '{}' used {used:.1} of its {quota:.1} device seconds",
                    who.project
                )));
            }
        }
        let mut shots = req.shots;
        if let Some(check) = &self.checks {
            let checked = checks::run(check, &device, &req.program, &req.payload, req.shots, payload_bytes).await?;
            shots = shots.or(checked.shots);
        }
        let new_job = |priority: Option<Priority>| NewJob {
            id: Uuid::now_v7(),
            project: &who.project,
            user: &who.user,
            device: &device.name,
            session_id: req.session_id,
            program: &req.program,
            payload: &req.payload,
            shots,
            tags: &req.tags,
            priority: priority.unwrap_or_default(),
            idempotency_key,
            request_hash: request_hash.as_ref().map(|h| h.as_slice()),
            max_execution: max_exec,
        };
        if req.session_id.is_none() && expired_key.is_none() && webhook.is_none() {
            // A job-mode job is one statement (insert + wake-up), so it runs in an implicit
            // transaction: one round trip, committed before the answer. (A job with its own
            // webhook takes the transaction below, which subscribes it atomically.)
            let inserted = qcloud_store::jobs::insert_waking(&mut conn, new_job(req.priority)).await?;
            if let Some(qcloud_store::jobs::Inserted { job, .. }) = inserted {
                return Ok((job_view(job, None), true));
            }
            // A concurrent request with the same key won the race: answer with its job.
            let k = idempotency_key.unwrap_or_default();
            let hit = qcloud_store::jobs::by_idempotency_key(&mut conn, &who.project, k)
                .await?
                .ok_or_else(|| ServiceError::Internal("idempotency conflict without a job".into()))?;
            same_request(k, &hit, request_hash.as_ref())?;
            return Ok((self.view_with_position(&mut conn, hit.job).await?, false));
        }
        if let (true, Some(sid)) = (one_statement_session_job, req.session_id) {
            let own_priority = req.priority.is_some();
            if let Some(i) =
                qcloud_store::jobs::insert_into_session(&mut conn, new_job(req.priority), own_priority).await?
            {
                return Ok((job_view(i.job, None), true));
            }
            return Err(self.session_refusal(&mut conn, &who.project, sid, &device.name).await?);
        }
        drop(conn);

        let mut tx = self.pool.begin().await?;
        if let Some(old) = expired_key {
            qcloud_store::jobs::expire_idempotency_key(&mut tx, old).await?;
        }
        let mut priority = req.priority;
        if let Some(sid) = req.session_id {
            // Locks the session row (by updating it) and checks the project in one statement; a
            // refused submission rolls the update back.
            let s = qcloud_store::sessions::submit_into(&mut tx, sid, &who.project)
                .await?
                .ok_or_else(|| ServiceError::not_found("session", sid))?;
            if let Some(e) = closed_to_jobs(&s) {
                return Err(e);
            }
            priority = priority.or(Some(s.priority));
        }
        let inserted = qcloud_store::jobs::insert(&mut tx, new_job(priority)).await?;
        let Some(qcloud_store::jobs::Inserted { job: row, device_idle }) = inserted else {
            // A concurrent request with the same key won the race: answer with its job.
            drop(tx);
            let mut conn = self.pool.acquire().await?;
            let k = idempotency_key.unwrap_or_default();
            let hit = qcloud_store::jobs::by_idempotency_key(&mut conn, &who.project, k)
                .await?
                .ok_or_else(|| ServiceError::Internal("idempotency conflict without a job".into()))?;
            same_request(k, &hit, request_hash.as_ref())?;
            return Ok((self.view_with_position(&mut conn, hit.job).await?, false));
        };
        // No deadline refresh: a new job only moves a session's timers later, and a stored deadline
        // that is early costs one extra evaluation by the leader, never a missed rule.
        // Wake the leader only for an idle device: a busy device's completion starts its next job in
        // the same transaction. (A completion that raced this insert and saw no queued job leaves
        // the job to the leader's periodic sweep.) NOTIFY serialises commits, so this matters.
        if let Some(w) = webhook {
            self.subscribe_scoped(&mut tx, &who.project, w, Some(row.id), None).await?;
        }
        if device_idle {
            qcloud_store::notify(&mut tx, qcloud_store::channel::WAKE, &device.name).await?;
        }
        let view = job_view(row, None);
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

    /// Why session `sid` refused a job for `device` (see [`qcloud_store::jobs::insert_into_session`]):
    /// the errors of the transactional path, in its order.
    async fn session_refusal(
        &self,
        conn: &mut qcloud_store::PgConnection,
        project: &str,
        sid: Uuid,
        device: &str,
    ) -> Result<ServiceError> {
        let Some(s) = qcloud_store::sessions::get(conn, project, sid).await? else {
            return Ok(ServiceError::not_found("session", sid));
        };
        if s.device != device {
            return Ok(ServiceError::conflict(
                "device_mismatch",
                format!("session {sid} runs on device '{}', not '{device}'", s.device),
            ));
        }
        // Open and accepting when read again: it was reopened between the statement and the read,
        // which no transition allows.
        Ok(closed_to_jobs(&s)
            .unwrap_or_else(|| ServiceError::Internal(format!("session {sid} refused a job and then looked open"))))
    }

    /// A job and, once it has completed, its result, in one query (for a facade that answers
    /// with the one or the other).
    pub async fn job_with_result(&self, who: &Principal, id: Uuid) -> Result<(JobView, Option<serde_json::Value>)> {
        let mut conn = self.pool.acquire().await?;
        let (job, result) = with_result(&mut conn, who, id).await?;
        let view = self.view_with_position(&mut conn, job).await?;
        Ok((view, result))
    }

    pub async fn job_result(&self, who: &Principal, id: Uuid) -> Result<JobResult> {
        let mut conn = self.pool.acquire().await?;
        let (row, result) = with_result(&mut conn, who, id).await?;
        match (row.status, result) {
            (JobStatus::Completed, Some(result)) => Ok(JobResult { job_id: id, result }),
            (JobStatus::Failed | JobStatus::Canceled, _) => Err(ServiceError::conflict(
                "job_has_no_result",
                format!("job {id} is {}: {}", row.status, row.reason.as_deref().unwrap_or("no result")),
            )),
            (other, _) => {
                Err(ServiceError::conflict("job_not_finished", format!("job {id} is {other}; no result yet")))
            }
        }
    }

    /// Rule 9: a queued job is canceled at once; a running one is asked to stop and is canceled
    /// when its driver stops.
    #[instrument(skip_all, fields(job_id = %id))]
    pub async fn cancel_job(&self, who: &Principal, CancelJob { id }: CancelJob) -> Result<JobView> {
        let mut tx = self.pool.begin().await?;
        // Lock order: session before job (see the pipeline module).
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
        match row.status {
            JobStatus::Queued => {
                qcloud_store::jobs::cancel_queued(&mut tx, id).await?;
                if let Some(sid) = row.session_id {
                    self.settle_session(&mut tx, sid).await?;
                }
            }
            JobStatus::Running => {
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

    pub async fn list_jobs(&self, who: &Principal, q: ListJobs) -> Result<Page<JobView>> {
        validate::opt_text("device", q.device.as_deref())?;
        let (window, limit) = q.window.to_store()?;
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

/// Why session `s` takes no new job, if it does not: closed (409 `session_closed`) or draining
/// (409 `session_not_accepting`).
fn closed_to_jobs(s: &qcloud_store::sessions::Session) -> Option<ServiceError> {
    if !s.state.is_open() {
        let why = s.closed_reason.map(|r| r.as_str()).unwrap_or("closed");
        return Some(ServiceError::conflict("session_closed", format!("session {} is closed ({why})", s.id)));
    }
    if !s.accepting_jobs {
        return Some(ServiceError::conflict(
            "session_not_accepting",
            format!("session {} does not accept new jobs", s.id),
        ));
    }
    None
}

/// Job `id` of the caller's project and its result: `Some` exactly when the job has completed (a
/// completed job without one is an internal fault).
async fn with_result(
    conn: &mut qcloud_store::PgConnection,
    who: &Principal,
    id: Uuid,
) -> Result<(Job, Option<serde_json::Value>)> {
    let qcloud_store::jobs::WithResult { job, stored_result } =
        qcloud_store::jobs::get_with_result(conn, &who.project, id)
            .await?
            .ok_or_else(|| ServiceError::not_found("job", id))?;
    if job.status == JobStatus::Completed && stored_result.is_none() {
        return Err(ServiceError::Internal(format!("completed job {id} has no stored result")));
    }
    Ok((job, stored_result.map(|r| r.0)))
}
