//! The sending gateway's strict stream, durable on both sides, against the physical bound
//! measured in the same run.
//!
//! ```text
//! cargo bench -p hl7gw-tests --bench sender              # full run, about 80 s on a quiet disk
//! cargo bench -p hl7gw-tests --bench sender -- --quick   # short run (or HL7GW_BENCH_QUICK=1)
//! ```
//!
//! One process starts two gateways of this runtime on 127.0.0.1, each through
//! `hl7gw_runtime::app::serve` with its own temporary SQLite store (WAL, `synchronous=FULL`,
//! as `Store::open` always sets it):
//!
//! - **sender**: gw-demo's TEST environment, its `send.url` pointed at the receiver (a copy of
//!   the generated `Environment`, as `tests/sender_support` does), with the spec's
//!   development certificates (`specs/certs/test/client.crt`, `trust-ca.crt`). Its
//!   sequencer delivers the stream `engine` one message at a time: the next message only
//!   after the previous one's ACK is recorded.
//! - **receiver**: the same runtime's receiving gateway, standing in for the Trust's engine:
//!   gw-demo's TEST environment with `send: None`, the Trust's development server
//!   certificate (`specs/certs/test/trust/tie-server.crt`, for localhost and 127.0.0.1) and
//!   the EMS CA as client CA (so it accepts the sender's client certificate, whose CN is put
//!   in `allowed_clients`). It commits each message durably (one SQLite commit, one fsync)
//!   before its AA leaves, and answers a repeat as a duplicate.
//!
//! The messages are `examples/messages/orm_o01.hl7` (an inbound type of gw-demo, so the
//! receiver maps and commits it) with a unique MSH-10 each. They are put in the sender's
//! queue up front with `Queue::enqueue_all` on the sender's store (one transaction, from a
//! second handle on the same file, as a `queue` command would: the intake API would add one
//! HTTP request and one commit per message, outside the delivery path measured here). The
//! sequencer picks the batch up at its next poll. Rates come from the sender's own store:
//! `delivered_at` of consecutive messages, so (N − 1) / (last `delivered_at` − first
//! `delivered_at`) is the steady rate of the strict stream (the first message, which may open
//! the TLS connection, is not counted). The wall time from the enqueue to the last delivery
//! is printed too.
//!
//! The physical bound, measured in each round while neither gateway has traffic:
//!
//! - 4 KiB write + `fsync` on a file next to the stores (overwriting, and appending), p50;
//! - one keep-alive HTTPS request/response round trip over loopback with the same
//!   certificates and TLS settings (the sender's rustls client configuration from
//!   `hl7gw_runtime::client::client_config`, the receiver's server configuration from
//!   `hl7gw_runtime::tls::server_config`) to a hyper + tokio-rustls server that answers a
//!   fixed ACK at once, p50;
//! - for the breakdown only: the same round trip through the sender's own `HttpsClient`
//!   (which reads and checks the ACK), and `Queue::enqueue` of one message (one commit on a
//!   sender store).
//!
//! Bound = 1 / (fsync + fsync + RTT): one fsync at each end and one round trip per message,
//! one after the other, because the stream is strict. The fsync is the appending one (what a
//! WAL commit does); the bound is computed from means and from p50s, and each is compared
//! with the achieved figure of the same kind (the steady rate is a mean; 1 / the cycle's p50
//! is the typical message). The sender makes one commit per message (recording an ACK and
//! marking the next message in flight are one transaction), so the bound is also this
//! design's floor; the binary prints the ratio achieved / bound and the cycle's p99 against
//! the bound's time per message.
//!
//! **PostgreSQL column**, where PostgreSQL is installed (`hl7gw_tests::postgres`, a private
//! cluster on loopback, started with `fsync` and `synchronous_commit` on, PostgreSQL's
//! defaults, which the run checks): the same rounds again after the SQLite ones, with the
//! sender's store on a database of that cluster (the receiver stays on SQLite: it stands in
//! for the Trust's engine). Its bound takes one PostgreSQL commit round trip instead of the
//! sender's fsync: an `INSERT` of one small row (the message) in its own transaction, on a
//! connection to the same server, timed in each round of this column beside the appending
//! fsync and the RTT. Bound = 1 / (PostgreSQL commit + fsync + RTT), from means and from p50s,
//! printed with the same ratios. For the breakdown only: `Queue::enqueue` on a PostgreSQL
//! store. Without PostgreSQL the column is skipped with a printed reason
//! (`HL7GW_REQUIRE_POSTGRES=1` makes that a failure).
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it does a smoke run of a few
//! seconds. A message not delivered in time, a held stream, or a receiver store that does not
//! hold one row per delivered message fails the run, in either column.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../src/bench_postgres.rs"]
mod bench_postgres;

use bench_postgres::{pg_connect, require_durable};
use std::convert::Infallible;
use std::io::{Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hl7gw_runtime::GatewaySpec;
use hl7gw_runtime::app::{AppError, DESTINATION, RunOptions};
use hl7gw_runtime::config::{EnvName, Environment, ReceiveConfig, SendConfig};
use hl7gw_runtime::queue::Queue;
use hl7gw_runtime::store::Store;
use hl7gw_tests::bench::{Mode, unix_micros};
use hl7gw_tests::messages::control_id_of;
use hl7gw_tests::postgres::{ChildStore, TestPostgres};
use hl7gw_tests::specs;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The message sent, CR-separated; its MSH-10 is replaced per message.
const MESSAGE: &[u8] = include_bytes!("../../examples/messages/orm_o01.hl7");
const TEMPLATE_CONTROL_ID: &[u8] = b"ORM-0001";
const CONTENT_TYPE_HL7: &str = "application/hl7-v2; charset=UTF-8";
/// The receiving gateway's path (gw-demo TEST `receive.path`).
const PATH: &str = "/hl7";

/// Messages per batch, rounds (one batch each), time per probe and round.
fn sizes(mode: Mode) -> (usize, usize, Duration) {
    match mode {
        Mode::Test => (100, 1, Duration::from_millis(100)),
        Mode::Quick => (1000, 2, Duration::from_millis(400)),
        Mode::Full => (2000, 5, Duration::from_millis(600)),
    }
}

fn local() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 0)))
}

// ---------------------------------------------------------------------------------------------
// The two gateways.

struct Running {
    addr: SocketAddr,
    store: PathBuf,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), AppError>>,
}

fn start(rt: &tokio::runtime::Runtime, environment: Environment, options: RunOptions) -> Running {
    let spec = GatewaySpec {
        test: Some(environment),
        ..gw_demo::SPEC
    };
    // A PostgreSQL sender has no file: its database is named where it is printed.
    let store = options.store.clone().unwrap_or_default();
    let (ready_tx, ready_rx) = oneshot::channel::<SocketAddr>();
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
                let _ = ready_tx.send(resolved.listen);
            },
        )
        .await
    });
    let addr = match rt.block_on(ready_rx) {
        Ok(addr) => addr,
        Err(_) => panic!(
            "a gateway did not start: {:?}",
            rt.block_on(task).map(|r| r.map_err(|e| e.to_string()))
        ),
    };
    Running {
        addr,
        store,
        stop,
        task,
    }
}

/// The certificate folder of the receiver (`--cert-dir`): the Trust's development server
/// certificate, and the EMS CA that issued the sender's client certificate.
fn receiver_certs(dir: &Path) {
    let trust = specs().join("certs/test/trust");
    std::fs::create_dir_all(dir).unwrap();
    for (from, to) in [
        ("tie-server.crt", "server.crt"),
        ("tie-server.key", "server.key"),
        ("ems-ca.crt", "trust-ca.crt"),
    ] {
        std::fs::copy(trust.join(from), dir.join(to)).unwrap();
    }
}

/// `CN=…` of the sender's client certificate, as the receiver matches it.
fn sender_subject() -> String {
    let pem = std::fs::read(specs().join("certs/test/client.crt")).unwrap();
    let certs = hl7gw_runtime::tls::certificates_from_pem("client", &pem).unwrap();
    hl7gw_runtime::tls::peer_subjects(certs[0].as_ref())
        .into_iter()
        .find(|s| s.starts_with("CN="))
        .expect("the client certificate has a CN")
}

fn start_receiver(rt: &tokio::runtime::Runtime, data: &Path) -> Running {
    let certs = data.join("receiver-certs");
    receiver_certs(&certs);
    let base = gw_demo::config::TEST;
    let receive = base.receive.clone().expect("gw-demo TEST receives");
    let environment = Environment {
        receive: Some(ReceiveConfig {
            allowed_clients: vec![sender_subject().into()].into(),
            ..receive
        }),
        send: None,
        ..base
    };
    let options = RunOptions {
        base_dir: data.to_owned(),
        listen: local(),
        cert_dir: Some(certs),
        store: Some(data.join("receiver.sqlite")),
        control_dir: None,
        ops_listen: local(),
        ops_exposure: hl7gw_runtime::server::Exposure::LoopbackOnly,
        inbox_listen: local(),
        intake_listen: local(),
        mllp_listen: local(),
        retention: Some(Duration::from_secs(30 * 86_400)),
    };
    start(rt, environment, options)
}

fn sender_environment(url: &str) -> Environment {
    let base = gw_demo::config::TEST;
    let send = base.send.clone().expect("gw-demo TEST sends");
    Environment {
        send: Some(SendConfig {
            url: url.to_owned().into(),
            timeout_ms: 10_000,
            backoff_first_ms: 20,
            backoff_max_ms: 100,
            ..send
        }),
        ..base
    }
}

/// The sender on `data/sender.sqlite`, or on `postgres` (a database of the private cluster;
/// its control socket then goes in `data`, not in the spec's folder) when given.
fn start_sender(
    rt: &tokio::runtime::Runtime,
    data: &Path,
    url: &str,
    postgres: Option<&ChildStore>,
) -> Running {
    let mut environment = sender_environment(url);
    if let Some(db) = postgres {
        environment.store = hl7gw_tests::postgres::store_config(&db.to_json()).unwrap();
    }
    let options = RunOptions {
        base_dir: specs(),
        listen: local(),
        cert_dir: None,
        store: postgres.is_none().then(|| data.join("sender.sqlite")),
        control_dir: postgres.is_some().then(|| data.to_owned()),
        ops_listen: local(),
        ops_exposure: hl7gw_runtime::server::Exposure::LoopbackOnly,
        inbox_listen: local(),
        intake_listen: local(),
        mllp_listen: local(),
        retention: Some(Duration::from_secs(30 * 86_400)),
    };
    start(rt, environment, options)
}

/// The message with MSH-10 set to `control_id`.
fn message(control_id: &str) -> Vec<u8> {
    let at = MESSAGE
        .windows(TEMPLATE_CONTROL_ID.len())
        .position(|w| w == TEMPLATE_CONTROL_ID)
        .expect("the template's MSH-10");
    let mut out = Vec::with_capacity(MESSAGE.len() + 16);
    out.extend_from_slice(&MESSAGE[..at]);
    out.extend_from_slice(control_id.as_bytes());
    out.extend_from_slice(&MESSAGE[at + TEMPLATE_CONTROL_ID.len()..]);
    out
}

// ---------------------------------------------------------------------------------------------
// One batch through the strict stream.

struct Batch {
    messages: usize,
    /// (N − 1) / (last delivered_at − first delivered_at).
    steady_per_second: f64,
    /// From before the enqueue to the poll that saw the last delivery.
    wall: Duration,
    /// delivered_at(i) − delivered_at(i − 1), µs.
    cycles: Vec<u64>,
    /// delivered_at(i) − first_attempt_at(i): from the commit that recorded the previous
    /// ACK and marked this message in flight, through the request, the receiver's work and
    /// the round trip, up to this message's own delivery commit, µs.
    attempts: Vec<u64>,
    /// first_attempt_at(i) − delivered_at(i − 1): zero when the commit that recorded the
    /// previous ACK also began this message (one commit per delivery), µs.
    gaps: Vec<u64>,
    /// Every message delivered exactly once.
    attempts_total: u64,
    /// The attempt cut by the receiver's own timestamps (its row's `received_at` and
    /// `committed_at`, stamped when the request arrived and when its row was inserted,
    /// before the commit's fsync), µs: first_attempt_at → received_at (the sender's commit
    /// of the previous delivery, then the request on its way), received_at → committed_at
    /// (the receiver's work up to the insert), committed_at → delivered_at (the receiver's
    /// fsync, the response on its way back, the sender reading it).
    legs: [Vec<u64>; 3],
}

/// The sender's store, read by the benchmark beside the gateway (the same table and columns
/// on both backends; timestamps are RFC 3339 text on both).
enum Reader {
    Sqlite(rusqlite::Connection),
    Postgres(tokio_postgres::Client),
}

impl Reader {
    /// (delivered, held or skipped) among the queue ids `first..=last`.
    fn counts(
        &self,
        rt: &tokio::runtime::Runtime,
        first: i64,
        last: i64,
    ) -> Result<(i64, i64), String> {
        match self {
            Self::Sqlite(reader) => reader
                .query_row(
                    "SELECT count(*) FILTER (WHERE state = 'delivered'),
                            count(*) FILTER (WHERE state IN ('held', 'skipped'))
                     FROM outbound_messages WHERE id BETWEEN ?1 AND ?2",
                    [first, last],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(|e| e.to_string()),
            Self::Postgres(client) => {
                let row = rt
                    .block_on(client.query_one(
                        "SELECT count(*) FILTER (WHERE state = 'delivered'),
                                count(*) FILTER (WHERE state IN ('held', 'skipped'))
                         FROM outbound_messages WHERE id BETWEEN $1 AND $2",
                        &[&first, &last],
                    ))
                    .map_err(|e| e.to_string())?;
                Ok((row.get(0), row.get(1)))
            }
        }
    }

    /// (first_attempt_at µs, delivered_at µs, attempts) of `first..=last`, in queue order.
    fn rows(
        &self,
        rt: &tokio::runtime::Runtime,
        first: i64,
        last: i64,
    ) -> Result<Vec<(i64, i64, i64)>, String> {
        let micros = |text: &str| unix_micros(text).unwrap_or_default();
        match self {
            Self::Sqlite(reader) => {
                let mut stmt = reader
                    .prepare(
                        "SELECT first_attempt_at, delivered_at, attempts FROM outbound_messages
                         WHERE id BETWEEN ?1 AND ?2 ORDER BY id",
                    )
                    .map_err(|e| e.to_string())?;
                stmt.query_map([first, last], |r| {
                    let a: String = r.get(0)?;
                    let d: String = r.get(1)?;
                    Ok((micros(&a), micros(&d), r.get(2)?))
                })
                .map_err(|e| e.to_string())?
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())
            }
            Self::Postgres(client) => Ok(rt
                .block_on(client.query(
                    "SELECT first_attempt_at, delivered_at, attempts FROM outbound_messages
                     WHERE id BETWEEN $1 AND $2 ORDER BY id",
                    &[&first, &last],
                ))
                .map_err(|e| e.to_string())?
                .iter()
                .map(|r| {
                    let a: String = r.get(0);
                    let d: String = r.get(1);
                    (micros(&a), micros(&d), r.get(2))
                })
                .collect()),
        }
    }
}

/// (received_at µs, committed_at µs) of round `round`'s messages in the receiver's store, in
/// message order (their control IDs sort in that order).
fn receiver_stamps(path: &Path, round: usize, n: usize) -> Result<Vec<(i64, i64)>, String> {
    let db =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| e.to_string())?;
    let mut stmt = db
        .prepare(
            "SELECT received_at, committed_at FROM inbound_messages
             WHERE control_id LIKE ?1 AND status = 'committed' ORDER BY control_id",
        )
        .map_err(|e| e.to_string())?;
    let micros = |text: &str| unix_micros(text).unwrap_or_default();
    let stamps: Vec<(i64, i64)> = stmt
        .query_map([format!("SEND-{round:02}-%")], |r| {
            let received: String = r.get(0)?;
            let committed: String = r.get(1)?;
            Ok((micros(&received), micros(&committed)))
        })
        .map_err(|e| e.to_string())?
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    if stamps.len() != n {
        return Err(format!(
            "the receiver holds {} rows of round {round}, not {n}",
            stamps.len()
        ));
    }
    Ok(stamps)
}

fn run_batch(
    rt: &tokio::runtime::Runtime,
    queue: &Queue,
    (reader, receiver_db): (&Reader, &Path),
    round: usize,
    n: usize,
) -> Result<Batch, String> {
    let messages: Vec<Vec<u8>> = (0..n)
        .map(|i| message(&format!("SEND-{round:02}-{i:06}")))
        .collect();
    let t0 = Instant::now();
    let enqueued = rt
        .block_on(queue.enqueue_all(DESTINATION, messages))
        .map_err(|e| e.to_string())?;
    let first = enqueued.first().map(|e| e.id).ok_or("nothing enqueued")?;
    let last = enqueued.last().map(|e| e.id).ok_or("nothing enqueued")?;
    // Bounded: 20 ms per message (about 20× the expected time) plus 30 s.
    let deadline = t0 + Duration::from_millis(20 * n as u64) + Duration::from_secs(30);
    let wall = loop {
        let (delivered, held) = reader.counts(rt, first, last)?;
        if held > 0 {
            return Err(format!("{held} messages held or skipped"));
        }
        if delivered == i64::try_from(n).unwrap() {
            break t0.elapsed();
        }
        if Instant::now() > deadline {
            return Err(format!(
                "only {delivered} of {n} messages delivered after {:?}",
                t0.elapsed()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let rows = reader.rows(rt, first, last)?;
    if rows.len() != n {
        return Err(format!("{} delivered rows read back for {n}", rows.len()));
    }
    let us = |d: i64| u64::try_from(d.max(0)).unwrap_or(0);
    let mut batch = Batch {
        messages: n,
        steady_per_second: 0.0,
        wall,
        cycles: Vec::new(),
        attempts: Vec::new(),
        gaps: Vec::new(),
        attempts_total: rows.iter().map(|r| u64::try_from(r.2).unwrap_or(0)).sum(),
        legs: Default::default(),
    };
    let stamps = receiver_stamps(receiver_db, round, n)?;
    for (row, (received, committed)) in rows.iter().zip(&stamps).skip(1) {
        batch.legs[0].push(us(received - row.0));
        batch.legs[1].push(us(committed - received));
        batch.legs[2].push(us(row.1 - committed));
    }
    for pair in rows.windows(2) {
        let (prev, this) = (pair[0], pair[1]);
        batch.cycles.push(us(this.1 - prev.1));
        batch.gaps.push(us(this.0 - prev.1));
    }
    for row in rows.iter().skip(1) {
        batch.attempts.push(us(row.1 - row.0));
    }
    let span = rows.last().unwrap().1 - rows[0].1;
    batch.steady_per_second = if span > 0 {
        (n - 1) as f64 / (span as f64 / 1e6)
    } else {
        0.0
    };
    Ok(batch)
}

/// `rounds` rounds of `probe(round)` (while neither gateway has traffic) then one batch of
/// `n` messages, printed with `label`; stops at the first batch that fails, with its error.
fn run_rounds(
    rt: &tokio::runtime::Runtime,
    queue: &Queue,
    reader: (&Reader, &Path),
    (n, rounds): (usize, usize),
    label: &str,
    mut probe: impl FnMut(usize),
) -> (Vec<Batch>, Option<String>) {
    let mut batches = Vec::new();
    for round in 0..rounds {
        probe(round);
        match run_batch(rt, queue, reader, round, n) {
            Ok(batch) => {
                println!(
                    "{label}round {}: {} messages, {:.0} messages/s steady, {:.2} s from enqueue to the last delivery",
                    round + 1,
                    batch.messages,
                    batch.steady_per_second,
                    batch.wall.as_secs_f64()
                );
                batches.push(batch);
            }
            Err(e) => {
                println!("FAILED {label}round {}: {e}", round + 1);
                return (batches, Some(e));
            }
        }
    }
    (batches, None)
}

/// Stops both gateways; each must end cleanly.
fn stop_both(rt: &tokio::runtime::Runtime, sender: Running, receiver: Running) {
    for (name, gateway) in [("sender", sender), ("receiver", receiver)] {
        let _ = gateway.stop.send(());
        let ended = rt.block_on(gateway.task);
        assert!(
            matches!(ended, Ok(Ok(()))),
            "the {name} stopped with {ended:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The physical bound: fsync and a keep-alive TLS round trip.

/// Writes 4 KiB then `fsync`s (`File::sync_all`), again and again for `budget`: appending
/// to a new file, or overwriting its first 4 KiB. Nanoseconds.
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

/// A server that answers at once: reads the body, answers 200 with an AA ACK whose MSA-2 is
/// the message's MSH-10 (so the sender's `HttpsClient` accepts it too). Same server TLS
/// configuration as the receiving gateway.
fn start_echo(rt: &tokio::runtime::Runtime, tls: Arc<rustls::ServerConfig>) -> SocketAddr {
    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("bind the echo server");
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(tls);
    rt.spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(|request: Request<Incoming>| async move {
                    let body = request
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let ack = format!(
                        "MSH|^~\\&|TIE|DEMO-TRUST|EMS|EMS-HOST|20260101120000||ACK^O01^ACK|ACK-1|T|2.4\rMSA|AA|{}\r",
                        control_id_of(&body).unwrap_or_default()
                    );
                    let mut response = Response::new(Full::new(Bytes::from(ack)));
                    response
                        .headers_mut()
                        .insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_HL7));
                    Ok::<_, Infallible>(response)
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

/// Round trips on one keep-alive connection (opened before the clock), nanoseconds each:
/// request sent to the last byte of the response.
fn rtt_probe(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    budget: Duration,
) -> Vec<u64> {
    rt.block_on(async {
        let mut sender = connect(addr, config).await;
        let body = Bytes::from(message("RTT-PROBE"));
        let mut times = Vec::new();
        let until = Instant::now() + budget;
        while Instant::now() < until || times.len() < 5 {
            let request = Request::post(PATH)
                .header(HOST, "localhost")
                .header(CONTENT_TYPE, CONTENT_TYPE_HL7)
                .body(Full::new(body.clone()))
                .unwrap();
            let t = Instant::now();
            sender.ready().await.unwrap();
            let response = sender.send_request(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let ack = response.into_body().collect().await.unwrap().to_bytes();
            times.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
            assert!(ack.windows(7).any(|w| w == b"\rMSA|AA"));
        }
        times
    })
}

/// The sender's own `HttpsClient::send` to the echo server, one keep-alive connection
/// (opened before the clock), nanoseconds each.
fn client_probe(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    budget: Duration,
) -> Vec<u64> {
    use hl7gw_runtime::client::{HttpsClient, Outgoing};
    let url = format!("https://localhost:{}{PATH}", addr.port());
    let mut client = HttpsClient::new(&url, config, Duration::from_secs(10)).unwrap();
    let raw = message("CLIENT-PROBE");
    let outgoing = Outgoing {
        raw: &raw,
        control_id: "CLIENT-PROBE",
        charset: hl7gw_runtime::hl7::Charset::Utf8,
    };
    rt.block_on(async {
        let warm = client.send(&outgoing).await;
        assert!(warm.is_accepted(), "{warm}");
        let mut times = Vec::new();
        let until = Instant::now() + budget;
        while Instant::now() < until || times.len() < 5 {
            let t = Instant::now();
            let outcome = client.send(&outgoing).await;
            times.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
            assert!(outcome.is_accepted(), "{outcome}");
        }
        assert_eq!(client.connections_opened(), 1, "the probe reconnected");
        times
    })
}

/// `Queue::enqueue` of one message after the other on a store of its own: one sender-store
/// commit each (the sequencer's delivery-and-next commit is of the same kind on the same
/// table), nanoseconds.
fn commit_probe(
    rt: &tokio::runtime::Runtime,
    queue: &Queue,
    round: usize,
    budget: Duration,
) -> Vec<u64> {
    rt.block_on(async {
        let mut times = Vec::new();
        let until = Instant::now() + budget;
        while Instant::now() < until || times.len() < 5 {
            let raw = message(&format!("PROBE-{round:02}-{:06}", times.len()));
            let t = Instant::now();
            let done = queue.enqueue("probe", raw).await.unwrap();
            times.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
            assert!(done.created);
        }
        times
    })
}

// ---------------------------------------------------------------------------------------------
// The PostgreSQL column.

/// One small row (the message) inserted in its own transaction (autocommit, a prepared
/// statement, as the store's pool uses them), again and again: one PostgreSQL commit round
/// trip each, on the server the sender's store uses. Nanoseconds.
fn pg_commit_probe(
    rt: &tokio::runtime::Runtime,
    client: &tokio_postgres::Client,
    budget: Duration,
) -> Vec<u64> {
    rt.block_on(async {
        let body = message("PG-PROBE");
        let insert = client
            .prepare("INSERT INTO bench_rows (raw) VALUES ($1)")
            .await
            .unwrap();
        let mut times = Vec::new();
        let until = Instant::now() + budget;
        while Instant::now() < until || times.len() < 5 {
            let t = Instant::now();
            let inserted = client.execute(&insert, &[&body.as_slice()]).await.unwrap();
            times.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
            assert_eq!(inserted, 1);
        }
        times
    })
}

/// The strict stream again with the sender's store on a database of the private cluster,
/// started with `fsync` and `synchronous_commit` at PostgreSQL's defaults (on, unlike the
/// test suites' clusters), so that each commit is durable. The receiver stays on
/// SQLite: it stands in for the Trust's engine, whatever store the sender has. The bound
/// takes one PostgreSQL commit round trip of a small row instead of the sender's fsync:
/// 1 / (PostgreSQL commit + appending fsync + RTT), all measured in each round of this
/// column while neither gateway has traffic.
fn postgres_column(
    rt: &tokio::runtime::Runtime,
    server: &TestPostgres,
    data: &Path,
    (n, rounds, budget): (usize, usize, Duration),
    client_config: &Arc<ClientConfig>,
    echo: SocketAddr,
) -> Result<(), String> {
    let dir = data.join("postgres");
    std::fs::create_dir_all(&dir).unwrap();
    let receiver = start_receiver(rt, &dir);
    let url = format!("https://localhost:{}{PATH}", receiver.addr.port());
    let db = ChildStore::create(server, "sender", &dir, 10_000);
    let sender = start_sender(rt, &dir, &url, Some(&db));
    // The probe's table, and `Queue::enqueue`'s store, in databases of their own.
    let rows = ChildStore::create(server, "rows", &dir, 10_000);
    server.psql(
        &rows.dbname,
        "CREATE TABLE bench_rows (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, raw BYTEA NOT NULL)",
    );
    let rows_client = rt.block_on(pg_connect(&rows));
    let durability = rt.block_on(require_durable(&rows_client));
    println!();
    println!("## PostgreSQL column");
    println!(
        "receiver {} (SQLite store {}); sender → {url} (store: database {} on {}:{}); {}",
        receiver.addr,
        receiver.store.display(),
        db.dbname,
        db.host,
        db.port,
        durability.as_ref().unwrap_or_else(|e| e)
    );
    durability?;
    let queue = Queue::new(db.open());
    let reader = Reader::Postgres(rt.block_on(pg_connect(&db)));
    let probe_queue = Queue::new(ChildStore::create(server, "probe", &dir, 10_000).open());

    let mut probes: [Vec<u64>; 4] = Default::default();
    let receiver_db = receiver.store.clone();
    let (batches, failed) = run_rounds(
        rt,
        &queue,
        (&reader, &receiver_db),
        (n, rounds),
        "PostgreSQL ",
        |round| {
            probes[0].extend(fsync_probe(&dir, budget, true));
            probes[1].extend(rtt_probe(rt, echo, client_config.clone(), budget));
            probes[2].extend(pg_commit_probe(rt, &rows_client, budget));
            probes[3].extend(commit_probe(rt, &probe_queue, round, budget));
        },
    );
    let load_after = loadavg();
    let receiver_store = receiver.store.clone();
    stop_both(rt, sender, receiver);
    let delivered: usize = batches.iter().map(|b| b.messages).sum();
    let attempts: u64 = batches.iter().map(|b| b.attempts_total).sum();
    let stored = Store::open(&receiver_store)
        .unwrap()
        .blocking()
        .inbox_pending()
        .unwrap();
    println!(
        "{delivered} messages delivered in {attempts} attempts; the receiver committed {stored} rows"
    );
    if let Some(e) = failed {
        return Err(e);
    }
    if stored != delivered as u64 {
        return Err(format!(
            "the receiver holds {stored} rows for {delivered} delivered messages"
        ));
    }
    let stream = Stream::from(&batches);
    let [append, rtt, pg_commit, commit] = probes.each_ref().map(|t| Timings::from(t, 1));
    println!();
    println!("| operation | count | mean | p50 | p99 |\n|---|---:|---:|---:|---:|");
    print_timings("write 4 KiB + fsync, appending (the receiver's)", &append);
    print_timings(
        "keep-alive TLS round trip, hyper client → echo server",
        &rtt,
    );
    print_timings(
        "PostgreSQL: INSERT of one small row, own transaction (one commit round trip)",
        &pg_commit,
    );
    print_timings(
        "Queue::enqueue of one message on PostgreSQL (one commit)",
        &commit,
    );
    stream.print_timings();

    let secs = |d: Duration| d.as_secs_f64();
    let bound_mean = 1.0 / (secs(pg_commit.mean) + secs(append.mean) + secs(rtt.mean));
    let bound_p50 = 1.0 / (secs(pg_commit.p50) + secs(append.p50) + secs(rtt.p50));
    println!();
    println!("| figure | per message | messages/s |\n|---|---:|---:|");
    stream.print_achieved(delivered);
    rate_row(
        "**bound, means** = 1 / (PostgreSQL commit round trip + appending fsync receiver + RTT)",
        bound_mean,
    );
    rate_row("bound, p50s: the same with p50s", bound_p50);
    println!();
    println!(
        "PostgreSQL ratio achieved / bound (means) = {:.3} (1/{:.2}): {} per message against {} = {} commit + {} fsync + {} RTT (means)",
        stream.achieved / bound_mean,
        bound_mean / stream.achieved,
        show(Duration::from_secs_f64(1.0 / stream.achieved)),
        show(Duration::from_secs_f64(1.0 / bound_mean)),
        show(pg_commit.mean),
        show(append.mean),
        show(rtt.mean),
    );
    println!(
        "PostgreSQL typical message / bound (p50s) = {:.3}; cycle p99 / the bound's time per message (p50s) = {:.2}×",
        stream.typical / bound_p50,
        secs(stream.cycle.p99) * bound_p50,
    );
    let per_round: Vec<String> = batches
        .iter()
        .map(|b| format!("{:.0}", b.steady_per_second))
        .collect();
    println!("PostgreSQL messages/s per round: {}", per_round.join(", "));
    println!("load average after the PostgreSQL column: {load_after}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Output.

/// The strict stream's figures over a column's batches.
struct Stream {
    cycle: Timings,
    attempt: Timings,
    gap: Timings,
    /// See [`Batch::legs`].
    legs: [Timings; 3],
    /// Steady rate: messages counted (N − 1 per batch) over their spans, a mean.
    achieved: f64,
    /// 1 / the cycle's p50.
    typical: f64,
    /// Seconds from the enqueues to the last deliveries, summed.
    wall: f64,
}

impl Stream {
    fn from(batches: &[Batch]) -> Self {
        let cycles: Vec<u64> = batches.iter().flat_map(|b| b.cycles.clone()).collect();
        let attempts: Vec<u64> = batches.iter().flat_map(|b| b.attempts.clone()).collect();
        let gaps: Vec<u64> = batches.iter().flat_map(|b| b.gaps.clone()).collect();
        let cycle = Timings::from(&cycles, 1000);
        let span_s: f64 = batches
            .iter()
            .map(|b| (b.messages - 1) as f64 / b.steady_per_second)
            .sum();
        let counted: usize = batches.iter().map(|b| b.messages - 1).sum();
        Self {
            achieved: counted as f64 / span_s,
            typical: 1.0 / cycle.p50.as_secs_f64(),
            cycle,
            attempt: Timings::from(&attempts, 1000),
            gap: Timings::from(&gaps, 1000),
            legs: std::array::from_fn(|i| {
                let leg: Vec<u64> = batches.iter().flat_map(|b| b.legs[i].clone()).collect();
                Timings::from(&leg, 1000)
            }),
            wall: batches.iter().map(|b| b.wall.as_secs_f64()).sum(),
        }
    }

    fn print_timings(&self) {
        print_timings(
            "strict stream: one message, delivered_at to delivered_at",
            &self.cycle,
        );
        print_timings(
            "  of which first_attempt_at → delivered_at (send, receiver, ACK, the delivery commit)",
            &self.attempt,
        );
        for (label, leg) in [
            "    first_attempt_at → the receiver's received_at (the sender's commit of the previous delivery, then the request)",
            "    received_at → the receiver's insert (parse, map, ACK, duplicate lookup, its writer taking the row)",
            "    the receiver's insert → delivered_at (its commit's fsync, the response, the sender reading the ACK)",
        ]
        .iter()
        .zip(&self.legs)
        {
            print_timings(label, leg);
        }
        print_timings(
            "  of which delivered_at → next first_attempt_at (0 when one commit delivers and begins the next)",
            &self.gap,
        );
    }

    fn print_achieved(&self, delivered: usize) {
        rate_row(
            "**achieved**: strict stream, steady (N − 1 over first to last delivered_at): a mean",
            self.achieved,
        );
        rate_row(
            "achieved, typical message (1 / p50 of the cycle)",
            self.typical,
        );
        rate_row(
            "achieved, wall clock from enqueue to the last delivery seen (incl. up to 1 s sequencer poll)",
            delivered as f64 / self.wall,
        );
    }
}

fn rate_row(label: &str, per_second: f64) {
    println!(
        "| {label} | {} | {per_second:.0} |",
        show(Duration::from_secs_f64(1.0 / per_second)),
    );
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Count, mean, p50, p99 of durations in `unit` nanoseconds (1 or 1000).
struct Timings {
    count: usize,
    mean: Duration,
    p50: Duration,
    p99: Duration,
}

impl Timings {
    fn from(values: &[u64], unit_ns: u64) -> Self {
        let mut v: Vec<u64> = values.iter().map(|x| x * unit_ns).collect();
        v.sort_unstable();
        let total: u64 = v.iter().sum();
        Self {
            count: v.len(),
            mean: Duration::from_nanos(total / (v.len().max(1) as u64)),
            p50: Duration::from_nanos(percentile(&v, 0.50)),
            p99: Duration::from_nanos(percentile(&v, 0.99)),
        }
    }
}

fn show(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

fn print_timings(label: &str, t: &Timings) {
    println!(
        "| {label} | {} | {} | {} | {} |",
        t.count,
        show(t.mean),
        show(t.p50),
        show(t.p99)
    );
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

fn main() {
    let mode = Mode::from_args();
    let (n, rounds, budget) = sizes(mode);
    let cores = std::thread::available_parallelism().map_or(1, |x| x.get());
    println!("sender benchmark ({mode:?} mode)");
    println!(
        "machine: {cores} cores ({}), load average before: {}; both gateways, the probes and the echo server share these cores",
        cpu_model(),
        loadavg()
    );
    println!(
        "{rounds} rounds; in each: fsync and round-trip probes ({} s each), then one batch of {n} messages through the strict stream",
        budget.as_secs_f64()
    );

    let data = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .thread_name("gateways")
        .enable_all()
        .build()
        .unwrap();

    let receiver = start_receiver(&rt, data.path());
    let url = format!("https://localhost:{}{PATH}", receiver.addr.port());
    let sender = start_sender(&rt, data.path(), &url, None);
    println!(
        "receiver {} (store {}); sender → {url} (store {})",
        receiver.addr,
        receiver.store.display(),
        sender.store.display()
    );

    // A second handle on the sender's store (as a `queue` command opens it) to enqueue and
    // read the stream; a separate store for the commit probe.
    let queue = Queue::new(Store::open(&sender.store).unwrap());
    let reader = rusqlite::Connection::open(&sender.store).unwrap();
    reader.busy_timeout(Duration::from_secs(5)).unwrap();
    let reader = Reader::Sqlite(reader);
    let probe_queue = Queue::new(Store::open(data.path().join("probe.sqlite")).unwrap());

    // The physical bound's round trip uses the same TLS as the two gateways.
    let client_config = hl7gw_runtime::client::client_config(
        &specs().join("certs/test/client.crt"),
        &specs().join("certs/test/client.key"),
        &specs().join("certs/test/trust-ca.crt"),
    )
    .unwrap();
    let certs = data.path().join("receiver-certs");
    let server_config = hl7gw_runtime::tls::server_config(
        &certs.join("server.crt"),
        &certs.join("server.key"),
        &certs.join("trust-ca.crt"),
    )
    .unwrap();
    let echo = start_echo(&rt, server_config);

    let mut probes: [Vec<u64>; 5] = Default::default();
    let receiver_db = receiver.store.clone();
    let (batches, mut failed) = run_rounds(
        &rt,
        &queue,
        (&reader, &receiver_db),
        (n, rounds),
        "",
        |round| {
            probes[0].extend(fsync_probe(data.path(), budget, false));
            probes[1].extend(fsync_probe(data.path(), budget, true));
            probes[2].extend(rtt_probe(&rt, echo, client_config.clone(), budget));
            probes[3].extend(client_probe(&rt, echo, client_config.clone(), budget));
            probes[4].extend(commit_probe(&rt, &probe_queue, round, budget));
        },
    );
    let load_after = loadavg();
    let (receiver_store, sender_store) = (receiver.store.clone(), sender.store.clone());
    stop_both(&rt, sender, receiver);

    // Durable on both sides: the receiver's store holds one row per delivered message, the
    // sender's marks each delivered, both with synchronous=FULL.
    let delivered: usize = batches.iter().map(|b| b.messages).sum();
    let attempts: u64 = batches.iter().map(|b| b.attempts_total).sum();
    let receiver_store = Store::open(&receiver_store).unwrap();
    let stored = receiver_store.blocking().inbox_pending().unwrap();
    let rp = receiver_store.blocking().pragmas().unwrap();
    let sp = Store::open(&sender_store)
        .unwrap()
        .blocking()
        .pragmas()
        .unwrap();
    println!(
        "stores: sender journal_mode={}, synchronous={}; receiver journal_mode={}, synchronous={} (2 = FULL); \
         {delivered} messages delivered in {attempts} attempts; the receiver committed {stored} rows",
        sp.journal_mode, sp.synchronous, rp.journal_mode, rp.synchronous
    );
    if stored != delivered as u64 && failed.is_none() {
        failed = Some(format!(
            "the receiver holds {stored} rows for {delivered} delivered messages"
        ));
    }
    if batches.is_empty() {
        println!("FAILED: no batch completed: {failed:?}");
        std::process::exit(1);
    }

    let [overwrite, append, rtt, client, commit] = probes.each_ref().map(|t| Timings::from(t, 1));
    let stream = Stream::from(&batches);
    let (achieved, typical, cycle) = (stream.achieved, stream.typical, &stream.cycle);

    println!();
    println!("| operation | count | mean | p50 | p99 |\n|---|---:|---:|---:|---:|");
    print_timings("write 4 KiB + fsync, overwriting", &overwrite);
    print_timings("write 4 KiB + fsync, appending", &append);
    print_timings(
        "keep-alive TLS round trip, hyper client → echo server",
        &rtt,
    );
    print_timings(
        "keep-alive TLS round trip, sender's HttpsClient::send → echo server",
        &client,
    );
    print_timings("Queue::enqueue of one message (one commit)", &commit);
    stream.print_timings();

    let secs = |d: Duration| d.as_secs_f64();
    // One fsync at each end and one round trip. The fsync is the appending one: a commit
    // appends to SQLite's WAL, and that is the kind the stores really do. Means are compared
    // with means (the achieved rate is a mean: messages over time, stalls included), p50s
    // with p50s; the two are never mixed.
    let bound_mean = 1.0 / (2.0 * secs(append.mean) + secs(rtt.mean));
    let bound_p50 = 1.0 / (2.0 * secs(append.p50) + secs(rtt.p50));
    let receiver_only = 1.0 / (secs(append.mean) + secs(rtt.mean));
    println!();
    println!("| figure | per message | messages/s |\n|---|---:|---:|");
    stream.print_achieved(delivered);
    rate_row(
        "**bound, means** = 1 / (appending fsync sender + appending fsync receiver + RTT)",
        bound_mean,
    );
    rate_row("bound, p50s: the same with p50s", bound_p50);
    rate_row(
        "receiver's fsync + RTT only (sender persists nothing per delivery), means",
        receiver_only,
    );
    println!();
    println!(
        "ratio achieved / bound (means) = {:.3} (1/{:.2}): {} per message against {} = {} fsync + {} fsync + {} RTT (means)",
        achieved / bound_mean,
        bound_mean / achieved,
        show(Duration::from_secs_f64(1.0 / achieved)),
        show(Duration::from_secs_f64(1.0 / bound_mean)),
        show(append.mean),
        show(append.mean),
        show(rtt.mean),
    );
    println!(
        "typical message / bound (p50s) = {:.3}; cycle p99 / the bound's time per message (p50s) = {:.2}×",
        typical / bound_p50,
        secs(cycle.p99) * bound_p50,
    );
    let per_round: Vec<String> = batches
        .iter()
        .map(|b| format!("{:.0}", b.steady_per_second))
        .collect();
    println!("messages/s per round: {}", per_round.join(", "));
    println!(
        "load average after: {load_after}; directory {}",
        data.path().display()
    );

    // The PostgreSQL column, after the SQLite one, on the same runtime, echo server and TLS.
    match TestPostgres::start_durable("sender benchmark, PostgreSQL column") {
        Some(server) => {
            if let Err(e) = postgres_column(
                &rt,
                &server,
                data.path(),
                (n, rounds, budget),
                &client_config,
                echo,
            ) && failed.is_none()
            {
                failed = Some(format!("PostgreSQL column: {e}"));
            }
        }
        None => println!("PostgreSQL column: skipped (PostgreSQL is not installed)"),
    }

    rt.shutdown_timeout(Duration::from_secs(2));
    if let Some(e) = failed {
        println!("FAILED: {e}");
        std::process::exit(1);
    }
}
