//! Conditions of instructions: the legacy register/clbit form and classical expressions (in the
//! forms a [`Condition`] can express), and the reader of Qiskit's classical expressions.

use super::circuit::Scope;
use super::cursor::{end, Cursor, Generic};
use super::{syntax, too_large, unsupported, Reader};
use crate::error::ReadError;
use crate::ir::Condition;

impl Reader<'_> {
    /// A two-tuple condition: register or clbit payload, compared with `value`.
    pub(super) fn register_condition(
        &self,
        d: &mut Cursor<'_>,
        value: i64,
        scope: &Scope<'_>,
    ) -> Result<Condition, ReadError> {
        let pos = d.base + d.pos;
        enum Target {
            Clbit(usize),
            Register(String),
        }
        let target = if self.version >= 18 {
            match d.u8()? {
                0 => {
                    let i = d.u32()? as usize;
                    end(d)?;
                    Target::Clbit(i)
                }
                1 => {
                    let n = d.remaining();
                    Target::Register(d.string(n)?)
                }
                t => return Err(syntax(format!("invalid register tag {t}"), pos)),
            }
        } else {
            let n = d.remaining();
            let raw = d.take(n)?;
            match raw.split_first() {
                None => return Err(syntax("empty register payload".into(), pos)),
                Some((0, digits)) => {
                    let s = std::str::from_utf8(digits).map_err(|_| syntax("invalid clbit index".into(), pos))?;
                    let i: usize = s.parse().map_err(|_| syntax("invalid clbit index".into(), pos))?;
                    Target::Clbit(i)
                }
                Some(_) => Target::Register(
                    String::from_utf8(raw.to_vec()).map_err(|_| syntax("register name is not UTF-8".into(), pos))?,
                ),
            }
        };
        match target {
            Target::Clbit(i) => {
                let g =
                    scope.global_clbit(i).ok_or_else(|| syntax(format!("condition clbit {i} out of range"), pos))?;
                Ok(Condition { bits: vec![g], value: u64::from(value != 0) })
            }
            Target::Register(name) => {
                let bits = scope.register_bits(&name, pos)?;
                Ok(Condition { bits, value: register_value(value, pos)? })
            }
        }
    }

    /// A classical-expression condition, in the forms a [`Condition`] can express.
    pub(super) fn expr_condition(
        &self,
        g: &Generic<'_>,
        scope: &Scope<'_>,
        depth: usize,
    ) -> Result<Condition, ReadError> {
        let pos = g.data.base;
        if g.key != b'x' {
            return Err(syntax("condition is not an expression".into(), pos));
        }
        let mut d = g.data;
        let e = read_expr(&mut d, depth, self.limits.max_depth)?;
        let unsupported_cond = || unsupported("classical-expression condition of this form".into());
        let strip = |mut e: &CExpr| {
            while let CExpr::Cast(inner) = e {
                e = inner;
            }
            e.clone()
        };
        let var_bits = |v: &CExpr| -> Result<Option<(Vec<usize>, bool)>, ReadError> {
            match v {
                CExpr::Clbit(i) => {
                    let g = scope
                        .global_clbit(*i)
                        .ok_or_else(|| syntax(format!("condition clbit {i} out of range"), pos))?;
                    Ok(Some((vec![g], true)))
                }
                CExpr::Register(name) => Ok(Some((scope.register_bits(name, pos)?, false))),
                _ => Ok(None),
            }
        };
        match strip(&e) {
            CExpr::Clbit(_) => {
                let (bits, _) = var_bits(&strip(&e))?.ok_or_else(unsupported_cond)?;
                Ok(Condition { bits, value: 1 })
            }
            CExpr::Unary(op, inner) if op == 1 || op == 2 => match strip(&inner) {
                v @ CExpr::Clbit(_) => {
                    let (bits, _) = var_bits(&v)?.ok_or_else(unsupported_cond)?;
                    Ok(Condition { bits, value: 0 })
                }
                _ => Err(unsupported_cond()),
            },
            CExpr::Binary(6, a, b) => {
                let (a, b) = (strip(&a), strip(&b));
                let (var, val) = match (&a, &b) {
                    (_, CExpr::Int(_) | CExpr::Bool(_)) => (a.clone(), b.clone()),
                    (CExpr::Int(_) | CExpr::Bool(_), _) => (b.clone(), a.clone()),
                    _ => return Err(unsupported_cond()),
                };
                let (bits, _) = var_bits(&var)?.ok_or_else(unsupported_cond)?;
                let value = match val {
                    CExpr::Bool(v) => u64::from(v),
                    CExpr::Int(v) => register_value(v, pos)?,
                    _ => return Err(unsupported_cond()),
                };
                Ok(Condition { bits, value })
            }
            _ => Err(unsupported_cond()),
        }
    }
}

fn register_value(v: i64, pos: usize) -> Result<u64, ReadError> {
    u64::try_from(v).map_err(|_| syntax(format!("negative condition value {v}"), pos))
}

pub(super) fn read_expr_type(c: &mut Cursor<'_>) -> Result<(), ReadError> {
    match c.u8()? {
        b'b' | b'f' | b'd' => Ok(()),
        b'u' => c.u32().map(|_| ()),
        other => Err(c.err(&format!("invalid expression type {other:#04x}"))),
    }
}

/// The subset of Qiskit's classical expressions that conditions use.
#[derive(Clone)]
enum CExpr {
    Clbit(usize),
    Register(String),
    Bool(bool),
    Int(i64),
    Other,
    Cast(Box<CExpr>),
    Unary(u8, Box<CExpr>),
    Binary(u8, Box<CExpr>, Box<CExpr>),
}

fn read_expr(c: &mut Cursor<'_>, depth: usize, max_depth: usize) -> Result<CExpr, ReadError> {
    if depth > max_depth {
        return Err(too_large(format!("classical expression nested deeper than {max_depth}")));
    }
    let kind = c.u8()?;
    read_expr_type(c)?;
    Ok(match kind {
        b'x' => match c.u8()? {
            b'C' => CExpr::Clbit(c.u32()? as usize),
            b'R' => {
                let n = c.u16()? as usize;
                CExpr::Register(c.string(n)?)
            }
            b'U' => return Err(unsupported("standalone classical variables".into())),
            other => return Err(c.err(&format!("invalid variable kind {other:#04x}"))),
        },
        b's' => return Err(unsupported("stretch variables".into())),
        b'v' => match c.u8()? {
            b'b' => CExpr::Bool(c.u8()? != 0),
            b'i' => {
                let n = c.u8()? as usize;
                let bytes = c.take(n)?;
                // Big-endian two's complement of arbitrary width; keep what fits in i64.
                let mut v: i64 = if bytes.first().is_some_and(|b| b & 0x80 != 0) { -1 } else { 0 };
                for &b in bytes {
                    v = v.checked_shl(8).map(|x| x | i64::from(b)).unwrap_or(v);
                }
                if n > 8 {
                    CExpr::Other
                } else {
                    CExpr::Int(v)
                }
            }
            b'f' => {
                c.take(8)?;
                CExpr::Other
            }
            b't' => {
                c.u8()?;
                c.take(8)?;
                CExpr::Other
            }
            other => return Err(c.err(&format!("invalid value kind {other:#04x}"))),
        },
        b'c' => {
            c.u8()?;
            CExpr::Cast(Box::new(read_expr(c, depth + 1, max_depth)?))
        }
        b'u' => {
            let op = c.u8()?;
            CExpr::Unary(op, Box::new(read_expr(c, depth + 1, max_depth)?))
        }
        b'b' => {
            let op = c.u8()?;
            let a = read_expr(c, depth + 1, max_depth)?;
            let b = read_expr(c, depth + 1, max_depth)?;
            CExpr::Binary(op, Box::new(a), Box::new(b))
        }
        b'i' => {
            read_expr(c, depth + 1, max_depth)?;
            read_expr(c, depth + 1, max_depth)?;
            CExpr::Other
        }
        other => return Err(c.err(&format!("invalid expression kind {other:#04x}"))),
    })
}
