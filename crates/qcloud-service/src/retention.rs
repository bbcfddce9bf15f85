//! Retention: terminal jobs older than `job_retention` are deleted in small batches, each its own
//! short transaction, so that history never grows without bound and pruning never holds the
//! locks or the connection the scheduler needs for long.

use crate::error::Result;
use crate::Service;

impl Service {
    /// Delete up to `limit` jobs that finished more than `job_retention` ago (with their
    /// results). Returns how many; 0 when retention is off.
    pub async fn prune_jobs(&self, limit: i64) -> Result<u64> {
        let Some(keep) = self.cfg.job_retention else { return Ok(0) };
        let mut conn = self.pool.acquire().await?;
        Ok(qcloud_store::jobs::prune_terminal(&mut conn, keep.num_milliseconds(), limit).await?)
    }
}
