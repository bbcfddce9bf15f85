//! Events: reads for the event stream (`GET /v1/events`), and the event hub of a replica: one
//! LISTEN connection that runs the sequencer when events were written (any replica may; passes
//! are one at a time), tells local streams the last sequenced `seq`, wakes the webhook deliverer,
//! and prunes events past the retention window.

use crate::error::{Result, ServiceError};
use crate::{Principal, Service};
use chrono::{DateTime, Utc};
use qcloud_store::events::{self as store, EventFilter, EventRow, Sequenced};
use qcloud_store::{channel, PgListener};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// An event as the stream and webhooks show it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventView {
    /// The public, monotonic event id (SSE `id`, `Last-Event-ID`).
    pub seq: i64,
    /// `job.completed`, `session.closed`, ...
    pub kind: String,
    pub job_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub device: String,
    pub status: String,
    pub reason: Option<String>,
    /// The job's or session's fields at the change (ids, status, reason, timestamps).
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

impl From<EventRow> for EventView {
    fn from(r: EventRow) -> Self {
        EventView {
            seq: r.seq,
            kind: r.kind,
            job_id: r.job_id,
            session_id: r.session_id,
            device: r.device,
            status: r.status,
            reason: r.reason,
            data: r.data,
            created_at: r.created_at,
        }
    }
}

impl EventView {
    /// The JSON body of the event (SSE `data`, webhook payload).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.seq,
            "type": self.kind,
            "timestamp": self.created_at,
            "job_id": self.job_id,
            "session_id": self.session_id,
            "device": self.device,
            "status": self.status,
            "reason": self.reason,
            "data": self.data,
        })
    }
}

/// Filters of `GET /v1/events`.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub job_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub device: Option<String>,
    pub types: Vec<String>,
}

impl EventQuery {
    pub fn check(&self) -> Result<()> {
        crate::webhooks::check_event_types(&self.types)?;
        if let Some(d) = &self.device {
            crate::validate::text("device", d)?;
        }
        Ok(())
    }
}

/// The shared state of a replica's event hub.
#[derive(Clone)]
pub struct EventHub {
    /// The last sequenced `seq` this replica knows of.
    pub last_seq: watch::Receiver<i64>,
    /// Notified when webhook deliveries may be due.
    pub deliveries: Arc<Notify>,
}

/// How often the hub re-reads the last `seq` and wakes the deliverer without a notification.
pub const HUB_TICK: Duration = Duration::from_secs(1);

impl Service {
    /// Events of the caller's project after `after`, oldest first (at most `limit`).
    pub async fn events_after(
        &self,
        who: &Principal,
        q: &EventQuery,
        after: i64,
        limit: i64,
    ) -> Result<Vec<EventView>> {
        let f = EventFilter {
            project: who.project.clone(),
            job_id: q.job_id,
            session_id: q.session_id,
            device: q.device.clone(),
            types: q.types.clone(),
        };
        let mut c = self.pool.acquire().await?;
        Ok(store::after(&mut c, &f, after, limit).await?.into_iter().map(Into::into).collect())
    }

    /// One event of the caller's project.
    pub async fn get_event(&self, who: &Principal, seq: i64) -> Result<EventView> {
        let mut c = self.pool.acquire().await?;
        store::get(&mut c, &who.project, seq)
            .await?
            .map(Into::into)
            .ok_or_else(|| ServiceError::not_found("event", seq))
    }

    /// The last sequenced `seq`.
    pub async fn last_event_seq(&self) -> Result<i64> {
        let mut c = self.pool.acquire().await?;
        Ok(store::last_seq(&mut c).await?)
    }

    /// Number every committed event that has none yet (and queue its webhook deliveries).
    pub async fn sequence_events(&self) -> Result<Sequenced> {
        let mut total = Sequenced::default();
        loop {
            let mut tx = self.pool.begin().await?;
            let s = store::sequence(&mut tx).await?;
            tx.commit().await?;
            record(&s);
            total.events += s.events;
            total.deliveries += s.deliveries;
            total.busy |= s.busy;
            total.last_seq = total.last_seq.max(s.last_seq);
            if s.events < store::SEQUENCE_BATCH {
                return Ok(total);
            }
        }
    }

    /// Delete events (and finished deliveries) older than the retention window.
    pub async fn prune_events(&self) -> Result<(u64, u64)> {
        let mut c = self.pool.acquire().await?;
        let now = qcloud_store::now(&mut c).await?;
        Ok(store::prune(&mut c, now - self.cfg.event_retention).await?)
    }

    /// The cluster-wide gauges, when `replica` is the leader.
    pub async fn cluster_gauges(&self, replica: Uuid) -> Result<Option<store::ClusterGauges>> {
        let mut c = self.pool.acquire().await?;
        Ok(store::cluster_gauges(&mut c, replica).await?)
    }

    /// Whether events wait for the sequencer.
    pub async fn events_unsequenced(&self) -> Result<bool> {
        let mut c = self.pool.acquire().await?;
        Ok(store::unsequenced(&mut c).await?)
    }

    /// Start this replica's event hub (one LISTEN connection and two tasks). Abort the handles
    /// to stop it.
    pub async fn start_event_hub(&self) -> Result<(EventHub, Vec<JoinHandle<()>>)> {
        let first = self.last_event_seq().await?;
        let (seq_tx, seq_rx) = watch::channel(first);
        let deliveries = Arc::new(Notify::new());
        let mut listener = PgListener::connect_with(self.pool()).await?;
        listener.listen_all([channel::EVENTS_SEQUENCED, channel::DELIVERIES]).await?;
        let listen = {
            let (seq_tx, deliveries) = (seq_tx.clone(), deliveries.clone());
            tokio::spawn(async move {
                loop {
                    match listener.recv().await {
                        Ok(n) => match n.channel() {
                            channel::EVENTS_SEQUENCED => {
                                if let Ok(s) = n.payload().parse::<i64>() {
                                    raise(&seq_tx, s);
                                }
                            }
                            channel::DELIVERIES => deliveries.notify_waiters(),
                            _ => {}
                        },
                        Err(e) => {
                            // sqlx reconnects on the next recv; what was sent meanwhile is caught
                            // by the tick.
                            tracing::warn!(error = %e, "event listener lost its connection");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    }
                }
            })
        };
        let svc = self.clone();
        let hub_deliveries = deliveries.clone();
        let poll = tokio::spawn(async move {
            let mut last_tick = tokio::time::Instant::now();
            let mut ticks: u64 = 0;
            loop {
                let pass = async {
                    if svc.events_unsequenced().await? {
                        svc.sequence_events().await
                    } else {
                        Ok(Sequenced::default())
                    }
                };
                match pass.await {
                    Ok(s) => {
                        if s.events > 0 {
                            raise(&seq_tx, s.last_seq);
                        }
                        if s.deliveries > 0 {
                            deliveries.notify_waiters();
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "sequencing events failed");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                if last_tick.elapsed() >= HUB_TICK {
                    last_tick = tokio::time::Instant::now();
                    ticks += 1;
                    // Notifications lost while a connection was down: read the truth.
                    match svc.last_event_seq().await {
                        Ok(s) => raise(&seq_tx, s),
                        Err(e) => tracing::warn!(error = %e, "reading the last event seq failed"),
                    }
                    deliveries.notify_waiters();
                    if ticks % 60 == 1 {
                        match svc.prune_events().await {
                            Ok((e, d)) if e + d > 0 => tracing::info!(events = e, deliveries = d, "pruned events"),
                            Ok(_) => {}
                            Err(e) => tracing::warn!(error = %e, "pruning events failed"),
                        }
                    }
                }
                tokio::time::sleep(svc.cfg.event_poll).await;
            }
        });
        let hub = EventHub { last_seq: seq_rx, deliveries: hub_deliveries };
        let _ = self.hub.set(hub.clone());
        Ok((hub, vec![listen, poll]))
    }
}

/// Count what a sequencer pass numbered. Each event is numbered once, by one replica, so the sum
/// of these counters over replicas is the cluster's.
fn record(s: &Sequenced) {
    if s.events == 0 {
        return;
    }
    metrics::counter!("qcloud_events_sequenced_total").increment(s.events as u64);
    for e in &s.stats {
        let device = e.device.clone();
        if let Some(kind) = e.kind.strip_prefix("job.") {
            let program = e.program.clone().unwrap_or_default();
            // `accepted`: a job entering the queue for the first time (not a requeue).
            let event = match (kind, e.previous_status.as_deref()) {
                ("queued", None) => "accepted",
                ("queued", Some(_)) => "requeued",
                (k, _) => k,
            };
            metrics::counter!("qcloud_jobs_total", "device" => device.clone(), "program" => program, "event" => event.to_string())
                .increment(1);
            if (event == "requeued" && e.previous_status.as_deref() == Some("running"))
                || (kind == "failed" && e.reason_code.as_deref() == Some("worker_lost"))
            {
                metrics::counter!("qcloud_lost_jobs_recovered_total", "outcome" => if kind == "failed" { "failed" } else { "requeued" })
                    .increment(1);
            }
            if kind == "running" {
                if let Some(q) = e.queue_s {
                    metrics::histogram!("qcloud_job_queue_seconds", "device" => device.clone()).record(q.max(0.0));
                }
                if let Some(g) = e.gap_s {
                    metrics::histogram!("qcloud_session_idle_gap_seconds", "device" => device.clone())
                        .record(g.max(0.0));
                }
            }
            if let Some(r) = e.run_s {
                metrics::histogram!("qcloud_job_run_seconds", "device" => device).record(r.max(0.0));
            }
        } else if let Some(state) = e.kind.strip_prefix("session.") {
            metrics::counter!("qcloud_sessions_total", "state" => state.to_string()).increment(1);
        }
    }
}

/// Move the watched last `seq` forward (never back).
fn raise(tx: &watch::Sender<i64>, s: i64) {
    tx.send_if_modified(|v| {
        if s > *v {
            *v = s;
            true
        } else {
            false
        }
    });
}
