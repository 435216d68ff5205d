//! Support for `tests/receiver.rs` alone: the gateway in a child process, its certificates
//! and a view of its store. The raw HTTP client, the Trusts' engine emulations and the HL7
//! samples are shared (`hl7gw_tests::{wire, engines, messages}`).
//!
//! # The gateway process
//!
//! The test binary re-executes itself (`std::env::current_exe()`) with [`CHILD_ENV`] set to
//! a JSON [`GatewayConfig`] and a filter selecting the ignored test `child_gateway_process`,
//! which calls [`child_main`]: it runs `hl7gw_runtime::app::serve` with a generated
//! gateway's `SPEC` (gw-demo, gw-northwest or gw-eastbay, TEST environment), the repository's
//! `specs/` folder as the base directory, every port on 127.0.0.1:0 and a temporary store,
//! and prints the bound addresses on one [`READY`] line. It stops when its standard input
//! closes (so it never outlives the test) or when the test kills it.
//!
//! Overrides the real `serve` command has no flag for are applied by editing a copy of the
//! generated `Environment` before serving, exactly as a spec with those values would: the
//! IP allowlist (`allowed_ips`), the receiver's `http2` setting, the acknowledgement mode
//! (`acknowledgement`), the client CRL (`client_crl`) and the webhook sink's URL (`webhook`), so the failing webhook listens on
//! an ephemeral port rather than northwest's fixed 8690.

#![allow(dead_code)]

pub mod pki;

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hl7gw_runtime::config::{Acknowledgement, Environment, SinkConfig};
use hl7gw_tests::child::{ChildProcess, ChildSpec, loopback_options, serve_test_gateway};
use hl7gw_tests::postgres::{ChildStore, TestPostgres};
use hl7gw_tests::wire;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Set in the child's environment: its [`GatewayConfig`] as JSON.
pub const CHILD_ENV: &str = "HL7GW_E2E_GATEWAY";
/// The test function that runs [`child_main`].
pub const CHILD_TEST: &str = "child_gateway_process";
/// Prefix of the child's one line announcing its addresses.
pub const READY: &str = "HL7GW-E2E-READY ";

/// Which generated gateway runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spec {
    /// gw-demo, TEST: inbox sink, path `/hl7`.
    Demo,
    /// gw-northwest, TEST: webhook sink, path `/northwest/hl7/v2`.
    Northwest,
    /// gw-eastbay, TEST: inbox sink, path `/hl7`, HL7 v2.3 with MSH-15/16 filled.
    Eastbay,
}

impl Spec {
    fn name(self) -> &'static str {
        match self {
            Self::Demo => "demo",
            Self::Northwest => "northwest",
            Self::Eastbay => "eastbay",
        }
    }

    /// The generated TEST environment.
    pub fn environment(self) -> &'static Environment {
        static DEMO: Environment = gw_demo::config::TEST;
        static NORTHWEST: Environment = gw_northwest::config::TEST;
        static EASTBAY: Environment = gw_eastbay::config::TEST;
        match self {
            Self::Demo => &DEMO,
            Self::Northwest => &NORTHWEST,
            Self::Eastbay => &EASTBAY,
        }
    }

    /// The URL path engines POST to.
    pub fn path(self) -> &'static str {
        self.environment().receive.as_ref().map_or("/", |r| &r.path)
    }

    /// The public host name of the TEST endpoint (in the server certificate).
    pub fn hostname(self) -> &'static str {
        self.environment()
            .receive
            .as_ref()
            .map_or("localhost", |r| &r.hostname)
    }
}

/// What the child serves.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub spec: Spec,
    /// The SQLite store.
    pub store: PathBuf,
    /// `--cert-dir`: certificates and keys by file name.
    pub cert_dir: Option<PathBuf>,
    /// Replaces the environment's IP allowlist.
    pub allowed_ips: Option<Vec<String>>,
    /// Replaces the environment's sink with a webhook at this URL.
    pub webhook: Option<String>,
    /// Replaces the receiver's `http2` setting.
    pub http2: Option<bool>,
    /// Replaces the environment's acknowledgement mode.
    pub acknowledgement: Option<Acknowledgement>,
    /// Sets the receiver's `client_crl` (a file name, looked up in `cert_dir`).
    pub client_crl: Option<String>,
    /// Replaces the SQLite store with this PostgreSQL database (replicas share one).
    pub postgres: Option<ChildStore>,
}

impl GatewayConfig {
    pub fn new(spec: Spec, store: impl Into<PathBuf>) -> Self {
        Self {
            spec,
            store: store.into(),
            cert_dir: None,
            allowed_ips: None,
            webhook: None,
            http2: None,
            acknowledgement: None,
            client_crl: None,
            postgres: None,
        }
    }

    fn to_json(&self) -> String {
        json!({
            "spec": self.spec.name(),
            "store": self.store,
            "cert_dir": self.cert_dir,
            "allowed_ips": self.allowed_ips,
            "webhook": self.webhook,
            "http2": self.http2,
            "acknowledgement": self.acknowledgement.map(Acknowledgement::as_str),
            "client_crl": self.client_crl,
            "postgres": self.postgres.as_ref().map(ChildStore::to_json),
        })
        .to_string()
    }
}

// ---------------------------------------------------------------------------------------
// The child.

/// How long one cross-process test body may take, receiver and replica suites alike.
pub const TEST_LIMIT: Duration = Duration::from_secs(90);

/// Runs a test body within [`TEST_LIMIT`], failing the test instead of hanging it.
pub async fn bounded<F: std::future::Future>(body: F) -> F::Output {
    tokio::time::timeout(TEST_LIMIT, body)
        .await
        .expect("test took too long")
}

/// Runs the gateway when [`CHILD_ENV`] is set, then exits the process; returns at once
/// otherwise.
pub fn child_main() {
    hl7gw_tests::child::child_main(CHILD_ENV, "gateway", |config| {
        hl7gw_runtime::app::init_logging();
        run_child(config)
    });
}

fn run_child(config: &str) -> Result<(), String> {
    let config: Value = serde_json::from_str(config).map_err(|e| e.to_string())?;
    let text = |key: &str| config.get(key).and_then(Value::as_str);
    let mut spec = match text("spec") {
        Some("demo") => gw_demo::SPEC,
        Some("northwest") => gw_northwest::SPEC,
        Some("eastbay") => gw_eastbay::SPEC,
        other => return Err(format!("unknown spec {other:?}")),
    };
    let environment = spec.test.as_mut().ok_or("no TEST environment")?;
    if let Some(ips) = config.get("allowed_ips").and_then(Value::as_array) {
        let ips: Vec<_> = ips
            .iter()
            .filter_map(Value::as_str)
            .map(|ip| ip.to_owned().into())
            .collect();
        let receive = environment.receive.as_mut().ok_or("no receive section")?;
        receive.allowed_ips = ips.into();
    }
    if let Some(http2) = config.get("http2").and_then(Value::as_bool) {
        let receive = environment.receive.as_mut().ok_or("no receive section")?;
        receive.http2 = http2;
    }
    if let Some(crl) = text("client_crl") {
        let receive = environment.receive.as_mut().ok_or("no receive section")?;
        receive.client_crl = Some(crl.to_owned().into());
    }
    if let Some(url) = text("webhook") {
        environment.sink = SinkConfig::Webhook {
            url: url.to_owned().into(),
        };
    }
    match text("acknowledgement") {
        Some("as_requested") => environment.acknowledgement = Acknowledgement::AsRequested,
        Some("application") => environment.acknowledgement = Acknowledgement::Application,
        Some(other) => return Err(format!("unknown acknowledgement {other:?}")),
        None => {}
    }
    // These tests exercise the receiving side only.
    environment.send = None;
    let uses_inbox = matches!(environment.sink, SinkConfig::Inbox);
    let store = PathBuf::from(text("store").ok_or("no store")?);
    let mut options = loopback_options(store, text("cert_dir").map(PathBuf::from));
    hl7gw_tests::postgres::use_child_store(config.get("postgres"), environment, &mut options)?;
    serve_test_gateway(&spec, &options, READY, |resolved| {
        json!({
            "listen": resolved.listen.to_string(),
            "ops": resolved.ops_listen.to_string(),
            "inbox": uses_inbox.then(|| resolved.inbox_listen.to_string()),
        })
    })
}

// ---------------------------------------------------------------------------------------
// The parent's handle on a child.

/// A gateway running in a child process; killed (SIGKILL) and reaped when dropped. If the
/// test is failing, the end of the child's log is printed.
pub struct Gateway {
    process: ChildProcess,
    pub config: GatewayConfig,
    /// The HL7 receiver.
    pub listen: SocketAddr,
    /// `/healthz`, `/metrics`.
    pub ops: SocketAddr,
    /// The inbox API (inbox sink only).
    pub inbox: Option<SocketAddr>,
}

impl Gateway {
    /// Starts a child and waits (bounded) until it listens. `log` receives its stderr.
    pub fn start(config: GatewayConfig, log: &Path) -> Self {
        let spec = ChildSpec {
            what: "gateway",
            test: CHILD_TEST,
            config: (CHILD_ENV, config.to_json()),
            env: &[],
            ready: READY,
        };
        let (process, ready) = ChildProcess::start(spec, log);
        let addr = |key: &str| -> Option<SocketAddr> { ready[key].as_str()?.parse().ok() };
        let (Some(listen), Some(ops)) = (addr("listen"), addr("ops")) else {
            panic!("the gateway child announced no listen or ops address: {ready}");
        };
        Self {
            process,
            config,
            listen,
            ops,
            inbox: addr("inbox"),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// `kill -9`, and waits for the process to be gone.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// The last `lines` lines of the child's log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// `GET path` on the operations port.
    pub fn ops_get(&self, path: &str) -> (u16, String) {
        plain_get(self.ops, path)
    }

    /// The metrics, in the Prometheus text format.
    pub fn metrics(&self) -> String {
        let (status, body) = self.ops_get("/metrics");
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Waits (bounded) until the metrics hold `line` (`name{labels} value`): the server
    /// counts some events after the client has already seen their effect.
    pub fn wait_for_metric(&self, line: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let metrics = self.metrics();
            if metrics.lines().any(|l| l == line) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for the metric `{line}`; metrics:\n{metrics}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET path` on the inbox API, parsed as JSON.
    pub fn inbox_get(&self, path: &str) -> Value {
        let addr = self.inbox.expect("this gateway has no inbox API");
        let (status, body) = plain_get(addr, path);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

/// POSTs `message` to a gw-demo child's receiver as the demo Trust's engine (its client
/// certificate, trusting the demo gateway's CA) on a new connection, and reads the response.
pub async fn post_to_demo(gw: &Gateway, message: &[u8]) -> wire::RawResponse {
    let request = wire::post(
        Spec::Demo.path(),
        &[
            format!("Host: {}:{}", Spec::Demo.hostname(), gw.listen.port()),
            "Content-Type: application/hl7-v2".to_owned(),
            format!("Content-Length: {}", message.len()),
        ],
        message,
    );
    let engine = wire::client_config(&pki::demo_gateway_ca(), Some(&pki::demo_engine()), &[]);
    let tls = wire::connect(gw.listen, Spec::Demo.hostname(), engine)
        .await
        .unwrap();
    let mut http = wire::Http::new(tls);
    http.send(&request).await.unwrap();
    http.read_response().await.unwrap()
}

/// A plain HTTP/1.1 GET on loopback, blocking and bounded: status and body.
pub fn plain_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let response = hl7gw_tests::wire::plain_request(addr, "GET", path, &[], b"").unwrap();
    (response.status, response.body_text())
}

// ---------------------------------------------------------------------------------------
// A webhook sink peer.

/// A webhook on 127.0.0.1 answering `status` (0: close without answering), after
/// `delay_ms`, and recording the JSON bodies it received.
pub struct Webhook {
    pub addr: SocketAddr,
    /// The status it answers from now on.
    pub status: Arc<AtomicU16>,
    /// How long it waits before answering, in milliseconds (0 by default).
    pub delay_ms: Arc<AtomicU64>,
    received: Arc<Mutex<Vec<Value>>>,
    /// The accepting task; abort it and the webhook is gone (connection refused).
    pub task: tokio::task::JoinHandle<()>,
}

impl Webhook {
    pub async fn start(status: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let status = Arc::new(AtomicU16::new(status));
        let received = Arc::new(Mutex::new(Vec::new()));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (s, d, r) = (status.clone(), delay_ms.clone(), received.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (s, d, r) = (s.clone(), d.clone(), r.clone());
                tokio::spawn(async move {
                    let mut stream = stream;
                    let Ok(request) = read_request(&mut stream).await else {
                        return;
                    };
                    r.lock().unwrap().push(request);
                    let delay = d.load(Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    let code = s.load(Ordering::SeqCst);
                    let answer = format!(
                        "HTTP/1.1 {code} {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        if code < 300 {
                            "OK"
                        } else {
                            "Internal Server Error"
                        }
                    );
                    let _ = stream.write_all(answer.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self {
            addr,
            status,
            delay_ms,
            received,
            task,
        }
    }

    /// gw-northwest's webhook path on this peer.
    pub fn url(&self) -> String {
        format!("http://{}/ems/northwest/test/patients", self.addr)
    }

    /// The JSON bodies received, in arrival order.
    pub fn received(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }
}

/// Reads one HTTP request's JSON body (Content-Length framing), bounded.
async fn read_request(stream: &mut tokio::net::TcpStream) -> io::Result<Value> {
    let mut raw = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(wire::IO_LIMIT, stream.read(&mut chunk))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "webhook request"))??;
        raw.extend_from_slice(&chunk[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if raw.len() >= end + 4 + len {
                return serde_json::from_slice(&raw[end + 4..end + 4 + len])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "webhook request",
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------
// The store, read directly.

/// One row of `inbound_messages`.
#[derive(Debug, Clone)]
pub struct StoredRow {
    pub id: i64,
    pub control_id: String,
    pub message_type: String,
    pub status: String,
    pub ack_code: String,
    pub ack: Vec<u8>,
    pub raw: Vec<u8>,
    pub record: Option<Value>,
    pub peer_ip: Option<String>,
    pub peer_subject: Option<String>,
    pub sink: String,
}

/// Every row of the store's audit trail, oldest first. Opens its own connection (WAL: a
/// reader does not disturb the running gateway).
pub fn stored_rows(store: &Path) -> Vec<StoredRow> {
    let conn = rusqlite::Connection::open(store).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let mut statement = conn
        .prepare(
            "SELECT id, control_id, message_type, status, ack_code, ack, raw, record_json, \
             peer_ip, peer_subject, sink FROM inbound_messages ORDER BY id",
        )
        .unwrap();
    statement
        .query_map([], |r| {
            let record: Option<String> = r.get(7)?;
            Ok(StoredRow {
                id: r.get(0)?,
                control_id: r.get(1)?,
                message_type: r.get(2)?,
                status: r.get(3)?,
                ack_code: r.get(4)?,
                ack: r.get(5)?,
                raw: r.get(6)?,
                record: record.map(|text| serde_json::from_str(&text).unwrap()),
                peer_ip: r.get(8)?,
                peer_subject: r.get(9)?,
                sink: r.get(10)?,
            })
        })
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// [`stored_rows`] of a gateway on PostgreSQL: the same columns, read with `psql` (the
/// bytes as hex, every row as one JSON object).
pub fn stored_rows_postgres(server: &TestPostgres, dbname: &str) -> Vec<StoredRow> {
    let json = server.psql(
        dbname,
        "SELECT COALESCE(json_agg(json_build_object(\
           'id', id, 'control_id', control_id, 'message_type', message_type, \
           'status', status, 'ack_code', ack_code, 'ack', encode(ack, 'hex'), \
           'raw', encode(raw, 'hex'), 'record_json', record_json, 'peer_ip', peer_ip, \
           'peer_subject', peer_subject, 'sink', sink) ORDER BY id), '[]') \
         FROM inbound_messages",
    );
    let rows: Vec<Value> = serde_json::from_str(&json).unwrap();
    let text = |row: &Value, key: &str| row[key].as_str().map(str::to_owned);
    let bytes = |row: &Value, key: &str| -> Vec<u8> {
        let hex = row[key].as_str().unwrap().as_bytes();
        hex.chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    };
    rows.iter()
        .map(|row| StoredRow {
            id: row["id"].as_i64().unwrap(),
            control_id: text(row, "control_id").unwrap(),
            message_type: text(row, "message_type").unwrap(),
            status: text(row, "status").unwrap(),
            ack_code: text(row, "ack_code").unwrap(),
            ack: bytes(row, "ack"),
            raw: bytes(row, "raw"),
            record: text(row, "record_json").map(|json| serde_json::from_str(&json).unwrap()),
            peer_ip: text(row, "peer_ip"),
            peer_subject: text(row, "peer_subject"),
            sink: text(row, "sink").unwrap(),
        })
        .collect()
}

/// The committed rows with this control id.
pub fn committed(rows: &[StoredRow], control_id: &str) -> Vec<StoredRow> {
    rows.iter()
        .filter(|r| r.control_id == control_id && r.status == "committed")
        .cloned()
        .collect()
}
