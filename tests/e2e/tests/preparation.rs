//! Rule 12 with a preparation time (issue 8, "Batch faster than Session"): a device whose timing
//! model has `prep_ms` spends it on the worker pool before a job takes the device. A `batch`
//! session's jobs are prepared ahead, while an earlier job holds the device; a `dedicated`
//! session prepares each job only once the previous one is done. Checked on the order of the
//! timestamps the noop driver reports (one process clock), never on durations.

use chrono::{DateTime, Utc};
use qcloud_e2e::{create_token, unique, Client, Server, TestDb, ADMIN_TOKEN};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn time(v: &Value, field: &str) -> DateTime<Utc> {
    v[field].as_str().unwrap_or_else(|| panic!("{field} missing in {v}")).parse().unwrap()
}

async fn post(c: &Client, path: &str, body: Value) -> Value {
    let (s, v) = c.post(path, body).await.unwrap();
    assert!(s.is_success(), "POST {path}: {s} {v}");
    v
}

/// Run three noop jobs in a session of `mode` on a fresh device with prep 300 ms and setup
/// 300 ms; return each job's result (submission order).
async fn session_results(mode: &str) -> Vec<Value> {
    let db = TestDb::create().await.unwrap();
    let server = Server::start(&db, &["--no-seed", "--tick-ms", "100"]).await.unwrap();
    let admin = server.client(ADMIN_TOKEN);
    let user = server.client(&create_token(&db, "prep", "alice").unwrap());
    let dev = unique("prep");
    let timing = json!({"setup_ms": 300, "prep_ms": 300});
    let (s, v) = admin
        .post("/v1/devices", json!({"name": dev, "driver": "noop", "num_qubits": 5, "timing": timing}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["timing"]["prep_ms"], 300.0, "{v}");
    // Everything is queued while the device is paused, so the first job finds the others waiting.
    let (s, v) =
        admin.call(Method::PATCH, &format!("/v1/devices/{dev}"), Some(json!({"status": "paused"}))).await.unwrap();
    assert_eq!(s, StatusCode::OK, "{v}");
    let sid =
        post(&user, "/v1/sessions", json!({"device": dev, "mode": mode})).await["id"].as_str().unwrap().to_string();
    let mut jobs = Vec::new();
    for _ in 0..3 {
        let j = post(&user, "/v1/jobs", json!({"session_id": sid, "program": "noop", "payload": {}})).await;
        jobs.push(j["id"].as_str().unwrap().to_string());
    }
    post(&user, &format!("/v1/sessions/{sid}/close"), json!({})).await;
    let (s, v) =
        admin.call(Method::PATCH, &format!("/v1/devices/{dev}"), Some(json!({"status": "online"}))).await.unwrap();
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut results = Vec::new();
    for id in &jobs {
        let done = user.wait_job(id, WAIT).await.unwrap();
        assert_eq!(done["status"], "completed", "{done}");
        let (s, r) = user.get(&format!("/v1/jobs/{id}/result")).await.unwrap();
        assert_eq!(s, StatusCode::OK, "{r}");
        results.push(r["result"].clone());
    }
    results
}

#[tokio::test]
async fn a_batch_prepares_its_jobs_while_earlier_ones_hold_the_device() {
    let r = session_results("batch").await;
    for w in r.windows(2) {
        // The next job's preparation began before the previous job's device time ended ...
        assert!(
            time(&w[1], "prepare_started_at") < time(&w[0], "finished_at"),
            "prepared ahead: {} then {}",
            w[0],
            w[1]
        );
    }
    // ... indeed before the first job's own preparation was over: they ran side by side.
    assert!(time(&r[1], "prepare_started_at") < time(&r[0], "prepare_finished_at"), "{} / {}", r[0], r[1]);
    for x in &r {
        assert!(time(x, "prepare_started_at") < time(x, "prepare_finished_at"));
        assert!(time(x, "prepare_finished_at") <= time(x, "started_at"), "prepared before it runs: {x}");
    }
}

#[tokio::test]
async fn a_dedicated_session_prepares_each_job_just_in_time() {
    let r = session_results("dedicated").await;
    for w in r.windows(2) {
        // The device waits: the next job is prepared only after the previous one has run.
        assert!(
            time(&w[1], "prepare_started_at") >= time(&w[0], "finished_at"),
            "just in time: {} then {}",
            w[0],
            w[1]
        );
    }
    for x in &r {
        assert!(time(x, "prepare_finished_at") <= time(x, "started_at"), "prepared before it runs: {x}");
    }
}
