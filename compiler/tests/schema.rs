//! `specs/schema.json`, the JSON Schema editors use to check specs as they are typed: it is
//! exactly what `hl7gw schema` generates from the Rust model, the demo spec satisfies it, and it
//! rejects an unknown key, as `hl7gw validate` does.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn checked_in_schema() -> Value {
    let text = std::fs::read_to_string(repo_root().join("specs/schema.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The demo spec as the loader reads it: YAML → JSON value.
fn demo_value() -> Value {
    let path = repo_root().join("specs/demo.yaml");
    match hl7gw::spec::load_spec(&path, "specs/demo.yaml") {
        Ok(loaded) => loaded.value,
        Err(diagnostics) => panic!("the demo does not load: {diagnostics:#?}"),
    }
}

#[test]
fn the_checked_in_schema_is_what_hl7gw_schema_generates() {
    let out = Command::new(env!("CARGO_BIN_EXE_hl7gw"))
        .arg("schema")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let checked_in = std::fs::read(repo_root().join("specs/schema.json")).unwrap();
    assert!(
        out.stdout == checked_in,
        "specs/schema.json is stale: the spec model changed since it was generated. Regenerate it \
         with `cargo run -p hl7gw -- schema -o specs/schema.json` and commit the result."
    );
}

#[test]
fn the_checked_in_schema_is_draft_7() {
    let schema = checked_in_schema();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["additionalProperties"], false);
}

#[test]
fn the_demo_satisfies_the_checked_in_schema() {
    let validator = jsonschema::draft7::new(&checked_in_schema()).unwrap();
    let demo = demo_value();
    let errors: Vec<String> = validator
        .iter_errors(&demo)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn the_checked_in_schema_rejects_an_unknown_key() {
    let validator = jsonschema::draft7::new(&checked_in_schema()).unwrap();
    // At the top, in an environment's receive side, in a field mapping and in a spec test.
    for (object, at) in [
        ("", "/zz_unknown"),
        (
            "/environments/test/receive",
            "/environments/test/receive/zz_unknown",
        ),
        (
            "/records/patient/nhs_number",
            "/records/patient/nhs_number/zz_unknown",
        ),
        ("/tests/0/expect", "/tests/0/expect/zz_unknown"),
    ] {
        let mut demo = demo_value();
        demo.pointer_mut(object)
            .and_then(Value::as_object_mut)
            .unwrap_or_else(|| panic!("no object at {object:?} in the demo"))
            .insert("zz_unknown".into(), Value::from(1));
        let errors: Vec<_> = validator.iter_errors(&demo).collect();
        assert_eq!(errors.len(), 1, "{at}: {errors:?}");
        let e = &errors[0];
        assert_eq!(e.instance_path().to_string(), object, "{at}: {e}");
        match e.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                assert_eq!(unexpected, &["zz_unknown".to_string()], "{at}");
            }
            other => panic!("{at}: expected an unknown-key error, got {other:?}"),
        }
    }
}

#[test]
fn every_spec_names_the_schema_for_editors() {
    let mut specs = 0;
    for entry in std::fs::read_dir(repo_root().join("specs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "yaml" && x != "yml") {
            continue;
        }
        specs += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().next(),
            Some("# yaml-language-server: $schema=schema.json"),
            "{} must start with the line `# yaml-language-server: $schema=schema.json`, so \
             editors check it as it is typed",
            path.display()
        );
    }
    assert!(specs > 0, "no spec in specs/");
}
