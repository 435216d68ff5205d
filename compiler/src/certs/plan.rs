//! What `hl7gw certs dev` makes for a loaded spec: one [`EnvCertPlan`] per environment, its
//! paths resolved against the spec's folder. The demo (`examples/demo`) builds the same plans
//! and writes them into its own working folder.

use std::path::Path;

use super::{EmsPlan, EnvCertPlan, ReceivePlan, SendPlan};
use crate::spec::LoadedSpec;

/// Why a spec's certificates cannot be planned: a name the certificates need is missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(pub String);

/// One plan per environment that receives or sends, with the paths resolved against the
/// spec's folder; the Trust side's files go to `trust/` next to the gateway's server
/// certificate (or its client certificate when the environment only sends), and EMS's client
/// certificate to `ems/` next to the gateway's certificate for EMS.
pub fn plans(loaded: &LoadedSpec) -> Result<Vec<EnvCertPlan>, PlanError> {
    let spec = &loaded.spec;
    let mut plans = Vec::new();
    for (env, e) in spec.environments.iter() {
        let receive = match &e.receive {
            None => None,
            Some(r) => {
                let subject = r.allowed_clients.first().ok_or_else(|| {
                    PlanError(format!(
                        "environments.{}.receive.allowed_clients is empty: the Trust engine's certificate needs a subject",
                        env.as_str()
                    ))
                })?;
                Some(ReceivePlan {
                    server_cert: loaded.resolve(&r.tls.cert),
                    server_key: loaded.resolve(&r.tls.key),
                    client_ca: loaded.resolve(&r.tls.client_ca),
                    client_crl: r.tls.client_crl.as_deref().map(|p| loaded.resolve(p)),
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
                server_crl: s.tls.server_crl.as_deref().map(|p| loaded.resolve(p)),
                trust_server_host: url_host(&s.url).ok_or_else(|| {
                    PlanError(format!(
                        "environments.{}.send.url {:?} has no host",
                        env.as_str(),
                        s.url
                    ))
                })?,
            }),
        };
        let ems = match e.ems.as_ref().and_then(|x| Some((x, x.tls.as_ref()?))) {
            None => None,
            Some((x, t)) => {
                let subject = x.allowed_clients.first().ok_or_else(|| {
                    PlanError(format!(
                        "environments.{}.ems.allowed_clients is empty: EMS's certificate needs a subject",
                        env.as_str()
                    ))
                })?;
                let server_cert = loaded.resolve(&t.cert);
                Some(EmsPlan {
                    client_dir: server_cert
                        .parent()
                        .unwrap_or_else(|| Path::new("."))
                        .join("ems"),
                    server_cert,
                    server_key: loaded.resolve(&t.key),
                    client_ca: loaded.resolve(&t.client_ca),
                    client_crl: t.client_crl.as_deref().map(|p| loaded.resolve(p)),
                    hostname: x.hostname.clone(),
                    ems_client_cn: subject_name(subject).to_string(),
                })
            }
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
            ems,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_hosts() {
        assert_eq!(subject_name("CN=tie.example"), "tie.example");
        assert_eq!(subject_name("DNS:tie.example"), "tie.example");
        assert_eq!(
            url_host("https://localhost:9443/hl7/ems").as_deref(),
            Some("localhost")
        );
        assert_eq!(url_host("https://[::1]:9443/x").as_deref(), Some("::1"));
        assert_eq!(url_host("https:///x"), None);
        assert_eq!(url_host("no scheme"), None);
    }
}
