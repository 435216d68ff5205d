//! HL7 v2 (ER7) messages: parse into a borrowed view, decode and encode escapes, read
//! charsets, split batches, address values by path, build messages and acknowledgements.
//!
//! Everything here works on bytes from outside and never panics on them: every fault is a
//! [`ParseError`] (with its byte offset), a [`DecodeError`], a [`PathError`] or a
//! [`BuildError`].

pub mod ack;
mod batch;
mod build;
mod charset;
pub mod compare;
mod delimiters;
mod error;
pub mod escape;
mod index;
mod message;
mod path;
mod span;
pub mod timestamp;

pub use ack::{
    AckCode, AckCondition, AckError, AckMode, AckReadError, AckReceipt, AckRequest, ReportedError,
    Severity, build_ack, read_ack,
};
pub use batch::{Batch, EnvelopeSegment, parse_batch};
pub use build::{BuildError, MessageBuilder, SegmentBuilder};
pub use charset::{Charset, CharsetError};
pub use delimiters::Delimiters;
pub use error::{ParseError, ParseErrorKind};
pub use escape::{Decoded, KeptEscape};
pub use message::{
    Encoding, LineEndings, Message, ParseOptions, Segment, parse_version, with_cr_segments,
};
pub use path::{
    Hit, Location, Path, PathError, RepetitionFilter, RepetitionSelector, SegmentFilter,
    SegmentSelector,
};
pub use span::{Component, DecodeError, Field, Pieces, Repetition, Span, Subcomponent};
