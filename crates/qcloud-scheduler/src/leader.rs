//! The leader loop: hold the lease, dispatch devices that were woken, and on every tick fire
//! session timers, recover jobs of lost workers and sweep idle devices with queued work.

use crate::Shared;
use futures::StreamExt;
use qcloud_service::pipeline::Fence;
use qcloud_service::ServiceError;
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Devices dispatched at once by the leader.
const DISPATCH_CONCURRENCY: usize = 8;

pub(crate) async fn run(shared: Arc<Shared>, mut wake: mpsc::UnboundedReceiver<String>) {
    let ttl_ms = shared.cfg.leader_ttl.as_millis() as i64;
    let renew_every = shared.cfg.leader_ttl / 3;
    let mut term: Option<i64> = None;
    let mut next_renew = Instant::now();
    let mut next_tick = Instant::now();
    let mut pending: HashSet<String> = HashSet::new();
    loop {
        if shared.shutdown.is_cancelled() {
            if let Some(t) = term {
                let _ = shared.svc.release_leadership(shared.me, t).await;
                info!(term = t, "leadership released");
                leadership_changed(term, None);
            }
            return;
        }
        if Instant::now() >= next_renew {
            match shared.svc.acquire_leadership(shared.me, term, ttl_ms).await {
                Ok(t) => {
                    if t != term {
                        match t {
                            Some(t) => info!(term = t, replica = %shared.me, "became leader"),
                            None => info!("no longer leader"),
                        }
                        leadership_changed(term, t);
                    }
                    term = t;
                }
                Err(e) => {
                    warn!(error = %e, "leader lease renewal failed; stepping down");
                    leadership_changed(term, None);
                    term = None;
                }
            }
            next_renew = Instant::now() + renew_every;
        }
        while let Ok(d) = wake.try_recv() {
            pending.insert(d);
        }
        let Some(t) = term else {
            // Not the leader: wake-ups are the leader's business.
            pending.clear();
            tokio::select! {
                _ = wake.recv() => {}
                _ = tokio::time::sleep_until(next_renew) => {}
                _ = shared.shutdown.cancelled() => {}
            }
            continue;
        };
        if Instant::now() >= next_tick {
            next_tick = Instant::now() + shared.cfg.tick;
            let started = Instant::now();
            let ticked = tick(&shared, t, &mut pending).await;
            metrics::histogram!("qcloud_scheduler_round_seconds", "round" => "tick")
                .record(started.elapsed().as_secs_f64());
            if let Err(e) = ticked {
                if lost_term(&e) {
                    warn!("leader term lost during tick");
                    leadership_changed(term, None);
                    term = None;
                    continue;
                }
                warn!(error = %e, "leader tick failed");
            }
        }
        if !pending.is_empty() {
            let fence = Fence::Leader { me: shared.me, term: t };
            let started = Instant::now();
            let lost = futures::stream::iter(pending.drain())
                .map(|d| {
                    let shared = shared.clone();
                    async move {
                        match shared.svc.dispatch_device(&d, fence).await {
                            Ok(_) => false,
                            Err(e) if lost_term(&e) => true,
                            Err(e) => {
                                warn!(device = %d, error = %e, "dispatch failed");
                                false
                            }
                        }
                    }
                })
                .buffer_unordered(DISPATCH_CONCURRENCY)
                .fold(false, |acc, lost| async move { acc || lost })
                .await;
            metrics::histogram!("qcloud_scheduler_round_seconds", "round" => "dispatch")
                .record(started.elapsed().as_secs_f64());
            if lost {
                warn!("leader term lost during dispatch");
                leadership_changed(term, None);
                term = None;
            }
            continue;
        }
        tokio::select! {
            d = wake.recv() => { if let Some(d) = d { pending.insert(d); } }
            _ = tokio::time::sleep_until(next_tick.min(next_renew)) => {}
            _ = shared.shutdown.cancelled() => {}
        }
    }
}

/// Metrics of a change of this replica's leadership.
fn leadership_changed(before: Option<i64>, after: Option<i64>) {
    if before == after {
        return;
    }
    metrics::counter!("qcloud_leadership_changes_total", "to" => if after.is_some() { "leader" } else { "follower" })
        .increment(1);
    metrics::gauge!("qcloud_leader").set(if after.is_some() { 1.0 } else { 0.0 });
    metrics::gauge!("qcloud_leader_term").set(after.unwrap_or(0) as f64);
}

fn lost_term(e: &ServiceError) -> bool {
    matches!(e, ServiceError::NotLeader)
}

async fn tick(shared: &Shared, term: i64, devices: &mut HashSet<String>) -> Result<(), ServiceError> {
    let timers = shared.svc.run_session_timers(shared.me, term).await?;
    let lost = shared.svc.recover_lost_jobs(shared.me, term).await?;
    if timers + lost > 0 {
        debug!(timers, lost, "leader tick");
    }
    // Agent devices whose agent went quiet take no new assignments (rule 11) until it returns.
    shared.svc.disconnect_stale_agents().await?;
    devices.extend(shared.svc.devices_with_pending_work().await?);
    Ok(())
}
