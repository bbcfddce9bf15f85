//! Leases: what workers call to take and keep jobs (claim, heartbeat, the queued jobs of a batch
//! session to prepare ahead), and what the leader calls to hold its term.

use super::{ClaimedJob, UpcomingJob};
use crate::error::Result;
use crate::Service;
use uuid::Uuid;

impl Service {
    /// Claim up to `limit` started, unowned jobs for this replica's workers, each with its lease,
    /// its session's mode and its device (one statement).
    pub async fn claim_jobs(&self, me: Uuid, limit: i64) -> Result<Vec<ClaimedJob>> {
        let mut conn = self.pool().acquire().await?;
        let claimed = qcloud_store::jobs::claim(&mut conn, me, limit, self.cfg.lease.num_milliseconds()).await?;
        Ok(claimed.into_iter().filter_map(|c| ClaimedJob::new(c.started, c.device)).collect())
    }

    /// Extend this replica's leases; returns the ids of leased jobs whose cancellation was asked.
    pub async fn heartbeat(&self, me: Uuid) -> Result<Vec<Uuid>> {
        let mut conn = self.pool().acquire().await?;
        let rows = qcloud_store::jobs::heartbeat(&mut conn, me, self.cfg.lease.num_milliseconds()).await?;
        Ok(rows.into_iter().filter(|(_, c)| *c).map(|(id, _)| id).collect())
    }

    /// The first `limit` queued jobs of a session, for preparing ahead (rule 12).
    pub async fn upcoming_session_jobs(&self, sid: Uuid, limit: i64) -> Result<Vec<UpcomingJob>> {
        let mut conn = self.pool().acquire().await?;
        Ok(qcloud_store::jobs::queued_in_session(&mut conn, sid, limit)
            .await?
            .into_iter()
            .map(|j| UpcomingJob { id: j.id, program: j.program, payload: j.payload, shots: j.shots })
            .collect())
    }

    /// Whether cancellation of a job was asked for.
    pub async fn cancel_requested(&self, id: Uuid) -> Result<bool> {
        let mut conn = self.pool().acquire().await?;
        Ok(qcloud_store::jobs::cancel_requested(&mut conn, id).await?)
    }

    /// Become or stay leader; returns the term held.
    pub async fn acquire_leadership(&self, me: Uuid, current: Option<i64>, ttl_ms: i64) -> Result<Option<i64>> {
        let mut conn = self.pool().acquire().await?;
        Ok(qcloud_store::lease::acquire_or_renew(&mut conn, me, current, ttl_ms).await?)
    }

    pub async fn release_leadership(&self, me: Uuid, term: i64) -> Result<()> {
        let mut conn = self.pool().acquire().await?;
        Ok(qcloud_store::lease::release(&mut conn, me, term).await?)
    }
}
