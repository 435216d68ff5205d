//! What a gateway does where its spec says nothing: every default, stated once. The compiler
//! fills these into the generated configuration, the sequencer and the receiver fall back to
//! them, and docs/spec.md's table of defaults names these constants.

use super::units::{ByteSize, Duration};
use super::vocab::{Acknowledgement, FailurePolicy, RequestContentType, ResponseContentType};

/// `receive.max_body`: the largest request body (a PDF report in OBX-5 is the big case).
pub const MAX_BODY: ByteSize = ByteSize::from_bytes(20 << 20);
/// `receive.response_content_type`: follow the request's own Content-Type.
pub const RESPONSE_CONTENT_TYPE: ResponseContentType = ResponseContentType::FollowRequest;
/// `receive.request_content_type`: an HL7 body is read whatever its Content-Type says.
pub const REQUEST_CONTENT_TYPE: RequestContentType = RequestContentType::Lenient;
/// `receive.http2`: HTTP/1.1 only. hyper's HTTP/2 server cannot send `100 Continue`
/// (hyperium/hyper#2743), so a client that offers `h2` and waits for the 100 (JDK
/// HttpClient with `expectContinue(true)`) would never send its body.
pub const HTTP2: bool = false;
/// `send.timeout`: how long to wait for the ACK of one message.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// `send.backoff.first`: the delay after the first failure.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// `send.backoff.max`: the largest delay between retries.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5 * 60);
/// `send.on_connect_error`: a connection that failed delivered nothing, so try again.
pub const ON_CONNECT_ERROR: FailurePolicy = FailurePolicy::Retry;
/// `send.on_timeout`.
pub const ON_TIMEOUT: FailurePolicy = FailurePolicy::Retry;
/// `send.on_5xx`.
pub const ON_5XX: FailurePolicy = FailurePolicy::Retry;
/// `send.on_4xx`: the engine refused the request itself; resending it will not help.
pub const ON_4XX: FailurePolicy = FailurePolicy::Hold;
/// `send.on_bad_ack`.
pub const ON_BAD_ACK: FailurePolicy = FailurePolicy::Retry;
/// `send.on_ae`: the engine could not process the message; an operator decides.
pub const ON_AE: FailurePolicy = FailurePolicy::Hold;
/// `send.on_ar`.
pub const ON_AR: FailurePolicy = FailurePolicy::Hold;
/// `send.sending_application`: MSH-3 of the messages built from records.
pub const SENDING_APPLICATION: &str = "EMS";
/// `send.sending_facility`: MSH-4 of the messages built from records.
pub const SENDING_FACILITY: &str = "EMS";
/// `sink`: the inbox (records stay in the store; EMS pulls them).
pub const SINK: super::SinkConfig = super::SinkConfig::Inbox;
/// `retention`: how long the store keeps inbound rows (the audit trail, records EMS took)
/// and outbound messages delivered or skipped. Well beyond any sender's retry window: once a
/// committed row is pruned its MSH-10 is forgotten and a late repeat would be applied again.
pub const RETENTION: Duration = Duration::from_secs(90 * 86_400);
/// `acknowledgement`: application ACKs (AA/AE/AR) whatever MSH-15/MSH-16 ask.
pub const ACKNOWLEDGEMENT: Acknowledgement = Acknowledgement::Application;
/// `limits.connections`: connections served at once (receiver; each EMS-facing listener).
pub const CONNECTIONS: u32 = 256;
/// `limits.connections_per_ip`: connections from one source address at once (receiver; each
/// EMS-facing listener), so one address (a misbehaving engine, a scanner inside the
/// allowlist) leaves room for the others.
pub const CONNECTIONS_PER_IP: u32 = 32;
/// `limits.handshakes`: connections still in the TLS handshake at once (receiver; each
/// EMS-facing listener).
pub const HANDSHAKES: u32 = 64;
/// `limits.body_memory`: bytes of request bodies held in memory at once, across every
/// connection (each body is held whole until its message is committed).
pub const BODY_MEMORY: ByteSize = ByteSize::from_bytes(256 << 20);
/// `limits.mllp_connections`: intake MLLP sessions open at once, once authenticated.
pub const MLLP_CONNECTIONS: u32 = 32;
/// `limits.mllp_idle_timeout`: an intake MLLP connection that sends no byte for this long is
/// closed.
pub const MLLP_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// `store.postgres.port`.
pub const POSTGRES_PORT: u16 = 5432;
/// `store.postgres.pool_size`: connections one replica opens at most.
pub const POSTGRES_POOL_SIZE: u32 = 8;
/// `store.postgres.lease`: how long a replica's lease on an outbound stream lasts without
/// renewal (renewed every third of it): the longest a stream waits after its leader died.
pub const STREAM_LEASE: Duration = Duration::from_secs(10);
