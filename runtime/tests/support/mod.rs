//! Shared by the transport tests: a throwaway PKI (rcgen), a receiver on 127.0.0.1 with a
//! recording handler, and clients that write exact request bytes over TLS.

#![allow(dead_code)]

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hl7gw_runtime::hl7::Charset;
use hl7gw_runtime::metrics::Metrics;
use hl7gw_runtime::server::{
    Ack, Handler, Hl7Request, Hl7Response, Receiver, ServerError, Settings,
};
pub use hl7gw_tests::pki::Identity;
use hl7gw_tests::pki::{Validity, ca, leaf, leaf_with_validity};
use rcgen::ExtendedKeyUsagePurpose;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Every test runs inside this bound.
pub const TEST_LIMIT: Duration = Duration::from_secs(30);

/// Runs a test body with a time limit.
pub async fn bounded<F: Future>(body: F) -> F::Output {
    tokio::time::timeout(TEST_LIMIT, body)
        .await
        .expect("test took too long")
}

/// The subject the server allows.
pub const CLIENT_CN: &str = "tie-test.demo.nhs.uk";

/// The ACK the test handler answers with.
pub const ACK: &[u8] =
    b"MSH|^~\\&|GW|EMS|TIE|TRUST|20260101120000||ACK^A28^ACK|ACK1|T|2.4\rMSA|AA|MSG00001\r";

/// A message to send.
pub const MESSAGE: &[u8] = b"MSH|^~\\&|TIE|TRUST|GW|EMS|20260101120000||ADT^A28^ADT_A05|MSG00001|T|2.4\rEVN|A28|20260101120000\rPID|1||12345^^^TRUST^MR||SMITH^JOHN||19700101|M\r";

/// A CA with the certificates the tests need, written into a temporary directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    pub server: Identity,
    /// CN=tie-test.demo.nhs.uk, issued by the client CA.
    pub client: Identity,
    /// A valid certificate from the client CA naming someone else.
    pub stranger: Identity,
    /// CN=tie-test.demo.nhs.uk from another CA.
    pub foreign: Identity,
    /// CN=tie-test.demo.nhs.uk from the client CA, expired.
    pub expired: Identity,
}

impl Pki {
    pub fn new() -> Self {
        let root = ca("hl7gw test CA");
        let other = ca("some other CA");
        let server = leaf(
            &root,
            "localhost",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let client_usage = || ExtendedKeyUsagePurpose::ClientAuth;
        let client = leaf(&root, CLIENT_CN, &[CLIENT_CN], client_usage());
        let stranger = leaf(
            &root,
            "intruder.example",
            &["intruder.example"],
            client_usage(),
        );
        let foreign = leaf(&other, CLIENT_CN, &[CLIENT_CN], client_usage());
        let expired = leaf_with_validity(
            &root,
            CLIENT_CN,
            &[CLIENT_CN],
            client_usage(),
            Validity::Expired,
        );
        let pki = Self {
            dir: tempfile::tempdir().unwrap(),
            ca_pem: root.pem(),
            server,
            client,
            stranger,
            foreign,
            expired,
        };
        std::fs::write(pki.path("server.crt"), &pki.server.cert_pem).unwrap();
        std::fs::write(pki.path("server.key"), &pki.server.key_pem).unwrap();
        std::fs::write(pki.path("client-ca.crt"), &pki.ca_pem).unwrap();
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The receiver's TLS configuration, read from the PEM files as a gateway does.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        hl7gw_runtime::tls::server_config(
            &self.path("server.crt"),
            &self.path("server.key"),
            &self.path("client-ca.crt"),
        )
        .unwrap()
    }

    /// A client trusting the test CA, presenting `identity` (or no certificate).
    pub fn client_config(&self, identity: Option<&Identity>, alpn: &[&[u8]]) -> Arc<ClientConfig> {
        self.client_config_versions(identity, alpn, hl7gw_runtime::tls::PROTOCOL_VERSIONS)
    }

    pub fn client_config_versions(
        &self,
        identity: Option<&Identity>,
        alpn: &[&[u8]],
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        for cert in hl7gw_runtime::tls::certificates_from_pem("ca", self.ca_pem.as_bytes()).unwrap()
        {
            roots.add(cert).unwrap();
        }
        let builder = ClientConfig::builder_with_provider(hl7gw_runtime::tls::provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match identity {
            Some(id) => builder
                .with_client_auth_cert(
                    hl7gw_runtime::tls::certificates_from_pem("cert", id.cert_pem.as_bytes())
                        .unwrap(),
                    hl7gw_runtime::tls::private_key_from_pem("key", id.key_pem.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// What the test handler saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub body: Vec<u8>,
    pub charset: Option<Charset>,
    pub media_type: Option<hl7gw_runtime::server::MediaType>,
    pub peer_subject: String,
    pub request_id: String,
}

/// Records every request and answers with [`ACK`] in the request's charset. Bodies starting
/// `NOT-HL7` get a 400, `UNAVAILABLE` a 503, `SLOW` an ACK after 500 ms.
#[derive(Clone, Default)]
pub struct TestHandler {
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl TestHandler {
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Handler for TestHandler {
    async fn handle(&self, request: Hl7Request) -> Hl7Response {
        self.seen.lock().unwrap().push(Seen {
            body: request.body.to_vec(),
            charset: request.charset,
            media_type: request.media_type,
            peer_subject: request.peer_subject.clone(),
            request_id: request.request_id.clone(),
        });
        if request.body.starts_with(b"NOT-HL7") {
            return Hl7Response::NotHl7("no MSH segment at byte 0".into());
        }
        if request.body.starts_with(b"UNAVAILABLE") {
            return Hl7Response::Unavailable("the message store is unavailable; retry".into());
        }
        if request.body.starts_with(b"SLOW") {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Hl7Response::Ack(Ack {
            body: ACK.to_vec(),
            charset: request.charset.unwrap_or_default(),
            message_type: "ADT^A28".into(),
            code: "AA".into(),
        })
    }
}

/// A receiver running on 127.0.0.1.
pub struct TestServer {
    pub addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    pub handler: TestHandler,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServerError>>,
}

/// Settings for tests: 127.0.0.1, any port, `/hl7`, loopback allowed, the test client's CN
/// allowed, short limits.
pub fn test_settings() -> Settings {
    let mut s = Settings::new("127.0.0.1:0".parse().unwrap(), "/hl7");
    s.allowed_ips = vec!["127.0.0.0/8".parse().unwrap()];
    s.allowed_clients = vec![format!("CN={CLIENT_CN}")];
    s.max_body = 64 * 1024;
    s.header_timeout = Duration::from_secs(5);
    s.body_timeout = Duration::from_secs(5);
    s.idle_timeout = Duration::from_secs(30);
    s.handshake_timeout = Duration::from_secs(5);
    s.shutdown_timeout = Duration::from_secs(5);
    s
}

impl TestServer {
    pub async fn start(pki: &Pki, configure: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = test_settings();
        configure(&mut settings);
        let metrics = Arc::new(Metrics::new());
        let handler = TestHandler::default();
        let receiver = Receiver::bind(
            settings,
            pki.server_config(),
            handler.clone(),
            metrics.clone(),
        )
        .await
        .unwrap();
        let addr = receiver.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(receiver.run(async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            metrics,
            handler,
            stop: Some(stop),
            task,
        }
    }

    /// Asks the server to stop and waits (bounded) for `serve` to return.
    pub async fn stop(mut self) -> Result<(), ServerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(15), &mut self.task)
            .await
            .expect("server did not stop")
            .unwrap()
    }

    /// Waits (bounded) until `check` holds for the metrics; the server counts some events
    /// after the client has already seen their effect.
    pub async fn wait_for(&self, what: &str, check: impl Fn(&Metrics) -> bool) {
        for _ in 0..200 {
            if check(&self.metrics) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "timed out waiting for {what}; metrics:\n{}",
            self.metrics.render()
        );
    }

    /// A TLS connection from 127.0.0.1.
    pub async fn connect(&self, config: Arc<ClientConfig>) -> io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.addr).await?;
        tls_over(tcp, config).await
    }
}

/// TLS over an existing TCP connection, naming the server `localhost`.
pub async fn tls_over(
    tcp: TcpStream,
    config: Arc<ClientConfig>,
) -> io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from("localhost").unwrap();
    TlsConnector::from(config).connect(name, tcp).await
}

/// One HTTP/1.1 response as read off the wire.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// `HTTP/1.1 200 OK`.
    pub status_line: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
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

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The status line is `HTTP/1.1 NNN Reason` with a non-empty reason (HAPI requires it).
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

/// A client connection that writes raw bytes and reads responses one at a time.
pub struct RawClient<S> {
    pub stream: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawClient<S> {
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    async fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no response within 10 s"))??;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads one response (an interim `100 Continue` counts as one). The body is read by
    /// Content-Length, which the receiver always sends.
    pub async fn read_response(&mut self) -> io::Result<RawResponse> {
        let head_end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            if self.fill().await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed; had {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ),
                ));
            }
        };
        let head = String::from_utf8(self.buf[..head_end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap().to_owned();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        self.buf.drain(..head_end + 4);
        let len: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.parse().unwrap());
        let len = if status == 100 { 0 } else { len };
        while self.buf.len() < len {
            if self.fill().await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "body cut short",
                ));
            }
        }
        let body = self.buf.drain(..len).collect();
        Ok(RawResponse {
            status_line,
            status,
            headers,
            body,
        })
    }

    /// Reads until the server closes. `Ok(bytes)` on a clean or TLS-unclean EOF, `Err` on a
    /// reset; either way within the bound.
    pub async fn read_until_closed(&mut self) -> Result<Vec<u8>, io::Error> {
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

/// A request as HAPI's encoder writes it (docs/peers.md §1): Content-Type with charset UTF-8,
/// Content-Length, User-Agent, Host with the port, a Date that is not RFC 1123.
pub fn hapi_request(addr: SocketAddr, path: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "POST {path} HTTP/1.1\r\nContent-Type: application/hl7-v2; charset=UTF-8\r\nContent-Length: {}\r\nUser-Agent: HAPI (HL7 over HTTP) Client 2.5.1\r\nHost: localhost:{}\r\nDate: Fri, 27 Nov 26 09:15:02 GMT\r\n\r\n",
        body.len(),
        addr.port()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A request as Mirth's HTTP Sender writes it with its defaults (docs/peers.md §2).
pub fn mirth_request(path: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "POST {path} HTTP/1.1\r\nuser-agent: Mirth Connect\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Length: {}\r\nHost: localhost\r\nConnection: Keep-Alive\r\nAccept-Encoding: gzip,deflate\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A POST with the given Content-Type (none when `None`) and extra header lines.
pub fn post(path: &str, content_type: Option<&str>, body: &[u8], extra: &[&str]) -> Vec<u8> {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    for line in extra {
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}
