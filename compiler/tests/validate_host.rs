//! `hl7gw validate` with several specs: they are one host's customers (`gw-host`), so their
//! customer codes, host names, stores and intake MLLP receiving facilities must not collide,
//! and their `ems` access must be the same (the host's EMS listeners are shared). The fixtures in
//! `tests/specs/host/`: `one.yaml` (the base spec), `clash.yaml` (colliding with it in each
//! way, on TEST) and `apart.yaml` (colliding in none). Only the `host-*` findings are looked
//! at: the fixtures' certificates are not made here, which other findings report.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn host_specs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/specs/host")
}

/// The `host-*` findings of `hl7gw validate FILES --format json`: (code, file, line, summary).
fn host_findings(files: &[&str]) -> Vec<(String, String, u64, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_hl7gw"))
        .current_dir(host_specs())
        .args(["validate", "--format", "json", "--today", "2026-11-27"])
        .args(files)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    let mut found: Vec<_> = report["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["code"].as_str().unwrap().starts_with("host-"))
        .map(|d| {
            (
                d["code"].as_str().unwrap().to_owned(),
                d["file"].as_str().unwrap().to_owned(),
                d["range"]["start"]["line"].as_u64().unwrap_or(0),
                d["summary"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    found.sort();
    found
}

#[test]
fn colliding_customers_are_named_with_both_files_and_places() {
    let found = host_findings(&["one.yaml", "clash.yaml"]);
    let got: Vec<(&str, &str, u64)> = found
        .iter()
        .map(|(code, file, line, _)| (code.as_str(), file.as_str(), *line))
        .collect();
    assert_eq!(
        got,
        [
            ("host-ems-differs", "clash.yaml", 36),
            ("host-same-code", "clash.yaml", 8),
            ("host-same-facility", "clash.yaml", 33),
            ("host-same-hostname", "clash.yaml", 20),
            ("host-same-store", "clash.yaml", 34),
        ],
        "{found:#?}"
    );
    let summary = |code: &str| {
        found
            .iter()
            .find(|f| f.0 == code)
            .map(|f| f.3.as_str())
            .unwrap()
    };
    assert_eq!(
        summary("host-same-code"),
        "customer code `demo` is also one.yaml's (line 4, /customer/code)"
    );
    assert_eq!(
        summary("host-same-hostname"),
        "host name `demo-test.api.example-ems.cloud` is also one.yaml's (line 16, /environments/test/receive/hostname)"
    );
    assert!(
        summary("host-same-store").ends_with(
            "var/demo-test.sqlite` is also one.yaml's (line 30, /environments/test/store)"
        ),
        "{}",
        summary("host-same-store")
    );
    // Compared on its first component: `DEMO-TRUST^2.16…^ISO` routes as `DEMO-TRUST`.
    assert_eq!(
        summary("host-same-facility"),
        "receiving facility `DEMO-TRUST` is also one.yaml's (line 29, /environments/test/send/receiving_facility)"
    );
    assert_eq!(
        summary("host-ems-differs"),
        "TEST's `ems` differs from one.yaml's (line 31, /environments/test/ems)"
    );
    // The order the specs are given in decides which one the finding is placed in.
    let reversed = host_findings(&["clash.yaml", "one.yaml"]);
    assert_eq!(reversed.len(), 5);
    assert!(reversed.iter().all(|f| f.1 == "one.yaml"), "{reversed:#?}");
}

#[test]
fn customers_apart_share_a_host() {
    assert_eq!(host_findings(&["one.yaml", "apart.yaml"]), []);
    // One spec alone is never compared with itself.
    assert_eq!(host_findings(&["clash.yaml"]), []);
}

#[test]
fn the_code_host_is_reserved_even_for_one_spec() {
    let found = host_findings(&["reserved.yaml"]);
    assert_eq!(
        found,
        [(
            "host-reserved-code".to_owned(),
            "reserved.yaml".to_owned(),
            5,
            "customer code `host` is reserved".to_owned()
        )]
    );
}
