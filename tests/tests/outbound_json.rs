//! Intake from EMS as JSON: the outbound bindings of each crate's `SPEC` read a typed
//! record as JSON, builds its outbound message, and refuses what the spec does not allow,
//! naming the field.
//!
//! The demo record is written here from the values of `examples/messages/oru_r01_pdf.hl7`
//! (its MRN, which the demo's `patient` requires, written as a constant); the northwest
//! record is mapped from `examples/messages/northwest/oru_r01_pdf.hl7`, the riverside one from
//! `examples/messages/riverside/oru_r01_pdf.hl7`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use gw_demo::records::Report;
use gw_northwest::records::ResultReport;
use hl7gw_runtime::GatewaySpec;
use hl7gw_runtime::hl7::{Message, Path};
use hl7gw_runtime::mapping::OutboundHeader;
use serde_json::{Value, json};

/// The intake builds with the crates' specs as they are.
const BUILDERS: [GatewaySpec; 2] = [gw_demo::SPEC, gw_northwest::SPEC];

/// `spec` builds `message_type` from `record`; the error as the intake reports it.
fn build(
    spec: &GatewaySpec,
    message_type: &str,
    record: &Value,
    header: &OutboundHeader<'_>,
) -> Result<Vec<u8>, String> {
    spec.build_outbound(message_type, record, header)
        .map_err(|e| e.to_string())
}

fn header(version: &str) -> OutboundHeader<'_> {
    OutboundHeader {
        sending_application: "EMS",
        sending_facility: "EMS-HOST",
        receiving_application: "TIE",
        receiving_facility: "TRUST",
        timestamp: "20260101130500+0000",
        control_id: "JSON-0001",
        processing_id: "T",
        version,
    }
}

fn example(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/messages")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn text(message: &Message<'_>, path: &str) -> Option<String> {
    Path::parse(path)
        .unwrap()
        .find_first(message)
        .map(|hit| hit.span.text().unwrap().into_owned())
}

/// The demo report: the values of the demo ORU^R01 sample, its PDF included.
fn demo_report() -> Value {
    let bytes = example("oru_r01_pdf.hl7");
    let sample = Message::parse(&bytes).unwrap();
    let pdf = text(&sample, "OBX[OBX-2=ED]-5.5").expect("the sample carries a PDF");
    json!({
        "patient": {
            "nhs_number": text(&sample, "PID-3[CX.5=NH].1"),
            "mrn": "D123456",
            "family": text(&sample, "PID-5.1"),
            "given": text(&sample, "PID-5.2"),
            "birth_date": "1970-01-01",
            "sex": "male",
        },
        "placer_id": text(&sample, "OBR-2.1"),
        "filler_id": text(&sample, "OBR-3.1"),
        "procedure": text(&sample, "OBR-4.1"),
        "pdf": { "media_type": "application/pdf", "data": pdf },
    })
}

/// The demo report built with `change` applied: the builder's error.
fn demo_error(change: impl FnOnce(&mut Value)) -> String {
    let mut record = demo_report();
    change(&mut record);
    match build(&gw_demo::SPEC, "ORU^R01", &record, &header("2.4")) {
        Ok(_) => panic!("built from {record:#}"),
        Err(e) => e,
    }
}

#[test]
fn a_demo_report_as_json_builds_its_oru_and_maps_back() {
    let json = demo_report();
    let bytes =
        build(&BUILDERS[0], "ORU^R01", &json, &header("2.4")).unwrap_or_else(|e| panic!("{e}"));
    let built = Message::parse(&bytes).unwrap();
    let record: Report = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(Report::from_hl7(&built), Ok(record.clone()));
    assert_eq!(serde_json::to_value(&record).unwrap(), json);
    assert_eq!(
        record.pdf.data,
        b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    );
    assert_eq!(text(&built, "MSH-9").as_deref(), Some("ORU^R01^ORU_R01"));
    assert_eq!(text(&built, "MSH-10").as_deref(), Some("JSON-0001"));
    assert_eq!(text(&built, "PID-3[CX.5=MR].1").as_deref(), Some("D123456"));
    assert_eq!(text(&built, "PID-8").as_deref(), Some("M"), "male is M");
    assert_eq!(
        text(&built, "OBX[OBX-2=ED]-5.2").as_deref(),
        Some("application")
    );
}

#[test]
fn optional_fields_may_be_absent_or_null() {
    for change in [
        |r: &mut Value| {
            r["filler_id"] = Value::Null;
            r["patient"]["given"] = Value::Null;
        },
        |r: &mut Value| {
            let record = r.as_object_mut().unwrap();
            record.remove("filler_id");
            record["patient"].as_object_mut().unwrap().remove("given");
        },
    ] {
        let mut json = demo_report();
        change(&mut json);
        let bytes = build(&gw_demo::SPEC, "ORU^R01", &json, &header("2.4"))
            .unwrap_or_else(|e| panic!("{e}"));
        let built = Message::parse(&bytes).unwrap();
        let record = Report::from_hl7(&built).unwrap();
        assert_eq!(record.filler_id, None);
        assert_eq!(record.patient.given, None);
    }
}

#[test]
fn an_unknown_key_is_refused_by_name() {
    let error = demo_error(|r| r["colour"] = json!("blue"));
    assert!(
        error.starts_with("colour: unknown field `colour`, expected one of `patient`"),
        "{error}"
    );
    let error = demo_error(|r| r["patient"]["nickname"] = json!("JJ"));
    assert!(
        error.starts_with("patient.nickname: unknown field `nickname`"),
        "{error}"
    );
    let error = demo_error(|r| r["pdf"]["name"] = json!("report.pdf"));
    assert!(
        error.starts_with("pdf.name: unknown field `name`"),
        "{error}"
    );
}

#[test]
fn a_wrong_nhs_check_digit_is_refused_at_its_field() {
    let error = demo_error(|r| r["patient"]["nhs_number"] = json!("9449305553"));
    assert!(error.starts_with("patient.nhs_number: "), "{error}");
    assert!(error.contains("check digit"), "{error}");
}

#[test]
fn values_of_the_wrong_form_are_refused_at_their_field() {
    for (change, field, why) in [
        (
            (|r: &mut Value| r["patient"]["birth_date"] = json!("19700101")) as fn(&mut Value),
            "patient.birth_date: ",
            "YYYY-MM-DD",
        ),
        (
            |r| r["patient"]["sex"] = json!("M"),
            "patient.sex: ",
            "\"M\" is not a value of the sex map; expected one of: male, female, unknown, other",
        ),
        (
            |r| r["procedure"] = json!("XYZ"),
            "procedure: ",
            "is not a code of table procedure",
        ),
        (
            |r| r["patient"]["nhs_number"] = json!(9449305552_u64),
            "patient.nhs_number: ",
            "expected an NHS number as a string",
        ),
        (
            |r| r["pdf"]["media_type"] = json!("image/png"),
            "pdf: ",
            "the media type is not application/pdf",
        ),
        (
            |r| r["pdf"]["data"] = json!("not base64!"),
            "pdf: ",
            "not standard base64",
        ),
        (
            |r| {
                r.as_object_mut().unwrap().remove("placer_id");
            },
            "",
            "missing field `placer_id`",
        ),
    ] {
        let error = demo_error(change);
        assert!(error.starts_with(field), "{field}: {error}");
        assert!(error.contains(why), "{why}: {error}");
    }
}

#[test]
fn values_the_message_cannot_carry_are_refused_at_their_field() {
    // Longer than the spec's max_len: the message would be refused by its own receiver.
    let error = demo_error(|r| r["patient"]["mrn"] = json!("D".repeat(21)));
    assert!(error.starts_with("patient.mrn: "), "{error}");
    assert!(error.contains("at most 20"), "{error}");
    // An empty required text is absent in HL7.
    let error = demo_error(|r| r["placer_id"] = json!(""));
    assert!(error.starts_with("placer_id: "), "{error}");
    // An empty optional text would read back as absent, not as sent.
    let error = demo_error(|r| r["filler_id"] = json!(""));
    assert!(error.starts_with("filler_id: "), "{error}");
}

#[test]
fn an_undeclared_type_is_refused_listing_the_declared_ones() {
    let error = build(&gw_demo::SPEC, "ADT^A28", &demo_report(), &header("2.4"))
        .expect_err("ADT^A28 is inbound only");
    assert_eq!(
        error,
        "message type ADT^A28 is not declared outbound; declared: ORR^O02, ORU^R01"
    );
    let error = build(&gw_northwest::SPEC, "ORR^O02", &json!({}), &header("2.3"))
        .expect_err("northwest sends results only");
    assert_eq!(
        error,
        "message type ORR^O02 is not declared outbound; declared: ORU^R01"
    );
}

/// The northwest sample mapped to its record, and that record as JSON.
fn northwest_report() -> (ResultReport, Value) {
    let bytes = example("northwest/oru_r01_pdf.hl7");
    let sample = Message::parse(&bytes).unwrap();
    let record = ResultReport::from_hl7(&sample).unwrap_or_else(|e| panic!("{e:#?}"));
    let json = serde_json::to_value(&record).unwrap();
    (record, json)
}

#[test]
fn a_northwest_result_report_as_json_builds_its_oru_and_maps_back() {
    let (record, json) = northwest_report();
    assert_eq!(
        json["patient"]["phone_numbers"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(json["reported"], "2026-01-14T15:29:00");
    assert_eq!(
        serde_json::from_value::<ResultReport>(json.clone()).unwrap(),
        record
    );
    let bytes =
        build(&BUILDERS[1], "ORU^R01", &json, &header("2.3")).unwrap_or_else(|e| panic!("{e}"));
    let built = Message::parse(&bytes).unwrap();
    assert_eq!(ResultReport::from_hl7(&built), Ok(record));
    assert_eq!(
        text(&built, "MSH-9").as_deref(),
        Some("ORU^R01"),
        "no structure in v2.3"
    );
    assert_eq!(text(&built, "PID-13[2].1").as_deref(), Some("07700 900123"));
    assert_eq!(text(&built, "OBR-22").as_deref(), Some("20260114152900"));
}

#[test]
fn a_northwest_record_is_refused_like_the_demo_one() {
    let (_, json) = northwest_report();
    let build = |change: &dyn Fn(&mut Value)| {
        let mut json = json.clone();
        change(&mut json);
        build(&gw_northwest::SPEC, "ORU^R01", &json, &header("2.3")).expect_err("refused")
    };
    let error = build(&|r| r["patient"]["shoe_size"] = json!("9"));
    assert!(
        error.starts_with("patient.shoe_size: unknown field `shoe_size`"),
        "{error}"
    );
    let error = build(&|r| r["patient"]["nhs_number"] = json!("9449305553"));
    assert!(error.starts_with("patient.nhs_number: "), "{error}");
    assert!(error.contains("check digit"), "{error}");
    let error = build(&|r| r["patient"]["phone_numbers"] = json!("01204 555123"));
    assert!(error.starts_with("patient.phone_numbers: "), "{error}");
    let error = build(&|r| r["reported"] = json!("2026-01-14 15:29"));
    assert!(error.starts_with("reported: "), "{error}");
    let error = build(&|r| r["placer_id"] = json!("P".repeat(23)));
    assert!(error.starts_with("placer_id: "), "{error}");
    assert!(error.contains("at most 22"), "{error}");
}

#[test]
fn northwest_dates_and_times_keep_their_precision() {
    let (_, mut json) = northwest_report();
    json["patient"]["dob"] = json!("1985-03");
    json["performed"] = json!("2026-01-14T14:15:00.5+00:00");
    json["patient"]["phone_numbers"] = json!([]);
    json["patient"]["postcode"] = Value::Null;
    let bytes = build(&gw_northwest::SPEC, "ORU^R01", &json, &header("2.3"))
        .unwrap_or_else(|e| panic!("{e}"));
    let built = Message::parse(&bytes).unwrap();
    assert_eq!(text(&built, "PID-7").as_deref(), Some("198503"));
    assert_eq!(
        text(&built, "OBR-7").as_deref(),
        Some("20260114141500.5+0000")
    );
    let back = serde_json::to_value(ResultReport::from_hl7(&built).unwrap()).unwrap();
    assert_eq!(back, json);
}

/// Riverside (orders model on v2.5.1): the report both ways (its sample ORU^R01 maps to the
/// record, the record as JSON builds an ORU^R01 that maps back to it), and the order answer
/// is ORG^O20 with its v2.5.1 structure.
#[test]
fn riverside_reports_go_both_ways_and_orders_are_answered_with_org_o20() {
    let spec = gw_riverside::SPEC;
    let bytes = example("riverside/oru_r01_pdf.hl7");
    let sample = Message::parse(&bytes).unwrap();
    let json = spec
        .map_outbound("ORU^R01", &sample)
        .unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(json["procedure"], "COLON");
    assert_eq!(json["patient"]["nhs_number"], "9449305552");
    let built = build(&spec, "ORU^R01", &json, &header("2.5.1")).unwrap_or_else(|e| panic!("{e}"));
    let built = Message::parse(&built).unwrap();
    assert_eq!(text(&built, "MSH-9").as_deref(), Some("ORU^R01^ORU_R01"));
    assert_eq!(spec.map_outbound("ORU^R01", &built), Ok(json));

    let update = json!({
        "patient": { "nhs_number": "9449305552", "mrn": "RVH100234", "family": "HUGHES",
                     "given": "ELEANOR", "birth_date": "1981-02-14", "sex": "female" },
        "control": "accepted", "placer_id": "RIV-5001", "filler_id": "EMS-9101"
    });
    let answer =
        build(&spec, "ORG^O20", &update, &header("2.5.1")).unwrap_or_else(|e| panic!("{e}"));
    let answer = Message::parse(&answer).unwrap();
    assert_eq!(text(&answer, "MSH-9").as_deref(), Some("ORG^O20^ORG_O20"));
    assert_eq!(text(&answer, "ORC-1").as_deref(), Some("OK"));
    let error = build(&spec, "ORR^O02", &update, &header("2.5.1")).unwrap_err();
    assert_eq!(
        error,
        "message type ORR^O02 is not declared outbound; declared: ORG^O20, ORU^R01"
    );
}
