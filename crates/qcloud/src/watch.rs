//! `qcloud jobs watch ID` and `qcloud sessions watch ID`: a live view in the terminal (an
//! `indicatif` spinner or progress bar: state, queue position, elapsed time) fed by the event
//! stream `GET /v1/events` of a running server.

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Where the server is and who asks.
#[derive(Debug, Clone, clap::Args)]
pub struct RemoteFlags {
    /// The server's URL [env: QCLOUD_URL]
    #[arg(long, env = "QCLOUD_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// An API token of the project that owns the job or session [env: QCLOUD_TOKEN]
    #[arg(long, env = "QCLOUD_TOKEN", hide_env_values = true)]
    pub token: String,
}

struct Remote {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Remote {
    fn new(f: &RemoteFlags) -> Remote {
        Remote { base: f.url.trim_end_matches('/').to_string(), token: f.token.clone(), http: reqwest::Client::new() }
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let r = self.http.get(format!("{}{path}", self.base)).bearer_auth(&self.token).send().await?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("GET {path}: {status}: {}", v["error"]["message"].as_str().unwrap_or("no message"));
        }
        Ok(v)
    }

    async fn stream(&self, query: &str) -> anyhow::Result<Sse> {
        let r = self
            .http
            .get(format!("{}/v1/events?{query}", self.base))
            .bearer_auth(&self.token)
            .header("accept", "text/event-stream")
            .send()
            .await
            .context("opening the event stream")?;
        if !r.status().is_success() {
            let status = r.status();
            bail!("GET /v1/events: {status}: {}", r.text().await.unwrap_or_default());
        }
        Ok(Sse { resp: r, buf: String::new() })
    }
}

/// A minimal reader of `text/event-stream`: (event type, JSON data) per event.
struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    /// The next event, `Ok(None)` when `limit` passed first.
    async fn next(&mut self, limit: Duration) -> anyhow::Result<Option<(String, Value)>> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..i + 2).collect();
                let (mut kind, mut data) = (String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        kind = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if kind.is_empty() && data.is_empty() {
                    continue;
                }
                return Ok(Some((kind, serde_json::from_str(&data).unwrap_or(Value::Null))));
            }
            match tokio::time::timeout_at(deadline, self.resp.chunk()).await {
                Err(_) => return Ok(None),
                Ok(Ok(Some(b))) => self.buf.push_str(&String::from_utf8_lossy(&b)),
                Ok(Ok(None)) => bail!("the server closed the event stream"),
                Ok(Err(e)) => return Err(e.into()),
            }
        }
    }
}

/// The bar, or plain lines when stderr is not a terminal (indicatif then draws nothing): each
/// new state is printed once, without the elapsed time that changes every tick.
struct View {
    bar: ProgressBar,
    last: String,
}

impl View {
    fn new(bar: ProgressBar) -> View {
        View { bar, last: String::new() }
    }

    fn show(&mut self, msg: String, key: String) {
        if self.bar.is_hidden() && key != self.last {
            println!("{msg}");
        }
        self.last = key;
        self.bar.set_message(msg);
    }

    fn finish(&mut self, msg: String) {
        if self.bar.is_hidden() {
            println!("{msg}");
        }
        self.bar.finish_with_message(msg);
    }
}

fn elapsed(t: Instant) -> String {
    format!("{:.1}s", t.elapsed().as_secs_f64())
}

fn job_line(id: Uuid, j: &Value, t0: Instant) -> String {
    let status = j["status"].as_str().unwrap_or("?");
    let mut s = format!("job {id} on {}: {status}", j["device"].as_str().unwrap_or("?"));
    if let Some(p) = j["queue_position"].as_i64() {
        s.push_str(&format!(" (queue position {p})"));
    }
    if let Some(r) = j["reason"].as_str() {
        s.push_str(&format!(": {r}"));
    }
    s.push_str(&format!(", {}", elapsed(t0)));
    s
}

const TERMINAL_JOB: &[&str] = &["completed", "failed", "canceled"];

/// Watch a job until it ends. The process's exit status says how it ended (0: completed).
pub async fn job(flags: &RemoteFlags, id: Uuid) -> anyhow::Result<bool> {
    let remote = Remote::new(flags);
    let t0 = Instant::now();
    // The stream first, then the state: nothing that happens in between is missed.
    let mut stream = remote.stream(&format!("job_id={id}")).await?;
    let mut job = remote.get(&format!("/v1/jobs/{id}")).await?;
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("a valid template"));
    bar.enable_steady_tick(Duration::from_millis(120));
    let mut view = View::new(bar);
    loop {
        let status = job["status"].as_str().unwrap_or("").to_string();
        if TERMINAL_JOB.contains(&status.as_str()) {
            view.finish(job_line(id, &job, t0));
            return Ok(status == "completed");
        }
        view.show(job_line(id, &job, t0), format!("{status} {}", job["queue_position"]));
        match stream.next(Duration::from_secs(1)).await? {
            Some((kind, ev)) if kind.starts_with("job.") => {
                // The event has the new state; the job view has the queue position.
                job["status"] = ev["status"].clone();
                job["reason"] = ev["reason"].clone();
                if !TERMINAL_JOB.contains(&ev["status"].as_str().unwrap_or("")) {
                    job = remote.get(&format!("/v1/jobs/{id}")).await?;
                }
                job["queue_position"] =
                    if job["status"] == "queued" { job["queue_position"].clone() } else { Value::Null };
            }
            Some(_) => {}
            // Quiet: refresh the queue position while queued.
            None if status == "queued" => job = remote.get(&format!("/v1/jobs/{id}")).await?,
            None => {}
        }
    }
}

/// Watch a session until it closes: a progress bar of its finished jobs over its jobs.
pub async fn session(flags: &RemoteFlags, id: Uuid) -> anyhow::Result<bool> {
    let remote = Remote::new(flags);
    let t0 = Instant::now();
    let mut stream = remote.stream(&format!("session_id={id}")).await?;
    let mut s = remote.get(&format!("/v1/sessions/{id}")).await?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {msg}").expect("a valid template").progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let mut view = View::new(bar);
    loop {
        let counts = &s["jobs"];
        let n = |k: &str| counts[k].as_u64().unwrap_or(0);
        let done = n("completed") + n("failed") + n("canceled");
        let total = done + n("queued") + n("running");
        view.bar.set_length(total);
        view.bar.set_position(done);
        let state = s["state"].as_str().unwrap_or("?").to_string();
        let mut msg = format!("session {id}: {state}");
        if let Some(r) = s["closed_reason"].as_str() {
            msg.push_str(&format!(" ({r})"));
        }
        if n("failed") > 0 {
            msg.push_str(&format!(", {} failed", n("failed")));
        }
        let key = format!("{msg} {done}/{total}");
        let line = format!("{done}/{total} jobs done  {msg}, {}", elapsed(t0));
        if state == "closed" {
            view.finish(line);
            return Ok(s["closed_reason"] == "completed");
        }
        view.show(line, key);
        if stream.next(Duration::from_secs(2)).await?.is_some() {
            // Coalesce a burst of events into one refresh.
            while let Ok(Some(_)) = stream.next(Duration::from_millis(50)).await {}
        }
        s = remote.get(&format!("/v1/sessions/{id}")).await?;
    }
}
