//! The Pasqal facade refuses bad input with a 4xx in Pasqal's envelope, and stores nothing.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use qcloud_api::{router, ApiConfig};
use qcloud_service::devices::AddDevice;
use qcloud_service::{DeviceKind, DriverKind, Service, ServiceConfig};
use serde_json::{json, Value};
use sqlx::PgPool;
use tower::ServiceExt;

const SEQ: &str = r#"{"version":"1","name":"s","register":[{"name":"q0","x":0.0,"y":0.0}],"channels":{"g":"rydberg_global"},"variables":{},"operations":[],"measurement":"ground-rydberg","device":"MockDevice"}"#;

async fn call(app: &axum::Router, method: &str, uri: &str, token: &str, body: Body, gzip: bool) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json");
    if gzip {
        req = req.header("content-encoding", "gzip");
    }
    let resp = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn sessions(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM sessions").fetch_one(pool).await.unwrap()
}

#[sqlx::test(migrations = "../../migrations")]
async fn bad_input_is_4xx_in_pasqal_envelope_and_nothing_is_stored(pool: PgPool) {
    let svc = Service::new(pool.clone(), ServiceConfig::default());
    svc.add_device(AddDevice { kind: DeviceKind::Analog, ..AddDevice::new("EMU_FREE", DriverKind::Analog, 12) })
        .await
        .unwrap();
    let token = svc.create_token("alice", "alice", false).await.unwrap();
    let app = router(svc, &ApiConfig::default());
    let (s, projects) = call(&app, "GET", "/pasqal/account/api/v1/projects", &token, Body::empty(), false).await;
    assert_eq!(s, StatusCode::OK);
    let pid = projects["data"][0]["id"].as_str().unwrap().to_owned();
    let good = json!({"sequence_builder": SEQ, "jobs": [], "open": true, "device_type": "EMU_FREE", "project_id": pid});

    let cases: Vec<(Body, bool, StatusCode)> = vec![
        (Body::from("not gzip"), true, StatusCode::BAD_REQUEST),
        (Body::from("{not json"), false, StatusCode::BAD_REQUEST),
        (
            Body::from(json!({"project_id": "not-a-uuid", "sequence_builder": SEQ}).to_string()),
            false,
            StatusCode::BAD_REQUEST,
        ),
        (
            Body::from(
                json!({"project_id": uuid::Uuid::new_v4(), "sequence_builder": SEQ, "device_type": "EMU_FREE"})
                    .to_string(),
            ),
            false,
            StatusCode::NOT_FOUND,
        ),
        (
            Body::from(json!({"project_id": pid, "sequence_builder": "{\"version\":\"1\"}"}).to_string()),
            false,
            StatusCode::BAD_REQUEST,
        ),
        (
            Body::from(json!({"project_id": pid, "sequence_builder": SEQ, "webhook": "http://10.0.0.1/h"}).to_string()),
            false,
            StatusCode::BAD_REQUEST,
        ),
        (
            Body::from(json!({"project_id": pid, "sequence_builder": SEQ, "device_type": "EMU_X"}).to_string()),
            false,
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (i, (body, gz, want)) in cases.into_iter().enumerate() {
        let (s, v) = call(&app, "POST", "/pasqal/core-fast/api/v1/batches", &token, body, gz).await;
        assert_eq!(s, want, "case {i}: {v}");
        assert_eq!(v["status"], "fail", "case {i}");
        assert!(v["data"]["description"].is_string(), "case {i}: {v}");
    }
    assert_eq!(sessions(&pool).await, 0);

    for uri in [
        "/pasqal/core-fast/api/v1/batches?colour=red",
        "/pasqal/core-fast/api/v2/jobs?id=nope",
        "/pasqal/core-fast/api/v1/batches?open=maybe",
    ] {
        let (s, v) = call(&app, "GET", uri, &token, Body::empty(), false).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}: {v}");
    }

    // An open batch: a rebatch is refused while it is open; once closed, it takes no jobs.
    let (s, b) =
        call(&app, "POST", "/pasqal/core-fast/api/v1/batches", &token, Body::from(good.to_string()), false).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let id = b["data"]["id"].as_str().unwrap().to_owned();
    let (s, _) =
        call(&app, "POST", &format!("/pasqal/core-fast/api/v1/batches/{id}/rebatch"), &token, Body::empty(), false)
            .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) =
        call(&app, "PATCH", &format!("/pasqal/core-fast/api/v2/batches/{id}/complete"), &token, Body::empty(), false)
            .await;
    assert_eq!(s, StatusCode::OK);
    let jobs = json!([{"runs": 5}]).to_string();
    let (s, v) =
        call(&app, "POST", &format!("/pasqal/core-fast/api/v2/batches/{id}/jobs"), &token, Body::from(jobs), false)
            .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(&pool).await.unwrap();
    assert_eq!(n, 0);

    // Another project's batch is 404; a guessed results link is 404 without a token.
    let eve = Service::new(pool.clone(), ServiceConfig::default()).create_token("eve", "eve", false).await.unwrap();
    let (s, _) = call(&app, "GET", &format!("/pasqal/core-fast/api/v2/batches/{id}"), &eve, Body::empty(), false).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = call(&app, "GET", "/pasqal/results/guessed-capability", "", Body::empty(), false).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["status"], "fail");
}

/// A sequence of `n` atoms in a row, 10 um apart, on the MockDevice.
fn atoms(n: usize) -> String {
    let reg: Vec<Value> = (0..n).map(|i| json!({"name": format!("q{i}"), "x": 10.0 * i as f64, "y": 0.0})).collect();
    json!({"version": "1", "name": "s", "register": reg, "channels": {"g": "rydberg_global"}, "variables": {},
           "operations": [], "measurement": "ground-rydberg", "device": "MockDevice"})
    .to_string()
}

async fn jobs(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(pool).await.unwrap()
}

#[sqlx::test(migrations = "../../migrations")]
async fn the_drivers_checks_refuse_bad_batch_jobs_before_anything_is_stored(pool: PgPool) {
    // The server's submit-time checks: every batch job goes through the analog driver's `validate`.
    let checks = std::sync::Arc::new(qcloud_scheduler::checks::DriverChecks::new(qcloud_devices::Registry::default()));
    let svc = Service::new(pool.clone(), ServiceConfig::default()).with_program_check(checks);
    svc.add_device(AddDevice { kind: DeviceKind::Analog, ..AddDevice::new("EMU_FREE", DriverKind::Analog, 12) })
        .await
        .unwrap();
    let token = svc.create_token("alice", "alice", false).await.unwrap();
    let app = router(svc, &ApiConfig::default());
    let (_, projects) = call(&app, "GET", "/pasqal/account/api/v1/projects", &token, Body::empty(), false).await;
    let pid = projects["data"][0]["id"].as_str().unwrap().to_owned();
    let post = |uri: String, body: Value| {
        let app = app.clone();
        let token = token.clone();
        async move { call(&app, "POST", &uri, &token, Body::from(body.to_string()), false).await }
    };
    let batches = "/pasqal/core-fast/api/v1/batches".to_string();

    // A closed batch whose second job has 13 atoms for a device of 12: refused, no batch, no job.
    let body = json!({"sequence_builder": atoms(2), "device_type": "EMU_FREE", "project_id": pid,
                      "jobs": [{"runs": 5}, {"runs": 5, "sequence": atoms(13)}]});
    let (s, v) = post(batches.clone(), body).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["status"], "fail");
    let why = v["data"]["description"].as_str().unwrap_or_default();
    assert!(why.starts_with("jobs[1]: "), "{why}");
    assert_eq!((sessions(&pool).await, jobs(&pool).await), (0, 0));

    // An open batch takes good jobs and refuses a bad one, keeping what it has.
    let body = json!({"sequence_builder": atoms(2), "device_type": "EMU_FREE", "project_id": pid, "open": true,
                      "jobs": [{"runs": 5}]});
    let (s, b) = post(batches.clone(), body).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let id = b["data"]["id"].as_str().unwrap().to_owned();
    let add = format!("/pasqal/core-fast/api/v2/batches/{id}/jobs");
    let (s, v) = post(add.clone(), json!([{"runs": 5}, {"runs": 5, "sequence": atoms(13)}])).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(jobs(&pool).await, 1);
    let (s, v) = post(add, json!([{"runs": 7}])).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(jobs(&pool).await, 2);

    // QRMI's routes: device availability without a token, full results by job id (none finished here: no
    // scheduler runs in this test), another project's batch 404, a malformed id 400.
    let resp = app
        .clone()
        .oneshot(
            Request::builder()
                .uri("/pasqal/core-fast/api/v1/devices?device_type=EMU_FREE")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(v["data"], json!([{"device_type": "EMU_FREE", "status": "UP", "availability": "ACTIVE"}]));
    let (s, _) = call(&app, "GET", "/pasqal/core-fast/api/v1/devices?colour=red", "", Body::empty(), false).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let full = format!("/pasqal/core-fast/api/v1/batches/{id}/full_results");
    let (s, v) = call(&app, "GET", &full, &token, Body::empty(), false).await;
    assert_eq!((s, &v["data"]), (StatusCode::OK, &json!({})), "{v}");
    let eve = Service::new(pool.clone(), ServiceConfig::default()).create_token("eve", "eve", false).await.unwrap();
    assert_eq!(call(&app, "GET", &full, &eve, Body::empty(), false).await.0, StatusCode::NOT_FOUND);
    let (s, _) =
        call(&app, "GET", "/pasqal/core-fast/api/v1/batches/nope/full_results", &token, Body::empty(), false).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}
