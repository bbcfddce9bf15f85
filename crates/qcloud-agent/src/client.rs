//! The agent protocol's client side: one method per route of `/v1/agent` (docs/agent-protocol.md).

use anyhow::{anyhow, Context};
use qcloud_wire as wire;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::Write;
use std::path::Path;
use std::time::Duration;
use uuid::Uuid;

/// Results larger than this are sent gzip-compressed.
const GZIP_ABOVE: usize = 1 << 20;

/// Why a call failed.
#[derive(Debug)]
pub enum CallError {
    /// 409: the lease is no longer ours (the job was recovered, or finished by the server).
    LeaseLost(String),
    /// 4xx other than 409: our mistake or a refused token; retrying will not help.
    Refused(StatusCode, String),
    /// The server's TLS certificate was not accepted (an unknown CA, a wrong name, expired):
    /// retrying will not help until the operator gives the CA (`--ca-cert`) or fixes the server.
    Tls(String),
    /// Network trouble or a 5xx: worth retrying.
    Transient(anyhow::Error),
}

impl std::error::Error for CallError {}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::LeaseLost(m) => write!(f, "lease lost: {m}"),
            CallError::Refused(s, m) => write!(f, "refused ({s}): {m}"),
            CallError::Tls(m) => write!(f, "{m}"),
            CallError::Transient(e) => write!(f, "{e:#}"),
        }
    }
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    /// A client of `server` (http:// or https://). An https server's certificate is checked
    /// against the bundled Mozilla roots, the system's roots and the certificates of `ca_cert`
    /// (a PEM file, one or more certificates: a lab's private CA).
    pub fn new(server: &str, token: &str, ca_cert: Option<&Path>) -> anyhow::Result<Client> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // A claim waits up to 30 s on the server.
            .timeout(Duration::from_secs(75));
        if let Some(path) = ca_cert {
            let pem = std::fs::read(path).with_context(|| format!("--ca-cert {}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("--ca-cert {}: not PEM certificates", path.display()))?;
            if certs.is_empty() {
                anyhow::bail!("--ca-cert {}: no certificate in the file", path.display());
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().context("HTTP client")?;
        Ok(Client { http, base: format!("{}{}", server.trim_end_matches('/'), wire::PREFIX), token: token.into() })
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, CallError> {
        let resp = req.bearer_auth(&self.token).send().await.map_err(|e| match tls_error(&e) {
            Some(m) => CallError::Tls(m),
            None => CallError::Transient(anyhow!(e).context("the server did not answer")),
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.pointer("/error/message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or(body);
        Err(match status {
            StatusCode::CONFLICT => CallError::LeaseLost(message),
            s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
                CallError::Transient(anyhow!("server answered {s}: {message}"))
            }
            s => CallError::Refused(s, message),
        })
    }

    async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, CallError> {
        let resp = self.send(self.http.post(format!("{}{path}", self.base)).json(body)).await?;
        resp.json().await.map_err(|e| CallError::Transient(anyhow!(e).context("unreadable answer")))
    }

    /// Wait up to `wait` seconds for a job.
    pub async fn claim(&self, wait: f64) -> Result<Option<wire::Claim>, CallError> {
        let req = self.http.post(format!("{}/claim", self.base)).json(&wire::ClaimRequest { wait_seconds: Some(wait) });
        let resp = self.send(req).await?;
        if resp.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        resp.json().await.map(Some).map_err(|e| CallError::Transient(anyhow!(e).context("unreadable claim")))
    }

    pub async fn heartbeat(&self, job: Uuid, epoch: i64) -> Result<wire::HeartbeatAnswer, CallError> {
        self.post(&format!("/jobs/{job}/heartbeat"), &wire::Heartbeat { epoch }).await
    }

    pub async fn progress(
        &self,
        job: Uuid,
        epoch: i64,
        message: Option<String>,
        fraction: Option<f64>,
    ) -> Result<(), CallError> {
        let req = self.http.post(format!("{}/jobs/{job}/progress", self.base)).json(&wire::Progress {
            epoch,
            message,
            fraction,
        });
        self.send(req).await.map(|_| ())
    }

    /// Post the result; large ones gzip-compressed.
    pub async fn complete(
        &self,
        job: Uuid,
        epoch: i64,
        result: serde_json::Value,
        log: Option<String>,
    ) -> Result<wire::Finished, CallError> {
        let body = serde_json::to_vec(&wire::Complete { epoch, result, log })
            .map_err(|e| CallError::Transient(anyhow!(e).context("result to JSON")))?;
        let mut req =
            self.http.post(format!("{}/jobs/{job}/complete", self.base)).header("content-type", "application/json");
        if body.len() > GZIP_ABOVE {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&body).and_then(|_| gz.flush()).map_err(|e| CallError::Transient(anyhow!(e)))?;
            let zipped = gz.finish().map_err(|e| CallError::Transient(anyhow!(e)))?;
            req = req.header("content-encoding", "gzip").body(zipped);
        } else {
            req = req.body(body);
        }
        let resp = self.send(req).await?;
        resp.json().await.map_err(|e| CallError::Transient(anyhow!(e).context("unreadable answer")))
    }

    pub async fn fail(
        &self,
        job: Uuid,
        epoch: i64,
        reason: String,
        log: Option<String>,
    ) -> Result<wire::Finished, CallError> {
        self.post(&format!("/jobs/{job}/fail"), &wire::Fail { epoch, reason, log }).await
    }

    pub async fn report(&self, report: &wire::DeviceReport) -> Result<wire::AgentDevice, CallError> {
        let resp = self.send(self.http.put(format!("{}/device", self.base)).json(report)).await?;
        resp.json().await.map_err(|e| CallError::Transient(anyhow!(e).context("unreadable answer")))
    }

    pub async fn device(&self) -> Result<wire::AgentDevice, CallError> {
        let resp = self.send(self.http.get(format!("{}/device", self.base))).await?;
        resp.json().await.map_err(|e| CallError::Transient(anyhow!(e).context("unreadable answer")))
    }
}

/// The reason, if a request failed because the server's certificate was refused.
fn tls_error(e: &reqwest::Error) -> Option<String> {
    // The causes, and inside each io::Error the error it wraps (its `source` skips that one;
    // rustls' error arrives wrapped twice).
    let mut todo: Vec<&(dyn std::error::Error + 'static)> = vec![e];
    while let Some(c) = todo.pop() {
        if let Some(tls @ rustls::Error::InvalidCertificate(_)) = c.downcast_ref::<rustls::Error>() {
            return Some(format!(
                "the server's TLS certificate was refused ({tls}); if it is signed by a private CA, give that \
                 CA's certificate with --ca-cert PEM (QCLOUD_AGENT_CA_CERT)"
            ));
        }
        if let Some(inner) = c.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            todo.push(inner);
        }
        todo.extend(c.source());
    }
    None
}
