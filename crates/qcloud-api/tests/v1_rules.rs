//! Request rules of `/v1` that schemathesis (tests/compat/schemathesis) found at odds with the
//! schema, each driven in-process against a real database: the server now refuses what the schema
//! calls invalid and takes what it calls valid.

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
}

async fn app(pool: PgPool) -> App {
    let svc = Service::new(pool, ServiceConfig::default());
    let token = svc.create_token("proj", "alice", true).await.expect("token");
    for (name, driver) in [("noop_a", DriverKind::Noop), ("noop_b", DriverKind::Noop), ("sv", DriverKind::Statevector)]
    {
        svc.add_device(AddDevice::new(name, driver, 4)).await.expect("device");
    }
    App { router: router(svc, &ApiConfig::default()), token }
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
}

/// The schema says `payload` is a JSON object; any other JSON value used to be stored (and failed
/// only when the job ran), so a negative test's `"payload": 5` was taken.
#[sqlx::test(migrations = "../../migrations")]
async fn a_payload_that_is_not_a_json_object_is_400(pool: PgPool) {
    let app = app(pool).await;
    for bad in [json!(5), json!("x"), json!([1, 2]), json!(null), json!(true)] {
        let (s, body) = app
            .send(Method::POST, "/v1/jobs", Some(json!({"device": "noop_a", "program": "noop", "payload": bad})))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "payload {bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_body", "payload {bad}: {body}");
    }
    let (s, body) = app.send(Method::GET, "/v1/jobs", None).await;
    assert_eq!((s, body["items"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)), "nothing stored: {body}");
    let (s, body) =
        app.send(Method::POST, "/v1/jobs", Some(json!({"device": "noop_a", "program": "noop", "payload": {}}))).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
}

/// A program the device does not run and a device that is not the session's are well-formed
/// requests (the schema cannot know a device's driver or a session's device): 409, not 400.
#[sqlx::test(migrations = "../../migrations")]
async fn a_program_or_device_at_odds_with_the_device_or_session_is_409(pool: PgPool) {
    let app = app(pool).await;
    let (s, body) =
        app.send(Method::POST, "/v1/jobs", Some(json!({"device": "sv", "program": "noop", "payload": {}}))).await;
    assert_eq!((s, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("unknown_program")), "{body}");

    let (s, session) = app.send(Method::POST, "/v1/sessions", Some(json!({"device": "noop_a", "mode": "batch"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{session}");
    let sid = session["id"].clone();
    let (s, body) = app
        .send(
            Method::POST,
            "/v1/jobs",
            Some(json!({"session_id": sid, "device": "noop_b", "program": "noop", "payload": {}})),
        )
        .await;
    assert_eq!((s, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("device_mismatch")), "{body}");
    let (s, body) =
        app.send(Method::POST, "/v1/jobs", Some(json!({"session_id": sid, "program": "sampler", "payload": {}}))).await;
    assert_eq!((s, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("unknown_program")), "{body}");
    // Neither device nor session is still a 400: the schema says one of them is required.
    let (s, body) = app.send(Method::POST, "/v1/jobs", Some(json!({"program": "noop", "payload": {}}))).await;
    assert_eq!((s, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("missing_field")), "{body}");
}

/// A device view names the programs its device runs (what the document's links use to submit a
/// job that the new device takes).
#[sqlx::test(migrations = "../../migrations")]
async fn a_device_lists_its_programs(pool: PgPool) {
    let app = app(pool).await;
    let (_, sv) = app.send(Method::GET, "/v1/devices/sv", None).await;
    assert_eq!(sv["programs"], json!(["sampler", "estimator"]), "{sv}");
    let (s, agent) =
        app.send(Method::POST, "/v1/devices", Some(json!({"name": "hw1", "driver": "agent", "num_qubits": 5}))).await;
    assert_eq!(s, StatusCode::CREATED, "{agent}");
    assert_eq!(agent["programs"], json!([]), "an agent takes any program: {agent}");
}

/// Cursors are `<microseconds>_<uuid>` (the document's pattern): pages chain through them.
#[sqlx::test(migrations = "../../migrations")]
async fn list_pages_chain_through_cursors_of_the_documented_form(pool: PgPool) {
    let app = app(pool).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (s, j) = app
            .send(Method::POST, "/v1/jobs", Some(json!({"device": "noop_a", "program": "noop", "payload": {}})))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{j}");
        ids.push(j["id"].as_str().unwrap().to_string());
    }
    let mut seen = Vec::new();
    let mut path = "/v1/jobs?limit=2".to_string();
    loop {
        let (s, page) = app.send(Method::GET, &path, None).await;
        assert_eq!(s, StatusCode::OK, "{path}: {page}");
        seen.extend(page["items"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap().to_string()));
        let Some(c) = page["next_cursor"].as_str() else { break };
        let (micros, id) = c.split_once('_').expect("<micros>_<uuid>");
        assert!(micros.bytes().all(|b| b.is_ascii_digit()) && id.len() == 36, "{c}");
        path = format!("/v1/jobs?limit=2&cursor={c}");
    }
    ids.reverse();
    assert_eq!(seen, ids, "newest first, each job once");
}
