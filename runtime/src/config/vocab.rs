//! The words a spec and a gateway's configuration share: environment names, processing ids,
//! failure policies, retry delays and ACK content types. The compiler's spec model is made of
//! these types (with serde, and with JSON Schema under the `schema` feature), so the spec, the
//! generated crate and the running gateway cannot drift apart.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::TextError;
use super::defaults;
use super::units::Duration;

/// An environment's name.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum EnvName {
    /// TEST.
    Test,
    /// PROD.
    Prod,
}

impl EnvName {
    /// `test` or `prod`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Test => "test",
            Self::Prod => "prod",
        }
    }

    /// Parses `test` or `prod`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "test" => Some(Self::Test),
            "prod" => Some(Self::Prod),
            _ => None,
        }
    }

    /// The processing id (MSH-11) this environment takes: T for TEST, P for PROD.
    pub const fn processing_id(self) -> ProcessingId {
        match self {
            Self::Test => ProcessingId::T,
            Self::Prod => ProcessingId::P,
        }
    }
}

/// MSH-11 processing id (HL7 table 0103).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum ProcessingId {
    /// Production.
    P,
    /// Training / test.
    T,
    /// Debugging.
    D,
}

impl ProcessingId {
    /// The value as MSH-11 carries it: `P`, `T` or `D`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::P => "P",
            Self::T => "T",
            Self::D => "D",
        }
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

impl FromStr for FailurePolicy {
    type Err = TextError;
    fn from_str(text: &str) -> Result<Self, TextError> {
        match text {
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
            .ok_or_else(|| TextError::NotAPolicy(text.to_owned()))
    }
}

impl TryFrom<String> for FailurePolicy {
    type Error = TextError;
    fn try_from(text: String) -> Result<Self, TextError> {
        text.parse()
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

#[cfg(feature = "schema")]
impl schemars::JsonSchema for FailurePolicy {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FailurePolicy".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": r"^(hold|skip|retry|retry\([1-9][0-9]{0,5}\))$",
            "description": "hold (stop the stream until an operator acts), skip (keep the message, go on), retry (with backoff, stream waits), or retry(N) then hold.",
            "examples": ["hold", "retry", "retry(5)", "skip"]
        })
    }
}

/// Retry delays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// First delay. Default 1s.
    pub first: Duration,
    /// Largest delay. Default 5m.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            first: defaults::BACKOFF_FIRST,
            max: defaults::BACKOFF_MAX,
        }
    }
}

/// The Content-Type of ACK responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum ResponseContentType {
    /// The request's type (the default).
    #[default]
    #[serde(rename = "follow_request")]
    FollowRequest,
    /// `application/hl7-v2`.
    #[serde(rename = "application/hl7-v2")]
    Hl7V2,
    /// `application/hl7-v2+er7`.
    #[serde(rename = "application/hl7-v2+er7")]
    Hl7V2Er7,
    /// `x-application/hl7-v2+er7`.
    #[serde(rename = "x-application/hl7-v2+er7")]
    XHl7V2Er7,
    /// `text/plain`.
    #[serde(rename = "text/plain")]
    TextPlain,
}

impl ResponseContentType {
    /// The media type, or `None` for "follow the request".
    pub fn media_type(self) -> Option<&'static str> {
        match self {
            Self::FollowRequest => None,
            Self::Hl7V2 => Some("application/hl7-v2"),
            Self::Hl7V2Er7 => Some("application/hl7-v2+er7"),
            Self::XHl7V2Er7 => Some("x-application/hl7-v2+er7"),
            Self::TextPlain => Some("text/plain"),
        }
    }

    /// As the spec writes it: the media type, or `follow_request`.
    pub fn as_str(self) -> &'static str {
        self.media_type().unwrap_or("follow_request")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn each_environment_takes_its_processing_id() {
        assert_eq!(EnvName::Test.processing_id().as_str(), "T");
        assert_eq!(EnvName::Prod.processing_id().as_str(), "P");
    }
}
