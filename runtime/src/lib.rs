//! hl7gw-runtime: what every generated hl7gw gateway links.
//!
//! One module per concern: [`hl7`], the HL7 v2 message core, and [`mapping`], the typed
//! primitives generated gateways and the spec-test runner share. The transport (TLS,
//! receiver, sender, durable queue) builds on them.

pub mod app;
pub mod cli;
pub mod client;
pub mod config;
pub mod dedup;
pub mod endpoint;
pub mod gateway;
pub mod hl7;
pub mod inbound;
pub mod intake;
pub mod listeners;
pub mod mapping;
pub mod metrics;
pub mod mllp;
pub mod queue;
pub mod server;
pub mod sink;
pub mod spec;
pub mod store;
pub mod tls;

pub use spec::GatewaySpec;
