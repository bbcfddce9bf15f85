//! qcloud-agent: the reference agent. It serves one device of a qcloud server from outside it
//! (the control computer next to a QPU, or a big box running a simulator): it connects out to
//! the server with a device token, reports the device, and then claims, runs and completes the
//! jobs the scheduler starts there, heartbeating each job's lease (docs/agent-protocol.md).
//!
//! Backends: `--engine statevector|analog` (qcloud-qsim / qcloud-analog here), `--exec CMD` (a
//! program per job: job JSON on stdin, result JSON on stdout), `--qdmi LIB --qdmi-prefix P` (a
//! QDMI device library).

mod client;
mod engine;
mod exec;
mod qdmi;

use anyhow::{bail, Context};
use clap::Parser;
use client::{CallError, Client};
use engine::{Engine, RunError};
use qcloud_wire as wire;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn, Instrument};

#[derive(Parser, Debug)]
#[command(name = "qcloud-agent", version, about = "Serve one qcloud device from outside the server")]
struct Args {
    /// The qcloud server, e.g. http://qcloud.lab:8080 or https://qcloud.lab
    #[arg(long, env = "QCLOUD_AGENT_SERVER")]
    server: String,
    /// A PEM file of CA certificates to trust for an https server, besides the bundled Mozilla
    /// roots and the system's (a lab's private CA).
    #[arg(long, env = "QCLOUD_AGENT_CA_CERT")]
    ca_cert: Option<std::path::PathBuf>,
    /// The device this agent serves (its device token names it; this is checked against it).
    #[arg(long, env = "QCLOUD_AGENT_DEVICE")]
    device: String,
    /// The device token (`qcloud devices token NAME`).
    #[arg(long, env = "QCLOUD_AGENT_TOKEN", hide_env_values = true)]
    token: String,
    /// Run jobs on a simulator here: statevector (sampler, estimator) or analog (pulser).
    #[arg(long, value_parser = ["statevector", "analog"], conflicts_with_all = ["exec", "qdmi"])]
    engine: Option<String>,
    /// Run this command per job (through `sh -c`): job JSON on stdin, result JSON on stdout,
    /// stderr is the job's log, a non-zero exit fails the job; SIGTERM on cancel.
    #[arg(long, conflicts_with = "qdmi")]
    exec: Option<String>,
    /// With --exec: a JSON file with the device report to publish (status, target,
    /// pulser_device, calibration).
    #[arg(long, requires = "exec")]
    report: Option<std::path::PathBuf>,
    /// A QDMI device library (a .so implementing the QDMI device interface).
    #[arg(long, requires = "qdmi_prefix")]
    qdmi: Option<std::path::PathBuf>,
    /// The prefix of the library's QDMI symbols, e.g. MQT_DDSIM.
    #[arg(long)]
    qdmi_prefix: Option<String>,
    /// Seconds each claim waits on the server (at most 30).
    #[arg(long, default_value_t = 30.0)]
    wait: f64,
    /// Stop after this many jobs (0: never).
    #[arg(long, default_value_t = 0)]
    max_jobs: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("QCLOUD_AGENT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let engine: Arc<dyn Engine> = match (&args.engine, &args.exec, &args.qdmi) {
        (Some(e), None, None) if e == "statevector" => Arc::new(engine::Statevector),
        (Some(e), None, None) if e == "analog" => Arc::new(engine::Analog::new()),
        (None, Some(cmd), None) => {
            let report = match &args.report {
                Some(path) => {
                    let text = std::fs::read_to_string(path).with_context(|| format!("--report {}", path.display()))?;
                    Some(
                        serde_json::from_str(&text)
                            .with_context(|| format!("--report {}: not a device report", path.display()))?,
                    )
                }
                None => None,
            };
            Arc::new(exec::Exec { command: cmd.clone(), report })
        }
        (None, None, Some(lib)) => {
            let prefix = args.qdmi_prefix.clone().unwrap_or_default();
            Arc::new(qdmi::QdmiEngine::open(lib, &prefix).with_context(|| format!("QDMI device {}", lib.display()))?)
        }
        _ => bail!("give one backend: --engine statevector|analog, --exec CMD or --qdmi LIBRARY --qdmi-prefix PREFIX"),
    };
    let client = Client::new(&args.server, &args.token, args.ca_cert.as_deref())?;
    let shutdown = CancellationToken::new();
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
            shutdown.cancel();
        });
    }
    let served = serve(&args, &client, engine.as_ref(), &shutdown).await;
    // Leaving: say so, so that the device takes no new assignments.
    // (Fields left out keep what was reported before.)
    let offline = wire::DeviceReport {
        status: wire::AgentStatus::Offline,
        message: Some("the agent stopped".into()),
        target: None,
        pulser_device: None,
        calibration: None,
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), client.report(&offline)).await;
    served
}

async fn serve(args: &Args, client: &Client, engine: &dyn Engine, shutdown: &CancellationToken) -> anyhow::Result<()> {
    let mut backoff = Duration::from_millis(200);
    // Report the device until the server takes it.
    let mut report = engine.report();
    loop {
        let reported = async {
            let d = client.device().await?;
            // A device may offer more qubits than the operator gave it (DDSIM: 65535): report
            // the ones the server's device has.
            if let Some(t) = report.target.as_mut().filter(|t| d.num_qubits > 0 && t.num_qubits > d.num_qubits as u32) {
                cap_target(t, d.num_qubits as u32);
            }
            client.report(&report).await
        };
        match reported.await {
            Ok(d) => {
                if d.name != args.device {
                    bail!("the token is for device '{}', not '{}'", d.name, args.device);
                }
                info!(device = %d.name, status = %d.status, "device reported");
                break;
            }
            Err(CallError::Refused(s, m)) => bail!("the server refused the agent ({s}): {m}"),
            Err(CallError::Tls(m)) => bail!("{m}"),
            Err(e) => {
                warn!(error = %e, "could not reach the server; retrying");
                if sleep_or_stop(backoff, shutdown).await {
                    return Ok(());
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
    let mut done = 0u64;
    let mut backoff = Duration::from_millis(200);
    while !shutdown.is_cancelled() {
        let claim = tokio::select! {
            c = client.claim(args.wait.clamp(0.0, wire::MAX_WAIT_SECONDS)) => c,
            _ = shutdown.cancelled() => break,
        };
        match claim {
            Ok(None) => backoff = Duration::from_millis(200),
            Ok(Some(claim)) => {
                backoff = Duration::from_millis(200);
                run_job(client, engine, claim, shutdown).await;
                done += 1;
                if args.max_jobs > 0 && done >= args.max_jobs {
                    break;
                }
            }
            Err(CallError::Refused(s, m)) => bail!("the server refused the agent ({s}): {m}"),
            Err(CallError::Tls(m)) => bail!("{m}"),
            Err(e) => {
                warn!(error = %e, "claim failed; retrying");
                if sleep_or_stop(backoff, shutdown).await {
                    break;
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                // After an outage the report may have been lost with the server.
                let _ = client.report(&report).await;
            }
        }
    }
    Ok(())
}

/// The first `n` qubits of a target.
fn cap_target(t: &mut wire::Target, n: u32) {
    t.num_qubits = n;
    t.coupling_map.retain(|[a, b]| *a < n && *b < n);
    t.qubits.truncate(n as usize);
}

async fn sleep_or_stop(d: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.cancelled() => true,
    }
}

/// Why the heartbeat stopped a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopped {
    Canceled,
    Overrun,
    LeaseLost,
    Shutdown,
}

async fn run_job(client: &Client, engine: &dyn Engine, claim: wire::Claim, shutdown: &CancellationToken) {
    let span = tracing::info_span!("job", job_id = %claim.job.id, attempt = claim.job.attempt);
    run_job_in_span(client, engine, claim, shutdown).instrument(span).await
}

async fn run_job_in_span(client: &Client, engine: &dyn Engine, claim: wire::Claim, shutdown: &CancellationToken) {
    let wire::Claim { lease, job } = claim;
    info!(program = %job.program, "running");
    let stop = CancellationToken::new();
    let why: Arc<Mutex<Option<Stopped>>> = Arc::default();
    let set = |why: &Arc<Mutex<Option<Stopped>>>, s: Stopped| {
        if let Ok(mut w) = why.lock() {
            w.get_or_insert(s);
        }
    };
    let beat = {
        let (client, stop, why) = (client.clone(), stop.clone(), why.clone());
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let every = Duration::from_millis(lease.heartbeat_ms.max(50));
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = shutdown.cancelled() => { set(&why, Stopped::Shutdown); stop.cancel(); return; }
                }
                match client.heartbeat(lease.job_id, lease.epoch).await {
                    Ok(a) => match a.stop {
                        Some(wire::StopReason::Canceled) => {
                            set(&why, Stopped::Canceled);
                            stop.cancel();
                        }
                        Some(wire::StopReason::MaxExecutionTime) => {
                            set(&why, Stopped::Overrun);
                            stop.cancel();
                            return;
                        }
                        None => {}
                    },
                    Err(CallError::LeaseLost(m)) => {
                        warn!(reason = %m, "lease lost; stopping the job");
                        set(&why, Stopped::LeaseLost);
                        stop.cancel();
                        return;
                    }
                    Err(e) => warn!(error = %e, "heartbeat failed"),
                }
            }
        })
    };
    // Shown on the job while it runs.
    if let Err(e) =
        client.progress(lease.job_id, lease.epoch, Some(format!("running {} on the agent", job.program)), None).await
    {
        warn!(error = %e, "progress report failed");
    }
    let outcome = match engine.programs() {
        Some(p) if !p.contains(&job.program.as_str()) => Err(RunError::failed(format!(
            "this agent runs programs {}, not '{}'",
            p.iter().map(|p| format!("'{p}'")).collect::<Vec<_>>().join(", "),
            job.program
        ))),
        _ => engine.run(&job, stop.clone()).await,
    };
    beat.abort();
    let stopped = why.lock().ok().and_then(|w| *w);
    let (id, epoch) = (lease.job_id, lease.epoch);
    let answer = match (outcome, stopped) {
        (_, Some(Stopped::LeaseLost)) => return,
        (_, Some(Stopped::Overrun)) => {
            info!("stopped: past its maximum execution time (the server failed it)");
            return;
        }
        // Shut down mid-job: leave it; its lease runs out and the server runs it again.
        (_, Some(Stopped::Shutdown)) => return,
        (Ok(out), None) => retry(|| client.complete(id, epoch, out.result.clone(), out.log.clone())).await,
        (Ok(_), Some(Stopped::Canceled)) | (Err(RunError::Stopped { .. }), Some(Stopped::Canceled)) => {
            retry(|| client.fail(id, epoch, "canceled".into(), None)).await
        }
        (Err(RunError::Failed { reason, log }), _) => {
            retry(|| client.fail(id, epoch, reason.clone(), log.clone())).await
        }
        (Err(RunError::Stopped { log }), None) => {
            retry(|| client.fail(id, epoch, "the run stopped".into(), log.clone())).await
        }
    };
    match answer {
        Ok(f) => info!(status = %f.status, "finished"),
        Err(CallError::LeaseLost(m)) => warn!(reason = %m, "the server refused the answer: the lease was lost"),
        Err(e) => error!(error = %e, "could not report the job's end; its lease runs out and the server recovers it"),
    }
}

/// A call, retried on transient errors (a few times, backing off).
async fn retry<T, F, Fut>(mut call: F) -> Result<T, CallError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, CallError>>,
{
    let mut wait = Duration::from_millis(100);
    for _ in 0..6 {
        match call().await {
            Err(CallError::Transient(e)) => {
                warn!(error = %e, "retrying");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            other => return other,
        }
    }
    call().await
}
