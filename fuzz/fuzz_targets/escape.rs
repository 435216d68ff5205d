//! `cargo fuzz run escape`: see `hl7gw_fuzz::checks::escape_round_trip` for what it checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hl7gw_fuzz::checks::escape_round_trip(data));
