//! `hl7gw certs dev SPEC`: development certificates for every TLS file a spec names, plus
//! the Trust side's, so a whole exchange can be tried on one machine.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use time::Date;

use super::Failure;
use super::validate::{parse_date, today_utc};
use crate::certs::{DEV_VALIDITY_DAYS, EnvCertPlan, ReceivePlan, SendPlan, make_dev_certs};
use crate::spec::{LoadedSpec, load_spec};

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
    let plans = plans(&loaded)?;
    let written = make_dev_certs(
        &plans,
        dev.force,
        dev.today.unwrap_or_else(today_utc),
        dev.days,
    )
    .map_err(|e| Failure::Input(e.to_string()))?;
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

/// One plan per environment, with the paths resolved against the spec's folder.
fn plans(loaded: &LoadedSpec) -> Result<Vec<EnvCertPlan>, Failure> {
    let spec = &loaded.spec;
    let mut plans = Vec::new();
    for (env, e) in spec.environments.iter() {
        let receive = match &e.receive {
            None => None,
            Some(r) => {
                let subject = r.allowed_clients.first().ok_or_else(|| {
                    Failure::Input(format!(
                        "environments.{}.receive.allowed_clients is empty: the Trust engine's certificate needs a subject",
                        env.as_str()
                    ))
                })?;
                Some(ReceivePlan {
                    server_cert: loaded.resolve(&r.tls.cert),
                    server_key: loaded.resolve(&r.tls.key),
                    client_ca: loaded.resolve(&r.tls.client_ca),
                    hostname: r.hostname.clone(),
                    trust_client_cn: subject_name(subject).to_string(),
                })
            }
        };
        let send = match &e.send {
            None => None,
            Some(s) => Some(SendPlan {
                client_cert: loaded.resolve(&s.tls.cert),
                client_key: loaded.resolve(&s.tls.key),
                server_ca: loaded.resolve(&s.tls.server_ca),
                trust_server_host: url_host(&s.url).ok_or_else(|| {
                    Failure::Input(format!(
                        "environments.{}.send.url {:?} has no host",
                        env.as_str(),
                        s.url
                    ))
                })?,
            }),
        };
        let anchor = receive
            .as_ref()
            .map(|r| r.server_cert.clone())
            .or_else(|| send.as_ref().map(|s| s.client_cert.clone()));
        let Some(anchor) = anchor else { continue };
        let peer_dir = anchor
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join("trust");
        plans.push(EnvCertPlan {
            env: env.as_str().to_string(),
            customer_code: spec.customer.code.clone(),
            receive,
            send,
            peer_dir,
        });
    }
    Ok(plans)
}

/// `CN=tie.trust.nhs.uk` or `DNS:tie.trust.nhs.uk` → `tie.trust.nhs.uk`.
fn subject_name(subject: &str) -> &str {
    subject
        .strip_prefix("CN=")
        .or_else(|| subject.strip_prefix("DNS:"))
        .unwrap_or(subject)
}

/// The host of an `https://host[:port]/…` URL.
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split_once(']')?.0
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    (!host.is_empty()).then(|| host.to_string())
}
