//! The invariants the fuzz targets check, written once and shared:
//!
//! * the cargo-fuzz targets in `fuzz/fuzz_targets/` call these through the `hl7gw_fuzz` crate;
//! * `runtime/tests/fuzz_regressions.rs` includes this file with `#[path]` and replays every
//!   saved input through [`all`], so the regressions run under a plain `cargo test`.
//!
//! Every function takes arbitrary bytes and panics only when the runtime breaks a promise:
//! a parser may refuse any input, but with a one-line error that names a byte inside it;
//! whatever it accepts must keep every byte, rebuild to the same bytes, re-parse strictly
//! and be answerable with an ACK that reads back.

use hl7gw_runtime::hl7::{
    AckCode, AckError, AckRequest, Batch, Charset, Delimiters, Encoding, LineEndings, Message,
    MessageBuilder, ParseError, ParseOptions, Path, Severity, Span, build_ack, escape, parse_batch,
    read_ack,
};

/// Runs every check on one input (what the regression test does with each saved file).
pub fn all(data: &[u8]) {
    parse_message(data);
    parse_batch_input(data);
    path(data);
    escape_round_trip(data);
}

/// The option sets every parser target tries: strict, lenient, and lenient with latin1 as
/// the charset assumed when MSH-18 is empty.
fn option_sets() -> [ParseOptions; 3] {
    [
        ParseOptions::default(),
        ParseOptions::lenient(),
        ParseOptions {
            line_endings: LineEndings::Lenient,
            default_charset: Charset::Latin1,
        },
    ]
}

/// Strict line endings with the same default charset.
fn strict_like(options: &ParseOptions) -> ParseOptions {
    ParseOptions {
        line_endings: LineEndings::Strict,
        default_charset: options.default_charset,
    }
}

/// Target `parse_message`: `Message::parse_with` in every mode.
pub fn parse_message(data: &[u8]) {
    let mut strict_bytes = None;
    for options in option_sets() {
        match Message::parse_with(data, &options) {
            Ok(message) => {
                check_message(&message, &options);
                let rebuilt = MessageBuilder::from_message(&message).to_bytes();
                assert_eq!(
                    Shown(&rebuilt),
                    Shown(&normalize(data)),
                    "an accepted message must keep every byte of the input (options {options:?})"
                );
                // One message parses as a batch of one, to the same bytes.
                let batch = parse_batch(data, &options).unwrap_or_else(|e| {
                    panic!("Message::parse_with accepted the input but parse_batch says: {e}")
                });
                assert_eq!(batch.messages.len(), 1, "one message, one batch entry");
                assert!(batch.envelope.is_empty(), "no envelope in a single message");
                assert_eq!(Shown(&batch.messages[0].to_bytes()), Shown(&rebuilt));
                if options.line_endings == LineEndings::Strict {
                    strict_bytes = Some(rebuilt);
                }
            }
            Err(e) => {
                check_error(&e, data);
                assert!(
                    strict_bytes.is_none() || options.default_charset != Charset::Utf8,
                    "strict parsing accepted the input but lenient parsing refuses it: {e}"
                );
            }
        }
    }
}

/// Target `parse_batch`: `parse_batch` in every mode.
pub fn parse_batch_input(data: &[u8]) {
    let mut strict_count = None;
    for options in option_sets() {
        match parse_batch(data, &options) {
            Ok(batch) => {
                check_batch(&batch, data, &options);
                if options.line_endings == LineEndings::Strict {
                    strict_count = Some(batch.messages.len());
                } else if options.default_charset == Charset::Utf8
                    && let Some(n) = strict_count
                {
                    assert_eq!(n, batch.messages.len(), "strict and lenient split differ");
                }
            }
            Err(e) => {
                check_error(&e, data);
                assert!(
                    strict_count.is_none() || options.default_charset != Charset::Utf8,
                    "strict parse_batch accepted the input but lenient refuses it: {e}"
                );
            }
        }
    }
}

fn check_batch(batch: &Batch<'_>, data: &[u8], options: &ParseOptions) {
    assert!(
        !batch.messages.is_empty(),
        "an accepted batch holds a message"
    );
    let mut pieces: Vec<(usize, Vec<u8>)> = Vec::new();
    for e in &batch.envelope {
        assert!(
            matches!(e.id(), "FHS" | "BHS" | "BTS" | "FTS"),
            "envelope segment {:?}",
            e.id()
        );
        assert_eq!(data.get(e.offset..e.offset + e.raw.len()), Some(e.raw));
        let mut bytes = e.raw.to_vec();
        bytes.push(b'\r');
        pieces.push((e.offset, bytes));
    }
    let mut last_end = 0;
    for m in &batch.messages {
        let (start, end) = m.byte_range();
        assert!(start >= last_end && end <= data.len(), "messages overlap");
        last_end = end;
        check_message(m, options);
        pieces.push((start, MessageBuilder::from_message(m).to_bytes()));
    }
    pieces.sort_by_key(|(offset, _)| *offset);
    let rebuilt: Vec<u8> = pieces.into_iter().flat_map(|(_, b)| b).collect();
    assert_eq!(
        Shown(&rebuilt),
        Shown(&normalize(data)),
        "an accepted batch must keep every segment (options {options:?})"
    );
    if batch.envelope.is_empty() && batch.messages.len() == 1 {
        let single = Message::parse_with(data, options).unwrap_or_else(|e| {
            panic!("parse_batch found one plain message but Message::parse_with says: {e}")
        });
        assert_eq!(single.segment_count(), batch.messages[0].segment_count());
    }
}

/// A refusal is one line and names a byte of the input (or its end).
fn check_error(e: &ParseError, data: &[u8]) {
    assert!(
        e.offset <= data.len(),
        "error offset {} past the input ({} bytes): {e}",
        e.offset,
        data.len()
    );
    let text = e.to_string();
    assert!(
        !text.contains(['\r', '\n']),
        "an error is one line: {text:?}"
    );
}

/// Everything an accepted message must support.
fn check_message(message: &Message<'_>, options: &ParseOptions) {
    let input = message.input();
    let escape_char = message.delimiters().escape;
    let mut segments = 0;
    for segment in message.segments() {
        segments += 1;
        assert_eq!(segment.id().len(), 3, "segment id {:?}", segment.id());
        let mut fields = 0;
        for field in segment.fields() {
            fields += 1;
            check_span(&field, input, escape_char);
            for rep in field.repetitions() {
                check_span(&rep, input, escape_char);
                for comp in rep.components() {
                    check_span(&comp, input, escape_char);
                    for sub in comp.subcomponents() {
                        check_span(&sub, input, escape_char);
                    }
                }
            }
        }
        assert_eq!(fields, segment.field_count());
    }
    assert_eq!(segments, message.segment_count());
    // Parsing checks that MSH-9.1 is not empty as written; `message_code` is "" only when
    // those bytes do not decode in the message's charset (e.g. `\XC3\` in UTF-8).
    let msh9_decodes = message
        .msh()
        .field(9)
        .and_then(|f| f.repetition(1))
        .and_then(|r| r.component(1))
        .is_some_and(|c| c.text().is_ok());
    assert_eq!(
        message.message_code().is_empty(),
        !msh9_decodes,
        "MSH-9.1 was checked at parse time"
    );
    let _ = (
        message.trigger_event(),
        message.control_id(),
        message.processing_id(),
        message.version_number(),
    );

    // The builder copy is byte-for-byte the canonical form.
    let bytes = message.to_bytes();
    let built = MessageBuilder::from_message(message).to_bytes();
    assert_eq!(Shown(&built), Shown(&bytes), "builder copy differs");

    // The canonical form parses strictly, to the same shape.
    let strict = strict_like(options);
    let again = Message::parse_with(&bytes, &strict)
        .unwrap_or_else(|e| panic!("the canonical bytes of an accepted message fail: {e}"));
    assert_eq!(again.segment_count(), message.segment_count());
    assert_eq!(Shown(&again.to_bytes()), Shown(&bytes));
    assert_eq!(again.encoding(), message.encoding());

    check_paths(message);
    check_ack(message, &strict);
}

/// A span's bytes are where its offset says, and what decoding keeps is an escape sequence.
fn check_span(span: &Span<'_>, input: &[u8], escape_char: u8) {
    let raw = span.raw();
    assert_eq!(
        input.get(span.offset()..span.offset() + raw.len()),
        Some(raw),
        "a span's offset must point at its bytes"
    );
    if let Ok(decoded) = span.decode() {
        for kept in &decoded.kept {
            assert_eq!(raw.get(kept.at), Some(&escape_char), "kept escape {kept:?}");
        }
    }
}

const SAMPLE_PATHS: [&str; 6] = [
    "MSH-9.3",
    "PID-3[CX.5=NH].1",
    "OBX[OBX-2=ED]-5.5",
    "PID-5.1.2",
    "OBX[2]-5[2]",
    "ZZZ-1",
];

fn check_paths(message: &Message<'_>) {
    for text in SAMPLE_PATHS {
        let Ok(path) = Path::parse(text) else {
            panic!("sample path {text} does not parse");
        };
        for hit in path.find_all(message) {
            let _ = hit.span.decode();
            let _ = hit.location.to_string();
        }
        let _ = path.find_first(message);
    }
}

fn check_ack(message: &Message<'_>, strict: &ParseOptions) {
    let codes = [
        AckCode::ApplicationAccept,
        AckCode::ApplicationError,
        AckCode::CommitReject,
    ];
    let control = message.control_id();
    let errors = [
        AckError {
            code: 103,
            severity: Severity::Error,
            location: Path::parse("PID-3[2].4.1")
                .ok()
                .map(|p| p.nominal_location()),
            message: format!("control id {control} | with ^ delimiters ~ & \\ in it"),
        },
        AckError {
            code: 999,
            severity: Severity::Warning,
            location: None,
            message: String::new(),
        },
    ];
    for (i, code) in codes.into_iter().enumerate() {
        let request = AckRequest {
            code,
            control_id: if i == 0 { "ACK1" } else { &control },
            timestamp: "20240101120000+0000",
            errors: if i == 0 { &[] } else { &errors },
        };
        let Ok(ack) = build_ack(message, &request) else {
            continue; // refusing (a charset that cannot carry the text) is fine
        };
        let parsed = Message::parse_with(&ack, strict).unwrap_or_else(|e| {
            panic!(
                "the ACK built for an accepted message does not parse: {e}\n{}",
                String::from_utf8_lossy(&ack)
            )
        });
        let receipt = read_ack(&parsed)
            .unwrap_or_else(|e| panic!("the ACK built for an accepted message is unreadable: {e}"));
        assert_eq!(receipt.code, code, "MSA-1 reads back");
        assert_eq!(receipt.control_id, control, "MSA-2 echoes MSH-10");
        assert_eq!(
            receipt.errors.len(),
            request.errors.len(),
            "every reported error reads back"
        );
        let modern = message.version_number() >= (2, 5, 0);
        for (sent, got) in request.errors.iter().zip(&receipt.errors) {
            assert_eq!(got.code, Some(sent.code), "ERR code reads back");
            if modern {
                assert_eq!(got.message, sent.message, "ERR-8 reads back");
                assert_eq!(got.severity, Some(sent.severity), "ERR-4 reads back");
                assert_eq!(got.location, sent.location, "ERR-2 reads back");
            }
        }
        if !modern && !request.errors.is_empty() {
            let joined: Vec<&str> = request.errors.iter().map(|e| e.message.as_str()).collect();
            assert_eq!(receipt.text, joined.join("; "), "MSA-3 reads back");
        }
    }
}

/// Target `path`: parse, print, parse again to the same path; evaluate; write by path.
pub fn path(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = match Path::parse(&text) {
        Ok(path) => path,
        Err(e) => {
            assert!(
                e.position >= 1 && e.position <= text.chars().count() + 1,
                "error position {} outside the path: {e}",
                e.position
            );
            assert!(!e.message.is_empty(), "an error says what was expected");
            return;
        }
    };
    let printed = path.to_string();
    assert_eq!(
        Path::parse(&printed).as_ref(),
        Ok(&path),
        "path {text:?} printed as {printed:?} must parse back to itself"
    );
    assert_eq!(path.to_string(), printed);
    // The location a path names prints as a path that names the same location.
    let nominal = path.nominal_location();
    let location_text = nominal.to_string();
    assert_eq!(
        Path::parse(&location_text).map(|p| p.nominal_location()),
        Ok(nominal),
        "location {location_text:?} of path {printed:?}"
    );
    let _ = path.has_filter();

    let sample = sample_message();
    if let Ok(message) = Message::parse(sample.as_bytes()) {
        for hit in path.find_all(&message) {
            let _ = hit.span.decode();
        }
        let _ = path.find_first(&message);
    }

    // Writing by path: a value set as text reads back as the same text. Indexes are capped
    // so one input cannot build a message of gigabytes.
    let small = path.field <= 300
        && path.component.unwrap_or(1) <= 300
        && path.subcomponent.unwrap_or(1) <= 300
        && !matches!(
            path.segment_selector,
            Some(hl7gw_runtime::hl7::SegmentSelector::Occurrence(n)) if n > 300
        )
        && !matches!(
            path.repetition,
            Some(hl7gw_runtime::hl7::RepetitionSelector::Index(n)) if n > 300
        );
    let header_like = matches!(&*path.segment, "MSH" | "FHS" | "BHS" | "BTS" | "FTS");
    // A filtered write also writes the filter's value; when the write lands on a level that
    // contains (or is) the filter's target, reading back the whole level cannot return the
    // written text alone, so only exact-leaf writes are compared.
    let filter_overlaps = match (&path.segment_selector, &path.repetition) {
        (_, Some(hl7gw_runtime::hl7::RepetitionSelector::Where(f))) => {
            path.component.is_none_or(|c| c == f.component)
        }
        (Some(hl7gw_runtime::hl7::SegmentSelector::Where(f)), _) => f.field == path.field,
        _ => false,
    };
    if small && !header_like && !filter_overlaps {
        let mut builder = MessageBuilder::new(Encoding::default());
        let value = "a|b^c~d\\e&f\r\n#é";
        let header = ["MSH-9.1", "MSH-12"].map(|p| Path::parse(p).ok());
        if let [Some(p9), Some(p12)] = header {
            let ok = builder.set(&p9, "ADT").is_ok()
                && builder.set(&p12, "2.5").is_ok()
                && builder.set(&path, value).is_ok();
            if ok {
                let bytes = builder.to_bytes();
                let message = Message::parse(&bytes).unwrap_or_else(|e| {
                    panic!(
                        "a message built by path {printed} does not parse: {e}\n{}",
                        String::from_utf8_lossy(&bytes)
                    )
                });
                let hit = path.find_first(&message).map(|h| h.span.text());
                assert!(
                    matches!(&hit, Some(Ok(t)) if t == value),
                    "value written at {printed} reads back as {hit:?}"
                );
            }
        }
    }
}

fn sample_message() -> String {
    [
        "MSH|^~\\&|APP|FAC|EMS|EMS|20240101||ORU^R01^ORU_R01|42|P|2.5",
        "PID|1||123^^^HOSP^MR~9449305552^^^NHS^NH||SMITH^JOHN&J",
        "OBX|1|TX|||first",
        "OBX|2|ED|||^application^pdf^Base64^JVBERi0=~x",
        "",
    ]
    .join("\r")
}

/// Target `escape`: bytes decode without panicking in every charset; text encodes and
/// decodes back to itself; an encoded value survives a trip through the parser.
pub fn escape_round_trip(data: &[u8]) {
    let truncating = Delimiters {
        truncation: Some(b'#'),
        ..Delimiters::default()
    };
    let unusual = Delimiters {
        field: b'#',
        component: b'$',
        repetition: b'%',
        escape: b'*',
        subcomponent: b'!',
        truncation: Some(b'@'),
    };
    let delimiter_sets = [Delimiters::default(), truncating, unusual];
    let charsets = [Charset::Utf8, Charset::Latin1, Charset::Ascii];

    for d in &delimiter_sets {
        for cs in charsets {
            if let Ok(decoded) = escape::decode(data, d, cs) {
                for kept in &decoded.kept {
                    assert_eq!(data.get(kept.at), Some(&d.escape), "kept escape {kept:?}");
                }
            }
        }
    }

    let text = String::from_utf8_lossy(data);
    for d in &delimiter_sets {
        for cs in charsets {
            let Ok(encoded) = escape::encode(&text, d, cs) else {
                assert!(cs != Charset::Utf8, "UTF-8 can encode any text: {text:?}");
                continue;
            };
            for (i, &b) in encoded.iter().enumerate() {
                assert!(
                    !(b < 0x20 || b == 0x7F),
                    "encoded value holds control byte 0x{b:02X} at {i}"
                );
                assert!(
                    b == d.escape || !d.is_special(b),
                    "encoded value holds delimiter {:?} at {i}",
                    char::from(b)
                );
            }
            let decoded = escape::decode(&encoded, d, cs)
                .unwrap_or_else(|e| panic!("encoded text does not decode: {e}"));
            assert_eq!(decoded.text, text, "encode then decode ({cs:?}, {d:?})");
            assert!(
                decoded.kept.is_empty(),
                "encoded text kept {:?}",
                decoded.kept
            );
        }
    }

    // The encoded value inside a real message reads back through the parser.
    if let Ok(encoded) = escape::encode(&text, &Delimiters::default(), Charset::Utf8) {
        let mut message = b"MSH|^~\\&|||||||ADT^A01|1|P|2.5\rZZZ|".to_vec();
        message.extend_from_slice(&encoded);
        message.push(b'\r');
        let parsed = Message::parse(&message)
            .unwrap_or_else(|e| panic!("a message holding an encoded value fails: {e}"));
        let value = parsed
            .segment(1)
            .and_then(|s| s.field(1))
            .map(|f| f.text().map(|t| t.into_owned()));
        assert_eq!(
            value,
            Some(Ok(text.into_owned())),
            "encoded value via the parser"
        );
    }
}

/// The canonical form of an input: UTF-8 BOM dropped, CR/LF/CRLF turned into CR, blank lines
/// removed, a final CR. Any accepted input rebuilds to exactly this.
pub fn normalize(input: &[u8]) -> Vec<u8> {
    let body = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    let mut out = Vec::with_capacity(body.len() + 1);
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if b == b'\r' || b == b'\n' {
            if b == b'\r' && body.get(i + 1) == Some(&b'\n') {
                i += 1;
            }
            if !out.is_empty() && out.last() != Some(&b'\r') {
                out.push(b'\r');
            }
        } else {
            out.push(b);
        }
        i += 1;
    }
    if !out.is_empty() && out.last() != Some(&b'\r') {
        out.push(b'\r');
    }
    out
}

/// Bytes shown as text in assertion failures.
#[derive(PartialEq, Eq)]
struct Shown<'b>(&'b [u8]);

impl std::fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.0))
    }
}
