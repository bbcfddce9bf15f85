//! Retention: terminal jobs older than `job_retention` are deleted in small batches, each its own
//! short transaction, so that history never grows without bound and pruning never holds the
//! locks or the connection the scheduler needs for long. The queue table (`job_queue`) is
//! vacuumed here too, as soon as jobs that left it leave enough dead rows behind.

use crate::error::Result;
use crate::Service;

/// Dead queue rows that make a VACUUM of `job_queue` worth running (a few index pages' worth)...
pub const QUEUE_VACUUM_MIN_DEAD: i64 = 500;
/// ... and at least this fraction of the live rows: a VACUUM scans the queue's whole indexes, so
/// its cost grows with the queue, and it runs about once per tenth of the queue that started
/// (a deep queue's heads then walk at most that many dead entries).
pub const QUEUE_VACUUM_DEAD_FRACTION: f64 = 0.1;

impl Service {
    /// VACUUM the queue table when enough jobs left it since the last one; returns whether it ran.
    /// (The queue is as small as the number of queued jobs, so this costs milliseconds; it keeps
    /// the queue's index scans from walking the entries of jobs that started, also where
    /// autovacuum is off or slow.)
    pub async fn vacuum_queue_if_needed(&self) -> Result<bool> {
        let mut conn = self.pool.acquire().await?;
        let (dead, live) = qcloud_store::jobs::queue_rows(&mut conn).await?;
        if dead < QUEUE_VACUUM_MIN_DEAD.max((live as f64 * QUEUE_VACUUM_DEAD_FRACTION) as i64) {
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
