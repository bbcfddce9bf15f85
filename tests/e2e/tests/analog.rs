//! The `analog` device behind the scheduler: Pulser sequences (program `pulser`) through the native
//! API, with variables, the optional outputs, clear failures for sequences that cannot run, and the
//! seeded Pasqal-like devices serving their Pulser specs as data.

use qcloud_e2e::{unique, Client, Target};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

fn sequence(name: &str) -> Value {
    let path = format!("{}/../../crates/qcloud-analog/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

async fn device(admin: &Client, atoms: u32) -> String {
    let name = unique("analog");
    let (s, body) = admin
        .post("/v1/devices", json!({"name": name, "kind": "analog", "driver": "analog", "num_qubits": atoms}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::CREATED, "{body}");
    name
}

async fn run(admin: &Client, device: &str, payload: Value) -> (Value, Value) {
    admin.run_job(json!({"device": device, "program": "pulser", "payload": payload}), LIMIT).await.unwrap()
}

#[tokio::test]
async fn a_parametrized_sequence_runs_with_counts_probabilities_and_occupation() {
    let t = Target::from_env_or_start(&[]).await.unwrap();
    let admin = t.admin();
    let dev = device(&admin, 12).await;
    let payload = json!({
        "sequence": sequence("param_blackman_ramp"),
        "runs": 500,
        "variables": {"omega_max": 1.5},
        "seed": 11,
        "outputs": ["counts", "probabilities", "occupation"],
    });
    let (job, result) = run(&admin, &dev, payload.clone()).await;
    assert_eq!(job["status"], "completed", "{job}");
    let counter = result["counter"].as_object().expect("counter");
    assert_eq!(counter.values().map(|v| v.as_u64().unwrap()).sum::<u64>(), 500, "{counter:?}");
    assert!(counter.keys().all(|k| k.len() == 4 && k.chars().all(|c| c == '0' || c == '1')), "{counter:?}");
    let probs = result["probabilities"].as_object().expect("probabilities");
    let total: f64 = probs.values().map(|v| v.as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-9, "probabilities sum to {total}");
    let occupation = result["occupation"].as_array().expect("occupation");
    assert_eq!(occupation.len(), 4);
    // <n_i> is the marginal of the probabilities.
    for (i, n) in occupation.iter().enumerate() {
        let marginal: f64 =
            probs.iter().filter(|(k, _)| k.as_bytes()[i] == b'1').map(|(_, p)| p.as_f64().unwrap()).sum();
        assert!((n.as_f64().unwrap() - marginal).abs() < 1e-9, "atom {i}: {n} vs {marginal}");
    }
    // Seeded: the same job gives the same counts.
    let (_, again) = run(&admin, &dev, payload).await;
    assert_eq!(again["counter"], result["counter"]);
}

/// Submit a job that must be refused at submit (issue 7): 400 with `code`, and no job stored.
async fn refused(admin: &Client, device: &str, payload: Value, code: &str) -> String {
    let (s, body) = admin
        .post("/v1/jobs", json!({"device": device, "program": "pulser", "payload": payload.clone()}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::BAD_REQUEST, "{payload}: {body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default().to_string();
    assert!(!message.is_empty(), "{body}");
    message
}

#[tokio::test]
async fn sequences_that_cannot_run_are_refused_at_submit_with_a_reason() {
    let t = Target::from_env_or_start(&[]).await.unwrap();
    let admin = t.admin();
    let dev = device(&admin, 12).await;
    let mut wrong_version = sequence("phases_pair");
    wrong_version["version"] = json!("2");
    refused(&admin, &dev, json!({"sequence": "not json {", "runs": 10}), "invalid_payload").await;
    refused(&admin, &dev, json!({"sequence": wrong_version, "runs": 10}), "invalid_payload").await;
    // A declared variable without a value: Pulser's own error, naming it.
    let m = refused(&admin, &dev, json!({"sequence": sequence("param_blackman_ramp"), "runs": 10}), "invalid_payload")
        .await;
    assert!(m.contains("omega_max"), "the missing variable is named: {m}");
    // More atoms than the device has.
    let small = device(&admin, 2).await;
    let payload = json!({"sequence": sequence("param_blackman_ramp"), "runs": 10, "variables": {"omega_max": 1.5}});
    refused(&admin, &small, payload, "too_large").await;
    let (_, page) = admin.get(&format!("/v1/jobs?device={dev}")).await.unwrap();
    assert_eq!(page["items"].as_array().map(Vec::len), Some(0), "nothing stored: {page}");
}

#[tokio::test]
async fn the_seeded_analog_devices_serve_their_pulser_specs() {
    let t = Target::from_env_or_start(&[]).await.unwrap();
    let admin = t.admin();
    for name in ["EMU_FREE", "EMU_SV", "FRESNEL"] {
        let (s, d) = admin.get(&format!("/v1/devices/{name}")).await.unwrap();
        assert_eq!(s, StatusCode::OK, "{name}: {d}");
        assert_eq!(d["kind"], "analog", "{d}");
        assert_eq!(d["driver"], "analog", "{d}");
        let spec = &d["config"]["pulser_device"];
        assert!(spec["channels"].as_array().is_some_and(|c| !c.is_empty()), "{name}: {spec}");
        assert!(spec["rydberg_level"].as_i64().is_some(), "{name}: {spec}");
    }
    let (_, fresnel) = admin.get("/v1/devices/FRESNEL").await.unwrap();
    assert!(fresnel["timing"]["per_shot_ms"].as_f64().unwrap() > 0.0, "a QPU-like device charges time per run");
    let (_, free) = admin.get("/v1/devices/EMU_FREE").await.unwrap();
    assert_eq!(free["num_qubits"], 12, "EMU_FREE is exact up to 12 atoms");
    // A sequence written for AnalogDevice runs on the seeded emulator.
    let (job, result) = run(
        &admin,
        "EMU_FREE",
        json!({"sequence": sequence("param_blackman_ramp"), "runs": 100, "variables": {"omega_max": 1.5}, "seed": 1}),
    )
    .await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(result["counter"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum::<u64>(), 100);
}
