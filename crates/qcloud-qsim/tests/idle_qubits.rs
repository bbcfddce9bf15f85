//! Circuits laid out on a large device act on few of its qubits: the idle ones are dropped before
//! the state vector is allocated (as Aer does), and the results are those of the full circuit.
//! Fixtures: `make_wide.py` (a 127-qubit circuit acting on qubits 0, 50 and 126).

use base64::Engine as _;
use qcloud_qsim::isa::Isa;
use qcloud_qsim::{prepare_estimator, prepare_sampler, run_estimator, run_sampler, SimError, SimLimits};
use serde_json::{json, Value};

fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The wide circuit in each of its encodings.
fn wide_circuits() -> Vec<(&'static str, Value)> {
    let b64 = |n| base64::engine::general_purpose::STANDARD.encode(fixture_bytes(n));
    vec![
        ("qpy v13", json!({"qpy": b64("wide127_v13.qpy")})),
        ("qpy v17", json!({"__type__": "QuantumCircuit", "__value__": b64("wide127_v17.qpy")})),
        ("qasm3 physical", json!(String::from_utf8(fixture_bytes("wide127_physical.qasm3")).unwrap())),
    ]
}

/// A 127-qubit device whose memory limit holds a state vector of 3 qubits (16 * 2^3 bytes), not 4.
fn eagle_sized() -> SimLimits {
    SimLimits { max_qubits: 127, max_memory_bytes: 16 << 3, ..SimLimits::default() }
}

#[test]
fn a_3_qubit_circuit_on_127_qubits_simulates_3_and_counts_right() {
    for (what, circuit) in wide_circuits() {
        let p = prepare_sampler(&json!({"pubs": [[circuit, null, 8000]], "seed": 11}), &eagle_sized())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(p.simulated_qubits(), vec![3], "{what}");
        let out = run_sampler(&p).unwrap();
        let counts = out["pub_results"][0]["data"]["c"]["counts"].as_object().unwrap();
        // c[2] = q126 = 1 always; c[1] = c[0] = q0 with P(1) = 3/4.
        let keys: Vec<&str> = counts.keys().map(String::as_str).collect();
        assert_eq!(keys, ["100", "111"], "{what}: {counts:?}");
        let n111 = counts["111"].as_u64().unwrap();
        assert_eq!(n111 + counts["100"].as_u64().unwrap(), 8000);
        assert!((n111 as f64 / 8000.0 - 0.75).abs() < 0.03, "{what}: {n111}");
    }
}

#[test]
fn the_device_width_still_bounds_the_circuit_and_memory_bounds_the_touched_qubits() {
    for (what, circuit) in wide_circuits() {
        let narrow = SimLimits { max_qubits: 126, ..eagle_sized() };
        let e = prepare_sampler(&json!({"pubs": [[circuit.clone()]]}), &narrow).unwrap_err();
        assert!(matches!(&e, SimError::TooLarge(m) if m.contains("127 qubits")), "{what}: {e}");
        let tiny = SimLimits { max_memory_bytes: (16 << 3) - 1, ..eagle_sized() };
        let e = prepare_sampler(&json!({"pubs": [[circuit]]}), &tiny).unwrap_err();
        assert!(matches!(&e, SimError::TooLarge(m) if m.contains("3 qubits")), "{what}: {e}");
    }
    // 128 physical qubits on a 127-qubit device.
    let src = "OPENQASM 3.0;\ninclude \"stdgates.inc\";\nbit[1] c;\nx $127;\nc[0] = measure $127;\n";
    let e = prepare_sampler(&json!({"pubs": [[src]]}), &eagle_sized()).unwrap_err();
    assert!(matches!(&e, SimError::TooLarge(m) if m.contains("128 qubits")), "{e}");
}

/// A Pauli label on 127 qubits: `ops` (qubit, Pauli), identity elsewhere (qubit 0 rightmost).
fn label(ops: &[(usize, char)]) -> String {
    let mut chars = vec!['I'; 127];
    for &(q, p) in ops {
        chars[126 - q] = p;
    }
    chars.into_iter().collect()
}

#[test]
fn observables_on_127_qubits_act_as_on_zero_on_idle_qubits() {
    for (what, circuit) in wide_circuits() {
        let cases: Vec<(String, f64)> = vec![
            (label(&[(0, 'Z'), (50, 'Z')]), 1.0),
            (label(&[(126, 'Z')]), -1.0),
            (label(&[(0, 'Z')]), -0.5), // cos(2 pi / 3)
            (label(&[(7, 'Z')]), 1.0),  // idle: Z|0> = |0>
            (label(&[(7, 'X')]), 0.0),  // idle: <0|X|0> = 0
            (label(&[(0, 'Z'), (99, 'Y')]), 0.0),
            (label(&[(0, 'Z'), (99, 'Z'), (126, 'Z')]), 0.5),
            (label(&[]), 1.0),
        ];
        let obs: Vec<Value> = cases.iter().map(|(l, _)| json!(l)).collect();
        let payload = json!({"pubs": [[circuit.clone(), obs]]});
        let p = prepare_estimator(&payload, &eagle_sized()).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(p.simulated_qubits(), vec![3], "{what}");
        let out = run_estimator(&p).unwrap();
        let evs = out["pub_results"][0]["evs"].as_array().unwrap();
        for ((l, want), got) in cases.iter().zip(evs) {
            let got = got.as_f64().unwrap();
            assert!((got - want).abs() < 1e-9, "{what}: <{}> = {got}, want {want}", l.trim_matches('I'));
        }
        // A weighted sum whose terms on idle qubits vanish.
        let sum = json!({ label(&[(0, 'Z')]): 2.0, label(&[(3, 'X')]): 5.0, label(&[(3, 'Z')]): 0.25 });
        let out =
            run_estimator(&prepare_estimator(&json!({"pubs": [[circuit, sum]]}), &eagle_sized()).unwrap()).unwrap();
        let ev = out["pub_results"][0]["evs"].as_f64().unwrap();
        assert!((ev - (2.0 * -0.5 + 0.25)).abs() < 1e-9, "{what}: {ev}");
    }
    // Labels still span the circuit's full width.
    let (_, circuit) = wide_circuits().remove(0);
    let e = prepare_estimator(&json!({"pubs": [[circuit, "ZZ"]]}), &eagle_sized()).unwrap_err();
    assert!(e.to_string().contains("2 characters, the circuit has 127 qubits"), "{e}");
}

#[test]
fn a_target_refuses_gates_outside_its_basis_and_pairs_outside_its_coupling_map() {
    let isa = |basis: &[&str], pairs: &[(usize, usize)]| SimLimits {
        isa: Some(Isa {
            basis_gates: basis.iter().map(|s| s.to_string()).collect(),
            coupling: pairs.iter().copied().collect(),
        }),
        ..eagle_sized()
    };
    for (what, circuit) in wide_circuits() {
        // The wide circuit uses ry, cx (on 0, 50) and x.
        let e = prepare_sampler(&json!({"pubs": [[circuit.clone()]]}), &isa(&["ecr", "rz", "sx", "x"], &[(0, 50)]))
            .unwrap_err();
        assert!(matches!(&e, SimError::NotIsa(m) if m.contains("gate 'ry' on qubit(s) [0]")), "{what}: {e}");
        let e =
            prepare_sampler(&json!({"pubs": [[circuit.clone()]]}), &isa(&["ry", "cx", "x"], &[(50, 0)])).unwrap_err();
        assert!(matches!(&e, SimError::NotIsa(m) if m.contains("gate 'cx' on qubits (0, 50)")), "{what}: {e}");
        let e = prepare_estimator(&json!({"pubs": [[circuit.clone(), label(&[])]]}), &isa(&["ry", "cx"], &[(0, 50)]))
            .unwrap_err();
        assert!(matches!(&e, SimError::NotIsa(m) if m.contains("gate 'x' on qubit(s) [126]")), "{what}: {e}");
        let ok = isa(&["ry", "cx", "x"], &[(0, 50)]);
        assert_eq!(prepare_sampler(&json!({"pubs": [[circuit]]}), &ok).unwrap().simulated_qubits(), vec![3]);
    }
}

#[test]
fn qiskits_exported_ecr_definition_reads_as_the_native_gate() {
    use qcloud_qsim::{Gate, Operation};
    // What qiskit.qasm3.dumps writes for a transpiled circuit (Qiskit 2.6).
    let src = "OPENQASM 3.0;\ninclude \"stdgates.inc\";\ngate ecr _gate_q_0, _gate_q_1 {\n  s _gate_q_0;\n  \
               sx _gate_q_1;\n  cx _gate_q_0, _gate_q_1;\n  x _gate_q_0;\n}\nbit[2] meas;\necr $14, $0;\nrz(0.3) $0;\n\
               sx $14;\nbarrier $0, $14;\nmeas[0] = measure $0;\nmeas[1] = measure $14;\n";
    let c = qcloud_qsim::qasm3::parse(src, &Default::default()).unwrap();
    assert!(
        matches!(&c.instructions[0], i if i.op == Operation::Gate { gate: Gate::ECR, params: vec![] } && i.qubits == [14, 0]),
        "{:?}",
        c.instructions[0]
    );
    // A definition under a native name with another unitary is inlined as written.
    let fake = src.replace("  s _gate_q_0;\n  sx _gate_q_1;\n", "");
    let c = qcloud_qsim::qasm3::parse(&fake, &Default::default()).unwrap();
    assert!(matches!(&c.instructions[0].op, Operation::Gate { gate: Gate::CX, .. }), "{:?}", c.instructions[0]);
    // ISA on a heavy-hex pair: accepted, with the counts of the definition written out in std gates.
    let lim = SimLimits {
        isa: Some(Isa {
            basis_gates: ["ecr", "rz", "sx", "x"].iter().map(|s| s.to_string()).collect(),
            coupling: [(14, 0), (0, 14)].into_iter().collect(),
        }),
        ..eagle_sized()
    };
    let p = prepare_sampler(&json!({"pubs": [[src, null, 20000]], "seed": 5}), &lim).unwrap();
    assert_eq!(p.simulated_qubits(), vec![2]);
    let native = run_sampler(&p).unwrap();
    let written_out = "OPENQASM 3.0;\ninclude \"stdgates.inc\";\nbit[2] meas;\ns $14;\nsx $0;\ncx $14, $0;\nx $14;\n\
                       rz(0.3) $0;\nsx $14;\nmeas[0] = measure $0;\nmeas[1] = measure $14;\n";
    let reference = run_sampler(
        &prepare_sampler(&json!({"pubs": [[written_out, null, 20000]], "seed": 6}), &eagle_sized()).unwrap(),
    )
    .unwrap();
    for key in ["00", "01", "10", "11"] {
        let n = |v: &Value| v["pub_results"][0]["data"]["meas"]["counts"][key].as_f64().unwrap_or(0.0) / 20000.0;
        assert!((n(&native) - n(&reference)).abs() < 0.02, "{key}: {native} vs {reference}");
    }
    assert!(prepare_sampler(&json!({"pubs": [[fake, null, 10]]}), &lim).is_err(), "cx is not in the basis");
}
