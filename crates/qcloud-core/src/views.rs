//! Vendor views of the internal state (the table in `docs/architecture.md`, Vendor views): pure
//! functions the IBM and Pasqal facades use, so that a facade translates and never schedules.

use crate::model::{ClosedReason, JobStatus, SessionState};

/// IBM Qiskit Runtime session `state`.
pub fn ibm_session_state(state: SessionState, any_job_started: bool) -> &'static str {
    match state {
        SessionState::Pending if !any_job_started => "open",
        SessionState::Pending | SessionState::Active => "active",
        SessionState::Inactive => "inactive",
        SessionState::Closed => "closed",
    }
}

/// IBM Qiskit Runtime job status.
pub fn ibm_job_status(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Queued => "QUEUED",
        JobStatus::Running => "RUNNING",
        JobStatus::Completed => "COMPLETED",
        JobStatus::Failed => "FAILED",
        JobStatus::Canceled => "CANCELLED",
    }
}

/// Pasqal batch status.
pub fn pasqal_batch_status(state: SessionState, reason: Option<ClosedReason>) -> &'static str {
    match (state, reason) {
        (SessionState::Pending, _) => "PENDING",
        (SessionState::Active | SessionState::Inactive, _) => "RUNNING",
        (SessionState::Closed, Some(ClosedReason::Completed) | None) => "DONE",
        (SessionState::Closed, Some(ClosedReason::Canceled)) => "CANCELED",
        (SessionState::Closed, Some(ClosedReason::IdleTimeout)) => "TIMED_OUT",
        (SessionState::Closed, Some(ClosedReason::MaxTtl | ClosedReason::Failed)) => "ERROR",
    }
}

/// Pasqal job status.
pub fn pasqal_job_status(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Queued => "PENDING",
        JobStatus::Running => "RUNNING",
        JobStatus::Completed => "DONE",
        JobStatus::Failed => "ERROR",
        JobStatus::Canceled => "CANCELED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_follow_the_design_table() {
        assert_eq!(ibm_session_state(SessionState::Pending, false), "open");
        assert_eq!(ibm_session_state(SessionState::Inactive, true), "inactive");
        assert_eq!(pasqal_batch_status(SessionState::Closed, Some(ClosedReason::IdleTimeout)), "TIMED_OUT");
        assert_eq!(pasqal_batch_status(SessionState::Closed, Some(ClosedReason::MaxTtl)), "ERROR");
        assert_eq!(ibm_job_status(JobStatus::Canceled), "CANCELLED");
        assert_eq!(pasqal_job_status(JobStatus::Failed), "ERROR");
    }
}
