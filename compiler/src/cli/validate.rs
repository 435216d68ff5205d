//! `hl7gw validate`: loads specs, runs every check and reports for people, CI or sign-off.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use time::Date;

use super::Failure;
use super::specs::spec_files;
use crate::check::{CheckOptions, check_host, check_spec};
use crate::diag::{Diagnostic, Severity, render_human, render_json};
use crate::spec::{EnvName, load_spec};

/// Report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Source snippets with the span underlined.
    Human,
    /// `{"valid":…,"diagnostics":[…]}` (docs/contracts.md).
    Json,
    /// The go-live report: one self-contained HTML page per environment (needs `-o`).
    Html,
}

/// Arguments of `hl7gw validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Spec files, or folders of them.
    #[arg(required = true, value_name = "SPEC|DIR")]
    specs: Vec<PathBuf>,

    /// Check only this environment's endpoints and certificates.
    #[arg(long, value_parser = parse_env)]
    env: Option<EnvName>,

    /// Report format.
    #[arg(long, value_enum, default_value = "human")]
    format: Format,

    /// Write the report to this file instead of standard output. For `--format html`: a
    /// `.html` file when one report is written, else a folder receiving `CODE-ENV.html`.
    #[arg(short = 'o', long = "output", value_name = "FILE|DIR")]
    output: Option<PathBuf>,

    /// Judge certificate dates as of this day (YYYY-MM-DD) instead of today.
    #[arg(long, value_parser = parse_date)]
    today: Option<Date>,
}

fn parse_env(s: &str) -> Result<EnvName, String> {
    match s {
        "test" => Ok(EnvName::Test),
        "prod" => Ok(EnvName::Prod),
        _ => Err(format!("{s:?}: use test or prod")),
    }
}

/// Parses `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Result<Date, String> {
    let bad = || format!("{s:?} is not a date: write YYYY-MM-DD");
    let mut parts = s.splitn(3, '-');
    let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return Err(bad());
    }
    let year: i32 = y.parse().map_err(|_| bad())?;
    let month: u8 = m.parse().map_err(|_| bad())?;
    let day: u8 = d.parse().map_err(|_| bad())?;
    let month = time::Month::try_from(month).map_err(|_| bad())?;
    Date::from_calendar_date(year, month, day).map_err(|_| bad())
}

/// Today in UTC.
pub fn today_utc() -> Date {
    time::OffsetDateTime::now_utc().date()
}

/// Runs `validate`.
pub fn run(args: &ValidateArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let files = spec_files(&args.specs)?;
    let today = args.today.unwrap_or_else(today_utc);
    match args.format {
        Format::Html => run_html(args, &files, today, out),
        Format::Human => run_text(args, &files, today, false, out),
        Format::Json => run_text(args, &files, today, true, out),
    }
}

/// `--format human|json`: every spec's findings in one text.
fn run_text(
    args: &ValidateArgs,
    files: &[PathBuf],
    today: Date,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let options = CheckOptions {
        env: args.env,
        today,
    };
    let mut all: Vec<Diagnostic> = Vec::new();
    let mut loaded_specs = Vec::new();
    for file in files {
        let display = file.to_string_lossy().into_owned();
        match load_spec(file, &display) {
            Err(diagnostics) => all.extend(diagnostics),
            Ok(loaded) => {
                all.extend(check_spec(&loaded, &options).diagnostics);
                loaded_specs.push(loaded);
            }
        }
    }
    // The specs given together are one host's customers: nothing of theirs may collide.
    all.extend(check_host(&loaded_specs));
    let text = if json {
        let mut t = render_json(&all).map_err(|e| Failure::Usage(format!("writing JSON: {e}")))?;
        t.push('\n');
        t
    } else {
        let color = args.output.is_none() && std::io::stdout().is_terminal();
        let read = |name: &str| std::fs::read_to_string(name).ok();
        render_human(&all, &read, color)
    };
    match &args.output {
        Some(path) => std::fs::write(path, &text)
            .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?,
        None => out
            .write_all(text.as_bytes())
            .map_err(|e| Failure::Usage(format!("writing output: {e}")))?,
    }
    let errors = all.iter().filter(|d| d.severity == Severity::Error).count();
    if errors > 0 {
        return Err(Failure::Quiet(1));
    }
    Ok(())
}

/// `--format html`: one go-live report per environment (or the one `--env` names), written
/// under `-o`; the written paths are printed. Exit 1 when a report has errors: the NOT READY
/// report is still written.
fn run_html(
    args: &ValidateArgs,
    files: &[PathBuf],
    today: Date,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let [file] = files else {
        return Err(Failure::Usage(format!(
            "--format html takes exactly one spec file, not {}",
            files.len()
        )));
    };
    let Some(output) = &args.output else {
        return Err(Failure::Usage(
            "--format html needs -o: a .html file (with --env) or a folder for CODE-ENV.html files"
                .into(),
        ));
    };
    let display = file.to_string_lossy().into_owned();
    let loaded = match load_spec(file, &display) {
        Ok(loaded) => loaded,
        Err(diagnostics) => {
            let read = |name: &str| std::fs::read_to_string(name).ok();
            eprint!(
                "{}",
                render_human(&diagnostics, &read, std::io::stderr().is_terminal())
            );
            return Err(Failure::Input(format!(
                "{display} does not load, so no report was written"
            )));
        }
    };
    let envs: Vec<EnvName> = match args.env {
        Some(env) => {
            if loaded.spec.environments.get(env).is_none() {
                return Err(Failure::Input(format!(
                    "{display} describes no `{}` environment",
                    env.as_str()
                )));
            }
            vec![env]
        }
        None => loaded.spec.environments.iter().map(|(n, _)| n).collect(),
    };
    if envs.is_empty() {
        return Err(Failure::Input(format!(
            "{display} describes no environment, so there is nothing to report"
        )));
    }
    let is_file = output
        .extension()
        .is_some_and(|x| x.eq_ignore_ascii_case("html"));
    if is_file && envs.len() > 1 {
        return Err(Failure::Usage(format!(
            "-o {} names one file but {display} has {} environments: add --env, or give a folder",
            output.display(),
            envs.len()
        )));
    }
    let code: String = loaded
        .spec
        .customer
        .code
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut any_errors = false;
    for env in envs {
        let report = check_spec(
            &loaded,
            &CheckOptions {
                env: Some(env),
                today,
            },
        );
        let tests = crate::report::spec_test_results(&loaded, &report);
        let html = crate::report::render_html_with_tests(&loaded, env, &report, today, &tests)
            .map_err(|e| Failure::Usage(e.to_string()))?;
        any_errors |= crate::report::has_errors(&report, env)
            || tests.iter().any(|t| t.status.blocks_go_live());
        let path = if is_file {
            output.clone()
        } else {
            output.join(format!("{code}-{}.html", env.as_str()))
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| Failure::Usage(format!("{}: {e}", dir.display())))?;
        }
        std::fs::write(&path, html)
            .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
        writeln!(out, "{}", path.display())
            .map_err(|e| Failure::Usage(format!("writing output: {e}")))?;
    }
    if any_errors {
        return Err(Failure::Quiet(1));
    }
    Ok(())
}
