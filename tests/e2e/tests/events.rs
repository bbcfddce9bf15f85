//! The three watching channels of issue 13 over real sockets and a real Postgres: the event
//! stream (`GET /v1/events`, SSE), signed webhooks from the outbox, and `/metrics`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxStatus};
use axum::routing::post;
use base64::Engine;
use hmac::{Hmac, Mac};
use qcloud_e2e::{create_token, unique, Client, EventStream, Process, Server, SseEvent, TestDb, ADMIN_TOKEN};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

async fn device(admin: &Client) -> String {
    let name = unique("ev");
    let (s, v) = admin.post("/v1/devices", json!({"name": name, "driver": "noop", "num_qubits": 5})).await.unwrap();
    assert_eq!(s, StatusCode::CREATED, "{v}");
    name
}

async fn submit(c: &Client, body: Value) -> String {
    let (s, v) = c.post("/v1/jobs", body).await.unwrap();
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["id"].as_str().unwrap().to_string()
}

/// Read events until `done` says so (or fail after `WAIT`).
async fn read_until(stream: &mut EventStream, mut done: impl FnMut(&[SseEvent]) -> bool) -> Vec<SseEvent> {
    let t0 = Instant::now();
    let mut seen = Vec::new();
    while !done(&seen) {
        assert!(t0.elapsed() < WAIT, "stream stalled after {} events: {:?}", seen.len(), seen.last());
        if let Some(e) = stream.next(Duration::from_secs(5)).await.unwrap() {
            seen.push(e);
        }
    }
    seen
}

fn count_type(events: &[SseEvent], t: &str) -> usize {
    events.iter().filter(|e| e.event.as_deref() == Some(t)).count()
}

/// Ids strictly increase, and each job went queued -> running -> completed in that order.
fn assert_ordered(events: &[SseEvent], jobs: &[String]) {
    for w in events.windows(2) {
        assert!(w[0].seq() < w[1].seq(), "ids out of order: {:?} then {:?}", w[0].id, w[1].id);
    }
    let mut per_job: HashMap<String, Vec<String>> = HashMap::new();
    for e in events {
        let v = e.json();
        if let Some(j) = v["job_id"].as_str() {
            per_job.entry(j.to_string()).or_default().push(e.event.clone().unwrap());
        }
    }
    for j in jobs {
        assert_eq!(
            per_job.get(j).map(Vec::as_slice),
            Some(&["job.queued".to_string(), "job.running".to_string(), "job.completed".to_string()][..]),
            "job {j}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_receives_every_event_of_a_200_job_session_in_order() {
    let db = TestDb::create().await.unwrap();
    let server = Server::start(&db, &["--no-seed", "--tick-ms", "100"]).await.unwrap();
    let admin = server.client(ADMIN_TOKEN);
    let dev = device(&admin).await;
    let token = create_token(&db, "p200", "u").unwrap();
    let user = server.client(&token);
    let (s, sess) = user.post("/v1/sessions", json!({"device": dev, "mode": "batch"})).await.unwrap();
    assert_eq!(s, StatusCode::CREATED, "{sess}");
    let sid = sess["id"].as_str().unwrap().to_string();
    let mut stream =
        EventStream::open(&server.url, &token, &format!("/v1/events?session_id={sid}"), None).await.unwrap();
    let mut jobs = Vec::new();
    for _ in 0..200 {
        jobs.push(submit(&user, json!({"session_id": sid, "program": "noop", "payload": {}})).await);
    }
    let (s, v) = user.post(&format!("/v1/sessions/{sid}/close"), json!({})).await.unwrap();
    assert_eq!(s, StatusCode::OK, "{v}");
    let events = read_until(&mut stream, |e| count_type(e, "session.closed") == 1).await;
    assert_eq!(count_type(&events, "job.queued"), 200);
    assert_eq!(count_type(&events, "job.running"), 200);
    assert_eq!(count_type(&events, "job.completed"), 200);
    assert_eq!(count_type(&events, "session.active"), 1, "one activation (batch sessions chain their jobs)");
    assert_eq!(events.last().unwrap().json()["reason"], "completed");
    assert_ordered(&events, &jobs);
    // Every event names the session, and carries its timestamps.
    for e in &events {
        let v = e.json();
        assert_eq!(v["session_id"], sid.as_str(), "{v}");
        assert!(v["timestamp"].is_string() && v["data"].is_object(), "{v}");
    }
    let done = events.iter().find(|e| e.event.as_deref() == Some("job.completed")).unwrap().json();
    assert!(done["data"]["finished_at"].is_string() && done["data"]["started_at"].is_string(), "{done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_resumes_with_last_event_id_misses_none_and_sees_none_twice() {
    let db = TestDb::create().await.unwrap();
    let server = Server::start(&db, &["--no-seed", "--tick-ms", "100"]).await.unwrap();
    let admin = server.client(ADMIN_TOKEN);
    let dev = device(&admin).await;
    let token = create_token(&db, "resume", "u").unwrap();
    let user = server.client(&token);
    let path = format!("/v1/events?device={dev}");
    let mut first = EventStream::open(&server.url, &token, &path, None).await.unwrap();
    let mut jobs = Vec::new();
    for _ in 0..20 {
        jobs.push(submit(&user, json!({"device": dev, "program": "noop", "payload": {}})).await);
    }
    let mut got = read_until(&mut first, |e| e.len() >= 10).await;
    // The connection drops; jobs go on meanwhile.
    drop(first);
    for _ in 0..20 {
        jobs.push(submit(&user, json!({"device": dev, "program": "noop", "payload": {}})).await);
    }
    let last = got.last().unwrap().seq();
    let mut second = EventStream::open(&server.url, &token, &path, Some(last)).await.unwrap();
    let rest =
        read_until(&mut second, |e| count_type(&got, "job.completed") + count_type(e, "job.completed") == 40).await;
    got.extend(rest);
    let ids: Vec<i64> = got.iter().map(SseEvent::seq).collect();
    let unique_ids: HashSet<i64> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique_ids.len(), "an event was seen twice");
    assert_eq!(got.len(), 120, "every job's three events, once each");
    assert_ordered(&got, &jobs);
    // The same history read from the start (`after=0`) is the same list.
    let mut full = EventStream::open(&server.url, &token, &format!("{path}&after=0"), None).await.unwrap();
    let all = read_until(&mut full, |e| e.len() >= 120).await;
    assert_eq!(all.iter().map(SseEvent::seq).collect::<Vec<_>>(), ids);
    // A Last-Event-ID that is no event id is a 400, not a stream.
    let r = reqwest::Client::new()
        .get(format!("{}/v1/events", server.url))
        .bearer_auth(&token)
        .header("last-event-id", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_last_event_id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_on_replica_b_sees_jobs_completed_by_replica_a() {
    let db = TestDb::create().await.unwrap();
    let a = Server::start(&db, &["--no-seed", "--tick-ms", "100"]).await.unwrap();
    let admin = a.client(ADMIN_TOKEN);
    let dev = device(&admin).await;
    let token = create_token(&db, "replicas", "u").unwrap();
    // A's worker takes a first, long job; the jobs submitted while it runs chain onto the same
    // worker (a completion starts the device's next job in its own transaction), so A runs them.
    let user_a = a.client(&token);
    let first = submit(&user_a, json!({"device": dev, "program": "noop", "payload": {"duration_ms": 1500}})).await;
    let mut conn = db.connect().await.unwrap();
    let t0 = Instant::now();
    loop {
        let owner: Option<uuid::Uuid> =
            sqlx::query_scalar("SELECT lease_owner FROM jobs WHERE id = $1::uuid AND status = 'running'")
                .bind(&first)
                .fetch_optional(&mut conn)
                .await
                .unwrap()
                .flatten();
        if let Some(o) = owner {
            assert_eq!(o, a.replica_id, "replica A's worker runs the first job");
            break;
        }
        assert!(t0.elapsed() < WAIT, "the first job never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b = Server::start(&db, &["--no-seed", "--no-leader", "--tick-ms", "100"]).await.unwrap();
    let mut stream =
        EventStream::open(&b.url, &token, &format!("/v1/events?device={dev}&type=job.completed"), None).await.unwrap();
    let mut jobs = vec![first];
    for _ in 0..29 {
        jobs.push(submit(&user_a, json!({"device": dev, "program": "noop", "payload": {"duration_ms": 5}})).await);
    }
    let events = read_until(&mut stream, |e| e.len() >= 30).await;
    let seen: HashSet<String> = events.iter().map(|e| e.json()["job_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(seen, jobs.iter().cloned().collect::<HashSet<_>>());
    println!("replica B's stream saw all 30 completions of the jobs replica A ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_projects_events_never_appear() {
    let db = TestDb::create().await.unwrap();
    let server = Server::start(&db, &["--no-seed", "--tick-ms", "100"]).await.unwrap();
    let admin = server.client(ADMIN_TOKEN);
    let dev = device(&admin).await;
    let (ta, tb) = (create_token(&db, "tenant_a", "a").unwrap(), create_token(&db, "tenant_b", "b").unwrap());
    let (ua, ub) = (server.client(&ta), server.client(&tb));
    let mut sa = EventStream::open(&server.url, &ta, "/v1/events", None).await.unwrap();
    let b_job = submit(&ub, json!({"device": dev, "program": "noop", "payload": {}})).await;
    ub.wait_job(&b_job, WAIT).await.unwrap();
    let a_job = submit(&ua, json!({"device": dev, "program": "noop", "payload": {}})).await;
    let events = read_until(&mut sa, |e| count_type(e, "job.completed") == 1).await;
    for e in &events {
        assert_eq!(e.json()["job_id"], a_job.as_str(), "project A saw {e:?}");
    }
    // Naming the other project's job is a 404, as for the job itself.
    let r = reqwest::Client::new()
        .get(format!("{}/v1/events?job_id={b_job}", server.url))
        .bearer_auth(&ta)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Its webhooks are invisible too.
    let (s, w) = ub.post("/v1/webhooks", json!({"url": "http://93.184.216.34/hook"})).await.unwrap();
    assert_eq!(s, StatusCode::CREATED, "{w}");
    let (s, _) = ua.get(&format!("/v1/webhooks/{}", w["id"].as_str().unwrap())).await.unwrap();
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = ua.get(&format!("/v1/webhooks/{}/deliveries", w["id"].as_str().unwrap())).await.unwrap();
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keep_alives_are_sent_on_an_idle_stream_that_outlives_the_request_timeout() {
    let db = TestDb::create().await.unwrap();
    let flags = ["--no-seed", "--sse-keep-alive", "0.2", "--request-timeout", "1", "--idle-timeout", "1"];
    let server = Server::start(&db, &flags).await.unwrap();
    let dev = device(&server.client(ADMIN_TOKEN)).await;
    let token = create_token(&db, "idle", "u").unwrap();
    let mut s = EventStream::open(&server.url, &token, "/v1/events", None).await.unwrap();
    let got = s.next(Duration::from_millis(2500)).await.unwrap();
    assert!(got.is_none(), "{got:?}");
    assert!(s.comments >= 5, "{} keep-alive comments in 2.5 s", s.comments);
    // Past the request and idle timeouts, the stream still carries events.
    let job = submit(&server.client(&token), json!({"device": dev, "program": "noop", "payload": {}})).await;
    let e = s.next(Duration::from_secs(10)).await.unwrap().expect("an event after the idle time");
    assert_eq!(e.json()["job_id"], job.as_str());
}

// --- webhooks -------------------------------------------------------------------------------

#[derive(Clone, Default)]
struct Receiver {
    /// (headers, body) of every request, in arrival order.
    got: Arc<Mutex<Vec<(HeaderMap, String)>>>,
    /// Answer 500 to this many requests first.
    fail_first: Arc<Mutex<usize>>,
    /// Hold the first request this long before answering.
    hang_first: Arc<Mutex<Option<Duration>>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: String) -> AxStatus {
    r.got.lock().unwrap().push((headers, body));
    let hang = r.hang_first.lock().unwrap().take();
    if let Some(d) = hang {
        tokio::time::sleep(d).await;
    }
    let mut f = r.fail_first.lock().unwrap();
    if *f > 0 {
        *f -= 1;
        return AxStatus::INTERNAL_SERVER_ERROR;
    }
    AxStatus::NO_CONTENT
}

/// A webhook receiver (a small axum server) on `port` (0: any); returns its URL and a handle.
async fn start_receiver(r: Receiver, port: u16) -> (String, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let addr = l.local_addr().unwrap();
    let app = axum::Router::new().route("/hook", post(receive)).with_state(r);
    let h = tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (format!("http://{addr}/hook"), h)
}

/// Check a delivery's Standard Webhooks signature with the secret (computed here, not by the
/// server's code).
fn assert_signed(secret: &str, headers: &HeaderMap, body: &str) {
    let id = headers["webhook-id"].to_str().unwrap();
    let ts = headers["webhook-timestamp"].to_str().unwrap();
    let key = base64::engine::general_purpose::STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    let want = format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()));
    assert_eq!(headers["webhook-signature"].to_str().unwrap(), want, "signature of {id}");
    let age = chrono::Utc::now().timestamp() - ts.parse::<i64>().unwrap();
    assert!((-5..300).contains(&age), "timestamp {ts} is {age} s old");
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < WAIT, "waited {WAIT:?} for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const WEBHOOK_FLAGS: &[&str] = &[
    "--no-seed",
    "--tick-ms",
    "100",
    "--webhook-allow",
    "127.0.0.1",
    "--webhook-retry-base",
    "0.2",
    "--webhook-retry-max",
    "1",
    "--webhook-timeout",
    "2",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_that_fails_three_times_gets_the_event_once_per_retry_signed() {
    let db = TestDb::create().await.unwrap();
    let server = Server::start(&db, WEBHOOK_FLAGS).await.unwrap();
    let dev = device(&server.client(ADMIN_TOKEN)).await;
    let token = create_token(&db, "hooks", "u").unwrap();
    let user = server.client(&token);
    let r = Receiver { fail_first: Arc::new(Mutex::new(3)), ..Receiver::default() };
    let (url, _h) = start_receiver(r.clone(), 0).await;
    let (s, w) = user.post("/v1/webhooks", json!({"url": url, "event_types": ["job.completed"]})).await.unwrap();
    assert_eq!(s, StatusCode::CREATED, "{w}");
    let secret = w["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    let wid = w["id"].as_str().unwrap().to_string();
    let job = submit(&user, json!({"device": dev, "program": "noop", "payload": {}})).await;
    wait_for("four attempts", || r.got.lock().unwrap().len() >= 4).await;
    // No fifth: the fourth was answered 2xx.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = r.got.lock().unwrap().clone();
    assert_eq!(got.len(), 4, "three failures and one success, nothing more");
    let first_id = got[0].0["webhook-id"].clone();
    for (h, body) in &got {
        assert_eq!(h["webhook-id"], first_id, "the same event id on every retry");
        assert_eq!(body, &got[0].1, "the same body on every retry");
        assert_signed(&secret, h, body);
    }
    let v: Value = serde_json::from_str(&got[0].1).unwrap();
    assert_eq!(v["type"], "job.completed");
    assert_eq!(v["job_id"], job.as_str());
    let (s, d) = user.get(&format!("/v1/webhooks/{wid}/deliveries")).await.unwrap();
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["items"].as_array().unwrap().len(), 1, "{d}");
    assert_eq!(d["items"][0]["status"], "delivered", "{d}");
    assert_eq!(d["items"][0]["attempts"], 4, "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_that_was_down_gets_everything_after_in_order() {
    let db = TestDb::create().await.unwrap();
    let server = Server::start(&db, WEBHOOK_FLAGS).await.unwrap();
    let dev = device(&server.client(ADMIN_TOKEN)).await;
    let token = create_token(&db, "down", "u").unwrap();
    let user = server.client(&token);
    // A port that is free now and taken later by the receiver.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/hook");
    let (s, w) = user.post("/v1/webhooks", json!({"url": url, "event_types": ["job.completed"]})).await.unwrap();
    assert_eq!(s, StatusCode::CREATED, "{w}");
    let wid = w["id"].as_str().unwrap().to_string();
    let mut jobs = Vec::new();
    for _ in 0..10 {
        jobs.push(submit(&user, json!({"device": dev, "program": "noop", "payload": {}})).await);
    }
    for j in &jobs {
        user.wait_job(j, WAIT).await.unwrap();
    }
    // Down for a while (the issue says a minute; 10 s with retries at most 1 s apart shows the
    // same: attempts fail, nothing is lost).
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (_, d) = user.get(&format!("/v1/webhooks/{wid}/deliveries?status=pending")).await.unwrap();
    assert_eq!(d["items"].as_array().unwrap().len(), 10, "all pending while the receiver is down: {d}");
    assert!(d["items"].as_array().unwrap().iter().any(|i| i["attempts"].as_i64().unwrap() > 1), "{d}");
    let r = Receiver::default();
    let (_, _h) = start_receiver(r.clone(), port).await;
    wait_for("ten deliveries", || r.got.lock().unwrap().len() >= 10).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = r.got.lock().unwrap().clone();
    assert_eq!(got.len(), 10, "each event once");
    let order: Vec<String> = got
        .iter()
        .map(|(_, b)| serde_json::from_str::<Value>(b).unwrap()["job_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(order, jobs, "delivered in event order (the device ran the jobs in submit order)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhooks_to_private_and_link_local_hosts_are_refused() {
    let db = TestDb::create().await.unwrap();
    let server = Server::start(&db, &["--no-seed", "--webhook-allow", "127.0.0.1"]).await.unwrap();
    let dev = device(&server.client(ADMIN_TOKEN)).await;
    let token = create_token(&db, "ssrf", "u").unwrap();
    let user = server.client(&token);
    for url in
        ["http://10.0.0.1/h", "http://169.254.169.254/latest/meta-data/", "http://[::1]:8080/h", "http://localhost./h"]
    {
        let (s, v) = user.post("/v1/webhooks", json!({"url": url})).await.unwrap();
        assert_eq!(s, StatusCode::BAD_REQUEST, "{url}: {v}");
        assert_eq!(v["error"]["code"], "invalid_webhook", "{url}: {v}");
        let (s, v) = user
            .post(
                "/v1/jobs",
                json!({"device": dev, "program": "noop", "payload": {},
                       "webhook": {"url": url, "secret": "0123456789abcdef0123"}}),
            )
            .await
            .unwrap();
        assert_eq!(s, StatusCode::BAD_REQUEST, "{url}: {v}");
    }
    let mut conn = db.connect().await.unwrap();
    let (jobs, hooks): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM webhooks)")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!((jobs, hooks), (0, 0), "a refused request stores nothing");
    // The allowed host passes.
    let (s, v) = user.post("/v1/webhooks", json!({"url": "http://127.0.0.1:9/h"})).await.unwrap();
    assert_eq!(s, StatusCode::CREATED, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_jobs_own_webhook_gets_its_events_signed_with_its_secret() {
    let db = TestDb::create().await.unwrap();
    let server = Server::start(&db, WEBHOOK_FLAGS).await.unwrap();
    let dev = device(&server.client(ADMIN_TOKEN)).await;
    let token = create_token(&db, "ownhook", "u").unwrap();
    let user = server.client(&token);
    let r = Receiver::default();
    let (url, _h) = start_receiver(r.clone(), 0).await;
    let secret = "a-secret-of-my-own-choosing";
    let job = submit(
        &user,
        json!({"device": dev, "program": "noop", "payload": {}, "webhook": {"url": url, "secret": secret}}),
    )
    .await;
    // Another job without a webhook sends nothing.
    submit(&user, json!({"device": dev, "program": "noop", "payload": {}})).await;
    wait_for("three events", || r.got.lock().unwrap().len() >= 3).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let got = r.got.lock().unwrap().clone();
    let types: Vec<String> = got
        .iter()
        .map(|(_, b)| serde_json::from_str::<Value>(b).unwrap()["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(types, ["job.queued", "job.running", "job.completed"]);
    for (h, b) in &got {
        assert_eq!(serde_json::from_str::<Value>(b).unwrap()["job_id"], job.as_str());
        let id = h["webhook-id"].to_str().unwrap();
        let ts = h["webhook-timestamp"].to_str().unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{id}.{ts}.{b}").as_bytes());
        let want = format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()));
        assert_eq!(h["webhook-signature"].to_str().unwrap(), want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pasqal_batch_webhook_gets_each_terminal_job_as_a_pasqal_job_object() {
    let db = TestDb::create().await.unwrap();
    // The default devices include the analog ones the Pasqal facade runs on.
    let mut flags = WEBHOOK_FLAGS.to_vec();
    flags.retain(|f| *f != "--no-seed");
    let server = Server::start(&db, &flags).await.unwrap();
    let token = create_token(&db, "pasqal_hooks", "u").unwrap();
    let user = server.client(&token);
    let r = Receiver::default();
    let (url, _h) = start_receiver(r.clone(), 0).await;
    let (s, projects) = user.get("/pasqal/account/api/v1/projects").await.unwrap();
    assert_eq!(s, StatusCode::OK, "{projects}");
    let pid = projects["data"][0]["id"].as_str().unwrap().to_string();
    const SEQ: &str = r#"{"version":"1","name":"s","register":[{"name":"q0","x":0.0,"y":0.0}],"channels":{"g":"rydberg_global"},"variables":{},"operations":[],"measurement":"ground-rydberg","device":"MockDevice"}"#;
    let (s, b) = user
        .post(
            "/pasqal/core-fast/api/v1/batches",
            json!({"project_id": pid, "sequence_builder": SEQ, "device_type": "EMU_FREE", "webhook": url,
                   "jobs": [{"runs": 10}, {"runs": 20}]}),
        )
        .await
        .unwrap();
    assert!(s.is_success(), "{s}: {b}");
    let batch = b["data"]["id"].as_str().unwrap().to_string();
    wait_for("two job posts", || r.got.lock().unwrap().len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let got = r.got.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "one POST per terminal job");
    let mut runs = Vec::new();
    for (h, body) in &got {
        assert!(h.contains_key("webhook-signature"));
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["batch_id"], batch.as_str(), "{v}");
        assert_eq!(v["status"], "DONE", "{v}");
        let counter = v["result"]["counter"].as_object().unwrap_or_else(|| panic!("no result counter: {v}"));
        let shots: i64 = counter.values().map(|n| n.as_i64().unwrap()).sum();
        assert_eq!(shots, v["runs"].as_i64().unwrap(), "{v}");
        runs.push(v["runs"].as_i64().unwrap());
    }
    runs.sort();
    assert_eq!(runs, [10, 20]);
    // A batch webhook to a private address is refused in Pasqal's envelope.
    let (s, v) = user
        .post(
            "/pasqal/core-fast/api/v1/batches",
            json!({"project_id": pid, "sequence_builder": SEQ, "device_type": "EMU_FREE", "webhook": "http://10.0.0.1/h"}),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_of_the_delivering_replica_loses_no_delivery() {
    let db = TestDb::create().await.unwrap();
    let flags: Vec<&str> =
        WEBHOOK_FLAGS.iter().copied().chain(["--lease-ms", "1500", "--leader-ttl-ms", "1500"]).collect();
    let mut a = Process::start(&db, &flags).await.unwrap();
    let mut b = Process::start(&db, &flags).await.unwrap();
    let admin = a.client(ADMIN_TOKEN);
    let dev = device(&admin).await;
    let token = create_token(&db, "kill", "u").unwrap();
    let user = a.client(&token);
    // The first request hangs (past the webhook timeout): the replica that sends it is killed
    // while it waits.
    let r = Receiver { hang_first: Arc::new(Mutex::new(Some(Duration::from_secs(30)))), ..Receiver::default() };
    let (url, _h) = start_receiver(r.clone(), 0).await;
    let (s, w) = user.post("/v1/webhooks", json!({"url": url, "event_types": ["job.completed"]})).await.unwrap();
    assert_eq!(s, StatusCode::CREATED, "{w}");
    let wid = w["id"].as_str().unwrap().to_string();
    let job = submit(&user, json!({"device": dev, "program": "noop", "payload": {}})).await;
    wait_for("the first attempt", || !r.got.lock().unwrap().is_empty()).await;
    let mut conn = db.connect().await.unwrap();
    let owner: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT locked_by FROM webhook_deliveries WHERE webhook_id = $1::uuid")
            .bind(&wid)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    let owner = owner.expect("the delivery is claimed while in flight");
    let a_id = replica_of(&a);
    let (victim, survivor) = if owner == a_id { (&mut a, &b) } else { (&mut b, &a) };
    victim.kill();
    println!("killed the delivering replica {owner}");
    // The lease (2 x timeout + 10 s) runs out and the other replica delivers again.
    let t0 = Instant::now();
    loop {
        let (s, d) = survivor.client(&token).get(&format!("/v1/webhooks/{wid}/deliveries")).await.unwrap();
        assert_eq!(s, StatusCode::OK);
        if d["items"][0]["status"] == "delivered" {
            break;
        }
        assert!(t0.elapsed() < WAIT, "not delivered after the kill: {d}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("redelivered {:.1} s after the kill", t0.elapsed().as_secs_f64());
    let got = r.got.lock().unwrap().clone();
    assert!(got.len() >= 2, "delivered again after the kill");
    for (h, body) in &got {
        assert_eq!(h["webhook-id"], got[0].0["webhook-id"], "the same event id, for the receiver to deduplicate");
        assert_eq!(serde_json::from_str::<Value>(body).unwrap()["job_id"], job.as_str());
    }
}

fn replica_of(p: &Process) -> uuid::Uuid {
    let t0 = Instant::now();
    loop {
        let text = p.log_text();
        if let Some(line) = text.lines().find(|l| l.contains("scheduler started")) {
            let tail = line.split("replica=").nth(1).expect("replica=");
            let id: String = tail.chars().filter(|c| c.is_ascii_hexdigit() || *c == '-').take(36).collect();
            return id.parse().expect("replica id");
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "no 'scheduler started' line");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// --- metrics -----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_parse_and_count_the_jobs_run() {
    let db = TestDb::create().await.unwrap();
    let server = Server::start(&db, &["--no-seed", "--tick-ms", "100"]).await.unwrap();
    let dev = device(&server.client(ADMIN_TOKEN)).await;
    let token = create_token(&db, "metered", "u").unwrap();
    let user = server.client(&token);
    let mut jobs = Vec::new();
    for i in 0..12 {
        let payload = if i % 4 == 0 { json!({"fail": "on purpose"}) } else { json!({}) };
        jobs.push(submit(&user, json!({"device": dev, "program": "noop", "payload": payload})).await);
    }
    for j in &jobs {
        user.wait_job(j, WAIT).await.unwrap();
    }
    // A queued job stays queued on a paused device: the queue-depth gauge shows it.
    let (s, v) = server
        .client(ADMIN_TOKEN)
        .call(reqwest::Method::PATCH, &format!("/v1/devices/{dev}"), Some(json!({"status": "paused"})))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK, "{v}");
    submit(&user, json!({"device": dev, "program": "noop", "payload": {}})).await;
    let t0 = Instant::now();
    let samples = loop {
        let text = reqwest::get(format!("{}/metrics", server.url)).await.unwrap().text().await.unwrap();
        let lines: Vec<std::io::Result<String>> = text.lines().map(|l| Ok(l.to_string())).collect();
        let scrape = prometheus_parse::Scrape::parse(lines.into_iter()).expect("Prometheus text");
        let value = |name: &str, labels: &[(&str, &str)]| -> Option<f64> {
            scrape
                .samples
                .iter()
                .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
                .map(|s| match s.value {
                    prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Gauge(v)
                    | prometheus_parse::Value::Untyped(v) => v,
                    _ => f64::NAN,
                })
        };
        let got = (
            value("qcloud_jobs_total", &[("device", &dev), ("event", "accepted"), ("program", "noop")]),
            value("qcloud_jobs_total", &[("device", &dev), ("event", "completed")]),
            value("qcloud_jobs_total", &[("device", &dev), ("event", "failed")]),
            value("qcloud_queue_depth", &[("device", &dev)]),
        );
        if got == (Some(13.0), Some(9.0), Some(3.0), Some(1.0)) {
            break scrape;
        }
        assert!(t0.elapsed() < WAIT, "metrics never matched the jobs run: {got:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let names: HashSet<&str> = samples.samples.iter().map(|s| s.metric.as_str()).collect();
    for want in [
        "qcloud_http_requests_total",
        "qcloud_job_queue_seconds_count",
        "qcloud_job_run_seconds_count",
        "qcloud_running_jobs",
        "qcloud_sessions",
        "qcloud_leader",
        "qcloud_leader_term",
        "qcloud_db_pool_connections",
        "qcloud_scheduler_round_seconds_count",
    ] {
        assert!(names.contains(want), "{want} missing from /metrics: {names:?}");
    }
    // HTTP requests are labelled by route pattern, never by an id.
    let routes: BTreeMap<String, f64> = samples
        .samples
        .iter()
        .filter(|s| s.metric == "qcloud_http_requests_total")
        .filter_map(|s| s.labels.get("route").map(|r| (r.to_string(), 0.0)))
        .collect();
    assert!(routes.contains_key("/v1/jobs"), "{routes:?}");
    // (prometheus-parse cuts label values at `}`, so the route patterns are checked in the text.)
    let text = reqwest::get(format!("{}/metrics", server.url)).await.unwrap().text().await.unwrap();
    assert!(text.contains(r#"route="/v1/jobs/{id}""#), "no /v1/jobs/{{id}} route label");
    assert!(!text.contains(&jobs[0]), "a job id in a label");
}

// --- CLI -------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn qcloud_jobs_watch_follows_a_job_to_its_end_and_exits_by_its_outcome() {
    let db = TestDb::create().await.unwrap();
    let server = Server::start(&db, &["--no-seed", "--tick-ms", "100"]).await.unwrap();
    let dev = device(&server.client(ADMIN_TOKEN)).await;
    let token = create_token(&db, "watcher", "u").unwrap();
    let user = server.client(&token);
    let watch = |what: &'static str, id: String| {
        let (url, token) = (server.url.clone(), token.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(qcloud_e2e::qcloud_bin())
                .args([what, "watch", &id, "--url", &url, "--token", &token])
                .output()
                .unwrap()
        })
    };
    let ok = submit(&user, json!({"device": dev, "program": "noop", "payload": {"duration_ms": 800}})).await;
    let out = watch("jobs", ok.clone()).await.unwrap();
    let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{:?}: {text}", out.status);
    assert!(text.contains("completed"), "{text}");
    let bad = submit(&user, json!({"device": dev, "program": "noop", "payload": {"fail": "on purpose"}})).await;
    let out = watch("jobs", bad).await.unwrap();
    let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("failed") && text.contains("on purpose"), "{text}");
    let (_, s) = user.post("/v1/sessions", json!({"device": dev, "mode": "batch"})).await.unwrap();
    let sid = s["id"].as_str().unwrap().to_string();
    for _ in 0..5 {
        submit(&user, json!({"session_id": sid, "program": "noop", "payload": {"duration_ms": 50}})).await;
    }
    user.post(&format!("/v1/sessions/{sid}/close"), json!({})).await.unwrap();
    let out = watch("sessions", sid).await.unwrap();
    let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("5/5") && text.contains("closed (completed)"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_https_receiver_signed_by_the_configured_ca_gets_its_events_and_an_untrusted_one_none() {
    // Two receivers behind TLS terminators, each with a CA of its own; the server trusts one.
    let trusted = Receiver::default();
    let (url, _h) = start_receiver(trusted.clone(), 0).await;
    let (port, ca_pem) = qcloud_e2e::tls_terminator(url["http://".len()..].trim_end_matches("/hook").into()).await;
    let untrusted = Receiver::default();
    let (url2, _h2) = start_receiver(untrusted.clone(), 0).await;
    let (port2, _) = qcloud_e2e::tls_terminator(url2["http://".len()..].trim_end_matches("/hook").into()).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let db = TestDb::create().await.unwrap();
    let mut flags: Vec<&str> =
        WEBHOOK_FLAGS.iter().map(|f| if *f == "127.0.0.1" { "localhost,127.0.0.1" } else { f }).collect();
    flags.extend(["--webhook-ca-cert", ca.to_str().unwrap()]);
    let server = Server::start(&db, &flags).await.unwrap();
    let dev = device(&server.client(ADMIN_TOKEN)).await;
    let token = create_token(&db, "tls", "u").unwrap();
    let user = server.client(&token);
    let mut hooks = Vec::new();
    for p in [port, port2] {
        let (s, w) = user
            .post(
                "/v1/webhooks",
                json!({"url": format!("https://localhost:{p}/hook"), "event_types": ["job.completed"]}),
            )
            .await
            .unwrap();
        assert_eq!(s, StatusCode::CREATED, "{w}");
        hooks.push((w["id"].as_str().unwrap().to_string(), w["secret"].as_str().unwrap().to_string()));
    }
    let job = submit(&user, json!({"device": dev, "program": "noop", "payload": {}})).await;
    wait_for("the delivery over TLS", || !trusted.got.lock().unwrap().is_empty()).await;
    let got = trusted.got.lock().unwrap().clone();
    assert_signed(&hooks[0].1, &got[0].0, &got[0].1);
    assert_eq!(serde_json::from_str::<Value>(&got[0].1).unwrap()["job_id"], job.as_str());
    // The other one is retried with the reason on the delivery, and never reached.
    let t0 = Instant::now();
    let error = loop {
        let (_, d) = user.get(&format!("/v1/webhooks/{}/deliveries", hooks[1].0)).await.unwrap();
        if let Some(e) = d["items"][0]["last_error"].as_str() {
            break e.to_string();
        }
        assert!(t0.elapsed() < WAIT, "no failed attempt recorded: {d}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(error.contains("certificate"), "{error}");
    assert!(untrusted.got.lock().unwrap().is_empty(), "the untrusted receiver got a request");

    // A CA file with no certificate stops the server at start, naming the setting.
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "nothing here\n").unwrap();
    let e = Server::start(&db, &["--no-seed", "--webhook-ca-cert", bad.to_str().unwrap()]).await.err().unwrap();
    assert!(format!("{e:#}").contains("webhook_ca_cert"), "{e:#}");
}
