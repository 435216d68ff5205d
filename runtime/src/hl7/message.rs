//! The message view: a parsed HL7 v2 message that borrows the input bytes.
//!
//! Parsing finds the segment boundaries, reads the delimiters and charset from MSH and checks
//! every byte once (segment identifiers, control bytes, charset). Fields are split on demand
//! by the views in [`span`](super::span), so no field data is copied.

use std::borrow::Cow;
use std::sync::OnceLock;

use super::charset::Charset;
use super::delimiters::{Delimiters, show_byte};
use super::error::{ParseError, ParseErrorKind};
use super::escape;
use super::index::DelimiterIndex;
use super::span::{Field, Pieces, Span, fields_of};

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// How segment terminators are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LineEndings {
    /// The standard: segments end with CR (0x0D) only; an LF is an error.
    #[default]
    Strict,
    /// CR, LF and CRLF all end a segment and blank lines are skipped. Turned on by the
    /// receiving gateway (engines and files on disk often use LF) and by the CLI for files.
    Lenient,
}

/// Options for [`Message::parse_with`] and [`parse_batch`](super::parse_batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ParseOptions {
    /// Which segment terminators are accepted.
    pub line_endings: LineEndings,
    /// The charset assumed when MSH-18 is empty (the receiver passes the HTTP charset).
    pub default_charset: Charset,
}

impl ParseOptions {
    /// Options that accept LF and CRLF terminators.
    pub fn lenient() -> Self {
        Self {
            line_endings: LineEndings::Lenient,
            ..Self::default()
        }
    }
}

/// Delimiters and charset: everything needed to split and decode a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Encoding {
    /// MSH-1 and MSH-2.
    pub delimiters: Delimiters,
    /// MSH-18 (or the default charset when it is empty).
    pub charset: Charset,
}

/// A byte range of one segment in the input, terminator excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    pub start: usize,
    pub end: usize,
}

/// A parsed HL7 v2 message borrowing its input.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    input: &'a [u8],
    encoding: Encoding,
    segments: Vec<Bounds>,
    /// Built by the first path lookup (see [`index`](super::index)); `None` inside when the
    /// input is too large to index.
    index: OnceLock<Option<DelimiterIndex>>,
}

impl<'a> Message<'a> {
    /// Parses one message with the standard rules (CR terminators, UTF-8 when MSH-18 is
    /// empty).
    pub fn parse(input: &'a [u8]) -> Result<Self, ParseError> {
        Self::parse_with(input, &ParseOptions::default())
    }

    /// Parses one message. More than one MSH is an error: use
    /// [`parse_batch`](super::parse_batch) for batches and files.
    pub fn parse_with(input: &'a [u8], options: &ParseOptions) -> Result<Self, ParseError> {
        let start = if input.starts_with(UTF8_BOM) { 3 } else { 0 };
        let lines = split_segments(input, start, options.line_endings)?;
        if let Some(second) = lines
            .iter()
            .skip(1)
            .find(|b| segment_id(input, b) == b"MSH")
        {
            return Err(ParseError::new(
                second.start,
                ParseErrorKind::MultipleMessages,
            ));
        }
        Self::from_segments(input, lines, options, start == 3)
    }

    /// Builds a message from pre-split segments (the first must be MSH).
    pub(crate) fn from_segments(
        input: &'a [u8],
        segments: Vec<Bounds>,
        options: &ParseOptions,
        has_bom: bool,
    ) -> Result<Self, ParseError> {
        let Some(first) = segments.first() else {
            return Err(ParseError::new(0, ParseErrorKind::Empty));
        };
        let first_raw = &input[first.start..first.end];
        if !first_raw.starts_with(b"MSH") {
            return Err(ParseError::new(
                first.start,
                ParseErrorKind::NotHl7(format!(
                    "expected the MSH segment, found {:?}",
                    preview(first_raw)
                )),
            ));
        }
        let (delimiters, _) = Delimiters::from_header(first_raw, first.start)?;
        for bounds in &segments {
            check_segment(input, bounds, delimiters.field)?;
        }
        let mut message = Self {
            input,
            encoding: Encoding {
                delimiters,
                charset: options.default_charset,
            },
            segments,
            index: OnceLock::new(),
        };
        message.encoding.charset = message.read_charset(has_bom)?;
        let (start, end) = message.byte_range();
        if let Some(at) = message
            .encoding
            .charset
            .first_invalid_byte(&input[start..end])
        {
            return Err(ParseError::new(
                start + at,
                ParseErrorKind::Charset(format!(
                    "byte 0x{:02X} is not valid {} (the charset {})",
                    input[start + at],
                    message.encoding.charset.hl7_name(),
                    if message.msh_field_is_empty(18) {
                        "assumed because MSH-18 is empty"
                    } else {
                        "MSH-18 declares"
                    }
                )),
            ));
        }
        message.check_required_header_fields()?;
        Ok(message)
    }

    fn msh_field_is_empty(&self, n: usize) -> bool {
        self.msh().field(n).is_none_or(|f| f.is_empty())
    }

    /// MSH-18's first repetition names the charset; empty means the configured default.
    fn read_charset(&self, has_bom: bool) -> Result<Charset, ParseError> {
        let declared = self
            .msh()
            .field(18)
            .and_then(|f| f.repetition(1))
            .and_then(|r| r.component(1))
            .filter(|c| !c.is_empty());
        let charset = match declared {
            None => self.encoding.charset,
            Some(name) => {
                // The name may hold an escaped delimiter (`8859\R\1` when `/` is one). Escape
                // sequences are ASCII, so decoding as latin1 cannot fail before the charset
                // is known.
                let text = escape::decode(name.raw(), &self.encoding.delimiters, Charset::Latin1)
                    .map(|d| d.text.into_owned())
                    .unwrap_or_default();
                Charset::from_hl7_name(text.as_bytes()).ok_or_else(|| {
                    ParseError::new(name.offset(), ParseErrorKind::UnsupportedCharset(text))
                })?
            }
        };
        if has_bom && charset != Charset::Utf8 {
            return Err(ParseError::new(
                0,
                ParseErrorKind::Charset(format!(
                    "the input starts with a UTF-8 byte-order mark but its charset is {}",
                    charset.hl7_name()
                )),
            ));
        }
        Ok(charset)
    }

    /// MSH-9 (message type) and MSH-12 (version) are needed to route and acknowledge a
    /// message at all.
    fn check_required_header_fields(&self) -> Result<(), ParseError> {
        let msh = self.msh();
        let end_of_msh = msh.offset() + msh.raw().len();
        let code = msh
            .field(9)
            .and_then(|f| f.repetition(1))
            .and_then(|r| r.component(1));
        match code {
            Some(c) if c.text().is_ok_and(|t| !t.is_empty()) => {}
            Some(c) if !c.is_empty() => {
                return Err(ParseError::new(
                    c.offset(),
                    ParseErrorKind::Header(
                        "MSH-9 (message type) does not decode to text (a bad escape sequence)"
                            .into(),
                    ),
                ));
            }
            other => {
                return Err(ParseError::new(
                    other.map_or(end_of_msh, |c| c.offset()),
                    ParseErrorKind::Header("MSH-9 (message type) is empty".into()),
                ));
            }
        }
        let version = msh
            .field(12)
            .and_then(|f| f.repetition(1))
            .and_then(|r| r.component(1));
        match version {
            Some(v) if is_version(v.raw()) => Ok(()),
            Some(v) if !v.is_empty() => Err(ParseError::new(
                v.offset(),
                ParseErrorKind::Header(format!(
                    "MSH-12 version {:?} is not an HL7 v2 version such as 2.4 or 2.5.1",
                    preview(v.raw())
                )),
            )),
            other => Err(ParseError::new(
                other.map_or(end_of_msh, |v| v.offset()),
                ParseErrorKind::Header("MSH-12 (version) is empty".into()),
            )),
        }
    }

    /// The delimiter index, built on first use; `None` when the input is too large for it.
    pub(crate) fn index(&self) -> Option<&DelimiterIndex> {
        self.index
            .get_or_init(|| DelimiterIndex::build(self.segments()))
            .as_ref()
    }

    /// The whole input this message was parsed from.
    pub fn input(&self) -> &'a [u8] {
        self.input
    }

    /// First and one-past-last byte of this message in the input (terminator excluded).
    pub fn byte_range(&self) -> (usize, usize) {
        match (self.segments.first(), self.segments.last()) {
            (Some(first), Some(last)) => (first.start, last.end),
            _ => (0, 0),
        }
    }

    /// Delimiters and charset.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// MSH-1 and MSH-2.
    pub fn delimiters(&self) -> Delimiters {
        self.encoding.delimiters
    }

    /// The charset from MSH-18 (or the default).
    pub fn charset(&self) -> Charset {
        self.encoding.charset
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The segments in order.
    pub fn segments(&self) -> impl ExactSizeIterator<Item = Segment<'a>> + '_ {
        self.segments.iter().map(|b| self.segment_at(b))
    }

    /// Segment `index`, counted from 0 (MSH is 0).
    pub fn segment(&self, index: usize) -> Option<Segment<'a>> {
        self.segments.get(index).map(|b| self.segment_at(b))
    }

    /// The segments with this identifier, in order.
    pub fn segments_named<'s>(&'s self, id: &'s str) -> impl Iterator<Item = Segment<'a>> + 's {
        self.segments()
            .filter(move |s| s.id().as_bytes() == id.as_bytes())
    }

    /// The MSH segment.
    pub fn msh(&self) -> Segment<'a> {
        // `from_segments` guarantees a first segment that starts with MSH.
        let bounds = self
            .segments
            .first()
            .copied()
            .unwrap_or(Bounds { start: 0, end: 0 });
        self.segment_at(&bounds)
    }

    fn segment_at(&self, b: &Bounds) -> Segment<'a> {
        Segment {
            raw: &self.input[b.start..b.end],
            offset: b.start,
            encoding: self.encoding,
        }
    }

    /// Decoded text of an MSH field's component (both counted from 1); empty when absent.
    pub fn header_text(&self, field: usize, component: usize) -> Cow<'a, str> {
        self.msh()
            .field(field)
            .and_then(|f| f.repetition(1))
            .and_then(|r| r.component(component))
            .and_then(|c| c.text().ok())
            .unwrap_or(Cow::Borrowed(""))
    }

    /// MSH-9.1, the message code (`ADT`, `ORU`, …).
    pub fn message_code(&self) -> Cow<'a, str> {
        self.header_text(9, 1)
    }

    /// MSH-9.2, the trigger event (`A28`, `R01`, …); empty when absent.
    pub fn trigger_event(&self) -> Cow<'a, str> {
        self.header_text(9, 2)
    }

    /// MSH-10, the message control ID.
    pub fn control_id(&self) -> Cow<'a, str> {
        self.header_text(10, 1)
    }

    /// MSH-11.1, the processing ID (`P`, `T`, `D`).
    pub fn processing_id(&self) -> Cow<'a, str> {
        self.header_text(11, 1)
    }

    /// MSH-12.1, the version (`2.4`, `2.5.1`, …).
    pub fn version(&self) -> Cow<'a, str> {
        self.header_text(12, 1)
    }

    /// The version as numbers, e.g. `(2, 5, 1)`; missing parts are 0.
    pub fn version_number(&self) -> (u32, u32, u32) {
        parse_version(&self.version())
    }

    /// The message in its canonical form: segments joined and ended by CR. For a strictly
    /// parsed input that ends with CR this equals the input (after any byte-order mark).
    pub fn to_bytes(&self) -> Vec<u8> {
        let (start, end) = self.byte_range();
        let mut out = Vec::with_capacity(end - start + 1);
        for b in &self.segments {
            out.extend_from_slice(&self.input[b.start..b.end]);
            out.push(b'\r');
        }
        out
    }
}

/// The message with every segment ended by CR, as HL7 writes it, whatever line endings the
/// sender used (CRLF or LF, read leniently): what the MLLP sink hands the engine and what a
/// duplicate's digest is taken over. The last segment gets its CR when it had none.
pub fn with_cr_segments(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 1);
    let mut bytes = raw.iter().copied().peekable();
    while let Some(b) = bytes.next() {
        match b {
            b'\r' if bytes.peek() == Some(&b'\n') => {}
            b'\n' => out.push(b'\r'),
            b => out.push(b),
        }
    }
    if !out.is_empty() && out.last() != Some(&b'\r') {
        out.push(b'\r');
    }
    out
}

/// Numeric parts of an HL7 version string; parts that are missing or not numbers are 0.
pub fn parse_version(version: &str) -> (u32, u32, u32) {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

/// `2.4`, `2.5.1`: two or three groups of at most three digits.
fn is_version(v: &[u8]) -> bool {
    let parts: Vec<&[u8]> = v.split(|&b| b == b'.').collect();
    (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.iter().all(u8::is_ascii_digit))
}

/// One segment of a message.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    raw: &'a [u8],
    offset: usize,
    encoding: Encoding,
}

impl<'a> Segment<'a> {
    /// The three-character identifier (`MSH`, `PID`, `ZPD`, …).
    pub fn id(&self) -> &'a str {
        // Checked at parse time to be three ASCII letters or digits.
        std::str::from_utf8(self.raw.get(..3).unwrap_or_default()).unwrap_or_default()
    }

    /// The segment's bytes, terminator excluded.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Byte offset of the segment in the input.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The message's delimiters and charset.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    pub(crate) fn is_msh(&self) -> bool {
        self.raw.starts_with(b"MSH")
    }

    /// Bytes of the fields area after the identifier and its separator, with its offset; for
    /// MSH the area after MSH-2. `None` when the segment has no such area.
    pub(crate) fn field_area(&self) -> Option<(&'a [u8], usize)> {
        let skip = if self.is_msh() {
            4 + self.msh2_len() + 1
        } else {
            4
        };
        self.raw.get(skip..).map(|area| (area, self.offset + skip))
    }

    fn msh2_len(&self) -> usize {
        let sep = self.encoding.delimiters.field;
        let area = self.raw.get(4..).unwrap_or_default();
        area.iter().position(|&b| b == sep).unwrap_or(area.len())
    }

    /// The fields in order, from field 1. For MSH, field 1 is the field separator and field 2
    /// the encoding characters, as the standard numbers them.
    pub fn fields(&self) -> impl Iterator<Item = Field<'a>> + 'a {
        let header: [Option<Field<'a>>; 2] = if self.is_msh() {
            let n2 = self.msh2_len();
            [
                self.raw
                    .get(3..4)
                    .map(|raw| Field::from(Span::atomic(raw, self.offset + 3, self.encoding))),
                self.raw
                    .get(4..4 + n2)
                    .map(|raw| Field::from(Span::atomic(raw, self.offset + 4, self.encoding))),
            ]
        } else {
            [None, None]
        };
        let rest: Pieces<'a, Field<'a>> = match self.field_area() {
            Some((area, offset)) => fields_of(area, offset, self.encoding),
            None => Pieces::none(self.encoding),
        };
        header.into_iter().flatten().chain(rest)
    }

    /// Field `n`, counted from 1 (MSH-1 is the field separator).
    pub fn field(&self, n: usize) -> Option<Field<'a>> {
        let index = n.checked_sub(1)?;
        if self.is_msh() {
            return self.fields().nth(index);
        }
        let (area, offset) = self.field_area()?;
        fields_of(area, offset, self.encoding).nth(index)
    }

    /// Number of fields (MSH counts MSH-1 and MSH-2).
    pub fn field_count(&self) -> usize {
        self.fields().count()
    }
}

/// The identifier bytes of a segment (at most three).
pub(crate) fn segment_id<'i>(input: &'i [u8], b: &Bounds) -> &'i [u8] {
    &input[b.start..b.end.min(b.start + 3)]
}

/// Splits `input[start..]` into segment byte ranges according to the line-ending rules.
pub(crate) fn split_segments(
    input: &[u8],
    start: usize,
    line_endings: LineEndings,
) -> Result<Vec<Bounds>, ParseError> {
    let mut segments = Vec::with_capacity(16);
    let mut seg_start = start;
    let mut i = start;
    while let Some(rel) = memchr::memchr2(b'\r', b'\n', &input[i..]) {
        let at = i + rel;
        let is_lf = input[at] == b'\n';
        let crlf = !is_lf && input.get(at + 1) == Some(&b'\n');
        if line_endings == LineEndings::Strict && (is_lf || crlf) {
            let lf_at = if crlf { at + 1 } else { at };
            return Err(ParseError::new(
                lf_at,
                ParseErrorKind::LineEnding(
                    "line feed (LF): HL7 segments end with CR only; read with lenient line endings to accept LF and CRLF"
                        .into(),
                ),
            ));
        }
        push_segment(&mut segments, seg_start, at, line_endings)?;
        i = if crlf { at + 2 } else { at + 1 };
        seg_start = i;
    }
    if seg_start < input.len() {
        push_segment(&mut segments, seg_start, input.len(), line_endings)?;
    }
    if segments.is_empty() {
        return Err(ParseError::new(start, ParseErrorKind::Empty));
    }
    Ok(segments)
}

fn push_segment(
    segments: &mut Vec<Bounds>,
    start: usize,
    end: usize,
    line_endings: LineEndings,
) -> Result<(), ParseError> {
    if start == end {
        return match line_endings {
            LineEndings::Lenient => Ok(()),
            LineEndings::Strict => Err(ParseError::new(
                start,
                ParseErrorKind::LineEnding("empty segment (two terminators in a row)".into()),
            )),
        };
    }
    segments.push(Bounds { start, end });
    Ok(())
}

/// Checks one segment's identifier and that it carries no control bytes.
pub(crate) fn check_segment(
    input: &[u8],
    b: &Bounds,
    field_separator: u8,
) -> Result<(), ParseError> {
    check_segment_id_and_bytes(input, b, field_separator)?;
    let raw = &input[b.start..b.end];
    if matches!(&raw[..3], b"FHS" | b"BHS" | b"BTS" | b"FTS") {
        return Err(ParseError::new(
            b.start,
            ParseErrorKind::Batch(format!(
                "batch segment {} inside a message: read the input as a batch",
                String::from_utf8_lossy(&raw[..3])
            )),
        ));
    }
    Ok(())
}

/// Checks a segment's identifier (three upper-case letters or digits, then the field
/// separator) and that its data holds no control bytes.
pub(crate) fn check_segment_id_and_bytes(
    input: &[u8],
    b: &Bounds,
    field_separator: u8,
) -> Result<(), ParseError> {
    let raw = &input[b.start..b.end];
    let id_ok = raw.len() >= 3
        && raw[0].is_ascii_uppercase()
        && raw[1..3]
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        && raw.get(3).is_none_or(|&c| c == field_separator);
    if !id_ok {
        return Err(ParseError::new(
            b.start,
            ParseErrorKind::SegmentId(format!(
                "segment identifier must be three upper-case letters or digits followed by the field separator {}, found {:?}",
                show_byte(field_separator),
                preview(raw)
            )),
        ));
    }
    if let Some(at) = first_control_byte(raw) {
        return Err(ParseError::new(
            b.start + at,
            ParseErrorKind::ControlByte(raw[at]),
        ));
    }
    Ok(())
}

/// Index of the first byte below 0x20 other than TAB, or DEL. Scans in blocks so that the
/// common clean case vectorises.
pub(crate) fn first_control_byte(raw: &[u8]) -> Option<usize> {
    const BLOCK: usize = 64;
    let is_control = |b: u8| (b < 0x20 && b != b'\t') || b == 0x7F;
    let mut base = 0;
    for block in raw.chunks(BLOCK) {
        let any = block.iter().fold(false, |acc, &b| acc | is_control(b));
        if any {
            return block.iter().position(|&b| is_control(b)).map(|i| base + i);
        }
        base += block.len();
    }
    None
}

/// A short printable excerpt of bytes for error messages.
pub(crate) fn preview(raw: &[u8]) -> String {
    let cut = &raw[..raw.len().min(20)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if raw.len() > 20 {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod line_ending_tests {
    use super::with_cr_segments;

    #[test]
    fn every_segment_ends_with_one_cr() {
        for raw in [
            &b"MSH|^~\\&|A\r\nPID|1\r\n"[..],
            b"MSH|^~\\&|A\nPID|1\n",
            b"MSH|^~\\&|A\rPID|1",
            b"MSH|^~\\&|A\rPID|1\r",
        ] {
            assert_eq!(with_cr_segments(raw), b"MSH|^~\\&|A\rPID|1\r");
        }
        assert_eq!(with_cr_segments(b""), b"");
    }
}
