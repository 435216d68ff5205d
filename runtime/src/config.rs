//! A gateway's configuration as generated from its spec: plain `'static` data the transport
//! reads. Generated crates define one [`Environment`] per spec environment.

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Environment {
    /// Which one.
    pub name: EnvName,
    /// MSH-11 accepted and written.
    pub processing_id: &'static str,
    /// The receiving side, when the spec has inbound messages.
    pub receive: Option<ReceiveConfig>,
    /// The sending side, when the spec has outbound messages.
    pub send: Option<SendConfig>,
    /// The SQLite store, relative to the spec's folder.
    pub store: &'static str,
    /// Where accepted inbound records go.
    pub sink: SinkConfig,
}

/// The receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveConfig {
    /// `IP:PORT` to listen on.
    pub listen: &'static str,
    /// URL path engines POST to.
    pub path: &'static str,
    /// Public host name.
    pub hostname: &'static str,
    /// Server certificate chain (PEM), relative to the spec's folder.
    pub cert: &'static str,
    /// Server key (PEM).
    pub key: &'static str,
    /// CA(s) for client certificates (PEM).
    pub client_ca: &'static str,
    /// Client subjects allowed after the handshake (`CN=…`, `DNS:…`).
    pub allowed_clients: &'static [&'static str],
    /// IP ranges allowed to connect (CIDR).
    pub allowed_ips: &'static [&'static str],
    /// Largest body in bytes.
    pub max_body: u64,
    /// MSH-5 expected, when named.
    pub receiving_application: Option<&'static str>,
    /// MSH-6 expected, when named.
    pub receiving_facility: Option<&'static str>,
    /// The ACK's Content-Type (`application/hl7-v2`, `text/plain`, …), or `None` to follow
    /// the request's.
    pub response_content_type: Option<&'static str>,
}

/// The sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendConfig {
    /// The engine's HTTPS URL.
    pub url: &'static str,
    /// Client certificate chain (PEM).
    pub cert: &'static str,
    /// Client key (PEM).
    pub key: &'static str,
    /// CA(s) for the engine's server certificate (PEM).
    pub server_ca: &'static str,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkConfig {
    /// Kept in the store; EMS pulls them.
    Inbox,
    /// POSTed as JSON to this URL.
    Webhook {
        /// The URL.
        url: &'static str,
    },
    /// Forwarded over MLLP to this `host:port`.
    Mllp {
        /// The address.
        addr: &'static str,
    },
}
