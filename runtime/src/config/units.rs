//! Values a spec writes as text: durations (`30s`, `5m`) and sizes (`20MiB`). Each parses
//! with an error that says what is accepted (the compiler reports it at the value), and
//! prints back the way a person would write it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::TextError;

/// A duration such as `500ms`, `30s`, `5m`, `2h` or `1d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Duration {
    millis: u64,
}

impl Duration {
    /// From milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Self { millis }
    }

    /// From seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self {
            millis: secs * 1000,
        }
    }

    /// As a standard duration.
    pub const fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.millis)
    }

    /// Milliseconds.
    pub const fn as_millis(self) -> u64 {
        self.millis
    }
}

impl FromStr for Duration {
    type Err = TextError;
    fn from_str(text: &str) -> Result<Self, TextError> {
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(TextError::NotADuration(text.to_owned()));
        }
        let number: u64 = text[..digits]
            .parse()
            .map_err(|_| TextError::DurationTooLong(text.to_owned()))?;
        let unit_millis: u64 = match &text[digits..] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(TextError::NotADuration(text.to_owned())),
        };
        number
            .checked_mul(unit_millis)
            .map(Self::from_millis)
            .ok_or_else(|| TextError::DurationTooLong(text.to_owned()))
    }
}

impl TryFrom<String> for Duration {
    type Error = TextError;
    fn try_from(text: String) -> Result<Self, TextError> {
        text.parse()
    }
}

impl From<Duration> for String {
    fn from(d: Duration) -> String {
        d.to_string()
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.millis;
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
        ] {
            if m >= size && m % size == 0 {
                return write!(f, "{}{unit}", m / size);
            }
        }
        write!(f, "{m}ms")
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": r"^[0-9]+(ms|s|m|h|d)$",
            "description": "A duration: a whole number and a unit (ms, s, m, h, d), e.g. 30s or 5m.",
            "examples": ["30s", "5m"]
        })
    }
}

/// A size in bytes such as `512KiB`, `20MiB`, `1GiB` or `1000000` (bytes); `KB`/`MB`/`GB`
/// are powers of 1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ByteSize {
    bytes: u64,
}

impl ByteSize {
    /// From a byte count.
    pub const fn from_bytes(bytes: u64) -> Self {
        Self { bytes }
    }

    /// The byte count.
    pub const fn bytes(self) -> u64 {
        self.bytes
    }
}

impl FromStr for ByteSize {
    type Err = TextError;
    fn from_str(text: &str) -> Result<Self, TextError> {
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(TextError::NotASize(text.to_owned()));
        }
        let number: u64 = text[..digits]
            .parse()
            .map_err(|_| TextError::SizeTooLarge(text.to_owned()))?;
        let unit: u64 = match &text[digits..] {
            "" | "B" => 1,
            "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            _ => return Err(TextError::NotASize(text.to_owned())),
        };
        number
            .checked_mul(unit)
            .map(Self::from_bytes)
            .ok_or_else(|| TextError::SizeTooLarge(text.to_owned()))
    }
}

impl TryFrom<String> for ByteSize {
    type Error = TextError;
    fn try_from(text: String) -> Result<Self, TextError> {
        text.parse()
    }
}

impl From<ByteSize> for String {
    fn from(s: ByteSize) -> String {
        s.to_string()
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.bytes;
        for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if b >= size && b % size == 0 {
                return write!(f, "{}{unit}", b / size);
            }
        }
        write!(f, "{b}B")
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for ByteSize {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": r"^[0-9]+(B|KB|MB|GB|KiB|MiB|GiB)?$",
            "description": "A size: a whole number and an optional unit (B, KB, MB, GB, KiB, MiB, GiB), e.g. 20MiB.",
            "examples": ["20MiB"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        for (text, ms) in [
            ("500ms", 500),
            ("30s", 30_000),
            ("5m", 300_000),
            ("1d", 86_400_000),
        ] {
            let d = Duration::try_from(text.to_string()).unwrap();
            assert_eq!(d.as_millis(), ms);
            assert_eq!(d.to_string(), text);
        }
        for bad in ["30", "5 m", "m", "1.5s", "-1s", "99999999999999999999s"] {
            assert!(Duration::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(
            ByteSize::try_from("20MiB".to_string()).unwrap().bytes(),
            20 << 20
        );
        assert_eq!(
            ByteSize::try_from("1000".to_string()).unwrap().bytes(),
            1000
        );
        assert_eq!(
            ByteSize::try_from("2MB".to_string()).unwrap().bytes(),
            2_000_000
        );
        assert_eq!(ByteSize::from_bytes(20 << 20).to_string(), "20MiB");
        for bad in ["20 MiB", "20mib", "MiB", "1.5MiB"] {
            assert!(ByteSize::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }
}
