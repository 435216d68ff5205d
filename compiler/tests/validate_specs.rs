//! `hl7gw validate` as a user runs it, on specs with one mistake each: every check reports its
//! diagnostic with the right code at the right line and column, and nothing else.
//!
//! `tests/specs/broken/` holds one spec per diagnostic, each a copy of `tests/specs/base/basic.yaml`
//! (or `base/orders.yaml`) with one deliberate mistake, described in a comment at its top.
//! [`CASES`] says what each one must report. The specs name their certificates and message
//! files relative to themselves (`certs/test/server.crt`, `messages/adt_a28.hl7`), as the
//! demo does; none of those are checked in: [`Workspace::new`] copies the specs into a temporary
//! folder and makes the files next to them, with every date pinned to [`TODAY`] so that no
//! result depends on the day the tests run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hl7gw::certs::{EnvCertPlan, ReceivePlan, make_dev_certs};
use hl7gw::spec::loader::escape_pointer;
use serde_json::Value;
use time::{Date, Month};

/// The day certificates are made and judged on (`--today`).
const TODAY: &str = "2026-11-27";

fn today() -> Date {
    Date::from_calendar_date(2026, Month::November, 27).unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Severity {
    Error,
    Warning,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One broken spec and the diagnostic it must produce.
#[derive(Debug, Clone, Copy)]
struct Case {
    /// File name in `tests/specs/broken/`.
    file: &'static str,
    /// The diagnostic's code.
    code: &'static str,
    severity: Severity,
    /// Line and column (from 1) where the diagnostic starts; `None` when it has no position
    /// (the file could not be read as a spec at all).
    at: Option<(usize, usize)>,
    /// Codes of the other diagnostics the mistake raises, by design. Anything else fails.
    also: &'static [&'static str],
}

const fn error(file: &'static str, code: &'static str, line: usize, column: usize) -> Case {
    Case {
        file,
        code,
        severity: Severity::Error,
        at: Some((line, column)),
        also: &[],
    }
}

const fn warning(file: &'static str, code: &'static str, line: usize, column: usize) -> Case {
    Case {
        severity: Severity::Warning,
        ..error(file, code, line, column)
    }
}

const fn unplaced(file: &'static str, code: &'static str) -> Case {
    Case {
        at: None,
        ..error(file, code, 0, 0)
    }
}

impl Case {
    const fn also(self, also: &'static [&'static str]) -> Case {
        Case { also, ..self }
    }
}

/// Every broken spec, by family. Line and column are those of the first character of the key
/// or value the diagnostic is about (inside the quotes for a quoted HL7 path).
const CASES: &[Case] = &[
    // YAML: read event by event, so each is caught where it stands.
    error("yaml-syntax.yaml", "yaml-syntax", 7, 17),
    error("yaml-duplicate-key.yaml", "yaml-duplicate-key", 9, 1),
    error("yaml-anchor.yaml", "yaml-anchor", 31, 12),
    error("yaml-alias.yaml", "yaml-alias", 51, 12).also(&["yaml-anchor"]),
    error("yaml-tag.yaml", "yaml-tag", 8, 9),
    error(
        "yaml-multiple-documents.yaml",
        "yaml-multiple-documents",
        68,
        1,
    ),
    error("yaml-complex-key.yaml", "yaml-complex-key", 9, 1),
    error("yaml-too-deep.yaml", "yaml-too-deep", 8, 72),
    unplaced("yaml-empty.yaml", "yaml-empty"),
    unplaced("spec-unreadable.yaml", "spec-unreadable"),
    // Schema: at the offending key (unknown, missing) or value.
    error("schema-unknown-key.yaml", "schema-unknown-key", 45, 7),
    error("schema-required.yaml", "schema-required", 33, 3),
    error("schema-type.yaml", "schema-type", 24, 20),
    error("schema-type-hl7-version.yaml", "schema-type", 9, 14),
    error("schema-type-accept-versions.yaml", "schema-type", 10, 28),
    error(
        "schema-format-duration-too-long.yaml",
        "schema-format",
        32,
        16,
    ),
    error("schema-choice-model.yaml", "schema-choice", 10, 8),
    error("schema-choice-field-type.yaml", "schema-choice", 58, 42),
    error("schema-choice-sink.yaml", "schema-choice", 33, 11),
    error("schema-format-duration.yaml", "schema-format", 31, 16),
    error("schema-format-size.yaml", "schema-format", 25, 17),
    error("schema-format-policy.yaml", "schema-format", 31, 14),
    error("schema-format-customer-code.yaml", "schema-format", 6, 9),
    error("schema-invalid.yaml", "schema-invalid", 57, 84),
    // HL7, against the dictionary: at the message type's key or the path.
    error("hl7-version-unknown.yaml", "hl7-version-unknown", 9, 14),
    error(
        "hl7-version-unknown-accepted.yaml",
        "hl7-version-unknown",
        10,
        28,
    ),
    error(
        "hl7-message-type-unknown.yaml",
        "hl7-message-type-unknown",
        68,
        3,
    )
    // A type that does not exist is beyond the model as well.
    .also(&["model-extra-message"]),
    error("hl7-path-unknown-segment.yaml", "hl7-path-unknown", 58, 25),
    error("hl7-path-unknown-field.yaml", "hl7-path-unknown", 59, 25),
    error(
        "hl7-path-unknown-component.yaml",
        "hl7-path-unknown",
        58,
        25,
    ),
    error("hl7-path-unknown-filter.yaml", "hl7-path-unknown", 57, 26),
    error(
        "hl7-segment-not-in-message.yaml",
        "hl7-segment-not-in-message",
        61,
        26,
    ),
    error("hl7-filter-datatype.yaml", "hl7-filter-datatype", 56, 26),
    error("hl7-type-mismatch.yaml", "hl7-type-mismatch", 59, 25),
    warning("hl7-type-loose.yaml", "hl7-type-loose", 61, 28),
    // At the offending character of the path: the `.` where `-` belongs.
    error("path-syntax.yaml", "path-syntax", 59, 28),
    // In a fallback list, at the offending character of the path concerned.
    error("path-syntax-fallback.yaml", "path-syntax", 58, 40),
    // One per message type bound (through nesting) to the record that lacks the segment.
    error(
        "hl7-required-segment-absent.yaml",
        "hl7-required-segment-absent",
        60,
        5,
    )
    .also(&["hl7-required-segment-absent", "hl7-required-segment-absent"]),
    error(
        "hl7-nhs-number-not-identifier.yaml",
        "hl7-nhs-number-not-identifier",
        56,
        25,
    ),
    // Mappings.
    error("record-unknown.yaml", "record-unknown", 66, 22),
    error("record-unknown-nested.yaml", "record-unknown", 60, 27),
    error("table-unknown.yaml", "table-unknown", 60, 51),
    error("record-cycle.yaml", "record-cycle", 55, 3),
    error("field-from-and-record.yaml", "field-from-and-record", 61, 5),
    error("field-no-source.yaml", "field-no-source", 60, 5),
    error("field-no-type.yaml", "field-no-type", 60, 5),
    error(
        "field-type-with-record.yaml",
        "field-type-with-record",
        61,
        36,
    ),
    error(
        "field-repeated-record.yaml",
        "field-repeated-record",
        61,
        36,
    ),
    error("code-map-and-table.yaml", "code-map-and-table", 63, 5),
    error("code-no-values.yaml", "code-no-values", 60, 5),
    error("code-no-values-empty-map.yaml", "code-no-values", 60, 44),
    error("code-empty.yaml", "code-empty", 60, 71),
    error("code-empty-table.yaml", "code-empty", 56, 15),
    error("option-needs-code.yaml", "option-needs-code", 60, 48),
    error("option-wrong-type.yaml", "option-wrong-type", 59, 60),
    error("option-wrong-type-media.yaml", "option-wrong-type", 58, 66),
    // The schema's minimum of 1, at the value.
    error("max-len-zero.yaml", "schema-invalid", 57, 84),
    error("value-invalid.yaml", "value-invalid", 63, 99),
    error("value-with-option.yaml", "value-with-option", 63, 65),
    error("send-header-invalid.yaml", "send-header-invalid", 31, 25),
    error(
        "test-build-undeclared.yaml",
        "test-build-undeclared",
        73,
        12,
    ),
    error(
        "test-record-unknown-key.yaml",
        "test-record-unknown-key",
        74,
        26,
    ),
    error("base64-no-media.yaml", "base64-no-media", 62, 5),
    error("base64-no-limit.yaml", "base64-no-limit", 62, 5),
    error("name-invalid.yaml", "name-invalid", 59, 5),
    error("name-reserved.yaml", "name-reserved", 60, 5),
    error("name-duplicate.yaml", "name-duplicate", 63, 3),
    // Names `generate` would refuse or rename with a number, judged by its own functions.
    error("name-reserved-record.yaml", "name-reserved", 60, 3),
    error("name-reserved-type.yaml", "name-reserved-type", 61, 3),
    error("name-reserved-type-table.yaml", "name-reserved-type", 58, 3),
    error("name-type-collision.yaml", "name-type-collision", 67, 5),
    error(
        "name-type-collision-table.yaml",
        "name-type-collision",
        58,
        3,
    ),
    warning(
        "name-variant-collision.yaml",
        "name-variant-collision",
        66,
        109,
    ),
    error("message-type-syntax.yaml", "message-type-syntax", 68, 3),
    error("model-missing-message.yaml", "model-missing-message", 10, 8),
    // From v2.5 the orders model answers with ORG^O20 (ORR^O02 is still covered, no warning).
    error(
        "model-missing-message-version.yaml",
        "model-missing-message",
        10,
        8,
    ),
    warning("model-extra-message.yaml", "model-extra-message", 68, 3),
    // Cancellations (orders model).
    error("cancel-same-record.yaml", "cancel-same-record", 75, 47),
    error("cancel-identity.yaml", "cancel-identity", 81, 47),
    error("cancel-not-order.yaml", "cancel-not-order", 83, 31),
    // The ServiceRequest minimum dataset (orders model).
    error(
        "service-request-missing.yaml",
        "service-request-missing",
        66,
        3,
    ),
    error(
        "service-request-missing-patient.yaml",
        "service-request-missing",
        60,
        3,
    ),
    error(
        "service-request-missing-nested-patient.yaml",
        "service-request-missing",
        66,
        3,
    ),
    error("service-request-type.yaml", "service-request-type", 72, 38),
    error(
        "service-request-optional.yaml",
        "service-request-optional",
        68,
        5,
    ),
    error("service-request-table.yaml", "service-request-table", 70, 5),
    // Environments.
    error("env-missing.yaml", "env-missing", 12, 1),
    error("env-processing-id.yaml", "env-processing-id", 34, 20),
    error("env-shared.yaml", "env-shared", 51, 12),
    error("env-shared-listen.yaml", "env-shared", 37, 15),
    warning("env-hostname-pattern.yaml", "env-hostname-pattern", 19, 17),
    warning("ack-unused.yaml", "ack-unused", 34, 7),
    // Errors cannot be acknowledged: the error stays and the acknowledgement is unused.
    error("ack-error.yaml", "env-path", 18, 13).also(&["ack-unused"]),
    error("env-listen.yaml", "env-listen", 16, 15),
    error("env-port-collision.yaml", "env-port-collision", 38, 15),
    error("env-port-range.yaml", "env-port-range", 17, 15),
    error("env-path.yaml", "env-path", 37, 13),
    error("env-no-clients.yaml", "env-no-clients", 43, 24),
    error("env-no-receive.yaml", "env-no-receive", 33, 3),
    error("env-no-send.yaml", "env-no-send", 13, 3),
    // Limits that cannot work, or only on paper.
    error("env-timeout-zero.yaml", "env-timeout-zero", 51, 16),
    error("env-backoff-order.yaml", "env-backoff-order", 31, 25),
    warning("env-backoff-long.yaml", "env-backoff-long", 31, 34),
    error("env-max-body-zero.yaml", "env-max-body-zero", 25, 17),
    warning("env-max-body-large.yaml", "env-max-body-large", 46, 17),
    error("env-limits.yaml", "env-limits", 35, 27),
    error("env-retention-zero.yaml", "env-retention-zero", 33, 16),
    error("env-retention-short.yaml", "env-retention-short", 33, 16),
    warning("env-retention-long.yaml", "env-retention-long", 33, 16),
    error("env-ems.yaml", "env-ems", 32, 5),
    error("env-ems-no-clients.yaml", "env-ems", 34, 7),
    error("env-ems-missing.yaml", "env-ems-missing", 13, 3),
    // Network.
    error("net-url.yaml", "net-url", 46, 12),
    error("net-url-webhook.yaml", "net-url", 53, 29),
    error("net-url-webhook-https.yaml", "net-url", 53, 29),
    error("net-range.yaml", "net-range", 44, 21),
    error("net-open-range.yaml", "net-open-range", 44, 21),
    warning("net-open-range-test.yaml", "net-open-range", 24, 21),
    warning("net-host-bits.yaml", "net-host-bits", 44, 21),
    warning("net-overlap.yaml", "net-overlap", 44, 35),
    error("net-no-ranges.yaml", "net-no-ranges", 44, 20),
    // Certificates: at the path of the file concerned.
    error("cert-missing.yaml", "cert-missing", 20, 15),
    error("cert-key-missing.yaml", "cert-key-missing", 21, 14),
    error("cert-ca-missing.yaml", "cert-ca-missing", 22, 20),
    error("cert-unreadable.yaml", "cert-unreadable", 20, 15),
    error("cert-key-unreadable.yaml", "cert-key-unreadable", 21, 14),
    error("cert-ca-unreadable.yaml", "cert-ca-unreadable", 22, 20),
    error("cert-key-mismatch.yaml", "cert-key-mismatch", 21, 14),
    error(
        "cert-chain-unverified.yaml",
        "cert-chain-unverified",
        21,
        15,
    ),
    error(
        "cert-hostname-mismatch.yaml",
        "cert-hostname-mismatch",
        21,
        15,
    ),
    error("cert-expired.yaml", "cert-expired", 20, 15),
    warning("cert-expiring-soon.yaml", "cert-expiring-soon", 21, 15),
    error("cert-not-yet-valid.yaml", "cert-not-yet-valid", 21, 15),
    error("cert-rsa-too-small.yaml", "cert-rsa-too-small", 29, 15),
    error("cert-wrong-usage.yaml", "cert-wrong-usage", 29, 15),
    error("cert-is-ca.yaml", "cert-is-ca", 29, 15),
    error("cert-ca-not-ca.yaml", "cert-ca-not-ca", 30, 20),
    warning("cert-key-unchecked.yaml", "cert-key-unchecked", 22, 14),
    // A CRL's findings at the CRL's path.
    error("cert-crl-missing.yaml", "cert-crl-missing", 23, 21),
    error("cert-crl-expired.yaml", "cert-crl-expired", 23, 21).also(&["cert-expired"]),
    error("cert-crl-not-signed.yaml", "cert-crl-not-signed", 23, 21),
    // A finding about `issuer_ca` at `issuer_ca`, not at `client_ca`.
    error("cert-issuer-ca-missing.yaml", "cert-ca-missing", 23, 20),
    // The other environment's certificate: reported as that, not as a chain to fix.
    error(
        "cert-other-environment.yaml",
        "cert-other-environment",
        20,
        15,
    )
    .also(&["cert-other-environment"]),
    error(
        "cert-other-environment-shared.yaml",
        "cert-other-environment",
        40,
        15,
    )
    .also(&["env-shared", "env-shared"]),
    // Spec tests.
    error("test-message-missing.yaml", "test-message-missing", 73, 14),
    error(
        "test-message-unparsable.yaml",
        "test-message-unparsable",
        73,
        14,
    ),
    error("test-message-count.yaml", "test-message-count", 73, 14),
    error("test-duplicate-name.yaml", "test-duplicate-name", 75, 11),
    error("test-ack-mode.yaml", "test-ack-mode", 78, 20),
    error(
        "test-expect-unknown-key.yaml",
        "test-expect-unknown-key",
        74,
        34,
    ),
];

/// Specs in the folder that must validate clean: the warning their mistake raises is
/// acknowledged in the spec.
const SILENCED: &[&str] = &["env-hostname-pattern-acknowledged.yaml"];

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn repo_root() -> PathBuf {
    manifest_dir().join("..")
}

fn broken_dir() -> PathBuf {
    manifest_dir().join("tests/specs/broken")
}

fn hl7gw(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hl7gw"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

/// `hl7gw validate FILE --format json --today TODAY` in `dir`: the exit code and the report.
fn validate_json(dir: &Path, file: &str) -> (Option<i32>, Value) {
    let out = hl7gw(
        dir,
        &["validate", file, "--format", "json", "--today", TODAY],
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{file}: the report is not JSON ({e}); stdout: {}; stderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), report)
}

fn diagnostics(report: &Value) -> &[Value] {
    report["diagnostics"].as_array().map_or(&[], Vec::as_slice)
}

/// Line and column where a diagnostic starts.
fn start(d: &Value) -> Option<(usize, usize)> {
    let s = d.get("range")?.get("start")?;
    Some((
        usize::try_from(s["line"].as_u64()?).ok()?,
        usize::try_from(s["column"].as_u64()?).ok()?,
    ))
}

fn brief(d: &Value) -> String {
    let at = start(d).map_or_else(|| "-".to_string(), |(l, c)| format!("{l}:{c}"));
    format!(
        "{} {} at {at}: {}",
        d["severity"].as_str().unwrap_or("?"),
        d["code"].as_str().unwrap_or("?"),
        d["summary"].as_str().unwrap_or("")
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A temporary folder holding what the broken specs name next to them:
///
/// - `certs/test/…`, `certs/prod/…`: development certificates made by `hl7gw certs dev` from
///   the base spec, valid from the day before [`TODAY`] for a year;
/// - `certs/expired/`, `certs/expiring/`, `certs/future/`: a TEST server certificate and key
///   that expired in 2025, that expire 10 days after [`TODAY`], and that become valid 34 days
///   after it;
/// - `certs/rsa1024/`: the RSA-1024 fixture of `tests/data/certs/`;
/// - `certs/no-public/server.key`: a P-256 key as a SEC1 DER file without its public point
///   (`p256.sec1-no-public.der` of `tests/data/certs/`, made by `openssl ec -no_public`),
///   which cannot be matched to any certificate;
/// - `messages/adt_a28.hl7` from `examples/messages/`, and `messages/two_messages.hl7`, the
///   same message twice.
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::copy(
            manifest_dir().join("tests/specs/base/basic.yaml"),
            root.join("base.yaml"),
        )
        .unwrap();
        let out = hl7gw(
            root,
            &[
                "certs",
                "dev",
                "base.yaml",
                "--today",
                TODAY,
                "--days",
                "365",
            ],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "certs dev: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::remove_file(root.join("base.yaml")).unwrap();

        let day = |y, m, d| Date::from_calendar_date(y, m, d).unwrap();
        receive_certs(root, "expired", day(2025, Month::January, 1), 30);
        receive_certs(root, "expiring", today(), 10);
        receive_certs(root, "future", day(2027, Month::January, 1), 365);

        let rsa = root.join("certs/rsa1024");
        std::fs::create_dir_all(&rsa).unwrap();
        for name in ["rsa1024.crt", "rsa1024.key"] {
            std::fs::copy(
                manifest_dir().join("tests/data/certs").join(name),
                rsa.join(name),
            )
            .unwrap();
        }

        let no_public = root.join("certs/no-public");
        std::fs::create_dir_all(&no_public).unwrap();
        std::fs::copy(
            manifest_dir().join("tests/data/certs/p256.sec1-no-public.der"),
            no_public.join("server.key"),
        )
        .unwrap();

        let messages = root.join("messages");
        std::fs::create_dir_all(&messages).unwrap();
        let a28 = std::fs::read(repo_root().join("examples/messages/adt_a28.hl7")).unwrap();
        std::fs::write(messages.join("adt_a28.hl7"), &a28).unwrap();
        std::fs::write(
            messages.join("two_messages.hl7"),
            [a28.clone(), a28].concat(),
        )
        .unwrap();
        Workspace { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Copies a spec into the workspace under its own name.
    fn add(&self, spec: &Path) -> String {
        let name = spec.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::copy(spec, self.path().join(&name)).unwrap();
        name
    }
}

/// A TEST receive side (server certificate and key, and a Trust CA) under `certs/NAME/`,
/// issued on `issued` and valid for `days` days.
fn receive_certs(root: &Path, name: &str, issued: Date, days: i64) {
    let folder = root.join("certs").join(name);
    let plan = EnvCertPlan {
        env: "test".into(),
        customer_code: "demo".into(),
        receive: Some(ReceivePlan {
            server_cert: folder.join("server.crt"),
            server_key: folder.join("server.key"),
            client_ca: folder.join("trust-ca.crt"),
            client_crl: Some(folder.join("trust-ca.crl")),
            hostname: "demo-test.api.example-ems.cloud".into(),
            trust_client_cn: "tie-test.demo.nhs.uk".into(),
        }),
        send: None,
        ems: None,
        peer_dir: folder.join("trust"),
    };
    make_dev_certs(&[plan], false, issued, days).unwrap();
}

/// What is wrong with one case's result, if anything.
fn check_case(case: &Case, exit: Option<i32>, report: &Value) -> Result<(), String> {
    let found = diagnostics(report);
    let listing = found.iter().map(brief).collect::<Vec<_>>().join("\n    ");
    let fail = |why: String| Err(format!("{}: {why}\n    {listing}", case.file));
    let expected_exit = match case.severity {
        Severity::Error => 1,
        Severity::Warning => 0,
    };
    if exit != Some(expected_exit) {
        return fail(format!("exit code {exit:?}, expected {expected_exit}"));
    }
    let errors = found.iter().filter(|d| d["severity"] == "error").count();
    if report["valid"] != Value::Bool(errors == 0)
        || report["error_count"].as_u64() != u64::try_from(errors).ok()
        || report["warning_count"].as_u64() != u64::try_from(found.len() - errors).ok()
    {
        return fail("`valid` and the counts disagree with the diagnostics".into());
    }
    let Some(main) = found.iter().find(|d| d["code"] == case.code) else {
        return fail(format!("no {} diagnostic", case.code));
    };
    if main["severity"] != case.severity.as_str() {
        return fail(format!(
            "{} is {}, expected {}",
            case.code,
            main["severity"],
            case.severity.as_str()
        ));
    }
    if main["file"] != case.file {
        return fail(format!("{} names file {}", case.code, main["file"]));
    }
    if start(main) != case.at {
        return fail(format!(
            "{} at {:?}, expected line and column {:?}",
            case.code,
            start(main),
            case.at
        ));
    }
    let mut codes: Vec<&str> = found.iter().filter_map(|d| d["code"].as_str()).collect();
    codes.sort_unstable();
    let mut expected: Vec<&str> = std::iter::once(case.code)
        .chain(case.also.iter().copied())
        .collect();
    expected.sort_unstable();
    if codes != expected {
        return fail(format!("codes {codes:?}, expected exactly {expected:?}"));
    }
    Ok(())
}

#[test]
fn every_broken_spec_reports_its_diagnostic_where_the_mistake_is() {
    let ws = Workspace::new();
    let mut failures = Vec::new();
    for case in CASES {
        let name = ws.add(&broken_dir().join(case.file));
        let (exit, report) = validate_json(ws.path(), &name);
        if let Err(why) = check_case(case, exit, &report) {
            failures.push(why);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} broken specs misbehave:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

/// The certificate messages say what to do: a missing file points at `hl7gw certs dev`, and
/// the other environment's certificate leads with this environment's own.
#[test]
fn certificate_messages_lead_with_the_fix() {
    let ws = Workspace::new();
    let name = ws.add(&broken_dir().join("cert-missing.yaml"));
    let (_, report) = validate_json(ws.path(), &name);
    let missing = diagnostics(&report)
        .iter()
        .find(|d| d["code"] == "cert-missing")
        .unwrap();
    let detail = missing["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("`hl7gw certs dev {name}`")),
        "{detail}"
    );
    for file in [
        "cert-other-environment.yaml",
        "cert-other-environment-shared.yaml",
    ] {
        let name = ws.add(&broken_dir().join(file));
        let (_, report) = validate_json(ws.path(), &name);
        for d in diagnostics(&report)
            .iter()
            .filter(|d| d["code"] == "cert-other-environment")
        {
            let summary = d["summary"].as_str().unwrap();
            assert!(
                summary.starts_with("this environment's own certificate is needed: "),
                "{file}: {summary}"
            );
            assert!(!summary.contains("intermediate"), "{file}: {summary}");
        }
        assert!(
            !diagnostics(&report)
                .iter()
                .any(|d| d["code"] == "cert-chain-unverified"),
            "{file}"
        );
    }
}

#[test]
fn an_acknowledged_warning_is_silenced() {
    let ws = Workspace::new();
    // The same mistake unacknowledged is a warning (see the table) ...
    let name = ws.add(&broken_dir().join("env-hostname-pattern.yaml"));
    let (exit, report) = validate_json(ws.path(), &name);
    assert_eq!(exit, Some(0));
    assert_eq!(report["warning_count"], 1, "{report:#}");
    // ... and acknowledged with a reason it is reported no more.
    for file in SILENCED {
        let name = ws.add(&broken_dir().join(file));
        let (exit, report) = validate_json(ws.path(), &name);
        assert_eq!(exit, Some(0), "{file}: {report:#}");
        assert_eq!(report["valid"], true, "{file}: {report:#}");
        assert!(diagnostics(&report).is_empty(), "{file}: {report:#}");
    }
}

#[test]
fn the_base_specs_validate_clean() {
    let ws = Workspace::new();
    for base in ["basic.yaml", "orders.yaml"] {
        let name = ws.add(&manifest_dir().join("tests/specs/base").join(base));
        let (exit, report) = validate_json(ws.path(), &name);
        assert_eq!(exit, Some(0), "{base}: {report:#}");
        assert!(diagnostics(&report).is_empty(), "{base}: {report:#}");
    }
}

#[test]
fn every_broken_spec_has_a_table_entry_and_says_what_is_wrong() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(broken_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut listed = BTreeSet::new();
    for name in CASES.iter().map(|c| c.file).chain(SILENCED.iter().copied()) {
        assert!(listed.insert(name.to_string()), "{name} is listed twice");
    }
    let orphans: Vec<&String> = on_disk.difference(&listed).collect();
    assert!(
        orphans.is_empty(),
        "broken specs without a table entry: {orphans:?}"
    );
    let missing: Vec<&String> = listed.difference(&on_disk).collect();
    assert!(
        missing.is_empty(),
        "table entries without a file: {missing:?}"
    );
    for name in &on_disk {
        let bytes = std::fs::read(broken_dir().join(name)).unwrap();
        assert!(
            bytes.starts_with(b"# Broken on purpose: "),
            "{name} must start with a comment saying what is wrong"
        );
    }
}

#[test]
fn the_demo_validates_clean() {
    let (exit, report) = validate_json(&repo_root(), "specs/demo.yaml");
    assert_eq!(exit, Some(0), "{report:#}");
    assert_eq!(report["valid"], true);
    assert_eq!(report["error_count"], 0);
    assert_eq!(report["warning_count"], 0);
    assert!(diagnostics(&report).is_empty(), "{report:#}");
}

/// Where a key can be inserted into the demo, and what validating the result must report.
#[derive(Debug)]
struct Insertion {
    /// The modified spec text.
    text: String,
    /// Line and column of the inserted key.
    line: usize,
    column: usize,
    /// The expected diagnostic: code, line and column.
    expect: (&'static str, usize, usize),
    /// What was changed, for failure messages.
    what: String,
}

const UNKNOWN: &str = "zz_unknown";
const UNKNOWN_ENTRY: &str = "zz_unknown: [[1]]";

/// Maps whose keys are the spec's own names (tables, records, fields, message types, codes):
/// any key is allowed, so `zz_unknown: [[1]]` is reported as a value of the wrong type.
fn is_free_form(pointer: &str) -> bool {
    let parts: Vec<&str> = pointer.split('/').skip(1).collect();
    matches!(
        parts.as_slice(),
        ["tables"]
            | ["tables", _]
            | ["records"]
            | ["records", _]
            | ["records", _, _, "map"]
            | ["inbound"]
            | ["outbound"]
            | ["environments", _, "acknowledge"]
    )
}

/// Every place in the demo where a mapping key stands (every key line of a block mapping, every
/// key in a flow mapping `{ … }`, and every empty flow mapping `{}`), with `zz_unknown: [[1]]`
/// inserted there.
fn insertions(text: &str, value: &Value, source: &hl7gw::spec::SourceMap) -> Vec<Insertion> {
    let mut out = Vec::new();
    let mut objects = Vec::new();
    collect_objects(value, String::new(), &mut objects);
    for (pointer, object) in objects {
        // Expected record values are free JSON: any key is a field name the test expects.
        // So are the records of outbound tests, whose keys the record's build judges.
        let parts: Vec<&str> = pointer.split('/').skip(1).collect();
        if matches!(
            parts.as_slice(),
            ["tests", _, "expect", "record", ..] | ["outbound_tests", _, "record", ..]
        ) {
            continue;
        }
        let expect_at = |line: usize, column: usize| -> (&'static str, usize, usize) {
            if is_free_form(&pointer) {
                ("schema-type", line, column + UNKNOWN.len() + 2)
            } else {
                ("schema-unknown-key", line, column)
            }
        };
        if object.is_empty() {
            // `{}`: becomes `{ zz_unknown: [[1]] }`.
            let span = source.value_span(&pointer).unwrap();
            assert_eq!(
                &text[span.start.byte..span.start.byte + 2],
                "{}",
                "{pointer}"
            );
            let at = span.start.byte + 1;
            let modified = format!("{} {UNKNOWN_ENTRY} {}", &text[..at], &text[at..]);
            let (line, column) = (span.start.line, span.start.column + 2);
            out.push(Insertion {
                text: modified,
                line,
                column,
                expect: expect_at(line, column),
                what: format!("into the empty mapping at {pointer}"),
            });
            continue;
        }
        for key in object.keys() {
            let child = format!("{pointer}/{}", escape_pointer(key));
            let span = source.key_span(&child).unwrap();
            let (line, column, at) = (span.start.line, span.start.column, span.start.byte);
            let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let before = &text[line_start..at];
            let modified = if before.chars().all(|c| c == ' ') {
                // A block mapping key: a new line above it, at the same indentation.
                format!(
                    "{}{before}{UNKNOWN_ENTRY}\n{}",
                    &text[..line_start],
                    &text[line_start..]
                )
            } else if before.trim_end().ends_with('-') {
                // The first key of a list item (`- name: …`): the new key takes its place and
                // it moves to the next line, at the same column.
                let indent = " ".repeat(column - 1);
                format!("{}{UNKNOWN_ENTRY}\n{indent}{}", &text[..at], &text[at..])
            } else {
                // A key in a flow mapping (`{ a: 1, b: 2 }`): the new entry goes before it.
                assert!(
                    before.trim_end().ends_with(['{', ',']),
                    "unexpected text before {child}: {before:?}"
                );
                format!("{}{UNKNOWN_ENTRY}, {}", &text[..at], &text[at..])
            };
            out.push(Insertion {
                text: modified,
                line,
                column,
                expect: expect_at(line, column),
                what: format!("before {child}"),
            });
        }
    }
    out
}

fn collect_objects<'v>(
    value: &'v Value,
    pointer: String,
    out: &mut Vec<(String, &'v serde_json::Map<String, Value>)>,
) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                collect_objects(v, format!("{pointer}/{}", escape_pointer(k)), out);
            }
            out.push((pointer, map));
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                collect_objects(v, format!("{pointer}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn unknown_key_anywhere_in_the_demo_is_reported_at_that_key() {
    let demo_path = repo_root().join("specs/demo.yaml");
    let text = std::fs::read_to_string(&demo_path).unwrap();
    let loaded = hl7gw::spec::load_spec(&demo_path, "demo.yaml").unwrap();
    let cases = insertions(&text, &loaded.value, &loaded.source);
    assert!(cases.len() > 150, "only {} insertion points", cases.len());

    // A copy of the demo's surroundings, so that paths in the spec resolve as in the repo.
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(
        &repo_root().join("specs/certs"),
        &tmp.path().join("specs/certs"),
    );
    copy_dir(
        &repo_root().join("examples/messages"),
        &tmp.path().join("examples/messages"),
    );
    let specs = tmp.path().join("specs");
    let mut names = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let name = format!("demo-{i:03}.yaml");
        std::fs::write(specs.join(&name), &case.text).unwrap();
        names.push(name);
    }

    // One run over all of them.
    let mut args = vec!["validate", "--format", "json", "--today", TODAY];
    args.extend(names.iter().map(String::as_str));
    let out = hl7gw(&specs, &args);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut failures = Vec::new();
    for (case, name) in cases.iter().zip(&names) {
        // The copies of one spec, validated at once, also collide as one host's customers
        // (`host-*`, tests/validate_host.rs): not what this test looks at.
        let found: Vec<&Value> = diagnostics(&report)
            .iter()
            .filter(|d| d["file"] == name.as_str())
            .filter(|d| !d["code"].as_str().unwrap_or("").starts_with("host-"))
            .collect();
        let (code, line, column) = case.expect;
        let ok = found.len() == 1
            && found[0]["code"] == code
            && found[0]["severity"] == "error"
            && start(found[0]) == Some((line, column));
        if !ok {
            failures.push(format!(
                "{name}: `{UNKNOWN_ENTRY}` inserted {} at {}:{}; expected exactly {code} at {line}:{column}, found:\n    {}",
                case.what,
                case.line,
                case.column,
                found.iter().map(|d| brief(d)).collect::<Vec<_>>().join("\n    ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} insertions misreported:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // The terminal report names the place as FILE:LINE:COLUMN.
    let first = cases
        .iter()
        .position(|c| c.expect.0 == "schema-unknown-key" && c.line > 20)
        .unwrap();
    let case = &cases[first];
    let out = hl7gw(
        &specs,
        &[
            "validate",
            &names[first],
            "--format",
            "human",
            "--today",
            TODAY,
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let human = String::from_utf8_lossy(&out.stdout);
    let place = format!("{}:{}:{}", names[first], case.line, case.column);
    assert!(human.contains(&place), "no {place} in:\n{human}");
    assert!(human.contains("unknown key `zz_unknown`"), "{human}");
}
