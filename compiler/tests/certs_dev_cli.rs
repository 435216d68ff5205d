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
