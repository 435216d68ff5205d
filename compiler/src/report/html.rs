//! The HTML go-live report: the view model ([`super::view`]) rendered through the tera template
//! `templates/report/golive.html.tera` with its style `templates/report/golive.css` inlined,
//! so each report is one self-contained file. Both are embedded in the binary.
//!
//! Autoescaping is on for the whole template: every value taken from the spec (names, paths,
//! reasons) is escaped with [`escape`]'s rules. The style sheet is the only value written as
//! it is, and it is ours.

use std::fmt;

use time::Date;

use super::view;
use super::{TestResult, spec_test_results};
use crate::check::CheckReport;
use crate::spec::{EnvName, LoadedSpec};

const TEMPLATE: &str = include_str!("../../templates/report/golive.html.tera");
const STYLE: &str = include_str!("../../templates/report/golive.css");
/// The template's name; its `.html` suffix is what turns tera's autoescaping on.
const NAME: &str = "golive.html";

/// The report could not be rendered: the embedded template does not fit the view model (a
/// bug in hl7gw, not in the spec).
#[derive(Debug)]
pub struct RenderError(String);

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "go-live report template: {}", self.0)
    }
}

impl std::error::Error for RenderError {}

/// Escapes text for HTML element content and quoted attribute values, as the template's
/// autoescaping does (`& < > " '`).
pub fn escape(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    // Writing into a Vec cannot fail.
    let _ = tera::escape_html(s, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Renders the go-live report of one environment, with the spec tests run as `hl7gw test`
/// runs them ([`spec_test_results`]).
pub fn render_html(
    loaded: &LoadedSpec,
    env: EnvName,
    report: &CheckReport,
    today: Date,
) -> Result<String, RenderError> {
    let tests = spec_test_results(loaded, report);
    render_html_with_tests(loaded, env, report, today, &tests)
}

/// Renders the go-live report of one environment with the given spec-test results (matched
/// to the spec's tests by name; a test without a result shows "not run").
///
/// Findings that belong to the other environment (their pointer is under
/// `/environments/<other>`) are left out: they are in that environment's report.
pub fn render_html_with_tests(
    loaded: &LoadedSpec,
    env: EnvName,
    report: &CheckReport,
    today: Date,
    tests: &[TestResult],
) -> Result<String, RenderError> {
    render(&view::build(loaded, env, report, today, tests))
}

fn render(page: &view::Page) -> Result<String, RenderError> {
    let fail = |e: tera::Error| RenderError(e.to_string());
    let mut tera = tera::Tera::new();
    tera.autoescape_on([".html"]);
    tera.add_raw_template(NAME, TEMPLATE).map_err(fail)?;
    let mut context = tera::Context::from_serialize(page).map_err(fail)?;
    context.insert("css", STYLE);
    tera.render(NAME, &context).map_err(fail)
}
