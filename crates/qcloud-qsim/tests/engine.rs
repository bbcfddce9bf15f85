//! Engine kernels against a dense reference simulator built from full Kronecker products.

use num_complex::Complex64 as C;
use proptest::prelude::*;
use qcloud_qsim::engine::{self, gates, CompileOptions, Op, StateVector};
use qcloud_qsim::ir::{Circuit, Gate, Instruction, Operation, ParamExpr};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::f64::consts::PI;

type Rng8 = rand_chacha::ChaCha8Rng;

fn random_state(n: usize, rng: &mut Rng8) -> Vec<C> {
    let mut v: Vec<C> = (0..1usize << n).map(|_| C::new(rng.gen_range(-1.0..1.0), rng.gen_range(-1.0..1.0))).collect();
    let norm = v.iter().map(|a| a.norm_sqr()).sum::<f64>().sqrt();
    v.iter_mut().for_each(|a| *a /= norm);
    v
}

/// Kronecker product of row-major square matrices.
fn kron(a: &[C], b: &[C]) -> Vec<C> {
    let da = (a.len() as f64).sqrt() as usize;
    let db = (b.len() as f64).sqrt() as usize;
    let d = da * db;
    let mut out = vec![C::new(0.0, 0.0); d * d];
    for i in 0..da {
        for j in 0..da {
            for k in 0..db {
                for l in 0..db {
                    out[(i * db + k) * d + j * db + l] = a[i * da + j] * b[k * db + l];
                }
            }
        }
    }
    out
}

fn eye(d: usize) -> Vec<C> {
    let mut m = vec![C::new(0.0, 0.0); d * d];
    for i in 0..d {
        m[i * d + i] = C::new(1.0, 0.0);
    }
    m
}

/// Full `2^n` matrix of a 1-qubit matrix on qubit `q`: I ⊗ ... ⊗ m ⊗ ... ⊗ I (qubit n-1 leftmost).
fn full_1q(m: &[C; 4], q: usize, n: usize) -> Vec<C> {
    let mut out = vec![C::new(1.0, 0.0)];
    for k in (0..n).rev() {
        out = if k == q { kron(&out, m) } else { kron(&out, &eye(2)) };
    }
    out
}

/// Full matrix of a `k`-qubit matrix (bit `j` = `qs[j]`): permute `qs` to the lowest qubits,
/// take `I ⊗ m`, permute back. Built as a sum over matrix entries of Kronecker products of
/// |r_j><c_j| on each target qubit and identity elsewhere.
fn full_kq(m: &[C], qs: &[usize], n: usize) -> Vec<C> {
    let k = qs.len();
    let dim = 1usize << k;
    let big = 1usize << n;
    let mut out = vec![C::new(0.0, 0.0); big * big];
    for r in 0..dim {
        for c in 0..dim {
            let v = m[r * dim + c];
            if v == C::new(0.0, 0.0) {
                continue;
            }
            // Operator |r><c| on qs, identity elsewhere, as a Kronecker product.
            let mut op = vec![C::new(1.0, 0.0)];
            for q in (0..n).rev() {
                let f = match qs.iter().position(|&x| x == q) {
                    Some(j) => {
                        let mut e = vec![C::new(0.0, 0.0); 4];
                        e[((r >> j) & 1) * 2 + ((c >> j) & 1)] = C::new(1.0, 0.0);
                        e
                    }
                    None => eye(2),
                };
                op = kron(&op, &f);
            }
            for (o, x) in out.iter_mut().zip(op) {
                *o += v * x;
            }
        }
    }
    out
}

fn matvec(m: &[C], v: &[C]) -> Vec<C> {
    let d = v.len();
    (0..d).map(|r| (0..d).map(|c| m[r * d + c] * v[c]).sum()).collect()
}

fn close(a: &[C], b: &[C], tol: f64) -> bool {
    a.iter().zip(b).all(|(x, y)| (x - y).norm() < tol)
}

/// A controlled matrix with controls first: |ctrl-active><..| ⊗ m + rest ⊗ I.
fn controlled(m: &[C], k_target: usize, num_ctrl: usize, ctrl_state: u64) -> Vec<C> {
    let dt = 1usize << k_target;
    let nq = num_ctrl + k_target;
    let d = 1usize << nq;
    let mut out = vec![C::new(0.0, 0.0); d * d];
    let cmask = (1usize << num_ctrl) - 1;
    for r in 0..d {
        for c in 0..d {
            if r & cmask != c & cmask {
                continue;
            }
            let (tr, tc) = (r >> num_ctrl, c >> num_ctrl);
            out[r * d + c] = if (r & cmask) as u64 == ctrl_state {
                m[tr * dt + tc]
            } else if tr == tc {
                C::new(1.0, 0.0)
            } else {
                C::new(0.0, 0.0)
            };
        }
    }
    out
}

/// Reference matrix of every gate, built independently of the engine's lowering.
fn reference(gate: &Gate, p: &[f64]) -> Vec<C> {
    use Gate::*;
    let m1 = |g: Gate, p: &[f64]| gates::matrix_1q(&g, p).unwrap().to_vec();
    match gate {
        CX => controlled(&m1(X, p), 1, 1, 1),
        CY => controlled(&m1(Y, p), 1, 1, 1),
        CZ => controlled(&m1(Z, p), 1, 1, 1),
        CH => controlled(&m1(H, p), 1, 1, 1),
        CS => controlled(&m1(S, p), 1, 1, 1),
        CSdg => controlled(&m1(Sdg, p), 1, 1, 1),
        CSX => controlled(&m1(SX, p), 1, 1, 1),
        CP => controlled(&m1(P, p), 1, 1, 1),
        CRX => controlled(&m1(RX, p), 1, 1, 1),
        CRY => controlled(&m1(RY, p), 1, 1, 1),
        CRZ => controlled(&m1(RZ, p), 1, 1, 1),
        CU3 => controlled(&m1(U, p), 1, 1, 1),
        CU => {
            let g = C::from_polar(1.0, p[3]);
            let m: Vec<C> = m1(U, p).into_iter().map(|x| x * g).collect();
            controlled(&m, 1, 1, 1)
        }
        CCX => controlled(&m1(X, p), 1, 2, 3),
        CCZ => controlled(&m1(Z, p), 1, 2, 3),
        C3X => controlled(&m1(X, p), 1, 3, 7),
        C3SX => controlled(&m1(SX, p), 1, 3, 7),
        CSwap => controlled(&gates::matrix_2q(&Swap, p).unwrap(), 2, 1, 1),
        g if g.num_qubits() == Some(1) => m1(g.clone(), p),
        g => gates::matrix_2q(g, p).unwrap().to_vec(),
    }
}

fn all_gates() -> Vec<Gate> {
    use Gate::*;
    vec![
        I, X, Y, Z, H, S, Sdg, T, Tdg, SX, SXdg, RX, RY, RZ, P, U, U2, R, CX, CY, CZ, CH, CS, CSdg, CSX, CP, CRX, CRY,
        CRZ, CU, CU3, Swap, ISwap, ECR, DCX, RXX, RYY, RZZ, RZX, XXMinusYY, XXPlusYY, CCX, CCZ, CSwap, C3X, C3SX,
    ]
}

fn lower(gate: &Gate, p: &[f64], qs: &[usize]) -> Vec<Op> {
    let mut ops = Vec::new();
    gates::lower(gate, p, qs, &mut ops).unwrap();
    ops
}

#[test]
fn every_gate_matches_dense_reference() {
    let mut rng = Rng8::seed_from_u64(7);
    let n = 5;
    for gate in all_gates() {
        for trial in 0..6 {
            let k = gate.num_qubits().unwrap();
            let p: Vec<f64> = (0..gate.num_params()).map(|_| rng.gen_range(-PI..PI)).collect();
            let mut qs: Vec<usize> = Vec::new();
            while qs.len() < k {
                let q = rng.gen_range(0..n);
                if !qs.contains(&q) {
                    qs.push(q);
                }
            }
            let psi = random_state(n, &mut rng);
            let full = full_kq(&reference(&gate, &p), &qs, n);
            let want = matvec(&full, &psi);
            let mut got = psi.clone();
            for op in lower(&gate, &p, &qs) {
                engine::apply_op_unitary(&mut got, &op, trial % 2 == 0);
            }
            assert!(close(&got, &want, 1e-12), "{gate:?} on {qs:?} params {p:?}");
            // The inverse undoes the gate.
            for op in lower(&Gate::Inverse(Box::new(gate.clone())), &p, &qs) {
                engine::apply_op_unitary(&mut got, &op, false);
            }
            assert!(close(&got, &psi, 1e-12), "inverse of {gate:?}");
        }
    }
}

#[test]
fn one_qubit_embedding_agrees_with_kronecker() {
    let mut rng = Rng8::seed_from_u64(3);
    let m = gates::matrix_1q(&Gate::U, &[0.3, 0.7, -1.1]).unwrap();
    for q in 0..4 {
        let psi = random_state(4, &mut rng);
        assert!(close(&matvec(&full_1q(&m, q, 4), &psi), &matvec(&full_kq(&m, &[q], 4), &psi), 1e-13));
    }
}

#[test]
fn gate_identities() {
    let m = |g: Gate, p: &[f64]| gates::dense_matrix(&g, p, g.num_qubits().unwrap()).unwrap();
    let mul = |a: &[C], b: &[C]| -> Vec<C> {
        let d = (a.len() as f64).sqrt() as usize;
        let mut o = vec![C::new(0.0, 0.0); d * d];
        for i in 0..d {
            for j in 0..d {
                o[i * d + j] = (0..d).map(|k| a[i * d + k] * b[k * d + j]).sum();
            }
        }
        o
    };
    assert!(close(&mul(&m(Gate::SX, &[]), &m(Gate::SX, &[])), &m(Gate::X, &[]), 1e-14));
    assert!(close(&mul(&m(Gate::T, &[]), &m(Gate::T, &[])), &m(Gate::S, &[]), 1e-14));
    let hxh = mul(&m(Gate::H, &[]), &mul(&m(Gate::X, &[]), &m(Gate::H, &[])));
    assert!(close(&hxh, &m(Gate::Z, &[]), 1e-14));
    // RX(t) = U(t, -pi/2, pi/2); RY(t) = U(t, 0, 0); U2(a, b) = U(pi/2, a, b).
    assert!(close(&m(Gate::RX, &[0.4]), &m(Gate::U, &[0.4, -PI / 2.0, PI / 2.0]), 1e-14));
    assert!(close(&m(Gate::RY, &[0.4]), &m(Gate::U, &[0.4, 0.0, 0.0]), 1e-14));
    assert!(close(&m(Gate::U2, &[0.2, 0.5]), &m(Gate::U, &[PI / 2.0, 0.2, 0.5]), 1e-14));
    // ECR = RZX(pi/4) then X on qubit 0 then RZX(-pi/4).
    let x0 = full_kq(&m(Gate::X, &[]), &[0], 2);
    let ecr = mul(&m(Gate::RZX, &[-PI / 4.0]), &mul(&x0, &m(Gate::RZX, &[PI / 4.0])));
    assert!(close(&ecr, &m(Gate::ECR, &[]), 1e-14));
    // DCX = CX(0,1) then CX(1,0).
    let cx01 = m(Gate::CX, &[]);
    let cx10 = full_kq(&cx01, &[1, 0], 2);
    assert!(close(&mul(&cx10, &cx01), &m(Gate::DCX, &[]), 1e-14));
    // RCCX and RC3X are unitary and equal CCX / C3X up to relative phases on |11x>.
    for (g, k) in [(Gate::RCCX, 3usize), (Gate::RC3X, 4)] {
        let u = m(g, &[]);
        let d = 1 << k;
        for r in 0..d {
            for c in 0..d {
                let x: C = (0..d).map(|j| u[j * d + r].conj() * u[j * d + c]).sum();
                let want = if r == c { 1.0 } else { 0.0 };
                assert!((x - C::new(want, 0.0)).norm() < 1e-12);
            }
        }
    }
}

#[test]
fn parallel_kernels_match_serial() {
    // 15 qubits: above the parallel block size, with chunks above and below it.
    let mut rng = Rng8::seed_from_u64(11);
    let n = 15;
    let psi = random_state(n, &mut rng);
    for gate in all_gates() {
        let k = gate.num_qubits().unwrap();
        let p: Vec<f64> = (0..gate.num_params()).map(|_| rng.gen_range(-PI..PI)).collect();
        for qs in
            [(0..k).collect::<Vec<_>>(), (0..k).map(|i| n - 1 - i).collect(), (0..k).map(|i| (i * 4 + 3) % n).collect()]
        {
            let ops = lower(&gate, &p, &qs);
            let mut a = psi.clone();
            let mut b = psi.clone();
            for op in &ops {
                engine::apply_op_unitary(&mut a, op, true);
                engine::apply_op_unitary(&mut b, op, false);
            }
            assert!(close(&a, &b, 1e-13), "{gate:?} on {qs:?}");
        }
    }
}

fn push(c: &mut Circuit, gate: Gate, params: &[f64], qubits: &[usize]) {
    c.instructions.push(Instruction {
        op: Operation::Gate { gate, params: params.iter().map(|&x| ParamExpr::Const(x)).collect() },
        qubits: qubits.to_vec(),
        condition: None,
    });
}

fn run(c: &Circuit, fuse: bool) -> Vec<C> {
    let prog = engine::compile(c, &HashMap::new(), CompileOptions { fuse, drop_measurements: true }).unwrap();
    let mut sv = StateVector::zero(c.num_qubits);
    sv.apply_unitaries(&prog.ops);
    sv.amps
}

#[test]
fn ghz_state() {
    for n in [2, 5, 16] {
        let mut c = Circuit::new(n, 0);
        push(&mut c, Gate::H, &[], &[0]);
        for q in 1..n {
            push(&mut c, Gate::CX, &[], &[q - 1, q]);
        }
        let amps = run(&c, true);
        let h = std::f64::consts::FRAC_1_SQRT_2;
        for (i, a) in amps.iter().enumerate() {
            let want = if i == 0 || i == (1 << n) - 1 { h } else { 0.0 };
            assert!((a - C::new(want, 0.0)).norm() < 1e-12, "n={n} i={i}");
        }
    }
}

#[test]
fn qft_of_basis_states() {
    let n = 5;
    let dim = 1usize << n;
    for x in [0usize, 1, 6, 19, 31] {
        let mut c = Circuit::new(n, 0);
        for q in 0..n {
            if x >> q & 1 == 1 {
                push(&mut c, Gate::X, &[], &[q]);
            }
        }
        // Qiskit's QFT: QFT|x> = sum_k exp(2 pi i x k / N) |k> / sqrt(N).
        for j in (0..n).rev() {
            push(&mut c, Gate::H, &[], &[j]);
            for k in (0..j).rev() {
                push(&mut c, Gate::CP, &[PI / (1u64 << (j - k)) as f64], &[j, k]);
            }
        }
        for k in 0..n / 2 {
            push(&mut c, Gate::Swap, &[], &[k, n - 1 - k]);
        }
        let amps = run(&c, true);
        for (k, a) in amps.iter().enumerate() {
            let want = C::from_polar(1.0 / (dim as f64).sqrt(), 2.0 * PI * (x * k) as f64 / dim as f64);
            assert!((a - want).norm() < 1e-12, "x={x} k={k}: {a} vs {want}");
        }
    }
}

#[test]
fn sampling_is_seeded_and_matches_probabilities() {
    let mut c = Circuit::new(2, 2);
    push(&mut c, Gate::RY, &[2.0 * (0.3f64).sqrt().asin()], &[0]);
    for q in 0..2 {
        c.instructions.push(Instruction { op: Operation::Measure { clbit: q }, qubits: vec![q], condition: None });
    }
    let prog = engine::compile(&c, &HashMap::new(), CompileOptions::default()).unwrap();
    let mut r1 = Rng8::seed_from_u64(5);
    let mut r2 = Rng8::seed_from_u64(5);
    let a = engine::run_counts(&prog, 100_000, &mut r1);
    let mut b = engine::run_counts(&prog, 100_000, &mut r2);
    let mut a2 = a.clone();
    a2.sort();
    b.sort();
    assert_eq!(a2, b);
    let ones: u64 = a.iter().filter(|(bits, _)| bits[0]).map(|(_, n)| n).sum();
    assert!((ones as f64 / 100_000.0 - 0.3).abs() < 0.01, "{ones}");
}

fn arb_circuit() -> impl Strategy<Value = Circuit> {
    let one = prop_oneof![
        Just(Gate::H),
        Just(Gate::X),
        Just(Gate::S),
        Just(Gate::T),
        Just(Gate::SX),
        Just(Gate::RX),
        Just(Gate::RZ),
        Just(Gate::U)
    ];
    let two = prop_oneof![Just(Gate::CX), Just(Gate::CP), Just(Gate::RZZ), Just(Gate::Swap)];
    let op = prop_oneof![
        (one, 0usize..4, proptest::collection::vec(-3.0f64..3.0, 3)).prop_map(|(g, q, p)| (g, vec![q], p)),
        (two, 0usize..4, 1usize..4, proptest::collection::vec(-3.0f64..3.0, 3)).prop_map(|(g, a, d, p)| (
            g,
            vec![a, (a + d) % 4],
            p
        )),
    ];
    proptest::collection::vec(op, 0..40).prop_map(|ops| {
        let mut c = Circuit::new(4, 0);
        for (g, qs, p) in ops {
            let k = g.num_params();
            push(&mut c, g, &p[..k], &qs);
        }
        c
    })
}

proptest! {
    #[test]
    fn state_stays_normalised_and_fusion_is_exact(c in arb_circuit()) {
        let fused = run(&c, true);
        let plain = run(&c, false);
        let norm: f64 = fused.iter().map(|a| a.norm_sqr()).sum();
        prop_assert!((norm - 1.0).abs() < 1e-12);
        prop_assert!(close(&fused, &plain, 1e-12));
    }
}

#[test]
fn cache_blocked_execution_matches_gate_by_gate() {
    // 17 qubits: three qubits above the block size; every gate kind, on low and high qubits.
    let mut rng = Rng8::seed_from_u64(21);
    let n = 17;
    let mut c = Circuit::new(n, 0);
    for q in 0..n {
        push(&mut c, Gate::H, &[], &[q]);
    }
    for _ in 0..300 {
        let gs = all_gates();
        let g = gs[rng.gen_range(0..gs.len())].clone();
        let k = g.num_qubits().unwrap();
        let p: Vec<f64> = (0..g.num_params()).map(|_| rng.gen_range(-PI..PI)).collect();
        let mut qs: Vec<usize> = Vec::new();
        while qs.len() < k {
            // Bias towards the high qubits.
            let q = if rng.gen_bool(0.5) { rng.gen_range(12..n) } else { rng.gen_range(0..n) };
            if !qs.contains(&q) {
                qs.push(q);
            }
        }
        push(&mut c, g, &p, &qs);
    }
    let prog = engine::compile(&c, &HashMap::new(), CompileOptions::default()).unwrap();
    let mut a = StateVector::zero(n);
    a.apply_unitaries(&prog.ops);
    let mut b = StateVector::zero(n);
    b.apply_unitaries_unblocked(&prog.ops);
    assert!(close(&a.amps, &b.amps, 1e-11));
}
