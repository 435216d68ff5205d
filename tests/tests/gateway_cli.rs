//! The generated gateways' command line (`hl7gw_runtime::cli`), run in process with gw-demo's
//! generated parts: what an operator types and what comes back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use hl7gw_runtime::cli::{Generated, run};

fn demo() -> Generated {
    Generated {
        package: "gw-demo",
        customer_name: gw_demo::config::CUSTOMER_NAME,
        customer_code: gw_demo::config::CUSTOMER_CODE,
        spec_path: gw_demo::SPEC_PATH,
        spec_sha256: gw_demo::SPEC_SHA256,
        hl7_version: gw_demo::config::HL7_VERSION,
        inbound: gw_demo::INBOUND,
        outbound: gw_demo::OUTBOUND,
        environment: gw_demo::environment,
        map: gw_demo::map_inbound,
        build: gw_demo::outbound_from_json,
        workspace_root: concat!(env!("CARGO_MANIFEST_DIR"), "/.."),
    }
}

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
    let code = run(&demo(), argv, &mut out);
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
    let (code, _) = gw(&["queue", "retry", "--env", "test", "--store", &store, "7"]);
    assert_eq!(code, 1, "no message 7 to retry");
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(gw(&["serve", "--env", "staging"]).0, 2);
    assert_eq!(gw(&["frobnicate"]).0, 2);
    assert_eq!(gw(&["map", "--env", "test", "/nonexistent.hl7"]).0, 2);
}
