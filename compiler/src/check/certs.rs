//! Certificate checks for every TLS file the spec names: files exist and parse, keys match,
//! the server certificate names the receive host, dates and key sizes (see
//! [`crate::certs::check`]). `client_ca` and `server_ca` are the peer's CAs, so they are
//! checked on their own; the chain of the gateway's own certificates is verified against
//! `issuer_ca` when the spec names it.

use std::path::Path;

use super::CheckOptions;
use crate::certs::{self, BundleToCheck, Finding, Usage};
use crate::diag::Diagnostic;
use crate::spec::LoadedSpec;

pub(super) fn check(spec: &LoadedSpec, options: &CheckOptions, out: &mut Vec<Diagnostic>) {
    for (env, e) in spec.spec.environments.iter() {
        if options.env.is_some_and(|only| only != env) {
            continue;
        }
        let base = format!("/environments/{}", env.as_str());
        if let Some(r) = &e.receive {
            let cert = spec.resolve(&r.tls.cert);
            let key = spec.resolve(&r.tls.key);
            let issuer = r.tls.issuer_ca.as_deref().map(|p| spec.resolve(p));
            let findings = certs::check_bundle(&BundleToCheck {
                cert: &cert,
                key: Some(&key),
                ca: issuer.as_deref(),
                usage: Usage::Server,
                hostname: Some(&r.hostname),
                today: options.today,
            });
            report(
                spec,
                &findings,
                &format!("{base}/receive/tls"),
                "client_ca",
                out,
            );
            let ca = spec.resolve(&r.tls.client_ca);
            report_ca(
                spec,
                &ca,
                options,
                &format!("{base}/receive/tls/client_ca"),
                out,
            );
        }
        if let Some(s) = &e.send {
            let cert = spec.resolve(&s.tls.cert);
            let key = spec.resolve(&s.tls.key);
            let issuer = s.tls.issuer_ca.as_deref().map(|p| spec.resolve(p));
            let findings = certs::check_bundle(&BundleToCheck {
                cert: &cert,
                key: Some(&key),
                ca: issuer.as_deref(),
                usage: Usage::Client,
                hostname: None,
                today: options.today,
            });
            report(
                spec,
                &findings,
                &format!("{base}/send/tls"),
                "server_ca",
                out,
            );
            let ca = spec.resolve(&s.tls.server_ca);
            report_ca(
                spec,
                &ca,
                options,
                &format!("{base}/send/tls/server_ca"),
                out,
            );
        }
    }
}

fn report_ca(
    spec: &LoadedSpec,
    ca: &Path,
    options: &CheckOptions,
    pointer: &str,
    out: &mut Vec<Diagnostic>,
) {
    for f in certs::check_ca(ca, options.today) {
        out.push(spec.at_value(diagnostic(&f), pointer));
    }
}

fn report(
    spec: &LoadedSpec,
    findings: &[Finding],
    tls_pointer: &str,
    ca_key: &str,
    out: &mut Vec<Diagnostic>,
) {
    for f in findings {
        let key = match f.which {
            certs::Which::Cert => "cert",
            certs::Which::Key => "key",
            certs::Which::Ca => ca_key,
        };
        out.push(spec.at_value(diagnostic(f), &format!("{tls_pointer}/{key}")));
    }
}

fn diagnostic(f: &Finding) -> Diagnostic {
    let code = if f.code.starts_with("cert-") {
        f.code.to_string()
    } else {
        format!("cert-{}", f.code)
    };
    let d = match f.severity {
        certs::Severity::Error => Diagnostic::error(&code, f.message.clone()),
        certs::Severity::Warning => Diagnostic::warning(&code, f.message.clone()),
    };
    d.detail(format!("file: {}", f.path.display()))
}
