//! `GET /metrics`: Prometheus text, through `metrics` + `metrics-exporter-prometheus`. What this
//! replica counts itself (HTTP requests, events it sequenced, webhook deliveries, leader changes,
//! scheduler rounds, pool use) comes from the process's recorder; the cluster-wide gauges (queue
//! depth, running jobs, sessions per state) are read from the database at scrape time by the
//! leader only, so that a sum over replicas is right.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use qcloud_service::Service;
use std::fmt::Write;
use std::sync::OnceLock;
use std::time::Instant;
use uuid::Uuid;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Buckets (seconds) of the latency histograms: 1 ms to 1 h.
const BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];

/// The process's Prometheus recorder, installed on first use (one per process: servers started
/// in one test process share it).
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .expect("non-empty buckets")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was installed already; /metrics shows only what this one records");
        }
        describe();
        handle
    })
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!("qcloud_http_requests_total", "HTTP requests by method, route and status");
    describe_histogram!("qcloud_http_request_duration_seconds", Unit::Seconds, "HTTP request duration by route");
    describe_counter!(
        "qcloud_jobs_total",
        "Job state changes (accepted = queued, completed, failed, canceled) by device and program"
    );
    describe_histogram!("qcloud_job_queue_seconds", Unit::Seconds, "Submit to start latency by device");
    describe_histogram!("qcloud_job_run_seconds", Unit::Seconds, "Run time (start to finish) by device");
    describe_histogram!(
        "qcloud_session_idle_gap_seconds",
        Unit::Seconds,
        "Device idle gap inside a session (last job done to next job started)"
    );
    describe_counter!("qcloud_sessions_total", "Session state changes by state");
    describe_counter!("qcloud_lost_jobs_recovered_total", "Jobs of lost workers requeued or failed");
    describe_counter!("qcloud_events_sequenced_total", "Events numbered by this replica's sequencer");
    describe_counter!("qcloud_webhook_deliveries_total", "Webhook delivery attempts by outcome");
    describe_histogram!(
        "qcloud_scheduler_round_seconds",
        Unit::Seconds,
        "Leader rounds (dispatch of woken devices, tick)"
    );
    describe_gauge!("qcloud_leader", "1 while this replica holds the leader lease");
    describe_gauge!("qcloud_leader_term", "The leader term this replica holds (0: none)");
    describe_counter!("qcloud_leadership_changes_total", "Times this replica became or stopped being the leader");
    describe_gauge!(
        "qcloud_db_pool_connections",
        "Connections of this replica's pool by state (idle, in_use) and its maximum (max)"
    );
}

/// Count every request by method, matched route (bounded: the route pattern, never an id) and
/// status, and time it.
pub async fn track_http(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let resp = next.run(req).await;
    let route = route.unwrap_or_else(|| "unmatched".into());
    let status = resp.status().as_u16().to_string();
    metrics::counter!("qcloud_http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("qcloud_http_request_duration_seconds", "route" => route).record(start.elapsed().as_secs_f64());
    resp
}

#[derive(Clone)]
struct MetricsState {
    svc: Service,
    replica: Uuid,
}

/// `GET /metrics` for the replica `replica`.
pub fn router<S: Clone + Send + Sync + 'static>(svc: Service, replica: Uuid) -> Router<S> {
    handle();
    Router::new().route("/metrics", get(scrape)).with_state(MetricsState { svc, replica })
}

async fn scrape(State(m): State<MetricsState>) -> Response {
    let pool = m.svc.pool();
    let size = pool.size() as f64;
    let idle = pool.num_idle() as f64;
    metrics::gauge!("qcloud_db_pool_connections", "state" => "idle").set(idle);
    metrics::gauge!("qcloud_db_pool_connections", "state" => "in_use").set((size - idle).max(0.0));
    metrics::gauge!("qcloud_db_pool_connections", "state" => "max").set(pool.options().get_max_connections() as f64);
    let mut text = handle().render();
    match m.svc.cluster_gauges(m.replica).await {
        Ok(Some(g)) => {
            let _ = writeln!(text, "# HELP qcloud_queue_depth Queued jobs per device (leader only)");
            let _ = writeln!(text, "# TYPE qcloud_queue_depth gauge");
            for (device, n) in &g.queued {
                let _ = writeln!(text, "qcloud_queue_depth{{device=\"{}\"}} {n}", escape(device));
            }
            let _ = writeln!(text, "# HELP qcloud_running_jobs Running jobs per device (leader only)");
            let _ = writeln!(text, "# TYPE qcloud_running_jobs gauge");
            for (device, n) in &g.running {
                let _ = writeln!(text, "qcloud_running_jobs{{device=\"{}\"}} {n}", escape(device));
            }
            let _ = writeln!(text, "# HELP qcloud_sessions Sessions per state (leader only)");
            let _ = writeln!(text, "# TYPE qcloud_sessions gauge");
            for (state, n) in &g.sessions {
                let _ = writeln!(text, "qcloud_sessions{{state=\"{}\"}} {n}", escape(state));
            }
            let _ = writeln!(
                text,
                "# HELP qcloud_webhook_deliveries_pending Webhook deliveries not yet done (leader only)"
            );
            let _ = writeln!(text, "# TYPE qcloud_webhook_deliveries_pending gauge");
            let _ = writeln!(text, "qcloud_webhook_deliveries_pending {}", g.deliveries_pending);
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, "reading the cluster gauges failed");
            let _ = writeln!(text, "# cluster gauges unavailable: the database did not answer");
        }
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
