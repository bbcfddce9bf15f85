//! Payload decoding shared by the Sampler and the Estimator: circuits, n-dimensional arrays,
//! broadcasting, observables.

use super::{SimError, SimLimits};
use crate::compact::QubitMap;
use crate::error::ReadError;
use crate::ir::Circuit;
use base64::Engine as _;
use serde_json::Value;
use std::io::Read;

/// Deepest nesting accepted for parameter / observable arrays.
const MAX_ARRAY_DEPTH: usize = 32;

fn bad(msg: impl Into<String>) -> SimError {
    SimError::BadPayload(msg.into())
}

/// Read the circuit of pub `index`.
pub fn read_circuit(index: usize, v: &Value, limits: &SimLimits) -> Result<Circuit, SimError> {
    let wrap = |source: ReadError| SimError::Circuit { index, source };
    match v {
        Value::String(text) => {
            if text.len() > limits.read.max_source_bytes {
                return Err(wrap(ReadError::TooLarge {
                    format: "OpenQASM",
                    message: format!(
                        "source of {} bytes exceeds the limit of {} bytes",
                        text.len(),
                        limits.read.max_source_bytes
                    ),
                }));
            }
            match qasm_version(text) {
                Some(2) if !includes_stdgates(text) => crate::qasm2::parse(text, &limits.read).map_err(wrap),
                _ => crate::qasm3::parse(text, &limits.read).map_err(wrap),
            }
        }
        Value::Object(map) => {
            let b64 = match (map.get("qpy"), map.get("__type__"), map.get("__value__")) {
                (Some(Value::String(s)), _, _) => s,
                (None, Some(Value::String(t)), Some(Value::String(s))) if t == "QuantumCircuit" => s,
                _ => return Err(bad(format!("pub {index}: a circuit is OpenQASM text or {{\"qpy\": \"<base64>\"}}"))),
            };
            let max = limits.read.max_source_bytes;
            if b64.len() / 4 * 3 > max.saturating_mul(2) {
                return Err(SimError::TooLarge(format!(
                    "pub {index}: QPY data of {} base64 characters exceeds the limit of {max} bytes",
                    b64.len()
                )));
            }
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| bad(format!("pub {index}: invalid base64 in QPY circuit: {e}")))?;
            let bytes = if raw.first() == Some(&0x78) {
                let mut out = Vec::new();
                flate2::read::ZlibDecoder::new(raw.as_slice())
                    .take(max as u64 + 1)
                    .read_to_end(&mut out)
                    .map_err(|e| bad(format!("pub {index}: invalid zlib data in QPY circuit: {e}")))?;
                if out.len() > max {
                    return Err(SimError::TooLarge(format!(
                        "pub {index}: decompressed QPY data exceeds the limit of {max} bytes"
                    )));
                }
                out
            } else {
                raw
            };
            let mut circuits = crate::qpy::parse(&bytes, &limits.read).map_err(wrap)?;
            if circuits.is_empty() {
                return Err(bad(format!("pub {index}: the QPY data holds no circuit")));
            }
            Ok(circuits.swap_remove(0))
        }
        _ => Err(bad(format!("pub {index}: a circuit is OpenQASM text or {{\"qpy\": \"<base64>\"}}"))),
    }
}

/// The major version in the `OPENQASM x.y;` header (after comments and blank space), if any.
fn qasm_version(text: &str) -> Option<u32> {
    let mut rest = text.trim_start_matches('\u{feff}');
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("//") {
            rest = r.split_once('\n').map(|(_, t)| t).unwrap_or("");
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.split_once("*/").map(|(_, t)| t).unwrap_or("");
        } else {
            break;
        }
    }
    let r = rest.strip_prefix("OPENQASM")?.trim_start();
    let digits: String = r.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn includes_stdgates(text: &str) -> bool {
    text.contains("\"stdgates.inc\"")
}

/// An n-dimensional array of leaves: shape and leaves in row-major order.
pub struct NdArray<T> {
    pub shape: Vec<usize>,
    pub items: Vec<T>,
}

/// Read nested JSON lists whose leaves satisfy `is_leaf` and are converted by `leaf`.
pub fn nd_array<T>(
    v: &Value,
    is_leaf: &dyn Fn(&Value) -> bool,
    leaf: &mut dyn FnMut(&Value) -> Result<T, SimError>,
    what: &str,
) -> Result<NdArray<T>, SimError> {
    // The shape follows the first element at every level; every other element must agree.
    let mut shape = Vec::new();
    let mut cur = v;
    loop {
        if is_leaf(cur) {
            break;
        }
        let Value::Array(list) = cur else {
            return Err(bad(format!("{what}: unexpected value {}", short(cur))));
        };
        if shape.len() >= MAX_ARRAY_DEPTH {
            return Err(bad(format!("{what} are nested too deeply")));
        }
        shape.push(list.len());
        match list.first() {
            Some(first) => cur = first,
            None => break,
        }
    }
    fn walk<T>(
        v: &Value,
        depth: usize,
        shape: &[usize],
        is_leaf: &dyn Fn(&Value) -> bool,
        leaf: &mut dyn FnMut(&Value) -> Result<T, SimError>,
        items: &mut Vec<T>,
        what: &str,
    ) -> Result<(), SimError> {
        if depth == shape.len() {
            if !is_leaf(v) {
                return Err(bad(format!("{what} are not a rectangular array")));
            }
            items.push(leaf(v)?);
            return Ok(());
        }
        match v {
            Value::Array(list) if list.len() == shape[depth] => {
                for item in list {
                    walk(item, depth + 1, shape, is_leaf, leaf, items, what)?;
                }
                Ok(())
            }
            _ => Err(bad(format!("{what} are not a rectangular array"))),
        }
    }
    let mut items = Vec::new();
    walk(v, 0, &shape, is_leaf, leaf, &mut items, what)?;
    Ok(NdArray { shape, items })
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 40 {
        format!("{}...", &s[..s.char_indices().nth(37).map(|(i, _)| i).unwrap_or(0)])
    } else {
        s
    }
}

/// Parameter values of a pub: (pub shape, one vector of `nparams` values per point, row-major).
pub fn parameter_values(
    v: Option<&Value>,
    nparams: usize,
    names: &[String],
) -> Result<(Vec<usize>, Vec<Vec<f64>>), SimError> {
    let v = match v {
        None | Some(Value::Null) => &Value::Array(Vec::new()),
        Some(v) => v,
    };
    let arr = nd_array(
        v,
        &|x| x.is_number(),
        &mut |x| x.as_f64().filter(|f| f.is_finite()).ok_or_else(|| bad("parameter values must be finite numbers")),
        "parameter values",
    )?;
    let mut shape = arr.shape;
    let last = shape.pop().unwrap_or(0);
    if last != nparams {
        return Err(bad(format!(
            "the circuit has {nparams} parameter(s) [{}] but the parameter values' last axis has {last}",
            names.join(", ")
        )));
    }
    let points: usize = shape.iter().product();
    let mut out = Vec::with_capacity(points);
    if nparams == 0 {
        out.resize(points, Vec::new());
    } else {
        for chunk in arr.items.chunks(nparams) {
            out.push(chunk.to_vec());
        }
    }
    if out.len() != points {
        return Err(bad("parameter values are not a rectangular array"));
    }
    Ok((shape, out))
}

/// Numpy broadcasting of two shapes.
pub fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for k in 0..n {
        let x = if k + a.len() >= n { a[k + a.len() - n] } else { 1 };
        let y = if k + b.len() >= n { b[k + b.len() - n] } else { 1 };
        out[k] = if x == y || y == 1 {
            x
        } else if x == 1 {
            y
        } else {
            return None;
        };
    }
    Some(out)
}

/// Flat (row-major) index into an array of `shape` for the broadcast multi-index `idx` (of a
/// shape with at least as many axes).
pub fn broadcast_index(shape: &[usize], idx: &[usize]) -> usize {
    let off = idx.len() - shape.len();
    let mut flat = 0;
    for (k, &d) in shape.iter().enumerate() {
        let i = if d == 1 { 0 } else { idx[off + k] };
        flat = flat * d + i;
    }
    flat
}

/// Multi-index of the flat row-major position `flat` in `shape`.
pub fn unravel(shape: &[usize], mut flat: usize) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for k in (0..shape.len()).rev() {
        let d = shape[k].max(1);
        idx[k] = flat % d;
        flat /= d;
    }
    idx
}

/// Nest a flat row-major list of values into lists of `shape` (a scalar for shape `[]`).
pub fn nest(shape: &[usize], items: Vec<Value>) -> Value {
    fn rec(shape: &[usize], it: &mut std::vec::IntoIter<Value>) -> Value {
        match shape.split_first() {
            None => it.next().unwrap_or(Value::Null),
            Some((&d, rest)) => Value::Array((0..d).map(|_| rec(rest, it)).collect()),
        }
    }
    rec(shape, &mut items.into_iter())
}

/// A non-negative integer field.
pub fn as_u64(v: &Value, what: &str) -> Result<u64, SimError> {
    if let Some(u) = v.as_u64() {
        return Ok(u);
    }
    // Integral floats (e.g. 1024.0) are accepted.
    match v.as_f64() {
        Some(f) if f >= 0.0 && f.fract() == 0.0 && f < 1.8e19 => Ok(f as u64),
        _ => Err(bad(format!("{what} must be a non-negative integer"))),
    }
}

/// The job's seed: `seed`, or the Qiskit options' `seed_estimator` / `simulator.seed_simulator`.
pub fn seed(payload: &Value) -> Result<Option<u64>, SimError> {
    let candidates = [
        payload.get("seed"),
        payload.pointer("/options/seed_estimator"),
        payload.pointer("/options/simulator/seed_simulator"),
    ];
    for c in candidates.into_iter().flatten() {
        if !c.is_null() {
            return as_u64(c, "seed").map(Some);
        }
    }
    Ok(None)
}

/// The pubs list, checked against `max_pubs`.
pub fn pubs<'a>(payload: &'a Value, limits: &SimLimits) -> Result<&'a Vec<Value>, SimError> {
    if !payload.is_object() {
        return Err(bad("the payload must be a JSON object"));
    }
    let pubs = payload.get("pubs").and_then(Value::as_array).ok_or_else(|| bad("the payload needs a \"pubs\" list"))?;
    if pubs.is_empty() {
        return Err(bad("\"pubs\" is empty"));
    }
    if pubs.len() > limits.max_pubs {
        return Err(SimError::TooLarge(format!("{} pubs, more than the limit of {}", pubs.len(), limits.max_pubs)));
    }
    Ok(pubs)
}

/// One Pauli term: `coeff * P` with `P|i> = i^ny (-1)^{|i & z|} |i ^ x>`.
#[derive(Debug, Clone, PartialEq)]
pub struct PauliTerm {
    pub x: usize,
    pub z: usize,
    pub ny: u32,
    pub coeff: f64,
}

/// A sum of Pauli terms.
pub type Observable = Vec<PauliTerm>;

/// Parse a Pauli label (rightmost character = qubit 0) on the circuit's `map.compact.len()`
/// qubits, onto the compact register of `map`. On a dropped (idle, so |0>) qubit `Z` and `I`
/// are 1 and `X`/`Y` make the term vanish: `None`.
pub fn pauli_label(label: &str, map: &QubitMap) -> Result<Option<(usize, usize, u32)>, SimError> {
    let n = map.compact.len();
    let count = label.chars().count();
    if count != n {
        return Err(bad(format!(
            "observable label '{}' has {count} characters, the circuit has {n} qubits",
            if label.len() > 80 { "..." } else { label },
        )));
    }
    let (mut x, mut z, mut ny) = (0usize, 0usize, 0u32);
    let mut vanishes = false;
    for (k, ch) in label.chars().rev().enumerate() {
        if !matches!(ch, 'I' | 'X' | 'Y' | 'Z') {
            return Err(bad(format!("observable label has '{ch}': labels use I, X, Y, Z")));
        }
        let Some(q) = map.compact.get(k).copied().flatten() else {
            vanishes |= matches!(ch, 'X' | 'Y');
            continue;
        };
        let bit = 1usize << q;
        match ch {
            'X' => x |= bit,
            'Z' => z |= bit,
            'Y' => {
                x |= bit;
                z |= bit;
                ny += 1;
            }
            _ => {}
        }
    }
    Ok((!vanishes).then_some((x, z, ny)))
}

/// Observables of a pub: a dict `{label: coeff}`, a label, or nested lists of those; labels span
/// the circuit's full width, terms act on the compact register of `map`.
pub fn observables(v: &Value, map: &QubitMap) -> Result<NdArray<Observable>, SimError> {
    if map.width > 63 {
        return Err(SimError::Unsupported(format!("observables on {} qubits", map.width)));
    }
    let leaf = |v: &Value| -> Result<Observable, SimError> {
        match v {
            Value::String(s) => {
                Ok(pauli_label(s, map)?.map(|(x, z, ny)| PauliTerm { x, z, ny, coeff: 1.0 }).into_iter().collect())
            }
            Value::Object(map_) => {
                let mut out = Vec::with_capacity(map_.len());
                for (label, c) in map_ {
                    let coeff = match c {
                        Value::Number(_) => c.as_f64(),
                        // [re, im] with im == 0 (Hermitian observables only).
                        Value::Array(a) if a.len() == 2 && a[1].as_f64() == Some(0.0) => a[0].as_f64(),
                        _ => None,
                    }
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| bad("observable coefficients must be finite real numbers"))?;
                    if let Some((x, z, ny)) = pauli_label(label, map)? {
                        out.push(PauliTerm { x, z, ny, coeff });
                    }
                }
                Ok(out)
            }
            _ => Err(bad("an observable is a {\"<Pauli label>\": coeff} object")),
        }
    };
    let mut leaf = leaf;
    nd_array(v, &|x| x.is_object() || x.is_string(), &mut leaf, "observables")
}
