//! The agent path (issue 12) beside the in-process noop driver, in one run: submit -> start
//! latency on an idle device and end-to-end throughput of zero-work jobs. The agent is played
//! by this program over HTTP (the protocol of docs/agent-protocol.md: long-poll claim, then
//! complete at once), so the figures are the protocol's and the server's, not a job's work;
//! "agent start" is when the claim's answer reached the agent, on this program's clock, like
//! the submit time it is compared with.

use crate::api::Api;
use crate::scenarios::Ctx;
use crate::stats::{Micros, Row};
use anyhow::{anyhow, Context, Result};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A zero-work agent: claims and completes at once, recording when each job reached it.
struct Agent {
    http: reqwest::Client,
    base: String,
    auth: String,
    seen: Arc<Mutex<HashMap<Uuid, Instant>>>,
}

impl Agent {
    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Result<(u16, Value)> {
        let resp = self
            .http
            .request(method, format!("{}/v1/agent{path}", self.base))
            .header("Authorization", &self.auth)
            .json(&body)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }

    async fn run(self: Arc<Self>, stop: Arc<std::sync::atomic::AtomicBool>) -> Result<u64> {
        let mut done = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let (s, c) = self.call(reqwest::Method::POST, "/claim", json!({"wait_seconds": 1})).await?;
            if s == 204 {
                continue;
            }
            if s != 200 {
                return Err(anyhow!("claim: HTTP {s}: {c}"));
            }
            let at = Instant::now();
            let id: Uuid = c["job"]["id"].as_str().unwrap_or_default().parse()?;
            if let Ok(mut m) = self.seen.lock() {
                m.insert(id, at);
            }
            let epoch = c["lease"]["epoch"].clone();
            let (s, v) = self
                .call(reqwest::Method::POST, &format!("/jobs/{id}/complete"), json!({"epoch": epoch, "result": {}}))
                .await?;
            if s != 200 {
                return Err(anyhow!("complete: HTTP {s}: {v}"));
            }
            done += 1;
        }
        Ok(done)
    }
}

async fn agent_device(ctx: &Ctx, label: &str, api: &Api) -> Result<(String, String)> {
    let name = format!("bench-{}-{label}", ctx.run);
    api.create_device(&name, "agent", 1).await.context("creating an agent device")?;
    let token = api.device_token(&name).await?;
    Ok((name, token))
}

fn job(device: &str, program: &str) -> Value {
    json!({"device": device, "program": program, "payload": {}})
}

/// Sequential jobs (each submitted once the previous one completed): submit -> start.
async fn latency(
    api: &Api,
    device: &str,
    program: &str,
    n: usize,
    seen: Option<&Mutex<HashMap<Uuid, Instant>>>,
    deadline: Instant,
) -> Result<(Micros, Micros)> {
    let (mut start, mut total) = (Micros::default(), Micros::default());
    for i in 0..n + 5 {
        if Instant::now() >= deadline {
            break;
        }
        let t0 = Instant::now();
        let j = api.submit(&job(device, program)).await?;
        let mut started = None;
        loop {
            if let (None, Some(m)) = (started, seen) {
                started = m.lock().ok().and_then(|m| m.get(&j.id).copied());
            }
            let cur = api.job(j.id).await?;
            if cur.is_terminal() {
                if i >= 5 {
                    total.record_ms(t0.elapsed().as_secs_f64() * 1000.0);
                    match (seen, started) {
                        (Some(_), Some(s)) => start.record_ms((s - t0).as_secs_f64() * 1000.0),
                        (None, _) => {
                            if let Some(s) = cur.started_at {
                                start.record_ms((s - cur.created_at).num_microseconds().unwrap_or(0) as f64 / 1000.0);
                            }
                        }
                        _ => {}
                    }
                }
                break;
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
    }
    Ok((start, total))
}

/// `n` jobs submitted by `clients` at once; completed jobs per second from the first submit to
/// the last completion seen.
async fn throughput(
    api: &Api,
    device: &str,
    program: &str,
    n: usize,
    clients: usize,
    deadline: Instant,
) -> Result<(u64, f64)> {
    let t0 = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients.clamp(1, n) {
        let (api, next, device, program) = (api.clone(), next.clone(), device.to_string(), program.to_string());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n && Instant::now() < deadline {
                ids.push(api.submit(&job(&device, &program)).await?.id);
            }
            anyhow::Ok(ids)
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await??);
    }
    let mut done = 0u64;
    for id in &ids {
        loop {
            let j = api.job(*id).await?;
            if j.is_terminal() {
                done += u64::from(j.status == "completed");
                break;
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    Ok((done, done as f64 / t0.elapsed().as_secs_f64().max(1e-9)))
}

pub async fn agent_vs_noop(ctx: &Ctx, limit: Duration) -> Result<Vec<Row>> {
    let a = &ctx.args;
    let deadline = Instant::now() + limit;
    let api = &ctx.api;
    let noop = ctx.devices_pub("agentcmp-noop", 1, "noop", 1).await?.remove(0);
    let (dev, token) = agent_device(ctx, "agentcmp-agent", api).await?;
    let agent = Arc::new(Agent {
        http: reqwest::Client::builder().tcp_nodelay(true).timeout(Duration::from_secs(40)).build()?,
        base: a.url.trim_end_matches('/').to_string(),
        auth: format!("Bearer {token}"),
        seen: Arc::default(),
    });
    let (s, v) = agent.call(reqwest::Method::PUT, "/device", json!({"status": "online"})).await?;
    if s != 200 {
        return Err(anyhow!("agent report: HTTP {s}: {v}"));
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let agent_task = tokio::spawn(agent.clone().run(stop.clone()));
    let n = a.latency_jobs;
    // Interleaved halves would be fairer still; one after the other, in one run, on one server.
    let (noop_start, noop_total) = latency(api, &noop, "noop", n, None, deadline).await?;
    let (agent_start, agent_total) = latency(api, &dev, "zero", n, Some(agent.seen.as_ref()), deadline).await?;
    let jobs = a.agent_jobs;
    let (noop_done, noop_rate) = throughput(api, &noop, "noop", jobs, a.clients, deadline).await?;
    let (agent_done, agent_rate) = throughput(api, &dev, "zero", jobs, a.clients, deadline).await?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(3), agent_task).await;
    let row = |devices: &str, metric: &str, h: &Micros, note: &str| {
        Row {
            scenario: "agent".into(),
            devices: devices.into(),
            jobs: n as u64,
            clients: 1,
            metric: metric.into(),
            note: note.into(),
            ..Row::default()
        }
        .latency(h)
    };
    Ok(vec![
        row("noop (in-process)", "submit->start (DB started_at - created_at)", &noop_start, ""),
        row("agent (HTTP)", "submit->agent start (client clock)", &agent_start, "POST sent -> claim answer received"),
        row("noop (in-process)", "POST->completed seen (0.5 ms polls)", &noop_total, ""),
        row("agent (HTTP)", "POST->completed seen (0.5 ms polls)", &agent_total, ""),
        Row {
            scenario: "agent".into(),
            devices: "noop (in-process)".into(),
            jobs: noop_done,
            clients: a.clients,
            jobs_per_s: Some(noop_rate),
            metric: "throughput, zero-work jobs, 1 device".into(),
            ..Row::default()
        },
        Row {
            scenario: "agent".into(),
            devices: "agent (HTTP)".into(),
            jobs: agent_done,
            clients: a.clients,
            jobs_per_s: Some(agent_rate),
            metric: "throughput, zero-work jobs, 1 device, 1 agent".into(),
            ..Row::default()
        },
    ])
}
