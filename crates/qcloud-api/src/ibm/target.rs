//! IBM backend documents as pure functions of a device record: `configuration`
//! (QasmBackendConfiguration), `properties` (BackendProperties), `status` and the backends list
//! entry. A device's `config.target` (basis gates, coupling map, dt, per-gate durations and
//! errors, qubit figures) is served when present; otherwise a default is derived from
//! `num_qubits` (all-to-all coupling, basis cx/id/rz/sx/x). Every gate device reports
//! `simulator: false`: the client skips sessions on simulators.

use qcloud_service::devices::DeviceView;
use qcloud_service::{DeviceKind, DeviceStatus};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub const BACKEND_VERSION: &str = "1.0.0";
/// Date every qcloud backend reports as its `online_date` (the client needs one).
const ONLINE_DATE: &str = "2024-01-01T00:00:00Z";
/// Most shots a job may ask for.
pub const MAX_SHOTS: u64 = 100_000;
/// Most circuits in one job.
pub const MAX_EXPERIMENTS: u64 = 300;

/// Per-gate figures: duration in seconds and error probability.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
pub struct GateFigures {
    pub duration: f64,
    pub error: f64,
}

/// Per-qubit figures, in SI units.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
pub struct QubitFigures {
    pub t1: f64,
    pub t2: f64,
    pub frequency: f64,
    pub readout_error: f64,
    pub readout_length: f64,
}

impl Default for QubitFigures {
    fn default() -> Self {
        QubitFigures { t1: 100e-6, t2: 80e-6, frequency: 5.0e9, readout_error: 0.01, readout_length: 1e-6 }
    }
}

/// The `config.target` of a gate device (the shape the device half of issue 8 seeds).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Target {
    pub basis_gates: Vec<String>,
    pub coupling_map: Vec<[u32; 2]>,
    #[serde(default)]
    pub dt: Option<f64>,
    #[serde(default)]
    pub processor_type: Option<Value>,
    #[serde(default)]
    pub gates: BTreeMap<String, GateFigures>,
    #[serde(default)]
    pub qubits: Option<QubitFigures>,
}

impl Target {
    /// The device's own target, or the default for its size.
    pub fn of(d: &DeviceView) -> Target {
        d.config.get("target").and_then(|t| serde_json::from_value(t.clone()).ok()).unwrap_or_else(|| Target {
            basis_gates: ["cx", "id", "rz", "sx", "x"].map(String::from).to_vec(),
            coupling_map: all_to_all(d.num_qubits.max(0) as u32),
            dt: None,
            processor_type: None,
            gates: BTreeMap::new(),
            qubits: None,
        })
    }
}

fn all_to_all(n: u32) -> Vec<[u32; 2]> {
    (0..n).flat_map(|a| (0..n).filter(move |&b| b != a).map(move |b| [a, b])).collect()
}

/// Whether a device is an IBM backend: gate devices are, analog ones are not.
pub fn is_backend(d: &DeviceView) -> bool {
    d.kind == DeviceKind::Gate
}

/// The gates of Qiskit's standard library that a backend's target may name (the one- and
/// two-qubit gates of `qiskit.circuit.library.get_standard_gate_name_mapping()`, Qiskit 2.x):
/// name, qubits, parameter names. The facade places a gate on every qubit or on every coupling
/// pair, so gates on three or more qubits have no place in a target here (the transpiler
/// decomposes them).
pub const STANDARD_GATES: &[(&str, usize, &[&str])] = &[
    ("h", 1, &[]),
    ("id", 1, &[]),
    ("p", 1, &["theta"]),
    ("r", 1, &["theta", "phi"]),
    ("rx", 1, &["theta"]),
    ("ry", 1, &["theta"]),
    ("rz", 1, &["theta"]),
    ("s", 1, &[]),
    ("sdg", 1, &[]),
    ("sx", 1, &[]),
    ("sxdg", 1, &[]),
    ("t", 1, &[]),
    ("tdg", 1, &[]),
    ("u", 1, &["theta", "phi", "lambda"]),
    ("u1", 1, &["theta"]),
    ("u2", 1, &["phi", "lambda"]),
    ("u3", 1, &["theta", "phi", "lambda"]),
    ("x", 1, &[]),
    ("y", 1, &[]),
    ("z", 1, &[]),
    ("ch", 2, &[]),
    ("cp", 2, &["theta"]),
    ("crx", 2, &["theta"]),
    ("cry", 2, &["theta"]),
    ("crz", 2, &["theta"]),
    ("cs", 2, &[]),
    ("csdg", 2, &[]),
    ("csx", 2, &[]),
    ("cu", 2, &["theta", "phi", "lambda", "gamma"]),
    ("cu1", 2, &["theta"]),
    ("cu3", 2, &["theta", "phi", "lambda"]),
    ("cx", 2, &[]),
    ("cy", 2, &[]),
    ("cz", 2, &[]),
    ("dcx", 2, &[]),
    ("ecr", 2, &[]),
    ("iswap", 2, &[]),
    ("rxx", 2, &["theta"]),
    ("ryy", 2, &["theta"]),
    ("rzx", 2, &["theta"]),
    ("rzz", 2, &["theta"]),
    ("swap", 2, &[]),
    ("xx_minus_yy", 2, &["theta", "beta"]),
    ("xx_plus_yy", 2, &["theta", "beta"]),
];

/// Other names of standard gates, each the same operation as the gate it names: the legacy
/// `u1`, `u3`, `cu1` (Qiskit keeps them but OpenQASM 3's `stdgates.inc` lacks `cu1`, and the
/// transpiler optimises the modern ones), QDMI's `i`, OpenQASM's `phase`, `cphase`, `CX`, `cnot`.
const GATE_ALIASES: &[(&str, &str)] = &[
    ("i", "id"),
    ("u1", "p"),
    ("phase", "p"),
    ("u3", "u"),
    ("U", "u"),
    ("cu1", "cp"),
    ("cphase", "cp"),
    ("CX", "cx"),
    ("cnot", "cx"),
];

/// The standard gate a device's operation of `num_qubits` qubits is, by its name or an alias;
/// `None` for a name Qiskit's target cannot build (or one on three or more qubits, or with
/// another number of qubits than the gate's).
pub fn standard_gate(name: &str, num_qubits: usize) -> Option<&'static str> {
    let name = GATE_ALIASES.iter().find(|(alias, _)| *alias == name).map_or(name, |(_, g)| *g);
    standard(name).filter(|(_, n, _)| *n == num_qubits).map(|(g, _, _)| *g)
}

/// The [`STANDARD_GATES`] entry of `gate` (by its own name, not an alias).
fn standard(gate: &str) -> Option<&'static (&'static str, usize, &'static [&'static str])> {
    STANDARD_GATES.iter().find(|(g, _, _)| *g == gate)
}

/// Number of qubits a gate takes: the standard gates' own, else 1 (a seeded target names
/// standard gates; `ccx` and `cswap` take 3).
fn arity(gate: &str) -> usize {
    match gate {
        "ccx" | "cswap" | "ccz" | "rccx" => 3,
        _ => standard(gate).map_or(1, |(_, n, _)| *n),
    }
}

fn gate_params(gate: &str) -> Vec<&'static str> {
    standard(gate).map_or_else(Vec::new, |(_, _, p)| p.to_vec())
}

/// Default figures of a gate when the target gives none: virtual `rz` is free.
fn figures(t: &Target, gate: &str) -> GateFigures {
    t.gates.get(gate).copied().unwrap_or(match (gate, arity(gate)) {
        ("rz" | "id", _) => GateFigures { duration: if gate == "rz" { 0.0 } else { 3.2e-8 }, error: 0.0 },
        (_, 1) => GateFigures { duration: 3.2e-8, error: 2.5e-4 },
        _ => GateFigures { duration: 5.3e-7, error: 7.5e-3 },
    })
}

/// QasmBackendConfiguration.
pub fn configuration(d: &DeviceView) -> Value {
    let t = Target::of(d);
    let gates: Vec<Value> = t
        .basis_gates
        .iter()
        .filter(|g| *g != "measure")
        .map(|g| json!({"name": g, "parameters": gate_params(g), "qasm_def": "", "coupling_map": null}))
        .map(|mut g| {
            if let Some(m) = g.as_object_mut() {
                m.remove("coupling_map");
            }
            g
        })
        .collect();
    let basis: Vec<&String> = t.basis_gates.iter().filter(|g| *g != "measure").collect();
    let mut supported: Vec<String> = basis.iter().map(|g| g.to_string()).collect();
    supported.extend(["measure", "delay", "reset", "barrier", "if_else"].map(String::from));
    let mut c = json!({
        "backend_name": d.name,
        "backend_version": BACKEND_VERSION,
        "n_qubits": d.num_qubits,
        "basis_gates": basis,
        "gates": gates,
        "local": false,
        "simulator": false,
        "conditional": false,
        "open_pulse": false,
        "memory": true,
        "max_shots": MAX_SHOTS,
        "max_experiments": MAX_EXPERIMENTS,
        "coupling_map": t.coupling_map,
        "supported_instructions": supported,
        "supported_features": ["qasm3"],
        "online_date": ONLINE_DATE,
        "description": format!("qcloud {} device ({} driver)", d.kind, d.driver),
        "credits_required": false,
        "dynamic_reprate_enabled": true,
        "rep_delay_range": [0.0, 500.0],
        "default_rep_delay": 250.0,
        "multi_meas_enabled": true,
        "quantum_volume": null,
        "conditional_latency": [],
        "meas_map": [(0..d.num_qubits.max(0)).collect::<Vec<_>>()],
        "sample_name": "family: qcloud",
    });
    if let Some(dt) = t.dt {
        // IBM's configuration gives dt in nanoseconds.
        c["dt"] = json!(dt * 1e9);
        c["dtm"] = json!(dt * 1e9);
        c["timing_constraints"] =
            json!({"acquire_alignment": 16, "granularity": 16, "min_length": 64, "pulse_alignment": 16});
    }
    if let Some(p) = &t.processor_type {
        c["processor_type"] = p.clone();
    }
    c
}

fn nduv(name: &str, unit: &str, value: f64) -> Value {
    json!({"date": ONLINE_DATE, "name": name, "unit": unit, "value": value})
}

/// BackendProperties: per-qubit T1/T2/frequency/readout, per-gate error and length.
pub fn properties(d: &DeviceView) -> Value {
    let t = Target::of(d);
    let q = t.qubits.unwrap_or_default();
    let n = d.num_qubits.max(0) as u32;
    let qubits: Vec<Value> = (0..n)
        .map(|_| {
            json!([
                nduv("T1", "us", q.t1 * 1e6),
                nduv("T2", "us", q.t2 * 1e6),
                nduv("frequency", "GHz", q.frequency * 1e-9),
                nduv("readout_error", "", q.readout_error),
                nduv("prob_meas0_prep1", "", q.readout_error),
                nduv("prob_meas1_prep0", "", q.readout_error),
                nduv("readout_length", "ns", q.readout_length * 1e9),
            ])
        })
        .collect();
    let mut gates = Vec::new();
    for g in t.basis_gates.iter().filter(|g| *g != "measure") {
        let f = figures(&t, g);
        let params = json!([nduv("gate_error", "", f.error), nduv("gate_length", "ns", f.duration * 1e9)]);
        if arity(g) == 1 {
            for i in 0..n {
                gates.push(json!({"qubits": [i], "gate": g, "name": format!("{g}{i}"), "parameters": params}));
            }
        } else if arity(g) == 2 {
            for [a, b] in &t.coupling_map {
                gates.push(json!({"qubits": [a, b], "gate": g, "name": format!("{g}{a}_{b}"), "parameters": params}));
            }
        }
    }
    json!({
        "backend_name": d.name,
        "backend_version": BACKEND_VERSION,
        "last_update_date": ONLINE_DATE,
        "qubits": qubits,
        "gates": gates,
        "general": [],
    })
}

/// `GET /backends/{name}/status`: cheap, from the device row alone.
pub fn status(d: &DeviceView) -> Value {
    let (operational, msg) = match d.status {
        DeviceStatus::Online => (true, "active"),
        DeviceStatus::Paused => (false, "paused"),
        DeviceStatus::Offline => (false, "offline"),
    };
    json!({
        "backend_name": d.name,
        "backend_version": BACKEND_VERSION,
        "state": operational,
        "status": msg,
        "message": "",
        "length_queue": d.queue_length.max(0),
    })
}

/// An entry of `GET /backends`.
pub fn list_entry(d: &DeviceView) -> Value {
    let t = Target::of(d);
    let mut e = json!({
        "name": d.name,
        "status": {"name": d.status.as_str(), "reason": ""},
        "queue_length": d.queue_length.max(0),
        "qubits": d.num_qubits,
        "class": "qcloud",
        "version": BACKEND_VERSION,
        "performance": {},
        "wait_time_seconds": null,
    });
    if let Some(p) = t.processor_type {
        e["processor_type"] = p;
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use qcloud_service::{DriverKind, Timing};

    fn device(num_qubits: i32, config: Value) -> DeviceView {
        DeviceView {
            name: "dev".into(),
            kind: DeviceKind::Gate,
            driver: DriverKind::Statevector,
            status: DeviceStatus::Online,
            num_qubits,
            timing: Timing::default(),
            config,
            queue_length: 3,
            held_by_session: None,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
            agent: None,
        }
    }

    #[test]
    fn default_targets_are_all_to_all_with_the_required_keys() {
        let c = configuration(&device(3, json!({})));
        for key in [
            "backend_name",
            "backend_version",
            "n_qubits",
            "basis_gates",
            "gates",
            "local",
            "simulator",
            "conditional",
            "open_pulse",
            "memory",
            "coupling_map",
            "online_date",
        ] {
            assert!(c.get(key).is_some(), "{key}");
        }
        assert_eq!(c["simulator"], json!(false));
        assert_eq!(c["coupling_map"].as_array().unwrap().len(), 6);
        assert_eq!(c["basis_gates"], json!(["cx", "id", "rz", "sx", "x"]));
        let p = properties(&device(3, json!({})));
        assert_eq!(p["qubits"].as_array().unwrap().len(), 3);
        // 4 one-qubit gates on 3 qubits + cx on 6 pairs.
        assert_eq!(p["gates"].as_array().unwrap().len(), 4 * 3 + 6);
        assert_eq!(status(&device(3, json!({})))["length_queue"], json!(3));
    }

    #[test]
    fn device_targets_are_served_in_ibm_units() {
        let target = json!({"target": {
            "basis_gates": ["ecr", "id", "rz", "sx", "x"], "coupling_map": [[0, 1], [1, 0]], "dt": 2.2222e-10,
            "processor_type": {"family": "Eagle", "revision": 3},
            "gates": {"ecr": {"duration": 6.6e-7, "error": 0.008}, "sx": {"duration": 6e-8, "error": 0.0003}},
            "qubits": {"t1": 2.5e-4, "t2": 1.5e-4, "frequency": 4.9e9, "readout_error": 0.02, "readout_length": 1.2e-6}}});
        let d = device(2, target);
        let c = configuration(&d);
        assert_eq!(c["coupling_map"], json!([[0, 1], [1, 0]]));
        assert!((c["dt"].as_f64().unwrap() - 0.22222).abs() < 1e-9);
        assert_eq!(c["processor_type"]["family"], "Eagle");
        let p = properties(&d);
        let ecr = p["gates"].as_array().unwrap().iter().find(|g| g["name"] == "ecr0_1").unwrap();
        assert_eq!(ecr["parameters"][0]["value"], json!(0.008));
        assert!((ecr["parameters"][1]["value"].as_f64().unwrap() - 660.0).abs() < 1e-6);
        assert!((p["qubits"][0][0]["value"].as_f64().unwrap() - 250.0).abs() < 1e-9);
        assert_eq!(list_entry(&d)["processor_type"]["revision"], json!(3));
    }
}
