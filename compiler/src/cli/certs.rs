//! `hl7gw certs dev SPEC`: development certificates for every TLS file a spec names, plus
//! the Trust side's, so a whole exchange can be tried on one machine.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use time::Date;

use super::Failure;
use super::validate::{parse_date, today_utc};
use crate::certs::{CertError, DEV_VALIDITY_DAYS, make_dev_certs, plans};
use crate::spec::load_spec;

/// Arguments of `hl7gw certs`.
#[derive(Debug, Args)]
pub struct CertsArgs {
    #[command(subcommand)]
    command: CertsCommand,
}

#[derive(Debug, Subcommand)]
enum CertsCommand {
    /// Make development CAs, certificates and keys for every TLS file the spec names.
    Dev(DevArgs),
}

#[derive(Debug, Args)]
struct DevArgs {
    /// The spec.
    spec: PathBuf,
    /// Replace files that exist (by default nothing is overwritten).
    #[arg(long)]
    force: bool,
    /// Days the certificates stay valid.
    #[arg(long, default_value_t = DEV_VALIDITY_DAYS)]
    days: i64,
    /// Issue as of this day (YYYY-MM-DD) instead of today.
    #[arg(long, value_parser = parse_date)]
    today: Option<Date>,
}

/// Runs `certs`.
pub fn run(args: &CertsArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let CertsCommand::Dev(dev) = &args.command;
    let display = dev.spec.to_string_lossy().into_owned();
    let loaded = load_spec(&dev.spec, &display).map_err(|diagnostics| {
        let first = diagnostics
            .first()
            .map(|d| d.summary.clone())
            .unwrap_or_default();
        Failure::Input(format!(
            "{display}: the spec does not load ({first}); run `hl7gw validate {display}`"
        ))
    })?;
    let plans = plans(&loaded).map_err(|e| Failure::Input(e.to_string()))?;
    let written = make_dev_certs(
        &plans,
        dev.force,
        dev.today.unwrap_or_else(today_utc),
        dev.days,
    )
    .map_err(|e| match e {
        // A file that cannot be read or written is an I/O error (exit 2), not an error in
        // the spec (exit 1): docs/contracts.md §1.
        CertError::Read { .. } | CertError::Write { .. } => Failure::Usage(e.to_string()),
        _ => Failure::Input(e.to_string()),
    })?;
    let io = |e: std::io::Error| Failure::Usage(format!("writing output: {e}"));
    for f in &written {
        writeln!(
            out,
            "wrote {}{}  ({})",
            f.path.display(),
            if f.private_key { " [0600]" } else { "" },
            f.description
        )
        .map_err(io)?;
    }
    Ok(())
}
