//! hl7gw-runtime: what every generated hl7gw gateway links.
//!
//! One module per concern. This release carries [`hl7`], the HL7 v2 message core; the
//! transport (TLS, receiver, sender, durable queue) builds on it.

pub mod hl7;
