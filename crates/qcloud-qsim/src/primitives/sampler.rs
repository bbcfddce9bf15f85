//! The Sampler primitive (Qiskit SamplerV2 semantics).

use super::input::{self, as_u64};
use super::{check_size, job_rng, SimError, SimLimits};
use crate::engine::{self, CompileOptions};
use crate::ir::Circuit;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};

/// Shots of a pub when neither the pub nor the payload gives them.
pub const DEFAULT_SHOTS: u64 = 1024;

/// One sampler pub, read and validated.
#[derive(Debug, Clone)]
struct SamplerPub {
    circuit: Circuit,
    names: Vec<String>,
    shape: Vec<usize>,
    points: Vec<Vec<f64>>,
    shots: u64,
}

/// A sampler job, parsed, bound and validated: ready to run.
#[derive(Debug, Clone)]
pub struct PreparedSampler {
    pubs: Vec<SamplerPub>,
    seed: Option<u64>,
}

impl PreparedSampler {
    /// Number of circuit executions (parameter points summed over pubs).
    pub fn executions(&self) -> u64 {
        self.pubs.iter().map(|p| p.points.len() as u64).sum()
    }

    /// Number of qubits each pub simulates: the qubits its circuit acts on.
    pub fn simulated_qubits(&self) -> Vec<usize> {
        self.pubs.iter().map(|p| p.circuit.num_qubits).collect()
    }

    /// The largest state this job allocates at once, in bytes (pubs run one after another).
    pub fn memory_bytes(&self) -> u64 {
        let copies = |c: &Circuit| if c.needs_per_shot() { 2 } else { 1 };
        self.pubs.iter().map(|p| super::state_bytes(p.circuit.num_qubits, copies(&p.circuit))).max().unwrap_or(0)
    }

    /// Number of pubs (circuits).
    pub fn num_pubs(&self) -> usize {
        self.pubs.len()
    }

    /// Total shots over all pubs and points.
    pub fn total_shots(&self) -> u64 {
        self.pubs.iter().map(|p| p.shots.saturating_mul(p.points.len() as u64)).fold(0u64, u64::saturating_add)
    }
}

/// Parse, bind and validate a sampler payload.
pub fn prepare_sampler(payload: &Value, limits: &SimLimits) -> Result<PreparedSampler, SimError> {
    let pubs_json = input::pubs(payload, limits)?;
    let default_shots = match payload
        .get("shots")
        .filter(|v| !v.is_null())
        .or_else(|| payload.pointer("/options/default_shots").filter(|v| !v.is_null()))
    {
        Some(v) => as_u64(v, "shots")?,
        None => DEFAULT_SHOTS,
    };
    let seed = input::seed(payload)?;
    let mut pubs = Vec::with_capacity(pubs_json.len());
    let mut executions = 0u64;
    for (index, p) in pubs_json.iter().enumerate() {
        let items: Vec<&Value> = match p {
            Value::Array(a) => a.iter().collect(),
            // A bare circuit is a pub without parameters.
            Value::String(_) | Value::Object(_) => vec![p],
            _ => return Err(SimError::BadPayload(format!("pub {index} must be a list"))),
        };
        if items.is_empty() || items.len() > 3 {
            return Err(SimError::BadPayload(format!("pub {index} must be [circuit, parameter_values?, shots?]")));
        }
        let wide = input::read_circuit(index, items[0], limits)?;
        // Idle qubits are dropped before allocation; clbits (and so the result) are unchanged.
        let (circuit, _) = crate::compact::compact(&wide);
        let copies = if circuit.needs_per_shot() { 2 } else { 1 };
        check_size(index, &wide, circuit.num_qubits, copies, limits)?;
        let names = circuit.parameters();
        let (shape, points) =
            input::parameter_values(items.get(1).copied(), names.len(), &names).map_err(|e| prefix(index, e))?;
        let shots = match items.get(2).filter(|v| !v.is_null()) {
            Some(v) => as_u64(v, "shots").map_err(|e| prefix(index, e))?,
            None => default_shots,
        };
        if shots == 0 {
            return Err(SimError::BadPayload(format!("pub {index}: shots must be at least 1")));
        }
        if shots > limits.max_shots {
            return Err(SimError::TooLarge(format!(
                "pub {index}: {shots} shots, more than the limit of {}",
                limits.max_shots
            )));
        }
        executions = executions.saturating_add(points.len() as u64);
        if executions > limits.max_executions {
            return Err(SimError::TooLarge(format!(
                "more than {} circuit executions (parameter points over all pubs)",
                limits.max_executions
            )));
        }
        // Bind the first point now, so that a circuit the engine cannot run fails here.
        if let Some(first) = points.first() {
            let values: HashMap<String, f64> = names.iter().cloned().zip(first.iter().copied()).collect();
            engine::compile(&circuit, &values, CompileOptions::default())
                .map_err(|e| SimError::Execution { index, message: e.to_string() })?;
        }
        pubs.push(SamplerPub { circuit, names, shape, points, shots });
    }
    Ok(PreparedSampler { pubs, seed })
}

fn prefix(index: usize, e: SimError) -> SimError {
    match e {
        SimError::BadPayload(m) => SimError::BadPayload(format!("pub {index}: {m}")),
        other => other,
    }
}

/// Run a prepared sampler job: `{"pub_results": [{"shape", "data", "metadata"}, ...]}`.
pub fn run_sampler(p: &PreparedSampler) -> Result<Value, SimError> {
    let mut rng = job_rng(p.seed);
    let mut results = Vec::with_capacity(p.pubs.len());
    for (index, pb) in p.pubs.iter().enumerate() {
        let mut data = Vec::with_capacity(pb.points.len());
        for point in &pb.points {
            let values: HashMap<String, f64> = pb.names.iter().cloned().zip(point.iter().copied()).collect();
            let prog = engine::compile(&pb.circuit, &values, CompileOptions::default())
                .map_err(|e| SimError::Execution { index, message: e.to_string() })?;
            let counts = engine::run_counts(&prog, pb.shots, &mut rng);
            data.push(registers_counts(&pb.circuit, &counts));
        }
        results.push(json!({
            "shape": pb.shape,
            "data": input::nest(&pb.shape, data),
            "metadata": {"shots": pb.shots},
        }));
    }
    Ok(json!({ "pub_results": results }))
}

/// Per-register counts `{"<creg>": {"counts": {"<bitstring>": n}}}` (bit 0 rightmost).
fn registers_counts(c: &Circuit, counts: &[(Vec<bool>, u64)]) -> Value {
    let mut data = Map::new();
    for reg in &c.cregs {
        let mut reg_counts: BTreeMap<String, u64> = BTreeMap::new();
        for (bits, n) in counts {
            let s: String =
                reg.bits.iter().rev().map(|&b| if bits.get(b).copied().unwrap_or(false) { '1' } else { '0' }).collect();
            *reg_counts.entry(s).or_insert(0) += n;
        }
        data.insert(reg.name.clone(), json!({ "counts": reg_counts }));
    }
    Value::Object(data)
}
