//! qcloud-scheduler: the loops that move jobs. On every replica: a listener (LISTEN/NOTIFY), a
//! leader candidate (lease with term; while leader it dispatches idle devices, fires session
//! timers and recovers jobs of lost workers), and the worker pool (claims assigned jobs with
//! SKIP LOCKED, keeps their leases alive, runs drivers off the async runtime, completes each job
//! and chains the device's next one in the same transaction). Every state change goes through
//! `qcloud-service`.
#![forbid(unsafe_code)]

mod caches;
pub mod checks;
mod completer;
mod leader;
mod worker;

use qcloud_devices::Registry;
use qcloud_service::pipeline::{Wakeup, Wakeups};
use qcloud_service::Service;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Jobs one replica runs at once (devices are exclusive anyway; this bounds the replica).
    pub workers: usize,
    /// Fallback tick: timers, lost-job recovery and a sweep of idle devices.
    pub tick: Duration,
    /// Leader lease length; renewed at a third of it.
    pub leader_ttl: Duration,
    /// Queued jobs of a batch session prepared ahead of their turn (rule 12).
    pub prepare_ahead: usize,
    /// How long shutdown waits for running jobs before handing them back.
    pub shutdown_grace: Duration,
    /// Whether this replica takes part in leader election (a worker-only replica says no).
    pub lead: bool,
    /// Most job completions recorded in one transaction (1: each worker completes its own).
    pub completion_batch: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            workers: 256,
            tick: Duration::from_millis(500),
            leader_ttl: Duration::from_secs(5),
            prepare_ahead: 16,
            shutdown_grace: Duration::from_secs(10),
            lead: true,
            completion_batch: 64,
        }
    }
}

/// Shared state of one replica's scheduler.
pub(crate) struct Shared {
    pub svc: Service,
    pub registry: Registry,
    pub cfg: SchedulerConfig,
    pub me: Uuid,
    /// Cancellation tokens of the jobs this replica runs.
    pub running: Mutex<HashMap<Uuid, CancellationToken>>,
    /// Wakes the claimer (RUN notifications).
    pub run_wake: Notify,
    pub shutdown: CancellationToken,
    pub caches: caches::Caches,
    /// Batches the workers' completions (none with `completion_batch` 1).
    pub completer: Option<completer::Completer>,
}

impl Shared {
    pub fn cancel_job(&self, id: Uuid) {
        if let Ok(map) = self.running.lock() {
            if let Some(t) = map.get(&id) {
                t.cancel();
            }
        }
    }
}

/// A running scheduler; `shutdown` stops it gracefully.
pub struct Scheduler {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Scheduler {
    /// Start the scheduler loops of this replica.
    pub async fn start(svc: Service, registry: Registry, cfg: SchedulerConfig) -> anyhow::Result<Scheduler> {
        let me = Uuid::now_v7();
        let (completer, completer_tasks) = if cfg.completion_batch > 1 {
            let (c, t) = completer::Completer::start(svc.clone(), me, cfg.completion_batch);
            (Some(c), t)
        } else {
            (None, Vec::new())
        };
        let shared = Arc::new(Shared {
            svc,
            registry,
            cfg,
            me,
            running: Mutex::new(HashMap::new()),
            run_wake: Notify::new(),
            shutdown: CancellationToken::new(),
            caches: caches::Caches::default(),
            completer,
        });
        let listener = shared.svc.wakeups().await?;
        let (wake_tx, wake_rx) = mpsc::unbounded_channel();
        info!(replica = %me, "scheduler started");
        let mut tasks = completer_tasks;
        tasks.push(tokio::spawn(listen(shared.clone(), listener, wake_tx)));
        if shared.cfg.lead {
            tasks.push(tokio::spawn(leader::run(shared.clone(), wake_rx)));
        }
        if shared.cfg.lead {
            tasks.push(tokio::spawn(prune(shared.clone())));
            tasks.push(tokio::spawn(vacuum_queue(shared.clone())));
        }
        tasks.push(tokio::spawn(worker::claimer(shared.clone())));
        tasks.push(tokio::spawn(worker::heartbeat(shared.clone())));
        Ok(Scheduler { shared, tasks })
    }

    /// This replica's id (its worker lease owner and leader identity).
    pub fn replica_id(&self) -> Uuid {
        self.shared.me
    }

    /// Stop taking work, let running jobs finish (or hand them back after the grace period),
    /// give up leadership, then return.
    pub async fn shutdown(self) {
        self.shared.shutdown.cancel();
        let deadline = tokio::time::Instant::now() + self.shared.cfg.shutdown_grace;
        loop {
            let n = self.shared.running.lock().map(|m| m.len()).unwrap_or(0);
            if n == 0 {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                warn!(jobs = n, "shutdown grace period over; handing running jobs back");
                if let Ok(map) = self.shared.running.lock() {
                    map.values().for_each(CancellationToken::cancel);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for t in self.tasks {
            t.abort();
        }
        info!("scheduler stopped");
    }
}

/// Jobs deleted per retention batch.
const PRUNE_BATCH: i64 = 500;
/// Pause between retention batches while there is a backlog: the scheduler's queries go first.
const PRUNE_PAUSE: Duration = Duration::from_millis(20);
/// How often retention looks for expired jobs when there is no backlog.
const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// Retention (`job_retention`): delete terminal jobs past it, in small batches. Deleting is
/// idempotent and skips locked rows, so it needs no leader term; replicas that take part in
/// leader election run it.
async fn prune(shared: Arc<Shared>) {
    loop {
        let pause = match shared.svc.prune_jobs(PRUNE_BATCH).await {
            Ok(n) if n as i64 >= PRUNE_BATCH => PRUNE_PAUSE,
            Ok(_) => PRUNE_EVERY,
            Err(e) => {
                warn!(error = %e, "pruning old jobs failed");
                PRUNE_EVERY
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shared.shutdown.cancelled() => return,
        }
    }
}

/// How often the queue table's dead rows are checked (and vacuumed when there are enough).
const QUEUE_VACUUM_EVERY: Duration = Duration::from_secs(1);

/// Keep `job_queue` free of the rows of jobs that started (see `Service::vacuum_queue_if_needed`).
/// VACUUM takes no lock that the scheduler's statements wait on, and two replicas vacuuming at
/// once only repeat work, so it needs no leader term.
async fn vacuum_queue(shared: Arc<Shared>) {
    loop {
        if let Err(e) = shared.svc.vacuum_queue_if_needed().await {
            warn!(error = %e, "vacuuming the queue table failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(QUEUE_VACUUM_EVERY) => {}
            _ = shared.shutdown.cancelled() => return,
        }
    }
}

async fn listen(shared: Arc<Shared>, mut wakeups: Wakeups, wake: mpsc::UnboundedSender<String>) {
    loop {
        let w = tokio::select! {
            w = wakeups.recv() => w,
            _ = shared.shutdown.cancelled() => return,
        };
        match w {
            Ok(Wakeup::Device(d)) => {
                let _ = wake.send(d);
            }
            Ok(Wakeup::Run) => shared.run_wake.notify_one(),
            Ok(Wakeup::Cancel(id)) => shared.cancel_job(id),
            Err(e) => {
                // The listener reconnects on the next recv; the tick covers what was missed.
                warn!(error = %e, "notification listener error");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
