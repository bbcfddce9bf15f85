//! Submit-time checks of a translated IBM job: every circuit is read (QPY or OpenQASM), and the
//! parameter values and observables of each pub must fit it. A caller mistake found here is a
//! 400 with nothing stored, rather than a job that fails later. Reading only: the driver still
//! prepares (binds, sizes, compiles) the job on the worker pool.

use base64::Engine as _;
use qcloud_qsim::{Circuit, ReadLimits};
use serde_json::Value;
use std::io::Read;

/// Largest decoded circuit, in bytes.
const MAX_CIRCUIT_BYTES: usize = 8 << 20;

fn read_circuit(i: usize, v: &Value, max_qubits: usize) -> Result<Circuit, String> {
    let limits = ReadLimits { max_qubits: max_qubits.max(1), ..ReadLimits::default() };
    let wrap = |e: qcloud_qsim::ReadError| format!("pub {i}: cannot read the circuit: {e}");
    match v {
        Value::String(text) => {
            let is_qasm2 = text.trim_start().starts_with("OPENQASM 2") && !text.contains("\"stdgates.inc\"");
            if is_qasm2 {
                qcloud_qsim::qasm2::parse(text, &limits).map_err(wrap)
            } else {
                qcloud_qsim::qasm3::parse(text, &limits).map_err(wrap)
            }
        }
        Value::Object(m) => {
            let b64 = m.get("__value__").and_then(Value::as_str).unwrap_or_default();
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| format!("pub {i}: the QPY circuit is not base64: {e}"))?;
            let mut bytes = Vec::new();
            flate2::read::ZlibDecoder::new(raw.as_slice())
                .take(MAX_CIRCUIT_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| format!("pub {i}: the QPY circuit is not zlib data: {e}"))?;
            if bytes.len() > MAX_CIRCUIT_BYTES {
                return Err(format!("pub {i}: the QPY circuit exceeds {MAX_CIRCUIT_BYTES} bytes"));
            }
            let mut circuits = qcloud_qsim::qpy::parse(&bytes, &limits).map_err(wrap)?;
            if circuits.is_empty() {
                return Err(format!("pub {i}: the QPY data holds no circuit"));
            }
            Ok(circuits.swap_remove(0))
        }
        _ => Err(format!("pub {i}: a circuit is QPY or OpenQASM 3 text")),
    }
}

/// Shape of nested lists, following the first element at every level.
fn shape(v: &Value, is_leaf: &dyn Fn(&Value) -> bool) -> Vec<usize> {
    let mut out = Vec::new();
    let mut cur = v;
    while let Value::Array(a) = cur {
        if is_leaf(cur) {
            break;
        }
        out.push(a.len());
        match a.first() {
            Some(f) => cur = f,
            None => break,
        }
    }
    out
}

fn broadcasts(a: &[usize], b: &[usize]) -> bool {
    a.iter().rev().zip(b.iter().rev()).all(|(&x, &y)| x == y || x == 1 || y == 1)
}

fn check_params(i: usize, values: &Value, c: &Circuit) -> Result<Vec<usize>, String> {
    let mut s = shape(values, &|_| false);
    let names = c.parameters();
    let last = if s.is_empty() { 0 } else { s.pop().unwrap_or(0) };
    if last != names.len() {
        return Err(format!(
            "pub {i}: the circuit has {} parameter(s) [{}] but the parameter values' last axis has {last}",
            names.len(),
            names.join(", ")
        ));
    }
    Ok(s)
}

fn check_label(i: usize, label: &str, n: usize) -> Result<(), String> {
    if label.chars().count() != n || !label.chars().all(|c| matches!(c, 'I' | 'X' | 'Y' | 'Z')) {
        let shown: String = label.chars().take(40).collect();
        return Err(format!(
            "pub {i}: observable '{shown}' must be a Pauli label of {n} characters (I, X, Y, Z), one per circuit qubit"
        ));
    }
    Ok(())
}

fn check_observables(i: usize, v: &Value, n: usize) -> Result<Vec<usize>, String> {
    fn walk(i: usize, v: &Value, n: usize) -> Result<(), String> {
        match v {
            Value::String(s) => check_label(i, s, n),
            Value::Object(m) => m.keys().try_for_each(|k| check_label(i, k, n)),
            Value::Array(items) => items.iter().try_for_each(|x| walk(i, x, n)),
            _ => Err(format!("pub {i}: observables must be Pauli labels or {{label: coeff}} objects")),
        }
    }
    walk(i, v, n)?;
    Ok(shape(v, &|x| !x.is_array()))
}

/// Observables written for the whole backend (labels of `width` > `n` characters, as
/// `apply_layout` makes them) on a circuit that names only its `n` lowest physical qubits
/// (OpenQASM 3 with `$k` qubits), labels at most the backend's `width`: the extra qubits are never touched, so they stay in |0>, where
/// `I` and `Z` are +1 and `X` and `Y` average to 0. Terms are rewritten on `n` qubits exactly so.
fn fit_observables(v: &mut Value, n: usize, width: usize) {
    fn fit_dict(m: &serde_json::Map<String, Value>, n: usize) -> Value {
        let mut out = serde_json::Map::new();
        for (label, coeff) in m {
            let chars: Vec<char> = label.chars().collect();
            if chars.len() <= n {
                out.insert(label.clone(), coeff.clone());
                continue;
            }
            let (high, low) = chars.split_at(chars.len() - n);
            if high.iter().any(|c| matches!(c, 'X' | 'Y')) {
                continue;
            }
            let key: String = low.iter().collect();
            let add = coeff.as_f64().unwrap_or(0.0);
            let sum = out.get(&key).and_then(Value::as_f64).unwrap_or(0.0) + add;
            out.insert(key, serde_json::json!(sum));
        }
        if out.is_empty() {
            out.insert("I".repeat(n), serde_json::json!(0.0));
        }
        Value::Object(out)
    }
    match v {
        Value::String(label) if label.chars().count() > n && label.chars().count() <= width => {
            let mut m = serde_json::Map::new();
            m.insert(label.clone(), serde_json::json!(1.0));
            *v = fit_dict(&m, n);
        }
        Value::Object(m) if m.keys().any(|k| k.chars().count() > n) && m.keys().all(|k| k.chars().count() <= width) => {
            *v = fit_dict(m, n)
        }
        Value::Array(items) => items.iter_mut().for_each(|x| fit_observables(x, n, width)),
        _ => {}
    }
}

/// Rewrite estimator observables that span more qubits than their OpenQASM circuit names (see
/// [`fit_observables`]); other pubs are left as they are.
pub fn fit_pubs(program: &str, payload: &mut Value, max_qubits: usize) {
    if program != "estimator" {
        return;
    }
    let Some(pubs) = payload.get_mut("pubs").and_then(Value::as_array_mut) else { return };
    for (i, pb) in pubs.iter_mut().enumerate() {
        let Some(items) = pb.as_array_mut() else { continue };
        // Only circuits on physical qubits (`$k`): a circuit that declares its own register
        // has a width of its own, and a longer label is a caller mistake.
        let physical = items
            .first()
            .and_then(Value::as_str)
            .is_some_and(|t| t.as_bytes().windows(2).any(|w| w[0] == b'$' && w[1].is_ascii_digit()));
        if !physical || items.len() < 2 {
            continue;
        }
        if let Ok(c) = read_circuit(i, &items[0], max_qubits) {
            if c.num_qubits > 0 {
                fit_observables(&mut items[1], c.num_qubits, max_qubits);
            }
        }
    }
}

/// Check the pubs of a translated payload for `program` against devices of `max_qubits`.
pub fn pubs(program: &str, payload: &Value, max_qubits: usize) -> Result<(), String> {
    let pubs = payload.get("pubs").and_then(Value::as_array).ok_or("params.pubs must be a list")?;
    for (i, pb) in pubs.iter().enumerate() {
        let items = pb.as_array().ok_or_else(|| format!("pub {i} must be a list"))?;
        let c = read_circuit(i, items.first().unwrap_or(&Value::Null), max_qubits)?;
        if c.num_qubits > max_qubits {
            return Err(format!("pub {i}: the circuit has {} qubits, the backend {max_qubits}", c.num_qubits));
        }
        match program {
            "sampler" => {
                check_params(i, items.get(1).unwrap_or(&Value::Null), &c)?;
            }
            _ => {
                let obs_shape = check_observables(i, items.get(1).unwrap_or(&Value::Null), c.num_qubits)?;
                let param_shape = check_params(i, items.get(2).unwrap_or(&Value::Null), &c)?;
                if !broadcasts(&obs_shape, &param_shape) {
                    return Err(format!(
                        "pub {i}: observables of shape {obs_shape:?} and parameter values of shape {param_shape:?} do not broadcast"
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BELL: &str =
        "OPENQASM 3.0;\ninclude \"stdgates.inc\";\nqubit[2] q;\nbit[2] c;\nh q[0];\ncx q[0], q[1];\nc = measure q;\n";
    const ROT: &str = "OPENQASM 3.0;\ninclude \"stdgates.inc\";\ninput float theta;\nqubit[1] q;\nrx(theta) q[0];\n";

    #[test]
    fn fitting_pubs_pass() {
        pubs("sampler", &json!({"pubs": [[BELL, [], 100]]}), 5).unwrap();
        pubs("sampler", &json!({"pubs": [[ROT, [[0.1], [0.2]], 100]]}), 5).unwrap();
        pubs("estimator", &json!({"pubs": [[ROT, [{"Z": 1.0}, {"X": 1.0}], [[0.1], [0.2]], 0.0]]}), 5).unwrap();
    }

    #[test]
    fn backend_wide_observables_fit_circuits_on_physical_qubits() {
        let phys = "OPENQASM 3.0;\ninclude \"stdgates.inc\";\nh $0;\ncx $0, $1;\n";
        let mut p = json!({"pubs": [[phys, {"IIIZZ": 1.0, "IZIII": 0.5, "XIIII": 2.0, "IIIXX": -1.0}, [], 0.0],
                                    [phys, [["IIIZZ"], ["IIXII"]], [], 0.0]]});
        fit_pubs("estimator", &mut p, 5);
        assert_eq!(p["pubs"][0][1], json!({"ZZ": 1.0, "II": 0.5, "XX": -1.0}));
        assert_eq!(p["pubs"][1][1], json!([[{"ZZ": 1.0}], [{"II": 0.0}]]));
        pubs("estimator", &p, 5).unwrap();
    }

    #[test]
    fn mismatched_pubs_are_refused_with_the_reason() {
        let e = pubs("sampler", &json!({"pubs": [[ROT, [[0.1, 0.2]], 100]]}), 5).unwrap_err();
        assert!(e.contains("1 parameter(s) [theta]") && e.contains("has 2"), "{e}");
        let e = pubs("estimator", &json!({"pubs": [[BELL, {"ZZZ": 1.0}, [], 0.0]]}), 5).unwrap_err();
        assert!(e.contains("2 characters"), "{e}");
        let e =
            pubs("estimator", &json!({"pubs": [[ROT, [{"Z": 1.0}, {"X": 1.0}, {"Y": 1.0}], [[0.1], [0.2]], 0.0]]}), 5)
                .unwrap_err();
        assert!(e.contains("do not broadcast"), "{e}");
        let e = pubs("sampler", &json!({"pubs": [[BELL, [], 100]]}), 1).unwrap_err();
        assert!(e.contains("qubits"), "{e}");
        let garbage = json!({"__type__": "QuantumCircuit", "__value__": "bm90IHpsaWI="});
        let e = pubs("sampler", &json!({"pubs": [[garbage, [], 1]]}), 5).unwrap_err();
        assert!(e.contains("zlib"), "{e}");
    }
}
