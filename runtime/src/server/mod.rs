//! The receiver: HL7 v2 over HTTPS with mutual TLS, generic over what processes a message
//! (a [`Handler`]).
//!
//! # One connection, step by step
//!
//! 1. **Accept.** The peer's IP is checked against [`Settings::allowed_ips`] right after
//!    `accept`, before a single byte is read: outside the list, the socket is closed (the
//!    client sees EOF or a reset, never a ServerHello) and counted as
//!    `hl7gw_connections_rejected_total{listener="receive",reason="ip"}`. IPv4-mapped IPv6 addresses
//!    (`::ffff:10.0.0.1`, from a dual-stack listener) are checked as IPv4. An empty list
//!    admits nobody. Past [`Settings::max_connections`] open connections, new ones are closed
//!    the same way (`reason="capacity"`); so are connections from an address that already
//!    has [`Settings::max_connections_per_ip`] open (`reason="per_ip"`), and any connection
//!    while [`Settings::max_handshakes`] are in the TLS handshake (`reason="handshakes"`).
//!    The per-address cap is below both other limits, so idle connections from one address
//!    never lock another out.
//! 2. **TLS handshake**, bounded by [`Settings::handshake_timeout`]: TLS 1.2 or 1.3, client
//!    certificate required and verified against the client CA (see [`crate::tls`]). Failures
//!    are counted by reason in `hl7gw_tls_failures_total{listener="receive"}`. Steps 2 and 3 are
//!    the one TLS accept path the EMS-facing listeners share (`crate::accept`).
//! 3. **Subject check.** The client certificate's names (`CN=…`, `DNS:…`) must match one of
//!    [`Settings::allowed_clients`]; otherwise the connection is closed (a TLS close_notify,
//!    then FIN) and counted as `reason="subject"`. An empty list admits nobody.
//! 4. **HTTP**: HTTP/1.1 with keep-alive; HTTP/2 only when [`Settings::http2`] is on and
//!    ALPN chose `h2`. Engines differ (`docs/peers.md`): HAPI closes after each request,
//!    Mirth keeps the connection and reuses it; both work.
//!
//! # HTTP/2 and `Expect: 100-continue`
//!
//! hyper's HTTP/2 server never sends `100 Continue` (hyperium/hyper#2743): a client that
//! negotiated `h2` and waits for the 100 before sending its body (JDK HttpClient with
//! `expectContinue(true)`) waits until its own timeout and never gets its ACK. So by default
//! the receiver offers only `http/1.1` in ALPN ([`crate::tls::alpn_protocols`]) and serves
//! HTTP/1.1 only, where hyper sends the 100 when the body is first read; a spec enables
//! HTTP/2 (`receive.http2: true`) for a customer whose engines need it and do not wait for
//! a 100.
//!
//! # Time limits
//!
//! - [`Settings::header_timeout`]: from the first byte of a request to the end of its headers
//!   (HTTP/1.1). Past it the connection is dropped.
//! - [`Settings::body_timeout`]: from the end of the headers to the end of the body. Past it:
//!   `408 Request Timeout` and the connection is closed.
//! - [`Settings::idle_timeout`]: a connection with no request in progress and no byte of a new
//!   one for this long is closed gracefully (HTTP/2: GOAWAY).
//! - The handler itself is not timed: it answers when the message is committed (or not).
//!
//! These are enforced by a small per-connection watchdog rather than hyper's
//! `header_read_timeout`, because hyper starts that timer as soon as a keep-alive connection
//! waits for its next request, which would make the header limit an idle limit too.
//!
//! # The status-code contract (docs/contracts.md)
//!
//! Every response has a `text/plain; charset=utf-8` body saying what was wrong, except the 200
//! ACK. Checks run in this order, and the body is read only after all of the first four pass
//! (so a client sending `Expect: 100-continue` gets its `100 Continue` only then):
//!
//! | status | when |
//! |---|---|
//! | 404 | the path is not [`Settings::path`] (the query string is ignored) |
//! | 405 | the method is not POST (with `Allow: POST`) |
//! | 413 | the declared `Content-Length` is over [`Settings::max_body`], or the body grows past it |
//! | 415 | the charset is not supported; or the media type is not one of [`MediaType`] and either the check is strict or the body is not HL7 either (see below) |
//! | 408 | the body did not arrive within [`Settings::body_timeout`] |
//! | 400 | the body is empty (after removing MLLP framing) or the handler says it is not HL7 |
//! | 503 | the bodies in flight hold [`Settings::body_memory`] (with `Retry-After`, before the body is read when its length is declared), or the handler cannot commit the message: the sender should retry |
//! | 200 | an ACK, whatever its code (AA, AE, AR…): never 4xx/5xx for an AE/AR outcome |
//!
//! After a 404, 405, 408, 413 or a 415 sent before the body was read, on HTTP/1.1 the
//! response carries `Connection: close`: the body was not read, so the connection cannot
//! carry another request.
//!
//! A request its client cancels (an HTTP/2 RST_STREAM, or the connection closed or reset)
//! gets no response and is not logged or counted as one: it is logged as cancelled and
//! counted in `hl7gw_requests_cancelled_total{stage}`, `body` while the body was arriving
//! (nothing was processed) or `processing` after it (the handler runs on its own task and
//! finishes, so a message it commits is answered from the store when the client retries).
//!
//! # Content types
//!
//! The HL7 media types: `application/hl7-v2`, `application/hl7-v2+er7`,
//! `x-application/hl7-v2+er7` and `text/plain` (case-insensitive), each with an optional
//! `charset` of UTF-8, ISO-8859-1 (latin1, InterSystems' default) or US-ASCII. Another charset
//! is a 415, never a guess. A request **without** Content-Type is accepted as `text/plain`
//! with no charset (the handler falls back to MSH-18 or UTF-8): InterSystems' HTTP operation
//! sends none by default and BizTalk's is unknown, and refusing them would only turn a working
//! message into a support call. The charset reaches the handler as [`Hl7Request::charset`].
//!
//! Another media type ([`Settings::request_content_type`]): by default (`lenient`) the body is
//! read anyway, since some InterSystems and BizTalk adapters label HL7 `text/html` or
//! `text/xml`. When the handler reads it as HL7 it is processed exactly as one without
//! Content-Type (the charset parameter still counts), and counted in
//! `hl7gw_unexpected_content_type_total{media_type}` (a fixed set of names, else `other`);
//! when it is not HL7 (or empty) the answer is 415, as before. `strict` answers 415 before
//! reading the body.
//!
//! The ACK's Content-Type follows [`Settings::response_content_type`]: by default the
//! request's media type (`text/plain` in, `text/plain` out, so Mirth's HTTP Sender does not
//! Base64-encode it; `application/hl7-v2` in, `application/hl7-v2` out, as HAPI requires),
//! with `; charset=` the ACK's charset. A request without Content-Type, or with one that is
//! not an HL7 type, gets `text/plain`.
//!
//! # Bodies
//!
//! MLLP framing bytes around the message (InterSystems' default framing) are removed before
//! the handler sees the body ([`crate::mllp::strip_http_body`]); segment separators (CR, LF,
//! CRLF) are passed through unchanged for the parser's lenient mode.
//!
//! # Logs
//!
//! One `tracing` event per response at INFO: request id, peer IP, client subject, status,
//! sizes, latency, and for an ACK the message type and ACK code. Never a body, never a
//! header value that could hold patient data, never the handler's error text (that goes to
//! the sender only).

mod conn;
mod http;
mod memory;
mod ops;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ipnet::IpNet;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::config::{Limits, ReceiveConfig};
use crate::hl7::Charset;
use crate::listeners::Role;
use crate::metrics::{Metrics, reject};

pub use ops::{Exposure, MetricsSource, OpsServer, serve_ops};

// The media types and the ACK's Content-Type are configuration vocabulary, defined once.
pub use crate::config::{MediaType, RequestContentType, ResponseContentType};

/// How the receiver listens and what it admits.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address to listen on (port 0 picks a free port; see [`Receiver::local_addr`]).
    pub listen: SocketAddr,
    /// The one URL path engines POST to, e.g. `/hl7`.
    pub path: String,
    /// IP ranges allowed to connect. Empty: nobody.
    pub allowed_ips: Vec<IpNet>,
    /// Client certificate subjects allowed (`CN=…`, `DNS:…`; see
    /// [`crate::tls::matching_subject`]). Empty: nobody.
    pub allowed_clients: Vec<String>,
    /// Largest body in bytes (MLLP framing included).
    pub max_body: u64,
    /// Time to receive a request's headers, from its first byte.
    pub header_timeout: Duration,
    /// Time to receive a request's body, after its headers.
    pub body_timeout: Duration,
    /// Time a connection may stay open with no request.
    pub idle_timeout: Duration,
    /// Time for the TLS handshake.
    pub handshake_timeout: Duration,
    /// On shutdown, time for requests in progress to finish before connections are dropped.
    pub shutdown_timeout: Duration,
    /// Most connections served at once.
    pub max_connections: usize,
    /// Most connections from one source address at once (handshakes included); less than
    /// `max_connections` and `max_handshakes`, so one address leaves room for the others.
    pub max_connections_per_ip: usize,
    /// Most connections in the TLS handshake at once.
    pub max_handshakes: usize,
    /// Bytes of request bodies held at once across every connection; when spent, 503 with
    /// `Retry-After` (see the module docs).
    pub body_memory: u64,
    /// The Content-Type of ACKs.
    pub response_content_type: ResponseContentType,
    /// How strictly the request's Content-Type is read (see the module docs).
    pub request_content_type: RequestContentType,
    /// Offer HTTP/2 in ALPN. Off by default: see the module docs on `Expect: 100-continue`.
    pub http2: bool,
    /// The host name requests must name (`Host`, or HTTP/2's `:authority`), port aside and
    /// case ignored; another gets `421 Misdirected Request`. Set by the host
    /// ([`crate::host`]) to the TLS server name it routed the connection by; `None` (a
    /// single-customer gateway) checks nothing.
    pub expected_host: Option<String>,
}

impl Settings {
    /// Default largest body: [`crate::config::defaults::MAX_BODY`].
    pub const DEFAULT_MAX_BODY: u64 = crate::config::defaults::MAX_BODY.bytes();

    /// Settings with the defaults: nobody allowed yet, bodies up to
    /// [`Self::DEFAULT_MAX_BODY`], 30 s for headers, 60 s for the body, 120 s idle, 10 s for
    /// the handshake, 30 s to shut down, the connection and memory limits of
    /// [`Limits::DEFAULT`], the ACK's Content-Type following the request's, any Content-Type
    /// read when the body is HL7, HTTP/1.1 only.
    pub fn new(listen: SocketAddr, path: impl Into<String>) -> Self {
        Self {
            listen,
            path: path.into(),
            allowed_ips: Vec::new(),
            allowed_clients: Vec::new(),
            max_body: Self::DEFAULT_MAX_BODY,
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(120),
            handshake_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(30),
            // Set from the default limits just below.
            max_connections: 0,
            max_connections_per_ip: 0,
            max_handshakes: 0,
            body_memory: 0,
            response_content_type: crate::config::defaults::RESPONSE_CONTENT_TYPE,
            request_content_type: crate::config::defaults::REQUEST_CONTENT_TYPE,
            http2: crate::config::defaults::HTTP2,
            expected_host: None,
        }
        .with_limits(&Limits::DEFAULT)
    }

    /// These settings with an environment's connection and memory limits.
    pub fn with_limits(mut self, limits: &Limits) -> Self {
        let count = |n: u32| usize::try_from(n).unwrap_or(usize::MAX);
        self.max_connections = count(limits.connections);
        self.max_connections_per_ip = count(limits.connections_per_ip);
        self.max_handshakes = count(limits.handshakes);
        self.body_memory = limits.body_memory.bytes();
        self
    }

    /// Settings from a generated gateway's receive configuration, with the default time
    /// limits. An allowed IP may be a range (`10.0.0.0/24`) or one address.
    pub fn from_receive(config: &ReceiveConfig) -> Result<Self, SettingsError> {
        let listen = config
            .listen
            .parse()
            .map_err(|_| SettingsError::Listen(config.listen.to_string()))?;
        let mut settings = Self::new(listen, &*config.path);
        settings.allowed_ips = config
            .allowed_ips
            .iter()
            .map(|text| parse_ip_range(text))
            .collect::<Result<_, _>>()?;
        settings.allowed_clients = config
            .allowed_clients
            .iter()
            .map(|s| s.to_string())
            .collect();
        settings.max_body = config.max_body;
        if let Some(name) = &config.response_content_type {
            let media = MediaType::parse(name)
                .ok_or_else(|| SettingsError::ContentType(name.to_string()))?;
            settings.response_content_type = ResponseContentType::Fixed(media);
        }
        settings.request_content_type = config.request_content_type;
        settings.http2 = config.http2;
        Ok(settings)
    }
}

/// An IP range (`10.0.0.0/24`) or one address (`10.0.0.1`, as a /32 or /128).
pub fn parse_ip_range(text: &str) -> Result<IpNet, SettingsError> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| SettingsError::IpRange(text.to_owned()))
}

/// A receive configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The listen address is not `IP:PORT`.
    #[error("listen address `{0}` is not IP:PORT")]
    Listen(String),
    /// An allowed IP range is not CIDR or an address.
    #[error("allowed IP `{0}` is neither a CIDR range nor an address")]
    IpRange(String),
    /// The response content type is not one the receiver can answer with.
    #[error(
        "response content type `{0}` is not application/hl7-v2, application/hl7-v2+er7, x-application/hl7-v2+er7 or text/plain"
    )]
    ContentType(String),
}

/// The receiver could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Could not listen.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The operations port asked to bind beyond loopback without the operator's consent.
    #[error(
        "the operations port (/healthz, /metrics) has no TLS and no authentication: it binds loopback addresses only, not {addr}; pass --ops-beyond-loopback to bind it on a management network"
    )]
    OpsNotLoopback {
        /// The address.
        addr: SocketAddr,
    },
}

/// One HL7 message as received, for the [`Handler`].
#[derive(Debug, Clone)]
pub struct Hl7Request {
    /// The body with any MLLP framing removed; never empty. Segment separators as sent.
    pub body: Bytes,
    /// The Content-Type's charset parameter, when there was one.
    pub charset: Option<Charset>,
    /// The Content-Type's media type; `None` when the request had no Content-Type or one
    /// that is not an HL7 type (read anyway, see the module docs).
    pub media_type: Option<MediaType>,
    /// Who sent it.
    pub peer_ip: IpAddr,
    /// The allowed-client entry the client certificate matched (`CN=…` or `DNS:…`).
    pub peer_subject: String,
    /// This request's id, also in the response's `X-Request-Id` and the logs.
    pub request_id: String,
}

/// An ACK to send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The ACK message, already encoded in `charset`.
    pub body: Vec<u8>,
    /// Its charset, named in the response's Content-Type.
    pub charset: Charset,
    /// The acknowledged message's type, `TYPE^TRIGGER` (for metrics and logs), or
    /// `unknown`.
    pub message_type: String,
    /// The ACK code, MSA-1 (`AA`, `AE`, `AR`, `CA`, `CE`, `CR`).
    pub code: String,
}

/// What the handler decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hl7Response {
    /// 200 with the ACK, whatever its code.
    Ack(Ack),
    /// 400: the body is not HL7 (MSH unreadable). The text says what was wrong; it goes to
    /// the sender only, never to the logs.
    NotHl7(String),
    /// 503: the gateway cannot commit the message now (store down, disk full); the sender
    /// retries. The text goes to the sender only.
    Unavailable(String),
}

/// What processes messages: parse, decide, store, build the ACK.
///
/// Called once per request whose transport checks passed. Must answer AA only once the
/// message is durably committed.
pub trait Handler: Send + Sync + 'static {
    /// Processes one message.
    fn handle(&self, request: Hl7Request) -> impl Future<Output = Hl7Response> + Send;
}

/// Everything the connection tasks share.
struct Shared<H> {
    settings: Settings,
    tls: Arc<rustls::ServerConfig>,
    handler: H,
    metrics: Arc<Metrics>,
    admission: Arc<crate::admission::Admission>,
    body_memory: memory::BodyMemory,
    /// Prefix of request ids: the start time, so ids stay unique across restarts.
    id_prefix: String,
    next_id: AtomicU64,
}

impl<H> Shared<H> {
    fn request_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.id_prefix)
    }
}

/// A bound receiver, ready to [`run`](Self::run).
pub struct Receiver<H> {
    incoming: Incoming,
    shared: Arc<Shared<H>>,
}

/// Where a receiver's connections come from: its own socket, or the host's shared one
/// ([`crate::host`]), which hands over each connection whose TLS server name is this
/// customer's with its ClientHello still unread.
enum Incoming {
    Bound(TcpListener),
    Routed {
        connections: mpsc::Receiver<RoutedConnection>,
        /// The host's receive address (what [`Receiver::local_addr`] reports).
        addr: SocketAddr,
    },
}

impl Incoming {
    async fn accept(&mut self) -> std::io::Result<(TcpStream, SocketAddr)> {
        match self {
            Self::Bound(listener) => listener.accept().await,
            Self::Routed { connections, .. } => match connections.recv().await {
                Some(routed) => Ok((routed.tcp, routed.peer)),
                // The host stopped routing: nothing more comes until shutdown.
                None => std::future::pending().await,
            },
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            Self::Bound(listener) => listener.local_addr(),
            Self::Routed { addr, .. } => Ok(*addr),
        }
    }
}

/// A connection the host accepted and routed to one customer's receiver by its TLS server
/// name. Nothing has been read from it (the host only peeked at the ClientHello), so the
/// receiver runs its whole accept path on it: IP allowlist, admission, handshake with the
/// customer's own TLS configuration, subject allowlist.
#[derive(Debug)]
pub struct RoutedConnection {
    /// The connection.
    pub tcp: TcpStream,
    /// The peer's address.
    pub peer: SocketAddr,
}

/// How many routed connections may wait for a receiver's accept loop.
const ROUTED_BACKLOG: usize = 64;

impl<H: Handler> Receiver<H> {
    /// Binds the listening socket. The TLS configuration's ALPN list is replaced by the one
    /// [`Settings::http2`] allows.
    pub async fn bind(
        settings: Settings,
        tls: Arc<rustls::ServerConfig>,
        handler: H,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ServerError> {
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: settings.listen,
                    source,
                })?;
        Ok(Self::with_incoming(
            Incoming::Bound(listener),
            settings,
            tls,
            handler,
            metrics,
        ))
    }

    /// A receiver that binds nothing: the host ([`crate::host`]) sends it the connections
    /// whose TLS server name is this customer's through the returned sender.
    /// [`Settings::listen`] is the host's receive address.
    pub fn routed(
        settings: Settings,
        tls: Arc<rustls::ServerConfig>,
        handler: H,
        metrics: Arc<Metrics>,
    ) -> (Self, mpsc::Sender<RoutedConnection>) {
        let (route, connections) = mpsc::channel(ROUTED_BACKLOG);
        let incoming = Incoming::Routed {
            connections,
            addr: settings.listen,
        };
        (
            Self::with_incoming(incoming, settings, tls, handler, metrics),
            route,
        )
    }

    fn with_incoming(
        incoming: Incoming,
        settings: Settings,
        tls: Arc<rustls::ServerConfig>,
        handler: H,
        metrics: Arc<Metrics>,
    ) -> Self {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let tls = crate::tls::with_alpn(&tls, settings.http2);
        let admission = crate::admission::Admission::new(
            settings.max_connections_per_ip,
            settings.max_handshakes,
        );
        let body_memory = memory::BodyMemory::new(settings.body_memory);
        Self {
            incoming,
            shared: Arc::new(Shared {
                settings,
                tls,
                handler,
                metrics,
                admission,
                body_memory,
                id_prefix: format!("{started:x}"),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// The address actually bound (for a routed receiver, the host's).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.incoming.local_addr()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets requests in progress
    /// finish (up to [`Settings::shutdown_timeout`]) and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let Self {
            incoming: mut listener,
            shared,
        } = self;
        let settings = &shared.settings;
        if settings.allowed_ips.is_empty() {
            warn!("receiver: no allowed IPs; every connection will be refused");
        }
        if settings.allowed_clients.is_empty() {
            warn!("receiver: no allowed client subjects; every client will be refused");
        }
        info!(
            listen = %listener.local_addr().map_or_else(|_| settings.listen.to_string(), |a| a.to_string()),
            path = %settings.path,
            "receiver listening"
        );
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Err(e) = done
                        && e.is_panic()
                    {
                        warn!("receiver: a connection task panicked");
                    }
                }
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        shared.metrics.connection_accepted();
                        let ip = canonical_ip(peer.ip());
                        if !settings.allowed_ips.iter().any(|net| net.contains(&ip)) {
                            shared.metrics.connection_rejected(Role::Receive, reject::IP);
                            info!(peer_ip = %ip, "connection refused: IP not allowed");
                            drop(tcp);
                            continue;
                        }
                        if tasks.len() >= settings.max_connections {
                            shared.metrics.connection_rejected(Role::Receive, reject::CAPACITY);
                            warn!(peer_ip = %ip, open = tasks.len(), "connection refused: too many connections");
                            drop(tcp);
                            continue;
                        }
                        let slots = match shared.admission.admit(ip) {
                            Ok(slots) => slots,
                            Err(refused) => {
                                shared.metrics.connection_rejected(Role::Receive, refused.reason());
                                info!(peer_ip = %ip, reason = refused.reason(), "connection refused: no slot for this address now");
                                drop(tcp);
                                continue;
                            }
                        };
                        tasks.spawn(conn::serve_connection(
                            shared.clone(),
                            tcp,
                            ip,
                            slots,
                            stop_rx.clone(),
                        ));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: wait rather than spin.
                        warn!(error = %e, "receiver: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        drop(listener);
        info!(
            connections = tasks.len(),
            "receiver shutting down: no new connections"
        );
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(settings.shutdown_timeout, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!(
                connections = tasks.len(),
                "receiver: connections still open after the shutdown timeout; dropping them"
            );
            tasks.shutdown().await;
        }
        info!("receiver stopped");
        Ok(())
    }
}

/// Binds and runs a receiver until `shutdown` completes ([`Receiver::bind`] then
/// [`Receiver::run`]).
pub async fn serve<H: Handler>(
    settings: Settings,
    tls: Arc<rustls::ServerConfig>,
    handler: H,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    Receiver::bind(settings, tls, handler, metrics)
        .await?
        .run(shutdown)
        .await
}

/// IPv4-mapped IPv6 addresses as IPv4, everything else unchanged.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(content_type: Option<&'static str>) -> ReceiveConfig {
        ReceiveConfig {
            listen: "127.0.0.1:0".into(),
            path: "/hl7".into(),
            hostname: "localhost".into(),
            cert: "server.crt".into(),
            key: "server.key".into(),
            client_ca: "ca.crt".into(),
            client_crl: None,
            allowed_clients: vec!["CN=tie".into()].into(),
            allowed_ips: vec!["127.0.0.0/8".into()].into(),
            max_body: 1024,
            receiving_application: None,
            receiving_facility: None,
            response_content_type: content_type.map(Into::into),
            request_content_type: RequestContentType::Strict,
            http2: true,
        }
    }

    #[test]
    fn the_spec_fixes_or_follows_the_response_content_type() {
        let follow = Settings::from_receive(&receive(None)).unwrap();
        assert_eq!(
            follow.response_content_type,
            ResponseContentType::FollowRequest
        );
        let fixed = Settings::from_receive(&receive(Some("text/plain"))).unwrap();
        assert_eq!(
            fixed.response_content_type,
            ResponseContentType::Fixed(MediaType::TextPlain)
        );
        assert!(Settings::from_receive(&receive(Some("text/html"))).is_err());
    }

    #[test]
    fn the_spec_sets_http2_and_the_request_content_type_check() {
        let spec = Settings::from_receive(&receive(None)).unwrap();
        assert!(spec.http2);
        assert_eq!(spec.request_content_type, RequestContentType::Strict);
        let defaults = Settings::new("127.0.0.1:0".parse().unwrap(), "/hl7");
        assert!(!defaults.http2);
        assert_eq!(defaults.request_content_type, RequestContentType::Lenient);
    }

    #[test]
    fn media_types_parse_ignoring_case() {
        assert_eq!(
            MediaType::parse("Application/HL7-v2"),
            Some(MediaType::Hl7V2)
        );
        assert_eq!(
            MediaType::parse(" x-application/hl7-v2+er7 "),
            Some(MediaType::XHl7V2Er7)
        );
        assert_eq!(MediaType::parse("application/json"), None);
    }

    #[test]
    fn ip_ranges_and_mapped_addresses() {
        assert_eq!(
            parse_ip_range("10.0.0.1").unwrap(),
            "10.0.0.1/32".parse::<IpNet>().unwrap()
        );
        assert!(parse_ip_range("10.0.0.0/33").is_err());
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(canonical_ip(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(canonical_ip(v6), v6);
    }
}
