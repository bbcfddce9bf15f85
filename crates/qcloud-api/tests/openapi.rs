//! `openapi.yaml` at the repository root is exactly what the server serves at `/v1/openapi.yaml`,
//! and it describes every route the router answers under `/v1` (and no route it does not answer).
//!
//! The router is built in-process on a lazy pool that never connects: the document routes do not
//! touch the database, and every other request here carries no token, so the authentication
//! extractor answers 401 before any query — which proves the route and method exist (an unknown
//! route is 404, a wrong method 405).

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use qcloud_api::{router, ApiConfig};
use qcloud_service::{Service, ServiceConfig};
use std::collections::BTreeSet;
use tower::ServiceExt;

const COMMITTED: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.yaml"));

const REGENERATE: &str = "run `cargo run -p qcloud -- openapi > openapi.yaml` and commit the file";

/// Every operation the router serves under `/v1`, except the documents themselves. A new route
/// goes here and into `openapi::ApiDoc` (with a `#[utoipa::path]` annotation).
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/devices"),
    ("POST", "/v1/devices"),
    ("GET", "/v1/devices/{name}"),
    ("PATCH", "/v1/devices/{name}"),
    ("GET", "/v1/sessions"),
    ("POST", "/v1/sessions"),
    ("GET", "/v1/sessions/{id}"),
    ("POST", "/v1/sessions/{id}/close"),
    ("POST", "/v1/sessions/{id}/cancel"),
    ("GET", "/v1/jobs"),
    ("POST", "/v1/jobs"),
    ("POST", "/v1/jobs:batch"),
    ("GET", "/v1/jobs/{id}"),
    ("GET", "/v1/jobs/{id}/result"),
    ("POST", "/v1/jobs/{id}/cancel"),
    ("GET", "/v1/tokens"),
    ("POST", "/v1/tokens"),
    ("DELETE", "/v1/tokens/{id}"),
    ("GET", "/v1/events"),
    ("GET", "/v1/webhooks"),
    ("POST", "/v1/webhooks"),
    ("GET", "/v1/webhooks/{id}"),
    ("DELETE", "/v1/webhooks/{id}"),
    ("GET", "/v1/webhooks/{id}/deliveries"),
    ("GET", "/v1/devices/{name}/tokens"),
    ("POST", "/v1/devices/{name}/tokens"),
    ("POST", "/v1/agent/claim"),
    ("GET", "/v1/agent/device"),
    ("PUT", "/v1/agent/device"),
    ("POST", "/v1/agent/jobs/{id}/heartbeat"),
    ("POST", "/v1/agent/jobs/{id}/progress"),
    ("POST", "/v1/agent/jobs/{id}/complete"),
    ("POST", "/v1/agent/jobs/{id}/fail"),
];

/// Routes under `/v1` that are deliberately not in the document: the document itself.
const UNDOCUMENTED: &[(&str, &str)] = &[("GET", "/v1/openapi.yaml"), ("GET", "/v1/openapi.json")];

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

fn app() -> axum::Router {
    // Nothing listens on port 1; the pool is lazy and no request below reaches the database.
    let pool = sqlx::PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/none").expect("lazy pool");
    router(Service::new(pool, ServiceConfig::default()), &ApiConfig::default())
}

async fn send(app: &axum::Router, method: &str, path: &str) -> (StatusCode, Vec<u8>) {
    let req = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(if method == "GET" { "" } else { "{}" }))
        .unwrap();
    let resp = app.clone().oneshot(req).await.expect("router is infallible");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes().to_vec();
    (status, body)
}

/// A concrete path for a templated one.
fn concrete(path: &str) -> String {
    path.replace("{id}", "0190c3c0-0000-7000-8000-000000000000").replace("{name}", "some_device")
}

fn documented_operations(doc: &serde_yaml::Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_mapping().expect("the document has paths");
    let mut ops = BTreeSet::new();
    for (path, item) in paths {
        let path = path.as_str().expect("path keys are strings");
        for (method, _) in item.as_mapping().expect("path items are mappings") {
            let method = method.as_str().unwrap().to_ascii_uppercase();
            if METHODS.contains(&method.as_str()) {
                ops.insert((method, path.to_string()));
            }
        }
    }
    ops
}

#[tokio::test]
async fn committed_openapi_yaml_equals_the_served_document() {
    let app = app();
    let (status, body) = send(&app, "GET", "/v1/openapi.yaml").await;
    assert_eq!(status, StatusCode::OK, "GET /v1/openapi.yaml");
    let served = String::from_utf8(body).expect("the document is UTF-8");
    if served != COMMITTED {
        let line = served
            .lines()
            .zip(COMMITTED.lines())
            .position(|(a, b)| a != b)
            .map(|i| i + 1)
            .unwrap_or_else(|| served.lines().count().min(COMMITTED.lines().count()) + 1);
        panic!(
            "openapi.yaml differs from what the server serves (first difference at line {line}): {REGENERATE}\n\
             served line:    {:?}\ncommitted line: {:?}",
            served.lines().nth(line - 1),
            COMMITTED.lines().nth(line - 1)
        );
    }
}

#[tokio::test]
async fn json_and_yaml_documents_agree() {
    let app = app();
    let (s1, yaml) = send(&app, "GET", "/v1/openapi.yaml").await;
    let (s2, json) = send(&app, "GET", "/v1/openapi.json").await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    let from_yaml: serde_json::Value = serde_yaml::from_slice(&yaml).expect("YAML parses");
    let from_json: serde_json::Value = serde_json::from_slice(&json).expect("JSON parses");
    assert_eq!(from_yaml, from_json, "/v1/openapi.yaml and /v1/openapi.json describe different APIs");
}

#[tokio::test]
async fn every_route_is_documented_and_every_documented_route_exists() {
    let doc: serde_yaml::Value = serde_yaml::from_str(COMMITTED).expect("openapi.yaml parses");
    let documented = documented_operations(&doc);
    let listed: BTreeSet<(String, String)> = ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();

    let missing: Vec<_> = listed.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes served but not in openapi.yaml: {missing:?} (annotate them, add them to ApiDoc, then {REGENERATE})"
    );
    let extra: Vec<_> = documented.difference(&listed).collect();
    assert!(
        extra.is_empty(),
        "openapi.yaml documents operations this test does not list: {extra:?} (add them to ROUTES)"
    );

    // What the router really answers: every method on every known path. Without a token a route
    // that exists answers 401, one that does not 405 (or 404 for an unknown path).
    let app = app();
    let mut paths: BTreeSet<&str> = ROUTES.iter().map(|(_, p)| *p).collect();
    paths.extend(UNDOCUMENTED.iter().map(|(_, p)| *p));
    for path in paths {
        for method in METHODS {
            let (status, body) = send(&app, method, &concrete(path)).await;
            let key = (method.to_string(), path.to_string());
            let undocumented = UNDOCUMENTED.iter().any(|(m, p)| m == method && *p == path);
            if documented.contains(&key) {
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {path} is documented; without a token it must be 401"
                );
            } else if undocumented {
                assert_eq!(status, StatusCode::OK, "{method} {path}");
            } else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} answers {status} but is not in openapi.yaml: document it or remove it"
                );
                let v: serde_json::Value = serde_json::from_slice(&body).expect("405 has a JSON body");
                assert_eq!(v["error"]["code"], "method_not_allowed");
            }
        }
    }
    let (status, _) = send(&app, "GET", "/v1/no-such-route").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[test]
fn operation_ids_are_unique_and_errors_are_described() {
    let doc: serde_yaml::Value = serde_yaml::from_str(COMMITTED).expect("openapi.yaml parses");
    let mut seen = BTreeSet::new();
    for (path, item) in doc["paths"].as_mapping().unwrap() {
        for (method, op) in item.as_mapping().unwrap() {
            let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method:?} {path:?} has no operationId"));
            assert!(seen.insert(id.to_string()), "operationId '{id}' is used twice (OpenAPI requires unique ids)");
            let responses = op["responses"].as_mapping().expect("responses");
            assert!(
                responses.contains_key(serde_yaml::Value::from("401")),
                "{method:?} {path:?}: every /v1 operation needs a token and must document 401"
            );
            assert!(op["security"].is_sequence(), "{method:?} {path:?} must declare the bearer security scheme");
        }
    }
    assert_eq!(seen.len(), ROUTES.len());
    assert!(doc["components"]["schemas"]["ErrorBody"].is_mapping(), "ErrorBody schema is documented");
}
