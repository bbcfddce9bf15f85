//! `qsim`: command-line access to the simulator, for the Aer compatibility check and the benchmark.
//!
//! - `qsim run` reads `{"program": "sampler"|"estimator", ...payload}` on stdin, prints the result.
//! - `qsim bench --circuit qft|random --qubits N --threads T --reps R` prints the seconds of each
//!   repetition (state allocation + all gates) and the minimum, on a rayon pool of T threads.
//! - `qsim gen --circuit qft|random --qubits N` prints the benchmark circuit as OpenQASM 2.

use qcloud_qsim::engine::{self, CompileOptions, StateVector};
use qcloud_qsim::ir::{Circuit, Gate, Instruction, Operation, ParamExpr};
use qcloud_qsim::{prepare_estimator, prepare_sampler, run_estimator, run_sampler, SimLimits};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::io::Read;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => cmd_run(),
        Some("bench") => cmd_bench(&args[1..]),
        Some("gen") => cmd_gen(&args[1..]),
        _ => Err("usage: qsim run < payload.json | qsim bench --circuit qft|random --qubits N \
                  --threads T --reps R | qsim gen --circuit qft|random --qubits N"
            .to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qsim: {e}");
            ExitCode::FAILURE
        }
    }
}

fn cmd_run() -> Result<(), String> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).map_err(|e| format!("reading stdin: {e}"))?;
    let payload: serde_json::Value = serde_json::from_str(&input).map_err(|e| format!("stdin is not JSON: {e}"))?;
    let limits = SimLimits::default();
    let out = match payload.get("program").and_then(|p| p.as_str()) {
        Some("sampler") => {
            let p = prepare_sampler(&payload, &limits).map_err(|e| e.to_string())?;
            run_sampler(&p).map_err(|e| e.to_string())?
        }
        Some("estimator") => {
            let p = prepare_estimator(&payload, &limits).map_err(|e| e.to_string())?;
            run_estimator(&p).map_err(|e| e.to_string())?
        }
        _ => return Err("\"program\" must be \"sampler\" or \"estimator\"".into()),
    };
    println!("{out}");
    Ok(())
}

struct Opts {
    circuit: String,
    qubits: usize,
    threads: usize,
    reps: usize,
    fuse: bool,
}

fn opts(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts { circuit: "qft".into(), qubits: 16, threads: 1, reps: 3, fuse: true };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--circuit" => o.circuit = val()?,
            "--qubits" => o.qubits = val()?.parse().map_err(|_| "bad --qubits")?,
            "--threads" => o.threads = val()?.parse().map_err(|_| "bad --threads")?,
            "--reps" => o.reps = val()?.parse().map_err(|_| "bad --reps")?,
            "--no-fuse" => o.fuse = false,
            _ => return Err(format!("unknown option {a}")),
        }
    }
    if o.qubits == 0 || o.qubits > 34 {
        return Err("--qubits must be 1..=34".into());
    }
    Ok(o)
}

fn gate(c: &mut Circuit, gate: Gate, params: &[f64], qubits: &[usize]) {
    c.instructions.push(Instruction {
        op: Operation::Gate { gate, params: params.iter().map(|&p| ParamExpr::Const(p)).collect() },
        qubits: qubits.to_vec(),
        condition: None,
    });
}

/// Qiskit's QFT (with the final swaps), in the order of `QFT(n).decompose()`.
fn qft(n: usize) -> Circuit {
    let mut c = Circuit::new(n, 0);
    for j in (0..n).rev() {
        gate(&mut c, Gate::H, &[], &[j]);
        for k in (0..j).rev() {
            let angle = std::f64::consts::PI / (1u64 << (j - k)) as f64;
            gate(&mut c, Gate::CP, &[angle], &[j, k]);
        }
    }
    for k in 0..n / 2 {
        gate(&mut c, Gate::Swap, &[], &[k, n - 1 - k]);
    }
    c
}

/// Random layered circuit: 10 layers of a random U on every qubit then CX on a brickwork of pairs.
fn random(n: usize) -> Circuit {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1234 + n as u64);
    let mut c = Circuit::new(n, 0);
    for layer in 0..10 {
        for q in 0..n {
            let p: [f64; 3] = [
                rng.gen_range(0.0..std::f64::consts::TAU),
                rng.gen_range(0.0..std::f64::consts::TAU),
                rng.gen_range(0.0..std::f64::consts::TAU),
            ];
            gate(&mut c, Gate::U, &p, &[q]);
        }
        let mut q = layer % 2;
        while q + 1 < n {
            gate(&mut c, Gate::CX, &[], &[q, q + 1]);
            q += 2;
        }
    }
    c
}

fn build(o: &Opts) -> Result<Circuit, String> {
    match o.circuit.as_str() {
        "qft" => Ok(qft(o.qubits)),
        "random" => Ok(random(o.qubits)),
        other => Err(format!("unknown circuit {other}")),
    }
}

fn cmd_bench(args: &[String]) -> Result<(), String> {
    let o = opts(args)?;
    let c = build(&o)?;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(o.threads.max(1)).build().map_err(|e| e.to_string())?;
    let copts = CompileOptions { fuse: o.fuse, drop_measurements: true };
    let mut times = Vec::new();
    for _ in 0..o.reps.max(1) {
        let t = Instant::now();
        let norm = pool.install(|| -> Result<f64, String> {
            let prog = engine::compile(&c, &HashMap::new(), copts).map_err(|e| e.to_string())?;
            let mut sv = StateVector::zero(prog.num_qubits);
            sv.apply_unitaries(&prog.ops);
            Ok(sv.amps[0].norm_sqr())
        })?;
        times.push(t.elapsed().as_secs_f64());
        std::hint::black_box(norm);
    }
    let min = times.iter().copied().fold(f64::INFINITY, f64::min);
    let all: Vec<String> = times.iter().map(|t| format!("{t:.4}")).collect();
    println!("{min:.6} {}", all.join(" "));
    Ok(())
}

fn cmd_gen(args: &[String]) -> Result<(), String> {
    let o = opts(args)?;
    let c = build(&o)?;
    let mut s = format!("OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[{}];\n", c.num_qubits);
    for i in &c.instructions {
        if let Operation::Gate { gate, params } = &i.op {
            let name = match gate {
                Gate::H => "h",
                Gate::CP => "cp",
                Gate::Swap => "swap",
                Gate::U => "u",
                Gate::CX => "cx",
                _ => return Err("unexpected gate".into()),
            };
            let p: Vec<String> = params.iter().map(|p| format!("{:.17}", p.as_const().unwrap_or(0.0))).collect();
            let q: Vec<String> = i.qubits.iter().map(|q| format!("q[{q}]")).collect();
            if p.is_empty() {
                s.push_str(&format!("{name} {};\n", q.join(",")));
            } else {
                s.push_str(&format!("{name}({}) {};\n", p.join(","), q.join(",")));
            }
        }
    }
    print!("{s}");
    Ok(())
}
