//! `/v1/jobs`.

use super::{seconds, window, Page};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Caller};
use crate::schema::{self, DeviceNameSchema, JobStatusSchema, JsonObjectSchema, PrioritySchema};
use crate::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::{DateTime, Utc};
use qcloud_service::jobs::{self as svc, CancelJob, ListJobs, SubmitJob};
use qcloud_service::validate::opt_enum_field;
use qcloud_service::{JobStatus, Priority};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// `POST /v1/jobs`. Give `device`, `session_id` or both (then the device must be the session's).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewJobRequest {
    /// The device; taken from the session when `session_id` is given.
    #[schema(value_type = Option<DeviceNameSchema>)]
    pub device: Option<String>,
    pub session_id: Option<Uuid>,
    /// What the device runs (one of its `programs`): `noop` on noop devices, `sampler` /
    /// `estimator` on statevector ones, `pulser` on analog ones. Another is refused with 409
    /// `unknown_program`.
    #[schema(pattern = r"^[^\u0000]*$")]
    pub program: String,
    /// The program's input: a JSON object.
    #[schema(value_type = JsonObjectSchema)]
    pub payload: serde_json::Map<String, serde_json::Value>,
    #[schema(minimum = 1, maximum = 10000000)]
    #[serde(default, deserialize_with = "crate::de::opt_integer")]
    pub shots: Option<i64>,
    #[serde(default)]
    #[schema(schema_with = schema::tags)]
    pub tags: Vec<String>,
    /// Default: the session's, else medium.
    #[schema(value_type = Option<PrioritySchema>)]
    pub priority: Option<String>,
    /// Rule 10: maximum execution time in seconds (IBM `cost`), more than 0 and at most one day
    /// (default 3 h).
    #[schema(exclusive_minimum = 0, maximum = 86400)]
    pub max_execution_time: Option<f64>,
    /// POST this job's events (signed) to a URL: a subscription scoped to the job, listed under
    /// `/v1/webhooks`.
    pub webhook: Option<super::webhooks::WebhookSpecRequest>,
}

impl NewJobRequest {
    fn into_command(
        self,
        idempotency_key: Option<String>,
    ) -> qcloud_service::Result<(SubmitJob, Option<qcloud_service::webhooks::WebhookSpec>)> {
        let webhook = self.webhook.map(Into::into);
        Ok((
            SubmitJob {
                priority: opt_enum_field::<Priority>("priority", self.priority.as_deref())?,
                device: self.device,
                session_id: self.session_id,
                program: self.program,
                payload: serde_json::Value::Object(self.payload),
                shots: self.shots,
                tags: self.tags,
                max_execution_time: self.max_execution_time,
                idempotency_key,
            },
            webhook,
        ))
    }
}

/// A job as clients see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobView {
    pub id: Uuid,
    pub device: String,
    pub session_id: Option<Uuid>,
    pub program: String,
    #[schema(value_type = JobStatusSchema)]
    pub status: JobStatus,
    /// Why the job failed or was canceled.
    pub reason: Option<String>,
    pub reason_code: Option<String>,
    /// 1-based position in the device's queue, while queued.
    #[schema(minimum = 1)]
    pub queue_position: Option<i64>,
    pub shots: Option<i64>,
    pub tags: Vec<String>,
    #[schema(value_type = PrioritySchema)]
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
    /// What the device's agent last reported of the running job (agent devices).
    pub progress: Option<JobProgress>,
    /// The job's log: what an agent's program wrote to stderr (its last 64 KiB).
    pub log: Option<String>,
}

/// Status text and a fraction done, as an agent reports them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobProgress {
    pub message: Option<String>,
    #[schema(minimum = 0, maximum = 1)]
    pub fraction: Option<f64>,
}

impl From<svc::JobView> for JobView {
    fn from(j: svc::JobView) -> Self {
        JobView {
            id: j.id,
            device: j.device,
            session_id: j.session_id,
            program: j.program,
            status: j.status,
            reason: j.reason,
            reason_code: j.reason_code,
            queue_position: j.queue_position,
            shots: j.shots,
            tags: j.tags,
            priority: j.priority,
            user: j.user,
            created_at: j.created_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
            usage_seconds: j.usage_seconds,
            attempt: j.attempt,
            parent_id: j.parent_id,
            max_execution_time: seconds(j.max_execution),
            progress: j.progress.map(|p| JobProgress { message: p.message, fraction: p.fraction }),
            log: j.log,
        }
    }
}

/// `GET /v1/jobs` query.
#[derive(Debug, Clone, Default, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    /// Only jobs of this status.
    #[param(value_type = Option<JobStatusSchema>)]
    pub status: Option<String>,
    /// Only jobs on this device.
    #[param(pattern = r"^[^\u0000]*$")]
    pub device: Option<String>,
    /// Only jobs of this session.
    pub session_id: Option<Uuid>,
    /// Only jobs with this tag.
    #[param(pattern = r"^[^\u0000]*$")]
    pub tag: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    /// Opaque cursor from a previous page's `next_cursor`.
    #[param(pattern = "^[0-9]{1,16}_[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

impl JobQuery {
    fn into_command(self) -> qcloud_service::Result<ListJobs> {
        Ok(ListJobs {
            status: opt_enum_field::<JobStatus>("status", self.status.as_deref())?,
            device: self.device,
            session_id: self.session_id,
            window: window(self.tag, self.created_after, self.created_before, self.cursor.as_deref(), self.limit)?,
        })
    }
}

/// `GET /v1/jobs/{id}/result`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobResult {
    pub job_id: Uuid,
    #[schema(value_type = Object)]
    pub result: serde_json::Value,
}

/// Submit a job to a device or a session. With an `Idempotency-Key` header, a repeated request
/// returns the job the first one created (200 instead of 201).
#[utoipa::path(post, path = "/v1/jobs", operation_id = "submit_job", tag = "jobs", security(("bearer" = [])), request_body = NewJobRequest,
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", max_length = 255, min_length = 1,
        description = "Same key, same job: 1 to 255 visible ASCII characters")),
    responses((status = 201, body = JobView), (status = 200, body = JobView, description = "Replay of an earlier request with the same Idempotency-Key"),
        (status = 403, body = ErrorBody, description = "The project's quota of device seconds is used up (`quota_exceeded`)"),
        (status = 404, body = ErrorBody, description = "No such device or session"),
        (status = 409, body = ErrorBody, description = "The session is closed or accepts no jobs (`session_closed`, `session_not_accepting`), the device is not the session's (`device_mismatch`), or the device does not run the program (`unknown_program`)"),
        (status = 422, body = ErrorBody, description = "The Idempotency-Key was used before with a different request (`idempotency_key_reused`)")))]
pub async fn submit(
    State(s): State<AppState>,
    Caller(who): Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<NewJobRequest>,
) -> ApiResult<(StatusCode, Json<JobView>)> {
    let key = match headers.get("idempotency-key") {
        Some(v) => Some(v.to_str().map_err(|_| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_idempotency_key", "Idempotency-Key must be visible ASCII")
        })?),
        None => None,
    };
    let (cmd, webhook) = req.into_command(key.map(str::to_owned))?;
    let (job, created) = s.svc.submit_job_with_webhook(&who, cmd, webhook.as_ref()).await?;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(job.into())))
}

/// One job.
#[utoipa::path(get, path = "/v1/jobs/{id}", operation_id = "get_job", tag = "jobs", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id")),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody, description = "No such job")))]
pub async fn get(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<JobView>> {
    Ok(Json(s.svc.get_job(&who, id).await?.into()))
}

/// The result of a completed job.
#[utoipa::path(get, path = "/v1/jobs/{id}/result", operation_id = "get_job_result", tag = "jobs", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id")),
    responses((status = 200, body = JobResult), (status = 404, body = ErrorBody, description = "No such job"),
        (status = 409, body = ErrorBody, description = "The job has not completed (`job_not_finished`, `job_has_no_result`)")))]
pub async fn result(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<JobResult>> {
    let r = s.svc.job_result(&who, id).await?;
    Ok(Json(JobResult { job_id: r.job_id, result: r.result }))
}

/// Cancel a job: a queued job at once, a running one when its driver stops.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", operation_id = "cancel_job", tag = "jobs", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id")),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody, description = "No such job"),
        (status = 409, body = ErrorBody, description = "The job has finished (`job_finished`)")))]
pub async fn cancel(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<JobView>> {
    Ok(Json(s.svc.cancel_job(&who, CancelJob { id }).await?.into()))
}

/// The project's jobs, newest first.
#[utoipa::path(get, path = "/v1/jobs", operation_id = "list_jobs", tag = "jobs", security(("bearer" = [])), params(JobQuery),
    responses((status = 200, body = Page<JobView>),
        (status = 400, body = ErrorBody, description = "A query parameter is malformed or out of range")))]
pub async fn list(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiQuery(q): ApiQuery<JobQuery>,
) -> ApiResult<Json<Page<JobView>>> {
    Ok(Json(Page::from_service(s.svc.list_jobs(&who, q.into_command()?).await?, JobView::from)))
}

/// `POST /v1/jobs:batch`: many job-mode jobs at once, all or nothing.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewJobsRequest {
    /// 1 to 10,000 jobs.
    #[schema(min_items = 1, max_items = 10000)]
    pub jobs: Vec<NewBatchJob>,
}

/// One job of `POST /v1/jobs:batch`: a job-mode job, as `POST /v1/jobs` takes it with a
/// `device` and no `session_id`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBatchJob {
    #[schema(value_type = DeviceNameSchema)]
    pub device: String,
    /// What the device runs (one of its `programs`).
    #[schema(pattern = r"^[^\u0000]*$")]
    pub program: String,
    /// The program's input: a JSON object.
    #[schema(value_type = JsonObjectSchema)]
    pub payload: serde_json::Map<String, serde_json::Value>,
    #[schema(minimum = 1, maximum = 10000000)]
    #[serde(default, deserialize_with = "crate::de::opt_integer")]
    pub shots: Option<i64>,
    #[serde(default)]
    #[schema(schema_with = schema::tags)]
    pub tags: Vec<String>,
    /// Default: medium.
    #[schema(value_type = Option<PrioritySchema>)]
    pub priority: Option<String>,
    /// Rule 10: maximum execution time in seconds, more than 0 and at most one day (default 3 h).
    #[schema(exclusive_minimum = 0, maximum = 86400)]
    pub max_execution_time: Option<f64>,
}

impl NewBatchJob {
    fn into_command(self) -> qcloud_service::Result<SubmitJob> {
        NewJobRequest {
            device: Some(self.device),
            session_id: None,
            program: self.program,
            payload: self.payload,
            shots: self.shots,
            tags: self.tags,
            priority: self.priority,
            max_execution_time: self.max_execution_time,
            webhook: None,
        }
        .into_command(None)
        .map(|(cmd, _)| cmd)
    }
}

/// The jobs a bulk submission created, in the order given.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobsCreated {
    pub jobs: Vec<JobView>,
}

/// Submit up to 10,000 job-mode jobs in one request, stored all or nothing in one transaction.
/// A refused job answers for the whole request, naming its index (`details.index`, 0-based,
/// and `jobs[i]` in the message); nothing is stored then.
#[utoipa::path(post, path = "/v1/jobs:batch", operation_id = "submit_jobs", tag = "jobs", security(("bearer" = [])), request_body = NewJobsRequest,
    responses((status = 201, body = JobsCreated),
        (status = 400, body = ErrorBody, description = "A job is malformed (`details.index` names it), or the batch is empty or has more than 10,000 jobs"),
        (status = 403, body = ErrorBody, description = "The project's quota of device seconds is used up (`quota_exceeded`)"),
        (status = 404, body = ErrorBody, description = "A job names no known device (`details.index` names it)"),
        (status = 409, body = ErrorBody, description = "A job's device does not run its program (`unknown_program`)")))]
pub async fn submit_batch(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiJson(req): ApiJson<NewJobsRequest>,
) -> ApiResult<(StatusCode, Json<JobsCreated>)> {
    let mut cmds = Vec::with_capacity(req.jobs.len());
    for (i, j) in req.jobs.into_iter().enumerate() {
        cmds.push(
            j.into_command().map_err(|e| qcloud_service::ServiceError::AtIndex { index: i, source: Box::new(e) })?,
        );
    }
    let jobs = s.svc.submit_jobs(&who, cmds).await?;
    Ok((StatusCode::CREATED, Json(JobsCreated { jobs: jobs.into_iter().map(JobView::from).collect() })))
}
