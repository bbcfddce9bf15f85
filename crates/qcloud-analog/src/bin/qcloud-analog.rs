//! `qcloud-analog run [--time]`: reads a `pulser` payload (`{"sequence", "runs", "variables"?,
//! "seed"?, "outputs"?}`) on stdin and prints the result JSON on stdout (exit 0). On error it
//! prints `{"error": "<message>"}` on stdout and exits 2. `--time` adds one line
//! `{"prepare_s": .., "run_s": ..}` on stderr.

use qcloud_analog::{prepare, run_with_stats, Limits};
use std::io::Read;
use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    let _ = writeln!(std::io::stdout(), "{}", serde_json::json!({ "error": msg.to_string() }));
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("run") || args.iter().skip(1).any(|a| a != "--time") {
        eprintln!("usage: qcloud-analog run [--time] < payload.json");
        return fail("usage: qcloud-analog run [--time] < payload.json");
    }
    let time = args.iter().any(|a| a == "--time");
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        return fail(format!("reading stdin: {e}"));
    }
    let payload: serde_json::Value = match serde_json::from_str(&input) {
        Ok(v) => v,
        Err(e) => return fail(format!("the payload is not valid JSON: {e}")),
    };
    // The CLI has no device of its own: memory is the only bound beyond the sequence's device.
    let limits = Limits { max_memory_bytes: 16 << 30, ..Limits::default() };
    let t0 = Instant::now();
    let prepared = match prepare(&payload, &limits) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let t1 = Instant::now();
    let (result, stats) = match run_with_stats(&prepared, &|| false) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let t2 = Instant::now();
    // A closed pipe is not worth a panic: the exit code still tells.
    let _ = writeln!(std::io::stdout(), "{result}");
    if time {
        let line = serde_json::json!({
            "prepare_s": (t1 - t0).as_secs_f64(),
            "run_s": (t2 - t1).as_secs_f64(),
            "substeps": stats.substeps,
            "error_bound": stats.error_bound,
        });
        let _ = writeln!(std::io::stderr(), "{line}");
    }
    ExitCode::SUCCESS
}
