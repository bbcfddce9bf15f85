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
