//! The specs of one host checked together (`hl7gw validate` with several specs): the host
//! (`gw-host`, `hl7gw_runtime::host`) runs every customer in one process, so no two specs may
//! claim the same customer code, receive host name (the TLS server name that routes a
//! connection), store (SQLite file, or PostgreSQL database), or EMS-facing port (inbox,
//! intake, intake MLLP: each customer keeps its own; compared within one environment, as
//! a host serves one). Each finding is placed at the second
//! spec's value and names the first spec's file, line and key.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};

use hl7gw_runtime::listeners::{self, Sides};

use crate::diag::Diagnostic;
use crate::spec::{EnvName, LoadedSpec, SinkConfig, StoreSetting};

/// One thing a spec claims on the host.
struct Claim {
    /// What it is, for the summary (`host name`).
    what: &'static str,
    /// The finding's code.
    code: &'static str,
    /// The value compared.
    key: String,
    /// Where it is in the spec.
    pointer: String,
}

/// One EMS-facing socket a spec's environment binds.
struct Port {
    env: EnvName,
    what: String,
    addr: SocketAddr,
    pointer: String,
}

/// Findings for specs that cannot share one host (empty for fewer than two specs).
pub fn check_host(specs: &[LoadedSpec]) -> Vec<Diagnostic> {
    let claims: Vec<Vec<Claim>> = specs.iter().map(claims).collect();
    let ports: Vec<Vec<Port>> = specs.iter().map(ems_ports).collect();
    let mut out = Vec::new();
    for (j, spec) in specs.iter().enumerate() {
        for (i, first) in specs.iter().enumerate().take(j) {
            for claim in &claims[j] {
                if let Some(theirs) = claims[i]
                    .iter()
                    .find(|c| c.code == claim.code && c.key == claim.key)
                {
                    out.push(spec.at_value(
                        Diagnostic::error(
                            claim.code,
                            format!(
                                "{} `{}` is also {}'s ({})",
                                claim.what,
                                claim.key,
                                first.source.file,
                                place(first, &theirs.pointer)
                            ),
                        )
                        .detail(
                            "one host (gw-host) runs every spec given together: each needs its own customer code, host names, stores and EMS ports",
                        ),
                        &claim.pointer,
                    ));
                }
            }
            // A host serves one environment: TEST ports against TEST ports, PROD against PROD;
            // one finding per environment is enough to move a receive port.
            for env in [EnvName::Test, EnvName::Prod] {
                let clash = ports[j].iter().filter(|p| p.env == env).find_map(|port| {
                    ports[i]
                        .iter()
                        .filter(|p| p.env == env)
                        .find(|p| listeners::collide(port.addr, p.addr))
                        .map(|theirs| (port, theirs))
                });
                if let Some((port, theirs)) = clash {
                    out.push(spec.at_value(
                        Diagnostic::error(
                            "host-port-collision",
                            format!(
                                "{} port {} collides with {}'s {} port {} ({})",
                                port.what,
                                port.addr,
                                first.source.file,
                                theirs.what,
                                theirs.addr,
                                place(first, &theirs.pointer)
                            ),
                        )
                        .detail(
                            "in the host each customer keeps its EMS-facing listeners (inbox, intake, intake MLLP) on receive port + 2 to + 4: give the customers' receive ports at least 5 apart",
                        ),
                        &port.pointer,
                    ));
                }
            }
        }
    }
    out
}

/// `line N, /pointer` of `pointer` in `spec`.
fn place(spec: &LoadedSpec, pointer: &str) -> String {
    match spec.source.value_span(pointer) {
        Some(span) => format!("line {}, {pointer}", span.start.line),
        None => pointer.to_owned(),
    }
}

fn claims(spec: &LoadedSpec) -> Vec<Claim> {
    let mut out = vec![Claim {
        what: "customer code",
        code: "host-same-code",
        key: spec.spec.customer.code.to_ascii_lowercase(),
        pointer: "/customer/code".into(),
    }];
    for (env, e) in spec.spec.environments.iter() {
        let base = format!("/environments/{}", env.as_str());
        if let Some(r) = &e.receive {
            out.push(Claim {
                what: "host name",
                code: "host-same-hostname",
                key: r.hostname.trim_end_matches('.').to_ascii_lowercase(),
                pointer: format!("{base}/receive/hostname"),
            });
        }
        let key = match &e.store {
            StoreSetting::Sqlite(path) => lexical(&spec.resolve(path)).display().to_string(),
            server => server.identity(str::to_owned),
        };
        out.push(Claim {
            what: "store",
            code: "host-same-store",
            key,
            pointer: format!("{base}/store"),
        });
    }
    out
}

fn ems_ports(spec: &LoadedSpec) -> Vec<Port> {
    let mut out = Vec::new();
    for (env, e) in spec.spec.environments.iter() {
        let Some(receive) = e
            .receive
            .as_ref()
            .and_then(|r| r.listen.parse::<SocketAddr>().ok())
        else {
            continue; // env-listen says why
        };
        let sides = Sides {
            inbox: matches!(e.sink, None | Some(SinkConfig::Inbox)),
            send: e.send.is_some(),
            ems_ip: e.ems.as_ref().and_then(crate::spec::EmsSide::tls_address),
        };
        let Ok(planned) = listeners::plan(receive, sides) else {
            continue; // env-port-range says why
        };
        out.extend(
            planned
                .into_iter()
                .filter(|l| l.role.faces_ems())
                .map(|l| Port {
                    env,
                    what: format!("{}'s {}", env.as_str().to_uppercase(), l.role),
                    addr: l.addr,
                    pointer: format!("/environments/{}/receive/listen", env.as_str()),
                }),
        );
    }
    out
}

/// `path` made absolute (against the current folder) with `.` and `..` removed lexically, so
/// `specs/var/x.sqlite` and `specs/../specs/var/x.sqlite` compare equal.
fn lexical(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for part in absolute.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}
