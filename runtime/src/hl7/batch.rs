//! Batches and files: `[FHS] {BHS {MSH…} BTS} [FTS]`, or plain messages one after another.
//!
//! The envelope is checked, not guessed: a segment outside any message, a batch opened inside
//! another, a missing trailer or a trailer count that disagrees is an error naming its byte.

use super::delimiters::Delimiters;
use super::error::{ParseError, ParseErrorKind};
use super::message::{
    Bounds, Message, ParseOptions, check_segment_id_and_bytes, preview, segment_id, split_segments,
};

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// An envelope segment (FHS, BHS, BTS, FTS) as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvelopeSegment<'a> {
    /// The segment's bytes, terminator excluded.
    pub raw: &'a [u8],
    /// Its byte offset in the input.
    pub offset: usize,
}

impl EnvelopeSegment<'_> {
    /// `FHS`, `BHS`, `BTS` or `FTS`.
    pub fn id(&self) -> &str {
        std::str::from_utf8(self.raw.get(..3).unwrap_or_default()).unwrap_or_default()
    }
}

/// The messages of a batch or file, with the envelope segments that surrounded them.
#[derive(Debug, Clone)]
pub struct Batch<'a> {
    /// The messages in order.
    pub messages: Vec<Message<'a>>,
    /// FHS/BHS/BTS/FTS segments in order (empty for plain concatenated messages).
    pub envelope: Vec<EnvelopeSegment<'a>>,
}

struct OpenBatch {
    offset: usize,
    messages: usize,
}

/// Splits an input holding one message, several messages, a batch or a file into messages.
pub fn parse_batch<'a>(input: &'a [u8], options: &ParseOptions) -> Result<Batch<'a>, ParseError> {
    let has_bom = input.starts_with(UTF8_BOM);
    let start = if has_bom { 3 } else { 0 };
    let lines = split_segments(input, start, options.line_endings)?;

    let mut batch = Batch {
        messages: Vec::new(),
        envelope: Vec::new(),
    };
    let mut current: Vec<Bounds> = Vec::new();
    let mut file_open: Option<usize> = None;
    let mut file_closed: Option<usize> = None;
    let mut open_batch: Option<OpenBatch> = None;
    let mut batches_in_file = 0usize;
    // The field separator the FHS/BHS declared; trailers must use the same.
    let mut envelope_separator: Option<u8> = None;

    let flush = |current: &mut Vec<Bounds>,
                 batch: &mut Batch<'a>,
                 open_batch: &mut Option<OpenBatch>|
     -> Result<(), ParseError> {
        if current.is_empty() {
            return Ok(());
        }
        // A byte-order mark declares the whole input UTF-8, so it binds every message.
        let message = Message::from_segments(input, std::mem::take(current), options, has_bom)?;
        batch.messages.push(message);
        if let Some(open) = open_batch {
            open.messages += 1;
        }
        Ok(())
    };

    for (index, line) in lines.iter().enumerate() {
        if let Some(closed) = file_closed {
            return Err(batch_error(
                line.start,
                format!("segment after the file trailer FTS at byte {closed}"),
            ));
        }
        let envelope = EnvelopeSegment {
            raw: &input[line.start..line.end],
            offset: line.start,
        };
        if matches!(segment_id(input, line), b"FHS" | b"BHS" | b"BTS" | b"FTS") {
            check_envelope(input, line, &mut envelope_separator, options)?;
        }
        match segment_id(input, line) {
            b"FHS" => {
                if index != 0 {
                    return Err(batch_error(
                        line.start,
                        "FHS (file header) must be the first segment".into(),
                    ));
                }
                file_open = Some(line.start);
                batch.envelope.push(envelope);
            }
            b"BHS" => {
                flush(&mut current, &mut batch, &mut open_batch)?;
                if let Some(open) = &open_batch {
                    return Err(batch_error(
                        line.start,
                        format!(
                            "BHS opens a batch while the batch opened at byte {} is still open (no BTS)",
                            open.offset
                        ),
                    ));
                }
                if file_open.is_none() && !batch.messages.is_empty() {
                    return Err(batch_error(
                        line.start,
                        "BHS after messages that belong to no batch".into(),
                    ));
                }
                open_batch = Some(OpenBatch {
                    offset: line.start,
                    messages: 0,
                });
                batch.envelope.push(envelope);
            }
            b"BTS" => {
                flush(&mut current, &mut batch, &mut open_batch)?;
                let Some(open) = open_batch.take() else {
                    return Err(batch_error(
                        line.start,
                        "BTS without a BHS before it".into(),
                    ));
                };
                check_count(
                    &envelope,
                    open.messages,
                    "BTS-1 (batch message count)",
                    "messages",
                )?;
                batches_in_file += 1;
                batch.envelope.push(envelope);
            }
            b"FTS" => {
                flush(&mut current, &mut batch, &mut open_batch)?;
                if let Some(open) = &open_batch {
                    return Err(batch_error(
                        line.start,
                        format!(
                            "FTS while the batch opened at byte {} has no BTS",
                            open.offset
                        ),
                    ));
                }
                if file_open.is_none() {
                    return Err(batch_error(line.start, "FTS without an FHS".into()));
                }
                check_count(
                    &envelope,
                    batches_in_file,
                    "FTS-1 (file batch count)",
                    "batches",
                )?;
                file_closed = Some(line.start);
                batch.envelope.push(envelope);
            }
            b"MSH" => {
                flush(&mut current, &mut batch, &mut open_batch)?;
                if file_open.is_some() && open_batch.is_none() {
                    return Err(batch_error(
                        line.start,
                        "MSH inside a file (FHS) but outside a batch (BHS…BTS)".into(),
                    ));
                }
                current.push(*line);
            }
            other => {
                if index == 0 {
                    return Err(ParseError::new(
                        line.start,
                        ParseErrorKind::NotHl7(format!(
                            "expected MSH (or FHS/BHS) at the start, found {:?}",
                            preview(envelope.raw)
                        )),
                    ));
                }
                if current.is_empty() {
                    return Err(batch_error(
                        line.start,
                        format!(
                            "segment {:?} is outside any message (no MSH before it)",
                            preview(other)
                        ),
                    ));
                }
                current.push(*line);
            }
        }
    }
    flush(&mut current, &mut batch, &mut open_batch)?;
    if let Some(open) = open_batch {
        return Err(batch_error(
            input.len(),
            format!("the batch opened at byte {} has no BTS", open.offset),
        ));
    }
    if let (Some(opened), None) = (file_open, file_closed) {
        return Err(batch_error(
            input.len(),
            format!("the file opened at byte {opened} has no FTS"),
        ));
    }
    if batch.messages.is_empty() {
        return Err(batch_error(
            start,
            "no MSH segment: the input holds no message".into(),
        ));
    }
    Ok(batch)
}

/// Envelope segments get the same byte checks as message segments: the header's delimiters
/// are read like MSH's, trailers must use the header's field separator, and no control bytes
/// or bytes invalid in the default charset may hide in them.
fn check_envelope(
    input: &[u8],
    line: &Bounds,
    separator: &mut Option<u8>,
    options: &ParseOptions,
) -> Result<(), ParseError> {
    let raw = &input[line.start..line.end];
    let sep = match &raw[..3] {
        b"FHS" | b"BHS" => {
            let (d, _) = Delimiters::from_header(raw, line.start)?;
            *separator = Some(d.field);
            d.field
        }
        _ => match raw.get(3) {
            None => separator.unwrap_or(b'|'),
            Some(&b) => {
                let expected = separator.unwrap_or(b'|');
                if b != expected {
                    return Err(batch_error(
                        line.start + 3,
                        format!(
                            "{} uses field separator {:?}, but the header declared {:?}",
                            String::from_utf8_lossy(&raw[..3]),
                            char::from(b),
                            char::from(expected)
                        ),
                    ));
                }
                b
            }
        },
    };
    check_segment_id_and_bytes(input, line, sep)?;
    if let Some(at) = options.default_charset.first_invalid_byte(raw) {
        return Err(ParseError::new(
            line.start + at,
            super::error::ParseErrorKind::Charset(format!(
                "byte 0x{:02X} in an envelope segment is not valid {}",
                raw[at],
                options.default_charset.hl7_name()
            )),
        ));
    }
    Ok(())
}

fn batch_error(offset: usize, what: String) -> ParseError {
    ParseError::new(offset, ParseErrorKind::Batch(what))
}

/// Checks a trailer's count field (BTS-1 / FTS-1) when the sender filled it in.
fn check_count(
    trailer: &EnvelopeSegment<'_>,
    actual: usize,
    field_name: &str,
    unit: &str,
) -> Result<(), ParseError> {
    let raw = trailer.raw;
    let Some(&sep) = raw.get(3) else {
        return Ok(());
    };
    let first = raw[4..].split(|&b| b == sep).next().unwrap_or_default();
    if first.is_empty() {
        return Ok(());
    }
    let declared = std::str::from_utf8(first)
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok());
    match declared {
        Some(n) if n == actual => Ok(()),
        Some(n) => Err(batch_error(
            trailer.offset + 4,
            format!("{field_name} says {n} but the envelope holds {actual} {unit}"),
        )),
        None => Err(batch_error(
            trailer.offset + 4,
            format!("{field_name} {:?} is not a number", preview(first)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Batch<'_>, ParseError> {
        parse_batch(s.as_bytes(), &ParseOptions::default())
    }

    const MSG_A: &str = "MSH|^~\\&|A||B||20240101||ADT^A28|1|P|2.4\rPID|1\r";
    const MSG_B: &str = "MSH|^~\\&|A||B||20240101||ADT^A31|2|P|2.4\rPID|2\r";

    #[test]
    fn splits_plain_messages_and_envelopes() {
        let plain = format!("{MSG_A}{MSG_B}");
        assert_eq!(parse(&plain).unwrap().messages.len(), 2);
        let file = format!("FHS|^~\\&\rBHS|^~\\&\r{MSG_A}{MSG_B}BTS|2\rFTS|1\r");
        let batch = parse(&file).unwrap();
        assert_eq!(batch.messages.len(), 2);
        assert_eq!(batch.messages[1].control_id(), "2");
        let ids: Vec<_> = batch.envelope.iter().map(|e| e.id()).collect();
        assert_eq!(ids, ["FHS", "BHS", "BTS", "FTS"]);
    }

    #[test]
    fn reports_structural_errors_at_their_byte() {
        let cases = [
            (
                "BHS|^~\\&\rPID|1\rBTS\r".to_string(),
                9,
                "outside any message",
            ),
            (
                format!("BHS|^~\\&\r{MSG_A}BHS|^~\\&\rBTS\r"),
                9 + MSG_A.len(),
                "still open",
            ),
            (
                format!("BHS|^~\\&\r{MSG_A}BTS|3\r"),
                9 + MSG_A.len() + 4,
                "says 3",
            ),
            (format!("{MSG_A}BTS\r"), MSG_A.len(), "without a BHS"),
            (format!("BHS|^~\\&\r{MSG_A}"), 9 + MSG_A.len(), "no BTS"),
            (format!("FHS|^~\\&\r{MSG_A}FTS\r"), 9, "outside a batch"),
        ];
        for (input, offset, words) in cases {
            let err = parse(&input).unwrap_err();
            assert_eq!(err.offset, offset, "{input:?}: {err}");
            assert!(err.to_string().contains(words), "{err}");
        }
    }

    #[test]
    fn envelope_segments_get_the_same_byte_checks() {
        let cases: [(&[u8], &str); 4] = [
            (b"FHS|^~\\&|\x00x\rFTS\r", "control byte"),
            (b"BHS|^~\\&\rBTS|1|\xff\xfe\r", "not valid"),
            (b"BHS|^~\\&\rBTSX1\r", "field separator"),
            (b"\xEF\xBB\xBFFHS|^~\\&\rBHS|^~\\&\rMSH|^~\\&|A||B||1||ADT^A31|1|P|2.4|||||GBR|8859/1\rBTS\rFTS\r", "byte-order mark"),
        ];
        for (input, words) in cases {
            let err = parse_batch(input, &ParseOptions::default()).unwrap_err();
            assert!(err.to_string().contains(words), "{err}");
        }
    }

    #[test]
    fn an_undecodable_message_type_is_refused() {
        let err = parse(MSG_A.replace("ADT^A28", "\\XC3\\").as_str()).unwrap_err();
        assert!(err.to_string().contains("MSH-9"), "{err}");
    }
}
