//! `GET /v1/events`: the caller's project's events as Server-Sent Events, resumable with
//! `Last-Event-ID` (or `after`), filtered by job, session, device and type, with keep-alives.

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiQuery, Caller};
use crate::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, Stream};
use qcloud_service::events::{EventQuery, EventView};
use qcloud_service::{Principal, Service};
use serde::Deserialize;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;
use uuid::Uuid;

/// `GET /v1/events` query.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventStreamQuery {
    /// Only events of this job.
    pub job_id: Option<Uuid>,
    /// Only events of this session and its jobs.
    pub session_id: Option<Uuid>,
    /// Only events on this device.
    #[param(pattern = r"^[^\u0000]*$")]
    pub device: Option<String>,
    /// Only these event types, comma-separated (`job.completed,job.failed`): `job.queued`,
    /// `job.running`, `job.completed`, `job.failed`, `job.canceled`, `session.active`,
    /// `session.inactive`, `session.closed`.
    #[serde(rename = "type")]
    #[param(
        rename = "type",
        pattern = r"^(job\.(queued|running|completed|failed|canceled)|session\.(active|inactive|closed))(,(job\.(queued|running|completed|failed|canceled)|session\.(active|inactive|closed)))*$"
    )]
    pub types: Option<String>,
    /// Start after this event id (as `Last-Event-ID` does; the header wins). Without either, the
    /// stream starts with the next event.
    #[param(minimum = 0)]
    pub after: Option<i64>,
}

/// Events read per query while catching up.
const PAGE: i64 = 500;

/// Longest wait for a wake-up from the event hub before the stream looks again.
const FALLBACK_POLL: Duration = Duration::from_secs(1);

/// The caller's events as they happen (`text/event-stream`). Each event has `id:` (the event id;
/// resume with `Last-Event-ID`), `event:` (its type) and `data:` (JSON: id, type, timestamp,
/// job_id, session_id, device, status, reason and the job's or session's fields). A comment line
/// is sent every 15 s while there is nothing to say.
#[utoipa::path(get, path = "/v1/events", operation_id = "stream_events", tag = "events", security(("bearer" = [])),
    params(EventStreamQuery,
        ("Last-Event-ID" = Option<String>, Header, pattern = "^[0-9]{1,18}$", description = "Resume after this event id")),
    responses((status = 200, content_type = "text/event-stream", body = String,
            description = "Server-Sent Events: `id`, `event` (the type) and `data` (a JSON event) per event"),
        (status = 400, body = ErrorBody, description = "A query parameter or Last-Event-ID is malformed"),
        (status = 404, body = ErrorBody, description = "No such job or session")))]
pub async fn stream_events(
    State(s): State<AppState>,
    Caller(who): Caller,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<EventStreamQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let bad = |code: &'static str, m: String| ApiError::new(StatusCode::BAD_REQUEST, code, m);
    let from_header = match headers.get("last-event-id") {
        Some(v) => {
            let t = v.to_str().map_err(|_| bad("invalid_last_event_id", "Last-Event-ID must be ASCII".into()))?;
            let t = t.trim();
            Some(match t.parse::<i64>() {
                Ok(n) if n >= 0 => n,
                _ => return Err(bad("invalid_last_event_id", format!("Last-Event-ID '{t}' is not an event id"))),
            })
        }
        None => None,
    };
    if let Some(a) = q.after {
        if a < 0 {
            return Err(bad("invalid_query", "after must be 0 or more".into()));
        }
    }
    let types: Vec<String> = match &q.types {
        Some(t) => t.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
        None => Vec::new(),
    };
    let query = EventQuery { job_id: q.job_id, session_id: q.session_id, device: q.device, types };
    query.check()?;
    // Another project's job or session is a 404, as everywhere.
    if let Some(id) = query.job_id {
        s.svc.get_job(&who, id).await?;
    }
    if let Some(id) = query.session_id {
        s.svc.get_session(&who, id).await?;
    }
    let cursor = match from_header.or(q.after) {
        Some(c) => c,
        None => s.svc.last_event_seq().await?,
    };
    let keep_alive = KeepAlive::new().interval(s.sse_keep_alive);
    Ok(Sse::new(event_stream(s.svc.clone(), who, query, cursor)).keep_alive(keep_alive))
}

struct Reader {
    svc: Service,
    who: Principal,
    q: EventQuery,
    cursor: i64,
    buf: VecDeque<EventView>,
    seq: Option<tokio::sync::watch::Receiver<i64>>,
}

/// The events after `cursor`, as SSE events, forever (a database error ends the stream: the
/// client reconnects with `Last-Event-ID` and misses nothing).
pub fn event_stream(
    svc: Service,
    who: Principal,
    q: EventQuery,
    cursor: i64,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let seq = svc.event_hub().map(|h| h.last_seq.clone());
    let r = Reader { svc, who, q, cursor, buf: VecDeque::new(), seq };
    stream::unfold(Some(r), |r| async move {
        let mut r = r?;
        loop {
            if let Some(e) = r.buf.pop_front() {
                r.cursor = e.seq;
                let ev = Event::default().id(e.seq.to_string()).event(e.kind.clone()).data(e.to_json().to_string());
                return Some((Ok(ev), Some(r)));
            }
            // What the hub knew before this read: wait for more than that if the read is empty.
            let known = r.seq.as_mut().map(|rx| *rx.borrow_and_update());
            match r.svc.events_after(&r.who, &r.q, r.cursor, PAGE).await {
                Ok(v) if !v.is_empty() => {
                    r.buf.extend(v);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "event stream read failed; closing it");
                    let ev = Event::default().event("error").data(
                        serde_json::json!({"code": "unavailable", "message": "reading events failed; reconnect with Last-Event-ID"})
                            .to_string(),
                    );
                    return Some((Ok(ev), None));
                }
            }
            // Nothing new: wait for the hub's next seq (or look again after a while).
            match (r.seq.as_mut(), known) {
                (Some(rx), Some(known)) => {
                    let wait = async {
                        loop {
                            if *rx.borrow_and_update() > known {
                                return;
                            }
                            if rx.changed().await.is_err() {
                                std::future::pending::<()>().await;
                            }
                        }
                    };
                    let _ = tokio::time::timeout(FALLBACK_POLL, wait).await;
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
}
