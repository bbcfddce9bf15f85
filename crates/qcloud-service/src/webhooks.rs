//! Webhook subscriptions: per project (`/v1/webhooks`), or made by the `webhook` of a job, a
//! session or a Pasqal batch; the URL policy (checked at subscription and again at delivery, with
//! the DNS answer); and the calls the deliverer makes on the outbox (claim, finish).

use crate::error::{Result, ServiceError};
use crate::{validate, Principal, Service};
use chrono::{DateTime, Utc};
use ipnet::IpNet;
use qcloud_store::webhooks::{self as store, ClaimedDelivery, DeliveryRow, NewWebhook, Outcome, WebhookRow};
use qcloud_store::PgConnection;
use std::net::{IpAddr, SocketAddr};
use uuid::Uuid;

/// The event types a subscription may name.
pub const EVENT_TYPES: &[&str] = &[
    "job.queued",
    "job.running",
    "job.completed",
    "job.failed",
    "job.canceled",
    "session.active",
    "session.inactive",
    "session.closed",
];

/// The terminal job events (what a Pasqal batch webhook receives).
pub const JOB_TERMINAL: &[&str] = &["job.completed", "job.failed", "job.canceled"];

/// Which hosts webhooks may reach besides public addresses: `--webhook-allow` /
/// `QCLOUD_WEBHOOK_ALLOW`, comma-separated CIDRs (`10.0.0.0/8`, `127.0.0.1`) or host names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookPolicy {
    pub nets: Vec<IpNet>,
    pub hosts: Vec<String>,
}

impl WebhookPolicy {
    /// Parse a comma-separated allow list.
    pub fn parse(list: &str) -> std::result::Result<WebhookPolicy, String> {
        let mut p = WebhookPolicy::default();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if let Ok(net) = item.parse::<IpNet>() {
                p.nets.push(net);
            } else if let Ok(ip) = item.parse::<IpAddr>() {
                p.nets.push(IpNet::from(ip));
            } else if item.len() <= 253
                && item.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                && !item.starts_with('.')
            {
                p.hosts.push(item.to_ascii_lowercase());
            } else {
                return Err(format!("'{item}' is neither a CIDR, an IP address nor a host name"));
            }
        }
        Ok(p)
    }

    fn host_allowed(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h == host)
    }

    /// Whether a webhook may connect to `ip` (of a host not allowed by name).
    pub fn ip_allowed(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        self.nets.iter().any(|n| n.contains(&ip)) || is_public(ip)
    }

    /// Check a URL's form and, when its host is an address, the address. Returns its parts.
    pub fn check_url(&self, url: &str) -> Result<WebhookUrl> {
        let parsed = WebhookUrl::parse(url)?;
        let bad = |m: &str| Err(ServiceError::invalid("invalid_webhook", format!("webhook '{url}': {m}")));
        if self.host_allowed(&parsed.host) {
            return Ok(parsed);
        }
        if parsed.host == "localhost" || parsed.host.ends_with(".localhost") {
            return bad("loopback hosts are not allowed (the operator can allow them with --webhook-allow)");
        }
        if let Ok(ip) = parsed.host.parse::<IpAddr>() {
            if !self.ip_allowed(ip) {
                return bad("loopback, private and link-local addresses are not allowed (the operator can allow them \
                     with --webhook-allow)");
            }
        }
        Ok(parsed)
    }

    /// [`WebhookPolicy::check_url`], then resolve the host and check every address it names (a
    /// name that resolves to a private address is refused like the address). Returns the
    /// addresses to connect to, so that the connection goes where the check looked.
    pub async fn resolve(&self, url: &str) -> Result<(WebhookUrl, Vec<SocketAddr>)> {
        self.resolve_checked(url).await.map_err(|r| match r {
            Refusal::Forbidden(e) => e,
            Refusal::Unresolved(e) => e,
        })
    }

    /// [`WebhookPolicy::resolve`], telling a refusal (the URL or its addresses are not allowed:
    /// final) from a name that did not resolve (may pass later).
    pub async fn resolve_checked(&self, url: &str) -> std::result::Result<(WebhookUrl, Vec<SocketAddr>), Refusal> {
        let parsed = self.check_url(url).map_err(Refusal::Forbidden)?;
        let bad = |m: String| ServiceError::invalid("invalid_webhook", format!("webhook '{url}': {m}"));
        let addrs: Vec<SocketAddr> = match parsed.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, parsed.port)],
            Err(_) => tokio::time::timeout(
                std::time::Duration::from_secs(5),
                tokio::net::lookup_host((parsed.host.as_str(), parsed.port)),
            )
            .await
            .map_err(|_| Refusal::Unresolved(bad("its host did not resolve in time".into())))?
            .map_err(|e| Refusal::Unresolved(bad(format!("its host does not resolve ({e})"))))?
            .collect(),
        };
        if addrs.is_empty() {
            return Err(Refusal::Unresolved(bad("its host resolves to no address".into())));
        }
        if !self.host_allowed(&parsed.host) {
            if let Some(a) = addrs.iter().find(|a| !self.ip_allowed(a.ip())) {
                return Err(Refusal::Forbidden(bad(format!(
                    "its host resolves to {}, a loopback, private or link-local address (the operator can allow \
                     it with --webhook-allow)",
                    a.ip()
                ))));
            }
        }
        Ok((parsed, addrs))
    }
}

/// Why a webhook URL cannot be used now.
#[derive(Debug)]
pub enum Refusal {
    /// Not allowed (final).
    Forbidden(ServiceError),
    /// The host did not resolve (may pass later).
    Unresolved(ServiceError),
}

/// An address a webhook may reach with no operator permission.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8))
        }
    }
}

/// The parts of a webhook URL the policy and the deliverer need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    pub https: bool,
    /// Lower case, without brackets for IPv6.
    pub host: String,
    pub port: u16,
}

impl WebhookUrl {
    pub fn parse(url: &str) -> Result<WebhookUrl> {
        let bad = |m: &str| Err(ServiceError::invalid("invalid_webhook", format!("webhook '{url}': {m}")));
        if url.len() > 2048 {
            return bad("is longer than 2048 bytes");
        }
        if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return bad("holds spaces or control characters");
        }
        let (https, rest) = match url.split_once("://") {
            Some((s, rest)) if s.eq_ignore_ascii_case("http") => (false, rest),
            Some((s, rest)) if s.eq_ignore_ascii_case("https") => (true, rest),
            _ => return bad("must be an http:// or https:// URL"),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if authority.contains('@') {
            return bad("must not hold credentials");
        }
        let (host, port) = if let Some(h) = authority.strip_prefix('[') {
            let Some((h, after)) = h.split_once(']') else { return bad("has an unclosed IPv6 address") };
            (h, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return bad("has no host");
        }
        let port = match port {
            None => {
                if https {
                    443
                } else {
                    80
                }
            }
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return bad("has a bad port"),
            },
        };
        Ok(WebhookUrl { https, host: host.to_ascii_lowercase(), port })
    }
}

/// `POST /v1/webhooks`.
#[derive(Debug, Clone, Default)]
pub struct CreateWebhook {
    pub url: String,
    /// Empty: every type.
    pub event_types: Vec<String>,
    /// `whsec_` + base64, or any text of 16 to 256 bytes; `None`: one is made.
    pub secret: Option<String>,
}

/// A subscription as its owner sees it (never its secret, except once at creation).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookView {
    pub id: Uuid,
    pub url: String,
    pub event_types: Vec<String>,
    pub job_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub format: String,
    pub created_at: DateTime<Utc>,
}

impl From<WebhookRow> for WebhookView {
    fn from(r: WebhookRow) -> Self {
        WebhookView {
            id: r.id,
            url: r.url,
            event_types: r.event_types,
            job_id: r.job_id,
            session_id: r.session_id,
            format: r.format,
            created_at: r.created_at,
        }
    }
}

/// A webhook given with a job or a session: a subscription scoped to it.
#[derive(Debug, Clone, Default)]
pub struct WebhookSpec {
    pub url: String,
    pub secret: String,
    pub event_types: Vec<String>,
}

pub type DeliveryView = DeliveryRow;

/// A new random secret in the Standard Webhooks form (`whsec_` + base64 of 32 bytes).
pub fn new_secret() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(key))
}

/// The HMAC key of a secret: the base64 after `whsec_`, else the secret's bytes.
pub fn secret_key(secret: &str) -> Vec<u8> {
    use base64::Engine;
    secret
        .strip_prefix("whsec_")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

fn check_secret(secret: &str) -> Result<()> {
    validate::text("secret", secret)?;
    if !(16..=256).contains(&secret.len()) {
        return Err(ServiceError::invalid("invalid_secret", "a webhook secret has 16 to 256 bytes"));
    }
    if secret.starts_with("whsec_") && secret_key(secret).len() < 16 {
        return Err(ServiceError::invalid("invalid_secret", "a whsec_ secret holds base64 of at least 16 bytes"));
    }
    Ok(())
}

/// Check a list of event types (each known; one given twice counts once).
pub fn check_event_types(types: &[String]) -> Result<()> {
    if types.len() > EVENT_TYPES.len() {
        return Err(ServiceError::invalid("invalid_event_type", "too many event types"));
    }
    for t in types {
        if !EVENT_TYPES.contains(&t.as_str()) {
            return Err(ServiceError::invalid(
                "invalid_event_type",
                format!("unknown event type '{}' (one of {})", t.escape_debug(), EVENT_TYPES.join(", ")),
            ));
        }
    }
    Ok(())
}

/// Most subscriptions a project may have.
pub const MAX_WEBHOOKS_PER_PROJECT: i64 = 100;

impl Service {
    /// The URL policy of this server.
    pub fn webhook_policy(&self) -> &WebhookPolicy {
        &self.cfg.webhook_policy
    }

    /// Check a webhook URL as a subscription is made: its form, its host against the policy and
    /// what the host resolves to.
    pub async fn check_webhook_url(&self, url: &str) -> Result<()> {
        validate::text("url", url)?;
        self.cfg.webhook_policy.resolve(url).await.map(|_| ())
    }

    /// Check a job's or session's webhook before its transaction.
    pub async fn check_webhook_spec(&self, w: &WebhookSpec) -> Result<()> {
        self.check_webhook_url(&w.url).await?;
        check_secret(&w.secret)?;
        check_event_types(&w.event_types)
    }

    /// Subscribe `url` to the events of a job or a session, in the caller's transaction.
    pub(crate) async fn subscribe_scoped(
        &self,
        tx: &mut PgConnection,
        project: &str,
        spec: &WebhookSpec,
        job_id: Option<Uuid>,
        session_id: Option<Uuid>,
    ) -> Result<()> {
        store::insert(
            tx,
            NewWebhook {
                id: Uuid::now_v7(),
                project,
                url: &spec.url,
                event_types: &spec.event_types,
                secret: &spec.secret,
                job_id,
                session_id,
                format: "event",
            },
        )
        .await?;
        Ok(())
    }

    /// The webhook of a Pasqal batch: each terminal job of the batch is POSTed as Pasqal's job
    /// object with its result (the batch has no secret: one is made; the signature headers are
    /// sent all the same).
    pub(crate) async fn subscribe_batch(
        &self,
        tx: &mut PgConnection,
        project: &str,
        url: &str,
        batch: Uuid,
    ) -> Result<()> {
        let types: Vec<String> = JOB_TERMINAL.iter().map(|s| s.to_string()).collect();
        store::insert(
            tx,
            NewWebhook {
                id: Uuid::now_v7(),
                project,
                url,
                event_types: &types,
                secret: &new_secret(),
                job_id: None,
                session_id: Some(batch),
                format: "pasqal_job",
            },
        )
        .await?;
        Ok(())
    }

    /// `POST /v1/webhooks`: the subscription and its secret (shown this once).
    pub async fn create_webhook(&self, who: &Principal, cmd: CreateWebhook) -> Result<(WebhookView, String)> {
        self.check_webhook_url(&cmd.url).await?;
        check_event_types(&cmd.event_types)?;
        let secret = match cmd.secret {
            Some(s) => {
                check_secret(&s)?;
                s
            }
            None => new_secret(),
        };
        let mut tx = self.pool.begin().await?;
        qcloud_store::tokens::ensure_project(&mut tx, &who.project).await?;
        // Serialise this project's subscription count check.
        sqlx_lock_project(&mut tx, &who.project).await?;
        let live = store::list(&mut tx, &who.project, None, MAX_WEBHOOKS_PER_PROJECT).await?;
        if live.len() as i64 >= MAX_WEBHOOKS_PER_PROJECT {
            return Err(ServiceError::conflict(
                "too_many_webhooks",
                format!("a project has at most {MAX_WEBHOOKS_PER_PROJECT} webhooks; delete one first"),
            ));
        }
        let row = store::insert(
            &mut tx,
            NewWebhook {
                id: Uuid::now_v7(),
                project: &who.project,
                url: &cmd.url,
                event_types: &cmd.event_types,
                secret: &secret,
                job_id: None,
                session_id: None,
                format: "event",
            },
        )
        .await?;
        tx.commit().await?;
        Ok((row.into(), secret))
    }

    /// The caller's project's subscriptions (project-wide and scoped), newest first.
    pub async fn list_webhooks(
        &self,
        who: &Principal,
        cursor: Option<(DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> Result<Vec<WebhookView>> {
        let mut c = self.pool.acquire().await?;
        Ok(store::list(&mut c, &who.project, cursor, limit).await?.into_iter().map(Into::into).collect())
    }

    pub async fn get_webhook(&self, who: &Principal, id: Uuid) -> Result<WebhookView> {
        let mut c = self.pool.acquire().await?;
        store::get(&mut c, &who.project, id)
            .await?
            .map(Into::into)
            .ok_or_else(|| ServiceError::not_found("webhook", id))
    }

    /// Delete a subscription; its pending deliveries end `failed`.
    pub async fn delete_webhook(&self, who: &Principal, id: Uuid) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if !store::delete(&mut tx, &who.project, id).await? {
            return Err(ServiceError::not_found("webhook", id));
        }
        tx.commit().await?;
        Ok(())
    }

    /// A subscription's deliveries, newest first.
    pub async fn list_deliveries(
        &self,
        who: &Principal,
        id: Uuid,
        status: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<DeliveryView>> {
        if let Some(s) = status {
            if !["pending", "delivered", "failed"].contains(&s) {
                return Err(ServiceError::invalid(
                    "invalid_status",
                    format!("unknown delivery status '{}' (pending, delivered or failed)", s.escape_debug()),
                ));
            }
        }
        let mut c = self.pool.acquire().await?;
        if store::get(&mut c, &who.project, id).await?.is_none() {
            return Err(ServiceError::not_found("webhook", id));
        }
        Ok(store::deliveries(&mut c, id, status, before, limit).await?)
    }

    /// Claim due deliveries for `owner` (the deliverer of one replica).
    pub async fn claim_deliveries(&self, owner: Uuid, lease_ms: i64, limit: i64) -> Result<Vec<ClaimedDelivery>> {
        let mut tx = self.pool.begin().await?;
        let claimed = store::claim(&mut tx, owner, lease_ms, limit).await?;
        tx.commit().await?;
        Ok(claimed)
    }

    /// Record an attempt's outcome (ignored when the claim was lost to another replica).
    pub async fn finish_delivery(&self, id: i64, owner: Uuid, attempts: i32, outcome: &Outcome) -> Result<bool> {
        let mut c = self.pool.acquire().await?;
        let done = store::finish(&mut c, id, owner, attempts, outcome).await?;
        if done && !matches!(outcome, Outcome::Retry { .. }) {
            // The subscription's next delivery may go now.
            qcloud_store::notify(&mut c, qcloud_store::channel::DELIVERIES, "").await?;
        }
        Ok(done)
    }
}

async fn sqlx_lock_project(tx: &mut PgConnection, project: &str) -> Result<()> {
    store::lock_project(tx, project).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_link_local_hosts_are_refused_unless_allowed() {
        let none = WebhookPolicy::default();
        for bad in [
            "http://10.0.0.1/h",
            "http://169.254.169.254/latest/meta-data",
            "http://127.0.0.1:9/x",
            "http://[::1]/x",
            "http://[fe80::1]/x",
            "http://192.168.1.2",
            "http://localhost/x",
            "http://[::ffff:10.0.0.1]/x",
            "http://100.64.0.1/",
            "ftp://example.com/",
            "http://user:pw@example.com/",
            "http:///x",
        ] {
            assert!(none.check_url(bad).is_err(), "{bad}");
        }
        assert!(none.check_url("https://example.com/hook").is_ok());
        assert!(none.check_url("http://93.184.216.34:8080/x").is_ok());
        let p = WebhookPolicy::parse("127.0.0.1, 10.0.0.0/8,hooks.internal").unwrap();
        assert!(p.check_url("http://127.0.0.1:9/x").is_ok());
        assert!(p.check_url("http://10.2.3.4/x").is_ok());
        assert!(p.check_url("http://hooks.internal/x").is_ok());
        assert!(p.check_url("http://169.254.169.254/").is_err());
        assert!(WebhookPolicy::parse("not a host!").is_err());
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused() {
        let none = WebhookPolicy::default();
        // `localhost.` (with the root dot) escapes the name check but resolves to loopback.
        let e = none.resolve("http://localhost.:8080/x").await.unwrap_err();
        assert!(e.to_string().contains("loopback") || e.to_string().contains("resolve"), "{e}");
    }
}
