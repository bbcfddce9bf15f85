//! The `noop` driver: does no work and returns a small, honest result (job id and timings). With
//! `{"duration_ms": n}` in its payload the job holds the device for n milliseconds, so tests and
//! benchmarks can keep a device busy; `{"fail": "message"}` makes the job fail with that message.

use crate::{Driver, DriverError, JobOutput, JobSpec, Prepared};
use async_trait::async_trait;
use chrono::Utc;
use serde::Deserialize;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub struct NoopDriver;

/// Longest `duration_ms` accepted: one hour.
pub const MAX_DURATION_MS: u64 = 3_600_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoopPayload {
    #[serde(default)]
    duration_ms: u64,
    fail: Option<String>,
}

struct NoopJob {
    id: Uuid,
    duration: Duration,
    fail: Option<String>,
}

#[async_trait]
impl Driver for NoopDriver {
    fn prepare(&self, job: &JobSpec) -> Result<Prepared, DriverError> {
        if job.program != "noop" {
            return Err(DriverError::Invalid(format!("the noop driver runs program 'noop', not '{}'", job.program)));
        }
        let p: NoopPayload = if job.payload.is_null() {
            NoopPayload { duration_ms: 0, fail: None }
        } else {
            serde_json::from_value(job.payload.clone())
                .map_err(|e| DriverError::Invalid(format!("noop payload: {e}")))?
        };
        if p.duration_ms > MAX_DURATION_MS {
            return Err(DriverError::Invalid(format!(
                "noop payload: duration_ms must be at most {MAX_DURATION_MS}, got {}",
                p.duration_ms
            )));
        }
        Ok(Prepared::new(
            job.id,
            job.shots.unwrap_or(0),
            0,
            Box::new(NoopJob { id: job.id, duration: Duration::from_millis(p.duration_ms), fail: p.fail }),
        ))
    }

    async fn run(&self, job: Prepared, cancel: CancellationToken) -> Result<JobOutput, DriverError> {
        let prepared = job.prepared;
        let job = job
            .inner
            .downcast::<NoopJob>()
            .map_err(|_| DriverError::Fault("noop driver got a job prepared by another driver".into()))?;
        let started_at = Utc::now();
        let t0 = Instant::now();
        if !job.duration.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(job.duration) => {}
                _ = cancel.cancelled() => return Err(DriverError::Canceled),
            }
        }
        if let Some(msg) = job.fail {
            return Err(DriverError::Invalid(msg));
        }
        Ok(JobOutput {
            result: serde_json::json!({
                "job_id": job.id,
                "program": "noop",
                "started_at": started_at,
                "finished_at": Utc::now(),
                "duration_ms": t0.elapsed().as_secs_f64() * 1000.0,
                "prepare_started_at": prepared.map(|p| p.0),
                "prepare_finished_at": prepared.map(|p| p.1),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeviceSpec, Timing};
    use qcloud_core::DriverKind;

    fn spec(payload: serde_json::Value) -> JobSpec {
        JobSpec {
            id: Uuid::now_v7(),
            program: "noop".into(),
            payload,
            shots: None,
            device: DeviceSpec {
                name: "d".into(),
                driver: DriverKind::Noop,
                num_qubits: 5,
                timing: Timing::default(),
                config: serde_json::json!({}),
            },
        }
    }

    #[tokio::test]
    async fn runs_and_reports_its_timings() {
        let d = NoopDriver;
        let job = spec(serde_json::json!({"duration_ms": 20}));
        let id = job.id;
        let out = d.run(d.prepare(&job).unwrap(), CancellationToken::new()).await.unwrap();
        assert_eq!(out.result["job_id"], serde_json::json!(id));
        assert!(out.result["duration_ms"].as_f64().unwrap() >= 20.0);
    }

    #[tokio::test]
    async fn cancel_stops_a_long_job() {
        let d = NoopDriver;
        let p = d.prepare(&spec(serde_json::json!({"duration_ms": 60_000}))).unwrap();
        let cancel = CancellationToken::new();
        cancel.cancel();
        assert_eq!(d.run(p, cancel).await.unwrap_err(), DriverError::Canceled);
    }

    #[test]
    fn bad_payloads_are_invalid() {
        let d = NoopDriver;
        for bad in [
            serde_json::json!({"duration_ms": -1}),
            serde_json::json!({"duration_ms": "x"}),
            serde_json::json!({"surprise": 1}),
            serde_json::json!({"duration_ms": MAX_DURATION_MS + 1}),
            serde_json::json!([1, 2]),
        ] {
            assert!(matches!(d.prepare(&spec(bad)), Err(DriverError::Invalid(_))));
        }
    }

    #[tokio::test]
    async fn timing_model_adds_occupancy() {
        let d = NoopDriver;
        let mut job = spec(serde_json::Value::Null);
        job.shots = Some(10);
        let timing = Timing { setup_ms: 5.0, per_shot_ms: 1.0, ..Timing::default() };
        let budget = crate::memory::MemoryBudget::new(1 << 30);
        let (out, secs) =
            crate::execute(&d, d.prepare(&job).unwrap(), &timing, &budget, CancellationToken::new()).await;
        assert!(out.is_ok());
        assert!(secs >= 0.015, "occupancy 15 ms, took {secs}");
    }
}
