//! The `statevector` device behind the scheduler: Sampler and Estimator jobs through the native API,
//! with OpenQASM 2/3 text and QPY circuits, parameter sweeps, and clear failures for circuits that
//! cannot run (too many qubits, unreadable text).

use qcloud_e2e::{unique, Client, Target};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

const BELL_QASM2: &str =
    "OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../../crates/qcloud-qsim/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

async fn device(admin: &Client, num_qubits: u32) -> String {
    let name = unique("sv");
    let (s, body) = admin
        .post("/v1/devices", json!({"name": name, "driver": "statevector", "num_qubits": num_qubits}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::CREATED, "{body}");
    name
}

async fn run(admin: &Client, body: Value) -> (Value, Value) {
    admin.run_job(body, LIMIT).await.unwrap()
}

#[tokio::test]
async fn sampler_counts_bell_pairs_from_qasm2_qasm3_and_qpy() {
    let t = Target::from_env_or_start(&[]).await.unwrap();
    let admin = t.admin();
    let dev = device(&admin, 8).await;
    use base64::Engine;
    let qpy = base64::engine::general_purpose::STANDARD.encode(fixture("bell.qpy"));
    let qasm3 = String::from_utf8(fixture("bell.qasm3")).unwrap();
    for circuit in [json!(BELL_QASM2), json!(qasm3), json!({"qpy": qpy})] {
        let (job, result) = run(
            &admin,
            json!({"device": dev, "program": "sampler", "payload": {"pubs": [[circuit, null, 500]], "seed": 3}}),
        )
        .await;
        assert_eq!(job["status"], "completed", "{job}");
        let counts = &result["pub_results"][0]["data"]["c"]["counts"];
        let n00 = counts["00"].as_u64().unwrap_or(0);
        let n11 = counts["11"].as_u64().unwrap_or(0);
        assert_eq!(n00 + n11, 500, "only 00 and 11 from a Bell pair: {counts}");
        assert!(n00 > 150 && n11 > 150, "{counts}");
    }
}

#[tokio::test]
async fn estimator_sweeps_parameters_exactly() {
    let t = Target::from_env_or_start(&[]).await.unwrap();
    let admin = t.admin();
    let dev = device(&admin, 4).await;
    let circuit = "OPENQASM 3.0;\ninclude \"stdgates.inc\";\ninput float theta;\nqubit[1] q;\nry(theta) q[0];\n";
    let thetas = [0.0, 0.5, 1.0, std::f64::consts::PI];
    let values: Vec<Vec<f64>> = thetas.iter().map(|t| vec![*t]).collect();
    let (job, result) = run(
        &admin,
        json!({"device": dev, "program": "estimator", "payload": {"pubs": [[circuit, {"Z": 1.0}, values]]}}),
    )
    .await;
    assert_eq!(job["status"], "completed", "{job}");
    let pr = &result["pub_results"][0];
    assert_eq!(pr["shape"], json!([4]));
    for (i, theta) in thetas.iter().enumerate() {
        let ev = pr["evs"][i].as_f64().unwrap();
        assert!((ev - theta.cos()).abs() < 1e-9, "<Z> at theta={theta}: {ev}");
    }
}

#[tokio::test]
async fn circuits_that_cannot_run_are_refused_at_submit_with_a_clear_reason() {
    let t = Target::from_env_or_start(&[]).await.unwrap();
    let admin = t.admin();
    let dev = device(&admin, 1).await;
    let (s, body) = admin
        .post("/v1/jobs", json!({"device": dev, "program": "sampler", "payload": {"pubs": [[BELL_QASM2, null, 10]]}}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "too_large", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("qubits"), "{body}");

    let dev = device(&admin, 4).await;
    // A file include is never read: the parser has no file access.
    let hostile = "OPENQASM 2.0;\ninclude \"/etc/passwd\";\nqreg q[1];\n";
    let (s, body) = admin
        .post("/v1/jobs", json!({"device": dev, "program": "sampler", "payload": {"pubs": [[hostile, null, 10]]}}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_payload", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("circuit"), "{body}");

    let (s, body) = admin.post("/v1/jobs", json!({"device": dev, "program": "noop", "payload": {}})).await.unwrap();
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "unknown_program");
    let (_, page) = admin.get(&format!("/v1/jobs?device={dev}")).await.unwrap();
    assert_eq!(page["items"].as_array().map(Vec::len), Some(0), "nothing stored: {page}");
}

#[tokio::test]
async fn batch_session_runs_every_circuit_once_in_order() {
    let t = Target::from_env_or_start(&[]).await.unwrap();
    let admin = t.admin();
    let dev = device(&admin, 8).await;
    let (s, session) = admin.post("/v1/sessions", json!({"device": dev, "mode": "batch"})).await.unwrap();
    assert_eq!(s, StatusCode::CREATED, "{session}");
    let sid = session["id"].as_str().unwrap().to_string();
    let mut ids = Vec::new();
    for i in 0..12 {
        let payload = json!({"pubs": [[BELL_QASM2, null, 50 + i]]});
        let (s, job) =
            admin.post("/v1/jobs", json!({"session_id": sid, "program": "sampler", "payload": payload})).await.unwrap();
        assert_eq!(s, StatusCode::CREATED, "{job}");
        ids.push(job["id"].as_str().unwrap().to_string());
    }
    admin.post(&format!("/v1/sessions/{sid}/close"), json!({})).await.unwrap();
    let mut intervals = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let job = admin.wait_job(id, LIMIT).await.unwrap();
        assert_eq!(job["status"], "completed", "{job}");
        let (_, r) = admin.get(&format!("/v1/jobs/{id}/result")).await.unwrap();
        let counts = r["result"]["pub_results"][0]["data"]["c"]["counts"].as_object().unwrap().clone();
        let shots: u64 = counts.values().map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(shots, 50 + i as u64, "job {i} ran its own circuit");
        let at = |k: &str| chrono::DateTime::parse_from_rfc3339(job[k].as_str().unwrap()).unwrap();
        intervals.push((at("started_at"), at("finished_at")));
    }
    for w in intervals.windows(2) {
        assert!(w[0].1 <= w[1].0, "device time stays serial and in order: {w:?}");
    }
    let s = admin.wait_session(&sid, LIMIT, |s| s["state"] == "closed").await.unwrap();
    assert_eq!(s["closed_reason"], "completed");
}

/// Issue 7: a server-wide memory budget for simulations. A job whose state vector can never fit is
/// refused at submit with the budget named; jobs that fit run, one after another when together
/// they would not.
#[tokio::test]
async fn the_simulation_memory_budget_refuses_what_cannot_fit() {
    // 1 MiB: 16 x 2^16 bytes fit, 16 x 2^17 do not.
    let t = Target::from_env_or_start(&["--sim-memory-budget", "1048576"]).await.unwrap();
    if t.is_external() {
        eprintln!("skipped against an external server: needs --sim-memory-budget");
        return;
    }
    let admin = t.admin();
    let dev = device(&admin, 20).await;
    let ghz = |n: usize| {
        let mut q = format!("OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[{n}];\ncreg c[{n}];\nh q[0];\n");
        for i in 1..n {
            q += &format!("cx q[0],q[{i}];\n");
        }
        q + "measure q -> c;\n"
    };
    let (s, body) = admin
        .post("/v1/jobs", json!({"device": dev, "program": "sampler", "payload": {"pubs": [[ghz(17), null, 10]]}}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "too_large", "{body}");
    let m = body["error"]["message"].as_str().unwrap();
    assert!(m.contains("sim_memory_budget") && m.contains("1 MiB"), "{m}");
    // What fits runs, twice in a row.
    for _ in 0..2 {
        let (job, result) =
            run(&admin, json!({"device": dev, "program": "sampler", "payload": {"pubs": [[ghz(16), null, 10]]}})).await;
        assert_eq!(job["status"], "completed", "{job}");
        let counts = result["pub_results"][0]["data"]["c"]["counts"].as_object().unwrap();
        assert!(counts.keys().all(|k| k.chars().all(|c| c == '0') || k.chars().all(|c| c == '1')), "{counts:?}");
    }
}
