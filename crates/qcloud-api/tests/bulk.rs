//! `POST /v1/jobs:batch` (issue 11), driven in-process against a real database: all or nothing,
//! errors naming the index of the bad job, nothing stored on error.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use qcloud_api::{router, ApiConfig};
use qcloud_service::devices::AddDevice;
use qcloud_service::{DriverKind, Service, ServiceConfig};
use serde_json::{json, Value};
use sqlx::PgPool;
use tower::ServiceExt;

struct App {
    router: axum::Router,
    token: String,
    pool: PgPool,
}

async fn app(pool: PgPool) -> App {
    let svc = Service::new(pool.clone(), ServiceConfig::default());
    let token = svc.create_token("proj", "alice", false).await.expect("token");
    for (name, driver) in [("noop_a", DriverKind::Noop), ("noop_b", DriverKind::Noop), ("sv", DriverKind::Statevector)]
    {
        svc.add_device(AddDevice::new(name, driver, 4)).await.expect("device");
    }
    App { router: router(svc, &ApiConfig::default()), token, pool }
}

impl App {
    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::CONTENT_TYPE, "application/json");
        let body = body.map(|b| Body::from(b.to_string())).unwrap_or_else(Body::empty);
        let resp = self.router.clone().oneshot(req.body(body).unwrap()).await.expect("router is infallible");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn stored(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(&self.pool).await.unwrap()
    }
}

fn noop(device: &str, i: usize) -> Value {
    json!({"device": device, "program": "noop", "payload": {"i": i}, "tags": [format!("t{i}")]})
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_batch_is_stored_whole_in_order(pool: PgPool) {
    let app = app(pool).await;
    let jobs: Vec<Value> = (0..250).map(|i| noop(if i % 2 == 0 { "noop_a" } else { "noop_b" }, i)).collect();
    let (s, body) = app.send(Method::POST, "/v1/jobs:batch", Some(json!({ "jobs": jobs }))).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let created = body["jobs"].as_array().expect("jobs");
    assert_eq!(created.len(), 250);
    for (i, j) in created.iter().enumerate() {
        assert_eq!(j["status"], "queued", "{j}");
        assert_eq!(j["device"], if i % 2 == 0 { "noop_a" } else { "noop_b" });
        assert_eq!(j["tags"], json!([format!("t{i}")]), "job {i} keeps its own tags");
        assert_eq!(j["user"], "alice");
        assert_eq!(j["priority"], "medium");
    }
    assert_eq!(app.stored().await, 250);
    // Arrival order is the order given: the seq column follows the request.
    let ids: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM jobs ORDER BY seq").fetch_all(&app.pool).await.unwrap();
    let given: Vec<uuid::Uuid> = created.iter().map(|j| j["id"].as_str().unwrap().parse().unwrap()).collect();
    assert_eq!(ids, given);
    // Each job reads back like any other, with its place in its device's queue.
    let id = created[4]["id"].as_str().unwrap();
    let (s, j) = app.send(Method::GET, &format!("/v1/jobs/{id}"), None).await;
    assert_eq!((s, j["queue_position"].as_i64()), (StatusCode::OK, Some(3)), "{j}");
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_bad_job_refuses_the_whole_batch_naming_its_index(pool: PgPool) {
    let app = app(pool).await;
    let mut jobs: Vec<Value> = (0..10).map(|i| noop("noop_a", i)).collect();
    let cases = [
        // (index, bad job, status, code)
        (7, json!({"device": "nope", "program": "noop", "payload": {}}), StatusCode::NOT_FOUND, "not_found"),
        (3, json!({"device": "sv", "program": "noop", "payload": {}}), StatusCode::CONFLICT, "unknown_program"),
        (
            5,
            json!({"device": "noop_a", "program": "noop", "payload": {}, "shots": 0}),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            9,
            json!({"device": "noop_a", "program": "noop", "payload": {}, "priority": "urgent"}),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
    ];
    for (i, bad, status, code) in cases {
        let saved = std::mem::replace(&mut jobs[i], bad.clone());
        let (s, body) = app.send(Method::POST, "/v1/jobs:batch", Some(json!({ "jobs": jobs }))).await;
        jobs[i] = saved;
        assert_eq!(s, status, "{bad}: {body}");
        assert_eq!(body["error"]["code"], code, "{bad}: {body}");
        assert_eq!(body["error"]["details"]["index"], i, "{bad}: {body}");
        let msg = body["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.starts_with(&format!("jobs[{i}]: ")), "{msg}");
        assert_eq!(app.stored().await, 0, "nothing stored after {bad}");
    }
    // A job that does not parse is named by serde's path, and a session job is not a batch job.
    jobs[2] = json!({"device": "noop_a", "program": 5, "payload": {}});
    let (s, body) = app.send(Method::POST, "/v1/jobs:batch", Some(json!({ "jobs": jobs }))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("jobs[2]"), "{body}");
    jobs[2] = json!({"device": "noop_a", "session_id": uuid::Uuid::nil(), "program": "noop", "payload": {}});
    let (s, body) = app.send(Method::POST, "/v1/jobs:batch", Some(json!({ "jobs": jobs }))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(app.stored().await, 0);
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_batch_holds_one_to_ten_thousand_jobs(pool: PgPool) {
    let app = app(pool).await;
    let (s, body) = app.send(Method::POST, "/v1/jobs:batch", Some(json!({"jobs": []}))).await;
    assert_eq!((s, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("empty_batch")), "{body}");
    let over: Vec<Value> = (0..10_001).map(|i| noop("noop_a", i)).collect();
    let (s, body) = app.send(Method::POST, "/v1/jobs:batch", Some(json!({ "jobs": over }))).await;
    assert_eq!((s, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("batch_too_large")), "{body}");
    assert_eq!(app.stored().await, 0);
    let full: Vec<Value> = (0..10_000).map(|i| noop("noop_b", i)).collect();
    let (s, body) = app.send(Method::POST, "/v1/jobs:batch", Some(json!({ "jobs": full }))).await;
    assert_eq!(s, StatusCode::CREATED, "{}", body["error"]);
    assert_eq!(body["jobs"].as_array().map(Vec::len), Some(10_000));
    assert_eq!(app.stored().await, 10_000);
}

#[sqlx::test(migrations = "../../migrations")]
async fn each_created_job_is_what_a_get_of_it_returns(pool: PgPool) {
    // The response is built from the request and the stored rows' defaults, not read back: it
    // must say what the database holds, field for field (but the queue position, which only a
    // GET computes).
    let app = app(pool).await;
    let jobs = json!([
        {"device": "noop_a", "program": "noop", "payload": {"duration_ms": 0}},
        {"device": "noop_b", "program": "noop", "payload": {"x": [1, 2.5, "s"]}, "shots": 7, "tags": ["a", "b"],
         "priority": "high", "max_execution_time": 1.5},
        {"device": "noop_a", "program": "noop", "payload": {}, "priority": "low", "max_execution_time": 0.0004},
    ]);
    let (s, body) = app.send(Method::POST, "/v1/jobs:batch", Some(json!({ "jobs": jobs }))).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let created = body["jobs"].as_array().expect("jobs");
    assert_eq!(created.len(), 3);
    for c in created {
        let (s, mut got) = app.send(Method::GET, &format!("/v1/jobs/{}", c["id"].as_str().unwrap()), None).await;
        assert_eq!(s, StatusCode::OK, "{got}");
        assert!(got["queue_position"].as_i64().is_some(), "{got}");
        got["queue_position"] = Value::Null;
        assert_eq!(c, &got);
    }
    assert_eq!(created[1]["shots"], 7);
    assert_eq!(created[1]["max_execution_time"], 1.5);
    assert_eq!(created[2]["max_execution_time"], 0.001, "rounded up to whole milliseconds, as stored");
}
