//! `hl7gw test` (the spec-driven runner) and the generated gateway crates decide every
//! message the same way: same ACK code, same errors at the same locations, same record JSON.
//! Checked on every spec test message, every example message, and every corpus message,
//! in both environments.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use hl7gw::spec::{EnvName, LoadedSpec, load_spec};
use hl7gw_runtime::config::EnvName as RuntimeEnv;
use hl7gw_runtime::hl7::{Message, ParseOptions, parse_batch};
use hl7gw_runtime::inbound::Outcome;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

type Generated = fn(&[u8], RuntimeEnv) -> Option<Outcome>;

fn gateways() -> Vec<(&'static str, Generated)> {
    vec![
        ("demo", |b, e| gw_demo::SPEC.process(b, e).ok()),
        ("northwest", |b, e| gw_northwest::SPEC.process(b, e).ok()),
        ("eastbay", |b, e| gw_eastbay::SPEC.process(b, e).ok()),
        ("riverside", |b, e| gw_riverside::SPEC.process(b, e).ok()),
    ]
}

/// Every message file the comparison uses: examples (recursively) and the shared corpus.
fn message_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.file_name().is_some_and(|n| n != "SOURCES.md") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&repo().join("examples/messages"), &mut files);
    let corpus = repo().join("../shared/corpus/hl7");
    if corpus.is_dir() {
        walk(&corpus, &mut files);
    } else {
        assert!(
            std::env::var_os("HL7GW_REQUIRE_CORPUS").is_none(),
            "HL7GW_REQUIRE_CORPUS is set but {} is missing",
            corpus.display()
        );
    }
    files.sort();
    files
}

fn load(code: &str) -> LoadedSpec {
    let path = repo().join(format!("specs/{code}.yaml"));
    load_spec(&path, &format!("specs/{code}.yaml")).unwrap_or_else(|d| panic!("{d:?}"))
}

#[test]
fn the_runner_and_the_generated_gateways_agree_on_every_message() {
    let files = message_files();
    assert!(files.len() >= 15, "too few messages: {}", files.len());
    let mut compared = 0;
    let mut accepted = 0;
    for (code, generated) in gateways() {
        let spec = load(code);
        for file in &files {
            let bytes = std::fs::read(file).unwrap();
            for (env, runtime_env) in [
                (EnvName::Test, RuntimeEnv::Test),
                (EnvName::Prod, RuntimeEnv::Prod),
            ] {
                let ours = hl7gw::testrun::process(&spec, env, &bytes).ok();
                let theirs = generated(&bytes, runtime_env);
                let name = format!("{} with gw-{code} ({})", file.display(), env.as_str());
                assert_eq!(
                    ours.is_some(),
                    theirs.is_some(),
                    "{name}: one side parsed the message, the other did not"
                );
                if let (Some(a), Some(b)) = (ours, theirs) {
                    assert_eq!(
                        serde_json::to_value(&a).unwrap(),
                        serde_json::to_value(&b).unwrap(),
                        "{name}: outcomes differ"
                    );
                    compared += 1;
                    if a.record.is_some() {
                        accepted += 1;
                    }
                }
            }
        }
    }
    eprintln!("agreement: {compared} outcomes compared, {accepted} mapped records among them");
    assert!(
        accepted >= 5,
        "too few accepted messages to compare records"
    );
}

type GeneratedMap =
    fn(&str, &Message<'_>) -> Result<serde_json::Value, Vec<hl7gw_runtime::mapping::MappingError>>;

/// The mapping itself, below the AR screening (environment, receiver, type): every message
/// of a declared type, whatever its header says, maps to the same record or the same errors.
#[test]
fn mapping_agrees_on_every_message_of_a_declared_type() {
    let maps: [(&str, GeneratedMap); 4] = [
        ("demo", |t, m| gw_demo::SPEC.map_inbound(t, m)),
        ("northwest", |t, m| gw_northwest::SPEC.map_inbound(t, m)),
        ("eastbay", |t, m| gw_eastbay::SPEC.map_inbound(t, m)),
        ("riverside", |t, m| gw_riverside::SPEC.map_inbound(t, m)),
    ];
    let mut compared = 0;
    for (code, generated) in maps {
        let spec = load(code);
        for file in message_files() {
            let bytes = std::fs::read(&file).unwrap();
            let Ok(batch) = parse_batch(&bytes, &ParseOptions::lenient()) else {
                continue;
            };
            for message in &batch.messages {
                let message_type =
                    format!("{}^{}", message.message_code(), message.trigger_event());
                if !spec.spec.inbound.contains_key(&message_type) {
                    continue;
                }
                let ours = hl7gw::testrun::map_inbound(&spec.spec, &message_type, message);
                let theirs = generated(&message_type, message);
                assert_eq!(ours, theirs, "{} with gw-{code}", file.display());
                compared += 1;
            }
        }
    }
    eprintln!("mapping agreement: {compared} messages");
    assert!(
        compared >= 20,
        "too few messages of declared types: {compared}"
    );
}

#[test]
fn spec_tests_pass_in_both_runners() {
    for (code, generated) in gateways() {
        let spec = load(code);
        for test in &spec.spec.tests {
            let bytes = std::fs::read(spec.resolve(&test.message)).unwrap();
            let outcome = generated(&bytes, RuntimeEnv::Test).unwrap();
            let failures = hl7gw::testrun::check_expectations(test, &outcome);
            assert!(
                failures.is_empty(),
                "gw-{code}: {}: {failures:?}",
                test.name
            );
        }
        let results = hl7gw::testrun::run_spec_tests(&spec);
        assert!(
            results.iter().all(|r| r.passed()),
            "hl7gw test {code}: {results:?}"
        );
    }
}
