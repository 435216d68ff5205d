//! Every message a gateway builds from its spec's outbound records has what the HL7
//! dictionary requires for the spec's version: required fields filled, required segments
//! present. The records are the specs' outbound tests (`outbound_tests`), built through the
//! generated crates' `SPEC` as the intake builds them; `hl7gw test` checks the same through
//! the spec-driven builder, which builds the same bytes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use hl7gw::dict;
use hl7gw::spec::{LoadedSpec, load_spec};
use hl7gw_runtime::GatewaySpec;
use hl7gw_runtime::config::{EnvName, SendHeader};
use hl7gw_runtime::hl7::Message;
use hl7gw_runtime::mapping::test_header;

fn load(code: &str) -> LoadedSpec {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../specs/{code}.yaml"));
    load_spec(&path, &format!("specs/{code}.yaml")).unwrap_or_else(|d| panic!("{d:?}"))
}

#[test]
fn every_message_built_from_the_specs_outbound_records_has_what_its_version_requires() {
    for (code, generated) in [("demo", gw_demo::SPEC), ("northwest", gw_northwest::SPEC)] {
        let loaded = load(code);
        let spec = &loaded.spec;
        assert!(
            !spec.outbound_tests.is_empty(),
            "{code}: no outbound tests to build"
        );
        for message_type in spec.outbound.keys() {
            assert!(
                spec.outbound_tests.iter().any(|t| &t.build == message_type),
                "{code}: no outbound test builds {message_type}"
            );
        }
        let dictionary = dict::version(&spec.hl7_version).unwrap();
        for test in &spec.outbound_tests {
            let bytes = build(&generated, &test.build, &test.record);
            let message = Message::parse(&bytes).unwrap();
            let missing = dictionary.missing_required(&message);
            assert!(
                missing.is_empty(),
                "{code}: {}: v{} requires {missing:?}",
                test.name,
                spec.hl7_version
            );
        }
    }
}

#[test]
fn hl7gw_test_builds_the_same_bytes_as_the_generated_crates() {
    for (code, generated) in [("demo", gw_demo::SPEC), ("northwest", gw_northwest::SPEC)] {
        let loaded = load(code);
        let environment = generated.environment(EnvName::Test).unwrap();
        let send = environment.send.as_ref().unwrap().header.clone();
        let header = test_header(&send, &environment.processing_id, &generated.hl7_version);
        for test in &loaded.spec.outbound_tests {
            let by_spec =
                hl7gw::testrun::build_outbound(&loaded.spec, &test.build, &test.record, &header)
                    .unwrap_or_else(|e| panic!("{code}: {}: {e}", test.name));
            let by_crate = build(&generated, &test.build, &test.record);
            assert_eq!(
                String::from_utf8_lossy(&by_spec),
                String::from_utf8_lossy(&by_crate),
                "{code}: {}",
                test.name
            );
        }
    }
}

#[test]
fn a_message_without_them_is_reported_field_by_field() {
    let dictionary = dict::version("2.5.1").unwrap();
    let message = Message::parse(
        b"MSH|^~\\&|EMS|EMS|TIE|T|20260101||ORU^R01^ORU_R01|1|T|2.5.1\rPID|1||9449305552^^^NHS^NH||X\rOBR|1||F|COL\rOBX|1|ED|||^application^pdf^Base64^JVBER\r",
    )
    .unwrap();
    let missing = dictionary.missing_required(&message);
    for field in ["OBX-3", "OBX-11"] {
        assert!(
            missing.iter().any(|m| m.starts_with(&format!("{field}:"))),
            "{field} not reported: {missing:?}"
        );
    }
    let orr =
        Message::parse(b"MSH|^~\\&|EMS|EMS|TIE|T|20260101||ORR^O02^ORR_O02|1|T|2.4\r").unwrap();
    let missing = dict::version("2.4").unwrap().missing_required(&orr);
    assert!(
        missing.iter().any(|m| m.contains("required segment MSA")),
        "{missing:?}"
    );
}

/// Builds as the intake does in TEST: MSH-3 to MSH-6 from the TEST send settings.
fn build(
    spec: &GatewaySpec,
    message_type: &str,
    record: &serde_json::Map<String, serde_json::Value>,
) -> Vec<u8> {
    let environment = spec.environment(EnvName::Test).unwrap();
    let send = environment
        .send
        .as_ref()
        .map_or(SendHeader::DEFAULT, |s| s.header.clone());
    let header = test_header(&send, &environment.processing_id, &spec.hl7_version);
    let record = serde_json::Value::Object(record.clone());
    spec.build_outbound(message_type, &record, &header)
        .unwrap_or_else(|e| panic!("{message_type}: {e}"))
}
