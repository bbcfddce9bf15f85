//! Server-wide settings of the service layer (rule 14: defaults follow the vendors, everything
//! configurable so tests run with TTLs of seconds).

use chrono::Duration;
use qcloud_core::rules::TtlPolicy;

#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub ttl: TtlPolicy,
    /// Rule 10: maximum execution time of a job when the request gives none.
    pub default_max_execution: Duration,
    /// Largest maximum execution time a request may ask for.
    pub max_max_execution: Duration,
    /// How long a worker's lease on a running job lasts without a heartbeat.
    pub lease: Duration,
    /// Attempts a job gets when its worker is lost, before it fails.
    pub max_attempts: i32,
    /// Rule 3: the sliding window of fair share, in seconds.
    pub fair_share_window_s: f64,
    /// Rule 3: most projects (queue heads) and waiting sessions a dispatch compares per device.
    pub candidate_limit: i64,
    /// Largest accepted job payload, in bytes of JSON.
    pub max_payload_bytes: usize,
    /// Largest shot count a job may ask for.
    pub max_shots: i64,
    /// How long an idempotency key names its job; after that the key may name a new one.
    pub idempotency_window: Duration,
    /// Hosts webhooks may reach besides public addresses (`--webhook-allow`).
    pub webhook_policy: crate::webhooks::WebhookPolicy,
    /// How long events (and finished webhook deliveries) are kept.
    pub event_retention: Duration,
    /// How often each replica's event hub looks for events to sequence.
    pub event_poll: std::time::Duration,
    /// An agent device whose agent has not been heard from for this long goes offline (no new
    /// assignments, rule 11) until its agent calls again.
    pub agent_offline_after: Duration,
    /// Longest an agent's claim waits for a job (the long poll).
    pub agent_max_wait: Duration,
    /// Terminal jobs (and their results) are deleted this long after they finished; `None`
    /// keeps them forever.
    pub job_retention: Option<Duration>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            ttl: TtlPolicy::default(),
            default_max_execution: Duration::hours(3),
            max_max_execution: Duration::hours(24),
            lease: Duration::seconds(10),
            max_attempts: 3,
            fair_share_window_s: 3600.0,
            candidate_limit: 32,
            max_payload_bytes: 16 << 20,
            max_shots: 10_000_000,
            idempotency_window: Duration::hours(24),
            webhook_policy: Default::default(),
            event_retention: Duration::days(7),
            event_poll: std::time::Duration::from_millis(50),
            agent_offline_after: Duration::seconds(60),
            agent_max_wait: Duration::seconds(30),
            job_retention: Some(Duration::days(30)),
        }
    }
}
