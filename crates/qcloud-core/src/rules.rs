//! The scheduling rules of `docs/architecture.md` as pure functions: every input, including the clock, is an
//! argument. The service layer loads the facts, asks these functions what to do, and applies the
//! answer in one transaction.

use crate::model::{IdlePolicy, Priority, SessionState};
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

/// Time-to-live settings of one session (rule 14: server defaults, overridable per request within
/// server limits).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SessionTtls {
    /// Rule 5: counted from the first activation, never paused.
    pub max_ttl: Duration,
    /// Rule 4: how long an active session with no job keeps the device.
    pub interactive_ttl: Duration,
    /// Rule 8: a session with no job at all for this long closes.
    pub pending_ttl: Duration,
}

/// Server-wide defaults and limits for TTLs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TtlPolicy {
    pub default: SessionTtls,
    /// Largest max_ttl a request may ask for.
    pub max_max_ttl: Duration,
    /// Largest interactive_ttl a request may ask for.
    pub max_interactive_ttl: Duration,
}

impl Default for TtlPolicy {
    /// IBM's defaults: interactive TTL 60 s, max TTL 8 h, pending/no-job TTL 30 min.
    fn default() -> Self {
        TtlPolicy {
            default: SessionTtls {
                max_ttl: Duration::hours(8),
                interactive_ttl: Duration::seconds(60),
                pending_ttl: Duration::minutes(30),
            },
            max_max_ttl: Duration::hours(24),
            max_interactive_ttl: Duration::hours(24),
        }
    }
}

/// A TTL that a request asked for and the server refuses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field} must be between {min_s} and {max_s} seconds, got {got}")]
pub struct TtlError {
    pub field: &'static str,
    pub min_s: f64,
    pub max_s: f64,
    pub got: f64,
}

/// The shortest TTL a request may ask for, in seconds (one millisecond).
pub const MIN_TTL_S: f64 = 0.001;

impl TtlPolicy {
    /// The TTLs of a new session: the request's values (in seconds) where given, validated against
    /// the server limits, else the server defaults.
    pub fn resolve(&self, max_ttl_s: Option<f64>, interactive_ttl_s: Option<f64>) -> Result<SessionTtls, TtlError> {
        fn pick(
            field: &'static str,
            asked: Option<f64>,
            default: Duration,
            max: Duration,
        ) -> Result<Duration, TtlError> {
            let Some(s) = asked else { return Ok(default) };
            let max_s = max.num_milliseconds() as f64 / 1000.0;
            // The bounds are the values themselves (at least 1 ms), not their rounding, so that the
            // rule is the one the API's schema states (`minimum: 0.001`).
            if !s.is_finite() || s < MIN_TTL_S || s > max_s {
                return Err(TtlError { field, min_s: MIN_TTL_S, max_s, got: s });
            }
            Ok(Duration::milliseconds(((s * 1000.0).round() as i64).max(1)))
        }
        Ok(SessionTtls {
            max_ttl: pick("max_ttl", max_ttl_s, self.default.max_ttl, self.max_max_ttl)?,
            interactive_ttl: pick(
                "interactive_ttl",
                interactive_ttl_s,
                self.default.interactive_ttl,
                self.max_interactive_ttl,
            )?,
            pending_ttl: self.default.pending_ttl,
        })
    }
}

/// The facts about one open session that its timers depend on.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionFacts {
    pub state: SessionState,
    pub accepting_jobs: bool,
    pub idle_policy: IdlePolicy,
    pub ttls: SessionTtls,
    pub created_at: DateTime<Utc>,
    /// First activation (rule 5 counts from here).
    pub started_at: Option<DateTime<Utc>>,
    /// Latest activation.
    pub activated_at: Option<DateTime<Utc>>,
    pub last_job_submitted: Option<DateTime<Utc>>,
    pub last_job_completed: Option<DateTime<Utc>>,
    pub queued_jobs: i64,
    pub running_jobs: i64,
}

/// What a session's timers and counters say must happen to it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionAction {
    /// Rule 5: max TTL ran out: close (`max_ttl`); the running job finishes, queued jobs fail.
    CloseMaxTtl,
    /// Rule 4 (`deactivate`): give the device back; the session queues again on its next job.
    Deactivate,
    /// Rule 4 (`time_out`) and rule 8: close (`idle_timeout`); queued jobs (none) fail.
    CloseIdleTimeout,
    /// Rule 4/6: not accepting jobs and none left: close (`completed`).
    CloseCompleted,
}

/// The instant the session's next timer fires, if it has one (used to sleep the leader no longer
/// than needed).
pub fn session_deadline(s: &SessionFacts) -> Option<DateTime<Utc>> {
    if s.state == SessionState::Closed {
        return None;
    }
    let mut deadlines = Vec::new();
    if let Some(started) = s.started_at {
        deadlines.push(started + s.ttls.max_ttl);
    }
    let idle = s.queued_jobs == 0 && s.running_jobs == 0;
    if idle && !s.accepting_jobs {
        // Rule 4/6: nothing left and no new jobs: the close is due already, whatever the TTLs.
        deadlines.push(last_recorded(s));
    } else if idle && s.state == SessionState::Active {
        deadlines.push(idle_since(s) + s.ttls.interactive_ttl);
    } else if idle {
        deadlines.push(no_job_since(s) + s.ttls.pending_ttl);
    }
    deadlines.into_iter().min()
}

/// The latest instant the facts record: never later than any `now` they are read at.
fn last_recorded(s: &SessionFacts) -> DateTime<Utc> {
    [s.started_at, s.activated_at, s.last_job_submitted, s.last_job_completed]
        .into_iter()
        .flatten()
        .fold(s.created_at, DateTime::max)
}

/// Since when an active session has had nothing to do.
fn idle_since(s: &SessionFacts) -> DateTime<Utc> {
    [s.activated_at, s.last_job_completed, s.last_job_submitted].into_iter().flatten().max().unwrap_or(s.created_at)
}

/// Since when a session has seen no job activity (for rule 8).
fn no_job_since(s: &SessionFacts) -> DateTime<Utc> {
    [Some(s.created_at), s.last_job_submitted, s.last_job_completed].into_iter().flatten().max().unwrap_or(s.created_at)
}

/// Rules 4, 5, 6 and 8: what must happen to an open session at `now`, if anything.
pub fn session_action(s: &SessionFacts, now: DateTime<Utc>) -> Option<SessionAction> {
    if s.state == SessionState::Closed {
        return None;
    }
    if let Some(started) = s.started_at {
        if now >= started + s.ttls.max_ttl {
            return Some(SessionAction::CloseMaxTtl);
        }
    }
    let idle = s.queued_jobs == 0 && s.running_jobs == 0;
    if !idle {
        return None;
    }
    if !s.accepting_jobs {
        return Some(SessionAction::CloseCompleted);
    }
    match s.state {
        SessionState::Active if now >= idle_since(s) + s.ttls.interactive_ttl => Some(match s.idle_policy {
            IdlePolicy::Deactivate => SessionAction::Deactivate,
            IdlePolicy::TimeOut => SessionAction::CloseIdleTimeout,
        }),
        SessionState::Pending | SessionState::Inactive if now >= no_job_since(s) + s.ttls.pending_ttl => {
            Some(SessionAction::CloseIdleTimeout)
        }
        _ => None,
    }
}

/// One thing a free device could run next: a job-mode job, or a session (pending or inactive)
/// that waits for the device and has a queued job.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub kind: CandidateKind,
    pub priority: Priority,
    pub project: String,
    /// Device seconds this project used on the device over the fair-share window.
    pub recent_usage_s: f64,
    /// Arrival order: the queue sequence number of the job (for a session, of its first queued job).
    pub seq: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandidateKind {
    Job(Uuid),
    Session(Uuid),
}

/// Rule 3: the candidate a free device takes next: highest priority, then the project with the
/// least recent usage of the device (fair share), then first come.
pub fn pick_candidate(candidates: &[Candidate]) -> Option<&Candidate> {
    candidates.iter().min_by(|a, b| {
        b.priority.cmp(&a.priority).then(a.recent_usage_s.total_cmp(&b.recent_usage_s)).then(a.seq.cmp(&b.seq))
    })
}

/// What a device does when it has no running job (rules 2, 3, 4, 11).
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceDecision {
    /// Start this queued job of the session that holds the device (rule 4: at once).
    StartSessionJob,
    /// The holding session has no queued job but may get one: keep the device (rule 4).
    HoldForSession,
    /// Take this candidate (rule 3).
    Take(Candidate),
    /// Nothing to do: paused/offline device, or no candidate.
    Idle,
}

/// Facts about a device with no running job.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceFacts {
    pub accepts_assignments: bool,
    /// The active session holding the device, with its queued job count and whether it still
    /// accepts jobs.
    pub holder: Option<HolderFacts>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HolderFacts {
    pub queued_jobs: i64,
    pub accepting_jobs: bool,
}

/// Rules 2, 3, 4 and 11 for a device that has no running job.
pub fn decide_device(device: &DeviceFacts, candidates: &[Candidate]) -> DeviceDecision {
    if let Some(holder) = device.holder {
        if holder.queued_jobs > 0 {
            // Rule 11 lets the running job finish but gives no new assignments; a held device's
            // next job is part of the session already running, so pausing stops it too.
            if !device.accepts_assignments {
                return DeviceDecision::Idle;
            }
            return DeviceDecision::StartSessionJob;
        }
        // An idle holder keeps the device until its interactive TTL or close (rule 4); the timer
        // rules release it.
        return DeviceDecision::HoldForSession;
    }
    if !device.accepts_assignments {
        return DeviceDecision::Idle;
    }
    match pick_candidate(candidates) {
        Some(c) => DeviceDecision::Take(c.clone()),
        None => DeviceDecision::Idle,
    }
}

/// Rule 10: has a running job exceeded its maximum execution time?
pub fn job_time_exceeded(started_at: DateTime<Utc>, max_execution: Duration, now: DateTime<Utc>) -> bool {
    now >= started_at + max_execution
}

/// What happens to a running job whose worker lost its lease (replica died or partitioned):
/// it runs again from the queue while attempts remain, otherwise it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostJobAction {
    Requeue,
    Fail,
}

pub fn lost_job_action(attempt: i32, max_attempts: i32) -> LostJobAction {
    if attempt < max_attempts {
        LostJobAction::Requeue
    } else {
        LostJobAction::Fail
    }
}

/// `lost_job_action` for a job of a session in state `session` at recovery. A session that closed
/// while the job ran (rule 5 max TTL, rule 7 cancel) starts no more jobs, so a requeued job would
/// stay queued forever: it fails instead, like the queued jobs of that session did.
pub fn lost_session_job_action(attempt: i32, max_attempts: i32, session: SessionState) -> LostJobAction {
    if session.is_open() {
        lost_job_action(attempt, max_attempts)
    } else {
        LostJobAction::Fail
    }
}

/// What becomes of a running job whose worker was lost, all things considered: a cancellation the
/// user asked for is honoured (rule 9: the driver has stopped, for good), a job of a closed session
/// fails ([`lost_session_job_action`]), otherwise it runs again while attempts remain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostJobFate {
    Requeue,
    Fail,
    Cancel,
}

pub fn lost_job_fate(
    attempt: i32,
    max_attempts: i32,
    session: Option<SessionState>,
    cancel_requested: bool,
) -> LostJobFate {
    if cancel_requested {
        return LostJobFate::Cancel;
    }
    let action = match session {
        Some(state) => lost_session_job_action(attempt, max_attempts, state),
        None => lost_job_action(attempt, max_attempts),
    };
    match action {
        LostJobAction::Requeue => LostJobFate::Requeue,
        LostJobAction::Fail => LostJobFate::Fail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::IdlePolicy;

    #[test]
    fn lost_job_fate_honours_cancel_and_closed_sessions() {
        assert_eq!(lost_job_fate(1, 3, None, true), LostJobFate::Cancel);
        assert_eq!(lost_job_fate(1, 3, None, false), LostJobFate::Requeue);
        assert_eq!(lost_job_fate(3, 3, None, false), LostJobFate::Fail);
        assert_eq!(lost_job_fate(1, 3, Some(SessionState::Active), false), LostJobFate::Requeue);
        assert_eq!(lost_job_fate(1, 3, Some(SessionState::Closed), false), LostJobFate::Fail);
    }

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn facts() -> SessionFacts {
        SessionFacts {
            state: SessionState::Active,
            accepting_jobs: true,
            idle_policy: IdlePolicy::Deactivate,
            ttls: SessionTtls {
                max_ttl: Duration::seconds(100),
                interactive_ttl: Duration::seconds(10),
                pending_ttl: Duration::seconds(50),
            },
            created_at: t(0),
            started_at: Some(t(1)),
            activated_at: Some(t(1)),
            last_job_submitted: Some(t(1)),
            last_job_completed: Some(t(5)),
            queued_jobs: 0,
            running_jobs: 0,
        }
    }

    #[test]
    fn interactive_ttl_deactivates_or_times_out() {
        let s = facts();
        assert_eq!(session_action(&s, t(14)), None);
        assert_eq!(session_action(&s, t(15)), Some(SessionAction::Deactivate));
        assert_eq!(session_deadline(&s), Some(t(15)));
        let s = SessionFacts { idle_policy: IdlePolicy::TimeOut, ..facts() };
        assert_eq!(session_action(&s, t(15)), Some(SessionAction::CloseIdleTimeout));
    }

    #[test]
    fn busy_session_is_not_idle_but_max_ttl_still_applies() {
        let s = SessionFacts { running_jobs: 1, ..facts() };
        assert_eq!(session_action(&s, t(50)), None);
        assert_eq!(session_action(&s, t(101)), Some(SessionAction::CloseMaxTtl));
    }

    #[test]
    fn closed_for_new_jobs_and_drained_completes() {
        let s = SessionFacts { accepting_jobs: false, ..facts() };
        assert_eq!(session_action(&s, t(6)), Some(SessionAction::CloseCompleted));
        let s = SessionFacts { accepting_jobs: false, queued_jobs: 2, ..facts() };
        assert_eq!(session_action(&s, t(6)), None);
    }

    #[test]
    fn drained_session_not_accepting_is_due_at_once() {
        // The close of rule 4/6 does not wait for a TTL, so neither does the deadline.
        for state in [SessionState::Pending, SessionState::Active, SessionState::Inactive] {
            let s = SessionFacts { state, accepting_jobs: false, ..facts() };
            let deadline = session_deadline(&s).unwrap();
            assert!(deadline <= t(5), "{state:?}: deadline {deadline}");
            assert_eq!(session_action(&s, t(5)), Some(SessionAction::CloseCompleted));
        }
    }

    #[test]
    fn pending_session_with_no_job_closes_after_pending_ttl() {
        let s = SessionFacts {
            state: SessionState::Pending,
            started_at: None,
            activated_at: None,
            last_job_submitted: None,
            last_job_completed: None,
            ..facts()
        };
        assert_eq!(session_action(&s, t(49)), None);
        assert_eq!(session_action(&s, t(50)), Some(SessionAction::CloseIdleTimeout));
    }

    #[test]
    fn ttl_requests_are_validated() {
        let p = TtlPolicy::default();
        assert!(p.resolve(Some(-1.0), None).is_err());
        assert!(p.resolve(Some(f64::NAN), None).is_err());
        assert!(p.resolve(None, Some(1e12)).is_err());
        let ttl = p.resolve(Some(2.0), Some(0.5)).unwrap();
        assert_eq!(ttl.max_ttl, Duration::seconds(2));
        assert_eq!(ttl.interactive_ttl, Duration::milliseconds(500));
        assert_eq!(p.resolve(None, None).unwrap(), p.default);
    }

    /// The bounds apply to the value asked for, not to its rounding: the API's schema says
    /// `minimum: 0.001`, so 0.0009 is refused (it used to round up to 1 ms and pass) and 0.001 is
    /// the shortest TTL taken; the largest is the limit itself.
    #[test]
    fn ttl_bounds_are_the_values_the_schema_states() {
        let p = TtlPolicy::default();
        for below in [0.0009, 0.000_5, 1e-300, 0.0] {
            let e = p.resolve(Some(below), None).unwrap_err();
            assert_eq!((e.field, e.min_s), ("max_ttl", MIN_TTL_S), "{below}");
            assert!(p.resolve(None, Some(below)).is_err(), "{below}");
        }
        assert_eq!(p.resolve(Some(MIN_TTL_S), None).unwrap().max_ttl, Duration::milliseconds(1));
        assert_eq!(p.resolve(None, Some(0.0015)).unwrap().interactive_ttl, Duration::milliseconds(2));
        let max_s = p.max_max_ttl.num_seconds() as f64;
        assert_eq!(p.resolve(Some(max_s), None).unwrap().max_ttl, p.max_max_ttl);
        assert!(p.resolve(Some(max_s + 0.001), None).is_err());
    }

    #[test]
    fn candidates_order_by_priority_then_fair_share_then_arrival() {
        let c = |p, usage, seq| Candidate {
            kind: CandidateKind::Job(Uuid::from_u128(seq as u128)),
            priority: p,
            project: "p".into(),
            recent_usage_s: usage,
            seq,
        };
        let list = vec![c(Priority::Medium, 0.0, 1), c(Priority::High, 9.0, 5), c(Priority::High, 1.0, 7)];
        assert_eq!(pick_candidate(&list).unwrap().seq, 7);
        let list = vec![c(Priority::Low, 0.0, 3), c(Priority::Low, 0.0, 2)];
        assert_eq!(pick_candidate(&list).unwrap().seq, 2);
        assert_eq!(pick_candidate(&[]), None);
    }

    #[test]
    fn held_device_serves_only_its_session() {
        let cand = Candidate {
            kind: CandidateKind::Job(Uuid::nil()),
            priority: Priority::High,
            project: "p".into(),
            recent_usage_s: 0.0,
            seq: 0,
        };
        let held = |queued| DeviceFacts {
            accepts_assignments: true,
            holder: Some(HolderFacts { queued_jobs: queued, accepting_jobs: true }),
        };
        assert_eq!(decide_device(&held(1), std::slice::from_ref(&cand)), DeviceDecision::StartSessionJob);
        assert_eq!(decide_device(&held(0), std::slice::from_ref(&cand)), DeviceDecision::HoldForSession);
        let free = DeviceFacts { accepts_assignments: true, holder: None };
        assert_eq!(decide_device(&free, std::slice::from_ref(&cand)), DeviceDecision::Take(cand.clone()));
        let paused = DeviceFacts { accepts_assignments: false, holder: None };
        assert_eq!(decide_device(&paused, &[cand]), DeviceDecision::Idle);
    }

    #[test]
    fn lost_jobs_retry_then_fail() {
        assert_eq!(lost_job_action(1, 3), LostJobAction::Requeue);
        assert_eq!(lost_job_action(3, 3), LostJobAction::Fail);
        assert_eq!(lost_session_job_action(1, 3, SessionState::Active), LostJobAction::Requeue);
        assert_eq!(lost_session_job_action(3, 3, SessionState::Active), LostJobAction::Fail);
        // A closed session runs nothing more: its lost job must not go back to the queue.
        assert_eq!(lost_session_job_action(1, 3, SessionState::Closed), LostJobAction::Fail);
        assert!(job_time_exceeded(t(0), Duration::seconds(5), t(5)));
        assert!(!job_time_exceeded(t(0), Duration::seconds(5), t(4)));
    }
}
