//! Pasqal's JSON views of batches and jobs: pure functions of the service's views.

use chrono::{DateTime, SecondsFormat, Utc};
use qcloud_service::batches::{status, BatchJobView, BatchView};
use qcloud_service::JobStatus;
use serde_json::{json, Map, Value};

pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn opt_ts(t: Option<DateTime<Utc>>) -> Value {
    t.map(|t| Value::String(ts(t))).unwrap_or(Value::Null)
}

/// Jobs per Pasqal status.
pub fn counts(b: &BatchView) -> Map<String, Value> {
    let mut m = Map::new();
    for j in &b.jobs {
        let e = m.entry(status::job(j.status)).or_insert(Value::from(0));
        *e = Value::from(e.as_i64().unwrap_or(0) + 1);
    }
    m
}

pub fn batch(b: &BatchView, with_jobs: bool) -> Value {
    let open = b.state.is_open() && b.accepting_jobs;
    let mut v = json!({
        "id": b.id,
        "open": open,
        "complete": !open,
        "created_at": ts(b.created_at),
        "updated_at": ts(b.updated_at),
        "device_type": b.device,
        "project_id": b.project_id,
        "user_id": b.user,
        "status": status::batch(b.state, b.closed_reason),
        "jobs_count": b.jobs.len(),
        "jobs_count_per_status": counts(b),
        "job_ids": b.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        "webhook": b.webhook,
        "start_datetime": opt_ts(b.started_at),
        "end_datetime": opt_ts(b.closed_at),
        "device_status": status::device(b.device_status),
        "parent_id": b.parent_id,
        "configuration": b.configuration,
        "backend_configuration": b.backend_configuration,
        "tags": b.tags,
        "queue_priority": match b.priority {
            qcloud_service::Priority::Low => "LOW",
            qcloud_service::Priority::Medium => "MEDIUM",
            qcloud_service::Priority::High => "HIGH",
        },
        "sequence_builder": b.sequence_builder,
    });
    if with_jobs {
        v["jobs"] = Value::Array(b.jobs.iter().map(job).collect());
    }
    v
}

pub fn job(j: &BatchJobView) -> Value {
    let errors: Vec<&str> = match j.status {
        JobStatus::Failed => vec![j.reason.as_deref().unwrap_or("the job failed")],
        _ => Vec::new(),
    };
    json!({
        "id": j.id,
        "batch_id": j.batch_id,
        "project_id": j.project_id,
        "user_id": j.user,
        "status": status::job(j.status),
        "runs": j.runs,
        "variables": j.variables,
        "sequence": j.sequence,
        "errors": errors,
        "parent_id": j.parent_id,
        "created_at": ts(j.created_at),
        "updated_at": ts(j.updated_at),
        "start_timestamp": opt_ts(j.started_at),
        "end_timestamp": opt_ts(j.finished_at),
    })
}

/// The document a results link serves: the analog driver's result (it has `counter`), with a
/// `raw` list of shots when the result has none, and `serialised_results: null`.
pub fn result_document(r: Value) -> Value {
    let mut obj = match r {
        Value::Object(m) => m,
        other => {
            let mut m = Map::new();
            m.insert("result".into(), other);
            m
        }
    };
    obj.entry("serialised_results").or_insert(Value::Null);
    obj.into()
}
