//! Support for `server_tls.rs` alone: a throwaway PKI (rcgen), a receiver on 127.0.0.1 with
//! a recording handler. The raw HTTP client and the engines' requests are shared
//! (`hl7gw_tests::{wire, engines}`).

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
use hl7gw_tests::{engines, wire};
use rcgen::ExtendedKeyUsagePurpose;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
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

    /// [`Pki::client_config`] offering only `versions`.
    pub fn client_config_versions(
        &self,
        identity: Option<&Identity>,
        alpn: &[&[u8]],
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<ClientConfig> {
        wire::client_config_versions(&self.ca_pem, identity, alpn, versions)
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
/// `NOT-HL7` get a 400, `UNAVAILABLE` a 503, `SLOW` an ACK after 500 ms, `HOLD` an ACK once
/// the test adds a permit to `release`. `finished` counts the requests whose handling ran
/// to its end.
#[derive(Clone)]
pub struct TestHandler {
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub finished: Arc<std::sync::atomic::AtomicUsize>,
    pub release: Arc<tokio::sync::Semaphore>,
}

impl Default for TestHandler {
    fn default() -> Self {
        Self {
            seen: Arc::default(),
            finished: Arc::default(),
            release: Arc::new(tokio::sync::Semaphore::new(0)),
        }
    }
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
        if request.body.starts_with(b"HOLD") {
            let _ = self.release.acquire().await.map(|p| p.forget());
        }
        self.finished
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
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
        Self::start_with_tls(pki.server_config(), configure).await
    }

    /// [`TestServer::start`] with a TLS configuration of the test's own.
    pub async fn start_with_tls(
        tls: Arc<rustls::ServerConfig>,
        configure: impl FnOnce(&mut Settings),
    ) -> Self {
        let mut settings = test_settings();
        configure(&mut settings);
        let metrics = Arc::new(Metrics::new());
        let handler = TestHandler::default();
        let receiver = Receiver::bind(settings, tls, handler.clone(), metrics.clone())
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

    /// HAPI's request (docs/peers.md §1) for `/hl7` on this server.
    pub fn hapi(&self, body: &[u8]) -> Vec<u8> {
        engines::hapi_request("/hl7", "localhost", self.addr.port(), body)
    }

    /// Mirth's request with its defaults (docs/peers.md §2) for `/hl7` on this server.
    pub fn mirth(&self, body: &[u8]) -> Vec<u8> {
        engines::mirth_request("/hl7", "localhost", self.addr.port(), body)
    }

    /// Waits (bounded) until the handler has seen `n` requests.
    pub async fn wait_seen(&self, n: usize) {
        for _ in 0..500 {
            if self.handler.seen().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "the handler saw {} requests, not {n}",
            self.handler.seen().len()
        );
    }

    /// A TLS connection from 127.0.0.1.
    pub async fn connect(&self, config: Arc<ClientConfig>) -> io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.addr).await?;
        wire::tls_over(tcp, "localhost", config).await
    }
}
