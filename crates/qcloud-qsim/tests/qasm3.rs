//! OpenQASM 3 reader: Qiskit fixtures, every supported construct, and hostile inputs.

use std::f64::consts::PI;

use qcloud_qsim::ir::Func;
use qcloud_qsim::qasm3::parse;
use qcloud_qsim::{
    Circuit, ClassicalRegister, Condition, Gate, Instruction, Operation, ParamExpr, ReadError, ReadLimits,
};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path).unwrap()
}

fn read(src: &str) -> Circuit {
    match parse(src, &ReadLimits::default()) {
        Ok(c) => c,
        Err(e) => panic!("parse failed: {e}\n{src}"),
    }
}

fn err(src: &str) -> ReadError {
    match parse(src, &ReadLimits::default()) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e,
    }
}

fn cst(v: f64) -> ParamExpr {
    ParamExpr::Const(v)
}

fn g(gate: Gate, params: Vec<ParamExpr>, qubits: Vec<usize>) -> Instruction {
    Instruction { op: Operation::Gate { gate, params }, qubits, condition: None }
}

fn g0(gate: Gate, qubits: &[usize]) -> Instruction {
    g(gate, vec![], qubits.to_vec())
}

fn meas(q: usize, c: usize) -> Instruction {
    Instruction { op: Operation::Measure { clbit: c }, qubits: vec![q], condition: None }
}

fn op(op: Operation, qubits: &[usize]) -> Instruction {
    Instruction { op, qubits: qubits.to_vec(), condition: None }
}

fn creg(name: &str, bits: std::ops::Range<usize>) -> ClassicalRegister {
    ClassicalRegister { name: name.into(), bits: bits.collect() }
}

const PRE: &str = "OPENQASM 3.0;\ninclude \"stdgates.inc\";\n";

fn body(src: &str) -> Vec<Instruction> {
    read(&format!("{PRE}{src}")).instructions
}

fn is_unsupported(e: &ReadError, needle: &str) -> bool {
    matches!(e, ReadError::Unsupported { message, .. } if message.contains(needle))
}

// ---------------------------------------------------------------- fixtures

#[test]
fn fixture_bell() {
    let c = read(&fixture("bell.qasm3"));
    assert_eq!(c.num_qubits, 2);
    assert_eq!(c.num_clbits, 2);
    assert_eq!(c.cregs, vec![creg("c", 0..2)]);
    assert_eq!(c.global_phase, cst(0.0));
    assert_eq!(c.instructions, vec![g0(Gate::H, &[0]), g0(Gate::CX, &[0, 1]), meas(0, 0), meas(1, 1)]);
    assert_eq!(read(&fixture("bell_as3.qasm3")), c);
}

fn qft4_expected() -> Circuit {
    let cp = |l: f64, a, b| g(Gate::CP, vec![cst(l)], vec![a, b]);
    Circuit {
        name: None,
        num_qubits: 4,
        num_clbits: 4,
        cregs: vec![creg("meas", 0..4)],
        instructions: vec![
            g0(Gate::H, &[3]),
            cp(PI / 2.0, 3, 2),
            g0(Gate::H, &[2]),
            cp(PI / 4.0, 3, 1),
            cp(PI / 2.0, 2, 1),
            g0(Gate::H, &[1]),
            cp(PI / 8.0, 3, 0),
            cp(PI / 4.0, 2, 0),
            cp(PI / 2.0, 1, 0),
            g0(Gate::H, &[0]),
            g0(Gate::Swap, &[0, 3]),
            g0(Gate::Swap, &[1, 2]),
            op(Operation::Barrier, &[0, 1, 2, 3]),
            meas(0, 0),
            meas(1, 1),
            meas(2, 2),
            meas(3, 3),
        ],
        global_phase: cst(0.0),
    }
}

#[test]
fn fixture_qft4_both_dialects() {
    assert_eq!(read(&fixture("qft4.qasm3")), qft4_expected());
    assert_eq!(read(&fixture("qft4_as3.qasm3")), qft4_expected());
}

#[test]
fn fixtures_match_the_qasm2_reader_when_available() {
    // Cross-check with the OpenQASM 2 reader (another module) on the same circuits written by
    // Qiskit in both formats; skipped for a file that reader does not accept (yet).
    for (q3, q2) in [("qft4.qasm3", "qft4.qasm2"), ("bell.qasm3", "bell.qasm2"), ("custom.qasm3", "custom.qasm2")] {
        if let Ok(c2) = qcloud_qsim::qasm2::parse(&fixture(q2), &ReadLimits::default()) {
            let c3 = read(&fixture(q3));
            assert_eq!(c3.instructions, c2.instructions, "{q3} vs {q2}");
            assert_eq!(c3.cregs, c2.cregs, "{q3} vs {q2}");
            assert_eq!(c3.num_qubits, c2.num_qubits, "{q3} vs {q2}");
        }
    }
}

#[test]
fn fixture_custom_gate_is_inlined() {
    let c = read(&fixture("custom.qasm3"));
    assert_eq!(c.num_qubits, 2);
    assert_eq!(c.cregs, vec![creg("meas", 0..2)]);
    assert_eq!(
        c.instructions,
        vec![
            g0(Gate::H, &[0]),
            g(Gate::CRX, vec![cst(0.5)], vec![0, 1]),
            op(Operation::Barrier, &[0, 1]),
            meas(0, 0),
            meas(1, 1),
        ]
    );
}

#[test]
fn fixture_mixed() {
    let c = read(&fixture("mixed.qasm3"));
    assert_eq!(c.num_qubits, 3);
    assert_eq!(c.num_clbits, 3);
    assert_eq!(c.cregs, vec![creg("c", 0..3)]);
    assert_eq!(
        c.instructions,
        vec![
            g0(Gate::H, &[0]),
            g0(Gate::CX, &[0, 1]),
            g(Gate::RZ, vec![cst(0.3)], vec![2]),
            g0(Gate::SX, &[1]),
            g0(Gate::CCX, &[0, 1, 2]),
            g(Gate::CP, vec![cst(0.25)], vec![0, 2]),
            g(Gate::U, vec![cst(0.1), cst(0.2), cst(0.3)], vec![1]),
            op(Operation::Barrier, &[0, 1, 2]),
            op(Operation::Reset, &[2]),
            g0(Gate::Swap, &[0, 2]),
            meas(0, 0),
            meas(1, 1),
            meas(2, 2),
            op(
                Operation::IfElse {
                    condition: Condition { bits: vec![0], value: 1 },
                    true_body: vec![g0(Gate::X, &[1])],
                    false_body: vec![],
                },
                &[1]
            ),
        ]
    );
    assert!(c.needs_per_shot());
}

// ---------------------------------------------------------------- declarations

#[test]
fn versions_and_declarations() {
    for header in ["OPENQASM 3.0;", "OPENQASM 3;", "OPENQASM 2.0;", ""] {
        let c = read(&format!(
            "{header}\ninclude \"stdgates.inc\";\nqubit[2] q;\nqubit r;\nqreg s[3];\nbit[2] c;\nbit b;\ncreg d[4];\nx r;\nx s[2];"
        ));
        assert_eq!(c.num_qubits, 6);
        assert_eq!(c.num_clbits, 7);
        assert_eq!(
            c.cregs,
            // `bit b;` is a loose clbit, as in Qiskit: not a register.
            vec![creg("c", 0..2), creg("d", 3..7)]
        );
        assert_eq!(c.instructions, vec![g0(Gate::X, &[2]), g0(Gate::X, &[5])]);
    }
    assert!(is_unsupported(&err("OPENQASM 4.0;"), "version"));
    assert!(matches!(err("qubit q; OPENQASM 3;"), ReadError::Syntax { .. }));
}

#[test]
fn redeclaration_is_an_error() {
    assert!(matches!(err("qubit[2] q; bit q;"), ReadError::Syntax { .. }));
    assert!(matches!(err(&format!("{PRE}gate h a {{ x a; }}")), ReadError::Syntax { .. }));
}

#[test]
fn const_declarations_and_sizes() {
    let c = read(&format!("{PRE}const int n = 3;\nconst float a = pi / n;\nqubit[n] q;\nrx(a) q[n - 1];"));
    assert_eq!(c.num_qubits, 3);
    assert_eq!(c.instructions, vec![g(Gate::RX, vec![cst(PI / 3.0)], vec![2])]);
}

#[test]
fn physical_qubits() {
    let c = read(&format!("{PRE}h $0;\ncx $0, $3;"));
    assert_eq!(c.num_qubits, 4);
    assert_eq!(c.instructions, vec![g0(Gate::H, &[0]), g0(Gate::CX, &[0, 3])]);
    assert!(is_unsupported(&err(&format!("{PRE}qubit q; h $0;")), "physical"));
    assert!(matches!(err(&format!("{PRE}h $1024;")), ReadError::TooLarge { .. }));
}

// ---------------------------------------------------------------- gates

#[test]
fn every_standard_gate() {
    use Gate::*;
    let cases: Vec<(&str, Gate, usize, usize)> = vec![
        ("p", P, 1, 1),
        ("x", X, 0, 1),
        ("y", Y, 0, 1),
        ("z", Z, 0, 1),
        ("h", H, 0, 1),
        ("s", S, 0, 1),
        ("sdg", Sdg, 0, 1),
        ("t", T, 0, 1),
        ("tdg", Tdg, 0, 1),
        ("sx", SX, 0, 1),
        ("rx", RX, 1, 1),
        ("ry", RY, 1, 1),
        ("rz", RZ, 1, 1),
        ("cx", CX, 0, 2),
        ("cy", CY, 0, 2),
        ("cz", CZ, 0, 2),
        ("cp", CP, 1, 2),
        ("crx", CRX, 1, 2),
        ("cry", CRY, 1, 2),
        ("crz", CRZ, 1, 2),
        ("ch", CH, 0, 2),
        ("swap", Swap, 0, 2),
        ("ccx", CCX, 0, 3),
        ("cswap", CSwap, 0, 3),
        ("cu", CU, 4, 2),
        ("CX", CX, 0, 2),
        ("phase", P, 1, 1),
        ("cphase", CP, 1, 2),
        ("id", I, 0, 1),
        ("u1", P, 1, 1),
        ("u2", U2, 2, 1),
        ("u3", U, 3, 1),
        ("U", U, 3, 1),
    ];
    for (name, gate, np, nq) in cases {
        let params: Vec<String> = (0..np).map(|i| format!("0.{}", i + 1)).collect();
        let args = if np > 0 { format!("({})", params.join(", ")) } else { String::new() };
        let qubits: Vec<String> = (0..nq).map(|i| format!("q[{i}]")).collect();
        let src = format!("{PRE}qubit[3] q;\n{name}{args} {};", qubits.join(", "));
        let expected_params: Vec<ParamExpr> = (0..np).map(|i| cst((i as f64 + 1.0) / 10.0)).collect();
        assert_eq!(read(&src).instructions, vec![g(gate, expected_params, (0..nq).collect())], "{name}");
        // Wrong arity is a clean error.
        let bad = format!("{PRE}qubit[4] q;\n{name}{args} q[0], q[1], q[2], q[3];");
        assert!(matches!(err(&bad), ReadError::Syntax { .. }), "{name}");
    }
}

#[test]
fn stdgates_need_the_include() {
    match err("OPENQASM 3; qubit q; h q;") {
        ReadError::Syntax { message, .. } => assert!(message.contains("stdgates.inc")),
        e => panic!("{e:?}"),
    }
    // U and gphase are builtin.
    let c = read("OPENQASM 3; qubit q; U(0, 0, pi) q; gphase(pi / 2);");
    assert_eq!(c.instructions.len(), 1);
    assert_eq!(c.global_phase, cst(PI / 2.0));
}

#[test]
fn broadcasting_over_registers() {
    let ins = body("qubit[2] a; qubit[2] b; qubit c; h a; cx a, b; cx c, a;");
    assert_eq!(
        ins,
        vec![
            g0(Gate::H, &[0]),
            g0(Gate::H, &[1]),
            g0(Gate::CX, &[0, 2]),
            g0(Gate::CX, &[1, 3]),
            g0(Gate::CX, &[4, 0]),
            g0(Gate::CX, &[4, 1]),
        ]
    );
    assert!(matches!(err(&format!("{PRE}qubit[2] a; qubit[3] b; cx a, b;")), ReadError::Syntax { .. }));
    assert!(matches!(err(&format!("{PRE}qubit[2] a; cx a[0], a[0];")), ReadError::Syntax { .. }));
}

#[test]
fn index_ranges_sets_and_negative_indices() {
    let ins = body("qubit[5] q; x q[1:3]; h q[{0, 4}]; z q[-1]; y q[0:2:4];");
    assert_eq!(
        ins,
        vec![
            g0(Gate::X, &[1]),
            g0(Gate::X, &[2]),
            g0(Gate::X, &[3]),
            g0(Gate::H, &[0]),
            g0(Gate::H, &[4]),
            g0(Gate::Z, &[4]),
            g0(Gate::Y, &[0]),
            g0(Gate::Y, &[2]),
            g0(Gate::Y, &[4]),
        ]
    );
    assert!(matches!(err(&format!("{PRE}qubit[2] q; x q[2];")), ReadError::Syntax { .. }));
}

#[test]
fn custom_gates_with_parameters_nest() {
    let ins = body(
        "gate a(t) x { rz(t / 2) x; }\n\
         gate b(t, u) x, y { a(t) x; cx x, y; a(u + t) y; }\n\
         qubit[2] q;\n b(pi, 1) q[1], q[0];",
    );
    assert_eq!(
        ins,
        vec![
            g(Gate::RZ, vec![cst(PI / 2.0)], vec![1]),
            g0(Gate::CX, &[1, 0]),
            g(Gate::RZ, vec![cst((1.0 + PI) / 2.0)], vec![0]),
        ]
    );
}

#[test]
fn gate_definitions_cannot_recurse() {
    let e = err(&format!("{PRE}gate g q {{ g q; }} qubit r; g r;"));
    assert!(matches!(e, ReadError::Syntax { .. }), "{e:?}");
    // Mutual recursion needs a forward reference, which is rejected the same way.
    let e = err(&format!("{PRE}gate a q {{ b q; }} gate b q {{ a q; }} qubit r; a r;"));
    assert!(matches!(e, ReadError::Syntax { .. }), "{e:?}");
}

#[test]
fn exponential_inlining_is_bounded() {
    let mut src = format!("{PRE}gate g0 q {{ x q; }}\n");
    for i in 1..40 {
        src.push_str(&format!("gate g{i} q {{ g{} q; g{} q; }}\n", i - 1, i - 1));
    }
    src.push_str("qubit r; g39 r;");
    assert!(matches!(err(&src), ReadError::TooLarge { .. }));
    // Empty gates cost work too: no unbounded loop with nothing emitted.
    let mut src = format!("{PRE}gate g0 q {{ }}\n");
    for i in 1..60 {
        src.push_str(&format!("gate g{i} q {{ g{} q; g{} q; }}\n", i - 1, i - 1));
    }
    src.push_str("qubit r; g59 r;");
    assert!(matches!(err(&src), ReadError::TooLarge { .. }));
}

// ---------------------------------------------------------------- modifiers

#[test]
fn ctrl_modifiers() {
    let ins = body(
        "qubit[4] q;\nctrl @ x q[0], q[1];\nctrl(2) @ x q[0], q[1], q[2];\nctrl @ rz(0.5) q[1], q[2];\n\
         negctrl @ x q[0], q[1];\nctrl @ negctrl @ h q[0], q[1], q[2];\nctrl @ cx q[0], q[1], q[2];\n\
         ctrl(3) @ rx(1) q[0], q[1], q[2], q[3];",
    );
    assert_eq!(
        ins,
        vec![
            g0(Gate::CX, &[0, 1]),
            g0(Gate::CCX, &[0, 1, 2]),
            g(Gate::CRZ, vec![cst(0.5)], vec![1, 2]),
            g0(Gate::Controlled { num_ctrl: 1, ctrl_state: 0, base: Box::new(Gate::X) }, &[0, 1]),
            g0(Gate::Controlled { num_ctrl: 2, ctrl_state: 0b01, base: Box::new(Gate::H) }, &[0, 1, 2]),
            g0(Gate::CCX, &[0, 1, 2]),
            g(
                Gate::Controlled { num_ctrl: 3, ctrl_state: 0b111, base: Box::new(Gate::RX) },
                vec![cst(1.0)],
                vec![0, 1, 2, 3]
            ),
        ]
    );
}

#[test]
fn inv_and_pow_modifiers() {
    let ins = body(
        "qubit[2] q;\ninv @ s q[0];\ninv @ rx(0.25) q[0];\npow(2) @ t q[1];\npow(-1) @ sx q[0];\n\
         inv @ pow(2) @ h q[0];\npow(0) @ x q[0];\ninv @ inv @ t q[0];",
    );
    assert_eq!(
        ins,
        vec![
            g0(Gate::Sdg, &[0]),
            g(Gate::RX, vec![cst(-0.25)], vec![0]),
            g0(Gate::T, &[1]),
            g0(Gate::T, &[1]),
            g0(Gate::SXdg, &[0]),
            g0(Gate::H, &[0]),
            g0(Gate::H, &[0]),
            g0(Gate::T, &[0]),
        ]
    );
    assert!(is_unsupported(&err(&format!("{PRE}qubit q; pow(0.5) @ x q;")), "non-integer"));
}

#[test]
fn modifiers_distribute_over_custom_gates() {
    let ins = body(
        "gate g(a) x, y { h x; rz(a) y; cx x, y; }\nqubit[3] q;\n\
         ctrl @ g(0.5) q[0], q[1], q[2];\ninv @ g(0.5) q[1], q[2];",
    );
    assert_eq!(
        ins,
        vec![
            g0(Gate::CH, &[0, 1]),
            g(Gate::CRZ, vec![cst(0.5)], vec![0, 2]),
            g0(Gate::CCX, &[0, 1, 2]),
            g0(Gate::CX, &[1, 2]),
            g(Gate::RZ, vec![cst(-0.5)], vec![2]),
            g0(Gate::H, &[1]),
        ]
    );
}

#[test]
fn gphase_global_and_controlled() {
    let c = read(&format!(
        "{PRE}qubit[2] q;\ngphase(pi / 4);\nctrl @ gphase(0.5) q[0];\nnegctrl @ gphase(0.5) q[1];\n\
         gate ph q {{ gphase(0.25); x q; }}\ninv @ ph q[0];"
    ));
    assert_eq!(c.global_phase, cst(PI / 4.0 - 0.25));
    assert_eq!(
        c.instructions,
        vec![
            g(Gate::P, vec![cst(0.5)], vec![0]),
            g0(Gate::X, &[1]),
            g(Gate::P, vec![cst(0.5)], vec![1]),
            g0(Gate::X, &[1]),
            g0(Gate::X, &[0]),
        ]
    );
}

#[test]
fn deep_modifier_chains_are_bounded() {
    let src = format!("{PRE}qubit q;\n{} x q;", "inv @ ".repeat(10_000));
    assert!(matches!(err(&src), ReadError::TooLarge { .. }));
    let src = format!("{PRE}qubit q;\n{} x q;", "pow(1000) @ ".repeat(5));
    assert!(matches!(err(&src), ReadError::TooLarge { .. }));
    let src = format!("{PRE}qubit[2] q;\n{} x q[0], q[1];", "ctrl @ ".repeat(3));
    assert!(matches!(err(&src), ReadError::Syntax { .. }));
}

// ---------------------------------------------------------------- measurement etc.

#[test]
fn measure_forms_reset_barrier() {
    let ins = body(
        "qubit[2] q; bit[2] c; bit b;\nc[1] = measure q[0];\nc = measure q;\nmeasure q -> c;\n\
         measure q[1] -> b;\nb = measure q[0];\nreset q;\nreset q[1];\nbarrier q;\nbarrier;\nbarrier q[1], q[0];",
    );
    assert_eq!(
        ins,
        vec![
            meas(0, 1),
            meas(0, 0),
            meas(1, 1),
            meas(0, 0),
            meas(1, 1),
            meas(1, 2),
            meas(0, 2),
            op(Operation::Reset, &[0]),
            op(Operation::Reset, &[1]),
            op(Operation::Reset, &[1]),
            op(Operation::Barrier, &[0, 1]),
            op(Operation::Barrier, &[0, 1]),
            op(Operation::Barrier, &[1, 0]),
        ]
    );
    assert!(matches!(err(&format!("{PRE}qubit[2] q; bit[3] c; c = measure q;")), ReadError::Syntax { .. }));
    assert!(is_unsupported(&err(&format!("{PRE}qubit q; measure q;")), "target"));
}

#[test]
fn delay_is_accepted() {
    let ins = body("qubit[2] q; delay[100ns] q; delay[20dt] q[0];");
    assert_eq!(ins, vec![op(Operation::Delay, &[0]), op(Operation::Delay, &[1]), op(Operation::Delay, &[0]),]);
}

// ---------------------------------------------------------------- control flow

fn if_else(bits: Vec<usize>, value: u64, t: Vec<Instruction>, f: Vec<Instruction>) -> Instruction {
    let qubits = qcloud_qsim::ir::body_qubits(&t, &f);
    op(Operation::IfElse { condition: Condition { bits, value }, true_body: t, false_body: f }, &qubits)
}

#[test]
fn if_forms() {
    let ins = body(
        "qubit[2] q; bit[2] c; bit b;\n\
         if (c[0]) { x q[0]; }\n\
         if (c == 3) { x q[0]; } else { y q[1]; }\n\
         if (!c[1]) x q[1];\n\
         if (c[1] == false) { x q[1]; }\n\
         if (c != 2) { z q[0]; } else { h q[0]; }\n\
         if (b) { x q[0]; } else if (c == \"10\") { y q[0]; }\n\
         if (1 == c[0]) { x q[0]; }",
    );
    assert_eq!(
        ins,
        vec![
            if_else(vec![0], 1, vec![g0(Gate::X, &[0])], vec![]),
            if_else(vec![0, 1], 3, vec![g0(Gate::X, &[0])], vec![g0(Gate::Y, &[1])]),
            if_else(vec![1], 0, vec![g0(Gate::X, &[1])], vec![]),
            if_else(vec![1], 0, vec![g0(Gate::X, &[1])], vec![]),
            if_else(vec![0, 1], 2, vec![g0(Gate::H, &[0])], vec![g0(Gate::Z, &[0])]),
            if_else(vec![2], 1, vec![g0(Gate::X, &[0])], vec![if_else(vec![0, 1], 2, vec![g0(Gate::Y, &[0])], vec![])]),
            if_else(vec![0], 1, vec![g0(Gate::X, &[0])], vec![]),
        ]
    );
    assert!(matches!(err(&format!("{PRE}qubit q; bit[2] c; if (c == 4) x q;")), ReadError::Syntax { .. }));
    assert!(is_unsupported(&err(&format!("{PRE}qubit q; bit[2] c; if (c[0] && c[1]) x q;")), "condition"));
    assert!(is_unsupported(&err(&format!("{PRE}qubit q; bit[2] c; if (c) x q;")), "boolean"));
}

#[test]
fn gphase_inside_if_is_dropped_not_globalized() {
    let c = read(&format!("{PRE}qubit q; bit b; if (b) {{ gphase(1); x q; }}"));
    assert_eq!(c.global_phase, cst(0.0));
    assert_eq!(c.instructions, vec![if_else(vec![0], 1, vec![g0(Gate::X, &[0])], vec![])]);
}

#[test]
fn for_loops_unroll() {
    let ins = body(
        "qubit[4] q;\nfor int i in [0:2] { h q[i]; }\nfor uint i in [3:-2:0] { rz(i * pi) q[i]; }\n\
         for i in {1, 3} x q[i];",
    );
    assert_eq!(
        ins,
        vec![
            g0(Gate::H, &[0]),
            g0(Gate::H, &[1]),
            g0(Gate::H, &[2]),
            g(Gate::RZ, vec![cst(3.0 * PI)], vec![3]),
            g(Gate::RZ, vec![cst(PI)], vec![1]),
            g0(Gate::X, &[1]),
            g0(Gate::X, &[3]),
        ]
    );
    let e = err(&format!("{PRE}qubit q; input int n; for int i in [0:n] {{ x q; }}"));
    assert!(is_unsupported(&e, "non-constant"), "{e:?}");
    let e = err(&format!("{PRE}qubit q; for int i in [0:100000000000] {{ x q; }}"));
    assert!(matches!(e, ReadError::TooLarge { .. }), "{e:?}");
    let e = err(&format!("{PRE}qubit q; for int i in [0:999999] {{ for int j in [0:999999] {{ }} }}"));
    assert!(matches!(e, ReadError::TooLarge { .. }), "{e:?}");
}

// ---------------------------------------------------------------- parameters

#[test]
fn input_parameters_become_symbols() {
    let c =
        read(&format!("{PRE}input float theta;\ninput angle[32] phi;\nqubit q;\nrx(theta) q;\nrz(2 * phi + pi) q;"));
    let sym = |s: &str| Box::new(ParamExpr::Symbol(s.into()));
    assert_eq!(
        c.instructions,
        vec![
            g(Gate::RX, vec![ParamExpr::Symbol("theta".into())], vec![0]),
            g(
                Gate::RZ,
                vec![ParamExpr::Add(Box::new(ParamExpr::Mul(Box::new(cst(2.0)), sym("phi"))), Box::new(cst(PI)))],
                vec![0]
            ),
        ]
    );
    assert_eq!(c.parameters(), vec!["phi", "theta"]);
}

#[test]
fn constant_expressions() {
    let ins = body(
        "qubit q;\nrx(π/2) q;\nrx(tau - τ) q;\nrx(euler) q;\nrx(-sin(pi/2)**2 + 2*3) q;\n\
         rx(cos(0) + sqrt(4) + exp(0) + ln(1) + tan(0) + arcsin(0) + arccos(1) + arctan(0)) q;\n\
         rx(2 ** 3 ** 2) q;\nrx(1.5e-1) q;\nrx(-(1 - 3) / 4) q;\nrx(0x10 + 0b11 + 1_000) q;",
    );
    let vals: Vec<f64> = ins
        .iter()
        .map(|i| match &i.op {
            Operation::Gate { params, .. } => params[0].as_const().unwrap(),
            _ => unreachable!(),
        })
        .collect();
    let expect = [PI / 2.0, 0.0, std::f64::consts::E, 5.0, 4.0, 512.0, 0.15, 0.5, 1019.0];
    assert_eq!(vals.len(), expect.len());
    for (v, e) in vals.iter().zip(expect) {
        assert!((v - e).abs() < 1e-12, "{v} != {e}");
    }
    // Functions of symbols stay symbolic.
    let c = read(&format!("{PRE}input float x; qubit q; rx(sin(x)) q;"));
    assert_eq!(
        c.instructions[0],
        g(Gate::RX, vec![ParamExpr::Func(Func::Sin, Box::new(ParamExpr::Symbol("x".into())))], vec![0])
    );
    assert!(matches!(err(&format!("{PRE}qubit q; rx(1/0) q;")), ReadError::Syntax { .. }));
    assert!(matches!(err(&format!("{PRE}qubit q; rx(nope) q;")), ReadError::Syntax { .. }));
}

// ---------------------------------------------------------------- unsupported

#[test]
fn unsupported_constructs_are_named() {
    let cases = [
        ("def f(qubit a) { x a; }", "def"),
        ("extern f(int) -> int;", "extern"),
        ("cal { }", "cal"),
        ("defcal x $0 { }", "defcal"),
        ("box { x q; }", "box"),
        ("stretch s;", "stretch"),
        ("while (true) { x q; }", "while"),
        ("array[int[32], 2] a;", "arrays"),
        ("int x = 1;", "classical variables"),
        ("switch (1) { }", "switch"),
        ("@annot\nx q;", "annotations"),
        ("bit c; c = 1;", "classical assignments"),
        ("input bool f;", "input bool"),
        ("x q; rx(foo(1)) q;", "foo"),
    ];
    for (src, needle) in cases {
        let e = err(&format!("{PRE}qubit q;\n{src}"));
        assert!(is_unsupported(&e, needle), "{src}: {e:?}");
    }
}

// ---------------------------------------------------------------- hostile input

#[test]
fn include_never_touches_the_filesystem() {
    // A file that exists and holds a valid gate definition is still refused: nothing is read.
    let dir = std::env::temp_dir().join(format!("qasm3-include-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let inc = dir.join("gates.inc");
    std::fs::write(&inc, "gate foo q { U(0, 0, 0) q; }\n").unwrap();
    for path in
        [inc.display().to_string(), "/etc/passwd".to_string(), "qelib1.inc".to_string(), "../stdgates.inc".to_string()]
    {
        let e = err(&format!("OPENQASM 3;\ninclude \"{path}\";\nqubit q;\nfoo q;"));
        assert!(is_unsupported(&e, "include"), "{path}: {e:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
    // And the reader's source has no file API at all.
    for file in [
        include_str!("../src/qasm3/mod.rs"),
        include_str!("../src/qasm3/lexer.rs"),
        include_str!("../src/qasm3/parser.rs"),
    ] {
        assert!(!file.contains("std::fs"));
        assert!(!file.contains("File::"));
    }
}

#[test]
fn huge_registers_are_too_large() {
    for src in [
        "qubit[100000000] q;",
        "qubit[340282366920938463463374607431768211456] q;",
        "qubit[1024] a; qubit b;",
        "bit[100000] c;",
        "qreg q[1025];",
    ] {
        let e = err(&format!("{PRE}{src}"));
        assert!(matches!(e, ReadError::TooLarge { .. }), "{src}: {e:?}");
    }
    assert!(matches!(err("qubit[0] q;"), ReadError::Syntax { .. }));
    assert!(matches!(err("qubit[-1] q;"), ReadError::Syntax { .. }));
}

#[test]
fn deep_nesting_is_a_clean_error() {
    // Run on a small stack to prove the parser does not recurse unboundedly.
    let handle = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            let n = 10_000;
            let inputs = [
                format!("{PRE}qubit q; rx({}1{}) q;", "(".repeat(n), ")".repeat(n)),
                format!("{PRE}qubit q; rx({}1) q;", "-".repeat(n)),
                format!("{PRE}qubit q; rx(1{}) q;", "+1".repeat(n)),
                format!("{PRE}qubit q; rx(2{}) q;", "**2".repeat(n)),
                format!("{PRE}qubit q; bit b; {} x q;", "if (b) ".repeat(n)),
                format!("{PRE}qubit q; {}", "{".repeat(n)),
                format!("{PRE}qubit q; rx({}1) q;", "sin(".repeat(n)),
                format!("{PRE}qubit[2] q; x q[{}0{}];", "(".repeat(n), ")".repeat(n)),
            ];
            for src in inputs {
                let e = parse(&src, &ReadLimits::default()).unwrap_err();
                assert!(
                    matches!(e, ReadError::TooLarge { .. } | ReadError::Syntax { .. } | ReadError::Unsupported { .. }),
                    "{e:?}"
                );
            }
        })
        .unwrap();
    handle.join().unwrap();
}

#[test]
fn garbage_and_truncated_input() {
    let mut inputs: Vec<String> = vec![
        String::from_utf8_lossy(&[0xff, 0xfe, 0x00, 0x01, 0x9c, 0x80, 0x7f]).into_owned(),
        "\u{0}\u{1}\u{2}".into(),
        "OPENQASM".into(),
        "OPENQASM 3.0".into(),
        format!("{PRE}qubit q; if (1) {{ x q;"),
        format!("{PRE}gate g q {{ x q;"),
        format!("{PRE}qubit q; /* unterminated"),
        format!("{PRE}include \"stdgates.inc"),
        format!("{PRE}qubit[2] q; cx q[0],"),
        format!("{PRE}qubit q; rx(1 q;"),
        format!("{PRE}qubit q; x q[;"),
        format!("{PRE}for int i in [0:1"),
        "}}}}".into(),
        ";;;".into(),
        "$".into(),
        "1e999999".into(),
    ];
    // Every prefix of a fixture is a clean result.
    let mixed = fixture("mixed.qasm3");
    for (i, _) in mixed.char_indices() {
        inputs.push(mixed[..i].to_string());
    }
    for src in inputs {
        let _ = parse(&src, &ReadLimits::default());
    }
}

#[test]
fn source_size_is_checked_first() {
    let limits = ReadLimits { max_source_bytes: 100, ..ReadLimits::default() };
    let src = format!("{PRE}qubit q;{}", " x q;".repeat(100));
    assert!(matches!(parse(&src, &limits), Err(ReadError::TooLarge { .. })));
}

#[test]
fn instruction_limit_counts_after_inlining() {
    let limits = ReadLimits { max_instructions: 10, ..ReadLimits::default() };
    let src = format!("{PRE}gate g q {{ x q; x q; x q; }} qubit q; g q; g q; g q; g q;");
    assert!(matches!(parse(&src, &limits), Err(ReadError::TooLarge { .. })));
    let src = format!("{PRE}qubit q; for int i in [0:10] {{ x q; }}");
    assert!(matches!(parse(&src, &limits), Err(ReadError::TooLarge { .. })));
}

#[test]
fn symbolic_parameter_growth_is_bounded() {
    // Each level doubles the symbolic expression: 2^40 terms if nothing stopped it.
    let mut src = format!("{PRE}input float t;\ngate a0(p) q {{ rz(p) q; }}\n");
    for i in 1..40 {
        src.push_str(&format!("gate a{i}(p) q {{ a{}(p + p) q; }}\n", i - 1));
    }
    src.push_str("qubit r; a39(t) r;");
    let e = err(&src);
    assert!(matches!(e, ReadError::TooLarge { .. }), "{e:?}");
    // With constants everything folds, so the same program is fine.
    let c = read(&src.replace("a39(t)", "a39(1)"));
    assert_eq!(c.instructions, vec![g(Gate::RZ, vec![cst(2f64.powi(39))], vec![0])]);
}

#[test]
fn symbolic_global_phase_is_bounded() {
    let src = format!("{PRE}input float t; for int i in [0:100000] {{ gphase(t); }}");
    assert!(matches!(err(&src), ReadError::TooLarge { .. }));
    let c = read(&format!("{PRE}input float t; gphase(t); gphase(0.5);"));
    assert_eq!(c.global_phase, ParamExpr::Add(Box::new(ParamExpr::Symbol("t".into())), Box::new(cst(0.5))));
}

#[test]
fn huge_integers_do_not_overflow() {
    for src in [
        "qubit q; for int i in [-9000000000000000:340282366920938463463374607431768211455] { x q; }",
        "qubit q; for int i in [340282366920938463463374607431768211455:-3:-9000000000000000] { x q; }",
        "qubit[2] q; x q[340282366920938463463374607431768211455];",
        "qubit[2] q; x q[0:340282366920938463463374607431768211455:1];",
        "qubit q; pow(340282366920938463463374607431768211455) @ x q;",
        "qubit q; ctrl(340282366920938463463374607431768211455) @ x q;",
        "qubit q; bit[2] c; if (c == 340282366920938463463374607431768211455) x q;",
        "qubit q; bit[2] c; if (c == 99999999999999999999999999999999999999999999) x q;",
        "qubit q; rx(99999999999999999999999999999999999999999999) q;",
        "qubit q; rx(1e308 * 10) q;",
    ] {
        // A clean result either way (a huge step is legal: `q[0:HUGE:1]` is just `q[0]`).
        let _ = parse(&format!("{PRE}{src}"), &ReadLimits::default());
    }
    assert!(matches!(
        err(&format!("{PRE}qubit q; for int i in [0:340282366920938463463374607431768211455] {{ x q; }}")),
        ReadError::TooLarge { .. }
    ));
}

#[test]
fn oversized_gate_definitions_are_rejected() {
    let qs: Vec<String> = (0..100).map(|i| format!("a{i}")).collect();
    let src = format!("{PRE}gate big {} {{ }}", qs.join(", "));
    assert!(matches!(err(&src), ReadError::TooLarge { .. }));
    let ps: Vec<String> = (0..2000).map(|i| format!("p{i}")).collect();
    let src = format!("{PRE}gate big({}) q {{ }}", ps.join(", "));
    assert!(matches!(err(&src), ReadError::TooLarge { .. }));
}

#[test]
fn let_aliases_as_qiskit_exports_them() {
    // Loose bits, and registers over them (Qiskit `qasm3.dumps` of overlapping registers).
    let c = read(&format!(
        "{PRE}bit _bit0;\nbit _bit1;\nbit _bit2;\nbit _bit3;\nlet cr1 = {{_bit1, _bit2}};\n\
         let cr2 = {{cr1[1], _bit3}};\nqubit[1] qr;\n_bit0 = measure qr[0];\ncr2[1] = measure qr[0];"
    ));
    assert_eq!(c.num_clbits, 4);
    assert_eq!(
        c.cregs,
        vec![
            ClassicalRegister { name: "cr1".into(), bits: vec![1, 2] },
            ClassicalRegister { name: "cr2".into(), bits: vec![2, 3] },
        ]
    );
    assert_eq!(c.instructions, vec![meas(0, 0), meas(0, 3)]);
    // Slices of a synthetic register, for both bits and qubits.
    let c = read(&format!(
        "{PRE}bit[7] _all_clbits;\nlet cr1 = _all_clbits[1:2];\nqubit[3] _all_qubits;\n\
         let qr = _all_qubits[1:2];\nlet both = qr ++ _all_qubits[0];\ncr1 = measure qr;\nh both;"
    ));
    assert_eq!(c.cregs, vec![creg("_all_clbits", 0..7), creg("cr1", 1..3)]);
    assert_eq!(c.instructions, vec![meas(1, 1), meas(2, 2), g0(Gate::H, &[1]), g0(Gate::H, &[2]), g0(Gate::H, &[0]),]);
    assert!(matches!(err(&format!("{PRE}qubit[2] q; let a = q[0] ++ q[0];")), ReadError::Syntax { .. }));
    assert!(matches!(err(&format!("{PRE}qubit[2] q; bit b; let a = q[0] ++ b;")), ReadError::Syntax { .. }));
}

#[test]
fn constant_folding_work_is_bounded() {
    // A 4096-term constant expression evaluated in a 1M-iteration loop: folded to one node each
    // time, but the evaluation work is still charged.
    let sum = vec!["1"; 4096].join("+");
    let nested = (0..12).fold("1".to_string(), |acc, _| format!("({acc}+{acc})"));
    for arg in [sum, nested] {
        let src = format!("{PRE}qubit q; for int i in [0:999999] {{ rx({arg}) q; }}");
        let start = std::time::Instant::now();
        let e = err(&src);
        assert!(matches!(e, ReadError::TooLarge { .. }), "{e:?}");
        assert!(start.elapsed().as_secs() < 60, "too slow");
    }
}

#[test]
fn comments_pragmas_and_qiskit_loop_style() {
    let ins = body(
        "// line comment\n#pragma anything goes here\nqubit[3] q; /* block\n comment */\n\
         for _ in [0:1] { x q[0]; }\nfor i in [0:2] { rx(i * pi / 2) q[i]; }",
    );
    assert_eq!(
        ins,
        vec![
            g0(Gate::X, &[0]),
            g0(Gate::X, &[0]),
            g(Gate::RX, vec![cst(0.0)], vec![0]),
            g(Gate::RX, vec![cst(PI / 2.0)], vec![1]),
            g(Gate::RX, vec![cst(PI)], vec![2]),
        ]
    );
}

#[test]
fn qiskit_export_style_program() {
    // What `qiskit.qasm3.dumps` writes for a parameterised circuit with a custom gate and
    // classical control.
    let src = "OPENQASM 3.0;\ninclude \"stdgates.inc\";\ninput float[64] θ;\n\
        gate rzz_0(_gate_p_0) _gate_q_0, _gate_q_1 {\n  cx _gate_q_0, _gate_q_1;\n  \
        rz(_gate_p_0) _gate_q_1;\n  cx _gate_q_0, _gate_q_1;\n}\nbit[2] c;\nqubit[2] q;\n\
        rzz_0(2*θ) q[0], q[1];\nc[0] = measure q[0];\nif (c[0]) {\n  x q[1];\n} else {\n  \
        rx(-pi/2) q[1];\n}\nc[1] = measure q[1];\n";
    let c = read(src);
    let two_theta = ParamExpr::Mul(Box::new(cst(2.0)), Box::new(ParamExpr::Symbol("θ".into())));
    assert_eq!(
        c.instructions,
        vec![
            g0(Gate::CX, &[0, 1]),
            g(Gate::RZ, vec![two_theta], vec![1]),
            g0(Gate::CX, &[0, 1]),
            meas(0, 0),
            if_else(vec![0], 1, vec![g0(Gate::X, &[1])], vec![g(Gate::RX, vec![cst(-PI / 2.0)], vec![1])]),
            meas(1, 1),
        ]
    );
    assert_eq!(c.parameters(), vec!["θ"]);
}
