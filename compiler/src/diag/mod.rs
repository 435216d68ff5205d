//! Diagnostics: what a check found, where, and how bad. Rendered for people (source snippet
//! with the span underlined), for CI (JSON in the shape of `terraform validate -json`), and in
//! the HTML go-live report.

mod human;
mod json;
mod suggest;

pub use human::render_human;
pub use json::{JsonReport, render_json};
pub use suggest::closest;

use serde::Serialize;

/// How bad a finding is. Errors fail validation (exit 1); warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Fails validation.
    Error,
    /// Reported; can be acknowledged in the spec with a reason.
    Warning,
}

/// A position in a source file: line and column from 1 (columns count characters), byte
/// offset from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Pos {
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
    /// Byte offset, from 0.
    pub byte: usize,
}

/// A range in a source file, end exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Span {
    /// First position.
    pub start: Pos,
    /// One past the last position.
    pub end: Pos,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Stable code naming the check, e.g. `schema-unknown-key`.
    pub code: String,
    /// One line: what is wrong.
    pub summary: String,
    /// Why it matters and how to fix it.
    pub detail: String,
    /// The file, as given on the command line.
    pub file: String,
    /// Where in the file, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<Span>,
    /// JSON pointer of the spec value, when the finding is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
}

impl Diagnostic {
    /// An error.
    pub fn error(code: &str, summary: impl Into<String>) -> Self {
        Self::new(Severity::Error, code, summary)
    }

    /// A warning.
    pub fn warning(code: &str, summary: impl Into<String>) -> Self {
        Self::new(Severity::Warning, code, summary)
    }

    fn new(severity: Severity, code: &str, summary: impl Into<String>) -> Self {
        Self {
            severity,
            code: code.to_string(),
            summary: summary.into(),
            detail: String::new(),
            file: String::new(),
            range: None,
            pointer: None,
        }
    }

    /// Adds the explanation.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    /// Places the finding.
    pub fn at(mut self, file: &str, range: Option<Span>, pointer: Option<&str>) -> Self {
        self.file = file.to_string();
        self.range = range;
        self.pointer = pointer.map(str::to_string);
        self
    }
}

/// Sorts findings by file, position, then code, so output is stable from run to run.
pub fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by(|a, b| {
        (&a.file, a.range.map(|r| r.start.byte), &a.code, &a.summary).cmp(&(
            &b.file,
            b.range.map(|r| r.start.byte),
            &b.code,
            &b.summary,
        ))
    });
}
