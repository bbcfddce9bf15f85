//! Devices are data (docs/architecture.md): a `devices.toml` lists the devices a server makes sure exist
//! at start-up, and an empty database without such a file gets [`default_devices`].
//!
//! ```toml
//! [[device]]
//! name = "sim_small"
//! kind = "gate"                 # gate | analog
//! driver = "statevector"        # noop | statevector | analog | agent
//! num_qubits = 20
//! status = "online"             # optional: online | paused | offline
//! timing = { setup_ms = 5, per_shot_ms = 0.01 }   # optional
//! config = { seed = 7 }         # optional: the driver's JSON config, as a TOML table
//! target = "heavy-hex"          # optional, gate devices: config.target (see below)
//! ```
//!
//! `target` gives a gate device the target a transpiler needs (`config.target`, the shape of
//! [`qcloud_devices::target::Target`]): `"heavy-hex"` generates IBM's heavy-hex lattice (rows of
//! 15, as Eagle; `num_qubits` one of 32, 51, 70, 89, 108, 127, 146, ...) with basis
//! `ecr, id, rz, sx, x` and synthetic Eagle-like figures, or a table gives the target in full.
//!
//! A listed device that already exists is left as it is (an admin may have changed it since).

use qcloud_core::model::{DeviceKind, DeviceStatus, DriverKind, Timing};
use qcloud_devices::target::{self, Target};
use qcloud_service::devices::AddDevice;
use qcloud_service::{Service, ServiceError};
use serde::Deserialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use tracing::info;

/// One device of a devices file (or of the built-in defaults).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSpec {
    pub name: String,
    pub kind: DeviceKind,
    pub driver: DriverKind,
    pub num_qubits: i32,
    #[serde(default)]
    pub status: Option<DeviceStatus>,
    #[serde(default)]
    pub timing: Option<Timing>,
    /// The driver's configuration (a JSON object; a TOML table in the file).
    #[serde(default)]
    pub config: Option<serde_json::Map<String, serde_json::Value>>,
    /// `config.target`: `"heavy-hex"` (generated for `num_qubits`) or the target in full.
    #[serde(default)]
    pub target: Option<serde_json::Value>,
}

/// Why a devices file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("reading the devices file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("devices file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("devices file {path}: unknown top-level key `{key}` (the file holds [[device]] tables only)")]
    UnknownKey { path: PathBuf, key: String },
    #[error("devices file {path}: `device` must be an array of tables ([[device]] entries)")]
    NotAList { path: PathBuf },
    #[error("devices file {path}: device {device}: {field}: {message}")]
    Field { path: PathBuf, device: String, field: String, message: String },
    #[error("devices file {path}: device `{name}` is listed twice")]
    Duplicate { path: PathBuf, name: String },
    #[error("seeding device `{device}`: {source}")]
    Create { device: String, source: ServiceError },
}

/// Pulser device specs the analog seeds serve (`config.pulser_device`), as Pulser wrote them.
const ANALOG_DEVICE_SPEC: &str = include_str!("../../qcloud-analog/devices/AnalogDevice.json");
const MOCK_DEVICE_SPEC: &str = include_str!("../../qcloud-analog/devices/MockDevice.json");

/// An analog device of the seeds: its Pulser spec in `config.pulser_device`.
fn analog(name: &str, atoms: i32, spec: &str, timing: Option<Timing>) -> DeviceSpec {
    let mut config = serde_json::Map::new();
    // The specs are compiled in and parsed by a unit test, so they are valid JSON.
    config.insert("pulser_device".into(), serde_json::from_str(spec).unwrap_or_default());
    DeviceSpec {
        name: name.into(),
        kind: DeviceKind::Analog,
        driver: DriverKind::Analog,
        num_qubits: atoms,
        status: None,
        timing,
        config: Some(config),
        target: None,
    }
}

/// The shorthand of a generated heavy-hex target.
pub const HEAVY_HEX: &str = "heavy-hex";

/// The target a device spec asks for, expanded and checked.
fn expand_target(d: &DeviceSpec) -> Result<Option<Target>, String> {
    let Some(t) = &d.target else { return Ok(None) };
    if d.kind != DeviceKind::Gate {
        return Err("only gate devices have a target".into());
    }
    if d.config.as_ref().is_some_and(|c| c.contains_key("target")) {
        return Err("give the target once: as `target` or as `config.target`, not both".into());
    }
    let n = u32::try_from(d.num_qubits).unwrap_or(0);
    let t = match t {
        serde_json::Value::String(s) if s == HEAVY_HEX => target::eagle_like(n).ok_or_else(|| {
            let sizes: Vec<String> = (2..=9).map(|r| target::heavy_hex(r, 15).0.to_string()).collect();
            format!("\"{HEAVY_HEX}\" has {} qubits (rows of 15), not {n}", sizes.join(", ") + ", ...")
        })?,
        serde_json::Value::String(s) => return Err(format!("unknown target \"{s}\": \"{HEAVY_HEX}\" or a table")),
        v => serde_json::from_value(v.clone()).map_err(|e| e.to_string())?,
    };
    t.validate(n)?;
    Ok(Some(t))
}

/// The QPU-like time model of `heavyhex_127`: 150 ms of classical preparation per job and 20 ms
/// per circuit (on the worker pool: hidden behind device time in a batch), then 100 ms of setup
/// and 0.1 ms per shot on the device. Synthetic figures of the order of a real QPU's.
pub const HEAVYHEX_127_TIMING: Timing =
    Timing { setup_ms: 100.0, per_shot_ms: 0.1, prep_ms: 150.0, prep_per_circuit_ms: 20.0 };

/// The devices an empty database starts with when no devices file is given: four noop devices,
/// a state-vector simulator, `heavyhex_127` (a state-vector device shaped like an IBM Eagle QPU:
/// a generated 127-qubit heavy-hex target in `config.target`, ISA circuits only, idle qubits not
/// simulated, [`HEAVYHEX_127_TIMING`]), and three neutral-atom devices named like Pasqal's: `EMU_FREE`
/// (exact, up to 12 atoms) and `EMU_SV` (exact, as many atoms as memory allows) with the
/// permissive MockDevice spec, and `FRESNEL` with AnalogDevice's limits and a QPU-like timing
/// model (a setup per job and 200 ms per run).
pub fn default_devices() -> Vec<DeviceSpec> {
    let gate = |name: String, driver, num_qubits| DeviceSpec {
        name,
        kind: DeviceKind::Gate,
        driver,
        num_qubits,
        status: None,
        timing: None,
        config: None,
        target: None,
    };
    let mut seeds: Vec<DeviceSpec> = (1..=4).map(|i| gate(format!("noop_{i}"), DriverKind::Noop, 127)).collect();
    seeds.push(gate("sim_statevector".into(), DriverKind::Statevector, 28));
    seeds.push(DeviceSpec {
        target: Some(serde_json::Value::String(HEAVY_HEX.into())),
        timing: Some(HEAVYHEX_127_TIMING),
        ..gate("heavyhex_127".into(), DriverKind::Statevector, 127)
    });
    seeds.push(analog("EMU_FREE", 12, MOCK_DEVICE_SPEC, None));
    seeds.push(analog("EMU_SV", 26, MOCK_DEVICE_SPEC, None));
    seeds.push(analog(
        "FRESNEL",
        25,
        ANALOG_DEVICE_SPEC,
        Some(Timing { setup_ms: 1000.0, per_shot_ms: 200.0, ..Timing::default() }),
    ));
    seeds
}

/// Read and check a devices file.
pub fn load_file(path: &Path) -> Result<Vec<DeviceSpec>, SeedError> {
    let text = std::fs::read_to_string(path).map_err(|source| SeedError::Read { path: path.into(), source })?;
    parse(path, &text)
}

/// Parse and check the text of a devices file (`path` only names it in errors).
pub fn parse(path: &Path, text: &str) -> Result<Vec<DeviceSpec>, SeedError> {
    let table: toml::Table =
        toml::from_str(text).map_err(|e| SeedError::Syntax { path: path.into(), message: e.to_string() })?;
    if let Some(key) = table.keys().find(|k| *k != "device") {
        return Err(SeedError::UnknownKey { path: path.into(), key: key.clone() });
    }
    let entries = match table.get("device") {
        None => return Ok(Vec::new()),
        Some(toml::Value::Array(a)) => a,
        Some(_) => return Err(SeedError::NotAList { path: path.into() }),
    };
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        // Name the device by its name when it has one, else by its place in the file.
        let label = match entry.get("name").and_then(toml::Value::as_str) {
            Some(n) => format!("`{n}`"),
            None => format!("#{} (no name)", i + 1),
        };
        let field = |field: String, message: String| SeedError::Field {
            path: path.into(),
            device: label.clone(),
            field,
            message,
        };
        if !entry.is_table() {
            return Err(field("[[device]]".into(), "must be a table".into()));
        }
        let spec: DeviceSpec = serde_path_to_error::deserialize(entry.clone()).map_err(|e| {
            let at = e.path().to_string();
            let at = if at == "." { "entry".to_string() } else { at };
            // toml repeats the key on a line of its own ("\nin `driver`"); the path says it already.
            let message = e.into_inner().to_string();
            let message = message.split("\nin `").next().unwrap_or_default().trim_end().to_string();
            field(at, message)
        })?;
        check(&spec).map_err(|(f, m)| field(f.into(), m))?;
        if !seen.insert(spec.name.clone()) {
            return Err(SeedError::Duplicate { path: path.into(), name: spec.name });
        }
        out.push(spec);
    }
    Ok(out)
}

/// What the service would refuse, checked before the database is touched so that a bad file
/// fails at start-up with the field named.
fn check(d: &DeviceSpec) -> Result<(), (&'static str, String)> {
    if d.name.is_empty() || d.name.len() > 64 || !d.name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        return Err(("name", "1 to 64 characters of A-Z, a-z, 0-9, '_', '.', '-'".into()));
    }
    if !(0..=100_000).contains(&d.num_qubits) {
        return Err(("num_qubits", format!("must be between 0 and 100000, got {}", d.num_qubits)));
    }
    if let Some(t) = &d.timing {
        t.validate().map_err(|m| ("timing", m))?;
    }
    expand_target(d).map_err(|m| ("target", m))?;
    Ok(())
}

/// The service request for a device. (Glue: adapt here when the service's device command changes.)
fn request(d: &DeviceSpec) -> AddDevice {
    AddDevice {
        name: d.name.clone(),
        kind: d.kind,
        driver: d.driver,
        status: d.status.unwrap_or(DeviceStatus::Online),
        num_qubits: d.num_qubits,
        timing: d.timing.unwrap_or_default(),
        config: {
            let mut config = d.config.clone().unwrap_or_default();
            // `check` ran on every spec before (a bad target never gets here).
            if let Ok(Some(t)) = expand_target(d) {
                config.insert("target".into(), serde_json::to_value(t).unwrap_or_default());
            }
            serde_json::Value::Object(config)
        },
    }
}

/// What [`seed`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Seeded {
    pub created: Vec<String>,
    /// Listed devices that existed already and were left alone.
    pub kept: Vec<String>,
}

/// Make sure the devices exist. `listed`: the devices of a file, each created unless it exists;
/// `None`: the built-in defaults, and only into a database with no device at all.
pub async fn seed(svc: &Service, listed: Option<&[DeviceSpec]>) -> Result<Seeded, SeedError> {
    let db = |source| SeedError::Create { device: "*".into(), source };
    let existing: HashSet<String> = svc
        .list_devices(&qcloud_service::auth::Principal::operator())
        .await
        .map_err(db)?
        .into_iter()
        .map(|d| d.name)
        .collect();
    let defaults;
    let wanted = match listed {
        Some(l) => l,
        None if existing.is_empty() => {
            defaults = default_devices();
            &defaults
        }
        None => return Ok(Seeded::default()),
    };
    let mut done = Seeded::default();
    for d in wanted {
        if existing.contains(&d.name) {
            done.kept.push(d.name.clone());
            continue;
        }
        match svc.add_device(request(d)).await {
            Ok(v) => {
                info!(device = %v.name, driver = %v.driver, "seeded device");
                done.created.push(d.name.clone());
            }
            // Another replica seeded it first.
            Err(ServiceError::Conflict { .. }) => done.kept.push(d.name.clone()),
            Err(source) => return Err(SeedError::Create { device: d.name.clone(), source }),
        }
    }
    if !done.kept.is_empty() && listed.is_some() {
        info!(devices = ?done.kept, "listed devices exist already; left as they are");
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_analog_seeds_carry_their_pulser_specs() {
        for spec in [super::ANALOG_DEVICE_SPEC, super::MOCK_DEVICE_SPEC] {
            let v: serde_json::Value = serde_json::from_str(spec).expect("a compiled-in spec is JSON");
            assert!(v["channels"].as_array().is_some_and(|c| !c.is_empty()));
        }
        let seeds = super::default_devices();
        let fresnel = seeds.iter().find(|d| d.name == "FRESNEL").expect("FRESNEL seeded");
        let spec = &fresnel.config.as_ref().unwrap()["pulser_device"];
        assert_eq!(spec["name"], "AnalogDevice");
        assert!(fresnel.timing.is_some_and(|t| t.per_shot_ms > 0.0));
    }

    use super::*;

    fn err(text: &str) -> String {
        parse(Path::new("devices.toml"), text).unwrap_err().to_string()
    }

    #[test]
    fn parses_a_full_entry() {
        let d = parse(
            Path::new("d.toml"),
            r#"
            [[device]]
            name = "sim_a"
            kind = "gate"
            driver = "statevector"
            num_qubits = 20
            status = "paused"
            timing = { setup_ms = 5, per_shot_ms = 0.01 }
            config = { seed = 7, nested = { on = true } }

            [[device]]
            name = "n"
            kind = "analog"
            driver = "noop"
            num_qubits = 0
            "#,
        )
        .unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].driver, DriverKind::Statevector);
        assert_eq!(d[0].status, Some(DeviceStatus::Paused));
        assert_eq!(d[0].timing, Some(Timing { setup_ms: 5.0, per_shot_ms: 0.01, ..Timing::default() }));
        let r = request(&d[0]);
        assert_eq!(r.config, serde_json::json!({"seed": 7, "nested": {"on": true}}));
        assert_eq!(r.timing, Timing { setup_ms: 5.0, per_shot_ms: 0.01, ..Timing::default() });
        assert_eq!(r.status, DeviceStatus::Paused);
        assert_eq!(d[1].kind, DeviceKind::Analog);
        assert_eq!((d[1].status, d[1].timing, &d[1].config), (None, None, &None));
        assert!(parse(Path::new("d.toml"), "").unwrap().is_empty());
    }

    #[test]
    fn bad_files_name_the_device_and_field() {
        let base = "[[device]]\nname = \"x1\"\nkind = \"gate\"\nnum_qubits = 3\n";
        let e = err(&format!("{base}driver = \"warp\"\n"));
        assert!(e.starts_with("devices file devices.toml: device `x1`: driver: unknown variant `warp`"), "{e}");
        assert!(!e.contains('\n'), "one line: {e:?}");
        let e = err("[[device]]\nname = \"x1\"\nkind = \"gate\"\ndriver = \"noop\"\n");
        assert!(e.contains("device `x1`") && e.contains("num_qubits"), "{e}");
        let e = err("[[device]]\nkind = \"gate\"\ndriver = \"noop\"\nnum_qubits = 1\n");
        assert!(e.contains("device #1 (no name)") && e.contains("`name`"), "{e}");
        let e = err(&format!("{base}driver = \"noop\"\ntiming = {{ setup_ms = -1 }}\n"));
        assert!(e.contains("device `x1`: timing: timing.setup_ms must be between"), "{e}");
        let e = err(&format!("{base}driver = \"noop\"\ntiming = {{ setup = 1 }}\n"));
        assert!(e.contains("device `x1`: timing") && e.contains("setup"), "{e}");
        let e = err(&format!("{base}driver = \"noop\"\nqubits = 4\n"));
        assert!(e.contains("device `x1`") && e.contains("qubits"), "unknown field named: {e}");
        let e = err(&format!("{base}driver = \"noop\"\nconfig = 3\n"));
        assert!(e.contains("device `x1`: config"), "{e}");
        let e = err(&format!("{base}driver = \"noop\"\nnum_qubits = 3\n"));
        assert!(e.contains("not valid TOML"), "duplicate key: {e}");
        let e = err("[[device]]\nname = \"bad name\"\nkind = \"gate\"\ndriver = \"noop\"\nnum_qubits = 1\n");
        assert!(e.contains("device `bad name`: name: 1 to 64 characters"), "{e}");
        let e = err("[[device]]\nname = \"q\"\nkind = \"gate\"\ndriver = \"noop\"\nnum_qubits = -2\n");
        assert!(e.contains("device `q`: num_qubits: must be between 0 and 100000, got -2"), "{e}");
        let e = err(&format!("{base}driver = \"noop\"\n{base}driver = \"noop\"\n"));
        assert!(e.contains("device `x1` is listed twice"), "{e}");
        assert!(err("[devices]\n").contains("unknown top-level key `devices`"));
        assert!(err("device = 3\n").contains("array of tables"));
        assert!(err("[[device\n").contains("not valid TOML"));
    }

    #[test]
    fn defaults_are_todays_seeds() {
        let names: Vec<_> = default_devices().into_iter().map(|d| (d.name, d.driver, d.num_qubits)).collect();
        assert_eq!(
            names,
            [
                ("noop_1".to_string(), DriverKind::Noop, 127),
                ("noop_2".into(), DriverKind::Noop, 127),
                ("noop_3".into(), DriverKind::Noop, 127),
                ("noop_4".into(), DriverKind::Noop, 127),
                ("sim_statevector".into(), DriverKind::Statevector, 28),
                ("heavyhex_127".into(), DriverKind::Statevector, 127),
                ("EMU_FREE".into(), DriverKind::Analog, 12),
                ("EMU_SV".into(), DriverKind::Analog, 26),
                ("FRESNEL".into(), DriverKind::Analog, 25),
            ]
        );
        assert!(default_devices().iter().all(|d| check(d).is_ok()));
    }

    #[test]
    fn heavyhex_127_carries_a_generated_eagle_target_and_a_qpu_like_timing() {
        let seeds = default_devices();
        let d = seeds.iter().find(|d| d.name == "heavyhex_127").expect("seeded");
        let r = request(d);
        assert_eq!((r.kind, r.driver, r.num_qubits), (DeviceKind::Gate, DriverKind::Statevector, 127));
        let t = Target::from_config(&r.config).expect("config.target").unwrap();
        assert_eq!(t, target::eagle_like(127).unwrap());
        assert_eq!(r.config["target"]["coupling_map"].as_array().unwrap().len(), 288);
        assert_eq!(r.config["target"]["processor_type"]["family"], "Eagle");
        assert!(r.timing.prep_ms > 0.0 && r.timing.prep_per_circuit_ms > 0.0 && r.timing.per_shot_ms > 0.0);
    }

    #[test]
    fn a_devices_file_gives_a_target_as_shorthand_or_in_full() {
        let base = "[[device]]\nname = \"hh\"\nkind = \"gate\"\ndriver = \"statevector\"\n";
        let d = parse(Path::new("d.toml"), &format!("{base}num_qubits = 51\ntarget = \"heavy-hex\"\n")).unwrap();
        let r = request(&d[0]);
        assert_eq!(Target::from_config(&r.config).unwrap().unwrap(), target::eagle_like(51).unwrap());
        let full = r#"
            [device.target]
            basis_gates = ["cz", "rx"]
            coupling_map = [[0, 1], [1, 0]]
            dt = 1e-9
            processor_type = { family = "Toy", revision = 1 }
            gates = { cz = { duration = 2e-7, error = 0.01 }, rx = { duration = 2e-8, error = 0.001 } }
            qubits = { t1 = 1e-4, t2 = 5e-5, frequency = 5e9, readout_error = 0.02, readout_length = 1e-6 }
        "#;
        let d = parse(Path::new("d.toml"), &format!("{base}num_qubits = 2\n{full}")).unwrap();
        let t = Target::from_config(&request(&d[0]).config).unwrap().unwrap();
        assert_eq!((t.basis_gates.len(), t.coupling_map.len(), t.processor_type.family.as_str()), (2, 2, "Toy"));
        let e = err(&format!("{base}num_qubits = 100\ntarget = \"heavy-hex\"\n"));
        assert!(
            e.contains("device `hh`: target: \"heavy-hex\" has 32, 51, 70, 89, 108, 127") && e.contains("not 100"),
            "{e}"
        );
        let e = err(&format!("{base}num_qubits = 1\n{full}"));
        assert!(e.contains("device `hh`: target: target.coupling_map has the pair [0, 1]"), "{e}");
        let e = err(&format!("{base}num_qubits = 127\ntarget = \"eagle\"\n"));
        assert!(e.contains("unknown target \"eagle\""), "{e}");
        let e = err(&format!("{base}num_qubits = 127\ntarget = {{ basis_gates = [\"x\"] }}\n"));
        assert!(e.contains("device `hh`: target: missing field"), "{e}");
        let e = err(&format!("{base}num_qubits = 127\ntarget = \"heavy-hex\"\nconfig = {{ target = 1 }}\n"));
        assert!(e.contains("give the target once"), "{e}");
    }

    #[test]
    fn the_example_devices_file_is_valid() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../devices.example.toml");
        let d = load_file(&p).unwrap();
        assert!(d.len() >= 2, "the example lists a few devices");
    }
}
