//! The project's own HL7 fixtures: valid ones parse and round-trip, malformed ones fail at
//! the expected byte. These stand alone, without the shared corpus.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use hl7gw_runtime::hl7::{Charset, Message, ParseErrorKind, ParseOptions, Path, parse_batch};
use hl7gw_tests::roundtrip;

fn fixture(rel: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_valid_fixture_parses_and_round_trips() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/valid");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        roundtrip::assert_valid(&name, &std::fs::read(&path).unwrap());
        count += 1;
    }
    assert!(count >= 7, "only {count} valid fixtures");
}

#[test]
fn every_malformed_fixture_fails_at_its_byte() {
    let expected: &[(&str, usize, &str)] = &[
        ("empty.hl7", 0, "empty input"),
        ("not_hl7.hl7", 0, "expected MSH"),
        ("ascii_with_high_byte.hl7", 63, "not valid ASCII"),
        ("utf8_default_invalid.hl7", 49, "MSH-18 is empty"),
        (
            "unsupported_charset.hl7",
            44,
            "\"UNICODE\" is not supported",
        ),
        ("nul_in_data.hl7", 44, "control byte 0x00"),
        ("bad_segment_id.hl7", 36, "segment identifier"),
        ("no_version.hl7", 31, "MSH-12 (version) is empty"),
        ("bad_version.hl7", 32, "not an HL7 v2 version"),
        ("bts_count_mismatch.hl7", 73, "says 5"),
        ("two_encoding_chars.hl7", 4, "found 2"),
    ];
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/malformed");
    let on_disk = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(
        on_disk,
        expected.len(),
        "every malformed fixture needs an expectation"
    );
    for (name, offset, words) in expected {
        let err = roundtrip::assert_malformed(name, &fixture(&format!("malformed/{name}")));
        assert_eq!(err.offset, *offset, "{name}: {err}");
        assert!(err.to_string().contains(words), "{name}: {err}");
    }
}

#[test]
fn strict_mode_names_the_first_line_feed() {
    let input = fixture("valid/adt_a40_lf_bom.hl7");
    let err = Message::parse(&input).unwrap_err();
    assert!(matches!(err.kind, ParseErrorKind::LineEnding(_)));
    let first_lf = input.iter().position(|&b| b == b'\n').unwrap();
    assert_eq!(err.offset, first_lf);
    let lenient = Message::parse_with(&input, &ParseOptions::lenient()).unwrap();
    assert_eq!(lenient.segment_count(), 4);
    assert_eq!(lenient.message_code(), "ADT");
}

#[test]
fn latin1_values_decode_to_the_right_characters() {
    let input = fixture("valid/latin1_8859_1.hl7");
    let msg = Message::parse(&input).unwrap();
    assert_eq!(msg.charset(), Charset::Latin1);
    let name = Path::parse("PID-5").unwrap().find_first(&msg).unwrap();
    assert_eq!(name.span.text().unwrap(), "Müller^Zoë");
}

#[test]
fn custom_delimiters_and_truncation_character() {
    let input = fixture("valid/v27_custom_delimiters.hl7");
    let msg = Message::parse(&input).unwrap();
    let d = msg.delimiters();
    assert_eq!(
        (d.field, d.component, d.truncation),
        (b'#', b'$', Some(b'@'))
    );
    let second_id = Path::parse("PID-3[2].1").unwrap().find_first(&msg).unwrap();
    assert_eq!(second_id.span.text().unwrap(), "ID2");
    let null = Path::parse("PID-5").unwrap().find_first(&msg).unwrap();
    assert!(null.span.is_null());
    let text = Path::parse("PID-6.1.1").unwrap().find_first(&msg).unwrap();
    assert_eq!(text.span.text().unwrap(), "A@B!C");
}

#[test]
fn escapes_in_an_order_note_decode() {
    let input = fixture("valid/orm_o01_escapes.hl7");
    let msg = Message::parse(&input).unwrap();
    let note = Path::parse("NTE-3").unwrap().find_first(&msg).unwrap();
    assert_eq!(
        note.span.text().unwrap(),
        "Symptoms: change in bowel habit & weight loss\rSecond line | with a pipe"
    );
}

#[test]
fn the_pdf_payload_is_borrowed_from_the_input() {
    let input = fixture("valid/oru_r01_pdf.hl7");
    let msg = Message::parse(&input).unwrap();
    let pdf = Path::parse("OBX[OBX-2=ED]-5.5")
        .unwrap()
        .find_first(&msg)
        .unwrap();
    let range = input.as_ptr_range();
    assert!(
        range.contains(&pdf.span.raw().as_ptr()),
        "payload was copied"
    );
    assert!(pdf.span.raw().starts_with(b"JVBER"));
    assert_eq!(pdf.location.to_string(), "OBX[2]-5.5");
}

#[test]
fn batch_file_yields_its_messages_in_order() {
    let input = fixture("valid/batch_file.hl7");
    let batch = parse_batch(&input, &ParseOptions::default()).unwrap();
    let ids: Vec<_> = batch
        .messages
        .iter()
        .map(|m| m.control_id().into_owned())
        .collect();
    assert_eq!(ids, ["B1", "B2"]);
    // A single-message parse refuses it rather than reading only part.
    assert!(Message::parse(&input).is_err());
}
