//! `/readyz` answers fast when the database is away, and every 503 says when to retry.
//!
//! The router is built in-process on a lazy pool pointing at a closed port (nothing listens on
//! port 1): every query fails to connect, and the pool would keep retrying until its acquire
//! timeout.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use qcloud_api::{router, ApiConfig};
use qcloud_service::{Service, ServiceConfig};
use std::time::{Duration, Instant};
use tower::ServiceExt;

fn app(acquire_timeout: Duration) -> axum::Router {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(acquire_timeout)
        .connect_lazy("postgres://nobody@127.0.0.1:1/none")
        .expect("lazy pool");
    router(Service::new(pool, ServiceConfig::default()), &ApiConfig::default())
}

async fn get(app: &axum::Router, path: &str, token: Option<&str>) -> (StatusCode, Option<String>, serde_json::Value) {
    let mut req = Request::builder().uri(path);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let resp = app.clone().oneshot(req.body(Body::empty()).unwrap()).await.expect("router is infallible");
    let status = resp.status();
    let retry = resp.headers().get(header::RETRY_AFTER).map(|v| v.to_str().unwrap().to_string());
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, retry, serde_json::from_slice(&body).unwrap_or_default())
}

#[tokio::test]
async fn readyz_answers_503_with_retry_after_within_a_second_when_the_database_is_down() {
    // A pool that would wait 30 s for a connection: the readiness check must not.
    let app = app(Duration::from_secs(30));
    let t0 = Instant::now();
    let (status, retry, body) = tokio::time::timeout(Duration::from_secs(10), get(&app, "/readyz", None))
        .await
        .expect("/readyz answered within 10 s");
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(2), "/readyz took {took:?}");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "not_ready", "{body}");
    let retry: u64 = retry.expect("a Retry-After header").parse().expect("Retry-After in seconds");
    assert!((1..=10).contains(&retry), "Retry-After {retry}");
    // Liveness does not depend on the database.
    assert_eq!(get(&app, "/healthz", None).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_request_that_cannot_reach_the_database_is_503_with_retry_after() {
    // Authentication looks the token up: with no database that is a 503, not a 500.
    let app = app(Duration::from_millis(300));
    let (status, retry, body) = get(&app, "/v1/devices", Some("qc_not_a_known_token")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert!(retry.as_deref().is_some_and(|r| r.parse::<u64>().is_ok()), "Retry-After: {retry:?}");
    // A refusal that needs no database carries no Retry-After.
    let (status, retry, _) = get(&app, "/v1/devices", None).await;
    assert_eq!((status, retry), (StatusCode::UNAUTHORIZED, None));
}
