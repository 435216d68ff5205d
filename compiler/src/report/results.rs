//! The spec tests' results the report shows. `hl7gw validate --format html` runs the tests
//! itself, exactly as `hl7gw test` does ([`crate::testrun::run_spec_tests`]: each message
//! through the TEST environment's rules), so the page a person signs carries results of the
//! spec it describes rather than a results file that may belong to another version of it.
//!
//! A test is run only when its message file is one readable HL7 message and the spec has no
//! errors besides certificate findings (the rule `hl7gw test` applies: a mapping from a broken
//! spec means nothing); otherwise the row says why it was not run.

use hl7gw_runtime::hl7::{ParseOptions, parse_batch};

use super::{TestResult, TestStatus};
use crate::check::CheckReport;
use crate::diag::Severity;
use crate::spec::LoadedSpec;
use crate::testrun;

/// Each spec test run as `hl7gw test` runs it, when `report` leaves the mapping meaningful;
/// else (and for a message file that is missing or not one message) the [`file_checks`].
pub fn spec_test_results(loaded: &LoadedSpec, report: &CheckReport) -> Vec<TestResult> {
    let files = file_checks(loaded);
    if let Some(blocking) = report
        .diagnostics
        .iter()
        .find(|d| d.severity == Severity::Error && !d.code.starts_with("cert-"))
    {
        return files
            .into_iter()
            .map(|r| match r.status {
                TestStatus::FileParses => TestResult {
                    detail: format!(
                        "not run: the spec has errors (first: {}, {})",
                        blocking.code, blocking.summary
                    ),
                    ..r
                },
                _ => r,
            })
            .collect();
    }
    let runs = testrun::run_spec_tests(loaded);
    files
        .into_iter()
        .zip(runs)
        .map(|(file, run)| {
            if file.status != TestStatus::FileParses {
                return file;
            }
            if run.passed() {
                TestResult {
                    status: TestStatus::Passed,
                    detail: run
                        .outcome
                        .map(|o| format!("answered {}", o.ack.as_str()))
                        .unwrap_or_default(),
                    ..file
                }
            } else {
                TestResult {
                    status: TestStatus::Failed,
                    detail: run.failures.join("; "),
                    ..file
                }
            }
        })
        .collect()
}

/// The results available without running the tests: whether each test's message file exists
/// and parses as exactly one HL7 message (the same reading as the `test-message-*` checks).
pub fn file_checks(loaded: &LoadedSpec) -> Vec<TestResult> {
    loaded
        .spec
        .tests
        .iter()
        .map(|test| {
            let path = loaded.resolve(&test.message);
            let (status, detail) = match std::fs::read(&path) {
                Err(e) => (TestStatus::FileMissing, format!("{}: {e}", path.display())),
                Ok(bytes) => match parse_batch(&bytes, &ParseOptions::lenient()) {
                    Ok(batch) if batch.messages.len() == 1 => {
                        (TestStatus::FileParses, "not run yet".to_owned())
                    }
                    Ok(batch) => (
                        TestStatus::FileUnparsable,
                        format!(
                            "holds {} messages; a spec test takes one",
                            batch.messages.len()
                        ),
                    ),
                    Err(e) => (TestStatus::FileUnparsable, e.to_string()),
                },
            };
            TestResult {
                name: test.name.clone(),
                status,
                detail,
            }
        })
        .collect()
}
