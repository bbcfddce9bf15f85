//! Parameter values: constants, `Parameter`, `ParameterVectorElement` and `ParameterExpression`
//! (the v13+ replay encoding), evaluated into [`ParamExpr`] trees of bounded depth.

use std::collections::HashMap;

use super::circuit::Scope;
use super::cursor::{end, exact, Cursor, Generic};
use super::{syntax, too_large, unsupported, Reader};
use crate::error::ReadError;
use crate::ir::{Func, ParamExpr};

/// A replay stack entry: an expression and the depth of its tree.
type Entry = (ParamExpr, usize);

impl Reader<'_> {
    /// A big-endian value (global phase, or a symbolic instruction parameter) as an expression.
    pub(super) fn value_expr(&self, g: &Generic<'_>, scope: &Scope<'_>, depth: usize) -> Result<ParamExpr, ReadError> {
        let mut d = g.data;
        match g.key {
            b'f' => Ok(ParamExpr::Const(f64::from_be_bytes(exact(&mut d)?))),
            b'i' => Ok(ParamExpr::Const(i64::from_be_bytes(exact(&mut d)?) as f64)),
            b'p' => {
                let (_, name) = read_parameter(&mut d)?;
                end(&d)?;
                Ok(ParamExpr::Symbol(name))
            }
            b'v' => {
                let (_, name) = self.read_vector_element(&mut d, scope)?;
                end(&d)?;
                Ok(ParamExpr::Symbol(name))
            }
            b'e' => {
                let e = self.param_expression(&mut d, scope, depth + 1)?;
                end(&d)?;
                Ok(e)
            }
            b'c' => {
                let re = f64::from_be_bytes(d.array()?);
                let im = f64::from_be_bytes(d.array()?);
                end(&d)?;
                if im == 0.0 {
                    Ok(ParamExpr::Const(re))
                } else {
                    Err(unsupported("complex-valued parameter".into()))
                }
            }
            other => Err(unsupported(format!("parameter of type '{}'", char::from(other).escape_default()))),
        }
    }

    /// A PARAMETER_VECTOR_ELEMENT: `(uuid, "name[index]")`.
    fn read_vector_element(&self, d: &mut Cursor<'_>, scope: &Scope<'_>) -> Result<(u128, String), ReadError> {
        if self.version >= 18 {
            let vi = d.u16()? as usize;
            let index = d.u64()?;
            let v = scope
                .vectors
                .get(vi)
                .ok_or_else(|| d.err(&format!("parameter vector {vi} is not in the circuit's table")))?;
            if index >= v.size {
                return Err(d.err(&format!("index {index} out of range for vector '{}' of size {}", v.name, v.size)));
            }
            Ok((v.uuid.wrapping_add(u128::from(index)), format!("{}[{index}]", v.name)))
        } else {
            let name_size = d.u16()? as usize;
            let size = d.u64()?;
            let uuid = u128::from_be_bytes(d.array()?);
            let index = d.u64()?;
            let name = d.string(name_size)?;
            if index >= size {
                return Err(d.err(&format!("index {index} out of range for vector '{name}' of size {size}")));
            }
            Ok((uuid, format!("{name}[{index}]")))
        }
    }

    /// PARAMETER_EXPR (v13+): header, replay ops, symbol table.
    fn param_expression(&self, d: &mut Cursor<'_>, scope: &Scope<'_>, depth: usize) -> Result<ParamExpr, ReadError> {
        self.check_depth(depth, d.base + d.pos)?;
        let num_symbols = d.u64()?;
        let expr_len = d.u64()?;
        let mut ops = d.sub(usize::try_from(expr_len).map_err(|_| d.err("length does not fit in memory"))?)?;
        let mut symbols: HashMap<u128, String> = HashMap::new();
        d.check_count(num_symbols, 10, "expression symbols")?;
        for _ in 0..num_symbols {
            let kind = d.u8()?;
            let _value_key = d.u8()?;
            let value_len = d.u64()?;
            match kind {
                b'p' => {
                    let (uuid, name) = read_parameter(d)?;
                    symbols.insert(uuid, name);
                }
                b'v' => {
                    let (uuid, name) = self.read_vector_element(d, scope)?;
                    symbols.insert(uuid, name);
                }
                b'e' => {
                    // Obsolete nested-expression keys (substitutions); parsed and ignored.
                    self.param_expression(d, scope, depth + 1)?;
                }
                other => {
                    return Err(d.err(&format!("invalid expression symbol type {other:#04x}")));
                }
            }
            // The symbol's value: for plain symbols the symbol itself (empty payload).
            d.take_u64_len(value_len)?;
        }
        self.replay(&mut ops, &symbols)
    }

    /// Evaluate the replay of PARAM_EXPR_ELEM_V13 records into an expression tree.
    fn replay(&self, ops: &mut Cursor<'_>, symbols: &HashMap<u128, String>) -> Result<ParamExpr, ReadError> {
        // Each stack entry carries its tree depth so that hostile input cannot build trees deep
        // enough to overflow the native stack when they are later evaluated or dropped.
        let max_tree = self.limits.max_depth.saturating_mul(16).max(16);
        let mut stack: Vec<Entry> = Vec::new();
        while !ops.at_end() {
            let pos = ops.base + ops.pos;
            let op = ops.u8()?;
            let lhs = (ops.u8()?, ops.array()?);
            let rhs = (ops.u8()?, ops.array()?);
            let Some(result) = replay_op(op, lhs, rhs, &mut stack, symbols, pos)? else {
                continue;
            };
            if result.1 > max_tree {
                return Err(too_large(format!("parameter expression nested deeper than {max_tree}")));
            }
            stack.push(result);
        }
        match (stack.pop(), stack.is_empty()) {
            (Some((e, _)), true) => Ok(e),
            (None, _) => Err(ops.err("empty parameter expression")),
            (Some(_), false) => Err(ops.err("parameter expression leaves extra values")),
        }
    }
}

fn expr_err(m: &str, pos: usize) -> ReadError {
    syntax(format!("parameter expression: {m}"), pos)
}

/// One replay record applied to the stack: the entry it pushes, `None` for a no-op record.
/// Operands are popped right-hand side first, as Qiskit pushes them.
fn replay_op(
    op: u8,
    lhs: (u8, [u8; 16]),
    rhs: (u8, [u8; 16]),
    stack: &mut Vec<Entry>,
    symbols: &HashMap<u128, String>,
    pos: usize,
) -> Result<Option<Entry>, ReadError> {
    let binary = |a: Entry, b: Entry, f: fn(Box<ParamExpr>, Box<ParamExpr>) -> ParamExpr| {
        (f(Box::new(a.0), Box::new(b.0)), a.1.max(b.1) + 1)
    };
    Ok(Some(match op {
        255 => return Ok(None),
        0..=4 | 18..=20 => {
            let r = operand(stack, rhs, symbols, pos)?;
            let l = operand(stack, lhs, symbols, pos)?;
            match op {
                0 => binary(l, r, ParamExpr::Add),
                1 => binary(l, r, ParamExpr::Sub),
                2 => binary(l, r, ParamExpr::Mul),
                3 => binary(l, r, ParamExpr::Div),
                4 => binary(l, r, ParamExpr::Pow),
                18 => binary(r, l, ParamExpr::Sub),
                19 => binary(r, l, ParamExpr::Div),
                _ => binary(r, l, ParamExpr::Pow),
            }
        }
        5..=12 | 14 | 16 | 17 => {
            let (a, dp) = operand(stack, lhs, symbols, pos)?;
            let f = match op {
                5 => Func::Sin,
                6 => Func::Cos,
                7 => Func::Tan,
                8 => Func::Asin,
                9 => Func::Acos,
                10 => Func::Exp,
                11 => Func::Ln,
                12 => Func::Sign,
                16 => Func::Abs,
                17 => Func::Atan,
                // Conjugate of a real parameter is itself (same depth, already within bounds).
                _ => return Ok(Some((a, dp))),
            };
            (ParamExpr::Func(f, Box::new(a)), dp + 1)
        }
        13 => return Err(unsupported("gradient in a parameter expression".into())),
        15 => return Err(unsupported("substitution in a parameter expression".into())),
        _ => return Err(expr_err(&format!("invalid op code {op}"), pos)),
    }))
}

/// One operand of a replay record: a literal, a symbol, or (`n`) the top of the stack.
fn operand(
    stack: &mut Vec<Entry>,
    (ty, data): (u8, [u8; 16]),
    symbols: &HashMap<u128, String>,
    pos: usize,
) -> Result<Entry, ReadError> {
    let mut hi = [0u8; 8];
    hi.copy_from_slice(&data[8..]);
    let mut lo = [0u8; 8];
    lo.copy_from_slice(&data[..8]);
    match ty {
        b'i' => Ok((ParamExpr::Const(i64::from_be_bytes(hi) as f64), 1)),
        b'f' => Ok((ParamExpr::Const(f64::from_be_bytes(hi)), 1)),
        b'c' => {
            // Complex literal: real part first, then imaginary part.
            let re = f64::from_be_bytes(lo);
            let im = f64::from_be_bytes(hi);
            if im == 0.0 {
                Ok((ParamExpr::Const(re), 1))
            } else {
                Err(unsupported("complex literal in a parameter expression".into()))
            }
        }
        b'p' => {
            let uuid = u128::from_be_bytes(data);
            let name = symbols.get(&uuid).ok_or_else(|| expr_err("reference to an unknown parameter", pos))?;
            Ok((ParamExpr::Symbol(name.clone()), 1))
        }
        b'n' => stack.pop().ok_or_else(|| expr_err("stack is empty", pos)),
        _ => Err(expr_err("invalid operand type", pos)),
    }
}

/// A PARAMETER: (uuid, name).
fn read_parameter(d: &mut Cursor<'_>) -> Result<(u128, String), ReadError> {
    let name_size = d.u16()? as usize;
    let uuid = u128::from_be_bytes(d.array()?);
    let name = d.string(name_size)?;
    Ok((uuid, name))
}
