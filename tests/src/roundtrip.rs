//! What "parses and round-trips" means, for the fixture and corpus suites of the runtime
//! (`runtime/tests/fixtures.rs`, `runtime/tests/corpus.rs`).
//!
//! Only tests link this; an input that breaks the rule fails the test, hence `panic`.
#![allow(clippy::panic)]

use hl7gw_runtime::hl7::{Batch, Message, MessageBuilder, ParseError, ParseOptions, parse_batch};

/// The input with a UTF-8 BOM dropped, CRLF/LF turned into CR, blank lines removed and a
/// final CR: the canonical form a lenient parse must reproduce.
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

/// Rebuilds the whole input from a batch: envelope segments and messages in input order.
pub fn rebuild(batch: &Batch<'_>) -> Vec<u8> {
    let mut pieces: Vec<(usize, Vec<u8>)> = Vec::new();
    for e in &batch.envelope {
        let mut bytes = e.raw.to_vec();
        bytes.push(b'\r');
        pieces.push((e.offset, bytes));
    }
    for m in &batch.messages {
        pieces.push((m.byte_range().0, MessageBuilder::from_message(m).to_bytes()));
    }
    pieces.sort_by_key(|(offset, _)| *offset);
    pieces.into_iter().flat_map(|(_, b)| b).collect()
}

/// Decodes every leaf of a message; returns how many escape sequences were kept.
pub fn decode_all(message: &Message<'_>) -> usize {
    let mut kept = 0;
    for segment in message.segments() {
        for field in segment.fields() {
            for rep in field.repetitions() {
                for comp in rep.components() {
                    for sub in comp.subcomponents() {
                        let decoded = sub
                            .decode()
                            .unwrap_or_else(|e| panic!("decoding {}: {e}", segment.id()));
                        kept += decoded.kept.len();
                    }
                }
            }
        }
    }
    kept
}

/// A valid input: parses leniently, every leaf decodes, the rebuilt tree equals the
/// normalized input byte for byte, and the normalized form parses strictly to the same shape.
pub fn assert_valid(name: &str, input: &[u8]) -> usize {
    let batch = parse_batch(input, &ParseOptions::lenient())
        .unwrap_or_else(|e| panic!("{name}: should parse: {e}"));
    assert!(!batch.messages.is_empty(), "{name}: no message");
    for m in &batch.messages {
        decode_all(m);
    }
    let normalized = normalize(input);
    assert_eq!(
        String::from_utf8_lossy(&rebuild(&batch)),
        String::from_utf8_lossy(&normalized),
        "{name}: serialize(parse(m)) differs from m"
    );
    let strict = parse_batch(&normalized, &ParseOptions::default())
        .unwrap_or_else(|e| panic!("{name}: normalized form should parse strictly: {e}"));
    assert_eq!(strict.messages.len(), batch.messages.len(), "{name}");
    for (a, b) in strict.messages.iter().zip(&batch.messages) {
        assert_eq!(a.segment_count(), b.segment_count(), "{name}");
        assert_eq!(a.to_bytes(), b.to_bytes(), "{name}");
    }
    batch.messages.len()
}

/// A malformed input: both modes fail with an error that names a byte inside the input.
pub fn assert_malformed(name: &str, input: &[u8]) -> ParseError {
    let strict = parse_batch(input, &ParseOptions::default());
    let lenient = parse_batch(input, &ParseOptions::lenient());
    let err = match lenient {
        Ok(b) => panic!(
            "{name}: should be rejected, parsed {} message(s) leniently",
            b.messages.len()
        ),
        Err(e) => e,
    };
    assert!(strict.is_err(), "{name}: strict parse accepted it");
    assert!(
        err.offset <= input.len(),
        "{name}: offset {} past the end",
        err.offset
    );
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("byte {}: ", err.offset)),
        "{text}"
    );
    assert!(
        !text.contains('\n'),
        "{name}: error must be one line: {text:?}"
    );
    err
}
