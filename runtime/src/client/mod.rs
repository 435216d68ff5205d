//! The sender: one HL7 message per HTTPS POST to the Trust's engine, and every outcome sorted
//! into the failure classes the spec configures (`on_connect_error`, `on_timeout`, `on_5xx`,
//! `on_4xx`, `on_bad_ack`, `on_ae`, `on_ar`).
//!
//! # Transport
//!
//! A hand-rolled single-connection client: hyper 1's HTTP/1.1 client connection
//! (`hyper::client::conn::http1`) over tokio-rustls, no pool. The sequencer
//! ([`crate::queue::Sequencer`]) has exactly one message in flight per destination, so one
//! connection is all a stream ever needs, and owning it directly makes the rules plain:
//!
//! - **Keep-alive**: the connection is reused for the next message while the engine keeps
//!   it open; a connection the engine closed (idle timeout, `Connection: close`) is noticed
//!   before the next request and replaced. If a reused connection turns out to be dead
//!   before the request was written (hyper reports it *canceled*), the request is sent once
//!   more on a new connection: nothing was sent, so nothing can be duplicated.
//! - **After a timeout or any transport error the connection is dropped**, never reused: a
//!   late response on it would be read as the answer to the next message.
//! - **Timeout**: `timeout` bounds each phase against one deadline per attempt: TCP connect,
//!   TLS handshake, request, and the complete response body. A connect or handshake that
//!   runs out of time is a *connect error*; a request without a complete response in time
//!   is a *timeout*.
//! - **TLS**: [`client_config`]: the spec's client certificate, the spec's server CA as the
//!   only root, hostname verification on.
//! - **Request**: `POST <path>`, `Host`, `Content-Type: application/hl7-v2; charset=<MSH-18
//!   charset, UTF-8 by default>` (another media type through [`HttpsClient::with_media_type`]),
//!   `Content-Length` (never chunked), `User-Agent: hl7gw/<ver>`.
//!
//! # Outcomes
//!
//! | what happened | class | default policy |
//! |---|---|---|
//! | DNS, TCP connect, TLS handshake (bad server certificate, client certificate refused), connection lost before the whole response | [`FailureClass::Connect`] | retry |
//! | no complete response within the timeout | [`FailureClass::Timeout`] | retry |
//! | HTTP 5xx | [`FailureClass::Http5xx`] | retry |
//! | HTTP 4xx, and any other non-2xx status (3xx: redirects are not followed) | [`FailureClass::Http4xx`] | hold |
//! | 2xx whose body is not an HL7 ACK (empty, unparsable, no MSA, unknown MSA-1, larger than the limit), or whose MSA-2 is not the sent MSH-10 | [`FailureClass::BadAck`] | retry |
//! | AE / CE (MSA-2 matching) | [`FailureClass::AckError`] | hold |
//! | AR / CR (MSA-2 matching) | [`FailureClass::AckReject`] | hold |
//! | AA / CA (MSA-2 matching) | accepted | next message |
//!
//! The MSA-2 check comes first: an ACK for another message says nothing about this one.
//! The body of a 4xx/5xx is not kept (an engine's error page may echo the message); the
//! [`Outcome::detail`] holds the status, MSA-3 and ERR texts, or what went wrong, never the
//! message itself.

mod tls;

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue, USER_AGENT};
use hyper::http::uri::{Scheme, Uri};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsConnector;

pub use tls::{CLIENT_ALPN, client_config, client_config_from_pem};

use crate::hl7::{AckCode, AckReceipt, Charset, LineEndings, Message, ParseOptions, read_ack};

/// The largest response body read (an ACK is a few hundred bytes).
pub const DEFAULT_MAX_RESPONSE: usize = 1024 * 1024;

/// The media type of requests unless [`HttpsClient::with_media_type`] says otherwise.
pub const DEFAULT_MEDIA_TYPE: &str = "application/hl7-v2";

/// The longest [`Outcome::detail`] kept, in bytes.
pub const MAX_DETAIL: usize = 1000;

/// A failure class; each has its own policy in the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum FailureClass {
    /// No connection, TLS refused, or the connection lost before a complete response.
    #[serde(rename = "connect_error")]
    Connect,
    /// No complete response within the timeout.
    #[serde(rename = "timeout")]
    Timeout,
    /// HTTP 5xx.
    #[serde(rename = "http_5xx")]
    Http5xx,
    /// HTTP 4xx (and other non-2xx statuses).
    #[serde(rename = "http_4xx")]
    Http4xx,
    /// Not an ACK, or MSA-2 not the sent MSH-10.
    #[serde(rename = "bad_ack")]
    BadAck,
    /// AE or CE.
    #[serde(rename = "ae")]
    AckError,
    /// AR or CR.
    #[serde(rename = "ar")]
    AckReject,
}

impl FailureClass {
    /// Every class.
    pub const ALL: [FailureClass; 7] = [
        Self::Connect,
        Self::Timeout,
        Self::Http5xx,
        Self::Http4xx,
        Self::BadAck,
        Self::AckError,
        Self::AckReject,
    ];

    /// As stored and shown: `connect_error`, `timeout`, `http_5xx`, `http_4xx`, `bad_ack`,
    /// `ae`, `ar`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect_error",
            Self::Timeout => "timeout",
            Self::Http5xx => "http_5xx",
            Self::Http4xx => "http_4xx",
            Self::BadAck => "bad_ack",
            Self::AckError => "ae",
            Self::AckReject => "ar",
        }
    }

    /// Reads [`FailureClass::as_str`] back.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == text)
    }

    /// The spec key holding this class's policy (`on_connect_error`, …).
    pub fn spec_key(self) -> &'static str {
        match self {
            Self::Connect => "on_connect_error",
            Self::Timeout => "on_timeout",
            Self::Http5xx => "on_5xx",
            Self::Http4xx => "on_4xx",
            Self::BadAck => "on_bad_ack",
            Self::AckError => "on_ae",
            Self::AckReject => "on_ar",
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one attempt to deliver a message came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `None`: accepted (AA/CA with MSA-2 equal to the sent MSH-10).
    pub failure: Option<FailureClass>,
    /// The HTTP status, when a response arrived.
    pub http_status: Option<u16>,
    /// MSA-1, when an ACK could be read.
    pub ack_code: Option<AckCode>,
    /// For a person: MSA-3 and ERR texts, the status, or what went wrong. Never the message;
    /// at most [`MAX_DETAIL`] bytes.
    pub detail: String,
}

impl Outcome {
    /// An accepted message.
    pub fn accepted(http_status: u16, code: AckCode, detail: impl Into<String>) -> Self {
        Self {
            failure: None,
            http_status: Some(http_status),
            ack_code: Some(code),
            detail: cap(detail.into()),
        }
    }

    /// A failure without a response.
    pub fn failed(class: FailureClass, detail: impl Into<String>) -> Self {
        Self {
            failure: Some(class),
            http_status: None,
            ack_code: None,
            detail: cap(detail.into()),
        }
    }

    /// A failure with a response.
    pub fn responded(
        class: FailureClass,
        http_status: u16,
        ack_code: Option<AckCode>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            failure: Some(class),
            http_status: Some(http_status),
            ack_code,
            detail: cap(detail.into()),
        }
    }

    /// True when the message was accepted.
    pub fn is_accepted(&self) -> bool {
        self.failure.is_none()
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.failure {
            None => f.write_str("accepted")?,
            Some(class) => f.write_str(class.as_str())?,
        }
        if let Some(status) = self.http_status {
            write!(f, ", HTTP {status}")?;
        }
        if let Some(code) = self.ack_code {
            write!(f, ", {code}")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

fn cap(mut text: String) -> String {
    if text.len() > MAX_DETAIL {
        let mut end = MAX_DETAIL;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// One message to send.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// The message, byte for byte.
    pub raw: &'a [u8],
    /// Its MSH-10; the ACK's MSA-2 must equal it.
    pub control_id: &'a str,
    /// Its charset (MSH-18), named in the Content-Type.
    pub charset: Charset,
}

/// Something that delivers one message and reports the outcome: [`HttpsClient`], or a stand-in
/// in tests. Never fails outright: every failure is an [`Outcome`] with a class.
pub trait Transport: Send {
    /// Sends one message and waits for its outcome.
    fn send(&mut self, message: &Outgoing<'_>) -> impl Future<Output = Outcome> + Send;
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is unusable.
    #[error("send URL {url:?}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The certificates or keys do not load.
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// A media type that is not `type/subtype`.
    #[error("media type {0:?}: expected type/subtype, e.g. application/hl7-v2 or text/plain")]
    BadMediaType(String),
}

/// The HTTPS sender: one keep-alive connection to one engine URL. See the [module docs](self).
pub struct HttpsClient {
    url: String,
    host: String,
    port: u16,
    authority: HeaderValue,
    path: Uri,
    server_name: ServerName<'static>,
    connector: TlsConnector,
    timeout: Duration,
    max_response: usize,
    media_type: String,
    last_ack: Option<Bytes>,
    conn: Option<Connection>,
    connections_opened: u64,
}

impl fmt::Debug for HttpsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpsClient")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .field("connected", &self.conn.is_some())
            .finish_non_exhaustive()
    }
}

struct Connection {
    sender: http1::SendRequest<Full<Bytes>>,
    _driver: AbortOnDrop,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl HttpsClient {
    /// A client posting to `url` (`https://host[:port]/path`) with the TLS configuration
    /// `tls` (see [`client_config`]), each attempt bounded by `timeout`.
    pub fn new(url: &str, tls: Arc<ClientConfig>, timeout: Duration) -> Result<Self, ClientError> {
        let bad = |reason: &str| ClientError::BadUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: Uri = url
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| bad(&e.to_string()))?;
        if uri.scheme() != Some(&Scheme::HTTPS) {
            return Err(bad("only https:// URLs are supported"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = authority.port_u16().unwrap_or(443);
        let server_name = ServerName::try_from(host.clone())
            .map_err(|_| bad("the host is not a DNS name or IP address"))?;
        let authority_value =
            HeaderValue::from_str(authority.as_str()).map_err(|_| bad("invalid host"))?;
        let path: Uri = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| bad(&e.to_string()))?;
        Ok(Self {
            url: url.to_owned(),
            host,
            port,
            authority: authority_value,
            path,
            server_name,
            connector: TlsConnector::from(tls),
            timeout: timeout.max(Duration::from_millis(1)),
            max_response: DEFAULT_MAX_RESPONSE,
            media_type: DEFAULT_MEDIA_TYPE.to_owned(),
            last_ack: None,
            conn: None,
            connections_opened: 0,
        })
    }

    /// From a spec's send configuration, with the certificate paths already resolved.
    pub fn from_config(
        send: &crate::config::SendConfig,
        cert: &std::path::Path,
        key: &std::path::Path,
        server_ca: &std::path::Path,
    ) -> Result<Self, ClientError> {
        let tls = client_config(cert, key, server_ca)?;
        Self::new(&send.url, tls, Duration::from_millis(send.timeout_ms))
    }

    /// Reads at most this many response bytes (default [`DEFAULT_MAX_RESPONSE`]).
    pub fn with_max_response(mut self, bytes: usize) -> Self {
        self.max_response = bytes.max(1);
        self
    }

    /// Sends this media type instead of [`DEFAULT_MEDIA_TYPE`] (e.g. `text/plain` for an
    /// engine that wants it); `; charset=` the message's charset is still appended. A type
    /// with parameters or bytes a header cannot hold is refused.
    pub fn with_media_type(mut self, media_type: &str) -> Result<Self, ClientError> {
        let media_type = media_type.trim();
        let valid = media_type.split_once('/').is_some_and(|(kind, sub)| {
            let token = |t: &str| {
                !t.is_empty()
                    && t.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
            };
            token(kind) && token(sub)
        });
        if !valid {
            return Err(ClientError::BadMediaType(media_type.to_owned()));
        }
        self.media_type = media_type.to_owned();
        Ok(self)
    }

    /// The body of the latest 2xx response (the ACK as the engine sent it), from the latest
    /// [`send`](Self::send); `None` when that send got no 2xx response. Bodies of other
    /// statuses are never kept (an engine's error page may echo the message).
    pub fn last_ack(&self) -> Option<&[u8]> {
        self.last_ack.as_deref()
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many connections this client has opened (TLS handshakes completed).
    pub fn connections_opened(&self) -> u64 {
        self.connections_opened
    }

    /// Drops the connection, if any.
    pub fn disconnect(&mut self) {
        self.conn = None;
    }

    /// Sends one message; see the [module docs](self) for how outcomes are classified.
    pub async fn send(&mut self, message: &Outgoing<'_>) -> Outcome {
        let deadline = Instant::now() + self.timeout;
        self.last_ack = None;
        let mut retried_stale = false;
        loop {
            let reused = self.conn.is_some();
            let mut conn = match self.ready_connection(deadline).await {
                Ok(conn) => conn,
                Err(outcome) => return outcome,
            };
            let request = self.request(message);
            match timeout_at(deadline, conn.sender.send_request(request)).await {
                Err(_) => {
                    return Outcome::failed(
                        FailureClass::Timeout,
                        format!(
                            "no response from {} within {} ms",
                            self.url,
                            self.timeout.as_millis()
                        ),
                    );
                }
                Ok(Err(e)) if reused && e.is_canceled() && !retried_stale => {
                    // The kept-alive connection was closed before the request went out.
                    tracing::debug!(url = %self.url, "kept-alive connection was closed; reconnecting");
                    retried_stale = true;
                    continue;
                }
                Ok(Err(e)) => {
                    return Outcome::failed(
                        FailureClass::Connect,
                        format!(
                            "connection to {} failed before a complete response: {}",
                            self.url,
                            describe(&e)
                        ),
                    );
                }
                Ok(Ok(response)) => {
                    let status = response.status();
                    let charset = response
                        .headers()
                        .get(CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(charset_param)
                        .unwrap_or_default();
                    let body = Limited::new(response.into_body(), self.max_response).collect();
                    let bytes = match timeout_at(deadline, body).await {
                        Err(_) => {
                            return Outcome::responded(
                                FailureClass::Timeout,
                                status.as_u16(),
                                None,
                                format!(
                                    "the response body from {} did not complete within {} ms",
                                    self.url,
                                    self.timeout.as_millis()
                                ),
                            );
                        }
                        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                            return Outcome::responded(
                                FailureClass::BadAck,
                                status.as_u16(),
                                None,
                                format!(
                                    "the response body is larger than {} bytes: not an ACK",
                                    self.max_response
                                ),
                            );
                        }
                        Ok(Err(e)) => {
                            return Outcome::responded(
                                FailureClass::Connect,
                                status.as_u16(),
                                None,
                                format!(
                                    "connection to {} lost while reading the response: {}",
                                    self.url,
                                    describe(e.as_ref())
                                ),
                            );
                        }
                        Ok(Ok(collected)) => collected.to_bytes(),
                    };
                    // A complete response: the connection may carry the next message.
                    if !conn.sender.is_closed() {
                        self.conn = Some(conn);
                    }
                    let outcome = classify(status, charset, &bytes, message.control_id);
                    if status.is_success() {
                        self.last_ack = Some(bytes);
                    }
                    return outcome;
                }
            }
        }
    }

    fn request(&self, message: &Outgoing<'_>) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(Bytes::copy_from_slice(message.raw)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.path.clone();
        let headers = request.headers_mut();
        headers.insert(HOST, self.authority.clone());
        let content_type = format!(
            "{}; charset={}",
            self.media_type,
            message.charset.mime_name()
        );
        if let Ok(value) = HeaderValue::from_str(&content_type) {
            headers.insert(CONTENT_TYPE, value);
        }
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("hl7gw/", env!("CARGO_PKG_VERSION"))),
        );
        request
    }

    /// The kept-alive connection when it is still usable, else a new one.
    async fn ready_connection(&mut self, deadline: Instant) -> Result<Connection, Outcome> {
        if let Some(mut conn) = self.conn.take() {
            if !conn.sender.is_closed()
                && matches!(timeout_at(deadline, conn.sender.ready()).await, Ok(Ok(())))
            {
                return Ok(conn);
            }
        }
        self.connect(deadline).await
    }

    async fn connect(&mut self, deadline: Instant) -> Result<Connection, Outcome> {
        let target = format!("{}:{}", self.host, self.port);
        let timed_out = |what: &str| {
            Outcome::failed(
                FailureClass::Connect,
                format!(
                    "{what} {target} did not complete within {} ms",
                    self.timeout.as_millis()
                ),
            )
        };
        let tcp = match timeout_at(
            deadline,
            TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        {
            Err(_) => return Err(timed_out("connecting to")),
            Ok(Err(e)) => {
                return Err(Outcome::failed(
                    FailureClass::Connect,
                    format!("cannot connect to {target}: {e}"),
                ));
            }
            Ok(Ok(tcp)) => tcp,
        };
        let _ = tcp.set_nodelay(true);
        let tls = match timeout_at(
            deadline,
            self.connector.connect(self.server_name.clone(), tcp),
        )
        .await
        {
            Err(_) => return Err(timed_out("the TLS handshake with")),
            Ok(Err(e)) => {
                return Err(Outcome::failed(
                    FailureClass::Connect,
                    format!("TLS handshake with {target} failed: {}", describe(&e)),
                ));
            }
            Ok(Ok(tls)) => tls,
        };
        let (sender, connection) =
            match timeout_at(deadline, http1::handshake(TokioIo::new(tls))).await {
                Err(_) => return Err(timed_out("the HTTP/1.1 handshake with")),
                Ok(Err(e)) => {
                    return Err(Outcome::failed(
                        FailureClass::Connect,
                        format!("HTTP/1.1 handshake with {target} failed: {}", describe(&e)),
                    ));
                }
                Ok(Ok(pair)) => pair,
            };
        let url = self.url.clone();
        let driver = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%url, "sender connection ended: {e}");
            }
        });
        self.connections_opened += 1;
        Ok(Connection {
            sender,
            _driver: AbortOnDrop(driver),
        })
    }
}

impl Transport for HttpsClient {
    fn send(&mut self, message: &Outgoing<'_>) -> impl Future<Output = Outcome> + Send {
        HttpsClient::send(self, message)
    }
}

/// The `charset=` parameter of a Content-Type.
fn charset_param(content_type: &str) -> Option<Charset> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        if name.trim().eq_ignore_ascii_case("charset") {
            Charset::from_mime_name(value)
        } else {
            None
        }
    })
}

/// An error and its sources, with TLS certificate problems in plain words.
fn describe(error: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    let mut depth = 0;
    while let Some(e) = current {
        if depth >= 8 {
            break;
        }
        depth += 1;
        // io::Error::source() skips the error it wraps, so look inside it explicitly.
        let wrapped = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .map(|inner| inner as &(dyn StdError + 'static));
        if let Some(tls) = e
            .downcast_ref::<rustls::Error>()
            .or_else(|| wrapped.and_then(|w| w.downcast_ref::<rustls::Error>()))
        {
            parts.push(describe_tls(tls));
            break;
        }
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

fn describe_tls(error: &rustls::Error) -> String {
    use rustls::{CertificateError as C, Error as E};
    match error {
        E::InvalidCertificate(C::UnknownIssuer) => format!(
            "{error}: the engine's certificate was not issued by the server CA the spec names"
        ),
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            format!("{error}: the engine's certificate does not name the URL's host")
        }
        E::InvalidCertificate(
            C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. },
        ) => format!("{error}: the engine's certificate is outside its validity dates"),
        E::AlertReceived(_) => format!(
            "{error}: the engine refused the handshake (is our client certificate one it accepts?)"
        ),
        _ => error.to_string(),
    }
}

/// Sorts a complete response.
fn classify(status: StatusCode, charset: Charset, body: &[u8], control_id: &str) -> Outcome {
    let code = status.as_u16();
    let status_text = match status.canonical_reason() {
        Some(reason) => format!("HTTP {code} {reason}"),
        None => format!("HTTP {code}"),
    };
    if status.is_server_error() {
        return Outcome::responded(FailureClass::Http5xx, code, None, status_text);
    }
    if status.is_client_error() {
        return Outcome::responded(FailureClass::Http4xx, code, None, status_text);
    }
    if !status.is_success() {
        return Outcome::responded(
            FailureClass::Http4xx,
            code,
            None,
            format!("{status_text}: not a 2xx answer (redirects are not followed)"),
        );
    }
    let body = strip_mllp(body);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Outcome::responded(
            FailureClass::BadAck,
            code,
            None,
            format!("{status_text} with an empty body: no ACK"),
        );
    }
    let options = ParseOptions {
        line_endings: LineEndings::Lenient,
        default_charset: charset,
    };
    let message = match Message::parse_with(body, &options) {
        Ok(message) => message,
        Err(e) => {
            return Outcome::responded(
                FailureClass::BadAck,
                code,
                None,
                format!("the response is not an HL7 ACK: {e}"),
            );
        }
    };
    let receipt = match read_ack(&message) {
        Ok(receipt) => receipt,
        Err(e) => {
            return Outcome::responded(
                FailureClass::BadAck,
                code,
                None,
                format!("the response is not an ACK: {e}"),
            );
        }
    };
    if receipt.control_id != control_id {
        return Outcome::responded(
            FailureClass::BadAck,
            code,
            Some(receipt.code),
            format!(
                "MSA-2 {:?} does not match the sent MSH-10 {control_id:?}: the ACK is for another message",
                receipt.control_id
            ),
        );
    }
    let text = ack_text(&receipt);
    if receipt.code.is_accept() {
        Outcome::accepted(code, receipt.code, text)
    } else if receipt.code.is_error() {
        Outcome::responded(FailureClass::AckError, code, Some(receipt.code), text)
    } else {
        Outcome::responded(FailureClass::AckReject, code, Some(receipt.code), text)
    }
}

/// MSA-3 and the ERR segments as one line.
fn ack_text(receipt: &AckReceipt) -> String {
    let mut parts: Vec<String> = Vec::new();
    if !receipt.text.trim().is_empty() {
        parts.push(receipt.text.trim().to_owned());
    }
    for error in &receipt.errors {
        let mut line = String::from("ERR");
        if let Some(code) = error.code {
            line.push_str(&format!(" {code}"));
        }
        if !error.code_text.is_empty() {
            line.push_str(&format!(" {}", error.code_text));
        }
        if let Some(location) = &error.location {
            line.push_str(&format!(" at {location}"));
        }
        if !error.message.is_empty() && !parts.iter().any(|p| p == &error.message) {
            line.push_str(&format!(": {}", error.message));
        }
        parts.push(line);
    }
    parts.join("; ")
}

/// The message inside MLLP framing bytes, if an engine framed its answer.
fn strip_mllp(body: &[u8]) -> &[u8] {
    let body = body.strip_prefix(&[0x0B]).unwrap_or(body);
    let body = body.strip_suffix(&[0x1C, 0x0D]).unwrap_or(body);
    body.strip_suffix(&[0x1C]).unwrap_or(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACK_AA: &[u8] =
        b"MSH|^~\\&|TIE|TRUST|GW|EMS|20260101120000||ACK^A28^ACK|A1|T|2.5.1\rMSA|AA|MSG1\r";

    #[test]
    fn statuses_and_acks_are_classified() {
        let ok = StatusCode::OK;
        assert!(classify(ok, Charset::Utf8, ACK_AA, "MSG1").is_accepted());
        let wrong = classify(ok, Charset::Utf8, ACK_AA, "MSG2");
        assert_eq!(wrong.failure, Some(FailureClass::BadAck));
        assert_eq!(wrong.ack_code, Some(AckCode::ApplicationAccept));
        assert!(wrong.detail.contains("MSA-2"), "{}", wrong.detail);
        let ae = b"MSH|^~\\&|TIE|TRUST|GW|EMS|20260101120000||ACK|A1|T|2.4\rMSA|AE|MSG1|bad procedure\rERR|OBR^1^4&1^103&Table value not found&HL70357\r";
        let out = classify(ok, Charset::Utf8, ae, "MSG1");
        assert_eq!(out.failure, Some(FailureClass::AckError));
        assert!(
            out.detail.starts_with("bad procedure; ERR 103"),
            "{}",
            out.detail
        );
        let ar = b"MSH|^~\\&|a|b|c|d|1||ACK|A1|T|2.4\nMSA|CR|MSG1\n";
        assert_eq!(
            classify(ok, Charset::Utf8, ar, "MSG1").failure,
            Some(FailureClass::AckReject)
        );
        for (status, class) in [
            (503, FailureClass::Http5xx),
            (500, FailureClass::Http5xx),
            (400, FailureClass::Http4xx),
            (404, FailureClass::Http4xx),
            (301, FailureClass::Http4xx),
        ] {
            let s = StatusCode::from_u16(status).unwrap();
            let out = classify(s, Charset::Utf8, ACK_AA, "MSG1");
            assert_eq!(out.failure, Some(class), "{status}");
            assert_eq!(out.http_status, Some(status));
        }
        for garbage in [
            &b""[..],
            b"  \r\n",
            b"<html>oops</html>",
            b"MSH|^~\\&|a|b\rPID|1\r",
        ] {
            assert_eq!(
                classify(ok, Charset::Utf8, garbage, "MSG1").failure,
                Some(FailureClass::BadAck)
            );
        }
        let mut framed = vec![0x0B];
        framed.extend_from_slice(ACK_AA);
        framed.extend_from_slice(&[0x1C, 0x0D]);
        assert!(classify(ok, Charset::Utf8, &framed, "MSG1").is_accepted());
    }

    #[test]
    fn details_are_capped_on_a_char_boundary() {
        let long = "é".repeat(MAX_DETAIL);
        let out = Outcome::failed(FailureClass::Connect, long);
        assert!(out.detail.len() <= MAX_DETAIL + '…'.len_utf8());
        assert_eq!(FailureClass::parse("http_5xx"), Some(FailureClass::Http5xx));
        assert_eq!(
            charset_param("application/hl7-v2; Charset=\"iso-8859-1\""),
            Some(Charset::Latin1)
        );
    }

    #[test]
    fn urls_must_be_https_with_a_host() {
        let tls = match client_config_from_pem(b"", b"", b"") {
            Ok(tls) => tls,
            Err(_) => {
                // No certificates needed to test URL checks: build a minimal config.
                Arc::new(
                    ClientConfig::builder_with_provider(crate::tls::provider())
                        .with_protocol_versions(crate::tls::PROTOCOL_VERSIONS)
                        .unwrap()
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth(),
                )
            }
        };
        for bad in [
            "http://a/b",
            "https:///x",
            "https://u:p@h/x",
            "not a url",
            "",
        ] {
            assert!(
                HttpsClient::new(bad, tls.clone(), Duration::from_secs(1)).is_err(),
                "{bad}"
            );
        }
        let client =
            HttpsClient::new("https://[::1]:8443/hl7?x=1", tls.clone(), Duration::ZERO).unwrap();
        assert_eq!(client.port, 8443);
        assert_eq!(client.host, "::1");
        assert_eq!(client.path, "/hl7?x=1");
        let client =
            HttpsClient::new("https://engine.example.nhs.uk", tls.clone(), Duration::ZERO).unwrap();
        assert_eq!(client.port, 443);
        assert_eq!(client.path, "/");
        let message = Outgoing {
            raw: b"MSH|",
            control_id: "1",
            charset: Charset::Latin1,
        };
        assert_eq!(
            client.request(&message).headers()[CONTENT_TYPE],
            "application/hl7-v2; charset=ISO-8859-1"
        );
        let client = client.with_media_type("text/plain").unwrap();
        assert_eq!(
            client.request(&message).headers()[CONTENT_TYPE],
            "text/plain; charset=ISO-8859-1"
        );
        for bad in ["", "text", "text/plain; charset=x", "a/b\r\nX: y", "/plain"] {
            let fresh = HttpsClient::new("https://e.example", tls.clone(), Duration::ZERO).unwrap();
            assert!(fresh.with_media_type(bad).is_err(), "{bad:?}");
        }
    }
}
