#![no_main]
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run qasm3` (seed corpus: ../tests/fixtures/*.qasm3).
use libfuzzer_sys::fuzz_target;
use qcloud_qsim::{qasm3, ReadLimits};

fuzz_target!(|data: &[u8]| {
    if let Ok(src) = std::str::from_utf8(data) {
        let _ = qasm3::parse(src, &ReadLimits::default());
    }
});
