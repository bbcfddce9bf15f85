//! Parametrized numbers of the abstract repr: literals, `{"variable": ..}` and `{"expression": ..}`
//! trees, evaluated with numpy's semantics on 1-D arrays (a size-1 array broadcasts). Variables are
//! bound before evaluation; nesting depth and node count are bounded because the input is hostile.

use crate::error::{AnalogError, Result};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// Deepest expression nesting accepted (serde_json itself stops at 128).
pub const MAX_EXPR_DEPTH: usize = 64;
/// Most elements of one evaluated array (variables, literal lists, intermediate results).
pub const MAX_ARRAY_LEN: usize = 1 << 20;

/// A declared variable: its type and size (the abstract repr's `value` array is a placeholder).
#[derive(Debug, Clone, PartialEq)]
pub struct VarDecl {
    pub is_int: bool,
    pub size: usize,
}

/// The variables' bound values.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    values: HashMap<String, Vec<f64>>,
}

/// Reads the sequence's `variables` declarations.
pub fn read_decls(v: &Value) -> Result<BTreeMap<String, VarDecl>> {
    let obj = v.as_object().ok_or_else(|| AnalogError::invalid("'variables' must be an object"))?;
    let mut out = BTreeMap::new();
    for (name, d) in obj {
        let ty = d.get("type").and_then(Value::as_str).unwrap_or("float");
        let is_int = match ty {
            "int" => true,
            "float" => false,
            other => return Err(AnalogError::invalid(format!("variable '{name}': unknown type '{other}'"))),
        };
        let size = d
            .get("value")
            .and_then(Value::as_array)
            .map(Vec::len)
            .ok_or_else(|| AnalogError::invalid(format!("variable '{name}': 'value' must be an array")))?;
        if size == 0 || size > MAX_ARRAY_LEN {
            return Err(AnalogError::invalid(format!(
                "variable '{name}': size {size} is not between 1 and {MAX_ARRAY_LEN}"
            )));
        }
        out.insert(name.clone(), VarDecl { is_int, size });
    }
    Ok(out)
}

/// Binds the job's values to the declarations, with Pulser's messages for missing and mis-sized
/// variables. Values for undeclared names are ignored, as Pulser does (it only warns).
pub fn bind(decls: &BTreeMap<String, VarDecl>, given: Option<&serde_json::Map<String, Value>>) -> Result<Vars> {
    let empty = serde_json::Map::new();
    let given = given.unwrap_or(&empty);
    let missing: Vec<&str> = decls.keys().filter(|k| !given.contains_key(*k)).map(String::as_str).collect();
    if !missing.is_empty() {
        return Err(AnalogError::invalid(format!("Did not receive values for variables: {}", missing.join(", "))));
    }
    let mut values = HashMap::new();
    for (name, decl) in decls {
        let raw = &given[name.as_str()];
        let mut vals: Vec<f64> = match raw {
            Value::Array(items) => items
                .iter()
                .map(|x| {
                    x.as_f64().ok_or_else(|| AnalogError::invalid(format!("variable '{name}': {x} is not a number")))
                })
                .collect::<Result<_>>()?,
            other => vec![other
                .as_f64()
                .ok_or_else(|| AnalogError::invalid(format!("variable '{name}': {other} is not a number")))?],
        };
        if vals.len() != decl.size {
            return Err(AnalogError::invalid(format!(
                "Can't assign array of size {} to variable of size {}",
                vals.len(),
                decl.size
            )));
        }
        if decl.is_int {
            // numpy's cast to int truncates toward zero.
            for v in &mut vals {
                if !v.is_finite() || v.abs() > 9.0e15 {
                    return Err(AnalogError::invalid(format!("variable '{name}': {v} is not a valid int")));
                }
                *v = v.trunc();
            }
        }
        values.insert(name.clone(), vals);
    }
    Ok(Vars { values })
}

impl Vars {
    /// Evaluates a parametrized number or array.
    pub fn eval(&self, v: &Value) -> Result<Vec<f64>> {
        let mut budget = 100_000usize;
        self.eval_at(v, 0, &mut budget)
    }

    /// Evaluates a parameter that must be one number (a size-1 array counts, as in numpy).
    pub fn scalar(&self, v: &Value, what: &str) -> Result<f64> {
        let a = self.eval(v).map_err(|e| prefix(e, what))?;
        match a.as_slice() {
            [x] => Ok(*x),
            _ => {
                Err(AnalogError::invalid(format!("{what}: expected a single number, got an array of size {}", a.len())))
            }
        }
    }

    /// A finite number.
    pub fn finite(&self, v: &Value, what: &str) -> Result<f64> {
        let x = self.scalar(v, what)?;
        if !x.is_finite() {
            return Err(AnalogError::invalid(format!("{what} is {x}, not a finite number")));
        }
        Ok(x)
    }

    /// An integer, truncated toward zero like Python's `int()`; must be finite and within i64.
    pub fn int(&self, v: &Value, what: &str) -> Result<i64> {
        let x = self.finite(v, what)?;
        if x.abs() > 9.0e15 {
            return Err(AnalogError::invalid(format!("{what} = {x} is out of range")));
        }
        Ok(x.trunc() as i64)
    }

    /// An array of finite numbers.
    pub fn finite_array(&self, v: &Value, what: &str) -> Result<Vec<f64>> {
        let a = self.eval(v).map_err(|e| prefix(e, what))?;
        if let Some(bad) = a.iter().find(|x| !x.is_finite()) {
            return Err(AnalogError::invalid(format!("{what} contains {bad}, not a finite number")));
        }
        Ok(a)
    }

    fn eval_at(&self, v: &Value, depth: usize, budget: &mut usize) -> Result<Vec<f64>> {
        if depth > MAX_EXPR_DEPTH {
            return Err(AnalogError::invalid(format!("expression nested deeper than {MAX_EXPR_DEPTH} levels")));
        }
        *budget = budget.checked_sub(1).ok_or_else(|| AnalogError::invalid("expression has too many nodes"))?;
        match v {
            Value::Number(n) => Ok(vec![n.as_f64().unwrap_or(f64::NAN)]),
            Value::Array(items) => {
                if items.len() > MAX_ARRAY_LEN {
                    return Err(AnalogError::too_large(format!(
                        "array of {} elements (at most {MAX_ARRAY_LEN})",
                        items.len()
                    )));
                }
                items
                    .iter()
                    .map(|x| {
                        x.as_f64().ok_or_else(|| AnalogError::invalid(format!("array element {x} is not a number")))
                    })
                    .collect()
            }
            Value::Object(o) => {
                if let Some(name) = o.get("variable") {
                    let name = name.as_str().ok_or_else(|| AnalogError::invalid("a variable name must be a string"))?;
                    return self.values.get(name).cloned().ok_or_else(|| {
                        AnalogError::invalid(format!(
                            "Variable '{name}' used in operations but not found in declared variables."
                        ))
                    });
                }
                let op = o.get("expression").and_then(Value::as_str).ok_or_else(|| {
                    AnalogError::invalid(format!(
                        "Parameter '{v}' is neither a literal nor a variable or an expression."
                    ))
                })?;
                let lhs =
                    o.get("lhs").ok_or_else(|| AnalogError::invalid(format!("expression '{op}' has no 'lhs'")))?;
                let a = self.eval_at(lhs, depth + 1, budget)?;
                if let Some(f) = unary(op) {
                    return Ok(a.into_iter().map(f).collect());
                }
                let rhs =
                    o.get("rhs").ok_or_else(|| AnalogError::invalid(format!("expression '{op}' has no 'rhs'")))?;
                let b = self.eval_at(rhs, depth + 1, budget)?;
                if op == "index" {
                    return index(&a, &b);
                }
                let f = binary(op).ok_or_else(|| AnalogError::invalid(format!("Expression '{op}' invalid.")))?;
                broadcast(&a, &b, f)
            }
            other => Err(AnalogError::invalid(format!(
                "Parameter '{other}' is neither a literal nor a variable or an expression."
            ))),
        }
    }
}

fn prefix(e: AnalogError, what: &str) -> AnalogError {
    match e {
        AnalogError::Invalid(m) => AnalogError::Invalid(format!("{what}: {m}")),
        AnalogError::TooLarge(m) => AnalogError::TooLarge(format!("{what}: {m}")),
        other => other,
    }
}

fn unary(op: &str) -> Option<fn(f64) -> f64> {
    Some(match op {
        "neg" => |x: f64| -x,
        "abs" => f64::abs,
        "floor" => f64::floor,
        "ceil" => f64::ceil,
        // numpy rounds half to even.
        "round" => f64::round_ties_even,
        "sqrt" => f64::sqrt,
        "exp" => f64::exp,
        "log2" => f64::log2,
        "log" => f64::ln,
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "tanh" => f64::tanh,
        _ => return None,
    })
}

/// Python's float `%`: the result takes the divisor's sign.
pub fn py_mod(x: f64, y: f64) -> f64 {
    let r = x % y;
    if r != 0.0 && ((r < 0.0) != (y < 0.0)) {
        r + y
    } else {
        r
    }
}

fn binary(op: &str) -> Option<fn(f64, f64) -> f64> {
    Some(match op {
        "add" => |a, b| a + b,
        "sub" => |a, b| a - b,
        "mul" => |a, b| a * b,
        "div" => |a, b| a / b,
        "pow" => f64::powf,
        "mod" => py_mod,
        _ => return None,
    })
}

fn broadcast(a: &[f64], b: &[f64], f: fn(f64, f64) -> f64) -> Result<Vec<f64>> {
    match (a.len(), b.len()) {
        (1, _) => Ok(b.iter().map(|&y| f(a[0], y)).collect()),
        (_, 1) => Ok(a.iter().map(|&x| f(x, b[0])).collect()),
        (n, m) if n == m => Ok(a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect()),
        (n, m) => {
            Err(AnalogError::invalid(format!("operands could not be broadcast together with shapes ({n},) ({m},)")))
        }
    }
}

fn index(a: &[f64], idx: &[f64]) -> Result<Vec<f64>> {
    idx.iter()
        .map(|&i| {
            let n = a.len() as i64;
            if i.fract() != 0.0 || !i.is_finite() {
                return Err(AnalogError::invalid(format!("index {i} is not an integer")));
            }
            let k = i as i64;
            let pos = if k < 0 { k + n } else { k };
            if pos < 0 || pos >= n {
                return Err(AnalogError::invalid(format!("Index {k} out of bounds for a variable of size {n}")));
            }
            Ok(a[pos as usize])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(decl: Value, given: Value) -> Result<Vars> {
        bind(&read_decls(&decl)?, given.as_object())
    }

    #[test]
    fn operators_follow_numpy() {
        let v = vars(json!({"x": {"type": "float", "value": [0.0, 0.0]}}), json!({"x": [3.0, -7.5]})).unwrap();
        let e = |j: Value| v.eval(&j).unwrap();
        assert_eq!(e(json!({"expression": "index", "lhs": {"variable": "x"}, "rhs": 1})), vec![-7.5]);
        assert_eq!(e(json!({"expression": "index", "lhs": {"variable": "x"}, "rhs": -2})), vec![3.0]);
        assert_eq!(e(json!({"expression": "mod", "lhs": {"variable": "x"}, "rhs": 2})), vec![1.0, 0.5]);
        assert_eq!(e(json!({"expression": "mul", "lhs": {"variable": "x"}, "rhs": 2})), vec![6.0, -15.0]);
        assert_eq!(e(json!({"expression": "round", "lhs": 2.5})), vec![2.0]);
        assert_eq!(e(json!({"expression": "round", "lhs": 3.5})), vec![4.0]);
        assert_eq!(e(json!({"expression": "floor", "lhs": -0.5})), vec![-1.0]);
        assert_eq!(e(json!({"expression": "pow", "lhs": 2, "rhs": 10})), vec![1024.0]);
        assert_eq!(e(json!({"expression": "neg", "lhs": {"expression": "abs", "lhs": -2}})), vec![-2.0]);
        assert!((e(json!({"expression": "log2", "lhs": 8}))[0] - 3.0).abs() < 1e-15);
        assert!(v.eval(&json!({"expression": "index", "lhs": {"variable": "x"}, "rhs": 2})).is_err());
        assert!(v.eval(&json!({"expression": "frobnicate", "lhs": 1, "rhs": 2})).is_err());
    }

    #[test]
    fn pulser_messages_for_missing_and_missized_variables() {
        let decl = json!({"x": {"type": "float", "value": [0.0]}, "y": {"type": "int", "value": [0]}});
        let e = vars(decl.clone(), json!({})).unwrap_err();
        assert_eq!(e.to_string(), "Did not receive values for variables: x, y");
        let e = vars(decl.clone(), json!({"x": [1.0, 2.0], "y": 1})).unwrap_err();
        assert_eq!(e.to_string(), "Can't assign array of size 2 to variable of size 1");
        let v = vars(decl, json!({"x": 1.5, "y": 2.9})).unwrap();
        assert_eq!(v.eval(&json!({"variable": "y"})).unwrap(), vec![2.0]);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut j = json!(1.0);
        for _ in 0..100 {
            j = json!({"expression": "neg", "lhs": j});
        }
        let v = Vars::default();
        assert!(v.eval(&j).unwrap_err().to_string().contains("nested deeper"));
    }
}
