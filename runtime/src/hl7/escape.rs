//! HL7 escape sequences (v2.x chapter 2, "Use of escape sequences in text fields").
//!
//! Decoding turns `\F\ \S\ \T\ \R\ \E\ \P\ \Xhh…\ \.br\` into the characters they stand for.
//! Any other sequence (`\H\`, `\N\`, `\Zxx\`, `\Cxxyy\`, other formatting commands) cannot be
//! rendered as plain text without losing meaning, so it is kept verbatim and reported: never
//! silently dropped. Encoding is the exact inverse for plain text.

use std::borrow::Cow;

use super::charset::{Charset, CharsetError};
use super::delimiters::Delimiters;

/// A value with its escape sequences decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// The text. Borrowed from the message when nothing needed decoding.
    pub text: Cow<'a, str>,
    /// Escape sequences left in `text` verbatim because they have no plain-text meaning.
    pub kept: Vec<KeptEscape>,
}

/// An escape sequence that was kept as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptEscape {
    /// Byte index of the opening escape character within the raw value.
    pub at: usize,
    /// The sequence as written, escape characters included.
    pub sequence: String,
    /// Why it was kept.
    pub reason: &'static str,
}

/// Decodes the escape sequences of one raw value (any level: field, component, …) and its
/// charset. Structural delimiters inside `raw` are left as they are.
pub fn decode<'a>(
    raw: &'a [u8],
    delimiters: &Delimiters,
    charset: Charset,
) -> Result<Decoded<'a>, CharsetError> {
    let esc = delimiters.escape;
    if memchr::memchr(esc, raw).is_none() {
        return Ok(Decoded {
            text: charset.decode(raw)?,
            kept: Vec::new(),
        });
    }
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    let mut kept = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let Some(rel) = memchr::memchr(esc, &raw[i..]) else {
            out.extend_from_slice(&raw[i..]);
            break;
        };
        let start = i + rel;
        out.extend_from_slice(&raw[i..start]);
        let Some(len) = memchr::memchr(esc, &raw[start + 1..]) else {
            kept.push(KeptEscape {
                at: start,
                sequence: String::from_utf8_lossy(&raw[start..]).into_owned(),
                reason: "unterminated escape sequence",
            });
            out.extend_from_slice(&raw[start..]);
            break;
        };
        let end = start + 1 + len; // index of the closing escape character
        let body = &raw[start + 1..end];
        match decode_sequence(body, delimiters) {
            Ok(Replacement::Byte(b)) => out.push(b),
            Ok(Replacement::Bytes(bytes)) => out.extend_from_slice(&bytes),
            Ok(Replacement::Text(t)) => out.extend_from_slice(t.as_bytes()),
            Err(reason) => {
                kept.push(KeptEscape {
                    at: start,
                    sequence: String::from_utf8_lossy(&raw[start..=end]).into_owned(),
                    reason,
                });
                out.extend_from_slice(&raw[start..=end]);
            }
        }
        i = end + 1;
    }
    let text = charset.decode(&out)?.into_owned();
    Ok(Decoded {
        text: Cow::Owned(text),
        kept,
    })
}

enum Replacement {
    Byte(u8),
    Bytes(Vec<u8>),
    Text(&'static str),
}

/// What the sequence between two escape characters stands for, or why it is kept.
fn decode_sequence(body: &[u8], d: &Delimiters) -> Result<Replacement, &'static str> {
    match body {
        b"F" => Ok(Replacement::Byte(d.field)),
        b"S" => Ok(Replacement::Byte(d.component)),
        b"T" => Ok(Replacement::Byte(d.subcomponent)),
        b"R" => Ok(Replacement::Byte(d.repetition)),
        b"E" => Ok(Replacement::Byte(d.escape)),
        b"P" => d
            .truncation
            .map(Replacement::Byte)
            .ok_or("\\P\\ needs a truncation character in MSH-2 (v2.7+)"),
        b".br" => Ok(Replacement::Text("\r")),
        b"" => Err("empty escape sequence"),
        b"H" | b"N" => Err("highlighting has no plain-text form"),
        [b'X', hex @ ..] => decode_hex(hex).map(Replacement::Bytes),
        [b'.', ..] => Err("formatting command other than \\.br\\ has no plain-text form"),
        [b'Z', ..] => Err("locally defined escape sequence"),
        [b'C' | b'M', ..] => Err("character set switching is not supported"),
        _ => Err("unknown escape sequence"),
    }
}

fn decode_hex(hex: &[u8]) -> Result<Vec<u8>, &'static str> {
    if hex.is_empty() || hex.len() % 2 != 0 {
        return Err("\\X\\ needs an even, non-zero number of hex digits");
    }
    hex.chunks_exact(2)
        .map(|pair| {
            let hi = hex_value(pair[0])?;
            let lo = hex_value(pair[1])?;
            Some(hi << 4 | lo)
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or("\\X\\ holds a character that is not a hex digit")
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Escapes text for use as one subcomponent value (the leaf level), in the given charset:
/// every delimiter becomes its escape sequence and every control character (CR and LF
/// included) becomes `\Xhh\`, so the result never splits or ends a segment.
pub fn encode(
    text: &str,
    delimiters: &Delimiters,
    charset: Charset,
) -> Result<Vec<u8>, CharsetError> {
    let bytes = charset.encode(text)?;
    let mut out = Vec::with_capacity(bytes.len() + 8);
    let esc = delimiters.escape;
    for &b in bytes.iter() {
        let name = if b == delimiters.field {
            Some(b'F')
        } else if b == delimiters.component {
            Some(b'S')
        } else if b == delimiters.subcomponent {
            Some(b'T')
        } else if b == delimiters.repetition {
            Some(b'R')
        } else if b == esc {
            Some(b'E')
        } else if Some(b) == delimiters.truncation {
            Some(b'P')
        } else {
            None
        };
        if let Some(name) = name {
            out.extend_from_slice(&[esc, name, esc]);
        } else if b < 0x20 || b == 0x7F {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.extend_from_slice(&[
                esc,
                b'X',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0x0F)],
                esc,
            ]);
        } else {
            out.push(b);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(raw: &str) -> Decoded<'_> {
        decode(raw.as_bytes(), &Delimiters::default(), Charset::Utf8).unwrap()
    }

    #[test]
    fn decodes_the_standard_sequences() {
        assert_eq!(dec(r"A\F\B\S\C\T\D\R\E\E\F").text, r"A|B^C&D~E\F");
        assert_eq!(dec(r"line1\.br\line2").text, "line1\rline2");
        assert_eq!(dec(r"\X0D0A\").text, "\r\n");
        assert_eq!(dec(r"caf\XC3A9\").text, "café");
        assert!(matches!(dec("plain").text, Cow::Borrowed("plain")));
    }

    #[test]
    fn keeps_and_reports_what_it_cannot_render() {
        let d = dec(r"a\H\bold\N\ \Zfoo\ \X4\ \.sp\ end\");
        assert_eq!(d.text, r"a\H\bold\N\ \Zfoo\ \X4\ \.sp\ end\");
        let seqs: Vec<_> = d.kept.iter().map(|k| k.sequence.as_str()).collect();
        assert_eq!(seqs, [r"\H\", r"\N\", r"\Zfoo\", r"\X4\", r"\.sp\", r"\"]);
        assert_eq!(d.kept[0].at, 1);
    }

    #[test]
    fn truncation_escape_needs_a_declared_character() {
        let mut delims = Delimiters::default();
        assert_eq!(
            decode(br"a\P\b", &delims, Charset::Utf8)
                .unwrap()
                .kept
                .len(),
            1
        );
        delims.truncation = Some(b'#');
        assert_eq!(
            decode(br"a\P\b", &delims, Charset::Utf8).unwrap().text,
            "a#b"
        );
        assert_eq!(encode("a#b", &delims, Charset::Utf8).unwrap(), br"a\P\b");
    }

    #[test]
    fn encodes_delimiters_and_controls() {
        let d = Delimiters::default();
        assert_eq!(
            encode("a|b^c&d~e\\f\r\n", &d, Charset::Utf8).unwrap(),
            br"a\F\b\S\c\T\d\R\e\E\f\X0D\\X0A\"
        );
        assert!(encode("I♥", &d, Charset::Ascii).is_err());
        assert_eq!(encode("é", &d, Charset::Latin1).unwrap(), b"\xe9");
    }

    #[test]
    fn hex_escapes_follow_the_charset() {
        let d = Delimiters::default();
        assert_eq!(decode(br"\XE9\", &d, Charset::Latin1).unwrap().text, "é");
        assert!(decode(br"\XE9\", &d, Charset::Utf8).is_err());
    }
}
