//! The words a spec and a gateway's configuration share: environment names, processing ids,
//! failure policies, retry delays, the request's and ACK's content types and the acknowledgement
//! mode. The compiler's spec model is made of
//! these types (with serde, and with JSON Schema under the `schema` feature), so the spec, the
//! generated crate and the running gateway cannot drift apart.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::TextError;
use super::defaults;
use super::units::Duration;

/// An environment's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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

/// Which acknowledgement codes the receiver answers with: the spec's `acknowledgement`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Acknowledgement {
    /// Always an application ACK (AA/AE/AR), sent after the commit, whatever MSH-15/MSH-16
    /// ask: AA means the message is in EMS, which is what a Trust's engine waits for.
    #[default]
    Application,
    /// Enhanced mode as the message asks: CA/CE/CR when MSH-15 or MSH-16 is filled, AA/AE/AR
    /// otherwise.
    AsRequested,
}

impl Acknowledgement {
    /// As a spec writes it: `application` or `as_requested`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Application => "application",
            Self::AsRequested => "as_requested",
        }
    }

    /// The acknowledgement protocol to answer `message` in: the original mode always for
    /// `application`, the one the message asks for (MSH-15/MSH-16) for `as_requested`. The one
    /// place a receiver decides between AA and CA.
    pub fn mode_for(self, message: &crate::hl7::Message<'_>) -> crate::hl7::AckMode {
        match self {
            Self::Application => crate::hl7::AckMode::Original,
            Self::AsRequested => crate::hl7::AckMode::of(message),
        }
    }
}

impl fmt::Display for Acknowledgement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
    /// First delay ([`defaults::BACKOFF_FIRST`] when the spec gives no backoff).
    #[cfg_attr(
        feature = "schema",
        schemars(description = format!("First delay. Default {}.", defaults::BACKOFF_FIRST))
    )]
    pub first: Duration,
    /// Largest delay ([`defaults::BACKOFF_MAX`] when the spec gives no backoff).
    #[cfg_attr(
        feature = "schema",
        schemars(description = format!("Largest delay. Default {}.", defaults::BACKOFF_MAX))
    )]
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

/// A media type the receiver accepts (and answers with).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaType {
    /// `application/hl7-v2` (HAPI, the HL7 over HTTP specification).
    Hl7V2,
    /// `application/hl7-v2+er7`.
    Hl7V2Er7,
    /// `x-application/hl7-v2+er7`.
    XHl7V2Er7,
    /// `text/plain` (Mirth's and Rhapsody's default).
    TextPlain,
}

impl MediaType {
    /// Every accepted media type.
    pub const ALL: [MediaType; 4] = [
        Self::Hl7V2,
        Self::Hl7V2Er7,
        Self::XHl7V2Er7,
        Self::TextPlain,
    ];

    /// The media type's name, lowercase.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hl7V2 => "application/hl7-v2",
            Self::Hl7V2Er7 => "application/hl7-v2+er7",
            Self::XHl7V2Er7 => "x-application/hl7-v2+er7",
            Self::TextPlain => "text/plain",
        }
    }

    /// Parses a media type name (no parameters), ignoring case and surrounding spaces.
    pub fn parse(name: &str) -> Option<Self> {
        let name = name.trim();
        Self::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Content-Type of ACK responses. A spec writes `follow_request` or one of the media
/// types, exactly as [`MediaType::as_str`] spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ResponseContentType {
    /// The request's media type; `text/plain` when the request had none.
    #[default]
    FollowRequest,
    /// Always this one.
    Fixed(MediaType),
}

const FOLLOW_REQUEST: &str = "follow_request";

impl ResponseContentType {
    /// Every value a spec may write, in the order the schema lists them.
    const ALL: [Self; 5] = [
        Self::FollowRequest,
        Self::Fixed(MediaType::Hl7V2),
        Self::Fixed(MediaType::Hl7V2Er7),
        Self::Fixed(MediaType::XHl7V2Er7),
        Self::Fixed(MediaType::TextPlain),
    ];

    /// The media type, or `None` for "follow the request".
    pub fn media_type(self) -> Option<MediaType> {
        match self {
            Self::FollowRequest => None,
            Self::Fixed(media) => Some(media),
        }
    }

    /// As the spec writes it: the media type, or `follow_request`.
    pub fn as_str(self) -> &'static str {
        self.media_type().map_or(FOLLOW_REQUEST, MediaType::as_str)
    }
}

impl Serialize for ResponseContentType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ResponseContentType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == text)
            .ok_or_else(|| {
                const NAMES: &[&str] = &[
                    FOLLOW_REQUEST,
                    "application/hl7-v2",
                    "application/hl7-v2+er7",
                    "x-application/hl7-v2+er7",
                    "text/plain",
                ];
                serde::de::Error::unknown_variant(&text, NAMES)
            })
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for ResponseContentType {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ResponseContentType".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let one_of: Vec<serde_json::Value> = Self::ALL
            .into_iter()
            .map(|t| {
                let description = match t {
                    Self::FollowRequest => "The request's type (the default).".to_owned(),
                    Self::Fixed(media) => format!("`{media}`."),
                };
                serde_json::json!({
                    "type": "string",
                    "const": t.as_str(),
                    "description": description,
                })
            })
            .collect();
        schemars::json_schema!({
            "oneOf": one_of,
            "description": "The Content-Type of ACK responses."
        })
    }
}

/// How strictly the receiver reads a request's Content-Type. A spec writes `lenient` (the
/// default) or `strict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum RequestContentType {
    /// A body that is an HL7 message is processed whatever media type the request names
    /// (some InterSystems and BizTalk adapters send `text/html` or `text/xml`); the odd type
    /// is counted, and 415 is kept for a body that is not HL7 either.
    #[default]
    Lenient,
    /// Only the HL7 media types and `text/plain` (or no Content-Type) are read; anything
    /// else is 415 before the body is read.
    Strict,
}

impl RequestContentType {
    /// As the spec writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lenient => "lenient",
            Self::Strict => "strict",
        }
    }
}

impl fmt::Display for RequestContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
    fn response_content_types_read_as_the_spec_writes_them() {
        for t in ResponseContentType::ALL {
            let text = serde_json::to_value(t).unwrap();
            assert_eq!(text, t.as_str());
            assert_eq!(
                serde_json::from_value::<ResponseContentType>(text).unwrap(),
                t
            );
        }
        assert!(serde_json::from_value::<ResponseContentType>("text/html".into()).is_err());
        assert!(serde_json::from_value::<ResponseContentType>("TEXT/PLAIN".into()).is_err());
    }

    #[test]
    fn request_content_types_read_as_the_spec_writes_them() {
        for t in [RequestContentType::Lenient, RequestContentType::Strict] {
            let text = serde_json::to_value(t).unwrap();
            assert_eq!(text, t.as_str());
            assert_eq!(
                serde_json::from_value::<RequestContentType>(text).unwrap(),
                t
            );
        }
        assert!(serde_json::from_value::<RequestContentType>("loose".into()).is_err());
    }

    #[test]
    fn each_environment_takes_its_processing_id() {
        assert_eq!(EnvName::Test.processing_id().as_str(), "T");
        assert_eq!(EnvName::Prod.processing_id().as_str(), "P");
    }
}
