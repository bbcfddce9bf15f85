//! Session timers (rules 4–8): apply whatever the TTL rules say about a session now (close it,
//! deactivate it), else keep its stored deadline early enough that the leader looks again in time.

use crate::error::{Result, ServiceError};
use crate::sessions::facts;
use crate::Service;
use chrono::{DateTime, Utc};
use qcloud_core::rules::{session_action, session_deadline, SessionAction};
use qcloud_core::{ClosedReason, JobStatus, SessionState};
use qcloud_store::sessions::Session;
use qcloud_store::{channel, PgConnection};
use tracing::info;
use uuid::Uuid;

/// Sessions whose timers are evaluated per leader round, at most.
const DUE_BATCH: i64 = 256;

impl Service {
    /// Recompute a session's next timer deadline from its current facts.
    pub(crate) async fn refresh_deadline(&self, conn: &mut PgConnection, sid: Uuid) -> Result<()> {
        let Some(row) = qcloud_store::sessions::lock(conn, sid).await? else { return Ok(()) };
        let (queued, running) = qcloud_store::sessions::job_presence(conn, sid).await?;
        let deadline = session_deadline(&facts(&row, queued, running));
        qcloud_store::sessions::set_deadline(conn, sid, deadline).await?;
        Ok(())
    }

    /// Apply whatever rules 4–8 say about a session now (close, deactivate), else refresh its
    /// deadline. Returns the action taken.
    pub(crate) async fn settle_session(&self, conn: &mut PgConnection, sid: Uuid) -> Result<Option<SessionAction>> {
        let Some(row) = qcloud_store::sessions::lock(conn, sid).await? else { return Ok(None) };
        let now = qcloud_store::now(conn).await?;
        let presence = qcloud_store::sessions::job_presence(conn, row.id).await?;
        Ok(self.settle_locked(conn, &row, now, presence).await?.0)
    }

    /// [`Self::settle_session`] on a locked row; also returns whether the session has queued jobs.
    pub(crate) async fn settle_locked(
        &self,
        conn: &mut PgConnection,
        row: &Session,
        now: DateTime<Utc>,
        (queued, running): (bool, bool),
    ) -> Result<(Option<SessionAction>, bool)> {
        if !row.state.is_open() {
            return Ok((None, false));
        }
        let f = facts(row, queued, running);
        let Some(action) = session_action(&f, now) else {
            // The stored deadline must never be later than the true one; an earlier one costs the
            // leader one evaluation. So write only when the deadline moves earlier, or when the
            // stored one has passed (it was just evaluated).
            let new = session_deadline(&f);
            let old = row.next_deadline;
            if new != old && (old.is_none_or(|o| o <= now) || new.is_some_and(|n| old.is_some_and(|o| n < o))) {
                qcloud_store::sessions::set_deadline(conn, row.id, new).await?;
            }
            return Ok((None, queued));
        };
        info!(session_id = %row.id, device = %row.device, ?action, "session timer");
        match action {
            SessionAction::CloseMaxTtl => {
                let reason = format!(
                    "the session reached its maximum time to live ({} s) before this job could run",
                    row.ttls.max_ttl.num_milliseconds() as f64 / 1000.0
                );
                qcloud_store::jobs::end_queued_in_session(conn, row.id, JobStatus::Failed, &reason, "session_max_ttl")
                    .await?;
                qcloud_store::sessions::close(conn, row.id, ClosedReason::MaxTtl).await?;
            }
            SessionAction::CloseIdleTimeout => {
                qcloud_store::jobs::end_queued_in_session(
                    conn,
                    row.id,
                    JobStatus::Failed,
                    "the session timed out with no job",
                    "session_idle_timeout",
                )
                .await?;
                qcloud_store::sessions::close(conn, row.id, ClosedReason::IdleTimeout).await?;
            }
            SessionAction::CloseCompleted => {
                qcloud_store::sessions::close(conn, row.id, ClosedReason::Completed).await?;
            }
            SessionAction::Deactivate => {
                qcloud_store::sessions::deactivate(conn, row.id).await?;
                let f = facts(&Session { state: SessionState::Inactive, ..row.clone() }, queued, running);
                qcloud_store::sessions::set_deadline(conn, row.id, session_deadline(&f)).await?;
            }
        }
        qcloud_store::notify(conn, channel::WAKE, &row.device).await?;
        Ok((Some(action), queued))
    }

    /// Sessions whose timers fired: apply rules 4–8 (leader only). Returns how many changed.
    pub async fn run_session_timers(&self, me: Uuid, term: i64) -> Result<usize> {
        let due = {
            let mut conn = self.pool().acquire().await?;
            qcloud_store::sessions::due(&mut conn, DUE_BATCH).await?
        };
        let mut changed = 0;
        for sid in due {
            let mut tx = self.pool().begin().await?;
            if !qcloud_store::lease::holds(&mut tx, me, term).await? {
                return Err(ServiceError::NotLeader);
            }
            if self.settle_session(&mut tx, sid).await?.is_some() {
                changed += 1;
            }
            tx.commit().await?;
        }
        Ok(changed)
    }
}
