//! Unit tests of the QPY reader on hand-built files (the fixtures written by Qiskit are tested
//! in `tests/qpy.rs`).

use super::*;
use crate::ir::{Func, Operation, ParamExpr};

/// A minimal QPY v18 file: one circuit on `nq` qubits with the given instruction records
/// (already encoded) and layout bytes.
fn file(nq: u32, instructions: &[Vec<u8>], layout: &[u8]) -> Vec<u8> {
    let mut b = b"QISKIT".to_vec();
    b.push(18);
    b.extend_from_slice(&[2, 6, 2]);
    b.extend_from_slice(&1u64.to_be_bytes());
    b.extend_from_slice(b"pq");
    b.extend_from_slice(&28u64.to_be_bytes());
    b.extend_from_slice(&0u16.to_be_bytes()); // name
    b.push(b'f');
    b.extend_from_slice(&8u16.to_be_bytes());
    b.extend_from_slice(&nq.to_be_bytes());
    b.extend_from_slice(&0u32.to_be_bytes()); // clbits
    b.extend_from_slice(&0u64.to_be_bytes()); // metadata
    b.extend_from_slice(&0u32.to_be_bytes()); // registers
    b.extend_from_slice(&(instructions.len() as u64).to_be_bytes());
    b.extend_from_slice(&0u32.to_be_bytes()); // vars
    b.extend_from_slice(&0f64.to_be_bytes()); // global phase
    b.extend_from_slice(&0u32.to_be_bytes()); // annotations
    b.extend_from_slice(&0u16.to_be_bytes()); // parameter vectors
    b.extend_from_slice(&0u64.to_be_bytes()); // custom definitions
    for i in instructions {
        b.extend_from_slice(i);
    }
    b.extend_from_slice(layout);
    b
}

fn no_layout() -> Vec<u8> {
    let mut l = vec![0u8];
    for v in [-1i32, -1, -1] {
        l.extend_from_slice(&v.to_be_bytes());
    }
    l.extend_from_slice(&0u32.to_be_bytes());
    l.extend_from_slice(&0i32.to_be_bytes());
    l
}

/// One-qubit gate `name` on qubit 0 with one parameter of type `key`.
fn gate(name: &str, key: u8, param: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(name.len() as u16).to_be_bytes());
    b.extend_from_slice(&0u16.to_be_bytes());
    b.extend_from_slice(&1u16.to_be_bytes());
    b.extend_from_slice(&1u32.to_be_bytes());
    b.extend_from_slice(&0u32.to_be_bytes());
    b.push(0);
    b.extend_from_slice(&0u16.to_be_bytes());
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(name.as_bytes());
    b.push(b'q');
    b.extend_from_slice(&0u32.to_be_bytes());
    b.push(key);
    b.extend_from_slice(&(param.len() as u64).to_be_bytes());
    b.extend_from_slice(param);
    b
}

fn elem(op: u8, lt: u8, l: [u8; 16], rt: u8, r: [u8; 16]) -> Vec<u8> {
    let mut b = vec![op, lt];
    b.extend_from_slice(&l);
    b.push(rt);
    b.extend_from_slice(&r);
    b
}

fn float(v: f64) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[8..].copy_from_slice(&v.to_be_bytes());
    a
}

/// PARAMETER_EXPR with one symbol `x` (uuid 7) and the given replay.
fn expr(ops: &[Vec<u8>]) -> Vec<u8> {
    let data: Vec<u8> = ops.concat();
    let mut b = Vec::new();
    b.extend_from_slice(&1u64.to_be_bytes());
    b.extend_from_slice(&(data.len() as u64).to_be_bytes());
    b.extend_from_slice(&data);
    b.extend_from_slice(b"pp");
    b.extend_from_slice(&0u64.to_be_bytes());
    b.extend_from_slice(&1u16.to_be_bytes());
    b.extend_from_slice(&7u128.to_be_bytes());
    b.push(b'x');
    b
}

fn first_param(b: &[u8]) -> Result<ParamExpr, ReadError> {
    let c = parse(b, &ReadLimits::default())?;
    match &c[0].instructions[0].op {
        Operation::Gate { params, .. } => Ok(params[0].clone()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn minimal_file_and_float_param() {
    let b = file(1, &[gate("RZGate", b'f', &0.5f64.to_be_bytes())], &no_layout());
    assert_eq!(first_param(&b), Ok(ParamExpr::Const(0.5)));
}

#[test]
fn reverse_ops_swap_operands() {
    let x = 7u128.to_be_bytes();
    // RSUB(lhs = x, rhs = 1.0) = 1.0 - x
    let e = expr(&[elem(18, b'p', x, b'f', float(1.0))]);
    let b = file(1, &[gate("RZGate", b'e', &e)], &no_layout());
    assert_eq!(
        first_param(&b),
        Ok(ParamExpr::Sub(Box::new(ParamExpr::Const(1.0)), Box::new(ParamExpr::Symbol("x".into()))))
    );
    // sin(x) then (stack) * 2: operands 'n' pop the stack.
    let e = expr(&[
        elem(5, b'p', x, b'n', [0; 16]),
        elem(2, b'n', [0; 16], b'i', {
            let mut a = [0u8; 16];
            a[8..].copy_from_slice(&2i64.to_be_bytes());
            a
        }),
    ]);
    let b = file(1, &[gate("RZGate", b'e', &e)], &no_layout());
    assert_eq!(
        first_param(&b),
        Ok(ParamExpr::Mul(
            Box::new(ParamExpr::Func(Func::Sin, Box::new(ParamExpr::Symbol("x".into())))),
            Box::new(ParamExpr::Const(2.0))
        ))
    );
}

#[test]
fn malformed_expressions_are_errors() {
    let x = 7u128.to_be_bytes();
    // Empty stack.
    let e = expr(&[elem(0, b'n', [0; 16], b'n', [0; 16])]);
    let b = file(1, &[gate("RZGate", b'e', &e)], &no_layout());
    assert!(matches!(first_param(&b), Err(ReadError::Syntax { .. })));
    // Unknown symbol.
    let e = expr(&[elem(5, b'p', [9; 16], b'n', [0; 16])]);
    let b = file(1, &[gate("RZGate", b'e', &e)], &no_layout());
    assert!(matches!(first_param(&b), Err(ReadError::Syntax { .. })));
    // Very deep expression: sin(sin(...)) is refused before it gets deep.
    let mut ops = vec![elem(5, b'p', x, b'n', [0; 16])];
    for _ in 0..5000 {
        ops.push(elem(5, b'n', [0; 16], b'n', [0; 16]));
    }
    let b = file(1, &[gate("RZGate", b'e', &expr(&ops))], &no_layout());
    assert!(matches!(first_param(&b), Err(ReadError::TooLarge { .. })));
}

#[test]
fn huge_counts_do_not_allocate() {
    // A layout register announcing 2^32-1 contiguous bits: skipped, not materialised.
    let mut layout = vec![0u8];
    for v in [-1i32, -1, -1] {
        layout.extend_from_slice(&v.to_be_bytes());
    }
    layout.extend_from_slice(&1u32.to_be_bytes());
    layout.extend_from_slice(&0i32.to_be_bytes());
    layout.extend_from_slice(&[b'q', 1]);
    layout.extend_from_slice(&u32::MAX.to_be_bytes());
    layout.extend_from_slice(&1u16.to_be_bytes());
    layout.extend_from_slice(&[1, 1, b'r']);
    layout.extend_from_slice(&0u32.to_be_bytes());
    let b = file(1, &[], &layout);
    assert_eq!(parse(&b, &ReadLimits::default()).unwrap()[0].num_qubits, 1);
    // The same with explicit indices: the announced count exceeds the bytes.
    let pos = layout.len() - 5;
    layout[pos - 1] = 0; // attachment 0
    let b = file(1, &[], &layout);
    assert!(matches!(parse(&b, &ReadLimits::default()), Err(ReadError::Syntax { .. })));
    // u64::MAX instructions announced.
    let mut b = file(1, &[], &no_layout());
    let at = 28 + 2 + 1 + 2 + 4 + 4 + 8 + 4;
    b[at..at + 8].copy_from_slice(&u64::MAX.to_be_bytes());
    assert!(matches!(parse(&b, &ReadLimits::default()), Err(ReadError::Syntax { .. })));
}

#[test]
fn v17_params_are_little_endian() {
    let mut b = file(1, &[gate("RZGate", b'f', &0.5f64.to_le_bytes())], &no_layout());
    b[6] = 17;
    // v17 has no parameter-vector table (after header, phase and annotation count)...
    b.drain(28 + 37 + 8 + 4..28 + 37 + 8 + 4 + 2);
    // ...and has the calibrations count before the layout.
    let layout_at = b.len() - no_layout().len();
    b.splice(layout_at..layout_at, [0u8, 0]);
    assert_eq!(first_param(&b), Ok(ParamExpr::Const(0.5)));
}
