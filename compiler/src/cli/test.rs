//! `hl7gw test`: runs specs' tests through the runtime's mapping primitives, without
//! building the generated crates.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::Failure;
use super::specs::spec_files;
use super::validate::today_utc;
use crate::check::{CheckOptions, check_spec};
use crate::diag::Severity;
use crate::spec::load_spec;
use crate::testrun::{TestResult, run_spec_tests};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One line per test and a summary.
    Human,
    /// `{"specs":[{"spec":…,"results":[…]}]}`.
    Json,
    /// JUnit XML for CI dashboards.
    Junit,
}

/// Arguments of `hl7gw test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// Spec files, or folders of them.
    #[arg(required = true, value_name = "SPEC|DIR")]
    specs: Vec<PathBuf>,

    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
}

#[derive(serde::Serialize)]
struct SpecResults {
    spec: String,
    results: Vec<TestResult>,
}

/// Runs `test`.
pub fn run(args: &TestArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let files = spec_files(&args.specs)?;
    let mut all = Vec::new();
    for file in &files {
        let display = file.to_string_lossy().into_owned();
        let loaded = load_spec(file, &display).map_err(|d| {
            Failure::Input(format!(
                "{display}: the spec does not load ({}); run `hl7gw validate {display}`",
                d.first().map(|d| d.summary.as_str()).unwrap_or("")
            ))
        })?;
        // Mappings are only meaningful for a spec without errors (certificates aside).
        let report = check_spec(
            &loaded,
            &CheckOptions {
                env: None,
                today: today_utc(),
            },
        );
        if let Some(d) = report
            .diagnostics
            .iter()
            .find(|d| d.severity == Severity::Error && !d.code.starts_with("cert-"))
        {
            return Err(Failure::Input(format!(
                "{display}: the spec has errors ({}); run `hl7gw validate {display}`",
                d.summary
            )));
        }
        all.push(SpecResults {
            spec: display,
            results: run_spec_tests(&loaded),
        });
    }
    let text = match args.format {
        Format::Human => human(&all),
        Format::Json => serde_json::to_string_pretty(&serde_json::json!({ "specs": all }))
            .map(|mut s| {
                s.push('\n');
                s
            })
            .map_err(|e| Failure::Usage(format!("writing JSON: {e}")))?,
        Format::Junit => junit(&all),
    };
    out.write_all(text.as_bytes())
        .map_err(|e| Failure::Usage(format!("writing output: {e}")))?;
    let failed = all
        .iter()
        .flat_map(|s| &s.results)
        .filter(|r| !r.passed())
        .count();
    if failed > 0 {
        return Err(Failure::Quiet(1));
    }
    Ok(())
}

fn human(all: &[SpecResults]) -> String {
    let mut out = String::new();
    let (mut passed, mut failed) = (0, 0);
    for spec in all {
        out.push_str(&format!("{}\n", spec.spec));
        for r in &spec.results {
            if r.passed() {
                passed += 1;
                let ack = r
                    .outcome
                    .as_ref()
                    .map(|o| o.ack.as_str())
                    .unwrap_or("built");
                out.push_str(&format!("  ok    {} ({ack})\n", r.name));
            } else {
                failed += 1;
                out.push_str(&format!("  FAIL  {}\n", r.name));
                for f in &r.failures {
                    out.push_str(&format!("        {f}\n"));
                }
            }
        }
    }
    out.push_str(&format!("spec tests: {passed} passed, {failed} failed\n"));
    out
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn junit(all: &[SpecResults]) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
    for spec in all {
        let failures = spec.results.iter().filter(|r| !r.passed()).count();
        out.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\">\n",
            xml(&spec.spec),
            spec.results.len()
        ));
        for r in &spec.results {
            out.push_str(&format!(
                "    <testcase classname=\"{}\" name=\"{}\"",
                xml(&spec.spec),
                xml(&r.name)
            ));
            if r.passed() {
                out.push_str("/>\n");
            } else {
                out.push_str(&format!(
                    ">\n      <failure message=\"{}\"/>\n    </testcase>\n",
                    xml(&r.failures.join("; "))
                ));
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}
