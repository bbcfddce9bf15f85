//! Waveform objects of the abstract repr (`_deserialize_waveform`), bound to the variables.

use crate::error::{AnalogError, Result};
use crate::expr::Vars;
use crate::waveforms::{self, check_duration, Waveform};
use serde_json::Value;

/// Composite waveforms may nest; bounded because the input is hostile.
const MAX_NESTING: usize = 16;

fn field<'a>(o: &'a Value, key: &str, kind: &str) -> Result<&'a Value> {
    o.get(key).ok_or_else(|| AnalogError::invalid(format!("{kind} waveform without '{key}'")))
}

pub fn read(o: &Value, vars: &Vars, max_duration: usize) -> Result<Waveform> {
    read_at(o, vars, max_duration, 0)
}

fn read_at(o: &Value, vars: &Vars, max: usize, depth: usize) -> Result<Waveform> {
    if depth > MAX_NESTING {
        return Err(AnalogError::invalid(format!("composite waveforms nested deeper than {MAX_NESTING} levels")));
    }
    let kind = o
        .get("kind")
        .and_then(Value::as_str)
        .ok_or_else(|| AnalogError::invalid("a waveform must be an object with a 'kind'"))?;
    let num = |key: &str| vars.finite(field(o, key, kind)?, &format!("{kind} waveform '{key}'"));
    let dur = || {
        let d = vars.int(field(o, "duration", kind)?, &format!("{kind} waveform 'duration'"))?;
        check_duration(d, max)
    };
    Ok(match kind {
        "constant" => Waveform::Constant { duration: dur()?, value: num("value")? },
        "ramp" => Waveform::ramp(dur()?, num("start")?, num("stop")?)?,
        "blackman" => Waveform::Blackman { duration: dur()?, area: num("area")? },
        "blackman_max" => waveforms::blackman_from_max_val(num("max_val")?, num("area")?, max)?,
        "kaiser" => Waveform::kaiser(dur()?, num("area")?, num("beta")?)?,
        "kaiser_max" => waveforms::kaiser_from_max_val(num("max_val")?, num("area")?, num("beta")?, max)?,
        "interpolated" => {
            let d = dur()?;
            let values = vars.finite_array(field(o, "values", kind)?, "interpolated waveform 'values'")?;
            let times = match o.get("times") {
                None | Some(Value::Null) => None,
                Some(t) => Some(vars.finite_array(t, "interpolated waveform 'times'")?),
            };
            Waveform::interpolated(d, values, times)?
        }
        "composite" => {
            let parts = field(o, "waveforms", kind)?
                .as_array()
                .ok_or_else(|| AnalogError::invalid("composite waveform: 'waveforms' must be an array"))?;
            if parts.len() > 10_000 {
                return Err(AnalogError::too_large("composite waveform of more than 10000 parts"));
            }
            let parts = parts.iter().map(|p| read_at(p, vars, max, depth + 1)).collect::<Result<Vec<_>>>()?;
            Waveform::composite(parts, max)?
        }
        "custom" => {
            let s = vars.finite_array(field(o, "samples", kind)?, "custom waveform 'samples'")?;
            check_duration(s.len() as i64, max)?;
            Waveform::Custom(s)
        }
        other => return Err(AnalogError::invalid(format!("unknown waveform kind '{other}'"))),
    })
}
