//! The go-live report: one self-contained HTML page per customer and environment, a checklist
//! a person ticks and signs before go-live (`hl7gw validate --format html`).
//!
//! The page is a view model (`view.rs`: plain values read from the spec, the check results
//! and the environment) rendered through a tera template (`html.rs`) kept with its CSS in
//! `compiler/templates/report/`.
//!
//! The page is built from the loaded spec, the check results and the day it is judged on, and
//! nothing else: the same inputs give the same bytes, so a report can be regenerated and
//! compared, and its tests need no clock. Certificates are read from the files the spec names
//! ([`crate::certs::summarize`]).
//!
//! Spec-test results come in as [`TestResult`]s: [`render_html`] runs the spec's tests as
//! `hl7gw test` does ([`spec_test_results`]); a test that fails makes the page NOT READY.

mod html;
mod results;
#[cfg(test)]
mod tests;
mod view;

pub use html::{RenderError, escape, render_html, render_html_with_tests};
pub use results::{file_checks, spec_test_results};
pub use view::has_errors;

/// The outcome of one spec test, as the report shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TestStatus {
    /// The test ran and the gateway answered as expected.
    Passed,
    /// The test ran and the answer differed from the expectation.
    Failed,
    /// Not run; the message file exists and parses as one HL7 message.
    FileParses,
    /// Not run; the message file cannot be read.
    FileMissing,
    /// Not run; the message file is not one readable HL7 message.
    FileUnparsable,
    /// No result was given for this test.
    NotRun,
}

impl TestStatus {
    /// True when the result stands in the way of go-live: the test failed, or its message
    /// file is missing or unreadable.
    pub fn blocks_go_live(self) -> bool {
        matches!(
            self,
            Self::Failed | Self::FileMissing | Self::FileUnparsable
        )
    }

    /// The words shown in the result column.
    pub fn label(self) -> &'static str {
        match self {
            Self::Passed => "passed",
            Self::Failed => "failed",
            Self::FileParses => "file parses",
            Self::FileMissing => "file missing",
            Self::FileUnparsable => "file unparsable",
            Self::NotRun => "not run",
        }
    }
}

/// The result of one spec test, matched to the spec's test by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    /// The test's `name` in the spec.
    pub name: String,
    /// What happened.
    pub status: TestStatus,
    /// One line of explanation (why it failed, what could not be read); may be empty.
    pub detail: String,
}
