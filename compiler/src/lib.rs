//! hl7gw: compiles per-customer YAML integration specs into HL7-over-HTTPS gateways.
//!
//! A spec is loaded with a source span for every value ([`spec`], checked against the JSON
//! Schema of [`schema`]), checked ([`check`], against the HL7 dictionary of [`dict`] and the
//! certificate rules of [`certs`]), reported ([`diag`] for the terminal and JSON, [`report`]
//! for the HTML go-live page), run against its tests without a build ([`testrun`]) and
//! turned into a gateway crate that links `hl7gw-runtime` ([`codegen`]). [`cli`] is the
//! `hl7gw` command line and its exit codes.
//!
//! What a message means (HL7 parsing, mapping, the ACK decision) is never decided here: it
//! is called from [`hl7gw_runtime`], so `validate`, `test` and the generated gateways agree.
//! `docs/ARCHITECTURE.md` has the map; `docs/contracts.md` the command line's contract.

pub mod certs;
pub mod check;
pub mod cli;
pub mod codegen;
pub mod diag;
pub mod dict;
pub mod report;
pub mod schema;
pub mod spec;
pub mod testrun;
