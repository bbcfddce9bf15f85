//! Rate limits per caller: a token bucket per principal (the `governor` crate, GCRA), checked
//! once the token is authenticated. Over the limit a request is 429 `rate_limited` with
//! `Retry-After`. Admins are not limited unless the settings say so.

use crate::error::ApiError;
use axum::http::StatusCode;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use qcloud_service::Principal;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The settings: requests per second and burst, per principal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second (may be fractional); 0 turns limiting off.
    pub per_second: f64,
    /// Requests a caller may send at once before the sustained rate applies (at least 1).
    pub burst: u32,
    /// Limit admins too.
    pub admins: bool,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit { per_second: 50.0, burst: 100, admins: false }
    }
}

impl RateLimit {
    /// No limit at all.
    pub const OFF: RateLimit = RateLimit { per_second: 0.0, burst: 1, admins: false };
}

/// Check keys between two sweeps of callers that have been quiet long enough to be forgotten.
const SWEEP_EVERY: u64 = 4096;

/// The limiter of one replica (each replica limits on its own).
pub struct Limiter {
    buckets: Option<DefaultKeyedRateLimiter<Principal>>,
    admins: bool,
    checks: AtomicU64,
}

impl Limiter {
    pub fn new(cfg: RateLimit) -> Limiter {
        let quota = (cfg.per_second.is_finite() && cfg.per_second > 0.0)
            .then(|| Duration::try_from_secs_f64(1.0 / cfg.per_second).ok())
            .flatten()
            .and_then(Quota::with_period)
            .map(|q| q.allow_burst(NonZeroU32::new(cfg.burst).unwrap_or(NonZeroU32::MIN)));
        Limiter { buckets: quota.map(governor::RateLimiter::keyed), admins: cfg.admins, checks: AtomicU64::new(0) }
    }

    /// Count one request of `who`; `Err` is the 429 to answer.
    pub fn check(&self, who: &Principal) -> Result<(), ApiError> {
        let Some(buckets) = &self.buckets else { return Ok(()) };
        if who.admin && !self.admins {
            return Ok(());
        }
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            buckets.retain_recent();
        }
        buckets.check_key(who).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            // Whole seconds, rounded up: a client that waits this long gets through.
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let seconds = seconds.max(1);
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests for this token; retry in {seconds} s"),
            );
            e.details = Some(serde_json::json!({ "retry_after_seconds": seconds }));
            e
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Principal {
        Principal { project: "p".into(), user: name.into(), admin: false }
    }

    #[test]
    fn over_the_burst_is_429_with_the_wait_and_callers_are_apart() {
        let l = Limiter::new(RateLimit { per_second: 0.01, burst: 2, admins: false });
        assert!(l.check(&user("a")).is_ok());
        assert!(l.check(&user("a")).is_ok());
        let e = l.check(&user("a")).unwrap_err();
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.code, "rate_limited");
        let wait = e.details.as_ref().unwrap()["retry_after_seconds"].as_u64().unwrap();
        assert!((1..=100).contains(&wait), "one request per 100 s: wait {wait}");
        assert!(l.check(&user("b")).is_ok(), "another caller has a bucket of its own");
    }

    #[test]
    fn admins_only_when_asked_and_zero_is_off() {
        let admin = Principal { admin: true, ..user("root") };
        let l = Limiter::new(RateLimit { per_second: 0.01, burst: 1, admins: false });
        for _ in 0..10 {
            assert!(l.check(&admin).is_ok());
        }
        let l = Limiter::new(RateLimit { per_second: 0.01, burst: 1, admins: true });
        assert!(l.check(&admin).is_ok());
        assert!(l.check(&admin).is_err());
        let l = Limiter::new(RateLimit { per_second: 0.0, burst: 1, admins: true });
        for _ in 0..10 {
            assert!(l.check(&user("a")).is_ok());
        }
    }
}
