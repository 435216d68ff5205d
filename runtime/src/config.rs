//! A gateway's configuration as generated from its spec: the data the transport reads.
//! Generated crates define one [`Environment`] per spec environment as a `const` (every
//! text a [`Cow::Borrowed`]); tests and tools build owned ones ([`Cow::Owned`], or
//! `.into()` from a `String`). Nothing here needs to live for `'static`.

use std::borrow::Cow;

/// Text in a configuration: borrowed from the generated crate or owned.
pub type Text = Cow<'static, str>;

/// A list of texts in a configuration.
pub type TextList = Cow<'static, [Text]>;

/// Which environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
}

/// What the sender does after one class of failure (see the spec's `on_*` keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Keep retrying with backoff; the stream waits.
    Retry,
    /// Retry this many times, then hold.
    RetryThenHold(u32),
    /// Hold the stream until an operator acts.
    Hold,
    /// Keep the message, record the failure, go on.
    Skip,
}

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
    /// The SQLite store, relative to the spec's folder.
    pub store: Text,
    /// Where accepted inbound records go.
    pub sink: SinkConfig,
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
    /// ACK timeout in milliseconds.
    pub timeout_ms: u64,
    /// First retry delay in milliseconds.
    pub backoff_first_ms: u64,
    /// Largest retry delay in milliseconds.
    pub backoff_max_ms: u64,
    /// After a connection failure.
    pub on_connect_error: FailurePolicy,
    /// After a timeout.
    pub on_timeout: FailurePolicy,
    /// After HTTP 5xx.
    pub on_5xx: FailurePolicy,
    /// After HTTP 4xx.
    pub on_4xx: FailurePolicy,
    /// After an unreadable ACK or an MSA-2 mismatch.
    pub on_bad_ack: FailurePolicy,
    /// After AE/CE.
    pub on_ae: FailurePolicy,
    /// After AR/CR.
    pub on_ar: FailurePolicy,
}

/// Where accepted inbound records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkConfig {
    /// Kept in the store; EMS pulls them.
    Inbox,
    /// POSTed as JSON to this URL.
    Webhook {
        /// The URL.
        url: Text,
    },
    /// Forwarded over MLLP to this `host:port`.
    Mllp {
        /// The address.
        addr: Text,
    },
}
