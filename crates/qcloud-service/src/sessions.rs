//! Session use cases: open, inspect, list, close (drain) and cancel.

use crate::auth::Principal;
use crate::devices::parse_enum;
use crate::error::{Result, ServiceError};
use crate::Service;
use chrono::{DateTime, Duration, Utc};
use qcloud_core::rules::{SessionFacts, SessionTtls};
use qcloud_core::{ClosedReason, IdlePolicy, Priority, SessionMode, SessionState};
use qcloud_store::sessions::{NewSession, SessionFilter, SessionRow};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tracing::instrument;
use utoipa::ToSchema;
use uuid::Uuid;

/// `POST /v1/sessions`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSessionRequest {
    pub device: String,
    /// dedicated | batch.
    pub mode: String,
    /// Seconds from the first activation until the session closes (default: server's, IBM 8 h).
    pub max_ttl: Option<f64>,
    /// Seconds an active session with no job keeps the device (default: server's, IBM 60 s).
    pub interactive_ttl: Option<f64>,
    /// deactivate | time_out (default: deactivate).
    pub idle_policy: Option<String>,
    /// low | medium | high (default: medium).
    pub priority: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A session as clients see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionView {
    pub id: Uuid,
    pub device: String,
    #[schema(value_type = String, example = "dedicated")]
    pub mode: SessionMode,
    #[schema(value_type = String, example = "active")]
    pub state: SessionState,
    #[schema(value_type = Option<String>)]
    pub closed_reason: Option<ClosedReason>,
    pub accepting_jobs: bool,
    /// Seconds.
    pub max_ttl: f64,
    /// Seconds.
    pub interactive_ttl: f64,
    #[schema(value_type = String)]
    pub idle_policy: IdlePolicy,
    #[schema(value_type = String)]
    pub priority: Priority,
    pub tags: Vec<String>,
    pub user: String,
    pub created_at: DateTime<Utc>,
    /// First activation.
    pub started_at: Option<DateTime<Utc>>,
    pub activated_at: Option<DateTime<Utc>>,
    pub last_job_started: Option<DateTime<Utc>>,
    pub last_job_completed: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub usage_seconds: f64,
    /// Number of jobs per status.
    pub jobs: BTreeMap<String, i64>,
}

/// `GET /v1/sessions` query.
#[derive(Debug, Clone, Default, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SessionQuery {
    pub state: Option<String>,
    pub device: Option<String>,
    pub mode: Option<String>,
    pub tag: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    /// Opaque cursor from a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<i64>,
}

/// A page of a list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

pub(crate) fn ms(d: i64) -> Duration {
    Duration::milliseconds(d)
}

pub(crate) fn facts(row: &SessionRow, queued: bool, running: bool) -> Result<SessionFacts> {
    let bad = |e: qcloud_core::UnknownValue| ServiceError::Internal(format!("stored session: {e}"));
    Ok(SessionFacts {
        state: row.state.parse().map_err(bad)?,
        accepting_jobs: row.accepting_jobs,
        idle_policy: row.idle_policy.parse().map_err(bad)?,
        ttls: SessionTtls {
            max_ttl: ms(row.max_ttl_ms),
            interactive_ttl: ms(row.interactive_ttl_ms),
            pending_ttl: ms(row.pending_ttl_ms),
        },
        created_at: row.created_at,
        started_at: row.started_at,
        activated_at: row.activated_at,
        last_job_submitted: row.last_job_submitted,
        last_job_completed: row.last_job_completed,
        queued_jobs: queued as i64,
        running_jobs: running as i64,
    })
}

pub(crate) fn session_view(row: SessionRow, counts: Vec<(String, i64)>) -> Result<SessionView> {
    let bad = |e: qcloud_core::UnknownValue| ServiceError::Internal(format!("stored session: {e}"));
    Ok(SessionView {
        id: row.id,
        mode: row.mode.parse().map_err(bad)?,
        state: row.state.parse().map_err(bad)?,
        closed_reason: row.closed_reason.as_deref().map(str::parse).transpose().map_err(bad)?,
        accepting_jobs: row.accepting_jobs,
        max_ttl: row.max_ttl_ms as f64 / 1000.0,
        interactive_ttl: row.interactive_ttl_ms as f64 / 1000.0,
        idle_policy: row.idle_policy.parse().map_err(bad)?,
        priority: Priority::from_rank(row.priority),
        tags: row.tags,
        user: row.user_name,
        created_at: row.created_at,
        started_at: row.started_at,
        activated_at: row.activated_at,
        last_job_started: row.last_job_started,
        last_job_completed: row.last_job_completed,
        closed_at: row.closed_at,
        usage_seconds: row.usage_seconds,
        jobs: counts.into_iter().collect(),
        device: row.device,
    })
}

pub(crate) fn validate_tags(tags: &[String]) -> Result<()> {
    if tags.len() > 32 || tags.iter().any(|t| t.is_empty() || t.len() > 128) {
        return Err(ServiceError::invalid("invalid_field", "tags: at most 32 tags of 1 to 128 characters"));
    }
    Ok(())
}

/// Cursor encoding: `<created_at RFC 3339>_<id>`.
pub(crate) fn encode_cursor(t: DateTime<Utc>, id: Uuid) -> String {
    format!("{}_{}", t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true), id)
}

pub(crate) fn decode_cursor(c: &str) -> Result<(DateTime<Utc>, Uuid)> {
    let bad = || ServiceError::invalid("invalid_cursor", "cursor is not one this server issued");
    let (t, id) = c.rsplit_once('_').ok_or_else(bad)?;
    let t = DateTime::parse_from_rfc3339(t).map_err(|_| bad())?.with_timezone(&Utc);
    Ok((t, id.parse().map_err(|_| bad())?))
}

/// The store's list window from a request's shared filters, fetching one row more than the page
/// so that [`next_page`] can tell whether another page follows; also returns the page size.
pub(crate) fn window(
    tag: Option<String>,
    created_after: Option<DateTime<Utc>>,
    created_before: Option<DateTime<Utc>>,
    cursor: Option<&str>,
    limit: Option<i64>,
) -> Result<(qcloud_store::Window, i64)> {
    let limit = page_limit(limit)?;
    let cursor = cursor.map(decode_cursor).transpose()?;
    Ok((qcloud_store::Window { tag, created_after, created_before, cursor, limit: limit + 1 }, limit))
}

/// Keyset pagination: `rows` were fetched with `limit + 1`; keep `limit` of them and return the
/// cursor of the next page when there is one.
pub(crate) fn next_page<R>(rows: &mut Vec<R>, limit: i64, key: impl Fn(&R) -> (DateTime<Utc>, Uuid)) -> Option<String> {
    if rows.len() as i64 <= limit {
        return None;
    }
    rows.truncate(limit as usize);
    rows.last().map(|r| {
        let (t, id) = key(r);
        encode_cursor(t, id)
    })
}

fn page_limit(limit: Option<i64>) -> Result<i64> {
    match limit {
        None => Ok(50),
        Some(l) if (1..=500).contains(&l) => Ok(l),
        Some(l) => Err(ServiceError::invalid("invalid_field", format!("limit must be between 1 and 500, got {l}"))),
    }
}

impl Service {
    #[instrument(skip_all, fields(device = %req.device))]
    pub async fn create_session(&self, who: &Principal, req: NewSessionRequest) -> Result<SessionView> {
        let mode: SessionMode = parse_enum("mode", &req.mode)?;
        let idle: IdlePolicy = parse_enum("idle_policy", req.idle_policy.as_deref().unwrap_or("deactivate"))?;
        let priority: Priority = parse_enum("priority", req.priority.as_deref().unwrap_or("medium"))?;
        validate_tags(&req.tags)?;
        let ttls = self
            .cfg
            .ttl
            .resolve(req.max_ttl, req.interactive_ttl)
            .map_err(|e| ServiceError::invalid("invalid_ttl", e.to_string()))?;
        let mut tx = self.pool.begin().await?;
        qcloud_store::devices::get(&mut tx, &req.device)
            .await?
            .ok_or_else(|| ServiceError::not_found("device", &req.device))?;
        let row = qcloud_store::sessions::insert(
            &mut tx,
            NewSession {
                id: Uuid::now_v7(),
                project: &who.project,
                user: &who.user,
                device: &req.device,
                mode: mode.as_str(),
                max_ttl_ms: ttls.max_ttl.num_milliseconds(),
                interactive_ttl_ms: ttls.interactive_ttl.num_milliseconds(),
                pending_ttl_ms: ttls.pending_ttl.num_milliseconds(),
                idle_policy: idle.as_str(),
                priority: priority.rank(),
                tags: &req.tags,
                webhook: None,
                default_program: None,
            },
        )
        .await?;
        tx.commit().await?;
        session_view(row, Vec::new())
    }

    pub async fn get_session(&self, who: &Principal, id: Uuid) -> Result<SessionView> {
        let mut conn = self.pool.acquire().await?;
        let row = qcloud_store::sessions::get(&mut conn, &who.project, id)
            .await?
            .ok_or_else(|| ServiceError::not_found("session", id))?;
        let counts = qcloud_store::sessions::job_counts(&mut conn, id).await?;
        session_view(row, counts)
    }

    pub async fn list_sessions(&self, who: &Principal, q: SessionQuery) -> Result<Page<SessionView>> {
        if let Some(s) = &q.state {
            parse_enum::<SessionState>("state", s)?;
        }
        if let Some(m) = &q.mode {
            parse_enum::<SessionMode>("mode", m)?;
        }
        let (window, limit) = window(q.tag, q.created_after, q.created_before, q.cursor.as_deref(), q.limit)?;
        let filter = SessionFilter { state: q.state, device: q.device, mode: q.mode, window };
        let mut conn = self.pool.acquire().await?;
        let mut rows = qcloud_store::sessions::list(&mut conn, &who.project, &filter).await?;
        let next_cursor = next_page(&mut rows, limit, |r| (r.created_at, r.id));
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            let counts = qcloud_store::sessions::job_counts(&mut conn, row.id).await?;
            items.push(session_view(row, counts)?);
        }
        Ok(Page { items, next_cursor })
    }

    /// Rule 6: stop accepting jobs; queued and running ones finish, then the session closes.
    #[instrument(skip_all, fields(session_id = %id))]
    pub async fn close_session(&self, who: &Principal, id: Uuid) -> Result<SessionView> {
        let mut tx = self.pool.begin().await?;
        let row = self.lock_own_session(&mut tx, who, id).await?;
        if row.state != "closed" {
            qcloud_store::sessions::stop_accepting(&mut tx, id).await?;
            self.settle_session(&mut tx, id).await?;
        }
        tx.commit().await?;
        self.get_session(who, id).await
    }

    /// Rule 7: no new jobs, queued jobs canceled, the running job finishes, closed now.
    #[instrument(skip_all, fields(session_id = %id))]
    pub async fn cancel_session(&self, who: &Principal, id: Uuid) -> Result<SessionView> {
        let mut tx = self.pool.begin().await?;
        let row = self.lock_own_session(&mut tx, who, id).await?;
        if row.state != "closed" {
            qcloud_store::jobs::end_queued_in_session(
                &mut tx,
                id,
                "canceled",
                "the session was canceled",
                "session_canceled",
            )
            .await?;
            qcloud_store::sessions::close(&mut tx, id, ClosedReason::Canceled.as_str()).await?;
            qcloud_store::notify(&mut tx, qcloud_store::channel::WAKE, &row.device).await?;
        }
        tx.commit().await?;
        self.get_session(who, id).await
    }

    async fn lock_own_session(
        &self,
        conn: &mut qcloud_store::PgConnection,
        who: &Principal,
        id: Uuid,
    ) -> Result<SessionRow> {
        match qcloud_store::sessions::lock(conn, id).await? {
            Some(row) if row.project == who.project => Ok(row),
            _ => Err(ServiceError::not_found("session", id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_page_keeps_limit_rows_and_points_past_the_last() {
        let t = Utc::now();
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let mut rows = ids.clone();
        let cursor = next_page(&mut rows, 2, |id| (t, *id)).unwrap();
        assert_eq!(rows, ids[..2]);
        assert_eq!(decode_cursor(&cursor).unwrap().1, ids[1]);
        let mut rows = ids.clone();
        assert_eq!(next_page(&mut rows, 3, |id| (t, *id)), None);
        assert_eq!(rows.len(), 3);
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let t = Utc::now();
        let id = Uuid::now_v7();
        let (t2, id2) = decode_cursor(&encode_cursor(t, id)).unwrap();
        assert_eq!(id2, id);
        assert_eq!(t2.timestamp_micros(), t.timestamp_micros());
        assert!(decode_cursor("nonsense").is_err());
        assert!(decode_cursor("2020-01-01T00:00:00Z_notauuid").is_err());
    }
}
