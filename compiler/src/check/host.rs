//! The specs of one host checked together (`hl7gw validate` with several specs): the host
//! (`gw-host`, `hl7gw_runtime::host`) runs every customer in one process, so no two specs may
//! claim the same customer code, receive host name (the TLS server name that routes a
//! connection), store (SQLite file, or PostgreSQL database), or intake MLLP receiving
//! facility (MSH-6, which routes an MLLP message on the host's shared intake); and since the
//! host's EMS-facing listeners are shared, every spec's `ems` access must be the same
//! (compared within one environment, as a host serves one). Each finding is placed at the
//! second spec's value and names the first spec's file, line and key.

use std::path::{Component, Path, PathBuf};

use crate::diag::Diagnostic;
use crate::spec::{EmsSide, EnvName, LoadedSpec, StoreSetting};

/// One thing a spec claims on the host.
struct Claim {
    /// What it is, for the summary (`host name`).
    what: &'static str,
    /// The finding's code.
    code: &'static str,
    /// The value compared.
    key: String,
    /// The environment it holds in, when only within one (a host serves one environment).
    env: Option<EnvName>,
    /// Where it is in the spec.
    pointer: String,
}

/// One environment's EMS access, as the host compares it: `None` for plain loopback, else
/// the files (their content, or the path resolved against the spec's folder when
/// unreadable), the allowed subjects (sorted) and the address.
struct EmsAccess {
    env: EnvName,
    key: Option<String>,
    pointer: String,
}

/// Findings for specs that cannot share one host: a reserved customer code (for any
/// number of specs), then collisions between two specs.
pub fn check_host(specs: &[LoadedSpec]) -> Vec<Diagnostic> {
    let claims: Vec<Vec<Claim>> = specs.iter().map(claims).collect();
    let access: Vec<Vec<EmsAccess>> = specs.iter().map(ems_access).collect();
    let mut out = Vec::new();
    for spec in specs {
        if spec.spec.customer.code.eq_ignore_ascii_case("host") {
            out.push(spec.at_value(
                Diagnostic::error(
                    "host-reserved-code",
                    "customer code `host` is reserved".to_owned(),
                )
                .detail(
                    "`host` names the host crate (generated/host/, gw-host) and labels the host's own series in its /metrics (customer=\"host\"): choose another code",
                ),
                "/customer/code",
            ));
        }
    }
    for (j, spec) in specs.iter().enumerate() {
        for (i, first) in specs.iter().enumerate().take(j) {
            for claim in &claims[j] {
                if let Some(theirs) = claims[i]
                    .iter()
                    .find(|c| c.code == claim.code && c.key == claim.key && c.env == claim.env)
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
                            "one host (gw-host) runs every spec given together: each needs its own customer code, host names and stores, and its own receiving facility (MSH-6 routes intake MLLP messages on the host's shared listener)",
                        ),
                        &claim.pointer,
                    ));
                }
            }
            // A host serves one environment: TEST against TEST, PROD against PROD.
            for env in [EnvName::Test, EnvName::Prod] {
                let ours = access[j].iter().find(|a| a.env == env);
                let theirs = access[i].iter().find(|a| a.env == env);
                if let (Some(ours), Some(theirs)) = (ours, theirs)
                    && ours.key != theirs.key
                {
                    out.push(spec.at_value(
                        Diagnostic::error(
                            "host-ems-differs",
                            format!(
                                "{}'s `ems` differs from {}'s ({})",
                                env.as_str().to_uppercase(),
                                first.source.file,
                                place(first, &theirs.pointer)
                            ),
                        )
                        .detail(
                            "the host serves EMS through one inbox API, one intake API and one intake MLLP listener, so every customer's `ems` must be the same: plain_loopback for all, or the same tls files, allowed_clients and address",
                        ),
                        &ours.pointer,
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
        env: None,
        pointer: "/customer/code".into(),
    }];
    for (env, e) in spec.spec.environments.iter() {
        let base = format!("/environments/{}", env.as_str());
        if let Some(r) = &e.receive {
            out.push(Claim {
                what: "host name",
                code: "host-same-hostname",
                key: r.hostname.trim_end_matches('.').to_ascii_lowercase(),
                env: None,
                pointer: format!("{base}/receive/hostname"),
            });
        }
        if let Some(facility) = e
            .send
            .as_ref()
            .and_then(|send| send.receiving_facility.as_deref())
            .map(|f| f.split('^').next().unwrap_or_default())
            .filter(|f| !f.is_empty())
        {
            out.push(Claim {
                what: "receiving facility",
                code: "host-same-facility",
                key: facility.to_owned(),
                env: Some(env),
                pointer: format!("{base}/send/receiving_facility"),
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
            env: None,
            pointer: format!("{base}/store"),
        });
    }
    out
}

fn ems_access(spec: &LoadedSpec) -> Vec<EmsAccess> {
    let mut out = Vec::new();
    for (env, e) in spec.spec.environments.iter() {
        // Only an environment that runs an EMS-facing API (the inbox, or the intake when it
        // sends) must agree, as the host compares them.
        let faces_ems =
            matches!(e.sink, None | Some(crate::spec::SinkConfig::Inbox)) || e.send.is_some();
        let Some(ems) = e.ems.as_ref().filter(|_| faces_ems) else {
            continue; // env-ems-missing says why, when it matters
        };
        out.push(EmsAccess {
            env,
            key: ems_key(spec, ems),
            pointer: format!("/environments/{}/ems", env.as_str()),
        });
    }
    out
}

fn ems_key(spec: &LoadedSpec, ems: &EmsSide) -> Option<String> {
    let tls = ems.tls.as_ref()?;
    // By content when readable (customers may keep copies of EMS's material), else by path.
    let file = |path: &str| {
        let resolved = lexical(&spec.resolve(path));
        match std::fs::read(&resolved) {
            Ok(bytes) => {
                use std::hash::{Hash, Hasher};
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                bytes.hash(&mut hasher);
                format!("content {:016x}", hasher.finish())
            }
            Err(_) => resolved.display().to_string(),
        }
    };
    let mut allowed = ems.allowed_clients.clone();
    allowed.sort();
    Some(format!(
        "{}|{}|{}|{}|{}|{}",
        file(&tls.cert),
        file(&tls.key),
        file(&tls.client_ca),
        tls.client_crl.as_deref().map(file).unwrap_or_default(),
        allowed.join(","),
        ems.address
            .as_deref()
            .unwrap_or(crate::spec::EMS_DEFAULT_ADDRESS),
    ))
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
