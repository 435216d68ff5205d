//! Borrowed views of the parts of a segment: fields, repetitions, components and
//! subcomponents. Each view is a byte range of the original input plus the message's
//! encoding; splitting happens on demand, so reading one field never copies or splits the
//! rest of the message.

use std::borrow::Cow;
use std::ops::Deref;

use super::charset::CharsetError;
use super::escape::{self, Decoded};
use super::message::Encoding;

/// A value could not be decoded to text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("byte {offset}: {source}")]
pub struct DecodeError {
    /// Byte offset of the value in the input.
    pub offset: usize,
    /// The charset fault (positions inside it count from the start of the decoded value).
    pub source: CharsetError,
}

/// A byte range of the input at any level of the hierarchy.
#[derive(Debug, Clone, Copy)]
pub struct Span<'a> {
    raw: &'a [u8],
    offset: usize,
    encoding: Encoding,
    /// MSH-1 and MSH-2 hold delimiter characters and are never split further.
    atomic: bool,
}

impl<'a> Span<'a> {
    pub(crate) fn new(raw: &'a [u8], offset: usize, encoding: Encoding) -> Self {
        Self {
            raw,
            offset,
            encoding,
            atomic: false,
        }
    }

    pub(crate) fn atomic(raw: &'a [u8], offset: usize, encoding: Encoding) -> Self {
        Self {
            raw,
            offset,
            encoding,
            atomic: true,
        }
    }

    /// True for MSH-1 and MSH-2, which are never split or unescaped.
    pub(crate) fn is_atomic(&self) -> bool {
        self.atomic
    }

    /// The bytes as written, escape sequences and inner delimiters included.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Byte offset of the first byte in the original input.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The message's delimiters and charset.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// True when nothing was sent (an empty value; not the same as the null `""`).
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// True for the explicit null `""`: the sender asks the receiver to delete the value.
    pub fn is_null(&self) -> bool {
        self.raw == b"\"\""
    }

    /// The text with escape sequences decoded and the sequences it kept reported.
    /// MSH-1 and MSH-2 are returned as written: they hold delimiters, not escapes.
    pub fn decode(&self) -> Result<Decoded<'a>, DecodeError> {
        let result = if self.atomic {
            self.encoding.charset.decode(self.raw).map(|text| Decoded {
                text,
                kept: Vec::new(),
            })
        } else {
            escape::decode(self.raw, &self.encoding.delimiters, self.encoding.charset)
        };
        result.map_err(|source| DecodeError {
            offset: self.offset,
            source,
        })
    }

    /// The decoded text (sequences that cannot be rendered stay verbatim; see
    /// [`decode`](Self::decode) to learn which).
    pub fn text(&self) -> Result<Cow<'a, str>, DecodeError> {
        self.decode().map(|d| d.text)
    }

    fn pieces<T: From<Span<'a>>>(&self, separator: u8) -> Pieces<'a, T> {
        Pieces {
            rest: Some(self.raw),
            offset: self.offset,
            separator: if self.atomic { None } else { Some(separator) },
            encoding: self.encoding,
            atomic: self.atomic,
            _kind: std::marker::PhantomData,
        }
    }
}

/// Iterator over the parts of a span split by one separator. Always yields at least one part
/// (an empty span yields one empty part), so positions match HL7 numbering.
#[derive(Debug, Clone)]
pub struct Pieces<'a, T> {
    rest: Option<&'a [u8]>,
    offset: usize,
    separator: Option<u8>,
    encoding: Encoding,
    atomic: bool,
    _kind: std::marker::PhantomData<T>,
}

impl<T> Pieces<'_, T> {
    /// An iterator that yields nothing (a segment without a fields area).
    pub(crate) fn none(encoding: Encoding) -> Self {
        Self {
            rest: None,
            offset: 0,
            separator: None,
            encoding,
            atomic: false,
            _kind: std::marker::PhantomData,
        }
    }
}

impl<'a, T: From<Span<'a>>> Iterator for Pieces<'a, T> {
    type Item = T;

    #[inline]
    fn next(&mut self) -> Option<T> {
        let rest = self.rest?;
        let (piece, next) = match self.separator.and_then(|s| find_byte(s, rest)) {
            Some(at) => (&rest[..at], Some(&rest[at + 1..])),
            None => (rest, None),
        };
        let span = Span {
            raw: piece,
            offset: self.offset,
            encoding: self.encoding,
            atomic: self.atomic,
        };
        self.offset += piece.len() + 1;
        self.rest = next;
        Some(T::from(span))
    }
}

/// Index of the first `byte` in `haystack`. The values between delimiters are a few bytes
/// long on average: the first [`SHORT`] bytes are searched eight at a time in a word, which
/// answers before memchr's runtime CPU dispatch would have returned; a long value (a
/// document) goes on to memchr.
#[inline]
pub(crate) fn find_byte(byte: u8, haystack: &[u8]) -> Option<usize> {
    let head = haystack.get(..SHORT).unwrap_or(haystack);
    let splat = LOW_BITS * u64::from(byte);
    let mut words = head.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut words {
        let Ok(bytes) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let found = equal_bytes(u64::from_le_bytes(bytes), splat);
        if found != 0 {
            return Some(base + (found.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    if let Some(at) = words.remainder().iter().position(|&b| b == byte) {
        return Some(base + at);
    }
    let tail = haystack.get(SHORT..)?;
    memchr::memchr(byte, tail).map(|at| at + SHORT)
}

/// Bytes [`find_byte`] searches itself before it hands a long value to memchr.
const SHORT: usize = 32;
const LOW_BITS: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// The high bit of every byte of `word` that equals the byte repeated in `splat`, exactly
/// (no false positives from borrows between bytes).
#[inline(always)]
fn equal_bytes(word: u64, splat: u64) -> u64 {
    let v = word ^ splat;
    !(((v & !HIGH_BITS).wrapping_add(!HIGH_BITS)) | v) & HIGH_BITS
}

macro_rules! level {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name<'a>(Span<'a>);

        impl<'a> From<Span<'a>> for $name<'a> {
            fn from(span: Span<'a>) -> Self {
                Self(span)
            }
        }

        impl<'a> Deref for $name<'a> {
            type Target = Span<'a>;
            fn deref(&self) -> &Span<'a> {
                &self.0
            }
        }
    };
}

level!(
    /// One field of a segment: one or more repetitions.
    Field
);
level!(
    /// One repetition of a field: one or more components.
    Repetition
);
level!(
    /// One component of a repetition: one or more subcomponents.
    Component
);
level!(
    /// One subcomponent: the leaf of the hierarchy.
    Subcomponent
);

impl<'a> Field<'a> {
    /// The repetitions, in order (at least one).
    pub fn repetitions(&self) -> Pieces<'a, Repetition<'a>> {
        self.0.pieces(self.0.encoding.delimiters.repetition)
    }

    /// Repetition `n`, counted from 1.
    pub fn repetition(&self, n: usize) -> Option<Repetition<'a>> {
        self.repetitions().nth(n.checked_sub(1)?)
    }
}

impl<'a> Repetition<'a> {
    /// The components, in order (at least one).
    pub fn components(&self) -> Pieces<'a, Component<'a>> {
        self.0.pieces(self.0.encoding.delimiters.component)
    }

    /// Component `n`, counted from 1.
    pub fn component(&self, n: usize) -> Option<Component<'a>> {
        self.components().nth(n.checked_sub(1)?)
    }
}

impl<'a> Component<'a> {
    /// The subcomponents, in order (at least one).
    pub fn subcomponents(&self) -> Pieces<'a, Subcomponent<'a>> {
        self.0.pieces(self.0.encoding.delimiters.subcomponent)
    }

    /// Subcomponent `n`, counted from 1.
    pub fn subcomponent(&self, n: usize) -> Option<Subcomponent<'a>> {
        self.subcomponents().nth(n.checked_sub(1)?)
    }
}

/// Splits a segment's field area into fields (used by [`Segment`](super::Segment)).
pub(crate) fn fields_of(raw: &[u8], offset: usize, encoding: Encoding) -> Pieces<'_, Field<'_>> {
    Span::new(raw, offset, encoding).pieces(encoding.delimiters.field)
}
