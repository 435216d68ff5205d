//! A gateway's configuration as generated from its spec: the data the transport reads.
//! Generated crates define one [`Environment`] per spec environment as a `const` (every
//! text a [`Cow::Borrowed`]); tests and tools build owned ones ([`Cow::Owned`], or
//! `.into()` from a `String`). Nothing here needs to live for `'static`.
//!
//! The vocabulary a spec shares with this configuration (environment names, processing ids,
//! failure policies, retry delays, content types, sinks, durations and sizes) is defined here
//! once, and [`defaults`] states every default once.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

pub mod defaults;
mod limits;
mod store;
mod units;
mod vocab;

pub use limits::{LimitProblem, Limits};
pub use store::{PasswordSource, PostgresConfig, StoreConfig};
pub use units::{ByteSize, Duration};
pub use vocab::{
    Acknowledgement, Backoff, EnvName, FailurePolicy, MediaType, ProcessingId, RequestContentType,
    ResponseContentType,
};

/// A spec value written as text that does not parse. The message says what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// Not a duration.
    #[error(
        "{0:?} is not a duration: write a whole number and a unit, e.g. 500ms, 30s, 5m, 2h, 1d"
    )]
    NotADuration(String),
    /// A duration beyond `u64` milliseconds.
    #[error("{0:?} is too long a duration")]
    DurationTooLong(String),
    /// Not a size.
    #[error(
        "{0:?} is not a size: write a whole number and an optional unit, e.g. 512KiB, 20MiB, 1GiB"
    )]
    NotASize(String),
    /// A size beyond `u64` bytes.
    #[error("{0:?} is too large")]
    SizeTooLarge(String),
    /// Not a failure policy.
    #[error(
        "{0:?} is not a failure policy: use hold, skip, retry, or retry(N) to retry N times and then hold"
    )]
    NotAPolicy(String),
}

/// Text in a configuration: borrowed from the generated crate or owned.
pub type Text = Cow<'static, str>;

/// A list of texts in a configuration.
pub type TextList = Cow<'static, [Text]>;

/// One environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// Which one.
    pub name: EnvName,
    /// MSH-11 accepted and written.
    pub processing_id: Text,
    /// The receiving side, when the spec has inbound messages.
    pub receive: Option<ReceiveConfig>,
    /// The sending side, when the spec has outbound messages.
    pub send: Option<SendConfig>,
    /// The store: an SQLite file relative to the spec's folder, or a PostgreSQL database.
    pub store: StoreConfig,
    /// How long the store keeps inbound rows and finished (delivered, skipped) outbound
    /// messages, in milliseconds ([`defaults::RETENTION`] when the spec leaves it out).
    pub retention_ms: u64,
    /// Where accepted inbound records go.
    pub sink: SinkConfig,
    /// Which ACK codes the receiver (and the intake's MLLP listener) answers with.
    pub acknowledgement: Acknowledgement,
    /// The MSH-12 versions the receiver accepts: the spec's `hl7_version`, then its
    /// `accept_versions`. Empty accepts any version (an environment built by hand in a test).
    pub accept_versions: TextList,
    /// Connections, handshakes, body memory and MLLP connections the gateway may take.
    pub limits: Limits,
    /// How EMS reaches the inbox API, the intake API and the intake MLLP listener.
    pub ems: EmsAccess,
}

/// How EMS reaches the gateway's EMS-facing listeners (the inbox API, the intake API and the
/// intake MLLP listener).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmsAccess {
    /// Plain HTTP and MLLP on loopback addresses, without authentication: any process on the
    /// gateway's host can read and acknowledge records and queue messages. For the demo and
    /// local development; the go-live report flags it.
    PlainLoopback,
    /// Mutual TLS: EMS presents a client certificate from `client_ca` whose subject is in
    /// `allowed_clients`; the listeners may then bind any address.
    MutualTls(EmsTls),
}

/// The EMS-facing listeners' TLS (paths relative to the spec's folder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmsTls {
    /// The IP address the listeners bind (their ports follow the receive port).
    pub address: Text,
    /// Server certificate chain (PEM) EMS connects to.
    pub cert: Text,
    /// Its key (PEM).
    pub key: Text,
    /// CA(s) that issue EMS's client certificates (PEM).
    pub client_ca: Text,
    /// CRLs of those CAs (PEM), when the spec names them.
    pub client_crl: Option<Text>,
    /// EMS's client subjects allowed after the handshake (`CN=…`, `DNS:…`).
    pub allowed_clients: TextList,
}

/// The receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiveConfig {
    /// `IP:PORT` to listen on.
    pub listen: Text,
    /// URL path engines POST to.
    pub path: Text,
    /// Public host name.
    pub hostname: Text,
    /// Server certificate chain (PEM), relative to the spec's folder.
    pub cert: Text,
    /// Server key (PEM).
    pub key: Text,
    /// CA(s) for client certificates (PEM).
    pub client_ca: Text,
    /// CRLs of the client CA(s) (PEM), when the spec names them: a revoked client
    /// certificate fails the handshake.
    pub client_crl: Option<Text>,
    /// Client subjects allowed after the handshake (`CN=…`, `DNS:…`).
    pub allowed_clients: TextList,
    /// IP ranges allowed to connect (CIDR).
    pub allowed_ips: TextList,
    /// Largest body in bytes.
    pub max_body: u64,
    /// MSH-5 expected, when named.
    pub receiving_application: Option<Text>,
    /// MSH-6 expected, when named.
    pub receiving_facility: Option<Text>,
    /// The ACK's Content-Type (`application/hl7-v2`, `text/plain`, …), or `None` to follow
    /// the request's.
    pub response_content_type: Option<Text>,
    /// How strictly the request's Content-Type is read.
    pub request_content_type: RequestContentType,
    /// Offer HTTP/2 (ALPN `h2`); HTTP/1.1 only when false (see [`defaults::HTTP2`]).
    pub http2: bool,
}

/// The sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendConfig {
    /// The engine's HTTPS URL.
    pub url: Text,
    /// Client certificate chain (PEM).
    pub cert: Text,
    /// Client key (PEM).
    pub key: Text,
    /// CA(s) for the engine's server certificate (PEM).
    pub server_ca: Text,
    /// CRLs of the server CA(s) (PEM), when the spec names them: a revoked server
    /// certificate fails the handshake.
    pub server_crl: Option<Text>,
    /// ACK timeout in milliseconds.
    pub timeout_ms: u64,
    /// First retry delay in milliseconds.
    pub backoff_first_ms: u64,
    /// Largest retry delay in milliseconds.
    pub backoff_max_ms: u64,
    /// What to do after each class of failure.
    pub on_failure: FailurePolicies,
    /// MSH-3 to MSH-6 of the messages built from records.
    pub header: SendHeader,
}

/// MSH-3 to MSH-6 of the messages the intake builds from records (a JSON request may name
/// others for one message); HL7 EMS hands over as it is keeps its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendHeader {
    /// MSH-3.
    pub sending_application: Text,
    /// MSH-4.
    pub sending_facility: Text,
    /// MSH-5: the Trust's engine; empty when the spec names none.
    pub receiving_application: Text,
    /// MSH-6: the Trust; empty when the spec names none.
    pub receiving_facility: Text,
}

impl SendHeader {
    /// The defaults ([`defaults::SENDING_APPLICATION`], [`defaults::SENDING_FACILITY`], no
    /// receiver named).
    pub const DEFAULT: Self = Self {
        sending_application: Cow::Borrowed(defaults::SENDING_APPLICATION),
        sending_facility: Cow::Borrowed(defaults::SENDING_FACILITY),
        receiving_application: Cow::Borrowed(""),
        receiving_facility: Cow::Borrowed(""),
    };
}

/// What the sender does after each class of failure: the spec's `on_*` keys, one field each.
/// The sender's `queue::Policies` holds this beside its backoff, so the seven classes are
/// named in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailurePolicies {
    /// After a connection failure (connect, TLS, connection lost).
    pub on_connect_error: FailurePolicy,
    /// After a timeout.
    pub on_timeout: FailurePolicy,
    /// After HTTP 5xx.
    pub on_5xx: FailurePolicy,
    /// After HTTP 4xx (and other non-2xx).
    pub on_4xx: FailurePolicy,
    /// After an unreadable ACK or an MSA-2 mismatch.
    pub on_bad_ack: FailurePolicy,
    /// After AE/CE.
    pub on_ae: FailurePolicy,
    /// After AR/CR.
    pub on_ar: FailurePolicy,
}

impl FailurePolicies {
    /// The defaults of [`defaults`]: what a spec that names no policy gets.
    pub const DEFAULT: Self = Self {
        on_connect_error: defaults::ON_CONNECT_ERROR,
        on_timeout: defaults::ON_TIMEOUT,
        on_5xx: defaults::ON_5XX,
        on_4xx: defaults::ON_4XX,
        on_bad_ack: defaults::ON_BAD_ACK,
        on_ae: defaults::ON_AE,
        on_ar: defaults::ON_AR,
    };
}

impl Default for FailurePolicies {
    fn default() -> Self {
        Self::DEFAULT
    }
}

// A spec writes `sink: {inbox: {}}`, `sink: {webhook: {url: …}}` or `sink: {mllp: {addr: …}}`
// (this doc comment is the JSON Schema's description, so the note stays out of it).
/// Where accepted inbound records go.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(
    feature = "schema",
    derive(schemars::JsonSchema),
    schemars(rename = "Sink")
)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkConfig {
    /// Records stay in the store; EMS pulls them through the local inbox API.
    #[default]
    #[serde(
        serialize_with = "empty_object::serialize",
        deserialize_with = "empty_object::deserialize"
    )]
    #[cfg_attr(feature = "schema", schemars(schema_with = "empty_object::schema"))]
    Inbox,
    /// POST each record as JSON to an internal URL; AA only after a 2xx.
    Webhook {
        /// The internal URL.
        url: Text,
    },
    /// Forward the HL7 to a local engine over MLLP; the gateway answers its own ACK from the
    /// engine's outcome.
    Mllp {
        /// `host:port` of the local engine.
        addr: Text,
    },
}

impl SinkConfig {
    /// The sink's kind as a spec names it: `inbox`, `webhook` or `mllp`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Inbox => "inbox",
            Self::Webhook { .. } => "webhook",
            Self::Mllp { .. } => "mllp",
        }
    }
}

/// The spec writes the inbox as `inbox: {}` (an object, so the three sinks look alike), while
/// the configuration needs no fields for it.
mod empty_object {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Empty {}

    pub(super) fn serialize<S: Serializer>(serializer: S) -> Result<S::Ok, S::Error> {
        Empty {}.serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<(), D::Error> {
        Empty::deserialize(deserializer).map(|Empty {}| ())
    }

    #[cfg(feature = "schema")]
    pub(super) fn schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "additionalProperties": false
        })
    }
}
