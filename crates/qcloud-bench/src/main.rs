//! qcloud-bench: drives a running qcloud server over HTTP with many concurrent clients and noop
//! devices of zero duration, and prints submit throughput, end-to-end throughput per device
//! count, submit-to-start latency on an idle device, the job-to-job gap inside a dedicated
//! session, and batch versus dedicated session wall time (rule 12, docs/architecture.md); the
//! bulk, drain, deep-queue and hold scenarios of issue 11; and the cost of history (submit, get
//! and list latencies before and after loading millions of terminal jobs by SQL, and one pass of
//! the retention pruner: `history.rs`).
//!
//! Latencies come from the database timestamps of the jobs (`created_at`, `started_at`,
//! `finished_at`, one clock for all), read back through the list API after each run; the noop
//! driver's own timings (in its result) show when the device was really busy. Every scenario
//! creates its own devices with unique names (an admin token is needed) and is bounded by
//! `--time-limit`, so the program always ends.
#![forbid(unsafe_code)]

mod agent;
mod api;
mod history;
mod scenarios;
mod stats;

use anyhow::{bail, Result};
use clap::{Parser, ValueEnum};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    All,
    Submit,
    E2e,
    Latency,
    Gap,
    Batch,
    /// The agent path beside the in-process noop driver (issue 12).
    Agent,
    /// `POST /v1/jobs:batch`: requests of `--bulk-size` jobs over the largest device count.
    Bulk,
    /// `--drain-jobs` queued on `--drain-devices` paused devices, then all resumed.
    Drain,
    /// One device with `--deep-jobs` queued while paused, then resumed: rate per 10,000.
    Deep,
    /// `--hold-jobs` queued on 64 paused devices and left there (run it last: it leaves them
    /// queued); bench/server/run.sh reads the server's RSS after it.
    Hold,
    /// Submit, get and list latencies on the empty database, then with `--history-jobs`
    /// terminal jobs loaded by SQL (needs `--database-url`), and one pass of the retention
    /// pruner (run it last: it leaves the history in place).
    History,
}

#[derive(Debug, Clone, Parser)]
#[command(name = "qcloud-bench", about = "Throughput and latency figures of a running qcloud server")]
pub struct Args {
    /// Server base URL.
    #[arg(long, env = "QCLOUD_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Admin bearer token (the benchmark creates its own devices).
    #[arg(long, env = "QCLOUD_ADMIN_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Which scenario to run.
    #[arg(long, value_enum, default_value = "all")]
    pub scenario: Scenario,
    /// Jobs per submit / end-to-end run.
    #[arg(long, default_value_t = 10_000)]
    pub jobs: usize,
    /// Concurrent HTTP clients (also the size of the connection pool).
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Device counts of the end-to-end runs; the submit scenario spreads over the largest.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    pub devices: Vec<usize>,
    /// Sequential jobs of the latency scenario.
    #[arg(long, default_value_t = 200)]
    pub latency_jobs: usize,
    /// Jobs in the dedicated session of the gap scenario.
    #[arg(long, default_value_t = 500)]
    pub gap_jobs: usize,
    /// Noop jobs per session in the batch-versus-session scenario.
    #[arg(long, default_value_t = 100)]
    pub batch_jobs: usize,
    /// `duration_ms` of those noop jobs.
    #[arg(long, default_value_t = 5)]
    pub batch_duration_ms: u64,
    /// Statevector sampler jobs per session in the batch-versus-session scenario (0: skip).
    #[arg(long, default_value_t = 40)]
    pub sv_jobs: usize,
    /// Width of the QFT circuit of those jobs.
    #[arg(long, default_value_t = 16)]
    pub sv_qubits: u32,
    /// Zero-work jobs of each throughput run of the agent scenario.
    #[arg(long, default_value_t = 1000)]
    pub agent_jobs: usize,
    /// Jobs per `POST /v1/jobs:batch` request (bulk, drain and deep scenarios).
    #[arg(long, default_value_t = 10_000)]
    pub bulk_size: usize,
    /// Requests of the bulk scenario.
    #[arg(long, default_value_t = 3)]
    pub bulk_requests: usize,
    /// Jobs of the drain scenario.
    #[arg(long, default_value_t = 100_000)]
    pub drain_jobs: usize,
    /// Paused devices of the drain scenario.
    #[arg(long, default_value_t = 64)]
    pub drain_devices: usize,
    /// Jobs of the deep-queue scenario (one device).
    #[arg(long, default_value_t = 100_000)]
    pub deep_jobs: usize,
    /// Jobs of the hold scenario (queued and left queued).
    #[arg(long, default_value_t = 1_000_000)]
    pub hold_jobs: usize,
    /// The server's database, for the history scenario (which writes its jobs straight into it
    /// as a superuser).
    #[arg(long, env = "QCLOUD_BENCH_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Terminal jobs the history scenario loads (finished over the last 20 days).
    #[arg(long, default_value_t = 5_000_000)]
    pub history_jobs: usize,
    /// Terminal jobs past the retention window it loads afterwards for one pass of the pruner.
    #[arg(long, default_value_t = 20_000)]
    pub history_expired: usize,
    /// The server's `job_retention` in days (the expired jobs are placed 1 to 10 days past it).
    #[arg(long, default_value_t = 30.0)]
    pub history_retention_days: f64,
    /// Projects of the loaded history (the first is the admin token's own).
    #[arg(long, default_value_t = 8)]
    pub history_projects: usize,
    /// Devices of the loaded history (fresh, paused).
    #[arg(long, default_value_t = 16)]
    pub history_devices: usize,
    /// Jobs per transaction of the load.
    #[arg(long, default_value_t = 250_000)]
    pub history_chunk: usize,
    /// Circuit text bytes of each loaded job's payload.
    #[arg(long, default_value_t = 512)]
    pub history_payload_bytes: usize,
    /// Requests of each figure per phase (submits, gets, lists; a quarter as many tag lists).
    #[arg(long, default_value_t = 1000)]
    pub history_samples: usize,
    /// Requests in flight in the history scenario's measurements.
    #[arg(long, default_value_t = 4)]
    pub history_clients: usize,
    /// Time limit of each scenario, seconds; a scenario past it reports what it has.
    #[arg(long, default_value_t = 120.0)]
    pub time_limit: f64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.clients == 0 || args.jobs == 0 || args.devices.is_empty() || args.devices.contains(&0) {
        bail!("--clients, --jobs and every --devices count must be positive");
    }
    if args.bulk_size == 0 || args.drain_devices == 0 {
        bail!("--bulk-size and --drain-devices must be positive");
    }
    if !(args.time_limit.is_finite() && args.time_limit > 0.0) {
        bail!("--time-limit must be a positive number of seconds");
    }
    let ctx = scenarios::Ctx::new(&args)?;
    ctx.api.healthz().await.map_err(|e| anyhow::anyhow!("server at {} does not answer: {e}", args.url))?;
    println!(
        "qcloud-bench run {} against {}: clients {}, jobs {}, devices {:?}, time limit {} s per scenario",
        ctx.run, args.url, args.clients, args.jobs, args.devices, args.time_limit
    );
    let want = |s: Scenario| args.scenario == Scenario::All || args.scenario == s;
    let limit = Duration::from_secs_f64(args.time_limit);
    let mut rows = Vec::new();
    if want(Scenario::Submit) {
        rows.extend(scenarios::bounded("submit", limit, scenarios::submit(&ctx, limit)).await);
    }
    if want(Scenario::E2e) {
        for &d in &args.devices {
            rows.extend(scenarios::bounded("e2e", limit, scenarios::e2e(&ctx, d, limit)).await);
        }
    }
    if want(Scenario::Latency) {
        rows.extend(scenarios::bounded("latency", limit, scenarios::latency(&ctx, limit)).await);
    }
    if want(Scenario::Gap) {
        rows.extend(scenarios::bounded("gap", limit, scenarios::gap(&ctx, limit)).await);
    }
    if want(Scenario::Batch) {
        rows.extend(scenarios::bounded("batch", limit, scenarios::batch_vs_session(&ctx, limit)).await);
    }
    if want(Scenario::Agent) {
        rows.extend(scenarios::bounded("agent", limit, agent::agent_vs_noop(&ctx, limit)).await);
    }
    if want(Scenario::Bulk) {
        rows.extend(scenarios::bounded("bulk", limit, scenarios::bulk(&ctx, limit)).await);
    }
    if want(Scenario::Drain) {
        rows.extend(scenarios::bounded("drain", limit, scenarios::drain(&ctx, limit)).await);
    }
    if want(Scenario::Deep) {
        rows.extend(scenarios::bounded("deep", limit, scenarios::deep(&ctx, limit)).await);
    }
    if want(Scenario::Hold) {
        rows.extend(scenarios::bounded("hold", limit, scenarios::hold(&ctx)).await);
    }
    if args.scenario == Scenario::History || (args.scenario == Scenario::All && args.database_url.is_some()) {
        // Each of its four phases has the time limit; the load gets time at 2,000 jobs/s and VACUUM a
        // quarter of that on top.
        let rows_to_load = (args.history_jobs + args.history_expired) as f64;
        let hard = limit * 4 + Duration::from_secs_f64(rows_to_load / 2000.0 * 1.25);
        rows.extend(scenarios::bounded("history", hard, history::history(&ctx, limit)).await);
    }
    println!();
    print!("{}", stats::table(&rows));
    Ok(())
}
