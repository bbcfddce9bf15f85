//! The same circuits written by Qiskit as OpenQASM 2, OpenQASM 3 and QPY (the shared fixtures)
//! read to the same IR through all three readers, and sample the same distribution.

use base64::Engine;
use qcloud_qsim::primitives::{prepare_sampler, run_sampler, SimLimits};
use qcloud_qsim::{qasm2, qasm3, qpy, Circuit, ReadLimits};
use serde_json::{json, Value};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn text(name: &str) -> String {
    String::from_utf8(fixture(name)).unwrap()
}

/// Every reading of one circuit, labelled by where it came from.
fn readings(stem: &str) -> Vec<(String, Circuit)> {
    let limits = ReadLimits::default();
    let mut out = Vec::new();
    let names: Vec<String> = ["qasm2", "qasm3"].iter().map(|e| format!("{stem}.{e}")).collect();
    for name in names.iter().chain(std::iter::once(&format!("{stem}_as3.qasm3"))) {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        if !std::path::Path::new(&path).exists() {
            continue;
        }
        let src = text(name);
        // Qiskit's qasm3 exporter may write `OPENQASM 2.0` with stdgates.inc: that is OpenQASM 3 input.
        let c = if name.ends_with(".qasm2") { qasm2::parse(&src, &limits) } else { qasm3::parse(&src, &limits) };
        out.push((name.clone(), c.unwrap_or_else(|e| panic!("{name}: {e}"))));
    }
    let mut circuits = qpy::parse(&fixture(&format!("{stem}.qpy")), &limits).unwrap();
    assert_eq!(circuits.len(), 1, "{stem}.qpy holds one circuit");
    out.push((format!("{stem}.qpy"), circuits.remove(0)));
    out
}

/// The IR up to what the formats cannot carry: the circuit's name (QPY only) and a zero global
/// phase written as different constants.
fn normalised(mut c: Circuit) -> Circuit {
    c.name = None;
    if c.global_phase.as_const() == Some(0.0) {
        c.global_phase = qcloud_qsim::ParamExpr::Const(0.0);
    }
    c
}

fn counts(circuit: Value) -> Value {
    let payload = json!({"pubs": [[circuit, null, 2000]], "seed": 11});
    let p = prepare_sampler(&payload, &SimLimits::default()).unwrap();
    run_sampler(&p).unwrap()["pub_results"][0]["data"].clone()
}

#[test]
fn all_readers_agree_on_every_fixture() {
    for stem in ["bell", "custom", "qft4", "mixed"] {
        let all = readings(stem);
        assert!(all.len() >= 2, "{stem}: at least two formats");
        let (first_name, first) = &all[0];
        let first = normalised(first.clone());
        for (name, c) in &all[1..] {
            assert_eq!(normalised(c.clone()), first, "{stem}: {name} differs from {first_name}");
        }
    }
}

#[test]
fn all_formats_sample_the_same_distribution() {
    for stem in ["bell", "custom", "qft4", "mixed"] {
        let qpy_b64 = base64::engine::general_purpose::STANDARD.encode(fixture(&format!("{stem}.qpy")));
        let reference = counts(json!({"qpy": qpy_b64}));
        for ext in ["qasm2", "qasm3"] {
            let name = format!("{stem}.{ext}");
            if std::path::Path::new(&format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).exists() {
                assert_eq!(counts(json!(text(&name))), reference, "{name} vs {stem}.qpy");
            }
        }
    }
}
