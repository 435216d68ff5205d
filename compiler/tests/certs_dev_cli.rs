//! `hl7gw certs dev` keeps the exit-code contract of docs/contracts.md §1: 1 when the spec or
//! the existing files stand in the way, 2 when a file cannot be written.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

fn certs_dev(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["certs", "dev", "spec.yaml"];
    args.extend_from_slice(extra);
    match Command::new(env!("CARGO_BIN_EXE_hl7gw"))
        .args(&args)
        .current_dir(dir)
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!("cannot run hl7gw: {e}"),
    }
}

fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/specs/base/basic.yaml");
    std::fs::copy(&base, dir.path().join("spec.yaml"))
        .unwrap_or_else(|e| panic!("{}: {e}", base.display()));
    dir
}

#[test]
fn a_file_that_cannot_be_written_is_exit_2() {
    let dir = workspace();
    // The spec's certificates go under certs/: make that a plain file so no folder can be
    // made there (root can write anywhere, so permissions would not test this).
    std::fs::write(dir.path().join("certs"), b"not a folder").unwrap_or_else(|e| panic!("{e}"));
    let out = certs_dev(dir.path(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("certs"),
        "the error names the path: {stderr}"
    );
}

#[test]
fn existing_files_without_force_are_exit_1_and_kept() {
    let dir = workspace();
    let first = certs_dev(dir.path(), &[]);
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let second = certs_dev(dir.path(), &[]);
    assert_eq!(
        second.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(certs_dev(dir.path(), &["--force"]).status.code(), Some(0));
}

fn validate_json(dir: &Path) -> (Option<i32>, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_hl7gw"))
        .args(["validate", "spec.yaml", "--format", "json"])
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run hl7gw: {e}"));
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code(), report)
}

/// The codes and JSON pointers of a validate report's diagnostics.
fn findings(report: &serde_json::Value) -> Vec<(String, String)> {
    report["diagnostics"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            (
                d["code"].as_str().unwrap_or_default().to_owned(),
                d["pointer"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// With `ems.tls`, `certs dev` makes the gateway's certificate for EMS, EMS's CA (and an
/// empty CRL) and EMS's client certificate, and `validate` checks them as it checks the
/// others: clean as made, a certificate that does not name `ems.hostname` reported at it.
#[test]
fn ems_certificates_are_made_and_checked() {
    let dir = workspace();
    let spec = dir.path().join("spec.yaml");
    let text = std::fs::read_to_string(&spec).unwrap();
    let ems = "    store: var/demo-test.sqlite\n    ems:\n      address: 0.0.0.0\n      hostname: ems-gateway-test.example-ems.cloud\n      tls:\n        cert: certs/test/ems-server.crt\n        key: certs/test/ems-server.key\n        client_ca: certs/test/ems-client-ca.crt\n        client_crl: certs/test/ems-client-ca.crl\n      allowed_clients: [\"CN=ems-test.example-ems.cloud\"]\n";
    let plain = "    store: var/demo-test.sqlite\n    ems: { plain_loopback: true }\n";
    assert!(text.contains(plain));
    std::fs::write(&spec, text.replacen(plain, ems, 1)).unwrap();
    let made = certs_dev(dir.path(), &[]);
    assert_eq!(
        made.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let certs = dir.path().join("certs/test");
    for file in [
        "ems-server.crt",
        "ems-server.key",
        "ems-client-ca.crt",
        "ems-client-ca.crl",
        "ems/ems-client.crt",
        "ems/ems-client.key",
    ] {
        assert!(certs.join(file).is_file(), "{file} was not made");
    }
    let client = std::fs::read(certs.join("ems/ems-client.crt")).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&client).unwrap();
    let cert = pem.parse_x509().unwrap();
    assert!(
        cert.subject()
            .to_string()
            .contains("CN=ems-test.example-ems.cloud"),
        "{}",
        cert.subject()
    );
    let (code, report) = validate_json(dir.path());
    let errors: Vec<_> = findings(&report)
        .into_iter()
        .filter(|(c, _)| c.starts_with("cert-"))
        .collect();
    assert_eq!(errors, [], "{report}");
    assert_eq!(code, Some(0), "{report}");

    // The receive side's certificate in EMS's place names another host.
    std::fs::copy(certs.join("server.crt"), certs.join("ems-server.crt")).unwrap();
    std::fs::copy(certs.join("server.key"), certs.join("ems-server.key")).unwrap();
    let (code, report) = validate_json(dir.path());
    assert_eq!(code, Some(1), "{report}");
    assert!(
        findings(&report).contains(&(
            "cert-hostname-mismatch".to_owned(),
            "/environments/test/ems/tls/cert".to_owned()
        )),
        "{report}"
    );
    // EMS's CA missing is reported at its key.
    std::fs::remove_file(certs.join("ems-client-ca.crt")).unwrap();
    let (_, report) = validate_json(dir.path());
    assert!(
        findings(&report)
            .iter()
            .any(|(c, p)| c.starts_with("cert-") && p == "/environments/test/ems/tls/client_ca"),
        "{report}"
    );
}
