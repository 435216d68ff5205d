//! Errors raised while reading HL7 bytes. Each names the byte offset in the original input,
//! so an engineer can find the fault with `head -c` or a hex viewer.

use std::fmt;

/// A message or batch could not be read. `offset` counts bytes from the start of the input
/// as given (before any byte-order mark was skipped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("byte {offset}: {kind}")]
pub struct ParseError {
    /// Byte offset of the fault in the input.
    pub offset: usize,
    /// What was wrong.
    pub kind: ParseErrorKind,
}

impl ParseError {
    pub(crate) fn new(offset: usize, kind: ParseErrorKind) -> Self {
        Self { offset, kind }
    }
}

/// The classes of malformed input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// The input holds no bytes (or only a byte-order mark and line breaks).
    Empty,
    /// The input does not begin with an MSH segment.
    NotHl7(String),
    /// MSH-1/MSH-2 (or a required MSH field) is missing or unusable.
    Header(String),
    /// A segment's identifier is not three upper-case letters or digits.
    SegmentId(String),
    /// A line feed where strict parsing expects CR, or an empty segment.
    LineEnding(String),
    /// A control byte (NUL, STX, …) inside segment data.
    ControlByte(u8),
    /// MSH-18 names a character set this runtime does not read.
    UnsupportedCharset(String),
    /// Bytes that are not valid in the declared (or default) character set.
    Charset(String),
    /// A second MSH where a single message was expected.
    MultipleMessages,
    /// Batch or file structure (FHS/BHS/BTS/FTS) is wrong.
    Batch(String),
}

impl fmt::Display for ParseErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty input: no HL7 message"),
            Self::NotHl7(what) => write!(f, "not an HL7 v2 message: {what}"),
            Self::Header(what)
            | Self::SegmentId(what)
            | Self::LineEnding(what)
            | Self::Charset(what)
            | Self::Batch(what) => f.write_str(what),
            Self::ControlByte(b) => write!(
                f,
                "control byte 0x{b:02X} inside segment data; HL7 carries such bytes only as \\Xhh\\ escapes"
            ),
            Self::UnsupportedCharset(name) => write!(
                f,
                "MSH-18 character set {name:?} is not supported (supported: ASCII, 8859/1, UNICODE UTF-8)"
            ),
            Self::MultipleMessages => f.write_str(
                "a second MSH segment starts here: the input holds more than one message (read it as a batch)",
            ),
        }
    }
}
