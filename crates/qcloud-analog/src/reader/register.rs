//! Registers: 2D / 3D coordinate lists, and mappable registers (`{"qid"}` entries placed on a
//! `layout`'s traps by the job's `qubits` variable, in the register's declared qid order).

use crate::error::{AnalogError, Result};
use serde_json::Value;

/// Hard cap on the atoms one sequence may declare (target sets are 128-bit masks).
pub const MAX_READ_ATOMS: usize = 128;

pub struct Register {
    pub names: Vec<String>,
    pub coords: Vec<[f64; 3]>,
    pub is_3d: bool,
}

fn num(v: Option<&Value>, what: &str) -> Result<f64> {
    let x = v.and_then(Value::as_f64).ok_or_else(|| AnalogError::invalid(format!("{what} must be a number")))?;
    if !x.is_finite() {
        return Err(AnalogError::invalid(format!("{what} is {x}, not a finite number")));
    }
    Ok(x)
}

pub fn read(reg: &Value, layout: Option<&Value>, qubits: Option<&Value>) -> Result<Register> {
    let items = reg.as_array().ok_or_else(|| AnalogError::invalid("'register' must be an array"))?;
    if items.is_empty() {
        return Err(AnalogError::invalid("the register has no atoms"));
    }
    if items.len() > MAX_READ_ATOMS {
        return Err(AnalogError::too_large(format!(
            "the register has {} atoms; at most {MAX_READ_ATOMS} are accepted",
            items.len()
        )));
    }
    let first = items[0].as_object().ok_or_else(|| AnalogError::invalid("register entries must be objects"))?;
    let mappable = first.contains_key("qid");
    let mut names: Vec<String> = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let key = if mappable { "qid" } else { "name" };
        let name = match it.get(key) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(AnalogError::invalid(format!("register entry {i} has no '{key}'"))),
        };
        if names.contains(&name) {
            return Err(AnalogError::invalid(format!("the register declares qubit '{name}' twice")));
        }
        names.push(name);
    }
    if qubits.is_some() && !mappable {
        return Err(AnalogError::invalid(
            "'qubits' must not be specified when the sequence already has a register with coordinates",
        ));
    }
    if mappable {
        return read_mappable(names, layout, qubits);
    }
    if qubits.is_some() && !mappable {
        return Err(AnalogError::invalid("'qubits' is only for mappable registers"));
    }
    let is_3d = first.contains_key("z");
    let mut coords = Vec::with_capacity(items.len());
    for (i, it) in items.iter().enumerate() {
        let what = |c: &str| format!("register entry {i} ('{}'): '{c}'", names[i]);
        let x = num(it.get("x"), &what("x"))?;
        let y = num(it.get("y"), &what("y"))?;
        let z = if is_3d { num(it.get("z"), &what("z"))? } else { 0.0 };
        coords.push([x, y, z]);
    }
    Ok(Register { names, coords, is_3d })
}

fn read_mappable(names: Vec<String>, layout: Option<&Value>, qubits: Option<&Value>) -> Result<Register> {
    let layout = layout.ok_or_else(|| AnalogError::invalid("a mappable register needs a 'layout'"))?;
    let traps = layout
        .get("coordinates")
        .and_then(Value::as_array)
        .ok_or_else(|| AnalogError::invalid("'layout.coordinates' must be an array"))?;
    if traps.len() > 100_000 {
        return Err(AnalogError::too_large("the layout has more than 100000 traps"));
    }
    let qubits = qubits
        .and_then(Value::as_object)
        .ok_or_else(|| AnalogError::invalid("a mappable register needs the 'qubits' variable ({qid: trap index})"))?;
    for k in qubits.keys() {
        if !names.contains(k) {
            return Err(AnalogError::invalid(format!(
                "All qubits must be labeled with pre-declared qubit IDs: '{k}' is not in the register"
            )));
        }
    }
    let n = qubits.len();
    if n == 0 {
        return Err(AnalogError::invalid("'qubits' maps no qubit to a trap"));
    }
    let mut coords = Vec::with_capacity(n);
    let mut used = Vec::with_capacity(n);
    let mut is_3d = false;
    for name in &names[..n] {
        let trap = qubits.get(name).ok_or_else(|| {
            AnalogError::invalid(format!(
                "'qubits' must map the first {n} qubit ids of the register in declared order; '{name}' is missing"
            ))
        })?;
        let t = trap.as_u64().ok_or_else(|| {
            AnalogError::invalid(format!("qubit '{name}': trap index {trap} is not a non-negative integer"))
        })? as usize;
        if used.contains(&t) {
            return Err(AnalogError::invalid(format!("trap {t} is assigned to more than one qubit")));
        }
        used.push(t);
        let c = traps.get(t).and_then(Value::as_array).ok_or_else(|| {
            AnalogError::invalid(format!("qubit '{name}': trap {t} is not in the layout ({} traps)", traps.len()))
        })?;
        let what = format!("layout trap {t}");
        let x = num(c.first(), &what)?;
        let y = num(c.get(1), &what)?;
        let z = match c.get(2) {
            Some(v) => {
                is_3d = true;
                num(Some(v), &what)?
            }
            None => 0.0,
        };
        coords.push([x, y, z]);
    }
    Ok(Register { names: names[..n].to_vec(), coords, is_3d })
}
