//! The HTML go-live report: one page, inline CSS, no script, no external resource (a
//! Content-Security-Policy meta tag forbids loading any), laid out for A4 print.
//!
//! Stable hooks for tests and tooling: `id="report-header"`, `id="status"` (class `ready` or
//! `not-ready`), `id="checklist"` with groups `id="certificates"`, `"endpoints"`,
//! `"allowed-clients"`, `"ip-ranges"`, `"environment"`, `"message-types"`,
//! `"mapped-fields"`, `"spec-tests"`; every tickable item has class `check-item` plus its
//! state (`ok`, `info`, `warn`, `fail`); then `id="findings"`, `id="acknowledged"`,
//! `id="signatures"`. Certificate expiry dates carry class `cert-expiry`, endpoint URLs
//! class `endpoint-url`.
//!
//! Order is fixed: records, message types, allowed clients and IP ranges are sorted; fields
//! keep the order the spec gives them (it mirrors the record); findings list errors first,
//! each kind in the check report's order (by position); acknowledged warnings by code.

use std::path::PathBuf;

use time::Date;

use super::{TestResult, TestStatus, file_checks};
use crate::certs::{self, CertSummary, EXPIRY_WARNING_DAYS};
use crate::check::{Acknowledged, CheckReport};
use crate::diag::{Diagnostic, Severity};
use crate::spec::loader::escape_pointer;
use crate::spec::{EnvName, Environment, FieldSpec, LoadedSpec, Sink, Spec};

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Renders the go-live report of one environment, with spec-test results from
/// [`file_checks`] (whether each message file is there and parses).
pub fn render_html(loaded: &LoadedSpec, env: EnvName, report: &CheckReport, today: Date) -> String {
    let tests = file_checks(loaded);
    render_html_with_tests(loaded, env, report, today, &tests)
}

/// Renders the go-live report of one environment with the given spec-test results (matched
/// to the spec's tests by name; a test without a result shows "not run").
///
/// Findings that belong to the other environment (their pointer is under
/// `/environments/<other>`) are left out: they are in that environment's report.
pub fn render_html_with_tests(
    loaded: &LoadedSpec,
    env: EnvName,
    report: &CheckReport,
    today: Date,
    tests: &[TestResult],
) -> String {
    let diagnostics: Vec<&Diagnostic> = report
        .diagnostics
        .iter()
        .filter(|d| belongs_to(d, env))
        .collect();
    let acknowledged: Vec<&Acknowledged> = report
        .acknowledged
        .iter()
        .filter(|a| belongs_to(&a.diagnostic, env))
        .collect();
    let mut page = Page {
        loaded,
        spec: &loaded.spec,
        env,
        today,
        diagnostics,
        acknowledged,
        out: String::with_capacity(64 * 1024),
    };
    page.render(tests);
    page.out
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

/// The state of a checklist item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum State {
    Ok,
    Info,
    Warn,
    Fail,
}

impl State {
    fn class(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }

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

const STYLE: &str = r#"
:root{--blue:#005eb8;--dark:#003087;--ink:#212b32;--muted:#4c6272;--line:#d8dde0;
--ok:#007f3b;--ok-bg:#e6f2eb;--warn:#8a5a00;--warn-bg:#fff4d6;--fail:#d5281b;--fail-bg:#fbe9e7;
--info:#4c6272;--info-bg:#eef1f3}
*{box-sizing:border-box}
html{background:#e8edee}
body{margin:0;color:var(--ink);font:13px/1.45 Arial,"Liberation Sans","Helvetica Neue",Helvetica,sans-serif}
main{background:#fff;max-width:210mm;margin:16px auto;padding:0 0 14mm;box-shadow:0 1px 4px rgba(0,0,0,.18)}
.content{padding:0 12mm}
code,.mono{font-family:"DejaVu Sans Mono","Liberation Mono",Consolas,monospace;font-size:11.5px}
code{background:#f0f4f5;padding:0 3px;border-radius:2px;overflow-wrap:anywhere}
h1{font-size:24px;margin:2px 0 0;line-height:1.2}
h2{font-size:17px;margin:22px 0 10px;color:var(--dark);border-bottom:2px solid var(--dark);padding-bottom:3px}
h2.checklist-title{background:var(--blue);color:#fff;border:0;padding:7px 10px;margin-top:18px}
h3{font-size:14px;margin:16px 0 6px;color:var(--dark)}
p{margin:6px 0}
.band{background:var(--dark);color:#fff;padding:9mm 12mm 7mm}
.kicker{font-size:12px;letter-spacing:.06em;text-transform:uppercase;opacity:.85}
.summary{display:flex;gap:16px;align-items:stretch;padding:6mm 12mm 0}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;vertical-align:top;padding:4px 6px;border-bottom:1px solid var(--line)}
th{font-size:11.5px;color:var(--muted);font-weight:bold;background:#f7f9fa}
table.meta{flex:1}
table.meta th{width:34%;background:none}
#status{min-width:52mm;border-radius:4px;padding:10px 12px;text-align:center;display:flex;flex-direction:column;justify-content:center}
#status.ready{background:var(--ok-bg);border:2px solid var(--ok);color:var(--ok)}
#status.not-ready{background:var(--fail-bg);border:2px solid var(--fail);color:var(--fail)}
.status-word{font-size:26px;font-weight:bold;letter-spacing:.03em}
.status-counts{font-size:12px;color:var(--ink);margin-top:4px}
.intro{color:var(--muted)}
ul.check-list{list-style:none;margin:0;padding:0}
.check-item{display:flex;gap:10px;padding:6px 8px;margin:0 0 5px;border-left:4px solid var(--line);background:#fafbfb}
.check-item.ok{border-left-color:var(--ok)}
.check-item.info{border-left-color:var(--info)}
.check-item.warn{border-left-color:#ffb81c;background:#fffcf2}
.check-item.fail{border-left-color:var(--fail);background:#fff7f6}
tr.check-item{display:table-row;background:none}
tr.check-item.fail td{background:#fff7f6}
tr.check-item.warn td{background:#fffcf2}
.box{display:inline-block;flex:none;width:15px;height:15px;border:1.5px solid var(--ink);border-radius:2px;background:#fff;margin-top:1px}
td.tick{width:24px}
.item-body{flex:1;min-width:0}
.item-title{font-weight:bold}
.item-title code{font-weight:normal}
dl.facts{display:grid;grid-template-columns:30mm 1fr;gap:1px 10px;margin:4px 0 0}
dl.facts dt{color:var(--muted)}
dl.facts dd{margin:0;overflow-wrap:anywhere}
.badge{display:inline-block;font-size:11px;font-weight:bold;padding:0 6px;border-radius:9px;white-space:nowrap;vertical-align:1px}
.badge.ok{background:var(--ok-bg);color:var(--ok)}
.badge.info{background:var(--info-bg);color:var(--info)}
.badge.warn{background:var(--warn-bg);color:var(--warn)}
.badge.fail{background:var(--fail-bg);color:var(--fail)}
.cert-expiry,.endpoint-url{font-weight:bold}
ul.item-findings{margin:4px 0 0;padding-left:16px;font-size:12px}
ul.item-findings li.error{color:var(--fail)}
ul.item-findings li.warning{color:var(--warn)}
.muted{color:var(--muted)}
.record table{margin-top:5px;background:#fff}
table.fixed{table-layout:fixed}
table.fixed td{overflow-wrap:anywhere}
.sev{font-weight:bold;text-transform:uppercase;font-size:11px}
.sev.error{color:var(--fail)}
.sev.warning{color:var(--warn)}
.detail{color:var(--muted);font-size:12px}
.signatures{display:grid;grid-template-columns:1fr 1fr;gap:10mm;margin-top:6px}
.sig h3{margin-top:0}
.sig-line{display:flex;align-items:flex-end;gap:8px;margin:0 0 9mm}
.sig-line span{width:22mm;color:var(--muted)}
.sig-line i{flex:1;border-bottom:1px solid var(--ink);height:1px}
footer{margin-top:10mm;padding-top:4px;border-top:1px solid var(--line);font-size:11px;color:var(--muted)}
@page{size:A4;margin:12mm 12mm 14mm;@bottom-right{content:"Page " counter(page) " of " counter(pages);font:8pt Arial,sans-serif;color:#4c6272}}
@media print{
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}
html{background:#fff}
body{font-size:9.5pt}
main{max-width:none;margin:0;padding:0;box-shadow:none}
.band{padding:6mm 6mm 5mm}
.summary,.content{padding-left:0;padding-right:0}
.check-item,tr,.sig,dl.facts{break-inside:avoid}
h2,h3{break-after:avoid}
#signatures{break-inside:avoid}
}
"#;

struct Page<'a> {
    loaded: &'a LoadedSpec,
    spec: &'a Spec,
    env: EnvName,
    today: Date,
    diagnostics: Vec<&'a Diagnostic>,
    acknowledged: Vec<&'a Acknowledged>,
    out: String,
}

/// One fact of an item: a label and HTML (already escaped).
type Fact = (&'static str, String);

impl<'a> Page<'a> {
    fn raw(&mut self, s: &str) {
        self.out.push_str(s);
    }

    fn text(&mut self, s: &str) {
        self.out.push_str(&escape(s));
    }

    fn env_upper(&self) -> &'static str {
        match self.env {
            EnvName::Test => "TEST",
            EnvName::Prod => "PROD",
        }
    }

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

    fn counts(&self) -> (usize, usize) {
        let errors = self
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
        (errors, self.diagnostics.len() - errors)
    }

    fn render(&mut self, tests: &[TestResult]) {
        let title = format!(
            "Go-live report: {} ({}) {}",
            self.spec.customer.name,
            self.spec.customer.code,
            self.env_upper()
        );
        self.raw("<!DOCTYPE html>\n<html lang=\"en-GB\">\n<head>\n<meta charset=\"utf-8\">\n");
        self.raw("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n");
        self.raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
        self.raw(&format!(
            "<meta name=\"generator\" content=\"hl7gw {}\">\n<title>",
            env!("CARGO_PKG_VERSION")
        ));
        self.text(&title);
        self.raw("</title>\n<style>");
        self.raw(STYLE);
        self.raw("</style>\n</head>\n<body>\n<main>\n");
        self.header();
        self.raw("<div class=\"content\">\n");
        self.checklist(tests);
        self.findings();
        self.acknowledged_section();
        self.signatures();
        self.footer();
        self.raw("</div>\n</main>\n</body>\n</html>\n");
    }

    fn header(&mut self) {
        let (errors, warnings) = self.counts();
        let spec = self.spec;
        self.raw("<header id=\"report-header\">\n<div class=\"band\">\n<div class=\"kicker\">hl7gw go-live report &middot; ");
        self.raw(self.env_upper());
        self.raw(" environment</div>\n<h1 id=\"customer-name\">");
        self.text(&spec.customer.name);
        self.raw("</h1>\n</div>\n<div class=\"summary\">\n<table class=\"meta\">\n");
        let env = self.spec.environments.get(self.env);
        let processing = env.map_or_else(
            || "not described".to_owned(),
            |e| format!("processing id {:?}", e.processing_id),
        );
        let digest =
            ring::digest::digest(&ring::digest::SHA256, self.loaded.source.text.as_bytes());
        let sha: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        let rows: Vec<(&str, String)> = vec![
            (
                "Customer code",
                format!("<code>{}</code>", escape(&spec.customer.code)),
            ),
            (
                "Environment",
                format!(
                    "<strong>{}</strong> ({})",
                    self.env_upper(),
                    escape(&processing)
                ),
            ),
            ("HL7 version", escape(&spec.hl7_version)),
            ("Messaging model", escape(spec.model.as_str())),
            ("Domain", escape(&spec.domain)),
            ("Report date", self.today.to_string()),
            (
                "Spec file",
                format!("<code>{}</code>", escape(&self.loaded.source.file)),
            ),
            ("Spec SHA-256", format!("<code class=\"mono\">{sha}</code>")),
        ];
        for (k, v) in rows {
            self.raw(&format!(
                "<tr><th scope=\"row\">{k}</th><td>{v}</td></tr>\n"
            ));
        }
        self.raw("</table>\n");
        let (class, word) = if errors == 0 {
            ("ready", "READY")
        } else {
            ("not-ready", "NOT READY")
        };
        self.raw(&format!(
            "<div id=\"status\" class=\"{class}\"><div class=\"status-word\">{word}</div>\
             <div class=\"status-counts\"><span id=\"error-count\">{errors}</span> {} &middot; \
             <span id=\"warning-count\">{warnings}</span> {} &middot; {} acknowledged</div></div>\n",
            plural(errors, "error", "errors"),
            plural(warnings, "warning", "warnings"),
            self.acknowledged.len()
        ));
        self.raw("</div>\n</header>\n");
    }

    fn checklist(&mut self, tests: &[TestResult]) {
        self.raw(
            "<section id=\"checklist\">\n<h2 class=\"checklist-title\">Sign-off checklist</h2>\n",
        );
        self.raw(
            "<p class=\"intro\">Tick each item once it has been confirmed with the Trust. \
                  A red item failed a check and must be fixed before go-live; an amber item \
                  needs a decision. The findings section below lists every problem with its \
                  place in the spec.</p>\n",
        );
        match self.spec.environments.get(self.env) {
            None => {
                let pointer = self.base();
                self.raw("<ul class=\"check-list\">\n");
                self.item_open(Some("environment-missing"), State::Fail);
                self.raw(&format!(
                    "<div class=\"item-title\">The spec does not describe the {} environment \
                     (<code>{}</code>)</div>",
                    self.env_upper(),
                    escape(&pointer)
                ));
                self.item_close(&[]);
                self.raw("</ul>\n");
            }
            Some(e) => {
                self.certificates(e);
                self.endpoints(e);
                self.allowed_clients(e);
                self.ip_ranges(e);
                self.environment(e);
            }
        }
        self.message_types();
        self.mapped_fields();
        self.spec_tests(tests);
        self.raw("</section>\n");
    }

    fn item_open(&mut self, id: Option<&str>, state: State) {
        self.raw("<li class=\"check-item ");
        self.raw(state.class());
        self.raw("\"");
        if let Some(id) = id {
            self.raw(" id=\"");
            self.text(id);
            self.raw("\"");
        }
        self.raw("><span class=\"box\" aria-hidden=\"true\"></span><div class=\"item-body\">");
    }

    fn item_close(&mut self, findings: &[&Diagnostic]) {
        self.item_findings(findings);
        self.raw("</div></li>\n");
    }

    fn item_findings(&mut self, findings: &[&Diagnostic]) {
        if findings.is_empty() {
            return;
        }
        self.raw("<ul class=\"item-findings\">");
        for d in findings {
            let class = match d.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            self.raw(&format!(
                "<li class=\"{class}\"><code>{}</code> {}</li>",
                escape(&d.code),
                escape(&d.summary)
            ));
        }
        self.raw("</ul>");
    }

    fn facts(&mut self, facts: &[Fact]) {
        if facts.is_empty() {
            return;
        }
        self.raw("<dl class=\"facts\">");
        for (k, v) in facts {
            self.raw(&format!("<dt>{k}</dt><dd>{v}</dd>"));
        }
        self.raw("</dl>");
    }

    fn group_open(&mut self, id: &str, title: &str) {
        self.raw(&format!(
            "<section class=\"check-group\" id=\"{id}\">\n<h3>{title}</h3>\n"
        ));
    }

    fn certificates(&mut self, e: &Environment) {
        self.group_open("certificates", "Certificates");
        let base = self.base();
        let mut list: Vec<CertToShow> = Vec::new();
        if let Some(r) = &e.receive {
            list.push(CertToShow {
                id: "cert-receive-server",
                title: "Server certificate (the Trust's engine connects to it)",
                file: r.tls.cert.clone(),
                key: Some(r.tls.key.clone()),
                pointers: vec![
                    format!("{base}/receive/tls/cert"),
                    format!("{base}/receive/tls/key"),
                ],
            });
            list.push(CertToShow {
                id: "cert-receive-client-ca",
                title: "Trust CA accepted for client certificates",
                file: r.tls.client_ca.clone(),
                key: None,
                pointers: vec![format!("{base}/receive/tls/client_ca")],
            });
        }
        if let Some(s) = &e.send {
            list.push(CertToShow {
                id: "cert-send-client",
                title: "Client certificate (the gateway presents it to the Trust)",
                file: s.tls.cert.clone(),
                key: Some(s.tls.key.clone()),
                pointers: vec![
                    format!("{base}/send/tls/cert"),
                    format!("{base}/send/tls/key"),
                ],
            });
            list.push(CertToShow {
                id: "cert-send-server-ca",
                title: "Trust CA that signs the Trust's server certificate",
                file: s.tls.server_ca.clone(),
                key: None,
                pointers: vec![format!("{base}/send/tls/server_ca")],
            });
        }
        self.raw("<ul class=\"check-list\">\n");
        if list.is_empty() {
            self.item_open(None, State::Info);
            self.raw("<div class=\"item-title\">No certificates: this environment neither receives nor sends.</div>");
            self.item_close(&[]);
        }
        for c in &list {
            let path = self.loaded.resolve(&c.file);
            self.certificate(c, path);
        }
        self.raw("</ul>\n</section>\n");
    }

    fn certificate(&mut self, c: &CertToShow, path: PathBuf) {
        let findings = self.at(&c.pointers);
        let mut facts: Vec<Fact> = vec![("File", format!("<code>{}</code>", escape(&c.file)))];
        let (state, badge) = match certs::summarize(&path) {
            Err(err) => {
                facts.push((
                    "Cannot read",
                    format!(
                        "<span class=\"cert-error\">{}</span>",
                        escape(&err.to_string())
                    ),
                ));
                (State::Fail, "unreadable".to_owned())
            }
            Ok(summary) => {
                let (state, badge) = validity(&summary, self.today);
                cert_facts(&summary, &mut facts);
                (state, badge)
            }
        };
        if let Some(key) = &c.key {
            facts.push(("Private key", format!("<code>{}</code>", escape(key))));
        }
        let state = state.max(State::of(&findings));
        self.item_open(Some(c.id), state);
        self.raw(&format!(
            "<div class=\"item-title\">{} <span class=\"badge {}\">{}</span></div>",
            escape(c.title),
            state.class(),
            escape(&badge)
        ));
        self.facts(&facts);
        self.item_close(&findings);
    }

    fn endpoints(&mut self, e: &Environment) {
        self.group_open("endpoints", "Endpoints");
        let base = self.base();
        self.raw("<ul class=\"check-list\">\n");
        match &e.receive {
            Some(r) => {
                let pointers: Vec<String> = [
                    "listen",
                    "path",
                    "hostname",
                    "max_body",
                    "receiving_application",
                    "receiving_facility",
                ]
                .iter()
                .map(|k| format!("{base}/receive/{k}"))
                .collect();
                let findings = self.at(&pointers);
                let url = public_url(&r.hostname, &r.path);
                let mut facts: Vec<Fact> = vec![
                    (
                        "Public URL",
                        format!("<span class=\"endpoint-url\">{}</span>", escape(&url)),
                    ),
                    ("Listens on", format!("<code>{}</code>", escape(&r.listen))),
                    (
                        "Largest body",
                        escape(
                            &r.max_body
                                .map_or_else(|| "20MiB (default)".to_owned(), |b| b.to_string()),
                        ),
                    ),
                ];
                if let Some(a) = &r.receiving_application {
                    facts.push(("MSH-5 expected", format!("<code>{}</code>", escape(a))));
                }
                if let Some(f) = &r.receiving_facility {
                    facts.push(("MSH-6 expected", format!("<code>{}</code>", escape(f))));
                }
                self.item_open(Some("endpoint-receive"), State::of(&findings));
                self.raw("<div class=\"item-title\">Receive: the Trust's engine POSTs HL7 to the gateway</div>");
                self.facts(&facts);
                self.item_close(&findings);
            }
            None => {
                self.item_open(Some("endpoint-receive"), State::Info);
                self.raw("<div class=\"item-title\">Receive: none (the Trust sends nothing to the gateway in this environment)</div>");
                self.item_close(&[]);
            }
        }
        match &e.send {
            Some(s) => {
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
                ]
                .iter()
                .map(|k| format!("{base}/send/{k}"))
                .collect();
                let findings = self.at(&pointers);
                let policy = |p: &Option<crate::spec::units::FailurePolicy>, default: &str| {
                    p.as_ref()
                        .map_or_else(|| format!("{default} (default)"), ToString::to_string)
                };
                let backoff = s.backoff.as_ref().map_or_else(
                    || "1s doubling to 5m (default)".to_owned(),
                    |b| format!("{} doubling to {}", b.first, b.max),
                );
                let on_failure = format!(
                    "connect error: {}; timeout: {}; 5xx: {}; 4xx: {}; unreadable ACK: {}; AE/CE: {}; AR/CR: {}",
                    policy(&s.on_connect_error, "retry"),
                    policy(&s.on_timeout, "retry"),
                    policy(&s.on_5xx, "retry"),
                    policy(&s.on_4xx, "hold"),
                    policy(&s.on_bad_ack, "retry"),
                    policy(&s.on_ae, "hold"),
                    policy(&s.on_ar, "hold"),
                );
                let facts: Vec<Fact> = vec![
                    (
                        "URL",
                        format!("<span class=\"endpoint-url\">{}</span>", escape(&s.url)),
                    ),
                    (
                        "ACK timeout",
                        escape(
                            &s.timeout
                                .map_or_else(|| "30s (default)".to_owned(), |t| t.to_string()),
                        ),
                    ),
                    ("Retry delay", escape(&backoff)),
                    ("On failure", escape(&on_failure)),
                ];
                self.item_open(Some("endpoint-send"), State::of(&findings));
                self.raw("<div class=\"item-title\">Send: the gateway POSTs HL7 to the Trust's engine</div>");
                self.facts(&facts);
                self.item_close(&findings);
            }
            None => {
                self.item_open(Some("endpoint-send"), State::Info);
                self.raw("<div class=\"item-title\">Send: none (the gateway sends nothing to the Trust in this environment)</div>");
                self.item_close(&[]);
            }
        }
        self.raw("</ul>\n</section>\n");
    }

    fn allowed_clients(&mut self, e: &Environment) {
        self.group_open("allowed-clients", "Allowed client certificate subjects");
        let Some(r) = &e.receive else {
            self.raw(
                "<p class=\"muted\">No receive side, so no client is accepted.</p>\n</section>\n",
            );
            return;
        };
        let pointer = format!("{}/receive/allowed_clients", self.base());
        let findings = self.at(std::slice::from_ref(&pointer));
        self.raw("<p class=\"intro\">After the TLS handshake (client certificate signed by the Trust CA above), only these subjects are accepted.</p>\n");
        self.raw("<ul class=\"check-list\">\n");
        let mut subjects: Vec<&String> = r.allowed_clients.iter().collect();
        subjects.sort();
        if subjects.is_empty() {
            self.item_open(None, State::Fail.max(State::of(&findings)));
            self.raw("<div class=\"item-title\">No client subject is allowed: the Trust's engine cannot connect.</div>");
            self.item_close(&findings);
        } else {
            let state = State::of(&findings);
            for s in subjects {
                self.item_open(None, state);
                self.raw(&format!(
                    "<div class=\"item-title\"><code>{}</code></div>",
                    escape(s)
                ));
                self.item_close(&[]);
            }
            self.item_findings(&findings);
        }
        self.raw("</ul>\n</section>\n");
    }

    fn ip_ranges(&mut self, e: &Environment) {
        self.group_open("ip-ranges", "IP ranges allowed to connect");
        let Some(r) = &e.receive else {
            self.raw("<p class=\"muted\">No receive side, so no address is allowed in.</p>\n</section>\n");
            return;
        };
        let pointer = format!("{}/receive/allowed_ips", self.base());
        self.raw("<p class=\"intro\">Connections from any other address are closed before the TLS handshake; the firewall must allow these too.</p>\n");
        self.raw("<ul class=\"check-list\">\n");
        let mut ranges: Vec<(usize, &String)> = r.allowed_ips.iter().enumerate().collect();
        ranges.sort_by(|a, b| a.1.cmp(b.1).then(a.0.cmp(&b.0)));
        let whole = self.at(std::slice::from_ref(&pointer));
        if ranges.is_empty() {
            self.item_open(None, State::Fail.max(State::of(&whole)));
            self.raw(
                "<div class=\"item-title\">No IP range is allowed: nothing can connect.</div>",
            );
            self.item_close(&whole);
        }
        for (i, range) in ranges {
            let findings = self.at(&[format!("{pointer}/{i}")]);
            self.item_open(None, State::of(&findings));
            self.raw(&format!(
                "<div class=\"item-title\"><code>{}</code></div>",
                escape(range)
            ));
            self.item_close(&findings);
        }
        let direct: Vec<&Diagnostic> = whole
            .into_iter()
            .filter(|d| d.pointer.as_deref() == Some(pointer.as_str()))
            .collect();
        self.item_findings(&direct);
        self.raw("</ul>\n</section>\n");
    }

    fn environment(&mut self, e: &Environment) {
        self.group_open("environment", "Processing id, store and sink");
        let base = self.base();
        self.raw("<ul class=\"check-list\">\n");
        let findings = self.at(&[format!("{base}/processing_id")]);
        self.item_open(Some("processing-id"), State::of(&findings));
        self.raw(&format!(
            "<div class=\"item-title\">MSH-11 processing id <code>{:?}</code></div>\
             <div class=\"muted\">Every message in {} must carry it; any other value is rejected with AR.</div>",
            e.processing_id,
            self.env_upper()
        ));
        self.item_close(&findings);

        let findings = self.at(&[format!("{base}/store")]);
        self.item_open(Some("store"), State::of(&findings));
        self.raw(&format!(
            "<div class=\"item-title\">Store <code>{}</code></div>\
             <div class=\"muted\">SQLite file holding the queue, audit trail and inbox; on backed-up, durable storage.</div>",
            escape(&e.store)
        ));
        self.item_close(&findings);

        let findings = self.at(&[format!("{base}/sink")]);
        let sink = match &e.sink {
            None => "inbox (default): records stay in the store; EMS pulls them".to_owned(),
            Some(Sink::Inbox {}) => "inbox: records stay in the store; EMS pulls them".to_owned(),
            Some(Sink::Webhook { url }) => format!("webhook: POST each record as JSON to {url}"),
            Some(Sink::Mllp { addr }) => format!("MLLP: forward to the local engine at {addr}"),
        };
        self.item_open(Some("sink"), State::of(&findings));
        self.raw(&format!(
            "<div class=\"item-title\">Sink: {}</div>",
            escape(&sink)
        ));
        self.item_close(&findings);
        self.raw("</ul>\n</section>\n");
    }

    fn message_types(&mut self) {
        self.group_open("message-types", "Message types by direction");
        let spec = self.spec;
        let mut rows: Vec<(&str, &str, &String, &crate::spec::MessageBinding)> = Vec::new();
        for (t, b) in &spec.inbound {
            rows.push(("inbound", "Trust &rarr; EMS", t, b));
        }
        for (t, b) in &spec.outbound {
            rows.push(("outbound", "EMS &rarr; Trust", t, b));
        }
        rows.sort_by(|a, b| (a.0, a.2).cmp(&(b.0, b.2)));
        if rows.is_empty() {
            self.raw("<p class=\"muted\">The spec binds no message type.</p>\n</section>\n");
            return;
        }
        self.raw("<table class=\"fixed\">\n<colgroup><col style=\"width:28px\"><col style=\"width:30%\"><col style=\"width:18%\"><col style=\"width:22%\"><col></colgroup>\n<thead><tr><th></th><th>Direction</th><th>Message type</th><th>Record</th><th>Notes</th></tr></thead>\n<tbody>\n");
        for (dir, arrow, t, b) in rows {
            let findings = self.at(&[format!("/{dir}/{}", escape_pointer(t))]);
            self.raw(&format!(
                "<tr class=\"check-item {}\"><td class=\"tick\"><span class=\"box\" aria-hidden=\"true\"></span></td>\
                 <td>{dir} <span class=\"muted\">({arrow})</span></td><td><code>{}</code></td><td><code>{}</code></td><td>",
                State::of(&findings).class(),
                escape(t),
                escape(&b.record)
            ));
            if let Some(m) = &b.merge {
                self.raw(&format!(
                    "merge: prior identifier at <code>{}</code>",
                    escape(m)
                ));
            }
            self.item_findings(&findings);
            self.raw("</td></tr>\n");
        }
        self.raw("</tbody>\n</table>\n</section>\n");
    }

    fn mapped_fields(&mut self) {
        self.group_open("mapped-fields", "Mapped fields by record");
        let spec = self.spec;
        let mut names: Vec<&String> = spec.records.keys().collect();
        names.sort();
        if names.is_empty() {
            self.raw("<p class=\"muted\">The spec defines no record.</p>\n");
        }
        self.raw("<ul class=\"check-list\">\n");
        for name in names {
            let Some(record) = spec.records.get(name) else {
                continue;
            };
            let pointer = format!("/records/{}", escape_pointer(name));
            let all = self.at(std::slice::from_ref(&pointer));
            let direct: Vec<&Diagnostic> = all
                .iter()
                .copied()
                .filter(|d| d.pointer.as_deref() == Some(pointer.as_str()))
                .collect();
            let used = used_by(spec, name);
            self.raw("<li class=\"check-item record ");
            self.raw(State::of(&all).class());
            self.raw("\" id=\"record-");
            self.text(name);
            self.raw(
                "\"><span class=\"box\" aria-hidden=\"true\"></span><div class=\"item-body\">",
            );
            self.raw(&format!(
                "<div class=\"item-title\">Record <code>{}</code> <span class=\"muted\">{}</span></div>",
                escape(name),
                escape(&used)
            ));
            self.item_findings(&direct);
            self.raw("<table class=\"fixed fields\">\n<colgroup><col style=\"width:17%\"><col style=\"width:20%\"><col style=\"width:13%\"><col style=\"width:10%\"><col style=\"width:24%\"><col style=\"width:16%\"></colgroup>\n<thead><tr><th>Field</th><th>HL7 path</th><th>Type</th><th>Required</th><th>Table / map</th><th>Notes</th></tr></thead>\n<tbody>\n");
            for (field, f) in record {
                let findings = self.at(&[format!("{pointer}/{}", escape_pointer(field))]);
                let class = State::of(&findings).class();
                let path = match (&f.from, &f.record) {
                    (Some(from), _) => format!("<code>{}</code>", escape(from)),
                    (None, Some(r)) => format!("record <code>{}</code>", escape(r)),
                    (None, None) => "<span class=\"muted\">none</span>".to_owned(),
                };
                let kind = f.kind.map_or_else(
                    || {
                        if f.record.is_some() {
                            "record".to_owned()
                        } else {
                            String::new()
                        }
                    },
                    |k| k.as_str().to_owned(),
                );
                let required = if f.required {
                    "<strong>required</strong>"
                } else {
                    "optional"
                };
                self.raw(&format!(
                    "<tr class=\"field {class}\"><td><code>{}</code></td><td>{path}</td><td>{}</td><td>{required}</td><td>{}</td><td>{}",
                    escape(field),
                    escape(&kind),
                    table_or_map(spec, f),
                    escape(&notes(f))
                ));
                self.item_findings(&findings);
                self.raw("</td></tr>\n");
            }
            self.raw("</tbody>\n</table>\n</div></li>\n");
        }
        self.raw("</ul>\n</section>\n");
    }

    fn spec_tests(&mut self, results: &[TestResult]) {
        self.group_open("spec-tests", "Spec tests");
        let spec = self.spec;
        if spec.tests.is_empty() {
            self.raw("<ul class=\"check-list\">\n");
            self.item_open(None, State::Warn);
            self.raw("<div class=\"item-title\">The spec has no tests.</div>");
            self.item_close(&[]);
            self.raw("</ul>\n</section>\n");
            return;
        }
        self.raw("<table class=\"fixed\">\n<colgroup><col style=\"width:28px\"><col style=\"width:34%\"><col style=\"width:30%\"><col style=\"width:14%\"><col></colgroup>\n<thead><tr><th></th><th>Test</th><th>Message file</th><th>Expected ACK</th><th>Result</th></tr></thead>\n<tbody>\n");
        for (i, t) in spec.tests.iter().enumerate() {
            let findings = self.at(&[format!("/tests/{i}")]);
            let result = results.iter().find(|r| r.name == t.name);
            let (status, detail) =
                result.map_or((TestStatus::NotRun, ""), |r| (r.status, r.detail.as_str()));
            let result_state = match status {
                TestStatus::Passed => State::Ok,
                TestStatus::FileParses | TestStatus::NotRun => State::Info,
                TestStatus::Failed | TestStatus::FileMissing | TestStatus::FileUnparsable => {
                    State::Fail
                }
            };
            let state = result_state.max(State::of(&findings));
            let mut expected = format!("{:?}", t.expect.ack);
            if let Some(err) = &t.expect.error {
                expected.push_str(&format!(", error {} at {}", err.code, err.location));
            }
            self.raw(&format!(
                "<tr class=\"check-item {}\"><td class=\"tick\"><span class=\"box\" aria-hidden=\"true\"></span></td>\
                 <td>{}</td><td><code>{}</code></td><td><code>{}</code></td>\
                 <td><span class=\"badge test-result {}\">{}</span>",
                state.class(),
                escape(&t.name),
                escape(&t.message),
                escape(&expected),
                result_state.class(),
                status.label()
            ));
            if !detail.is_empty() {
                self.raw(&format!("<div class=\"detail\">{}</div>", escape(detail)));
            }
            self.item_findings(&findings);
            self.raw("</td></tr>\n");
        }
        self.raw("</tbody>\n</table>\n</section>\n");
    }

    fn findings(&mut self) {
        let (errors, warnings) = self.counts();
        self.raw("<section id=\"findings\">\n<h2>Findings</h2>\n");
        if self.diagnostics.is_empty() {
            self.raw(
                "<p id=\"no-findings\">No errors and no unacknowledged warnings.</p>\n</section>\n",
            );
            return;
        }
        self.raw(&format!(
            "<p>{errors} {} and {warnings} {}. Errors must be fixed before go-live.</p>\n",
            plural(errors, "error", "errors"),
            plural(warnings, "warning", "warnings")
        ));
        self.raw("<table class=\"fixed\">\n<colgroup><col style=\"width:11%\"><col style=\"width:22%\"><col style=\"width:22%\"><col></colgroup>\n<thead><tr><th>Severity</th><th>Code</th><th>Where</th><th>Finding</th></tr></thead>\n<tbody>\n");
        // Errors first, each kind in the check report's order (by position).
        let mut diagnostics = self.diagnostics.clone();
        diagnostics.sort_by_key(|d| d.severity);
        for d in diagnostics {
            self.diagnostic_row(d, None);
        }
        self.raw("</tbody>\n</table>\n</section>\n");
    }

    fn diagnostic_row(&mut self, d: &Diagnostic, reason: Option<&str>) {
        let (class, word) = match d.severity {
            Severity::Error => ("error", "error"),
            Severity::Warning => ("warning", "warning"),
        };
        let location = match d.range {
            Some(r) => format!("{}:{}:{}", d.file, r.start.line, r.start.column),
            None => d.file.clone(),
        };
        if reason.is_none() {
            self.raw(&format!(
                "<tr class=\"finding {class}\"><td><span class=\"sev {class}\">{word}</span></td>"
            ));
        } else {
            self.raw("<tr class=\"acknowledged-warning\">");
        }
        self.raw(&format!(
            "<td><code>{}</code></td><td><code>{}</code></td><td>{}",
            escape(&d.code),
            escape(&location),
            escape(&d.summary)
        ));
        if !d.detail.is_empty() {
            self.raw(&format!(
                "<div class=\"detail\">{}</div>",
                escape(&d.detail)
            ));
        }
        self.raw("</td>");
        if let Some(reason) = reason {
            self.raw(&format!("<td>{}</td>", escape(reason)));
        }
        self.raw("</tr>\n");
    }

    fn acknowledged_section(&mut self) {
        self.raw("<section id=\"acknowledged\">\n<h2>Acknowledged warnings</h2>\n");
        if self.acknowledged.is_empty() {
            self.raw("<p class=\"muted\">None: the spec acknowledges no warning for this environment.</p>\n</section>\n");
            return;
        }
        self.raw("<p>Warnings the spec accepts for this environment, with the reason it records. Signing this report accepts them too.</p>\n");
        self.raw("<table class=\"fixed\">\n<colgroup><col style=\"width:22%\"><col style=\"width:22%\"><col style=\"width:30%\"><col></colgroup>\n<thead><tr><th>Code</th><th>Where</th><th>Warning</th><th>Reason</th></tr></thead>\n<tbody>\n");
        let mut list = self.acknowledged.clone();
        list.sort_by(|a, b| {
            (&a.diagnostic.code, a.diagnostic.range.map(|r| r.start.byte))
                .cmp(&(&b.diagnostic.code, b.diagnostic.range.map(|r| r.start.byte)))
        });
        for a in list {
            self.diagnostic_row(&a.diagnostic, Some(&a.reason));
        }
        self.raw("</tbody>\n</table>\n</section>\n");
    }

    fn signatures(&mut self) {
        self.raw("<section id=\"signatures\">\n<h2>Sign-off</h2>\n");
        self.raw(&format!(
            "<p>By signing, we confirm that every item of the checklist above has been checked for the \
             <strong>{}</strong> environment of <strong>{}</strong>, and that the acknowledged warnings are accepted.</p>\n",
            self.env_upper(),
            escape(&self.spec.customer.name)
        ));
        self.raw("<div class=\"signatures\">\n");
        for (id, who) in [
            ("sign-engineer", "Integration engineer (EMS)"),
            ("sign-trust", "Trust representative"),
        ] {
            self.raw(&format!(
                "<div class=\"sig\" id=\"{id}\">\n<h3>{who}</h3>\n"
            ));
            for line in ["Name", "Role", "Signature", "Date"] {
                self.raw(&format!(
                    "<div class=\"sig-line\"><span>{line}</span><i></i></div>\n"
                ));
            }
            self.raw("</div>\n");
        }
        self.raw("</div>\n</section>\n");
    }

    fn footer(&mut self) {
        self.raw(&format!(
            "<footer>Generated by hl7gw {} from <code>{}</code> for <code>{}</code> {}, judged on {}. \
             The same spec, certificates and date give the same report.</footer>\n",
            env!("CARGO_PKG_VERSION"),
            escape(&self.loaded.source.file),
            escape(&self.spec.customer.code),
            self.env_upper(),
            self.today
        ));
    }
}

struct CertToShow {
    id: &'static str,
    title: &'static str,
    file: String,
    key: Option<String>,
    pointers: Vec<String>,
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

fn cert_facts(s: &CertSummary, facts: &mut Vec<Fact>) {
    facts.push(("Subject", escape(&s.subject)));
    facts.push(("Issuer", escape(&s.issuer)));
    facts.push(("Valid from", s.not_before.to_string()));
    facts.push((
        "Expires",
        format!("<span class=\"cert-expiry\">{}</span>", s.not_after),
    ));
    let mut names: Vec<String> = s.dns_names.iter().map(|n| format!("DNS:{n}")).collect();
    names.extend(s.ip_addresses.iter().map(|n| format!("IP:{n}")));
    names.sort();
    if !names.is_empty() {
        facts.push(("Names", escape(&names.join(", "))));
    }
    facts.push(("Key", escape(&s.key)));
    if s.chain_len > 1 {
        facts.push(("Chain", format!("{} certificates in the file", s.chain_len)));
    }
    facts.push((
        "SHA-256",
        format!(
            "<code class=\"mono\">{}</code>",
            escape(&s.sha256_fingerprint)
        ),
    ));
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
    }
    for (t, b) in &spec.outbound {
        if b.record == record {
            uses.push(format!("{t} out"));
        }
    }
    let mut nested: Vec<&String> = spec
        .records
        .iter()
        .filter(|(_, fields)| fields.values().any(|f| f.record.as_deref() == Some(record)))
        .map(|(name, _)| name)
        .collect();
    nested.sort();
    uses.sort();
    let mut parts: Vec<String> = Vec::new();
    if !uses.is_empty() {
        parts.push(format!("used by {}", uses.join(", ")));
    }
    if !nested.is_empty() {
        let names: Vec<&str> = nested.iter().map(|n| n.as_str()).collect();
        parts.push(format!("nested in {}", names.join(", ")));
    }
    if parts.is_empty() {
        "used by no message type".to_owned()
    } else {
        parts.join("; ")
    }
}

/// The code table or map of a field, as HTML.
fn table_or_map(spec: &Spec, f: &FieldSpec) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(t) = &f.table {
        let size = spec.tables.get(t).map_or_else(
            || "not defined".to_owned(),
            |codes| plural_n(codes.len(), "code", "codes"),
        );
        parts.push(format!(
            "table <code>{}</code> <span class=\"muted\">({})</span>",
            escape(t),
            escape(&size)
        ));
    }
    if let Some(map) = &f.map {
        let entries: Vec<String> = map
            .iter()
            .map(|(k, v)| format!("<code>{}</code>&rarr;{}", escape(k), escape(v)))
            .collect();
        parts.push(entries.join(", "));
    }
    parts.join("<br>")
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

fn plural(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

fn plural_n(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
