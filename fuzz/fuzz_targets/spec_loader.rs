//! `cargo fuzz run spec_loader`: any bytes as a customer spec. The loader must answer with a
//! spec or diagnostics (each placed inside the text) and never panic or hang.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hl7gw_fuzz::spec_checks::spec_loader(data));
