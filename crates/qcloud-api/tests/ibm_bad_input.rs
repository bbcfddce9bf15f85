//! The IBM facade's bad-input list (issue 8): each mistake is a 4xx in IBM's error shape
//! (`{"errors": [{"code", "message", "more_info"}], ...}`) and nothing is stored. Plus the token
//! exchange and the happy path of a submit, driven in-process against a real database.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use base64::Engine as _;
use http_body_util::BodyExt;
use qcloud_api::ibm::{auth, crn};
use qcloud_api::{router, ApiConfig};
use qcloud_service::devices::AddDevice;
use qcloud_service::job_search::SearchJobs;
use qcloud_service::{DeviceKind, DriverKind, Principal, Service, ServiceConfig};
use serde_json::{json, Value};
use std::io::Write;
use tower::ServiceExt;

const ROT: &str = "OPENQASM 3.0;\ninclude \"stdgates.inc\";\ninput float theta;\nqubit[2] q;\nbit[2] c;\nrx(theta) q[0];\ncx q[0], q[1];\nc = measure q;\n";
const BELL: &str =
    "OPENQASM 3.0;\ninclude \"stdgates.inc\";\nqubit[2] q;\nbit[2] c;\nh q[0];\ncx q[0], q[1];\nc = measure q;\n";

struct Ctx {
    app: axum::Router,
    svc: Service,
    token: String,
    who: Principal,
    crn: String,
    other_crn: String,
}

async fn setup(pool: sqlx::PgPool) -> Ctx {
    // The server's submit-time checks: every payload goes through its driver's `validate`.
    let checks = std::sync::Arc::new(qcloud_scheduler::checks::DriverChecks::new(qcloud_devices::Registry::default()));
    let svc = Service::new(pool, ServiceConfig::default()).with_program_check(checks);
    svc.add_device(AddDevice::new("sv", DriverKind::Statevector, 5)).await.unwrap();
    let mut analog = AddDevice::new("atoms", DriverKind::Analog, 10);
    analog.kind = DeviceKind::Analog;
    svc.add_device(analog).await.unwrap();
    let token = svc.create_token("alpha", "ann", false).await.unwrap();
    let other = svc.create_token("beta", "bob", false).await.unwrap();
    let who = svc.authenticate(&token).await.unwrap();
    let crn = crn::of_project(svc.my_project(&who).await.unwrap().id);
    let other_crn = crn::of_project(svc.my_project(&svc.authenticate(&other).await.unwrap()).await.unwrap().id);
    Ctx { app: router(svc.clone(), &ApiConfig::default()), svc, token, who, crn, other_crn }
}

async fn call(
    ctx: &Ctx,
    method: &str,
    path: &str,
    auth: Option<&str>,
    crn: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = auth {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    if let Some(c) = crn {
        req = req.header("Service-CRN", c);
    }
    let req = match body {
        Some(b) => req.header(header::CONTENT_TYPE, "application/json").body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let resp = ctx.app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// A 4xx with IBM's error shape and a message.
fn assert_ibm_error(what: &str, (status, body): (StatusCode, Value), want: StatusCode) {
    assert_eq!(status, want, "{what}: {body}");
    let msg = body.pointer("/errors/0/message").and_then(Value::as_str).unwrap_or_default();
    assert!(!msg.is_empty(), "{what}: no IBM error message in {body}");
    assert_eq!(body["status_code"], json!(want.as_u16()), "{what}");
}

fn qpy(bytes: &[u8]) -> Value {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(bytes).unwrap();
    json!({"__type__": "QuantumCircuit", "__value__": base64::engine::general_purpose::STANDARD.encode(z.finish().unwrap())})
}

fn sampler(pubs: Value) -> Value {
    json!({"program_id": "sampler", "backend": "sv", "params": {"pubs": pubs, "options": {}, "version": 2}})
}

async fn stored_jobs(ctx: &Ctx) -> i64 {
    ctx.svc.search_jobs(&ctx.who, SearchJobs::default()).await.unwrap().count
}

#[sqlx::test(migrations = "../../migrations")]
async fn every_bad_input_is_a_4xx_in_ibm_shape_and_nothing_is_stored(pool: sqlx::PgPool) {
    let ctx = setup(pool).await;
    let (t, crn) = (Some(ctx.token.as_str()), Some(ctx.crn.as_str()));
    let key = ctx.svc.signing_key(auth::KEY_NAME).await.unwrap();
    let pid = ctx.svc.my_project(&ctx.who).await.unwrap().id;
    let now = chrono::Utc::now().timestamp();

    // Malformed, expired and foreign JWTs.
    for (what, jwt) in [
        ("malformed JWT", "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln".to_string()),
        ("expired JWT", auth::issue(&key, &ctx.who, pid, now - 3 * auth::TOKEN_TTL_SECONDS).unwrap().0),
        ("foreign JWT", auth::issue(&[9u8; 32], &ctx.who, pid, now).unwrap().0),
    ] {
        let r = call(&ctx, "POST", "/ibm/api/v1/jobs", Some(&jwt), crn, Some(sampler(json!([[BELL, [], 10]])))).await;
        assert_ibm_error(what, r, StatusCode::UNAUTHORIZED);
    }
    assert_ibm_error(
        "no token",
        call(&ctx, "GET", "/ibm/api/v1/backends", None, None, None).await,
        StatusCode::UNAUTHORIZED,
    );

    // A Service-CRN of another project, and a CRN that is not one of ours.
    let r =
        call(&ctx, "POST", "/ibm/api/v1/jobs", t, Some(&ctx.other_crn), Some(sampler(json!([[BELL, [], 10]])))).await;
    assert_ibm_error("CRN of another project", r, StatusCode::FORBIDDEN);
    let r = call(&ctx, "GET", "/ibm/api/v1/backends", t, Some("crn:v1:bluemix:public:kms:x:a/y:z::"), None).await;
    assert_ibm_error("foreign CRN", r, StatusCode::FORBIDDEN);

    // Unknown backends, and analog devices, which are not IBM backends.
    for b in ["nope", "atoms"] {
        let mut body = sampler(json!([[BELL, [], 10]]));
        body["backend"] = json!(b);
        assert_ibm_error(
            "unknown backend",
            call(&ctx, "POST", "/ibm/api/v1/jobs", t, crn, Some(body)).await,
            StatusCode::NOT_FOUND,
        );
        let path = format!("/ibm/api/v1/backends/{b}/configuration");
        assert_ibm_error(
            "unknown backend configuration",
            call(&ctx, "GET", &path, t, crn, None).await,
            StatusCode::NOT_FOUND,
        );
    }

    let bad_pubs = [
        ("unparsable QPY", json!([[qpy(b"QISKIT garbage"), [], 10]])),
        ("QPY version the reader does not know", json!([[qpy(b"QISKIT\x63\x02\x06\x02\0\0\0\0\0\0\0\x01pq"), [], 10]])),
        ("not zlib", json!([[{"__type__": "QuantumCircuit", "__value__": "AAAA"}, [], 10]])),
        ("parameter shape does not match the circuit", json!([[ROT, [[0.1, 0.2]], 10]])),
        ("parameters given for a circuit without any", json!([[BELL, [[0.1]], 10]])),
        ("negative shots", json!([[BELL, [], -1]])),
        (
            "circuit wider than the backend",
            json!([["OPENQASM 3.0;\nqubit[6] q;\nbit[6] c;\nc = measure q;\n", [], 10]]),
        ),
    ];
    for (what, pubs) in bad_pubs {
        let r = call(&ctx, "POST", "/ibm/api/v1/jobs", t, crn, Some(sampler(pubs))).await;
        assert_ibm_error(what, r, StatusCode::BAD_REQUEST);
    }
    let estimator = |obs: Value| json!({"program_id": "estimator", "backend": "sv", "params": {"pubs": [[BELL.replace("c = measure q;\n", ""), obs, [], null]]}});
    for (what, obs) in [
        ("observable on the wrong number of qubits", json!({"ZZZ": 1.0})),
        ("observable with a non-Pauli letter", json!({"ZA": 1.0})),
        ("observable of the wrong type", json!(5)),
    ] {
        let r = call(&ctx, "POST", "/ibm/api/v1/jobs", t, crn, Some(estimator(obs))).await;
        assert_ibm_error(what, r, StatusCode::BAD_REQUEST);
    }
    // Tags that are not strings.
    let mut body = sampler(json!([[BELL, [], 10]]));
    body["tags"] = json!(["ok", 3]);
    assert_ibm_error(
        "non-string tags",
        call(&ctx, "POST", "/ibm/api/v1/jobs", t, crn, Some(body)).await,
        StatusCode::BAD_REQUEST,
    );
    // Unknown program, bad cost.
    let mut body = sampler(json!([[BELL, [], 10]]));
    body["program_id"] = json!("circuit-runner");
    assert_ibm_error(
        "unknown program",
        call(&ctx, "POST", "/ibm/api/v1/jobs", t, crn, Some(body)).await,
        StatusCode::BAD_REQUEST,
    );
    let mut body = sampler(json!([[BELL, [], 10]]));
    body["cost"] = json!(-5);
    assert_ibm_error(
        "negative cost",
        call(&ctx, "POST", "/ibm/api/v1/jobs", t, crn, Some(body)).await,
        StatusCode::BAD_REQUEST,
    );
    assert_eq!(stored_jobs(&ctx).await, 0, "a refused job was stored");

    // A job into a closed session is refused; PATCH on a closed session is refused.
    let (status, s) =
        call(&ctx, "POST", "/ibm/api/v1/sessions", t, crn, Some(json!({"backend": "sv", "mode": "batch"}))).await;
    assert_eq!(status, StatusCode::OK, "{s}");
    let sid = s["id"].as_str().unwrap().to_string();
    assert_eq!(s["state"], "open");
    let path = format!("/ibm/api/v1/sessions/{sid}/close");
    assert_eq!(call(&ctx, "DELETE", &path, t, crn, None).await.0, StatusCode::NO_CONTENT);
    let mut body = sampler(json!([[BELL, [], 10]]));
    body["session_id"] = json!(sid);
    assert_ibm_error(
        "job into a closed session",
        call(&ctx, "POST", "/ibm/api/v1/jobs", t, crn, Some(body)).await,
        StatusCode::CONFLICT,
    );
    let path = format!("/ibm/api/v1/sessions/{sid}");
    let r = call(&ctx, "PATCH", &path, t, crn, Some(json!({"accepting_jobs": false}))).await;
    assert_ibm_error("PATCH on a closed session", r, StatusCode::CONFLICT);
    let r = call(&ctx, "PATCH", &path, t, crn, Some(json!({"accepting_jobs": "no"}))).await;
    assert_ibm_error("PATCH with a non-boolean", r, StatusCode::BAD_REQUEST);
    let (_, s) = call(&ctx, "GET", &path, t, crn, None).await;
    assert_eq!((s["state"].as_str(), s["accepting_jobs"].as_bool()), (Some("closed"), Some(false)));
    assert_ibm_error(
        "unknown session",
        call(&ctx, "GET", "/ibm/api/v1/sessions/nope", t, crn, None).await,
        StatusCode::NOT_FOUND,
    );
    assert_ibm_error(
        "bad session mode",
        call(&ctx, "POST", "/ibm/api/v1/sessions", t, crn, Some(json!({"backend": "sv", "mode": "solo"}))).await,
        StatusCode::BAD_REQUEST,
    );

    // List filters that make no sense.
    for q in ["limit=0", "limit=x", "pending=maybe", "created_after=yesterday", "offset=-1"] {
        let r = call(&ctx, "GET", &format!("/ibm/api/v1/jobs?{q}"), t, crn, None).await;
        assert_ibm_error(q, r, StatusCode::BAD_REQUEST);
    }
    assert_eq!(stored_jobs(&ctx).await, 0, "a refused job was stored");
}

#[sqlx::test(migrations = "../../migrations")]
async fn the_token_exchange_issues_jwts_the_runtime_routes_accept(pool: sqlx::PgPool) {
    let ctx = setup(pool).await;
    let form = |body: String| {
        Request::builder()
            .method("POST")
            .uri("/ibm/identity/token")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap()
    };
    let resp = ctx
        .app
        .clone()
        .oneshot(form(format!(
            "grant_type=urn%3Aibm%3Aparams%3Aoauth%3Agrant-type%3Aapikey&apikey={}&response_type=cloud_iam",
            ctx.token
        )))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let jwt = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], json!(auth::TOKEN_TTL_SECONDS));
    let (status, backends) = call(&ctx, "GET", "/ibm/api/v1/backends", Some(&jwt), Some(&ctx.crn), None).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> =
        backends["devices"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["sv"]);
    // The same routes under the experimental prefixes; Global Search names this project's CRN.
    let (status, _) = call(&ctx, "GET", "/ibm/experimental/api/v1/backends/sv/status", Some(&jwt), None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, found) = call(&ctx, "POST", "/ibm/v3/resources/search", Some(&jwt), None, Some(json!({}))).await;
    assert_eq!(found["items"][0]["crn"], json!(ctx.crn));
    assert!(found["items"][0]["doc"]["extensions"].is_object());
    // A bad API key is IAM's 400.
    let resp = ctx.app.clone().oneshot(form("apikey=qc_unknown_token_value".into())).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // A submit through the JWT is stored with its params kept verbatim.
    let (status, job) =
        call(&ctx, "POST", "/ibm/api/v1/jobs", Some(&jwt), Some(&ctx.crn), Some(sampler(json!([[BELL, [], 10]]))))
            .await;
    assert_eq!(status, StatusCode::OK, "{job}");
    let path = format!("/ibm/api/v1/jobs/{}", job["id"].as_str().unwrap());
    let (_, got) = call(&ctx, "GET", &path, Some(&jwt), None, None).await;
    assert_eq!(got["params"]["pubs"], json!([[BELL, [], 10]]));
    assert_eq!(got["state"]["status"], "Queued");
    let (_, list) = call(&ctx, "GET", "/ibm/api/v1/jobs?exclude_params=true&backend=sv", Some(&jwt), None, None).await;
    assert_eq!(list["count"], json!(1));
    assert!(list["jobs"][0].get("params").is_none());
}
