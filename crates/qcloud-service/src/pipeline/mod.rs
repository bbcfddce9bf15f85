//! The job pipeline's state changes, one small file per task (the way River splits its
//! maintenance): [`dispatch`] chooses and starts jobs on free devices (rules 1–4, 11),
//! [`completion`] records how a job ended and chains the device's next job in the same
//! transaction (rule 4: "at once"), [`timers`] applies the session TTL rules (4–8), [`rescue`]
//! recovers jobs whose worker was lost, [`leases`] is what workers and the leader call to hold
//! their leases, and [`wake`] turns Postgres notifications into wake-ups. The scheduler crate
//! decides when to call them; every call is one transaction.
//!
//! Lock order, everywhere: device, then session, then job (rows are locked `FOR NO KEY UPDATE`,
//! which does not block the `FOR KEY SHARE` locks that foreign keys take on insert). Taking locks in
//! one order is what keeps concurrent submits, dispatches and completions free of deadlocks.

pub mod batch;
pub mod completion;
pub mod dispatch;
pub mod leases;
pub mod rescue;
pub mod timers;
pub mod wake;

pub use batch::Done;
pub use completion::{Completion, Outcome};
pub use dispatch::Fence;
pub use qcloud_store::devices::Device;
pub use wake::{Wakeup, Wakeups};

use chrono::Duration;
use qcloud_core::SessionMode;
use qcloud_store::jobs::Started;
use uuid::Uuid;

/// A worker's hold on a running job: the job completes only while (owner, epoch) is still its
/// lease (fencing), so a worker that lost its lease cannot record anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub job_id: Uuid,
    /// The replica whose worker runs the job.
    pub owner: Uuid,
    /// Bumped at every claim.
    pub epoch: i64,
}

/// A job a worker holds the lease of, with everything it needs to run it.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub id: Uuid,
    pub device: Device,
    pub session_id: Option<Uuid>,
    /// Batch sessions prepare their next jobs ahead (rule 12).
    pub session_mode: Option<SessionMode>,
    pub program: String,
    pub payload: serde_json::Value,
    pub shots: Option<i64>,
    /// Rule 10.
    pub max_execution: Duration,
    /// The user asked to cancel the job before this worker got it.
    pub cancel_requested: bool,
    /// How many times a worker started the job, this time included.
    pub attempt: i32,
    pub lease: Lease,
}

impl ClaimedJob {
    pub(crate) fn new(started: Started, device: Device) -> Option<ClaimedJob> {
        let Started { job, session_mode } = started;
        let owner = job.lease_owner?;
        Some(ClaimedJob {
            id: job.id,
            device,
            session_id: job.session_id,
            session_mode,
            program: job.program,
            payload: job.payload,
            shots: job.shots,
            max_execution: job.max_execution,
            cancel_requested: job.cancel_requested,
            attempt: job.attempt,
            lease: Lease { job_id: job.id, owner, epoch: job.lease_epoch },
        })
    }
}

/// A queued job of a session, for preparing ahead of its turn (rule 12).
#[derive(Debug, Clone)]
pub struct UpcomingJob {
    pub id: Uuid,
    pub program: String,
    pub payload: serde_json::Value,
    pub shots: Option<i64>,
}
