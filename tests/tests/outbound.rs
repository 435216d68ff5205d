//! Both directions from one definition: a typed record the gateway builds into an outbound
//! message (`to_hl7`) reads back into the same record, and the message is what a Trust's
//! engine expects (ORU^R01 with the PDF in an ED-typed OBX-5).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hl7gw_runtime::hl7::{Message, Path};
use hl7gw_runtime::mapping::OutboundHeader;

const ORU: &str = "MSH|^~\\&|EMS|EMS-HOST|TIE|DEMO-TRUST|20260101130000||ORU^R01^ORU_R01|ORU-1|T|2.4\r\
PID|1||9449305552^^^NHS^NH~D123456^^^DEMO^MR||SMITH^JOHN||19700101|F\r\
OBR|1|PLC-1001|FIL-2002|COL^Colonoscopy^LOCAL\r\
OBX|1|TX|NOTE||free text\r\
OBX|2|ED|PDF||^application^pdf^Base64^JVBERi0xLjQKJSVFT0YK\r";

fn header(version: &str) -> OutboundHeader<'_> {
    OutboundHeader {
        sending_application: "EMS",
        sending_facility: "EMS-HOST",
        receiving_application: "TIE",
        receiving_facility: "DEMO-TRUST",
        timestamp: "20260101130500+0000",
        control_id: "ORU-0002",
        processing_id: "T",
        version,
    }
}

#[test]
fn a_report_round_trips_through_its_oru() {
    let source = Message::parse(ORU.as_bytes()).unwrap();
    let report = gw_demo::records::Report::from_hl7(&source).unwrap();
    assert_eq!(report.pdf.data, b"%PDF-1.4\n%%EOF\n");
    let bytes = report.to_hl7(&header("2.4")).unwrap();
    let built = Message::parse(&bytes).unwrap();
    assert_eq!(gw_demo::records::Report::from_hl7(&built).unwrap(), report);
    let text = |p: &str| {
        Path::parse(p)
            .unwrap()
            .find_first(&built)
            .map(|h| h.span.text().unwrap().into_owned())
    };
    assert_eq!(text("MSH-9").as_deref(), Some("ORU^R01^ORU_R01"));
    assert_eq!(text("MSH-10").as_deref(), Some("ORU-0002"));
    assert_eq!(built.header_text(18, 1), "", "no UNICODE UTF-8 before v2.5");
    assert_eq!(text("OBX[OBX-2=ED]-5.2").as_deref(), Some("application"));
    assert_eq!(text("OBX[OBX-2=ED]-5.3").as_deref(), Some("pdf"));
    assert_eq!(text("OBX[OBX-2=ED]-5.4").as_deref(), Some("Base64"));
    assert_eq!(text("PID-3[CX.5=NH].1").as_deref(), Some("9449305552"));
    assert_eq!(text("PID-8").as_deref(), Some("F"));
}

#[test]
fn msh_18_says_utf_8_exactly_when_the_text_is_not_ascii() {
    let source = Message::parse(ORU.as_bytes()).unwrap();
    let mut report = gw_demo::records::Report::from_hl7(&source).unwrap();
    for version in ["2.4", "2.5.1"] {
        let built = report.to_hl7(&header(version)).unwrap();
        let built = Message::parse(&built).unwrap();
        assert_eq!(
            built.header_text(18, 1),
            "",
            "v{version}: ASCII needs no MSH-18"
        );
    }
    report.patient.family = "BRONTË".into();
    let bytes = report.to_hl7(&header("2.4")).unwrap();
    let built = Message::parse(&bytes).unwrap();
    assert_eq!(built.header_text(18, 1), "UNICODE UTF-8");
    assert_eq!(gw_demo::records::Report::from_hl7(&built).unwrap(), report);
}

#[test]
fn built_messages_number_their_set_ids() {
    let source = Message::parse(ORU.as_bytes()).unwrap();
    let report = gw_demo::records::Report::from_hl7(&source).unwrap();
    let bytes = report.to_hl7(&header("2.4")).unwrap();
    let built = Message::parse(&bytes).unwrap();
    let text = |p: &str| {
        Path::parse(p)
            .unwrap()
            .find_first(&built)
            .map(|h| h.span.text().unwrap().into_owned())
    };
    for path in ["PID-1", "OBR-1", "OBX-1"] {
        assert_eq!(text(path).as_deref(), Some("1"), "{path}");
    }
}
