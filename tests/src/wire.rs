//! The one raw HTTP client of the tests: TLS clients (rustls, ring) and HTTP/1.1 written and
//! read byte for byte, as an engine's HTTP stack would put it on the wire, and a blocking
//! plain-HTTP request for the loopback APIs (operations, inbox, intake). Requests are bytes
//! the test (or [`crate::engines`]) writes, so a test controls every header and its order.
//!
//! Only tests link this; a configuration the test itself made that cannot be loaded ends the
//! test, hence `unwrap`.
#![allow(clippy::unwrap_used)]

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Every connect, handshake and read is bounded by this.
pub const IO_LIMIT: Duration = Duration::from_secs(15);

pub use crate::pki::Identity;

/// A client trusting `roots_pem` for the server and presenting `identity` (or nothing),
/// offering `alpn` (Java and .NET HTTP/1.1 stacks offer none), with the TLS versions the
/// gateway accepts.
pub fn client_config(
    roots_pem: &str,
    identity: Option<&Identity>,
    alpn: &[&[u8]],
) -> Arc<ClientConfig> {
    client_config_versions(
        roots_pem,
        identity,
        alpn,
        hl7gw_runtime::tls::PROTOCOL_VERSIONS,
    )
}

/// [`client_config`] offering only `versions` (a TLS 1.2-only client, say).
pub fn client_config_versions(
    roots_pem: &str,
    identity: Option<&Identity>,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in hl7gw_runtime::tls::certificates_from_pem("roots", roots_pem.as_bytes()).unwrap() {
        roots.add(cert).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(hl7gw_runtime::tls::provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(
                hl7gw_runtime::tls::certificates_from_pem("cert", id.cert_pem.as_bytes()).unwrap(),
                hl7gw_runtime::tls::private_key_from_pem("key", id.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// TCP to `addr` (from `local` when given), then TLS naming the server `server_name` (SNI
/// and certificate check). Bounded.
pub async fn connect_from(
    local: Option<IpAddr>,
    addr: SocketAddr,
    server_name: &str,
    config: Arc<ClientConfig>,
) -> io::Result<TlsStream<TcpStream>> {
    let connect = async {
        match local {
            Some(ip) => {
                let socket = TcpSocket::new_v4()?;
                socket.bind(SocketAddr::new(ip, 0))?;
                socket.connect(addr).await
            }
            None => TcpStream::connect(addr).await,
        }
    };
    let tcp = tokio::time::timeout(IO_LIMIT, connect)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TCP connect took too long"))??;
    let _ = tcp.set_nodelay(true);
    tls_over(tcp, server_name, config).await
}

/// TLS over an existing TCP connection, naming the server `server_name` (SNI and certificate
/// check). Bounded.
pub async fn tls_over(
    tcp: TcpStream,
    server_name: &str,
    config: Arc<ClientConfig>,
) -> io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    tokio::time::timeout(IO_LIMIT, TlsConnector::from(config).connect(name, tcp))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake took too long"))?
}

/// [`connect_from`] with the system's choice of source address.
pub async fn connect(
    addr: SocketAddr,
    server_name: &str,
    config: Arc<ClientConfig>,
) -> io::Result<TlsStream<TcpStream>> {
    connect_from(None, addr, server_name, config).await
}

/// One HTTP/1.1 response as read off the wire.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// `HTTP/1.1 200 OK`, exactly.
    pub status_line: String,
    /// The status code of the status line.
    pub status: u16,
    /// Names as sent.
    pub headers: Vec<(String, String)>,
    /// Decoded from chunked when it was.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The status line and the header lines, as read (names as sent, values trimmed).
    pub fn head(&self) -> String {
        let mut head = self.status_line.clone();
        for (name, value) in &self.headers {
            head.push_str(&format!("\r\n{name}: {value}"));
        }
        head
    }

    /// The body as text (lossy UTF-8), for assertions and messages.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts that the status line is `HTTP/1.1 NNN Reason` with a non-empty reason (HAPI
    /// requires it, docs/peers.md §1).
    #[allow(clippy::panic)]
    pub fn assert_http11_with_reason(&self) {
        let mut parts = self.status_line.splitn(3, ' ');
        assert_eq!(parts.next(), Some("HTTP/1.1"), "{}", self.status_line);
        assert!(parts.next().is_some(), "{}", self.status_line);
        let reason = parts.next().unwrap_or_default();
        assert!(
            !reason.trim().is_empty(),
            "no reason phrase: {}",
            self.status_line
        );
    }
}

fn bad(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// A response head: status line, status, headers.
type Head = (String, u16, Vec<(String, String)>);

/// The head of a response (without the blank line that ends it).
fn parse_head(head: &[u8]) -> io::Result<Head> {
    let head = std::str::from_utf8(head).map_err(|_| bad("response head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default().to_owned();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok((status_line, status, headers))
}

/// A complete chunked body at the start of `buf`: the body and the bytes it took.
fn chunked_complete(buf: &[u8]) -> io::Result<Option<(Vec<u8>, usize)>> {
    let mut at = 0;
    let mut body = Vec::new();
    loop {
        let Some(eol) = find(&buf[at..], b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&buf[at..at + eol]).map_err(|_| bad("chunk size"))?;
        let size = usize::from_str_radix(line.split(';').next().unwrap_or_default().trim(), 16)
            .map_err(|_| bad(format!("chunk size {line:?}")))?;
        at += eol + 2;
        if size == 0 {
            // Trailers, then a blank line.
            loop {
                let Some(eol) = find(&buf[at..], b"\r\n") else {
                    return Ok(None);
                };
                at += eol + 2;
                if eol == 0 {
                    return Ok(Some((body, at)));
                }
            }
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[at..at + size]);
        at += size + 2;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A whole response read until the server closed (for the plain loopback APIs).
pub fn parse_complete(raw: &[u8]) -> io::Result<RawResponse> {
    let end = find(raw, b"\r\n\r\n").ok_or_else(|| bad("no end of headers"))?;
    let (status_line, status, headers) = parse_head(&raw[..end])?;
    let rest = &raw[end + 4..];
    let mut response = RawResponse {
        status_line,
        status,
        headers,
        body: Vec::new(),
    };
    response.body = if response
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        chunked_complete(rest)?
            .ok_or_else(|| bad("chunked body cut short"))?
            .0
    } else if let Some(len) = response.header("content-length") {
        let len: usize = len.parse().map_err(|_| bad("content-length"))?;
        rest.get(..len)
            .ok_or_else(|| bad("body cut short"))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(response)
}

/// One client connection that writes raw bytes and reads responses one at a time.
pub struct Http<S> {
    /// The connection, for writes the test makes by hand (a request cut short, say).
    pub stream: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Http<S> {
    /// A client on an open connection (TLS or plain TCP).
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes and flushes, bounded.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        tokio::time::timeout(IO_LIMIT, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write took too long"))?
    }

    async fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(IO_LIMIT, self.stream.read(&mut chunk))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no bytes within the limit"))??;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    async fn fill_or_eof(&mut self, what: &str) -> io::Result<()> {
        if self.fill().await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed before {what}; had {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            ));
        }
        Ok(())
    }

    /// Reads one response. An interim `1xx` counts as one (with no body). The body is read
    /// by Content-Length, chunked, or until the server closes.
    pub async fn read_response(&mut self) -> io::Result<RawResponse> {
        let end = loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                break end;
            }
            self.fill_or_eof("the end of the response headers").await?;
        };
        let (status_line, status, headers) = parse_head(&self.buf[..end])?;
        self.buf.drain(..end + 4);
        let mut response = RawResponse {
            status_line,
            status,
            headers,
            body: Vec::new(),
        };
        if (100..200).contains(&status) {
            return Ok(response);
        }
        if response
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            loop {
                if let Some((body, used)) = chunked_complete(&self.buf)? {
                    self.buf.drain(..used);
                    response.body = body;
                    return Ok(response);
                }
                self.fill_or_eof("the end of the chunked body").await?;
            }
        }
        if let Some(len) = response.header("content-length") {
            let len: usize = len.parse().map_err(|_| bad("content-length"))?;
            while self.buf.len() < len {
                self.fill_or_eof("the end of the body").await?;
            }
            response.body = self.buf.drain(..len).collect();
            return Ok(response);
        }
        response.body = self.read_to_close().await?;
        Ok(response)
    }

    /// Reads until the server closes: `Ok(bytes)` on EOF (clean or not), `Err` on a reset or
    /// a TLS alert; either way within the bound.
    pub async fn read_to_close(&mut self) -> io::Result<Vec<u8>> {
        loop {
            match self.fill().await {
                Ok(0) => return Ok(std::mem::take(&mut self.buf)),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Ok(std::mem::take(&mut self.buf));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A POST with the given header lines (in order) and body.
pub fn post(path: &str, headers: &[String], body: &[u8]) -> Vec<u8> {
    request("POST", path, headers, body)
}

/// A request with the given header lines (in order) and body.
pub fn request(method: &str, path: &str, headers: &[String], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\n");
    for line in headers {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// A POST as a generic client writes it: `Host: localhost`, Content-Length, the
/// Content-Type (none when `None`) and `extra` header lines.
pub fn simple_post(path: &str, content_type: Option<&str>, body: &[u8], extra: &[&str]) -> Vec<u8> {
    let mut headers = vec![
        "Host: localhost".to_owned(),
        format!("Content-Length: {}", body.len()),
    ];
    if let Some(ct) = content_type {
        headers.push(format!("Content-Type: {ct}"));
    }
    headers.extend(extra.iter().map(|line| (*line).to_owned()));
    post(path, &headers, body)
}

/// One plain HTTP/1.1 request on loopback (`Host` with the port, `Connection: close`, then
/// `headers`), blocking and bounded: the whole response, read until the server closes.
pub fn plain_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> io::Result<RawResponse> {
    let mut stream = std::net::TcpStream::connect_timeout(&addr, IO_LIMIT)?;
    stream.set_read_timeout(Some(IO_LIMIT))?;
    let mut lines = vec![
        format!("Host: 127.0.0.1:{}", addr.port()),
        "Connection: close".to_owned(),
    ];
    lines.extend(headers.iter().map(|line| (*line).to_owned()));
    if !body.is_empty() || method == "POST" {
        lines.push(format!("Content-Length: {}", body.len()));
    }
    stream.write_all(&request(method, path, &lines, body))?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_complete(&raw)
}

/// The first flight of a TLS client naming `server_name` (no name for an IP address): the
/// ClientHello a client that then stalls has sent, or what a router reads the name from.
pub fn client_hello(server_name: &str) -> Vec<u8> {
    let config = ClientConfig::builder_with_provider(hl7gw_runtime::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let mut client = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut hello = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut hello).unwrap();
    }
    hello
}
