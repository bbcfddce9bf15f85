//! The job pipeline's state changes: device dispatch (rules 1–4, 11), claims and leases,
//! completion with the next job chained in the same transaction (rule 4: "at once"), session
//! timers (rules 4–8) and recovery of jobs whose worker was lost. Each public function is one
//! transaction; the scheduler crate decides when to call them.
//!
//! Lock order, everywhere: device, then session, then job (rows are locked `FOR NO KEY UPDATE`,
//! which does not block the `FOR KEY SHARE` locks that foreign keys take on insert). Taking locks in
//! one order is what keeps concurrent submits, dispatches and completions free of deadlocks.

use crate::error::{Result, ServiceError};
use crate::sessions::facts;
use crate::Service;
use chrono::{DateTime, Utc};
use qcloud_core::rules::{
    decide_device, lost_job_fate, session_action, session_deadline, Candidate, CandidateKind, DeviceDecision,
    DeviceFacts, HolderFacts, LostJobFate, SessionAction,
};
use qcloud_core::{ClosedReason, Priority, SessionState};
use qcloud_store::jobs::JobRow;
use qcloud_store::sessions::SessionRow;
use qcloud_store::{channel, PgConnection};
use std::collections::{HashMap, HashSet};
use tracing::{debug, info, instrument, warn};
use uuid::Uuid;

/// Who may dispatch: the leader (fenced by its term) or the worker that just finished the
/// device's running job (fenced by that job's lease, checked in the same transaction).
#[derive(Debug, Clone, Copy)]
pub enum Fence {
    Leader { me: Uuid, term: i64 },
    Worker { me: Uuid },
}

/// How a job ended, as the worker reports it.
#[derive(Debug, Clone)]
pub enum Outcome {
    Completed { result: serde_json::Value },
    Failed { reason: String, code: &'static str },
    Canceled { reason: String },
}

/// What a completion did.
#[derive(Debug)]
pub enum Completion {
    /// Recorded; with the next job of the device, already leased to the caller.
    Done { next: Option<Box<JobRow>> },
    /// The caller's lease was gone (the job was recovered elsewhere): nothing was recorded.
    LeaseLost,
}

impl Service {
    /// Recompute a session's next timer deadline from its current facts.
    pub(crate) async fn refresh_deadline(&self, conn: &mut PgConnection, sid: Uuid) -> Result<()> {
        let Some(row) = qcloud_store::sessions::lock(conn, sid).await? else { return Ok(()) };
        let (queued, running) = qcloud_store::sessions::job_presence(conn, sid).await?;
        let deadline = session_deadline(&facts(&row, queued, running)?);
        qcloud_store::sessions::set_deadline(conn, sid, deadline).await?;
        Ok(())
    }

    /// Apply whatever rules 4–8 say about a session now (close, deactivate), else refresh its
    /// deadline. Returns the action taken.
    pub(crate) async fn settle_session(&self, conn: &mut PgConnection, sid: Uuid) -> Result<Option<SessionAction>> {
        let Some(row) = qcloud_store::sessions::lock(conn, sid).await? else { return Ok(None) };
        let now = qcloud_store::now(conn).await?;
        let presence = qcloud_store::sessions::job_presence(conn, row.id).await?;
        Ok(self.settle_locked(conn, &row, now, presence).await?.0)
    }

    /// [`Self::settle_session`] on a locked row; also returns whether the session has queued jobs.
    async fn settle_locked(
        &self,
        conn: &mut PgConnection,
        row: &SessionRow,
        now: DateTime<Utc>,
        (queued, running): (bool, bool),
    ) -> Result<(Option<SessionAction>, bool)> {
        if row.state == "closed" {
            return Ok((None, false));
        }
        let f = facts(row, queued, running)?;
        let Some(action) = session_action(&f, now) else {
            // The stored deadline must never be later than the true one; an earlier one costs the
            // leader one evaluation. So write only when the deadline moves earlier, or when the
            // stored one has passed (it was just evaluated).
            let new = session_deadline(&f);
            let old = row.next_deadline;
            if new != old && (old.is_none_or(|o| o <= now) || new.is_some_and(|n| old.is_some_and(|o| n < o))) {
                qcloud_store::sessions::set_deadline(conn, row.id, new).await?;
            }
            return Ok((None, queued));
        };
        info!(session_id = %row.id, device = %row.device, ?action, "session timer");
        match action {
            SessionAction::CloseMaxTtl => {
                let reason = format!(
                    "the session reached its maximum time to live ({} s) before this job could run",
                    row.max_ttl_ms as f64 / 1000.0
                );
                qcloud_store::jobs::end_queued_in_session(conn, row.id, "failed", &reason, "session_max_ttl").await?;
                qcloud_store::sessions::close(conn, row.id, ClosedReason::MaxTtl.as_str()).await?;
            }
            SessionAction::CloseIdleTimeout => {
                qcloud_store::jobs::end_queued_in_session(
                    conn,
                    row.id,
                    "failed",
                    "the session timed out with no job",
                    "session_idle_timeout",
                )
                .await?;
                qcloud_store::sessions::close(conn, row.id, ClosedReason::IdleTimeout.as_str()).await?;
            }
            SessionAction::CloseCompleted => {
                qcloud_store::sessions::close(conn, row.id, ClosedReason::Completed.as_str()).await?;
            }
            SessionAction::Deactivate => {
                qcloud_store::sessions::deactivate(conn, row.id).await?;
                let f = facts(&SessionRow { state: "inactive".into(), ..row.clone() }, queued, running)?;
                qcloud_store::sessions::set_deadline(conn, row.id, session_deadline(&f)).await?;
            }
        }
        qcloud_store::notify(conn, channel::WAKE, &row.device).await?;
        Ok((Some(action), queued))
    }

    /// Dispatch a device with no running job: start the holder's next job, or give the device to
    /// the best candidate. Returns the started job when it was leased to `owner`.
    async fn dispatch_in_tx(&self, conn: &mut PgConnection, device: &str, fence: Fence) -> Result<Option<JobRow>> {
        let Some(dev) = qcloud_store::devices::lock(conn, device).await? else { return Ok(None) };
        if qcloud_store::jobs::running_on(conn, device).await?.is_some() {
            return Ok(None);
        }
        self.dispatch_free(conn, &dev, fence).await
    }

    /// Dispatch a device whose row this transaction has locked and that has no running job.
    async fn dispatch_free(
        &self,
        conn: &mut PgConnection,
        dev: &qcloud_store::devices::DeviceRow,
        fence: Fence,
    ) -> Result<Option<JobRow>> {
        let device = dev.name.as_str();
        // The device is free: from here on this transaction decides, so a leader proves its term
        // now (a busy device, the common case under load, costs no lease check).
        let (term, owner) = match fence {
            Fence::Leader { me, term } => {
                if !qcloud_store::lease::holds(conn, me, term).await? {
                    return Err(ServiceError::Conflict { code: "not_leader", message: "leader term lost".into() });
                }
                (Some(term), None)
            }
            Fence::Worker { me } => (None, Some(me)),
        };
        let lease_ms = self.cfg.lease.num_milliseconds();
        let mut holder = qcloud_store::sessions::lock_holder(conn, device).await?;
        let mut holder_facts = None;
        if let Some(qcloud_store::sessions::Holder { session: h, db_now, has_queued, has_running }) = &holder {
            match self.settle_locked(conn, h, *db_now, (*has_queued, *has_running)).await? {
                (Some(_), _) => holder = None, // closed or deactivated: the device is free
                (None, queued) => {
                    holder_facts = Some(HolderFacts { queued_jobs: queued as i64, accepting_jobs: h.accepting_jobs })
                }
            }
        }
        let facts = DeviceFacts { accepts_assignments: dev.status == "online", holder: holder_facts };
        let candidates = if holder.is_none() && facts.accepts_assignments {
            self.candidates(conn, device).await?
        } else {
            Vec::new()
        };
        let decision = decide_device(&facts, &candidates);
        let (job_id, session) = match &decision {
            DeviceDecision::Idle => return Ok(None),
            DeviceDecision::HoldForSession => return Ok(None),
            DeviceDecision::StartSessionJob => {
                let Some(h) = &holder else { return Ok(None) };
                match qcloud_store::jobs::next_in_session(conn, h.session.id).await? {
                    Some(j) => (j, Some(h.session.id)),
                    None => return Ok(None),
                }
            }
            DeviceDecision::Take(Candidate { kind: CandidateKind::Job(j), .. }) => (*j, None),
            DeviceDecision::Take(Candidate { kind: CandidateKind::Session(sid), .. }) => {
                let sid = *sid;
                let Some(j) = qcloud_store::jobs::next_in_session(conn, sid).await? else { return Ok(None) };
                qcloud_store::sessions::activate(conn, sid).await?;
                debug!(session_id = %sid, device, "session activated");
                (j, Some(sid))
            }
        };
        let Some(job) = qcloud_store::jobs::start(conn, job_id, term, owner, lease_ms).await? else {
            return Ok(None);
        };
        if let Some(sid) = session {
            if !matches!(decision, DeviceDecision::StartSessionJob) {
                // Activation moves the timers earlier (max TTL now counts); a session that already
                // held the device keeps a deadline that is still early enough.
                self.refresh_deadline(conn, sid).await?;
            }
        }
        if owner.is_none() {
            qcloud_store::notify(conn, channel::RUN, device).await?;
        }
        debug!(job_id = %job.id, device, "job started");
        Ok(owner.map(|_| job))
    }

    /// Rule 3's candidates for a free device, with fair-share usage filled in.
    async fn candidates(&self, conn: &mut PgConnection, device: &str) -> Result<Vec<Candidate>> {
        let mut out: Vec<Candidate> = qcloud_store::jobs::candidates(conn, device, self.cfg.candidate_limit)
            .await?
            .into_iter()
            .map(|(is_session, id, project, prio, seq)| Candidate {
                kind: if is_session { CandidateKind::Session(id) } else { CandidateKind::Job(id) },
                priority: Priority::from_rank(prio),
                project,
                recent_usage_s: 0.0,
                seq,
            })
            .collect();
        let projects: HashSet<&str> = out.iter().map(|c| c.project.as_str()).collect();
        if projects.len() > 1 {
            let names: Vec<String> = projects.into_iter().map(str::to_owned).collect();
            let usage: HashMap<String, f64> =
                qcloud_store::devices::recent_usage(conn, device, &names, self.cfg.fair_share_window_s)
                    .await?
                    .into_iter()
                    .collect();
            for c in &mut out {
                c.recent_usage_s = usage.get(&c.project).copied().unwrap_or(0.0);
            }
        }
        Ok(out)
    }

    /// Dispatch one device (the leader's entry point). Returns whether a job was started and
    /// leased to the caller (a leader's assignments are claimed by workers, so `false`).
    #[instrument(skip_all, fields(device = %device))]
    pub async fn dispatch_device(&self, device: &str, fence: Fence) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let started = self.dispatch_in_tx(&mut tx, device, fence).await?;
        tx.commit().await?;
        Ok(started.is_some())
    }

    /// Online devices with no running job and queued work (the leader's sweep).
    pub async fn devices_with_pending_work(&self) -> Result<Vec<String>> {
        let mut conn = self.pool.acquire().await?;
        Ok(qcloud_store::devices::with_pending_work(&mut conn).await?)
    }

    /// Claim up to `limit` assigned, unowned jobs for this replica's workers.
    pub async fn claim_jobs(&self, me: Uuid, limit: i64) -> Result<Vec<JobRow>> {
        let mut conn = self.pool.acquire().await?;
        Ok(qcloud_store::jobs::claim(&mut conn, me, limit, self.cfg.lease.num_milliseconds()).await?)
    }

    /// Extend this replica's leases; returns the ids of leased jobs whose cancellation was asked.
    pub async fn heartbeat(&self, me: Uuid) -> Result<Vec<Uuid>> {
        let mut conn = self.pool.acquire().await?;
        let rows = qcloud_store::jobs::heartbeat(&mut conn, me, self.cfg.lease.num_milliseconds()).await?;
        Ok(rows.into_iter().filter(|(_, c)| *c).map(|(id, _)| id).collect())
    }

    /// Record how a job ended, while the caller's lease holds, and (with `chain`) start the
    /// device's next job in the same transaction, leased to the caller.
    #[instrument(skip_all, fields(job_id = %job.id, device = %job.device))]
    pub async fn complete_job(
        &self,
        me: Uuid,
        job: &JobRow,
        outcome: Outcome,
        usage_seconds: f64,
        chain: bool,
    ) -> Result<Completion> {
        let (status, reason, code) = match &outcome {
            Outcome::Completed { .. } => ("completed", None, None),
            Outcome::Failed { reason, code } => ("failed", Some(reason.as_str()), Some(*code)),
            Outcome::Canceled { reason } => ("canceled", Some(reason.as_str()), Some("canceled")),
        };
        let mut tx = self.pool.begin().await?;
        // Lock order: device, session, then the job (see the module docs). Recording the
        // completion on the session is its lock; if the lease turns out lost, all of it rolls back.
        let device = qcloud_store::devices::lock(&mut tx, &job.device).await?;
        if let Some(sid) = job.session_id {
            qcloud_store::sessions::record_completion(&mut tx, sid, usage_seconds).await?;
        }
        let result = match &outcome {
            Outcome::Completed { result } => Some(result),
            _ => None,
        };
        let Some(done) = qcloud_store::jobs::finish_leased(
            &mut tx,
            job.id,
            me,
            job.lease_epoch,
            status,
            reason,
            code,
            usage_seconds,
            result,
        )
        .await?
        else {
            warn!(job_id = %job.id, "lease lost before completion; result dropped");
            return Ok(Completion::LeaseLost);
        };
        let next = if let (true, Some(device)) = (chain, &device) {
            // The device row is locked and its running job was this one: dispatch it directly.
            self.dispatch_free(&mut tx, device, Fence::Worker { me }).await?
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
        Ok(Completion::Done { next: next.map(Box::new) })
    }

    /// Give a leased job back to the queue without running it (graceful shutdown).
    pub async fn release_job(&self, me: Uuid, job: &JobRow) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let open = match job.session_id {
            Some(sid) => qcloud_store::jobs::session_state(&mut tx, sid).await?.is_some_and(|s| s != "closed"),
            None => true,
        };
        if open {
            qcloud_store::jobs::hand_back(&mut tx, job.id, me, job.lease_epoch).await?;
            qcloud_store::notify(&mut tx, channel::WAKE, &job.device).await?;
            tx.commit().await?;
            return Ok(());
        }
        // Its session closed while it ran: nothing would start it again.
        let reason = "the server shut down while the job ran, after its session closed".to_string();
        let outcome = Outcome::Failed { reason, code: "shutdown" };
        drop(tx);
        self.complete_job(me, job, outcome, 0.0, false).await.map(|_| ())
    }

    /// Sessions whose timers fired: apply rules 4–8 (leader only). Returns how many changed.
    pub async fn run_session_timers(&self, me: Uuid, term: i64) -> Result<usize> {
        let due = {
            let mut conn = self.pool.acquire().await?;
            qcloud_store::sessions::due(&mut conn, 256).await?
        };
        let mut changed = 0;
        for sid in due {
            let mut tx = self.pool.begin().await?;
            if !qcloud_store::lease::holds(&mut tx, me, term).await? {
                return Err(ServiceError::Conflict { code: "not_leader", message: "leader term lost".into() });
            }
            if self.settle_session(&mut tx, sid).await?.is_some() {
                changed += 1;
            }
            tx.commit().await?;
        }
        Ok(changed)
    }

    /// Jobs whose worker lease ran out: run again or fail (leader only). Returns how many.
    pub async fn recover_lost_jobs(&self, me: Uuid, term: i64) -> Result<usize> {
        let mut settle = Vec::new();
        let mut tx = self.pool.begin().await?;
        if !qcloud_store::lease::holds(&mut tx, me, term).await? {
            return Err(ServiceError::Conflict { code: "not_leader", message: "leader term lost".into() });
        }
        let lost = qcloud_store::jobs::expired_leases(&mut tx, 256).await?;
        for job in &lost {
            let session = match job.session_id {
                Some(sid) => qcloud_store::jobs::session_state(&mut tx, sid)
                    .await?
                    .map(|s| s.parse::<SessionState>())
                    .transpose()
                    .map_err(|e| ServiceError::Internal(format!("stored session: {e}")))?,
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
            let mut tx = self.pool.begin().await?;
            self.settle_session(&mut tx, sid).await?;
            tx.commit().await?;
        }
        Ok(lost.len())
    }

    /// Become or stay leader; returns the term held.
    pub async fn acquire_leadership(&self, me: Uuid, current: Option<i64>, ttl_ms: i64) -> Result<Option<i64>> {
        let mut conn = self.pool.acquire().await?;
        Ok(qcloud_store::lease::acquire_or_renew(&mut conn, me, current, ttl_ms).await?)
    }

    pub async fn release_leadership(&self, me: Uuid, term: i64) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        Ok(qcloud_store::lease::release(&mut conn, me, term).await?)
    }

    /// A device row by name (workers look up driver, timing and config).
    pub async fn device_row(&self, name: &str) -> Result<qcloud_store::devices::DeviceRow> {
        let mut conn = self.pool.acquire().await?;
        qcloud_store::devices::get(&mut conn, name).await?.ok_or_else(|| ServiceError::not_found("device", name))
    }

    /// The mode of a session (`batch` sessions prepare ahead, rule 12).
    pub async fn session_mode(&self, sid: Uuid) -> Result<Option<String>> {
        let mut conn = self.pool.acquire().await?;
        Ok(sqlx::query_scalar("SELECT mode FROM sessions WHERE id = $1").bind(sid).fetch_optional(&mut *conn).await?)
    }

    /// Upcoming queued jobs of a session, for preparing ahead (rule 12).
    pub async fn upcoming_session_jobs(&self, sid: Uuid, limit: i64) -> Result<Vec<JobRow>> {
        let mut conn = self.pool.acquire().await?;
        Ok(qcloud_store::jobs::queued_in_session(&mut conn, sid, limit).await?)
    }

    /// Whether cancellation of a job was asked for.
    pub async fn cancel_requested(&self, id: Uuid) -> Result<bool> {
        let mut conn = self.pool.acquire().await?;
        Ok(sqlx::query_scalar("SELECT cancel_requested FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
            .unwrap_or(false))
    }
}
