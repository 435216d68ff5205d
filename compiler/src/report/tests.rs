use std::path::{Path, PathBuf};

use time::{Date, Month};

use super::*;
use crate::check::{CheckOptions, check_spec};
use crate::spec::loader::load_spec_text;
use crate::spec::{EnvName, LoadedSpec, load_spec};

fn day(y: i32, m: u8, d: u8) -> Date {
    Date::from_calendar_date(y, Month::try_from(m).expect("month"), d).expect("date")
}

fn demo_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs/demo.yaml")
}

fn demo() -> LoadedSpec {
    load_spec(&demo_path(), "specs/demo.yaml").expect("demo spec loads")
}

/// The demo spec's text with one replacement, loaded as if it sat next to the demo spec (so
/// its certificate and message paths resolve).
fn demo_with(from: &str, to: &str) -> LoadedSpec {
    let text = std::fs::read_to_string(demo_path()).expect("demo spec readable");
    assert!(text.contains(from), "demo spec has no {from:?}");
    load_spec_text(text.replacen(from, to, 1), &demo_path(), "specs/demo.yaml")
        .expect("modified demo spec loads")
}

/// The day the reports of these tests are judged on.
fn report_day() -> Date {
    day(2026, 11, 27)
}

/// The checks of one environment, as of [`report_day`].
fn checked(loaded: &LoadedSpec, env: EnvName) -> crate::check::CheckReport {
    check_spec(
        loaded,
        &CheckOptions {
            env: Some(env),
            today: report_day(),
        },
    )
}

fn render(loaded: &LoadedSpec, env: EnvName) -> String {
    render_html(loaded, env, &checked(loaded, env), report_day()).expect("report renders")
}

#[test]
fn escape_covers_the_five_characters() {
    assert_eq!(
        escape(r#"<a href="x" title='y'>&amp;</a>"#),
        "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;"
    );
    assert_eq!(escape("plain £ text"), "plain £ text");
    assert_eq!(escape(""), "");
}

#[test]
fn customer_name_with_script_is_escaped() {
    let loaded = demo_with(
        "name: Demo NHS Foundation Trust",
        "name: \"Evil <script>alert('x')</script> & Co\"",
    );
    let html = render(&loaded, EnvName::Test);
    assert!(
        !html.contains("<script"),
        "unescaped script tag in the report"
    );
    assert!(html.contains("Evil &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; Co"));
    // The only place markup could be injected is text; no stray tag survives anywhere.
    assert!(!html.contains("</script>"));
}

#[test]
fn every_section_is_present() {
    let html = render(&demo(), EnvName::Test);
    for id in [
        "report-header",
        "status",
        "checklist",
        "certificates",
        "endpoints",
        "allowed-clients",
        "ip-ranges",
        "environment",
        "message-types",
        "mapped-fields",
        "spec-tests",
        "findings",
        "acknowledged",
        "signatures",
        "sign-engineer",
        "sign-trust",
        "cert-receive-server",
        "cert-receive-client-ca",
        "cert-send-client",
        "cert-send-server-ca",
        "endpoint-receive",
        "endpoint-send",
        "record-patient",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "missing id {id}");
    }
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(
        html.contains("class=\"ready\""),
        "demo spec should be READY"
    );
    assert!(html.contains(">READY<"));
    assert!(html.contains("https://demo-test.api.example-ems.cloud/hl7"));
    assert!(html.contains("https://localhost:9443/hl7/ems"));
    assert!(html.contains("<span class=\"cert-expiry\">2036-11-24</span>"));
    assert!(html.contains("CN=tie-test.demo.nhs.uk"));
    assert!(html.contains("127.0.0.0/8"));
    assert!(html.contains("ORM^O01"));
    assert!(html.contains("ORR^O02"));
    assert!(html.contains("PID-3[CX.5=NH].1"));
    assert!(html.contains("an order maps to a ServiceRequest"));
    assert!(html.contains(">passed<"));
    assert!(!html.contains("file parses"));
    assert!(html.contains("Demo NHS Foundation Trust"));
    // Self-contained: nothing fetched, nothing run.
    assert!(!html.contains("<script"));
    assert!(!html.contains("<link"));
    assert!(!html.contains("src="));
    assert!(!html.contains("url("));
    assert!(html.contains("@media print"));
    // The PROD report shows PROD's endpoints, not TEST's.
    let prod = render(&demo(), EnvName::Prod);
    assert!(prod.contains("https://demo.api.example-ems.cloud/hl7"));
    assert!(prod.contains("https://tie.demo.nhs.uk/hl7/ems"));
    assert!(!prod.contains("demo-test.api"));
}

#[test]
fn same_inputs_give_the_same_bytes() {
    let a = render(&demo(), EnvName::Prod);
    let b = render(&demo(), EnvName::Prod);
    assert_eq!(a, b);
}

#[test]
fn errors_make_it_not_ready_and_are_listed() {
    let loaded = demo_with("cert: certs/test/server.crt", "cert: certs/test/nope.crt");
    let html = render(&loaded, EnvName::Test);
    assert!(html.contains("id=\"status\" class=\"not-ready\""));
    assert!(html.contains("NOT READY"));
    assert!(html.contains("check-item fail\" id=\"cert-receive-server\""));
    assert!(html.contains("cert-missing"));
    assert!(
        html.contains("specs/demo.yaml:"),
        "findings carry file:line:column"
    );
    // The other environment's report is not affected by TEST's error.
    let prod = render(&loaded, EnvName::Prod);
    assert!(prod.contains("id=\"status\" class=\"ready\""));
}

#[test]
fn expiring_certificate_is_amber_with_days_left() {
    let loaded = demo();
    let today = day(2036, 11, 10);
    let report = check_spec(
        &loaded,
        &CheckOptions {
            env: Some(EnvName::Test),
            today,
        },
    );
    let html = render_html(&loaded, EnvName::Test, &report, today).expect("report renders");
    assert!(html.contains("expires in 14 days"));
    assert!(html.contains("check-item warn\" id=\"cert-receive-server\""));
}

#[test]
fn given_test_results_replace_the_file_checks() {
    let loaded = demo();
    let today = day(2026, 11, 27);
    let report = check_spec(&loaded, &CheckOptions { env: None, today });
    let results = vec![TestResult {
        name: "an order maps to a ServiceRequest".to_owned(),
        status: TestStatus::Failed,
        detail: "expected AA, got AE".to_owned(),
    }];
    let html = render_html_with_tests(&loaded, EnvName::Test, &report, today, &results)
        .expect("report renders");
    assert!(html.contains(">failed<"));
    assert!(html.contains("expected AA, got AE"));
    let none = render_html_with_tests(&loaded, EnvName::Test, &report, today, &[])
        .expect("report renders");
    assert!(none.contains(">not run<"));
}

#[test]
fn missing_test_file_is_reported() {
    let loaded = demo_with(
        "message: ../examples/messages/orm_o01.hl7",
        "message: ../examples/messages/absent.hl7",
    );
    let results = file_checks(&loaded);
    assert_eq!(results.len(), loaded.spec.tests.len());
    for r in &results {
        let expected = if r.name == "an order maps to a ServiceRequest" {
            TestStatus::FileMissing
        } else {
            TestStatus::FileParses
        };
        assert_eq!(r.status, expected, "{}", r.name);
    }
    let html = render(&loaded, EnvName::Test);
    assert!(html.contains(">file missing<"));
}

/// The demo spec's text with every replacement applied (each once), loaded as if it sat next
/// to the demo spec.
fn demo_with_all(replacements: &[(&str, &str)]) -> LoadedSpec {
    let mut text = std::fs::read_to_string(demo_path()).expect("demo spec readable");
    for (from, to) in replacements {
        assert!(text.contains(from), "demo spec has no {from:?}");
        text = text.replacen(from, to, 1);
    }
    load_spec_text(text, &demo_path(), "specs/demo.yaml").expect("modified demo spec loads")
}

#[test]
fn script_in_any_spec_value_is_escaped() {
    let loaded = demo_with_all(&[
        (
            "name: Demo NHS Foundation Trust",
            "name: \"<script>name</script>\"",
        ),
        (
            "store: var/demo-test.sqlite",
            "store: \"var/<script>store</script>.sqlite\"",
        ),
        (
            "allowed_clients: [\"CN=tie-test.demo.nhs.uk\"]",
            "allowed_clients: [\"CN=<script>client</script>\"]",
        ),
        (
            "name: an order maps to a ServiceRequest",
            "name: \"<script>test</script>\"",
        ),
        ("OGD: Gastroscopy", "OGD: \"<script>table</script>\""),
    ]);
    let html = render(&loaded, EnvName::Test);
    assert!(
        !html.contains("<script"),
        "unescaped script tag in the report"
    );
    for what in ["name", "store", "client", "test"] {
        assert!(
            html.contains(&format!("&lt;script&gt;{what}&lt;/script&gt;")),
            "{what} not shown escaped"
        );
    }
}

#[test]
fn settings_left_out_show_default_without_the_value() {
    // The demo spec states every send and receive setting for TEST; leave some out.
    let loaded = demo_with_all(&[
        ("      max_body: 20MiB\n", ""),
        ("      timeout: 30s\n", ""),
        ("      backoff: { first: 1s, max: 5m }\n", ""),
        ("    sink: { inbox: {} }\n", ""),
    ]);
    let html = render(&loaded, EnvName::Test);
    let default = "<span class=\"default\">(default)</span>";
    for fact in [
        "Largest body",
        "ACK timeout",
        "Retry delay",
        "ACK content type",
        "Request content type",
        "HTTP/2",
    ] {
        assert!(
            html.contains(&format!("<dt>{fact}</dt><dd>{default}</dd>")),
            "{fact} does not say (default)"
        );
    }
    assert!(html.contains(&format!("<li>connect error: {default}</li>")));
    assert!(html.contains(&format!("<li>4xx: {default}</li>")));
    assert!(html.contains(&format!("Sink: {default}")));
    // What the spec states is shown as stated.
    assert!(html.contains("<li>AE/CE: hold</li>"));
    assert!(html.contains("<li>AR/CR: hold</li>"));
    // The default values themselves are the runtime's to state, not the report's.
    for restated in [
        "20MiB (default)",
        "30s (default)",
        "retry (default)",
        "inbox (default)",
    ] {
        assert!(!html.contains(restated), "report restates {restated:?}");
    }
    assert!(!html.contains("<dt>ACK timeout</dt><dd>30s"));
    // PROD still states its own values.
    let prod = render(&loaded, EnvName::Prod);
    assert!(prod.contains("<dt>ACK timeout</dt><dd>30s</dd>"));
    assert!(prod.contains("<dt>Largest body</dt><dd>20MiB</dd>"));
}

#[test]
fn limits_the_spec_states_are_shown_and_the_rest_say_default() {
    let loaded = demo_with_all(&[(
        "    store: var/demo-test.sqlite\n",
        "    store: var/demo-test.sqlite\n    limits: { connections_per_ip: 8, body_memory: 64MiB }\n",
    )]);
    let html = render(&loaded, EnvName::Test);
    let default = "<span class=\"default\">(default)</span>";
    assert!(html.contains("<dt>Connections per address</dt><dd>8</dd>"));
    assert!(html.contains("<dt>Memory for bodies in flight</dt><dd>64MiB</dd>"));
    for fact in [
        "Connections",
        "TLS handshakes at once",
        "Intake MLLP idle timeout",
    ] {
        assert!(
            html.contains(&format!("<dt>{fact}</dt><dd>{default}</dd>")),
            "{fact} does not say (default)"
        );
    }
}

/// `text` without the part from `from` (included) up to `to` (excluded).
fn cut(text: &str, from: &str, to: &str) -> String {
    let start = text.find(from).expect("start marker");
    let end = start + text[start..].find(to).expect("end marker");
    format!("{}{}", &text[..start], &text[end..])
}

fn load_text(text: String) -> LoadedSpec {
    load_spec_text(text, &demo_path(), "specs/demo.yaml").expect("modified demo spec loads")
}

#[test]
fn environment_without_sides_and_missing_environment_render() {
    let text = std::fs::read_to_string(demo_path()).expect("demo spec readable");
    // TEST neither receives nor sends and forwards over MLLP; there is no PROD; no message
    // type, no test.
    let mut text = cut(&text, "    receive:", "    store:");
    text = text.replacen(
        "    sink: { inbox: {} }",
        "    sink: { mllp: { addr: \"127.0.0.1:2575\" } }",
        1,
    );
    text = cut(&text, "  prod:", "\ntables:");
    text = cut(&text, "\ninbound:", "\ntests:");
    text.truncate(text.find("\ntests:").expect("tests") + 1);
    let loaded = load_text(text);
    let html = render(&loaded, EnvName::Test);
    assert!(html.contains("No certificates: this environment neither receives nor sends."));
    assert!(html.contains("Receive: none (the Trust sends nothing"));
    assert!(html.contains("Send: none (the gateway sends nothing"));
    assert!(html.contains("No receive side, so no client is accepted."));
    assert!(html.contains("No receive side, so no address is allowed in."));
    assert!(html.contains("MLLP: forward to the local engine at <code>127.0.0.1:2575</code>"));
    assert!(html.contains("The spec binds no message type."));
    assert!(html.contains("The spec has no tests."));
    let prod = render(&loaded, EnvName::Prod);
    assert!(prod.contains("check-item fail\" id=\"environment-missing\""));
    assert!(prod.contains("The spec does not describe the PROD environment"));
    assert!(prod.contains("(not described)"));
}

#[test]
fn empty_allow_lists_webhook_and_acknowledged_warnings_render() {
    let loaded = demo_with_all(&[
        (
            "allowed_clients: [\"CN=tie-test.demo.nhs.uk\"]",
            "allowed_clients: []",
        ),
        ("allowed_ips: [127.0.0.0/8]", "allowed_ips: []"),
        (
            "    sink: { inbox: {} }",
            "    sink: { webhook: { url: \"http://127.0.0.1:8690/<in>\" } }\n    acknowledge:\n      cert-expiring-soon: \"renewal <b>booked</b>\"",
        ),
    ]);
    let html = render(&loaded, EnvName::Test);
    assert!(html.contains("No client subject is allowed: the Trust's engine cannot connect."));
    assert!(html.contains("No IP range is allowed: nothing can connect."));
    assert!(html.contains(
        "webhook: POST each record as JSON to <code>http://127.0.0.1:8690/&lt;in&gt;</code>"
    ));
    // Certificates expiring within the warning window, accepted by the spec for TEST.
    let today = day(2036, 11, 10);
    let report = check_spec(
        &loaded,
        &CheckOptions {
            env: Some(EnvName::Test),
            today,
        },
    );
    let html = render_html(&loaded, EnvName::Test, &report, today).expect("report renders");
    assert!(html.contains("class=\"acknowledged-warning\""));
    assert!(html.contains("<td>renewal &lt;b&gt;booked&lt;/b&gt;</td>"));
    assert!(!html.contains("acknowledges no warning"));
}

#[test]
fn the_environment_section_shows_the_acknowledgement_mode() {
    let line = |html: &str| {
        let start = html
            .find("Acknowledgement mode:")
            .expect("the environment section names the acknowledgement mode");
        html[start..start + html[start..].find("</div>").expect("item title ends")].to_owned()
    };
    // Left out: the default.
    let html = render(&demo(), EnvName::Test);
    assert_eq!(
        line(&html),
        "Acknowledgement mode: <span class=\"default\">(default)</span>"
    );
    assert!(html.contains("Always AA/AE/AR"));
    // Spec-wide, inherited by both environments; PROD overrides it.
    let loaded = demo_with_all(&[
        (
            "model: orders",
            "acknowledgement: as_requested\nmodel: orders",
        ),
        (
            "    processing_id: P\n",
            "    processing_id: P\n    acknowledgement: application\n",
        ),
    ]);
    let test = render(&loaded, EnvName::Test);
    assert_eq!(
        line(&test),
        "Acknowledgement mode: <code>as_requested</code> (the spec's)"
    );
    assert!(test.contains("answered CA/CE/CR"));
    let prod = render(&loaded, EnvName::Prod);
    assert_eq!(
        line(&prod),
        "Acknowledgement mode: <code>application</code>"
    );
}

/// The page runs the spec tests as `hl7gw test` does: each demo test passes and says what
/// was answered; a test whose expectation is wrong fails and makes the page NOT READY.
#[test]
fn spec_tests_are_run_and_a_failure_is_not_ready() {
    let html = render(&demo(), EnvName::Test);
    let passed = html.matches(">passed<").count();
    assert_eq!(passed, demo().spec.tests.len(), "every demo test passes");
    assert!(html.contains("answered AE"));
    assert!(html.contains("id=\"status\" class=\"ready\""));

    let loaded = demo_with(
        "expect: { ack: AA, record: { placer_id: PLC-1001, procedure: COL } }",
        "expect: { ack: AA, record: { placer_id: PLC-1001, procedure: OGD } }",
    );
    let results = spec_test_results(&loaded, &checked(&loaded, EnvName::Test));
    let failed: Vec<&TestResult> = results
        .iter()
        .filter(|r| r.status == TestStatus::Failed)
        .collect();
    assert_eq!(failed.len(), 1, "{results:?}");
    assert_eq!(failed[0].name, "an order maps to a ServiceRequest");
    assert!(
        failed[0].detail.contains("procedure"),
        "{:?}",
        failed[0].detail
    );
    let html = render(&loaded, EnvName::Test);
    assert!(html.contains(">failed<"));
    assert!(html.contains("id=\"status\" class=\"not-ready\""));
    assert!(html.contains("<span id=\"failed-test-count\">1</span> spec test failed"));
}

/// With an error in the spec the tests are not run (as `hl7gw test` refuses to), and the
/// rows say why.
#[test]
fn spec_tests_are_not_run_on_a_spec_with_errors() {
    let loaded = demo_with(
        "procedure:  { from: OBR-4.1, type: code, table: procedure, required: true }",
        "procedure:  { from: OBR-4.1, type: code, table: procedures, required: true }",
    );
    let results = spec_test_results(&loaded, &checked(&loaded, EnvName::Test));
    assert!(!results.is_empty());
    for r in &results {
        assert_eq!(r.status, TestStatus::FileParses, "{r:?}");
        assert!(
            r.detail
                .starts_with("not run: the spec has errors (first: table-unknown"),
            "{r:?}"
        );
    }
}

#[test]
fn issuer_ca_is_shown_or_said_to_be_missing() {
    let html = render(&demo(), EnvName::Test);
    for id in ["cert-receive-issuer-ca", "cert-send-issuer-ca"] {
        assert!(html.contains(&format!("id=\"{id}\"")), "missing {id}");
    }
    assert!(html.contains("EMS CA that issued the server certificate"));
    assert!(html.contains("<code>certs/test/trust/ems-ca.crt</code>"));
    // Without it, the item says the chain is not checked.
    let loaded = demo_with(
        "        issuer_ca: certs/test/trust/ems-ca.crt        # the EMS CA that issued our certificate\n",
        "",
    );
    let html = render(&loaded, EnvName::Test);
    let item = &html[html.find("id=\"cert-receive-issuer-ca\"").expect("item")..];
    let item = &item[..item.find("</li>").expect("item ends")];
    assert!(item.contains(">not named<"), "{item}");
    assert!(
        item.contains("cannot check that the certificate's chain"),
        "{item}"
    );
}

/// A field that nests a record shows that record's fields where it stands, linked to the
/// record's own item, rather than only its name.
#[test]
fn nested_records_are_shown_as_records() {
    let html = render(&demo(), EnvName::Test);
    let record = &html[html.find("id=\"record-service_request\"").expect("record")..];
    let record = &record[..record.find("</table>\n</div></li>").expect("record ends")];
    assert!(record.contains("record <a href=\"#record-patient\"><code>patient</code></a>"));
    let nested = &record[record
        .find("class=\"nested-record\"")
        .expect("nested block")..];
    let nested = &nested[..nested.find("</table>").expect("nested table ends")];
    for (field, path) in [("nhs_number", "PID-3[CX.5=NH].1"), ("birth_date", "PID-7")] {
        assert!(
            nested.contains(&format!(
                "<td><code>{field}</code></td><td><code>{path}</code></td>"
            )),
            "{field} of patient not shown in service_request"
        );
    }
}

/// A test's expected record is shown with its nested records as records: the nested
/// record's line, then its values one level deeper; never `patient.mrn`.
#[test]
fn expected_records_show_nested_records_as_records() {
    let html = render(&demo(), EnvName::Test);
    let row = &html[html
        .find("an A40 carries the prior MRN")
        .expect("the A40 test")..];
    let row = &row[..row.find("</tr>").expect("row ends")];
    assert!(
        row.contains(concat!(
            "<ul class=\"expected-record\">",
            "<li style=\"margin-left:0em\"><code>prior_mrn</code>: D999999</li>",
            "<li style=\"margin-left:0em\"><code>patient</code> <span class=\"muted\">(record)</span></li>",
            "<li style=\"margin-left:1em\"><code>mrn</code>: D123456</li></ul>"
        )),
        "{row}"
    );
    assert!(!html.contains("patient.mrn"));
}

/// The item of the EMS listeners in a rendered page: from its `<li>` to the next.
fn ems_item(html: &str) -> String {
    let at = html.find("id=\"ems\"").expect("the EMS listeners item");
    let start = html[..at].rfind("<li").expect("the item's <li>");
    let rest = &html[start..];
    let end = rest.find("</li>").unwrap_or(rest.len());
    rest[..end].to_owned()
}

#[test]
fn plain_loopback_ems_is_flagged_and_mutual_tls_is_not() {
    let plain = ems_item(&render(&demo(), EnvName::Test));
    assert!(
        plain.contains("plain loopback, no authentication"),
        "{plain}"
    );
    assert!(plain.contains("warn"), "plain loopback is flagged: {plain}");
    assert!(!plain.contains("(default)"), "the demo names it: {plain}");
    let tls = demo_with(
        "    ems: { plain_loopback: true }",
        "    ems:\n      address: 0.0.0.0\n      tls: { cert: certs/test/server.crt, key: certs/test/server.key, client_ca: certs/test/trust-ca.crt }\n      allowed_clients: [\"CN=ems-test.example-ems.cloud\"]\n    #",
    );
    let tls = ems_item(&render(&tls, EnvName::Test));
    assert!(tls.contains("mutual TLS on <code>0.0.0.0</code>"), "{tls}");
    assert!(
        tls.contains("<code>CN=ems-test.example-ems.cloud</code>"),
        "{tls}"
    );
    assert!(!tls.contains("warn"), "{tls}");
    // Left out, it is no longer a quiet default: the item fails with the finding.
    let left_out = demo_with("    ems: { plain_loopback: true }", "    #");
    let left_out = ems_item(&render(&left_out, EnvName::Test));
    assert!(left_out.contains("env-ems-missing"), "{left_out}");
    assert!(left_out.contains("<code>ems</code> left out"), "{left_out}");
    assert!(left_out.contains("fail"), "{left_out}");
}
