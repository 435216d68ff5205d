//! Values written as text in a spec: durations (`30s`, `5m`), sizes (`20MiB`) and failure
//! policies (`hold`, `skip`, `retry`, `retry(5)`). Each parses with an error that says what
//! is accepted, reported at the value.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

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
    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.millis)
    }

    /// Milliseconds.
    pub fn as_millis(self) -> u64 {
        self.millis
    }
}

const DURATION_PATTERN: &str = r"^[0-9]+(ms|s|m|h|d)$";

impl TryFrom<String> for Duration {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let err = || {
            format!(
                "{text:?} is not a duration: write a whole number and a unit, e.g. 500ms, 30s, 5m, 2h, 1d"
            )
        };
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err());
        }
        let number: u64 = text[..digits]
            .parse()
            .map_err(|_| format!("{text:?} is too long a duration"))?;
        let unit_millis: u64 = match &text[digits..] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(err()),
        };
        number
            .checked_mul(unit_millis)
            .map(Self::from_millis)
            .ok_or_else(|| format!("{text:?} is too long a duration"))
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

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
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

const SIZE_PATTERN: &str = r"^[0-9]+(B|KB|MB|GB|KiB|MiB|GiB)?$";

impl ByteSize {
    /// From a byte count.
    pub const fn from_bytes(bytes: u64) -> Self {
        Self { bytes }
    }

    /// The byte count.
    pub fn bytes(self) -> u64 {
        self.bytes
    }
}

impl TryFrom<String> for ByteSize {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let err = || {
            format!(
                "{text:?} is not a size: write a whole number and an optional unit, e.g. 512KiB, 20MiB, 1GiB"
            )
        };
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err());
        }
        let number: u64 = text[..digits]
            .parse()
            .map_err(|_| format!("{text:?} is too large"))?;
        let unit: u64 = match &text[digits..] {
            "" | "B" => 1,
            "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            _ => return Err(err()),
        };
        number
            .checked_mul(unit)
            .map(Self::from_bytes)
            .ok_or_else(|| format!("{text:?} is too large"))
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

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": SIZE_PATTERN,
            "description": "A size: a whole number and an optional unit (B, KB, MB, GB, KiB, MiB, GiB), e.g. 20MiB.",
            "examples": ["20MiB"]
        })
    }
}

/// What the sender does with a message after one class of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum FailurePolicy {
    /// Keep retrying with backoff; the stream waits (`retry`).
    Retry,
    /// Retry this many times, then hold (`retry(N)`).
    RetryThenHold(u32),
    /// Stop the stream until an operator retries or skips the message (`hold`).
    Hold,
    /// Record the failure, keep the message, and go on with the next one (`skip`).
    Skip,
}

const POLICY_PATTERN: &str = r"^(hold|skip|retry|retry\([1-9][0-9]{0,5}\))$";

impl TryFrom<String> for FailurePolicy {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        match text.as_str() {
            "retry" => return Ok(Self::Retry),
            "hold" => return Ok(Self::Hold),
            "skip" => return Ok(Self::Skip),
            _ => {}
        }
        text.strip_prefix("retry(")
            .and_then(|rest| rest.strip_suffix(')'))
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|n| *n > 0)
            .map(Self::RetryThenHold)
            .ok_or_else(|| {
                format!("{text:?} is not a failure policy: use hold, skip, retry, or retry(N) to retry N times and then hold")
            })
    }
}

impl From<FailurePolicy> for String {
    fn from(p: FailurePolicy) -> String {
        p.to_string()
    }
}

impl fmt::Display for FailurePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Retry => f.write_str("retry"),
            Self::RetryThenHold(n) => write!(f, "retry({n})"),
            Self::Hold => f.write_str("hold"),
            Self::Skip => f.write_str("skip"),
        }
    }
}

impl JsonSchema for FailurePolicy {
    fn schema_name() -> Cow<'static, str> {
        "FailurePolicy".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": POLICY_PATTERN,
            "description": "hold (stop the stream until an operator acts), skip (keep the message, go on), retry (with backoff, stream waits), or retry(N) then hold.",
            "examples": ["hold", "retry", "retry(5)", "skip"]
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

    #[test]
    fn policies_parse_and_print() {
        for text in ["hold", "skip", "retry", "retry(5)"] {
            let p = FailurePolicy::try_from(text.to_string()).unwrap();
            assert_eq!(p.to_string(), text);
        }
        for bad in ["retry(0)", "retry()", "Hold", "retry(x)", "retry 5"] {
            assert!(FailurePolicy::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }
}
