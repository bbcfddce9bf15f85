//! Completion: record how a job ended while the worker's lease holds (fencing), and start the
//! device's next job in the same transaction (rule 4: a session's next job starts at once).

use super::{ClaimedJob, Fence};
use crate::error::{Result, ServiceError};
use crate::Service;
use qcloud_core::{JobStatus, SessionState};
use qcloud_store::channel;
use tracing::{instrument, warn};

/// How a job ended, as the worker reports it.
#[derive(Debug, Clone)]
pub enum Outcome {
    Completed { result: serde_json::Value },
    Failed { reason: String, code: &'static str },
    Canceled { reason: String },
}

impl Outcome {
    /// The job's terminal status, reason, reason code and result.
    pub(crate) fn parts(&self) -> (JobStatus, Option<&str>, Option<&'static str>, Option<&serde_json::Value>) {
        match self {
            Outcome::Completed { result } => (JobStatus::Completed, None, None, Some(result)),
            Outcome::Failed { reason, code } => (JobStatus::Failed, Some(reason.as_str()), Some(*code), None),
            Outcome::Canceled { reason } => (JobStatus::Canceled, Some(reason.as_str()), Some("canceled"), None),
        }
    }
}

/// What a completion did: it was recorded, and (when chaining) the device's next job started,
/// already leased to the caller. A lost lease is [`ServiceError::LeaseLost`].
#[derive(Debug)]
pub struct Completion {
    pub next: Option<Box<ClaimedJob>>,
}

impl Service {
    /// Record how a job ended, while the caller's lease holds, and (with `chain`) start the
    /// device's next job in the same transaction, leased to the caller. With a lost lease nothing
    /// is recorded and the answer is [`ServiceError::LeaseLost`].
    pub async fn complete_job(
        &self,
        job: &ClaimedJob,
        outcome: Outcome,
        usage_seconds: f64,
        chain: bool,
    ) -> Result<Completion> {
        self.complete_job_with_log(job, outcome, usage_seconds, chain, None).await
    }

    /// [`Service::complete_job`], keeping `log` with the job (an agent's program output). On an
    /// agent device the next job starts unowned, for its agents to claim.
    #[instrument(skip_all, fields(job_id = %job.id, device = %job.device.name))]
    pub async fn complete_job_with_log(
        &self,
        job: &ClaimedJob,
        outcome: Outcome,
        usage_seconds: f64,
        chain: bool,
        log: Option<&str>,
    ) -> Result<Completion> {
        let (status, reason, code, result) = outcome.parts();
        let mut tx = self.pool().begin().await?;
        // Lock order: device, session, then the job (see the module docs), all in the first
        // statement: the device row is locked, the completion recorded on the session (its lock)
        // and the job finished while the lease holds. If the lease turns out lost, all of it
        // rolls back.
        let Some(qcloud_store::jobs::Finished { job: done, device }) = qcloud_store::jobs::finish_leased_locking(
            &mut tx,
            job.id,
            &job.device.name,
            job.session_id,
            job.lease.owner,
            job.lease.epoch,
            status,
            reason,
            code,
            usage_seconds,
            result,
            log,
        )
        .await?
        else {
            warn!(job_id = %job.id, "lease lost before completion; result dropped");
            return Err(ServiceError::LeaseLost);
        };
        let next = if let (true, Some(device)) = (chain, &device) {
            // The device row is locked and its running job was this one: dispatch it directly.
            let fence = if device.driver == qcloud_core::DriverKind::Agent {
                Fence::Unowned
            } else {
                Fence::Worker { me: job.lease.owner }
            };
            self.dispatch_free(&mut tx, device, fence).await?
        } else {
            qcloud_store::notify(&mut tx, channel::WAKE, &done.device).await?;
            None
        };
        if let Some(sid) = done.session_id {
            if next.as_ref().and_then(|n| n.session_id) != Some(sid) {
                self.settle_session(&mut tx, sid).await?;
            }
        }
        tx.commit().await?;
        Ok(Completion { next: next.map(Box::new) })
    }

    /// Give a leased job back to the queue without running it (graceful shutdown).
    pub async fn release_job(&self, job: &ClaimedJob) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let open = match job.session_id {
            Some(sid) => qcloud_store::jobs::session_state(&mut tx, sid).await?.is_some_and(SessionState::is_open),
            None => true,
        };
        if open {
            qcloud_store::jobs::hand_back(&mut tx, job.id, job.lease.owner, job.lease.epoch).await?;
            qcloud_store::notify(&mut tx, channel::WAKE, &job.device.name).await?;
            tx.commit().await?;
            return Ok(());
        }
        // Its session closed while it ran: nothing would start it again.
        let reason = "the server shut down while the job ran, after its session closed".to_string();
        let outcome = Outcome::Failed { reason, code: "shutdown" };
        drop(tx);
        self.complete_job(job, outcome, 0.0, false).await.map(|_| ())
    }
}
