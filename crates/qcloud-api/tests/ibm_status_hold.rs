//! The IBM facade holds the client's status poll of an unfinished job (`GET /jobs/{id}?exclude_params=true`)
//! until the job is finished, up to `ApiConfig::ibm_status_hold`, and answers with the state at that moment.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use qcloud_api::{router, ApiConfig};
use qcloud_service::devices::AddDevice;
use qcloud_service::jobs::{CancelJob, SubmitJob};
use qcloud_service::{DriverKind, Service, ServiceConfig};
use serde_json::{json, Value};
use std::time::Duration;
use tower::ServiceExt;

async fn poll(app: &axum::Router, token: &str, id: uuid::Uuid, exclude: bool) -> (StatusCode, Value) {
    let q = if exclude { "?exclude_params=true" } else { "" };
    let req = Request::builder()
        .uri(format!("/ibm/api/v1/jobs/{id}{q}"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    (status, serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap())
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_held_status_poll_answers_with_the_change(pool: sqlx::PgPool) {
    // No scheduler runs here: the job stays queued until it is cancelled.
    let svc = Service::new(pool, ServiceConfig::default());
    svc.add_device(AddDevice::new("sv", DriverKind::Noop, 5)).await.unwrap();
    let token = svc.create_token("alpha", "ann", false).await.unwrap();
    let who = svc.authenticate(&token).await.unwrap();
    let (job, _) = svc.submit_job(&who, SubmitJob::to_device("sv", "noop", json!({}))).await.unwrap();

    // A long hold: the poll is still held when the job is cancelled, and answers with the cancel.
    let app = router(svc.clone(), &ApiConfig { ibm_status_hold: Duration::from_secs(30), ..ApiConfig::default() });
    let cancel = {
        let (svc, who) = (svc.clone(), who.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            svc.cancel_job(&who, CancelJob { id: job.id }).await.unwrap();
        })
    };
    let (status, v) = poll(&app, &token, job.id, true).await;
    cancel.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["state"]["status"], "Cancelled", "{v}");

    // Without a hold the poll answers at once; a finished job is never held; the plain GET is never held.
    let (job2, _) = svc.submit_job(&who, SubmitJob::to_device("sv", "noop", json!({}))).await.unwrap();
    let no_hold = router(svc.clone(), &ApiConfig { ibm_status_hold: Duration::ZERO, ..ApiConfig::default() });
    assert_eq!(poll(&no_hold, &token, job2.id, true).await.1["state"]["status"], "Queued");
    assert_eq!(poll(&app, &token, job.id, true).await.1["state"]["status"], "Cancelled");
    let (_, plain) = poll(&app, &token, job2.id, false).await;
    assert_eq!((plain["state"]["status"].as_str(), plain["params"].is_object()), (Some("Queued"), true));
    // A short hold with no change answers with the unchanged state.
    let short = router(svc.clone(), &ApiConfig { ibm_status_hold: Duration::from_millis(30), ..ApiConfig::default() });
    assert_eq!(poll(&short, &token, job2.id, true).await.1["state"]["status"], "Queued");
}
