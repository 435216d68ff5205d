//! `hl7gw validate`: loads specs, runs every check and reports for people, CI or sign-off.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use time::Date;

use super::Failure;
use super::specs::spec_files;
use crate::check::{CheckOptions, check_spec};
use crate::diag::{Diagnostic, Severity, render_human, render_json};
use crate::spec::{EnvName, load_spec};

/// Report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Source snippets with the span underlined.
    Human,
    /// `{"valid":…,"diagnostics":[…]}` (DESIGN.md).
    Json,
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

    /// Write the report to this file instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
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
    let options = CheckOptions {
        env: args.env,
        today: args.today.unwrap_or_else(today_utc),
    };
    let mut all: Vec<Diagnostic> = Vec::new();
    for file in &files {
        let display = file.to_string_lossy().into_owned();
        match load_spec(file, &display) {
            Err(diagnostics) => all.extend(diagnostics),
            Ok(loaded) => all.extend(check_spec(&loaded, &options).diagnostics),
        }
    }
    let text = match args.format {
        Format::Json => {
            let mut t =
                render_json(&all).map_err(|e| Failure::Usage(format!("writing JSON: {e}")))?;
            t.push('\n');
            t
        }
        Format::Human => {
            let color = args.output.is_none() && std::io::stdout().is_terminal();
            let read = |name: &str| std::fs::read_to_string(name).ok();
            render_human(&all, &read, color)
        }
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
