//! Devices and channels as Pulser describes them (`device-schema.json`): the limits a sequence is
//! checked against, the channel timing (clock period, rise time, phase-jump time) and C6 from the
//! Rydberg level. Legacy device names resolve to Pulser 1.9's published specs.

use crate::error::{AnalogError, Result};
use serde_json::Value;

const ANALOG_DEVICE: &str = include_str!("../devices/AnalogDevice.json");
const DIGITAL_ANALOG_DEVICE: &str = include_str!("../devices/DigitalAnalogDevice.json");
const MOCK_DEVICE: &str = include_str!("../devices/MockDevice.json");

/// Pulser's coordinate precision (`COORD_PRECISION`): distances are compared to 1e-6 µm.
const COORD_TOL: f64 = 1e-6;

/// `pulser.devices.interaction_coefficients.c6_dict` (rad·µm⁶/µs), Rydberg levels 50..=100.
const C6: [f64; 51] = [
    96120.72,
    122241.6,
    154693.02,
    194740.36,
    243973.91,
    304495.01,
    378305.98,
    468027.05,
    576714.85,
    707911.38,
    865723.02,
    1054903.11,
    1281042.11,
    1550531.15,
    1870621.31,
    2249728.57,
    2697498.69,
    3224987.51,
    3844734.37,
    4571053.32,
    5420158.53,
    6410399.4,
    7562637.31,
    8900342.14,
    10449989.62,
    12241414.53,
    14308028.03,
    16687329.94,
    19421333.62,
    22557029.94,
    26146720.74,
    30248886.65,
    34928448.69,
    40257623.67,
    46316557.88,
    53194043.52,
    60988354.64,
    69808179.15,
    79773468.88,
    91016513.07,
    103677784.57,
    117933293.96,
    133943541.9,
    151907135.94,
    172036137.34,
    194562889.89,
    219741590.56,
    247850178.91,
    279192193.77,
    314098829.39,
    352931119.11,
];

/// C6 for a Rydberg level, as Pulser tabulates it.
pub fn c6(level: i64) -> Result<f64> {
    if !(50..=100).contains(&level) {
        return Err(AnalogError::invalid(format!(
            "Rydberg level {level} is not supported: it must be between 50 and 100"
        )));
    }
    Ok(C6[(level - 50) as usize])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    Global,
    Local,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Channel {
    pub id: String,
    pub basis: String,
    pub addressing: Addressing,
    pub max_amp: Option<f64>,
    pub max_abs_detuning: Option<f64>,
    pub clock_period: usize,
    pub min_duration: usize,
    pub max_duration: Option<usize>,
    pub mod_bandwidth: Option<f64>,
    pub custom_phase_jump_time: Option<usize>,
    pub min_retarget_interval: usize,
    pub fixed_retarget_t: usize,
    pub max_targets: Option<usize>,
    pub min_avg_amp: f64,
}

impl Channel {
    /// Amplitude rise time in ns: `round(0.48e3 / mod_bandwidth * sqrt(2))`, 0 without a bandwidth.
    pub fn rise_time(&self) -> usize {
        match self.mod_bandwidth {
            Some(bw) if bw > 0.0 => (0.48 / bw * 1e3 * std::f64::consts::SQRT_2).round_ties_even() as usize,
            _ => 0,
        }
    }

    pub fn phase_jump_time(&self) -> usize {
        self.custom_phase_jump_time.unwrap_or(2 * self.rise_time())
    }

    /// `Channel.validate_duration`: at least `min_duration`, at most `max_duration`, rounded up to
    /// the clock period.
    pub fn validate_duration(&self, d: i64) -> Result<usize> {
        if d < self.min_duration as i64 {
            return Err(AnalogError::invalid(format!(
                "channel '{}': duration has to be at least {} ns (got {d} ns).",
                self.id, self.min_duration
            )));
        }
        if let Some(max) = self.max_duration {
            if d > max as i64 {
                return Err(AnalogError::invalid(format!(
                    "channel '{}': duration can be at most {max} ns (got {d} ns).",
                    self.id
                )));
            }
        }
        let d = d as usize;
        let cp = self.clock_period;
        Ok(d.div_ceil(cp) * cp)
    }

    /// `_ChannelSchedule.adjust_duration`.
    pub fn adjust_duration(&self, d: i64) -> Result<usize> {
        self.validate_duration(d.max(self.min_duration as i64))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub name: String,
    pub dimensions: usize,
    pub rydberg_level: i64,
    pub min_atom_distance: f64,
    pub max_atom_num: Option<usize>,
    pub max_radial_distance: Option<f64>,
    pub max_sequence_duration: Option<usize>,
    pub channels: Vec<Channel>,
}

fn opt_f64(o: &Value, key: &str, what: &str) -> Result<Option<f64>> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let x = v.as_f64().ok_or_else(|| AnalogError::invalid(format!("{what}: '{key}' must be a number")))?;
            if !x.is_finite() || x < 0.0 {
                return Err(AnalogError::invalid(format!("{what}: '{key}' = {x} must be a non-negative number")));
            }
            Ok(Some(x))
        }
    }
}

fn opt_usize(o: &Value, key: &str, what: &str) -> Result<Option<usize>> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let x = v.as_f64().ok_or_else(|| AnalogError::invalid(format!("{what}: '{key}' must be a number")))?;
            if !(x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x <= 1e15) {
                return Err(AnalogError::invalid(format!("{what}: '{key}' = {x} must be a non-negative integer")));
            }
            Ok(Some(x as usize))
        }
    }
}

fn read_channel(c: &Value) -> Result<Channel> {
    let id =
        c.get("id").and_then(Value::as_str).ok_or_else(|| AnalogError::invalid("device channel without an 'id'"))?;
    let what = format!("device channel '{id}'");
    let basis =
        c.get("basis").and_then(Value::as_str).ok_or_else(|| AnalogError::invalid(format!("{what}: no 'basis'")))?;
    let addressing = match c.get("addressing").and_then(Value::as_str) {
        Some("Global") => Addressing::Global,
        Some("Local") => Addressing::Local,
        other => return Err(AnalogError::invalid(format!("{what}: addressing {other:?} is not 'Global' or 'Local'"))),
    };
    let clock_period = opt_usize(c, "clock_period", &what)?.unwrap_or(1);
    if clock_period == 0 || clock_period > 1_000_000 {
        return Err(AnalogError::invalid(format!(
            "{what}: 'clock_period' = {clock_period} ns is not between 1 and 1000000"
        )));
    }
    let mod_bandwidth = opt_f64(c, "mod_bandwidth", &what)?;
    if let Some(bw) = mod_bandwidth {
        // Pulser: 0 < mod_bandwidth <= the bandwidth of a 1 ns amplitude rise time.
        if bw <= 0.0 || bw > 0.48e3 * std::f64::consts::SQRT_2 {
            return Err(AnalogError::invalid(format!("{what}: 'mod_bandwidth' = {bw} MHz is out of range")));
        }
    }
    Ok(Channel {
        id: id.to_string(),
        basis: basis.to_string(),
        addressing,
        max_amp: opt_f64(c, "max_amp", &what)?,
        max_abs_detuning: opt_f64(c, "max_abs_detuning", &what)?,
        clock_period,
        min_duration: opt_usize(c, "min_duration", &what)?.unwrap_or(1),
        max_duration: opt_usize(c, "max_duration", &what)?,
        mod_bandwidth,
        custom_phase_jump_time: opt_usize(c, "custom_phase_jump_time", &what)?,
        min_retarget_interval: opt_usize(c, "min_retarget_interval", &what)?.unwrap_or(0),
        fixed_retarget_t: opt_usize(c, "fixed_retarget_t", &what)?.unwrap_or(0),
        max_targets: opt_usize(c, "max_targets", &what)?,
        min_avg_amp: opt_f64(c, "min_avg_amp", &what)?.unwrap_or(0.0),
    })
}

impl Device {
    /// A device from its abstract-repr object or a legacy name.
    pub fn read(v: &Value) -> Result<Device> {
        match v {
            Value::String(name) => Device::named(name),
            Value::Object(_) => Device::from_object(v),
            _ => Err(AnalogError::invalid("'device' must be a device object or a device name")),
        }
    }

    /// Pulser 1.9's built-in devices by name. `Chadoq2` and `IroiseMVP` were removed from Pulser
    /// (1.0), so their limits cannot be taken from the version the fixtures come from.
    pub fn named(name: &str) -> Result<Device> {
        let src = match name {
            "AnalogDevice" => ANALOG_DEVICE,
            "DigitalAnalogDevice" => DIGITAL_ANALOG_DEVICE,
            "MockDevice" => MOCK_DEVICE,
            "Chadoq2" | "IroiseMVP" => {
                return Err(AnalogError::invalid(format!(
                    "legacy device '{name}' is not supported (removed from Pulser 1.x): send the full device object"
                )))
            }
            other => {
                return Err(AnalogError::invalid(format!(
                    "unknown device name '{other}' (known: AnalogDevice, DigitalAnalogDevice, MockDevice)"
                )))
            }
        };
        let v: Value = serde_json::from_str(src).map_err(|e| AnalogError::invalid(format!("built-in device: {e}")))?;
        Device::from_object(&v)
    }

    pub fn from_object(v: &Value) -> Result<Device> {
        let name = v.get("name").and_then(Value::as_str).unwrap_or("device").to_string();
        let what = format!("device '{name}'");
        let dimensions = opt_usize(v, "dimensions", &what)?.unwrap_or(2);
        if !(dimensions == 2 || dimensions == 3) {
            return Err(AnalogError::invalid(format!("{what}: 'dimensions' must be 2 or 3")));
        }
        let rydberg_level = v
            .get("rydberg_level")
            .and_then(Value::as_i64)
            .ok_or_else(|| AnalogError::invalid(format!("{what}: 'rydberg_level' must be an integer")))?;
        c6(rydberg_level)?;
        let chans = v
            .get("channels")
            .and_then(Value::as_array)
            .ok_or_else(|| AnalogError::invalid(format!("{what}: 'channels' must be an array")))?;
        if chans.len() > 64 {
            return Err(AnalogError::invalid(format!("{what}: more than 64 channels")));
        }
        let channels = chans.iter().map(read_channel).collect::<Result<Vec<_>>>()?;
        Ok(Device {
            name,
            dimensions,
            rydberg_level,
            min_atom_distance: opt_f64(v, "min_atom_distance", &what)?.unwrap_or(0.0),
            max_atom_num: opt_usize(v, "max_atom_num", &what)?,
            max_radial_distance: opt_f64(v, "max_radial_distance", &what)?,
            max_sequence_duration: opt_usize(v, "max_sequence_duration", &what)?,
            channels,
        })
    }

    pub fn channel(&self, id: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.id == id)
    }

    pub fn c6(&self) -> f64 {
        c6(self.rydberg_level).unwrap_or(0.0)
    }

    /// `BaseDevice.validate_register`: dimensions, atom count, pairwise and radial distances.
    pub fn validate_register(&self, names: &[String], coords: &[[f64; 3]], is_3d: bool) -> Result<()> {
        let n = &self.name;
        if is_3d && self.dimensions < 3 {
            return Err(AnalogError::invalid(format!("device '{n}' supports 2D registers only, the register is 3D")));
        }
        if let Some(max) = self.max_atom_num {
            if coords.len() > max {
                return Err(AnalogError::too_large(format!(
                    "the register has {} atoms, more than the maximum number of atoms of device '{n}' (max_atom_num = {max})",
                    coords.len()
                )));
            }
        }
        for i in 0..coords.len() {
            for j in i + 1..coords.len() {
                let d = dist(&coords[i], &coords[j]);
                if d - self.min_atom_distance < -COORD_TOL || d < COORD_TOL {
                    return Err(AnalogError::invalid(format!(
                        "atoms '{}' and '{}' are {d:.6} µm apart, closer than the minimum atom distance of device '{n}' \
                         (min_atom_distance = {} µm)",
                        names[i], names[j], self.min_atom_distance
                    )));
                }
            }
            if let Some(r) = self.max_radial_distance {
                let rad = dist(&coords[i], &[0.0; 3]);
                if rad > r {
                    return Err(AnalogError::invalid(format!(
                        "atom '{}' is {rad:.6} µm from the centre, beyond the maximum radial distance of device '{n}' \
                         (max_radial_distance = {r} µm)",
                        names[i]
                    )));
                }
            }
        }
        Ok(())
    }
}

pub fn dist(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_devices_read() {
        let d = Device::named("AnalogDevice").unwrap();
        assert_eq!(d.rydberg_level, 60);
        let ch = d.channel("rydberg_global").unwrap();
        // round(0.48e3 / 8 * sqrt 2) = round(84.85) = 85 ns; phase jump 170 ns (§7.2).
        assert_eq!(ch.rise_time(), 85);
        assert_eq!(ch.phase_jump_time(), 170);
        assert_eq!(ch.validate_duration(401).unwrap(), 404);
        assert!(ch.validate_duration(-4).is_err());
        assert_eq!(Device::named("MockDevice").unwrap().dimensions, 3);
        assert!(Device::named("Chadoq2").unwrap_err().to_string().contains("Chadoq2"));
        assert_eq!(c6(70).unwrap(), 5420158.53);
        assert!(c6(49).is_err());
    }
}
