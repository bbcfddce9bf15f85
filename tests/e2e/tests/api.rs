//! The native API `/v1` end to end, over a real socket: devices, jobs, sessions, lists, tenant
//! isolation, authentication and the bad-input catalogue.
//!
//! Every test creates its own noop devices (unique names) through the admin API, so the suite also
//! runs against a shared external server (`QCLOUD_E2E_URL` + `QCLOUD_E2E_TOKEN`, e.g. the docker
//! compose stack). Tests that need a second project's token or special server flags skip there.
//!
//! BAD INPUT CATALOGUE — every case asserts the status, a body of exactly
//! `{"error": {"code", "message"}}` with the code below, and that nothing was stored (job /
//! session / device lists unchanged):
//!
//! | case                                                        | status | code                     |
//! |-------------------------------------------------------------|--------|--------------------------|
//! | POST /v1/jobs, malformed JSON `{"device":`                  | 400    | invalid_json             |
//! | POST /v1/sessions, malformed JSON                           | 400    | invalid_json             |
//! | POST /v1/jobs, JSON of the wrong type (array body)          | 400    | invalid_body             |
//! | POST /v1/jobs, field of the wrong type (program: 5)         | 400    | invalid_body             |
//! | POST /v1/jobs, missing required field (program / payload)   | 400    | invalid_body             |
//! | POST /v1/jobs, neither device nor session_id                | 400    | missing_field            |
//! | POST /v1/sessions, missing mode / device                    | 400    | invalid_body             |
//! | POST /v1/jobs, /v1/sessions, /v1/devices: unknown field     | 400    | invalid_body             |
//! | POST /v1/jobs, Content-Type text/plain                      | 415    | unsupported_media_type   |
//! | POST /v1/jobs, no Content-Type                              | 415    | unsupported_media_type   |
//! | POST /v1/jobs, unknown device                               | 404    | not_found                |
//! | POST /v1/sessions, unknown device                           | 404    | not_found                |
//! | POST /v1/jobs, program the device does not run (sampler)    | 409    | unknown_program          |
//! | POST /v1/jobs, session of another project                   | 404    | not_found                |
//! | POST /v1/jobs, session id that does not exist               | 404    | not_found                |
//! | POST /v1/jobs, closed session                               | 409    | session_closed           |
//! | POST /v1/jobs, session that stopped accepting (draining)    | 409    | session_not_accepting    |
//! | POST /v1/jobs, device differs from the session's device     | 409    | device_mismatch          |
//! | POST /v1/sessions, max_ttl -1 / 0 / 1e12                    | 400    | invalid_ttl              |
//! | POST /v1/sessions, interactive_ttl -5 / 0 / 1e308           | 400    | invalid_ttl              |
//! | POST /v1/sessions, max_ttl "NaN" (a string)                 | 400    | invalid_body             |
//! | POST /v1/sessions, max_ttl NaN (bare token, not JSON)       | 400    | invalid_json             |
//! | POST /v1/sessions, max_ttl 1e400 (overflows f64)            | 400    | invalid_json             |
//! | POST /v1/jobs, shots 0 / -1 / 10000001                      | 400    | invalid_field            |
//! | POST /v1/jobs, shots 1e30 / 1e20 (not an i64) / "ten"       | 400    | invalid_body             |
//! | POST /v1/jobs, max_execution_time -1 / 0 / 1e9              | 400    | invalid_field            |
//! | POST /v1/jobs, priority "urgent"                            | 400    | invalid_field            |
//! | POST /v1/jobs, empty tag / 33 tags                          | 400    | invalid_field            |
//! | POST /v1/sessions, mode "weird"                             | 400    | invalid_field            |
//! | POST /v1/sessions, idle_policy "sleep"                      | 400    | invalid_field            |
//! | POST /v1/sessions, priority "urgent"                        | 400    | invalid_field            |
//! | POST /v1/devices, bad driver / name / num_qubits / timing   | 400    | invalid_field            |
//! | PATCH /v1/devices/{name}, status "sleeping"                 | 400    | invalid_field            |
//! | PATCH /v1/devices/{name}, unknown device                    | 404    | not_found                |
//! | POST /v1/devices, duplicate name                            | 409    | device_exists            |
//! | POST /v1/devices, non-admin token                           | 403    | forbidden                |
//! | body over --max-body-bytes 4096 (jobs, sessions)            | 413    | payload_too_large        |
//! | GET/POST /v1/jobs/not-a-uuid[/result,/cancel]               | 404    | not_found                |
//! | GET/POST /v1/sessions/12345[/close,/cancel]                 | 404    | not_found                |
//! | GET /v1/jobs/{random uuid}, /v1/sessions/{random uuid}      | 404    | not_found                |
//! | GET /v1/nope, /v2/jobs, /                                   | 404    | not_found                |
//! | DELETE /v1/jobs, PUT /v1/sessions/{id}, GET .../cancel      | 405    | method_not_allowed       |
//! | GET /v1/jobs|sessions?cursor=zz / =<time>_notauuid          | 400    | invalid_cursor           |
//! | GET /v1/jobs|sessions?limit=0 / 501 / -1                    | 400    | invalid_field            |
//! | NUL in a payload, tag, device, program, config, name, filter | 400   | invalid_field            |
//! | GET /v1/jobs?limit=abc                                      | 400    | invalid_query            |
//! | GET /v1/jobs?status=weird, /v1/sessions?state=weird|mode=x  | 400    | invalid_field            |
//! | GET /v1/jobs?foo=1, ?session_id=xyz, ?created_after=yesterday | 400  | invalid_query            |
//! | Idempotency-Key empty / 256 characters / non-ASCII bytes    | 400    | invalid_idempotency_key  |
//! | Idempotency-Key reused with a different request             | 422    | idempotency_key_reused   |
//! | noop payload with an unknown field / duration_ms over 1 h   | 400    | invalid_payload          |
//! | sampler: bad structure, QASM syntax error, shots 0 / -3     | 400    | invalid_payload          |
//! | sampler: a circuit wider than the device, shots 1e12         | 400    | too_large                |
//! | no Authorization header                                     | 401    | unauthenticated          |
//! | Authorization: Bearer <unknown token>                       | 401    | unauthenticated          |
//! | Authorization: Basic ... / "Bearer" / "Token x"             | 401    | unauthenticated          |

use qcloud_e2e::{create_token, unique, Client, Target};
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(30);

async fn start(extra: &[&str]) -> Target {
    Target::from_env_or_start(extra).await.expect("a qcloud server")
}

/// A skip note for tests that need the harness's own server.
fn skip_external(t: &Target, what: &str) -> bool {
    if t.is_external() {
        eprintln!("skipped against an external server: {what}");
        return true;
    }
    false
}

/// A token of another project (user `user` in `project`); local servers only.
fn token_of(t: &Target, project: &str, user: &str) -> Client {
    let db = t.db.as_ref().expect("a harness-started server");
    let token = create_token(db, project, user).expect("tokens create");
    Client::new(&t.url, &token)
}

/// One request with full control over headers and body. `token` None sends no Authorization.
async fn raw(
    t: &Target,
    method: Method,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, HeaderValue)],
    body: Option<(Option<&str>, Vec<u8>)>,
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", t.url));
    if let Some(tok) = token {
        req = req.bearer_auth(tok);
    }
    for (k, v) in headers {
        req = req.header(HeaderName::from_bytes(k.as_bytes()).unwrap(), v.clone());
    }
    if let Some((ctype, bytes)) = body {
        if let Some(ct) = ctype {
            req = req.header("content-type", ct);
        }
        req = req.body(bytes);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status();
    let bytes = resp.bytes().await.expect("body read");
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// A JSON body sent as raw bytes with `Content-Type: application/json`.
async fn post_raw(t: &Target, path: &str, body: &str) -> (StatusCode, Value) {
    raw(t, Method::POST, path, Some(&t.admin_token), &[], Some((Some("application/json"), body.as_bytes().to_vec())))
        .await
}

/// The error format: exactly `{"error": {"code": <code>, "message": <non-empty>}}` (plus an
/// optional `details`), with the expected status.
#[track_caller]
fn assert_err(got: &(StatusCode, Value), status: StatusCode, code: &str, case: &str) {
    let (s, body) = got;
    assert_eq!(*s, status, "{case}: status (body {body})");
    let obj = body.as_object().unwrap_or_else(|| panic!("{case}: body is not a JSON object: {body}"));
    assert_eq!(obj.keys().collect::<Vec<_>>(), vec!["error"], "{case}: body has only 'error': {body}");
    let err = obj["error"].as_object().unwrap_or_else(|| panic!("{case}: 'error' is not an object: {body}"));
    assert_eq!(err.get("code").and_then(Value::as_str), Some(code), "{case}: error code (body {body})");
    let msg = err.get("message").and_then(Value::as_str).unwrap_or_default();
    assert!(!msg.trim().is_empty(), "{case}: error message is empty: {body}");
    assert!(err.keys().all(|k| ["code", "message", "details"].contains(&k.as_str())), "{case}: error keys: {body}");
}

#[track_caller]
fn assert_status(got: &(StatusCode, Value), status: StatusCode, case: &str) {
    assert_eq!(got.0, status, "{case}: {}", got.1);
}

/// A fresh noop device of this test.
async fn noop_device(t: &Target) -> String {
    let name = unique("api");
    let r = t.admin().post("/v1/devices", json!({"name": name, "driver": "noop", "num_qubits": 4})).await.unwrap();
    assert_status(&r, StatusCode::CREATED, "create device");
    name
}

async fn submit(c: &Client, body: Value) -> Value {
    let r = c.post("/v1/jobs", body.clone()).await.unwrap();
    assert_status(&r, StatusCode::CREATED, &format!("submit {body}"));
    r.1
}

async fn hold(c: &Client, device: &str, ms: u64) -> String {
    let j = submit(c, json!({"device": device, "program": "noop", "payload": {"duration_ms": ms}})).await;
    id(&j)
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}")).to_string()
}

async fn get_job(c: &Client, id: &str) -> Value {
    let r = c.get(&format!("/v1/jobs/{id}")).await.unwrap();
    assert_status(&r, StatusCode::OK, "GET job");
    r.1
}

/// Poll a job until its status is `status`.
async fn wait_job_status(c: &Client, id: &str, status: &str) -> Value {
    let t0 = Instant::now();
    loop {
        let j = get_job(c, id).await;
        if j["status"] == status {
            return j;
        }
        assert!(t0.elapsed() < LIMIT, "job {id} never became {status}: {j}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn create_session(c: &Client, body: Value) -> Value {
    let r = c.post("/v1/sessions", body.clone()).await.unwrap();
    assert_status(&r, StatusCode::CREATED, &format!("create session {body}"));
    r.1
}

/// Ids of the project's jobs on `device` (all pages).
async fn job_ids(c: &Client, query: &str) -> BTreeSet<String> {
    list_all(c, "/v1/jobs", query, 500).await.iter().map(id).collect()
}

async fn session_ids(c: &Client, query: &str) -> BTreeSet<String> {
    list_all(c, "/v1/sessions", query, 500).await.iter().map(id).collect()
}

/// Walk every page of a list; asserts that no item appears twice.
async fn list_all(c: &Client, path: &str, query: &str, limit: usize) -> Vec<Value> {
    let mut items = Vec::new();
    let mut seen = BTreeSet::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let mut q = format!("{path}?limit={limit}");
        if !query.is_empty() {
            q.push('&');
            q.push_str(query);
        }
        if let Some(cur) = &cursor {
            q.push_str(&format!("&cursor={cur}"));
        }
        let (s, page) = c.get(&q).await.unwrap();
        assert_eq!(s, StatusCode::OK, "GET {q}: {page}");
        let page_items = page["items"].as_array().unwrap_or_else(|| panic!("no items in {page}"));
        assert!(page_items.len() <= limit, "page larger than the limit: {page}");
        for it in page_items {
            assert!(seen.insert(id(it)), "{} listed twice while paging {q}", id(it));
            items.push(it.clone());
        }
        match page["next_cursor"].as_str() {
            Some(next) => {
                assert_eq!(page_items.len(), limit, "a page with a next_cursor is full: {page}");
                cursor = Some(next.to_string());
            }
            None => return items,
        }
    }
    panic!("paging {path}?{query} never ended");
}

// ---------------------------------------------------------------------------------------------
// Probes and devices
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn health_and_readiness_need_no_token() {
    let t = start(&[]).await;
    let h = raw(&t, Method::GET, "/healthz", None, &[], None).await;
    assert_status(&h, StatusCode::OK, "healthz");
    assert_eq!(h.1["status"], "ok");
    let r = raw(&t, Method::GET, "/readyz", None, &[], None).await;
    assert_status(&r, StatusCode::OK, "readyz");
    assert_eq!(r.1["status"], "ready");
}

#[tokio::test]
async fn devices_are_listed_created_and_patched() {
    let t = start(&[]).await;
    let admin = t.admin();
    let name = unique("api");
    let (s, created) = admin
        .post(
            "/v1/devices",
            json!({"name": name, "driver": "noop", "num_qubits": 7, "timing": {"setup_ms": 1.0}, "config": {"x": 1}}),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], name.as_str());
    assert_eq!(created["kind"], "gate");
    assert_eq!(created["driver"], "noop");
    assert_eq!(created["status"], "online");
    assert_eq!(created["num_qubits"], 7);
    assert_eq!(created["queue_length"], 0);
    assert_eq!(created["held_by_session"], Value::Null);
    assert_eq!(created["config"], json!({"x": 1}));

    let (s, list) = admin.get("/v1/devices").await.unwrap();
    assert_eq!(s, StatusCode::OK);
    let mine = list.as_array().unwrap().iter().find(|d| d["name"] == name.as_str()).expect("listed").clone();
    for field in ["name", "kind", "driver", "status", "num_qubits", "queue_length", "held_by_session"] {
        assert!(mine.get(field).is_some(), "device field {field} missing: {mine}");
    }
    let (s, one) = admin.get(&format!("/v1/devices/{name}")).await.unwrap();
    assert_eq!(s, StatusCode::OK);
    assert_eq!(one["num_qubits"], 7);

    // PATCH: status, timing, config.
    let (s, p) = admin
        .call(
            Method::PATCH,
            &format!("/v1/devices/{name}"),
            Some(json!({"status": "paused", "timing": {"setup_ms": 2.0, "per_shot_ms": 0.5}, "config": {"y": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["status"], "paused");
    assert_eq!(p["timing"]["setup_ms"], 2.0);
    assert_eq!(p["config"], json!({"y": 2}));
    let (_, p) =
        admin.call(Method::PATCH, &format!("/v1/devices/{name}"), Some(json!({"status": "online"}))).await.unwrap();
    assert_eq!(p["status"], "online");
    assert_eq!(p["config"], json!({"y": 2}), "a PATCH without config keeps it");

    // queue_length and held_by_session follow the device's work.
    let s = create_session(&admin, json!({"device": name, "mode": "dedicated"})).await;
    let j1 = submit(&admin, json!({"session_id": id(&s), "program": "noop", "payload": {"duration_ms": 10000}})).await;
    submit(&admin, json!({"session_id": id(&s), "program": "noop", "payload": {}})).await;
    wait_job_status(&admin, &id(&j1), "running").await;
    let (_, d) = admin.get(&format!("/v1/devices/{name}")).await.unwrap();
    assert_eq!(d["held_by_session"], id(&s).as_str(), "{d}");
    assert_eq!(d["queue_length"], 1, "{d}");
    admin.post(&format!("/v1/sessions/{}/cancel", id(&s)), json!({})).await.unwrap();
    admin.post(&format!("/v1/jobs/{}/cancel", id(&j1)), json!({})).await.unwrap();
}

#[tokio::test]
async fn device_admin_errors_duplicate_and_bad_fields() {
    let t = start(&[]).await;
    let admin = t.admin();
    let name = noop_device(&t).await;
    let before = admin.get("/v1/devices").await.unwrap().1.as_array().unwrap().len();

    let dup = admin.post("/v1/devices", json!({"name": name, "driver": "noop", "num_qubits": 4})).await.unwrap();
    assert_err(&dup, StatusCode::CONFLICT, "device_exists", "duplicate device");

    let fresh = unique("api");
    let cases = [
        ("unknown driver", json!({"name": fresh, "driver": "quantum_magic", "num_qubits": 4})),
        ("name with spaces", json!({"name": "has spaces", "driver": "noop", "num_qubits": 4})),
        ("negative num_qubits", json!({"name": fresh, "driver": "noop", "num_qubits": -1})),
        ("negative timing", json!({"name": fresh, "driver": "noop", "num_qubits": 4, "timing": {"setup_ms": -1}})),
        ("config not an object", json!({"name": fresh, "driver": "noop", "num_qubits": 4, "config": [1]})),
        ("bad status", json!({"name": fresh, "driver": "noop", "num_qubits": 4, "status": "sleeping"})),
    ];
    for (case, body) in cases {
        let r = admin.post("/v1/devices", body).await.unwrap();
        assert_err(&r, StatusCode::BAD_REQUEST, "invalid_field", case);
    }
    let r = admin
        .post("/v1/devices", json!({"name": fresh, "driver": "noop", "num_qubits": 4, "colour": "red"}))
        .await
        .unwrap();
    assert_err(&r, StatusCode::BAD_REQUEST, "invalid_body", "device unknown field");

    let r =
        admin.call(Method::PATCH, &format!("/v1/devices/{name}"), Some(json!({"status": "sleeping"}))).await.unwrap();
    assert_err(&r, StatusCode::BAD_REQUEST, "invalid_field", "patch bad status");
    let r = admin
        .call(Method::PATCH, &format!("/v1/devices/{}", unique("nodev")), Some(json!({"status": "paused"})))
        .await
        .unwrap();
    assert_err(&r, StatusCode::NOT_FOUND, "not_found", "patch unknown device");
    let r = admin.get(&format!("/v1/devices/{}", unique("nodev"))).await.unwrap();
    assert_err(&r, StatusCode::NOT_FOUND, "not_found", "get unknown device");

    // Nothing stored, nothing changed.
    let (_, list) = admin.get("/v1/devices").await.unwrap();
    if !t.is_external() {
        assert_eq!(list.as_array().unwrap().len(), before, "no device was added");
    }
    assert!(!list.as_array().unwrap().iter().any(|d| d["name"] == fresh.as_str()));
    let (_, d) = admin.get(&format!("/v1/devices/{name}")).await.unwrap();
    assert_eq!(d["status"], "online", "the rejected patch changed nothing");
}

#[tokio::test]
async fn non_admin_cannot_manage_devices() {
    let t = start(&[]).await;
    if skip_external(&t, "needs a non-admin token") {
        return;
    }
    let user = token_of(&t, "proj_a", "alice");
    let name = unique("api");
    let r = user.post("/v1/devices", json!({"name": name, "driver": "noop", "num_qubits": 4})).await.unwrap();
    assert_err(&r, StatusCode::FORBIDDEN, "forbidden", "non-admin POST /v1/devices");
    let existing = noop_device(&t).await;
    let r =
        user.call(Method::PATCH, &format!("/v1/devices/{existing}"), Some(json!({"status": "paused"}))).await.unwrap();
    assert_err(&r, StatusCode::FORBIDDEN, "forbidden", "non-admin PATCH");
    // Reading is allowed, and nothing was created or changed.
    let (s, d) = user.get(&format!("/v1/devices/{existing}")).await.unwrap();
    assert_eq!(s, StatusCode::OK);
    assert_eq!(d["status"], "online");
    let r = user.get(&format!("/v1/devices/{name}")).await.unwrap();
    assert_err(&r, StatusCode::NOT_FOUND, "not_found", "the refused device does not exist");
}

// ---------------------------------------------------------------------------------------------
// Jobs
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn job_lifecycle_submit_run_complete_result() {
    let t = start(&[]).await;
    let c = t.admin();
    let dev = noop_device(&t).await;
    let j = submit(
        &c,
        json!({"device": dev, "program": "noop", "payload": {"duration_ms": 3000}, "shots": 10, "tags": ["life"]}),
    )
    .await;
    assert!(matches!(j["status"].as_str(), Some("queued" | "running")), "{j}");
    let jid = id(&j);
    assert_eq!(j["device"], dev.as_str());
    assert_eq!(j["session_id"], Value::Null);
    assert_eq!(j["program"], "noop");
    assert_eq!(j["shots"], 10);
    assert_eq!(j["tags"], json!(["life"]));

    let running = wait_job_status(&c, &jid, "running").await;
    assert!(running["started_at"].is_string(), "{running}");
    assert_eq!(running["finished_at"], Value::Null);
    assert_eq!(running["queue_position"], Value::Null, "no queue position once running");
    let r = c.get(&format!("/v1/jobs/{jid}/result")).await.unwrap();
    assert_err(&r, StatusCode::CONFLICT, "job_not_finished", "result of a running job");

    let done = c.wait_job(&jid, LIMIT).await.unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    for field in [
        "id",
        "device",
        "session_id",
        "program",
        "status",
        "reason",
        "queue_position",
        "created_at",
        "started_at",
        "finished_at",
        "usage_seconds",
        "attempt",
    ] {
        assert!(done.get(field).is_some(), "job field {field} missing: {done}");
    }
    assert_eq!(done["id"], jid.as_str());
    assert_eq!(done["reason"], Value::Null);
    assert_eq!(done["queue_position"], Value::Null);
    assert_eq!(done["attempt"], 1);
    assert!(done["usage_seconds"].as_f64().unwrap() > 0.0, "{done}");
    let created = done["created_at"].as_str().unwrap();
    let started = done["started_at"].as_str().unwrap();
    let finished = done["finished_at"].as_str().unwrap();
    let ts = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap();
    assert!(ts(created) <= ts(started) && ts(started) <= ts(finished), "{done}");

    let (s, res) = c.get(&format!("/v1/jobs/{jid}/result")).await.unwrap();
    assert_eq!(s, StatusCode::OK, "{res}");
    assert_eq!(res["job_id"], jid.as_str());
    assert_eq!(res["result"]["job_id"], jid.as_str(), "the noop result names its job: {res}");
}

#[tokio::test]
async fn failed_job_has_a_reason_and_no_result() {
    let t = start(&[]).await;
    let c = t.admin();
    let dev = noop_device(&t).await;
    let j =
        submit(&c, json!({"device": dev, "program": "noop", "payload": {"fail": "the qubits are on strike"}})).await;
    let done = c.wait_job(&id(&j), LIMIT).await.unwrap();
    assert_eq!(done["status"], "failed", "{done}");
    let reason = done["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("the qubits are on strike"), "reason names the failure: {done}");
    assert!(done["finished_at"].is_string());
    let r = c.get(&format!("/v1/jobs/{}/result", id(&j))).await.unwrap();
    assert_err(&r, StatusCode::CONFLICT, "job_has_no_result", "result of a failed job");
}

#[tokio::test]
async fn cancel_queued_running_and_finished_jobs() {
    let t = start(&[]).await;
    let c = t.admin();
    let dev = noop_device(&t).await;
    let running = hold(&c, &dev, 10_000).await;
    wait_job_status(&c, &running, "running").await;
    let queued = hold(&c, &dev, 0).await;

    // Queued: canceled at once, in the answer itself.
    let (s, v) = c.post(&format!("/v1/jobs/{queued}/cancel"), json!({})).await.unwrap();
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "canceled", "{v}");
    assert!(v["reason"].is_string(), "{v}");
    assert_eq!(v["started_at"], Value::Null);

    // Running: the driver is asked to stop; canceled soon (well before its 10 s).
    let (s, v) = c.post(&format!("/v1/jobs/{running}/cancel"), json!({})).await.unwrap();
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(matches!(v["status"].as_str(), Some("running" | "canceled")), "{v}");
    let done = c.wait_job(&running, LIMIT).await.unwrap();
    assert_eq!(done["status"], "canceled", "{done}");
    let r = c.get(&format!("/v1/jobs/{running}/result")).await.unwrap();
    assert_err(&r, StatusCode::CONFLICT, "job_has_no_result", "result of a canceled job");

    // Finished: 409, for canceled and completed jobs alike.
    let r = c.post(&format!("/v1/jobs/{running}/cancel"), json!({})).await.unwrap();
    assert_err(&r, StatusCode::CONFLICT, "job_finished", "cancel a canceled job");
    let quick = hold(&c, &dev, 0).await;
    assert_eq!(c.wait_job(&quick, LIMIT).await.unwrap()["status"], "completed");
    let r = c.post(&format!("/v1/jobs/{quick}/cancel"), json!({})).await.unwrap();
    assert_err(&r, StatusCode::CONFLICT, "job_finished", "cancel a completed job");
    assert_eq!(get_job(&c, &quick).await["status"], "completed", "the refused cancel changed nothing");
}

#[tokio::test]
async fn queue_position_counts_the_jobs_ahead() {
    let t = start(&[]).await;
    let c = t.admin();
    let dev = noop_device(&t).await;
    let first = hold(&c, &dev, 10_000).await;
    wait_job_status(&c, &first, "running").await;
    let second = hold(&c, &dev, 0).await;
    let third = hold(&c, &dev, 0).await;
    let (a, b, f) = (get_job(&c, &second).await, get_job(&c, &third).await, get_job(&c, &first).await);
    assert_eq!(a["status"], "queued");
    assert_eq!(a["queue_position"], 1, "{a}");
    assert_eq!(b["queue_position"], 2, "{b}");
    assert_eq!(f["queue_position"], Value::Null, "{f}");
    let (_, d) = c.get(&format!("/v1/devices/{dev}")).await.unwrap();
    assert_eq!(d["queue_length"], 2, "{d}");
    // The list shows the same positions.
    let listed = list_all(&c, "/v1/jobs", &format!("device={dev}&status=queued"), 50).await;
    let pos: Vec<_> = listed.iter().map(|j| j["queue_position"].as_i64()).collect();
    assert_eq!(pos, vec![Some(2), Some(1)], "newest first");
    // Cancel the second: the third moves up.
    c.post(&format!("/v1/jobs/{second}/cancel"), json!({})).await.unwrap();
    assert_eq!(get_job(&c, &third).await["queue_position"], 1);
    c.post(&format!("/v1/jobs/{first}/cancel"), json!({})).await.unwrap();
    assert_eq!(c.wait_job(&third, LIMIT).await.unwrap()["status"], "completed");
}

async fn submit_with_key(c: &Client, key: &str, body: &Value) -> (StatusCode, Value) {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("idempotency-key", HeaderValue::from_str(key).unwrap());
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/jobs", c.base))
        .bearer_auth(&c.token)
        .headers(h)
        .json(body)
        .send()
        .await
        .unwrap();
    let s = resp.status();
    (s, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn idempotency_key_returns_the_same_job() {
    let t = start(&[]).await;
    let c = t.admin();
    let dev = noop_device(&t).await;
    let body = json!({"device": dev, "program": "noop", "payload": {}});
    let key = unique("key");
    let (s1, a) = submit_with_key(&c, &key, &body).await;
    assert_eq!(s1, StatusCode::CREATED, "{a}");
    let (s2, b) = submit_with_key(&c, &key, &body).await;
    assert_eq!(s2, StatusCode::OK, "a replay is 200: {b}");
    assert_eq!(id(&a), id(&b), "same key, same job");
    // The same request with its keys in another order is the same request.
    let reordered: Value =
        serde_json::from_str(&format!(r#"{{"payload": {{}}, "program": "noop", "device": "{dev}"}}"#)).unwrap();
    let (s2b, b2) = submit_with_key(&c, &key, &reordered).await;
    assert_eq!((s2b, id(&b2)), (StatusCode::OK, id(&a)), "{b2}");
    // A different body under the same key is a client bug: 422, nothing stored.
    for other in [
        json!({"device": dev, "program": "noop", "payload": {"duration_ms": 5}}),
        json!({"device": dev, "program": "noop", "payload": {}, "shots": 10}),
        json!({"device": dev, "program": "noop", "payload": {}, "tags": ["x"]}),
    ] {
        let (s3, c3) = submit_with_key(&c, &key, &other).await;
        assert_err(&(s3, c3.clone()), StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused", "reused key");
        assert!(c3["error"]["message"].as_str().unwrap().contains(&id(&a)), "names the first job: {c3}");
    }
    let (s4, d) = submit_with_key(&c, &unique("key"), &body).await;
    assert_eq!(s4, StatusCode::CREATED);
    assert_ne!(id(&d), id(&a), "different keys, different jobs");
    assert_eq!(job_ids(&c, &format!("device={dev}")).await.len(), 2, "the replays stored nothing");

    if skip_external(&t, "idempotency across projects needs a second project") {
        return;
    }
    let other = token_of(&t, "proj_b", "bob");
    let (s5, e) = submit_with_key(&other, &key, &body).await;
    assert_eq!(s5, StatusCode::CREATED, "another project's key is its own: {e}");
    assert_ne!(id(&e), id(&a));
    let (s6, f) = submit_with_key(&other, &key, &body).await;
    assert_eq!((s6, id(&f)), (StatusCode::OK, id(&e)));
}

/// Issue 7: what can be checked cheaply is checked at submit, with a 400, and nothing is stored.
#[tokio::test]
async fn payloads_are_checked_at_submit() {
    let t = start(&[]).await;
    let c = t.admin();
    let noop = noop_device(&t).await;
    let sv = unique("sv");
    let r = c.post("/v1/devices", json!({"name": sv, "driver": "statevector", "num_qubits": 5})).await.unwrap();
    assert_status(&r, StatusCode::CREATED, "create statevector device");
    let bell = "OPENQASM 3.0; include \"stdgates.inc\"; qubit[2] q; bit[2] c; h q[0]; cx q[0], q[1]; c = measure q;";
    let wide = "OPENQASM 3.0; include \"stdgates.inc\"; qubit[6] q; bit[6] c; h q[5]; c = measure q;";
    let cases = [
        (json!({"device": noop, "program": "noop", "payload": {"duration_ms": 1, "bogus": 1}}), "invalid_payload"),
        (json!({"device": noop, "program": "noop", "payload": {"duration_ms": 3_600_001}}), "invalid_payload"),
        (json!({"device": sv, "program": "sampler", "payload": {"pubs": 5}}), "invalid_payload"),
        (json!({"device": sv, "program": "sampler", "payload": {"pubs": [[bell, null, 0]]}}), "invalid_payload"),
        (json!({"device": sv, "program": "sampler", "payload": {"pubs": [[bell, null, 1e12]]}}), "too_large"),
        (json!({"device": sv, "program": "sampler", "payload": {"pubs": [[bell, null, -3]]}}), "invalid_payload"),
        (
            json!({"device": sv, "program": "sampler", "payload": {"pubs": [["OPENQASM 3.0; qubit[2] q; h q[0"]]}}),
            "invalid_payload",
        ),
        (json!({"device": sv, "program": "estimator", "payload": {"pubs": [[bell, "ZZZZ"]]}}), "invalid_payload"),
        (json!({"device": sv, "program": "sampler", "payload": {"pubs": [[wide]]}}), "too_large"),
    ];
    for (body, code) in &cases {
        let r = c.post("/v1/jobs", body.clone()).await.unwrap();
        assert_err(&r, StatusCode::BAD_REQUEST, code, &body.to_string());
    }
    assert!(job_ids(&c, &format!("device={noop}")).await.is_empty(), "nothing stored");
    assert!(job_ids(&c, &format!("device={sv}")).await.is_empty(), "nothing stored");

    // A good payload is taken, and the shots its pubs ask for show on the job.
    let job = submit(&c, json!({"device": sv, "program": "sampler", "payload": {"pubs": [[bell, null, 1000]]}})).await;
    assert_eq!(job["shots"], 1000, "{job}");
    let job = submit(&c, json!({"device": sv, "program": "sampler", "payload": {"pubs": [[bell]], "shots": 64}})).await;
    assert_eq!(job["shots"], 64, "{job}");
    let done = c.wait_job(&id(&job), LIMIT).await.unwrap();
    assert_eq!(done["status"], "completed", "{done}");
}

#[tokio::test]
async fn an_expired_idempotency_key_names_a_new_job() {
    let t = start(&["--idempotency-window", "1"]).await;
    if skip_external(&t, "needs --idempotency-window") {
        return;
    }
    let c = t.admin();
    let dev = noop_device(&t).await;
    let key = unique("key");
    let body = json!({"device": dev, "program": "noop", "payload": {}});
    let (s1, a) = submit_with_key(&c, &key, &body).await;
    assert_eq!(s1, StatusCode::CREATED, "{a}");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // After the window the key is free again, even for another request.
    let other = json!({"device": dev, "program": "noop", "payload": {"duration_ms": 1}});
    let (s2, b) = submit_with_key(&c, &key, &other).await;
    assert_eq!(s2, StatusCode::CREATED, "{b}");
    assert_ne!(id(&a), id(&b));
    let (s3, b2) = submit_with_key(&c, &key, &other).await;
    assert_eq!((s3, id(&b2)), (StatusCode::OK, id(&b)), "the key now names the new job");
    assert_eq!(job_ids(&c, &format!("device={dev}")).await.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn session_is_created_runs_jobs_and_deactivates_when_idle() {
    let t = start(&[]).await;
    let c = t.admin();
    let dev = noop_device(&t).await;
    let s = create_session(
        &c,
        json!({"device": dev, "mode": "dedicated", "interactive_ttl": 1, "max_ttl": 600, "priority": "high", "tags": ["exp1"]}),
    )
    .await;
    let sid = id(&s);
    for field in [
        "id",
        "device",
        "mode",
        "state",
        "closed_reason",
        "accepting_jobs",
        "max_ttl",
        "interactive_ttl",
        "idle_policy",
        "priority",
        "tags",
        "created_at",
        "started_at",
        "activated_at",
        "last_job_started",
        "last_job_completed",
        "closed_at",
        "usage_seconds",
        "jobs",
    ] {
        assert!(s.get(field).is_some(), "session field {field} missing: {s}");
    }
    assert_eq!(s["device"], dev.as_str());
    assert_eq!(s["mode"], "dedicated");
    assert_eq!(s["state"], "pending");
    assert_eq!(s["closed_reason"], Value::Null);
    assert_eq!(s["accepting_jobs"], true);
    assert_eq!(s["max_ttl"], 600.0);
    assert_eq!(s["interactive_ttl"], 1.0);
    assert_eq!(s["idle_policy"], "deactivate");
    assert_eq!(s["priority"], "high");
    assert_eq!(s["tags"], json!(["exp1"]));
    assert_eq!(s["started_at"], Value::Null);
    assert_eq!(s["jobs"], json!({}));

    let j = submit(&c, json!({"session_id": sid, "program": "noop", "payload": {"duration_ms": 200}})).await;
    assert_eq!(j["session_id"], sid.as_str());
    assert_eq!(j["device"], dev.as_str(), "the device comes from the session");
    assert_eq!(j["priority"], "high", "the job takes the session's priority");
    assert_eq!(c.wait_job(&id(&j), LIMIT).await.unwrap()["status"], "completed");

    // It was activated (timestamps), then, idle for its interactive TTL, it gives the device back.
    let v = c.wait_session(&sid, LIMIT, |v| v["state"] == "inactive").await.unwrap();
    assert!(v["started_at"].is_string() && v["activated_at"].is_string(), "{v}");
    assert!(v["last_job_started"].is_string() && v["last_job_completed"].is_string(), "{v}");
    assert_eq!(v["accepting_jobs"], true);
    assert_eq!(v["closed_reason"], Value::Null);
    assert_eq!(v["jobs"], json!({"completed": 1}));
    assert!(v["usage_seconds"].as_f64().unwrap() > 0.0, "{v}");
    let (_, d) = c.get(&format!("/v1/devices/{dev}")).await.unwrap();
    assert_eq!(d["held_by_session"], Value::Null, "an inactive session does not hold the device: {d}");

    // An inactive session queues again when a job arrives, and is active while it runs.
    let j3 = submit(&c, json!({"session_id": sid, "program": "noop", "payload": {"duration_ms": 2000}})).await;
    wait_job_status(&c, &id(&j3), "running").await;
    let v = c.get(&format!("/v1/sessions/{sid}")).await.unwrap().1;
    assert_eq!(v["state"], "active", "{v}");
    assert_eq!(v["jobs"], json!({"completed": 1, "running": 1}));
    assert_eq!(c.wait_job(&id(&j3), LIMIT).await.unwrap()["status"], "completed");
}

#[tokio::test]
async fn session_with_time_out_policy_closes_when_idle() {
    let t = start(&[]).await;
    let c = t.admin();
    let dev = noop_device(&t).await;
    let s =
        create_session(&c, json!({"device": dev, "mode": "batch", "interactive_ttl": 1, "idle_policy": "time_out"}))
            .await;
    let sid = id(&s);
    assert_eq!(s["mode"], "batch");
    assert_eq!(s["idle_policy"], "time_out");
    let j = submit(&c, json!({"session_id": sid, "program": "noop", "payload": {}})).await;
    c.wait_job(&id(&j), LIMIT).await.unwrap();
    let v = c.wait_session(&sid, LIMIT, |v| v["state"] == "closed").await.unwrap();
    assert_eq!(v["closed_reason"], "idle_timeout", "{v}");
    assert_eq!(v["accepting_jobs"], false);
    assert!(v["closed_at"].is_string());
    let r = c.post("/v1/jobs", json!({"session_id": sid, "program": "noop", "payload": {}})).await.unwrap();
    assert_err(&r, StatusCode::CONFLICT, "session_closed", "submit to a timed-out session");
}

#[tokio::test]
async fn close_drains_queued_jobs_then_completes() {
    let t = start(&[]).await;
    let c = t.admin();
    let dev = noop_device(&t).await;
    let sid = id(&create_session(&c, json!({"device": dev, "mode": "dedicated"})).await);
    let job = |ms: u64| json!({"session_id": sid, "program": "noop", "payload": {"duration_ms": ms}});
    let a = id(&submit(&c, job(10_000)).await);
    wait_job_status(&c, &a, "running").await;
    let b = id(&submit(&c, job(0)).await);
    let d = id(&submit(&c, job(0)).await);

    let (s, v) = c.post(&format!("/v1/sessions/{sid}/close"), json!({})).await.unwrap();
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["accepting_jobs"], false, "{v}");
    assert_eq!(v["state"], "active", "draining: the running job holds it: {v}");
    assert_eq!(v["jobs"], json!({"running": 1, "queued": 2}));

    // A session that stopped accepting refuses new jobs, and stores nothing.
    let r = c.post("/v1/jobs", job(0)).await.unwrap();
    assert_err(&r, StatusCode::CONFLICT, "session_not_accepting", "submit to a draining session");
    assert_eq!(job_ids(&c, &format!("session_id={sid}")).await.len(), 3);

    // Queued jobs still run after close; the session closes as completed when they are done.
    c.post(&format!("/v1/jobs/{a}/cancel"), json!({})).await.unwrap();
    for j in [&b, &d] {
        assert_eq!(c.wait_job(j, LIMIT).await.unwrap()["status"], "completed", "queued jobs drain after close");
    }
    let v = c.wait_session(&sid, LIMIT, |v| v["state"] == "closed").await.unwrap();
    assert_eq!(v["closed_reason"], "completed", "{v}");
    assert_eq!(v["jobs"], json!({"canceled": 1, "completed": 2}));
    let r = c.post("/v1/jobs", job(0)).await.unwrap();
    assert_err(&r, StatusCode::CONFLICT, "session_closed", "submit to a closed session");
    // Closing again is harmless.
    let (s, v) = c.post(&format!("/v1/sessions/{sid}/close"), json!({})).await.unwrap();
    assert_eq!((s, v["closed_reason"].clone()), (StatusCode::OK, json!("completed")));
}

#[tokio::test]
async fn session_cancel_cancels_queued_jobs_and_closes_now() {
    let t = start(&[]).await;
    let c = t.admin();
    let dev = noop_device(&t).await;
    let sid = id(&create_session(&c, json!({"device": dev, "mode": "dedicated"})).await);
    let job = |ms: u64| json!({"session_id": sid, "program": "noop", "payload": {"duration_ms": ms}});
    let a = id(&submit(&c, job(10_000)).await);
    wait_job_status(&c, &a, "running").await;
    let b = id(&submit(&c, job(0)).await);
    let d = id(&submit(&c, job(0)).await);

    let (s, v) = c.post(&format!("/v1/sessions/{sid}/cancel"), json!({})).await.unwrap();
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "closed", "{v}");
    assert_eq!(v["closed_reason"], "canceled");
    assert_eq!(v["accepting_jobs"], false);
    for j in [&b, &d] {
        let jv = get_job(&c, j).await;
        assert_eq!(jv["status"], "canceled", "queued jobs are canceled at once: {jv}");
        assert!(jv["reason"].is_string());
    }
    assert_eq!(get_job(&c, &a).await["status"], "running", "the running job finishes (rule 7)");
    let r = c.post("/v1/jobs", job(0)).await.unwrap();
    assert_err(&r, StatusCode::CONFLICT, "session_closed", "submit to a canceled session");
    c.post(&format!("/v1/jobs/{a}/cancel"), json!({})).await.unwrap();
    c.wait_job(&a, LIMIT).await.unwrap();
    let v = c.wait_session(&sid, LIMIT, |v| v["jobs"].get("running").is_none()).await.unwrap();
    assert_eq!(v["jobs"], json!({"canceled": 3}));
    assert_eq!(v["closed_reason"], "canceled");
    let (_, dv) = c.get(&format!("/v1/devices/{dev}")).await.unwrap();
    assert_eq!(dv["held_by_session"], Value::Null, "{dv}");
}

#[tokio::test]
async fn sessions_list_filters_and_pages() {
    let t = start(&[]).await;
    let c = t.admin();
    let dev = noop_device(&t).await;
    let other = noop_device(&t).await;
    let tag = unique("tag");
    let mut created = Vec::new();
    for i in 0..5 {
        let mut tags = vec![format!("n{i}")];
        if i % 2 == 0 {
            tags.push(tag.clone());
        }
        created.push(create_session(&c, json!({"device": dev, "mode": "dedicated", "tags": tags})).await);
    }
    let batch = create_session(&c, json!({"device": other, "mode": "batch"})).await;
    let ids: Vec<String> = created.iter().map(id).collect();

    // Cursor pagination: page size 2, every page walked, no duplicates, all seen, newest first.
    let all = list_all(&c, "/v1/sessions", &format!("device={dev}"), 2).await;
    let listed: Vec<String> = all.iter().map(id).collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(listed, newest_first);
    let (_, first) = c.get(&format!("/v1/sessions?device={dev}&limit=2")).await.unwrap();
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    assert!(first["next_cursor"].is_string());

    // Filters.
    let set = |v: &[&String]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(session_ids(&c, &format!("device={dev}&tag={tag}")).await, set(&[&ids[0], &ids[2], &ids[4]]));
    assert_eq!(session_ids(&c, &format!("device={dev}&mode=batch")).await, BTreeSet::new());
    assert_eq!(session_ids(&c, &format!("device={other}&mode=batch")).await, set(&[&id(&batch)]));
    assert_eq!(session_ids(&c, &format!("device={dev}&state=pending")).await.len(), 5);
    assert_eq!(session_ids(&c, &format!("device={dev}&state=closed")).await, BTreeSet::new());
    c.post(&format!("/v1/sessions/{}/cancel", ids[1]), json!({})).await.unwrap();
    assert_eq!(session_ids(&c, &format!("device={dev}&state=closed")).await, set(&[&ids[1]]));
    // Created range: created_after is inclusive, created_before exclusive.
    let t2 = created[2]["created_at"].as_str().unwrap();
    assert_eq!(session_ids(&c, &format!("device={dev}&created_after={t2}")).await, set(&[&ids[2], &ids[3], &ids[4]]));
    assert_eq!(session_ids(&c, &format!("device={dev}&created_before={t2}")).await, set(&[&ids[0], &ids[1]]));
    let t4 = created[4]["created_at"].as_str().unwrap();
    assert_eq!(
        session_ids(&c, &format!("device={dev}&created_after={t2}&created_before={t4}")).await,
        set(&[&ids[2], &ids[3]])
    );
    // A listed session carries the same fields as GET.
    let (_, one) = c.get(&format!("/v1/sessions/{}", ids[0])).await.unwrap();
    let from_list = all.iter().find(|s| s["id"] == ids[0].as_str()).unwrap();
    assert_eq!(from_list["tags"], one["tags"]);
    assert_eq!(from_list.as_object().unwrap().len(), one.as_object().unwrap().len());
}

#[tokio::test]
async fn jobs_list_filters_and_pages() {
    let t = start(&[]).await;
    let c = t.admin();
    let dev = noop_device(&t).await;
    let other = noop_device(&t).await;
    let tag = unique("tag");
    let sid = id(&create_session(&c, json!({"device": dev, "mode": "batch"})).await);
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut body = json!({"device": dev, "program": "noop", "payload": {}, "tags": [format!("n{i}")]});
        if i % 2 == 0 {
            body["tags"] = json!([format!("n{i}"), tag]);
        }
        if i == 3 {
            body["payload"] = json!({"fail": "on purpose"});
        }
        if i >= 3 {
            body["session_id"] = json!(sid);
        }
        ids.push(id(&submit(&c, body).await));
    }
    let elsewhere = id(&submit(&c, json!({"device": other, "program": "noop", "payload": {}})).await);
    for j in ids.iter().chain([&elsewhere]) {
        c.wait_job(j, LIMIT).await.unwrap();
    }

    let all = list_all(&c, "/v1/jobs", &format!("device={dev}"), 2).await;
    let listed: Vec<String> = all.iter().map(id).collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(listed, newest_first, "every page walked, newest first, no duplicates");

    let set = |v: &[&String]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(job_ids(&c, &format!("device={dev}&status=failed")).await, set(&[&ids[3]]));
    assert_eq!(job_ids(&c, &format!("device={dev}&status=completed")).await.len(), 4);
    assert_eq!(job_ids(&c, &format!("device={dev}&status=queued")).await, BTreeSet::new());
    assert_eq!(job_ids(&c, &format!("session_id={sid}")).await, set(&[&ids[3], &ids[4]]));
    assert_eq!(job_ids(&c, &format!("session_id={sid}&status=completed")).await, set(&[&ids[4]]));
    assert_eq!(job_ids(&c, &format!("tag={tag}")).await, set(&[&ids[0], &ids[2], &ids[4]]));
    assert_eq!(job_ids(&c, &format!("device={other}")).await, set(&[&elsewhere]));
    let t1 = all.iter().find(|j| j["id"] == ids[1].as_str()).unwrap()["created_at"].as_str().unwrap().to_string();
    assert_eq!(job_ids(&c, &format!("device={dev}&created_before={t1}")).await, set(&[&ids[0]]));
    assert_eq!(job_ids(&c, &format!("device={dev}&created_after={t1}")).await.len(), 4);
}

// ---------------------------------------------------------------------------------------------
// Tenants and authentication
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn another_projects_sessions_and_jobs_are_404() {
    let t = start(&[]).await;
    if skip_external(&t, "needs tokens of two projects") {
        return;
    }
    let a = token_of(&t, "proj_a", "alice");
    let b = token_of(&t, "proj_b", "bob");
    let dev = noop_device(&t).await;
    let sid = id(&create_session(&a, json!({"device": dev, "mode": "dedicated"})).await);
    let done = id(&submit(&a, json!({"session_id": sid, "program": "noop", "payload": {}})).await);
    a.wait_job(&done, LIMIT).await.unwrap();
    // Queued behind A's session, which holds the device for its interactive TTL.
    let busy = hold(&a, &dev, 10_000).await;
    let busy_status = get_job(&a, &busy).await["status"].clone();
    assert!(matches!(busy_status.as_str(), Some("queued" | "running")), "{busy_status}");

    let not_found = |r: (StatusCode, Value), case: &str| assert_err(&r, StatusCode::NOT_FOUND, "not_found", case);
    not_found(b.get(&format!("/v1/sessions/{sid}")).await.unwrap(), "GET other's session");
    not_found(b.post(&format!("/v1/sessions/{sid}/close"), json!({})).await.unwrap(), "close other's session");
    not_found(b.post(&format!("/v1/sessions/{sid}/cancel"), json!({})).await.unwrap(), "cancel other's session");
    for j in [&done, &busy] {
        not_found(b.get(&format!("/v1/jobs/{j}")).await.unwrap(), "GET other's job");
        not_found(b.get(&format!("/v1/jobs/{j}/result")).await.unwrap(), "result of other's job");
        not_found(b.post(&format!("/v1/jobs/{j}/cancel"), json!({})).await.unwrap(), "cancel other's job");
    }
    let r = b.post("/v1/jobs", json!({"session_id": sid, "program": "noop", "payload": {}})).await.unwrap();
    not_found(r, "submit into other's session");
    let r =
        b.post("/v1/jobs", json!({"session_id": sid, "device": dev, "program": "noop", "payload": {}})).await.unwrap();
    not_found(r, "submit into other's session naming its device");

    // B's lists are empty; A's are untouched by B's attempts.
    assert!(job_ids(&b, "").await.is_empty());
    assert!(session_ids(&b, "").await.is_empty());
    assert!(job_ids(&b, &format!("session_id={sid}")).await.is_empty());
    assert_eq!(job_ids(&a, "").await.len(), 2);
    let v = a.get(&format!("/v1/sessions/{sid}")).await.unwrap().1;
    assert_eq!(v["accepting_jobs"], true, "B's close did nothing: {v}");
    assert_eq!(v["jobs"], json!({"completed": 1}));
    assert_ne!(get_job(&a, &busy).await["status"], "canceled", "B's cancel did nothing");
    // The shared device is visible to both (devices are not per project).
    assert_eq!(b.get(&format!("/v1/devices/{dev}")).await.unwrap().0, StatusCode::OK);
    a.post(&format!("/v1/jobs/{busy}/cancel"), json!({})).await.unwrap();
}

/// A device's `held_by_session` names a session of one project: only that project and admins see
/// it; another tenant sees null (it used to see the id).
#[tokio::test]
async fn held_by_session_is_shown_only_to_its_project_and_admins() {
    let t = start(&[]).await;
    if skip_external(&t, "needs tokens of two projects") {
        return;
    }
    let a = token_of(&t, "proj_held_a", "alice");
    let b = token_of(&t, "proj_held_b", "bob");
    let a2 = token_of(&t, "proj_held_a", "anna");
    let dev = noop_device(&t).await;
    let sid = id(&create_session(&a, json!({"device": dev, "mode": "dedicated", "interactive_ttl": 60})).await);
    let j = id(&submit(&a, json!({"session_id": sid, "program": "noop", "payload": {}})).await);
    a.wait_job(&j, LIMIT).await.unwrap();
    let held = |c: &Client| {
        let (c, dev) = (c.clone(), dev.clone());
        async move {
            let (s, one) = c.get(&format!("/v1/devices/{dev}")).await.unwrap();
            assert_eq!(s, StatusCode::OK, "{one}");
            let (s, all) = c.get("/v1/devices").await.unwrap();
            assert_eq!(s, StatusCode::OK, "{all}");
            let listed = all.as_array().unwrap().iter().find(|d| d["name"] == dev.as_str()).unwrap().clone();
            assert_eq!(one["held_by_session"], listed["held_by_session"], "list and get agree");
            one["held_by_session"].clone()
        }
    };
    assert_eq!(held(&a).await, sid.as_str(), "the session's own user sees it");
    assert_eq!(held(&a2).await, sid.as_str(), "another user of the same project sees it");
    assert_eq!(held(&t.admin()).await, sid.as_str(), "an admin sees it");
    assert_eq!(held(&b).await, Value::Null, "another project does not");
    // Everything else of the device is the same for B.
    let (_, vb) = b.get(&format!("/v1/devices/{dev}")).await.unwrap();
    assert_eq!(vb["name"], dev.as_str());
    a.post(&format!("/v1/sessions/{sid}/cancel"), json!({})).await.unwrap();
}

#[tokio::test]
async fn missing_bad_or_malformed_tokens_are_401() {
    let t = start(&[]).await;
    let dev = noop_device(&t).await;
    let before = job_ids(&t.admin(), &format!("device={dev}")).await;
    let job = serde_json::to_vec(&json!({"device": dev, "program": "noop", "payload": {}})).unwrap();
    let hv = HeaderValue::from_static;
    let cases: Vec<(&str, Vec<(&str, HeaderValue)>)> = vec![
        ("no Authorization header", vec![]),
        ("unknown bearer token", vec![("authorization", hv("Bearer qc_this-token-was-never-issued-000000"))]),
        ("Basic scheme", vec![("authorization", hv("Basic YWRtaW46YWRtaW4="))]),
        ("Bearer without a token", vec![("authorization", hv("Bearer"))]),
        ("Bearer and blanks", vec![("authorization", hv("Bearer    "))]),
        ("other scheme", vec![("authorization", hv("Token abcdef0123456789"))]),
        ("token without scheme", vec![("authorization", HeaderValue::from_str(&t.admin_token).unwrap())]),
    ];
    for (case, headers) in &cases {
        for (method, path) in [(Method::GET, "/v1/jobs"), (Method::GET, "/v1/devices"), (Method::GET, "/v1/sessions")] {
            let r = raw(&t, method, path, None, headers, None).await;
            assert_err(&r, StatusCode::UNAUTHORIZED, "unauthenticated", &format!("{case} on {path}"));
        }
        let r = raw(&t, Method::POST, "/v1/jobs", None, headers, Some((Some("application/json"), job.clone()))).await;
        assert_err(&r, StatusCode::UNAUTHORIZED, "unauthenticated", &format!("{case} on POST /v1/jobs"));
    }
    assert_eq!(job_ids(&t.admin(), &format!("device={dev}")).await, before, "nothing stored");
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn bad_job_submissions_are_4xx_and_store_nothing() {
    let t = start(&[]).await;
    let c = t.admin();
    let dev = noop_device(&t).await;
    let scope = if t.is_external() { format!("device={dev}") } else { String::new() };
    let before = job_ids(&c, &scope).await;
    let nodev = unique("nodev");

    let raw_cases: &[(&str, &str, StatusCode, &str)] = &[
        ("malformed JSON", r#"{"device":"#, StatusCode::BAD_REQUEST, "invalid_json"),
        (
            "trailing garbage",
            r#"{"device":"x","program":"noop","payload":{}} x"#,
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        ("empty body", "", StatusCode::BAD_REQUEST, "invalid_json"),
        ("array body", r#"[{"device":"x","program":"noop","payload":{}}]"#, StatusCode::BAD_REQUEST, "invalid_body"),
        ("string body", r#""noop""#, StatusCode::BAD_REQUEST, "invalid_body"),
        ("null body", "null", StatusCode::BAD_REQUEST, "invalid_body"),
    ];
    for (case, body, status, code) in raw_cases {
        assert_err(&post_raw(&t, "/v1/jobs", body).await, *status, code, case);
    }

    let good = json!({"device": dev, "program": "noop", "payload": {}});
    let with = |k: &str, v: Value| {
        let mut b = good.clone();
        b[k] = v;
        b
    };
    let without = |k: &str| {
        let mut b = good.clone();
        b.as_object_mut().unwrap().remove(k);
        b
    };
    let too_many_tags: Vec<String> = (0..33).map(|i| format!("t{i}")).collect();
    let cases: Vec<(&str, Value, StatusCode, &str)> = vec![
        ("missing program", without("program"), StatusCode::BAD_REQUEST, "invalid_body"),
        ("missing payload", without("payload"), StatusCode::BAD_REQUEST, "invalid_body"),
        ("neither device nor session", without("device"), StatusCode::BAD_REQUEST, "missing_field"),
        ("program of the wrong type", with("program", json!(5)), StatusCode::BAD_REQUEST, "invalid_body"),
        ("session_id not a UUID", with("session_id", json!("abc")), StatusCode::BAD_REQUEST, "invalid_body"),
        ("unknown field", with("colour", json!("red")), StatusCode::BAD_REQUEST, "invalid_body"),
        ("unknown device", with("device", json!(nodev)), StatusCode::NOT_FOUND, "not_found"),
        ("unknown program", with("program", json!("sampler")), StatusCode::CONFLICT, "unknown_program"),
        ("empty program", with("program", json!("")), StatusCode::CONFLICT, "unknown_program"),
        ("unknown session", with("session_id", json!(uuid::Uuid::new_v4())), StatusCode::NOT_FOUND, "not_found"),
        ("shots 0", with("shots", json!(0)), StatusCode::BAD_REQUEST, "invalid_field"),
        ("shots negative", with("shots", json!(-1)), StatusCode::BAD_REQUEST, "invalid_field"),
        ("shots absurd", with("shots", json!(10_000_001)), StatusCode::BAD_REQUEST, "invalid_field"),
        ("shots i64::MAX", with("shots", json!(i64::MAX)), StatusCode::BAD_REQUEST, "invalid_field"),
        ("shots 1e30", with("shots", json!(1e30)), StatusCode::BAD_REQUEST, "invalid_body"),
        ("shots 1.5", with("shots", json!(1.5)), StatusCode::BAD_REQUEST, "invalid_body"),
        ("shots a string", with("shots", json!("ten")), StatusCode::BAD_REQUEST, "invalid_body"),
        (
            "max_execution_time negative",
            with("max_execution_time", json!(-1)),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        ("max_execution_time 0", with("max_execution_time", json!(0)), StatusCode::BAD_REQUEST, "invalid_field"),
        ("max_execution_time huge", with("max_execution_time", json!(1e9)), StatusCode::BAD_REQUEST, "invalid_field"),
        ("priority urgent", with("priority", json!("urgent")), StatusCode::BAD_REQUEST, "invalid_field"),
        ("priority of the wrong type", with("priority", json!(3)), StatusCode::BAD_REQUEST, "invalid_body"),
        ("empty tag", with("tags", json!([""])), StatusCode::BAD_REQUEST, "invalid_field"),
        ("33 tags", with("tags", json!(too_many_tags)), StatusCode::BAD_REQUEST, "invalid_field"),
        ("tags not a list", with("tags", json!("a")), StatusCode::BAD_REQUEST, "invalid_body"),
    ];
    for (case, body, status, code) in cases {
        let r = c.post("/v1/jobs", body).await.unwrap();
        assert_err(&r, status, code, case);
    }
    // 1e20 as a JSON integer literal does not fit an i64.
    let r = post_raw(
        &t,
        "/v1/jobs",
        &format!(r#"{{"device":"{dev}","program":"noop","payload":{{}},"shots":100000000000000000000}}"#),
    )
    .await;
    assert_err(&r, StatusCode::BAD_REQUEST, "invalid_body", "shots 1e20 integer");

    // Content type.
    let body = serde_json::to_vec(&good).unwrap();
    let tok = Some(t.admin_token.as_str());
    let r = raw(&t, Method::POST, "/v1/jobs", tok, &[], Some((Some("text/plain"), body.clone()))).await;
    assert_err(&r, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "text/plain");
    let r = raw(&t, Method::POST, "/v1/jobs", tok, &[], Some((None, body.clone()))).await;
    assert_err(&r, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "no content type");
    let r =
        raw(&t, Method::POST, "/v1/jobs", tok, &[], Some((Some("application/x-www-form-urlencoded"), b"a=1".to_vec())))
            .await;
    assert_err(&r, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "form body");

    assert_eq!(job_ids(&c, &scope).await, before, "no rejected job was stored");
    let (_, d) = c.get(&format!("/v1/devices/{dev}")).await.unwrap();
    assert_eq!(d["queue_length"], 0);
    // And the device still takes a good job.
    let ok = submit(&c, good).await;
    assert_eq!(c.wait_job(&id(&ok), LIMIT).await.unwrap()["status"], "completed");
}

#[tokio::test]
async fn bad_session_requests_are_4xx_and_store_nothing() {
    let t = start(&[]).await;
    let c = t.admin();
    let dev = noop_device(&t).await;
    let scope = if t.is_external() { format!("device={dev}") } else { String::new() };
    let before = session_ids(&c, &scope).await;

    for (case, body, code) in [
        ("malformed JSON", r#"{"device": "#, "invalid_json"),
        ("array body", r#"[]"#, "invalid_body"),
        ("max_ttl NaN token", &*format!(r#"{{"device":"{dev}","mode":"batch","max_ttl":NaN}}"#), "invalid_json"),
        ("max_ttl 1e400", &*format!(r#"{{"device":"{dev}","mode":"batch","max_ttl":1e400}}"#), "invalid_json"),
    ] {
        assert_err(&post_raw(&t, "/v1/sessions", body).await, StatusCode::BAD_REQUEST, code, case);
    }

    let good = json!({"device": dev, "mode": "dedicated"});
    let with = |k: &str, v: Value| {
        let mut b = good.clone();
        b[k] = v;
        b
    };
    let cases: Vec<(&str, Value, StatusCode, &str)> = vec![
        ("missing mode", json!({"device": dev}), StatusCode::BAD_REQUEST, "invalid_body"),
        ("missing device", json!({"mode": "batch"}), StatusCode::BAD_REQUEST, "invalid_body"),
        ("unknown field", with("webhook_url", json!("http://x")), StatusCode::BAD_REQUEST, "invalid_body"),
        ("unknown device", with("device", json!(unique("nodev"))), StatusCode::NOT_FOUND, "not_found"),
        ("mode weird", with("mode", json!("weird")), StatusCode::BAD_REQUEST, "invalid_field"),
        ("idle_policy sleep", with("idle_policy", json!("sleep")), StatusCode::BAD_REQUEST, "invalid_field"),
        ("priority urgent", with("priority", json!("urgent")), StatusCode::BAD_REQUEST, "invalid_field"),
        ("max_ttl negative", with("max_ttl", json!(-1)), StatusCode::BAD_REQUEST, "invalid_ttl"),
        ("max_ttl zero", with("max_ttl", json!(0)), StatusCode::BAD_REQUEST, "invalid_ttl"),
        ("max_ttl huge", with("max_ttl", json!(1e12)), StatusCode::BAD_REQUEST, "invalid_ttl"),
        ("max_ttl below a millisecond", with("max_ttl", json!(1e-9)), StatusCode::BAD_REQUEST, "invalid_ttl"),
        ("interactive_ttl negative", with("interactive_ttl", json!(-5)), StatusCode::BAD_REQUEST, "invalid_ttl"),
        ("interactive_ttl zero", with("interactive_ttl", json!(0)), StatusCode::BAD_REQUEST, "invalid_ttl"),
        ("interactive_ttl 1e308", with("interactive_ttl", json!(1e308)), StatusCode::BAD_REQUEST, "invalid_ttl"),
        ("max_ttl \"NaN\" string", with("max_ttl", json!("NaN")), StatusCode::BAD_REQUEST, "invalid_body"),
        ("max_ttl \"inf\" string", with("max_ttl", json!("inf")), StatusCode::BAD_REQUEST, "invalid_body"),
        ("empty tag", with("tags", json!([""])), StatusCode::BAD_REQUEST, "invalid_field"),
    ];
    for (case, body, status, code) in cases {
        let r = c.post("/v1/sessions", body).await.unwrap();
        assert_err(&r, status, code, case);
    }
    let r = raw(
        &t,
        Method::POST,
        "/v1/sessions",
        Some(&t.admin_token),
        &[],
        Some((Some("text/plain"), serde_json::to_vec(&good).unwrap())),
    )
    .await;
    assert_err(&r, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "session as text/plain");

    assert_eq!(session_ids(&c, &scope).await, before, "no rejected session was stored");
}

#[tokio::test]
async fn submissions_to_closed_non_accepting_and_mismatched_sessions_are_refused() {
    let t = start(&[]).await;
    let c = t.admin();
    let dev = noop_device(&t).await;
    let other = noop_device(&t).await;

    // Closed (canceled) session.
    let closed = id(&create_session(&c, json!({"device": dev, "mode": "batch"})).await);
    c.post(&format!("/v1/sessions/{closed}/cancel"), json!({})).await.unwrap();
    let r = c.post("/v1/jobs", json!({"session_id": closed, "program": "noop", "payload": {}})).await.unwrap();
    assert_err(&r, StatusCode::CONFLICT, "session_closed", "closed session");

    // Non-accepting: closed while its job runs.
    let draining = id(&create_session(&c, json!({"device": other, "mode": "dedicated"})).await);
    let busy =
        id(&submit(&c, json!({"session_id": draining, "program": "noop", "payload": {"duration_ms": 10000}})).await);
    wait_job_status(&c, &busy, "running").await;
    let (_, v) = c.post(&format!("/v1/sessions/{draining}/close"), json!({})).await.unwrap();
    assert_eq!((v["state"].as_str(), v["accepting_jobs"].as_bool()), (Some("active"), Some(false)), "{v}");
    let r = c.post("/v1/jobs", json!({"session_id": draining, "program": "noop", "payload": {}})).await.unwrap();
    assert_err(&r, StatusCode::CONFLICT, "session_not_accepting", "non-accepting session");

    // Device / session mismatch.
    let open = id(&create_session(&c, json!({"device": dev, "mode": "dedicated"})).await);
    let r = c
        .post("/v1/jobs", json!({"session_id": open, "device": other, "program": "noop", "payload": {}}))
        .await
        .unwrap();
    assert_err(&r, StatusCode::CONFLICT, "device_mismatch", "device differs from the session's");
    // Program check applies to the session's device too.
    let r = c.post("/v1/jobs", json!({"session_id": open, "program": "estimator", "payload": {}})).await.unwrap();
    assert_err(&r, StatusCode::CONFLICT, "unknown_program", "unknown program in a session");

    for sid in [&closed, &draining, &open] {
        let n = job_ids(&c, &format!("session_id={sid}")).await.len();
        assert_eq!(n, usize::from(sid == &draining), "nothing stored in session {sid}");
    }
    let (_, v) = c.get(&format!("/v1/sessions/{open}")).await.unwrap();
    assert_eq!((v["state"].as_str(), v["jobs"].clone()), (Some("pending"), json!({})), "{v}");
    c.post(&format!("/v1/jobs/{busy}/cancel"), json!({})).await.unwrap();
    c.wait_session(&draining, LIMIT, |v| v["state"] == "closed").await.unwrap();
}

#[tokio::test]
async fn session_of_another_project_is_404_for_submissions() {
    let t = start(&[]).await;
    if skip_external(&t, "needs tokens of two projects") {
        return;
    }
    let a = token_of(&t, "proj_a", "alice");
    let b = token_of(&t, "proj_b", "bob");
    let dev = noop_device(&t).await;
    let sid = id(&create_session(&a, json!({"device": dev, "mode": "batch"})).await);
    let r = b.post("/v1/jobs", json!({"session_id": sid, "program": "noop", "payload": {}})).await.unwrap();
    assert_err(&r, StatusCode::NOT_FOUND, "not_found", "session of another project");
    // Even with a bad program or mismatched device, it does not leak that the session exists.
    let r = b
        .post("/v1/jobs", json!({"session_id": sid, "device": "elsewhere", "program": "noop", "payload": {}}))
        .await
        .unwrap();
    assert_err(&r, StatusCode::NOT_FOUND, "not_found", "another project's session with a wrong device");
    assert!(job_ids(&a, "").await.is_empty(), "nothing stored for A");
    assert!(job_ids(&b, "").await.is_empty(), "nothing stored for B");
    let (_, v) = a.get(&format!("/v1/sessions/{sid}")).await.unwrap();
    assert_eq!(v["last_job_started"], Value::Null);
    assert_eq!(v["jobs"], json!({}));
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let t = start(&["--max-body-bytes", "4096"]).await;
    if skip_external(&t, "needs --max-body-bytes 4096") {
        return;
    }
    let c = t.admin();
    let dev = noop_device(&t).await;
    let big = "x".repeat(8192);
    let r = c.post("/v1/jobs", json!({"device": dev, "program": "noop", "payload": {"blob": big}})).await.unwrap();
    assert_err(&r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "job body over the limit");
    let tags: Vec<String> = (0..40).map(|i| format!("{i}{}", "y".repeat(120))).collect();
    let r = c.post("/v1/sessions", json!({"device": dev, "mode": "batch", "tags": tags})).await.unwrap();
    assert_err(&r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "session body over the limit");
    let huge = vec![b' '; 1 << 20];
    let r = raw(&t, Method::POST, "/v1/jobs", Some(&t.admin_token), &[], Some((Some("application/json"), huge))).await;
    assert_err(&r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "1 MiB body");
    assert!(job_ids(&c, "").await.is_empty(), "nothing stored");
    assert!(session_ids(&c, "").await.is_empty(), "nothing stored");
    // Below the limit all is well.
    let ok = submit(&c, json!({"device": dev, "program": "noop", "payload": {}, "tags": ["x".repeat(100)]})).await;
    assert_eq!(c.wait_job(&id(&ok), LIMIT).await.unwrap()["status"], "completed");
}

#[tokio::test]
async fn bad_paths_routes_and_methods_are_json_errors() {
    let t = start(&[]).await;
    let tok = Some(t.admin_token.as_str());
    let random = uuid::Uuid::new_v4();
    let not_found = [
        (Method::GET, "/v1/jobs/not-a-uuid".to_string()),
        (Method::GET, "/v1/jobs/not-a-uuid/result".into()),
        (Method::POST, "/v1/jobs/not-a-uuid/cancel".into()),
        (Method::GET, "/v1/sessions/12345".into()),
        (Method::POST, "/v1/sessions/12345/close".into()),
        (Method::POST, "/v1/sessions/12345/cancel".into()),
        (Method::GET, format!("/v1/jobs/{random}")),
        (Method::GET, format!("/v1/jobs/{random}/result")),
        (Method::POST, format!("/v1/jobs/{random}/cancel")),
        (Method::GET, format!("/v1/sessions/{random}")),
        (Method::POST, format!("/v1/sessions/{random}/close")),
        (Method::POST, format!("/v1/sessions/{random}/cancel")),
        (Method::GET, "/v1/nope".into()),
        (Method::GET, "/v2/jobs".into()),
        (Method::GET, "/".into()),
        (Method::POST, "/v1/jobs/x/y/z".into()),
    ];
    for (m, p) in not_found {
        let body = (m == Method::POST).then(|| (Some("application/json"), b"{}".to_vec()));
        let r = raw(&t, m.clone(), &p, tok, &[], body).await;
        assert_err(&r, StatusCode::NOT_FOUND, "not_found", &format!("{m} {p}"));
    }
    let not_allowed = [
        (Method::DELETE, "/v1/jobs".to_string()),
        (Method::PUT, format!("/v1/sessions/{random}")),
        (Method::DELETE, "/v1/devices/noop_1".into()),
        (Method::GET, format!("/v1/jobs/{random}/cancel")),
        (Method::GET, format!("/v1/sessions/{random}/close")),
        (Method::POST, "/healthz".into()),
    ];
    for (m, p) in not_allowed {
        let r = raw(&t, m.clone(), &p, tok, &[], None).await;
        assert_err(&r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", &format!("{m} {p}"));
    }
    // Unknown routes answer JSON even without a token.
    let r = raw(&t, Method::GET, "/v1/nope", None, &[], None).await;
    assert_err(&r, StatusCode::NOT_FOUND, "not_found", "unknown route, no token");
}

#[tokio::test]
async fn bad_list_queries_are_400() {
    let t = start(&[]).await;
    let c = t.admin();
    let cases: &[(&str, &str)] = &[
        ("/v1/jobs?cursor=zz", "invalid_cursor"),
        ("/v1/jobs?cursor=2020-01-01T00:00:00Z_notauuid", "invalid_cursor"),
        ("/v1/sessions?cursor=zz", "invalid_cursor"),
        ("/v1/sessions?cursor=yesterday_0190c3c0-0000-7000-8000-000000000000", "invalid_cursor"),
        ("/v1/jobs?limit=0", "invalid_field"),
        ("/v1/jobs?limit=501", "invalid_field"),
        ("/v1/jobs?limit=-1", "invalid_field"),
        ("/v1/sessions?limit=0", "invalid_field"),
        ("/v1/jobs?limit=abc", "invalid_query"),
        ("/v1/sessions?limit=1.5", "invalid_query"),
        ("/v1/jobs?status=weird", "invalid_field"),
        ("/v1/jobs?status=Completed", "invalid_field"),
        ("/v1/sessions?state=weird", "invalid_field"),
        ("/v1/sessions?mode=x", "invalid_field"),
        ("/v1/jobs?foo=1", "invalid_query"),
        ("/v1/sessions?foo=1", "invalid_query"),
        ("/v1/jobs?session_id=xyz", "invalid_query"),
        ("/v1/jobs?created_after=yesterday", "invalid_query"),
        ("/v1/sessions?created_before=2024-13-45T00:00:00Z", "invalid_query"),
    ];
    for (path, code) in cases {
        let r = c.get(path).await.unwrap();
        assert_err(&r, StatusCode::BAD_REQUEST, code, path);
    }
    // The limits themselves are fine.
    for path in ["/v1/jobs?limit=1", "/v1/jobs?limit=500", "/v1/sessions?limit=500&state=closed&mode=batch"] {
        assert_eq!(c.get(path).await.unwrap().0, StatusCode::OK, "{path}");
    }
}

/// Postgres takes no NUL in `text` or `jsonb`: every front door refuses it first, with a 400 that
/// names the field (it was a 500 `internal`).
#[tokio::test]
async fn nul_characters_are_400_naming_the_field_and_store_nothing() {
    let t = start(&[]).await;
    let c = t.admin();
    let dev = noop_device(&t).await;
    let scope = if t.is_external() { format!("device={dev}") } else { String::new() };
    let (jobs_before, sessions_before) = (job_ids(&c, &scope).await, session_ids(&c, &scope).await);
    let nul = "a\u{0}b";
    #[track_caller]
    fn assert_nul(r: &(StatusCode, Value), field: &str, case: &str) {
        assert_err(r, StatusCode::BAD_REQUEST, "invalid_field", case);
        let msg = r.1["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.starts_with(&format!("{field}: ")) && msg.contains("NUL"), "{case}: message {msg:?}");
    }
    let job = |k: &str, v: Value| {
        let mut b = json!({"device": dev, "program": "noop", "payload": {}});
        b[k] = v;
        b
    };
    let jobs = [
        ("payload value", job("payload", json!({"a": "\u{0}"})), "payload"),
        ("payload key", job("payload", json!({"a\u{0}": 1})), "payload"),
        ("payload nested", job("payload", json!({"a": [1, {"b": [nul]}]})), "payload"),
        ("job tag", job("tags", json!(["ok", nul])), "tags"),
        ("job device", job("device", json!(nul)), "device"),
        ("job program", job("program", json!(nul)), "program"),
    ];
    for (case, body, field) in jobs {
        assert_nul(&c.post("/v1/jobs", body).await.unwrap(), field, case);
    }
    // The same as raw JSON escapes, as a client would send them.
    let r =
        post_raw(&t, "/v1/jobs", &format!(r#"{{"device":"{dev}","program":"noop","payload":{{"a":"\u0000"}}}}"#)).await;
    assert_nul(&r, "payload", "raw \\u0000 in the payload");

    let sessions = [
        ("session tag", json!({"device": dev, "mode": "batch", "tags": [nul]}), "tags"),
        ("session device", json!({"device": nul, "mode": "batch"}), "device"),
    ];
    for (case, body, field) in sessions {
        assert_nul(&c.post("/v1/sessions", body).await.unwrap(), field, case);
    }

    let r = c.post("/v1/devices", json!({"name": nul, "driver": "noop", "num_qubits": 4})).await.unwrap();
    assert_err(&r, StatusCode::BAD_REQUEST, "invalid_field", "device name");
    let fresh = unique("nul");
    let r =
        c.post("/v1/devices", json!({"name": fresh, "driver": "noop", "num_qubits": 4, "config": {"k": nul}})).await;
    assert_nul(&r.unwrap(), "config", "device config");
    let r =
        c.call(Method::PATCH, &format!("/v1/devices/{dev}"), Some(json!({"config": {"a\u{0}b": 1}}))).await.unwrap();
    assert_nul(&r, "config", "device config patch");
    let r = c.call(Method::PATCH, "/v1/devices/a%00b", Some(json!({"status": "paused"}))).await.unwrap();
    assert_nul(&r, "name", "patch path name");

    for (path, field) in [
        ("/v1/devices/a%00b", "name"),
        ("/v1/jobs?tag=%00", "tag"),
        ("/v1/jobs?device=%00", "device"),
        ("/v1/sessions?device=a%00b", "device"),
        ("/v1/sessions?tag=x%00", "tag"),
    ] {
        assert_nul(&c.get(path).await.unwrap(), field, path);
    }

    assert_eq!(job_ids(&c, &scope).await, jobs_before, "no job stored");
    assert_eq!(session_ids(&c, &scope).await, sessions_before, "no session stored");
    assert_eq!(c.get(&format!("/v1/devices/{fresh}")).await.unwrap().0, StatusCode::NOT_FOUND, "no device stored");
    let (_, d) = c.get(&format!("/v1/devices/{dev}")).await.unwrap();
    assert_eq!(d["config"], json!({}), "the patch changed nothing");
}

#[tokio::test]
async fn malformed_idempotency_keys_are_400() {
    let t = start(&[]).await;
    let c = t.admin();
    let dev = noop_device(&t).await;
    let body = serde_json::to_vec(&json!({"device": dev, "program": "noop", "payload": {}})).unwrap();
    let cases: Vec<(&str, HeaderValue)> = vec![
        ("empty key", HeaderValue::from_static("")),
        ("256 characters", HeaderValue::from_str(&"k".repeat(256)).unwrap()),
        ("non-ASCII bytes", HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap()),
    ];
    for (case, key) in cases {
        let r = raw(
            &t,
            Method::POST,
            "/v1/jobs",
            Some(&t.admin_token),
            &[("idempotency-key", key)],
            Some((Some("application/json"), body.clone())),
        )
        .await;
        assert_err(&r, StatusCode::BAD_REQUEST, "invalid_idempotency_key", case);
    }
    assert!(job_ids(&c, &format!("device={dev}")).await.is_empty(), "nothing stored");
    // 255 characters is the longest key (unique: an external server keeps its keys).
    let key = format!("{:k<255}", unique("key"));
    let (s, _) = submit_with_key(&c, &key, &serde_json::from_slice(&body).unwrap()).await;
    assert_eq!(s, StatusCode::CREATED);
}
