//! The scheduling rules (docs/architecture.md) end to end: a real `qcloud serve` process with short TTLs,
//! driven over HTTP, checked over HTTP and, for the device invariants, on the rows themselves.
//! Nothing here asserts how long something took; lower bounds that a rule implies (a job waits
//! at least an interactive TTL) are checked on database timestamps.

use chrono::{DateTime, Utc};
use qcloud_e2e::{create_token, unique, Client, Server, TestDb, ADMIN_TOKEN};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

struct Env {
    db: TestDb,
    _server: Server,
    admin: Client,
    user: Client,
    other: Client,
}

async fn env(flags: &[&str]) -> Env {
    let db = TestDb::create().await.unwrap();
    let mut all = vec!["--no-seed", "--tick-ms", "100"];
    all.extend_from_slice(flags);
    let server = Server::start(&db, &all).await.unwrap();
    let admin = server.client(ADMIN_TOKEN);
    let user = server.client(&create_token(&db, "sched-a", "alice").unwrap());
    let other = server.client(&create_token(&db, "sched-b", "bob").unwrap());
    Env { db, _server: server, admin, user, other }
}

impl Env {
    async fn device(&self) -> String {
        let name = unique("sched");
        let (s, v) =
            self.admin.post("/v1/devices", json!({"name": name, "driver": "noop", "num_qubits": 5})).await.unwrap();
        assert_eq!(s, StatusCode::CREATED, "{v}");
        name
    }

    async fn set_status(&self, device: &str, status: &str) {
        let (s, v) = self
            .admin
            .call(Method::PATCH, &format!("/v1/devices/{device}"), Some(json!({"status": status})))
            .await
            .unwrap();
        assert_eq!(s, StatusCode::OK, "{v}");
    }
}

async fn submit(c: &Client, body: Value) -> String {
    let (s, v) = c.post("/v1/jobs", body).await.unwrap();
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["id"].as_str().unwrap().to_string()
}

async fn noop(c: &Client, device: &str, duration_ms: u64) -> String {
    submit(c, json!({"device": device, "program": "noop", "payload": {"duration_ms": duration_ms}})).await
}

async fn session_noop(c: &Client, session: &str, duration_ms: u64) -> String {
    submit(c, json!({"session_id": session, "program": "noop", "payload": {"duration_ms": duration_ms}})).await
}

async fn open_session(c: &Client, body: Value) -> String {
    let (s, v) = c.post("/v1/sessions", body).await.unwrap();
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["id"].as_str().unwrap().to_string()
}

fn time(v: &Value, field: &str) -> DateTime<Utc> {
    v[field].as_str().unwrap_or_else(|| panic!("{field} missing in {v}")).parse().unwrap()
}

fn state_is(state: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["state"] == state
}

/// One row per job that ran on the device: (id, started_at, finished_at), by start.
async fn intervals(db: &TestDb, device: &str) -> Vec<(Uuid, DateTime<Utc>, DateTime<Utc>)> {
    let mut c = db.connect().await.unwrap();
    sqlx::query_as(
        "SELECT id, started_at, finished_at FROM jobs WHERE device = $1 AND started_at IS NOT NULL
         ORDER BY started_at, finished_at",
    )
    .bind(device)
    .fetch_all(&mut c)
    .await
    .unwrap()
}

/// Rule 1 on the recorded rows: no job started before the previous one on the device finished.
fn assert_no_overlap(rows: &[(Uuid, DateTime<Utc>, DateTime<Utc>)]) {
    for w in rows.windows(2) {
        assert!(
            w[0].2 <= w[1].1,
            "jobs {} [{} .. {}] and {} [{} .. {}] overlap",
            w[0].0,
            w[0].1,
            w[0].2,
            w[1].0,
            w[1].1,
            w[1].2
        );
    }
}

/// Rule 4 (`deactivate`): an idle session keeps the device for its interactive TTL (a job-mode
/// job waits at least that long), then turns inactive and queues again when a job arrives.
#[tokio::test]
async fn interactive_ttl_deactivate() {
    let e = env(&["--interactive-ttl", "1"]).await;
    let dev = e.device().await;
    let s = open_session(&e.user, json!({"device": dev, "mode": "dedicated"})).await;
    let sj = session_noop(&e.user, &s, 0).await;
    let sj = e.user.wait_job(&sj, WAIT).await.unwrap();
    assert_eq!(sj["status"], "completed", "{sj}");
    let free = noop(&e.other, &dev, 0).await;
    let free = e.other.wait_job(&free, WAIT).await.unwrap();
    assert_eq!(free["status"], "completed", "{free}");
    let waited = time(&free, "started_at") - time(&sj, "finished_at");
    assert!(
        waited >= chrono::Duration::milliseconds(950),
        "the job-mode job started {waited} after the session's job ended: the idle session should hold the device 1 s"
    );
    let v = e.user.wait_session(&s, WAIT, state_is("inactive")).await.unwrap();
    assert_eq!(v["accepting_jobs"], true);

    // The inactive session queues again and runs its next job.
    let sj2 = session_noop(&e.user, &s, 0).await;
    assert_eq!(e.user.wait_job(&sj2, WAIT).await.unwrap()["status"], "completed");
    let (_, v) = e.user.get(&format!("/v1/sessions/{s}")).await.unwrap();
    assert!(v["state"] == "active" || v["state"] == "inactive", "{v}");
    let (st, v) = e.user.post(&format!("/v1/sessions/{s}/close"), json!({})).await.unwrap();
    assert_eq!(st, StatusCode::OK, "{v}");
    let v = e.user.wait_session(&s, WAIT, state_is("closed")).await.unwrap();
    assert_eq!(v["closed_reason"], "completed");
    assert_eq!(v["jobs"]["completed"], 2, "{v}");
}

/// Rule 4 (`time_out`, the Pasqal behaviour): the idle session closes as `idle_timeout`.
#[tokio::test]
async fn interactive_ttl_time_out() {
    let e = env(&[]).await;
    let dev = e.device().await;
    let s = open_session(
        &e.user,
        json!({"device": dev, "mode": "batch", "interactive_ttl": 0.5, "idle_policy": "time_out"}),
    )
    .await;
    let j = session_noop(&e.user, &s, 0).await;
    assert_eq!(e.user.wait_job(&j, WAIT).await.unwrap()["status"], "completed");
    let v = e.user.wait_session(&s, WAIT, state_is("closed")).await.unwrap();
    assert_eq!(v["closed_reason"], "idle_timeout", "{v}");
    assert_eq!(v["accepting_jobs"], false);
    let (st, v) = e.user.post("/v1/jobs", json!({"session_id": s, "program": "noop", "payload": {}})).await.unwrap();
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "session_closed");
    // The device is free again.
    let j = noop(&e.other, &dev, 0).await;
    assert_eq!(e.other.wait_job(&j, WAIT).await.unwrap()["status"], "completed");
}

/// Rule 5: the max TTL runs out while a job runs: that job finishes, the queued ones fail with a
/// reason, the session closes as `max_ttl`.
#[tokio::test]
async fn max_ttl_closes_session() {
    let e = env(&[]).await;
    let dev = e.device().await;
    let s = open_session(&e.user, json!({"device": dev, "mode": "dedicated", "max_ttl": 1})).await;
    let long = session_noop(&e.user, &s, 2500).await;
    let queued: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(session_noop(&e.user, &s, 0).await);
        }
        v
    };
    let v = e.user.wait_session(&s, WAIT, state_is("closed")).await.unwrap();
    assert_eq!(v["closed_reason"], "max_ttl", "{v}");
    let long = e.user.wait_job(&long, WAIT).await.unwrap();
    assert_eq!(long["status"], "completed", "the running job finishes: {long}");
    for id in &queued {
        let j = e.user.wait_job(id, WAIT).await.unwrap();
        assert_eq!(j["status"], "failed", "{j}");
        assert_eq!(j["reason_code"], "session_max_ttl", "{j}");
        assert!(j["reason"].as_str().unwrap().contains("maximum time to live"), "{j}");
        assert!(j["started_at"].is_null(), "never ran: {j}");
    }
    let (st, v) = e.user.post("/v1/jobs", json!({"session_id": s, "program": "noop", "payload": {}})).await.unwrap();
    assert_eq!((st, v["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("session_closed")));
}

/// Rules 2, 4, 12: a batch session and a dedicated session on one device, with job-mode jobs
/// around them: each session's jobs run in submission order, as one uninterrupted block (the
/// session holds the device), and no two jobs overlap on the device.
#[tokio::test]
async fn batch_and_dedicated_sessions_run_in_order_and_serially() {
    let e = env(&["--interactive-ttl", "30"]).await;
    let dev = e.device().await;
    // A blocker holds the device while everything is queued, so the order is the scheduler's.
    let blocker = noop(&e.other, &dev, 500).await;
    let batch = open_session(&e.user, json!({"device": dev, "mode": "batch"})).await;
    let dedicated = open_session(&e.other, json!({"device": dev, "mode": "dedicated"})).await;
    let mut batch_jobs = Vec::new();
    let mut dedicated_jobs = Vec::new();
    let mut free_jobs = Vec::new();
    for i in 0..15u64 {
        batch_jobs.push(session_noop(&e.user, &batch, i % 4 * 5).await);
        dedicated_jobs.push(session_noop(&e.other, &dedicated, (i + 2) % 4 * 5).await);
        if i % 3 == 0 {
            free_jobs.push(noop(&e.user, &dev, 5).await);
        }
    }
    for (c, s) in [(&e.user, &batch), (&e.other, &dedicated)] {
        let (st, v) = c.post(&format!("/v1/sessions/{s}/close"), json!({})).await.unwrap();
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    for (c, s) in [(&e.user, &batch), (&e.other, &dedicated)] {
        let v = c.wait_session(s, WAIT, state_is("closed")).await.unwrap();
        assert_eq!(v["closed_reason"], "completed", "{v}");
        assert_eq!(v["jobs"]["completed"], 15, "{v}");
    }
    for id in free_jobs.iter().chain([&blocker]) {
        let c = if id == &blocker { &e.other } else { &e.user };
        assert_eq!(c.wait_job(id, WAIT).await.unwrap()["status"], "completed");
    }

    let rows = intervals(&e.db, &dev).await;
    assert_eq!(rows.len(), 1 + 30 + free_jobs.len());
    assert_no_overlap(&rows);
    let order: Vec<String> = rows.iter().map(|r| r.0.to_string()).collect();
    for jobs in [&batch_jobs, &dedicated_jobs] {
        let pos: Vec<usize> = jobs.iter().map(|id| order.iter().position(|o| o == id).unwrap()).collect();
        assert!(pos.windows(2).all(|w| w[1] == w[0] + 1), "a session's jobs run in order as one block: {pos:?}");
    }
}

/// Rule 10: past its maximum execution time the job is stopped and fails with that reason; the
/// device goes on.
#[tokio::test]
async fn max_execution_time_stops_the_job() {
    let e = env(&[]).await;
    let dev = e.device().await;
    let slow = submit(
        &e.user,
        json!({"device": dev, "program": "noop", "payload": {"duration_ms": 5000}, "max_execution_time": 0.2}),
    )
    .await;
    let next = noop(&e.user, &dev, 0).await;
    let j = e.user.wait_job(&slow, WAIT).await.unwrap();
    assert_eq!(j["status"], "failed", "{j}");
    assert_eq!(j["reason_code"], "max_execution_time", "{j}");
    assert!(j["reason"].as_str().unwrap().contains("maximum execution time"), "{j}");
    assert_eq!(e.user.wait_job(&next, WAIT).await.unwrap()["status"], "completed");
    // Its result is refused with a reason, not a 5xx.
    let (st, v) = e.user.get(&format!("/v1/jobs/{slow}/result")).await.unwrap();
    assert_eq!((st, v["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("job_has_no_result")));
}

/// Rule 11: a paused device keeps its queue; the job running when it was paused finishes;
/// resumed, the queue runs.
#[tokio::test]
async fn paused_device_holds_its_queue_until_resumed() {
    let e = env(&[]).await;
    let dev = e.device().await;
    let running = noop(&e.user, &dev, 700).await;
    wait_running(&e.user, &running).await;
    e.set_status(&dev, "paused").await;
    let queued: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(noop(&e.user, &dev, 0).await);
        }
        v
    };
    assert_eq!(e.user.wait_job(&running, WAIT).await.unwrap()["status"], "completed", "the running job finishes");
    // Give the scheduler ample chances (ticks of 100 ms) to misbehave.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for id in &queued {
        let (_, v) = e.user.get(&format!("/v1/jobs/{id}")).await.unwrap();
        assert_eq!(v["status"], "queued", "a paused device takes no job: {v}");
    }
    let (_, d) = e.user.get(&format!("/v1/devices/{dev}")).await.unwrap();
    assert_eq!((d["status"].as_str(), d["queue_length"].as_i64()), (Some("paused"), Some(3)), "{d}");
    e.set_status(&dev, "online").await;
    for id in &queued {
        assert_eq!(e.user.wait_job(id, WAIT).await.unwrap()["status"], "completed");
    }
    assert_no_overlap(&intervals(&e.db, &dev).await);
}

/// A burst on one device: 200 zero-duration jobs from 8 concurrent clients all complete, each
/// exactly once (one attempt, one result), one at a time.
#[tokio::test]
async fn burst_of_200_jobs_on_one_device() {
    let e = env(&[]).await;
    let dev = e.device().await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let c = if i % 2 == 0 { e.user.clone() } else { e.other.clone() };
            let dev = dev.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in 0..25 {
                    ids.push(noop(&c, &dev, 0).await);
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    assert_eq!(ids.len(), 200);
    let mut conn = e.db.connect().await.unwrap();
    let t0 = Instant::now();
    loop {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        if left == 0 {
            break;
        }
        assert!(t0.elapsed() < WAIT * 2, "{left} jobs still unfinished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows: Vec<(String, i32, i64)> = sqlx::query_as(
        "SELECT j.status, j.attempt, (SELECT count(*) FROM job_results r WHERE r.job_id = j.id) FROM jobs j
         WHERE j.device = $1",
    )
    .bind(&dev)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(rows.len(), 200);
    for (status, attempt, results) in &rows {
        assert_eq!((status.as_str(), *attempt, *results), ("completed", 1, 1));
    }
    let iv = intervals(&e.db, &dev).await;
    assert_eq!(iv.len(), 200);
    assert_no_overlap(&iv);
}

/// Rules 7 and 9 with a real worker: canceling a running job stops its driver; canceling a
/// session cancels its queued jobs, lets the running one finish and closes it at once.
#[tokio::test]
async fn cancel_running_job_and_session() {
    let e = env(&[]).await;
    let dev = e.device().await;
    let long = noop(&e.user, &dev, 30_000).await;
    wait_running(&e.user, &long).await;
    let (st, v) = e.user.post(&format!("/v1/jobs/{long}/cancel"), json!({})).await.unwrap();
    assert_eq!(st, StatusCode::OK, "{v}");
    let j = e.user.wait_job(&long, WAIT).await.unwrap();
    assert_eq!((j["status"].as_str(), j["reason_code"].as_str()), (Some("canceled"), Some("canceled")), "{j}");

    let s = open_session(&e.user, json!({"device": dev, "mode": "dedicated"})).await;
    let running = session_noop(&e.user, &s, 1500).await;
    let queued = session_noop(&e.user, &s, 0).await;
    wait_running(&e.user, &running).await;
    let (st, v) = e.user.post(&format!("/v1/sessions/{s}/cancel"), json!({})).await.unwrap();
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!((v["state"].as_str(), v["closed_reason"].as_str()), (Some("closed"), Some("canceled")), "{v}");
    let q = e.user.wait_job(&queued, WAIT).await.unwrap();
    assert_eq!((q["status"].as_str(), q["reason_code"].as_str()), (Some("canceled"), Some("session_canceled")));
    let r = e.user.wait_job(&running, WAIT).await.unwrap();
    assert_eq!(r["status"], "completed", "the running job finishes: {r}");
    let after = noop(&e.other, &dev, 0).await;
    assert_eq!(e.other.wait_job(&after, WAIT).await.unwrap()["status"], "completed");
    assert_no_overlap(&intervals(&e.db, &dev).await);
}

/// Rule 8: a session that never gets a job closes after the pending TTL.
#[tokio::test]
async fn pending_session_without_jobs_closes() {
    let e = env(&["--pending-ttl", "1"]).await;
    let dev = e.device().await;
    let s = open_session(&e.user, json!({"device": dev, "mode": "batch"})).await;
    let v = e.user.wait_session(&s, WAIT, state_is("closed")).await.unwrap();
    assert_eq!(v["closed_reason"], "idle_timeout", "{v}");
    assert!(v["started_at"].is_null(), "{v}");
}

async fn wait_running(c: &Client, id: &str) {
    let t0 = Instant::now();
    loop {
        let (_, v) = c.get(&format!("/v1/jobs/{id}")).await.unwrap();
        if v["status"] == "running" {
            return;
        }
        assert!(t0.elapsed() < WAIT && v["status"] == "queued", "job {id} did not start: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
