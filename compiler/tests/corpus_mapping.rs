//! Every message of the shared corpus whose type a spec in `specs/` declares inbound is
//! either mapped or rejected with exact errors (a table 0357 code and a location), and none
//! panics. The mapping is the spec-driven one `hl7gw test` uses; the generated crates are
//! compared with it in the `tests` package.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use hl7gw_runtime::hl7::{ParseOptions, parse_batch};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn declared_corpus_messages_map_or_fail_exactly() {
    let corpus = repo().join("../shared/corpus/hl7");
    if !corpus.join("SOURCES.md").is_file() {
        assert!(
            std::env::var_os("HL7GW_REQUIRE_CORPUS").is_none(),
            "HL7GW_REQUIRE_CORPUS is set but {} is missing",
            corpus.display()
        );
        eprintln!("skipped: no shared corpus at {}", corpus.display());
        return;
    }
    let mut specs: Vec<PathBuf> = std::fs::read_dir(repo().join("specs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    specs.sort();
    assert!(specs.len() >= 2);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n != "SOURCES.md"))
        .collect();
    files.sort();
    let (mut mapped, mut rejected) = (0, 0);
    for spec_path in &specs {
        let loaded = hl7gw::spec::load_spec(spec_path, &spec_path.to_string_lossy())
            .unwrap_or_else(|d| panic!("{}: {d:?}", spec_path.display()));
        for file in &files {
            let bytes = std::fs::read(file).unwrap();
            let Ok(batch) = parse_batch(&bytes, &ParseOptions::lenient()) else {
                continue;
            };
            for message in &batch.messages {
                let message_type =
                    format!("{}^{}", message.message_code(), message.trigger_event());
                if !loaded.spec.inbound.contains_key(&message_type) {
                    continue;
                }
                let name = format!("{} with {}", name(file), name(spec_path));
                match hl7gw::testrun::map_inbound(&loaded.spec, &message_type, message) {
                    Ok(record) => {
                        assert!(record.is_object(), "{name}");
                        eprintln!("{name}: mapped");
                        mapped += 1;
                    }
                    Err(errors) => {
                        assert!(!errors.is_empty(), "{name}");
                        for e in &errors {
                            assert!(
                                matches!(e.code, 101..=103),
                                "{name}: unexpected code {}",
                                e.code
                            );
                            let location = e.location.to_string();
                            assert!(
                                hl7gw_runtime::hl7::Path::parse(&location).is_ok(),
                                "{name}: location {location} is not a path"
                            );
                            assert!(!e.field.is_empty() && !e.message.is_empty(), "{name}");
                        }
                        let summary: Vec<String> = errors
                            .iter()
                            .map(|e| format!("{} at {}", e.code, e.location))
                            .collect();
                        eprintln!("{name}: {}", summary.join(", "));
                        rejected += 1;
                    }
                }
            }
        }
    }
    eprintln!("corpus mapping: {mapped} mapped, {rejected} rejected with exact errors");
    assert!(
        mapped + rejected >= 8,
        "too few corpus messages exercised the specs"
    );
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}
