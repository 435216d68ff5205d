//! Support shared by the tests and benchmarks of every crate in the workspace, kept here once
//! so every suite builds its certificates (EMS's too), requests, engine emulations, stand-in Trust and
//! messages the same way. The end-to-end tests themselves live in `tests/tests/` and
//! `tests/benches/`; what one suite alone uses stays beside it
//! (`tests/tests/receiver_support/`, `tests/tests/sender_support/`,
//! `runtime/tests/support/`).

use std::path::PathBuf;

pub mod bench;
pub mod child;
pub mod ems;
pub mod engines;
pub mod logs;
pub mod messages;
pub mod pki;
pub mod postgres;
pub mod roundtrip;
pub mod tmpfs;
pub mod trust;
pub mod wire;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The specs folder: the base directory relative paths in a gateway's configuration resolve
/// against, and where the specs' development certificates live.
pub fn specs() -> PathBuf {
    repo().join("specs")
}
