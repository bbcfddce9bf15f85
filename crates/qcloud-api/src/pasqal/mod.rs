//! The Pasqal Cloud facade (`/pasqal`): `core-fast` (batches, jobs, devices), `account`
//! (projects), the OAuth password grant and results links, as `docs/protocols` /
//! `shared/protocols/pasqal-cloud.md` describe what pasqal-cloud 0.22–0.24 sends. Every route
//! translates onto `qcloud_service::batches`; the JSON views are pure functions of the service's
//! views (see [`views`]). Answers use Pasqal's envelope `{status, code, message, data}`.

mod body;
mod query;
pub mod views;

use crate::error::ApiError;
use crate::extract::Caller;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use body::{decode_json, BatchJobDto, CreateBatchDto};
use qcloud_service::batches::{status, CreateBatch, JobSelection};
use qcloud_service::{Principal, Priority, ServiceError};
use query::Pairs;
use serde_json::{json, Value};
use uuid::Uuid;

/// How long a results link stays valid.
pub const RESULTS_LINK_TTL_SECONDS: i64 = 3600;
/// `expires_in` of a token from the password grant (the SDK refreshes after it).
pub const LOGIN_EXPIRES_IN: i64 = 3600;

/// An error in Pasqal's envelope: `data` is an object (the SDK reads `data.description`).
pub struct PasqalError(pub ApiError);

impl PasqalError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        PasqalError(ApiError::new(status, code, message))
    }
    fn bad(message: impl Into<String>) -> Self {
        PasqalError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
}

impl From<ServiceError> for PasqalError {
    fn from(e: ServiceError) -> Self {
        PasqalError(ApiError::from(e))
    }
}

impl From<ApiError> for PasqalError {
    fn from(e: ApiError) -> Self {
        PasqalError(e)
    }
}

impl IntoResponse for PasqalError {
    fn into_response(self) -> Response {
        let e = self.0;
        let body = json!({
            "status": "fail",
            "code": e.status.as_u16(),
            "message": e.status.canonical_reason().unwrap_or("Error"),
            "data": {"description": e.message, "code": e.code},
        });
        let mut resp = (e.status, Json(body)).into_response();
        if e.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(1));
        }
        resp
    }
}

type PResult<T = Response> = Result<T, PasqalError>;

/// The success envelope.
fn ok(data: Value) -> Response {
    Json(json!({"status": "success", "code": "200", "message": "OK.", "data": data})).into_response()
}

fn ok_page(data: Vec<Value>, total: i64, offset: i64) -> Response {
    let end = offset + data.len() as i64;
    Json(json!({
        "status": "success", "code": "200", "message": "OK.", "data": data,
        "pagination": {"total": total, "offset": offset, "end": end},
    }))
    .into_response()
}

/// The caller, with errors in Pasqal's envelope.
pub struct PCaller(pub Principal);

impl FromRequestParts<AppState> for PCaller {
    type Rejection = PasqalError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(PCaller(Caller::from_request_parts(parts, state).await?.0))
    }
}

fn uuid_of(what: &str, s: &str) -> PResult<Uuid> {
    Uuid::parse_str(s).map_err(|_| PasqalError::bad(format!("{what} '{s}' is not a UUID")))
}

pub fn router() -> Router<AppState> {
    let core = Router::new()
        .route("/api/v1/batches", post(create_batch).get(list_batches))
        .route("/api/v1/batches/cancel", patch(cancel_batches))
        .route("/api/v2/batches/{id}", get(get_batch))
        .route("/api/v1/batches/{id}/status", get(batch_status))
        .route("/api/v2/batches/{id}/jobs", post(add_jobs))
        .route("/api/v2/batches/{id}/complete", patch(complete_batch))
        .route("/api/v2/batches/{id}/cancel", patch(cancel_batch))
        .route("/api/v1/batches/{id}/rebatch", post(rebatch))
        .route("/api/v1/batches/{id}/tags", patch(set_tags))
        .route("/api/v2/batches/{id}/cancel/jobs", patch(cancel_jobs))
        .route("/api/v2/jobs", get(list_jobs))
        .route("/api/v2/jobs/{id}", get(get_job))
        .route("/api/v1/jobs/{id}/status", get(job_status))
        .route("/api/v2/jobs/{id}/cancel", patch(cancel_job))
        .route("/api/v1/jobs/{id}/results_link", get(results_link))
        .route("/api/v1/batches/{id}/full_results", get(full_results))
        .route("/api/v1/devices", get(devices))
        .route("/api/v1/devices/specs", get(device_specs))
        .route("/api/v1/devices/specs/{device_type}", get(device_spec))
        .route("/api/v1/devices/public-specs", get(public_specs));
    Router::new()
        .nest("/core-fast", core)
        .route("/account/api/v1/projects", get(projects))
        .route("/oauth/token", post(oauth_token))
        .route("/results/{token}", get(result_file))
        .fallback(|| async { PasqalError::new(StatusCode::NOT_FOUND, "not_found", "no such Pasqal route") })
}

async fn create_batch(State(s): State<AppState>, PCaller(who): PCaller, headers: HeaderMap, body: Bytes) -> PResult {
    let dto: CreateBatchDto = decode_json(&headers, &body)?;
    let project_id = match dto.project_id.as_deref() {
        Some(p) => Some(uuid_of("project_id", p)?),
        None => None,
    };
    let priority = match dto.queue_priority.as_deref() {
        None => None,
        Some(p) => Some(parse_priority(p)?),
    };
    let open = dto.open.unwrap_or_else(|| dto.complete.map(|c| !c).unwrap_or(false));
    let req = CreateBatch {
        project_id,
        sequence_builder: dto.sequence_builder,
        jobs: dto.jobs.into_iter().map(BatchJobDto::into_spec).collect(),
        open,
        device_type: dto.device_type,
        configuration: dto.configuration,
        backend_configuration: dto.backend_configuration,
        tags: dto.tags.unwrap_or_default(),
        webhook: dto.webhook,
        priority,
    };
    let b = s.svc.create_batch(&who, req).await?;
    Ok(ok(views::batch(&b, true)))
}

fn parse_priority(p: &str) -> PResult<Priority> {
    match p {
        "LOW" => Ok(Priority::Low),
        "MEDIUM" => Ok(Priority::Medium),
        "HIGH" => Ok(Priority::High),
        other => Err(PasqalError::bad(format!("queue_priority '{other}' is not one of LOW, MEDIUM, HIGH"))),
    }
}

async fn get_batch(State(s): State<AppState>, PCaller(who): PCaller, Path(id): Path<String>) -> PResult {
    let b = s.svc.get_batch(&who, uuid_of("batch id", &id)?).await?;
    Ok(ok(views::batch(&b, true)))
}

async fn batch_status(State(s): State<AppState>, PCaller(who): PCaller, Path(id): Path<String>) -> PResult {
    let b = s.svc.get_batch(&who, uuid_of("batch id", &id)?).await?;
    Ok(ok(json!({"status": status::batch(b.state, b.closed_reason), "jobs_count_per_status": views::counts(&b)})))
}

async fn add_jobs(
    State(s): State<AppState>,
    PCaller(who): PCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> PResult {
    let id = uuid_of("batch id", &id)?;
    let jobs: Vec<BatchJobDto> = decode_json(&headers, &body)?;
    let b = s.svc.add_batch_jobs(&who, id, jobs.into_iter().map(BatchJobDto::into_spec).collect()).await?;
    Ok(ok(views::batch(&b, true)))
}

async fn complete_batch(State(s): State<AppState>, PCaller(who): PCaller, Path(id): Path<String>) -> PResult {
    let b = s.svc.complete_batch(&who, uuid_of("batch id", &id)?).await?;
    Ok(ok(views::batch(&b, true)))
}

async fn cancel_batch(State(s): State<AppState>, PCaller(who): PCaller, Path(id): Path<String>) -> PResult {
    let b = s.svc.cancel_batch(&who, uuid_of("batch id", &id)?).await?;
    Ok(ok(views::batch(&b, true)))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBatchesDto {
    batch_ids: Vec<String>,
}

async fn cancel_batches(State(s): State<AppState>, PCaller(who): PCaller, headers: HeaderMap, body: Bytes) -> PResult {
    let dto: CancelBatchesDto = decode_json(&headers, &body)?;
    let ids = dto.batch_ids.iter().map(|i| uuid_of("batch id", i)).collect::<PResult<Vec<_>>>()?;
    let (done, errors) = s.svc.cancel_batches(&who, &ids).await?;
    let errors: serde_json::Map<String, Value> =
        errors.into_iter().map(|(id, m)| (id.to_string(), Value::String(m))).collect();
    Ok(ok(json!({"batches": done.iter().map(|b| views::batch(b, false)).collect::<Vec<_>>(), "errors": errors})))
}

async fn rebatch(State(s): State<AppState>, PCaller(who): PCaller, Path(id): Path<String>, Pairs(q): Pairs) -> PResult {
    let id = uuid_of("batch id", &id)?;
    let sel = query::selection(&q, &["id", "status", "min_runs", "max_runs", "start_date", "end_date"])?;
    let b = s.svc.rebatch(&who, id, sel).await?;
    Ok(ok(views::batch(&b, true)))
}

async fn set_tags(
    State(s): State<AppState>,
    PCaller(who): PCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> PResult {
    let id = uuid_of("batch id", &id)?;
    let tags: Vec<String> = decode_json(&headers, &body)?;
    let b = s.svc.set_batch_tags(&who, id, tags).await?;
    Ok(ok(views::batch(&b, true)))
}

async fn cancel_jobs(
    State(s): State<AppState>,
    PCaller(who): PCaller,
    Path(id): Path<String>,
    Pairs(q): Pairs,
) -> PResult {
    let id = uuid_of("batch id", &id)?;
    let sel: JobSelection = query::selection(&q, &["id", "min_runs", "max_runs", "start_date", "end_date"])?;
    let (done, errors) = s.svc.cancel_batch_jobs(&who, id, sel).await?;
    let errors: serde_json::Map<String, Value> =
        errors.into_iter().map(|(id, m)| (id.to_string(), Value::String(m))).collect();
    Ok(ok(json!({"jobs": done.iter().map(views::job).collect::<Vec<_>>(), "errors": errors})))
}

async fn list_batches(State(s): State<AppState>, PCaller(who): PCaller, Pairs(q): Pairs) -> PResult {
    let f = query::batch_filters(&q)?;
    let offset = f.offset;
    let (items, total) = s.svc.list_batches(&who, f).await?;
    Ok(ok_page(items.iter().map(|b| views::batch(b, false)).collect(), total, offset))
}

async fn list_jobs(State(s): State<AppState>, PCaller(who): PCaller, Pairs(q): Pairs) -> PResult {
    let f = query::job_filters(&q)?;
    let offset = f.offset;
    let (items, total) = s.svc.list_batch_jobs(&who, f).await?;
    Ok(ok_page(items.iter().map(views::job).collect(), total, offset))
}

async fn get_job(State(s): State<AppState>, PCaller(who): PCaller, Path(id): Path<String>) -> PResult {
    let j = s.svc.get_batch_job(&who, uuid_of("job id", &id)?).await?;
    Ok(ok(views::job(&j)))
}

async fn job_status(State(s): State<AppState>, PCaller(who): PCaller, Path(id): Path<String>) -> PResult {
    let j = s.svc.get_batch_job(&who, uuid_of("job id", &id)?).await?;
    Ok(ok(json!({"status": status::job(j.status)})))
}

async fn cancel_job(State(s): State<AppState>, PCaller(who): PCaller, Path(id): Path<String>) -> PResult {
    let j = s.svc.cancel_batch_job(&who, uuid_of("job id", &id)?).await?;
    Ok(ok(views::job(&j)))
}

/// The server's own base URL as the client reached it (`X-Forwarded-Proto` and `Host`).
fn base_url(headers: &HeaderMap) -> String {
    let host = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    let proto = headers.get("x-forwarded-proto").and_then(|h| h.to_str().ok()).unwrap_or("http");
    format!("{proto}://{host}")
}

async fn results_link(
    State(s): State<AppState>,
    PCaller(who): PCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> PResult {
    let id = uuid_of("job id", &id)?;
    let token = s.svc.mint_result_link(&who, id, chrono::Duration::seconds(RESULTS_LINK_TTL_SECONDS)).await?;
    let link = token.map(|t| format!("{}/pasqal/results/{t}", base_url(&headers)));
    Ok(ok(json!({"results_link": link})))
}

/// The bare result document (no envelope, no token: the link is the capability).
async fn result_file(State(s): State<AppState>, Path(token): Path<String>) -> PResult {
    let r = s.svc.result_by_link(&token).await?;
    Ok(Json(views::result_document(r)).into_response())
}

/// `GET /batches/{id}/full_results` (QRMI reads it; the SDK does not): the result document of
/// every finished job of the batch, by job id, as the results links serve them.
async fn full_results(State(s): State<AppState>, PCaller(who): PCaller, Path(id): Path<String>) -> PResult {
    let b = s.svc.get_batch(&who, uuid_of("batch id", &id)?).await?;
    let mut out = serde_json::Map::new();
    for j in b.jobs.iter().filter(|j| j.status == qcloud_service::JobStatus::Completed) {
        let r = s.svc.job_result(&who, j.id).await?;
        out.insert(j.id.to_string(), views::result_document(r.result));
    }
    Ok(ok(Value::Object(out)))
}

async fn analog_specs(s: &AppState) -> PResult<Vec<(String, String)>> {
    let devices = s.svc.list_devices(&Principal::operator()).await?;
    Ok(devices
        .into_iter()
        .filter_map(|d| {
            let spec = d.config.get("pulser_device").filter(|v| v.is_object())?;
            Some((d.name, spec.to_string()))
        })
        .collect())
}

/// `GET /devices` (no token, as Pasqal serves it; QRMI's `is_accessible` reads `availability`):
/// every served analog device with its status (`UP`, `PAUSED`, `DOWN`) and `availability`
/// `ACTIVE` (a device qcloud serves is not retired), optionally `?device_type=` one of them.
async fn devices(State(s): State<AppState>, Pairs(q): Pairs) -> PResult {
    let mut wanted = Vec::new();
    for (k, v) in q {
        match k.as_str() {
            "device_type" => wanted.push(v),
            other => return Err(PasqalError::bad(format!("unknown filter '{other}': devices filter on device_type"))),
        }
    }
    let data: Vec<Value> = s
        .svc
        .list_devices(&Principal::operator())
        .await?
        .into_iter()
        .filter(|d| d.kind == qcloud_service::DeviceKind::Analog && (wanted.is_empty() || wanted.contains(&d.name)))
        .map(|d| json!({"device_type": d.name, "status": status::device(d.status), "availability": "ACTIVE"}))
        .collect();
    Ok(ok(Value::Array(data)))
}

/// `GET /devices/specs/{device_type}` (authenticated): one device's Pulser spec.
async fn device_spec(State(s): State<AppState>, PCaller(_who): PCaller, Path(t): Path<String>) -> PResult {
    let (n, spec) = analog_specs(&s).await?.into_iter().find(|(n, _)| *n == t).ok_or_else(|| {
        PasqalError::new(StatusCode::NOT_FOUND, "not_found", format!("device_type '{t}' is not served here"))
    })?;
    Ok(ok(json!({"device_type": n, "specs": spec})))
}

async fn device_specs(State(s): State<AppState>, PCaller(_who): PCaller) -> PResult {
    let specs: serde_json::Map<String, Value> =
        analog_specs(&s).await?.into_iter().map(|(n, j)| (n, Value::String(j))).collect();
    Ok(ok(Value::Object(specs)))
}

async fn public_specs(State(s): State<AppState>) -> PResult {
    let specs: Vec<Value> =
        analog_specs(&s).await?.into_iter().map(|(n, j)| json!({"device_type": n, "specs": j})).collect();
    Ok(ok(Value::Array(specs)))
}

async fn projects(State(s): State<AppState>, PCaller(who): PCaller, Pairs(q): Pairs) -> PResult {
    for (k, v) in &q {
        if k != "project_status" {
            return Err(PasqalError::bad(format!("unknown filter '{k}'")));
        }
        if v != "ACTIVE" {
            return Ok(ok(json!([])));
        }
    }
    let p = s.svc.pasqal_project(&who).await?;
    Ok(ok(json!([{
        "id": p.id, "name": p.name, "status": "ACTIVE", "archived": false,
        "created_at": views::ts(p.created_at), "updated_at": views::ts(p.created_at),
    }])))
}

/// OAuth 2 password grant (form-encoded); answers without an envelope, as an IdP does.
async fn oauth_token(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let _ = headers;
    let form: Vec<(String, String)> = match serde_urlencoded_pairs(&body) {
        Some(f) => f,
        None => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "the body must be form-urlencoded"),
    };
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if let Some(g) = get("grant_type") {
        if g != "password" && !g.ends_with("password-realm") {
            return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "only the password grant is served");
        }
    }
    let (Some(user), Some(password)) = (get("username"), get("password")) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "give username and password");
    };
    match s.svc.login(user, password).await {
        Ok(token) => {
            Json(json!({"access_token": token, "token_type": "Bearer", "expires_in": LOGIN_EXPIRES_IN})).into_response()
        }
        Err(ServiceError::Unauthenticated(m)) => oauth_error(StatusCode::UNAUTHORIZED, "invalid_grant", &m),
        Err(e) => PasqalError::from(e).into_response(),
    }
}

fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    (status, Json(json!({"error": code, "error_description": description}))).into_response()
}

fn serde_urlencoded_pairs(body: &[u8]) -> Option<Vec<(String, String)>> {
    let text = std::str::from_utf8(body).ok()?;
    query::parse_pairs(text)
}
