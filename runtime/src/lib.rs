//! hl7gw-runtime: what every generated hl7gw gateway links.
//!
//! What a generated crate is written in: [`GatewaySpec`] (the gateway as one value), the
//! [`config`] types of its environments, the [`mapping`] traits its records implement
//! (`Record`, `CodeList`, `Attachment`) and the [`hl7`] message core. What runs it: [`cli`]
//! (the `gw-<code>` command line) over [`app`] (one environment's process). The components
//! `app` wires (receiver, store, queue, sender, intake, ...) are public for the tests, the
//! benchmarks and the demo; each module keeps its internals private and names its API with
//! `pub use`, as [`hl7`] does. docs/ARCHITECTURE.md has the code map.

mod accept;
mod admission;
pub mod app;
pub mod cli;
pub mod client;
pub mod config;
pub mod console;
pub mod control;
pub mod dedup;
pub mod ems;
mod ems_listener;
pub mod endpoint;
#[cfg(feature = "fault-injection")]
pub mod fault;
pub mod gateway;
pub mod health;
pub mod hl7;
pub mod host;
pub mod inbound;
pub mod intake;
pub mod listeners;
pub mod mapping;
pub mod metrics;
pub mod mllp;
pub mod queue;
pub mod reload;
pub mod server;
pub mod sink;
pub mod spec;
pub mod store;
pub mod supervise;
pub mod tls;

pub use spec::GatewaySpec;
