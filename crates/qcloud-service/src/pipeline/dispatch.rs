//! Dispatch (rules 1–4, 11): a free device starts the next job of the session that holds it, or
//! is given to the best of rule 3's candidates. The leader dispatches devices that were woken; a
//! worker that completes a job dispatches its device in the completion's transaction.

use super::ClaimedJob;
use crate::error::{Result, ServiceError};
use crate::Service;
use qcloud_core::rules::{decide_device, Candidate, CandidateKind, DeviceDecision, DeviceFacts, HolderFacts};
use qcloud_core::DeviceStatus;
use qcloud_store::devices::Device;
use qcloud_store::PgConnection;
use std::collections::{HashMap, HashSet};
use tracing::{debug, instrument};
use uuid::Uuid;

/// Who may dispatch: the leader (fenced by its term) or the worker that just finished the
/// device's running job (fenced by that job's lease, checked in the same transaction).
#[derive(Debug, Clone, Copy)]
pub enum Fence {
    Leader {
        me: Uuid,
        term: i64,
    },
    Worker {
        me: Uuid,
    },
    /// The agent that just finished the device's running job (fenced by its lease, like a
    /// worker): the next job starts unowned, for the device's agents to claim.
    Unowned,
}

impl Service {
    /// Dispatch one device (the leader's entry point). Returns the job that was started when it
    /// was leased to the caller (a leader's assignments are claimed by workers, so `None`).
    #[instrument(skip_all, fields(device = %device))]
    pub async fn dispatch_device(&self, device: &str, fence: Fence) -> Result<Option<ClaimedJob>> {
        let mut tx = self.pool().begin().await?;
        let Some(dev) = qcloud_store::devices::lock(&mut tx, device).await? else { return Ok(None) };
        if qcloud_store::jobs::running_on(&mut tx, device).await?.is_some() {
            return Ok(None);
        }
        let started = self.dispatch_free(&mut tx, &dev, fence).await?;
        tx.commit().await?;
        Ok(started)
    }

    /// Online devices with no running job and queued work (the leader's sweep).
    pub async fn devices_with_pending_work(&self) -> Result<Vec<String>> {
        let mut conn = self.pool().acquire().await?;
        Ok(qcloud_store::devices::with_pending_work(&mut conn).await?)
    }

    /// Dispatch a device whose row this transaction has locked and that has no running job.
    /// Returns the started job when it was leased to a worker.
    pub(crate) async fn dispatch_free(
        &self,
        conn: &mut PgConnection,
        dev: &Device,
        fence: Fence,
    ) -> Result<Option<ClaimedJob>> {
        let device = dev.name.as_str();
        // The device is free: from here on this transaction decides, so a leader proves its term
        // now (a busy device, the common case under load, costs no lease check).
        let (term, owner) = match fence {
            Fence::Leader { me, term } => {
                if !qcloud_store::lease::holds(conn, me, term).await? {
                    return Err(ServiceError::NotLeader);
                }
                (Some(term), None)
            }
            Fence::Worker { me } => (None, Some(me)),
            Fence::Unowned => (None, None),
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
        let facts =
            DeviceFacts { accepts_assignments: dev.effective_status() == DeviceStatus::Online, holder: holder_facts };
        let candidates = if holder.is_none() && facts.accepts_assignments {
            self.candidates(conn, device).await?
        } else {
            Vec::new()
        };
        let decision = decide_device(&facts, &candidates);
        let (started, session) = match &decision {
            DeviceDecision::Idle | DeviceDecision::HoldForSession => return Ok(None),
            DeviceDecision::StartSessionJob => {
                let Some(h) = &holder else { return Ok(None) };
                // The session's next job in arrival order, picked and started in one statement.
                let started =
                    qcloud_store::jobs::start_next_in_session(conn, h.session.id, term, owner, lease_ms).await?;
                (started, Some(h.session.id))
            }
            DeviceDecision::Take(Candidate { kind: CandidateKind::Job(j), .. }) => {
                (qcloud_store::jobs::start(conn, *j, term, owner, lease_ms).await?, None)
            }
            DeviceDecision::Take(Candidate { kind: CandidateKind::Session(sid), .. }) => {
                let sid = *sid;
                let Some(j) = qcloud_store::jobs::next_in_session(conn, sid).await? else { return Ok(None) };
                qcloud_store::sessions::activate(conn, sid).await?;
                debug!(session_id = %sid, device, "session activated");
                (qcloud_store::jobs::start(conn, j, term, owner, lease_ms).await?, Some(sid))
            }
        };
        let Some(started) = started else {
            return Ok(None);
        };
        if let Some(sid) = session {
            if !matches!(decision, DeviceDecision::StartSessionJob) {
                // Activation moves the timers earlier (max TTL now counts); a session that already
                // held the device keeps a deadline that is still early enough.
                self.refresh_deadline(conn, sid).await?;
            }
        }
        // Without an owner, the start statement itself sent `NOTIFY qcloud_run` for the claimers.
        debug!(job_id = %started.job.id, device, "job started");
        Ok(owner.and_then(|_| ClaimedJob::new(started, dev.clone())))
    }

    /// Rule 3's candidates for a free device, with fair-share usage filled in.
    async fn candidates(&self, conn: &mut PgConnection, device: &str) -> Result<Vec<Candidate>> {
        let rows = qcloud_store::jobs::candidates(conn, device, self.cfg.candidate_limit).await?;
        self.with_usage(conn, device, rows).await
    }

    /// Rule 3's candidates from their rows, with fair-share usage filled in when more than one
    /// project competes for the device.
    pub(crate) async fn with_usage(
        &self,
        conn: &mut PgConnection,
        device: &str,
        rows: Vec<qcloud_store::jobs::CandidateRow>,
    ) -> Result<Vec<Candidate>> {
        let mut out: Vec<Candidate> = rows
            .into_iter()
            .map(|c| Candidate {
                kind: if c.is_session { CandidateKind::Session(c.id) } else { CandidateKind::Job(c.id) },
                priority: c.priority,
                project: c.project,
                recent_usage_s: 0.0,
                seq: c.seq,
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
}
