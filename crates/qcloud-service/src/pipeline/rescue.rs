//! Rescue: running jobs whose worker lease ran out (the replica died or lost the database) are
//! queued again, canceled (the user had asked) or failed, by `lost_job_fate` (leader only).

use crate::error::{Result, ServiceError};
use crate::Service;
use qcloud_core::rules::{lost_job_fate, LostJobFate};
use qcloud_core::SessionState;
use qcloud_store::channel;
use tracing::warn;

/// Lost jobs handled per leader round, at most.
const RESCUE_BATCH: i64 = 256;

impl Service {
    /// Jobs whose worker lease ran out: run again or fail (leader only). Returns how many.
    pub async fn recover_lost_jobs(&self, me: uuid::Uuid, term: i64) -> Result<usize> {
        let mut settle = Vec::new();
        let mut tx = self.pool().begin().await?;
        if !qcloud_store::lease::holds(&mut tx, me, term).await? {
            return Err(ServiceError::NotLeader);
        }
        let lost = qcloud_store::jobs::expired_leases(&mut tx, RESCUE_BATCH).await?;
        for job in &lost {
            let session = match job.session_id {
                Some(sid) => qcloud_store::jobs::session_state(&mut tx, sid).await?,
                None => None,
            };
            match lost_job_fate(job.attempt, self.cfg.max_attempts, session, job.cancel_requested) {
                LostJobFate::Requeue => {
                    warn!(job_id = %job.id, attempt = job.attempt, "worker lost; job queued again");
                    qcloud_store::jobs::requeue_lost(&mut tx, job.id, job.lease_epoch).await?;
                }
                LostJobFate::Cancel => {
                    qcloud_store::jobs::cancel_lost(&mut tx, job.id, job.lease_epoch).await?;
                    settle.extend(job.session_id);
                }
                LostJobFate::Fail => {
                    let reason = if session == Some(SessionState::Closed) {
                        "the worker running this job was lost after its session closed".to_string()
                    } else {
                        format!("the worker running this job was lost {} times", job.attempt)
                    };
                    qcloud_store::jobs::fail_lost(&mut tx, job.id, job.lease_epoch, &reason).await?;
                    // Settled after commit: this transaction holds job locks, and sessions are
                    // locked before jobs.
                    settle.extend(job.session_id);
                }
            }
            qcloud_store::notify(&mut tx, channel::WAKE, &job.device).await?;
        }
        tx.commit().await?;
        for sid in settle {
            let mut tx = self.pool().begin().await?;
            self.settle_session(&mut tx, sid).await?;
            tx.commit().await?;
        }
        Ok(lost.len())
    }
}
