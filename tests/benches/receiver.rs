//! The receiving gateway end to end, against baselines measured in the same run.
//!
//! ```text
//! cargo bench -p hl7gw-tests --bench receiver              # full run, about 2 min 30 s
//! cargo bench -p hl7gw-tests --bench receiver -- --quick   # short run (or HL7GW_BENCH_QUICK=1)
//! ```
//!
//! One process starts these servers on 127.0.0.1, all with the same TLS settings (rustls,
//! ring provider, TLS 1.3/1.2, client certificate required from the same throwaway CA):
//!
//! - **bare**: a minimal hyper 1 + tokio-rustls HTTP/1.1 server that reads the body and
//!   answers 200 with a fixed ACK, without parsing or storing anything;
//! - **fsync**: the same, but each request's body is appended to one journal file and
//!   fsynced (`File::sync_all`, the call SQLite's bundled build makes) before the ACK, one
//!   request at a time: what a server that pays one durable write per message can do;
//! - **gateway**: gw-demo's TEST environment through `hl7gw_runtime::app::serve`, with a
//!   temporary SQLite store (WAL, `synchronous=FULL`, as the store always sets it) and the
//!   inbox sink. Each message is parsed, checked, mapped, acknowledged and committed durably
//!   (group commit: messages arriving together share a transaction) before its ACK leaves;
//! - where PostgreSQL is installed (`hl7gw_tests::postgres`, a private cluster with its
//!   default `fsync` and `synchronous_commit`), **pg row**: the fixed-ACK server inserting
//!   each body as one row in its own transaction, on a PostgreSQL connection per HTTP
//!   connection; and **gateway pg**: the gateway on a database of the same cluster.
//!
//! All are driven with the same requests: `examples/messages/orm_o01.hl7` with a unique
//! MSH-10 per request (so a gateway commits each one instead of answering a duplicate),
//! POSTed over TLS with the client certificate, HTTP/1.1 keep-alive, by 1, 8 and 32
//! concurrent clients (one connection each). Connections are set up before the clock
//! starts; after a warm-up, every request's latency (send to the last byte of the response)
//! is recorded. The run is split into rounds; each round measures every server one after the
//! other, rotating which goes first, so that load from other processes drifting over the run
//! hits all alike. The tables give messages/s, the mean latency and the p50 and p99 (apart),
//! the CPU this process and every other process used meanwhile, and the ratios (with the
//! spread of the per-round throughput ratio), then how many messages each gateway's
//! transactions held.
//!
//! Each round also times, one after the other and with nothing else running: 4 KiB writes
//! followed by `fsync` on a file next to the store (overwriting, and appending);
//! `Store::commit_inbound` alone; and `Gateway::process` called directly (parse, map, ACK,
//! duplicate lookup, commit; no HTTP, no TLS).
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it does a smoke run of a few
//! seconds. Any failed request, a non-AA ACK, or a gateway store that does not hold one row
//! per AA fails the run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../src/bench_postgres.rs"]
mod bench_postgres;

use bench_postgres::{pg_connect, require_durable};
use std::convert::Infallible;
use std::io::{Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hl7gw_runtime::app::{AppError, RunOptions};
use hl7gw_runtime::config::EnvName;
use hl7gw_tests::bench::Mode;
use hl7gw_tests::pki::{ca, leaf};
use hl7gw_tests::postgres::{ChildStore, TestPostgres};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rcgen::ExtendedKeyUsagePurpose;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The message sent, CR-separated; its MSH-10 is replaced per request.
const MESSAGE: &[u8] = include_bytes!("../../examples/messages/orm_o01.hl7");
const TEMPLATE_CONTROL_ID: &[u8] = b"ORM-0001";

/// What the baseline answers, whatever it receives: an ACK of the same shape as the gateway's.
const BASELINE_ACK: &[u8] = b"MSH|^~\\&|EMS|EMS-HOST|TIE|DEMO-TRUST|20260101120500||ACK^O01^ACK|ACK-1|T|2.4\rMSA|AA|ORM-0001\r";

const CONTENT_TYPE_HL7: &str = "application/hl7-v2; charset=UTF-8";
const CLIENT_CN: &str = "tie-test.demo.nhs.uk";
/// The scenarios: this many keep-alive clients, each sending one request after the other.
const CLIENTS: [usize; 3] = [1, 8, 32];

/// Warm-up and measurement per scenario, server and round; the number of rounds.
fn durations(mode: Mode) -> (Duration, Duration, usize) {
    match mode {
        Mode::Test => (Duration::ZERO, Duration::from_millis(150), 1),
        Mode::Quick => (Duration::from_millis(200), Duration::from_millis(700), 2),
        Mode::Full => (Duration::from_millis(500), Duration::from_millis(2000), 3),
    }
}

/// Per probe (fsync, `Store::commit_inbound`, `Gateway::process`) and round.
fn probe_budget(mode: Mode) -> Duration {
    match mode {
        Mode::Test => Duration::from_millis(50),
        Mode::Quick => Duration::from_millis(250),
        Mode::Full => Duration::from_millis(500),
    }
}

// ---------------------------------------------------------------------------------------------
// Certificates.

/// A CA, a server certificate for localhost/127.0.0.1 and a client certificate, written as
/// the spec names them (`server.crt`, `server.key`, `trust-ca.crt`) for `--cert-dir`.
struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
}

impl Pki {
    fn new() -> Self {
        let root = ca("hl7gw bench CA");
        let server = leaf(
            &root,
            "localhost",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let client = leaf(
            &root,
            CLIENT_CN,
            &[CLIENT_CN],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("server.crt"), server.cert_pem).unwrap();
        std::fs::write(dir.path().join("server.key"), server.key_pem).unwrap();
        std::fs::write(dir.path().join("trust-ca.crt"), root.pem()).unwrap();
        Self {
            dir,
            ca_pem: root.pem(),
            client_cert_pem: client.cert_pem,
            client_key_pem: client.key_pem,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The server side, as the gateway builds it from the same files.
    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        hl7gw_runtime::tls::server_config(
            &self.path("server.crt"),
            &self.path("server.key"),
            &self.path("trust-ca.crt"),
        )
        .unwrap()
    }

    /// A client trusting the CA and presenting the client certificate, sending no ALPN (as
    /// the Java engines do), so both servers speak HTTP/1.1.
    fn client_config(&self) -> Arc<ClientConfig> {
        use hl7gw_runtime::tls::{certificates_from_pem, private_key_from_pem, provider};
        let mut roots = RootCertStore::empty();
        for cert in certificates_from_pem("ca", self.ca_pem.as_bytes()).unwrap() {
            roots.add(cert).unwrap();
        }
        let config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(hl7gw_runtime::tls::PROTOCOL_VERSIONS)
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(
                certificates_from_pem("cert", self.client_cert_pem.as_bytes()).unwrap(),
                private_key_from_pem("key", self.client_key_pem.as_bytes()).unwrap(),
            )
            .unwrap();
        Arc::new(config)
    }
}

// ---------------------------------------------------------------------------------------------
// Servers.

struct Gateway {
    addr: SocketAddr,
    /// The operations port (`/metrics`).
    ops: SocketAddr,
    store: PathBuf,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), AppError>>,
}

/// The gateway on a temporary SQLite store, or on `postgres` (a database of the private
/// cluster) when given.
fn start_gateway(
    rt: &tokio::runtime::Runtime,
    pki: &Pki,
    data: &Path,
    postgres: Option<&ChildStore>,
) -> Gateway {
    let mut spec = gw_demo::SPEC;
    let environment = spec
        .environment_mut(EnvName::Test)
        .as_mut()
        .expect("gw-demo has a TEST environment");
    // The receiving side only: no sender to the Trust in this benchmark.
    environment.send = None;
    if let Some(db) = postgres {
        environment.store = hl7gw_tests::postgres::store_config(&db.to_json()).unwrap();
    }
    let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let store = data.join("gateway.sqlite");
    let options = RunOptions {
        base_dir: data.to_owned(),
        listen: Some(local),
        cert_dir: Some(pki.dir.path().to_owned()),
        store: postgres.is_none().then(|| store.clone()),
        control_dir: None,
        ops_listen: Some(local),
        ops_exposure: hl7gw_runtime::server::Exposure::LoopbackOnly,
        inbox_listen: Some(local),
        intake_listen: Some(local),
        mllp_listen: Some(local),
        retention: Some(Duration::from_secs(30 * 86_400)),
    };
    let (ready_tx, ready_rx) = oneshot::channel::<(SocketAddr, SocketAddr)>();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = rt.spawn(async move {
        hl7gw_runtime::app::serve(
            &spec,
            EnvName::Test,
            &options,
            async move {
                let _ = stopped.await;
            },
            move |resolved| {
                let _ = ready_tx.send((resolved.listen, resolved.ops_listen));
            },
        )
        .await
    });
    let (addr, ops) = match rt.block_on(ready_rx) {
        Ok(addrs) => addrs,
        Err(_) => panic!(
            "the gateway did not start: {:?}",
            rt.block_on(task).map(|r| r.map_err(|e| e.to_string()))
        ),
    };
    Gateway {
        addr,
        ops,
        store,
        stop,
        task,
    }
}

/// What a fixed-ACK server does with each request's body before it answers.
#[derive(Clone)]
enum Durable {
    /// Nothing: the bare baseline.
    Nothing,
    /// Appends the body to one journal file and `fsync`s it (`File::sync_all`, what SQLite's
    /// bundled build calls), one request at a time: one fsync per request.
    Fsync(Arc<std::sync::Mutex<std::fs::File>>),
    /// Inserts the body as one row, in its own transaction (autocommit), on the HTTP
    /// connection's own PostgreSQL connection: one commit per request.
    Postgres(Arc<ChildStore>),
}

/// A fixed-ACK server: HTTP/1.1 keep-alive over the same TLS configuration; reads the body,
/// makes it durable as `durable` says, and answers [`BASELINE_ACK`] (500 if that failed).
fn start_fixed(
    rt: &tokio::runtime::Runtime,
    tls: Arc<rustls::ServerConfig>,
    durable: Durable,
) -> SocketAddr {
    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("bind the baseline");
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(tls);
    rt.spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let durable = durable.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let client = match &durable {
                    Durable::Postgres(db) => Some(Arc::new(pg_connect(db).await)),
                    _ => None,
                };
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let durable = durable.clone();
                    let client = client.clone();
                    async move {
                        // Read, never parsed.
                        let body = request
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let stored = match durable {
                            Durable::Nothing => true,
                            Durable::Fsync(file) => tokio::task::spawn_blocking(move || {
                                let mut file = file.lock().unwrap();
                                file.write_all(&body).and_then(|()| file.sync_all()).is_ok()
                            })
                            .await
                            .unwrap_or(false),
                            Durable::Postgres(_) => match &client {
                                Some(client) => client
                                    .execute(
                                        "INSERT INTO bench_rows (raw) VALUES ($1)",
                                        &[&body.as_ref()],
                                    )
                                    .await
                                    .is_ok(),
                                None => false,
                            },
                        };
                        let mut response =
                            Response::new(Full::new(Bytes::from_static(BASELINE_ACK)));
                        if !stored {
                            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                        }
                        response
                            .headers_mut()
                            .insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_HL7));
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

/// The gateway's commit group histogram from its `/metrics`: (messages, transactions).
async fn commit_groups(ops: SocketAddr) -> (u64, u64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(ops).await.expect("connect to /metrics");
    tcp.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).await.unwrap();
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} in /metrics"))
    };
    (
        value("hl7gw_store_commit_group_size_sum"),
        value("hl7gw_store_commit_group_size_count"),
    )
}

// ---------------------------------------------------------------------------------------------
// Clients.

/// The message with MSH-10 set to `control_id`.
fn message(control_id: &str) -> Bytes {
    let at = MESSAGE
        .windows(TEMPLATE_CONTROL_ID.len())
        .position(|w| w == TEMPLATE_CONTROL_ID)
        .expect("the template's MSH-10");
    let mut out = Vec::with_capacity(MESSAGE.len() + 16);
    out.extend_from_slice(&MESSAGE[..at]);
    out.extend_from_slice(control_id.as_bytes());
    out.extend_from_slice(&MESSAGE[at + TEMPLATE_CONTROL_ID.len()..]);
    Bytes::from(out)
}

/// Control ids unique across the whole run.
struct Ids(AtomicU64);

impl Ids {
    fn next(&self) -> String {
        format!("BENCH-{:08}", self.0.fetch_add(1, Ordering::Relaxed))
    }
}

async fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> SendRequest<Full<Bytes>> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).unwrap();
    let tls = TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

fn request(body: Bytes) -> Request<Full<Bytes>> {
    Request::post("/hl7")
        .header(HOST, "localhost")
        .header(CONTENT_TYPE, CONTENT_TYPE_HL7)
        .body(Full::new(body))
        .unwrap()
}

/// One request on a keep-alive connection: the status and the body.
async fn post(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), String> {
    sender.ready().await.map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

fn is_aa(status: StatusCode, body: &[u8]) -> bool {
    status == StatusCode::OK && body.windows(7).any(|w| w == b"\rMSA|AA")
}

#[derive(Default)]
struct ClientResult {
    /// Latencies of the measured requests, in nanoseconds.
    latencies: Vec<u64>,
    /// Every AA answer, warm-up included (for the store check).
    accepted: u64,
    errors: u64,
    first_error: Option<String>,
    last_done: Option<Instant>,
}

async fn client_loop(
    mut sender: SendRequest<Full<Bytes>>,
    ids: Arc<Ids>,
    start: Instant,
    end: Instant,
) -> ClientResult {
    let mut result = ClientResult::default();
    loop {
        let body = message(&ids.next());
        let req = request(body);
        let sent = Instant::now();
        if sent >= end {
            break;
        }
        let outcome = post(&mut sender, req).await;
        let done = Instant::now();
        let measured = sent >= start;
        match outcome {
            Ok((status, body)) if is_aa(status, &body) => {
                result.accepted += 1;
                if measured {
                    let ns = u64::try_from((done - sent).as_nanos()).unwrap_or(u64::MAX);
                    result.latencies.push(ns);
                    result.last_done = Some(done);
                }
            }
            Ok((status, body)) => {
                result.errors += 1;
                result.first_error.get_or_insert_with(|| {
                    format!("{status}: {}", String::from_utf8_lossy(&body).trim())
                });
            }
            Err(e) => {
                result.errors += 1;
                result.first_error.get_or_insert(e);
                break;
            }
        }
    }
    result
}

/// One scenario against one server, measured once.
struct Slice {
    /// Latencies of the measured requests, in nanoseconds.
    latencies: Vec<u64>,
    /// From the start of the measured window to the last measured response, in seconds.
    elapsed: f64,
    /// CPU seconds this process used in the window (user, system).
    cpu: (f64, f64),
    /// CPU seconds the whole machine was busy in the window (every process).
    machine_busy: f64,
    /// Every AA answer, warm-up included (for the store check).
    accepted: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Slice {
    fn per_second(&self) -> f64 {
        if self.elapsed > 0.0 {
            self.latencies.len() as f64 / self.elapsed
        } else {
            0.0
        }
    }
}

/// User and system CPU time of this process so far, in seconds (`/proc/self/stat`, in
/// USER_HZ = 100 ticks per second on Linux).
fn cpu_times() -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return (0.0, 0.0);
    };
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the name.
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 100.0
    };
    (tick(11), tick(12))
}

/// CPU seconds the whole machine has been busy, every process and kernel thread, from the
/// first line of `/proc/stat`.
fn machine_busy() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(line) = stat.lines().next() else {
        return 0.0;
    };
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...: busy is user, nice, system, irq
    // and softirq (not idle, not iowait, not time the hypervisor gave to another guest).
    [0, 1, 2, 5, 6]
        .iter()
        .map(|&i| ticks.get(i).copied().unwrap_or(0.0))
        .sum::<f64>()
        / 100.0
}

fn percentile(sorted: &[u64], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Nearest rank.
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Duration::from_nanos(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// `clients` keep-alive connections, each sending one request after the other.
async fn drive(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    ids: Arc<Ids>,
    clients: usize,
    warmup: Duration,
    measure: Duration,
) -> Slice {
    let mut senders = Vec::with_capacity(clients);
    for _ in 0..clients {
        senders.push(connect(addr, config.clone()).await);
    }
    let start = Instant::now() + warmup;
    let end = start + measure;
    let tasks: Vec<_> = senders
        .into_iter()
        .map(|sender| tokio::spawn(client_loop(sender, ids.clone(), start, end)))
        .collect();
    tokio::time::sleep_until(start.into()).await;
    let (user0, system0) = cpu_times();
    let busy0 = machine_busy();
    let mut latencies = Vec::new();
    let (mut accepted, mut errors, mut first_error, mut last) = (0, 0, None, start);
    for task in tasks {
        let r = task.await.expect("client task");
        latencies.extend(r.latencies);
        accepted += r.accepted;
        errors += r.errors;
        if first_error.is_none() {
            first_error = r.first_error;
        }
        if let Some(done) = r.last_done {
            last = last.max(done);
        }
    }
    let (user1, system1) = cpu_times();
    let busy1 = machine_busy();
    Slice {
        latencies,
        elapsed: (last - start).as_secs_f64(),
        cpu: (user1 - user0, system1 - system0),
        machine_busy: busy1 - busy0,
        accepted,
        errors,
        first_error,
    }
}

/// One scenario against one server, over every round.
struct Figures {
    messages: usize,
    per_second: f64,
    /// Mean latency: kept apart from the percentiles, never mixed with them.
    mean: Duration,
    p50: Duration,
    p99: Duration,
    /// This process's CPU per second of measurement, in cores (2.0: both cores busy).
    cpu_cores: f64,
    /// The kernel's share of this process's CPU time.
    cpu_system_share: f64,
    /// What the rest of the machine used meanwhile, in cores: other processes, and kernel
    /// threads, including the ext4 journal and writeback work that this process's fsyncs
    /// cause.
    others_cores: f64,
}

impl Figures {
    fn from(slices: &[Slice]) -> Self {
        let mut latencies: Vec<u64> = slices.iter().flat_map(|s| s.latencies.clone()).collect();
        latencies.sort_unstable();
        let elapsed: f64 = slices.iter().map(|s| s.elapsed).sum();
        let user: f64 = slices.iter().map(|s| s.cpu.0).sum();
        let system: f64 = slices.iter().map(|s| s.cpu.1).sum();
        let busy: f64 = slices.iter().map(|s| s.machine_busy).sum();
        let per = |x: f64| if elapsed > 0.0 { x / elapsed } else { 0.0 };
        Self {
            messages: latencies.len(),
            per_second: per(latencies.len() as f64),
            mean: Duration::from_nanos(
                latencies.iter().sum::<u64>() / (latencies.len().max(1) as u64),
            ),
            p50: percentile(&latencies, 0.50),
            p99: percentile(&latencies, 0.99),
            cpu_cores: per(user + system),
            cpu_system_share: if user + system > 0.0 {
                system / (user + system)
            } else {
                0.0
            },
            others_cores: per((busy - user - system).max(0.0)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// fsync.

/// Writes 4 KiB then `fsync`s (`File::sync_all`), again and again for `budget`: appending
/// to a new file, or overwriting its first 4 KiB.
fn fsync_probe(dir: &Path, budget: Duration, append: bool) -> Vec<u64> {
    let path = dir.join(if append {
        "fsync-append.probe"
    } else {
        "fsync-overwrite.probe"
    });
    let mut file = std::fs::File::create(&path).unwrap();
    let block = [0x5a_u8; 4096];
    file.write_all(&block).unwrap();
    file.sync_all().unwrap();
    let mut times = Vec::new();
    let until = Instant::now() + budget;
    while Instant::now() < until || times.len() < 5 {
        if !append {
            file.seek(SeekFrom::Start(0)).unwrap();
        }
        let t = Instant::now();
        file.write_all(&block).unwrap();
        file.sync_all().unwrap();
        times.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    times
}

// ---------------------------------------------------------------------------------------------
// The gateway's parts without HTTP and TLS.

/// Timings of one operation repeated for a budget.
struct Timings {
    count: usize,
    mean: Duration,
    p50: Duration,
    p99: Duration,
}

impl Timings {
    fn from(times: &[u64]) -> Self {
        let mut times = times.to_vec();
        let count = times.len();
        let total: u64 = times.iter().sum();
        times.sort_unstable();
        Self {
            count,
            mean: Duration::from_nanos(total / (count.max(1) as u64)),
            p50: percentile(&times, 0.50),
            p99: percentile(&times, 0.99),
        }
    }

    fn per_second(&self) -> f64 {
        1.0 / self.mean.as_secs_f64()
    }
}

/// `Gateway::process` called directly, one message after the other, with its own store:
/// parse, decide, map, ACK, duplicate lookup and durable commit, no transport.
fn probe_process(
    rt: &tokio::runtime::Runtime,
    data: &Path,
    ids: &Ids,
    budget: Duration,
) -> Vec<u64> {
    use hl7gw_runtime::gateway::Gateway;
    use hl7gw_runtime::server::{Hl7Request, Hl7Response};
    let store = hl7gw_runtime::store::Store::open(data.join("process.sqlite")).unwrap();
    let environment = gw_demo::SPEC.environment(EnvName::Test).unwrap().clone();
    let gateway = Gateway::new(
        Arc::new(gw_demo::SPEC),
        environment,
        store,
        hl7gw_runtime::sink::Sink::Inbox,
        Arc::new(hl7gw_runtime::metrics::Metrics::new()),
    );
    rt.block_on(async {
        let mut times = Vec::new();
        let until = Instant::now() + budget;
        while Instant::now() < until || times.len() < 5 {
            let request = Hl7Request {
                body: message(&ids.next()),
                charset: Some(hl7gw_runtime::hl7::Charset::Utf8),
                media_type: Some(hl7gw_runtime::server::MediaType::Hl7V2),
                peer_ip: "127.0.0.1".parse().unwrap(),
                peer_subject: format!("CN={CLIENT_CN}"),
                request_id: "probe".into(),
            };
            let t = Instant::now();
            let response = gateway.process(request).await;
            times.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
            match response {
                Hl7Response::Ack(ack) if ack.code == "AA" => {}
                other => panic!("Gateway::process answered {other:?}"),
            }
        }
        times
    })
}

/// `Store::commit_inbound` alone (blocking), one mapped record after the other: the SQLite
/// transaction and its fsync.
fn probe_commit(data: &Path, ids: &Ids, budget: Duration) -> Vec<u64> {
    use hl7gw_runtime::dedup::DedupKey;
    use hl7gw_runtime::hl7::{AckCode, Message, ParseOptions};
    use hl7gw_runtime::store::{CommitResult, InboundRecord, Store};
    let store = Store::open(data.join("commit.sqlite")).unwrap();
    let raw = message("TEMPLATE");
    let parsed = Message::parse_with(&raw, &ParseOptions::lenient()).unwrap();
    let record = gw_demo::SPEC.map_inbound("ORM^O01", &parsed).unwrap();
    let mut times = Vec::new();
    let until = Instant::now() + budget;
    while Instant::now() < until || times.len() < 5 {
        let id = ids.next();
        let row = InboundRecord {
            received_at: std::time::SystemTime::now(),
            peer_ip: Some("127.0.0.1".parse().unwrap()),
            peer_subject: Some(format!("CN={CLIENT_CN}")),
            key: DedupKey::new("TIE", "DEMO-TRUST", id.as_str()),
            message_type: "ORM^O01".into(),
            raw: message(&id).to_vec().into(),
            record: Some(record.clone()),
            ack: BASELINE_ACK.to_vec(),
            ack_code: AckCode::ApplicationAccept,
            sink: hl7gw_runtime::sink::SinkKind::Inbox,
        };
        let t = Instant::now();
        let committed = store.blocking().commit_inbound(&row).unwrap();
        times.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
        assert!(matches!(committed, CommitResult::Committed(_)));
    }
    times
}

/// `Store::find_duplicate` as the gateway calls it (async: a hop to tokio's blocking pool and
/// an indexed lookup that finds nothing), and an empty `spawn_blocking` round trip alone.
fn probe_hops(
    rt: &tokio::runtime::Runtime,
    data: &Path,
    ids: &Ids,
    budget: Duration,
) -> (Vec<u64>, Vec<u64>) {
    use hl7gw_runtime::dedup::DedupKey;
    let store = hl7gw_runtime::store::Store::open(data.join("commit.sqlite")).unwrap();
    rt.block_on(async {
        let (mut lookups, mut hops) = (Vec::new(), Vec::new());
        let until = Instant::now() + budget / 2;
        while Instant::now() < until || lookups.len() < 5 {
            let key = DedupKey::new("TIE", "DEMO-TRUST", ids.next());
            let t = Instant::now();
            let found = store.find_duplicate(&key).await.unwrap();
            lookups.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
            assert!(found.is_none());
        }
        let until = Instant::now() + budget / 2;
        while Instant::now() < until || hops.len() < 5 {
            let t = Instant::now();
            tokio::task::spawn_blocking(|| ()).await.unwrap();
            hops.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
        }
        (lookups, hops)
    })
}

// ---------------------------------------------------------------------------------------------
// Output.

fn show(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn print_timings(label: &str, t: &Timings) {
    println!(
        "| {label} | {} | {} | {} | {} | {:.0} |",
        t.count,
        show(t.mean),
        show(t.p50),
        show(t.p99),
        t.per_second()
    );
}

/// `HL7GW_BENCH_PROFILE=<server>@<clients>` (e.g. `gateway@32`): drive that one server
/// alone, for `perf record` or `strace -c` to see what it spends its time on.
fn profile_target() -> Option<(String, usize)> {
    let text = std::env::var("HL7GW_BENCH_PROFILE").ok()?;
    match text.rsplit_once('@') {
        Some((server, clients)) => match clients.parse::<usize>() {
            Ok(n) if n > 0 => Some((server.to_owned(), n)),
            _ => {
                eprintln!(
                    "HL7GW_BENCH_PROFILE={text:?}: the client count must be a number above 0"
                );
                std::process::exit(2);
            }
        },
        None => {
            eprintln!("HL7GW_BENCH_PROFILE={text:?}: expected <server>@<clients>, e.g. gateway@32");
            std::process::exit(2);
        }
    }
}

/// The profiling run of [`profile_target`]: 1 s warm-up, then 10 s measured, and its figures.
fn profile(
    servers: &[(&str, SocketAddr)],
    wanted: &str,
    clients: usize,
    client_rt: &tokio::runtime::Runtime,
    client_config: Arc<ClientConfig>,
    ids: Arc<Ids>,
) {
    let Some((name, addr)) = servers.iter().find(|(name, _)| *name == wanted) else {
        eprintln!("HL7GW_BENCH_PROFILE: no server named {wanted:?}");
        std::process::exit(2);
    };
    println!(
        "profiling {name} with {clients} clients for 10 s (pid {})",
        std::process::id()
    );
    let slice = client_rt.block_on(drive(
        *addr,
        client_config,
        ids,
        clients,
        Duration::from_secs(1),
        Duration::from_secs(10),
    ));
    let f = Figures::from(std::slice::from_ref(&slice));
    println!(
        "{name}, {clients} clients: {:.0} messages/s, p50 {}, CPU {:.2} cores ({:.0} % kernel) = {:.0} µs per message; {} errors",
        f.per_second,
        show(f.p50),
        f.cpu_cores,
        f.cpu_system_share * 100.0,
        f.cpu_cores / f.per_second * 1e6,
        slice.errors
    );
}

fn main() {
    let mode = Mode::from_args();
    let (warmup, measure, rounds) = durations(mode);
    let budget = probe_budget(mode);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("receiver benchmark ({mode:?} mode)");
    println!(
        "machine: {cores} cores ({}), load average before: {}; the clients and both servers share these cores",
        cpu_model(),
        loadavg()
    );
    println!(
        "{rounds} rounds; in each, per scenario and server: {} s warm-up, {} s measured; probes {} s each",
        warmup.as_secs_f64(),
        measure.as_secs_f64(),
        budget.as_secs_f64()
    );

    let data = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .thread_name("server")
        .enable_all()
        .build()
        .unwrap();
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .thread_name("client")
        .enable_all()
        .build()
        .unwrap();

    // The servers, in the order of the tables. The PostgreSQL pair runs only where the
    // private cluster can be started (it says so otherwise).
    let gateway = start_gateway(&server_rt, &pki, data.path(), None);
    let journal = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.path().join("fsync-server.journal"))
        .unwrap();
    let mut servers: Vec<(&str, SocketAddr)> = vec![
        (
            "bare",
            start_fixed(&server_rt, pki.server_config(), Durable::Nothing),
        ),
        (
            "fsync",
            start_fixed(
                &server_rt,
                pki.server_config(),
                Durable::Fsync(Arc::new(std::sync::Mutex::new(journal))),
            ),
        ),
        ("gateway", gateway.addr),
    ];
    let postgres = TestPostgres::start_durable("receiver benchmark, PostgreSQL column");
    let pg_store = postgres.as_ref().map(|server| {
        // The password file goes beside the certificates: with `--cert-dir`, the gateway
        // looks up every file of its configuration there by name.
        let db = ChildStore::create(server, "bench", pki.dir.path(), 10_000);
        let pg_gateway = start_gateway(&server_rt, &pki, data.path(), Some(&db));
        // The row server's table, in a database of its own on the same cluster.
        let rows = ChildStore::create(server, "rows", pki.dir.path(), 10_000);
        server.psql(
            &rows.dbname,
            "CREATE TABLE bench_rows (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, raw BYTEA NOT NULL)",
        );
        // The figures must be durable commits: read the settings back rather than trust
        // how the cluster was started.
        match client_rt.block_on(async { require_durable(&pg_connect(&rows).await).await }) {
            Ok(line) => println!("PostgreSQL cluster on {}:{}: {line}", rows.host, rows.port),
            Err(e) => {
                eprintln!("error: receiver benchmark, PostgreSQL column: {e}");
                std::process::exit(1);
            }
        }
        let row_server = start_fixed(
            &server_rt,
            pki.server_config(),
            Durable::Postgres(Arc::new(rows)),
        );
        servers.push(("pg row", row_server));
        servers.push(("gateway pg", pg_gateway.addr));
        (db, pg_gateway)
    });
    let gateways: Vec<usize> = servers
        .iter()
        .enumerate()
        .filter(|(_, (name, _))| name.starts_with("gateway"))
        .map(|(i, _)| i)
        .collect();
    let client_config = pki.client_config();
    let ids = Arc::new(Ids(AtomicU64::new(1)));
    for (name, addr) in &servers {
        println!("server {name}: {addr}");
    }
    println!("gateway store {}", gateway.store.display());

    // Checks before measuring: every server answers AA; each gateway acknowledges this very
    // message, and answers a repeat of it with the same ACK (a duplicate is not committed
    // again).
    let mut accepted = vec![0_u64; servers.len()];
    client_rt.block_on(async {
        for (i, (name, addr)) in servers.iter().enumerate() {
            let mut sender = connect(*addr, client_config.clone()).await;
            let id = ids.next();
            let (status, first) = post(&mut sender, request(message(&id))).await.unwrap();
            assert!(is_aa(status, &first), "{name}: {status} {first:?}");
            if gateways.contains(&i) {
                accepted[i] += 1;
                let msa = format!("\rMSA|AA|{id}");
                assert!(
                    first.windows(msa.len()).any(|w| w == msa.as_bytes()),
                    "{name}: the ACK does not acknowledge {id}: {first:?}"
                );
                let (status, again) = post(&mut sender, request(message(&id))).await.unwrap();
                assert_eq!(
                    (status, &again),
                    (StatusCode::OK, &first),
                    "{name}: duplicate"
                );
            }
            println!(
                "checked {name}: AA, ACK {} bytes, request body {} bytes",
                first.len(),
                message(&id).len()
            );
        }
    });

    if let Some((wanted, clients)) = profile_target() {
        profile(&servers, &wanted, clients, &client_rt, client_config, ids);
        drop(client_rt);
        server_rt.shutdown_timeout(Duration::from_secs(2));
        return;
    }

    let scenarios: Vec<(String, usize)> = CLIENTS
        .iter()
        .map(|&n| {
            let name = if n == 1 {
                "1 client".to_owned()
            } else {
                format!("{n} clients")
            };
            (name, n)
        })
        .collect();
    // slices[scenario][server][round]
    let mut slices: Vec<Vec<Vec<Slice>>> = scenarios
        .iter()
        .map(|_| servers.iter().map(|_| Vec::new()).collect())
        .collect();
    let mut probes: [Vec<u64>; 6] = Default::default();
    let mut failed = false;
    for round in 0..rounds {
        probes[0].extend(fsync_probe(data.path(), budget, false));
        probes[1].extend(fsync_probe(data.path(), budget, true));
        probes[2].extend(probe_commit(data.path(), &ids, budget));
        probes[3].extend(probe_process(&server_rt, data.path(), &ids, budget));
        let (lookups, hops) = probe_hops(&server_rt, data.path(), &ids, budget);
        probes[4].extend(lookups);
        probes[5].extend(hops);
        for (scenario, (name, clients)) in scenarios.iter().enumerate() {
            // Rotate which server goes first, so slow drifts in load hit all alike.
            let n = servers.len();
            for k in 0..n {
                let server = (k + round) % n;
                let (server_name, addr) = servers[server];
                let slice = client_rt.block_on(drive(
                    addr,
                    client_config.clone(),
                    ids.clone(),
                    *clients,
                    warmup,
                    measure,
                ));
                accepted[server] += slice.accepted;
                if slice.errors > 0 || slice.latencies.is_empty() {
                    failed = true;
                    println!(
                        "FAILED {name} {server_name}: {} errors, {} measured; first: {}",
                        slice.errors,
                        slice.latencies.len(),
                        slice.first_error.as_deref().unwrap_or("none")
                    );
                }
                slices[scenario][server].push(slice);
            }
        }
    }
    let load_after = loadavg();
    let mut groups = vec![client_rt.block_on(commit_groups(gateway.ops))];
    if let Some((_, pg_gateway)) = &pg_store {
        groups.push(client_rt.block_on(commit_groups(pg_gateway.ops)));
    }

    let _ = gateway.stop.send(());
    let served = server_rt.block_on(gateway.task);
    assert!(
        matches!(served, Ok(Ok(()))),
        "the gateway stopped with {served:?}"
    );

    // Every AA is one committed row, durably stored.
    let store = hl7gw_runtime::store::Store::open(&gateway.store).unwrap();
    let pragmas = store.blocking().pragmas().unwrap();
    let mut stores = vec![(gateways[0], store)];
    if let Some((db, pg_gateway)) = pg_store {
        let _ = pg_gateway.stop.send(());
        let served = server_rt.block_on(pg_gateway.task);
        assert!(
            matches!(served, Ok(Ok(()))),
            "the PostgreSQL gateway stopped with {served:?}"
        );
        stores.push((gateways[1], db.open()));
    }
    println!(
        "SQLite store: journal_mode={}, synchronous={} (2 = FULL)",
        pragmas.journal_mode, pragmas.synchronous
    );
    for (i, store) in &stores {
        let stored = store.blocking().inbox_pending().unwrap();
        println!(
            "{}: {stored} committed rows for {} AA answers",
            servers[*i].0, accepted[*i]
        );
        if stored != accepted[*i] {
            failed = true;
            println!(
                "FAILED: {} holds {stored} rows, it answered AA {} times",
                servers[*i].0, accepted[*i]
            );
        }
    }

    println!();
    println!(
        "| clients | server | messages | messages/s | mean | p50 | p99 | CPU, this process (cores) | of which kernel | CPU, rest of the machine (cores) |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let figures: Vec<Vec<Figures>> = slices
        .iter()
        .map(|per_server| per_server.iter().map(|s| Figures::from(s)).collect())
        .collect();
    for ((name, _), per_server) in scenarios.iter().zip(&figures) {
        for ((server, _), f) in servers.iter().zip(per_server) {
            println!(
                "| {name} | {server} | {} | {:.0} | {} | {} | {} | {:.2} | {:.0} % | {:.2} |",
                f.messages,
                f.per_second,
                show(f.mean),
                show(f.p50),
                show(f.p99),
                f.cpu_cores,
                f.cpu_system_share * 100.0,
                f.others_cores
            );
        }
    }
    println!();
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    let index = |name: &str| servers.iter().position(|(n, _)| *n == name);
    let pairs: Vec<(usize, usize)> = [
        ("gateway", "bare"),
        ("gateway", "fsync"),
        ("fsync", "bare"),
        ("gateway pg", "bare"),
        ("gateway pg", "pg row"),
    ]
    .iter()
    .filter_map(|(a, b)| Some((index(a)?, index(b)?)))
    .collect();
    println!(
        "| clients | ratio | messages/s | per round (min to max) | mean latency | p50 latency | p99 latency |\n|---|---|---:|---:|---:|---:|---:|"
    );
    let mut rounds_text = String::new();
    for (scenario, (name, _)) in scenarios.iter().enumerate() {
        let list = |slices: &[Slice]| {
            slices
                .iter()
                .map(|s| format!("{:.0}", s.per_second()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let per_server: Vec<String> = servers
            .iter()
            .zip(&slices[scenario])
            .map(|((server, _), s)| format!("{server} {}", list(s)))
            .collect();
        rounds_text.push_str(&format!(
            "{name}, messages/s per round: {}\n",
            per_server.join("; ")
        ));
        for &(a, b) in &pairs {
            let (fa, fb) = (&figures[scenario][a], &figures[scenario][b]);
            let per_round: Vec<f64> = slices[scenario][a]
                .iter()
                .zip(&slices[scenario][b])
                .map(|(x, y)| ratio(x.per_second(), y.per_second()))
                .collect();
            let low = per_round.iter().copied().fold(f64::INFINITY, f64::min);
            let high = per_round.iter().copied().fold(0.0, f64::max);
            println!(
                "| {name} | {} / {} | {:.3} | {low:.3} to {high:.3} | {:.2}× | {:.2}× | {:.2}× |",
                servers[a].0,
                servers[b].0,
                ratio(fa.per_second, fb.per_second),
                ratio(fa.mean.as_secs_f64(), fb.mean.as_secs_f64()),
                ratio(fa.p50.as_secs_f64(), fb.p50.as_secs_f64()),
                ratio(fa.p99.as_secs_f64(), fb.p99.as_secs_f64())
            );
        }
    }
    for (&i, (messages, transactions)) in gateways.iter().zip(&groups) {
        println!(
            "{} (its /metrics): {messages} inbound commits in {transactions} transactions ({:.1} per transaction)",
            servers[i].0,
            ratio(*messages as f64, *transactions as f64)
        );
    }

    print!("\n{rounds_text}");
    let [overwrite, append, commit, process, lookup, hop] =
        probes.each_ref().map(|t| Timings::from(t));
    println!();
    println!(
        "| operation, one after the other | rounds | mean | p50 | p99 | 1/mean per s |\n|---|---:|---:|---:|---:|---:|"
    );
    print_timings("write 4 KiB + fsync, overwriting", &overwrite);
    print_timings("write 4 KiB + fsync, appending", &append);
    print_timings("Store::commit_inbound (blocking)", &commit);
    print_timings("Gateway::process (no HTTP, no TLS)", &process);
    print_timings("Store::find_duplicate (async, finds nothing)", &lookup);
    print_timings("spawn_blocking of an empty closure, round trip", &hop);
    println!();
    let sqlite_gateway = gateways[0];
    for ((name, _), per_server) in scenarios.iter().zip(&figures) {
        let gw = &per_server[sqlite_gateway];
        let per_message = 1.0 / gw.per_second;
        println!(
            "gateway, {name}: {:.0} messages/s = {} per message = {:.2} appending fsyncs (p50) = {:.2} commits alone (mean) = {:.2} Gateway::process (mean)",
            gw.per_second,
            show(Duration::from_secs_f64(per_message)),
            per_message / append.p50.as_secs_f64(),
            per_message / commit.mean.as_secs_f64(),
            per_message / process.mean.as_secs_f64(),
        );
    }
    println!(
        "load average after: {load_after}; directory {}",
        data.path().display()
    );

    drop(client_rt);
    server_rt.shutdown_timeout(Duration::from_secs(2));
    if failed {
        std::process::exit(1);
    }
}
