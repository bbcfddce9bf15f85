#![no_main]
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run qpy` (seed corpus: ../tests/fixtures/*.qpy).
use libfuzzer_sys::fuzz_target;
use qcloud_qsim::{qpy, ReadLimits};

fuzz_target!(|data: &[u8]| {
    let _ = qpy::parse(data, &ReadLimits::default());
});
