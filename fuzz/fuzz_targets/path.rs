//! `cargo fuzz run path`: see `hl7gw_fuzz::checks::path` for what it checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hl7gw_fuzz::checks::path(data));
