//! `cargo fuzz run parse_message`: see `hl7gw_fuzz::checks::parse_message` for what it checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hl7gw_fuzz::checks::parse_message(data));
