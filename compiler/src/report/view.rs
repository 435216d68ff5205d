//! The view model of the go-live report: plain values, built from the spec, the check results
//! and the day it is judged on, and nothing else. This is the one place the report reads the
//! spec model; the template (`templates/report/golive.html.tera`) only lays the values out.
//!
//! Values are text as the spec and the checks give it: the template escapes every one of them.
//! A setting the spec leaves out stays `None` here and shows as "(default)": the default itself
//! is stated once, by the runtime, not restated in the report.
//!
//! Order is fixed: records, message types, allowed clients and IP ranges are sorted; fields
//! keep the order the spec gives them (it mirrors the record); findings list errors first,
//! each kind in the check report's order (by position); acknowledged warnings by code.

use serde::Serialize;
use time::Date;

use super::{TestResult, TestStatus};
use crate::certs::{self, CertSummary, EXPIRY_WARNING_DAYS};
use crate::check::{Acknowledged, CheckReport};
use crate::diag::{Diagnostic, Severity};
use crate::spec::loader::escape_pointer;
use crate::spec::{EnvName, Environment, FailurePolicy, FieldSpec, LoadedSpec, SinkConfig, Spec};

/// The whole page of one environment.
#[derive(Debug, Serialize)]
pub struct Page {
    /// The hl7gw version that wrote the page.
    pub version: &'static str,
    /// `TEST` or `PROD`.
    pub env: &'static str,
    /// The environment's name in spec pointers (`test`, `prod`).
    pub env_key: &'static str,
    pub customer_name: String,
    pub customer_code: String,
    /// MSH-11 of the environment; `None` when the spec does not describe it.
    pub processing_id: Option<String>,
    pub hl7_version: String,
    pub model: &'static str,
    pub domain: String,
    pub today: String,
    pub spec_file: String,
    pub spec_sha256: String,
    pub status: Status,
    /// The checklist groups of the environment; `None` when the spec does not describe it.
    pub environment: Option<EnvChecks>,
    pub message_types: Vec<MessageTypeRow>,
    pub records: Vec<RecordItem>,
    pub tests: Vec<TestRow>,
    /// Errors first, then warnings.
    pub findings: Vec<FindingRow>,
    /// By code, then position.
    pub acknowledged: Vec<FindingRow>,
}

/// READY or NOT READY, with the counts behind it.
#[derive(Debug, Serialize)]
pub struct Status {
    pub ready: bool,
    pub errors: usize,
    pub warnings: usize,
    pub acknowledged: usize,
    /// Spec tests that failed, or whose message file is missing or unreadable.
    pub failed_tests: usize,
}

/// The state of a checklist item: its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Ok,
    Info,
    Warn,
    Fail,
}

impl State {
    /// The worst severity among the findings; `Ok` when there are none.
    fn of(diagnostics: &[&Diagnostic]) -> Self {
        diagnostics
            .iter()
            .map(|d| match d.severity {
                Severity::Error => Self::Fail,
                Severity::Warning => Self::Warn,
            })
            .max()
            .unwrap_or(Self::Ok)
    }
}

/// A finding shown under the checklist item it is about.
#[derive(Debug, Serialize)]
pub struct ItemFinding {
    /// `error` or `warning`.
    pub severity: &'static str,
    pub code: String,
    pub summary: String,
}

/// A row of the findings or acknowledged-warnings table.
#[derive(Debug, Serialize)]
pub struct FindingRow {
    /// `error` or `warning`.
    pub severity: &'static str,
    pub code: String,
    /// `file:line:column`, or the file alone.
    pub location: String,
    pub summary: String,
    pub detail: String,
    /// Why the spec accepts the warning (acknowledged warnings only).
    pub reason: Option<String>,
}

/// The environment's part of the checklist.
#[derive(Debug, Serialize)]
pub struct EnvChecks {
    pub certificates: Vec<CertItem>,
    pub receive: Option<ReceiveItem>,
    pub send: Option<SendItem>,
    /// `None` without a receive side.
    pub allowed_clients: Option<AllowedClients>,
    /// `None` without a receive side.
    pub ip_ranges: Option<IpRanges>,
    pub processing_id: Setting,
    pub store: Setting,
    pub retention: RetentionItem,
    pub sink: SinkItem,
    pub ems: EmsItem,
    pub acknowledgement: AcknowledgementItem,
    pub limits: LimitsItem,
}

/// How EMS reaches the inbox API, the intake API and the intake MLLP listener; plain
/// loopback is flagged, and `ems` left out is an error.
#[derive(Debug, Serialize)]
pub struct EmsItem {
    pub state: State,
    /// Mutual TLS (`ems.tls`); otherwise plain loopback without authentication.
    pub mutual_tls: bool,
    /// The spec says `plain_loopback: true`; `false` also when `ems` is left out, which
    /// `validate` refuses (`env-ems-missing`).
    pub named: bool,
    /// Where the listeners bind with mutual TLS.
    pub address: Option<String>,
    pub allowed_clients: Vec<String>,
    pub findings: Vec<ItemFinding>,
}

/// Which ACK codes the receiver answers with.
#[derive(Debug, Serialize)]
pub struct AcknowledgementItem {
    pub state: State,
    /// `application` or `as_requested`, from the environment or else the spec; `None`: the
    /// spec leaves it to the default.
    pub mode: Option<&'static str>,
    /// True when the environment states its own mode rather than inheriting the spec's.
    pub own: bool,
    pub findings: Vec<ItemFinding>,
}

/// One certificate file the environment uses.
#[derive(Debug, Serialize)]
pub struct CertItem {
    pub id: &'static str,
    pub title: &'static str,
    pub state: State,
    /// Validity in words: "valid, 3650 days left", "expires in 14 days", "unreadable".
    pub badge: String,
    /// `None`: an optional file the spec does not name (`tls.issuer_ca`).
    pub file: Option<String>,
    /// Why the file cannot be read; then `cert` is `None`.
    pub error: Option<String>,
    pub cert: Option<CertFacts>,
    /// The private key file, for a certificate the gateway presents.
    pub key: Option<String>,
    pub findings: Vec<ItemFinding>,
}

/// What the certificate file says.
#[derive(Debug, Serialize)]
pub struct CertFacts {
    pub subject: String,
    pub issuer: String,
    pub not_before: String,
    pub not_after: String,
    /// `DNS:` and `IP:` names, sorted, comma separated; empty when there are none.
    pub names: String,
    pub key: String,
    /// How many certificates the file holds, when more than one.
    pub chain: Option<usize>,
    pub sha256: String,
}

/// The receive endpoint.
#[derive(Debug, Serialize)]
pub struct ReceiveItem {
    pub state: State,
    pub public_url: String,
    pub listen: String,
    /// `None`: the spec leaves it to the default.
    pub max_body: Option<String>,
    /// `None`: the spec leaves it to the default.
    pub response_content_type: Option<String>,
    /// `None`: the spec leaves it to the default.
    pub request_content_type: Option<String>,
    /// `None`: the spec leaves it to the default.
    pub http2: Option<String>,
    /// MSH-5 the gateway expects; `None`: not checked.
    pub receiving_application: Option<String>,
    /// MSH-6 the gateway expects; `None`: not checked.
    pub receiving_facility: Option<String>,
    pub findings: Vec<ItemFinding>,
}

/// The send endpoint.
#[derive(Debug, Serialize)]
pub struct SendItem {
    pub state: State,
    pub url: String,
    /// `None`: the spec leaves it to the default.
    pub timeout: Option<String>,
    /// `None`: the spec leaves it to the default.
    pub backoff: Option<String>,
    /// What the gateway does on each kind of failure.
    pub on_failure: Vec<PolicyRow>,
    /// MSH-3 to MSH-6 of the messages built from records.
    pub header: Vec<HeaderRow>,
    pub findings: Vec<ItemFinding>,
}

/// One MSH field the gateway writes into the messages it builds.
#[derive(Debug, Serialize)]
pub struct HeaderRow {
    /// `MSH-3 sending application`.
    pub field: &'static str,
    /// `None`: the spec leaves it to the default.
    pub value: Option<String>,
}

/// One failure policy of the send side.
#[derive(Debug, Serialize)]
pub struct PolicyRow {
    pub when: &'static str,
    /// `None`: the spec leaves it to the default.
    pub policy: Option<String>,
}

/// The client certificate subjects allowed in.
#[derive(Debug, Serialize)]
pub struct AllowedClients {
    /// The state of every subject (and of the "none allowed" item when there are none).
    pub state: State,
    /// Sorted.
    pub subjects: Vec<String>,
    pub findings: Vec<ItemFinding>,
}

/// The IP ranges allowed to connect.
#[derive(Debug, Serialize)]
pub struct IpRanges {
    /// Sorted.
    pub ranges: Vec<IpRange>,
    /// The state of the "none allowed" item, when there are no ranges.
    pub empty_state: State,
    /// Findings about the list as a whole (when empty: also those about its entries).
    pub findings: Vec<ItemFinding>,
}

/// One allowed IP range.
#[derive(Debug, Serialize)]
pub struct IpRange {
    pub range: String,
    pub state: State,
    pub findings: Vec<ItemFinding>,
}

/// A single setting shown as one checklist item.
#[derive(Debug, Serialize)]
pub struct Setting {
    pub state: State,
    pub value: String,
    pub findings: Vec<ItemFinding>,
}

/// How long the store keeps what is done with.
#[derive(Debug, Serialize)]
pub struct RetentionItem {
    pub state: State,
    /// As written (`90d`); `None`: the spec leaves it to the default.
    pub value: Option<String>,
    pub findings: Vec<ItemFinding>,
}

/// Where inbound records go.
#[derive(Debug, Serialize)]
pub struct SinkItem {
    pub state: State,
    /// `inbox`, `webhook` or `mllp`; `None`: the spec leaves it to the default.
    pub kind: Option<&'static str>,
    /// The webhook URL or MLLP address.
    pub target: Option<String>,
    pub findings: Vec<ItemFinding>,
}

/// The environment's resource limits.
#[derive(Debug, Serialize)]
pub struct LimitsItem {
    pub state: State,
    pub rows: Vec<LimitRow>,
    pub findings: Vec<ItemFinding>,
}

/// One limit, as the spec writes it.
#[derive(Debug, Serialize)]
pub struct LimitRow {
    pub label: &'static str,
    /// `None`: the spec leaves it to the default.
    pub value: Option<String>,
}

/// A message type bound to a record.
#[derive(Debug, Serialize)]
pub struct MessageTypeRow {
    pub state: State,
    /// `inbound` or `outbound`.
    pub direction: &'static str,
    pub message_type: String,
    pub record: String,
    /// Where the prior identifier of a merge is.
    pub merge: Option<String>,
    /// The record a cancellation (ORC-1 CA or DC) maps to instead.
    pub cancel: Option<String>,
    pub findings: Vec<ItemFinding>,
}

/// A record and its fields.
#[derive(Debug, Serialize)]
pub struct RecordItem {
    pub state: State,
    pub name: String,
    /// Which message types and records use it, as one line.
    pub used_by: String,
    /// Findings about the record itself (its fields' findings are on their rows).
    pub findings: Vec<ItemFinding>,
    pub fields: Vec<FieldRow>,
}

/// One field of a record.
#[derive(Debug, Serialize)]
pub struct FieldRow {
    pub state: State,
    pub name: String,
    /// The HL7 path it is read from.
    pub from: Option<String>,
    /// The record it nests, when it has no HL7 path.
    pub record: Option<String>,
    /// Its type; "record" for a nested record without one; empty when neither.
    pub kind: String,
    pub required: bool,
    pub table: Option<TableRef>,
    /// Code map entries, in the spec's order.
    pub map: Vec<MapEntry>,
    /// Repetition, length and size limits, as text.
    pub notes: String,
    pub findings: Vec<ItemFinding>,
    /// The fields of the nested record, when the field nests one that exists: the record is
    /// shown as a record, where it stands.
    pub nested: Vec<NestedField>,
}

/// A field of a nested record, as shown inside the field that nests it. Its checks are on
/// the nested record's own item.
#[derive(Debug, Serialize)]
pub struct NestedField {
    pub name: String,
    /// The HL7 path it is read from.
    pub from: Option<String>,
    /// The record it nests in turn (shown by name, with a link to its item).
    pub record: Option<String>,
    pub kind: String,
    pub required: bool,
}

/// A code table a field takes its values from.
#[derive(Debug, Serialize)]
pub struct TableRef {
    pub name: String,
    /// "3 codes", or "not defined" when the spec has no such table.
    pub size: String,
}

/// One entry of a field's code map.
#[derive(Debug, Serialize)]
pub struct MapEntry {
    pub code: String,
    pub meaning: String,
}

/// One spec test and its result.
#[derive(Debug, Serialize)]
pub struct TestRow {
    pub state: State,
    pub name: String,
    pub message: String,
    /// The expected ACK code, and error code and location if any.
    pub expected: String,
    /// The expected record values, nested records as records (a line for the record, its
    /// values indented under it), in the spec's order.
    pub expected_record: Vec<ExpectedLine>,
    pub result_state: State,
    pub result: &'static str,
    pub detail: String,
    pub findings: Vec<ItemFinding>,
}

/// One line of a test's expected record.
#[derive(Debug, Serialize)]
pub struct ExpectedLine {
    /// How deep in nested records, from 0.
    pub depth: usize,
    pub key: String,
    /// The value as text; `None` for a nested record, whose values follow one level deeper.
    pub value: Option<String>,
}

/// The expected record as lines, depth first: a nested record is a line of its own with its
/// values under it, never flattened into dotted names.
fn expected_lines(record: &serde_json::Map<String, serde_json::Value>) -> Vec<ExpectedLine> {
    let mut lines = Vec::new();
    let mut stack: Vec<(usize, serde_json::map::Iter<'_>)> = vec![(0, record.iter())];
    while let Some((depth, entries)) = stack.last_mut() {
        let depth = *depth;
        let Some((key, value)) = entries.next() else {
            stack.pop();
            continue;
        };
        let text = match value {
            serde_json::Value::Object(inner) => {
                stack.push((depth + 1, inner.iter()));
                None
            }
            serde_json::Value::String(text) => Some(text.clone()),
            other => Some(other.to_string()),
        };
        lines.push(ExpectedLine {
            depth,
            key: key.clone(),
            value: text,
        });
    }
    lines
}

/// True when the report of `env` has errors (findings about the other environment left out,
/// as in the page): the report then says NOT READY.
pub fn has_errors(report: &CheckReport, env: EnvName) -> bool {
    report
        .diagnostics
        .iter()
        .any(|d| d.severity == Severity::Error && belongs_to(d, env))
}

/// False when the finding is about the other environment.
fn belongs_to(d: &Diagnostic, env: EnvName) -> bool {
    let Some(rest) = d
        .pointer
        .as_deref()
        .and_then(|p| p.strip_prefix("/environments/"))
    else {
        return true;
    };
    match rest.split('/').next() {
        Some("test") => env == EnvName::Test,
        Some("prod") => env == EnvName::Prod,
        _ => true,
    }
}

/// Builds the page of one environment. Findings that belong to the other environment (their
/// pointer is under `/environments/<other>`) are left out: they are in that environment's
/// report. Spec tests are matched to `tests` by name; a test without a result is "not run".
pub fn build(
    loaded: &LoadedSpec,
    env: EnvName,
    report: &CheckReport,
    today: Date,
    tests: &[TestResult],
) -> Page {
    let builder = Builder {
        loaded,
        spec: &loaded.spec,
        env,
        today,
        diagnostics: report
            .diagnostics
            .iter()
            .filter(|d| belongs_to(d, env))
            .collect(),
    };
    let acknowledged: Vec<&Acknowledged> = report
        .acknowledged
        .iter()
        .filter(|a| belongs_to(&a.diagnostic, env))
        .collect();
    builder.page(&acknowledged, tests)
}

struct Builder<'a> {
    loaded: &'a LoadedSpec,
    spec: &'a Spec,
    env: EnvName,
    today: Date,
    diagnostics: Vec<&'a Diagnostic>,
}

impl<'a> Builder<'a> {
    fn base(&self) -> String {
        format!("/environments/{}", self.env.as_str())
    }

    /// Findings at any of these pointers or below them.
    fn at(&self, pointers: &[String]) -> Vec<&'a Diagnostic> {
        self.diagnostics
            .iter()
            .copied()
            .filter(|d| {
                d.pointer.as_deref().is_some_and(|p| {
                    pointers.iter().any(|q| {
                        p == q || (p.starts_with(q.as_str()) && p[q.len()..].starts_with('/'))
                    })
                })
            })
            .collect()
    }

    fn page(&self, acknowledged: &[&Acknowledged], tests: &[TestResult]) -> Page {
        let spec = self.spec;
        let errors = self
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
        let env = spec.environments.get(self.env);
        let digest =
            ring::digest::digest(&ring::digest::SHA256, self.loaded.source.text.as_bytes());
        // Errors first, each kind in the check report's order (by position).
        let mut findings = self.diagnostics.clone();
        findings.sort_by_key(|d| d.severity);
        let mut acknowledged = acknowledged.to_vec();
        acknowledged.sort_by(|a, b| {
            (&a.diagnostic.code, a.diagnostic.range.map(|r| r.start.byte))
                .cmp(&(&b.diagnostic.code, b.diagnostic.range.map(|r| r.start.byte)))
        });
        let test_rows = self.tests(tests);
        let failed_tests = test_rows
            .iter()
            .filter(|t| t.result_state == State::Fail)
            .count();
        Page {
            version: env!("CARGO_PKG_VERSION"),
            env: match self.env {
                EnvName::Test => "TEST",
                EnvName::Prod => "PROD",
            },
            env_key: self.env.as_str(),
            customer_name: spec.customer.name.clone(),
            customer_code: spec.customer.code.clone(),
            processing_id: env.map(|e| e.processing_id.as_str().to_owned()),
            hl7_version: spec.hl7_version.clone(),
            model: spec.model.as_str(),
            domain: spec.domain.clone(),
            today: self.today.to_string(),
            spec_file: self.loaded.source.file.clone(),
            spec_sha256: digest.as_ref().iter().map(|b| format!("{b:02x}")).collect(),
            status: Status {
                ready: errors == 0 && failed_tests == 0,
                errors,
                warnings: self.diagnostics.len() - errors,
                acknowledged: acknowledged.len(),
                failed_tests,
            },
            environment: env.map(|e| self.env_checks(e)),
            message_types: self.message_types(),
            records: self.records(),
            tests: test_rows,
            findings: findings.into_iter().map(|d| finding_row(d, None)).collect(),
            acknowledged: acknowledged
                .into_iter()
                .map(|a| finding_row(&a.diagnostic, Some(&a.reason)))
                .collect(),
        }
    }

    fn env_checks(&self, e: &Environment) -> EnvChecks {
        let base = self.base();
        let setting = |key: &str, value: String| {
            let findings = self.at(&[format!("{base}/{key}")]);
            Setting {
                state: State::of(&findings),
                value,
                findings: item_findings(&findings),
            }
        };
        let sink_findings = self.at(&[format!("{base}/sink")]);
        let (kind, target) = match &e.sink {
            None => (None, None),
            Some(sink) => (
                Some(sink.kind()),
                match sink {
                    SinkConfig::Inbox => None,
                    SinkConfig::Webhook { url } => Some(url.to_string()),
                    SinkConfig::Mllp { addr } => Some(addr.to_string()),
                },
            ),
        };
        let ack_findings = self.at(&[format!("{base}/acknowledgement"), "/acknowledgement".into()]);
        let acknowledgement = AcknowledgementItem {
            state: State::of(&ack_findings),
            mode: e
                .acknowledgement
                .or(self.spec.acknowledgement)
                .map(|a| a.as_str()),
            own: e.acknowledgement.is_some(),
            findings: item_findings(&ack_findings),
        };
        let mut ems_findings = self.at(&[format!("{base}/ems")]);
        // `ems` left out is reported at the environment itself, where the key is missing.
        ems_findings.extend(self.diagnostics.iter().copied().filter(|d| {
            d.code == "env-ems-missing" && d.pointer.as_deref() == Some(base.as_str())
        }));
        let mutual_tls = e.ems.as_ref().is_some_and(|x| x.tls.is_some());
        let ems = EmsItem {
            state: if mutual_tls {
                State::of(&ems_findings)
            } else {
                State::of(&ems_findings).max(State::Warn)
            },
            mutual_tls,
            named: e
                .ems
                .as_ref()
                .is_some_and(|x| x.plain_loopback == Some(true)),
            address: e.ems.as_ref().filter(|_| mutual_tls).map(|x| {
                x.address
                    .clone()
                    .unwrap_or_else(|| crate::spec::EMS_DEFAULT_ADDRESS.to_owned())
            }),
            allowed_clients: e
                .ems
                .as_ref()
                .map(|x| x.allowed_clients.clone())
                .unwrap_or_default(),
            findings: item_findings(&ems_findings),
        };
        EnvChecks {
            ems,
            acknowledgement,
            certificates: self.certificates(e),
            receive: self.receive(e),
            send: self.send(e),
            allowed_clients: self.allowed_clients(e),
            ip_ranges: self.ip_ranges(e),
            processing_id: setting("processing_id", e.processing_id.as_str().to_owned()),
            store: setting("store", e.store.describe()),
            retention: {
                let findings = self.at(&[format!("{base}/retention")]);
                RetentionItem {
                    state: State::of(&findings),
                    value: e.retention.map(|d| d.to_string()),
                    findings: item_findings(&findings),
                }
            },
            sink: SinkItem {
                state: State::of(&sink_findings),
                kind,
                target,
                findings: item_findings(&sink_findings),
            },
            limits: self.limits(e),
        }
    }

    fn limits(&self, e: &Environment) -> LimitsItem {
        let pointer = format!("{}/limits", self.base());
        let findings = self.at(std::slice::from_ref(&pointer));
        let written: Vec<String> = self
            .loaded
            .source
            .child_keys(&pointer)
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        // The limits as the spec writes them (`256`, `256MiB`, `5m`), by key.
        let values = serde_json::to_value(e.limits.unwrap_or_default()).unwrap_or_default();
        let rows = [
            ("connections", "Connections"),
            ("connections_per_ip", "Connections per address"),
            ("handshakes", "TLS handshakes at once"),
            ("body_memory", "Memory for bodies in flight"),
            ("mllp_connections", "Intake MLLP connections"),
            ("mllp_idle_timeout", "Intake MLLP idle timeout"),
        ]
        .into_iter()
        .map(|(key, label)| LimitRow {
            label,
            value: written
                .contains(&format!("{pointer}/{key}"))
                .then(|| match &values[key] {
                    serde_json::Value::String(text) => text.clone(),
                    other => other.to_string(),
                }),
        })
        .collect();
        LimitsItem {
            state: State::of(&findings),
            rows,
            findings: item_findings(&findings),
        }
    }

    fn certificates(&self, e: &Environment) -> Vec<CertItem> {
        let base = self.base();
        let mut list = Vec::new();
        if let Some(r) = &e.receive {
            list.push(self.certificate(
                "cert-receive-server",
                "Server certificate (the Trust's engine connects to it)",
                &r.tls.cert,
                Some(&r.tls.key),
                &[
                    format!("{base}/receive/tls/cert"),
                    format!("{base}/receive/tls/key"),
                ],
            ));
            list.push(self.certificate(
                "cert-receive-client-ca",
                "Trust CA accepted for client certificates",
                &r.tls.client_ca,
                None,
                // The CA's CRL is judged with it (revoked certificates are the CA's word).
                &[
                    format!("{base}/receive/tls/client_ca"),
                    format!("{base}/receive/tls/client_crl"),
                ],
            ));
            list.push(self.issuer_ca(
                "cert-receive-issuer-ca",
                "EMS CA that issued the server certificate (the Trust's engine trusts it)",
                r.tls.issuer_ca.as_deref(),
                &format!("{base}/receive/tls/issuer_ca"),
            ));
        }
        if let Some(s) = &e.send {
            list.push(self.certificate(
                "cert-send-client",
                "Client certificate (the gateway presents it to the Trust)",
                &s.tls.cert,
                Some(&s.tls.key),
                &[
                    format!("{base}/send/tls/cert"),
                    format!("{base}/send/tls/key"),
                ],
            ));
            list.push(self.certificate(
                "cert-send-server-ca",
                "Trust CA that signs the Trust's server certificate",
                &s.tls.server_ca,
                None,
                &[
                    format!("{base}/send/tls/server_ca"),
                    format!("{base}/send/tls/server_crl"),
                ],
            ));
            list.push(self.issuer_ca(
                "cert-send-issuer-ca",
                "EMS CA that issued the client certificate (the Trust's engine trusts it)",
                s.tls.issuer_ca.as_deref(),
                &format!("{base}/send/tls/issuer_ca"),
            ));
        }
        list
    }

    /// The CA that issued the gateway's own certificate (`tls.issuer_ca`, optional): its
    /// facts when named, else an item saying the chain is not checked.
    fn issuer_ca(
        &self,
        id: &'static str,
        title: &'static str,
        file: Option<&str>,
        pointer: &str,
    ) -> CertItem {
        let pointers = [pointer.to_owned()];
        match file {
            Some(file) => self.certificate(id, title, file, None, &pointers),
            None => {
                let findings = self.at(&pointers);
                CertItem {
                    id,
                    title,
                    state: State::Info.max(State::of(&findings)),
                    badge: "not named".to_owned(),
                    file: None,
                    error: None,
                    cert: None,
                    key: None,
                    findings: item_findings(&findings),
                }
            }
        }
    }

    fn certificate(
        &self,
        id: &'static str,
        title: &'static str,
        file: &str,
        key: Option<&String>,
        pointers: &[String],
    ) -> CertItem {
        let findings = self.at(pointers);
        let (state, badge, error, cert) = match certs::summarize(&self.loaded.resolve(file)) {
            Err(err) => (
                State::Fail,
                "unreadable".to_owned(),
                Some(err.to_string()),
                None,
            ),
            Ok(summary) => {
                let (state, badge) = validity(&summary, self.today);
                (state, badge, None, Some(cert_facts(&summary)))
            }
        };
        CertItem {
            id,
            title,
            state: state.max(State::of(&findings)),
            badge,
            file: Some(file.to_owned()),
            error,
            cert,
            key: key.cloned(),
            findings: item_findings(&findings),
        }
    }

    fn receive(&self, e: &Environment) -> Option<ReceiveItem> {
        let r = e.receive.as_ref()?;
        let base = self.base();
        let pointers: Vec<String> = [
            "listen",
            "path",
            "hostname",
            "max_body",
            "receiving_application",
            "receiving_facility",
            "response_content_type",
            "request_content_type",
            "http2",
        ]
        .iter()
        .map(|k| format!("{base}/receive/{k}"))
        .collect();
        let findings = self.at(&pointers);
        Some(ReceiveItem {
            state: State::of(&findings),
            public_url: public_url(&r.hostname, &r.path),
            listen: r.listen.clone(),
            max_body: r.max_body.map(|b| b.to_string()),
            response_content_type: r.response_content_type.map(|t| t.as_str().to_owned()),
            request_content_type: r.request_content_type.map(|t| t.as_str().to_owned()),
            http2: r
                .http2
                .map(|on| if on { "offered" } else { "off" }.to_owned()),
            receiving_application: r.receiving_application.clone(),
            receiving_facility: r.receiving_facility.clone(),
            findings: item_findings(&findings),
        })
    }

    fn send(&self, e: &Environment) -> Option<SendItem> {
        let s = e.send.as_ref()?;
        let base = self.base();
        let pointers: Vec<String> = [
            "url",
            "timeout",
            "backoff",
            "on_connect_error",
            "on_timeout",
            "on_5xx",
            "on_4xx",
            "on_bad_ack",
            "on_ae",
            "on_ar",
            "sending_application",
            "sending_facility",
            "receiving_application",
            "receiving_facility",
        ]
        .iter()
        .map(|k| format!("{base}/send/{k}"))
        .collect();
        let findings = self.at(&pointers);
        let policy = |when, p: &Option<FailurePolicy>| PolicyRow {
            when,
            policy: p.as_ref().map(ToString::to_string),
        };
        Some(SendItem {
            state: State::of(&findings),
            url: s.url.clone(),
            timeout: s.timeout.map(|t| t.to_string()),
            backoff: s
                .backoff
                .as_ref()
                .map(|b| format!("{} doubling to {}", b.first, b.max)),
            on_failure: vec![
                policy("connect error", &s.on_connect_error),
                policy("timeout", &s.on_timeout),
                policy("5xx", &s.on_5xx),
                policy("4xx", &s.on_4xx),
                policy("unreadable ACK", &s.on_bad_ack),
                policy("AE/CE", &s.on_ae),
                policy("AR/CR", &s.on_ar),
            ],
            header: [
                ("MSH-3 sending application", &s.sending_application),
                ("MSH-4 sending facility", &s.sending_facility),
                ("MSH-5 receiving application", &s.receiving_application),
                ("MSH-6 receiving facility", &s.receiving_facility),
            ]
            .into_iter()
            .map(|(field, value)| HeaderRow {
                field,
                value: value.clone(),
            })
            .collect(),
            findings: item_findings(&findings),
        })
    }

    fn allowed_clients(&self, e: &Environment) -> Option<AllowedClients> {
        let r = e.receive.as_ref()?;
        let findings = self.at(&[format!("{}/receive/allowed_clients", self.base())]);
        let mut subjects = r.allowed_clients.clone();
        subjects.sort();
        let state = if subjects.is_empty() {
            State::Fail.max(State::of(&findings))
        } else {
            State::of(&findings)
        };
        Some(AllowedClients {
            state,
            subjects,
            findings: item_findings(&findings),
        })
    }

    fn ip_ranges(&self, e: &Environment) -> Option<IpRanges> {
        let r = e.receive.as_ref()?;
        let pointer = format!("{}/receive/allowed_ips", self.base());
        let whole = self.at(std::slice::from_ref(&pointer));
        let mut ranges: Vec<(usize, &String)> = r.allowed_ips.iter().enumerate().collect();
        ranges.sort_by(|a, b| a.1.cmp(b.1).then(a.0.cmp(&b.0)));
        // With no range, the "none allowed" item carries every finding about the list; with
        // ranges, each range its own and the list those about the list itself.
        let findings = if ranges.is_empty() {
            whole.clone()
        } else {
            whole
                .iter()
                .copied()
                .filter(|d| d.pointer.as_deref() == Some(pointer.as_str()))
                .collect()
        };
        Some(IpRanges {
            ranges: ranges
                .into_iter()
                .map(|(i, range)| {
                    let findings = self.at(&[format!("{pointer}/{i}")]);
                    IpRange {
                        range: range.clone(),
                        state: State::of(&findings),
                        findings: item_findings(&findings),
                    }
                })
                .collect(),
            empty_state: State::Fail.max(State::of(&whole)),
            findings: item_findings(&findings),
        })
    }

    fn message_types(&self) -> Vec<MessageTypeRow> {
        let spec = self.spec;
        let mut rows: Vec<MessageTypeRow> =
            [("inbound", &spec.inbound), ("outbound", &spec.outbound)]
                .into_iter()
                .flat_map(|(direction, bindings)| {
                    bindings.iter().map(move |(t, b)| (direction, t, b))
                })
                .map(|(direction, t, b)| {
                    let findings = self.at(&[format!("/{direction}/{}", escape_pointer(t))]);
                    MessageTypeRow {
                        state: State::of(&findings),
                        direction,
                        message_type: t.clone(),
                        record: b.record.clone(),
                        merge: b.merge.clone(),
                        cancel: b.cancel.clone(),
                        findings: item_findings(&findings),
                    }
                })
                .collect();
        rows.sort_by(|a, b| (a.direction, &a.message_type).cmp(&(b.direction, &b.message_type)));
        rows
    }

    fn records(&self) -> Vec<RecordItem> {
        let spec = self.spec;
        let mut names: Vec<&String> = spec.records.keys().collect();
        names.sort();
        names
            .into_iter()
            .filter_map(|name| spec.records.get(name).map(|record| (name, record)))
            .map(|(name, record)| {
                let pointer = format!("/records/{}", escape_pointer(name));
                let all = self.at(std::slice::from_ref(&pointer));
                let direct: Vec<&Diagnostic> = all
                    .iter()
                    .copied()
                    .filter(|d| d.pointer.as_deref() == Some(pointer.as_str()))
                    .collect();
                RecordItem {
                    state: State::of(&all),
                    name: name.clone(),
                    used_by: used_by(spec, name),
                    findings: item_findings(&direct),
                    fields: record
                        .iter()
                        .map(|(field, f)| {
                            let findings =
                                self.at(&[format!("{pointer}/{}", escape_pointer(field))]);
                            field_row(spec, field, f, &findings)
                        })
                        .collect(),
                }
            })
            .collect()
    }

    fn tests(&self, results: &[TestResult]) -> Vec<TestRow> {
        self.spec
            .tests
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let findings = self.at(&[format!("/tests/{i}")]);
                let result = results.iter().find(|r| r.name == t.name);
                let (status, detail) =
                    result.map_or((TestStatus::NotRun, ""), |r| (r.status, r.detail.as_str()));
                let result_state = if status.blocks_go_live() {
                    State::Fail
                } else if status == TestStatus::Passed {
                    State::Ok
                } else {
                    State::Info
                };
                let mut expected = format!("{:?}", t.expect.ack);
                if let Some(err) = &t.expect.error {
                    expected.push_str(&format!(", error {} at {}", err.code, err.location));
                }
                TestRow {
                    state: result_state.max(State::of(&findings)),
                    name: t.name.clone(),
                    message: t.message.clone(),
                    expected,
                    expected_record: t
                        .expect
                        .record
                        .as_ref()
                        .map_or_else(Vec::new, expected_lines),
                    result_state,
                    result: status.label(),
                    detail: detail.to_owned(),
                    findings: item_findings(&findings),
                }
            })
            .collect()
    }
}

fn severity(d: &Diagnostic) -> &'static str {
    match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

fn item_findings(findings: &[&Diagnostic]) -> Vec<ItemFinding> {
    findings
        .iter()
        .map(|d| ItemFinding {
            severity: severity(d),
            code: d.code.clone(),
            summary: d.summary.clone(),
        })
        .collect()
}

fn finding_row(d: &Diagnostic, reason: Option<&str>) -> FindingRow {
    FindingRow {
        severity: severity(d),
        code: d.code.clone(),
        location: match d.range {
            Some(r) => format!("{}:{}:{}", d.file, r.start.line, r.start.column),
            None => d.file.clone(),
        },
        summary: d.summary.clone(),
        detail: d.detail.clone(),
        reason: reason.map(str::to_owned),
    }
}

/// Its type; "record" for a nested record without one; empty when neither.
fn kind_of(f: &FieldSpec) -> &'static str {
    match (f.kind, &f.record) {
        (Some(k), _) => k.as_str(),
        (None, Some(_)) => "record",
        (None, None) => "",
    }
}

fn field_row(spec: &Spec, name: &str, f: &FieldSpec, findings: &[&Diagnostic]) -> FieldRow {
    let kind = kind_of(f);
    let nested = f
        .record
        .as_ref()
        .and_then(|r| spec.records.get(r))
        .into_iter()
        .flatten()
        .map(|(name, inner)| NestedField {
            name: name.clone(),
            from: inner.from.as_ref().map(|source| source.describe()),
            record: inner.record.clone(),
            kind: kind_of(inner).to_owned(),
            required: inner.required,
        })
        .collect();
    FieldRow {
        nested,
        state: State::of(findings),
        name: name.to_owned(),
        from: f.from.as_ref().map(|source| source.describe()),
        record: f.record.clone(),
        kind: kind.to_owned(),
        required: f.required,
        table: f.table.as_ref().map(|t| TableRef {
            name: t.clone(),
            size: spec.tables.get(t).map_or_else(
                || "not defined".to_owned(),
                |codes| plural_n(codes.len(), "code", "codes"),
            ),
        }),
        map: f
            .map
            .iter()
            .flatten()
            .map(|(code, meaning)| MapEntry {
                code: code.clone(),
                meaning: meaning.clone(),
            })
            .collect(),
        notes: notes(f),
        findings: item_findings(findings),
    }
}

/// The item state and badge text of a certificate judged on `today`.
fn validity(s: &CertSummary, today: Date) -> (State, String) {
    let left = (s.not_after - today).whole_days();
    if today < s.not_before {
        (State::Fail, format!("not valid until {}", s.not_before))
    } else if left < 0 {
        (State::Fail, format!("expired {} ago", days(-left)))
    } else if left <= EXPIRY_WARNING_DAYS {
        (State::Warn, format!("expires in {}", days(left)))
    } else {
        (State::Ok, format!("valid, {} left", days(left)))
    }
}

fn days(n: i64) -> String {
    if n == 1 {
        "1 day".to_owned()
    } else {
        format!("{n} days")
    }
}

fn cert_facts(s: &CertSummary) -> CertFacts {
    let mut names: Vec<String> = s.dns_names.iter().map(|n| format!("DNS:{n}")).collect();
    names.extend(s.ip_addresses.iter().map(|n| format!("IP:{n}")));
    names.sort();
    CertFacts {
        subject: s.subject.clone(),
        issuer: s.issuer.clone(),
        not_before: s.not_before.to_string(),
        not_after: s.not_after.to_string(),
        names: names.join(", "),
        key: s.key.clone(),
        chain: (s.chain_len > 1).then_some(s.chain_len),
        sha256: s.sha256_fingerprint.clone(),
    }
}

/// `https://hostname/path`, with exactly one slash between them.
fn public_url(hostname: &str, path: &str) -> String {
    if path.starts_with('/') {
        format!("https://{hostname}{path}")
    } else {
        format!("https://{hostname}/{path}")
    }
}

/// Which message types and records use a record, as one line.
fn used_by(spec: &Spec, record: &str) -> String {
    let mut uses: Vec<String> = Vec::new();
    for (t, b) in &spec.inbound {
        if b.record == record {
            uses.push(format!("{t} in"));
        }
        if b.cancel.as_deref() == Some(record) {
            uses.push(format!("{t} cancellations in"));
        }
    }
    for (t, b) in &spec.outbound {
        if b.record == record {
            uses.push(format!("{t} out"));
        }
    }
    let mut nested: Vec<&str> = spec
        .records
        .iter()
        .filter(|(_, fields)| fields.values().any(|f| f.record.as_deref() == Some(record)))
        .map(|(name, _)| name.as_str())
        .collect();
    nested.sort();
    uses.sort();
    let mut parts: Vec<String> = Vec::new();
    if !uses.is_empty() {
        parts.push(format!("used by {}", uses.join(", ")));
    }
    if !nested.is_empty() {
        parts.push(format!("nested in {}", nested.join(", ")));
    }
    if parts.is_empty() {
        "used by no message type".to_owned()
    } else {
        parts.join("; ")
    }
}

/// Repetition, length and size limits of a field, as text.
fn notes(f: &FieldSpec) -> String {
    let mut notes: Vec<String> = Vec::new();
    if f.repeated {
        notes.push("repeated".to_owned());
    }
    if let Some(n) = f.max_len {
        notes.push(format!("at most {n} characters"));
    }
    if let Some(m) = &f.media {
        notes.push(m.clone());
    }
    if let Some(b) = f.max_bytes {
        notes.push(format!("at most {b}"));
    }
    notes.join("; ")
}

fn plural_n(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
