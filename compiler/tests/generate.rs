//! `hl7gw generate`: the checked-in crates under `generated/` are fresh, generation is
//! byte-identical from run to run, and `--check` names every stale file.
//!
//! `generated/` is the one golden copy of the generator's output: after an intended change
//! to the generator, `hl7gw generate specs/` refreshes it and the diff is reviewed there.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the compiler crate is inside the repository")
        .to_path_buf()
}

fn hl7gw(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hl7gw"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("hl7gw runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every file under `dir`, by `/`-separated relative path, with its bytes.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).expect("readable folder") {
            let entry = entry.expect("readable entry");
            let path = entry.path();
            if entry.file_type().expect("file type").is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).expect("inside the tree");
                let rel: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                files.insert(rel.join("/"), std::fs::read(&path).expect("readable file"));
            }
        }
    }
    files
}

#[test]
fn the_checked_in_crates_are_fresh() {
    let out = hl7gw(&["generate", "--check", "specs/"]);
    assert!(
        out.status.success(),
        "generated/ is stale: run `hl7gw generate specs/`\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn two_runs_write_identical_trees_equal_to_generated() {
    let first = tempfile::tempdir().expect("temp dir");
    let second = tempfile::tempdir().expect("temp dir");
    for dir in [first.path(), second.path()] {
        let dir = dir.to_string_lossy().into_owned();
        let out = hl7gw(&["generate", "specs/", "--out", &dir]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let a = tree(first.path());
    let b = tree(second.path());
    assert!(!a.is_empty());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, bytes) in &a {
        assert!(b.get(name) == Some(bytes), "{name} differs between runs");
    }
    let checked_in = tree(&repo().join("generated"));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        checked_in.keys().collect::<Vec<_>>(),
        "generated/ holds other files than `hl7gw generate specs/` writes"
    );
    for (name, bytes) in &a {
        assert!(
            checked_in.get(name) == Some(bytes),
            "generated/{name} differs from what `hl7gw generate specs/` writes"
        );
    }
    // Nothing machine-specific leaks into the output.
    let root = repo().to_string_lossy().into_owned();
    for (name, bytes) in &a {
        assert!(
            !text(bytes).contains(&root),
            "{name} names the checkout's absolute path"
        );
    }
}

#[test]
fn check_names_each_stale_file_and_generate_repairs_them() {
    let out_dir = tempfile::tempdir().expect("temp dir");
    let dir = out_dir.path().to_string_lossy().into_owned();
    let first = hl7gw(&["generate", "specs/", "--out", &dir]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let fresh = hl7gw(&["generate", "--check", "specs/", "--out", &dir]);
    assert!(fresh.status.success(), "{}", text(&fresh.stdout));

    let demo = out_dir.path().join("demo");
    let records = demo.join("src/records.rs");
    let mut tampered = std::fs::read_to_string(&records).expect("records.rs");
    tampered.push_str("// a hand edit\n");
    std::fs::write(&records, tampered).expect("write");
    std::fs::remove_file(demo.join("README.md")).expect("remove");
    std::fs::write(demo.join("src/extra.rs"), "// not generated\n").expect("write");

    let stale = hl7gw(&["generate", "--check", "specs/", "--out", &dir]);
    assert_eq!(stale.status.code(), Some(1), "{}", text(&stale.stderr));
    let stdout = text(&stale.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for (file, how) in [
        ("README.md", "missing"),
        ("src/extra.rs", "not generated from the spec"),
        ("src/records.rs", "differs from the spec"),
    ] {
        let path = demo.join(file).display().to_string();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("stale: ") && l.contains(&path) && l.contains(how)),
            "{file} is not named as {how}:\n{stdout}"
        );
    }
    assert!(text(&stale.stderr).contains("3 generated file(s) are stale"));

    let repaired = hl7gw(&["generate", "specs/", "--out", &dir]);
    assert!(repaired.status.success(), "{}", text(&repaired.stderr));
    let again = hl7gw(&["generate", "--check", "specs/", "--out", &dir]);
    assert!(again.status.success(), "{}", text(&again.stdout));
}

#[test]
fn check_names_a_crate_whose_spec_is_gone() {
    // Inside the workspace, so the headers' spec paths can be resolved: under the
    // repository's target/ folder even when CARGO_TARGET_DIR points elsewhere.
    let parent = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/generate-tests");
    std::fs::create_dir_all(&parent).expect("mkdir target/generate-tests");
    let out_dir = tempfile::tempdir_in(&parent).expect("temp dir");
    let dir = out_dir.path().to_string_lossy().into_owned();
    let first = hl7gw(&["generate", "specs/", "--out", &dir]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let ghost = out_dir.path().join("ghost");
    std::fs::create_dir_all(&ghost).expect("mkdir");
    std::fs::write(
        ghost.join("Cargo.toml"),
        "# @generated by hl7gw from specs/ghost.yaml (sha256 00). Do not edit: run hl7gw generate.\n",
    )
    .expect("write");
    let stale = hl7gw(&["generate", "--check", "specs/", "--out", &dir]);
    assert_eq!(stale.status.code(), Some(1));
    assert!(
        text(&stale.stdout).contains("specs/ghost.yaml, which is gone"),
        "{}",
        text(&stale.stdout)
    );
}

#[test]
fn a_spec_with_errors_generates_nothing() {
    let out_dir = tempfile::tempdir().expect("temp dir");
    let spec = out_dir.path().join("broken.yaml");
    std::fs::write(&spec, "customer: { code: broken, name: Broken }\n").expect("write");
    let target = out_dir.path().join("out");
    let out = hl7gw(&[
        "generate",
        &spec.to_string_lossy(),
        "--out",
        &target.to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(!target.exists());
}

/// Each generated README describes the gateway as it is: the commands it has today, each
/// environment's endpoints, and a `map` example whose message file exists.
#[test]
fn the_generated_readmes_describe_todays_gateway() {
    for (code, outbound) in [("demo", true), ("northwest", true)] {
        let readme = std::fs::read_to_string(repo().join("generated").join(code).join("README.md"))
            .expect("README.md");
        let package = format!("gw-{code}");
        for command in ["serve --env test", "check --env test", "config --env test"] {
            assert!(
                readme.contains(&format!("cargo run -p {package} -- {command}")),
                "{code}: no `{command}`"
            );
        }
        assert_eq!(readme.contains("map --outbound"), outbound, "{code}");
        assert_eq!(readme.contains("queue status"), outbound, "{code}");
        assert!(readme.contains("## What it does"), "{code}");
        assert!(
            readme.contains("- `test`: receives HL7 over HTTPS"),
            "{code}"
        );
        assert!(
            !readme.contains("later"),
            "{code}: promises something for later"
        );
        let map = format!("cargo run -p {package} -- map --env test ");
        let sample = readme[readme.find(&map).expect("a map example") + map.len()..]
            .lines()
            .next()
            .expect("the example's file");
        assert!(
            repo().join(sample).is_file(),
            "{code}: the map example's {sample} does not exist"
        );
    }
}

/// The host crate (`generated/host/`) links every gateway crate of the folder, whichever specs
/// one run names: generating one spec leaves it as generating all of them writes it.
#[test]
fn the_host_crate_links_every_gateway_crate_even_when_one_spec_is_generated() {
    let one = hl7gw(&["generate", "--check", "specs/demo.yaml"]);
    assert!(
        one.status.success(),
        "{}{}",
        text(&one.stdout),
        text(&one.stderr)
    );
    let host = repo().join("generated/host");
    let cargo = std::fs::read_to_string(host.join("Cargo.toml")).expect("host Cargo.toml");
    let main = std::fs::read_to_string(host.join("src/main.rs")).expect("host main.rs");
    assert!(cargo.contains("name = \"gw-host\""), "{cargo}");
    for code in ["demo", "eastbay", "northwest", "riverside"] {
        assert!(
            cargo.contains(&format!("gw-{code} = {{ path = \"../{code}\" }}")),
            "{code} not linked:\n{cargo}"
        );
        assert!(main.contains(&format!("gw_{code}::SPEC")), "{main}");
    }
    assert!(main.contains("hl7gw_runtime::host::cli::main"), "{main}");
}
