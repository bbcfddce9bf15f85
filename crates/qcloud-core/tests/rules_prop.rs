//! Property tests of the scheduling rules (`docs/architecture.md`, Scheduling rules).
//!
//! An in-memory world (devices, sessions, jobs, a clock) makes every scheduling decision with the
//! public rule functions of `qcloud_core::rules` only, composed the way `qcloud-service`'s
//! `dispatch.rs` composes them against Postgres (settle the holder, then `decide_device`; chain
//! the next job on completion; settle the finished job's session). Random event sequences are
//! played against it and the invariants of §3 are checked after every step and after a final
//! drain. One deliberate difference: a lost worker's session job is judged by
//! `lost_session_job_action` (a job of a closed session fails), where the service still calls
//! `lost_job_action`, which would leave such a job queued forever.

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use proptest::sample::Index;
use qcloud_core::rules::{
    decide_device, job_time_exceeded, lost_job_action, lost_session_job_action, pick_candidate, session_action,
    session_deadline, Candidate, CandidateKind, DeviceDecision, DeviceFacts, HolderFacts, LostJobAction, SessionAction,
    SessionFacts, SessionTtls,
};
use qcloud_core::{IdlePolicy, JobStatus, Priority, SessionState};
use std::collections::{BTreeSet, HashMap};
use uuid::Uuid;

mod world {
    use super::*;

    pub const DEVICES: usize = 3;
    pub const PROJECTS: usize = 3;
    pub const MAX_ATTEMPTS: i32 = 3;
    const SESSION_ID_BASE: u128 = 1 << 64;

    pub fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    /// One thing that happens to the world.
    #[derive(Debug, Clone)]
    pub enum Event {
        SubmitJob {
            device: usize,
            project: usize,
            priority: Priority,
            max_exec_s: i64,
        },
        OpenSession {
            device: usize,
            project: usize,
            priority: Priority,
            idle_policy: IdlePolicy,
            ttls: SessionTtls,
        },
        SubmitToSession {
            session: Index,
            max_exec_s: i64,
        },
        /// Rule 6.
        CloseSession {
            session: Index,
        },
        /// Rule 7.
        CancelSession {
            session: Index,
        },
        /// Rule 9.
        CancelJob {
            job: Index,
        },
        /// The worker of the device's running job reports its end.
        Complete {
            device: usize,
            success: bool,
        },
        /// The clock moves on; timers and max execution times fire on the way.
        Advance {
            ms: i64,
        },
        Pause {
            device: usize,
        },
        Resume {
            device: usize,
        },
        /// The worker of the device's running job vanishes; the leader recovers the job.
        LoseWorker {
            device: usize,
        },
    }

    #[derive(Debug, Clone)]
    pub struct Job {
        pub device: usize,
        pub session: Option<usize>,
        pub project: usize,
        pub priority: Priority,
        pub seq: i64,
        pub status: JobStatus,
        pub attempt: i32,
        pub max_exec: Duration,
        pub started_at: Option<DateTime<Utc>>,
        pub cancel_requested: bool,
        /// Every status the job has had, in order.
        pub history: Vec<JobStatus>,
    }

    #[derive(Debug, Clone)]
    pub struct Session {
        pub device: usize,
        pub project: usize,
        pub priority: Priority,
        pub state: SessionState,
        pub accepting: bool,
        pub idle_policy: IdlePolicy,
        pub ttls: SessionTtls,
        pub created_at: DateTime<Utc>,
        pub started_at: Option<DateTime<Utc>>,
        pub activated_at: Option<DateTime<Utc>>,
        pub last_submitted: Option<DateTime<Utc>>,
        pub last_completed: Option<DateTime<Utc>>,
        pub history: Vec<SessionState>,
    }

    #[derive(Debug, Default, Clone, Copy)]
    pub struct Stats {
        pub started: u64,
        pub session_activations: u64,
        pub chained: u64,
        pub refused_submissions: u64,
        pub actions: [u64; 4],
        pub requeued: u64,
        pub timed_out_jobs: u64,
    }

    #[derive(Debug, Clone)]
    pub struct World {
        pub now: DateTime<Utc>,
        pub online: Vec<bool>,
        pub sessions: Vec<Session>,
        pub jobs: Vec<Job>,
        next_seq: i64,
        /// Device seconds per (device, project), for fair share.
        usage: HashMap<(usize, usize), f64>,
        pub stats: Stats,
    }

    fn job_id(j: usize) -> Uuid {
        Uuid::from_u128(j as u128)
    }

    fn session_id(s: usize) -> Uuid {
        Uuid::from_u128(SESSION_ID_BASE + s as u128)
    }

    fn project_name(p: usize) -> String {
        format!("project-{p}")
    }

    impl World {
        pub fn new() -> Self {
            World {
                now: t0(),
                online: vec![true; DEVICES],
                sessions: Vec::new(),
                jobs: Vec::new(),
                next_seq: 1,
                usage: HashMap::new(),
                stats: Stats::default(),
            }
        }

        // ---- state changes, each checked against the allowed transitions ----

        fn set_job(&mut self, j: usize, next: JobStatus) {
            let job = &mut self.jobs[j];
            assert!(job.status.can_become(next), "job {j}: {:?} -> {next:?} is not allowed", job.status);
            assert!(!job.status.is_terminal(), "job {j} left terminal state {:?}", job.status);
            job.status = next;
            job.history.push(next);
            match next {
                JobStatus::Running => {
                    job.attempt += 1;
                    job.started_at = Some(self.now);
                }
                JobStatus::Queued => {
                    // A lost worker: the store clears the run and the cancel request.
                    job.started_at = None;
                    job.cancel_requested = false;
                }
                _ => {}
            }
        }

        fn set_session(&mut self, s: usize, next: SessionState) {
            let sess = &mut self.sessions[s];
            assert!(sess.state.can_become(next), "session {s}: {:?} -> {next:?} is not allowed", sess.state);
            sess.state = next;
            sess.history.push(next);
            match next {
                SessionState::Active => {
                    sess.activated_at = Some(self.now);
                    sess.started_at.get_or_insert(self.now);
                }
                SessionState::Closed => sess.accepting = false,
                _ => {}
            }
        }

        // ---- queries, as the store answers them ----

        fn queued_in(&self, s: usize) -> impl Iterator<Item = usize> + '_ {
            self.jobs
                .iter()
                .enumerate()
                .filter(move |(_, j)| j.session == Some(s) && j.status == JobStatus::Queued)
                .map(|(i, _)| i)
        }

        fn running_in(&self, s: usize) -> bool {
            self.jobs.iter().any(|j| j.session == Some(s) && j.status == JobStatus::Running)
        }

        /// `jobs::next_in_session`: the session's queued job with the lowest seq.
        fn next_in_session(&self, s: usize) -> Option<usize> {
            self.queued_in(s).min_by_key(|&j| self.jobs[j].seq)
        }

        fn running_on(&self, d: usize) -> Option<usize> {
            let mut it = self.jobs.iter().enumerate().filter(|(_, j)| j.device == d && j.status == JobStatus::Running);
            let first = it.next().map(|(i, _)| i);
            assert!(it.next().is_none(), "rule 1: device {d} runs two jobs");
            first
        }

        fn holder(&self, d: usize) -> Option<usize> {
            let mut it =
                self.sessions.iter().enumerate().filter(|(_, s)| s.device == d && s.state == SessionState::Active);
            let first = it.next().map(|(i, _)| i);
            assert!(it.next().is_none(), "rule 2: device {d} is held by two active sessions");
            first
        }

        /// `sessions::facts` with `job_presence` (booleans, as the service passes them).
        pub fn facts(&self, s: usize) -> SessionFacts {
            let sess = &self.sessions[s];
            SessionFacts {
                state: sess.state,
                accepting_jobs: sess.accepting,
                idle_policy: sess.idle_policy,
                ttls: sess.ttls,
                created_at: sess.created_at,
                started_at: sess.started_at,
                activated_at: sess.activated_at,
                last_job_submitted: sess.last_submitted,
                last_job_completed: sess.last_completed,
                queued_jobs: self.queued_in(s).next().is_some() as i64,
                running_jobs: self.running_in(s) as i64,
            }
        }

        /// Rule 3's candidates for a free device (`Service::candidates`).
        fn candidates(&self, d: usize) -> Vec<Candidate> {
            let mut out: Vec<(usize, Candidate)> = Vec::new();
            for (i, j) in self.jobs.iter().enumerate() {
                if j.device == d && j.session.is_none() && j.status == JobStatus::Queued {
                    out.push((
                        j.project,
                        Candidate {
                            kind: CandidateKind::Job(job_id(i)),
                            priority: j.priority,
                            project: project_name(j.project),
                            recent_usage_s: 0.0,
                            seq: j.seq,
                        },
                    ));
                }
            }
            for (i, s) in self.sessions.iter().enumerate() {
                if s.device != d || !matches!(s.state, SessionState::Pending | SessionState::Inactive) {
                    continue;
                }
                if let Some(first) = self.queued_in(i).map(|j| self.jobs[j].seq).min() {
                    out.push((
                        s.project,
                        Candidate {
                            kind: CandidateKind::Session(session_id(i)),
                            priority: s.priority,
                            project: project_name(s.project),
                            recent_usage_s: 0.0,
                            seq: first,
                        },
                    ));
                }
            }
            let projects: BTreeSet<usize> = out.iter().map(|(p, _)| *p).collect();
            if projects.len() > 1 {
                for (p, c) in &mut out {
                    c.recent_usage_s = self.usage.get(&(d, *p)).copied().unwrap_or(0.0);
                }
            }
            out.into_iter().map(|(_, c)| c).collect()
        }

        // ---- the service's transactions ----

        fn close(&mut self, s: usize) {
            self.set_session(s, SessionState::Closed);
        }

        fn end_queued_in_session(&mut self, s: usize, status: JobStatus) {
            let queued: Vec<usize> = self.queued_in(s).collect();
            for j in queued {
                self.set_job(j, status);
            }
        }

        /// `settle_locked`: apply rules 4–8 to an open session now.
        fn settle(&mut self, s: usize) -> Option<SessionAction> {
            if self.sessions[s].state == SessionState::Closed {
                return None;
            }
            let action = session_action(&self.facts(s), self.now)?;
            self.stats.actions[action as usize] += 1;
            match action {
                SessionAction::CloseMaxTtl | SessionAction::CloseIdleTimeout => {
                    self.end_queued_in_session(s, JobStatus::Failed);
                    self.close(s);
                }
                SessionAction::CloseCompleted => {
                    assert!(self.queued_in(s).next().is_none() && !self.running_in(s));
                    self.close(s);
                }
                SessionAction::Deactivate => {
                    assert_eq!(self.sessions[s].state, SessionState::Active, "only an active session deactivates");
                    self.set_session(s, SessionState::Inactive);
                }
            }
            Some(action)
        }

        fn start(&mut self, j: usize) {
            self.set_job(j, JobStatus::Running);
            self.stats.started += 1;
        }

        /// `dispatch_in_tx`: a device with no running job starts the holder's next job or gives
        /// itself to the best candidate. Returns the started job.
        fn dispatch(&mut self, d: usize) -> Option<usize> {
            if self.running_on(d).is_some() {
                return None;
            }
            let mut holder = self.holder(d);
            if let Some(h) = holder {
                if self.settle(h).is_some() {
                    holder = None;
                }
            }
            let holder_facts = holder.map(|h| HolderFacts {
                queued_jobs: self.queued_in(h).next().is_some() as i64,
                accepting_jobs: self.sessions[h].accepting,
            });
            let facts = DeviceFacts { accepts_assignments: self.online[d], holder: holder_facts };
            let candidates =
                if holder.is_none() && facts.accepts_assignments { self.candidates(d) } else { Vec::new() };
            let (job, session) = match decide_device(&facts, &candidates) {
                DeviceDecision::Idle | DeviceDecision::HoldForSession => return None,
                DeviceDecision::StartSessionJob => {
                    let h = holder.expect("StartSessionJob without a holder");
                    (self.next_in_session(h).expect("StartSessionJob for a holder with no queued job"), Some(h))
                }
                DeviceDecision::Take(c) => {
                    assert!(holder.is_none(), "a held device took a candidate");
                    assert!(candidates.contains(&c), "decide_device invented a candidate");
                    match c.kind {
                        CandidateKind::Job(id) => (id.as_u128() as usize, None),
                        CandidateKind::Session(id) => {
                            let s = (id.as_u128() - SESSION_ID_BASE) as usize;
                            let j = self.next_in_session(s).expect("a waiting session without a queued job");
                            self.set_session(s, SessionState::Active);
                            self.stats.session_activations += 1;
                            (j, Some(s))
                        }
                    }
                }
            };
            assert_eq!(self.jobs[job].session, session);
            assert_eq!(self.jobs[job].device, d);
            self.start(job);
            Some(job)
        }

        /// The leader's sweep: every device with no running job.
        fn sweep(&mut self) {
            for d in 0..DEVICES {
                self.dispatch(d);
            }
        }

        /// `complete_job` with `chain = true`: record the end, start the device's next job in the
        /// same transaction, settle the finished job's session unless it continues.
        fn complete(&mut self, j: usize, outcome: JobStatus) {
            assert_eq!(self.jobs[j].status, JobStatus::Running);
            let started = self.jobs[j].started_at.expect("a running job has started");
            let used = (self.now - started).num_milliseconds() as f64 / 1000.0;
            self.set_job(j, outcome);
            let (d, p, session) = (self.jobs[j].device, self.jobs[j].project, self.jobs[j].session);
            if used > 0.0 {
                *self.usage.entry((d, p)).or_default() += used;
            }
            if let Some(s) = session {
                self.sessions[s].last_completed = Some(self.now);
            }
            let next = self.dispatch(d);
            if next.is_some() {
                self.stats.chained += 1;
            }
            if let Some(s) = session {
                if next.and_then(|n| self.jobs[n].session) != Some(s) {
                    self.settle(s);
                }
            }
        }

        fn submit_job(&mut self, device: usize, project: usize, priority: Priority, max_exec_s: i64) {
            self.jobs.push(Job {
                device,
                session: None,
                project,
                priority,
                seq: self.next_seq,
                status: JobStatus::Queued,
                attempt: 0,
                max_exec: Duration::seconds(max_exec_s),
                started_at: None,
                cancel_requested: false,
                history: vec![JobStatus::Queued],
            });
            self.next_seq += 1;
        }

        /// Submission into a session: refused once the session is closed or not accepting.
        fn submit_to_session(&mut self, s: usize, max_exec_s: i64) -> Result<usize, &'static str> {
            let sess = &self.sessions[s];
            if sess.state == SessionState::Closed {
                return Err("session_closed");
            }
            if !sess.accepting {
                return Err("session_not_accepting");
            }
            let (device, project, priority) = (sess.device, sess.project, sess.priority);
            self.submit_job(device, project, priority, max_exec_s);
            let j = self.jobs.len() - 1;
            self.jobs[j].session = Some(s);
            self.sessions[s].last_submitted = Some(self.now);
            Ok(j)
        }

        /// Rule 6 (`close_session`).
        pub fn close_session(&mut self, s: usize) {
            if self.sessions[s].state != SessionState::Closed {
                self.sessions[s].accepting = false;
                self.settle(s);
            }
        }

        /// Rule 7 (`cancel_session`).
        fn cancel_session(&mut self, s: usize) {
            if self.sessions[s].state != SessionState::Closed {
                self.end_queued_in_session(s, JobStatus::Canceled);
                self.close(s);
            }
        }

        /// Rule 9 (`cancel_job`).
        fn cancel_job(&mut self, j: usize) {
            match self.jobs[j].status {
                JobStatus::Queued => {
                    self.set_job(j, JobStatus::Canceled);
                    if let Some(s) = self.jobs[j].session {
                        self.settle(s);
                    }
                }
                JobStatus::Running => self.jobs[j].cancel_requested = true,
                _ => {} // refused: already finished
            }
        }

        /// The worker ends the device's running job: canceled when asked to, else as the driver says.
        pub fn complete_on(&mut self, d: usize, success: bool) {
            if let Some(j) = self.running_on(d) {
                let outcome = if self.jobs[j].cancel_requested {
                    JobStatus::Canceled
                } else if success {
                    JobStatus::Completed
                } else {
                    JobStatus::Failed
                };
                self.complete(j, outcome);
            }
        }

        /// `recover_lost_jobs` for the device's running job (requeue clears the cancel request, as
        /// `jobs::requeue_lost` does).
        fn lose_worker(&mut self, d: usize) {
            let Some(j) = self.running_on(d) else { return };
            let action = match self.jobs[j].session {
                None => lost_job_action(self.jobs[j].attempt, MAX_ATTEMPTS),
                Some(s) => lost_session_job_action(self.jobs[j].attempt, MAX_ATTEMPTS, self.sessions[s].state),
            };
            match action {
                LostJobAction::Requeue => {
                    self.set_job(j, JobStatus::Queued);
                    self.stats.requeued += 1;
                }
                LostJobAction::Fail => {
                    self.set_job(j, JobStatus::Failed);
                    if let Some(s) = self.jobs[j].session {
                        self.settle(s);
                    }
                }
            }
        }

        /// The next instant a timer fires: a session deadline or a job's maximum execution time.
        fn next_timer(&self) -> Option<DateTime<Utc>> {
            let sessions = (0..self.sessions.len()).filter_map(|s| session_deadline(&self.facts(s)));
            let jobs = self.jobs.iter().filter(|j| j.status == JobStatus::Running).map(|j| {
                let started = j.started_at.unwrap();
                // The first whole millisecond at which the rule says the job has run too long.
                let mut at = started + j.max_exec;
                while !job_time_exceeded(started, j.max_exec, at) {
                    at += Duration::milliseconds(1);
                }
                at
            });
            sessions.chain(jobs).min()
        }

        /// Fire everything due at `self.now`: jobs past their maximum execution time fail (rule
        /// 10, reported by their worker), session timers (rules 4, 5, 8), then the sweep.
        fn fire_timers(&mut self) {
            for j in 0..self.jobs.len() {
                let job = &self.jobs[j];
                if job.status == JobStatus::Running
                    && job_time_exceeded(job.started_at.unwrap(), job.max_exec, self.now)
                {
                    self.stats.timed_out_jobs += 1;
                    self.complete(j, JobStatus::Failed);
                }
            }
            // The leader's next round picks up a deadline an action just moved into the past
            // (a deactivated session whose pending TTL already ran out closes at once).
            for s in 0..self.sessions.len() {
                let mut rounds = 0;
                while self.settle(s).is_some() {
                    rounds += 1;
                    assert!(rounds <= 2, "session {s} keeps changing at {}", self.now);
                }
            }
            self.sweep();
            // A deadline that has passed must have fired.
            for s in 0..self.sessions.len() {
                if let Some(at) = session_deadline(&self.facts(s)) {
                    assert!(at > self.now, "session {s}: deadline {at} passed at {} but no action fired", self.now);
                }
            }
        }

        /// Move the clock forward, stopping at every timer on the way.
        pub fn advance(&mut self, by: Duration) {
            let target = self.now + by;
            while let Some(at) = self.next_timer().filter(|&at| at <= target) {
                self.now = self.now.max(at);
                self.fire_timers();
            }
            self.now = target;
            self.fire_timers();
        }

        pub fn apply(&mut self, e: &Event) {
            match *e {
                Event::SubmitJob { device, project, priority, max_exec_s } => {
                    self.submit_job(device, project, priority, max_exec_s)
                }
                Event::OpenSession { device, project, priority, idle_policy, ttls } => {
                    self.sessions.push(Session {
                        device,
                        project,
                        priority,
                        state: SessionState::Pending,
                        accepting: true,
                        idle_policy,
                        ttls,
                        created_at: self.now,
                        started_at: None,
                        activated_at: None,
                        last_submitted: None,
                        last_completed: None,
                        history: vec![SessionState::Pending],
                    });
                }
                Event::SubmitToSession { session, max_exec_s } => {
                    if self.sessions.is_empty() {
                        return;
                    }
                    let s = session.index(self.sessions.len());
                    let (open, accepting) = (self.sessions[s].state.is_open(), self.sessions[s].accepting);
                    let before = self.jobs.len();
                    match self.submit_to_session(s, max_exec_s) {
                        Ok(_) => assert!(open && accepting),
                        Err(_) => {
                            // Rule 6/7: a closed or closing session takes no job.
                            assert!(!open || !accepting);
                            assert_eq!(self.jobs.len(), before);
                            self.stats.refused_submissions += 1;
                        }
                    }
                }
                Event::CloseSession { session } => {
                    if !self.sessions.is_empty() {
                        self.close_session(session.index(self.sessions.len()));
                    }
                }
                Event::CancelSession { session } => {
                    if !self.sessions.is_empty() {
                        self.cancel_session(session.index(self.sessions.len()));
                    }
                }
                Event::CancelJob { job } => {
                    if !self.jobs.is_empty() {
                        self.cancel_job(job.index(self.jobs.len()));
                    }
                }
                Event::Complete { device, success } => self.complete_on(device, success),
                Event::Advance { ms } => {
                    self.advance(Duration::milliseconds(ms));
                    return;
                }
                Event::Pause { device } => self.online[device] = false,
                Event::Resume { device } => self.online[device] = true,
                Event::LoseWorker { device } => self.lose_worker(device),
            }
            self.sweep();
        }

        /// Invariants that hold after every step.
        pub fn check(&self) {
            for d in 0..DEVICES {
                // (1) and (2): `running_on` and `holder` assert uniqueness.
                let running = self.running_on(d);
                let holder = self.holder(d);
                // (3) a held device runs only its holder's jobs.
                if let (Some(j), Some(h)) = (running, holder) {
                    assert_eq!(self.jobs[j].session, Some(h), "rule 2: device {d} held by session {h} runs job {j}");
                }
                // Work conservation: an online device with no running job has nothing it may start.
                if running.is_none() && self.online[d] {
                    match holder {
                        Some(h) => assert!(
                            self.queued_in(h).next().is_none(),
                            "rule 4: device {d} idles while its holder {h} has queued jobs"
                        ),
                        None => assert!(
                            self.candidates(d).is_empty(),
                            "rule 3: free device {d} idles with candidates {:?}",
                            self.candidates(d)
                        ),
                    }
                }
            }
            for (i, s) in self.sessions.iter().enumerate() {
                // (6) closed sessions accept nothing and never reopen.
                if s.state == SessionState::Closed {
                    assert!(!s.accepting, "closed session {i} accepts jobs");
                }
                let closes = s.history.iter().filter(|&&h| h == SessionState::Closed).count();
                assert!(closes <= 1 && (closes == 0 || s.state == SessionState::Closed), "session {i} reopened");
                // Only an active session may have a running job, or a closed one finishing its last.
                if self.running_in(i) {
                    assert!(matches!(s.state, SessionState::Active | SessionState::Closed));
                }
                // Rules 5 and 7: a closed session has no queued job (they failed or were canceled),
                // so none can wait for a device forever.
                assert!(
                    s.state != SessionState::Closed || self.queued_in(i).next().is_none(),
                    "closed session {i} has queued jobs {:?}",
                    self.queued_in(i).collect::<Vec<_>>()
                );
            }
            for (i, j) in self.jobs.iter().enumerate() {
                // (5) terminal at most once, never left.
                let terminal = j.history.iter().filter(|h| h.is_terminal()).count();
                assert!(terminal <= 1, "job {i} ended twice: {:?}", j.history);
                assert_eq!(terminal == 1, j.status.is_terminal());
                if terminal == 1 {
                    assert!(j.history.last().unwrap().is_terminal(), "job {i} left its terminal state");
                }
                if j.status == JobStatus::Running {
                    assert!(j.attempt >= 1 && j.attempt <= MAX_ATTEMPTS, "job {i} attempt {}", j.attempt);
                }
            }
        }

        pub fn quiescent(&self) -> bool {
            self.jobs.iter().all(|j| j.status.is_terminal())
                && self.sessions.iter().all(|s| s.state == SessionState::Closed)
        }

        /// Close every session, resume every device, then run and wait until nothing is left.
        pub fn drain(&mut self) {
            for s in 0..self.sessions.len() {
                self.close_session(s);
            }
            for d in 0..DEVICES {
                self.online[d] = true;
            }
            self.sweep();
            self.check();
            for _ in 0..10_000 {
                if self.quiescent() {
                    return;
                }
                for d in 0..DEVICES {
                    self.complete_on(d, true);
                    self.check();
                }
                self.advance(Duration::seconds(1));
                self.check();
            }
            panic!("the world did not drain: {self:#?}");
        }
    }
}

use world::{Event, World, DEVICES, PROJECTS};

fn priority() -> impl Strategy<Value = Priority> {
    prop::sample::select(Priority::ALL.to_vec())
}

fn ttls() -> impl Strategy<Value = SessionTtls> {
    (1i64..300_000, 500i64..30_000, 1_000i64..120_000).prop_map(|(max, interactive, pending)| SessionTtls {
        max_ttl: Duration::milliseconds(max),
        interactive_ttl: Duration::milliseconds(interactive),
        pending_ttl: Duration::milliseconds(pending),
    })
}

fn event() -> impl Strategy<Value = Event> {
    let device = 0..DEVICES;
    let project = 0..PROJECTS;
    prop_oneof![
        3 => (device.clone(), project.clone(), priority(), 1i64..60)
            .prop_map(|(device, project, priority, max_exec_s)| Event::SubmitJob { device, project, priority, max_exec_s }),
        2 => (device.clone(), project, priority(), prop::sample::select(IdlePolicy::ALL.to_vec()), ttls()).prop_map(
            |(device, project, priority, idle_policy, ttls)| Event::OpenSession { device, project, priority, idle_policy, ttls }
        ),
        5 => (any::<Index>(), 1i64..60).prop_map(|(session, max_exec_s)| Event::SubmitToSession { session, max_exec_s }),
        1 => any::<Index>().prop_map(|session| Event::CloseSession { session }),
        1 => any::<Index>().prop_map(|session| Event::CancelSession { session }),
        1 => any::<Index>().prop_map(|job| Event::CancelJob { job }),
        5 => (device.clone(), prop::bool::weighted(0.8)).prop_map(|(device, success)| Event::Complete { device, success }),
        3 => prop_oneof![5 => 0i64..2_000, 2 => 0i64..20_000, 1 => 0i64..300_000].prop_map(|ms| Event::Advance { ms }),
        1 => device.clone().prop_map(|device| Event::Pause { device }),
        1 => device.clone().prop_map(|device| Event::Resume { device }),
        1 => device.prop_map(|device| Event::LoseWorker { device }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// Random submits, closes, cancels, timeouts, completions, pauses and lost workers never put
    /// two jobs or two sessions on one device, every change is an allowed transition, and after
    /// a drain every job ended exactly once and every session is closed.
    #[test]
    fn random_histories_keep_the_invariants(events in prop::collection::vec(event(), 1..250)) {
        let mut w = World::new();
        w.check();
        for e in &events {
            w.apply(e);
            w.check();
        }
        w.drain();
        w.check();
        for (i, j) in w.jobs.iter().enumerate() {
            prop_assert!(j.status.is_terminal(), "job {} is {:?}", i, j.status);
            prop_assert_eq!(j.history.iter().filter(|h| h.is_terminal()).count(), 1);
        }
        for (i, s) in w.sessions.iter().enumerate() {
            prop_assert_eq!(s.state, SessionState::Closed, "session {}", i);
        }
    }
}

// ---- pick_candidate ----

fn candidate_list() -> impl Strategy<Value = Vec<Candidate>> {
    // Few distinct usages so that ties on priority and usage are common; seqs are unique, as
    // queue sequence numbers are.
    prop::collection::vec(
        (priority(), prop::sample::select(vec![0.0, 0.5, 1.0, 7.25, 100.0]), any::<bool>(), 0usize..3),
        0..12,
    )
    .prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(i, (priority, recent_usage_s, is_job, project))| Candidate {
                kind: if is_job {
                    CandidateKind::Job(Uuid::from_u128(i as u128))
                } else {
                    CandidateKind::Session(Uuid::from_u128(i as u128))
                },
                priority,
                project: format!("project-{project}"),
                recent_usage_s,
                seq: i as i64 * 3 + 1,
            })
            .collect()
    })
    .prop_shuffle()
}

/// `a` goes strictly before `b` under rule 3's documented order.
fn goes_before(a: &Candidate, b: &Candidate) -> bool {
    a.priority > b.priority
        || (a.priority == b.priority && a.recent_usage_s < b.recent_usage_s)
        || (a.priority == b.priority && a.recent_usage_s == b.recent_usage_s && a.seq < b.seq)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn pick_candidate_takes_the_first_in_rule_3_order(list in candidate_list()) {
        match pick_candidate(&list) {
            None => prop_assert!(list.is_empty()),
            Some(chosen) => {
                prop_assert!(list.contains(chosen));
                for other in &list {
                    prop_assert!(!goes_before(other, chosen), "{:?} goes before the chosen {:?}", other, chosen);
                }
            }
        }
    }

    #[test]
    fn pick_candidate_ignores_the_order_of_its_input(
        (list, shuffled) in candidate_list().prop_flat_map(|l| (Just(l.clone()), Just(l).prop_shuffle()))
    ) {
        prop_assert_eq!(pick_candidate(&list), pick_candidate(&shuffled));
    }

    #[test]
    fn decide_device_respects_holders_and_pauses(
        list in candidate_list(),
        online in any::<bool>(),
        holder in prop::option::of((0i64..3, any::<bool>())),
    ) {
        let facts = DeviceFacts {
            accepts_assignments: online,
            holder: holder.map(|(queued_jobs, accepting_jobs)| HolderFacts { queued_jobs, accepting_jobs }),
        };
        let expected = match holder {
            Some((q, _)) if q > 0 && online => DeviceDecision::StartSessionJob,
            Some((q, _)) if q > 0 => DeviceDecision::Idle,
            Some(_) => DeviceDecision::HoldForSession,
            None if !online => DeviceDecision::Idle,
            None => pick_candidate(&list).map_or(DeviceDecision::Idle, |c| DeviceDecision::Take(c.clone())),
        };
        prop_assert_eq!(decide_device(&facts, &list), expected);
    }
}

// ---- session_deadline ----

/// Random session facts, and the earliest instant they can be looked at (no earlier than any
/// timestamp in them).
fn session_facts() -> impl Strategy<Value = (SessionFacts, DateTime<Utc>)> {
    let offset = || prop::option::of(0i64..100_000);
    (
        prop::sample::select(SessionState::ALL.to_vec()),
        any::<bool>(),
        prop::sample::select(IdlePolicy::ALL.to_vec()),
        ttls(),
        (offset(), offset(), offset(), offset()),
        (0i64..3, 0i64..2),
    )
        .prop_map(
            |(state, accepting_jobs, idle_policy, ttls, (started, activated, submitted, completed), (q, r))| {
                let created_at = world::t0();
                let at = |o: Option<i64>| o.map(|ms| created_at + Duration::milliseconds(ms));
                let pending = state == SessionState::Pending;
                // A session that never ran has no activation; an active one has one.
                let (started_at, activated_at) = match (pending, started, activated) {
                    (true, _, _) => (None, None),
                    (false, s, a) => {
                        let s = s.unwrap_or(0);
                        (at(Some(s)), at(Some(s + a.unwrap_or(0))))
                    }
                };
                let facts = SessionFacts {
                    state,
                    accepting_jobs: accepting_jobs && state != SessionState::Closed,
                    idle_policy,
                    ttls,
                    created_at,
                    started_at,
                    activated_at,
                    last_job_submitted: at(submitted),
                    last_job_completed: at(completed),
                    queued_jobs: q,
                    running_jobs: if matches!(state, SessionState::Active | SessionState::Closed) { r } else { 0 },
                };
                let earliest =
                    [Some(created_at), started_at, activated_at, facts.last_job_submitted, facts.last_job_completed]
                        .into_iter()
                        .flatten()
                        .max()
                        .unwrap();
                (facts, earliest)
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// No action fires strictly before the deadline; at and after it, with the same facts, one
    /// does; with no deadline, none ever does.
    #[test]
    fn session_deadline_is_when_session_action_fires(
        (facts, earliest) in session_facts(),
        probes in prop::collection::vec(0i64..400_000, 1..16),
        after in 0i64..400_000,
    ) {
        let deadline = session_deadline(&facts);
        for p in probes {
            let now = earliest + Duration::milliseconds(p);
            let action = session_action(&facts, now);
            match deadline {
                None => prop_assert_eq!(action, None, "no deadline, yet {:?} fires at {}", action, now),
                Some(d) if now < d => prop_assert_eq!(action, None, "{:?} fires at {} before the deadline {}", action, now, d),
                Some(d) => prop_assert!(action.is_some(), "nothing fires at {} after the deadline {}", now, d),
            }
        }
        if let Some(d) = deadline {
            let at = d.max(earliest);
            prop_assert!(session_action(&facts, at).is_some(), "nothing fires at the deadline {}", d);
            prop_assert!(session_action(&facts, at + Duration::milliseconds(after)).is_some());
        }
    }
}

/// The random histories reach every path of the model (so the invariants above are not
/// vacuously true): activations, chained starts, every session action, refused submissions,
/// requeues and timeouts.
#[test]
fn random_histories_cover_the_rules() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRng, TestRunner};
    let mut runner =
        TestRunner::new_with_rng(Config::default(), TestRng::deterministic_rng(Config::default().rng_algorithm));
    let mut total = world::Stats::default();
    let strategy = prop::collection::vec(event(), 1..200);
    for _ in 0..64 {
        let events = strategy.new_tree(&mut runner).unwrap().current();
        let mut w = World::new();
        for e in &events {
            w.apply(e);
        }
        w.drain();
        let s = w.stats;
        total.started += s.started;
        total.session_activations += s.session_activations;
        total.chained += s.chained;
        total.refused_submissions += s.refused_submissions;
        total.requeued += s.requeued;
        total.timed_out_jobs += s.timed_out_jobs;
        for i in 0..4 {
            total.actions[i] += s.actions[i];
        }
    }
    println!("{total:?}");
    assert!(total.started > 0 && total.session_activations > 0 && total.chained > 0);
    assert!(total.refused_submissions > 0 && total.requeued > 0 && total.timed_out_jobs > 0);
    assert!(
        total.actions.iter().all(|&n| n > 0),
        "session actions [max_ttl, deactivate, idle_timeout, completed]: {:?}",
        total.actions
    );
}
