//! Store checks: a PostgreSQL `store` names where its password comes from but never holds
//! it, says how it reaches the server (TLS with a CA, or plain TCP on loopback only), and has
//! a lease and pool that can work. The plain string form (an SQLite file) needs nothing here.

use std::net::IpAddr;

use hl7gw_runtime::config::Duration;

use crate::diag::Diagnostic;
use crate::spec::{LoadedSpec, PostgresSetting, ServerStore, SslMode, StoreSetting};

/// A lease shorter than this is an error: renewals (every third of it) would race the
/// database's own latency, and a replica would lose streams it still leads.
pub const SHORTEST_LEASE: Duration = Duration::from_secs(1);

/// A lease longer than this is a warning: a stream waits that long after its leader died
/// before another replica takes it over.
pub const LONGEST_SENSIBLE_LEASE: Duration = Duration::from_secs(120);

pub(super) fn check(spec: &LoadedSpec, out: &mut Vec<Diagnostic>) {
    for (env, e) in spec.spec.environments.iter() {
        if let StoreSetting::Server(ServerStore { postgres }) = &e.store {
            let base = format!("/environments/{}/store/postgres", env.as_str());
            check_postgres(spec, postgres, &base, out);
        }
    }
}

fn check_postgres(spec: &LoadedSpec, p: &PostgresSetting, base: &str, out: &mut Vec<Diagnostic>) {
    let error = |code: &str, summary: String, detail: &str, pointer: &str| {
        spec.at_value(
            Diagnostic::error(code, summary).detail(detail.to_owned()),
            pointer,
        )
    };
    if p.password.is_some() {
        // Placed at the key, not the value: the snippet under a diagnostic must not print
        // the secret into a terminal or a CI log.
        out.push(spec.at_key(
            Diagnostic::error("env-store-password", "a password does not go in the spec").detail(
                "specs are kept in git and shown in the go-live report; name where each \
                     replica reads it at run time instead: `password_env: NAME` (an environment \
                     variable) or `password_file: PATH` (e.g. a mounted secret)",
            ),
            &format!("{base}/password"),
        ));
    }
    if p.password_env.is_some() && p.password_file.is_some() {
        out.push(error(
            "env-store-password",
            "give `password_env` or `password_file`, not both".into(),
            "the gateway reads the password from one place",
            &format!("{base}/password_file"),
        ));
    }
    if let Some(name) = &p.password_env {
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            out.push(error(
                "env-store-password",
                // The value is not echoed: it may be the password pasted by mistake.
                "`password_env` is not an environment variable name".into(),
                "write the variable's name (capitals, digits and `_`, e.g. HL7GW_DB_PASSWORD), \
                 not its value",
                &format!("{base}/password_env"),
            ));
        }
    }
    match (&p.tls, p.sslmode) {
        (Some(_), Some(SslMode::Disable)) => out.push(error(
            "env-store-tls",
            "`tls` and `sslmode: disable` contradict each other".into(),
            "give `tls: { ca: ... }` for a server on another host, or `sslmode: disable` for \
             one on this host",
            &format!("{base}/sslmode"),
        )),
        (None, None) => out.push(spec.at_key(
            Diagnostic::error(
                "env-store-tls",
                "say how the gateway reaches PostgreSQL: `tls: { ca: ... }` or `sslmode: disable`",
            )
            .detail(
                "patient data travels to the database: TLS, verified against the CA that issued \
                 the server's certificate, unless the server is on the gateway's own host",
            ),
            base,
        )),
        (None, Some(SslMode::Disable)) if !is_loopback(&p.host) => out.push(spec.at_value(
            Diagnostic::warning(
                "env-store-plain",
                format!(
                    "`sslmode: disable` sends patient data to {} unencrypted",
                    p.host
                ),
            )
            .detail("give `tls: { ca: ... }` unless the network to the database is private"),
            &format!("{base}/sslmode"),
        )),
        _ => {}
    }
    if p.pool_size == Some(0) {
        out.push(error(
            "env-store-pool",
            "`pool_size` 0 opens no connection".into(),
            "leave it out for the default, or give at least 1",
            &format!("{base}/pool_size"),
        ));
    }
    if let Some(lease) = p.lease {
        if lease < SHORTEST_LEASE {
            out.push(error(
                "env-store-lease",
                format!("a stream lease of {lease} is too short (at least {SHORTEST_LEASE})"),
                "the leader renews its lease every third of it; shorter than a second, a slow \
                 database round trip would hand its streams to another replica",
                &format!("{base}/lease"),
            ));
        } else if lease > LONGEST_SENSIBLE_LEASE {
            out.push(spec.at_value(
                Diagnostic::warning(
                    "env-store-lease-long",
                    format!("a stream lease of {lease}: a stream waits that long after its leader dies"),
                )
                .detail("takeover should take seconds, not minutes; the default is 10s"),
                &format!("{base}/lease"),
            ));
        }
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
        || host.starts_with('/')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use crate::diag::Severity;
    use crate::spec::loader::load_spec_text;

    const BASE: &str = include_str!("../../tests/specs/base/basic.yaml");

    /// The base spec with PROD's store replaced by `store` (YAML at the key's indentation).
    fn codes_for(store: &str) -> Vec<(String, Severity, Option<String>)> {
        let text = BASE.replace("    store: var/demo-prod.sqlite", store);
        assert_ne!(text, BASE, "the base spec has PROD's store line");
        let spec = match load_spec_text(text, std::path::Path::new("spec.yaml"), "spec.yaml") {
            Ok(spec) => spec,
            Err(problems) => panic!("{problems:?}"),
        };
        let mut out = Vec::new();
        check(&spec, &mut out);
        out.into_iter()
            .map(|d| (d.code, d.severity, d.pointer))
            .collect()
    }

    fn only(found: &[(String, Severity, Option<String>)], code: &str, pointer: &str) {
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, code);
        assert_eq!(
            found[0].2.as_deref(),
            Some(format!("/environments/prod/store/postgres{pointer}").as_str())
        );
    }

    const GOOD: &str = "    store:
      postgres:
        host: db.internal.example
        dbname: hl7gw_demo_prod
        user: hl7gw
        password_env: HL7GW_DB_PASSWORD
        tls: { ca: certs/prod/db-ca.crt }
        lease: 10s";

    #[test]
    fn a_postgres_store_with_tls_and_a_password_source_is_clean_and_sqlite_stays_valid() {
        assert!(codes_for(GOOD).is_empty());
        assert!(codes_for("    store: var/other.sqlite").is_empty());
        let local = "    store:
      postgres: { host: 127.0.0.1, dbname: gw, user: gw, sslmode: disable }";
        assert!(codes_for(local).is_empty());
    }

    #[test]
    fn an_inline_password_is_refused() {
        let inline = GOOD.replace("password_env: HL7GW_DB_PASSWORD", "password: hunter2");
        only(&codes_for(&inline), "env-store-password", "/password");
        let value = GOOD.replace("HL7GW_DB_PASSWORD", "s3cr3t-Value!");
        only(&codes_for(&value), "env-store-password", "/password_env");
        let both = GOOD.replace(
            "password_env: HL7GW_DB_PASSWORD",
            "password_env: A\n        password_file: /run/secrets/db",
        );
        only(&codes_for(&both), "env-store-password", "/password_file");
    }

    #[test]
    fn tls_or_a_local_plain_connection_is_required() {
        let none = GOOD.replace("        tls: { ca: certs/prod/db-ca.crt }\n", "");
        only(&codes_for(&none), "env-store-tls", "");
        let both = GOOD.replace("lease: 10s", "lease: 10s\n        sslmode: disable");
        only(&codes_for(&both), "env-store-tls", "/sslmode");
        let remote_plain = none.replace("lease: 10s", "lease: 10s\n        sslmode: disable");
        let found = codes_for(&remote_plain);
        only(&found, "env-store-plain", "/sslmode");
        assert_eq!(found[0].1, Severity::Warning);
    }

    #[test]
    fn a_mistyped_key_inside_postgres_is_named_with_a_suggestion() {
        let text = BASE.replace(
            "    store: var/demo-prod.sqlite",
            &GOOD.replace("password_env:", "passwrd_env:"),
        );
        let Err(problems) = load_spec_text(text, std::path::Path::new("spec.yaml"), "spec.yaml")
        else {
            panic!("a mistyped key is refused");
        };
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].code, "schema-unknown-key");
        assert!(problems[0].summary.contains("passwrd_env"), "{problems:?}");
        assert_eq!(
            problems[0].pointer.as_deref(),
            Some("/environments/prod/store/postgres/passwrd_env")
        );
    }

    #[test]
    fn a_lease_must_be_seconds_and_a_pool_must_have_a_connection() {
        only(
            &codes_for(&GOOD.replace("lease: 10s", "lease: 500ms")),
            "env-store-lease",
            "/lease",
        );
        only(
            &codes_for(&GOOD.replace("lease: 10s", "lease: 10m")),
            "env-store-lease-long",
            "/lease",
        );
        only(
            &codes_for(&GOOD.replace("lease: 10s", "pool_size: 0")),
            "env-store-pool",
            "/pool_size",
        );
    }
}
