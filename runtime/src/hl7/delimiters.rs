//! The delimiter set a message declares in MSH-1 and MSH-2.
//!
//! Delimiters are never assumed: every message names its own, so they are read from the
//! header before anything else is split.

use super::error::{ParseError, ParseErrorKind};

/// The separator and escape bytes of one message (MSH-1 and MSH-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Delimiters {
    /// MSH-1, `|` by convention.
    pub field: u8,
    /// First character of MSH-2, `^` by convention.
    pub component: u8,
    /// Second character of MSH-2, `~` by convention.
    pub repetition: u8,
    /// Third character of MSH-2, `\` by convention.
    pub escape: u8,
    /// Fourth character of MSH-2, `&` by convention.
    pub subcomponent: u8,
    /// Fifth character of MSH-2 (v2.7 and later), `#` by convention, when declared.
    pub truncation: Option<u8>,
}

impl Default for Delimiters {
    /// The conventional `|^~\&` set, without a truncation character.
    fn default() -> Self {
        Self {
            field: b'|',
            component: b'^',
            repetition: b'~',
            escape: b'\\',
            subcomponent: b'&',
            truncation: None,
        }
    }
}

/// Why a byte cannot serve as a delimiter, or `None` when it can.
///
/// Delimiters must be printable ASCII punctuation: letters and digits would collide with
/// data, and `"` would make the explicit null `""` ambiguous.
fn unusable_delimiter(byte: u8) -> Option<&'static str> {
    if byte.is_ascii_alphanumeric() {
        Some("a letter or digit")
    } else if byte == b'"' {
        Some("the quote character (it would make the null value \"\" ambiguous)")
    } else if byte == b' ' {
        Some("a space")
    } else if !byte.is_ascii_graphic() {
        Some("not a printable ASCII character")
    } else {
        None
    }
}

impl Delimiters {
    /// Reads MSH-1 and MSH-2 (or FHS/BHS-1 and -2) from a header segment starting at
    /// `segment[0]`. `base` is the segment's byte offset in the whole input, used in errors.
    /// Returns the delimiters and the index just past MSH-2 within `segment`.
    pub fn from_header(segment: &[u8], base: usize) -> Result<(Self, usize), ParseError> {
        let Some(&field) = segment.get(3) else {
            return Err(ParseError::new(
                base + segment.len(),
                ParseErrorKind::Header(
                    "the segment ends before MSH-1 (the field separator)".into(),
                ),
            ));
        };
        if let Some(why) = unusable_delimiter(field) {
            return Err(ParseError::new(
                base + 3,
                ParseErrorKind::Header(format!(
                    "MSH-1 field separator {} is {why}",
                    show_byte(field)
                )),
            ));
        }
        let encoding = &segment[4..];
        let len = encoding
            .iter()
            .position(|&b| b == field)
            .unwrap_or(encoding.len());
        let chars = &encoding[..len];
        if !(4..=5).contains(&chars.len()) {
            return Err(ParseError::new(
                base + 4,
                ParseErrorKind::Header(format!(
                    "MSH-2 must hold 4 encoding characters (5 with the v2.7 truncation character), found {} ({:?})",
                    chars.len(),
                    String::from_utf8_lossy(chars)
                )),
            ));
        }
        for (i, &c) in chars.iter().enumerate() {
            if let Some(why) = unusable_delimiter(c) {
                return Err(ParseError::new(
                    base + 4 + i,
                    ParseErrorKind::Header(format!(
                        "MSH-2 encoding character {} is {why}",
                        show_byte(c)
                    )),
                ));
            }
            if c == field || chars[..i].contains(&c) {
                return Err(ParseError::new(
                    base + 4 + i,
                    ParseErrorKind::Header(format!(
                        "MSH-2 encoding character {} is used twice; every delimiter must be distinct",
                        show_byte(c)
                    )),
                ));
            }
        }
        let delimiters = Self {
            field,
            component: chars[0],
            repetition: chars[1],
            escape: chars[2],
            subcomponent: chars[3],
            truncation: chars.get(4).copied(),
        };
        Ok((delimiters, 4 + len))
    }

    /// MSH-2 as written: the encoding characters in their standard order.
    pub fn encoding_characters(&self) -> String {
        let mut s = String::with_capacity(5);
        for b in [
            self.component,
            self.repetition,
            self.escape,
            self.subcomponent,
        ] {
            s.push(char::from(b));
        }
        if let Some(t) = self.truncation {
            s.push(char::from(t));
        }
        s
    }

    /// True when `byte` is any delimiter or the escape character.
    pub fn is_special(&self, byte: u8) -> bool {
        byte == self.field
            || byte == self.component
            || byte == self.repetition
            || byte == self.escape
            || byte == self.subcomponent
            || Some(byte) == self.truncation
    }
}

/// A byte shown for an error message: the character when printable, its hex code otherwise.
pub(crate) fn show_byte(byte: u8) -> String {
    if byte.is_ascii_graphic() {
        format!("'{}'", char::from(byte))
    } else {
        format!("0x{byte:02X}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_standard_set() {
        let (d, end) = Delimiters::from_header(b"MSH|^~\\&|APP", 0).unwrap();
        assert_eq!(d, Delimiters::default());
        assert_eq!(end, 8);
        assert_eq!(d.encoding_characters(), "^~\\&");
    }

    #[test]
    fn reads_a_truncation_character_and_unusual_choices() {
        let (d, _) = Delimiters::from_header(b"MSH#$%*!@#APP", 0).unwrap();
        assert_eq!(d.field, b'#');
        assert_eq!(d.component, b'$');
        assert_eq!(d.truncation, Some(b'@'));
    }

    #[test]
    fn rejects_bad_sets_at_the_right_byte() {
        let cases: [(&[u8], usize); 6] = [
            (b"MSH|^~\\|", 4),    // three characters
            (b"MSH|^~\\&#$|", 4), // six characters
            (b"MSH|^&&^|", 6),    // duplicate
            (b"MSH|^~|&|", 4),    // only two before the field separator
            (b"MSHH0|", 3),       // letter as field separator
            (b"MSH|^ \\E|", 5),   // space
        ];
        for (input, offset) in cases {
            let err = Delimiters::from_header(input, 0).unwrap_err();
            assert_eq!(
                err.offset,
                offset,
                "{}: {err}",
                String::from_utf8_lossy(input)
            );
        }
    }
}
