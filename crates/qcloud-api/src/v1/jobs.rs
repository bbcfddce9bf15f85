//! `/v1/jobs`.

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Caller};
use crate::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use qcloud_service::jobs::{JobQuery, JobResult, JobView, NewJobRequest};
use qcloud_service::sessions::Page;
use uuid::Uuid;

/// Submit a job to a device or a session. With an `Idempotency-Key` header, a repeated request
/// returns the job the first one created (200 instead of 201).
#[utoipa::path(post, path = "/v1/jobs", operation_id = "submit_job", tag = "jobs", security(("bearer" = [])), request_body = NewJobRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key, same job")),
    responses((status = 201, body = JobView), (status = 200, body = JobView, description = "Replay of an earlier request with the same Idempotency-Key"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
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
    let (job, created) = s.svc.submit_job(&who, req, key).await?;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(job)))
}

/// One job.
#[utoipa::path(get, path = "/v1/jobs/{id}", operation_id = "get_job", tag = "jobs", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id")),
    responses((status = 200, body = JobView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<JobView>> {
    Ok(Json(s.svc.get_job(&who, id).await?))
}

/// The result of a completed job.
#[utoipa::path(get, path = "/v1/jobs/{id}/result", operation_id = "get_job_result", tag = "jobs", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id")),
    responses((status = 200, body = JobResult), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "The job has not completed")))]
pub async fn result(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<JobResult>> {
    Ok(Json(s.svc.job_result(&who, id).await?))
}

/// Cancel a job: a queued job at once, a running one when its driver stops.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", operation_id = "cancel_job", tag = "jobs", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id")),
    responses((status = 200, body = JobView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn cancel(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<JobView>> {
    Ok(Json(s.svc.cancel_job(&who, id).await?))
}

/// The project's jobs, newest first.
#[utoipa::path(get, path = "/v1/jobs", operation_id = "list_jobs", tag = "jobs", security(("bearer" = [])), params(JobQuery),
    responses((status = 200, body = Page<JobView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiQuery(q): ApiQuery<JobQuery>,
) -> ApiResult<Json<Page<JobView>>> {
    Ok(Json(s.svc.list_jobs(&who, q).await?))
}
