//! Terminal rendering: miette's graphical report, a snippet of the source with the offending
//! span underlined.

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteDiagnostic, NamedSource};

use super::{Diagnostic, Severity};

/// Renders findings for a person. `source` gives a file's text by its name, so snippets can
/// be shown; `color` selects ANSI colours.
pub fn render_human(
    diagnostics: &[Diagnostic],
    source: &dyn Fn(&str) -> Option<String>,
    color: bool,
) -> String {
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme).with_width(100);
    let mut out = String::new();
    for d in diagnostics {
        let mut report = MietteDiagnostic::new(d.summary.clone())
            .with_code(d.code.clone())
            .with_severity(match d.severity {
                Severity::Error => miette::Severity::Error,
                Severity::Warning => miette::Severity::Warning,
            });
        if !d.detail.is_empty() {
            report = report.with_help(d.detail.clone());
        }
        let location = match d.range {
            Some(r) => format!("{}:{}:{}", d.file, r.start.line, r.start.column),
            None => d.file.clone(),
        };
        let text = d.range.and_then(|_| source(&d.file));
        let rendered = match (d.range, text) {
            (Some(range), Some(text)) => {
                let len = range.end.byte.saturating_sub(range.start.byte).max(1);
                let label = LabeledSpan::at(range.start.byte..range.start.byte + len, "here");
                let report = report.with_label(label);
                let with_source =
                    miette::Report::new(report).with_source_code(NamedSource::new(&d.file, text));
                let mut buf = String::new();
                match handler.render_report(&mut buf, with_source.as_ref()) {
                    Ok(()) => buf,
                    Err(_) => format!("{location}: {}\n", d.summary),
                }
            }
            _ => {
                let mut buf = String::new();
                match handler.render_report(&mut buf, &report) {
                    Ok(()) => format!("{location}\n{buf}"),
                    Err(_) => format!("{location}: {}\n", d.summary),
                }
            }
        };
        out.push_str(&rendered);
        out.push('\n');
    }
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    out.push_str(&format!(
        "{} error(s), {} warning(s)\n",
        errors,
        diagnostics.len() - errors
    ));
    out
}
