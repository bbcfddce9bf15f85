//! The IBM-specific part of a submit: estimator observables written for the whole backend are
//! fitted to an OpenQASM 3 circuit on physical qubits. Everything else about a pub (circuits that
//! parse, parameter shapes, observables on the right qubits, widths) is checked once, by the
//! device driver's `validate` step that every submit goes through (`qcloud_service::checks`);
//! its refusals reach the client in IBM's error shape (`jobs::submit`).

use serde_json::Value;

/// Width of an OpenQASM 3 program that addresses physical qubits (`$k`): the highest `k` plus
/// one, as the driver's reader counts it; `None` when the text names no physical qubit.
/// Comments are skipped; anything else is the driver's to judge (a wrong guess here only
/// changes which observable labels reach it, and it refuses the ones that do not fit).
fn physical_width(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    let (mut i, mut max) = (0, None::<usize>);
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 2;
            }
            b'$' => {
                let start = i + 1;
                let mut end = start;
                while end < b.len() && b[end].is_ascii_digit() {
                    end += 1;
                }
                if let Ok(k) = text[start..end].parse::<usize>() {
                    max = Some(max.map_or(k, |m: usize| m.max(k)));
                }
                i = end.max(i + 1);
            }
            _ => i += 1,
        }
    }
    max.and_then(|k| k.checked_add(1))
}

/// Observables written for the whole backend (labels of `width` > `n` characters, as
/// `apply_layout` makes them) on a circuit that names only its `n` lowest physical qubits
/// (OpenQASM 3 with `$k` qubits), labels at most the backend's `width`: the extra qubits are never
/// touched, so they stay in |0>, where `I` and `Z` are +1 and `X` and `Y` average to 0. Terms are
/// rewritten on `n` qubits exactly so.
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
/// [`fit_observables`]) on a backend of `max_qubits`; other pubs are left as they are.
pub fn fit_pubs(program: &str, payload: &mut Value, max_qubits: usize) {
    if program != "estimator" {
        return;
    }
    let Some(pubs) = payload.get_mut("pubs").and_then(Value::as_array_mut) else { return };
    for pb in pubs.iter_mut() {
        let Some(items) = pb.as_array_mut() else { continue };
        if items.len() < 2 {
            continue;
        }
        // Only circuits on physical qubits (`$k`): a circuit that declares its own register
        // has a width of its own, and a longer label is a caller mistake.
        let Some(n) = items[0].as_str().and_then(physical_width) else { continue };
        if n <= max_qubits {
            fit_observables(&mut items[1], n, max_qubits);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_width_of_a_physical_circuit_is_its_highest_qubit_plus_one() {
        assert_eq!(physical_width("OPENQASM 3.0;\nh $0;\ncx $0, $12;\n"), Some(13));
        assert_eq!(physical_width("OPENQASM 3.0;\n// $99\n/* $50 */ x $2;\n"), Some(3));
        assert_eq!(physical_width("OPENQASM 3.0;\nqubit[2] q;\nh q[0];\n"), None);
        assert_eq!(physical_width("x $;"), None);
    }

    #[test]
    fn backend_wide_observables_fit_circuits_on_physical_qubits() {
        let phys = "OPENQASM 3.0;\ninclude \"stdgates.inc\";\nh $0;\ncx $0, $1;\n";
        let mut p = json!({"pubs": [[phys, {"IIIZZ": 1.0, "IZIII": 0.5, "XIIII": 2.0, "IIIXX": -1.0}, [], 0.0],
                                    [phys, [["IIIZZ"], ["IIXII"]], [], 0.0]]});
        fit_pubs("estimator", &mut p, 5);
        assert_eq!(p["pubs"][0][1], json!({"ZZ": 1.0, "II": 0.5, "XX": -1.0}));
        assert_eq!(p["pubs"][1][1], json!([[{"ZZ": 1.0}], [{"II": 0.0}]]));
    }

    #[test]
    fn other_pubs_are_left_for_the_driver_to_judge() {
        let declared = "OPENQASM 3.0;\nqubit[2] q;\nh q[0];\n";
        let phys = "OPENQASM 3.0;\nh $0;\ncx $0, $1;\n";
        // A declared register, a label wider than the backend, a sampler: untouched.
        for (program, mut p) in [
            ("estimator", json!({"pubs": [[declared, {"ZZZ": 1.0}, [], 0.0]]})),
            ("estimator", json!({"pubs": [[phys, {"ZZZZZZ": 1.0}, [], 0.0]]})),
            ("sampler", json!({"pubs": [[phys, {"ZZZ": 1.0}, 10]]})),
        ] {
            let before = p.clone();
            fit_pubs(program, &mut p, 5);
            assert_eq!(p, before);
        }
    }
}
