#![no_main]
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run qasm2` (seed corpus: ../tests/fixtures/*.qasm2).
use libfuzzer_sys::fuzz_target;
use qcloud_qsim::{qasm2, ReadLimits};

fuzz_target!(|data: &[u8]| {
    if let Ok(src) = std::str::from_utf8(data) {
        let _ = qasm2::parse(src, &ReadLimits::default());
    }
});
