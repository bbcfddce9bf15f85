//! The scenarios. Each creates fresh devices, submits, waits (bounded) until its jobs are
//! terminal, reads them back and turns their timestamps into rows of the table.

use crate::api::{Api, Job};
use crate::stats::{Micros, Row};
use crate::Args;
use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Extra time a scenario gets past its limit to read its jobs back before it is cut off.
const READ_BACK_GRACE: Duration = Duration::from_secs(30);

pub struct Ctx {
    pub api: Api,
    /// Short id of this benchmark run: part of every device name and tag.
    pub run: String,
    pub args: Args,
}

impl Ctx {
    pub fn new(args: &Args) -> Result<Ctx> {
        let api = Api::new(&args.url, &args.token, args.clients.max(16))?;
        let run = Uuid::new_v4().simple().to_string()[..8].to_string();
        Ok(Ctx { api, run, args: args.clone() })
    }

    pub(crate) fn tag(&self, label: &str) -> String {
        format!("bench-{}-{label}", self.run)
    }

    /// `n` fresh devices, online (for scenarios in other modules).
    pub async fn devices_pub(&self, label: &str, n: usize, driver: &str, qubits: u32) -> Result<Vec<String>> {
        self.devices(label, n, driver, qubits, false).await
    }

    /// `n` fresh devices named `bench-<run>-<label>-<i>`.
    pub(crate) async fn devices(
        &self,
        label: &str,
        n: usize,
        driver: &str,
        qubits: u32,
        paused: bool,
    ) -> Result<Vec<String>> {
        let names: Vec<String> = (0..n).map(|i| format!("bench-{}-{label}-{i}", self.run)).collect();
        let made: Vec<Result<()>> = futures::stream::iter(names.iter().cloned())
            .map(|name| async move {
                if paused {
                    self.api.create_paused_device(&name, driver, qubits).await
                } else {
                    self.api.create_device(&name, driver, qubits).await
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        made.into_iter().collect::<Result<Vec<()>>>().context("creating benchmark devices (admin token?)")?;
        Ok(names)
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn ms_between(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (b - a).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0
}

pub(crate) fn noop_job(device: &str, tag: &str, duration_ms: u64) -> Value {
    json!({"device": device, "program": "noop", "payload": {"duration_ms": duration_ms}, "tags": [tag]})
}

/// Run a scenario under a hard limit (its own limit plus time to read back), turning failures
/// into a row that says so.
pub async fn bounded(name: &str, limit: Duration, fut: impl Future<Output = Result<Vec<Row>>>) -> Vec<Row> {
    eprintln!("running scenario '{name}' ...");
    let rows = match tokio::time::timeout(limit + READ_BACK_GRACE, fut).await {
        Ok(Ok(rows)) => rows,
        Ok(Err(e)) => {
            eprintln!("scenario '{name}' failed: {e:#}");
            vec![Row { scenario: name.into(), note: format!("FAILED: {e}"), ..Row::default() }]
        }
        Err(_) => vec![Row {
            scenario: name.into(),
            note: format!("ABORTED: hard time limit of {:.0} s", (limit + READ_BACK_GRACE).as_secs_f64()),
            ..Row::default()
        }],
    };
    for r in &rows {
        eprintln!(
            "  {} [{}] {}: jobs/s {} p50 {} p99 {} ms {}",
            r.scenario,
            r.devices,
            r.metric,
            r.jobs_per_s.map(|v| format!("{v:.0}")).unwrap_or("-".into()),
            r.p50_ms.map(|v| format!("{v:.2}")).unwrap_or("-".into()),
            r.p99_ms.map(|v| format!("{v:.2}")).unwrap_or("-".into()),
            r.note
        );
    }
    rows
}

pub(crate) struct Submitted {
    pub(crate) jobs: Vec<Job>,
    pub(crate) errors: usize,
    pub(crate) first_error: Option<String>,
    /// Client-observed latency of each accepted POST.
    pub(crate) post_latency: Micros,
    /// From the first request sent to the last acceptance received.
    pub(crate) elapsed: Duration,
}

/// Post every body with `clients` concurrent clients (each one request at a time, on the shared
/// connection pool), stopping at `deadline`.
pub(crate) async fn submit_all(api: &Api, bodies: Vec<Value>, clients: usize, deadline: Instant) -> Submitted {
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients.min(bodies.len()).max(1) {
        let (api, bodies, next) = (api.clone(), bodies.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut jobs = Vec::new();
            let mut lat = Micros::default();
            let mut errors = 0;
            let mut first_error = None;
            let mut last = t0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= bodies.len() || Instant::now() >= deadline {
                    break;
                }
                let s = Instant::now();
                match api.submit(&bodies[i]).await {
                    Ok(j) => {
                        let e = Instant::now();
                        lat.record_ms(ms(e - s));
                        last = last.max(e);
                        jobs.push(j);
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
            }
            (jobs, lat, errors, first_error, last)
        }));
    }
    let mut out = Submitted {
        jobs: Vec::new(),
        errors: 0,
        first_error: None,
        post_latency: Micros::default(),
        elapsed: Duration::ZERO,
    };
    let mut last = t0;
    for t in tasks {
        match t.await {
            Ok((jobs, lat, errors, first_error, l)) => {
                out.jobs.extend(jobs);
                out.post_latency.merge(&lat);
                out.errors += errors;
                if out.first_error.is_none() {
                    out.first_error = first_error;
                }
                last = last.max(l);
            }
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert_with(|| format!("client task: {e}"));
            }
        }
    }
    out.elapsed = last - t0;
    out
}

/// Wait until the devices' queues are empty and every job tagged `tag` is terminal, or until
/// `deadline`; returns the jobs as last read and whether all `expected` were terminal.
pub(crate) async fn wait_terminal(
    api: &Api,
    devices: &[String],
    tag: &str,
    after: DateTime<Utc>,
    expected: usize,
    deadline: Instant,
) -> Result<(Vec<Job>, bool)> {
    let mine: HashSet<&str> = devices.iter().map(String::as_str).collect();
    loop {
        let queued: i64 =
            api.devices().await?.iter().filter(|d| mine.contains(d.name.as_str())).map(|d| d.queue_length).sum();
        let late = Instant::now() >= deadline;
        if queued == 0 || late {
            let jobs = api.jobs_tagged(tag, after).await?;
            let done = jobs.iter().filter(|j| j.is_terminal()).count();
            if done >= expected || late {
                return Ok((jobs, done >= expected));
            }
        }
        // The figures come from the jobs' own timestamps, so polling slowly loses nothing; polling
        // fast would load the server (a queue length is a count over the device's queue).
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub(crate) fn submit_note(s: &Submitted) -> String {
    match (&s.first_error, s.errors) {
        (Some(e), n) if n > 0 => {
            let e: String = e.chars().take(160).collect();
            format!("; {n} submit errors, first: {e}")
        }
        _ => String::new(),
    }
}

fn status_note(jobs: &[Job]) -> String {
    let mut by: HashMap<&str, usize> = HashMap::new();
    for j in jobs {
        *by.entry(j.status.as_str()).or_default() += 1;
    }
    let mut v: Vec<String> =
        by.into_iter().filter(|(s, _)| *s != "completed").map(|(s, n)| format!("{n} {s}")).collect();
    v.sort();
    if v.is_empty() {
        return String::new();
    }
    let why = jobs.iter().find_map(|j| j.reason.as_deref()).unwrap_or("");
    format!("; NOT COMPLETED: {} (e.g. {why})", v.join(", "))
}

/// Submit throughput: C clients posting zero-duration noop jobs as fast as they are accepted,
/// spread over the largest device count (the scheduler runs them meanwhile, as in production).
pub async fn submit(ctx: &Ctx, limit: Duration) -> Result<Vec<Row>> {
    let a = &ctx.args;
    let n_dev = a.devices.iter().copied().max().unwrap_or(1);
    let devices = ctx.devices("sub", n_dev, "noop", 1, false).await?;
    let tag = ctx.tag("sub");
    let bodies: Vec<Value> = (0..a.jobs).map(|i| noop_job(&devices[i % n_dev], &tag, 0)).collect();
    let after = Utc::now() - chrono::Duration::seconds(2);
    let t0 = Instant::now();
    let deadline = t0 + limit;
    let s = submit_all(&ctx.api, bodies, a.clients, deadline).await;
    let accepted = s.jobs.len();
    // Let the jobs drain so that the next scenario starts on an idle server.
    let (jobs, complete) = wait_terminal(&ctx.api, &devices, &tag, after, accepted, deadline).await?;
    let drained = t0.elapsed();
    let mut note = format!(
        "accepted {accepted}/{}; all ran to the end {:.2} s after the first submit{}",
        a.jobs,
        drained.as_secs_f64(),
        if complete { "" } else { " (NOT ALL DONE at the time limit)" }
    );
    note += &submit_note(&s);
    note += &status_note(&jobs);
    let row = Row {
        scenario: "submit".into(),
        devices: n_dev.to_string(),
        jobs: accepted as u64,
        clients: a.clients,
        wall_s: Some(s.elapsed.as_secs_f64()),
        jobs_per_s: Some(accepted as f64 / s.elapsed.as_secs_f64().max(1e-9)),
        metric: "POST /v1/jobs accepted (client latency)".into(),
        note,
        ..Row::default()
    }
    .latency(&s.post_latency);
    Ok(vec![row])
}

/// End-to-end throughput: submit N zero-duration jobs over `n_dev` devices concurrently, wait
/// until all are terminal; rate = completed / (last finished_at - first created_at).
pub async fn e2e(ctx: &Ctx, n_dev: usize, limit: Duration) -> Result<Vec<Row>> {
    let a = &ctx.args;
    let label = format!("e2e{n_dev}");
    let devices = ctx.devices(&label, n_dev, "noop", 1, false).await?;
    let tag = ctx.tag(&label);
    let bodies: Vec<Value> = (0..a.jobs).map(|i| noop_job(&devices[i % n_dev], &tag, 0)).collect();
    let after = Utc::now() - chrono::Duration::seconds(2);
    let t0 = Instant::now();
    let deadline = t0 + limit;
    let s = submit_all(&ctx.api, bodies, a.clients, deadline).await;
    let (jobs, complete) = wait_terminal(&ctx.api, &devices, &tag, after, s.jobs.len(), deadline).await?;
    let client_wall = t0.elapsed();
    let completed: Vec<&Job> = jobs.iter().filter(|j| j.status == "completed").collect();
    let first = jobs.iter().map(|j| j.created_at).min().ok_or_else(|| anyhow!("no job was accepted"))?;
    let last = completed.iter().filter_map(|j| j.finished_at).max().unwrap_or(first);
    let span_s = ms_between(first, last) / 1000.0;
    let mut lat = Micros::default();
    for j in &completed {
        if let Some(f) = j.finished_at {
            lat.record_ms(ms_between(j.created_at, f));
        }
    }
    let mut note = format!(
        "DB span first created_at -> last finished_at; client wall {:.2} s; submit phase {:.0} jobs/s{}",
        client_wall.as_secs_f64(),
        s.jobs.len() as f64 / s.elapsed.as_secs_f64().max(1e-9),
        if complete { "" } else { "; NOT ALL DONE at the time limit" }
    );
    note += &submit_note(&s);
    note += &status_note(&jobs);
    Ok(vec![Row {
        scenario: "e2e".into(),
        devices: n_dev.to_string(),
        jobs: completed.len() as u64,
        clients: a.clients,
        wall_s: Some(span_s),
        jobs_per_s: Some(completed.len() as f64 / span_s.max(1e-9)),
        metric: "completed (per job created->finished)".into(),
        note,
        ..Row::default()
    }
    .latency(&lat)])
}

/// Timings the noop driver reports in its result (the server process clock).
async fn driver_times(api: &Api, ids: &[Uuid]) -> HashMap<Uuid, (DateTime<Utc>, DateTime<Utc>)> {
    futures::stream::iter(ids.iter().copied())
        .map(|id| async move {
            let r = api.result(id).await.ok()?;
            let t = |k: &str| r.get(k)?.as_str()?.parse::<DateTime<Utc>>().ok();
            Some((id, (t("started_at")?, t("finished_at")?)))
        })
        .buffer_unordered(16)
        .filter_map(|x| async move { x })
        .collect()
        .await
}

/// Submit-to-start latency on an idle device: one job at a time, each submitted after the
/// previous one is seen completed.
pub async fn latency(ctx: &Ctx, limit: Duration) -> Result<Vec<Row>> {
    let a = &ctx.args;
    let devices = ctx.devices("lat", 1, "noop", 1, false).await?;
    let dev = &devices[0];
    let tag = ctx.tag("lat");
    let warm_tag = ctx.tag("latwarm");
    let after = Utc::now() - chrono::Duration::seconds(2);
    let t0 = Instant::now();
    let deadline = t0 + limit;
    let mut round_trip = Micros::default();
    let mut ids = Vec::new();
    const WARM_UP: usize = 5;
    for i in 0..WARM_UP + a.latency_jobs {
        if Instant::now() >= deadline {
            break;
        }
        let body = noop_job(dev, if i < WARM_UP { &warm_tag } else { &tag }, 0);
        let s = Instant::now();
        let job = ctx.api.submit(&body).await?;
        loop {
            let j = ctx.api.job(job.id).await?;
            if j.is_terminal() {
                break;
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        if i >= WARM_UP {
            round_trip.record_ms(ms(s.elapsed()));
            ids.push(job.id);
        }
    }
    let jobs = ctx.api.jobs_tagged(&tag, after).await?;
    let drv = driver_times(&ctx.api, &ids).await;
    let (mut start, mut drv_start, mut total) = (Micros::default(), Micros::default(), Micros::default());
    for j in &jobs {
        if let Some(s) = j.started_at {
            start.record_ms(ms_between(j.created_at, s));
        }
        if let Some(f) = j.finished_at {
            total.record_ms(ms_between(j.created_at, f));
        }
        if let Some((ds, _)) = drv.get(&j.id) {
            drv_start.record_ms(ms_between(j.created_at, *ds));
        }
    }
    let n = jobs.len() as u64;
    let row = |metric: &str, h: &Micros, note: &str| {
        Row {
            scenario: "latency".into(),
            devices: "1 idle".into(),
            jobs: n,
            clients: 1,
            metric: metric.into(),
            note: note.into(),
            ..Row::default()
        }
        .latency(h)
    };
    let mut rows = vec![
        row("submit->start (DB started_at - created_at)", &start, "target p99 < 10 ms"),
        row("submit->driver start (noop result clock)", &drv_start, "includes claim + prepare"),
        row("created->finished (DB)", &total, ""),
        row("client POST->completed seen (0.5 ms polls)", &round_trip, ""),
    ];
    rows[0].note += &status_note(&jobs);
    rows[0].wall_s = Some(t0.elapsed().as_secs_f64());
    Ok(rows)
}

/// Submit `bodies` into a session of a paused device, then set it online, so that the session
/// runs with its whole queue present; returns its jobs once terminal.
async fn run_queued_session(
    ctx: &Ctx,
    device: &str,
    session: Uuid,
    tag: &str,
    bodies: Vec<Value>,
    deadline: Instant,
) -> Result<(Vec<Job>, Submitted, bool)> {
    let after = Utc::now() - chrono::Duration::seconds(2);
    let s = submit_all(&ctx.api, bodies, ctx.args.clients.min(16), deadline).await;
    ctx.api.set_device_status(device, "online").await?;
    let res = wait_terminal(&ctx.api, &[device.to_string()], tag, after, s.jobs.len(), deadline).await;
    // Close the session whatever happened so that it gives the device back.
    let _ = ctx.api.close_session(session).await;
    let (jobs, complete) = res?;
    Ok((jobs, s, complete))
}

/// Job-to-job gap inside one dedicated session, with its whole queue submitted first.
pub async fn gap(ctx: &Ctx, limit: Duration) -> Result<Vec<Row>> {
    let a = &ctx.args;
    let deadline = Instant::now() + limit;
    let devices = ctx.devices("gap", 1, "noop", 1, true).await?;
    let dev = &devices[0];
    let tag = ctx.tag("gap");
    let sid = ctx.api.create_session(dev, "dedicated").await?;
    let bodies: Vec<Value> = (0..a.gap_jobs)
        .map(|_| json!({"session_id": sid, "program": "noop", "payload": {"duration_ms": 0}, "tags": [tag]}))
        .collect();
    let (mut jobs, s, complete) = run_queued_session(ctx, dev, sid, &tag, bodies, deadline).await?;
    jobs.retain(|j| j.started_at.is_some() && j.finished_at.is_some());
    jobs.sort_by_key(|j| (j.started_at, j.created_at));
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
    let drv = driver_times(&ctx.api, &ids).await;
    let (mut db_gap, mut cycle, mut drv_gap) = (Micros::default(), Micros::default(), Micros::default());
    for w in jobs.windows(2) {
        let (p, q) = (&w[0], &w[1]);
        if let (Some(pf), Some(ps), Some(qs)) = (p.finished_at, p.started_at, q.started_at) {
            db_gap.record_ms(ms_between(pf, qs).max(0.0));
            cycle.record_ms(ms_between(ps, qs));
        }
        if let (Some((_, pe)), Some((qs, _))) = (drv.get(&p.id), drv.get(&q.id)) {
            drv_gap.record_ms(ms_between(*pe, *qs).max(0.0));
        }
    }
    let span_s = match (jobs.first().and_then(|j| j.started_at), jobs.last().and_then(|j| j.finished_at)) {
        (Some(f), Some(l)) => ms_between(f, l) / 1000.0,
        _ => 0.0,
    };
    let n = jobs.len() as u64;
    let rate = (span_s > 0.0).then(|| n as f64 / span_s);
    let mk = |metric: &str, h: &Micros, note: String| {
        Row {
            scenario: "gap".into(),
            devices: "1 dedicated".into(),
            jobs: n,
            clients: 1,
            wall_s: Some(span_s),
            jobs_per_s: rate,
            metric: metric.into(),
            note,
            ..Row::default()
        }
        .latency(h)
    };
    let mut first_note = format!(
        "0 by construction when completion and next start share a transaction; submits into the session: {:.0} jobs/s",
        s.jobs.len() as f64 / s.elapsed.as_secs_f64().max(1e-9)
    );
    if !complete {
        first_note += "; NOT ALL DONE at the time limit";
    }
    first_note += &submit_note(&s);
    first_note += &status_note(&jobs);
    Ok(vec![
        mk("DB gap started_at[i+1] - finished_at[i]", &db_gap, first_note),
        mk("DB cycle started_at[i+1] - started_at[i]", &cycle, "per-job cost of the chain".into()),
        mk(
            "device idle: driver end[i] -> driver start[i+1]",
            &drv_gap,
            format!("target p99 < 2 ms; noop result clock, {} pairs", drv_gap.len()),
        ),
    ])
}

/// A `width`-qubit quantum Fourier transform with measurements, as OpenQASM 2.
fn qft_qasm(width: u32) -> String {
    let mut s = format!("OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[{width}];\ncreg c[{width}];\n");
    // A non-trivial input state.
    for q in (0..width).step_by(2) {
        s += &format!("x q[{q}];\n");
    }
    for j in 0..width {
        s += &format!("h q[{j}];\n");
        for k in j + 1..width {
            s += &format!("cu1(pi/{}) q[{k}],q[{j}];\n", 1u64 << (k - j).min(62));
        }
    }
    for q in 0..width / 2 {
        s += &format!("swap q[{q}],q[{}];\n", width - 1 - q);
    }
    s += "measure q -> c;\n";
    s
}

/// Rule 12: the same N jobs in a `batch` session and in a `dedicated` session, each with its
/// whole queue present before the device goes online; wall = first started_at -> last finished_at.
pub async fn batch_vs_session(ctx: &Ctx, limit: Duration) -> Result<Vec<Row>> {
    let a = &ctx.args;
    let deadline = Instant::now() + limit;
    let mut rows = Vec::new();
    let noop_payload = json!({"duration_ms": a.batch_duration_ms});
    let qasm = qft_qasm(a.sv_qubits);
    let sv_payload = json!({"pubs": [[qasm, null, 100]]});
    let kinds = [
        ("noop", "noop", 1u32, noop_payload, a.batch_jobs, format!("noop {} ms", a.batch_duration_ms)),
        ("statevector", "sampler", a.sv_qubits.max(2), sv_payload, a.sv_jobs, format!("sv QFT{}", a.sv_qubits)),
    ];
    for (driver, program, qubits, payload, n, what) in kinds {
        if n == 0 {
            continue;
        }
        let mut walls = HashMap::new();
        for mode in ["dedicated", "batch"] {
            let label = format!("{}{mode}", &driver[..2]);
            let devices = match ctx.devices(&label, 1, driver, qubits, true).await {
                Ok(d) => d,
                Err(e) => {
                    rows.push(Row {
                        scenario: "batch".into(),
                        devices: what.clone(),
                        metric: format!("{mode} session"),
                        note: format!("SKIPPED: cannot create a {driver} device: {e:#}"),
                        ..Row::default()
                    });
                    break;
                }
            };
            let dev = &devices[0];
            let tag = ctx.tag(&label);
            let sid = ctx.api.create_session(dev, mode).await?;
            let bodies: Vec<Value> = (0..n)
                .map(|_| json!({"session_id": sid, "program": program, "payload": payload, "tags": [tag]}))
                .collect();
            let (jobs, s, complete) = run_queued_session(ctx, dev, sid, &tag, bodies, deadline).await?;
            let first = jobs.iter().filter_map(|j| j.started_at).min();
            let last = jobs.iter().filter_map(|j| j.finished_at).max();
            let span_s = match (first, last) {
                (Some(f), Some(l)) => ms_between(f, l) / 1000.0,
                _ => 0.0,
            };
            let mut run = Micros::default();
            for j in &jobs {
                if let (Some(s), Some(f)) = (j.started_at, j.finished_at) {
                    run.record_ms(ms_between(s, f));
                }
            }
            walls.insert(mode, span_s);
            let mut note = String::new();
            if mode == "batch" {
                if let Some(d) = walls.get("dedicated").filter(|d| **d > 0.0) {
                    note = format!("batch/dedicated wall = {:.3}", span_s / d);
                }
            }
            if !complete {
                note += "; NOT ALL DONE at the time limit";
            }
            note += &submit_note(&s);
            note += &status_note(&jobs);
            rows.push(
                Row {
                    scenario: "batch".into(),
                    devices: what.clone(),
                    jobs: jobs.len() as u64,
                    clients: a.clients.min(16),
                    wall_s: Some(span_s),
                    jobs_per_s: (span_s > 0.0).then(|| jobs.len() as f64 / span_s),
                    metric: format!("{mode}: first start->last finish (per job start->finish)"),
                    note,
                    ..Row::default()
                }
                .latency(&run),
            );
        }
    }
    Ok(rows)
}

/// Post `bodies` in `POST /v1/jobs:batch` requests of `size`, `clients` at a time; returns the
/// jobs, the latency of each request (a histogram, and in the order they ended, ms) and the wall
/// time of the whole submission.
async fn submit_batches(
    api: &Api,
    bodies: Vec<Value>,
    size: usize,
    clients: usize,
) -> Result<(Vec<Job>, Micros, Vec<f64>, Duration)> {
    // A server without `POST /v1/jobs:batch` (a baseline build) gets the jobs one by one.
    if let Err(e) = api.submit_batch(&[]).await {
        if format!("{e:#}").contains("404") {
            eprintln!("  no POST /v1/jobs:batch on this server: submitting one by one with {} clients", 64);
            let s = submit_all(api, bodies, 64, Instant::now() + Duration::from_secs(3600)).await;
            if let Some(e) = s.first_error {
                return Err(anyhow!("{} submit errors, first: {e}", s.errors));
            }
            return Ok((s.jobs, s.post_latency, Vec::new(), s.elapsed));
        }
    }
    let t0 = Instant::now();
    let chunks: Vec<Vec<Value>> = bodies.chunks(size.max(1)).map(<[Value]>::to_vec).collect();
    let results: Vec<Result<(Vec<Job>, f64)>> = futures::stream::iter(chunks)
        .map(|c| async move {
            let s = Instant::now();
            let jobs = api.submit_batch(&c).await?;
            Ok((jobs, ms(s.elapsed())))
        })
        .buffer_unordered(clients.max(1))
        .collect()
        .await;
    let elapsed = t0.elapsed();
    let mut jobs = Vec::new();
    let mut lat = Micros::default();
    let mut each = Vec::with_capacity(results.len());
    for r in results {
        let (j, l) = r?;
        jobs.extend(j);
        lat.record_ms(l);
        each.push(l);
    }
    Ok((jobs, lat, each, elapsed))
}

/// Bulk submit: `--bulk-requests` requests of `--bulk-size` jobs each, one at a time, over the
/// largest device count (online: the scheduler runs them meanwhile).
pub async fn bulk(ctx: &Ctx, limit: Duration) -> Result<Vec<Row>> {
    let a = &ctx.args;
    let n_dev = a.devices.iter().copied().max().unwrap_or(1);
    let devices = ctx.devices("bulk", n_dev, "noop", 1, false).await?;
    let tag = ctx.tag("bulk");
    let n = a.bulk_size * a.bulk_requests.max(1);
    let bodies: Vec<Value> = (0..n).map(|i| noop_job(&devices[i % n_dev], &tag, 0)).collect();
    let after = Utc::now() - chrono::Duration::seconds(2);
    let deadline = Instant::now() + limit;
    let (jobs, lat, each, elapsed) = submit_batches(&ctx.api, bodies, a.bulk_size, 1).await?;
    let (done, complete) = wait_terminal(&ctx.api, &devices, &tag, after, jobs.len(), deadline).await?;
    let per_request: Vec<f64> = [0.5, 0.99].iter().filter_map(|q| lat.pct_ms(*q)).collect();
    // Each request's time in order: the first meets an idle scheduler, later ones share the
    // machine with the drain of the jobs before them.
    let each_ms: Vec<String> = each.iter().map(|l| format!("{l:.0}")).collect();
    let mut note = format!(
        "{} requests of {} jobs, one at a time (ms each, in order: {}); jobs/s = jobs per request / p50 request time{}",
        a.bulk_requests.max(1),
        a.bulk_size,
        each_ms.join(", "),
        if complete { "" } else { "; NOT ALL DONE at the time limit" }
    );
    note += &status_note(&done);
    let p50 = per_request.first().copied().unwrap_or(f64::NAN);
    Ok(vec![Row {
        scenario: "bulk".into(),
        devices: n_dev.to_string(),
        jobs: jobs.len() as u64,
        clients: 1,
        wall_s: Some(elapsed.as_secs_f64()),
        jobs_per_s: Some(a.bulk_size as f64 / (p50 / 1000.0).max(1e-9)),
        metric: "POST /v1/jobs:batch (per request latency)".into(),
        note,
        ..Row::default()
    }
    .latency(&lat)])
}

/// Queue `n` jobs on `n_dev` fresh paused devices with bulk requests, resume them all, wait until
/// every job is terminal; returns the jobs and the submission figures.
async fn queued_then_resumed(
    ctx: &Ctx,
    label: &str,
    n_dev: usize,
    n: usize,
    deadline: Instant,
) -> Result<(Vec<Job>, bool, Duration, Micros)> {
    let a = &ctx.args;
    let devices = ctx.devices(label, n_dev, "noop", 1, true).await?;
    let tag = ctx.tag(label);
    let bodies: Vec<Value> = (0..n).map(|i| noop_job(&devices[i % n_dev], &tag, 0)).collect();
    let after = Utc::now() - chrono::Duration::seconds(2);
    let (submitted, lat, _, elapsed) = submit_batches(&ctx.api, bodies, a.bulk_size, 2).await?;
    let resumed: Vec<Result<()>> = futures::stream::iter(devices.iter())
        .map(|d| ctx.api.set_device_status(d, "online"))
        .buffer_unordered(16)
        .collect()
        .await;
    resumed.into_iter().collect::<Result<Vec<()>>>()?;
    let (jobs, complete) = wait_terminal(&ctx.api, &devices, &tag, after, submitted.len(), deadline).await?;
    Ok((jobs, complete, elapsed, lat))
}

/// Drain: `--drain-jobs` queued on `--drain-devices` paused devices, then resumed; rate =
/// completed / (first started_at -> last finished_at).
pub async fn drain(ctx: &Ctx, limit: Duration) -> Result<Vec<Row>> {
    let a = &ctx.args;
    let deadline = Instant::now() + limit;
    let (jobs, complete, sub_elapsed, lat) =
        queued_then_resumed(ctx, "drain", a.drain_devices, a.drain_jobs, deadline).await?;
    let completed: Vec<&Job> = jobs.iter().filter(|j| j.status == "completed").collect();
    let first = completed.iter().filter_map(|j| j.started_at).min();
    let last = completed.iter().filter_map(|j| j.finished_at).max();
    let span_s = match (first, last) {
        (Some(f), Some(l)) => ms_between(f, l) / 1000.0,
        _ => 0.0,
    };
    let mut run = Micros::default();
    for j in &completed {
        if let (Some(s), Some(f)) = (j.started_at, j.finished_at) {
            run.record_ms(ms_between(s, f));
        }
    }
    let mut note = format!(
        "DB span first started_at -> last finished_at; queued by bulk requests at {:.0} jobs/s (request p50 {:.0} ms){}",
        jobs.len() as f64 / sub_elapsed.as_secs_f64().max(1e-9),
        lat.pct_ms(0.5).unwrap_or(0.0),
        if complete { "" } else { "; NOT ALL DONE at the time limit" }
    );
    note += &status_note(&jobs);
    Ok(vec![Row {
        scenario: "drain".into(),
        devices: format!("{} paused", a.drain_devices),
        jobs: completed.len() as u64,
        clients: 0,
        wall_s: Some(span_s),
        jobs_per_s: (span_s > 0.0).then(|| completed.len() as f64 / span_s),
        metric: "completed after resume (per job start->finish)".into(),
        note,
        ..Row::default()
    }
    .latency(&run)])
}

/// One device, deep queue: `--deep-jobs` queued while paused, then resumed; the rate of every
/// 10,000 jobs in start order shows whether the queue's depth costs.
pub async fn deep(ctx: &Ctx, limit: Duration) -> Result<Vec<Row>> {
    let a = &ctx.args;
    let deadline = Instant::now() + limit;
    let (mut jobs, complete, _, _) = queued_then_resumed(ctx, "deep", 1, a.deep_jobs, deadline).await?;
    jobs.retain(|j| j.started_at.is_some() && j.finished_at.is_some());
    jobs.sort_by_key(|j| j.started_at);
    const CHUNK: usize = 10_000;
    let mut rates = Vec::new();
    for c in jobs.chunks(CHUNK) {
        if let (Some(f), Some(l)) = (c.first().and_then(|j| j.started_at), c.last().and_then(|j| j.finished_at)) {
            let s = ms_between(f, l) / 1000.0;
            if s > 0.0 {
                rates.push(c.len() as f64 / s);
            }
        }
    }
    let span_s = match (jobs.first().and_then(|j| j.started_at), jobs.last().and_then(|j| j.finished_at)) {
        (Some(f), Some(l)) => ms_between(f, l) / 1000.0,
        _ => 0.0,
    };
    let mut cycle = Micros::default();
    for w in jobs.windows(2) {
        if let (Some(p), Some(q)) = (w[0].started_at, w[1].started_at) {
            cycle.record_ms(ms_between(p, q));
        }
    }
    let shown: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
    let mut note = format!(
        "jobs/s per {CHUNK} in start order: [{}]; last/first = {:.2}{}",
        shown.join(", "),
        match (rates.first(), rates.last()) {
            (Some(f), Some(l)) if *f > 0.0 => l / f,
            _ => f64::NAN,
        },
        if complete { "" } else { "; NOT ALL DONE at the time limit" }
    );
    note += &status_note(&jobs);
    Ok(vec![Row {
        scenario: "deep".into(),
        devices: "1 deep".into(),
        jobs: jobs.len() as u64,
        clients: 0,
        wall_s: Some(span_s),
        jobs_per_s: (span_s > 0.0).then(|| jobs.len() as f64 / span_s),
        metric: "completed (start[i] -> start[i+1])".into(),
        note,
        ..Row::default()
    }
    .latency(&cycle)])
}

/// Hold: `--hold-jobs` queued on 64 paused devices by bulk requests, and left queued (the server's
/// memory must not grow with the queue; bench/server/run.sh reads its RSS afterwards).
pub async fn hold(ctx: &Ctx) -> Result<Vec<Row>> {
    let a = &ctx.args;
    let devices = ctx.devices("hold", 64, "noop", 1, true).await?;
    let tag = ctx.tag("hold");
    let bodies: Vec<Value> = (0..a.hold_jobs).map(|i| noop_job(&devices[i % devices.len()], &tag, 0)).collect();
    let (jobs, lat, _, elapsed) = submit_batches(&ctx.api, bodies, a.bulk_size, 2).await?;
    Ok(vec![Row {
        scenario: "hold".into(),
        devices: "64 paused".into(),
        jobs: jobs.len() as u64,
        clients: 2,
        wall_s: Some(elapsed.as_secs_f64()),
        jobs_per_s: Some(jobs.len() as f64 / elapsed.as_secs_f64().max(1e-9)),
        metric: "queued and left queued (per request latency)".into(),
        note: "server RSS: see the run.sh summary".into(),
        ..Row::default()
    }
    .latency(&lat)])
}
