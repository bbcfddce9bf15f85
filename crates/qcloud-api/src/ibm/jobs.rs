//! Jobs: submit (Sampler / Estimator V2 params), inspect, results, cancel, list with IBM's
//! filters and a count, metrics, logs, tags, delete.

use super::auth::IbmCaller;
use super::error::{IbmError, IbmJson, IbmPath, IbmQuery, IbmResult};
use super::{check, translate, IbmState};
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use qcloud_service::job_search::SearchJobs;
use qcloud_service::jobs::{CancelJob, JobView, SubmitJob};
use qcloud_service::{JobStatus, ServiceError};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

#[derive(Debug, Deserialize)]
pub struct SubmitBody {
    pub program_id: String,
    #[serde(default)]
    pub backend: Option<String>,
    pub params: Value,
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Maximum execution time, seconds.
    #[serde(default)]
    pub cost: Option<f64>,
    // Accepted as IBM defines them, without effect on qcloud: log level, private results,
    // runtime image, calibration and the never-sent start_session / session_time.
    #[serde(default)]
    #[allow(dead_code)]
    pub log_level: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    pub private: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)]
    pub runtime: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    pub calibration_id: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    pub start_session: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)]
    pub session_time: Option<f64>,
}

fn iso(t: Option<DateTime<Utc>>) -> Value {
    t.map(|t| json!(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))).unwrap_or(Value::Null)
}

fn job_id(id: &str) -> IbmResult<Uuid> {
    id.parse().map_err(|_| IbmError::not_found("job", id))
}

fn cost_seconds(d: chrono::Duration) -> i64 {
    (d.num_milliseconds() + 999).div_euclid(1000)
}

/// IBM's job document: a pure function of the job (and, unless excluded, its params).
pub fn view(j: &JobView, params: Option<&Value>) -> Value {
    let state = translate::job_state(j.status, j.reason.as_deref(), j.reason_code.as_deref());
    let mut v = json!({
        "id": j.id,
        "backend": j.device,
        "state": state,
        "status": state["status"],
        "program": {"id": j.program},
        "created": iso(Some(j.created_at)),
        "ended": iso(j.finished_at),
        "session_id": j.session_id,
        "tags": j.tags,
        "private": false,
        "runtime": "",
        "user_id": j.user,
        // Whole seconds: IBM's schema (and QRMI's models) type these as integers.
        "cost": cost_seconds(j.max_execution),
        "estimated_running_time_seconds": null,
        "estimated_max_running_time_seconds": cost_seconds(j.max_execution),
        "usage": {"quantum_seconds": j.usage_seconds, "seconds": j.usage_seconds},
        "bss": {"seconds": j.usage_seconds},
        "queue_position": j.queue_position,
    });
    if let Some(p) = params {
        v["params"] = p.clone();
    }
    v
}

/// `POST /jobs`.
pub async fn submit(
    c: IbmCaller,
    State(s): State<IbmState>,
    IbmJson(b): IbmJson<SubmitBody>,
) -> IbmResult<Json<Value>> {
    let program = b.program_id.as_str();
    if program != "sampler" && program != "estimator" {
        return Err(IbmError::bad_request(format!(
            "program_id '{program}' is not served: use 'sampler' or 'estimator'"
        )));
    }
    let session_id = b
        .session_id
        .as_deref()
        .map(|sid| sid.parse::<Uuid>().map_err(|_| IbmError::not_found("session", sid)))
        .transpose()?;
    let backend = match (&b.backend, session_id) {
        (Some(name), _) => name.clone(),
        (None, Some(sid)) => s.svc.get_session(&c.who, sid).await?.device,
        (None, None) => return Err(IbmError::bad_request("'backend' is required outside a session")),
    };
    let (device, num_qubits) = super::backends::submit_target(&s, &c, &backend).await?;
    let mut t = translate::job_params(program, &b.params).map_err(IbmError::bad_request)?;
    check::fit_pubs(program, &mut t.payload, num_qubits.max(0) as usize);
    if let Some(cost) = b.cost {
        if !cost.is_finite() || cost <= 0.0 {
            return Err(IbmError::bad_request(
                "cost (the maximum execution time) must be a positive number of seconds",
            ));
        }
    }
    let cmd = SubmitJob {
        session_id,
        shots: t.shots,
        tags: b.tags.unwrap_or_default(),
        max_execution_time: b.cost,
        ..SubmitJob::to_device(device, program, t.payload)
    };
    let (j, _) = s.svc.submit_job(&c.who, cmd).await.map_err(|e| match e {
        // The driver's submit-time checks (a circuit that does not parse, parameter values or
        // observables that do not fit it, a circuit wider than the backend): IBM's 400, the
        // driver's message.
        ServiceError::Invalid { code: "invalid_payload" | "too_large", message } => IbmError::bad_request(message),
        ServiceError::Conflict { code: code @ ("session_closed" | "session_not_accepting"), message } => {
            IbmError::new(StatusCode::CONFLICT, code, format!("{message}: the session is closed; start a new one"))
        }
        other => other.into(),
    })?;
    Ok(Json(json!({"id": j.id, "backend": j.device})))
}

#[derive(Debug, Deserialize)]
pub struct GetQuery {
    #[serde(default)]
    pub exclude_params: Option<String>,
}

fn truthy(v: Option<&str>) -> IbmResult<bool> {
    match v.map(str::to_ascii_lowercase).as_deref() {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(other) => Err(IbmError::bad_request(format!("'{other}' is not a boolean (true or false)"))),
    }
}

/// The longest a status poll of an unfinished job is held for the job to change state (see
/// [`get`]): less than the client's poll interval in job mode (0.5 s).
pub const STATUS_HOLD: std::time::Duration = std::time::Duration::from_millis(200);

/// The job again once it is finished (completed, failed or cancelled), or as it is at the end of
/// `hold`. The job is re-read with a growing pause (2, 4, 8, 16, then 20 ms): a short job that
/// ends just after the poll arrived is answered within milliseconds of its end, not a poll
/// interval later. (Not at its start: the client's `result()` waits for a final state, and a
/// poll answered at `RUNNING` would cost it the interval all the same.)
async fn held(s: &IbmState, c: &IbmCaller, mut j: JobView, hold: std::time::Duration) -> IbmResult<JobView> {
    let deadline = tokio::time::Instant::now() + hold;
    let mut pause = std::time::Duration::from_millis(2);
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(j);
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        j = s.svc.get_job(&c.who, j.id).await?;
        if !matches!(j.status, JobStatus::Queued | JobStatus::Running) {
            return Ok(j);
        }
        pause = (pause * 2).min(std::time::Duration::from_millis(20));
    }
}

/// `GET /jobs/{id}` (`?exclude_params=true` while polling; the params otherwise, verbatim).
///
/// The poll the client sends while it waits (`exclude_params=true`, from `job.status()` and
/// `job.result()`) is held up to [`IbmState::status_hold`] (by default [`STATUS_HOLD`]) while
/// the job is queued or running, and answered as soon as it is finished. The answer is the
/// job's state when it is sent; the hold only saves the client a poll interval (0.5 s in job
/// mode, 0.1 s in a session) after a job that ends just after its first poll.
pub async fn get(
    c: IbmCaller,
    State(s): State<IbmState>,
    IbmPath(id): IbmPath<String>,
    IbmQuery(q): IbmQuery<GetQuery>,
) -> IbmResult<Json<Value>> {
    let id = job_id(&id)?;
    let mut j = s.svc.get_job(&c.who, id).await?;
    if truthy(q.exclude_params.as_deref())? {
        if matches!(j.status, JobStatus::Queued | JobStatus::Running) && !s.status_hold.is_zero() {
            j = held(&s, &c, j, s.status_hold).await?;
        }
        return Ok(Json(view(&j, None)));
    }
    let payload = s.svc.job_payload(&c.who, id).await?;
    Ok(Json(view(&j, Some(payload.get("ibm_params").unwrap_or(&payload)))))
}

/// `GET /jobs/{id}/results`: RuntimeEncoder JSON; the reason as text for a failed or cancelled
/// job (the client reads it to build its error message).
pub async fn results(c: IbmCaller, State(s): State<IbmState>, IbmPath(id): IbmPath<String>) -> IbmResult<Response> {
    let id = job_id(&id)?;
    let (j, result) = s.svc.job_with_result(&c.who, id).await?;
    match (j.status, result) {
        (JobStatus::Completed, Some(result)) => {
            let body = translate::job_result(&j.program, &result).map_err(|e| {
                IbmError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("result of job {id}: {e}"))
            })?;
            // Raw text, as IBM serves it: the Python client reads the text and decodes it itself,
            // QRMI's generated client takes a text/plain body verbatim as a string.
            Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body.to_string()).into_response())
        }
        (JobStatus::Failed | JobStatus::Canceled, _) => {
            let text = j.reason.unwrap_or_else(|| format!("job {id} is {}", j.status));
            Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
        }
        (other, _) => {
            Err(IbmError::new(StatusCode::CONFLICT, "job_not_finished", format!("job {id} is {other}; no result yet")))
        }
    }
}

/// `POST /jobs/{id}/cancel` (204; 409 when the job already finished).
pub async fn cancel(c: IbmCaller, State(s): State<IbmState>, IbmPath(id): IbmPath<String>) -> IbmResult<StatusCode> {
    s.svc.cancel_job(&c.who, CancelJob { id: job_id(&id)? }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /jobs/{id}` (204; 409 while the job is queued or running).
pub async fn delete(c: IbmCaller, State(s): State<IbmState>, IbmPath(id): IbmPath<String>) -> IbmResult<StatusCode> {
    s.svc.delete_job(&c.who, job_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagsBody {
    pub tags: Vec<String>,
}

/// `PUT /jobs/{id}/tags` (204).
pub async fn tags(
    c: IbmCaller,
    State(s): State<IbmState>,
    IbmPath(id): IbmPath<String>,
    IbmJson(b): IbmJson<TagsBody>,
) -> IbmResult<StatusCode> {
    s.svc.update_job_tags(&c.who, job_id(&id)?, b.tags).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /jobs/{id}/metrics`: timestamps and usage.
pub async fn metrics(c: IbmCaller, State(s): State<IbmState>, IbmPath(id): IbmPath<String>) -> IbmResult<Json<Value>> {
    let j = s.svc.get_job(&c.who, job_id(&id)?).await?;
    let done = j.status.is_terminal();
    Ok(Json(json!({
        "timestamps": {"created": iso(Some(j.created_at)), "running": iso(j.started_at), "finished": iso(j.finished_at)},
        "bss": {"seconds": j.usage_seconds},
        "usage": {
            "quantum_seconds": j.usage_seconds,
            "seconds": j.usage_seconds,
            "qpu_charge_time_seconds": j.usage_seconds,
            "status": if done { "complete" } else { "pending" },
        },
        "position_in_queue": j.queue_position,
        "position_in_provider": j.queue_position,
        "qiskit_version": "",
        "caller": "qcloud",
    })))
}

/// `GET /jobs/{id}/logs`: qcloud keeps no job logs beyond the job's reason.
pub async fn logs(c: IbmCaller, State(s): State<IbmState>, IbmPath(id): IbmPath<String>) -> IbmResult<Response> {
    let j = s.svc.get_job(&c.who, job_id(&id)?).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], j.reason.unwrap_or_default()).into_response())
}

fn parse_time(field: &str, v: &str) -> IbmResult<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&Utc));
    }
    // The client sends naive UTC times (`datetime.isoformat()` without an offset).
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(v, fmt) {
            return Ok(t.and_utc());
        }
        if let Ok(d) = chrono::NaiveDate::parse_from_str(v, fmt) {
            return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
        }
    }
    Err(IbmError::bad_request(format!("{field}: '{v}' is not an ISO 8601 time")))
}

/// The filters of `GET /jobs`, from a query string with repeated `tags`.
pub fn search_query(raw: &str) -> IbmResult<(SearchJobs, bool)> {
    let mut q = SearchJobs::default();
    let mut exclude_params = false;
    let int =
        |k: &str, v: &str| v.parse::<i64>().map_err(|_| IbmError::bad_request(format!("{k}: '{v}' is not an integer")));
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        let v = v.as_ref();
        match k.as_ref() {
            "limit" => q.limit = Some(int("limit", v)?),
            "offset" | "skip" => q.offset = Some(int("offset", v)?),
            "backend" => q.device = Some(v.to_owned()),
            "program" | "program_id" => q.program = Some(v.to_owned()),
            "pending" => q.pending = Some(truthy(Some(v))?),
            "tags" => q.tags.push(v.to_owned()),
            "session_id" => {
                q.session_id =
                    Some(v.parse().map_err(|_| IbmError::bad_request(format!("session_id: '{v}' is not an id")))?)
            }
            "created_after" => q.created_after = Some(parse_time("created_after", v)?),
            "created_before" => q.created_before = Some(parse_time("created_before", v)?),
            "sort" => {
                q.ascending = match v.to_ascii_uppercase().as_str() {
                    "ASC" => true,
                    "DESC" => false,
                    _ => return Err(IbmError::bad_request(format!("sort: '{v}' is not ASC or DESC"))),
                }
            }
            "exclude_params" => exclude_params = truthy(Some(v))?,
            // Accepted and without effect: qcloud has no mock devices, no private jobs.
            "include_mocks" | "private" => {}
            other => return Err(IbmError::bad_request(format!("unknown query parameter '{other}'"))),
        }
    }
    Ok((q, exclude_params))
}

/// `GET /jobs`: `{"jobs": [...], "count": total}`.
pub async fn list(c: IbmCaller, State(s): State<IbmState>, RawQuery(raw): RawQuery) -> IbmResult<Json<Value>> {
    let (q, exclude_params) = search_query(raw.as_deref().unwrap_or(""))?;
    let (offset, limit) = (q.offset.unwrap_or(0), q.limit.unwrap_or(qcloud_service::validate::DEFAULT_PAGE));
    let page = s.svc.search_jobs(&c.who, q).await?;
    let mut jobs = Vec::with_capacity(page.items.len());
    for j in &page.items {
        if exclude_params {
            jobs.push(view(j, None));
        } else {
            let payload = s.svc.job_payload(&c.who, j.id).await?;
            jobs.push(view(j, Some(payload.get("ibm_params").unwrap_or(&payload))));
        }
    }
    Ok(Json(json!({"jobs": jobs, "count": page.count, "offset": offset, "limit": limit})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_queries_take_every_filter_of_the_client() {
        let sid = Uuid::now_v7();
        let raw = format!(
            "exclude_params=true&limit=5&offset=10&backend=b&pending=true&program=sampler&tags=a&tags=b%20c\
             &session_id={sid}&created_after=2026-01-02T03:04:05.123456&created_before=2026-02-01T00:00:00Z&sort=ASC&include_mocks=True"
        );
        let (q, ex) = search_query(&raw).unwrap();
        assert!(ex);
        assert_eq!((q.limit, q.offset, q.device.as_deref(), q.pending), (Some(5), Some(10), Some("b"), Some(true)));
        assert_eq!(q.tags, vec!["a".to_string(), "b c".to_string()]);
        assert_eq!(q.session_id, Some(sid));
        assert_eq!(q.created_after.unwrap().to_rfc3339(), "2026-01-02T03:04:05.123456+00:00");
        assert!(q.ascending && q.created_before.is_some());
        for bad in ["limit=x", "pending=maybe", "sort=UP", "created_after=yesterday", "session_id=3", "color=red"] {
            assert_eq!(search_query(bad).unwrap_err().status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}
