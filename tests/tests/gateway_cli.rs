//! The generated gateways' command line (`hl7gw_runtime::cli`), run in process with gw-demo's
//! generated parts: what an operator types and what comes back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use hl7gw_runtime::cli::run;

fn example(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/messages")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn gw(args: &[&str]) -> (u8, String) {
    let mut out = Vec::new();
    let mut argv = vec!["gw-demo"];
    argv.extend_from_slice(args);
    let code = run(&gw_demo::SPEC, argv, &mut out);
    (code, String::from_utf8(out).unwrap())
}

#[test]
fn map_decides_like_the_receiver() {
    let (code, out) = gw(&["map", "--env", "test", &example("adt_a28.hl7")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"ack\": \"AA\""), "{out}");
    assert!(out.contains("MSA|AA|A28-0001"), "{out}");
    let (code, out) = gw(&[
        "map",
        "--env",
        "test",
        &example("orm_o01_bad_procedure.hl7"),
    ]);
    assert_eq!(code, 1);
    assert!(out.contains("ERR|OBR^1^4^103"), "{out}");
    // A TEST message in PROD is rejected.
    let (code, out) = gw(&["map", "--env", "prod", &example("adt_a28.hl7")]);
    assert_eq!(code, 1);
    assert!(out.contains("\"ack\": \"AR\""), "{out}");
}

#[test]
fn check_config_and_queue_status() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir
        .path()
        .join("gateway.sqlite")
        .to_string_lossy()
        .into_owned();
    let (code, out) = gw(&["check", "--env", "test", "--store", &store]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ok: demo test") && out.contains("journal_mode: \"wal\""),
        "{out}"
    );
    assert!(
        out.contains("server CA"),
        "the sending side is checked too: {out}"
    );
    let (code, out) = gw(&["config", "--env", "prod"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("specs/demo.yaml") && out.contains("processing_id: \"P\""),
        "{out}"
    );
    let (code, out) = gw(&["queue", "status", "--env", "test", "--store", &store]);
    assert_eq!(code, 0, "{out}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["depth"], 0);
    assert_eq!(status["held"], false);
    assert!(
        status.get("stalled").is_none(),
        "a store that takes writes stops nothing: {out}"
    );
    let (code, _) = gw(&["queue", "retry", "--env", "test", "--store", &store, "7"]);
    assert_eq!(code, 1, "no message 7 to retry");
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(gw(&["serve", "--env", "staging"]).0, 2);
    assert_eq!(gw(&["frobnicate"]).0, 2);
    assert_eq!(gw(&["map", "--env", "test", "/nonexistent.hl7"]).0, 2);
}

/// I/O failures are 2 (usage or I/O), not 1 (the input has errors): a port another process
/// holds, a certificate file that cannot be read.
#[test]
fn a_port_in_use_or_an_unreadable_file_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir
        .path()
        .join("gateway.sqlite")
        .to_string_lossy()
        .into_owned();
    // The certificates load and the store opens: only the port stands in the way.
    assert_eq!(gw(&["check", "--env", "test", "--store", &store]).0, 0);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, out) = gw(&[
        "serve", "--env", "test", "--store", &store, "--listen", &addr,
    ]);
    assert_eq!(code, 2, "serving on a port in use: {out}");
    let missing = dir.path().join("no-such-folder");
    let (code, out) = gw(&[
        "check",
        "--env",
        "test",
        "--store",
        &store,
        "--cert-dir",
        &missing.to_string_lossy(),
    ]);
    assert_eq!(code, 2, "certificates that cannot be read: {out}");
}
