//! `--qdmi LIBRARY --qdmi-prefix PREFIX`: drive a device that implements QDMI, the Munich Quantum
//! Software Stack's C device interface, loaded at run time with `libloading`.
//!
//! The bindings are ours, written from the published header (`qdmi/device.h`, `constants.h`
//! and `types.h` as shipped in the `mqt-core` 4.1.1 wheel): a device library exports every
//! function as `PREFIX_QDMI_device_...`. The agent opens one device session, publishes what the
//! device reports (qubits, coupling map, operations with durations and fidelities, T1/T2 per
//! site) as the device's target, and runs `sampler` jobs: each pub's circuit goes to the device
//! as OpenQASM (OpenQASM 2 and 3 as given; a QPY circuit is written as OpenQASM 3 by
//! `qcloud_qsim::qasm3::write`), its histogram comes back as the pub's counts. A stop calls
//! `job_cancel`.
//!
//! This is the one module with `unsafe` code: calls through C function pointers. Every call
//! passes buffers whose sizes it states, and reads back only what the device says it wrote.

use crate::engine::{BoxFuture, Engine, RunError, RunOutput};
use anyhow::{anyhow, bail, Context};
use libloading::Library;
use qcloud_wire as wire;
use serde_json::{json, Value};
use std::ffi::{c_int, c_void};
use std::path::Path;
use std::ptr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

// Constants of qdmi/constants.h.
const QDMI_SUCCESS: c_int = 0;
const QDMI_ERROR_NOTSUPPORTED: c_int = -9;

const DEVICE_PROPERTY_NAME: c_int = 0;
const DEVICE_PROPERTY_QUBITSNUM: c_int = 4;
const DEVICE_PROPERTY_SITES: c_int = 5;
const DEVICE_PROPERTY_OPERATIONS: c_int = 6;
const DEVICE_PROPERTY_COUPLINGMAP: c_int = 7;
const DEVICE_PROPERTY_DURATIONUNIT: c_int = 12;
const DEVICE_PROPERTY_DURATIONSCALEFACTOR: c_int = 13;
const DEVICE_PROPERTY_SUPPORTEDPROGRAMFORMATS: c_int = 15;

const SITE_PROPERTY_INDEX: c_int = 0;
const SITE_PROPERTY_T1: c_int = 1;
const SITE_PROPERTY_T2: c_int = 2;

const OPERATION_PROPERTY_NAME: c_int = 0;
const OPERATION_PROPERTY_QUBITSNUM: c_int = 1;
const OPERATION_PROPERTY_DURATION: c_int = 3;
const OPERATION_PROPERTY_FIDELITY: c_int = 4;

const JOB_PARAMETER_SHOTSNUM: c_int = 2;

const JOB_STATUS_DONE: c_int = 4;
const JOB_STATUS_CANCELED: c_int = 5;
const JOB_STATUS_FAILED: c_int = 6;

const PROGRAM_FORMAT_QASM2: c_int = 0;
const PROGRAM_FORMAT_QASM3: c_int = 1;

const JOB_RESULT_HIST_KEYS: c_int = 1;
const JOB_RESULT_HIST_VALUES: c_int = 2;

type Handle = *mut c_void;

/// The device interface's functions (qdmi/device.h), resolved from the library.
struct Api {
    initialize: unsafe extern "C" fn() -> c_int,
    finalize: unsafe extern "C" fn() -> c_int,
    session_alloc: unsafe extern "C" fn(*mut Handle) -> c_int,
    session_init: unsafe extern "C" fn(Handle) -> c_int,
    session_free: unsafe extern "C" fn(Handle),
    query_device: unsafe extern "C" fn(Handle, c_int, usize, *mut c_void, *mut usize) -> c_int,
    query_site: unsafe extern "C" fn(Handle, Handle, c_int, usize, *mut c_void, *mut usize) -> c_int,
    #[allow(clippy::type_complexity)]
    query_operation: unsafe extern "C" fn(
        Handle,
        Handle,
        usize,
        *const Handle,
        usize,
        *const f64,
        c_int,
        usize,
        *mut c_void,
        *mut usize,
    ) -> c_int,
    create_job: unsafe extern "C" fn(Handle, *mut Handle) -> c_int,
    job_set_parameter: unsafe extern "C" fn(Handle, c_int, usize, *const c_void) -> c_int,
    job_set_programs: unsafe extern "C" fn(Handle, c_int, usize, *const usize, *const *const c_void) -> c_int,
    job_submit: unsafe extern "C" fn(Handle) -> c_int,
    job_cancel: unsafe extern "C" fn(Handle) -> c_int,
    job_check: unsafe extern "C" fn(Handle, *mut c_int) -> c_int,
    job_get_results: unsafe extern "C" fn(Handle, usize, c_int, usize, *mut c_void, *mut usize) -> c_int,
    job_free: unsafe extern "C" fn(Handle),
    // Kept last: the function pointers above are valid only while the library is loaded.
    _lib: Library,
}

impl Api {
    fn load(path: &Path, prefix: &str) -> anyhow::Result<Api> {
        // SAFETY: loading a library runs its initialisers; the operator names a QDMI device
        // library to load, which is the point of this backend.
        let lib = unsafe { Library::new(path) }.with_context(|| format!("loading {}", path.display()))?;
        let f = |name: &str| format!("{prefix}_QDMI_device_{name}");
        Ok(Api {
            initialize: sym(&lib, &f("initialize"))?,
            finalize: sym(&lib, &f("finalize"))?,
            session_alloc: sym(&lib, &f("session_alloc"))?,
            session_init: sym(&lib, &f("session_init"))?,
            session_free: sym(&lib, &f("session_free"))?,
            query_device: sym(&lib, &f("session_query_device_property"))?,
            query_site: sym(&lib, &f("session_query_site_property"))?,
            query_operation: sym(&lib, &f("session_query_operation_property"))?,
            create_job: sym(&lib, &f("session_create_device_job"))?,
            job_set_parameter: sym(&lib, &f("job_set_parameter"))?,
            job_set_programs: sym(&lib, &f("job_set_programs"))?,
            job_submit: sym(&lib, &f("job_submit"))?,
            job_cancel: sym(&lib, &f("job_cancel"))?,
            job_check: sym(&lib, &f("job_check"))?,
            job_get_results: sym(&lib, &f("job_get_results"))?,
            job_free: sym(&lib, &f("job_free"))?,
            _lib: lib,
        })
    }
}

/// A function of the library, by its full name.
fn sym<T: Copy>(lib: &Library, name: &str) -> anyhow::Result<T> {
    let c = format!("{name}\0");
    // SAFETY: `T` is the function type qdmi/device.h declares for this symbol.
    let s: libloading::Symbol<T> =
        unsafe { lib.get(c.as_bytes()) }.with_context(|| format!("the library has no {name}"))?;
    Ok(*s)
}

fn check(what: &str, rc: c_int) -> anyhow::Result<()> {
    if rc == QDMI_SUCCESS {
        Ok(())
    } else {
        Err(anyhow!("QDMI {what} returned {rc}"))
    }
}

/// One initialised device with an open session. QDMI sessions are not documented as thread
/// safe: every call goes through the mutex.
struct Device {
    api: Api,
    session: Handle,
}

// SAFETY: the handles are only used under `QdmiEngine::device`'s mutex, one call at a time.
unsafe impl Send for Device {}

impl Device {
    fn open(path: &Path, prefix: &str) -> anyhow::Result<Device> {
        let api = Api::load(path, prefix)?;
        // SAFETY: calls of the device interface in the order it prescribes.
        unsafe {
            check("device_initialize", (api.initialize)())?;
            let mut session: Handle = ptr::null_mut();
            check("session_alloc", (api.session_alloc)(&mut session))?;
            if let Err(e) = check("session_init", (api.session_init)(session)) {
                (api.session_free)(session);
                return Err(e);
            }
            Ok(Device { api, session })
        }
    }

    /// A property of `size_of::<T>()` bytes (numbers, enums).
    fn device_scalar<T: Copy + Default>(&self, prop: c_int) -> Option<T> {
        let mut v = T::default();
        // SAFETY: the buffer is a `T` of the size given.
        let rc = unsafe {
            (self.api.query_device)(
                self.session,
                prop,
                size_of::<T>(),
                &mut v as *mut T as *mut c_void,
                ptr::null_mut(),
            )
        };
        (rc == QDMI_SUCCESS).then_some(v)
    }

    /// A property of variable size (a string or a list): asks for the size, then reads it.
    fn device_bytes(&self, prop: c_int) -> Option<Vec<u8>> {
        let mut size = 0usize;
        // SAFETY: a size query passes no buffer.
        let rc = unsafe { (self.api.query_device)(self.session, prop, 0, ptr::null_mut(), &mut size) };
        if rc != QDMI_SUCCESS || size == 0 || size > 64 << 20 {
            return None;
        }
        let mut buf = vec![0u8; size];
        // SAFETY: `buf` has the size the device asked for.
        let rc = unsafe {
            (self.api.query_device)(self.session, prop, size, buf.as_mut_ptr() as *mut c_void, ptr::null_mut())
        };
        (rc == QDMI_SUCCESS).then_some(buf)
    }

    fn device_string(&self, prop: c_int) -> Option<String> {
        self.device_bytes(prop).map(|b| c_string(&b))
    }

    fn device_handles(&self, prop: c_int) -> Vec<Handle> {
        self.device_bytes(prop).map(|b| handles(&b)).unwrap_or_default()
    }

    fn site_scalar<T: Copy + Default>(&self, site: Handle, prop: c_int) -> Option<T> {
        let mut v = T::default();
        // SAFETY: as for `device_scalar`; `site` came from the device.
        let rc = unsafe {
            (self.api.query_site)(
                self.session,
                site,
                prop,
                size_of::<T>(),
                &mut v as *mut T as *mut c_void,
                ptr::null_mut(),
            )
        };
        (rc == QDMI_SUCCESS).then_some(v)
    }

    fn op_query(
        &self,
        op: Handle,
        sites: &[Handle],
        prop: c_int,
        size: usize,
        out: *mut c_void,
        size_ret: *mut usize,
    ) -> c_int {
        let sp = if sites.is_empty() { ptr::null() } else { sites.as_ptr() };
        // SAFETY: `out` is null or a buffer of `size` bytes; `op` and `sites` came from the device.
        unsafe {
            (self.api.query_operation)(self.session, op, sites.len(), sp, 0, ptr::null(), prop, size, out, size_ret)
        }
    }

    fn op_scalar<T: Copy + Default>(&self, op: Handle, sites: &[Handle], prop: c_int) -> Option<T> {
        let mut v = T::default();
        let rc = self.op_query(op, sites, prop, size_of::<T>(), &mut v as *mut T as *mut c_void, ptr::null_mut());
        (rc == QDMI_SUCCESS).then_some(v)
    }

    fn op_name(&self, op: Handle) -> Option<String> {
        let mut size = 0usize;
        if self.op_query(op, &[], OPERATION_PROPERTY_NAME, 0, ptr::null_mut(), &mut size) != QDMI_SUCCESS
            || size == 0
            || size > 4096
        {
            return None;
        }
        let mut buf = vec![0u8; size];
        let rc =
            self.op_query(op, &[], OPERATION_PROPERTY_NAME, size, buf.as_mut_ptr() as *mut c_void, ptr::null_mut());
        (rc == QDMI_SUCCESS).then(|| c_string(&buf))
    }

    /// What the device reports, as a target.
    fn target(&self) -> anyhow::Result<(String, wire::Target, Vec<c_int>)> {
        let name = self.device_string(DEVICE_PROPERTY_NAME).unwrap_or_else(|| "QDMI device".into());
        let num_qubits: usize = self
            .device_scalar(DEVICE_PROPERTY_QUBITSNUM)
            .ok_or_else(|| anyhow!("the device reports no qubit count"))?;
        let unit = self.device_string(DEVICE_PROPERTY_DURATIONUNIT).unwrap_or_else(|| "s".into());
        let scale: f64 = self.device_scalar(DEVICE_PROPERTY_DURATIONSCALEFACTOR).unwrap_or(1.0);
        let seconds = scale * unit_seconds(&unit);
        let sites = self.device_handles(DEVICE_PROPERTY_SITES);
        let index_of = |s: Handle| self.site_scalar::<usize>(s, SITE_PROPERTY_INDEX);
        let coupling: Vec<[u32; 2]> = self
            .device_handles(DEVICE_PROPERTY_COUPLINGMAP)
            .chunks_exact(2)
            .filter_map(|p| Some([index_of(p[0])? as u32, index_of(p[1])? as u32]))
            .collect();
        let mut qubits = vec![wire::QubitProperties::default(); num_qubits];
        for &s in &sites {
            if let Some(i) = index_of(s).filter(|i| *i < num_qubits) {
                qubits[i].t1 = self.site_scalar::<u64>(s, SITE_PROPERTY_T1).map(|v| v as f64 * seconds);
                qubits[i].t2 = self.site_scalar::<u64>(s, SITE_PROPERTY_T2).map(|v| v as f64 * seconds);
            }
        }
        let mut operations = Vec::new();
        for op in self.device_handles(DEVICE_PROPERTY_OPERATIONS) {
            let Some(name) = self.op_name(op) else { continue };
            // Operations of no fixed arity (barrier, mcx, if_else) and the global phase are not
            // gates of a target; QDMI's identity is Qiskit's `id`.
            let Some(n) = self.op_scalar::<usize>(op, &[], OPERATION_PROPERTY_QUBITSNUM) else { continue };
            if name == "gphase" || n == 0 {
                continue;
            }
            let name = if name == "i" { "id".to_string() } else { name };
            // Figures may be per site: ask without sites first, then on the first site(s).
            let probe: Vec<Handle> = if n == 1 { sites.iter().take(1).copied().collect() } else { Vec::new() };
            let duration = self
                .op_scalar::<u64>(op, &[], OPERATION_PROPERTY_DURATION)
                .or_else(|| self.op_scalar::<u64>(op, &probe, OPERATION_PROPERTY_DURATION))
                .map(|d| d as f64 * seconds);
            let fidelity = self
                .op_scalar::<f64>(op, &[], OPERATION_PROPERTY_FIDELITY)
                .or_else(|| self.op_scalar::<f64>(op, &probe, OPERATION_PROPERTY_FIDELITY));
            operations.push(wire::Operation {
                name,
                num_qubits: n as u32,
                duration: duration.filter(|d| d.is_finite() && *d >= 0.0),
                error: fidelity.map(|f| (1.0 - f).clamp(0.0, 1.0)),
            });
        }
        let formats: Vec<c_int> = self
            .device_bytes(DEVICE_PROPERTY_SUPPORTEDPROGRAMFORMATS)
            .map(|b| {
                b.chunks_exact(size_of::<c_int>())
                    .map(|c| c_int::from_ne_bytes(c.try_into().unwrap_or([0; 4])))
                    .collect()
            })
            .unwrap_or_else(|| vec![PROGRAM_FORMAT_QASM2, PROGRAM_FORMAT_QASM3]);
        let qubits = if qubits.iter().any(|q| q.t1.is_some() || q.t2.is_some()) { qubits } else { Vec::new() };
        Ok((name, wire::Target { num_qubits: num_qubits as u32, coupling_map: coupling, operations, qubits }, formats))
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        // SAFETY: the session was allocated by this device and is freed once.
        unsafe {
            (self.api.session_free)(self.session);
            let _ = (self.api.finalize)();
        }
    }
}

fn unit_seconds(unit: &str) -> f64 {
    match unit {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        _ => 1.0,
    }
}

fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn handles(b: &[u8]) -> Vec<Handle> {
    b.chunks_exact(size_of::<Handle>())
        .map(|c| usize::from_ne_bytes(c.try_into().unwrap_or([0; size_of::<usize>()])) as Handle)
        .collect()
}

/// A job on the device, freed when dropped.
struct Job<'a> {
    dev: &'a Device,
    job: Handle,
}

impl Drop for Job<'_> {
    fn drop(&mut self) {
        // SAFETY: the job was created by this session and is freed once.
        unsafe { (self.dev.api.job_free)(self.job) }
    }
}

/// How a program went on the device.
enum Ran {
    Counts(serde_json::Map<String, Value>),
    Canceled,
}

/// Run one program: create, set shots and the program, submit, poll until done (canceling when
/// `stop` is set), read the histogram.
fn run_program(
    dev: &Device,
    format: c_int,
    program: &str,
    shots: usize,
    stop: &dyn Fn() -> bool,
) -> anyhow::Result<Ran> {
    let api = &dev.api;
    let mut handle: Handle = ptr::null_mut();
    // SAFETY: creating a job on our session.
    check("create_device_job", unsafe { (api.create_job)(dev.session, &mut handle) })?;
    let job = Job { dev, job: handle };
    let text = std::ffi::CString::new(program).map_err(|_| anyhow!("the program holds a NUL byte"))?;
    let bytes = text.as_bytes_with_nul();
    let sizes = [bytes.len()];
    let programs = [bytes.as_ptr() as *const c_void];
    // SAFETY: a `size_t` parameter; one text program with its trailing NUL, sizes given.
    unsafe {
        check(
            "job_set_parameter(SHOTSNUM)",
            (api.job_set_parameter)(
                job.job,
                JOB_PARAMETER_SHOTSNUM,
                size_of::<usize>(),
                &shots as *const usize as *const c_void,
            ),
        )?;
        check("job_set_programs", (api.job_set_programs)(job.job, format, 1, sizes.as_ptr(), programs.as_ptr()))?;
        check("job_submit", (api.job_submit)(job.job))?;
    }
    let mut canceled = false;
    loop {
        let mut status: c_int = 0;
        // SAFETY: a status out-parameter.
        check("job_check", unsafe { (api.job_check)(job.job, &mut status) })?;
        match status {
            JOB_STATUS_DONE => break,
            JOB_STATUS_CANCELED => return Ok(Ran::Canceled),
            JOB_STATUS_FAILED => bail!("the device failed the job"),
            _ => {}
        }
        if stop() && !canceled {
            info!("canceling the device job (job_cancel)");
            // SAFETY: canceling our own job.
            let rc = unsafe { (api.job_cancel)(job.job) };
            if rc != QDMI_SUCCESS && rc != QDMI_ERROR_NOTSUPPORTED {
                warn!(rc, "job_cancel failed");
            }
            canceled = true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if canceled {
        return Ok(Ran::Canceled);
    }
    let read = |what: c_int| -> anyhow::Result<Vec<u8>> {
        let mut size = 0usize;
        // SAFETY: a size query, then a buffer of that size.
        check("job_get_results(size)", unsafe {
            (api.job_get_results)(job.job, 0, what, 0, ptr::null_mut(), &mut size)
        })?;
        let mut buf = vec![0u8; size];
        if size > 0 {
            check("job_get_results", unsafe {
                (api.job_get_results)(job.job, 0, what, size, buf.as_mut_ptr() as *mut c_void, ptr::null_mut())
            })?;
        }
        Ok(buf)
    };
    let keys = c_string(&read(JOB_RESULT_HIST_KEYS)?);
    let values: Vec<usize> = read(JOB_RESULT_HIST_VALUES)?
        .chunks_exact(size_of::<usize>())
        .map(|c| usize::from_ne_bytes(c.try_into().unwrap_or([0; size_of::<usize>()])))
        .collect();
    let keys: Vec<&str> = if keys.is_empty() { Vec::new() } else { keys.split(',').collect() };
    if keys.len() != values.len() {
        bail!("the device gave {} histogram keys and {} values", keys.len(), values.len());
    }
    let mut counts = serde_json::Map::new();
    for (k, v) in keys.into_iter().zip(values) {
        counts.insert(k.trim().to_string(), json!(v));
    }
    Ok(Ran::Counts(counts))
}

/// The QDMI backend.
pub struct QdmiEngine {
    device: Arc<Mutex<Device>>,
    report: wire::DeviceReport,
    formats: Vec<c_int>,
}

impl QdmiEngine {
    pub fn open(path: &Path, prefix: &str) -> anyhow::Result<QdmiEngine> {
        if prefix.is_empty() || !prefix.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
            bail!("--qdmi-prefix: the prefix of the library's symbols, e.g. MQT_DDSIM");
        }
        let device = Device::open(path, prefix)?;
        let (name, target, formats) = device.target()?;
        info!(device = %name, qubits = target.num_qubits, operations = target.operations.len(), "QDMI device opened");
        let report = wire::DeviceReport {
            status: wire::AgentStatus::Online,
            message: Some(format!("QDMI device '{name}'")),
            target: Some(target),
            pulser_device: None,
            calibration: None,
        };
        Ok(QdmiEngine { device: Arc::new(Mutex::new(device)), report, formats })
    }
}

/// A program for the device: its format, its text, its classical registers (name, clbits).
struct Program {
    format: c_int,
    text: String,
    num_clbits: usize,
    cregs: Vec<(String, Vec<usize>)>,
    shots: usize,
}

/// A pub's circuit as a program the device takes: OpenQASM text as given, a QPY circuit (or a
/// format the device lacks) written as OpenQASM 3.
fn program_of(circuit: &Value, formats: &[c_int]) -> Result<(c_int, String, qcloud_qsim::Circuit), String> {
    let limits = qcloud_qsim::primitives::SimLimits::default();
    let c = qcloud_qsim::primitives::input::read_circuit(0, circuit, &limits).map_err(|e| e.to_string())?;
    if !c.parameters().is_empty() {
        return Err("circuits with unbound parameters are not supported on QDMI devices; bind them first".into());
    }
    if let Value::String(text) = circuit {
        let head = text.trim_start();
        let fmt = if head.starts_with("OPENQASM 3") { PROGRAM_FORMAT_QASM3 } else { PROGRAM_FORMAT_QASM2 };
        if head.starts_with("OPENQASM") && formats.contains(&fmt) {
            return Ok((fmt, text.clone(), c));
        }
    }
    if !formats.contains(&PROGRAM_FORMAT_QASM3) {
        return Err("the device takes neither this circuit's format nor OpenQASM 3".into());
    }
    let qasm = qcloud_qsim::qasm3::write(&c).map_err(|e| e.to_string())?;
    Ok((PROGRAM_FORMAT_QASM3, qasm, c))
}

/// The pubs of a sampler payload as programs.
fn sampler_programs(job: &wire::AgentJob, formats: &[c_int]) -> Result<Vec<Program>, String> {
    let pubs = job.payload.get("pubs").and_then(|p| p.as_array()).ok_or("the payload has no 'pubs' list")?;
    let default =
        job.payload.get("shots").and_then(|s| s.as_u64()).or(job.shots.map(|s| s.max(0) as u64)).unwrap_or(1024);
    let mut out = Vec::with_capacity(pubs.len());
    for (i, p) in pubs.iter().enumerate() {
        let (circuit, params, shots) = match p {
            Value::Array(a) => {
                (a.first().cloned().unwrap_or(Value::Null), a.get(1).cloned(), a.get(2).and_then(|s| s.as_u64()))
            }
            other => (other.clone(), None, None),
        };
        if params.as_ref().is_some_and(|v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty())) {
            return Err(format!("pub {i}: parameter values are not supported on QDMI devices"));
        }
        let (format, text, c) = program_of(&circuit, formats).map_err(|e| format!("pub {i}: {e}"))?;
        if c.num_qubits > job.num_qubits.max(0) as usize {
            return Err(format!("pub {i}: the circuit has {} qubits; the device has {}", c.num_qubits, job.num_qubits));
        }
        let shots = shots.unwrap_or(default).clamp(1, 10_000_000) as usize;
        let cregs = c.cregs.iter().map(|r| (r.name.clone(), r.bits.clone())).collect();
        out.push(Program { format, text, num_clbits: c.num_clbits, cregs, shots });
    }
    Ok(out)
}

/// A device histogram (keys over all clbits, the highest leftmost) as the Sampler's per-register
/// counts.
fn register_counts(p: &Program, hist: &serde_json::Map<String, Value>) -> Value {
    let mut data = serde_json::Map::new();
    for (name, bits) in &p.cregs {
        let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
        for (key, n) in hist {
            let chars: Vec<char> = key.chars().collect();
            let at = |b: usize| {
                // Keys may be shorter than the clbit count (leading zeros dropped).
                let from_right = chars.len().checked_sub(1 + b);
                from_right.and_then(|i| chars.get(i)).copied().unwrap_or('0')
            };
            let s: String = bits.iter().rev().map(|&b| at(b)).collect();
            *counts.entry(s).or_insert(0) += n.as_u64().unwrap_or(0);
        }
        data.insert(name.clone(), json!({"counts": counts}));
    }
    let _ = p.num_clbits;
    Value::Object(data)
}

impl Engine for QdmiEngine {
    fn programs(&self) -> Option<&'static [&'static str]> {
        Some(&["sampler"])
    }

    fn report(&self) -> wire::DeviceReport {
        self.report.clone()
    }

    fn run<'a>(
        &'a self,
        job: &'a wire::AgentJob,
        stop: CancellationToken,
    ) -> BoxFuture<'a, Result<RunOutput, RunError>> {
        Box::pin(async move {
            let programs = sampler_programs(job, &self.formats).map_err(RunError::failed)?;
            let device = self.device.clone();
            let flag = stop.clone();
            let work = tokio::task::spawn_blocking(move || -> Result<Vec<Value>, RunError> {
                let dev = device.lock().map_err(|_| RunError::failed("the QDMI device is unusable after a panic"))?;
                let mut results = Vec::with_capacity(programs.len());
                for p in programs {
                    match run_program(&dev, p.format, &p.text, p.shots, &|| flag.is_cancelled()) {
                        Ok(Ran::Counts(hist)) => results.push(json!({
                            "shape": [],
                            "data": register_counts(&p, &hist),
                            "metadata": {"shots": p.shots, "device_histogram": hist},
                        })),
                        Ok(Ran::Canceled) => {
                            return Err(RunError::Stopped { log: Some("canceled on the device (job_cancel)".into()) })
                        }
                        Err(e) => return Err(RunError::failed(format!("{e:#}"))),
                    }
                }
                Ok(results)
            });
            let results = work.await.map_err(|e| RunError::failed(format!("QDMI task: {e}")))??;
            Ok(RunOutput { result: json!({"pub_results": results}), log: None })
        })
    }
}
