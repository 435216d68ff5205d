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

mod outcome;
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
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsConnector;

pub use outcome::{FailureClass, MAX_DETAIL, Outcome};
pub use tls::{CLIENT_ALPN, client_config, client_config_from_pem};

use crate::endpoint::Endpoint;
use crate::hl7::Charset;
use outcome::{charset_param, classify};

/// The largest response body read (an ACK is a few hundred bytes).
pub const DEFAULT_MAX_RESPONSE: usize = 1024 * 1024;

/// The media type of requests unless [`HttpsClient::with_media_type`] says otherwise.
pub const DEFAULT_MEDIA_TYPE: &str = "application/hl7-v2";

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
    /// The URL is unusable (the same refusal `hl7gw validate` reports as `net-url`).
    #[error("send URL {url:?} {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: crate::endpoint::EndpointError,
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
    endpoint: Endpoint,
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
            .field("url", &self.endpoint.url())
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
        let bad = |reason| ClientError::BadUrl {
            url: url.to_owned(),
            reason,
        };
        let endpoint = Endpoint::https(url).map_err(bad)?;
        let server_name = endpoint.server_name().map_err(bad)?;
        Ok(Self {
            endpoint,
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
        self.endpoint.url()
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
        let deadline = deadline_after(self.timeout);
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
                            self.endpoint.url(),
                            self.timeout.as_millis()
                        ),
                    );
                }
                Ok(Err(e)) if reused && e.is_canceled() && !retried_stale => {
                    // The kept-alive connection was closed before the request went out.
                    tracing::debug!(url = %self.endpoint.url(), "kept-alive connection was closed; reconnecting");
                    retried_stale = true;
                    continue;
                }
                Ok(Err(e)) => {
                    return Outcome::failed(
                        FailureClass::Connect,
                        format!(
                            "connection to {} failed before a complete response: {}",
                            self.endpoint.url(),
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
                                    self.endpoint.url(),
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
                                    self.endpoint.url(),
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
        *request.uri_mut() = self.endpoint.path().clone();
        let headers = request.headers_mut();
        headers.insert(HOST, self.endpoint.authority().clone());
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
        let target = format!("{}:{}", self.endpoint.host(), self.endpoint.port());
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
            TcpStream::connect((self.endpoint.host(), self.endpoint.port())),
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
        let url = self.endpoint.url().to_owned();
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

/// The instant `delay` from now, or a far-off one (a year) when `delay` is beyond the
/// clock's range: a spec's durations reach `u64::MAX` milliseconds, which overflows
/// `Instant` on some platforms, and an overflowing `+` panics.
pub(crate) fn deadline_after(delay: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(delay)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 86_400)))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(client.endpoint.port(), 8443);
        assert_eq!(client.endpoint.host(), "::1");
        assert_eq!(client.endpoint.path(), "/hl7?x=1");
        let client =
            HttpsClient::new("https://engine.example.nhs.uk", tls.clone(), Duration::ZERO).unwrap();
        assert_eq!(client.endpoint.port(), 443);
        assert_eq!(client.endpoint.path(), "/");
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
