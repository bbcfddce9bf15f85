//! The worker pool of one replica: claim assigned jobs, keep their leases alive, run each on its
//! driver off the async runtime (with the job's maximum execution time and cancellation), complete
//! it and go on with the device's next job, which the completion started in the same transaction.

use crate::Shared;
use qcloud_devices::{DeviceSpec, Driver, DriverError, JobSpec, Prepared};
use qcloud_service::pipeline::{ClaimedJob, Completion, Device, Outcome};
use qcloud_service::{ServiceError, SessionMode};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn, Instrument};
use uuid::Uuid;

/// Most jobs claimed in one query.
const CLAIM_BATCH: usize = 32;

pub(crate) async fn claimer(shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(shared.cfg.workers));
    loop {
        if shared.shutdown.is_cancelled() {
            return;
        }
        loop {
            let free = slots.available_permits().min(CLAIM_BATCH);
            if free == 0 || shared.shutdown.is_cancelled() {
                break;
            }
            let jobs = match shared.svc.claim_jobs(shared.me, free as i64).await {
                Ok(j) => j,
                Err(e) => {
                    warn!(error = %e, "claim failed");
                    break;
                }
            };
            let n = jobs.len();
            for job in jobs {
                let Ok(permit) = slots.clone().acquire_owned().await else { return };
                let shared = shared.clone();
                tokio::spawn(run_chain(shared, job, permit));
            }
            if n < free {
                break;
            }
        }
        tokio::select! {
            _ = shared.run_wake.notified() => {}
            _ = tokio::time::sleep(shared.cfg.tick) => {}
            _ = shared.shutdown.cancelled() => return,
        }
    }
}

pub(crate) async fn heartbeat(shared: Arc<Shared>) {
    let every = (shared.svc.cfg.lease.to_std().unwrap_or(Duration::from_secs(10)) / 3).max(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shared.shutdown.cancelled() => {
                // Keep leases alive while running jobs drain during shutdown.
                if shared.running.lock().map(|m| m.is_empty()).unwrap_or(true) { return; }
                tokio::time::sleep(every).await;
            }
        }
        match shared.svc.heartbeat(shared.me).await {
            Ok(cancels) => cancels.into_iter().for_each(|id| shared.cancel_job(id)),
            Err(e) => warn!(error = %e, "lease heartbeat failed"),
        }
    }
}

/// Run a job, then every next job the completions hand back, while holding one worker slot.
async fn run_chain(shared: Arc<Shared>, first: ClaimedJob, _permit: OwnedSemaphorePermit) {
    let mut current = Some(first);
    while let Some(job) = current.take() {
        let span =
            tracing::info_span!("job", job_id = %job.id, device = %job.device.name, session_id = ?job.session_id);
        current = run_one(&shared, job).instrument(span).await;
    }
}

async fn run_one(shared: &Arc<Shared>, job: ClaimedJob) -> Option<ClaimedJob> {
    let cancel = CancellationToken::new();
    if job.cancel_requested {
        cancel.cancel();
    }
    if let Ok(mut m) = shared.running.lock() {
        m.insert(job.id, cancel.clone());
    }
    let (outcome, usage) = execute(shared, &job, cancel.clone()).await;
    if let Ok(mut m) = shared.running.lock() {
        m.remove(&job.id);
    }
    let outcome = match outcome {
        Some(o) => o,
        None => {
            // Shut down mid-run: hand the job back so another replica runs it.
            if let Err(e) = shared.svc.release_job(&job).await {
                warn!(error = %e, "could not hand the job back; its lease will expire");
            }
            return None;
        }
    };
    let chain = !shared.shutdown.is_cancelled();
    if chain {
        match shared.complete_batched(&job, &outcome, usage).await {
            Some(Ok(Completion { next })) => return next.map(|b| *b),
            Some(Err(ServiceError::LeaseLost)) => return None,
            // Not recorded: complete it here, with retries.
            Some(Err(_)) | None => {}
        }
    }
    for attempt in 0..5u32 {
        match shared.svc.complete_job(&job, outcome.clone(), usage, chain).await {
            Ok(Completion { next }) => return next.map(|b| *b),
            Err(ServiceError::LeaseLost) => return None,
            Err(e) => {
                warn!(error = %e, attempt, "completion failed; retrying");
                tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
            }
        }
    }
    warn!("completion failed repeatedly; the lease will expire and the leader recovers the job");
    None
}

/// Prepare and run one job. `None` when the replica is shutting down and the job should be
/// handed back rather than recorded.
async fn execute(shared: &Arc<Shared>, job: &ClaimedJob, cancel: CancellationToken) -> (Option<Outcome>, f64) {
    let spec = job_spec(job);
    let Some(driver) = shared.registry.get(spec.device.driver) else {
        return (
            Some(Outcome::Failed {
                reason: format!(
                    "device '{}' uses driver '{}', which this server does not run",
                    spec.device.name, spec.device.driver
                ),
                code: "no_driver",
            }),
            0.0,
        );
    };
    if let (Some(sid), Some(SessionMode::Batch)) = (job.session_id, job.session_mode) {
        prepare_ahead(shared, &driver, &spec.device, sid, job.id).await;
    }
    let prepared = match shared.caches.take_prepared(job.id).await {
        Some(p) => p,
        None => prepare_blocking(driver.clone(), spec.clone()).await,
    };
    let prepared = match prepared {
        Ok(p) => p,
        Err(e) => return (Some(failure(e)), 0.0),
    };
    let max = job.max_execution.to_std().unwrap_or(Duration::from_millis(1)).max(Duration::from_millis(1));
    let timing = spec.device.timing;
    let run =
        qcloud_devices::execute(driver.as_ref(), prepared, &timing, shared.registry.memory_budget(), cancel.clone());
    let (result, usage) = match tokio::time::timeout(max, run).await {
        Ok(r) => r,
        Err(_) => {
            cancel.cancel();
            return (
                Some(Outcome::Failed {
                    reason: format!("the job exceeded its maximum execution time of {} s", max.as_secs_f64()),
                    code: "max_execution_time",
                }),
                max.as_secs_f64(),
            );
        }
    };
    let outcome = match result {
        Ok(out) => Outcome::Completed { result: out.result },
        Err(DriverError::Canceled) => {
            let user_asked = shared.svc.cancel_requested(job.id).await.unwrap_or(false);
            if !user_asked && shared.shutdown.is_cancelled() {
                return (None, usage);
            }
            Outcome::Canceled { reason: "canceled by the user".into() }
        }
        Err(e) => failure(e),
    };
    (Some(outcome), usage)
}

fn failure(e: DriverError) -> Outcome {
    Outcome::Failed { reason: e.to_string(), code: e.code() }
}

async fn prepare_blocking(driver: Arc<dyn Driver>, spec: JobSpec) -> Result<Prepared, DriverError> {
    tokio::task::spawn_blocking(move || qcloud_devices::prepare(driver.as_ref(), &spec))
        .await
        .unwrap_or_else(|e| Err(DriverError::Fault(format!("prepare task: {e}"))))
}

pub(crate) fn device_spec(d: &Device) -> DeviceSpec {
    DeviceSpec {
        name: d.name.clone(),
        driver: d.driver,
        num_qubits: d.num_qubits.max(0) as u32,
        timing: d.timing,
        config: d.config.clone(),
    }
}

fn job_spec(job: &ClaimedJob) -> JobSpec {
    JobSpec {
        id: job.id,
        program: job.program.clone(),
        payload: job.payload.clone(),
        shots: job.shots.map(|s| s.max(0) as u64),
        device: device_spec(&job.device),
    }
}

/// Rule 12: while a job of a `batch` session runs, prepare the session's next queued jobs in
/// parallel on the blocking pool; device time stays serial. `dedicated` sessions prepare just in
/// time. Prepared jobs wait in the caches until their turn on this replica; the completion chain
/// keeps a session's jobs on the replica that runs it.
async fn prepare_ahead(shared: &Arc<Shared>, driver: &Arc<dyn Driver>, device: &DeviceSpec, sid: Uuid, current: Uuid) {
    // Look ahead again only when fewer than half of the window is prepared already.
    if shared.cfg.prepare_ahead == 0 || shared.caches.prepared_in(sid) >= shared.cfg.prepare_ahead / 2 {
        return;
    }
    let upcoming = match shared.svc.upcoming_session_jobs(sid, shared.cfg.prepare_ahead as i64).await {
        Ok(j) => j,
        Err(e) => {
            debug!(error = %e, "prepare-ahead lookup failed");
            return;
        }
    };
    for job in upcoming {
        if job.id == current || shared.caches.contains(job.id) {
            continue;
        }
        let spec = JobSpec {
            id: job.id,
            program: job.program,
            payload: job.payload,
            shots: job.shots.map(|s| s.max(0) as u64),
            device: device.clone(),
        };
        let (tx, rx) = oneshot::channel();
        let driver = driver.clone();
        tokio::task::spawn_blocking(move || {
            let _ = tx.send(qcloud_devices::prepare(driver.as_ref(), &spec));
        });
        shared.caches.insert(job.id, sid, rx);
    }
}
