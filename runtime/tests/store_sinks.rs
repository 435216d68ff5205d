//! The durable side of the receiver: the SQLite store (pragmas, what the rows hold on disk,
//! crash safety), the inbox API, the webhook and MLLP sinks, and the deliver-then-commit
//! order. The commit protocol, duplicates, concurrent commits and retention, which both
//! store backends share, are tested against each in `store_backends.rs`. Every server is started here on 127.0.0.1 and every wait is
//! bounded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use hl7gw_runtime::dedup::{DedupKey, InFlight};
use hl7gw_runtime::hl7::{
    AckCode, AckError, AckRequest, Message, Path as Hl7Path, Severity, build_ack, read_ack,
};
use hl7gw_runtime::mllp;
use hl7gw_runtime::sink::inbox::{InboxError, InboxServer};
use hl7gw_runtime::sink::{
    AckBuilder, DeliveryError, DeliveryItem, Disposition, GatewayAck, Inbound, MllpSink, Sink,
    SinkError, SinkKind, SinkOutcome, WebhookSink, deliver_and_commit,
};
use hl7gw_runtime::store::{CommitResult, InboundRecord, InboundStatus, Store, StoreError};
use hl7gw_tests::wire::Http;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const LIMIT: Duration = Duration::from_secs(30);

async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("test step finished within 30 s")
}

fn raw_message(app: &str, control_id: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|{app}|RX1|HL7GW|EMS|20240501120000||ADT^A28^ADT_A05|{control_id}|P|2.4\r\
         EVN|A28|20240501120000\r\
         PID|1||123456^^^RX1^MR~9434765919^^^NHS^NH||SMITH^JOHN||19700101|M\r"
    )
    .into_bytes()
}

fn ack_for(raw: &[u8], code: AckCode) -> Vec<u8> {
    ack_with(raw, code, "ACK0001", &[])
}

fn ack_with(raw: &[u8], code: AckCode, control_id: &str, errors: &[AckError]) -> Vec<u8> {
    let message = Message::parse(raw).expect("test message parses");
    build_ack(
        &message,
        &AckRequest {
            code,
            control_id,
            timestamp: "20240501120001+0000",
            errors,
        },
    )
    .expect("ACK builds")
}

/// The engine's refusal: table value not found at PID-8.
fn engine_error() -> AckError {
    AckError {
        code: 103,
        severity: Severity::Error,
        location: Some(Hl7Path::parse("PID-8").unwrap().nominal_location()),
        message: "sex code not in the engine's table".into(),
    }
}

fn record_at(
    app: &str,
    control_id: &str,
    code: AckCode,
    sink: SinkKind,
    received_at: SystemTime,
) -> InboundRecord {
    let raw = raw_message(app, control_id);
    InboundRecord {
        received_at,
        peer_ip: Some(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))),
        peer_subject: Some("CN=rx1-test.example.nhs.uk,O=RX1".into()),
        key: DedupKey::new(app, "RX1", control_id),
        message_type: "ADT^A28".into(),
        ack: ack_for(&raw, code),
        raw: raw.into(),
        record: code
            .is_accept()
            .then(|| serde_json::json!({ "nhs_number": "9434765919", "family": "SMITH" })),
        ack_code: code,
        sink,
    }
}

fn record(app: &str, control_id: &str, code: AckCode, sink: SinkKind) -> InboundRecord {
    record_at(app, control_id, code, sink, SystemTime::now())
}

fn open(dir: &Path) -> Store {
    Store::open(dir.join("store").join("gateway-test.sqlite")).expect("store opens")
}

// ---------------------------------------------------------------------------------------
// Store
// ---------------------------------------------------------------------------------------

#[test]
fn pragmas_are_wal_and_full_and_the_schema_is_current() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let pragmas = store.blocking().pragmas().unwrap();
    assert_eq!(pragmas.journal_mode, "wal");
    assert_eq!(pragmas.synchronous, 2, "synchronous=FULL");
    assert_eq!(pragmas.busy_timeout_ms, 5000);
    assert_eq!(pragmas.foreign_keys, 1);
    assert_eq!(
        pragmas.schema_version,
        hl7gw_runtime::store::schema::latest_version()
    );

    // A second connection (another process would see the same) reads the same settings
    // from the file: WAL is persistent.
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let app_id: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .unwrap();
    assert_eq!(app_id, hl7gw_runtime::store::APPLICATION_ID);
    let migrations: i64 = conn
        .query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
        .unwrap();
    assert_eq!(migrations, hl7gw_runtime::store::schema::latest_version());

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(store.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the store holds patient data");
    }

    // Reopening applies nothing and keeps the rows.
    let id = match store
        .blocking()
        .commit_inbound(&record(
            "EPIC",
            "MSG1",
            AckCode::ApplicationAccept,
            SinkKind::Inbox,
        ))
        .unwrap()
    {
        CommitResult::Committed(id) => id,
        other => panic!("expected a commit, got {other:?}"),
    };
    drop(store);
    let store = open(dir.path());
    assert!(store.blocking().inbound(id).unwrap().is_some());
}

#[tokio::test]
async fn the_async_api_reports_the_same_pragmas() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let pragmas = bounded(store.pragmas()).await.unwrap();
    assert_eq!(
        (pragmas.journal_mode.as_str(), pragmas.synchronous),
        ("wal", 2)
    );
}

#[test]
fn refuses_foreign_and_newer_databases() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("other.sqlite");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE patients (id INTEGER PRIMARY KEY);")
        .unwrap();
    assert!(matches!(
        Store::open(&foreign),
        Err(StoreError::ForeignDatabase { found: 0, .. })
    ));

    let store = open(dir.path());
    let path = store.path().to_path_buf();
    drop(store);
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "INSERT INTO schema_migrations (version, description, applied_at) VALUES (999, 'future', 'x')",
            [],
        )
        .unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found: 999, .. }),
        "{err}"
    );
}

#[test]
fn commit_then_find_duplicate_returns_the_original_ack_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let first = record(
        "EPIC",
        "MSG0001",
        AckCode::ApplicationAccept,
        SinkKind::Inbox,
    );
    let id = match store.blocking().commit_inbound(&first).unwrap() {
        CommitResult::Committed(id) => id,
        other => panic!("expected a commit, got {other:?}"),
    };
    let found = store
        .blocking()
        .find_duplicate(&first.key)
        .unwrap()
        .expect("committed key is found");
    assert_eq!(found.id, id);
    assert_eq!(found.ack, first.ack);
    assert_eq!(found.ack_code, AckCode::ApplicationAccept);

    // The retry: same key, a freshly built (different) ACK; the store keeps and returns the
    // original bytes and writes nothing.
    let mut retry = first.clone();
    retry.ack = b"MSH|^~\\&|other ack\rMSA|AA|MSG0001\r".to_vec();
    match store.blocking().commit_inbound(&retry).unwrap() {
        CommitResult::Duplicate(original) => {
            assert_eq!(original.id, id);
            assert_eq!(original.ack, first.ack);
        }
        other => panic!("expected a duplicate, got {other:?}"),
    }

    // Different application, facility or control ID: not duplicates.
    assert!(
        store
            .blocking()
            .find_duplicate(&DedupKey::new("EPIC", "RX2", "MSG0001"))
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .blocking()
            .find_duplicate(&DedupKey::new("CERNER", "RX1", "MSG0001"))
            .unwrap()
            .is_none()
    );

    // The audit row is complete.
    let row = store.blocking().inbound(id).unwrap().expect("row");
    assert_eq!(row.raw, first.raw);
    assert_eq!(row.ack, first.ack);
    assert_eq!(row.status, InboundStatus::Committed);
    assert_eq!(row.peer_ip.as_deref(), Some("10.1.2.3"));
    assert_eq!(
        row.peer_subject.as_deref(),
        Some("CN=rx1-test.example.nhs.uk,O=RX1")
    );
    assert_eq!(row.record, first.record);
    assert_eq!(row.sink, "inbox");
    // The API's instants are typed; on disk they stay fixed-width UTC RFC 3339 text, so
    // files written before stay readable and text order stays time order.
    let (received_at, committed_at): (String, String) = rusqlite::Connection::open(store.path())
        .unwrap()
        .query_row(
            "SELECT received_at, committed_at FROM inbound_messages WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        hl7gw_runtime::store::timestamp::format(row.received_at),
        received_at
    );
    assert_eq!(received_at.len(), "2024-05-01T12:00:00.000000Z".len());
    assert!(received_at.ends_with('Z') && committed_at.ends_with('Z'));
}

const CRASH_CHILD: &str = "HL7GW_STORE_CRASH_CHILD";

/// Not a test on its own: the child process of `a_commit_survives_sigkill`. Without the
/// environment variable it returns at once.
#[test]
fn crash_child_helper() {
    let Ok(path) = std::env::var(CRASH_CHILD) else {
        return;
    };
    let store = Store::open(&path).unwrap();
    let mut out = std::io::stdout().lock();
    for n in 0..10_000 {
        let rec = record(
            "EPIC",
            &format!("CRASH{n}"),
            AckCode::ApplicationAccept,
            SinkKind::Inbox,
        );
        if let CommitResult::Committed(id) = store.blocking().commit_inbound(&rec).unwrap() {
            // Printed only after commit_inbound returned: the receiver would answer AA now.
            writeln!(out, "COMMITTED {id} CRASH{n}").unwrap();
            out.flush().unwrap();
        }
    }
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_commit_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.sqlite");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_CHILD, &path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("COMMITTED ") {
                let mut parts = rest.split(' ');
                let id: i64 = parts.next().unwrap().parse().unwrap();
                let control_id = parts.next().unwrap().to_owned();
                if tx.send((id, control_id)).is_err() {
                    break;
                }
            }
        }
    });
    let mut acknowledged = Vec::new();
    while acknowledged.len() < 25 {
        match rx.recv_timeout(LIMIT) {
            Ok(entry) => acknowledged.push(entry),
            Err(e) => {
                let _ = child.kill();
                panic!("child stopped reporting commits: {e}");
            }
        }
    }
    // SIGKILL while the child keeps committing: no chance to flush or close anything.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    // Whatever the child printed before the kill landed is committed too.
    while let Ok(entry) = rx.recv_timeout(Duration::from_millis(100)) {
        acknowledged.push(entry);
    }
    let _ = reader.join();

    let store = Store::open(&path).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    for (id, control_id) in &acknowledged {
        let found = store
            .blocking()
            .find_duplicate(&DedupKey::new("EPIC", "RX1", control_id.as_str()))
            .unwrap()
            .unwrap_or_else(|| panic!("{control_id} was acknowledged but is gone"));
        assert_eq!(found.id, *id);
        let row = store.blocking().inbound(*id).unwrap().unwrap();
        assert_eq!(row.raw, raw_message("EPIC", control_id));
    }
}

// ---------------------------------------------------------------------------------------
// Inbox API
// ---------------------------------------------------------------------------------------

/// One HTTP/1.1 request over a fresh connection; returns the status, the head and the body.
async fn http(addr: SocketAddr, request: String) -> (u16, String, String) {
    bounded(async move {
        let mut client = Http::new(tokio::net::TcpStream::connect(addr).await.unwrap());
        client.send(request.as_bytes()).await.unwrap();
        let response = client.read_response().await.unwrap();
        (response.status, response.head(), response.body_text())
    })
    .await
}

fn get(addr: SocketAddr, path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
}

fn post(addr: SocketAddr, path: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_api_lists_fetches_and_acknowledges() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut ids = Vec::new();
    for n in 1..=3 {
        let rec = record(
            "EPIC",
            &format!("IN{n}"),
            AckCode::ApplicationAccept,
            SinkKind::Inbox,
        );
        let CommitResult::Committed(id) = store.commit_inbound(rec).await.unwrap() else {
            panic!("commit");
        };
        ids.push(id);
    }
    // Not inbox records: another sink's row and an AE audit row.
    let webhook_row = match store
        .commit_inbound(record(
            "EPIC",
            "W1",
            AckCode::ApplicationAccept,
            SinkKind::Webhook,
        ))
        .await
        .unwrap()
    {
        CommitResult::Committed(id) => id,
        other => panic!("{other:?}"),
    };
    store
        .commit_inbound(record(
            "EPIC",
            "E1",
            AckCode::ApplicationError,
            SinkKind::Inbox,
        ))
        .await
        .unwrap();

    let server = InboxServer::bind("127.0.0.1:0".parse().unwrap(), store.clone())
        .await
        .unwrap();
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(async {
        let _ = stopped.await;
    }));

    // List from the start.
    let (status, head, body) = http(addr, get(addr, "/inbox")).await;
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json")
    );
    let list = json(&body);
    let listed: Vec<i64> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, ids);
    assert_eq!(list["next_after"], ids[2]);
    let first = &list["items"][0];
    assert_eq!(first["message_type"], "ADT^A28");
    assert_eq!(first["control_id"], "IN1");
    assert_eq!(first["sending_application"], "EPIC");
    assert_eq!(first["record"]["nhs_number"], "9434765919");
    assert!(first["acknowledged_at"].is_null());

    // After a cursor, with a limit.
    let (_, _, body) = http(addr, get(addr, &format!("/inbox?after={}&limit=1", ids[0]))).await;
    let page = json(&body);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["id"], ids[1]);
    assert_eq!(page["next_after"], ids[1]);
    let (_, _, body) = http(addr, get(addr, &format!("/inbox?after={}", ids[2]))).await;
    let empty = json(&body);
    assert_eq!(empty["items"].as_array().unwrap().len(), 0);
    assert_eq!(
        empty["next_after"], ids[2],
        "an empty page keeps the cursor"
    );

    // Fetch one, with the raw message.
    let (status, _, body) = http(addr, get(addr, &format!("/inbox/{}", ids[1]))).await;
    assert_eq!(status, 200);
    let entry = json(&body);
    assert_eq!(entry["id"], ids[1]);
    let raw = base64::engine::general_purpose::STANDARD
        .decode(entry["raw_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(raw, raw_message("EPIC", "IN2"));

    // Acknowledge: idempotent, the first time is kept.
    let (status, _, body) = http(addr, post(addr, &format!("/inbox/{}/ack", ids[0]))).await;
    assert_eq!(status, 200);
    let acked = json(&body);
    assert_eq!(acked["id"], ids[0]);
    let at = acked["acknowledged_at"].as_str().unwrap().to_owned();
    let (status, _, body) = http(addr, post(addr, &format!("/inbox/{}/ack", ids[0]))).await;
    assert_eq!(status, 200);
    assert_eq!(json(&body)["acknowledged_at"], at.as_str());
    assert_eq!(store.inbox_pending().await.unwrap(), 2);

    // Acknowledged rows leave the default list, and come back on request.
    let (_, _, body) = http(addr, get(addr, "/inbox")).await;
    assert_eq!(json(&body)["items"].as_array().unwrap().len(), 2);
    let (_, _, body) = http(addr, get(addr, "/inbox?include_acknowledged=true")).await;
    let all = json(&body);
    assert_eq!(all["items"].as_array().unwrap().len(), 3);
    assert_eq!(all["items"][0]["acknowledged_at"], at.as_str());
    // A fetch still works after the ack.
    let (status, _, _) = http(addr, get(addr, &format!("/inbox/{}", ids[0]))).await;
    assert_eq!(status, 200);

    // Unknown ids, other sinks' rows, bad paths.
    for path in [
        "/inbox/999999",
        &format!("/inbox/{webhook_row}"),
        "/inbox/abc",
        "/nope",
    ] {
        let (status, _, body) = http(addr, get(addr, path)).await;
        assert_eq!(status, 404, "{path}");
        assert!(json(&body)["error"].is_string());
    }
    let (status, _, _) = http(addr, post(addr, "/inbox/999999/ack")).await;
    assert_eq!(status, 404);
    let (status, _, _) = http(addr, post(addr, &format!("/inbox/{webhook_row}/ack"))).await;
    assert_eq!(status, 404);

    // Wrong methods and bad queries.
    let (status, head, _) = http(addr, post(addr, "/inbox")).await;
    assert_eq!(status, 405);
    assert!(head.to_ascii_lowercase().contains("allow: get"));
    let (status, _, _) = http(addr, get(addr, &format!("/inbox/{}/ack", ids[0]))).await;
    assert_eq!(status, 405);
    for query in [
        "limit=0",
        "limit=5000",
        "after=-3",
        "after=x",
        "include_acknowledged=maybe",
    ] {
        let (status, _, _) = http(addr, get(addr, &format!("/inbox?{query}"))).await;
        assert_eq!(status, 400, "{query}");
    }

    // Browsers are kept out: a web page's request (Origin) and DNS rebinding (Host).
    let (status, _, _) = http(
        addr,
        format!(
            "POST /inbox/{}/ack HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://evil.example\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n",
            ids[1]
        ),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, _) = http(
        addr,
        "GET /inbox HTTP/1.1\r\nHost: evil.example:8080\r\nConnection: close\r\n\r\n".into(),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, _) = http(
        addr,
        format!(
            "GET /inbox HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n",
            addr.port()
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        store.inbox_pending().await.unwrap(),
        2,
        "the refused ack changed nothing"
    );

    // Shutdown ends the server.
    stop.send(()).unwrap();
    bounded(serving).await.unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn inbox_api_refuses_non_loopback_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for addr in ["0.0.0.0:0", "[::]:0", "192.0.2.10:8080", "10.0.0.1:0"] {
        let addr: SocketAddr = addr.parse().unwrap();
        let err = InboxServer::bind(addr, store.clone()).await.unwrap_err();
        assert!(matches!(err, InboxError::NotLoopback(a) if a.addr == addr));
        assert!(err.to_string().contains("loopback"), "{err}");
    }
    let err = hl7gw_runtime::sink::inbox::serve(
        "0.0.0.0:0".parse().unwrap(),
        store.clone(),
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, InboxError::NotLoopback(_)));
    // Any 127.0.0.0/8 address is loopback.
    let server = InboxServer::bind("127.0.0.1:0".parse().unwrap(), store)
        .await
        .unwrap();
    assert!(server.local_addr().ip().is_loopback());
}

// ---------------------------------------------------------------------------------------
// Webhook sink
// ---------------------------------------------------------------------------------------

struct WebhookServer {
    addr: SocketAddr,
    bodies: mpsc::UnboundedReceiver<(String, serde_json::Value)>,
    hits: Arc<AtomicUsize>,
}

/// A hyper server on 127.0.0.1 that answers `status` after `delay` and reports each body.
async fn webhook_server(status: StatusCode, delay: Duration) -> WebhookServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, bodies) = mpsc::unbounded_channel();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    let counter = Arc::clone(&counter);
                    async move {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let content_type = request
                            .headers()
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let body = request.into_body().collect().await?.to_bytes();
                        let value = serde_json::from_slice(&body).unwrap_or_default();
                        let _ = tx.send((content_type, value));
                        tokio::time::sleep(delay).await;
                        let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
                        *response.status_mut() = status;
                        Ok::<_, hyper::Error>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    WebhookServer { addr, bodies, hits }
}

fn item(control_id: &str) -> DeliveryItem {
    DeliveryItem {
        key: DedupKey::new("EPIC", "RX1", control_id),
        message_type: "ADT^A28".into(),
        received_at: UNIX_EPOCH + Duration::from_secs(1_714_564_800),
        raw: raw_message("EPIC", control_id).into(),
        record: Some(serde_json::json!({ "nhs_number": "9434765919" })),
    }
}

/// A port on 127.0.0.1 where nothing listens.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

/// A listener that accepts connections and never answers; keeps them open while it lives.
async fn silent_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_posts_json_and_accepts_only_2xx() {
    let mut server = webhook_server(StatusCode::NO_CONTENT, Duration::ZERO).await;
    let sink = WebhookSink::new(
        &format!("http://{}/ems/records?x=1", server.addr),
        Duration::from_secs(5),
    )
    .unwrap()
    .with_header("Authorization", "Bearer test-token")
    .unwrap();
    let outcome = bounded(sink.deliver(&item("WH1"))).await.unwrap();
    assert_eq!(outcome, SinkOutcome::Accepted);
    let (content_type, body) = bounded(server.bodies.recv()).await.unwrap();
    assert_eq!(content_type, "application/json");
    assert_eq!(
        body,
        serde_json::json!({
            "message_type": "ADT^A28",
            "sending_application": "EPIC",
            "sending_facility": "RX1",
            "control_id": "WH1",
            "received_at": "2024-05-01T12:00:00.000000Z",
            "record": { "nhs_number": "9434765919" },
        })
    );

    for status in [
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::BAD_REQUEST,
        StatusCode::FOUND,
    ] {
        let server = webhook_server(status, Duration::ZERO).await;
        let sink =
            WebhookSink::new(&format!("http://{}/", server.addr), Duration::from_secs(5)).unwrap();
        let err = bounded(sink.deliver(&item("WH2"))).await.unwrap_err();
        assert!(
            matches!(err, SinkError::Status { status: s, .. } if s == status.as_u16()),
            "{err}"
        );
        assert!(err.is_retryable());
    }
}

#[tokio::test]
async fn webhook_connection_refused_and_timeout_are_errors() {
    let addr = closed_port().await;
    let sink = WebhookSink::new(&format!("http://{addr}/hook"), Duration::from_secs(5)).unwrap();
    let err = bounded(sink.deliver(&item("WH3"))).await.unwrap_err();
    assert!(
        matches!(
            err,
            SinkError::Connect {
                sink: SinkKind::Webhook,
                ..
            }
        ),
        "{err}"
    );

    let (addr, _server) = silent_server().await;
    let sink =
        WebhookSink::new(&format!("http://{addr}/hook"), Duration::from_millis(300)).unwrap();
    let started = std::time::Instant::now();
    let err = bounded(sink.deliver(&item("WH4"))).await.unwrap_err();
    assert!(
        matches!(
            err,
            SinkError::Timeout {
                sink: SinkKind::Webhook,
                ..
            }
        ),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // A slow answer is a timeout too.
    let server = webhook_server(StatusCode::OK, Duration::from_secs(10)).await;
    let sink = WebhookSink::new(
        &format!("http://{}/", server.addr),
        Duration::from_millis(300),
    )
    .unwrap();
    let err = bounded(sink.deliver(&item("WH5"))).await.unwrap_err();
    assert!(matches!(err, SinkError::Timeout { .. }), "{err}");
}

#[test]
fn webhook_urls_are_checked() {
    for url in [
        "https://ems.local/hook",
        "ftp://x/",
        "not a url",
        "http:///path",
        "http://user:pw@host/",
    ] {
        assert!(
            WebhookSink::new(url, Duration::from_secs(1)).is_err(),
            "{url}"
        );
    }
    let sink = WebhookSink::new("http://127.0.0.1:9000", Duration::from_secs(1)).unwrap();
    assert_eq!(sink.url(), "http://127.0.0.1:9000");
    assert!(sink.with_header("Bad Header", "x").is_err());
}

// ---------------------------------------------------------------------------------------
// MLLP sink
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Engine {
    /// Answers an ACK with this code.
    Ack(AckCode),
    /// Answers an ACK for another control ID.
    WrongControlId,
    /// Answers something that is not HL7.
    Garbage,
    /// Reads the message and closes without answering.
    Close,
}

/// A local MLLP engine on 127.0.0.1; reports each message it received.
async fn mllp_engine(behaviour: Engine) -> (SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut deframer = mllp::Deframer::new(1 << 20);
                let Ok(Some(message)) = mllp::read_message(&mut stream, &mut deframer).await else {
                    return;
                };
                let _ = tx.send(message.clone());
                let answer = match behaviour {
                    // The engine's own ACK, with its own MSH-10 and LF line ends, and an
                    // ERR when it refuses: the gateway must answer its own, never these bytes.
                    Engine::Ack(code) => {
                        let errors = if code.is_accept() {
                            Vec::new()
                        } else {
                            vec![engine_error()]
                        };
                        let ack = ack_with(&message, code, "ENGINE-ACK", &errors);
                        String::from_utf8(ack)
                            .unwrap()
                            .replace('\r', "\n")
                            .into_bytes()
                    }
                    Engine::WrongControlId => {
                        let other = String::from_utf8(message)
                            .unwrap()
                            .replace("|P|2.4", "X|P|2.4");
                        ack_for(other.as_bytes(), AckCode::ApplicationAccept)
                    }
                    Engine::Garbage => b"this is not HL7".to_vec(),
                    Engine::Close => return,
                };
                let _ = mllp::write_message(&mut stream, &answer).await;
            });
        }
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mllp_hands_over_cr_segments_and_returns_the_engines_outcome_not_its_bytes() {
    for code in [
        AckCode::ApplicationAccept,
        AckCode::ApplicationError,
        AckCode::ApplicationReject,
    ] {
        let (addr, mut received) = mllp_engine(Engine::Ack(code)).await;
        let sink = MllpSink::new(addr.to_string(), Duration::from_secs(5));
        // The Trust sent CRLF line ends; the engine gets CR, as HL7 writes them.
        let mut it = item("ML1");
        let with_cr = it.raw.clone();
        it.raw = String::from_utf8(with_cr.to_vec())
            .unwrap()
            .replace('\r', "\r\n")
            .into_bytes()
            .into();
        let outcome = bounded(sink.deliver(&it)).await.unwrap();
        let forwarded = bounded(received.recv()).await.unwrap();
        assert_eq!(forwarded, with_cr, "forwarded with CR segment ends");
        match outcome {
            SinkOutcome::Answered { code: got, errors } => {
                assert_eq!(got, code);
                if code.is_accept() {
                    assert!(errors.is_empty(), "{errors:?}");
                } else {
                    assert_eq!(errors.len(), 1, "{errors:?}");
                    assert_eq!(errors[0].code, 103);
                    assert_eq!(errors[0].location.as_ref().unwrap().to_string(), "PID-8");
                    assert_eq!(errors[0].message, engine_error().message);
                }
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mllp_failures_are_errors() {
    let addr = closed_port().await;
    let sink = MllpSink::new(addr.to_string(), Duration::from_secs(5));
    let err = bounded(sink.deliver(&item("ML2"))).await.unwrap_err();
    assert!(
        matches!(
            err,
            SinkError::Connect {
                sink: SinkKind::Mllp,
                ..
            }
        ),
        "{err}"
    );

    let (addr, _engine) = silent_server().await;
    let sink = MllpSink::new(addr.to_string(), Duration::from_millis(300));
    let started = std::time::Instant::now();
    let err = bounded(sink.deliver(&item("ML3"))).await.unwrap_err();
    assert!(
        matches!(
            err,
            SinkError::Timeout {
                sink: SinkKind::Mllp,
                ..
            }
        ),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    let (addr, _) = mllp_engine(Engine::WrongControlId).await;
    let err =
        bounded(MllpSink::new(addr.to_string(), Duration::from_secs(5)).deliver(&item("ML4")))
            .await
            .unwrap_err();
    assert!(
        matches!(err, SinkError::AckMismatch { ref found, .. } if found == "ML4X"),
        "{err}"
    );

    let (addr, _) = mllp_engine(Engine::Garbage).await;
    let err =
        bounded(MllpSink::new(addr.to_string(), Duration::from_secs(5)).deliver(&item("ML5")))
            .await
            .unwrap_err();
    assert!(matches!(err, SinkError::BadAck { .. }), "{err}");

    let (addr, _) = mllp_engine(Engine::Close).await;
    let err =
        bounded(MllpSink::new(addr.to_string(), Duration::from_secs(5)).deliver(&item("ML6")))
            .await
            .unwrap_err();
    assert!(matches!(err, SinkError::NoAck { .. }), "{err}");

    let mut bad = item("ML7");
    bad.raw = [&bad.raw[..], &[0x1C]].concat().into();
    let err = bounded(MllpSink::new(addr.to_string(), Duration::from_secs(5)).deliver(&bad))
        .await
        .unwrap_err();
    assert!(matches!(err, SinkError::Unframeable { .. }) && !err.is_retryable());
}

// ---------------------------------------------------------------------------------------
// Deliver, then commit
// ---------------------------------------------------------------------------------------

fn inbound(control_id: &str) -> Inbound {
    Inbound {
        item: item(control_id),
        peer_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        peer_subject: Some("CN=sender".into()),
    }
}

/// The gateway's ACK for `raw_message("EPIC", control_id)`, and its builder for later
/// outcomes (MSH-10 `GW-ACK`, original mode).
fn gateway_ack(control_id: &str, code: AckCode) -> GatewayAck {
    let raw = raw_message("EPIC", control_id);
    GatewayAck {
        ack: ack_for(&raw, code),
        code,
        build: AckBuilder::new(move |outcome, errors| {
            Ok((ack_with(&raw, outcome, "GW-ACK", errors), outcome))
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_delivery_commits_and_a_retry_gets_the_original_ack() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let inflight = Arc::new(InFlight::new());
    let sink = Sink::Inbox;
    let first = bounded(deliver_and_commit(
        &store,
        &sink,
        &inflight,
        inbound("D1"),
        gateway_ack("D1", AckCode::ApplicationAccept),
    ))
    .await
    .unwrap();
    let Disposition::Committed(id) = first.disposition else {
        panic!("{first:?}");
    };
    assert_eq!(first.code, AckCode::ApplicationAccept);
    assert_eq!(store.inbox_list(0, 10, false).await.unwrap()[0].id, id);

    // The retry after a lost ACK: a new ACK would differ (timestamp); the original is sent.
    let mut again = gateway_ack("D1", AckCode::ApplicationAccept);
    again.ack.extend_from_slice(b"NTE|1||different\r");
    let retry = bounded(deliver_and_commit(
        &store,
        &sink,
        &inflight,
        inbound("D1"),
        again,
    ))
    .await
    .unwrap();
    assert_eq!(retry.disposition, Disposition::Duplicate(id));
    assert_eq!(retry.ack, first.ack);

    // A refused message is recorded and answered, never in the inbox; a refused retry of a
    // committed message gets the original ACK.
    let refused = bounded(deliver_and_commit(
        &store,
        &sink,
        &inflight,
        inbound("D2"),
        gateway_ack("D2", AckCode::ApplicationError),
    ))
    .await
    .unwrap();
    assert!(matches!(refused.disposition, Disposition::Recorded(_)));
    assert_eq!(refused.code, AckCode::ApplicationError);
    assert_eq!(store.inbox_list(0, 10, false).await.unwrap().len(), 1);
    let replay = bounded(deliver_and_commit(
        &store,
        &sink,
        &inflight,
        inbound("D1"),
        gateway_ack("D1", AckCode::ApplicationReject),
    ))
    .await
    .unwrap();
    assert_eq!(replay.disposition, Disposition::Duplicate(id));

    // Accepted without MSH-10: refused before anything happens.
    let mut nameless = inbound("D3");
    nameless.item.key.control_id.clear();
    let err = deliver_and_commit(
        &store,
        &sink,
        &inflight,
        nameless,
        gateway_ack("D3", AckCode::ApplicationAccept),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, DeliveryError::MissingControlId));
    assert!(inflight.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_webhook_commits_nothing_and_the_retry_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let inflight = Arc::new(InFlight::new());

    let failing = webhook_server(StatusCode::SERVICE_UNAVAILABLE, Duration::ZERO).await;
    let sink = Sink::Webhook(
        WebhookSink::new(&format!("http://{}/", failing.addr), Duration::from_secs(5)).unwrap(),
    );
    let err = bounded(deliver_and_commit(
        &store,
        &sink,
        &inflight,
        inbound("H1"),
        gateway_ack("H1", AckCode::ApplicationAccept),
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            DeliveryError::Sink(SinkError::Status { status: 503, .. })
        ),
        "{err}"
    );
    assert!(
        store
            .find_duplicate(&DedupKey::new("EPIC", "RX1", "H1"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store.inbound(1).await.unwrap().is_none(),
        "nothing half-committed"
    );

    let working = webhook_server(StatusCode::OK, Duration::ZERO).await;
    let sink = Sink::Webhook(
        WebhookSink::new(&format!("http://{}/", working.addr), Duration::from_secs(5)).unwrap(),
    );
    let answer = bounded(deliver_and_commit(
        &store,
        &sink,
        &inflight,
        inbound("H1"),
        gateway_ack("H1", AckCode::ApplicationAccept),
    ))
    .await
    .unwrap();
    let Disposition::Committed(id) = answer.disposition else {
        panic!("{answer:?}");
    };
    let row = store.inbound(id).await.unwrap().unwrap();
    assert_eq!(row.sink, "webhook");
    // Webhook rows are not EMS's inbox.
    assert!(store.inbox_list(0, 10, true).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_reach_the_webhook_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let inflight = Arc::new(InFlight::new());
    let server = webhook_server(StatusCode::OK, Duration::from_millis(200)).await;
    let sink = Sink::Webhook(
        WebhookSink::new(&format!("http://{}/", server.addr), Duration::from_secs(5)).unwrap(),
    );
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (store, sink, inflight) = (store.clone(), sink.clone(), Arc::clone(&inflight));
            tokio::spawn(async move {
                deliver_and_commit(
                    &store,
                    &sink,
                    &inflight,
                    inbound("C1"),
                    gateway_ack("C1", AckCode::ApplicationAccept),
                )
                .await
                .unwrap()
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(bounded(task).await.unwrap());
    }
    let committed = answers
        .iter()
        .filter(|a| matches!(a.disposition, Disposition::Committed(_)))
        .count();
    assert_eq!(committed, 1, "{answers:?}");
    assert!(answers.iter().all(|a| a.ack == answers[0].ack));
    assert_eq!(server.hits.load(Ordering::SeqCst), 1, "delivered once");
    assert!(inflight.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mllp_delivery_commits_the_engines_ack_and_records_its_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let inflight = Arc::new(InFlight::new());

    let (addr, _) = mllp_engine(Engine::Ack(AckCode::ApplicationError)).await;
    let sink = Sink::Mllp(MllpSink::new(addr.to_string(), Duration::from_secs(5)));
    let refused = bounded(deliver_and_commit(
        &store,
        &sink,
        &inflight,
        inbound("M1"),
        gateway_ack("M1", AckCode::ApplicationAccept),
    ))
    .await
    .unwrap();
    assert_eq!(refused.code, AckCode::ApplicationError);
    // The gateway's own ACK (its MSH-10, CR separators), carrying the engine's ERR.
    assert_eq!(
        refused.ack,
        ack_with(
            &raw_message("EPIC", "M1"),
            AckCode::ApplicationError,
            "GW-ACK",
            &[engine_error()]
        )
    );
    let receipt = read_ack(&Message::parse(&refused.ack).unwrap()).unwrap();
    assert_eq!(receipt.text, engine_error().message);
    let Disposition::Recorded(row) = refused.disposition else {
        panic!("{refused:?}");
    };
    assert_eq!(
        store.inbound(row).await.unwrap().unwrap().status,
        InboundStatus::Error
    );

    // The engine accepts the corrected retry: its ACK is committed and replayed afterwards.
    let (addr, mut received) = mllp_engine(Engine::Ack(AckCode::ApplicationAccept)).await;
    let sink = Sink::Mllp(MllpSink::new(addr.to_string(), Duration::from_secs(5)));
    let accepted = bounded(deliver_and_commit(
        &store,
        &sink,
        &inflight,
        inbound("M1"),
        gateway_ack("M1", AckCode::ApplicationAccept),
    ))
    .await
    .unwrap();
    assert!(matches!(accepted.disposition, Disposition::Committed(_)));
    let engine_ack = ack_with(
        &raw_message("EPIC", "M1"),
        AckCode::ApplicationAccept,
        "GW-ACK",
        &[],
    );
    assert_eq!(accepted.ack, engine_ack);
    let replay = bounded(deliver_and_commit(
        &store,
        &sink,
        &inflight,
        inbound("M1"),
        gateway_ack("M1", AckCode::ApplicationAccept),
    ))
    .await
    .unwrap();
    assert!(matches!(replay.disposition, Disposition::Duplicate(_)));
    assert_eq!(replay.ack, engine_ack);
    assert_eq!(
        bounded(received.recv()).await.unwrap(),
        raw_message("EPIC", "M1")
    );
    assert!(
        received.try_recv().is_err(),
        "the duplicate was not forwarded"
    );

    // An unreachable engine: 503 for the sender, nothing stored.
    let sink = Sink::Mllp(MllpSink::new(
        closed_port().await.to_string(),
        Duration::from_secs(5),
    ));
    let err = bounded(deliver_and_commit(
        &store,
        &sink,
        &inflight,
        inbound("M2"),
        gateway_ack("M2", AckCode::ApplicationAccept),
    ))
    .await
    .unwrap_err();
    assert!(matches!(
        err,
        DeliveryError::Sink(SinkError::Connect { .. })
    ));
    assert!(
        store
            .find_duplicate(&DedupKey::new("EPIC", "RX1", "M2"))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_reused_for_other_content_is_refused_205_and_nothing_is_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let inflight = Arc::new(InFlight::new());
    let sink = Sink::Inbox;
    let first = bounded(deliver_and_commit(
        &store,
        &sink,
        &inflight,
        inbound("K1"),
        gateway_ack("K1", AckCode::ApplicationAccept),
    ))
    .await
    .unwrap();
    let Disposition::Committed(original) = first.disposition else {
        panic!("{first:?}");
    };

    // The same message re-sent with CRLF line ends is the same message: the original ACK.
    let mut crlf = inbound("K1");
    crlf.item.raw = String::from_utf8(crlf.item.raw.to_vec())
        .unwrap()
        .replace('\r', "\r\n")
        .into_bytes()
        .into();
    let retry = bounded(deliver_and_commit(
        &store,
        &sink,
        &inflight,
        crlf,
        gateway_ack("K1", AckCode::ApplicationAccept),
    ))
    .await
    .unwrap();
    assert_eq!(retry.disposition, Disposition::Duplicate(original));
    assert_eq!(retry.ack, first.ack);

    // Other content under the same key: AR 205 at MSH-10, kept as an audit row.
    let mut other = inbound("K1");
    other.item.raw = String::from_utf8(other.item.raw.to_vec())
        .unwrap()
        .replace("SMITH^JOHN", "JONES^MARY")
        .into_bytes()
        .into();
    let conflict = bounded(deliver_and_commit(
        &store,
        &sink,
        &inflight,
        other,
        gateway_ack("K1", AckCode::ApplicationAccept),
    ))
    .await
    .unwrap();
    let Disposition::Conflict {
        row,
        original: held,
    } = conflict.disposition
    else {
        panic!("{conflict:?}");
    };
    assert_eq!(held, original);
    assert_eq!(conflict.code, AckCode::ApplicationReject);
    let receipt = read_ack(&Message::parse(&conflict.ack).unwrap()).unwrap();
    assert_eq!(receipt.code, AckCode::ApplicationReject);
    assert_eq!(receipt.errors[0].code, Some(205));
    assert_eq!(
        receipt.errors[0].location.as_ref().unwrap().to_string(),
        "MSH-10"
    );
    assert!(receipt.text.contains("other content"), "{}", receipt.text);
    let audit = store.inbound(row).await.unwrap().unwrap();
    assert_eq!(audit.status, InboundStatus::Rejected);
    assert!(String::from_utf8_lossy(&audit.raw).contains("JONES"));
    let kept = store.inbound(original).await.unwrap().unwrap();
    assert_eq!(kept.status, InboundStatus::Committed);
    assert!(String::from_utf8_lossy(&kept.raw).contains("SMITH"));
    assert_eq!(kept.ack, first.ack);
    assert_eq!(store.inbox_list(0, 10, false).await.unwrap().len(), 1);
}

/// A store written by a gateway before migration 3 (schema version 2, no digests): opening
/// it adds the column, and its committed rows keep answering their original ACK to any
/// repeat of the key, whatever the content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_stored_before_digests_answers_its_original_ack_to_any_repeat() {
    use hl7gw_runtime::store::{APPLICATION_ID, schema::MIGRATIONS};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.sqlite");
    let original_ack = ack_for(&raw_message("EPIC", "OLD1"), AckCode::ApplicationAccept);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA application_id = {APPLICATION_ID};
             CREATE TABLE schema_migrations (
                 version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL
             ) STRICT;"
        ))
        .unwrap();
        for m in MIGRATIONS.iter().filter(|m| m.version <= 2) {
            conn.execute_batch(m.sql).unwrap();
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?1, ?2, '2026-01-01T00:00:00.000000Z')",
                rusqlite::params![m.version, m.description],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO inbound_messages (received_at, committed_at, sending_application,
                 sending_facility, control_id, message_type, raw, ack, ack_code, status, sink)
             VALUES ('2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z', 'EPIC', 'RX1',
                 'OLD1', 'ADT^A28', ?1, ?2, 'AA', 'committed', 'inbox')",
            rusqlite::params![raw_message("EPIC", "OLD1"), original_ack],
        )
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(version, hl7gw_runtime::store::schema::latest_version());
    let mut other = inbound("OLD1");
    other.item.raw = [&other.item.raw[..], b"NTE|1||other content\r"]
        .concat()
        .into();
    let repeat = bounded(deliver_and_commit(
        &store,
        &Sink::Inbox,
        &Arc::new(InFlight::new()),
        other,
        gateway_ack("OLD1", AckCode::ApplicationAccept),
    ))
    .await
    .unwrap();
    assert!(
        matches!(repeat.disposition, Disposition::Duplicate(_)),
        "{repeat:?}"
    );
    assert_eq!(repeat.ack, original_ack);
}
