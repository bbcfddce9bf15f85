//! OpenQASM 2 reader: Qiskit fixtures, the extended qelib1.inc, and hostile input.

use qcloud_qsim::ir::{Gate, Operation};
use qcloud_qsim::{qasm2, ReadError, ReadLimits};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path).unwrap()
}

fn gates(src: &str) -> Vec<Gate> {
    let c = qasm2::parse(src, &ReadLimits::default()).unwrap();
    c.instructions
        .iter()
        .filter_map(|i| match &i.op {
            Operation::Gate { gate, .. } => Some(gate.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn reads_the_fixtures() {
    let bell = qasm2::parse(&fixture("bell.qasm2"), &ReadLimits::default()).unwrap();
    assert_eq!((bell.num_qubits, bell.num_clbits), (2, 2));
    assert_eq!(bell.cregs.len(), 1);
    assert_eq!(bell.cregs[0].name, "c");
    assert_eq!(gates(&fixture("bell.qasm2")), vec![Gate::H, Gate::CX]);
    let custom = qasm2::parse(&fixture("custom.qasm2"), &ReadLimits::default()).unwrap();
    assert_eq!(custom.cregs[0].name, "meas");
    assert_eq!(gates(&fixture("custom.qasm2")), vec![Gate::H, Gate::CRX]);
    let qft = gates(&fixture("qft4.qasm2"));
    assert_eq!(qft.iter().filter(|g| **g == Gate::CP).count(), 6);
    assert_eq!(qft.iter().filter(|g| **g == Gate::Swap).count(), 2);
}

#[test]
fn qiskit_extended_gate_set() {
    let src = r#"OPENQASM 2.0;
include "qelib1.inc";
qreg q[5];
creg c[5];
sx q[0]; sxdg q[1]; cp(pi/3) q[0],q[1]; crx(0.1) q[0],q[1]; cry(0.2) q[1],q[2];
crz(-0.3) q[2],q[3]; cu(0.1,0.2,0.3,0.4) q[0],q[4]; swap q[0],q[1]; rzz(0.5) q[1],q[2];
rxx(0.6) q[2],q[3]; ccx q[0],q[1],q[2]; cswap q[0],q[1],q[2]; u(1,2,3) q[0]; p(0.7) q[1];
csx q[0],q[1]; rccx q[0],q[1],q[2]; c3x q[0],q[1],q[2],q[3]; u1(0.1) q[0]; u2(0.1,0.2) q[0];
u3(0.1,0.2,0.3) q[0]; id q[0]; c3sqrtx q[0],q[1],q[2],q[3]; c4x q[0],q[1],q[2],q[3],q[4];
rc3x q[0],q[1],q[2],q[3]; cu1(0.2) q[0],q[1]; cu3(0.1,0.2,0.3) q[0],q[1];
U(0.1,0.2,0.3) q[0]; CX q[0],q[1];
measure q -> c;
"#;
    let g = gates(src);
    assert_eq!(g.len(), 28);
    assert_eq!(g[0], Gate::SX);
    assert_eq!(g[22], Gate::MCX);
}

#[test]
fn custom_gates_are_inlined_with_parameters() {
    let src = "OPENQASM 2.0;\ninclude \"qelib1.inc\";\n\
        gate inner(a) x { rz(a*2) x; }\n\
        gate outer(b, c) x, y { inner(b+c) x; cx x, y; inner(-b) y; }\n\
        qreg q[2];\nouter(0.25, 0.5) q[0], q[1];\n";
    let c = qasm2::parse(src, &ReadLimits::default()).unwrap();
    let params: Vec<f64> = c
        .instructions
        .iter()
        .filter_map(|i| match &i.op {
            Operation::Gate { params, .. } => params.first().and_then(|p| p.as_const()),
            _ => None,
        })
        .collect();
    assert_eq!(params, vec![1.5, -0.5]);
}

#[test]
fn register_broadcast_and_conditions() {
    let src = "OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg a[3];\nqreg b[3];\ncreg c[3];\n\
        cx a, b;\nh a[0];\nmeasure a -> c;\nif (c == 5) x b[1];\nreset b;\n";
    let c = qasm2::parse(src, &ReadLimits::default()).unwrap();
    assert_eq!(c.num_qubits, 6);
    let cx: Vec<Vec<usize>> = c
        .instructions
        .iter()
        .filter(|i| matches!(i.op, Operation::Gate { gate: Gate::CX, .. }))
        .map(|i| i.qubits.clone())
        .collect();
    assert_eq!(cx, vec![vec![0, 3], vec![1, 4], vec![2, 5]]);
    let cond = c.instructions.iter().find_map(|i| i.condition.clone()).unwrap();
    assert_eq!((cond.bits, cond.value), (vec![0, 1, 2], 5));
    assert!(c.needs_per_shot());
}

#[test]
fn free_parameters_are_symbols() {
    let src = "OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[1];\nrx(theta) q[0];\nry(2*v[1]) q[0];\n";
    let c = qasm2::parse(src, &ReadLimits::default()).unwrap();
    assert_eq!(c.parameters(), vec!["theta", "v[1]"]);
}

fn err(src: &str) -> ReadError {
    qasm2::parse(src, &ReadLimits::default()).unwrap_err()
}

#[test]
fn hostile_inputs_are_clean_errors() {
    // Huge register.
    assert!(matches!(
        err("OPENQASM 2.0;\nqreg q[99999999999999999];\n"),
        ReadError::TooLarge { .. } | ReadError::Syntax { .. }
    ));
    assert!(matches!(err("OPENQASM 2.0;\nqreg q[2000];\n"), ReadError::TooLarge { .. }));
    assert!(matches!(err("OPENQASM 2.0;\ncreg c[100000];\n"), ReadError::TooLarge { .. }));
    // Deep recursion of gate definitions.
    let mut src = String::from("OPENQASM 2.0;\ngate g0 a { U(0,0,0) a; }\n");
    for k in 1..200 {
        src.push_str(&format!("gate g{k} a {{ g{} a; }}\n", k - 1));
    }
    src.push_str("qreg q[1];\ng199 q[0];\n");
    assert!(matches!(err(&src), ReadError::TooLarge { .. }));
    // Exponential expansion within the depth limit.
    let mut src = String::from("OPENQASM 2.0;\ngate g0 a { U(0,0,0) a; }\n");
    for k in 1..40 {
        src.push_str(&format!("gate g{k} a {{ g{p} a; g{p} a; }}\n", p = k - 1));
    }
    src.push_str("qreg q[1];\ng39 q[0];\n");
    assert!(matches!(err(&src), ReadError::TooLarge { .. }));
    // Recursive gate (use before definition).
    assert!(matches!(err("OPENQASM 2.0;\ngate g a { g a; }\nqreg q[1];\ng q[0];\n"), ReadError::Syntax { .. }));
    // Includes other than the built-in qelib1.inc.
    let e = err("OPENQASM 2.0;\ninclude \"/etc/passwd\";\n");
    assert!(e.to_string().contains("only the built-in"), "{e}");
    assert!(matches!(err("OPENQASM 2.0;\ninclude \"../qelib1.inc\";\n"), ReadError::Syntax { .. }));
    // Garbage.
    let garbage: String = (0..2000u32).map(|i| char::from_u32((i * 7919) % 0x2000 + 1).unwrap_or('x')).collect();
    let _ = err(&garbage);
    let _ = err("OPENQASM 2.0;\nqreg q[2];\n\u{0}\u{1}\u{ffff}");
    let _ = err("");
    let _ = err("OPENQASM 2.0");
    let _ = err("OPENQASM 2.0;\nqreg q[2];\nh q[5];\n");
    let _ = err("OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[2];\ncx q[0], q[0];\n");
    let _ = err("OPENQASM 2.0;\nopaque foo a;\nqreg q[1];\nfoo q[0];\n");
    let _ = err("OPENQASM 2.0;\nqreg q[1];\nunknown q[0];\n");
    // Deep expression nesting.
    let deep = format!("OPENQASM 2.0;\nqreg q[1];\nU({}0{},0,0) q[0];\n", "(".repeat(100_000), ")".repeat(100_000));
    assert!(matches!(err(&deep), ReadError::TooLarge { .. }));
    let neg = format!("OPENQASM 2.0;\nqreg q[1];\nU({}1,0,0) q[0];\n", "-".repeat(100_000));
    assert!(matches!(err(&neg), ReadError::TooLarge { .. }));
    // Source size.
    let limits = ReadLimits { max_source_bytes: 10, ..ReadLimits::default() };
    assert!(matches!(qasm2::parse("OPENQASM 2.0;\nqreg q[1];\n", &limits), Err(ReadError::TooLarge { .. })));
}

#[test]
fn every_prefix_of_a_program_is_handled() {
    // Truncated input at every byte: an error or a circuit, never a panic.
    let src = fixture("qft4.qasm2") + "if (meas == 3) u(0.1, -pi/2, 2^3) q[1];\n";
    for k in 0..src.len() {
        if src.is_char_boundary(k) {
            let _ = qasm2::parse(&src[..k], &ReadLimits::default());
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
    #[test]
    fn random_token_soup_never_panics(
        toks in proptest::collection::vec(
            proptest::sample::select(vec![
                "OPENQASM 2.0;", "include \"qelib1.inc\";", "qreg", "creg", "q", "c", "[", "]",
                "(", ")", "{", "}", ";", ",", "->", "==", "gate", "opaque", "measure", "reset",
                "barrier", "if", "U", "CX", "h", "cx", "rz", "u", "g", "a", "b", "pi", "sin", "0",
                "1", "2", "3.5", "1e400", "-", "+", "*", "/", "^", "\n", "//", "\"",
            ]),
            0..60,
        )
    ) {
        let src = toks.join(" ");
        let _ = qasm2::parse(&src, &ReadLimits::default());
        let _ = qasm2::parse(&format!("OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[3];\ncreg c[3];\n{src}"), &ReadLimits::default());
    }
}
