//! Support shared by the tests and benchmarks of every crate in the workspace, kept here once
//! so every suite builds its certificates (EMS's too), requests, engine emulations, stand-in Trust and
//! messages the same way. The end-to-end tests themselves live in `tests/tests/` and
//! `tests/benches/`; what one suite alone uses stays beside it
//! (`tests/tests/receiver_support/`, `tests/tests/sender_support/`,
//! `runtime/tests/support/`).

use std::path::PathBuf;

pub mod bench;
pub mod browser;
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
pub mod turns;
pub mod wire;

/// Whether curl can run; without it a curl test says it skipped, unless
/// `HL7GW_REQUIRE_CURL` is set (CI), which makes its absence a failure.
pub fn curl_available() -> bool {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok()
    {
        return true;
    }
    assert!(
        std::env::var_os("HL7GW_REQUIRE_CURL").is_none(),
        "HL7GW_REQUIRE_CURL is set but curl cannot be run"
    );
    println!("skipped: curl is not installed (set HL7GW_REQUIRE_CURL to make this fail)");
    false
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The specs folder: the base directory relative paths in a gateway's configuration resolve
/// against, and where the specs' development certificates live.
pub fn specs() -> PathBuf {
    repo().join("specs")
}
