//! A thin client of the native `/v1` API: only what the benchmark needs.

use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    auth: String,
}

/// The fields of a job the benchmark reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Job {
    pub id: Uuid,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub reason: Option<String>,
}

impl Job {
    pub fn is_terminal(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "failed" | "canceled")
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Device {
    pub name: String,
    pub queue_length: i64,
}

#[derive(Debug, Deserialize)]
struct Page<T> {
    items: Vec<T>,
    next_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Created {
    id: Uuid,
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl Api {
    /// A client whose connection pool keeps `pool` idle connections to the server.
    pub fn new(base: &str, token: &str, pool: usize) -> Result<Api> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(pool)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Api { http, base: base.trim_end_matches('/').to_string(), auth: format!("Bearer {token}") })
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder, what: &str) -> Result<T> {
        let resp = req.header("Authorization", &self.auth).send().await.with_context(|| what.to_string())?;
        let status = resp.status();
        let bytes = resp.bytes().await.with_context(|| what.to_string())?;
        if !status.is_success() {
            return Err(anyhow!("{what}: HTTP {status}: {}", String::from_utf8_lossy(&bytes)));
        }
        serde_json::from_slice(&bytes).with_context(|| format!("{what}: unexpected response body"))
    }

    async fn post<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T> {
        let req = self.http.post(format!("{}{path}", self.base)).json(body);
        self.send(req, &format!("POST {path}")).await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> Result<T> {
        let req = self.http.get(format!("{}{path}", self.base)).query(query);
        self.send(req, &format!("GET {path}")).await
    }

    pub async fn healthz(&self) -> Result<()> {
        let resp = self.http.get(format!("{}/healthz", self.base)).send().await?;
        if !resp.status().is_success() {
            return Err(anyhow!("GET /healthz: HTTP {}", resp.status()));
        }
        Ok(())
    }

    pub async fn create_device(&self, name: &str, driver: &str, num_qubits: u32) -> Result<()> {
        let _: Value =
            self.post("/v1/devices", &json!({"name": name, "driver": driver, "num_qubits": num_qubits})).await?;
        Ok(())
    }

    /// A device token for an agent device (admin).
    pub async fn device_token(&self, device: &str) -> Result<String> {
        let v: Value = self.post(&format!("/v1/devices/{device}/tokens"), &json!({})).await?;
        v["token"].as_str().map(str::to_owned).ok_or_else(|| anyhow!("no token in {v}"))
    }

    pub async fn devices(&self) -> Result<Vec<Device>> {
        self.get("/v1/devices", &[]).await
    }

    pub async fn create_session(&self, device: &str, mode: &str) -> Result<Uuid> {
        let s: Created = self.post("/v1/sessions", &json!({"device": device, "mode": mode})).await?;
        Ok(s.id)
    }

    pub async fn close_session(&self, id: Uuid) -> Result<()> {
        let _: Value = self.post(&format!("/v1/sessions/{id}/close"), &json!({})).await?;
        Ok(())
    }

    /// `POST /v1/jobs` with a prepared body.
    pub async fn submit(&self, body: &Value) -> Result<Job> {
        self.post("/v1/jobs", body).await
    }

    /// `POST /v1/jobs:batch` with job bodies (job-mode, each with a device); the created jobs.
    pub async fn submit_batch(&self, jobs: &[Value]) -> Result<Vec<Job>> {
        #[derive(Deserialize)]
        struct Created {
            jobs: Vec<Job>,
        }
        let c: Created = self.post("/v1/jobs:batch", &json!({ "jobs": jobs })).await?;
        Ok(c.jobs)
    }

    pub async fn job(&self, id: Uuid) -> Result<Job> {
        self.get(&format!("/v1/jobs/{id}"), &[]).await
    }

    pub async fn result(&self, id: Uuid) -> Result<Value> {
        let r: Value = self.get(&format!("/v1/jobs/{id}/result"), &[]).await?;
        Ok(r.get("result").cloned().unwrap_or(Value::Null))
    }

    /// Every job carrying `tag` created at or after `after` (keyset pages of 500; the time bound
    /// keeps each page's scan to this run's rows).
    pub async fn jobs_tagged(&self, tag: &str, after: DateTime<Utc>) -> Result<Vec<Job>> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q = vec![("tag", tag.to_string()), ("created_after", rfc3339(after)), ("limit", "500".into())];
            if let Some(c) = &cursor {
                q.push(("cursor", c.clone()));
            }
            let page: Page<Job> = self.get("/v1/jobs", &q).await?;
            out.extend(page.items);
            match page.next_cursor {
                Some(c) if !c.is_empty() => cursor = Some(c),
                _ => return Ok(out),
            }
        }
    }
}

impl Api {
    /// `PATCH /v1/devices/{name}` with a new status (admin).
    pub async fn set_device_status(&self, name: &str, status: &str) -> Result<()> {
        let req = self.http.patch(format!("{}/v1/devices/{name}", self.base)).json(&json!({"status": status}));
        let _: Value = self.send(req, &format!("PATCH /v1/devices/{name}")).await?;
        Ok(())
    }

    /// `POST /v1/devices` of a device that starts `paused` (it takes no job until set online).
    pub async fn create_paused_device(&self, name: &str, driver: &str, num_qubits: u32) -> Result<()> {
        let body = json!({"name": name, "driver": driver, "num_qubits": num_qubits, "status": "paused"});
        let _: Value = self.post("/v1/devices", &body).await?;
        Ok(())
    }
}

impl Api {
    /// One page of `GET /v1/jobs` with the given query; how many items it held.
    pub async fn list_jobs(&self, query: &[(&str, String)]) -> Result<usize> {
        let page: Page<Value> = self.get("/v1/jobs", query).await?;
        Ok(page.items.len())
    }
}
