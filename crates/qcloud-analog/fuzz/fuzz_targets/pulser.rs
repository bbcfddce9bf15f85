#![no_main]
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run pulser` (seed corpus: ../tests/fixtures/*.json wrapped as
//! payloads, see `seed_corpus.sh`). The payload goes through `prepare` with small limits; what
//! prepares is run for a bounded number of time steps.
use libfuzzer_sys::fuzz_target;
use qcloud_analog::{prepare, run, Limits, ReadLimits};
use std::cell::Cell;

fuzz_target!(|data: &[u8]| {
    let Ok(payload) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let limits = Limits {
        max_atoms: 6,
        max_memory_bytes: 1 << 20,
        max_runs: 1000,
        read: ReadLimits { max_duration_ns: 20_000, max_operations: 200, max_atoms: 6 },
        ..Limits::default()
    };
    if let Ok(p) = prepare(&payload, &limits) {
        let steps = Cell::new(0u32);
        let _ = run(&p, &|| {
            steps.set(steps.get() + 1);
            steps.get() > 300
        });
    }
});
