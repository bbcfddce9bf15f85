//! QPY reader tests: the shared fixtures written by Qiskit 2.6 (QPY v18) and the extra fixtures
//! of `tests/fixtures/make_qpy.py` (QPY v13, v15, v17, v18), checked against IR written by hand
//! from the `.qasm2` / `.qasm3` files and the generating script.

use std::f64::consts::PI;

use proptest::prelude::*;
use qcloud_qsim::ir::Func as F;
use qcloud_qsim::qpy;
use qcloud_qsim::{
    Circuit, ClassicalRegister, Condition, Gate, Instruction, Operation, ParamExpr, ReadError, ReadLimits,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn read(name: &str) -> Circuit {
    let mut cs = qpy::parse(&fixture(name), &ReadLimits::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(cs.len(), 1, "{name}");
    cs.remove(0)
}

const ALL: &[&str] = &[
    "bell.qpy",
    "custom.qpy",
    "mixed.qpy",
    "qft4.qpy",
    "params_v13.qpy",
    "params_v17.qpy",
    "params_v18.qpy",
    "control_flow_v13.qpy",
    "control_flow_v17.qpy",
    "control_flow_v18.qpy",
    "custom_param_v13.qpy",
    "custom_param_v17.qpy",
    "custom_param_v18.qpy",
    "transpiled_v13.qpy",
    "transpiled_v17.qpy",
    "transpiled_v18.qpy",
    "two_v15.qpy",
    "two_v17.qpy",
];

// ---- IR builders ------------------------------------------------------------------------------

fn g(gate: Gate, qubits: &[usize]) -> Instruction {
    gp(gate, vec![], qubits)
}

fn gp(gate: Gate, params: Vec<ParamExpr>, qubits: &[usize]) -> Instruction {
    Instruction { op: Operation::Gate { gate, params }, qubits: qubits.to_vec(), condition: None }
}

fn op(op: Operation, qubits: &[usize]) -> Instruction {
    Instruction { op, qubits: qubits.to_vec(), condition: None }
}

fn measure(q: usize, c: usize) -> Instruction {
    op(Operation::Measure { clbit: c }, &[q])
}

fn if_else(bits: &[usize], value: u64, t: Vec<Instruction>, f: Vec<Instruction>, qubits: &[usize]) -> Instruction {
    op(Operation::IfElse { condition: Condition { bits: bits.to_vec(), value }, true_body: t, false_body: f }, qubits)
}

fn k(v: f64) -> ParamExpr {
    ParamExpr::Const(v)
}
fn s(name: &str) -> ParamExpr {
    ParamExpr::Symbol(name.into())
}
fn bx(e: ParamExpr) -> Box<ParamExpr> {
    Box::new(e)
}

fn creg(name: &str, bits: &[usize]) -> ClassicalRegister {
    ClassicalRegister { name: name.into(), bits: bits.to_vec() }
}

fn circuit(
    name: &str,
    nq: usize,
    nc: usize,
    cregs: Vec<ClassicalRegister>,
    instructions: Vec<Instruction>,
    global_phase: ParamExpr,
) -> Circuit {
    Circuit { name: Some(name.into()), num_qubits: nq, num_clbits: nc, cregs, instructions, global_phase }
}

// ---- Shared fixtures (Qiskit 2.6.2, QPY v18) ---------------------------------------------------

#[test]
fn shared_fixtures_are_qpy_v18() {
    for f in ["bell.qpy", "custom.qpy", "mixed.qpy", "qft4.qpy"] {
        let b = fixture(f);
        assert_eq!(&b[..6], b"QISKIT");
        assert_eq!(b[6], 18, "{f}");
    }
}

#[test]
fn bell() {
    let expected = circuit(
        "circuit-47",
        2,
        2,
        vec![creg("c", &[0, 1])],
        vec![g(Gate::H, &[0]), g(Gate::CX, &[0, 1]), measure(0, 0), measure(1, 1)],
        k(0.0),
    );
    assert_eq!(read("bell.qpy"), expected);
}

#[test]
fn custom_gate_is_inlined() {
    // gate mygate q0,q1 { h q0; crx(0.5) q0,q1; }
    let expected = circuit(
        "circuit-48",
        2,
        2,
        vec![creg("meas", &[0, 1])],
        vec![
            g(Gate::H, &[0]),
            gp(Gate::CRX, vec![k(0.5)], &[0, 1]),
            op(Operation::Barrier, &[0, 1]),
            measure(0, 0),
            measure(1, 1),
        ],
        k(0.0),
    );
    assert_eq!(read("custom.qpy"), expected);
}

#[test]
fn mixed() {
    let expected = circuit(
        "circuit-41",
        3,
        3,
        vec![creg("c", &[0, 1, 2])],
        vec![
            g(Gate::H, &[0]),
            g(Gate::CX, &[0, 1]),
            gp(Gate::RZ, vec![k(0.3)], &[2]),
            g(Gate::SX, &[1]),
            g(Gate::CCX, &[0, 1, 2]),
            gp(Gate::CP, vec![k(0.25)], &[0, 2]),
            gp(Gate::U, vec![k(0.1), k(0.2), k(0.3)], &[1]),
            op(Operation::Barrier, &[0, 1, 2]),
            op(Operation::Reset, &[2]),
            g(Gate::Swap, &[0, 2]),
            measure(0, 0),
            measure(1, 1),
            measure(2, 2),
            if_else(&[0], 1, vec![g(Gate::X, &[1])], vec![], &[1]),
        ],
        k(0.0),
    );
    assert_eq!(read("mixed.qpy"), expected);
}

#[test]
fn qft4() {
    let cp = |a: f64, c: usize, t: usize| gp(Gate::CP, vec![k(a)], &[c, t]);
    let expected = circuit(
        "QFT",
        4,
        4,
        vec![creg("meas", &[0, 1, 2, 3])],
        vec![
            g(Gate::H, &[3]),
            cp(PI / 2.0, 3, 2),
            g(Gate::H, &[2]),
            cp(PI / 4.0, 3, 1),
            cp(PI / 2.0, 2, 1),
            g(Gate::H, &[1]),
            cp(PI / 8.0, 3, 0),
            cp(PI / 4.0, 2, 0),
            cp(PI / 2.0, 1, 0),
            g(Gate::H, &[0]),
            g(Gate::Swap, &[0, 3]),
            g(Gate::Swap, &[1, 2]),
            op(Operation::Barrier, &[0, 1, 2, 3]),
            measure(0, 0),
            measure(1, 1),
            measure(2, 2),
            measure(3, 3),
        ],
        k(0.0),
    );
    assert_eq!(read("qft4.qpy"), expected);
}

// ---- Generated fixtures (make_qpy.py) ----------------------------------------------------------

fn without_name(mut c: Circuit) -> Circuit {
    c.name = None;
    c
}

fn params_ir() -> Circuit {
    use ParamExpr::*;
    let mut c = circuit(
        "",
        2,
        2,
        // Register order as declared: b before a.
        vec![creg("b", &[0]), creg("a", &[1])],
        vec![
            gp(Gate::RX, vec![s("theta")], &[0]),
            // 2*theta + phi
            gp(Gate::RY, vec![Add(bx(s("phi")), bx(Mul(bx(k(2.0)), bx(s("theta")))))], &[1]),
            gp(Gate::RZ, vec![s("v[0]")], &[0]),
            // v[1]*v[2] - 1
            gp(Gate::P, vec![Add(bx(k(-1.0)), bx(Mul(bx(s("v[1]")), bx(s("v[2]")))))], &[1]),
            gp(Gate::U, vec![s("theta"), Div(bx(s("phi")), bx(k(2.0))), Func(F::Sin, bx(s("theta")))], &[0]),
            gp(Gate::RZZ, vec![k(1.25)], &[0, 1]),
            g(Gate::CX, &[1, 0]),
            measure(0, 1),
            measure(1, 0),
        ],
        Div(bx(s("theta")), bx(k(2.0))),
    );
    c.name = None;
    c
}

fn control_flow_ir() -> Circuit {
    let mut c = circuit(
        "",
        3,
        3,
        vec![creg("cr", &[0, 1]), creg("flag", &[2])],
        vec![
            g(Gate::H, &[0]),
            measure(0, 0),
            measure(1, 1),
            // if (cr == 2) { x q[2]; } else { z q[2]; if (flag[0]) { y q[1]; } }
            if_else(
                &[0, 1],
                2,
                vec![g(Gate::X, &[2])],
                vec![g(Gate::Z, &[2]), if_else(&[2], 1, vec![g(Gate::Y, &[1])], vec![], &[1])],
                &[2, 1],
            ),
            // if (!cr[0]) { sx q[0]; }
            if_else(&[0], 0, vec![g(Gate::SX, &[0])], vec![], &[0]),
            // if (cr == 3) { reset q[1]; }
            if_else(&[0, 1], 3, vec![op(Operation::Reset, &[1])], vec![], &[1]),
            op(Operation::Delay, &[0]),
            measure(2, 2),
        ],
        k(0.0),
    );
    c.name = None;
    c
}

fn custom_param_ir() -> Circuit {
    let mut c = circuit(
        "",
        3,
        3,
        vec![creg("c", &[0, 1, 2])],
        vec![
            // outer(t) on [2, 1, 0] = inner on [2, 1] (h; cx) then rz(t) on 0
            g(Gate::H, &[2]),
            g(Gate::CX, &[2, 1]),
            gp(Gate::RZ, vec![s("t")], &[0]),
            // XGate().control(1, ctrl_state=0)
            g(Gate::Controlled { num_ctrl: 1, ctrl_state: 0, base: Box::new(Gate::X) }, &[0, 1]),
            // MCXGate(2, ctrl_state=1)
            g(Gate::Controlled { num_ctrl: 2, ctrl_state: 1, base: Box::new(Gate::X) }, &[0, 1, 2]),
            g(Gate::CCX, &[0, 1, 2]),
            measure(0, 0),
            measure(1, 1),
            measure(2, 2),
        ],
        // The definition's global phase is carried to the circuit.
        k(0.5),
    );
    c.name = None;
    c
}

#[test]
fn parameters_vectors_and_expressions() {
    for v in [13, 17, 18] {
        let c = without_name(read(&format!("params_v{v}.qpy")));
        assert_eq!(c, params_ir(), "v{v}");
        assert_eq!(c.parameters(), vec!["phi", "theta", "v[0]", "v[1]", "v[2]"], "v{v}");
    }
}

#[test]
fn parameter_values_evaluate() {
    let c = read("params_v17.qpy");
    let vals = std::collections::HashMap::from([
        ("theta".to_string(), 0.5),
        ("phi".to_string(), 0.25),
        ("v[1]".to_string(), 3.0),
        ("v[2]".to_string(), 2.0),
    ]);
    let Operation::Gate { params, .. } = &c.instructions[1].op else { panic!() };
    assert_eq!(params[0].eval(&vals), Ok(1.25));
    let Operation::Gate { params, .. } = &c.instructions[3].op else { panic!() };
    assert_eq!(params[0].eval(&vals), Ok(5.0));
    assert_eq!(c.global_phase.eval(&vals), Ok(0.25));
}

#[test]
fn control_flow() {
    for v in [13, 17, 18] {
        let c = without_name(read(&format!("control_flow_v{v}.qpy")));
        assert_eq!(c, control_flow_ir(), "v{v}");
    }
}

#[test]
fn custom_definitions_open_controls_and_mcx() {
    for v in [13, 17, 18] {
        let c = without_name(read(&format!("custom_param_v{v}.qpy")));
        assert_eq!(c, custom_param_ir(), "v{v}");
    }
}

#[test]
fn transpiled_circuit_with_layout() {
    let c18 = read("transpiled_v18.qpy");
    for v in [13, 17] {
        let c = read(&format!("transpiled_v{v}.qpy"));
        assert_eq!(without_name(c), without_name(c18.clone()), "v{v}");
    }
    assert_eq!(c18.num_qubits, 5);
    assert_eq!(c18.num_clbits, 3);
    assert_eq!(c18.cregs, vec![creg("meas", &[0, 1, 2])]);
    assert!((c18.global_phase.as_const().unwrap() - PI / 4.0).abs() < 1e-12);
    let mut measures = Vec::new();
    for i in &c18.instructions {
        match &i.op {
            Operation::Gate { gate, params } => {
                assert!(matches!(gate, Gate::RZ | Gate::SX | Gate::X | Gate::ECR), "{gate:?}");
                assert!(params.iter().all(|p| p.as_const().is_some()));
            }
            Operation::Measure { clbit } => measures.push((i.qubits[0], *clbit)),
            // measure_all's barrier over the virtual qubits, now on physical 3, 1, 0.
            Operation::Barrier => assert_eq!(i.qubits, vec![3, 1, 0]),
            other => panic!("unexpected {other:?}"),
        }
    }
    // After routing, virtual qubits 0, 1, 2 end on physical 3, 1, 0 (as Qiskit draws it).
    assert_eq!(measures, vec![(3, 0), (1, 1), (0, 2)]);
    // Qiskit's count_ops(): rz 28, sx 17, ecr 8, measure 3, barrier 1.
    let count = |f: &dyn Fn(&Gate) -> bool| {
        c18.instructions.iter().filter(|i| matches!(&i.op, Operation::Gate { gate, .. } if f(gate))).count()
    };
    assert_eq!(count(&|g| *g == Gate::RZ), 28);
    assert_eq!(count(&|g| *g == Gate::SX), 17);
    assert_eq!(count(&|g| *g == Gate::ECR), 8);
    assert_eq!(c18.instructions.len(), 57);
}

#[test]
fn several_circuits_in_one_file() {
    for v in [15, 17] {
        let cs = qpy::parse(&fixture(&format!("two_v{v}.qpy")), &ReadLimits::default()).unwrap();
        assert_eq!(cs.len(), 2);
        let mut cs = cs.into_iter().map(without_name);
        assert_eq!(cs.next().unwrap(), params_ir(), "v{v}");
        assert_eq!(cs.next().unwrap(), control_flow_ir(), "v{v}");
    }
}

// ---- Errors and limits -------------------------------------------------------------------------

#[test]
fn every_prefix_is_an_error() {
    for f in ALL {
        let b = fixture(f);
        for n in 0..b.len() {
            assert!(qpy::parse(&b[..n], &ReadLimits::default()).is_err(), "{f}: prefix of {n} bytes");
        }
    }
}

#[test]
fn limits_are_enforced() {
    let b = fixture("qft4.qpy");
    let small = ReadLimits { max_qubits: 3, ..ReadLimits::default() };
    assert!(matches!(qpy::parse(&b, &small), Err(ReadError::TooLarge { .. })));
    let few = ReadLimits { max_instructions: 5, ..ReadLimits::default() };
    assert!(matches!(qpy::parse(&b, &few), Err(ReadError::TooLarge { .. })));
    let tiny = ReadLimits { max_source_bytes: 100, ..ReadLimits::default() };
    assert!(matches!(qpy::parse(&b, &tiny), Err(ReadError::TooLarge { .. })));
    // custom_param nests two definitions: depth 2.
    let b = fixture("custom_param_v18.qpy");
    let shallow = ReadLimits { max_depth: 1, ..ReadLimits::default() };
    assert!(matches!(qpy::parse(&b, &shallow), Err(ReadError::TooLarge { .. })));
    let ok = ReadLimits { max_depth: 2, ..ReadLimits::default() };
    assert!(qpy::parse(&b, &ok).is_ok());
}

#[test]
fn wrong_magic_and_versions() {
    let mut b = fixture("bell.qpy");
    assert!(matches!(qpy::parse(b"QISKIX", &ReadLimits::default()), Err(ReadError::Syntax { .. })));
    b[6] = 12;
    assert!(matches!(qpy::parse(&b, &ReadLimits::default()), Err(ReadError::Unsupported { .. })));
    b[6] = 19;
    assert!(matches!(qpy::parse(&b, &ReadLimits::default()), Err(ReadError::Unsupported { .. })));
}

#[test]
fn unknown_gate_is_unsupported_and_named() {
    // Rename "HGate" to "QGate" in bell.qpy.
    let mut b = fixture("bell.qpy");
    let at = b.windows(5).position(|w| w == b"HGate").unwrap();
    b[at] = b'Q';
    match qpy::parse(&b, &ReadLimits::default()) {
        Err(ReadError::Unsupported { message, .. }) => assert!(message.contains("QGate")),
        other => panic!("{other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn byte_flips_never_panic(
        file in 0..ALL.len(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut b = fixture(ALL[file]);
        for (i, v) in flips {
            let i = i.index(b.len());
            b[i] = v;
        }
        let _ = qpy::parse(&b, &ReadLimits::default());
    }

    #[test]
    fn random_bytes_after_header_never_panic(
        version in 13u8..=18,
        tail in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut b = b"QISKIT".to_vec();
        b.push(version);
        b.extend_from_slice(&[2, 6, 2, 0, 0, 0, 0, 0, 0, 0, 1, b'p', b'q']);
        b.extend_from_slice(&tail);
        let _ = qpy::parse(&b, &ReadLimits::default());
    }
}
