//! Replays every input in `tests/fuzz_regressions/` through the checks the fuzz targets run
//! (`fuzz/src/checks.rs`, included here so no cargo-fuzz or nightly is needed): what the
//! fuzzers once found, and hand-written nasty inputs, must never panic or hang again.
//!
//! `scripts/fuzz.sh` copies new crash and timeout inputs into that folder.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../fuzz/src/checks.rs"]
mod checks;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

/// Longer than any input needs (the fuzzers' hang limit is 10 s with sanitizer overhead).
const PER_INPUT_LIMIT: Duration = Duration::from_secs(20);

fn inputs() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs one check on a thread so a hang is reported by name instead of stalling the suite.
fn replay(name: &str, data: Vec<u8>) -> Result<(), String> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let outcome = catch_unwind(AssertUnwindSafe(|| checks::all(&data)));
            let _ = tx.send(outcome.map_err(|payload| {
                payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_string()))
                    .unwrap_or_else(|| "non-text panic".into())
            }));
        })
        .unwrap();
    match rx.recv_timeout(PER_INPUT_LIMIT) {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("no result after {PER_INPUT_LIMIT:?} (hang)")),
    }
}

#[test]
fn every_saved_input_passes_every_check() {
    let files = inputs();
    assert!(
        files.len() >= 10,
        "expected the hand-written seeds at least, found {} files",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(file).unwrap();
        if let Err(why) = replay(&name, data) {
            failures.push(format!("{name}: {why}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} regression inputs fail:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn normalize_is_the_canonical_form() {
    assert_eq!(checks::normalize(b""), b"");
    assert_eq!(checks::normalize(b"\xEF\xBB\xBFA\r\nB\n\nC"), b"A\rB\rC\r");
    assert_eq!(checks::normalize(b"\r\n\rA\r\r\n"), b"A\r");
}

/// Some seeds are valid on purpose, so the accept-side checks (rebuild, re-parse, ACK) run.
#[test]
fn valid_seeds_reach_the_accept_side_checks() {
    use hl7gw_runtime::hl7::{Message, ParseOptions, parse_batch};
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    for name in [
        "seed-ack_response.hl7",
        "seed-ack_old_err.hl7",
        "seed-custom_delimiters.hl7",
        "seed-truncation_char_v27.hl7",
        "seed-latin1_declared.hl7",
        "seed-ascii_declared_high_escape.hl7",
        "seed-huge_field_count.hl7",
        "seed-deep_escapes_sequences.hl7",
        "seed-control_id_with_escapes.hl7",
    ] {
        let data = read(name);
        if let Err(e) = Message::parse_with(&data, &ParseOptions::lenient()) {
            panic!("{name}: {e}");
        }
    }
    let file = read("seed-batch_valid_lf.hl7");
    let batch = parse_batch(&file, &ParseOptions::lenient()).unwrap();
    assert_eq!(batch.messages.len(), 2);
}
