//! Every file of the shared public corpus (`../shared/corpus/hl7`, see its SOURCES.md):
//! valid and edge files parse and round-trip, malformed ones fail with a one-line error that
//! names a byte, none panics or hangs.
//!
//! CI sets `HL7GW_REQUIRE_CORPUS=1`, so a missing corpus fails there; elsewhere the test
//! says it skipped and the fixture tests still cover the same checks.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use hl7gw_tests::roundtrip;

fn corpus_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/hl7");
    if dir.join("SOURCES.md").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("HL7GW_REQUIRE_CORPUS").is_none(),
        "HL7GW_REQUIRE_CORPUS is set but {} is missing",
        dir.display()
    );
    eprintln!("skipped: no shared corpus at {}", dir.display());
    None
}

/// file name → kind column of SOURCES.md.
fn kinds(dir: &std::path::Path) -> BTreeMap<String, String> {
    let sources = std::fs::read_to_string(dir.join("SOURCES.md")).unwrap();
    sources
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((name.to_string(), cells.get(2)?.to_string()))
        })
        .collect()
}

#[test]
fn every_corpus_file_behaves_as_its_kind_says() {
    let Some(dir) = corpus_dir() else { return };
    let kinds = kinds(&dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n != "SOURCES.md"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 58, "the corpus holds 58 messages");
    let (mut valid, mut malformed) = (0, 0);
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let kind = kinds
            .get(&name)
            .unwrap_or_else(|| panic!("{name} is not listed in SOURCES.md"));
        let bytes = std::fs::read(path).unwrap();
        if kind.starts_with("malformed") {
            roundtrip::assert_malformed(&name, &bytes);
            malformed += 1;
        } else {
            roundtrip::assert_valid(&name, &bytes);
            valid += 1;
        }
    }
    eprintln!("corpus: {valid} valid or edge files round-tripped, {malformed} malformed rejected");
    assert_eq!(valid + malformed, 58);
}
