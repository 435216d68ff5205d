//! `cargo fuzz run parse_batch`: see `hl7gw_fuzz::checks::parse_batch_input` for what it checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hl7gw_fuzz::checks::parse_batch_input(data));
