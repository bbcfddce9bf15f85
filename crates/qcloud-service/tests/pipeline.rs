//! The job pipeline against real Postgres, driven step by step without the scheduler loops:
//! every scheduling rule (docs/architecture.md) that the service applies (dispatch, claim, completion with
//! chaining, session timers, recovery of lost workers, fencing). Each test gets a fresh
//! database. Timers use the database clock: tests that need a TTL to run out sleep past it
//! before asking the service to apply the timers.

use chrono::Duration;
use qcloud_core::rules::{SessionTtls, TtlPolicy};
use qcloud_service::devices::{AddDevice, UpdateDevice};
use qcloud_service::jobs::{CancelJob, SubmitJob};
use qcloud_service::pipeline::{ClaimedJob, Completion, Done, Fence, Lease, Outcome};
use qcloud_service::sessions::{CancelSession, CloseSession, OpenSession};
use qcloud_service::{
    DeviceStatus, DriverKind, IdlePolicy, Principal, Priority, Service, ServiceConfig, ServiceError, SessionMode,
};
use qcloud_store::PgPool;
use serde_json::json;
use uuid::Uuid;

/// Short TTLs: interactive and pending 300 ms, max 60 s (tests ask for shorter per session).
fn config() -> ServiceConfig {
    ServiceConfig {
        ttl: TtlPolicy {
            default: SessionTtls {
                max_ttl: Duration::seconds(60),
                interactive_ttl: Duration::milliseconds(300),
                pending_ttl: Duration::milliseconds(300),
            },
            max_max_ttl: Duration::hours(1),
            max_interactive_ttl: Duration::hours(1),
        },
        lease: Duration::seconds(60),
        max_attempts: 2,
        ..ServiceConfig::default()
    }
}

/// Long enough past a 300 ms TTL on a busy machine (the database clock decides).
const PAST_TTL: std::time::Duration = std::time::Duration::from_millis(600);

struct Env {
    svc: Service,
    /// The leader identity and term this test dispatches with.
    me: Uuid,
    term: i64,
    alice: Principal,
    bob: Principal,
}

async fn env_with(pool: PgPool, cfg: ServiceConfig) -> Env {
    let svc = Service::new(pool, cfg);
    let me = Uuid::now_v7();
    let term = svc.acquire_leadership(me, None, 600_000).await.unwrap().expect("first leader");
    let a = svc.create_token("proj-a", "alice", false).await.unwrap();
    let b = svc.create_token("proj-b", "bob", false).await.unwrap();
    let alice = svc.authenticate(&a).await.unwrap();
    let bob = svc.authenticate(&b).await.unwrap();
    Env { svc, me, term, alice, bob }
}

async fn env(pool: PgPool) -> Env {
    env_with(pool, config()).await
}

/// A job's row, read straight from the database (what the tests check the pipeline wrote).
#[derive(Debug, Clone, sqlx::FromRow)]
struct JobRow {
    id: Uuid,
    status: String,
    reason: Option<String>,
    reason_code: Option<String>,
    priority: i16,
    attempt: i32,
    lease_owner: Option<Uuid>,
    lease_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    assigned_term: Option<i64>,
    started_at: Option<chrono::DateTime<chrono::Utc>>,
    finished_at: Option<chrono::DateTime<chrono::Utc>>,
    usage_seconds: f64,
}

fn job_req(device: Option<&str>, session: Option<Uuid>, priority: Option<&str>) -> SubmitJob {
    SubmitJob {
        device: device.map(str::to_owned),
        session_id: session,
        priority: priority.map(|p| p.parse::<Priority>().unwrap()),
        ..SubmitJob::to_device("", "noop", json!({}))
    }
}

fn session_req(device: &str, mode: &str) -> OpenSession {
    OpenSession::new(device, mode.parse::<SessionMode>().unwrap())
}

impl Env {
    async fn device(&self, name: &str) -> String {
        self.svc.add_device(AddDevice::new(name, DriverKind::Noop, 5)).await.unwrap();
        name.to_string()
    }

    async fn job(&self, who: &Principal, device: &str) -> Uuid {
        self.svc.submit_job(who, job_req(Some(device), None, None)).await.unwrap().0.id
    }

    async fn job_prio(&self, who: &Principal, device: &str, prio: &str) -> Uuid {
        self.svc.submit_job(who, job_req(Some(device), None, Some(prio))).await.unwrap().0.id
    }

    async fn session_job(&self, who: &Principal, sid: Uuid) -> Uuid {
        self.svc.submit_job(who, job_req(None, Some(sid), None)).await.unwrap().0.id
    }

    async fn session(&self, who: &Principal, req: OpenSession) -> Uuid {
        self.svc.open_session(who, req).await.unwrap().id
    }

    /// The leader dispatches the device.
    async fn dispatch(&self, device: &str) {
        self.svc.dispatch_device(device, Fence::Leader { me: self.me, term: self.term }).await.unwrap();
    }

    /// A worker claims what the leader assigned.
    async fn claim(&self, worker: Uuid) -> Vec<ClaimedJob> {
        self.svc.claim_jobs(worker, 32).await.unwrap()
    }

    /// Claim exactly one job and check it is `id`.
    async fn claim_one(&self, worker: Uuid, id: Uuid) -> ClaimedJob {
        let jobs = self.claim(worker).await;
        assert_eq!(jobs.iter().map(|j| j.id).collect::<Vec<_>>(), vec![id], "claimed jobs");
        jobs.into_iter().next().unwrap()
    }

    /// Complete as `worker` (whose lease on the job may or may not hold): `None` when the lease
    /// was lost and nothing was recorded.
    async fn complete(&self, worker: Uuid, job: &ClaimedJob, chain: bool) -> Option<Completion> {
        let result = json!({"job_id": job.id});
        let job = ClaimedJob { lease: Lease { owner: worker, ..job.lease }, ..job.clone() };
        match self.svc.complete_job(&job, Outcome::Completed { result }, 0.01, chain).await {
            Ok(c) => Some(c),
            Err(ServiceError::LeaseLost) => None,
            Err(e) => panic!("completion of {}: {e}", job.id),
        }
    }

    /// Complete and return the chained next job, if any.
    async fn complete_chain(&self, worker: Uuid, job: &ClaimedJob) -> Option<ClaimedJob> {
        match self.complete(worker, job, true).await {
            Some(Completion { next }) => next.map(|n| *n),
            None => panic!("lease lost for {}", job.id),
        }
    }

    async fn timers(&self) -> usize {
        self.svc.run_session_timers(self.me, self.term).await.unwrap()
    }

    async fn row(&self, id: Uuid) -> JobRow {
        sqlx::query_as("SELECT * FROM jobs WHERE id = $1").bind(id).fetch_one(self.svc.pool()).await.unwrap()
    }

    async fn status(&self, id: Uuid) -> String {
        self.row(id).await.status
    }

    async fn running_on(&self, device: &str) -> Option<Uuid> {
        sqlx::query_scalar("SELECT id FROM jobs WHERE device = $1 AND status = 'running'")
            .bind(device)
            .fetch_optional(self.svc.pool())
            .await
            .unwrap()
    }

    async fn session_state(&self, sid: Uuid) -> (String, Option<String>, bool) {
        sqlx::query_as("SELECT state, closed_reason, accepting_jobs FROM sessions WHERE id = $1")
            .bind(sid)
            .fetch_one(self.svc.pool())
            .await
            .unwrap()
    }

    async fn holder(&self, device: &str) -> Option<Uuid> {
        sqlx::query_scalar("SELECT id FROM sessions WHERE device = $1 AND state = 'active'")
            .bind(device)
            .fetch_optional(self.svc.pool())
            .await
            .unwrap()
    }

    /// Leader dispatch, then one worker claims the job that started; returns it.
    async fn start(&self, device: &str, worker: Uuid, expected: Uuid) -> ClaimedJob {
        self.dispatch(device).await;
        assert_eq!(self.running_on(device).await, Some(expected), "job running on {device}");
        self.claim_one(worker, expected).await
    }
}

fn conflict_code(e: ServiceError) -> &'static str {
    match e {
        ServiceError::Conflict { code, .. } => code,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// Rule 1: a second job waits while one runs; the schema itself refuses a second running row.
#[sqlx::test(migrator = "qcloud_store::MIGRATOR")]
async fn rule1_one_running_job_per_device(pool: PgPool) {
    let e = env(pool).await;
    let dev = e.device("d1").await;
    let j1 = e.job(&e.alice, &dev).await;
    let j2 = e.job(&e.alice, &dev).await;
    e.dispatch(&dev).await;
    assert_eq!(e.running_on(&dev).await, Some(j1));
    e.dispatch(&dev).await;
    assert_eq!(e.status(j2).await, "queued", "second job waits while the first runs");
    assert!(!e.svc.devices_with_pending_work().await.unwrap().contains(&dev));

    // Bypass the service: the partial unique index names the broken invariant.
    let err = sqlx::query("UPDATE jobs SET status = 'running', started_at = now() WHERE id = $1")
        .bind(j2)
        .execute(e.svc.pool())
        .await
        .expect_err("a second running job on one device");
    let db = err.as_database_error().expect("database error");
    assert_eq!(db.constraint(), Some("jobs_one_running_per_device"));

    // Same for sessions: two active sessions on one device.
    let s1 = e.session(&e.alice, session_req(&dev, "dedicated")).await;
    let s2 = e.session(&e.bob, session_req(&dev, "dedicated")).await;
    sqlx::query("UPDATE sessions SET state = 'active' WHERE id = $1").bind(s1).execute(e.svc.pool()).await.unwrap();
    let err = sqlx::query("UPDATE sessions SET state = 'active' WHERE id = $1")
        .bind(s2)
        .execute(e.svc.pool())
        .await
        .expect_err("a second active session on one device");
    assert_eq!(err.as_database_error().unwrap().constraint(), Some("sessions_one_active_per_device"));
    sqlx::query("UPDATE sessions SET state = 'pending' WHERE id = $1").bind(s1).execute(e.svc.pool()).await.unwrap();

    // The first job ends: the second one starts in the same call (job mode chains too).
    let w = Uuid::now_v7();
    let r1 = e.claim_one(w, j1).await;
    let next = e.complete_chain(w, &r1).await.expect("next job chained");
    assert_eq!(next.id, j2);
    assert_eq!(e.status(next.id).await, "running");
    assert_eq!(e.row(next.id).await.lease_owner, Some(w));
    assert_eq!(e.status(j1).await, "completed");
    assert!(e.complete_chain(w, &next).await.is_none());
    assert_eq!(e.running_on(&dev).await, None);
}

/// Rule 2: while a session holds a device only its jobs run there; a job-mode job (and another
/// session) waits until the session lets the device go.
#[sqlx::test(migrator = "qcloud_store::MIGRATOR")]
async fn rule2_active_session_holds_the_device(pool: PgPool) {
    let e = env(pool).await;
    let dev = e.device("d1").await;
    let s = e.session(&e.alice, OpenSession { interactive_ttl: Some(600.0), ..session_req(&dev, "dedicated") }).await;
    let other = e.session(&e.bob, session_req(&dev, "dedicated")).await;
    let sj1 = e.session_job(&e.alice, s).await;
    let free_job = e.job(&e.bob, &dev).await;
    let other_job = e.session_job(&e.bob, other).await;
    let w = Uuid::now_v7();

    let r = e.start(&dev, w, sj1).await;
    assert_eq!(e.holder(&dev).await, Some(s));
    assert!(e.complete_chain(w, &r).await.is_none(), "the idle session keeps the device");
    assert_eq!(e.holder(&dev).await, Some(s));
    e.dispatch(&dev).await;
    assert_eq!(e.running_on(&dev).await, None, "nothing else runs on a held device");
    assert_eq!(e.status(free_job).await, "queued");
    assert_eq!(e.status(other_job).await, "queued");
    assert_eq!(e.timers().await, 0, "interactive TTL of 600 s has not run out");

    // A new job of the holder goes first, although the others came earlier.
    let sj2 = e.session_job(&e.alice, s).await;
    let r = e.start(&dev, w, sj2).await;
    assert!(e.complete_chain(w, &r).await.is_none());

    // Close: the drained session completes and the device goes to the next candidate (rule 3:
    // the job-mode job came before the other session's job).
    e.svc.close_session(&e.alice, CloseSession { id: s }).await.unwrap();
    assert_eq!(e.session_state(s).await, ("closed".into(), Some("completed".into()), false));
    let r = e.start(&dev, w, free_job).await;
    let next = e.complete_chain(w, &r).await.expect("the other session's job");
    assert_eq!(next.id, other_job);
    assert_eq!(e.holder(&dev).await, Some(other));
}

/// Rule 3: priority first, then fair share (least recent usage of the device), then arrival;
/// a waiting session competes like a job.
#[sqlx::test(migrator = "qcloud_store::MIGRATOR")]
async fn rule3_priority_then_fair_share_then_fifo(pool: PgPool) {
    let e = env(pool).await;
    let dev = e.device("d1").await;
    let w = Uuid::now_v7();

    // Priority: high, medium, low, whatever the arrival order.
    let low = e.job_prio(&e.alice, &dev, "low").await;
    let medium = e.job_prio(&e.alice, &dev, "medium").await;
    let high = e.job_prio(&e.alice, &dev, "high").await;
    let r = e.start(&dev, w, high).await;
    let r = e.complete_chain(w, &r).await.unwrap();
    assert_eq!(r.id, medium);
    let r = e.complete_chain(w, &r).await.unwrap();
    assert_eq!(r.id, low);
    assert!(e.complete_chain(w, &r).await.is_none());

    // Fair share: alice has used the device (three jobs above); bob, who came later, goes first.
    let a1 = e.job(&e.alice, &dev).await;
    let a2 = e.job(&e.alice, &dev).await;
    let b1 = e.job(&e.bob, &dev).await;
    let b2 = e.job(&e.bob, &dev).await;
    let r = e.start(&dev, w, b1).await;
    // Bob's usage (0.01 s per job) stays below alice's (0.03 s) after one and two jobs.
    let r = e.complete_chain(w, &r).await.unwrap();
    assert_eq!(r.id, b2, "bob still used less");
    let r = e.complete_chain(w, &r).await.unwrap();
    assert_eq!(r.id, a1, "first come among alice's jobs");
    let r = e.complete_chain(w, &r).await.unwrap();
    assert_eq!(r.id, a2);
    assert!(e.complete_chain(w, &r).await.is_none());

    // Same project, same priority: first come, first served; a waiting session is a candidate
    // ordered by its first queued job, and a high-priority session beats earlier jobs.
    let j1 = e.job(&e.alice, &dev).await;
    let s = e.session(&e.alice, OpenSession { priority: Priority::High, ..session_req(&dev, "batch") }).await;
    let j2 = e.job(&e.alice, &dev).await;
    let sj = e.session_job(&e.alice, s).await;
    let r = e.start(&dev, w, sj).await;
    assert_eq!(e.row(sj).await.priority, 2, "a session job takes the session's priority");
    e.svc.close_session(&e.alice, CloseSession { id: s }).await.unwrap();
    let r = e.complete_chain(w, &r).await.unwrap();
    assert_eq!(e.session_state(s).await.0, "closed");
    assert_eq!(r.id, j1);
    let r = e.complete_chain(w, &r).await.unwrap();
    assert_eq!(r.id, j2);
    assert!(e.complete_chain(w, &r).await.is_none());
}

/// Rule 4: the session's next job starts in the completing call; an idle session keeps the
/// device until its interactive TTL; then `deactivate` gives it back (the session queues again
/// on its next job).
#[sqlx::test(migrator = "qcloud_store::MIGRATOR")]
async fn rule4_chaining_and_deactivate(pool: PgPool) {
    let e = env(pool).await;
    let dev = e.device("d1").await;
    let s = e.session(&e.alice, session_req(&dev, "dedicated")).await; // interactive TTL 300 ms
    let sj1 = e.session_job(&e.alice, s).await;
    let sj2 = e.session_job(&e.alice, s).await;
    let w = Uuid::now_v7();
    let r = e.start(&dev, w, sj1).await;
    match e.complete(w, &r, true).await {
        Some(Completion { next: Some(n) }) => {
            assert_eq!(n.id, sj2);
            let row = e.row(n.id).await;
            assert_eq!(row.status, "running");
            assert_eq!(row.lease_owner, Some(w), "leased to the completing worker");
            assert_eq!(n.lease.owner, w, "leased to the completing worker");
            assert!(row.started_at.is_some());
            let r = *n;
            assert!(e.complete_chain(w, &r).await.is_none());
        }
        other => panic!("expected the next job chained, got {other:?}"),
    }
    let job = e.job(&e.bob, &dev).await;
    assert_eq!(e.holder(&dev).await, Some(s));

    tokio::time::sleep(PAST_TTL).await;
    assert_eq!(e.timers().await, 1);
    assert_eq!(e.session_state(s).await, ("inactive".into(), None, true));
    assert_eq!(e.holder(&dev).await, None);
    let r = e.start(&dev, w, job).await;

    // The inactive session queues again like any other when a job arrives.
    let sj3 = e.session_job(&e.alice, s).await;
    let next = e.complete_chain(w, &r).await.expect("the session is the next candidate");
    assert_eq!(next.id, sj3);
    assert_eq!(e.session_state(s).await.0, "active");
    assert!(e.complete_chain(w, &next).await.is_none());
}

/// Rule 4 with `time_out` (Pasqal): the idle session closes as `idle_timeout`.
#[sqlx::test(migrator = "qcloud_store::MIGRATOR")]
async fn rule4_time_out_closes_idle_session(pool: PgPool) {
    let e = env(pool).await;
    let dev = e.device("d1").await;
    let s = e.session(&e.alice, OpenSession { idle_policy: IdlePolicy::TimeOut, ..session_req(&dev, "batch") }).await;
    let sj = e.session_job(&e.alice, s).await;
    let w = Uuid::now_v7();
    let r = e.start(&dev, w, sj).await;
    assert!(e.complete_chain(w, &r).await.is_none());
    assert_eq!(e.session_state(s).await.0, "active");
    tokio::time::sleep(PAST_TTL).await;
    assert_eq!(e.timers().await, 1);
    assert_eq!(e.session_state(s).await, ("closed".into(), Some("idle_timeout".into()), false));
    assert_eq!(e.holder(&dev).await, None);
    let err = e.svc.submit_job(&e.alice, job_req(None, Some(s), None)).await.unwrap_err();
    assert_eq!(conflict_code(err), "session_closed");
    assert_eq!(e.timers().await, 0, "a closed session has no timer");
}

/// Rule 5: max TTL from the first activation: the running job finishes, queued jobs fail with a
/// reason, the session closes as `max_ttl`.
#[sqlx::test(migrator = "qcloud_store::MIGRATOR")]
async fn rule5_max_ttl(pool: PgPool) {
    let e = env(pool).await;
    let dev = e.device("d1").await;
    let s = e.session(&e.alice, OpenSession { max_ttl: Some(0.3), ..session_req(&dev, "dedicated") }).await;
    let sj1 = e.session_job(&e.alice, s).await;
    let sj2 = e.session_job(&e.alice, s).await;
    let sj3 = e.session_job(&e.alice, s).await;
    let w = Uuid::now_v7();
    let r = e.start(&dev, w, sj1).await;
    tokio::time::sleep(PAST_TTL).await;
    assert_eq!(e.timers().await, 1);
    assert_eq!(e.session_state(s).await, ("closed".into(), Some("max_ttl".into()), false));
    for id in [sj2, sj3] {
        let row = e.row(id).await;
        assert_eq!(row.status, "failed");
        assert_eq!(row.reason_code.as_deref(), Some("session_max_ttl"));
        assert!(row.reason.unwrap().contains("maximum time to live"));
    }
    assert_eq!(e.status(sj1).await, "running", "the running job finishes");
    let other = e.job(&e.bob, &dev).await;
    let next = e.complete_chain(w, &r).await.expect("the device is free again");
    assert_eq!(e.status(sj1).await, "completed");
    assert_eq!(next.id, other);
}

/// Rule 6: close drains: no new jobs, queued and running ones finish, then `completed`.
#[sqlx::test(migrator = "qcloud_store::MIGRATOR")]
async fn rule6_close_drains_then_completes(pool: PgPool) {
    let e = env(pool).await;
    let dev = e.device("d1").await;
    let s = e.session(&e.alice, session_req(&dev, "dedicated")).await;
    let sj1 = e.session_job(&e.alice, s).await;
    let sj2 = e.session_job(&e.alice, s).await;
    let w = Uuid::now_v7();
    let r = e.start(&dev, w, sj1).await;
    let view = e.svc.close_session(&e.alice, CloseSession { id: s }).await.unwrap();
    assert!(!view.accepting_jobs);
    assert_eq!(e.session_state(s).await, ("active".into(), None, false));
    let err = e.svc.submit_job(&e.alice, job_req(None, Some(s), None)).await.unwrap_err();
    assert_eq!(conflict_code(err), "session_not_accepting");
    let r = e.complete_chain(w, &r).await.expect("queued job still runs");
    assert_eq!(r.id, sj2);
    assert_eq!(e.session_state(s).await.0, "active");
    assert!(e.complete_chain(w, &r).await.is_none());
    assert_eq!(e.session_state(s).await, ("closed".into(), Some("completed".into()), false));
    assert_eq!(e.status(sj2).await, "completed");

    // Closing a session that never ran a job closes it at once.
    let s2 = e.session(&e.alice, session_req(&dev, "batch")).await;
    e.svc.close_session(&e.alice, CloseSession { id: s2 }).await.unwrap();
    assert_eq!(e.session_state(s2).await, ("closed".into(), Some("completed".into()), false));
}

/// Rule 7: cancel: queued jobs canceled, the running one finishes, closed now.
#[sqlx::test(migrator = "qcloud_store::MIGRATOR")]
async fn rule7_cancel_session(pool: PgPool) {
    let e = env(pool).await;
    let dev = e.device("d1").await;
    let s = e.session(&e.alice, session_req(&dev, "dedicated")).await;
    let sj1 = e.session_job(&e.alice, s).await;
    let sj2 = e.session_job(&e.alice, s).await;
    let other = e.job(&e.bob, &dev).await;
    let w = Uuid::now_v7();
    let r = e.start(&dev, w, sj1).await;
    e.svc.cancel_session(&e.alice, CancelSession { id: s }).await.unwrap();
    assert_eq!(e.session_state(s).await, ("closed".into(), Some("canceled".into()), false));
    let row = e.row(sj2).await;
    assert_eq!((row.status.as_str(), row.reason_code.as_deref()), ("canceled", Some("session_canceled")));
    assert_eq!(e.status(sj1).await, "running");
    e.dispatch(&dev).await;
    assert_eq!(e.running_on(&dev).await, Some(sj1), "nothing starts beside the running job");
    let next = e.complete_chain(w, &r).await.expect("the device goes on");
    assert_eq!(e.status(sj1).await, "completed");
    assert_eq!(next.id, other);
}

/// Rule 8: a session with no job for the pending TTL closes; one that waits with a queued job
/// does not.
#[sqlx::test(migrator = "qcloud_store::MIGRATOR")]
async fn rule8_pending_session_without_jobs_closes(pool: PgPool) {
    let e = env(pool).await;
    let dev = e.device("d1").await;
    let empty = e.session(&e.alice, session_req(&dev, "dedicated")).await;
    // A busy device and a session that waits for it with a job.
    let busy = e.job(&e.bob, &dev).await;
    let w = Uuid::now_v7();
    let r = e.start(&dev, w, busy).await;
    let waiting = e.session(&e.alice, session_req(&dev, "dedicated")).await;
    let wj = e.session_job(&e.alice, waiting).await;
    tokio::time::sleep(PAST_TTL).await;
    assert_eq!(e.timers().await, 1);
    assert_eq!(e.session_state(empty).await, ("closed".into(), Some("idle_timeout".into()), false));
    assert_eq!(e.session_state(waiting).await, ("pending".into(), None, true));
    let next = e.complete_chain(w, &r).await.unwrap();
    assert_eq!(next.id, wj);
}

/// Rule 9: cancel a queued job at once; a running one is asked to stop, then canceled by its
/// worker; a finished job cannot be canceled.
#[sqlx::test(migrator = "qcloud_store::MIGRATOR")]
async fn rule9_cancel_jobs(pool: PgPool) {
    let e = env(pool).await;
    let dev = e.device("d1").await;
    let j1 = e.job(&e.alice, &dev).await;
    let j2 = e.job(&e.alice, &dev).await;
    let w = Uuid::now_v7();
    let r = e.start(&dev, w, j1).await;

    let v = e.svc.cancel_job(&e.alice, CancelJob { id: j2 }).await.unwrap();
    assert_eq!(v.status.as_str(), "canceled");
    assert_eq!(v.reason_code.as_deref(), Some("canceled"));

    let v = e.svc.cancel_job(&e.alice, CancelJob { id: j1 }).await.unwrap();
    assert_eq!(v.status.as_str(), "running", "a running job stops cooperatively");
    assert_eq!(e.svc.heartbeat(w).await.unwrap(), vec![j1], "the worker learns of the cancel");
    assert!(e.svc.cancel_requested(j1).await.unwrap());
    let done =
        e.svc.complete_job(&r, Outcome::Canceled { reason: "canceled by the user".into() }, 0.0, true).await.unwrap();
    assert!(matches!(done, Completion { next: None }));
    assert_eq!(e.status(j1).await, "canceled");
    let err = e.svc.cancel_job(&e.alice, CancelJob { id: j1 }).await.unwrap_err();
    assert_eq!(conflict_code(err), "job_finished");
    // Another project's job is not found.
    assert!(matches!(e.svc.cancel_job(&e.bob, CancelJob { id: j1 }).await, Err(ServiceError::NotFound { .. })));

    // A queued job of a session: canceled, the session stays usable.
    let s = e.session(&e.alice, session_req(&dev, "dedicated")).await;
    let sj = e.session_job(&e.alice, s).await;
    e.svc.cancel_job(&e.alice, CancelJob { id: sj }).await.unwrap();
    assert_eq!(e.status(sj).await, "canceled");
    assert_eq!(e.holder(&dev).await, None);
}

/// Rule 11: a paused device gets no assignment (nor a chained one); its running job finishes;
/// resumed, it takes work again.
#[sqlx::test(migrator = "qcloud_store::MIGRATOR")]
async fn rule11_paused_device(pool: PgPool) {
    let e = env(pool).await;
    let dev = e.device("d1").await;
    let pause = |s: &str| UpdateDevice::status(s.parse::<DeviceStatus>().unwrap());
    let j1 = e.job(&e.alice, &dev).await;
    let j2 = e.job(&e.alice, &dev).await;
    let w = Uuid::now_v7();
    let r = e.start(&dev, w, j1).await;
    e.svc.update_device(&dev, pause("paused")).await.unwrap();
    assert!(e.complete_chain(w, &r).await.is_none(), "no chained job on a paused device");
    assert_eq!(e.status(j1).await, "completed");
    e.dispatch(&dev).await;
    assert_eq!(e.status(j2).await, "queued");
    assert!(!e.svc.devices_with_pending_work().await.unwrap().contains(&dev));

    // Offline: the same.
    e.svc.update_device(&dev, pause("offline")).await.unwrap();
    e.dispatch(&dev).await;
    assert_eq!(e.status(j2).await, "queued");

    e.svc.update_device(&dev, pause("online")).await.unwrap();
    assert!(e.svc.devices_with_pending_work().await.unwrap().contains(&dev));
    let r = e.start(&dev, w, j2).await;
    assert!(e.complete_chain(w, &r).await.is_none());
}

/// A worker that stops heartbeating loses its job: the leader queues it again (a new attempt)
/// and, after `max_attempts`, fails it with `worker_lost`. The lost worker cannot record it.
#[sqlx::test(migrator = "qcloud_store::MIGRATOR")]
async fn lost_worker_requeues_then_fails(pool: PgPool) {
    let e = env_with(pool, ServiceConfig { lease: Duration::milliseconds(200), ..config() }).await;
    let dev = e.device("d1").await;
    let j = e.job(&e.alice, &dev).await;
    let (w1, w2, w3) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let r1 = e.start(&dev, w1, j).await;
    assert_eq!(r1.attempt, 1);
    let before = e.row(j).await.lease_expires_at.unwrap();
    e.svc.heartbeat(w1).await.unwrap();
    assert!(e.row(j).await.lease_expires_at.unwrap() >= before, "heartbeat extends the lease");

    tokio::time::sleep(PAST_TTL).await;
    assert_eq!(e.svc.recover_lost_jobs(e.me, e.term).await.unwrap(), 1);
    let row = e.row(j).await;
    assert_eq!((row.status.as_str(), row.attempt, row.lease_owner), ("queued", 1, None));
    assert!(e.complete(w1, &r1, true).await.is_none());
    assert_eq!(e.status(j).await, "queued", "the lost worker recorded nothing");

    let r2 = e.start(&dev, w2, j).await;
    assert_eq!(r2.attempt, 2);
    tokio::time::sleep(PAST_TTL).await;
    assert_eq!(e.svc.recover_lost_jobs(e.me, e.term).await.unwrap(), 1);
    let row = e.row(j).await;
    assert_eq!((row.status.as_str(), row.reason_code.as_deref()), ("failed", Some("worker_lost")));
    assert!(e.complete(w2, &r2, true).await.is_none());
    assert_eq!(e.status(j).await, "failed");

    // A lost session job goes back to its session, which keeps the device.
    let s = e.session(&e.alice, OpenSession { interactive_ttl: Some(600.0), ..session_req(&dev, "dedicated") }).await;
    let sj = e.session_job(&e.alice, s).await;
    let _r = e.start(&dev, w1, sj).await;
    tokio::time::sleep(PAST_TTL).await;
    assert_eq!(e.svc.recover_lost_jobs(e.me, e.term).await.unwrap(), 1);
    assert_eq!(e.status(sj).await, "queued");
    assert_eq!(e.holder(&dev).await, Some(s));
    let free = e.job(&e.bob, &dev).await;
    let r3 = e.start(&dev, w3, sj).await;
    assert_eq!(r3.attempt, 2);
    assert!(e.complete_chain(w3, &r3).await.is_none());
    assert_eq!(e.status(sj).await, "completed");
    assert_eq!(e.status(free).await, "queued", "the session still holds the device");
}

/// Fencing: a deposed leader's writes fail with `not_leader`; a worker whose lease was taken
/// over (epoch bumped) gets `LeaseLost`, and nothing is recorded twice.
#[sqlx::test(migrator = "qcloud_store::MIGRATOR")]
async fn fencing_of_leaders_and_workers(pool: PgPool) {
    let e = env(pool).await;
    let dev = e.device("d1").await;
    let j = e.job(&e.alice, &dev).await;

    // A second replica cannot take a held lease; once it is given up, it takes the next term.
    let other = Uuid::now_v7();
    assert_eq!(e.svc.acquire_leadership(other, None, 600_000).await.unwrap(), None);
    assert_eq!(e.svc.acquire_leadership(e.me, Some(e.term), 600_000).await.unwrap(), Some(e.term));
    e.svc.release_leadership(e.me, e.term).await.unwrap();
    let t2 = e.svc.acquire_leadership(other, None, 600_000).await.unwrap().expect("new leader");
    assert!(t2 > e.term);
    assert_eq!(e.svc.acquire_leadership(e.me, Some(e.term), 600_000).await.unwrap(), None, "deposed");

    let deposed = Fence::Leader { me: e.me, term: e.term };
    let err = e.svc.dispatch_device(&dev, deposed).await.unwrap_err();
    assert!(matches!(err, ServiceError::NotLeader), "{err:?}");
    assert_eq!(e.status(j).await, "queued", "the deposed leader assigned nothing");
    assert!(matches!(e.svc.recover_lost_jobs(e.me, e.term).await, Err(ServiceError::NotLeader)));
    // A stale term of the right holder is refused too.
    let stale = Fence::Leader { me: other, term: e.term };
    assert!(matches!(e.svc.dispatch_device(&dev, stale).await, Err(ServiceError::NotLeader)));

    // The new leader assigns; worker 1 claims (epoch n) ...
    e.svc.dispatch_device(&dev, Fence::Leader { me: other, term: t2 }).await.unwrap();
    assert_eq!(e.row(j).await.assigned_term, Some(t2));
    let (w1, w2) = (Uuid::now_v7(), Uuid::now_v7());
    let r1 = e.claim_one(w1, j).await;
    // ... the job is handed back and worker 2 claims it (epoch n+1).
    e.svc.release_job(&r1).await.unwrap();
    e.svc.dispatch_device(&dev, Fence::Leader { me: other, term: t2 }).await.unwrap();
    let r2 = e.claim_one(w2, j).await;
    assert!(r2.lease.epoch > r1.lease.epoch);
    // Same owner, old epoch: refused as well.
    let stale_same_owner = ClaimedJob { lease: Lease { owner: w2, ..r1.lease }, ..r1.clone() };
    let refused = e.svc.complete_job(&stale_same_owner, Outcome::Completed { result: json!({}) }, 1.0, true).await;
    assert!(matches!(refused, Err(ServiceError::LeaseLost)));
    assert!(e.complete(w1, &r1, true).await.is_none());
    assert_eq!(e.status(j).await, "running");
    let done = e.svc.complete_job(&r2, Outcome::Completed { result: json!({"n": 2}) }, 0.5, true).await.unwrap();
    assert!(matches!(done, Completion { next: None }));
    // Late duplicates change nothing.
    assert!(e.complete(w2, &r2, true).await.is_none());
    assert!(e.complete(w1, &r1, true).await.is_none());

    let row = e.row(j).await;
    assert_eq!(row.status, "completed");
    assert_eq!(row.usage_seconds, 0.5);
    let results: Vec<serde_json::Value> = sqlx::query_scalar("SELECT result FROM job_results WHERE job_id = $1")
        .bind(j)
        .fetch_all(e.svc.pool())
        .await
        .unwrap();
    assert_eq!(results, vec![json!({"n": 2})]);
    let usage: f64 = sqlx::query_scalar("SELECT sum(seconds) FROM device_usage WHERE device = $1")
        .bind(&dev)
        .fetch_one(e.svc.pool())
        .await
        .unwrap();
    assert_eq!(usage, 0.5, "usage counted once");
}

/// Worker-fenced dispatch (what a completing worker does): starts the job leased to the caller.
#[sqlx::test(migrator = "qcloud_store::MIGRATOR")]
async fn worker_dispatch_leases_to_the_caller(pool: PgPool) {
    let e = env(pool).await;
    let dev = e.device("d1").await;
    let j = e.job(&e.alice, &dev).await;
    let w = Uuid::now_v7();
    let claimed = e.svc.dispatch_device(&dev, Fence::Worker { me: w }).await.unwrap().expect("leased to the caller");
    let row = e.row(j).await;
    assert_eq!((row.status.as_str(), row.lease_owner, row.attempt), ("running", Some(w), 1));
    assert!(e.claim(Uuid::now_v7()).await.is_empty(), "a leased job is not claimed again");
    assert!(matches!(e.complete(w, &claimed, true).await, Some(Completion { next: None })));
    assert_eq!(e.status(j).await, "completed");
}

/// A batched completion ([`Service::complete_jobs`]) records each job as the one-job path does
/// and makes the same decision for each freed device: rule 3 on a free device (bob's high
/// priority job before alice's earlier one), the session's next job on a device a session holds,
/// nothing on a device with an empty queue. A job whose lease was lost is refused on its own:
/// nothing of it is recorded and its device is not touched, while the others complete.
#[sqlx::test(migrator = "qcloud_store::MIGRATOR")]
async fn batched_completion_decides_like_the_one_job_path(pool: PgPool) {
    let e = env(pool).await;
    let w = Uuid::now_v7();
    let (d1, d2, d3, d4, d5) =
        (e.device("d1").await, e.device("d2").await, e.device("d3").await, e.device("d4").await, e.device("d5").await);
    let j1 = e.job(&e.alice, &d1).await;
    let j1_next = e.job(&e.alice, &d1).await;
    let j2 = e.job(&e.alice, &d2).await;
    let s = e.session(&e.alice, session_req(&d3, "dedicated")).await;
    let sj1 = e.session_job(&e.alice, s).await;
    let sj2 = e.session_job(&e.alice, s).await;
    let j4 = e.job(&e.alice, &d4).await;
    let j4_next = e.job(&e.alice, &d4).await;
    let j5 = e.job(&e.bob, &d5).await;
    let r1 = e.start(&d1, w, j1).await;
    let r2 = e.start(&d2, w, j2).await;
    let j2_alice = e.job(&e.alice, &d2).await;
    let j2_bob = e.job_prio(&e.bob, &d2, "high").await;
    let r3 = e.start(&d3, w, sj1).await;
    let r4 = e.start(&d4, w, j4).await;
    let r5 = e.start(&d5, w, j5).await;
    // d4's lease was lost: a stale epoch.
    let r4 = ClaimedJob { lease: Lease { epoch: r4.lease.epoch - 1, ..r4.lease }, ..r4 };
    let ok = |n: i64| Outcome::Completed { result: json!({"n": n}) };
    let failed = Outcome::Failed { reason: "the device broke".into(), code: "device_error" };
    let done = vec![
        Done { job: r1, outcome: ok(1), usage_seconds: 0.25 },
        Done { job: r2, outcome: ok(2), usage_seconds: 0.5 },
        Done { job: r3, outcome: ok(3), usage_seconds: 0.125 },
        Done { job: r4, outcome: ok(4), usage_seconds: 1.0 },
        Done { job: r5, outcome: failed, usage_seconds: 0.0 },
    ];
    let answers = e.svc.complete_jobs(w, &done).await.unwrap();
    assert_eq!(answers.len(), 5);
    let next = |i: usize| match &answers[i] {
        Ok(Completion { next }) => next.as_ref().map(|n| (n.id, n.lease.owner, n.session_id)),
        Err(err) => panic!("job {i}: {err:?}"),
    };
    assert_eq!(next(0), Some((j1_next, w, None)), "d1 goes on with its queue, leased to the worker");
    assert_eq!(next(1), Some((j2_bob, w, None)), "rule 3: bob's high priority job first");
    assert_eq!(next(2), Some((sj2, w, Some(s))), "the session holding d3 goes on");
    assert!(matches!(answers[3], Err(ServiceError::LeaseLost)), "{:?}", answers[3]);
    assert_eq!(next(4), None, "nothing queued on d5");

    for (id, status) in [(j1, "completed"), (j2, "completed"), (sj1, "completed"), (j5, "failed")] {
        assert_eq!(e.status(id).await, status, "{id}");
    }
    for (id, owner) in [(j1_next, Some(w)), (j2_bob, Some(w)), (sj2, Some(w))] {
        let row = e.row(id).await;
        assert_eq!((row.status.as_str(), row.lease_owner, row.attempt), ("running", owner, 1));
    }
    assert_eq!(e.status(j2_alice).await, "queued");
    let failed = e.row(j5).await;
    assert_eq!(
        (failed.reason.as_deref(), failed.reason_code.as_deref()),
        (Some("the device broke"), Some("device_error"))
    );
    // The lost lease: still running, nothing recorded, its device's queue untouched.
    assert_eq!(e.status(j4).await, "running");
    assert_eq!(e.status(j4_next).await, "queued");
    let results: Vec<(Uuid, serde_json::Value)> =
        sqlx::query_as("SELECT job_id, result FROM job_results ORDER BY result->>'n'")
            .fetch_all(e.svc.pool())
            .await
            .unwrap();
    assert_eq!(results, vec![(j1, json!({"n": 1})), (j2, json!({"n": 2})), (sj1, json!({"n": 3}))]);
    let usage: Vec<(String, f64)> =
        sqlx::query_as("SELECT device, sum(seconds) FROM device_usage GROUP BY device ORDER BY device")
            .fetch_all(e.svc.pool())
            .await
            .unwrap();
    assert_eq!(usage, vec![(d1.clone(), 0.25), (d2.clone(), 0.5), (d3.clone(), 0.125)]);
    let (session_usage, completed_at): (f64, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT usage_seconds, last_job_completed FROM sessions WHERE id = $1")
            .bind(s)
            .fetch_one(e.svc.pool())
            .await
            .unwrap();
    assert_eq!(session_usage, 0.125);
    assert!(completed_at.is_some());
    assert_eq!(e.holder(&d3).await, Some(s));
    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE type IN ('job.completed', 'job.failed') AND job_id = ANY($1)",
    )
    .bind(vec![j1, j2, sj1, j4, j5])
    .fetch_one(e.svc.pool())
    .await
    .unwrap();
    assert_eq!(events, 4, "one terminal event per finished job");
}

/// Every use case at once on two devices (submits into sessions and job mode, closes, session
/// and job cancels, pauses, leader dispatch and timers, two workers completing with chaining):
/// nothing but the expected conflicts comes back (a deadlock or any other database error fails
/// the test), and once the clients stop, every job ends and every session closes.
#[sqlx::test(migrator = "qcloud_store::MIGRATOR")]
async fn concurrent_use_cases_never_deadlock(pool: PgPool) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let e = Arc::new(env(pool).await);
    let devs = [e.device("d1").await, e.device("d2").await];
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    // Conflicts are answers (a session closed under a submit, a job that finished before its
    // cancel); anything else is a fault.
    fn check<T>(errors: &Mutex<Vec<String>>, what: &str, r: Result<T, ServiceError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(ServiceError::Conflict { .. }) => None,
            Err(err) => {
                errors.lock().unwrap().push(format!("{what}: {err:?}"));
                None
            }
        }
    }

    let mut background = Vec::new();
    // The leader.
    {
        let (e, devs, errors, stop) = (e.clone(), devs.clone(), errors.clone(), stop.clone());
        background.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                for d in &devs {
                    let fence = Fence::Leader { me: e.me, term: e.term };
                    check(&errors, "dispatch", e.svc.dispatch_device(d, fence).await);
                }
                check(&errors, "timers", e.svc.run_session_timers(e.me, e.term).await);
                check(&errors, "recover", e.svc.recover_lost_jobs(e.me, e.term).await);
                tokio::time::sleep(std::time::Duration::from_millis(3)).await;
            }
        }));
    }
    // Two workers: one completes job by job, the other completes what it holds in one batch.
    for batched in [false, true] {
        let (e, errors, stop) = (e.clone(), errors.clone(), stop.clone());
        background.push(tokio::spawn(async move {
            let me = Uuid::now_v7();
            while !stop.load(Ordering::Relaxed) {
                let claimed = check(&errors, "claim", e.svc.claim_jobs(me, 4).await).unwrap_or_default();
                if batched {
                    let mut held = claimed;
                    while !held.is_empty() {
                        let done: Vec<Done> = held
                            .drain(..)
                            .map(|job| Done {
                                job,
                                outcome: Outcome::Completed { result: json!({}) },
                                usage_seconds: 0.001,
                            })
                            .collect();
                        let answers = check(&errors, "complete batch", e.svc.complete_jobs(me, &done).await);
                        for answer in answers.unwrap_or_default() {
                            if let Some(Completion { next: Some(n) }) = check(&errors, "complete in batch", answer) {
                                held.push(*n);
                            }
                        }
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                    continue;
                }
                for job in claimed {
                    let mut current = Some(job);
                    while let Some(job) = current.take() {
                        let done = e.svc.complete_job(&job, Outcome::Completed { result: json!({}) }, 0.001, true);
                        if let Some(Completion { next }) = check(&errors, "complete", done.await) {
                            current = next.map(|n| *n);
                        }
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        }));
    }

    // The clients.
    let mut clients = Vec::new();
    for c in 0..4usize {
        let (e, devs, errors) = (e.clone(), devs.clone(), errors.clone());
        clients.push(tokio::spawn(async move {
            let who = if c % 2 == 0 { e.alice.clone() } else { e.bob.clone() };
            let mut sessions = Vec::new();
            for round in 0..6usize {
                let dev = &devs[(c + round) % 2];
                let mode = if round % 2 == 0 { "batch" } else { "dedicated" };
                let req = OpenSession { interactive_ttl: Some(0.05), ..session_req(dev, mode) };
                let s = e.svc.open_session(&who, req).await.unwrap().id;
                sessions.push(s);
                let mut jobs = Vec::new();
                for k in 0..8usize {
                    let req = if k % 3 == 0 { job_req(Some(dev), None, None) } else { job_req(None, Some(s), None) };
                    if let Some((v, _)) = check(&errors, "submit", e.svc.submit_job(&who, req).await) {
                        jobs.push(v.id);
                    }
                }
                if let Some(j) = jobs.get(round % jobs.len().max(1)) {
                    check(&errors, "cancel job", e.svc.cancel_job(&who, CancelJob { id: *j }).await);
                }
                match round % 3 {
                    0 => check(&errors, "close", e.svc.close_session(&who, CloseSession { id: s }).await).map(|_| ()),
                    1 => check(&errors, "cancel session", e.svc.cancel_session(&who, CancelSession { id: s }).await)
                        .map(|_| ()),
                    _ => Some(()), // left open: its interactive TTL deactivates it
                };
                if c == 0 && round % 2 == 1 {
                    let patch = |s: &str| UpdateDevice::status(s.parse::<DeviceStatus>().unwrap());
                    check(&errors, "pause", e.svc.update_device(dev, patch("paused")).await);
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    check(&errors, "resume", e.svc.update_device(dev, patch("online")).await);
                }
            }
            (who, sessions)
        }));
    }
    let mut all_sessions = Vec::new();
    for c in clients {
        all_sessions.push(c.await.unwrap());
    }
    for (who, sessions) in &all_sessions {
        for s in sessions {
            check(&errors, "final close", e.svc.close_session(who, CloseSession { id: *s }).await);
        }
    }

    let t0 = std::time::Instant::now();
    loop {
        let (jobs_left, sessions_left): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')),
                    (SELECT count(*) FROM sessions WHERE state <> 'closed')",
        )
        .fetch_one(e.svc.pool())
        .await
        .unwrap();
        if jobs_left == 0 && sessions_left == 0 {
            break;
        }
        assert!(t0.elapsed() < std::time::Duration::from_secs(90), "{jobs_left} jobs, {sessions_left} sessions left");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for b in background {
        b.await.unwrap();
    }
    let errors = errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "{} errors, first: {:#?}", errors.len(), &errors[..errors.len().min(5)]);
    let results: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobs j WHERE (j.status = 'completed') <> EXISTS (SELECT 1 FROM job_results r WHERE r.job_id = j.id)",
    )
    .fetch_one(e.svc.pool())
    .await
    .unwrap();
    assert_eq!(results, 0, "one result per completed job, none for the others");
}

/// Recorded intervals follow the order in which the device was really handed over: a leader
/// dispatch whose transaction began before a lost job was failed (it waited for the device
/// lock meanwhile) must not record a start before that job's end.
#[sqlx::test(migrator = "qcloud_store::MIGRATOR")]
async fn intervals_follow_the_device_handover(pool: PgPool) {
    let e = std::sync::Arc::new(
        env_with(pool, ServiceConfig { lease: Duration::milliseconds(200), max_attempts: 1, ..config() }).await,
    );
    let dev = e.device("d1").await;
    let lost = e.job(&e.alice, &dev).await;
    let next = e.job(&e.alice, &dev).await;
    let _r = e.start(&dev, Uuid::now_v7(), lost).await;
    tokio::time::sleep(PAST_TTL).await;

    // Hold the device lock so that the leader's dispatch transaction begins and then waits.
    let mut holder = e.svc.pool().begin().await.unwrap();
    sqlx::query("SELECT 1 FROM devices WHERE name = $1 FOR NO KEY UPDATE")
        .bind(&dev)
        .execute(&mut *holder)
        .await
        .unwrap();
    let dispatch = {
        let e = e.clone();
        let dev = dev.clone();
        tokio::spawn(async move { e.dispatch(&dev).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // Meanwhile the lost job is given up (this takes no device lock) ...
    assert_eq!(e.svc.recover_lost_jobs(e.me, e.term).await.unwrap(), 1);
    assert_eq!(e.status(lost).await, "failed");
    // ... and then the waiting dispatch gets the device and starts the next job.
    holder.commit().await.unwrap();
    dispatch.await.unwrap();
    let (a, b) = (e.row(lost).await, e.row(next).await);
    assert_eq!(b.status, "running");
    assert!(
        a.finished_at.unwrap() <= b.started_at.unwrap(),
        "job {} ended at {:?} but the next one is recorded as started at {:?}",
        a.id,
        a.finished_at,
        b.started_at
    );
}

/// A session job is checked the same whether it names its device (one statement that checks the
/// session as it inserts) or not (the session is read first, then a transaction): the session's
/// priority unless the job gives its own, and each refusal with its code, nothing stored and the
/// session untouched.
#[sqlx::test(migrator = "qcloud_store::MIGRATOR")]
async fn session_jobs_are_checked_alike_with_and_without_their_device(pool: PgPool) {
    let e = env(pool).await;
    let dev = e.device("d1").await;
    let other = e.device("d2").await;
    for named in [false, true] {
        let device = named.then_some(dev.as_str());
        let s = e.session(&e.alice, OpenSession { priority: Priority::High, ..session_req(&dev, "batch") }).await;
        let inherited = e.svc.submit_job(&e.alice, job_req(device, Some(s), None)).await.unwrap().0;
        assert_eq!((inherited.session_id, e.row(inherited.id).await.priority), (Some(s), 2), "named {named}");
        let own = e.svc.submit_job(&e.alice, job_req(device, Some(s), Some("low"))).await.unwrap().0;
        assert_eq!(e.row(own.id).await.priority, 0, "named {named}: the job's own priority");

        let jobs = || async {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM jobs").fetch_one(e.svc.pool()).await.unwrap()
        };
        let touched = || async {
            sqlx::query_scalar::<_, Option<chrono::DateTime<chrono::Utc>>>(
                "SELECT last_job_submitted FROM sessions WHERE id = $1",
            )
            .bind(s)
            .fetch_one(e.svc.pool())
            .await
            .unwrap()
        };
        let (before, at) = (jobs().await, touched().await);
        // Another project's session is not found; an unknown one neither.
        let err = e.svc.submit_job(&e.bob, job_req(device, Some(s), None)).await.unwrap_err();
        assert!(matches!(err, ServiceError::NotFound { .. }), "named {named}: {err:?}");
        let err = e.svc.submit_job(&e.alice, job_req(device, Some(Uuid::now_v7()), None)).await.unwrap_err();
        assert!(matches!(err, ServiceError::NotFound { .. }), "named {named}: {err:?}");
        // Another device than the session's.
        let err = e.svc.submit_job(&e.alice, job_req(Some(&other), Some(s), None)).await.unwrap_err();
        assert_eq!(conflict_code(err), "device_mismatch", "named {named}");
        // Draining, then closed.
        e.svc.close_session(&e.alice, CloseSession { id: s }).await.unwrap();
        let err = e.svc.submit_job(&e.alice, job_req(device, Some(s), None)).await.unwrap_err();
        assert_eq!(conflict_code(err), "session_not_accepting", "named {named}");
        e.svc.cancel_session(&e.alice, CancelSession { id: s }).await.unwrap();
        let err = e.svc.submit_job(&e.alice, job_req(device, Some(s), None)).await.unwrap_err();
        assert_eq!(conflict_code(err), "session_closed", "named {named}");
        assert_eq!((jobs().await, touched().await), (before, at), "named {named}: a refused job changes nothing");
    }
}
