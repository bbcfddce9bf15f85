//! The webhook deliverer of one replica: claims due deliveries from the outbox (any replica may;
//! SKIP LOCKED, one claim per row at a time, under a lease), POSTs each with the Standard Webhooks
//! headers, and records the outcome: delivered, retried later with exponential back-off and
//! jitter, or failed once the retry window is over. A replica killed mid-delivery leaves its
//! lease to run out; another one delivers again (at least once; receivers deduplicate on
//! `webhook-id`).
//!
//! Every attempt checks the URL again and resolves its host; the connection goes to the
//! addresses that were checked (no second lookup), follows no redirect, has a timeout, and reads
//! at most [`BODY_LIMIT`] bytes of the answer.

use base64::Engine;
use hmac::{Hmac, Mac};
use qcloud_service::auth::Principal;
use qcloud_service::events::EventView;
use qcloud_service::webhooks::{secret_key, Refusal};
use qcloud_service::Service;
use qcloud_store::webhooks::{ClaimedDelivery, Outcome};
use rand::Rng;
use sha2::Sha256;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Bytes of a receiver's answer read at most (the rest is dropped).
pub const BODY_LIMIT: usize = 4096;

/// Settings of the deliverer.
#[derive(Debug, Clone)]
pub struct DeliverConfig {
    /// Longest wait for a receiver's answer.
    pub timeout: Duration,
    /// First retry delay; doubled at each attempt, with jitter.
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// How long after the event a delivery is retried before it is marked failed.
    pub give_up_after: Duration,
    /// Deliveries in flight per replica.
    pub concurrency: usize,
    /// CA certificates trusted for https:// receivers besides the bundled and the system's roots.
    pub ca_certs: Vec<reqwest::Certificate>,
}

impl Default for DeliverConfig {
    fn default() -> Self {
        DeliverConfig {
            timeout: Duration::from_secs(10),
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(600),
            give_up_after: Duration::from_secs(24 * 3600),
            concurrency: 16,
            ca_certs: Vec::new(),
        }
    }
}

/// Run the deliverer until `stop`.
pub async fn run(svc: Service, me: Uuid, cfg: DeliverConfig, stop: CancellationToken) {
    let wake = svc.event_hub().map(|h| h.deliveries.clone());
    // The lease outlives an attempt (its timeout and the DNS lookup) with room to record it.
    let lease_ms = (cfg.timeout.as_millis() as i64) * 2 + 10_000;
    loop {
        if stop.is_cancelled() {
            return;
        }
        let claimed = match svc.claim_deliveries(me, lease_ms, cfg.concurrency as i64).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "claiming webhook deliveries failed");
                Vec::new()
            }
        };
        if claimed.is_empty() {
            tokio::select! {
                _ = async { match &wake { Some(w) => w.notified().await, None => std::future::pending().await } } => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.cancelled() => return,
            }
            continue;
        }
        let mut set = JoinSet::new();
        for c in claimed {
            let (svc, cfg) = (svc.clone(), cfg.clone());
            set.spawn(async move {
                let (id, attempts) = (c.delivery.id, c.delivery.attempts);
                let outcome = attempt(&svc, &cfg, &c).await;
                let label = match &outcome {
                    Outcome::Delivered { .. } => "delivered",
                    Outcome::Retry { .. } => "retry",
                    Outcome::Failed { .. } => "failed",
                };
                metrics::counter!("qcloud_webhook_deliveries_total", "outcome" => label).increment(1);
                if let Err(e) = svc.finish_delivery(id, me, attempts, &outcome).await {
                    tracing::warn!(delivery = id, error = %e, "recording a webhook delivery failed");
                }
            });
        }
        while set.join_next().await.is_some() {}
    }
}

/// One attempt: the outcome to record.
async fn attempt(svc: &Service, cfg: &DeliverConfig, c: &ClaimedDelivery) -> Outcome {
    let url = &c.webhook.url;
    let retry = |status: Option<i32>, error: String| -> Outcome {
        let age = (chrono::Utc::now() - c.event.created_at).to_std().unwrap_or_default();
        let exp = cfg.retry_base.as_secs_f64() * 2f64.powi((c.delivery.attempts - 1).clamp(0, 30));
        let delay = exp.min(cfg.retry_max.as_secs_f64()) * rand::thread_rng().gen_range(0.5..=1.0);
        if age + Duration::from_secs_f64(delay) > cfg.give_up_after {
            Outcome::Failed { status, error: format!("{error}; gave up after {} attempts", c.delivery.attempts) }
        } else {
            Outcome::Retry {
                status,
                error,
                retry_at: chrono::Utc::now() + chrono::Duration::milliseconds((delay * 1000.0) as i64),
            }
        }
    };
    let (parsed, addrs) = match svc.webhook_policy().resolve_checked(url).await {
        Ok(v) => v,
        Err(Refusal::Forbidden(e)) => return Outcome::Failed { status: None, error: e.to_string() },
        Err(Refusal::Unresolved(e)) => return retry(None, e.to_string()),
    };
    let body = match payload(svc, c).await {
        Ok(b) => b,
        Err(e) => return retry(None, format!("building the payload failed: {e}")),
    };
    let msg_id = format!("evt_{}", c.event.seq);
    let ts = chrono::Utc::now().timestamp();
    let signature = sign(&secret_key(&c.webhook.secret), &msg_id, ts, &body);
    let mut builder = reqwest::Client::builder();
    for cert in &cfg.ca_certs {
        builder = builder.add_root_certificate(cert.clone());
    }
    let client = match builder
        .redirect(reqwest::redirect::Policy::none())
        .timeout(cfg.timeout)
        .connect_timeout(cfg.timeout)
        .resolve_to_addrs(&parsed.host, &addrs)
        .no_proxy()
        .build()
    {
        Ok(c) => c,
        Err(e) => return retry(None, format!("HTTP client: {e}")),
    };
    let sent = client
        .post(url)
        .header("content-type", "application/json")
        .header("user-agent", concat!("qcloud-webhooks/", env!("CARGO_PKG_VERSION")))
        .header("webhook-id", &msg_id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", format!("v1,{signature}"))
        .body(body)
        .send()
        .await;
    match sent {
        Ok(mut resp) => {
            let status = resp.status();
            // Read a little of the answer (so the connection ends cleanly), never more.
            let mut read = 0usize;
            while read < BODY_LIMIT {
                match tokio::time::timeout(cfg.timeout, resp.chunk()).await {
                    Ok(Ok(Some(b))) => read += b.len(),
                    _ => break,
                }
            }
            drop(resp);
            if status.is_success() {
                Outcome::Delivered { status: status.as_u16() as i32 }
            } else if status.is_redirection() {
                retry(Some(status.as_u16() as i32), format!("answered {status}; redirects are not followed"))
            } else {
                retry(Some(status.as_u16() as i32), format!("answered {status}"))
            }
        }
        Err(e) => {
            let what = if e.is_timeout() {
                "timed out".to_string()
            } else {
                // reqwest's message names only the URL; the causes say why (refused, a TLS
                // certificate that is not trusted, ...).
                let mut why = e.to_string();
                let mut cause = std::error::Error::source(&e);
                while let Some(c) = cause {
                    why = format!("{why}: {c}");
                    cause = c.source();
                }
                format!("could not be reached ({why})")
            };
            retry(None, what)
        }
    }
}

/// The CA certificates of a PEM file (`webhook_ca_cert`).
pub fn read_ca_certs(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{}: not PEM certificates ({e})", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", path.display()));
    }
    Ok(certs)
}

/// The body of a delivery: the event JSON, or for a Pasqal batch's webhook the Pasqal job object
/// with its result.
async fn payload(svc: &Service, c: &ClaimedDelivery) -> anyhow::Result<String> {
    let event = EventView::from(c.event.clone());
    if c.webhook.format == "pasqal_job" {
        if let Some(job_id) = event.job_id {
            let who = Principal { project: c.webhook.project.clone(), user: "webhook".into(), admin: false };
            let job = svc.get_batch_job(&who, job_id).await?;
            let mut v = qcloud_api::pasqal::views::job(&job);
            if event.status == "completed" {
                if let Ok(r) = svc.job_result(&who, job_id).await {
                    v["result"] = qcloud_api::pasqal::views::result_document(r.result);
                }
            }
            return Ok(v.to_string());
        }
    }
    Ok(event.to_json().to_string())
}

/// The Standard Webhooks signature: base64 of HMAC-SHA256(key, "{id}.{timestamp}.{body}").
pub fn sign(key: &[u8], msg_id: &str, ts: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(ts.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification (and its reference libraries).
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
