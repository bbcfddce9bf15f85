//! Sampler and Estimator primitives: payloads, binding, broadcasting, limits.

use qcloud_qsim::{prepare_estimator, prepare_sampler, run_estimator, run_sampler, SimError, SimLimits};
use serde_json::{json, Value};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path).unwrap()
}

fn sample(payload: Value) -> Value {
    let p = prepare_sampler(&payload, &SimLimits::default()).unwrap();
    run_sampler(&p).unwrap()
}

fn estimate(payload: Value) -> Value {
    let p = prepare_estimator(&payload, &SimLimits::default()).unwrap();
    run_estimator(&p).unwrap()
}

#[test]
fn bell_fixture_counts() {
    let out = sample(json!({"pubs": [[fixture("bell.qasm2")]], "shots": 4000, "seed": 1}));
    let r = &out["pub_results"][0];
    assert_eq!(r["shape"], json!([]));
    assert_eq!(r["metadata"]["shots"], json!(4000));
    let counts = r["data"]["c"]["counts"].as_object().unwrap();
    assert_eq!(counts.len(), 2, "{counts:?}");
    let n00 = counts["00"].as_u64().unwrap();
    let n11 = counts["11"].as_u64().unwrap();
    assert_eq!(n00 + n11, 4000);
    assert!((n00 as i64 - 2000).abs() < 200);
}

#[test]
fn qft_fixture_is_uniform_and_custom_fixture_matches() {
    let out = sample(json!({"pubs": [[fixture("qft4.qasm2"), null, 16000]], "seed": 3}));
    let counts = out["pub_results"][0]["data"]["meas"]["counts"].as_object().unwrap();
    assert_eq!(counts.len(), 16);
    for v in counts.values() {
        assert!((v.as_u64().unwrap() as i64 - 1000).abs() < 150);
    }
    // custom: h q0; crx(0.5) q0,q1 -> P(q0=1) = 1/2, P(q1=1 | q0=1) = sin^2(0.25).
    let out = sample(json!({"pubs": [[fixture("custom.qasm2"), [], 100000]], "seed": 4}));
    let counts = &out["pub_results"][0]["data"]["meas"]["counts"];
    let p11 = counts["11"].as_u64().unwrap() as f64 / 100000.0;
    let want = 0.5 * (0.25f64).sin().powi(2);
    assert!((p11 - want).abs() < 0.005, "{p11} vs {want}");
    assert!(counts.get("10").is_none());
}

#[test]
fn seeds_reproduce() {
    let payload = json!({"pubs": [[fixture("qft4.qasm2")]], "seed": 42});
    assert_eq!(sample(payload.clone()), sample(payload));
}

const PARAM: &str = "OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[2];\ncreg c[2];\ncreg d[1];\n\
    ry(theta) q[0];\nrx(alpha) q[1];\nmeasure q[0] -> c[0];\nmeasure q[1] -> c[1];\nmeasure q[0] -> d[0];\n";

#[test]
fn sampler_sweep_shapes_and_registers() {
    // Parameters in Qiskit's order: alpha, theta.
    let pi = std::f64::consts::PI;
    let out = sample(json!({"pubs": [[PARAM, [[[0.0, pi]], [[pi, 0.0]]], 64]], "seed": 1}));
    let r = &out["pub_results"][0];
    assert_eq!(r["shape"], json!([2, 1]));
    // alpha=0, theta=pi: q0 = 1, q1 = 0 -> c = "01", d = "1".
    assert_eq!(r["data"][0][0]["c"]["counts"], json!({"01": 64}));
    assert_eq!(r["data"][0][0]["d"]["counts"], json!({"1": 64}));
    assert_eq!(r["data"][1][0]["c"]["counts"], json!({"10": 64}));
    assert_eq!(r["data"][1][0]["d"]["counts"], json!({"0": 64}));
    // A flat list is one point.
    let out = sample(json!({"pubs": [[PARAM, [pi, pi]]], "shots": 10}));
    assert_eq!(out["pub_results"][0]["shape"], json!([]));
    assert_eq!(out["pub_results"][0]["data"]["c"]["counts"], json!({"11": 10}));
}

#[test]
fn sampler_errors() {
    let lim = SimLimits::default();
    let bad = |p: Value| prepare_sampler(&p, &lim).unwrap_err();
    assert!(matches!(bad(json!({"pubs": [[PARAM]]})), SimError::BadPayload(_)));
    assert!(matches!(bad(json!({"pubs": [[PARAM, [1.0]]]})), SimError::BadPayload(_)));
    assert!(matches!(bad(json!({"pubs": [[PARAM, [[1.0, 2.0], [1.0]]]]})), SimError::BadPayload(_)));
    assert!(matches!(bad(json!({"pubs": []})), SimError::BadPayload(_)));
    assert!(matches!(bad(json!({"nope": 1})), SimError::BadPayload(_)));
    assert!(matches!(bad(json!({"pubs": [["OPENQASM 2.0;\nqreg q[2;"]]})), SimError::Circuit { index: 0, .. }));
    assert!(matches!(bad(json!({"pubs": [[fixture("bell.qasm2"), null, 0]]})), SimError::BadPayload(_)));
    let small = SimLimits { max_qubits: 1, ..SimLimits::default() };
    let e = prepare_sampler(&json!({"pubs": [[fixture("bell.qasm2")]]}), &small).unwrap_err();
    assert!(matches!(e, SimError::TooLarge(_)), "{e}");
    let small = SimLimits { max_memory_bytes: 32, ..SimLimits::default() };
    let e = prepare_sampler(&json!({"pubs": [[fixture("bell.qasm2")]]}), &small).unwrap_err();
    assert!(e.to_string().contains("64 bytes"), "{e}");
    let small = SimLimits { max_shots: 10, ..SimLimits::default() };
    let e = prepare_sampler(&json!({"pubs": [[fixture("bell.qasm2")]]}), &small).unwrap_err();
    assert!(matches!(e, SimError::TooLarge(_)));
}

#[test]
fn dynamic_circuits_branch_per_shot() {
    // Measure q0 (|+>), then flip q1 if c0 == 1: q1 always equals q0; reset q2 after X.
    let src = "OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[3];\ncreg a[1];\ncreg b[2];\n\
        h q[0];\nx q[2];\nmeasure q[0] -> a[0];\nif (a == 1) x q[1];\nreset q[2];\n\
        measure q[1] -> b[0];\nmeasure q[2] -> b[1];\n";
    let out = sample(json!({"pubs": [[src, null, 2000]], "seed": 9}));
    let d = &out["pub_results"][0]["data"];
    let a = d["a"]["counts"].as_object().unwrap();
    let b = d["b"]["counts"].as_object().unwrap();
    assert_eq!(a["1"], b["01"]);
    assert_eq!(a["0"], b["00"]);
    assert!((a["1"].as_i64().unwrap() - 1000).abs() < 120);
}

#[test]
fn estimator_exact_values() {
    let bell = fixture("bell.qasm2");
    let out = estimate(json!({"pubs": [[bell, {"ZZ": 1.0, "XX": 0.5, "YY": 1.0, "ZI": 2.0}]]}));
    let r = &out["pub_results"][0];
    assert_eq!(r["shape"], json!([]));
    // <ZZ> = 1, <XX> = 1, <YY> = -1, <ZI> = 0.
    assert!((r["evs"].as_f64().unwrap() - 0.5).abs() < 1e-12, "{r}");
    assert_eq!(r["stds"], json!(0.0));
}

#[test]
fn estimator_broadcasting() {
    let src = "OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[1];\nry(t) q[0];\n";
    let ts = [0.0f64, 0.5, 1.0];
    let out = estimate(json!({"pubs": [[src, [[{"Z": 1.0}], [{"X": 1.0}]], [[0.0], [0.5], [1.0]]]]}));
    let r = &out["pub_results"][0];
    assert_eq!(r["shape"], json!([2, 3]));
    for (k, t) in ts.iter().enumerate() {
        let z = r["evs"][0][k].as_f64().unwrap();
        let x = r["evs"][1][k].as_f64().unwrap();
        assert!((z - t.cos()).abs() < 1e-12);
        assert!((x - t.sin()).abs() < 1e-12);
    }
    // Incompatible shapes.
    let e = prepare_estimator(
        &json!({"pubs": [[src, [{"Z": 1.0}, {"X": 1.0}], [[0.0], [0.5], [1.0]]]]}),
        &SimLimits::default(),
    )
    .unwrap_err();
    assert!(matches!(e, SimError::BadPayload(_)), "{e}");
    // Wrong label length.
    let e = prepare_estimator(&json!({"pubs": [[src, {"ZZ": 1.0}, [0.1]]]}), &SimLimits::default()).unwrap_err();
    assert!(matches!(e, SimError::BadPayload(_)), "{e}");
}

#[test]
fn estimator_precision_adds_seeded_noise() {
    let bell = fixture("bell.qasm2");
    let payload = json!({"pubs": [[bell, [{"ZZ": 1.0}, {"ZZ": 1.0}, {"ZZ": 1.0}, {"ZZ": 1.0}], null, 0.1]], "seed": 5});
    let a = estimate(payload.clone());
    assert_eq!(a, estimate(payload));
    let r = &a["pub_results"][0];
    assert_eq!(r["stds"], json!([0.1, 0.1, 0.1, 0.1]));
    let evs: Vec<f64> = (0..4).map(|k| r["evs"][k].as_f64().unwrap()).collect();
    assert!(evs.iter().all(|e| (e - 1.0).abs() < 0.6 && (e - 1.0).abs() > 0.0));
}

#[test]
fn stdgates_include_goes_to_the_qasm3_reader() {
    // Qiskit's `qasm2.dumps` of a circuit saved as OpenQASM 3 names "stdgates.inc": dispatched to
    // the OpenQASM 3 reader (whatever its state, the error, if any, must come from it).
    for name in ["bell_as3.qasm3", "qft4_as3.qasm3"] {
        let payload = json!({"pubs": [[fixture(name)]], "seed": 1});
        match prepare_sampler(&payload, &SimLimits::default()) {
            Ok(p) => {
                run_sampler(&p).unwrap();
            }
            Err(SimError::Circuit { source, .. }) => {
                assert!(source.to_string().contains("OpenQASM 3"), "{source}")
            }
            Err(e) => panic!("{name}: {e}"),
        }
    }
}
