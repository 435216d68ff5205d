//! `hl7gw inspect` and `hl7gw ack` as a user runs them: the JSON contract, exit codes and
//! one-line errors of docs/contracts.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

fn hl7gw(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hl7gw"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // A usage error exits before reading standard input; that is not a test failure.
    let _ = input.write_all(stdin.unwrap_or_default());
    drop(input);
    child.wait_with_output().unwrap()
}

fn fixture(rel: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../runtime/tests/fixtures")
        .join(rel)
        .to_string_lossy()
        .into_owned()
}

const SMALL: &[u8] =
    b"MSH|^~\\&|A|B|||20260101||ADT^A28|1|P|2.4||\rPID|1||\"\"~9449305552^^^NHS^NH||O\\T\\BRIEN^ANN\r";

#[test]
fn inspect_json_keeps_every_position() {
    let out = hl7gw(&["inspect", "--json", "-"], Some(SMALL));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(lines.len(), 1);
    let v: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(
        v["delimiters"],
        json!({"field":"|","component":"^","repetition":"~","escape":"\\","subcomponent":"&"})
    );
    let msh = &v["segments"][0];
    assert_eq!(msh["id"], "MSH");
    assert_eq!(msh["fields"][0], json!([[["|"]]]));
    assert_eq!(msh["fields"][1], json!([[["^~\\&"]]]));
    assert_eq!(msh["fields"][8], json!([[["ADT"], ["A28"]]]));
    // Trailing empty fields are kept: MSH-13 and MSH-14.
    assert_eq!(msh["fields"].as_array().unwrap().len(), 14);
    assert_eq!(msh["fields"][13], json!([[[""]]]));
    let pid = &v["segments"][1];
    assert_eq!(pid["fields"][1], json!([[[""]]]));
    assert_eq!(
        pid["fields"][2],
        json!([[["\"\""]], [["9449305552"], [""], [""], ["NHS"], ["NH"]]])
    );
    assert_eq!(pid["fields"][4], json!([[["O&BRIEN"], ["ANN"]]]));
}

#[test]
fn inspect_prints_one_object_per_message_of_a_batch() {
    let out = hl7gw(
        &["inspect", "--json", &fixture("valid/batch_file.hl7")],
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<Value> = std::str::from_utf8(&out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["segments"][0]["fields"][9], json!([[["B2"]]]));
}

#[test]
fn malformed_input_exits_1_with_one_line_naming_the_byte() {
    for (name, offset) in [
        ("malformed/nul_in_data.hl7", 44),
        ("malformed/two_encoding_chars.hl7", 4),
        ("malformed/empty.hl7", 0),
    ] {
        let out = hl7gw(&["inspect", "--json", &fixture(name)], None);
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert!(out.stdout.is_empty());
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(&format!("byte {offset}: ")), "{err}");
    }
}

#[test]
fn strict_flag_refuses_line_feeds_that_the_default_accepts() {
    let file = fixture("valid/adt_a40_lf_bom.hl7");
    assert_eq!(hl7gw(&["inspect", &file], None).status.code(), Some(0));
    let strict = hl7gw(&["inspect", "--strict", &file], None);
    assert_eq!(strict.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&strict.stderr).contains("line feed"));
}

#[test]
fn usage_and_io_errors_exit_2() {
    assert_eq!(hl7gw(&["inspect"], None).status.code(), Some(2));
    assert_eq!(hl7gw(&["frobnicate"], None).status.code(), Some(2));
    let missing = hl7gw(&["inspect", "/nonexistent/file.hl7"], None);
    assert_eq!(missing.status.code(), Some(2));
    let bad_path = hl7gw(&["inspect", "--path", "PID3", "-"], Some(SMALL));
    assert_eq!(bad_path.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_path.stderr).contains("character 4"));
}

#[test]
fn inspect_paths_with_filters() {
    let out = hl7gw(
        &[
            "inspect",
            "--path",
            "PID-3[CX.5=NH].1",
            "--path",
            "PID-9",
            "-",
        ],
        Some(SMALL),
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "PID-3[2].1 = 9449305552\nPID-9: (not present)\n"
    );
}

#[test]
fn ack_answers_with_the_version_layout() {
    let out = hl7gw(
        &[
            "ack",
            "--timestamp",
            "20260101120000+0000",
            "--control-id",
            "ACK1",
            "--error",
            "101@PID-3:NHS number missing",
            "-",
        ],
        Some(SMALL),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "MSH|^~\\&|||A|B|20260101120000+0000||ACK^A28^ACK|ACK1|P|2.4\r\
         MSA|AE|1|NHS number missing\r\
         ERR|PID^1^3^101&Required field missing&HL70357\r"
    );
    let bad = hl7gw(&["ack", "--code", "OK", "-"], Some(SMALL));
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn ack_of_an_enhanced_mode_message_is_an_application_ack_unless_as_requested() {
    let msa = |extra: &[&str]| {
        let mut args = vec!["ack", "--line-ending", "lf"];
        args.extend_from_slice(extra);
        let file = fixture("valid/adt_a28.hl7");
        args.push(&file);
        let out = hl7gw(&args, None);
        assert_eq!(out.status.code(), Some(0));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.starts_with("MSH|^~\\&|EMS|EMS-HOST|TIE|DEMO-TRUST|"));
        text.lines()
            .find(|l| l.starts_with("MSA"))
            .unwrap()
            .to_owned()
    };
    assert_eq!(msa(&[]), "MSA|AA|A28-0001");
    assert_eq!(
        msa(&["--acknowledgement", "application"]),
        "MSA|AA|A28-0001"
    );
    assert_eq!(
        msa(&["--acknowledgement", "as_requested"]),
        "MSA|CA|A28-0001"
    );
    let bad = hl7gw(&["ack", "--acknowledgement", "commit", "-"], Some(SMALL));
    assert_eq!(bad.status.code(), Some(2));
}
