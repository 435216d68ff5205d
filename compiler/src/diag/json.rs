//! The JSON report of docs/contracts.md, in the shape of `terraform validate -json`.

use serde::Serialize;

use super::{Diagnostic, Severity};

/// `{"valid":…,"error_count":…,"warning_count":…,"diagnostics":[…]}`.
#[derive(Debug, Serialize)]
pub struct JsonReport<'d> {
    /// No errors.
    pub valid: bool,
    /// Number of errors.
    pub error_count: usize,
    /// Number of warnings.
    pub warning_count: usize,
    /// The findings.
    pub diagnostics: &'d [Diagnostic],
}

/// The report as pretty JSON text.
pub fn render_json(diagnostics: &[Diagnostic]) -> Result<String, serde_json::Error> {
    let error_count = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let report = JsonReport {
        valid: error_count == 0,
        error_count,
        warning_count: diagnostics.len() - error_count,
        diagnostics,
    };
    serde_json::to_string_pretty(&report)
}
