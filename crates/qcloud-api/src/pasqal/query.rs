//! Query strings as the SDK encodes them (Python `requests`): repeated keys for lists,
//! `True`/`False` booleans, ISO datetimes with or without an offset. Unknown keys are refused.

use super::{PResult, PasqalError};
use crate::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::{DateTime, NaiveDateTime, Utc};
use qcloud_service::batches::{status, JobSelection, ListBatchJobs, ListBatches, MAX_PAGE};
use uuid::Uuid;

/// The query's (key, value) pairs in order, percent-decoded.
pub struct Pairs(pub Vec<(String, String)>);

impl FromRequestParts<AppState> for Pairs {
    type Rejection = PasqalError;
    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        parse_pairs(q).map(Pairs).ok_or_else(|| PasqalError::bad("the query string is not valid percent-encoded UTF-8"))
    }
}

fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

pub fn parse_pairs(q: &str) -> Option<Vec<(String, String)>> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

pub fn parse_bool(k: &str, v: &str) -> PResult<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(PasqalError::bad(format!("{k}='{v}' is not a boolean (True or False)"))),
    }
}

pub fn parse_date(k: &str, v: &str) -> PResult<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, fmt) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc());
        }
    }
    Err(PasqalError::bad(format!("{k}='{v}' is not an ISO 8601 datetime")))
}

fn parse_int(k: &str, v: &str) -> PResult<i64> {
    v.parse().map_err(|_| PasqalError::bad(format!("{k}='{v}' is not an integer")))
}

fn parse_uuid(k: &str, v: &str) -> PResult<Uuid> {
    Uuid::parse_str(v).map_err(|_| PasqalError::bad(format!("{k}='{v}' is not a UUID")))
}

fn unknown(k: &str, allowed: &[&str]) -> PasqalError {
    PasqalError::bad(format!("unknown filter '{k}'; this route takes: {}", allowed.join(", ")))
}

/// `RebatchFilters` / `CancelJobFilters`: the keys in `allowed` only.
pub fn selection(q: &[(String, String)], allowed: &[&str]) -> PResult<JobSelection> {
    let mut s = JobSelection::default();
    for (k, v) in q {
        if !allowed.contains(&k.as_str()) {
            return Err(unknown(k, allowed));
        }
        match k.as_str() {
            "id" => s.ids.push(parse_uuid(k, v)?),
            "status" => s.statuses.push(
                status::parse_job(v).ok_or_else(|| PasqalError::bad(format!("status='{v}' is not a job status")))?,
            ),
            "min_runs" => s.min_runs = Some(parse_int(k, v)?),
            "max_runs" => s.max_runs = Some(parse_int(k, v)?),
            "start_date" => s.created_from = Some(parse_date(k, v)?),
            "end_date" => s.created_to = Some(parse_date(k, v)?),
            _ => return Err(unknown(k, allowed)),
        }
    }
    Ok(s)
}

const BATCH_KEYS: &[&str] = &[
    "id",
    "project_id",
    "user_id",
    "device_type",
    "status",
    "open",
    "complete",
    "queue_priority",
    "tag",
    "start_date",
    "end_date",
    "offset",
    "limit",
    "order_by",
    "order_by_direction",
];

pub fn batch_filters(q: &[(String, String)]) -> PResult<ListBatches> {
    let mut f = ListBatches { limit: MAX_PAGE, ..Default::default() };
    for (k, v) in q {
        match k.as_str() {
            "id" => f.ids.push(parse_uuid(k, v)?),
            "project_id" => f.project_ids.push(parse_uuid(k, v)?),
            "user_id" => f.users.push(v.clone()),
            "device_type" => f.devices.push(v.clone()),
            "status" => f.states.push(
                status::parse_batch(v)
                    .ok_or_else(|| PasqalError::bad(format!("status='{v}' is not a batch status")))?,
            ),
            "open" => f.open = Some(parse_bool(k, v)?),
            "complete" => f.open = Some(!parse_bool(k, v)?),
            "queue_priority" => f.priorities.push(super::parse_priority(v)?),
            "tag" => f.tag = Some(v.clone()),
            "start_date" => f.created_from = Some(parse_date(k, v)?),
            "end_date" => f.created_to = Some(parse_date(k, v)?),
            "offset" => f.offset = parse_int(k, v)?,
            "limit" => f.limit = parse_int(k, v)?,
            "order_by" => {
                if v != "created_at" {
                    return Err(PasqalError::bad(format!("order_by='{v}': batches are ordered by created_at only")));
                }
            }
            "order_by_direction" => {
                if v != "DESC" {
                    return Err(PasqalError::bad(format!("order_by_direction='{v}': batches are listed DESC only")));
                }
            }
            _ => return Err(unknown(k, BATCH_KEYS)),
        }
    }
    Ok(f)
}

const JOB_KEYS: &[&str] = &[
    "id",
    "project_id",
    "batch_id",
    "user_id",
    "status",
    "min_runs",
    "max_runs",
    "errors",
    "start_date",
    "end_date",
    "offset",
    "limit",
    "order_by",
    "order_by_direction",
];

pub fn job_filters(q: &[(String, String)]) -> PResult<ListBatchJobs> {
    let mut f = ListBatchJobs { limit: MAX_PAGE, ..Default::default() };
    let mut order_by: Option<&str> = None;
    let mut direction: Option<&str> = None;
    for (k, v) in q {
        match k.as_str() {
            "id" => f.ids.push(parse_uuid(k, v)?),
            "project_id" => f.project_ids.push(parse_uuid(k, v)?),
            "batch_id" => f.batch_ids.push(parse_uuid(k, v)?),
            "user_id" => f.users.push(v.clone()),
            "status" => f.statuses.push(
                status::parse_job(v).ok_or_else(|| PasqalError::bad(format!("status='{v}' is not a job status")))?,
            ),
            "min_runs" => f.min_runs = Some(parse_int(k, v)?),
            "max_runs" => f.max_runs = Some(parse_int(k, v)?),
            "errors" => f.errors = Some(parse_bool(k, v)?),
            "start_date" => f.created_from = Some(parse_date(k, v)?),
            "end_date" => f.created_to = Some(parse_date(k, v)?),
            "offset" => f.offset = parse_int(k, v)?,
            "limit" => f.limit = parse_int(k, v)?,
            "order_by" => order_by = Some(v),
            "order_by_direction" => direction = Some(v),
            _ => return Err(unknown(k, JOB_KEYS)),
        }
    }
    match (order_by, direction) {
        (None | Some("created_at"), None | Some("DESC")) => {}
        (Some("creation_order") | Some("created_at"), Some("ASC")) | (Some("creation_order"), None) => {
            f.creation_order = true
        }
        (o, d) => {
            return Err(PasqalError::bad(format!(
                "order_by={} order_by_direction={}: jobs are ordered by creation_order ASC or created_at DESC",
                o.unwrap_or("-"),
                d.unwrap_or("-")
            )))
        }
    }
    Ok(f)
}
