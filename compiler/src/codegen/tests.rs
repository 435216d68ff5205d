//! Generator edge cases: names that collide, fields named like the generated code's
//! parameters, empty records, repeated values, records built for several message types.

use std::path::Path;

use super::{GeneratedCrate, generate};
use crate::spec::loader::load_spec_text;

/// A spec that passes the schema (not the model checks: `generate` does not need them).
pub(super) const EDGE: &str = r##"
customer: { code: edge, name: "Edge \"Quoted\" Trust" }
domain: example-ems.cloud
hl7_version: "2.5.1"
model: basic
environments:
  test:
    processing_id: T
    store: var/edge-test.sqlite
    receive:
      listen: 127.0.0.1:8443
      path: /hl7
      hostname: edge-test.api.example-ems.cloud
      tls: { cert: c, key: k, client_ca: ca }
      allowed_clients: []
      allowed_ips: []
      receiving_facility: EMS-HOST
    sink: { webhook: { url: "http://127.0.0.1:9000/records" } }
  prod:
    processing_id: P
    store: var/edge-prod.sqlite
    send:
      url: https://tie.edge.nhs.uk/hl7
      tls: { cert: c, key: k, server_ca: ca }
      on_5xx: retry(3)
      on_ae: skip
tables:
  string: { A: a }
records:
  attachment:
    message: { from: PID-5.1, type: string, required: true }
    errors: { from: PID-5.2, type: string }
    doc: { from: "OBX[OBX-2=ED]-5.5", type: base64, media: application/pdf, max_bytes: 1KiB, repeated: true }
    flavour: { from: PID-8, type: code, map: { ab: x, AB: y, "2WW": z, self: s } }
    kind: { from: "PID-3[CX.5=NH].1", type: code, table: string, repeated: true }
    when: { from: PID-7, type: datetime }
    born: { from: PID-7, type: date, repeated: true }
    weight: { from: "OBX[2]-5", type: number }
  empty: {}
inbound:
  ADT^A28: { record: empty }
outbound:
  ORU^R01: { record: attachment }
  ORU^R30: { record: empty }
  ORU^R31: { record: attachment }
tests:
  - name: "loop"
    message: m.hl7
    expect: { ack: AA, record: { message: "a\"#b" } }
  - name: loop
    message: m.hl7
    expect: { ack: AE, error: { code: 103, location: "PID-3[2]" } }
"##;

fn edge() -> GeneratedCrate {
    let loaded = match load_spec_text(EDGE.to_string(), Path::new("specs/edge.yaml"), "edge") {
        Ok(loaded) => loaded,
        Err(d) => panic!("{d:#?}"),
    };
    match generate(&loaded, "specs/edge.yaml", "00") {
        Ok(generated) => generated,
        Err(e) => panic!("{e}"),
    }
}

fn file<'g>(generated: &'g GeneratedCrate, name: &str) -> &'g str {
    generated.files.get(name).map_or("", String::as_str)
}

#[test]
fn colliding_names_get_numbers() {
    let generated = edge();
    let records = file(&generated, "src/records.rs");
    assert!(records.contains("pub struct Attachment {"), "{records}");
    assert!(
        records.contains("pub type Attachment2 = mapping::Attachment<Media>;"),
        "{records}"
    );
    assert!(records.contains("pub doc: Vec<Attachment2>"), "{records}");
    assert!(records.contains("pub enum String2 {"), "{records}");
    assert!(records.contains("pub kind: Vec<String2>"), "{records}");
    for variant in ["    Ab,", "    Ab2,", "    Code2ww,", "    Self_,"] {
        assert!(records.contains(variant), "{variant} in {records}");
    }
}

#[test]
fn fields_named_like_parameters_keep_their_names() {
    let generated = edge();
    let records = file(&generated, "src/records.rs");
    assert!(records.contains("let message_value = ATTACHMENT_MESSAGE.single(message, errors);"));
    assert!(records.contains("let errors_value = ATTACHMENT_ERRORS.single(message, errors);"));
    assert!(records.contains("message: message_value?,"));
    assert!(records.contains("errors: errors_value,"));
    assert!(records.contains("pub message: String,"));
}

#[test]
fn empty_records_and_several_outbound_types() {
    let generated = edge();
    let records = file(&generated, "src/records.rs");
    assert!(records.contains("let _ = (message, errors);"));
    assert!(records.contains("pub fn to_hl7_oru_r01("));
    assert!(records.contains("pub fn to_hl7_oru_r31("));
    assert!(
        records.contains("mapping::OutboundRecord::build(self, header, &ORU_R30)"),
        "{records}"
    );
    // Repeated values are written by the runtime (`Field::write_each`: successive
    // repetitions, or segment occurrences when the path already picks a repetition).
    assert!(records.contains("ATTACHMENT_DOC.write_each(message, &self.doc)?;"));
    assert!(records.contains("ATTACHMENT_KIND.write_each(message, &self.kind)?;"));
}

#[test]
fn configuration_fills_in_defaults() {
    let generated = edge();
    let config = file(&generated, "src/config.rs");
    assert!(
        config.contains("on_5xx: FailurePolicy::RetryThenHold(3),"),
        "{config}"
    );
    assert!(config.contains("on_ae: FailurePolicy::Skip,"));
    assert!(config.contains("on_ar: FailurePolicy::Hold,"));
    assert!(config.contains("timeout_ms: 30000,"));
    assert!(config.contains("max_body: 20971520,"));
    assert!(config.contains("receiving_facility: Some(Cow::Borrowed(\"EMS-HOST\")),"));
    assert!(config.contains("SinkConfig::Webhook {"));
    assert!(config.contains("url: Cow::Borrowed(\"http://127.0.0.1:9000/records\"),"));
}

#[test]
fn test_functions_are_unique_and_escaped() {
    let generated = edge();
    let tests = file(&generated, "tests/spec_tests.rs");
    assert!(tests.contains("fn test_loop()"), "{tests}");
    assert!(tests.contains("fn test_loop_2()"), "{tests}");
    assert!(
        tests.contains(r###"r##"{"message":"a\"#b"}"##"###),
        "{tests}"
    );
    assert!(tests.contains("/../../specs/m.hl7"), "{tests}");
}

#[test]
fn scaffolding_escapes_the_customer_name() {
    let generated = edge();
    let cargo = file(&generated, "Cargo.toml");
    assert!(
        cargo.contains(
            r#"description = "HL7 gateway for Edge \"Quoted\" Trust, generated by hl7gw.""#
        ),
        "{cargo}"
    );
    let main = file(&generated, "src/main.rs");
    assert!(
        main.contains("hl7gw_runtime::cli::main(gw_edge::SPEC)"),
        "{main}"
    );
    assert!(main.starts_with("// @generated by hl7gw from specs/edge.yaml (sha256 00)."));
    let lib = file(&generated, "src/lib.rs");
    assert!(
        lib.contains(r#"customer_name: Cow::Borrowed("Edge \"Quoted\" Trust"),"#),
        "{lib}"
    );
}

#[test]
fn a_repeated_nested_record_is_refused() {
    let text = EDGE.replace(
        "  empty: {}",
        "  empty: {}\n  list: { items: { record: empty, repeated: true } }",
    );
    let loaded = match load_spec_text(text, Path::new("specs/edge.yaml"), "edge") {
        Ok(loaded) => loaded,
        Err(d) => panic!("{d:#?}"),
    };
    let Err(e) = generate(&loaded, "specs/edge.yaml", "00") else {
        panic!("generated a repeated nested record");
    };
    assert!(e.message.contains("records.list.items"), "{e}");
}

#[test]
fn the_output_depends_only_on_the_spec() {
    assert_eq!(edge(), edge());
}

#[test]
fn outbound_types_get_a_json_builder_and_its_tests() {
    let generated = edge();
    let lib = file(&generated, "src/lib.rs");
    for arm in [
        // Each type is bound to its record and its own shape (one record may serve two
        // types: the type, structure, set IDs and MSA are data, not a method per type).
        "shape: records::ORU_R01,\n                map: map_to_json::<records::Attachment>,\n                build: build_from_json::<records::Attachment>,",
        "shape: records::ORU_R30,\n                map: map_to_json::<records::Empty>,\n                build: build_from_json::<records::Empty>,",
        "shape: records::ORU_R31,\n                map: map_to_json::<records::Attachment>,",
    ] {
        assert!(lib.contains(arm), "{arm} in {lib}");
    }
    // The declared outbound types, in spec order (the runtime lists them when refusing one).
    let at = |t: &str| lib.find(&format!("records::{t},"));
    assert!(
        at("ORU_R01") < at("ORU_R30") && at("ORU_R30") < at("ORU_R31"),
        "{lib}"
    );
    let records = file(&generated, "src/records.rs");
    // The shape of each type, from the dictionary: its structure and set-ID segments.
    assert!(
        records.contains("pub const ORU_R31: mapping::MessageShape = mapping::MessageShape {\n    message_type: std::borrow::Cow::Borrowed(\"ORU^R31\"),\n    structure: Some(std::borrow::Cow::Borrowed(\"ORU_R30\")),"),
        "{records}"
    );
    assert!(
        records.contains("#[serde(default)]\n    pub born: Vec<mapping::HlDate>,"),
        "{records}"
    );
    assert!(
        records.contains("const MEDIA_TYPES: &'static [&'static str] = &[\"application/pdf\"];")
    );
    assert!(
        records.contains(".data(1024, \"application/pdf\", true)"),
        "{records}"
    );
    assert!(
        !records.contains("fn date_text("),
        "values write their own HL7 text"
    );
    let tests = file(&generated, "tests/outbound.rs");
    for test in [
        "fn oru_r01_record_with_every_field()",
        "fn oru_r30_record_with_required_fields()",
        "fn oru_r31_record_with_every_field()",
        "fn an_undeclared_type_is_refused()",
        // The record built for ORU^R30 is empty; the representative values are in spec order.
        r##"r#"{}"#"##,
        r#""born":["1970-01-31","1970-02"]"#,
        r#""flavour":"x""#,
        r#""kind":["A","A"]"#,
        r#""doc":[{"media_type":"application/pdf","data":"ZG9jIGRhdGEgMQ=="}"#,
    ] {
        assert!(tests.contains(test), "{test} in {tests}");
    }
}

#[test]
fn a_spec_that_sends_nothing_has_no_outbound_tests() {
    let text = EDGE.replace(
        "outbound:\n  ORU^R01: { record: attachment }\n  ORU^R30: { record: empty }\n  ORU^R31: { record: attachment }\n",
        "",
    );
    assert_ne!(text, EDGE);
    let loaded = match load_spec_text(text, Path::new("specs/edge.yaml"), "edge") {
        Ok(loaded) => loaded,
        Err(d) => panic!("{d:#?}"),
    };
    let generated = match generate(&loaded, "specs/edge.yaml", "00") {
        Ok(generated) => generated,
        Err(e) => panic!("{e}"),
    };
    assert!(!generated.files.contains_key("tests/outbound.rs"));
    let lib = file(&generated, "src/lib.rs");
    assert!(lib.contains("outbound: Cow::Borrowed(&[])"), "{lib}");
    assert!(!lib.contains("build_record("), "{lib}");
}

#[test]
fn fallback_paths_get_a_static_and_a_cancel_record_its_binding() {
    let text = EDGE
        .replace(
            "    when: { from: PID-7, type: datetime }",
            "    when: { from: [PID-7, PID-29, PID-33], type: datetime }\n    when_else: { from: PID-33, type: datetime }",
        )
        .replace(
            "  ADT^A28: { record: empty }",
            "  ADT^A28: { record: empty }\n  ORM^O01: { record: attachment, cancel: empty }",
        );
    let loaded = match load_spec_text(text, Path::new("specs/edge.yaml"), "edge") {
        Ok(loaded) => loaded,
        Err(d) => panic!("{d:#?}"),
    };
    let generated = match generate(&loaded, "specs/edge.yaml", "00") {
        Ok(generated) => generated,
        Err(e) => panic!("{e}"),
    };
    let records = file(&generated, "src/records.rs");
    assert!(
        records.contains("static ATTACHMENT_WHEN_ELSE: [hl7::Path; 2] = ["),
        "{records}"
    );
    assert!(
        records.contains(".or_from(&ATTACHMENT_WHEN_ELSE)"),
        "{records}"
    );
    assert!(
        records.contains("static ATTACHMENT_WHEN_ELSE_2: mapping::Field"),
        "the field named like the fallbacks' static gets another name: {records}"
    );
    assert!(
        records.contains("From `PID-7`, else `PID-29`, else `PID-33`"),
        "{records}"
    );
    let lib = file(&generated, "src/lib.rs");
    assert!(
        lib.contains("map: map_order_to_json::<records::Attachment, records::Empty>"),
        "{lib}"
    );
    assert!(lib.contains("map: map_to_json::<records::Empty>"), "{lib}");
}
