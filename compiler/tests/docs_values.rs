//! The values docs/spec.md shows as examples are valid as written: every size, duration and
//! failure policy of its "Values written as text" table, every such value in its YAML
//! examples, and the size and duration defaults, are read from the page, written into the
//! demo spec exactly as the page writes them, and loaded with the real loader (YAML, schema,
//! then the runtime's own parsers `ByteSize`, `Duration`, `FailurePolicy`). The defaults the
//! page states must also be the runtime's.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use hl7gw::spec::loader::load_spec_text;
use hl7gw::spec::{ByteSize, Duration, EnvName, FailurePolicy, LoadedSpec, SendSide};
use hl7gw_runtime::config::defaults;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("compiler/ has a parent")
        .to_path_buf()
}

fn spec_md() -> String {
    std::fs::read_to_string(root().join("docs/spec.md")).expect("docs/spec.md")
}

/// The texts between backticks in `cell`.
fn backticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The cells of the table row whose first cell is `first`, trimmed; panics when the page
/// has no such row (the test must not pass on a page it cannot read).
fn row(doc: &str, first: &str) -> Vec<String> {
    doc.lines()
        .map(|line| {
            line.trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .find(|cells| cells.first().map(String::as_str) == Some(first))
        .unwrap_or_else(|| panic!("docs/spec.md has no table row `{first}`"))
}

/// The examples column (the last) of a row of the "Values written as text" table.
fn examples(doc: &str, kind: &str) -> Vec<String> {
    let cells = row(doc, kind);
    let found = backticked(cells.last().expect("a row has cells"));
    assert!(!found.is_empty(), "no examples in the `{kind}` row");
    found
}

/// Values of `key:` in the page's YAML blocks, as written (up to a comment, `,` or `}`).
fn yaml_values(doc: &str, key: &str) -> Vec<String> {
    let mut in_yaml = false;
    let mut found = Vec::new();
    for line in doc.lines() {
        if line.starts_with("```") {
            in_yaml = line == "```yaml";
            continue;
        }
        if !in_yaml {
            continue;
        }
        let needle = format!("{key}: ");
        let mut rest = line;
        while let Some(at) = rest.find(&needle) {
            let before = rest[..at].chars().last();
            rest = &rest[at + needle.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let value = rest
                .split(['#', ',', '}'])
                .next()
                .unwrap_or("")
                .trim()
                .to_owned();
            found.push(value);
        }
    }
    found
}

/// The demo spec with the TEST environment's line `old` replaced by `new`, loaded as if it
/// stood where the demo does.
fn demo_with(old: &str, new: &str) -> Result<LoadedSpec, String> {
    let path = root().join("specs/demo.yaml");
    let text = std::fs::read_to_string(&path).expect("demo spec");
    assert!(text.contains(old), "the demo spec has no {old:?}");
    load_spec_text(text.replacen(old, new, 1), &path, "specs/demo.yaml").map_err(|d| {
        d.iter()
            .map(|d| format!("{}: {} ({})", d.code, d.summary, d.detail))
            .collect::<Vec<_>>()
            .join("; ")
    })
}

fn test_env(loaded: &LoadedSpec) -> &hl7gw::spec::Environment {
    loaded
        .spec
        .environments
        .get(EnvName::Test)
        .expect("the demo has TEST")
}

/// A size as the page writes it, in a spec: what the loader made of it.
fn load_size(written: &str) -> Result<ByteSize, String> {
    let loaded = demo_with("max_body: 20MiB", &format!("max_body: {written}"))?;
    Ok(test_env(&loaded)
        .receive
        .as_ref()
        .and_then(|r| r.max_body)
        .expect("max_body was written"))
}

/// A send setting as the page writes it, in place of the demo's TEST `old` line: what the
/// loader made of it.
fn load_send<T>(
    old: &str,
    key: &str,
    written: &str,
    pick: impl Fn(&SendSide) -> Option<T>,
) -> Result<T, String> {
    let loaded = demo_with(old, &format!("{key}: {written}"))?;
    Ok(test_env(&loaded)
        .send
        .as_ref()
        .and_then(pick)
        .unwrap_or_else(|| panic!("{key} was written")))
}

fn load_duration(written: &str) -> Result<Duration, String> {
    load_send("timeout: 30s", "timeout", written, |s| s.timeout)
}

fn load_policy(written: &str) -> Result<FailurePolicy, String> {
    load_send("on_ae: hold", "on_ae", written, |s| s.on_ae)
}

#[test]
fn every_size_duration_and_policy_example_loads_as_written() {
    let doc = spec_md();
    for key in ["max_body", "timeout", "first", "max"] {
        assert!(
            !yaml_values(&doc, key).is_empty(),
            "no `{key}:` in the page's YAML examples"
        );
    }
    let mut failures = Vec::new();
    let sizes = examples(&doc, "size")
        .into_iter()
        .chain(yaml_values(&doc, "max_body"))
        .chain(yaml_values(&doc, "max_bytes"));
    for written in sizes {
        if let Err(e) = load_size(&written) {
            failures.push(format!("size `{written}`: {e}"));
        }
    }
    let durations = examples(&doc, "duration")
        .into_iter()
        .chain(yaml_values(&doc, "timeout"))
        .chain(yaml_values(&doc, "first"))
        .chain(yaml_values(&doc, "max"))
        .chain(yaml_values(&doc, "retention"));
    for written in durations {
        if let Err(e) = load_duration(&written) {
            failures.push(format!("duration `{written}`: {e}"));
        }
    }
    for written in examples(&doc, "failure policy") {
        if let Err(e) = load_policy(&written) {
            failures.push(format!("failure policy `{written}`: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "docs/spec.md shows values a spec cannot hold:\n{}",
        failures.join("\n")
    );
}

/// The examples mean what the page says: `512KiB` is 512 × 1024 bytes, `5m` five minutes.
#[test]
fn examples_mean_what_they_say() {
    assert_eq!(load_size("512KiB").unwrap().bytes(), 512 * 1024);
    assert_eq!(load_size("20MiB").unwrap().bytes(), 20 << 20);
    assert_eq!(load_size("\"1000000\"").unwrap().bytes(), 1_000_000);
    assert_eq!(load_duration("5m").unwrap().as_millis(), 5 * 60 * 1000);
    assert_eq!(load_duration("500ms").unwrap().as_millis(), 500);
    // The checks are real: a bad size, a number YAML reads as a number, and a unit in the
    // wrong case are refused.
    assert!(load_size("20 MiB").is_err());
    assert!(load_size("1000000").is_err());
    assert!(load_size("20mib").is_err());
    assert!(load_duration("30").is_err());
}

/// The defaults table states the runtime's defaults.
#[test]
fn the_stated_size_and_duration_defaults_are_the_runtimes() {
    let doc = spec_md();
    let default = |key: &str| {
        let cells = row(&doc, &format!("`{key}`"));
        backticked(&cells[1])
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no default for {key}"))
    };
    let max_body: ByteSize = default("receive.max_body").parse().unwrap();
    assert_eq!(max_body, defaults::MAX_BODY);
    let timeout: Duration = default("send.timeout").parse().unwrap();
    assert_eq!(timeout, defaults::SEND_TIMEOUT);
    // `retention` is also a row of the environment table (first); the defaults table's row
    // is the one with a value.
    let retention = doc
        .lines()
        .filter(|line| line.starts_with("| `retention` |"))
        .find_map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            backticked(cells.get(1)?).into_iter().next()
        })
        .expect("a default for retention");
    assert_eq!(retention.parse::<Duration>().unwrap(), defaults::RETENTION);
    let backoff = default("send.backoff");
    assert_eq!(
        backoff,
        format!(
            "{{ first: {}, max: {} }}",
            defaults::BACKOFF_FIRST,
            defaults::BACKOFF_MAX
        )
    );
}
