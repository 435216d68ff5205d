//! `/healthz` tells the truth: 503 naming the problem while the sequencer is stopped, the
//! store refuses writes or a certificate is about to expire, and 200 again once it is put
//! right (the supervisor restarts the sequencer by itself). A stream the store stops says so
//! in its status.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hl7gw_runtime::client::{Outcome, Outgoing, Transport};
use hl7gw_runtime::health::{Expiry, HealthCheck};
use hl7gw_runtime::metrics::Metrics;
use hl7gw_runtime::queue::{Policies, Queue, Sequencer};
use hl7gw_runtime::server::OpsServer;
use hl7gw_runtime::store::{Store, StoreOptions};
use hl7gw_runtime::supervise::{Supervisor, TaskBoard};
use hl7gw_tests::wire::Http;
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// A transport the test never reaches: the queue stays empty.
struct Unused;

impl Transport for Unused {
    async fn send(&mut self, _: &Outgoing<'_>) -> Outcome {
        std::future::pending().await
    }
}

/// A transport whose engine accepts everything, counting the sends.
#[derive(Clone, Default)]
struct Accepting(Arc<std::sync::atomic::AtomicUsize>);

impl Transport for Accepting {
    async fn send(&mut self, _: &Outgoing<'_>) -> Outcome {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Outcome::accepted(200, hl7gw_runtime::hl7::AckCode::ApplicationAccept, "AA")
    }
}

/// `/healthz`: the status and the JSON body.
async fn healthz(addr: SocketAddr) -> (u16, serde_json::Value) {
    let mut c = Http::new(TcpStream::connect(addr).await.unwrap());
    c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let r = c.read_response().await.unwrap();
    (r.status, serde_json::from_slice(&r.body).unwrap())
}

/// Polls `/healthz` (bounded) until it answers `status`.
async fn wait_for_status(addr: SocketAddr, status: u16) -> serde_json::Value {
    let mut last = None;
    for _ in 0..200 {
        let (got, body) = healthz(addr).await;
        if got == status {
            return body;
        }
        last = Some((got, body));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("/healthz never answered {status}; last: {last:?}");
}

struct Running {
    addr: SocketAddr,
    store_path: std::path::PathBuf,
    stop: tokio::sync::watch::Sender<bool>,
    ops: tokio::task::JoinHandle<()>,
    supervisor: Supervisor,
    _dir: tempfile::TempDir,
}

/// A store, a supervised sequencer that `kill` stops, and the operations port.
async fn start(kill: Arc<Notify>, certificates: Vec<Expiry>) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("gateway.sqlite");
    let options = StoreOptions {
        busy_timeout: Duration::from_millis(100),
    };
    let store = Store::open_with(&store_path, &options).unwrap();
    let (stop, _) = tokio::sync::watch::channel(false);
    let mut supervisor = Supervisor::new(stop.clone(), TaskBoard::default())
        .with_first_restart_delay(Duration::from_millis(500));
    let queue = Queue::new(store.clone());
    supervisor.restartable("sequencer engine", move |stopping| {
        let sequencer = Sequencer::new(queue.clone(), "engine", Unused, Policies::default());
        let kill = kill.clone();
        async move {
            tokio::select! {
                () = sequencer.run(stopping) => {}
                () = kill.notified() => {}
            }
        }
    });
    let health = HealthCheck::new(store, supervisor.board().clone(), certificates)
        .with_store_timeout(Duration::from_secs(1));
    let ops = OpsServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(Metrics::new()),
        health,
    )
    .await
    .unwrap();
    let addr = ops.local_addr().unwrap();
    let stopped = hl7gw_runtime::supervise::stopped(stop.subscribe());
    let ops = tokio::spawn(async move {
        ops.run(stopped).await.unwrap();
    });
    Running {
        addr,
        store_path,
        stop,
        ops,
        supervisor,
        _dir: dir,
    }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(10), async {
            self.ops.await.unwrap();
            self.supervisor.join().await.unwrap();
        })
        .await
        .expect("did not stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_sequencer_is_503_until_it_is_restarted() {
    let kill = Arc::new(Notify::new());
    let running = start(kill.clone(), Vec::new()).await;
    let (status, body) = healthz(running.addr).await;
    assert_eq!((status, &body["status"]), (200, &"ok".into()), "{body}");

    kill.notify_one();
    let body = wait_for_status(running.addr, 503).await;
    assert_eq!(body["status"], "unavailable");
    let problems = body["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{body}");
    assert_eq!(problems[0]["check"], "task");
    assert_eq!(problems[0]["subject"], "sequencer engine");
    assert!(
        problems[0]["detail"].as_str().unwrap().contains("ended"),
        "{body}"
    );

    // The supervisor restarts it by itself.
    let body = wait_for_status(running.addr, 200).await;
    assert_eq!(body["problems"], serde_json::json!([]));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_refuses_writes_is_503_until_it_takes_them_again() {
    let running = start(Arc::new(Notify::new()), Vec::new()).await;
    assert_eq!(healthz(running.addr).await.0, 200);

    // Another process holds the write lock: the gateway's writes cannot go through.
    let other = rusqlite::Connection::open(&running.store_path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let (status, body) = healthz(running.addr).await;
    assert_eq!(status, 503, "{body}");
    let problems = body["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{body}");
    assert_eq!(problems[0]["check"], "store");
    assert!(
        problems[0]["detail"]
            .as_str()
            .unwrap()
            .contains("does not take writes"),
        "{body}"
    );

    other.execute_batch("ROLLBACK").unwrap();
    let body = wait_for_status(running.addr, 200).await;
    assert_eq!(body["status"], "ok");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_about_to_expire_is_503_naming_it() {
    let soon = Expiry {
        subject: "receive.tls.cert server.crt (CN=gw)".into(),
        not_after: time::OffsetDateTime::now_utc() + time::Duration::days(3),
    };
    let running = start(Arc::new(Notify::new()), vec![soon]).await;
    let (status, body) = healthz(running.addr).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["problems"][0]["check"], "certificate");
    assert_eq!(
        body["problems"][0]["subject"],
        "receive.tls.cert server.crt (CN=gw)"
    );
    assert!(
        body["problems"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("within 30 days"),
        "{body}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_the_store_stops_says_why_in_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.sqlite");
    let options = StoreOptions {
        busy_timeout: Duration::from_millis(100),
    };
    let queue = Queue::new(Store::open_with(&path, &options).unwrap());
    let message = b"MSH|^~\\&|EMS|EMS|TIE|TRUST|20260101120000||ORU^R01^ORU_R01|C-1|T|2.4\r";
    queue.enqueue("engine", message.to_vec()).await.unwrap();
    assert_eq!(queue.status("engine").await.unwrap().stalled, None);

    // Another process holds the write lock: the sequencer cannot resume the stream.
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let engine = Accepting::default();
    let sequencer = Sequencer::new(queue.clone(), "engine", engine.clone(), Policies::default())
        .with_poll_interval(Duration::from_millis(50));
    let (stop, stopping) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(sequencer.run(async {
        let _ = stopping.await;
    }));
    let mut stalled = None;
    for _ in 0..200 {
        stalled = queue.status("engine").await.unwrap().stalled;
        if stalled.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stall = stalled.expect("the status never said the stream is stalled");
    assert!(
        stall
            .reason
            .starts_with("the store failed: cannot resume the stream")
            && stall.reason.contains("locked"),
        "{}",
        stall.reason
    );
    let json = serde_json::to_value(queue.status("engine").await.unwrap()).unwrap();
    assert_eq!(json["stalled"]["reason"], stall.reason.as_str());
    assert_eq!(engine.0.load(std::sync::atomic::Ordering::SeqCst), 0);

    // Writes work again: the message goes, and the stall is gone.
    other.execute_batch("ROLLBACK").unwrap();
    for _ in 0..200 {
        let status = queue.status("engine").await.unwrap();
        if status.depth == 0 {
            assert_eq!(status.stalled, None);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(queue.status("engine").await.unwrap().depth, 0);
    assert_eq!(engine.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .unwrap()
        .unwrap();
}
