//! qcloud-analog: a neutral-atom analog emulator for Pulser sequences. [`prepare`] reads the
//! `/v1` `pulser` payload (a Pulser abstract-repr sequence, schema "1", treated as hostile input),
//! binds its variables, checks it against its own device and the device it is sent to, and builds
//! the per-ns drive samples exactly as Pulser schedules them (clock rounding, protocols, phase-jump
//! buffers with fall times, phase references). [`run`] evolves |g…g⟩ under the Rydberg
//! Hamiltonian (piecewise constant per ns, as pulser-simulation) with an exact-diagonal Strang
//! splitting whose error is bounded and measured, then samples `runs` seeded shots and, if asked,
//! the exact probabilities and occupations. A pure library: no I/O, no async.
// Denied, not forbidden: the engine's AVX2 dispatch (hamiltonian::engine) is the one allowed use.
#![deny(unsafe_code)]

pub mod device;
pub mod error;
pub mod expr;
pub mod hamiltonian;
pub mod modulation;
pub mod reader;
pub mod sample;
pub mod schedule;
pub mod waveforms;

pub use device::Device;
pub use error::AnalogError;
pub use hamiltonian::engine::EngineOptions;
pub use reader::ReadLimits;

use hamiltonian::{engine, Model};
use rand::SeedableRng;
use serde_json::{json, Map, Value};

/// What a job may ask for.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The device's atom count (`num_qubits`).
    pub max_atoms: usize,
    /// Largest allocation of the engine (`engine::bytes_needed`: 40 · 2^n bytes).
    pub max_memory_bytes: u64,
    pub max_runs: u64,
    pub read: ReadLimits,
    /// The Pulser spec of the device the job is sent to: the sequence must also fit it.
    pub target_device: Option<Device>,
    pub engine: EngineOptions,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_atoms: 64,
            max_memory_bytes: 4 << 30,
            max_runs: 1_000_000,
            read: ReadLimits::default(),
            target_device: None,
            engine: EngineOptions::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Outputs {
    counts: bool,
    probabilities: bool,
    occupation: bool,
}

/// A parsed, bound and scheduled sequence, ready to run.
#[derive(Debug, Clone)]
pub struct PreparedSequence {
    pub names: Vec<String>,
    pub model: Model,
    pub runs: u64,
    pub seed: Option<u64>,
    outputs: Outputs,
    engine: EngineOptions,
}

impl PreparedSequence {
    pub fn atoms(&self) -> usize {
        self.model.n
    }
    /// Bytes the engine allocates for this sequence.
    pub fn memory_bytes(&self) -> u64 {
        hamiltonian::engine::bytes_needed(self.model.n)
    }
    pub fn duration_ns(&self) -> usize {
        self.model.drive.duration
    }
}

const PAYLOAD_KEYS: [&str; 5] = ["sequence", "runs", "variables", "seed", "outputs"];
/// Largest sequence accepted as a JSON string.
const MAX_SEQUENCE_TEXT: usize = 32 << 20;

/// Parses and checks a `pulser` payload (see the crate doc) and builds the drive.
pub fn prepare(payload: &Value, limits: &Limits) -> Result<PreparedSequence, AnalogError> {
    let obj = payload.as_object().ok_or_else(|| AnalogError::invalid("the payload must be a JSON object"))?;
    if let Some(k) = obj.keys().find(|k| !PAYLOAD_KEYS.contains(&k.as_str())) {
        return Err(AnalogError::invalid(format!(
            "unknown payload field '{k}' (expected sequence, runs, variables, seed, outputs)"
        )));
    }
    let parsed;
    let seq = match obj.get("sequence") {
        Some(Value::String(s)) => {
            if s.len() > MAX_SEQUENCE_TEXT {
                return Err(AnalogError::too_large(format!(
                    "the sequence text is longer than {MAX_SEQUENCE_TEXT} bytes"
                )));
            }
            parsed = serde_json::from_str::<Value>(s)
                .map_err(|e| AnalogError::invalid(format!("the sequence is not valid JSON: {e}")))?;
            &parsed
        }
        Some(v @ Value::Object(_)) => v,
        Some(_) => {
            return Err(AnalogError::invalid("'sequence' must be an abstract-repr object or a JSON string of one"))
        }
        None => return Err(AnalogError::invalid("the payload has no 'sequence'")),
    };
    let runs = match obj.get("runs") {
        Some(v) => {
            v.as_u64().filter(|r| *r >= 1).ok_or_else(|| AnalogError::invalid("'runs' must be a positive integer"))?
        }
        None => return Err(AnalogError::invalid("the payload has no 'runs'")),
    };
    if runs > limits.max_runs {
        return Err(AnalogError::too_large(format!("runs = {runs} is more than the limit of {}", limits.max_runs)));
    }
    let variables = match obj.get("variables") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(_) => return Err(AnalogError::invalid("'variables' must be an object or null")),
    };
    let seed = match obj.get("seed") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| AnalogError::invalid("'seed' must be a non-negative integer"))?),
    };
    let outputs = read_outputs(obj.get("outputs"))?;

    let read = ReadLimits { max_atoms: limits.max_atoms.min(limits.read.max_atoms), ..limits.read.clone() };
    let s = reader::read(seq, variables, limits.target_device.as_ref(), &read)?;
    let n = s.names.len();
    if let Some(max) = seq.get("device").and_then(|d| d.get("max_runs")).and_then(Value::as_u64) {
        if runs > max {
            return Err(AnalogError::invalid(format!("runs = {runs} is more than the device's max_runs = {max}")));
        }
    }
    if n > limits.max_atoms {
        return Err(AnalogError::too_large(format!(
            "the register has {n} atoms, more than this device's {} atoms",
            limits.max_atoms
        )));
    }
    let bytes = engine::bytes_needed(n);
    if bytes > limits.max_memory_bytes {
        return Err(AnalogError::too_large(format!(
            "emulating {n} atoms needs {bytes} bytes (40 x 2^{n}), more than the memory limit of {} bytes",
            limits.max_memory_bytes
        )));
    }
    let c6 = s.device.c6();
    let model = Model::new(&s.coords, c6, s.drive);
    Ok(PreparedSequence { names: s.names, model, runs, seed, outputs, engine: limits.engine.clone() })
}

fn read_outputs(v: Option<&Value>) -> Result<Outputs, AnalogError> {
    let mut o = Outputs { counts: false, probabilities: false, occupation: false };
    match v {
        None | Some(Value::Null) => o.counts = true,
        Some(Value::Array(items)) => {
            for it in items {
                match it.as_str() {
                    Some("counts") => o.counts = true,
                    Some("probabilities") => o.probabilities = true,
                    Some("occupation") => o.occupation = true,
                    _ => {
                        return Err(AnalogError::invalid(format!(
                            "unknown output {it} (expected \"counts\", \"probabilities\", \"occupation\")"
                        )))
                    }
                }
            }
        }
        Some(_) => return Err(AnalogError::invalid("'outputs' must be an array")),
    }
    Ok(o)
}

/// How a run went: the Strang steps per ns and the a-priori bound of the state error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunStats {
    pub substeps: usize,
    pub error_bound: f64,
}

/// Runs a prepared sequence. `cancel` is polled after every ns of evolution.
pub fn run(p: &PreparedSequence, cancel: &dyn Fn() -> bool) -> Result<Value, AnalogError> {
    run_with_stats(p, cancel).map(|(v, _)| v)
}

/// [`run`], also returning the integrator's figures.
pub fn run_with_stats(p: &PreparedSequence, cancel: &dyn Fn() -> bool) -> Result<(Value, RunStats), AnalogError> {
    let ev = engine::evolve(&p.model, &p.engine, cancel)?;
    let stats = RunStats { substeps: ev.substeps, error_bound: ev.error_estimate };
    let n = p.model.n;
    let mut out = Map::new();
    if p.outputs.counts {
        let mut rng = match p.seed {
            Some(s) => rand_chacha::ChaCha8Rng::seed_from_u64(s),
            None => rand_chacha::ChaCha8Rng::from_entropy(),
        };
        out.insert("counter".into(), Value::Object(sample::counts(&ev.state, n, p.runs, &mut rng)));
    }
    if p.outputs.probabilities {
        out.insert("probabilities".into(), Value::Object(sample::probabilities(&ev.state, n)));
    }
    if p.outputs.occupation {
        out.insert("occupation".into(), json!(sample::occupation(&ev.state, n)));
    }
    out.insert("duration_ns".into(), json!(p.model.drive.duration));
    out.insert("atoms".into(), json!(n));
    Ok((Value::Object(out), stats))
}
