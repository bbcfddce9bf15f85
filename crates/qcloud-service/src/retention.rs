//! Retention: terminal jobs older than `job_retention` are deleted in small batches, each its own
//! short transaction, so that history never grows without bound and pruning never holds the
//! locks or the connection the scheduler needs for long. The queue table (`job_queue`) is
//! vacuumed here too, as soon as jobs that left it leave enough dead rows behind.

use crate::error::Result;
use crate::Service;

/// Dead queue rows that make a VACUUM of `job_queue` worth running (a few index pages' worth).
pub const QUEUE_VACUUM_MIN_DEAD: i64 = 500;

impl Service {
    /// VACUUM the queue table when enough jobs left it since the last one; returns whether it ran.
    /// (The queue is as small as the number of queued jobs, so this costs milliseconds; it keeps
    /// the queue's index scans from walking the entries of jobs that started, also where
    /// autovacuum is off or slow.)
    pub async fn vacuum_queue_if_needed(&self) -> Result<bool> {
        let mut conn = self.pool.acquire().await?;
        if qcloud_store::jobs::queue_dead_rows(&mut conn).await? < QUEUE_VACUUM_MIN_DEAD {
            return Ok(false);
        }
        qcloud_store::jobs::vacuum_queue(&mut conn).await?;
        Ok(true)
    }

    /// Delete up to `limit` jobs that finished more than `job_retention` ago (with their
    /// results). Returns how many; 0 when retention is off.
    pub async fn prune_jobs(&self, limit: i64) -> Result<u64> {
        let Some(keep) = self.cfg.job_retention else { return Ok(0) };
        let mut conn = self.pool.acquire().await?;
        Ok(qcloud_store::jobs::prune_terminal(&mut conn, keep.num_milliseconds(), limit).await?)
    }
}
