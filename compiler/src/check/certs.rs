//! Certificate checks for every TLS file the spec names (the receive side's, the send side's
//! and the EMS listeners'): files exist and parse, keys match, a server certificate names its
//! host (`receive.hostname`, `ems.hostname`), dates and key sizes (see
//! [`crate::certs::check`]). `client_ca` and `server_ca` are the peer's CAs, so they are
//! checked on their own; the chain of the gateway's own certificates is verified against
//! `issuer_ca` when the spec names it, and a finding about that CA is placed at `issuer_ca`.
//!
//! A certificate that is the other environment's (TEST's in PROD, or the two swapped) is
//! reported as that, `cert-other-environment`, instead of the chain and host name findings it
//! causes: the fix is this environment's own certificate, not an intermediate CA.

use std::path::{Path, PathBuf};

use super::CheckOptions;
use crate::certs::{self, BundleToCheck, Finding, Usage};
use crate::diag::Diagnostic;
use crate::spec::{EnvName, Environment, LoadedSpec};

/// One side's own certificate, as a spec environment names it.
struct OwnCert {
    env: EnvName,
    /// JSON pointer of the side's `tls` object.
    tls_pointer: String,
    /// As written in the spec, for messages.
    written: String,
    cert: PathBuf,
    key: PathBuf,
    issuer: Option<PathBuf>,
    usage: Usage,
    hostname: Option<String>,
}

/// The receive side's, the send side's and the EMS listeners' own certificates of an
/// environment.
fn own_certs(spec: &LoadedSpec, env: EnvName, e: &Environment) -> [Option<OwnCert>; 3] {
    let base = format!("/environments/{}", env.as_str());
    let own = |side: &str, cert: &str, key: &str, issuer: Option<&str>, usage, hostname| OwnCert {
        env,
        tls_pointer: format!("{base}/{side}/tls"),
        written: cert.to_owned(),
        cert: spec.resolve(cert),
        key: spec.resolve(key),
        issuer: issuer.map(|p| spec.resolve(p)),
        usage,
        hostname,
    };
    let receive = e.receive.as_ref().map(|r| {
        let t = &r.tls;
        let hostname = Some(r.hostname.clone());
        own(
            "receive",
            &t.cert,
            &t.key,
            t.issuer_ca.as_deref(),
            Usage::Server,
            hostname,
        )
    });
    let send = e.send.as_ref().map(|s| {
        let t = &s.tls;
        own(
            "send",
            &t.cert,
            &t.key,
            t.issuer_ca.as_deref(),
            Usage::Client,
            None,
        )
    });
    let ems = e.ems.as_ref().and_then(|x| {
        let t = x.tls.as_ref()?;
        Some(own(
            "ems",
            &t.cert,
            &t.key,
            t.issuer_ca.as_deref(),
            Usage::Server,
            x.hostname.clone(),
        ))
    });
    [receive, send, ems]
}

/// The peer CAs of an environment with their CRLs: (the CA file, the CRL file, the side's
/// key, the keys' prefix: `client` for `client_ca`/`client_crl`, `server` for the others).
fn peer_cas(
    e: &Environment,
) -> impl Iterator<Item = (&str, Option<&str>, &'static str, &'static str)> {
    [
        e.receive
            .as_ref()
            .map(|r| (&r.tls.client_ca, &r.tls.client_crl, "receive", "client")),
        e.send
            .as_ref()
            .map(|s| (&s.tls.server_ca, &s.tls.server_crl, "send", "server")),
        e.ems
            .as_ref()
            .and_then(|x| x.tls.as_ref())
            .map(|t| (&t.client_ca, &t.client_crl, "ems", "client")),
    ]
    .into_iter()
    .flatten()
    .map(|(ca, crl, side, prefix)| (ca.as_str(), crl.as_deref(), side, prefix))
}

pub(super) fn check(spec: &LoadedSpec, options: &CheckOptions, out: &mut Vec<Diagnostic>) {
    let envs: Vec<(EnvName, [Option<OwnCert>; 3])> = spec
        .spec
        .environments
        .iter()
        .map(|(env, e)| (env, own_certs(spec, env, e)))
        .collect();
    for (env, e) in spec.spec.environments.iter() {
        if options.env.is_some_and(|only| only != env) {
            continue;
        }
        let Some((_, sides)) = envs.iter().find(|(name, _)| *name == env) else {
            continue;
        };
        for (i, own) in sides.iter().enumerate() {
            let Some(own) = own else { continue };
            let other = envs
                .iter()
                .filter(|(name, _)| *name != env)
                .find_map(|(_, theirs)| theirs[i].as_ref());
            check_own(spec, options, own, other, out);
        }
        let base = format!("/environments/{}", env.as_str());
        for (ca, crl, side, prefix) in peer_cas(e) {
            let ca = spec.resolve(ca);
            let findings = certs::check_ca(&ca, options.today);
            report(
                spec,
                findings,
                &format!("{base}/{side}/tls/{prefix}_ca"),
                out,
            );
            if let Some(crl) = crl {
                let findings = certs::check_crl(&spec.resolve(crl), &ca, options.today);
                report(
                    spec,
                    findings,
                    &format!("{base}/{side}/tls/{prefix}_crl"),
                    out,
                );
            }
        }
    }
}

/// The gateway's own certificate of one side, its key and its chain to `issuer_ca`.
fn check_own(
    spec: &LoadedSpec,
    options: &CheckOptions,
    own: &OwnCert,
    other: Option<&OwnCert>,
    out: &mut Vec<Diagnostic>,
) {
    let mut findings = certs::check_bundle(&BundleToCheck {
        cert: &own.cert,
        key: Some(&own.key),
        ca: own.issuer.as_deref(),
        usage: own.usage,
        hostname: own.hostname.as_deref(),
        today: options.today,
    });
    let symptom = |f: &Finding| matches!(f.code, "chain-unverified" | "hostname-mismatch");
    if findings.iter().any(symptom)
        && let Some(other) = other
        && let Some(why) = belongs_to(own, other, options)
    {
        findings.retain(|f| !symptom(f));
        let this = own.env.as_str().to_uppercase();
        let that = other.env.as_str().to_uppercase();
        out.push(spec.at_value(
            Diagnostic::error(
                "cert-other-environment",
                format!(
                    "this environment's own certificate is needed: {} is {that}'s ({why})",
                    own.written
                ),
            )
            .detail(format!(
                "TEST and PROD each have their own certificate and key, so a test client can never reach the live system; give {this} the certificate issued for it{}, and keep {} for {that}",
                own.hostname
                    .as_deref()
                    .map(|h| format!(" (naming {h})"))
                    .unwrap_or_default(),
                other.written
            )),
            &format!("{}/cert", own.tls_pointer),
        ));
    }
    for f in &findings {
        let key = match f.which {
            certs::Which::Cert => "cert",
            certs::Which::Key => "key",
            certs::Which::Ca => "issuer_ca",
            certs::Which::Crl => "crl",
        };
        out.push(spec.at_value(diagnostic(spec, f), &format!("{}/{key}", own.tls_pointer)));
    }
}

/// Why `own`'s certificate is `other`'s: the very same certificate, or one issued by the
/// other environment's `issuer_ca`. `None` when neither can be shown.
fn belongs_to(own: &OwnCert, other: &OwnCert, options: &CheckOptions) -> Option<String> {
    let fingerprint = |path: &Path| certs::summarize(path).ok().map(|s| s.sha256_fingerprint);
    let that = other.env.as_str().to_uppercase();
    if own.cert == other.cert {
        return Some(format!("{that} names the same file"));
    }
    if let (Some(mine), Some(theirs)) = (fingerprint(&own.cert), fingerprint(&other.cert))
        && mine == theirs
    {
        return Some(format!(
            "the same certificate as {that}'s {}",
            other.written
        ));
    }
    let issuer = other.issuer.as_deref()?;
    let to_their_ca = certs::check_bundle(&BundleToCheck {
        cert: &own.cert,
        key: None,
        ca: Some(issuer),
        usage: own.usage,
        hostname: None,
        today: options.today,
    });
    // Verified, as far as the chain goes: dates and the like are not the question here.
    let unusable = [
        "chain-unverified",
        "cert-missing",
        "cert-unreadable",
        "cert-is-ca",
        "ca-missing",
        "ca-unreadable",
    ];
    let verified = !to_their_ca.iter().any(|f| unusable.contains(&f.code));
    verified.then(|| format!("issued by {that}'s issuer_ca, not this environment's"))
}

/// Findings about a CA or CRL file, placed at the spec value that names it.
fn report(spec: &LoadedSpec, findings: Vec<Finding>, pointer: &str, out: &mut Vec<Diagnostic>) {
    for f in findings {
        out.push(spec.at_value(diagnostic(spec, &f), pointer));
    }
}

fn diagnostic(spec: &LoadedSpec, f: &Finding) -> Diagnostic {
    let code = if f.code.starts_with("cert-") {
        f.code.to_string()
    } else {
        format!("cert-{}", f.code)
    };
    let d = match f.severity {
        certs::Severity::Error => Diagnostic::error(&code, f.message.clone()),
        certs::Severity::Warning => Diagnostic::warning(&code, f.message.clone()),
    };
    let file = format!("file: {}", f.path.display());
    if f.code.ends_with("-missing") {
        return d.detail(format!(
            "{file}; for development, `hl7gw certs dev {}` makes every certificate, key and CA the spec names (and the Trust side's, in a `trust/` folder next to the server certificate); for go-live, put the files you were issued there",
            spec.path.display()
        ));
    }
    d.detail(file)
}
