//! The completer: workers hand it their finished jobs, and it records whatever has gathered in
//! one transaction ([`Service::complete_jobs`]), which also starts each freed device's next job.
//! It does not wait to fill a batch: a completion that arrives while the completer is idle is
//! recorded at once, on its own (the one-job path), and completions that arrive while a
//! transaction is in flight form the next batch. So an idle scheduler keeps its latency and a
//! busy one shares each transaction, its statements and its commit among many jobs.
//!
//! A batch that fails as a whole (a fault, a deadlock) records nothing; its workers are told to
//! complete their jobs themselves, on the one-job path with its retries.

use crate::Shared;
use qcloud_service::pipeline::{ClaimedJob, Completion, Done, Outcome};
use qcloud_service::{Result, Service};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};
use tracing::warn;
use uuid::Uuid;

/// Transactions one replica's completer runs at once.
const COMPLETERS: usize = 2;

struct Request {
    done: Done,
    /// `None`: not recorded, complete the job on the one-job path.
    reply: oneshot::Sender<Option<Result<Completion>>>,
}

/// The workers' side of the completer.
pub(crate) struct Completer {
    tx: mpsc::UnboundedSender<Request>,
}

impl Completer {
    /// Start the completer tasks of a replica (with `batch` > 1; otherwise every worker completes
    /// its own job and this is never called).
    pub(crate) fn start(svc: Service, me: Uuid, batch: usize) -> (Completer, Vec<tokio::task::JoinHandle<()>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let rx = Arc::new(Mutex::new(rx));
        let tasks = (0..COMPLETERS).map(|_| tokio::spawn(run(svc.clone(), me, batch, rx.clone()))).collect();
        (Completer { tx }, tasks)
    }

    /// Record a finished job (and start its device's next job). `None` when the completer did not
    /// record it: the caller completes it on the one-job path.
    pub(crate) async fn complete(
        &self,
        job: &ClaimedJob,
        outcome: &Outcome,
        usage_seconds: f64,
    ) -> Option<Result<Completion>> {
        let (reply, answer) = oneshot::channel();
        let done = Done { job: job.clone(), outcome: outcome.clone(), usage_seconds };
        self.tx.send(Request { done, reply }).ok()?;
        answer.await.ok().flatten()
    }
}

async fn run(svc: Service, me: Uuid, batch: usize, rx: Arc<Mutex<mpsc::UnboundedReceiver<Request>>>) {
    loop {
        let mut requests = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            let mut requests = vec![first];
            while requests.len() < batch {
                match rx.try_recv() {
                    Ok(r) => requests.push(r),
                    Err(_) => break,
                }
            }
            requests
        };
        if requests.len() == 1 {
            let Some(r) = requests.pop() else { continue };
            let answer = svc.complete_job(&r.done.job, r.done.outcome, r.done.usage_seconds, true).await;
            // A fault goes back to the worker's own retries.
            let answer = match answer {
                Err(qcloud_service::ServiceError::LeaseLost) | Ok(_) => Some(answer),
                Err(_) => None,
            };
            let _ = r.reply.send(answer);
            continue;
        }
        let (done, replies): (Vec<Done>, Vec<_>) = requests.into_iter().map(|r| (r.done, r.reply)).unzip();
        match svc.complete_jobs(me, &done).await {
            Ok(answers) => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(Some(answer));
                }
            }
            Err(e) => {
                warn!(error = %e, jobs = done.len(), "batched completion failed; each job completes on its own");
                for reply in replies {
                    let _ = reply.send(None);
                }
            }
        }
    }
}

impl Shared {
    /// Complete a job through the completer when there is one.
    pub(crate) async fn complete_batched(
        &self,
        job: &ClaimedJob,
        outcome: &Outcome,
        usage_seconds: f64,
    ) -> Option<Result<Completion>> {
        self.completer.as_ref()?.complete(job, outcome, usage_seconds).await
    }
}
