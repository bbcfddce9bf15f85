//! Pasqal batches: a batch is a `batch`-mode session with idle policy `time_out` whose default
//! program carries the batch's sequence; its jobs run program `pulser` on an analog device. These
//! commands (create, add jobs, rebatch, set tags, filtered listings, results links, users with
//! passwords) are what the Pasqal facade translates its routes onto; closing and canceling reuse
//! the session commands (rules 6 and 7).

use crate::auth::Principal;
use crate::error::{Result, ServiceError};
use crate::jobs::CancelJob;
use crate::sessions::{CancelSession, CloseSession};
use crate::validate;
use crate::Service;
use base64::Engine;
use chrono::{DateTime, Utc};
use qcloud_core::{ClosedReason, DeviceStatus, DriverKind, IdlePolicy, JobStatus, Priority, SessionMode, SessionState};
use qcloud_store::jobs::{Job, NewJob};
use qcloud_store::pasqal::{BatchFilter, BatchState, PasqalJobFilter};
use qcloud_store::sessions::{NewSession, Session};
use qcloud_store::PgConnection;
use rand::RngCore;
use serde_json::{json, Value};
use std::net::IpAddr;
use tracing::instrument;
use uuid::Uuid;

pub use qcloud_store::pasqal::BatchState as PasqalBatchState;

/// Shots of a job that gives no `runs` and whose batch names no `default_num_shots` (Pulser's default).
pub const DEFAULT_RUNS: i64 = 1000;
/// Largest page of a batch or job listing.
pub const MAX_PAGE: i64 = 100;

/// One job of a batch as the client specifies it.
#[derive(Debug, Clone, Default)]
pub struct BatchJobSpec {
    pub runs: Option<i64>,
    pub variables: Option<Value>,
    /// A sequence of its own (else the batch's).
    pub sequence: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct CreateBatch {
    /// Must be the caller's project.
    pub project_id: Option<Uuid>,
    pub sequence_builder: Option<String>,
    pub jobs: Vec<BatchJobSpec>,
    pub open: bool,
    /// A device name; `None`: inferred from the sequence's device.
    pub device_type: Option<String>,
    pub configuration: Option<Value>,
    pub backend_configuration: Option<String>,
    pub tags: Vec<String>,
    pub webhook: Option<String>,
    pub priority: Option<Priority>,
}

/// A batch and all its jobs, in submission order.
#[derive(Debug, Clone)]
pub struct BatchView {
    pub id: Uuid,
    pub project_id: Uuid,
    pub user: String,
    pub device: String,
    pub device_status: DeviceStatus,
    pub state: SessionState,
    pub closed_reason: Option<ClosedReason>,
    pub accepting_jobs: bool,
    pub priority: Priority,
    pub tags: Vec<String>,
    pub webhook: Option<String>,
    pub sequence_builder: Option<String>,
    pub configuration: Option<Value>,
    pub backend_configuration: Option<String>,
    pub parent_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub jobs: Vec<BatchJobView>,
}

/// A job of a batch.
#[derive(Debug, Clone)]
pub struct BatchJobView {
    pub id: Uuid,
    pub batch_id: Uuid,
    pub project_id: Uuid,
    pub user: String,
    pub status: JobStatus,
    pub runs: Option<i64>,
    pub variables: Option<Value>,
    /// Its own sequence, when it does not use the batch's.
    pub sequence: Option<String>,
    pub reason: Option<String>,
    pub parent_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A batch job built from its spec and checked by its driver, ready to insert.
#[derive(Debug)]
struct ReadyJob {
    payload: Value,
    runs: i64,
}

/// Which jobs a rebatch copies or a cancel-jobs cancels (all ANDed; empty = all).
#[derive(Debug, Clone, Default)]
pub struct JobSelection {
    pub ids: Vec<Uuid>,
    pub statuses: Vec<JobStatus>,
    pub min_runs: Option<i64>,
    pub max_runs: Option<i64>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
}

impl JobSelection {
    fn matches(&self, j: &Job) -> bool {
        (self.ids.is_empty() || self.ids.contains(&j.id))
            && (self.statuses.is_empty() || self.statuses.contains(&j.status))
            && self.min_runs.is_none_or(|m| j.shots.is_some_and(|s| s >= m))
            && self.max_runs.is_none_or(|m| j.shots.is_some_and(|s| s <= m))
            && self.created_from.is_none_or(|t| j.created_at >= t)
            && self.created_to.is_none_or(|t| j.created_at <= t)
    }
}

/// Batch listing filters (the ids of `project_ids` other than the caller's match nothing).
#[derive(Debug, Clone, Default)]
pub struct ListBatches {
    pub ids: Vec<Uuid>,
    pub project_ids: Vec<Uuid>,
    pub users: Vec<String>,
    pub devices: Vec<String>,
    pub states: Vec<BatchState>,
    pub open: Option<bool>,
    pub priorities: Vec<Priority>,
    pub tag: Option<String>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
    pub offset: i64,
    pub limit: i64,
}

/// Job listing filters.
#[derive(Debug, Clone, Default)]
pub struct ListBatchJobs {
    pub ids: Vec<Uuid>,
    pub project_ids: Vec<Uuid>,
    pub batch_ids: Vec<Uuid>,
    pub users: Vec<String>,
    pub statuses: Vec<JobStatus>,
    pub min_runs: Option<i64>,
    pub max_runs: Option<i64>,
    pub errors: Option<bool>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
    pub creation_order: bool,
    pub offset: i64,
    pub limit: i64,
}

/// A project as the account API shows it.
#[derive(Debug, Clone)]
pub struct ProjectView {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

fn seq_str(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_owned)
}

/// The batch view of a session and its jobs: a pure function of the stored rows.
fn batch_view(
    s: Session,
    project_id: Uuid,
    device_status: DeviceStatus,
    parent: Option<Uuid>,
    jobs: Vec<Job>,
) -> BatchView {
    let dp = s.default_program.clone().unwrap_or(Value::Null);
    let sequence_builder = seq_str(dp.get("sequence_builder"));
    let jobs: Vec<BatchJobView> =
        jobs.into_iter().map(|j| job_view(j, project_id, sequence_builder.as_deref())).collect();
    let updated_at = [
        Some(s.created_at),
        s.activated_at,
        s.last_job_submitted,
        s.last_job_started,
        s.last_job_completed,
        s.closed_at,
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(s.created_at);
    BatchView {
        id: s.id,
        project_id,
        user: s.user_name,
        device: s.device,
        device_status,
        state: s.state,
        closed_reason: s.closed_reason,
        accepting_jobs: s.accepting_jobs,
        priority: s.priority,
        tags: s.tags,
        webhook: s.webhook,
        sequence_builder,
        configuration: dp.get("configuration").filter(|v| !v.is_null()).cloned(),
        backend_configuration: seq_str(dp.get("backend_configuration")),
        parent_id: parent,
        created_at: s.created_at,
        updated_at,
        started_at: s.started_at,
        closed_at: s.closed_at,
        jobs,
    }
}

fn job_view(j: Job, project_id: Uuid, batch_sequence: Option<&str>) -> BatchJobView {
    let own = seq_str(j.payload.get("sequence")).filter(|s| Some(s.as_str()) != batch_sequence);
    let updated_at =
        [Some(j.created_at), j.started_at, j.finished_at].into_iter().flatten().max().unwrap_or(j.created_at);
    BatchJobView {
        id: j.id,
        batch_id: j.session_id.unwrap_or_default(),
        project_id,
        user: j.user_name,
        status: j.status,
        runs: j.shots,
        variables: j.payload.get("variables").filter(|v| !v.is_null()).cloned(),
        sequence: own,
        reason: j.reason,
        parent_id: j.parent_id,
        created_at: j.created_at,
        updated_at,
        started_at: j.started_at,
        finished_at: j.finished_at,
    }
}

/// A sequence must at least look like Pulser's abstract representation; the analog driver
/// checks the rest when it prepares the job.
fn check_sequence(field: &str, text: &str) -> Result<Value> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| ServiceError::invalid("invalid_sequence", format!("{field} is not valid JSON: {e}")))?;
    let Some(obj) = v.as_object() else {
        return Err(ServiceError::invalid("invalid_sequence", format!("{field} must be a JSON object")));
    };
    for k in ["version", "register", "channels", "operations", "device"] {
        if !obj.contains_key(k) {
            return Err(ServiceError::invalid(
                "invalid_sequence",
                format!("{field} is not a Pulser abstract-repr sequence: it has no '{k}'"),
            ));
        }
    }
    Ok(v)
}

/// `default_num_shots` of an opaque Pulser `EmulationConfig` text (it may hold `Infinity`, so
/// it is searched, not parsed).
fn default_num_shots(backend_configuration: Option<&str>) -> Option<i64> {
    let text = backend_configuration?;
    let at = text.find("\"default_num_shots\"")? + "\"default_num_shots\"".len();
    let rest = text[at..].trim_start().strip_prefix(':')?.trim_start();
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// Webhooks go to http(s) hosts that are not loopback, private or link-local (the form only; a
/// batch's webhook is checked by `Service::check_webhook_url`, which applies the server's allow list
/// and resolves the host).
pub fn check_webhook(url: &str) -> Result<()> {
    let bad = |m: &str| Err(ServiceError::invalid("invalid_webhook", format!("webhook '{url}': {m}")));
    let rest = match url.split_once("://") {
        Some(("http" | "https", rest)) => rest,
        _ => return bad("must be an http:// or https:// URL"),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(h) = hostport.strip_prefix('[') {
        h.split(']').next().unwrap_or("")
    } else {
        hostport.split(':').next().unwrap_or("")
    };
    if host.is_empty() {
        return bad("has no host");
    }
    let lower = host.to_ascii_lowercase();
    if lower == "localhost" || lower.ends_with(".localhost") {
        return bad("loopback hosts are not allowed");
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        let forbidden = match ip {
            IpAddr::V4(v4) => {
                v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified() || v4.is_broadcast()
            }
            IpAddr::V6(v6) => {
                v6.is_loopback()
                    || v6.is_unspecified()
                    || (v6.segments()[0] & 0xfe00) == 0xfc00
                    || (v6.segments()[0] & 0xffc0) == 0xfe80
            }
        };
        if forbidden {
            return bad("loopback, private and link-local addresses are not allowed");
        }
    }
    Ok(())
}

fn offset_limit(offset: i64, limit: i64) -> Result<(i64, i64)> {
    if offset < 0 {
        return Err(ServiceError::invalid("invalid_offset", "offset must be 0 or more"));
    }
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ServiceError::invalid("invalid_limit", format!("limit must be between 1 and {MAX_PAGE}")));
    }
    Ok((offset, limit))
}

fn new_capability() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Service {
    async fn own_project_uuid(&self, conn: &mut PgConnection, who: &Principal) -> Result<Uuid> {
        qcloud_store::pasqal::project_uuid(conn, &who.project)
            .await?
            .ok_or_else(|| ServiceError::not_found("project", &who.project))
    }

    /// The caller's project (the account API's project list).
    pub async fn pasqal_project(&self, who: &Principal) -> Result<ProjectView> {
        let mut conn = self.pool.acquire().await?;
        let p = qcloud_store::pasqal::project(&mut conn, &who.project)
            .await?
            .ok_or_else(|| ServiceError::not_found("project", &who.project))?;
        Ok(ProjectView { id: p.id, name: p.name, created_at: p.created_at })
    }

    async fn load_batch(&self, conn: &mut PgConnection, who: &Principal, id: Uuid) -> Result<BatchView> {
        let s = qcloud_store::sessions::get(conn, &who.project, id)
            .await?
            .filter(|s| {
                s.mode == SessionMode::Batch
                    && s.default_program.as_ref().is_some_and(|d| d.get("sequence_builder").is_some())
            })
            .ok_or_else(|| ServiceError::not_found("batch", id))?;
        self.view_of(conn, s).await
    }

    async fn view_of(&self, conn: &mut PgConnection, s: Session) -> Result<BatchView> {
        let project_id = qcloud_store::pasqal::project_uuid(conn, &s.project).await?.unwrap_or_default();
        let device_status =
            qcloud_store::devices::get(conn, &s.device).await?.map(|d| d.status).unwrap_or(DeviceStatus::Offline);
        let parent = qcloud_store::pasqal::session_parent(conn, s.id).await?;
        let jobs = qcloud_store::pasqal::session_jobs(conn, s.id).await?;
        Ok(batch_view(s, project_id, device_status, parent, jobs))
    }

    pub async fn get_batch(&self, who: &Principal, id: Uuid) -> Result<BatchView> {
        let mut conn = self.pool.acquire().await?;
        self.load_batch(&mut conn, who, id).await
    }

    /// The analog device a batch runs on: `device_type` by name, else the device whose Pulser
    /// spec has the sequence's device name, else `EMU_FREE`.
    async fn batch_device(&self, conn: &mut PgConnection, device_type: Option<&str>, seq: &Value) -> Result<String> {
        let devices = qcloud_store::devices::list(conn).await?;
        let analog: Vec<_> = devices.iter().map(|o| &o.device).filter(|d| d.driver == DriverKind::Analog).collect();
        let served = || analog.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", ");
        if let Some(t) = device_type {
            return analog.iter().find(|d| d.name == t).map(|d| d.name.clone()).ok_or_else(|| {
                ServiceError::invalid(
                    "unknown_device_type",
                    format!("device_type '{t}' is not served here; served: {}", served()),
                )
            });
        }
        let wanted = match seq.get("device") {
            Some(Value::String(s)) => Some(s.as_str()),
            Some(d) => d.get("name").and_then(Value::as_str),
            None => None,
        };
        let by_spec = wanted.and_then(|w| {
            analog
                .iter()
                .find(|d| d.config.get("pulser_device").and_then(|p| p.get("name")).and_then(Value::as_str) == Some(w))
        });
        by_spec
            .or_else(|| analog.iter().find(|d| d.name == "EMU_FREE"))
            .or_else(|| analog.first())
            .map(|d| d.name.clone())
            .ok_or_else(|| ServiceError::invalid("unknown_device_type", "no analog device is served here"))
    }

    /// Build the jobs of a batch on `device_name` (whose session carries `default_program`) and
    /// put each through its driver's submit-time checks. Reading only, before any transaction,
    /// as `submit_job` does: parsing a sequence holds no lock, and a refusal stores nothing.
    async fn check_batch_jobs(
        &self,
        conn: &mut PgConnection,
        who: &Principal,
        device_name: &str,
        default_program: Option<&Value>,
        specs: &[BatchJobSpec],
    ) -> Result<Vec<ReadyJob>> {
        if specs.is_empty() {
            return Ok(Vec::new());
        }
        let batch_seq = seq_str(default_program.and_then(|d| d.get("sequence_builder")));
        let default_runs =
            default_num_shots(default_program.and_then(|d| d.get("backend_configuration")).and_then(Value::as_str))
                .unwrap_or(DEFAULT_RUNS);
        let (device, quota) = qcloud_store::devices::get_with_quota(conn, device_name, &who.project)
            .await?
            .ok_or_else(|| ServiceError::not_found("device", device_name))?;
        if let Some(quota) = quota {
            let used = qcloud_store::tokens::usage(conn, &who.project).await?;
            if used >= quota {
                return Err(ServiceError::QuotaExceeded(format!(
                    "project '{}' used {used:.1} of its {quota:.1} device seconds",
                    who.project
                )));
            }
        }
        let mut ready = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let sequence = match (&spec.sequence, &batch_seq) {
                (Some(own), _) => {
                    check_sequence(&format!("jobs[{i}].sequence"), own)?;
                    own.clone()
                }
                (None, Some(b)) => b.clone(),
                (None, None) => {
                    return Err(ServiceError::invalid(
                        "missing_sequence",
                        format!("jobs[{i}] has no sequence and the batch has no sequence_builder"),
                    ))
                }
            };
            let runs = spec.runs.unwrap_or(default_runs);
            validate::shots(Some(runs), &self.cfg).map_err(|_| {
                ServiceError::invalid(
                    "invalid_runs",
                    format!("jobs[{i}].runs must be between 1 and {}", self.cfg.max_shots),
                )
            })?;
            if runs < 1 {
                return Err(ServiceError::invalid("invalid_runs", format!("jobs[{i}].runs must be at least 1")));
            }
            match &spec.variables {
                None | Some(Value::Null) | Some(Value::Object(_)) => {}
                Some(_) => {
                    return Err(ServiceError::invalid(
                        "invalid_variables",
                        format!("jobs[{i}].variables must be an object"),
                    ))
                }
            }
            let payload =
                json!({"sequence": sequence, "runs": runs, "variables": spec.variables.clone().unwrap_or(Value::Null)});
            let payload_bytes = validate::payload(&payload, &self.cfg)?;
            validate::json_text("variables", &payload["variables"])?;
            // The analog driver's own checks (a sequence Pulser would refuse, too many atoms for
            // the device, missing variables), as for every submitted job: a 4xx now, nothing stored.
            if let Some(check) = &self.checks {
                crate::checks::run(check, &device, "pulser", &payload, Some(runs), payload_bytes).await.map_err(
                    |e| match e {
                        ServiceError::Invalid { code, message } => {
                            ServiceError::invalid(code, format!("jobs[{i}]: {message}"))
                        }
                        other => other,
                    },
                )?;
            }
            ready.push(ReadyJob { payload, runs });
        }
        Ok(ready)
    }

    /// Insert checked jobs into a batch whose session row is locked (in the caller's transaction).
    async fn insert_batch_jobs(
        &self,
        tx: &mut PgConnection,
        who: &Principal,
        s: &Session,
        jobs: &[ReadyJob],
        parents: Option<&[Uuid]>,
    ) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let max_exec = validate::max_execution(None, &self.cfg)?;
        let mut wake = false;
        for (i, job) in jobs.iter().enumerate() {
            let inserted = qcloud_store::jobs::insert(
                tx,
                NewJob {
                    id: Uuid::new_v4(),
                    project: &who.project,
                    user: &who.user,
                    device: &s.device,
                    session_id: Some(s.id),
                    program: "pulser",
                    payload: &job.payload,
                    shots: Some(job.runs),
                    tags: &[],
                    priority: s.priority,
                    idempotency_key: None,
                    request_hash: None,
                    max_execution: max_exec,
                },
            )
            .await?
            .ok_or_else(|| ServiceError::Internal("a batch job was not inserted".into()))?;
            wake |= inserted.device_idle;
            if let Some(p) = parents.and_then(|p| p.get(i)) {
                qcloud_store::pasqal::set_job_parent(tx, inserted.job.id, *p).await?;
            }
        }
        if wake {
            qcloud_store::notify(tx, qcloud_store::channel::WAKE, &s.device).await?;
        }
        Ok(())
    }

    /// Create a batch (open or closed) with its first jobs, in one transaction.
    #[instrument(skip_all, fields(device = req.device_type.as_deref().unwrap_or("")))]
    pub async fn create_batch(&self, who: &Principal, req: CreateBatch) -> Result<BatchView> {
        validate::tags(&req.tags)?;
        if let Some(w) = &req.webhook {
            validate::text("webhook", w)?;
            self.check_webhook_url(w).await?;
        }
        let seq_value = match &req.sequence_builder {
            Some(s) => Some(check_sequence("sequence_builder", s)?),
            None => None,
        };
        let probe = match (&seq_value, req.jobs.iter().find_map(|j| j.sequence.as_deref())) {
            (Some(v), _) => v.clone(),
            (None, Some(own)) => check_sequence("jobs[].sequence", own)?,
            (None, None) => {
                return Err(ServiceError::invalid(
                    "missing_sequence",
                    "give a sequence_builder, or a sequence in every job",
                ))
            }
        };
        let ttls = self.cfg.ttl.resolve(None, None).map_err(|e| ServiceError::invalid("invalid_ttl", e.to_string()))?;
        // Everything that only reads, the jobs' checks included, before the transaction.
        let mut conn = self.pool.acquire().await?;
        let own = self.own_project_uuid(&mut conn, who).await?;
        match req.project_id {
            Some(p) if p == own => {}
            Some(p) => return Err(ServiceError::not_found("project", p)),
            None => return Err(ServiceError::invalid("missing_field", "project_id is required")),
        }
        let device = self.batch_device(&mut conn, req.device_type.as_deref(), &probe).await?;
        let default_program = json!({
            "sequence_builder": req.sequence_builder,
            "configuration": req.configuration,
            "backend_configuration": req.backend_configuration,
        });
        validate::json_text("configuration", &default_program)?;
        let ready = self.check_batch_jobs(&mut conn, who, &device, Some(&default_program), &req.jobs).await?;
        drop(conn);

        let mut tx = self.pool.begin().await?;
        let row = qcloud_store::sessions::insert(
            &mut tx,
            NewSession {
                id: Uuid::new_v4(),
                project: &who.project,
                user: &who.user,
                device: &device,
                mode: SessionMode::Batch,
                ttls,
                idle_policy: IdlePolicy::TimeOut,
                priority: req.priority.unwrap_or_default(),
                tags: &req.tags,
                webhook: req.webhook.as_deref(),
                default_program: Some(default_program),
            },
        )
        .await?;
        let id = row.id;
        if let Some(w) = &req.webhook {
            self.subscribe_batch(&mut tx, &who.project, w, id).await?;
        }
        if !ready.is_empty() {
            let row = qcloud_store::sessions::submit_into(&mut tx, id, &who.project)
                .await?
                .ok_or_else(|| ServiceError::not_found("batch", id))?;
            self.insert_batch_jobs(&mut tx, who, &row, &ready, None).await?;
        }
        if !req.open {
            qcloud_store::sessions::stop_accepting(&mut tx, id).await?;
        }
        self.settle_session(&mut tx, id).await?;
        tx.commit().await?;
        self.get_batch(who, id).await
    }

    /// Add jobs to an open batch (PENDING or RUNNING).
    #[instrument(skip_all, fields(session_id = %id))]
    pub async fn add_batch_jobs(&self, who: &Principal, id: Uuid, jobs: Vec<BatchJobSpec>) -> Result<BatchView> {
        self.get_batch(who, id).await?;
        if jobs.is_empty() {
            return Err(ServiceError::invalid("missing_jobs", "give at least one job"));
        }
        let closed = || ServiceError::conflict("batch_closed", format!("batch {id} is closed and takes no more jobs"));
        // The jobs are checked before the transaction (a closed batch is refused before that).
        let mut conn = self.pool.acquire().await?;
        let s = qcloud_store::sessions::get(&mut conn, &who.project, id)
            .await?
            .ok_or_else(|| ServiceError::not_found("batch", id))?;
        if !s.state.is_open() || !s.accepting_jobs {
            return Err(closed());
        }
        let ready = self.check_batch_jobs(&mut conn, who, &s.device, s.default_program.as_ref(), &jobs).await?;
        drop(conn);

        let mut tx = self.pool.begin().await?;
        let s = qcloud_store::sessions::submit_into(&mut tx, id, &who.project)
            .await?
            .ok_or_else(|| ServiceError::not_found("batch", id))?;
        if !s.state.is_open() || !s.accepting_jobs {
            return Err(closed());
        }
        self.insert_batch_jobs(&mut tx, who, &s, &ready, None).await?;
        self.settle_session(&mut tx, id).await?;
        tx.commit().await?;
        self.get_batch(who, id).await
    }

    /// Close a batch: its jobs finish, then it is DONE (rule 6).
    pub async fn complete_batch(&self, who: &Principal, id: Uuid) -> Result<BatchView> {
        self.get_batch(who, id).await?;
        self.close_session(who, CloseSession { id }).await?;
        self.get_batch(who, id).await
    }

    /// Cancel a batch (rule 7).
    pub async fn cancel_batch(&self, who: &Principal, id: Uuid) -> Result<BatchView> {
        let b = self.get_batch(who, id).await?;
        if !b.state.is_open() {
            return Err(ServiceError::conflict("batch_finished", format!("batch {id} is already finished")));
        }
        self.cancel_session(who, CancelSession { id }).await?;
        self.get_batch(who, id).await
    }

    /// Cancel several batches; each id that cannot be canceled gets a reason.
    pub async fn cancel_batches(&self, who: &Principal, ids: &[Uuid]) -> Result<(Vec<BatchView>, Vec<(Uuid, String)>)> {
        let mut done = Vec::new();
        let mut errors = Vec::new();
        for id in ids {
            match self.cancel_batch(who, *id).await {
                Ok(b) => done.push(b),
                Err(e @ (ServiceError::NotFound { .. } | ServiceError::Conflict { .. })) => {
                    errors.push((*id, e.to_string()))
                }
                Err(e) => return Err(e),
            }
        }
        Ok((done, errors))
    }

    /// A new closed batch with copies of the selected jobs of a closed batch (parents recorded).
    #[instrument(skip_all, fields(session_id = %id))]
    pub async fn rebatch(&self, who: &Principal, id: Uuid, sel: JobSelection) -> Result<BatchView> {
        // The copies are built and checked before the transaction (a batch that no longer
        // accepts jobs never does again, so what is read here still holds in it).
        let mut conn = self.pool.acquire().await?;
        let old = self.load_batch(&mut conn, who, id).await?;
        if old.state.is_open() && old.accepting_jobs {
            return Err(ServiceError::conflict(
                "batch_open",
                format!("batch {id} is still open; close it before a rebatch"),
            ));
        }
        let jobs = qcloud_store::pasqal::session_jobs(&mut conn, id).await?;
        let chosen: Vec<&Job> = jobs.iter().filter(|j| sel.matches(j)).collect();
        if chosen.is_empty() {
            return Err(ServiceError::invalid("no_jobs_selected", format!("no job of batch {id} matches the filters")));
        }
        let s = qcloud_store::sessions::get(&mut conn, &who.project, id)
            .await?
            .ok_or_else(|| ServiceError::not_found("batch", id))?;
        let batch_seq = seq_str(s.default_program.as_ref().and_then(|d| d.get("sequence_builder")));
        let specs: Vec<BatchJobSpec> = chosen
            .iter()
            .map(|j| BatchJobSpec {
                runs: j.shots,
                variables: j.payload.get("variables").filter(|v| !v.is_null()).cloned(),
                sequence: seq_str(j.payload.get("sequence")).filter(|q| Some(q) != batch_seq.as_ref()),
            })
            .collect();
        let parents: Vec<Uuid> = chosen.iter().map(|j| j.id).collect();
        let ready = self.check_batch_jobs(&mut conn, who, &s.device, s.default_program.as_ref(), &specs).await?;
        drop(conn);
        let ttls = self.cfg.ttl.resolve(None, None).map_err(|e| ServiceError::invalid("invalid_ttl", e.to_string()))?;

        let mut tx = self.pool.begin().await?;
        let row = qcloud_store::sessions::insert(
            &mut tx,
            NewSession {
                id: Uuid::new_v4(),
                project: &who.project,
                user: &who.user,
                device: &s.device,
                mode: SessionMode::Batch,
                ttls,
                idle_policy: IdlePolicy::TimeOut,
                priority: s.priority,
                tags: &s.tags,
                webhook: s.webhook.as_deref(),
                default_program: s.default_program.clone(),
            },
        )
        .await?;
        let new_id = row.id;
        if let Some(w) = &s.webhook {
            self.subscribe_batch(&mut tx, &who.project, w, new_id).await?;
        }
        qcloud_store::pasqal::set_session_parent(&mut tx, new_id, id).await?;
        let row = qcloud_store::sessions::submit_into(&mut tx, new_id, &who.project)
            .await?
            .ok_or_else(|| ServiceError::not_found("batch", new_id))?;
        self.insert_batch_jobs(&mut tx, who, &row, &ready, Some(&parents)).await?;
        qcloud_store::sessions::stop_accepting(&mut tx, new_id).await?;
        self.settle_session(&mut tx, new_id).await?;
        tx.commit().await?;
        self.get_batch(who, new_id).await
    }

    pub async fn set_batch_tags(&self, who: &Principal, id: Uuid, tags: Vec<String>) -> Result<BatchView> {
        validate::tags(&tags)?;
        let mut tx = self.pool.begin().await?;
        self.load_batch(&mut tx, who, id).await?;
        qcloud_store::pasqal::set_session_tags(&mut tx, id, &tags).await?;
        tx.commit().await?;
        self.get_batch(who, id).await
    }

    pub async fn list_batches(&self, who: &Principal, q: ListBatches) -> Result<(Vec<BatchView>, i64)> {
        let (offset, limit) = offset_limit(q.offset, q.limit)?;
        let mut conn = self.pool.acquire().await?;
        let own = self.own_project_uuid(&mut conn, who).await?;
        if !q.project_ids.is_empty() && !q.project_ids.contains(&own) {
            return Ok((Vec::new(), 0));
        }
        let f = BatchFilter {
            ids: q.ids,
            users: q.users,
            devices: q.devices,
            states: q.states,
            open: q.open,
            priorities: q.priorities.iter().map(|p| p.rank()).collect(),
            tag: q.tag,
            created_from: q.created_from,
            created_to: q.created_to,
            offset,
            limit,
        };
        let (rows, total) = qcloud_store::pasqal::list_batches(&mut conn, &who.project, &f).await?;
        let mut out = Vec::with_capacity(rows.len());
        for s in rows {
            out.push(self.view_of(&mut conn, s).await?);
        }
        Ok((out, total))
    }

    pub async fn get_batch_job(&self, who: &Principal, id: Uuid) -> Result<BatchJobView> {
        let mut conn = self.pool.acquire().await?;
        let j = qcloud_store::jobs::get(&mut conn, &who.project, id)
            .await?
            .ok_or_else(|| ServiceError::not_found("job", id))?;
        let sid = j.session_id.ok_or_else(|| ServiceError::not_found("job", id))?;
        let b = self.load_batch(&mut conn, who, sid).await.map_err(|_| ServiceError::not_found("job", id))?;
        Ok(job_view(j, b.project_id, b.sequence_builder.as_deref()))
    }

    pub async fn list_batch_jobs(&self, who: &Principal, q: ListBatchJobs) -> Result<(Vec<BatchJobView>, i64)> {
        let (offset, limit) = offset_limit(q.offset, q.limit)?;
        let mut conn = self.pool.acquire().await?;
        let own = self.own_project_uuid(&mut conn, who).await?;
        if !q.project_ids.is_empty() && !q.project_ids.contains(&own) {
            return Ok((Vec::new(), 0));
        }
        let f = PasqalJobFilter {
            ids: q.ids,
            batch_ids: q.batch_ids,
            users: q.users,
            statuses: q.statuses.iter().map(|s| s.as_str().to_owned()).collect(),
            min_runs: q.min_runs,
            max_runs: q.max_runs,
            errors: q.errors,
            created_from: q.created_from,
            created_to: q.created_to,
            creation_order: q.creation_order,
            offset,
            limit,
        };
        let (rows, total) = qcloud_store::pasqal::list_jobs(&mut conn, &who.project, &f).await?;
        let mut seqs: std::collections::HashMap<Uuid, Option<String>> = Default::default();
        let mut out = Vec::with_capacity(rows.len());
        for j in rows {
            let sid = j.session_id.unwrap_or_default();
            if let std::collections::hash_map::Entry::Vacant(e) = seqs.entry(sid) {
                let s = qcloud_store::sessions::get(&mut conn, &who.project, sid).await?;
                e.insert(s.and_then(|s| seq_str(s.default_program.as_ref().and_then(|d| d.get("sequence_builder")))));
            }
            let bs = seqs.get(&sid).cloned().flatten();
            out.push(job_view(j, own, bs.as_deref()));
        }
        Ok((out, total))
    }

    /// Cancel one job of a batch (rule 9).
    pub async fn cancel_batch_job(&self, who: &Principal, id: Uuid) -> Result<BatchJobView> {
        self.get_batch_job(who, id).await?;
        self.cancel_job(who, CancelJob { id }).await?;
        self.get_batch_job(who, id).await
    }

    /// Cancel the selected unfinished jobs of a batch (all of them with an empty selection); a
    /// job named by id that cannot be canceled gets a reason.
    pub async fn cancel_batch_jobs(
        &self,
        who: &Principal,
        batch: Uuid,
        sel: JobSelection,
    ) -> Result<(Vec<BatchJobView>, Vec<(Uuid, String)>)> {
        let b = self.get_batch(who, batch).await?;
        let mut conn = self.pool.acquire().await?;
        let jobs = qcloud_store::pasqal::session_jobs(&mut conn, batch).await?;
        drop(conn);
        let mut done = Vec::new();
        let mut errors = Vec::new();
        for id in &sel.ids {
            if !jobs.iter().any(|j| j.id == *id) {
                errors.push((*id, format!("job '{id}' is not in batch {batch}")));
            }
        }
        for j in jobs.iter().filter(|j| sel.matches(j)) {
            if j.status.is_terminal() && sel.ids.is_empty() {
                continue;
            }
            match self.cancel_job(who, CancelJob { id: j.id }).await {
                Ok(_) => done.push(self.get_batch_job(who, j.id).await?),
                Err(e @ (ServiceError::NotFound { .. } | ServiceError::Conflict { .. })) => {
                    errors.push((j.id, e.to_string()))
                }
                Err(e) => return Err(e),
            }
        }
        let _ = b;
        Ok((done, errors))
    }

    /// A new results-link capability for a completed job, valid for `ttl`; `None` while the job
    /// has no result.
    pub async fn mint_result_link(&self, who: &Principal, id: Uuid, ttl: chrono::Duration) -> Result<Option<String>> {
        let j = self.get_batch_job(who, id).await?;
        if j.status != JobStatus::Completed {
            return Ok(None);
        }
        let token = new_capability();
        let mut conn = self.pool.acquire().await?;
        qcloud_store::pasqal::insert_result_link(&mut conn, &crate::auth::hash_token(&token), id, Utc::now() + ttl)
            .await?;
        Ok(Some(token))
    }

    /// The result a live results link names (no token needed: the link is the capability).
    pub async fn result_by_link(&self, token: &str) -> Result<Value> {
        let mut conn = self.pool.acquire().await?;
        let job = qcloud_store::pasqal::result_link_job(&mut conn, &crate::auth::hash_token(token))
            .await?
            .ok_or_else(|| ServiceError::not_found("results link", "(unknown or expired)"))?;
        let r = qcloud_store::jobs::result(&mut conn, job)
            .await?
            .ok_or_else(|| ServiceError::not_found("results link", "(no result)"))?;
        Ok(r.0)
    }
}

/// Pure status views (DESIGN.md §2).
pub mod status {
    use super::*;

    /// The Pasqal batch status of a session.
    pub fn batch(state: SessionState, reason: Option<ClosedReason>) -> &'static str {
        match (state, reason) {
            (SessionState::Pending, _) => "PENDING",
            (SessionState::Active | SessionState::Inactive, _) => "RUNNING",
            (SessionState::Closed, Some(ClosedReason::Completed)) => "DONE",
            (SessionState::Closed, Some(ClosedReason::Canceled)) => "CANCELED",
            (SessionState::Closed, Some(ClosedReason::IdleTimeout)) => "TIMED_OUT",
            (SessionState::Closed, _) => "ERROR",
        }
    }

    /// The Pasqal job status of a job.
    pub fn job(s: JobStatus) -> &'static str {
        match s {
            JobStatus::Queued => "PENDING",
            JobStatus::Running => "RUNNING",
            JobStatus::Completed => "DONE",
            JobStatus::Failed => "ERROR",
            JobStatus::Canceled => "CANCELED",
        }
    }

    pub fn parse_batch(s: &str) -> Option<BatchState> {
        Some(match s {
            "PENDING" => BatchState::Pending,
            "RUNNING" => BatchState::Running,
            "DONE" => BatchState::Done,
            "CANCELED" => BatchState::Canceled,
            "TIMED_OUT" => BatchState::TimedOut,
            "ERROR" => BatchState::Error,
            _ => return None,
        })
    }

    pub fn parse_job(s: &str) -> Option<JobStatus> {
        Some(match s {
            "PENDING" => JobStatus::Queued,
            "RUNNING" => JobStatus::Running,
            "DONE" => JobStatus::Completed,
            "ERROR" => JobStatus::Failed,
            "CANCELED" => JobStatus::Canceled,
            _ => return None,
        })
    }

    pub fn device(s: DeviceStatus) -> &'static str {
        match s {
            DeviceStatus::Online => "UP",
            DeviceStatus::Paused => "PAUSED",
            DeviceStatus::Offline => "DOWN",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhooks_to_private_hosts_are_refused() {
        for bad in [
            "ftp://x.org",
            "http://127.0.0.1:9/h",
            "http://localhost/h",
            "https://10.1.2.3",
            "http://[::1]:80/",
            "http://192.168.0.1",
            "http:///x",
        ] {
            assert!(check_webhook(bad).is_err(), "{bad}");
        }
        for good in ["https://hooks.example.com/x", "http://93.184.216.34:8080/h"] {
            assert!(check_webhook(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn default_num_shots_is_found_in_opaque_text() {
        let t = r#"{"observables": [], "default_num_shots": 250, "x": Infinity}"#;
        assert_eq!(default_num_shots(Some(t)), Some(250));
        assert_eq!(default_num_shots(Some("{}")), None);
        assert_eq!(default_num_shots(None), None);
    }

    #[test]
    fn status_views_round_trip() {
        for s in [JobStatus::Queued, JobStatus::Running, JobStatus::Completed, JobStatus::Failed, JobStatus::Canceled] {
            assert_eq!(status::parse_job(status::job(s)), Some(s));
        }
        assert_eq!(status::batch(SessionState::Closed, Some(ClosedReason::IdleTimeout)), "TIMED_OUT");
        assert_eq!(status::batch(SessionState::Closed, Some(ClosedReason::MaxTtl)), "ERROR");
        assert_eq!(status::batch(SessionState::Inactive, None), "RUNNING");
    }
}
