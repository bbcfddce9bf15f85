//! Pure translations between IBM's Qiskit Runtime shapes and qcloud's: the job parameters the
//! client sends (RuntimeEncoder JSON) into the statevector driver's payload, the driver's results
//! into the RuntimeEncoder JSON the client's RuntimeDecoder turns into `PrimitiveResult`s, and
//! the job and session states IBM reports. No I/O; unit-tested against the fixtures.

use super::npy;
use qcloud_service::{ClosedReason, JobStatus, SessionState};
use serde_json::{json, Map, Value};

/// IBM's shots when neither a pub nor `options.default_shots` gives them.
pub const DEFAULT_SHOTS: u64 = 4096;
/// IBM's estimator precision when neither a pub nor `options.default_precision` gives it.
pub const DEFAULT_PRECISION: f64 = 0.015625;
/// Reason code with which IBM cancels a job that ran past its maximum execution time.
pub const REASON_RAN_TOO_LONG: i64 = 1305;

/// What a submitted job becomes: the driver's payload (which keeps the client's `params` verbatim
/// under `ibm_params`, for `job.inputs`) and the shots the timing model counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    pub payload: Value,
    pub shots: Option<i64>,
}

fn bad(m: impl Into<String>) -> String {
    m.into()
}

/// A pub's parameter values (null, a JSON list, or a tagged ndarray) as nested JSON lists.
pub fn parameter_values(v: &Value) -> Result<Value, String> {
    match v {
        Value::Null => Ok(json!([])),
        Value::Array(_) | Value::Number(_) => Ok(v.clone()),
        Value::Object(m) if m.get("__type__").and_then(Value::as_str) == Some("ndarray") => match m.get("__value__") {
            Some(Value::String(s)) => {
                let a = npy::decode_tagged_value(s)?;
                Ok(npy::nest(&a.shape, &a.values))
            }
            Some(list @ Value::Array(_)) => Ok(list.clone()),
            _ => Err(bad("ndarray: '__value__' must be base64 NPY data or a list")),
        },
        Value::Object(m) if m.get("__type__").and_then(Value::as_str) == Some("BindingsArray") => {
            Err(bad("parameter values as a BindingsArray are not supported; send an ndarray"))
        }
        _ => Err(bad("parameter values must be null, a list or an ndarray")),
    }
}

/// Observables as the estimator reads them: a `{label: coeff}` dict, a label, or nested lists.
fn observables(v: &Value) -> Result<Value, String> {
    match v {
        Value::Object(m) if m.get("__type__").and_then(Value::as_str) == Some("ObservablesArray") => {
            m.get("__value__").cloned().ok_or_else(|| bad("ObservablesArray without '__value__'"))
        }
        Value::Object(m) if m.get("__type__").and_then(Value::as_str) == Some("ndarray") => match m.get("__value__") {
            Some(list @ Value::Array(_)) => Ok(list.clone()),
            _ => Err(bad("observables as an ndarray must be a list of {label: coeff} objects")),
        },
        Value::Object(_) | Value::String(_) | Value::Array(_) => Ok(v.clone()),
        _ => Err(bad("observables must be a {\"<Pauli label>\": coeff} object or lists of them")),
    }
}

fn positive_int(v: &Value, what: &str) -> Result<Option<u64>, String> {
    match v {
        Value::Null => Ok(None),
        _ => match v.as_u64() {
            Some(n) if n >= 1 => Ok(Some(n)),
            _ => Err(format!("{what} must be a positive integer")),
        },
    }
}

/// Translate the `params` of `POST /jobs` for `program` (`sampler` or `estimator`).
pub fn job_params(program: &str, params: &Value) -> Result<Translated, String> {
    let Value::Object(p) = params else {
        return Err(bad("params must be an object"));
    };
    let options = match p.get("options") {
        None | Some(Value::Null) => json!({}),
        Some(o @ Value::Object(_)) => o.clone(),
        Some(_) => return Err(bad("params.options must be an object")),
    };
    let pubs = match p.get("pubs") {
        Some(Value::Array(pubs)) if !pubs.is_empty() => pubs,
        Some(Value::Array(_)) => return Err(bad("params.pubs is empty")),
        _ => return Err(bad("params.pubs must be a list of pubs")),
    };
    let mut out = Map::new();
    let mut translated = Vec::with_capacity(pubs.len());
    let mut total_shots: u64 = 0;
    match program {
        "sampler" => {
            // The schema's top-level `shots` (QRMI sends it), else the client's option, else IBM's.
            let default_shots = match positive_int(p.get("shots").unwrap_or(&Value::Null), "shots")? {
                Some(n) => n,
                None => positive_int(options.get("default_shots").unwrap_or(&Value::Null), "default_shots")?
                    .unwrap_or(DEFAULT_SHOTS),
            };
            for (i, pb) in pubs.iter().enumerate() {
                let items = match pb {
                    Value::Array(a) if (1..=3).contains(&a.len()) => a.as_slice(),
                    Value::String(_) | Value::Object(_) => std::slice::from_ref(pb),
                    _ => return Err(format!("pub {i} must be [circuit, parameter_values?, shots?]")),
                };
                let values =
                    parameter_values(items.get(1).unwrap_or(&Value::Null)).map_err(|e| format!("pub {i}: {e}"))?;
                let shots = positive_int(items.get(2).unwrap_or(&Value::Null), &format!("pub {i}: shots"))?
                    .unwrap_or(default_shots);
                total_shots = total_shots.saturating_add(shots);
                translated.push(json!([circuit(i, &items[0])?, values, shots]));
            }
            out.insert("shots".into(), json!(default_shots));
        }
        "estimator" => {
            let default_precision =
                match p.get("precision").filter(|v| !v.is_null()).or(options.get("default_precision")) {
                    None | Some(Value::Null) => DEFAULT_PRECISION,
                    Some(v) => {
                        v.as_f64().filter(|p| p.is_finite() && *p >= 0.0).ok_or("default_precision must be >= 0")?
                    }
                };
            for (i, pb) in pubs.iter().enumerate() {
                let Value::Array(items) = pb else {
                    return Err(format!("pub {i} must be [circuit, observables, parameter_values?, precision?]"));
                };
                if !(2..=4).contains(&items.len()) {
                    return Err(format!("pub {i} must be [circuit, observables, parameter_values?, precision?]"));
                }
                let obs = observables(&items[1]).map_err(|e| format!("pub {i}: {e}"))?;
                let values =
                    parameter_values(items.get(2).unwrap_or(&Value::Null)).map_err(|e| format!("pub {i}: {e}"))?;
                let precision = match items.get(3) {
                    None | Some(Value::Null) => default_precision,
                    Some(v) => v
                        .as_f64()
                        .filter(|p| p.is_finite() && *p >= 0.0)
                        .ok_or_else(|| format!("pub {i}: precision must be a number >= 0"))?,
                };
                translated.push(json!([circuit(i, &items[0])?, obs, values, precision]));
            }
            out.insert("precision".into(), json!(default_precision));
        }
        other => return Err(format!("program '{other}' is not served: use 'sampler' or 'estimator'")),
    }
    out.insert("pubs".into(), Value::Array(translated));
    out.insert("options".into(), options);
    out.insert("ibm_params".into(), params.clone());
    let shots = (program == "sampler").then(|| total_shots.min(i64::MAX as u64) as i64);
    Ok(Translated { payload: Value::Object(out), shots })
}

fn circuit(i: usize, v: &Value) -> Result<Value, String> {
    match v {
        Value::String(_) => Ok(v.clone()),
        Value::Object(m)
            if m.get("__type__").and_then(Value::as_str) == Some("QuantumCircuit")
                && m.get("__value__").is_some_and(Value::is_string) =>
        {
            Ok(v.clone())
        }
        _ => Err(format!("pub {i}: a circuit is QPY ({{\"__type__\": \"QuantumCircuit\", ...}}) or OpenQASM 3 text")),
    }
}

/// A qcloud result (the driver's JSON) as IBM's RuntimeEncoder JSON for `program`.
pub fn job_result(program: &str, result: &Value) -> Result<Value, String> {
    let pubs = result.get("pub_results").and_then(Value::as_array).ok_or("the result has no pub_results")?;
    let mut out = Vec::with_capacity(pubs.len());
    for pb in pubs {
        out.push(match program {
            "sampler" => sampler_pub(pb)?,
            "estimator" => estimator_pub(pb)?,
            other => return Err(format!("no IBM form for results of program '{other}'")),
        });
    }
    Ok(json!({"__type__": "PrimitiveResult", "__value__": {"pub_results": out, "metadata": {"version": 2}}}))
}

fn shape_of(pb: &Value) -> Result<Vec<usize>, String> {
    pb.get("shape")
        .and_then(Value::as_array)
        .ok_or("a pub result has no shape")?
        .iter()
        .map(|d| d.as_u64().map(|d| d as usize).ok_or_else(|| "a pub shape holds a non-integer".to_string()))
        .collect()
}

/// The leaves of `v` nested `depth` lists deep, row-major.
fn leaves(v: &Value, depth: usize, out: &mut Vec<Value>) -> Result<(), String> {
    if depth == 0 {
        out.push(v.clone());
        return Ok(());
    }
    for item in v.as_array().ok_or("a pub result is not nested as its shape says")? {
        leaves(item, depth - 1, out)?;
    }
    Ok(())
}

/// Deterministic shuffle (xorshift): shots come out in no particular order, as from a device.
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut s = seed | 1;
    for i in (1..items.len()).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        items.swap(i, (s % (i as u64 + 1)) as usize);
    }
}

/// Bytes of a bitstring (`"b_{n-1}...b_0"`) in BitArray layout: big-endian, clbit i in bit i%8
/// of byte `nbytes - 1 - i/8`.
fn bit_bytes(bits: &str, nbytes: usize) -> Vec<u8> {
    let mut out = vec![0u8; nbytes];
    for (i, c) in bits.bytes().rev().enumerate() {
        if c == b'1' {
            out[nbytes - 1 - i / 8] |= 1 << (i % 8);
        }
    }
    out
}

fn sampler_pub(pb: &Value) -> Result<Value, String> {
    let shape = shape_of(pb)?;
    let mut points = Vec::new();
    leaves(pb.get("data").ok_or("a sampler pub result has no data")?, shape.len(), &mut points)?;
    let shots = pb.pointer("/metadata/shots").and_then(Value::as_u64).ok_or("a sampler pub result has no shots")?;
    // Registers in the order of the first point (every point has the same ones).
    let names: Vec<String> =
        points.first().and_then(Value::as_object).map(|m| m.keys().cloned().collect()).unwrap_or_default();
    let mut fields = Map::new();
    for name in &names {
        let mut num_bits = None;
        let mut bytes = Vec::new();
        for (k, point) in points.iter().enumerate() {
            let counts = point
                .pointer(&format!("/{}/counts", name.replace('~', "~0").replace('/', "~1")))
                .and_then(Value::as_object)
                .ok_or_else(|| format!("register '{name}' has no counts"))?;
            let bits = *num_bits.get_or_insert_with(|| counts.keys().next().map(String::len).unwrap_or(0));
            let nbytes = bits.div_ceil(8);
            let mut rows: Vec<Vec<u8>> = Vec::with_capacity(shots as usize);
            for (key, n) in counts {
                if key.len() != bits || !key.bytes().all(|b| b == b'0' || b == b'1') {
                    return Err(format!("register '{name}' has a malformed bitstring"));
                }
                let row = bit_bytes(key, nbytes);
                for _ in 0..n.as_u64().ok_or("counts must be integers")? {
                    rows.push(row.clone());
                }
            }
            if rows.len() as u64 != shots {
                return Err(format!("register '{name}' has {} shots, the pub {shots}", rows.len()));
            }
            shuffle(&mut rows, shots ^ (k as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            bytes.extend(rows.into_iter().flatten());
        }
        let bits = num_bits.unwrap_or(0);
        let mut arr_shape = shape.clone();
        arr_shape.extend([shots as usize, bits.div_ceil(8)]);
        fields.insert(
            name.clone(),
            json!({"__type__": "BitArray", "__value__": {"array": npy::u8_array(&arr_shape, &bytes), "num_bits": bits}}),
        );
    }
    Ok(json!({"__type__": "SamplerPubResult", "__value__": {
        "data": {"__type__": "DataBin", "__value__": {"field_names": names, "shape": shape, "fields": fields}},
        "metadata": {"circuit_metadata": {}, "shots": shots},
    }}))
}

fn estimator_pub(pb: &Value) -> Result<Value, String> {
    let shape = shape_of(pb)?;
    let floats = |key: &str| -> Result<Vec<f64>, String> {
        let mut vals = Vec::new();
        leaves(pb.get(key).ok_or_else(|| format!("an estimator pub result has no {key}"))?, shape.len(), &mut vals)?;
        vals.iter().map(|v| v.as_f64().ok_or_else(|| format!("{key} must be numbers"))).collect()
    };
    let evs = floats("evs")?;
    let stds = floats("stds")?;
    let precision = pb.pointer("/metadata/target_precision").and_then(Value::as_f64).unwrap_or(0.0);
    Ok(json!({"__type__": "PubResult", "__value__": {
        "data": {"__type__": "DataBin", "__value__": {
            "field_names": ["evs", "stds", "ensemble_standard_error"],
            "shape": shape,
            "fields": {
                "evs": npy::f64_array(&shape, &evs),
                "stds": npy::f64_array(&shape, &stds),
                "ensemble_standard_error": npy::f64_array(&shape, &stds),
            },
        }},
        "metadata": {"target_precision": precision, "circuit_metadata": {}},
    }}))
}

/// IBM's job `state`: status, reason and reason code. A job stopped for running past its maximum
/// execution time is IBM's "Cancelled - Ran too long" (code 1305), which the client reports as an
/// error and `result()` raises as `RuntimeJobMaxTimeoutError`.
pub fn job_state(status: JobStatus, reason: Option<&str>, reason_code: Option<&str>) -> Value {
    let name = match status {
        JobStatus::Queued => "Queued",
        JobStatus::Running => "Running",
        JobStatus::Completed => "Completed",
        JobStatus::Failed if reason_code == Some("max_execution_time") => {
            return json!({"status": "Cancelled", "reason": "Ran too long", "reason_code": REASON_RAN_TOO_LONG,
                          "reason_solution": reason});
        }
        JobStatus::Failed => "Failed",
        JobStatus::Canceled => "Cancelled",
    };
    let mut state = json!({"status": name});
    if let Some(r) = reason {
        state["reason"] = json!(r);
    }
    if let Some(code) = reason_code {
        state["reason_code"] = json!(reason_number(code));
    }
    state
}

/// IBM's numeric reason codes for qcloud's reason codes (1517: invalid input, 1500: failure).
pub fn reason_number(code: &str) -> i64 {
    match code {
        "max_execution_time" => REASON_RAN_TOO_LONG,
        "invalid_input" | "too_large" | "no_driver" => 1517,
        "session_canceled" | "canceled" => 1300,
        "session_max_ttl" => 1306,
        _ => 1500,
    }
}

/// IBM's session `state`: `open` (no job started yet), `active`, `inactive`, `closed`.
pub fn session_state(state: SessionState, any_job_started: bool) -> &'static str {
    qcloud_service::views::ibm_session_state(state, any_job_started)
}

/// Why a session closed, in IBM's words (absent while open).
pub fn session_closed_reason(reason: Option<ClosedReason>) -> Option<&'static str> {
    reason.map(|r| match r {
        ClosedReason::Completed => "completed",
        ClosedReason::Canceled => "cancelled",
        ClosedReason::MaxTtl => "max_ttl_exceeded",
        ClosedReason::IdleTimeout => "interactive_ttl_exceeded",
        ClosedReason::Failed => "failed",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use std::io::Read;

    fn decode_bits(v: &Value) -> (Vec<usize>, Vec<u8>) {
        let b64 = v["__value__"].as_str().unwrap();
        let raw = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
        let mut bytes = Vec::new();
        flate2::read::ZlibDecoder::new(raw.as_slice()).read_to_end(&mut bytes).unwrap();
        let a = npy::decode(&bytes).unwrap();
        (a.shape, a.values.iter().map(|&x| x as u8).collect())
    }

    #[test]
    fn sampler_results_have_the_fixture_shape() {
        let fixture: Value = serde_json::from_str(include_str!("testdata/example_sampler_result.json")).unwrap();
        let ours = job_result(
            "sampler",
            &json!({"pub_results": [{"shape": [], "data": {"c": {"counts": {"00": 512, "11": 512}}},
                                    "metadata": {"shots": 1024}}]}),
        )
        .unwrap();
        let path = "/__value__/pub_results/0/__value__/data/__value__";
        assert_eq!(ours.pointer("/__type__"), fixture.pointer("/__type__"));
        assert_eq!(ours.pointer(&format!("{path}/field_names")), fixture.pointer(&format!("{path}/field_names")));
        assert_eq!(ours.pointer(&format!("{path}/shape")), fixture.pointer(&format!("{path}/shape")));
        let bits = format!("{path}/fields/c/__value__");
        assert_eq!(ours.pointer(&format!("{bits}/num_bits")), Some(&json!(2)));
        let (shape, bytes) = decode_bits(ours.pointer(&format!("{bits}/array")).unwrap());
        let (fshape, fbytes) = decode_bits(fixture.pointer(&format!("{bits}/array")).unwrap());
        assert_eq!(shape, fshape);
        let count = |b: &[u8], v| b.iter().filter(|&&x| x == v).count();
        assert_eq!((count(&bytes, 0), count(&bytes, 3)), (count(&fbytes, 0), count(&fbytes, 3)));
        // Shuffled: not all zeros first.
        assert_ne!(&bytes[..512], &[0u8; 512][..]);
    }

    #[test]
    fn bitarray_bytes_are_big_endian_with_clbit_0_lowest() {
        assert_eq!(bit_bytes("1", 1), vec![1]);
        assert_eq!(bit_bytes("100000000", 2), vec![1, 0]);
        assert_eq!(bit_bytes("000000011", 2), vec![0, 3]);
        let r = job_result(
            "sampler",
            &json!({"pub_results": [{"shape": [2], "data": [{"meas": {"counts": {"101": 2}}},
                                                        {"meas": {"counts": {"010": 2}}}],
                                    "metadata": {"shots": 2}}]}),
        )
        .unwrap();
        let (shape, bytes) = decode_bits(
            r.pointer("/__value__/pub_results/0/__value__/data/__value__/fields/meas/__value__/array").unwrap(),
        );
        assert_eq!(shape, vec![2, 2, 1]);
        assert_eq!(bytes, vec![5, 5, 2, 2]);
    }

    #[test]
    fn estimator_results_match_the_fixture() {
        let fixture: Value = serde_json::from_str(include_str!("testdata/example_estimator_result.json")).unwrap();
        let ours = job_result(
            "estimator",
            &json!({"pub_results": [{"shape": [], "evs": 1.0, "stds": 0.0, "metadata": {"target_precision": 0.015625}}]}),
        )
        .unwrap();
        let f = "/__value__/pub_results/0/__value__/data/__value__/fields";
        for key in ["evs", "stds", "ensemble_standard_error"] {
            let (a, b) =
                (ours.pointer(&format!("{f}/{key}")).unwrap(), fixture.pointer(&format!("{f}/{key}")).unwrap());
            let dec = |v: &Value| npy::decode_tagged_value(v["__value__"].as_str().unwrap()).unwrap();
            assert_eq!(dec(a), dec(b), "{key}");
        }
        let two = job_result(
            "estimator",
            &json!({"pub_results": [{"shape": [2], "evs": [0.5, -0.5], "stds": [0.1, 0.1], "metadata": {}}]}),
        )
        .unwrap();
        let evs =
            npy::decode_tagged_value(two.pointer(&format!("{f}/evs/__value__")).unwrap().as_str().unwrap()).unwrap();
        assert_eq!(evs, npy::Array { shape: vec![2], values: vec![0.5, -0.5] });
    }

    #[test]
    fn sampler_params_become_the_driver_payload_and_are_kept_verbatim() {
        let qc = json!({"__type__": "QuantumCircuit", "__value__": "eJw="});
        let params = json!({"pubs": [[qc, npy::f64_array(&[2, 1], &[0.1, 0.2]), null], [qc, null, 100]],
                            "options": {"default_shots": 2000}, "version": 2, "support_qiskit": true});
        let t = job_params("sampler", &params).unwrap();
        assert_eq!(t.payload["pubs"], json!([[qc, [[0.1], [0.2]], 2000], [qc, [], 100]]));
        assert_eq!(t.payload["shots"], json!(2000));
        assert_eq!(t.payload["ibm_params"], params);
        assert_eq!(t.shots, Some(2100));
        let t = job_params("sampler", &json!({"pubs": [["OPENQASM 3.0; qubit[1] q;"]]})).unwrap();
        assert_eq!(t.payload["pubs"][0][2], json!(DEFAULT_SHOTS));
        // A bare QASM string as a pub and the schema's top-level shots, as QRMI sends them.
        let t = job_params("sampler", &json!({"pubs": ["OPENQASM 3.0; qubit[1] q;"], "shots": 77})).unwrap();
        assert_eq!(t.payload["pubs"][0], json!(["OPENQASM 3.0; qubit[1] q;", [], 77]));
    }

    #[test]
    fn estimator_params_keep_observables_and_precision() {
        let qc = json!({"__type__": "QuantumCircuit", "__value__": "eJw="});
        let params = json!({"pubs": [[qc, [[{"ZZ": 1.0}], [{"XX": 0.5, "YY": -0.5}]], npy::f64_array(&[3, 1], &[1.0, 2.0, 3.0]), 0.02],
                                     [qc, {"ZZ": 1.0}, npy::f64_array(&[0], &[]), null]],
                            "options": {"default_precision": 0.01, "seed_estimator": 7}, "resilience_level": 1});
        let t = job_params("estimator", &params).unwrap();
        assert_eq!(
            t.payload["pubs"][0],
            json!([qc, [[{"ZZ": 1.0}], [{"XX": 0.5, "YY": -0.5}]], [[1.0], [2.0], [3.0]], 0.02])
        );
        assert_eq!(t.payload["pubs"][1], json!([qc, {"ZZ": 1.0}, [], 0.01]));
        assert_eq!(t.payload["options"]["seed_estimator"], json!(7));
        assert_eq!(t.shots, None);
    }

    #[test]
    fn malformed_params_are_refused() {
        let qc = json!({"__type__": "QuantumCircuit", "__value__": "eJw="});
        for (program, params) in [
            ("sampler", json!([])),
            ("sampler", json!({"pubs": []})),
            ("sampler", json!({"pubs": [[1]]})),
            ("sampler", json!({"pubs": [[qc, null, -3]]})),
            ("sampler", json!({"pubs": [[qc, {"__type__": "ndarray", "__value__": "AAAA"}]]})),
            ("sampler", json!({"pubs": [[qc]], "options": 3})),
            ("estimator", json!({"pubs": [[qc]]})),
            ("estimator", json!({"pubs": [[qc, 5]]})),
            ("estimator", json!({"pubs": [[qc, {"Z": 1.0}, null, -1.0]]})),
            ("other", json!({"pubs": [[qc]]})),
        ] {
            assert!(job_params(program, &params).is_err(), "{program} {params}");
        }
    }

    #[test]
    fn states_follow_the_design_table() {
        assert_eq!(job_state(JobStatus::Queued, None, None), json!({"status": "Queued"}));
        assert_eq!(job_state(JobStatus::Completed, None, None)["status"], "Completed");
        assert_eq!(job_state(JobStatus::Canceled, None, None)["status"], "Cancelled");
        let failed = job_state(JobStatus::Failed, Some("bad circuit"), Some("invalid_input"));
        assert_eq!(failed, json!({"status": "Failed", "reason": "bad circuit", "reason_code": 1517}));
        let timeout = job_state(JobStatus::Failed, Some("ran 2 s"), Some("max_execution_time"));
        assert_eq!((timeout["status"].clone(), timeout["reason_code"].clone()), (json!("Cancelled"), json!(1305)));
        assert_eq!(session_state(SessionState::Pending, false), "open");
        assert_eq!(session_state(SessionState::Active, true), "active");
        assert_eq!(session_state(SessionState::Inactive, true), "inactive");
        assert_eq!(session_state(SessionState::Closed, true), "closed");
        assert_eq!(session_closed_reason(Some(ClosedReason::Canceled)), Some("cancelled"));
    }
}
