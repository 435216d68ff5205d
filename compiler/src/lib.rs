//! hl7gw: compiles per-customer YAML integration specs into HL7-over-HTTPS gateways.
//!
//! One module per concern; this release carries the command line ([`cli`]) with the HL7
//! tools `inspect` and `ack`, built on [`hl7gw_runtime::hl7`].

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
