//! Character sets named by MSH-18 (HL7 table 0211).
//!
//! Only sets this runtime can decode exactly are accepted; any other name is an error rather
//! than a guess, because a wrong guess silently corrupts names and addresses (mojibake).

use std::borrow::Cow;

/// A character set the runtime reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Charset {
    /// `ASCII`: 7-bit bytes only.
    Ascii,
    /// `8859/1`: ISO-8859-1 (latin1), one byte per character.
    Latin1,
    /// `UNICODE UTF-8`. Also the default when MSH-18 is empty (see [`ParseOptions`]).
    ///
    /// [`ParseOptions`]: super::ParseOptions
    #[default]
    Utf8,
}

impl Charset {
    /// The charset for an MSH-18 value (its first repetition, first component).
    /// Returns `None` for names that are not supported.
    pub fn from_hl7_name(name: &[u8]) -> Option<Self> {
        match name {
            b"ASCII" => Some(Self::Ascii),
            b"8859/1" => Some(Self::Latin1),
            b"UNICODE UTF-8" => Some(Self::Utf8),
            _ => None,
        }
    }

    /// The charset for a MIME `charset=` parameter (HTTP Content-Type), case-insensitive.
    pub fn from_mime_name(name: &str) -> Option<Self> {
        match name.trim().trim_matches('"').to_ascii_lowercase().as_str() {
            "us-ascii" | "ascii" => Some(Self::Ascii),
            "iso-8859-1" | "iso8859-1" | "latin1" | "latin-1" | "l1" => Some(Self::Latin1),
            "utf-8" | "utf8" => Some(Self::Utf8),
            _ => None,
        }
    }

    /// The MSH-18 spelling of this charset.
    pub fn hl7_name(self) -> &'static str {
        match self {
            Self::Ascii => "ASCII",
            Self::Latin1 => "8859/1",
            Self::Utf8 => "UNICODE UTF-8",
        }
    }

    /// The MIME spelling of this charset, for a Content-Type header.
    pub fn mime_name(self) -> &'static str {
        match self {
            Self::Ascii => "US-ASCII",
            Self::Latin1 => "ISO-8859-1",
            Self::Utf8 => "UTF-8",
        }
    }

    /// Index of the first byte that is not valid in this charset, if any.
    pub fn first_invalid_byte(self, bytes: &[u8]) -> Option<usize> {
        match self {
            Self::Ascii => bytes.iter().position(|&b| b >= 0x80),
            Self::Latin1 => None,
            Self::Utf8 => std::str::from_utf8(bytes).err().map(|e| e.valid_up_to()),
        }
    }

    /// Decodes bytes already checked against this charset. Borrows when no transcoding is
    /// needed (ASCII and UTF-8, or latin1 text that happens to be ASCII).
    pub fn decode(self, bytes: &[u8]) -> Result<Cow<'_, str>, CharsetError> {
        match self {
            Self::Ascii | Self::Utf8 => {
                // One validation: UTF-8's own check is the charset check for UTF-8.
                if self == Self::Ascii
                    && let Some(at) = self.first_invalid_byte(bytes)
                {
                    return Err(CharsetError::Invalid { at, charset: self });
                }
                match std::str::from_utf8(bytes) {
                    Ok(s) => Ok(Cow::Borrowed(s)),
                    Err(e) => Err(CharsetError::Invalid {
                        at: e.valid_up_to(),
                        charset: self,
                    }),
                }
            }
            Self::Latin1 => {
                if bytes.is_ascii() {
                    // ASCII is a subset of UTF-8, so this cannot fail; map anyway.
                    std::str::from_utf8(bytes).map(Cow::Borrowed).map_err(|e| {
                        CharsetError::Invalid {
                            at: e.valid_up_to(),
                            charset: self,
                        }
                    })
                } else {
                    Ok(Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()))
                }
            }
        }
    }

    /// Encodes text into this charset. A character the charset cannot hold is an error,
    /// never a replacement character.
    pub fn encode(self, text: &str) -> Result<Cow<'_, [u8]>, CharsetError> {
        match self {
            Self::Utf8 => Ok(Cow::Borrowed(text.as_bytes())),
            Self::Ascii => match text.char_indices().find(|(_, c)| !c.is_ascii()) {
                Some((at, ch)) => Err(CharsetError::Unrepresentable {
                    ch,
                    at,
                    charset: self,
                }),
                None => Ok(Cow::Borrowed(text.as_bytes())),
            },
            Self::Latin1 => {
                if text.is_ascii() {
                    return Ok(Cow::Borrowed(text.as_bytes()));
                }
                let mut out = Vec::with_capacity(text.len());
                for (at, ch) in text.char_indices() {
                    match u8::try_from(u32::from(ch)) {
                        Ok(b) => out.push(b),
                        Err(_) => {
                            return Err(CharsetError::Unrepresentable {
                                ch,
                                at,
                                charset: self,
                            });
                        }
                    }
                }
                Ok(Cow::Owned(out))
            }
        }
    }
}

/// Text and bytes that do not fit a charset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CharsetError {
    /// A byte sequence invalid in the charset, at this index of the value.
    #[error("byte {at} of the value is not valid {}", charset.hl7_name())]
    Invalid {
        /// Index within the value.
        at: usize,
        /// The charset that was expected.
        charset: Charset,
    },
    /// A character the charset cannot represent.
    #[error("character {ch:?} (at byte {at} of the value) cannot be written in {}", charset.hl7_name())]
    Unrepresentable {
        /// The character.
        ch: char,
        /// Its byte index within the text.
        at: usize,
        /// The target charset.
        charset: Charset,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for cs in [Charset::Ascii, Charset::Latin1, Charset::Utf8] {
            assert_eq!(Charset::from_hl7_name(cs.hl7_name().as_bytes()), Some(cs));
            assert_eq!(Charset::from_mime_name(cs.mime_name()), Some(cs));
        }
        assert_eq!(Charset::from_hl7_name(b"UNICODE"), None);
        assert_eq!(Charset::from_hl7_name(b"ISO IR87"), None);
    }

    #[test]
    fn latin1_transcodes_both_ways() {
        let bytes = b"M\xfcller \xe9";
        let text = Charset::Latin1.decode(bytes).unwrap();
        assert_eq!(text, "Müller é");
        assert_eq!(Charset::Latin1.encode(&text).unwrap().as_ref(), bytes);
        assert!(Charset::Latin1.encode("I♥").is_err());
    }

    #[test]
    fn ascii_and_utf8_reject_what_they_cannot_hold() {
        assert!(Charset::Ascii.decode(b"caf\xc3\xa9").is_err());
        assert_eq!(Charset::Utf8.decode(b"caf\xc3\xa9").unwrap(), "café");
        assert!(Charset::Utf8.decode(b"caf\xe9").is_err());
        assert!(Charset::Ascii.encode("café").is_err());
    }
}
