//! Semantic checks of a loaded spec, beyond what the schema can say: HL7 (message types,
//! paths and datatypes against the dictionary), mappings, environments, network,
//! certificates and spec-test files. Each check reports diagnostics placed at the spec
//! value it concerns.

mod certs;
mod env;
mod hl7;
mod host;
mod limits;
mod mapping;
mod names;
mod network;
mod samples;
mod store;

use time::Date;

pub use host::check_host;

use crate::diag::{Diagnostic, Severity};
use crate::spec::{EnvName, LoadedSpec};

/// What to check.
#[derive(Debug, Clone, Copy)]
pub struct CheckOptions {
    /// Only this environment's endpoint checks (certificates, network); both when `None`.
    pub env: Option<EnvName>,
    /// The date certificates are judged against.
    pub today: Date,
}

/// A warning the spec acknowledged, with the reason it gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledged {
    /// The warning.
    pub diagnostic: Diagnostic,
    /// The reason from the spec.
    pub reason: String,
}

/// The outcome of checking one spec.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Errors and unacknowledged warnings, sorted by position.
    pub diagnostics: Vec<Diagnostic>,
    /// Warnings the spec acknowledged.
    pub acknowledged: Vec<Acknowledged>,
}

/// Runs every check on a spec.
pub fn check_spec(spec: &LoadedSpec, options: &CheckOptions) -> CheckReport {
    let mut found = Vec::new();
    names::check(spec, &mut found);
    mapping::check(spec, &mut found);
    hl7::check(spec, &mut found);
    env::check(spec, options, &mut found);
    store::check(spec, &mut found);
    limits::check(spec, &mut found);
    network::check(spec, options, &mut found);
    certs::check(spec, options, &mut found);
    samples::check(spec, &mut found);
    apply_acknowledgements(spec, found)
}

/// The environment a pointer belongs to (`/environments/test/...`).
fn env_of(pointer: Option<&str>) -> Option<EnvName> {
    let rest = pointer?.strip_prefix("/environments/")?;
    EnvName::parse(rest.split('/').next()?)
}

/// Moves warnings the spec acknowledged (per environment, by code) out of the findings, and
/// flags acknowledgements that match nothing so stale ones do not linger.
fn apply_acknowledgements(spec: &LoadedSpec, found: Vec<Diagnostic>) -> CheckReport {
    let mut report = CheckReport::default();
    // `None` stands for the spec-wide `acknowledge:`.
    let mut used: Vec<(Option<EnvName>, String)> = Vec::new();
    for d in found {
        let ack = match env_of(d.pointer.as_deref()) {
            Some(env) => spec
                .spec
                .environments
                .get(env)
                .and_then(|e| e.acknowledge.get(&d.code))
                .map(|reason| (Some(env), reason.clone())),
            None => spec
                .spec
                .acknowledge
                .get(&d.code)
                .map(|reason| (None, reason.clone())),
        };
        match ack {
            Some((env, reason)) if d.severity == Severity::Warning => {
                used.push((env, d.code.clone()));
                report.acknowledged.push(Acknowledged {
                    diagnostic: d,
                    reason,
                });
            }
            _ => report.diagnostics.push(d),
        }
    }
    let places = spec
        .spec
        .environments
        .iter()
        .map(|(env, e)| (Some(env), &e.acknowledge))
        .chain(std::iter::once((None, &spec.spec.acknowledge)));
    for (env, acknowledge) in places {
        for code in acknowledge.keys() {
            if !used.iter().any(|(e, c)| *e == env && c == code) {
                let pointer = match env {
                    Some(env) => format!("/environments/{}/acknowledge/{code}", env.as_str()),
                    None => format!("/acknowledge/{code}"),
                };
                report.diagnostics.push(spec.at_key(
                    Diagnostic::warning(
                        "ack-unused",
                        format!("acknowledgement of `{code}` matches no warning"),
                    )
                    .detail("remove it, or check the warning code; only warnings can be acknowledged, never errors"),
                    &pointer,
                ));
            }
        }
    }
    crate::diag::sort(&mut report.diagnostics);
    report
}
