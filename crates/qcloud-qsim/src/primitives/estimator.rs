//! The Estimator primitive (Qiskit EstimatorV2 semantics): exact expectation values of Pauli sums,
//! with optional Gaussian noise of standard deviation `precision`.

use super::input::{self, Observable};
use super::{check_size, job_rng, SimError, SimLimits};
use crate::engine::{self, kernels, CompileOptions, StateVector};
use crate::ir::Circuit;
use rand::Rng;
use serde_json::{json, Value};
use std::collections::HashMap;

#[derive(Debug, Clone)]
struct EstimatorPub {
    circuit: Circuit,
    names: Vec<String>,
    shape: Vec<usize>,
    param_shape: Vec<usize>,
    points: Vec<Vec<f64>>,
    obs_shape: Vec<usize>,
    observables: Vec<Observable>,
    precision: f64,
}

/// An estimator job, parsed, bound and validated: ready to run.
#[derive(Debug, Clone)]
pub struct PreparedEstimator {
    pubs: Vec<EstimatorPub>,
    seed: Option<u64>,
}

impl PreparedEstimator {
    /// Number of qubits each pub simulates: the qubits its circuit acts on.
    pub fn simulated_qubits(&self) -> Vec<usize> {
        self.pubs.iter().map(|p| p.circuit.num_qubits).collect()
    }

    /// The largest state this job allocates at once, in bytes (pubs run one after another).
    pub fn memory_bytes(&self) -> u64 {
        self.pubs.iter().map(|p| super::state_bytes(p.circuit.num_qubits, 1)).max().unwrap_or(0)
    }

    /// Number of pubs (circuits).
    pub fn num_pubs(&self) -> usize {
        self.pubs.len()
    }

    /// Number of circuit executions (distinct parameter points summed over pubs).
    pub fn executions(&self) -> u64 {
        self.pubs.iter().map(|p| p.points.len() as u64).sum()
    }
}

fn precision_value(v: Option<&Value>, what: &str) -> Result<Option<f64>, SimError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(p) if p.is_finite() && p >= 0.0 => Ok(Some(p)),
            _ => Err(SimError::BadPayload(format!("{what} must be a non-negative number"))),
        },
    }
}

/// Parse, bind and validate an estimator payload.
pub fn prepare_estimator(payload: &Value, limits: &SimLimits) -> Result<PreparedEstimator, SimError> {
    let pubs_json = input::pubs(payload, limits)?;
    let default_precision = match precision_value(payload.get("precision"), "precision")? {
        Some(p) => p,
        None => precision_value(payload.pointer("/options/default_precision"), "precision")?.unwrap_or(0.0),
    };
    let seed = input::seed(payload)?;
    let mut pubs = Vec::with_capacity(pubs_json.len());
    let mut executions = 0u64;
    for (index, p) in pubs_json.iter().enumerate() {
        let Value::Array(items) = p else {
            return Err(SimError::BadPayload(format!(
                "pub {index} must be [circuit, observables, parameter_values?, precision?]"
            )));
        };
        if items.len() < 2 || items.len() > 4 {
            return Err(SimError::BadPayload(format!(
                "pub {index} must be [circuit, observables, parameter_values?, precision?]"
            )));
        }
        let wide = input::read_circuit(index, &items[0], limits)?;
        // Idle qubits are dropped before allocation; observables are read on the circuit's full
        // width and act as on |0> on the dropped qubits.
        let (circuit, map) = crate::compact::compact(&wide);
        check_size(index, &wide, circuit.num_qubits, 1, limits)?;
        let bad = |e: SimError| match e {
            SimError::BadPayload(m) => SimError::BadPayload(format!("pub {index}: {m}")),
            other => other,
        };
        let obs = input::observables(&items[1], &map).map_err(bad)?;
        let names = circuit.parameters();
        let (param_shape, points) = input::parameter_values(items.get(2), names.len(), &names).map_err(bad)?;
        let shape = input::broadcast(&param_shape, &obs.shape).ok_or_else(|| {
            SimError::BadPayload(format!(
                "pub {index}: observables of shape {:?} and parameter values of shape {:?} \
                 do not broadcast",
                obs.shape, param_shape
            ))
        })?;
        let precision = precision_value(items.get(3), "precision").map_err(bad)?.unwrap_or(default_precision);
        let size: usize = shape.iter().product();
        executions = executions.saturating_add(size as u64);
        if executions > limits.max_executions {
            return Err(SimError::TooLarge(format!(
                "more than {} circuit executions (broadcast points over all pubs)",
                limits.max_executions
            )));
        }
        let opts = CompileOptions { fuse: true, drop_measurements: true };
        if let Some(first) = points.first() {
            let values: HashMap<String, f64> = names.iter().cloned().zip(first.iter().copied()).collect();
            let prog = engine::compile(&circuit, &values, opts)
                .map_err(|e| SimError::Execution { index, message: e.to_string() })?;
            if !prog.is_static() {
                return Err(SimError::Unsupported(format!(
                    "pub {index}: the estimator does not run circuits with resets or \
                     classically conditioned operations"
                )));
            }
        }
        pubs.push(EstimatorPub {
            circuit,
            names,
            shape,
            param_shape,
            points,
            obs_shape: obs.shape,
            observables: obs.items,
            precision,
        });
    }
    Ok(PreparedEstimator { pubs, seed })
}

/// A standard normal draw (Box-Muller).
fn normal<R: Rng>(rng: &mut R) -> f64 {
    let u1: f64 = 1.0 - rng.gen::<f64>();
    let u2: f64 = rng.gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Run a prepared estimator job: `{"pub_results": [{"shape", "evs", "stds", "metadata"}, ...]}`.
pub fn run_estimator(p: &PreparedEstimator) -> Result<Value, SimError> {
    let mut rng = job_rng(p.seed);
    let mut results = Vec::with_capacity(p.pubs.len());
    let opts = CompileOptions { fuse: true, drop_measurements: true };
    for (index, pb) in p.pubs.iter().enumerate() {
        let size: usize = pb.shape.iter().product();
        // Group the broadcast points by parameter point: one simulation per parameter point.
        let mut by_point: Vec<Vec<(usize, usize)>> = vec![Vec::new(); pb.points.len()];
        for flat in 0..size {
            let idx = input::unravel(&pb.shape, flat);
            let pi = input::broadcast_index(&pb.param_shape, &idx);
            let oi = input::broadcast_index(&pb.obs_shape, &idx);
            if let Some(v) = by_point.get_mut(pi) {
                v.push((flat, oi));
            }
        }
        let mut evs = vec![0.0f64; size];
        for (pi, targets) in by_point.iter().enumerate() {
            if targets.is_empty() {
                continue;
            }
            let values: HashMap<String, f64> = pb.names.iter().cloned().zip(pb.points[pi].iter().copied()).collect();
            let prog = engine::compile(&pb.circuit, &values, opts)
                .map_err(|e| SimError::Execution { index, message: e.to_string() })?;
            let mut sv = StateVector::zero(prog.num_qubits);
            sv.apply_unitaries(&prog.ops);
            let par = sv.n >= engine::PAR_QUBITS;
            let mut cache: HashMap<usize, f64> = HashMap::new();
            for &(flat, oi) in targets {
                let ev = match cache.get(&oi) {
                    Some(v) => *v,
                    None => {
                        let obs = pb.observables.get(oi).map(Vec::as_slice).unwrap_or(&[]);
                        let v: f64 = obs
                            .iter()
                            .map(|t| t.coeff * kernels::pauli_expectation(&sv.amps, t.x, t.z, t.ny, par))
                            .sum();
                        cache.insert(oi, v);
                        v
                    }
                };
                evs[flat] = ev;
            }
        }
        if pb.precision > 0.0 {
            for ev in evs.iter_mut() {
                *ev += pb.precision * normal(&mut rng);
            }
        }
        let stds = vec![json!(pb.precision); size];
        let evs: Vec<Value> = evs.into_iter().map(|v| json!(v)).collect();
        results.push(json!({
            "shape": pb.shape,
            "evs": input::nest(&pb.shape, evs),
            "stds": input::nest(&pb.shape, stds),
            "metadata": {"target_precision": pb.precision},
        }));
    }
    Ok(json!({ "pub_results": results }))
}
