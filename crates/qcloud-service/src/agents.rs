//! The agent driver's side of the service: device tokens, and the calls of an agent that serves
//! one device from outside the server (claim, heartbeat, progress, complete / fail, device
//! report). An agent is a remote worker: it holds a job through the same lease (owner, epoch,
//! expiry) as a replica's worker, completes it through [`Service::complete_job`] fenced by that
//! epoch, and a lost agent's job is recovered by the leader's rescue like a lost replica's. The
//! scheduler still decides which job starts on the device; the agent claims the one it started.

use crate::auth::hash_token;
use crate::devices::DeviceView;
use crate::error::{Result, ServiceError};
use crate::pipeline::{ClaimedJob, Outcome};
use crate::Service;
use chrono::{DateTime, Utc};
use qcloud_core::{DeviceStatus, DriverKind, JobStatus};
use qcloud_store::agents::{self as store, DeviceTokenInfo, Held};
use qcloud_store::jobs::Started;
use qcloud_store::{channel, PgListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tracing::{info, instrument, warn};
use uuid::Uuid;

/// An agent, from its device token: it may act only for this device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAgent {
    pub token_id: Uuid,
    pub device: String,
}

/// A device token as admins see it: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceTokenView {
    pub id: Uuid,
    pub device: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<DeviceTokenInfo> for DeviceTokenView {
    fn from(t: DeviceTokenInfo) -> Self {
        DeviceTokenView { id: t.id, device: t.device, created_at: t.created_at, revoked_at: t.revoked_at }
    }
}

/// Why an agent should stop the job it runs (the heartbeat's answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The user asked to cancel it.
    Canceled,
    /// It ran past its maximum execution time (rule 10): the server has failed it already.
    MaxExecutionTime,
}

/// How an agent says a job ended.
#[derive(Debug, Clone)]
pub enum AgentOutcome {
    Completed {
        result: serde_json::Value,
    },
    /// The agent could not run it (the reason is the job's); recorded as canceled when the user
    /// had asked for that, as `max_execution_time` when it overran.
    Failed {
        reason: String,
    },
}

/// What the agent reports of its device.
#[derive(Debug, Clone)]
pub struct DeviceReport {
    pub status: DeviceStatus,
    /// `{"target", "pulser_device", "calibration", "message", ...}`, each optional.
    pub report: serde_json::Value,
}

/// Longest job log kept (the tail of what the agent sends).
pub const MAX_LOG_BYTES: usize = 64 << 10;

/// How often a waiting claim looks again when no notification came (a lost LISTEN costs this).
const CLAIM_POLL: Duration = Duration::from_millis(1000);
/// How often a waiting claim records that its agent is still there (at most; more often when
/// `agent_offline_after` is short).
const TOUCH_EVERY: Duration = Duration::from_secs(5);

/// The wake-ups of waiting claims: one LISTEN on `qcloud_run` per replica, started by the first
/// claim that waits; every notification wakes every waiting claim of this replica, which then
/// looks for its device's job (a claim that finds nothing waits again).
#[derive(Default)]
pub(crate) struct ClaimWake {
    notify: Notify,
    listening: AtomicBool,
}

impl Service {
    /// Make a device token for an agent device (admin): shown once, stored hashed.
    #[instrument(skip_all, fields(device = %device))]
    pub async fn issue_device_token(&self, device: &str) -> Result<(String, DeviceTokenView)> {
        crate::validate::text("device", device)?;
        let mut tx = self.pool().begin().await?;
        let dev = qcloud_store::devices::get(&mut tx, device)
            .await?
            .ok_or_else(|| ServiceError::not_found("device", device))?;
        if dev.driver != DriverKind::Agent {
            return Err(ServiceError::conflict(
                "not_an_agent_device",
                format!("device '{device}' uses the {} driver; device tokens are for agent devices", dev.driver),
            ));
        }
        let token = crate::auth::new_token();
        let info = store::insert_token(&mut tx, &hash_token(&token), device)
            .await?
            .ok_or_else(|| ServiceError::Internal("a new random token collided with a stored one".into()))?;
        tx.commit().await?;
        info!(token_id = %info.id, "device token created");
        Ok((token, info.into()))
    }

    /// The device tokens of a device, newest first (admin).
    pub async fn list_device_tokens(&self, device: &str) -> Result<Vec<DeviceTokenView>> {
        crate::validate::text("device", device)?;
        let mut conn = self.pool().acquire().await?;
        if qcloud_store::devices::get(&mut conn, device).await?.is_none() {
            return Err(ServiceError::not_found("device", device));
        }
        Ok(store::list_tokens(&mut conn, device).await?.into_iter().map(Into::into).collect())
    }

    /// Revoke a device token; `None` when no device token has this id.
    pub(crate) async fn revoke_device_token(&self, id: Uuid) -> Result<Option<DeviceTokenView>> {
        let mut conn = self.pool().acquire().await?;
        Ok(store::revoke_token(&mut conn, id).await?.map(Into::into))
    }

    /// Whether `token` is a device token (a user route refuses it with 403, not 401).
    pub(crate) async fn is_device_token(&self, token: &str) -> Result<bool> {
        let mut conn = self.pool().acquire().await?;
        Ok(store::find_token(&mut conn, &hash_token(token)).await?.is_some())
    }

    /// The agent of a device token: 401 for an unknown or revoked token, 403 for a user token.
    /// Records that the agent was heard from (a disconnected device comes back online). Device
    /// tokens are not cached, so a revocation holds at once on every replica.
    pub async fn authenticate_device(&self, token: &str) -> Result<DeviceAgent> {
        let hash = hash_token(token);
        let mut conn = self.pool().acquire().await?;
        let Some(row) = store::find_token(&mut conn, &hash).await? else {
            if qcloud_store::tokens::find_by_hash(&mut conn, &hash).await?.is_some() {
                return Err(ServiceError::Forbidden(
                    "the agent routes take a device token (`qcloud devices token NAME`), not a user token".into(),
                ));
            }
            return Err(ServiceError::Unauthenticated("invalid or revoked device token".into()));
        };
        drop(conn);
        let agent = DeviceAgent { token_id: row.id, device: row.device };
        self.touch_agent(&agent.device).await?;
        Ok(agent)
    }

    async fn touch_agent(&self, device: &str) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        if store::touch(&mut tx, device).await? {
            info!(device, "agent connected; the device takes assignments again");
            qcloud_store::notify(&mut tx, channel::WAKE, device).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Agent devices whose agent went quiet for `agent_offline_after` go offline (leader tick).
    pub async fn disconnect_stale_agents(&self) -> Result<Vec<String>> {
        let mut conn = self.pool().acquire().await?;
        let gone = store::disconnect_stale(&mut conn, self.cfg.agent_offline_after.num_milliseconds()).await?;
        for d in &gone {
            warn!(device = %d, "agent not heard from; the device is offline until it returns");
        }
        Ok(gone)
    }

    /// The agent's device, as the agent sees it.
    pub async fn agent_device(&self, agent: &DeviceAgent) -> Result<DeviceView> {
        self.get_device(&crate::Principal::operator(), &agent.device).await
    }

    /// Store the agent's report of its device: its status (online, paused for calibration,
    /// offline) and the target / Pulser device spec / calibration the facades serve for it.
    #[instrument(skip_all, fields(device = %agent.device))]
    pub async fn agent_report(&self, agent: &DeviceAgent, r: DeviceReport) -> Result<DeviceView> {
        crate::validate::json_text("report", &r.report)?;
        if !r.report.is_object() {
            return Err(ServiceError::invalid("invalid_report", "the report must be a JSON object"));
        }
        let mut tx = self.pool().begin().await?;
        qcloud_store::agents::report(&mut tx, &agent.device, r.status.as_str(), &r.report)
            .await?
            .ok_or_else(|| ServiceError::not_found("device", &agent.device))?;
        // Back online, there may be work waiting.
        qcloud_store::notify(&mut tx, channel::WAKE, &agent.device).await?;
        tx.commit().await?;
        self.agent_device(agent).await
    }

    /// The job the scheduler started on the agent's device, leased to this agent; waits up to
    /// `wait` (at most `agent_max_wait`) for one, woken by LISTEN/NOTIFY. `None`: nothing came.
    #[instrument(skip_all, fields(device = %agent.device))]
    pub async fn agent_claim(&self, agent: &DeviceAgent, wait: Duration) -> Result<Option<ClaimedJob>> {
        let wait = wait.min(self.cfg.agent_max_wait.to_std().unwrap_or(Duration::from_secs(30)));
        let deadline = Instant::now() + wait;
        let mut touched = Instant::now();
        let offline_after = self.cfg.agent_offline_after.to_std().unwrap_or(Duration::from_secs(60));
        let touch_every = (offline_after / 3).clamp(Duration::from_millis(100), TOUCH_EVERY);
        if !wait.is_zero() {
            self.start_claim_wake();
        }
        loop {
            let notified = self.claim_wake.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mut conn = self.pool().acquire().await?;
            let lease_ms = self.cfg.lease.num_milliseconds();
            if let Some(c) = store::claim(&mut conn, &agent.device, agent.token_id, lease_ms).await? {
                info!(job_id = %c.started.job.id, attempt = c.started.job.attempt, "agent claimed a job");
                return Ok(ClaimedJob::new(c.started, c.device));
            }
            drop(conn);
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            if touched.elapsed() >= touch_every {
                self.touch_agent(&agent.device).await?;
                touched = Instant::now();
            }
            let nap = (deadline - now).min(CLAIM_POLL);
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(nap) => {}
            }
        }
    }

    fn start_claim_wake(&self) {
        if self.claim_wake.listening.swap(true, Ordering::AcqRel) {
            return;
        }
        let svc = self.clone();
        tokio::spawn(async move {
            loop {
                match PgListener::connect_with(svc.pool()).await {
                    Ok(mut l) => {
                        if let Err(e) = l.listen(channel::RUN).await {
                            warn!(error = %e, "agent claim listener could not LISTEN");
                        } else {
                            while let Ok(Some(_)) = l.try_recv().await {
                                svc.claim_wake.notify.notify_waiters();
                            }
                            warn!("agent claim listener lost; waiting claims poll until it is back");
                        }
                    }
                    Err(e) => warn!(error = %e, "agent claim listener could not connect"),
                }
                // Whatever was missed meanwhile: every waiting claim looks again.
                svc.claim_wake.notify.notify_waiters();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    async fn held(&self, agent: &DeviceAgent, job_id: Uuid, epoch: i64) -> Result<Held> {
        let mut conn = self.pool().acquire().await?;
        store::held(&mut conn, &agent.device, job_id, epoch).await?.ok_or_else(|| lease_lost(job_id, epoch))
    }

    /// Extend the lease of the agent's job; says whether it should stop. An overrun of the
    /// maximum execution time is recorded here (the job fails `max_execution_time`), so a hung
    /// agent cannot keep the device past it.
    #[instrument(skip_all, fields(device = %agent.device, job_id = %job_id))]
    pub async fn agent_heartbeat(&self, agent: &DeviceAgent, job_id: Uuid, epoch: i64) -> Result<Option<Stop>> {
        let mut conn = self.pool().acquire().await?;
        let held = store::extend(&mut conn, &agent.device, job_id, epoch, self.cfg.lease.num_milliseconds())
            .await?
            .ok_or_else(|| lease_lost(job_id, epoch))?;
        drop(conn);
        if held.overrun {
            self.finish_overrun(agent, held).await?;
            return Ok(Some(Stop::MaxExecutionTime));
        }
        Ok(held.job.cancel_requested.then_some(Stop::Canceled))
    }

    async fn finish_overrun(&self, agent: &DeviceAgent, held: Held) -> Result<JobStatus> {
        let max = held.job.max_execution.num_milliseconds() as f64 / 1000.0;
        let reason = format!("the job exceeded its maximum execution time of {max} s");
        let outcome = Outcome::Failed { reason, code: "max_execution_time" };
        self.finish_held(agent, held, outcome, None, max).await
    }

    /// Progress of the agent's job (status text and a fraction in [0, 1]), shown on the job.
    pub async fn agent_progress(
        &self,
        agent: &DeviceAgent,
        job_id: Uuid,
        epoch: i64,
        message: Option<&str>,
        fraction: Option<f64>,
    ) -> Result<()> {
        crate::validate::opt_text("message", message)?;
        if message.is_some_and(|m| m.len() > 4096) {
            return Err(ServiceError::invalid("invalid_progress", "message: at most 4096 bytes"));
        }
        if fraction.is_some_and(|f| !(0.0..=1.0).contains(&f)) {
            return Err(ServiceError::invalid("invalid_progress", "fraction: a number from 0 to 1"));
        }
        let mut conn = self.pool().acquire().await?;
        if !store::progress(&mut conn, &agent.device, job_id, epoch, message, fraction).await? {
            return Err(lease_lost(job_id, epoch));
        }
        Ok(())
    }

    /// Record how the agent's job ended, only while (job, epoch) is its lease: a late answer from
    /// an agent whose lease was lost is 409 `lease_lost` and changes nothing. Returns the status
    /// recorded.
    #[instrument(skip_all, fields(device = %agent.device, job_id = %job_id))]
    pub async fn agent_finish(
        &self,
        agent: &DeviceAgent,
        job_id: Uuid,
        epoch: i64,
        outcome: AgentOutcome,
        log: Option<&str>,
    ) -> Result<JobStatus> {
        if let AgentOutcome::Completed { result } = &outcome {
            crate::validate::json_text("result", result)?;
        }
        if let AgentOutcome::Failed { reason } = &outcome {
            crate::validate::text("reason", reason)?;
        }
        let log = log.map(|l| l.replace('\0', ""));
        let held = self.held(agent, job_id, epoch).await?;
        if held.overrun {
            // Rule 10 holds whatever the agent says: past its maximum execution time, a job fails.
            return self.finish_overrun(agent, held).await;
        }
        let outcome = match outcome {
            AgentOutcome::Completed { result } => Outcome::Completed { result },
            AgentOutcome::Failed { .. } if held.job.cancel_requested => {
                Outcome::Canceled { reason: "canceled by the user".into() }
            }
            AgentOutcome::Failed { reason } => Outcome::Failed { reason: clip(&reason, 4096), code: "agent_failed" },
        };
        let mut conn = self.pool().acquire().await?;
        let used = qcloud_store::agents::seconds_since_claim(&mut conn, job_id).await?;
        drop(conn);
        self.finish_held(agent, held, outcome, log.as_deref(), used).await
    }

    async fn finish_held(
        &self,
        agent: &DeviceAgent,
        held: Held,
        outcome: Outcome,
        log: Option<&str>,
        usage_seconds: f64,
    ) -> Result<JobStatus> {
        let status = match &outcome {
            Outcome::Completed { .. } => JobStatus::Completed,
            Outcome::Failed { .. } => JobStatus::Failed,
            Outcome::Canceled { .. } => JobStatus::Canceled,
        };
        let (job_id, epoch) = (held.job.id, held.job.lease_epoch);
        let mut conn = self.pool().acquire().await?;
        let device = qcloud_store::devices::get(&mut conn, &agent.device)
            .await?
            .ok_or_else(|| ServiceError::not_found("device", &agent.device))?;
        drop(conn);
        let claimed = ClaimedJob::new(Started { job: held.job, session_mode: None }, device)
            .ok_or_else(|| lease_lost(job_id, epoch))?;
        match self
            .complete_job_with_log(&claimed, outcome, usage_seconds, true, log.map(|l| tail(l, MAX_LOG_BYTES)))
            .await
        {
            Ok(_) => Ok(status),
            Err(ServiceError::LeaseLost) => Err(lease_lost(job_id, epoch)),
            Err(e) => Err(e),
        }
    }
}

fn lease_lost(job_id: Uuid, epoch: i64) -> ServiceError {
    ServiceError::conflict(
        "lease_lost",
        format!("job {job_id} is not leased with epoch {epoch} to this device's agent (it was recovered or finished)"),
    )
}

fn clip(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The last `max` bytes of `s`, on a character boundary.
fn tail(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_keep_their_tail_and_reasons_their_head() {
        assert_eq!(tail("abcdef", 3), "def");
        assert_eq!(tail("ab", 3), "ab");
        assert_eq!(tail("aé", 1), "");
        assert_eq!(clip("abcdef", 3), "abc");
        assert_eq!(clip("é", 1), "");
    }
}
