//! The Pulser abstract-repr reader (schema version "1"): top-level keys, device, register,
//! channels, variables and operations, replayed on a [`Schedule`] the way
//! `pulser.json.abstract_repr.deserializer` replays them on a `Sequence`. What the emulator does
//! not cover (digital / XY bases, EOM, DMM / SLM, `truncate`) is refused by name.

mod register;
mod waveform;

pub use register::MAX_READ_ATOMS;

use crate::device::{Channel, Device};
use crate::error::{AnalogError, Result};
use crate::expr::{self, Vars};
use crate::schedule::{Drive, Protocol, Schedule, Targets};
use crate::waveforms::Waveform;
use serde_json::Value;

/// Bounds of the reader.
#[derive(Debug, Clone)]
pub struct ReadLimits {
    /// Longest timeline (ns) and longest waveform.
    pub max_duration_ns: usize,
    /// Most operations in one sequence.
    pub max_operations: usize,
    /// Most atoms (checked before any sample is built).
    pub max_atoms: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits { max_duration_ns: 100_000, max_operations: 10_000, max_atoms: MAX_READ_ATOMS }
    }
}

/// A read sequence: the register, its device and the drive samples.
#[derive(Debug, Clone)]
pub struct Sequence {
    pub names: Vec<String>,
    pub coords: Vec<[f64; 3]>,
    pub device: Device,
    pub drive: Drive,
}

const REQUIRED: [&str; 8] =
    ["version", "name", "register", "channels", "variables", "operations", "measurement", "device"];
const OPTIONAL: [&str; 6] = ["layout", "magnetic_field", "slm_mask_targets", "metadata", "pulser_version", "$schema"];

/// Reads a sequence, binding `variables` (which may hold `qubits` for a mappable register).
/// `target` is the device the job is sent to: the sequence must also fit its limits.
pub fn read(
    seq: &Value,
    variables: Option<&serde_json::Map<String, Value>>,
    target: Option<&Device>,
    limits: &ReadLimits,
) -> Result<Sequence> {
    let obj = seq.as_object().ok_or_else(|| AnalogError::invalid("the sequence must be a JSON object"))?;
    match obj.get("version") {
        Some(Value::String(v)) if v == "1" => {}
        Some(v) => {
            return Err(AnalogError::invalid(format!(
                "unsupported abstract-repr schema version {v}: only version \"1\" is supported"
            )))
        }
        None => return Err(AnalogError::invalid("the sequence has no 'version' (abstract-repr schema version \"1\")")),
    }
    for k in REQUIRED {
        if !obj.contains_key(k) {
            return Err(AnalogError::invalid(format!("the sequence is missing the required key '{k}'")));
        }
    }
    for k in obj.keys() {
        if !REQUIRED.contains(&k.as_str()) && !OPTIONAL.contains(&k.as_str()) {
            return Err(AnalogError::invalid(format!("unknown key '{k}' in the sequence")));
        }
    }
    if obj.get("slm_mask_targets").and_then(Value::as_array).is_some_and(|a| !a.is_empty()) {
        return Err(AnalogError::invalid("SLM masks (slm_mask_targets) are not supported by this emulator"));
    }
    let device = Device::read(&obj["device"])?;

    // Variables (the job's `qubits` entry is the register mapping, not a variable).
    let mut given = variables.cloned().unwrap_or_default();
    let qubits = given.remove("qubits");
    let decls = expr::read_decls(&obj["variables"])?;
    let vars = expr::bind(&decls, Some(&given))?;

    let reg = register::read(&obj["register"], obj.get("layout"), qubits.as_ref())?;
    device.validate_register(&reg.names, &reg.coords, reg.is_3d)?;
    if let Some(t) = target {
        t.validate_register(&reg.names, &reg.coords, reg.is_3d)?;
    }
    let n = reg.names.len();
    if n > limits.max_atoms {
        return Err(AnalogError::too_large(format!(
            "the register has {n} atoms, more than this device's {} atoms",
            limits.max_atoms
        )));
    }

    let max_duration = match (device.max_sequence_duration, target.and_then(|t| t.max_sequence_duration)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let mut sched = Schedule::new(n, max_duration, limits.max_duration_ns);

    // Channels, in declaration order.
    let chans = obj["channels"].as_object().ok_or_else(|| AnalogError::invalid("'channels' must be an object"))?;
    if chans.is_empty() {
        return Err(AnalogError::invalid("the sequence declares no channel"));
    }
    let reusable = obj["device"].get("reusable_channels").and_then(Value::as_bool).unwrap_or(false);
    let mut names: Vec<(String, usize, Option<Channel>)> = Vec::new();
    for (name, id) in chans {
        let id = id
            .as_str()
            .ok_or_else(|| AnalogError::invalid(format!("channel '{name}': the channel id must be a string")))?;
        if name.starts_with("dmm_") {
            return Err(AnalogError::invalid(format!(
                "channel '{name}': DMM channels are not supported by this emulator"
            )));
        }
        let ch = device.channel(id).ok_or_else(|| AnalogError::invalid(format!("No channel {id} in the device.")))?;
        match ch.basis.as_str() {
            "ground-rydberg" => {}
            "digital" => {
                return Err(AnalogError::invalid(format!(
                    "channel '{name}' ({id}) addresses the digital basis, which this emulator does not support \
                     (ground-rydberg only)"
                )))
            }
            "XY" => {
                return Err(AnalogError::invalid(format!(
                    "channel '{name}' ({id}) addresses the XY basis, which this emulator does not support \
                     (ground-rydberg only)"
                )))
            }
            other => return Err(AnalogError::invalid(format!("channel '{name}': unknown basis '{other}'"))),
        }
        if !reusable && names.iter().any(|(_, c, _)| sched.channel(*c).id == id) {
            return Err(AnalogError::invalid(format!("Channel {id} is not available.")));
        }
        let target_ch = match target {
            Some(t) => Some(t.channel(id).cloned().ok_or_else(|| {
                AnalogError::invalid(format!("the target device '{}' has no channel '{id}'", t.name))
            })?),
            None => None,
        };
        let c = sched.declare(ch.clone());
        names.push((name.clone(), c, target_ch));
    }
    let find = |name: &Value| -> Result<usize> {
        let s = name.as_str().ok_or_else(|| AnalogError::invalid("a channel name must be a string"))?;
        names
            .iter()
            .find(|(n, _, _)| n == s)
            .map(|(_, c, _)| *c)
            .ok_or_else(|| AnalogError::invalid(format!("channel '{s}' is not declared in 'channels'")))
    };

    match &obj["measurement"] {
        Value::Null => {}
        Value::String(b) if b == "ground-rydberg" => {}
        Value::String(b) if b == "digital" || b == "XY" => {
            return Err(AnalogError::invalid(format!(
                "measurement in the {b} basis is not supported by this emulator (ground-rydberg only)"
            )))
        }
        other => return Err(AnalogError::invalid(format!("unknown measurement basis {other}"))),
    }

    let ops = obj["operations"].as_array().ok_or_else(|| AnalogError::invalid("'operations' must be an array"))?;
    if ops.len() > limits.max_operations {
        return Err(AnalogError::too_large(format!(
            "the sequence has {} operations, more than the limit of {}",
            ops.len(),
            limits.max_operations
        )));
    }
    let ctx = Ctx { vars: &vars, n, max: limits.max_duration_ns };
    for (i, op) in ops.iter().enumerate() {
        apply(&mut sched, op, &ctx, &find, &names).map_err(|e| match e {
            AnalogError::Invalid(m) => AnalogError::Invalid(format!("operation {i}: {m}")),
            AnalogError::TooLarge(m) => AnalogError::TooLarge(format!("operation {i}: {m}")),
            other => other,
        })?;
    }
    Ok(Sequence { names: reg.names, coords: reg.coords, device, drive: sched.drive() })
}

struct Ctx<'a> {
    vars: &'a Vars,
    n: usize,
    max: usize,
}

impl Ctx<'_> {
    fn index_set(&self, v: &Value, what: &str) -> Result<Targets> {
        let idx = self.vars.finite_array(v, what)?;
        let mut t: Targets = 0;
        for i in idx {
            if i.fract() != 0.0 || i < 0.0 || i >= self.n as f64 {
                return Err(AnalogError::invalid(format!(
                    "{what}: index {i} is not a qubit index of the register (0..{})",
                    self.n
                )));
            }
            t |= 1u128 << (i as usize);
        }
        Ok(t)
    }
}

fn protocol(op: &Value) -> Result<Protocol> {
    match op.get("protocol").and_then(Value::as_str) {
        Some("min-delay") => Ok(Protocol::MinDelay),
        Some("no-delay") => Ok(Protocol::NoDelay),
        Some("wait-for-all") => Ok(Protocol::WaitForAll),
        other => Err(AnalogError::invalid(format!(
            "protocol {other:?} is not one of 'min-delay', 'no-delay', 'wait-for-all'"
        ))),
    }
}

fn get<'a>(op: &'a Value, key: &str, kind: &str) -> Result<&'a Value> {
    op.get(key).ok_or_else(|| AnalogError::invalid(format!("'{kind}' operation without '{key}'")))
}

fn is_zero_duration_constant(w: &Value) -> bool {
    w.get("kind").and_then(Value::as_str) == Some("constant") && w.get("duration").and_then(Value::as_f64) == Some(0.0)
}

/// `Channel.validate_pulse`: amplitude and detuning within the channel's limits.
fn validate_pulse(ch: &Channel, amp: &[f64], det: &[f64], device: &str) -> Result<()> {
    let id = &ch.id;
    if let Some(max) = ch.max_amp {
        let peak = amp.iter().cloned().fold(f64::MIN, f64::max);
        if peak > max {
            return Err(AnalogError::invalid(format!(
                "The pulse's amplitude goes over the maximum value allowed for the chosen channel: \
                 {peak} rad/µs > max_amp = {max} rad/µs (channel '{id}' of {device})"
            )));
        }
    }
    if let Some(max) = ch.max_abs_detuning {
        let peak = det.iter().map(|d| (d.abs() * 1e6).round_ties_even() / 1e6).fold(0.0, f64::max);
        if peak > max {
            return Err(AnalogError::invalid(format!(
                "The pulse's detuning values go out of the range allowed for the chosen channel: \
                 |{peak}| rad/µs > max_abs_detuning = {max} rad/µs (channel '{id}' of {device})"
            )));
        }
    }
    let avg = amp.iter().sum::<f64>() / amp.len().max(1) as f64;
    if 0.0 < avg && avg < ch.min_avg_amp {
        return Err(AnalogError::invalid(format!(
            "The pulse's average amplitude is below the chosen channel's limit ({}).",
            ch.min_avg_amp
        )));
    }
    Ok(())
}

type Names = [(String, usize, Option<Channel>)];

fn apply(
    sched: &mut Schedule,
    op: &Value,
    ctx: &Ctx,
    find: &dyn Fn(&Value) -> Result<usize>,
    names: &Names,
) -> Result<()> {
    let kind =
        op.get("op").and_then(Value::as_str).ok_or_else(|| AnalogError::invalid("an operation needs an 'op'"))?;
    let vars = ctx.vars;
    match kind {
        "pulse" | "pulse_arbitrary_phase" => {
            let c = find(get(op, "channel", kind)?)?;
            let proto = protocol(op)?;
            let pps = vars.finite(get(op, "post_phase_shift", kind)?, "post_phase_shift")?;
            let (amp, det, phase) = if kind == "pulse" {
                let phase = vars.finite(get(op, "phase", kind)?, "phase")?;
                let a = get(op, "amplitude", kind)?;
                let d = get(op, "detuning", kind)?;
                let (amp, det) = if is_zero_duration_constant(a) {
                    let det = waveform::read(d, vars, ctx.max)?;
                    let v = vars.finite(get(a, "value", "constant")?, "amplitude value")?;
                    (Waveform::Constant { duration: det.duration(), value: v }, det)
                } else if is_zero_duration_constant(d) {
                    let amp = waveform::read(a, vars, ctx.max)?;
                    let v = vars.finite(get(d, "value", "constant")?, "detuning value")?;
                    let dur = amp.duration();
                    (amp, Waveform::Constant { duration: dur, value: v })
                } else {
                    (waveform::read(a, vars, ctx.max)?, waveform::read(d, vars, ctx.max)?)
                };
                (amp, det, phase)
            } else {
                let amp = waveform::read(get(op, "amplitude", kind)?, vars, ctx.max)?;
                let ph = waveform::read(get(op, "phase", kind)?, vars, ctx.max)?;
                let (det, phase) = arbitrary_phase(&ph)?;
                (amp, det, phase)
            };
            if amp.duration() != det.duration() {
                return Err(AnalogError::invalid("The duration of detuning and amplitude waveforms must match."));
            }
            let amp_s = amp.samples();
            if amp_s.iter().any(|&x| x < 0.0) {
                return Err(AnalogError::invalid(
                    "All samples of an amplitude waveform must be greater than or equal to zero.",
                ));
            }
            let det_s = det.samples();
            if amp_s.iter().chain(&det_s).any(|x| !x.is_finite()) {
                return Err(AnalogError::invalid("the pulse's samples are not finite numbers (NaN or infinity)"));
            }
            validate_pulse(sched.channel(c), &amp_s, &det_s, "the sequence's device")?;
            if let Some(tc) = &names.iter().find(|(_, i, _)| *i == c).and_then(|x| x.2.clone()) {
                validate_pulse(tc, &amp_s, &det_s, "the device the job is sent to")?;
                tc.validate_duration(amp_s.len() as i64)?;
            }
            sched.add_pulse(c, &amp, &det, phase, pps, proto)
        }
        "delay" => {
            let c = find(get(op, "channel", kind)?)?;
            let t = vars.int(get(op, "time", kind)?, "delay time")?;
            let at_rest = op.get("at_rest").and_then(Value::as_bool).unwrap_or(false);
            sched.delay(c, t, at_rest)
        }
        "align" => {
            let chans = get(op, "channels", kind)?
                .as_array()
                .ok_or_else(|| AnalogError::invalid("'align': 'channels' must be an array"))?;
            let mut ids = Vec::new();
            for ch in chans {
                let c = find(ch)?;
                if ids.contains(&c) {
                    return Err(AnalogError::invalid("The same channel was provided more than once."));
                }
                ids.push(c);
            }
            if ids.len() < 2 {
                return Err(AnalogError::invalid("Needs at least two channels for alignment."));
            }
            let at_rest = op.get("at_rest").and_then(Value::as_bool).unwrap_or(true);
            sched.align(&ids, at_rest)
        }
        "target" => {
            let c = find(get(op, "channel", kind)?)?;
            let t = ctx.index_set(get(op, "target", kind)?, "target")?;
            sched.target(c, t)
        }
        "phase_shift" => {
            let basis = get(op, "basis", kind)?.as_str().unwrap_or("");
            if basis != "ground-rydberg" {
                return Err(AnalogError::invalid(format!(
                    "No declared channel targets the given 'basis' ('{basis}')."
                )));
            }
            let phi = vars.finite(get(op, "phi", kind)?, "phase_shift phi")?;
            let targets = get(op, "targets", kind)?
                .as_array()
                .ok_or_else(|| AnalogError::invalid("'phase_shift': 'targets' must be an array"))?;
            let mut t: Targets = 0;
            for x in targets {
                t |= ctx.index_set(x, "phase_shift target")?;
            }
            if targets.is_empty() {
                t = if ctx.n >= 128 { u128::MAX } else { (1u128 << ctx.n) - 1 };
            }
            sched.phase_shift(phi, t);
            Ok(())
        }
        "enable_eom_mode" | "disable_eom_mode" | "add_eom_pulse" | "modify_eom_setpoint" => {
            Err(AnalogError::invalid(format!("EOM mode ('{kind}') is not supported by this emulator")))
        }
        "add_dmm_detuning" | "config_slm_mask" | "config_detuning_map" => {
            Err(AnalogError::invalid(format!("DMM / SLM operations ('{kind}') are not supported by this emulator")))
        }
        "truncate" => Err(AnalogError::invalid("'truncate' is not supported by this emulator")),
        other => Err(AnalogError::invalid(format!("unknown operation '{other}'"))),
    }
}

/// `Pulse.ArbitraryPhase`: the phase waveform becomes a detuning `-dφ/dt` and a constant phase.
fn arbitrary_phase(ph: &Waveform) -> Result<(Waveform, f64)> {
    let d = ph.duration();
    Ok(match ph {
        Waveform::Constant { value, .. } => (Waveform::Constant { duration: d, value: 0.0 }, *value),
        Waveform::Ramp { start, stop, .. } => {
            let slope = if d > 1 { (stop - start) / (d as f64 - 1.0) } else { 0.0 };
            let det = -slope * 1e3;
            (Waveform::Constant { duration: d, value: det }, start + det * 1e-3)
        }
        other => {
            let s = other.samples();
            let mut det: Vec<f64> = s.windows(2).map(|w| -(w[1] - w[0]) * 1e3).collect();
            let first = det.first().copied().unwrap_or(0.0);
            det.insert(0, first);
            (Waveform::Custom(det), s[0] + first * 1e-3)
        }
    })
}
