//! Replays every input in `compiler/tests/loader_regressions/` (hand-written nasty YAML and
//! whatever `scripts/fuzz.sh` found with the `spec_loader` target) through the spec loader:
//! each gives a spec or diagnostics placed inside the text, and none panics or hangs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

#[test]
fn every_regression_input_loads_or_fails_cleanly() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/loader_regressions");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 9, "regression inputs missing");
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&file).unwrap();
        let (tx, rx) = mpsc::channel();
        let worker_name = name.clone();
        std::thread::spawn(move || {
            let outcome = match String::from_utf8(bytes) {
                Err(_) => Ok(()), // the CLI reports non-UTF-8 files as unreadable
                Ok(text) => {
                    let len = text.len();
                    match hl7gw::spec::loader::load_spec_text(text, Path::new("x.yaml"), "x.yaml") {
                        Ok(_) => Ok(()),
                        Err(diagnostics) if diagnostics.is_empty() => {
                            Err(format!("{worker_name}: an error without a diagnostic"))
                        }
                        Err(diagnostics) => diagnostics
                            .iter()
                            .find(|d| {
                                d.range
                                    .is_some_and(|r| r.start.byte > len || r.start.line == 0)
                            })
                            .map_or(Ok(()), |d| {
                                Err(format!("{worker_name}: range outside the text: {d:?}"))
                            }),
                    }
                }
            };
            let _ = tx.send(outcome);
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(())) => {}
            Ok(Err(why)) => panic!("{why}"),
            Err(_) => panic!("{name}: the loader panicked or ran for more than 20 s"),
        }
    }
}
