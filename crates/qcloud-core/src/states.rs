//! The two state machines of qcloud: a job's [`JobStatus`] and a session's [`SessionState`].
//!
//! Every state below says what it means, who moves a job or a session into it (which scheduling
//! rule of `docs/architecture.md`, which service command or API call) and where it can go next.
//! The two transition tables are the contract: `tests/states_doc.rs` reads them out of this file
//! and checks that they equal [`JobStatus::can_become`] and [`SessionState::can_become`] exactly,
//! so a transition added to the code and not to the docs (or the other way round) fails the tests.
//!
//! Only `qcloud-service` changes states, each change one conditional `UPDATE ... WHERE status =
//! '<from>'` inside one transaction, so two replicas racing for the same change cannot both win.
//! The schema backs the invariants: `jobs_one_running_per_device` (rule 1),
//! `sessions_one_active_per_device` (rule 2), `jobs_terminal_has_finish` and
//! `sessions_closed_reason_valid`.
//!
//! ## Job transitions
//!
//! ```text
//! queued  --dispatch (rules 3, 4)----------------------> running
//! running --the worker records how it ended-------------> completed | failed | canceled
//! queued  --session closed or canceled, job canceled----> failed | canceled
//! running --lost worker, or handed back at shutdown-----> queued
//! ```
//!
//! | from | to | when |
//! |---|---|---|
//! | `queued` | `running` | dispatch of a free device (`Service::dispatch_device` by the leader, or the completion of the device's previous job in the same transaction): rule 3 picks it as a job-mode candidate or as the first job of the session that takes the device, or rule 4 starts the holding session's next queued job |
//! | `queued` | `failed` | its session reaches `max_ttl` (rule 5, code `session_max_ttl`); the idle-timeout close of rules 4 and 8 fails queued jobs too (`session_idle_timeout`), though it fires only when none is queued |
//! | `queued` | `canceled` | rule 9: the user cancels it (`Service::cancel_job`, `POST /v1/jobs/{id}/cancel`); rule 7: its session is canceled (code `session_canceled`) |
//! | `running` | `completed` | the worker holding its lease records the driver's result (`Service::complete_job`, fenced by lease owner and epoch) |
//! | `running` | `failed` | the worker records a driver error (`invalid_input`, `too_large`, `device_fault`), a device with no driver (`no_driver`) or rule 10 (`max_execution_time`); the leader gives up on a lost worker's job after `max_attempts` attempts or because its session closed (`worker_lost`); shutdown cannot hand back a job whose session closed (`shutdown`) |
//! | `running` | `canceled` | rule 9: cancellation was asked, the driver stopped and the worker records it; or the leader finds the job's worker lost and its cancellation asked |
//! | `running` | `queued` | the leader finds the worker's lease expired while attempts remain and the session (if any) is open (`rules::lost_job_fate` says `Requeue`); or the worker hands it back at graceful shutdown, its attempt given back (`Service::release_job`) |
//!
//! ## Session transitions
//!
//! ```text
//! pending  --rule 3: wins the device---------> active
//! active   --rule 4: idle, deactivate--------> inactive
//! inactive --rule 3: wins the device again---> active
//! pending, active, inactive --rules 4 to 8---> closed
//! ```
//!
//! | from | to | when |
//! |---|---|---|
//! | `pending` | `active` | rule 3: the session, which has a queued job, wins a free device; its first job starts in the same transaction and `started_at` is set |
//! | `pending` | `closed` | rule 8: no job for `pending_ttl` (`idle_timeout`); rule 6: closed (`Service::close_session`, `POST /v1/sessions/{id}/close`) with no job left (`completed`); rule 7: canceled (`Service::cancel_session`, `POST /v1/sessions/{id}/cancel`) |
//! | `active` | `inactive` | rule 4 with `idle_policy: deactivate`: no job for `interactive_ttl`; the device is given back |
//! | `active` | `closed` | rule 4 with `idle_policy: time_out` (`idle_timeout`); rule 5 (`max_ttl`); rule 6, drained (`completed`); rule 7 (`canceled`) |
//! | `inactive` | `active` | rule 3 again: a job arrived and the session wins the device back (`started_at` keeps the first activation) |
//! | `inactive` | `closed` | rule 5 (`max_ttl` keeps counting while inactive); rule 8 (`idle_timeout`); rule 6 (`completed`); rule 7 (`canceled`) |
//!
//! The timer rules (4, 5, 6, 8) are applied by `Service::settle_session` wherever a session's
//! facts change: the leader's tick for sessions whose `next_deadline` passed, the dispatch of the
//! device the session holds, the completion of one of its jobs, a close, a job cancel.

use crate::model::string_enum;

string_enum!(
    /// A job's lifecycle: `queued -> running -> completed | failed | canceled`; a queued job may
    /// end without running, and a running job goes back to the queue when its worker is lost.
    /// See the module docs for the transition table.
    JobStatus {
        /// Waiting in its device's queue (job mode) or its session's queue. Every job starts here:
        /// `Service::submit_job` (`POST /v1/jobs`) inserts it. It comes back here when its worker
        /// was lost and it runs again, or when its replica shut down before it finished.
        ///
        /// Next: `running`, `failed`, `canceled`.
        Queued => "queued",
        /// On its device, which runs no other job (rule 1). Dispatch moved it here, assigned by
        /// the leader (fenced by its term; a worker claims it with `SKIP LOCKED`) or leased at
        /// once to the worker whose completion started it. The worker holds a lease (owner,
        /// epoch, expiry) and renews it by heartbeat.
        ///
        /// Next: `completed`, `failed`, `canceled`, `queued`.
        Running => "running",
        /// Ran to the end; its result is stored apart (`job_results`). Terminal.
        ///
        /// Next: none.
        Completed => "completed",
        /// Ended without a result; `reason` says why and `reason_code` names the cause. Terminal.
        ///
        /// Next: none.
        Failed => "failed",
        /// Stopped by the user (rule 9) or with its canceled session (rule 7). Terminal.
        ///
        /// Next: none.
        Canceled => "canceled",
    }
);

string_enum!(
    /// A session's lifecycle: `pending -> active -> (inactive -> active ...) -> closed`.
    /// `accepting_jobs` is orthogonal to the state: false after a close (rule 6) or a cancel.
    /// See the module docs for the transition table.
    SessionState {
        /// Waiting for its device. Every session starts here: `Service::open_session`
        /// (`POST /v1/sessions`) inserts it. It queues for the device like a job-mode job once it
        /// has a queued job (rule 3).
        ///
        /// Next: `active`, `closed`.
        Pending => "pending",
        /// Holds its device (rule 2: at most one active session per device): only its jobs run
        /// there, back to back (rule 4). `max_ttl` counts from the first activation (rule 5).
        ///
        /// Next: `inactive`, `closed`.
        Active => "active",
        /// Gave its device back after `interactive_ttl` with no job (rule 4, IBM's `deactivate`);
        /// it queues again like a pending session when a job arrives.
        ///
        /// Next: `active`, `closed`.
        Inactive => "inactive",
        /// Finished; `closed_reason` says why (`completed`, `canceled`, `max_ttl`, `idle_timeout`;
        /// `failed` is allowed by the schema and the vendor views but no code path sets it yet).
        /// Terminal; submitting into it is refused.
        ///
        /// Next: none.
        Closed => "closed",
    }
);

impl JobStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, JobStatus::Completed | JobStatus::Failed | JobStatus::Canceled)
    }

    /// The allowed job transitions (the table in the module docs). Running may go back to queued
    /// only when its worker was lost or handed it back, and the job runs again.
    pub fn can_become(self, next: JobStatus) -> bool {
        use JobStatus::*;
        matches!(
            (self, next),
            (Queued, Running)
                | (Queued, Failed)
                | (Queued, Canceled)
                | (Running, Completed)
                | (Running, Failed)
                | (Running, Canceled)
                | (Running, Queued)
        )
    }
}

impl SessionState {
    pub fn is_open(self) -> bool {
        self != SessionState::Closed
    }

    /// The allowed session transitions (the table in the module docs).
    pub fn can_become(self, next: SessionState) -> bool {
        use SessionState::*;
        matches!(
            (self, next),
            (Pending, Active)
                | (Pending, Closed)
                | (Active, Inactive)
                | (Active, Closed)
                | (Inactive, Active)
                | (Inactive, Closed)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_go_nowhere() {
        for &s in JobStatus::ALL {
            let outgoing = JobStatus::ALL.iter().filter(|&&n| s.can_become(n)).count();
            assert_eq!(s.is_terminal(), outgoing == 0, "{s}");
        }
        for &s in SessionState::ALL {
            let outgoing = SessionState::ALL.iter().filter(|&&n| s.can_become(n)).count();
            assert_eq!(s.is_open(), outgoing > 0, "{s}");
        }
    }
}
