//! Batched completion: the completions of many devices' jobs recorded in one transaction, with
//! each freed device's next job started in it. This is [`completion`](super::completion) for
//! many jobs at once (the worker pool's path under load); the decisions are the same: rule 3's
//! [`decide_device`] for every freed device, and a device held by a session (or one whose
//! decision activates a session) goes through [`Service::dispatch_free`] as in the one-job path.
//!
//! Lock order is kept: every device row first (in name order), then the sessions of the jobs
//! (in id order), then the jobs. A job whose lease was lost is left out (its worker is told
//! [`ServiceError::LeaseLost`]) without affecting the others.

use super::{ClaimedJob, Completion, Fence, Outcome};
use crate::error::{Result, ServiceError};
use crate::Service;
use qcloud_core::rules::{decide_device, CandidateKind, DeviceDecision, DeviceFacts};
use qcloud_core::{DeviceStatus, DriverKind};
use qcloud_store::jobs::Finish;
use std::collections::{HashMap, HashSet};
use tracing::{debug, instrument};
use uuid::Uuid;

/// A finished job as its worker reports it, for [`Service::complete_jobs`].
#[derive(Debug, Clone)]
pub struct Done {
    pub job: ClaimedJob,
    pub outcome: Outcome,
    pub usage_seconds: f64,
}

impl Service {
    /// Record how each of `done` ended (all run by the worker `owner`) and start each freed
    /// device's next job, leased to `owner`, in one transaction. The answer has one entry per
    /// job, in order: its [`Completion`], or [`ServiceError::LeaseLost`] when its lease no longer
    /// held (nothing of it recorded). An `Err` of the whole call means nothing was recorded.
    #[instrument(skip_all, fields(jobs = done.len()))]
    pub async fn complete_jobs(&self, owner: Uuid, done: &[Done]) -> Result<Vec<Result<Completion>>> {
        let mut tx = self.pool().begin().await?;
        let mut names: Vec<String> = done.iter().map(|d| d.job.device.name.clone()).collect();
        names.sort();
        names.dedup();
        let devices = qcloud_store::jobs::lock_devices(&mut tx, &names).await?;
        let mut sessions: Vec<Uuid> = done.iter().filter_map(|d| d.job.session_id).collect();
        sessions.sort();
        sessions.dedup();
        if !sessions.is_empty() {
            qcloud_store::jobs::lock_sessions(&mut tx, &sessions).await?;
        }
        let finishes: Vec<Finish> = done.iter().map(finish).collect();
        let finished = qcloud_store::jobs::finish_many(&mut tx, owner, &finishes).await?;

        // The devices this worker freed: each finished job was its device's running job.
        let freed_names: HashSet<&str> = finished.iter().map(|j| j.device.as_str()).collect();
        let freed: Vec<_> = devices.iter().filter(|d| freed_names.contains(d.name.as_str())).collect();
        let freed_list: Vec<String> = freed.iter().map(|d| d.name.clone()).collect();
        let held: HashSet<String> = qcloud_store::sessions::lock_holders(&mut tx, &freed_list)
            .await?
            .into_iter()
            .map(|h| h.session.device)
            .collect();
        let plain = |d: &&&qcloud_store::devices::Device| {
            !held.contains(&d.name) && d.driver != DriverKind::Agent && d.effective_status() == DeviceStatus::Online
        };
        let open: Vec<String> = freed.iter().filter(plain).map(|d| d.name.clone()).collect();
        let mut rows: HashMap<String, Vec<qcloud_store::jobs::CandidateRow>> = HashMap::new();
        if !open.is_empty() {
            for (device, row) in qcloud_store::jobs::candidates_many(&mut tx, &open, self.cfg.candidate_limit).await? {
                rows.entry(device).or_default().push(row);
            }
        }

        let mut next: HashMap<String, ClaimedJob> = HashMap::new();
        let mut to_start: Vec<Uuid> = Vec::new();
        for dev in &freed {
            let direct = if plain(&dev) {
                let candidates =
                    self.with_usage(&mut tx, &dev.name, rows.remove(&dev.name).unwrap_or_default()).await?;
                let facts = DeviceFacts { accepts_assignments: true, holder: None };
                match decide_device(&facts, &candidates) {
                    DeviceDecision::Take(c) => match c.kind {
                        CandidateKind::Job(j) => {
                            to_start.push(j);
                            false
                        }
                        CandidateKind::Session(_) => true,
                    },
                    _ => false,
                }
            } else {
                // Held by a session, an agent device, or not online: the one-device path decides.
                true
            };
            if direct {
                let fence = if dev.driver == DriverKind::Agent { Fence::Unowned } else { Fence::Worker { me: owner } };
                if let Some(job) = self.dispatch_free(&mut tx, dev, fence).await? {
                    next.insert(dev.name.clone(), job);
                }
            }
        }
        if !to_start.is_empty() {
            let lease_ms = self.cfg.lease.num_milliseconds();
            for started in qcloud_store::jobs::start_many(&mut tx, &to_start, owner, lease_ms).await? {
                let Some(dev) = freed.iter().find(|d| d.name == started.job.device) else { continue };
                if let Some(job) = ClaimedJob::new(started, (*dev).clone()) {
                    debug!(job_id = %job.id, device = %dev.name, "job started");
                    next.insert(dev.name.clone(), job);
                }
            }
        }
        // A session whose job finished and whose device did not go on with it: its timers.
        let mut settled = HashSet::new();
        for job in &finished {
            if let Some(sid) = job.session_id {
                let goes_on = next.get(&job.device).and_then(|n| n.session_id) == Some(sid);
                if !goes_on && settled.insert(sid) {
                    self.settle_session(&mut tx, sid).await?;
                }
            }
        }
        tx.commit().await?;

        let finished: HashSet<Uuid> = finished.iter().map(|j| j.id).collect();
        Ok(done
            .iter()
            .map(|d| {
                if finished.contains(&d.job.id) {
                    Ok(Completion { next: next.remove(&d.job.device.name).map(Box::new) })
                } else {
                    Err(ServiceError::LeaseLost)
                }
            })
            .collect())
    }
}

fn finish(d: &Done) -> Finish<'_> {
    let (status, reason, reason_code, result) = d.outcome.parts();
    Finish {
        id: d.job.id,
        epoch: d.job.lease.epoch,
        status,
        reason,
        reason_code,
        usage_seconds: d.usage_seconds,
        result,
        log: None,
    }
}
