//! The demo binary end to end: free ports, a temporary working folder, a bounded wait.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DEMO: &str = env!("CARGO_BIN_EXE_hl7gw-demo");
const PDF: &[u8] = include_bytes!("../src/report.pdf");

/// The longest one run may take (a debug build on a small machine; a run takes about a
/// second).
const LIMIT: Duration = Duration::from_secs(120);

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the demo with free ports in `work`, killing it past [`LIMIT`].
fn demo(work: &Path, extra: &[&str]) -> Run {
    let mut child = Command::new(DEMO)
        .args(["--port", "0", "--trust-port", "0", "--work-dir"])
        .arg(work)
        .args(extra)
        .env_remove("HL7GW_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the demo starts");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let run = Run {
        code: status.and_then(|s| s.code()),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    };
    assert!(
        status.is_some(),
        "the demo did not finish within {LIMIT:?}\n{}\n{}",
        run.stdout,
        run.stderr
    );
    run
}

/// The ACK codes of the Trust engine's exchanges, in order.
fn ack_codes(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("→ HTTP 200, ACK "))
        .map(|rest| rest.split_whitespace().next().unwrap_or("").to_owned())
        .collect()
}

fn assert_success(run: &Run) {
    assert_eq!(
        run.code,
        Some(0),
        "exit code\n--- stdout\n{}\n--- stderr\n{}",
        run.stdout,
        run.stderr
    );
}

#[test]
fn the_demo_runs_every_exchange_and_exits_0() {
    let work = tempfile::tempdir().unwrap();
    let run = demo(work.path(), &[]);
    assert_success(&run);
    let out = &run.stdout;

    // The Trust engine's five messages, each with the ACK it must get.
    assert_eq!(ack_codes(out), ["AA", "AA", "AA", "AA", "AE"], "{out}");
    for line in [
        "MSA|AA|A28-0001",
        "MSA|AA|A31-0001",
        "MSA|AA|A40-0001",
        "MSA|AA|ORM-0001",
        "MSA|AE|ORM-0002",
    ] {
        assert!(
            out.lines().any(|l| l.trim().starts_with(line)),
            "{line}\n{out}"
        );
    }

    // The report: queued by EMS, delivered to the Trust stand-in with its PDF, answered AA.
    assert!(out.contains("/outbound: HTTP 201, queue id 1"), "{out}");
    assert!(
        out.contains("Trust endpoint received ORU^R01 ORU-"),
        "{out}"
    );
    assert!(
        out.contains(&format!("PDF {} bytes (OBX-5.5, base64)", PDF.len())),
        "{out}"
    );
    assert!(out.contains("← answered AA"), "{out}");
    assert!(out.contains("queue id 1: delivered with AA"), "{out}");

    // What EMS can pull: the four accepted messages, not the rejected order.
    assert!(out.contains("4 record(s) EMS can pull"), "{out}");
    assert!(
        out.contains("demo complete: every exchange went as expected."),
        "{out}"
    );
    assert!(run.stderr.trim().is_empty(), "no log noise: {}", run.stderr);

    // The certificates and the PDF the Trust saved, byte for byte.
    for file in [
        "server.crt",
        "server.key",
        "client.crt",
        "client.key",
        "trust-ca.crt",
        "trust/tie-client.crt",
        "trust/tie-server.crt",
        "trust/ems-ca.crt",
    ] {
        assert!(work.path().join(file).is_file(), "{file}");
    }
    let received: Vec<_> = std::fs::read_dir(work.path().join("trust/received"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(std::fs::read(&received[0]).unwrap(), PDF);
}

#[test]
fn reruns_make_fresh_certificates_and_keep_the_store_only_when_asked() {
    let work = tempfile::tempdir().unwrap();
    assert_success(&demo(work.path(), &[]));

    // The same folder again, keeping the store: the repeats are answered from it (the same
    // ACKs), and the new report is the second message in the queue.
    let kept = demo(work.path(), &["--keep-store"]);
    assert_success(&kept);
    assert_eq!(ack_codes(&kept.stdout), ["AA", "AA", "AA", "AA", "AE"]);
    assert!(
        kept.stdout.contains("queue id 2: delivered with AA"),
        "{}",
        kept.stdout
    );
    assert!(
        kept.stdout.contains("(kept from before)"),
        "{}",
        kept.stdout
    );

    // Without --keep-store the store starts empty again.
    let fresh = demo(work.path(), &[]);
    assert_success(&fresh);
    assert!(
        fresh.stdout.contains("queue id 1: delivered with AA"),
        "{}",
        fresh.stdout
    );
}

#[test]
fn a_bad_option_is_a_usage_error() {
    let work = tempfile::tempdir().unwrap();
    let run = demo(work.path(), &["--no-such-option"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
}
