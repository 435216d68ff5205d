//! The sending gateway end to end over real mutual TLS on 127.0.0.1: the durable queue, the
//! sequencer and the HTTPS client against the scripted Trust engine (`hl7gw_tests::trust`)
//! that can be told, per message, to answer AA/AE/AR, an HTTP status, a wrong MSA-2,
//! garbage, late (timeout), or to close the connection mid-request. The engine records
//! arrival order and de-duplicates by MSH-10 as a real receiver does.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hl7gw_runtime::client::{self, FailureClass, HttpsClient};
use hl7gw_runtime::config::{FailurePolicies, FailurePolicy, SendConfig, SendHeader};
use hl7gw_runtime::hl7::AckCode;
use hl7gw_runtime::queue::{
    Backoff, ListFilter, MessageState, Policies, Queue, QueueError, QueueId, Sequencer,
    SequencerEvent, StreamState,
};
use hl7gw_runtime::store::Store;
use hl7gw_runtime::store::audit::Operator;
use hl7gw_tests::pki::{Identity, ca, leaf};
use hl7gw_tests::trust::{Reply, Trust};
use rcgen::ExtendedKeyUsagePurpose;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Every test body runs inside this bound.
const TEST_LIMIT: Duration = Duration::from_secs(60);

async fn bounded<F: std::future::Future>(body: F) -> F::Output {
    tokio::time::timeout(TEST_LIMIT, body)
        .await
        .expect("test took too long")
}

const DEST: &str = "trust";

// ---------------------------------------------------------------------------------------------
// A throwaway PKI.

/// The Trust's CA (server and client certificates), plus a stranger CA.
struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    /// localhost / 127.0.0.1 from the CA.
    server: Identity,
    /// localhost / 127.0.0.1 from another CA.
    foreign_server: Identity,
    /// other.example from the CA: right CA, wrong name.
    misnamed_server: Identity,
    /// The other CA, which issued no client certificate of ours.
    other_ca_pem: String,
}

impl Pki {
    fn new() -> Self {
        let root = ca("hl7gw sender test CA");
        let other = ca("some other CA");
        let server_usage = || ExtendedKeyUsagePurpose::ServerAuth;
        let server = leaf(
            &root,
            "localhost",
            &["localhost", "127.0.0.1"],
            server_usage(),
        );
        let foreign_server = leaf(
            &other,
            "localhost",
            &["localhost", "127.0.0.1"],
            server_usage(),
        );
        let misnamed_server = leaf(&root, "other.example", &["other.example"], server_usage());
        let client = leaf(
            &root,
            "ems-gateway.example",
            &["ems-gateway.example"],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let pki = Self {
            dir: tempfile::tempdir().unwrap(),
            ca_pem: root.pem(),
            server,
            foreign_server,
            misnamed_server,
            other_ca_pem: other.pem(),
        };
        std::fs::write(pki.path("client.crt"), &client.cert_pem).unwrap();
        std::fs::write(pki.path("client.key"), &client.key_pem).unwrap();
        std::fs::write(pki.path("server-ca.crt"), &pki.ca_pem).unwrap();
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The engine's TLS: `identity` as its certificate, client certificates required from
    /// the CA.
    fn engine_tls(&self, identity: &Identity) -> Arc<rustls::ServerConfig> {
        hl7gw_runtime::tls::server_config_from_pem(
            identity.cert_pem.as_bytes(),
            identity.key_pem.as_bytes(),
            self.ca_pem.as_bytes(),
        )
        .unwrap()
    }

    /// An engine that accepts client certificates from the other CA only.
    fn engine_tls_refusing_our_client(&self) -> Arc<rustls::ServerConfig> {
        hl7gw_runtime::tls::server_config_from_pem(
            self.server.cert_pem.as_bytes(),
            self.server.key_pem.as_bytes(),
            self.other_ca_pem.as_bytes(),
        )
        .unwrap()
    }

    /// The sender's HTTPS client for `url`, reading its PEM files as a gateway does.
    fn client(&self, url: &str, timeout: Duration) -> HttpsClient {
        let tls = client::client_config(
            &self.path("client.crt"),
            &self.path("client.key"),
            &self.path("server-ca.crt"),
        )
        .unwrap();
        HttpsClient::new(url, tls, timeout).unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn message(n: usize) -> Vec<u8> {
    format!(
        "MSH|^~\\&|EMS|HOSP|TIE|TRUST|20260101120000||ORU^R01^ORU_R01|MSG{n}|T|2.4\rPID|1||{n}^^^EMS^MR||TEST^PATIENT\rOBR|1|ORD{n}\r"
    )
    .into_bytes()
}

fn ids(range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    range.map(|n| format!("MSG{n}")).collect()
}

struct TempStore {
    _dir: tempfile::TempDir,
    path: PathBuf,
    queue: Queue,
}

fn temp_store() -> TempStore {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.sqlite");
    let queue = Queue::new(Store::open(&path).unwrap());
    TempStore {
        _dir: dir,
        path,
        queue,
    }
}

fn fast_policies() -> Policies {
    Policies {
        backoff: Backoff::from_millis(10, 40),
        ..Policies::default()
    }
}

struct Running {
    task: JoinHandle<()>,
    stop: Option<oneshot::Sender<()>>,
    events: mpsc::UnboundedReceiver<SequencerEvent>,
    seen: Vec<SequencerEvent>,
}

fn start(queue: &Queue, client: HttpsClient, policies: Policies) -> Running {
    let (tx, events) = mpsc::unbounded_channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let sequencer = Sequencer::new(queue.clone(), DEST, client, policies)
        .with_poll_interval(Duration::from_millis(50))
        .with_events(tx);
    let task = tokio::spawn(sequencer.run(async move {
        let _ = stopped.await;
    }));
    Running {
        task,
        stop: Some(stop),
        events,
        seen: Vec::new(),
    }
}

impl Running {
    /// Waits (bounded) for an event matching `want`, keeping every event seen.
    async fn wait_for(
        &mut self,
        what: &str,
        want: impl Fn(&SequencerEvent) -> bool,
    ) -> SequencerEvent {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(found) = self.seen.iter().find(|e| want(e)) {
                return found.clone();
            }
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => self.seen.push(event),
                Ok(None) => panic!(
                    "sequencer ended while waiting for {what}; saw {:#?}",
                    self.seen
                ),
                Err(_) => panic!("timed out waiting for {what}; saw {:#?}", self.seen),
            }
        }
    }

    /// Every event so far.
    fn drain(&mut self) -> &[SequencerEvent] {
        while let Ok(event) = self.events.try_recv() {
            self.seen.push(event);
        }
        &self.seen
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("sequencer did not stop")
            .unwrap();
    }
}

/// Waits (bounded) until the engine has committed `n` messages.
async fn wait_committed(engine: &Trust, n: usize) {
    for _ in 0..2000 {
        if engine.committed().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "engine committed {:?}, arrivals {:?}",
        engine.committed(),
        engine.arrival_ids()
    );
}

/// Waits (bounded) until the stream has no pending message.
async fn wait_idle(queue: &Queue) {
    for _ in 0..2000 {
        if queue.status(DEST).await.unwrap().state == StreamState::Idle {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("stream not idle: {:#?}", queue.status(DEST).await.unwrap());
}

async fn enqueue(queue: &Queue, range: std::ops::RangeInclusive<usize>) -> Vec<QueueId> {
    let list = queue
        .enqueue_all(DEST, range.map(message).collect())
        .await
        .unwrap();
    list.into_iter()
        .map(|e| {
            assert!(e.created);
            e.id
        })
        .collect()
}

fn classes(events: &[SequencerEvent]) -> Vec<FailureClass> {
    events
        .iter()
        .filter_map(|e| match e {
            SequencerEvent::Retrying { class, .. }
            | SequencerEvent::Held { class, .. }
            | SequencerEvent::Skipped { class, .. } => Some(*class),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_is_kept_with_a_slow_receiver_one_in_flight_one_connection() {
    bounded(async {
        let pki = Pki::new();
        let engine = Trust::start(pki.engine_tls(&pki.server));
        engine.set_default(Reply::Delay(Duration::from_millis(15)));
        let store = temp_store();
        enqueue(&store.queue, 1..=25).await;
        let status = store.queue.status(DEST).await.unwrap();
        assert_eq!(status.depth, 25);
        assert!(status.oldest_unacknowledged_at.is_some());
        let running = start(
            &store.queue,
            pki.client(&engine.url_for("localhost"), Duration::from_secs(5)),
            fast_policies(),
        );
        wait_idle(&store.queue).await;
        running.stop().await;

        assert_eq!(engine.arrival_ids(), ids(1..=25), "arrival order");
        assert_eq!(engine.committed(), ids(1..=25));
        assert_eq!(engine.max_in_flight(), 1);
        assert_eq!(engine.handshakes(), 1, "keep-alive: one connection");
        for a in engine.arrivals() {
            assert_eq!(a.content_type, "application/hl7-v2; charset=UTF-8");
            assert_eq!(a.connection, 1);
        }
        let status = store.queue.status(DEST).await.unwrap();
        assert_eq!(status.state, StreamState::Idle);
        assert_eq!((status.depth, status.delivered, status.skipped), (0, 25, 0));
        assert!(status.last_delivered_at.is_some());
        let delivered = store
            .queue
            .list(ListFilter {
                states: vec![MessageState::Delivered],
                ..ListFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(delivered.len(), 25);
        for m in &delivered {
            assert_eq!(m.attempts, 1);
            assert_eq!(m.message_type, "ORU^R01");
            let last = m.last_response.as_ref().unwrap();
            assert_eq!(last.failure, None);
            assert_eq!(last.http_status, Some(200));
            assert_eq!(last.ack_code, Some(AckCode::ApplicationAccept));
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_is_sent_again_without_gap_or_duplicate() {
    bounded(async {
        let pki = Pki::new();
        let engine = Trust::start(pki.engine_tls(&pki.server));
        engine.script("MSG2", &[Reply::Status(503)]);
        let store = temp_store();
        let ids_ = enqueue(&store.queue, 1..=3).await;
        let mut running = start(
            &store.queue,
            pki.client(&engine.url_for("localhost"), Duration::from_secs(5)),
            fast_policies(),
        );
        wait_committed(&engine, 3).await;
        wait_idle(&store.queue).await;
        running
            .wait_for("the retry", |e| {
                matches!(e, SequencerEvent::Retrying { .. })
            })
            .await;
        let events = running.drain().to_vec();
        running.stop().await;

        assert_eq!(engine.arrival_ids(), ["MSG1", "MSG2", "MSG2", "MSG3"]);
        assert_eq!(engine.committed(), ids(1..=3));
        assert_eq!(classes(&events), [FailureClass::Http5xx]);
        assert_eq!(engine.handshakes(), 1, "a 503 keeps the connection");
        let m2 = store.queue.show(ids_[1]).await.unwrap().unwrap();
        assert_eq!(m2.info.state, MessageState::Delivered);
        assert_eq!((m2.info.attempts, m2.info.failures), (2, 1));
        assert!(m2.info.failing_since.is_some());
        assert_eq!(m2.raw, message(2));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ae_holds_the_stream_until_an_operator_retries() {
    bounded(async {
        let pki = Pki::new();
        let engine = Trust::start(pki.engine_tls(&pki.server));
        engine.script(
            "MSG2",
            &[Reply::Ae("procedure XYZ is not in table procedure")],
        );
        let store = temp_store();
        let ids_ = enqueue(&store.queue, 1..=3).await;
        let mut running = start(
            &store.queue,
            pki.client(&engine.url_for("localhost"), Duration::from_secs(5)),
            fast_policies(),
        );
        running
            .wait_for("the hold", |e| matches!(e, SequencerEvent::Held { .. }))
            .await;
        // Held means nothing else goes out.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(engine.arrival_ids(), ["MSG1", "MSG2"]);

        let status = store.queue.status(DEST).await.unwrap();
        assert_eq!(status.state, StreamState::Held);
        assert!(status.held);
        assert_eq!(status.depth, 2);
        let reason = status.reason.clone().unwrap();
        assert!(reason.contains("on_ae: hold"), "{reason}");
        assert!(
            reason.contains("procedure XYZ is not in table procedure"),
            "{reason}"
        );
        assert!(
            !reason.contains("TEST^PATIENT"),
            "no patient data: {reason}"
        );
        assert!(status.since.is_some());
        let head = status.head.as_ref().unwrap();
        assert_eq!((head.id, head.state), (ids_[1], MessageState::Held));
        let last = status.last_response.as_ref().unwrap();
        assert_eq!(last.failure, Some(FailureClass::AckError));
        assert_eq!(last.ack_code, Some(AckCode::ApplicationError));
        assert_eq!(last.http_status, Some(200));
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["state"], "held");
        assert_eq!(json["last_response"]["outcome"], "ae");
        assert_eq!(json["last_response"]["ack_code"], "AE");

        let released = store
            .queue
            .retry(ids_[1], Operator::cli(None))
            .await
            .unwrap();
        assert_eq!(released.state, MessageState::Queued);
        assert!(released.released_at.is_some());
        wait_committed(&engine, 3).await;
        wait_idle(&store.queue).await;
        running.stop().await;
        assert_eq!(engine.arrival_ids(), ["MSG1", "MSG2", "MSG2", "MSG3"]);
        assert_eq!(engine.committed(), ids(1..=3));
        let m2 = store.queue.show(ids_[1]).await.unwrap().unwrap().info;
        assert_eq!(m2.state, MessageState::Delivered);
        assert_eq!(m2.attempts, 2);
        assert!(m2.held_at.is_none());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ar_holds_then_a_skip_from_another_process_releases_and_keeps_the_row() {
    bounded(async {
        let pki = Pki::new();
        let engine = Trust::start(pki.engine_tls(&pki.server));
        engine.script("MSG2", &[Reply::Ar("unknown patient")]);
        let store = temp_store();
        let ids_ = enqueue(&store.queue, 1..=3).await;
        let mut running = start(
            &store.queue,
            pki.client(&engine.url_for("localhost"), Duration::from_secs(5)),
            fast_policies(),
        );
        running
            .wait_for("the hold", |e| matches!(e, SequencerEvent::Held { .. }))
            .await;
        let status = store.queue.status(DEST).await.unwrap();
        assert!(status.held);
        assert!(status.reason.as_deref().unwrap().contains("on_ar: hold"));

        // An operator command in another process: its own store handle and queue, no
        // in-process wake-up; the sequencer notices by polling.
        let operator = Queue::new(Store::open(&store.path).unwrap());
        let skipped = operator
            .blocking()
            .skip(
                ids_[1],
                &Operator::cli(Some("corrected and resent as MSG2B")),
            )
            .unwrap();
        assert_eq!(skipped.state, MessageState::Skipped);
        wait_committed(&engine, 2).await;
        wait_idle(&store.queue).await;
        running.stop().await;

        assert_eq!(engine.arrival_ids(), ["MSG1", "MSG2", "MSG3"]);
        assert_eq!(engine.committed(), ["MSG1", "MSG3"]);
        let kept = operator.blocking().show(ids_[1]).unwrap().unwrap();
        assert_eq!(kept.raw, message(2), "the skipped message is kept");
        assert_eq!(kept.info.state, MessageState::Skipped);
        assert!(kept.info.skipped_at.is_some());
        assert!(
            kept.info
                .skip_reason
                .as_deref()
                .unwrap()
                .contains("corrected and resent as MSG2B")
        );
        assert!(
            kept.info.held_reason.is_some(),
            "why it was held stays on record"
        );
        let status = operator.blocking().status(DEST).unwrap();
        assert_eq!((status.delivered, status.skipped, status.depth), (2, 1, 0));

        // Done messages cannot be retried or skipped.
        assert!(matches!(
            operator.blocking().retry(ids_[1], &Operator::cli(None)),
            Err(QueueError::NotPending {
                state: MessageState::Skipped,
                ..
            })
        ));
        assert!(matches!(
            operator.blocking().skip(ids_[0], &Operator::cli(None)),
            Err(QueueError::NotPending {
                state: MessageState::Delivered,
                ..
            })
        ));
        assert!(matches!(
            operator.blocking().retry(9999, &Operator::cli(None)),
            Err(QueueError::NotFound(9999))
        ));
        // Pruning takes delivered and skipped messages once they are older than the
        // retention, and nothing younger.
        assert_eq!(
            operator
                .prune_finished(Duration::from_secs(3600))
                .await
                .unwrap(),
            0
        );
        assert_eq!(operator.prune_finished(Duration::ZERO).await.unwrap(), 3);
        assert!(
            operator
                .list(ListFilter::default())
                .await
                .unwrap()
                .is_empty()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_mid_request_is_retried_and_delivered_once() {
    bounded(async {
        let pki = Pki::new();
        let engine = Trust::start(pki.engine_tls(&pki.server));
        engine.script("MSG1", &[Reply::CloseBeforeCommit]);
        // Committed, but the ACK is lost: the resend is a duplicate the engine drops.
        engine.script("MSG2", &[Reply::CommitThenClose]);
        let store = temp_store();
        enqueue(&store.queue, 1..=3).await;
        let mut running = start(
            &store.queue,
            pki.client(&engine.url_for("localhost"), Duration::from_secs(5)),
            fast_policies(),
        );
        wait_committed(&engine, 3).await;
        wait_idle(&store.queue).await;
        let events = running.drain().to_vec();
        running.stop().await;

        assert_eq!(
            engine.arrival_ids(),
            ["MSG1", "MSG1", "MSG2", "MSG2", "MSG3"]
        );
        assert_eq!(engine.committed(), ids(1..=3), "each MSH-10 committed once");
        assert_eq!(
            classes(&events),
            [FailureClass::Connect, FailureClass::Connect]
        );
        assert_eq!(engine.handshakes(), 3, "a new connection after each loss");
        let arrivals = engine.arrivals();
        assert_eq!(arrivals[2].body, arrivals[3].body, "resent byte for byte");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_acks_and_timeouts_are_retried_on_a_fresh_connection() {
    bounded(async {
        let pki = Pki::new();
        let engine = Trust::start(pki.engine_tls(&pki.server));
        engine.script("MSG1", &[Reply::WrongMsa2]);
        engine.script("MSG2", &[Reply::Garbage]);
        engine.script("MSG3", &[Reply::Delay(Duration::from_millis(1500))]);
        let store = temp_store();
        let ids_ = enqueue(&store.queue, 1..=4).await;
        let mut running = start(
            &store.queue,
            pki.client(&engine.url_for("localhost"), Duration::from_millis(400)),
            fast_policies(),
        );
        running
            .wait_for("the timeout", |e| {
                matches!(
                    e,
                    SequencerEvent::Retrying {
                        class: FailureClass::Timeout,
                        ..
                    }
                )
            })
            .await;
        let m3 = store.queue.show(ids_[2]).await.unwrap().unwrap().info;
        let last = m3.last_response.unwrap();
        assert_eq!(last.failure, Some(FailureClass::Timeout));
        assert!(last.text.contains("within 400 ms"), "{}", last.text);
        wait_idle(&store.queue).await;
        let events = running.drain().to_vec();
        running.stop().await;

        assert_eq!(
            classes(&events),
            [
                FailureClass::BadAck,
                FailureClass::BadAck,
                FailureClass::Timeout
            ]
        );
        assert_eq!(
            engine.arrival_ids(),
            ["MSG1", "MSG1", "MSG2", "MSG2", "MSG3", "MSG3", "MSG4"]
        );
        // The wrong MSA-2 is recorded with the reason.
        let m1 = store.queue.show(ids_[0]).await.unwrap().unwrap().info;
        assert_eq!(m1.state, MessageState::Delivered);
        let status = store.queue.status(DEST).await.unwrap();
        assert_eq!(status.delivered, 4);
        // The timed-out connection is never reused: its late answer must not be read as
        // the answer to the next message.
        let arrivals = engine.arrivals();
        assert_ne!(arrivals[4].connection, arrivals[5].connection);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_from_another_ca_sends_nothing_and_says_why() {
    bounded(async {
        let pki = Pki::new();
        let engine = Trust::start(pki.engine_tls(&pki.foreign_server));
        let store = temp_store();
        enqueue(&store.queue, 1..=2).await;
        let mut running = start(
            &store.queue,
            pki.client(&engine.url_for("localhost"), Duration::from_secs(5)),
            fast_policies(),
        );
        running
            .wait_for("two failed attempts", |e| {
                matches!(e, SequencerEvent::Retrying { failures: 2, .. })
            })
            .await;
        let status = store.queue.status(DEST).await.unwrap();
        running.stop().await;

        assert!(engine.arrivals().is_empty(), "nothing was sent");
        assert_eq!(engine.handshakes(), 0, "no handshake completed");
        assert_eq!(status.state, StreamState::Retrying);
        assert_eq!(status.depth, 2);
        let reason = status.reason.unwrap();
        assert!(reason.contains("connect_error"), "{reason}");
        assert!(
            reason.contains("not issued by the server CA the spec names"),
            "{reason}"
        );
        assert!(status.since.is_some());
        let json = serde_json::to_value(status.last_response.unwrap()).unwrap();
        assert_eq!(json["outcome"], "connect_error");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_for_another_name_is_refused_then_held_by_policy() {
    bounded(async {
        let pki = Pki::new();
        let engine = Trust::start(pki.engine_tls(&pki.misnamed_server));
        let store = temp_store();
        enqueue(&store.queue, 1..=1).await;
        let fast = fast_policies();
        let policies = Policies {
            on_failure: FailurePolicies {
                on_connect_error: FailurePolicy::RetryThenHold(1),
                ..fast.on_failure
            },
            ..fast
        };
        let mut running = start(
            &store.queue,
            pki.client(&engine.url_for("localhost"), Duration::from_secs(5)),
            policies,
        );
        running
            .wait_for("the hold", |e| matches!(e, SequencerEvent::Held { .. }))
            .await;
        let status = store.queue.status(DEST).await.unwrap();
        running.stop().await;
        assert!(engine.arrivals().is_empty());
        assert!(status.held);
        let reason = status.reason.unwrap();
        assert!(
            reason.contains("2 attempts failed (on_connect_error: retry(1) then hold)"),
            "{reason}"
        );
        assert!(reason.contains("does not name the URL's host"), "{reason}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_the_engine_refuses_is_a_connect_error() {
    bounded(async {
        let pki = Pki::new();
        let engine = Trust::start(pki.engine_tls_refusing_our_client());
        let store = temp_store();
        enqueue(&store.queue, 1..=1).await;
        let mut running = start(
            &store.queue,
            pki.client(&engine.url_for("localhost"), Duration::from_secs(5)),
            fast_policies(),
        );
        running
            .wait_for("a failed attempt", |e| {
                matches!(
                    e,
                    SequencerEvent::Retrying {
                        class: FailureClass::Connect,
                        ..
                    }
                )
            })
            .await;
        let status = store.queue.status(DEST).await.unwrap();
        running.stop().await;
        assert!(engine.arrivals().is_empty());
        assert_eq!(status.state, StreamState::Retrying);
        let reason = status.reason.unwrap();
        assert!(
            reason.contains("is our client certificate one it accepts?"),
            "{reason}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_the_stream_resumes_in_order_resending_the_in_flight_message() {
    bounded(async {
        let pki = Pki::new();
        let engine = Trust::start(pki.engine_tls(&pki.server));
        // MSG3's first answer never comes before the stop.
        engine.script("MSG3", &[Reply::Delay(Duration::from_secs(50))]);
        let store = temp_store();
        let ids_ = enqueue(&store.queue, 1..=5).await;
        let mut running = start(
            &store.queue,
            pki.client(&engine.url_for("localhost"), Duration::from_secs(30)),
            fast_policies(),
        );
        running
            .wait_for(
                "MSG3 in flight",
                |e| matches!(e, SequencerEvent::Sending { control_id, .. } if control_id == "MSG3"),
            )
            .await;
        for _ in 0..500 {
            if engine.arrival_ids().len() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A crash: the sequencer is dropped mid-request.
        running.task.abort();
        let _ = (&mut running.task).await;
        drop(running);
        let m3 = store.queue.show(ids_[2]).await.unwrap().unwrap().info;
        assert_eq!(m3.state, MessageState::InFlight);
        assert_eq!(engine.arrival_ids(), ["MSG1", "MSG2", "MSG3"]);

        // A new process: a new store handle on the same file, a new client.
        let reopened = Queue::new(Store::open(&store.path).unwrap());
        let mut running = start(
            &reopened,
            pki.client(&engine.url_for("localhost"), Duration::from_secs(5)),
            fast_policies(),
        );
        let resumed = running
            .wait_for("the resume", |e| {
                matches!(e, SequencerEvent::Resumed { .. })
            })
            .await;
        assert_eq!(
            resumed,
            SequencerEvent::Resumed {
                id: ids_[2],
                control_id: "MSG3".into()
            }
        );
        wait_idle(&reopened).await;
        running.stop().await;

        assert_eq!(
            engine.arrival_ids(),
            ["MSG1", "MSG2", "MSG3", "MSG3", "MSG4", "MSG5"]
        );
        let arrivals = engine.arrivals();
        assert_eq!(
            arrivals[2].body, arrivals[3].body,
            "same bytes, same MSH-10"
        );
        assert_eq!(engine.committed(), ["MSG1", "MSG2", "MSG3", "MSG4", "MSG5"]);
        let m3 = reopened.show(ids_[2]).await.unwrap().unwrap().info;
        assert_eq!((m3.state, m3.attempts), (MessageState::Delivered, 2));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_stream_stays_held_across_a_restart() {
    bounded(async {
        let pki = Pki::new();
        let engine = Trust::start(pki.engine_tls(&pki.server));
        engine.script("MSG1", &[Reply::Status(400)]);
        let store = temp_store();
        let ids_ = enqueue(&store.queue, 1..=2).await;
        let mut running = start(
            &store.queue,
            pki.client(&engine.url_for("localhost"), Duration::from_secs(5)),
            fast_policies(),
        );
        running
            .wait_for("the hold", |e| matches!(e, SequencerEvent::Held { .. }))
            .await;
        running.stop().await;

        let reopened = Queue::new(Store::open(&store.path).unwrap());
        let running = start(
            &reopened,
            pki.client(&engine.url_for("localhost"), Duration::from_secs(5)),
            fast_policies(),
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            engine.arrival_ids(),
            ["MSG1"],
            "still held after the restart"
        );
        let status = reopened.status(DEST).await.unwrap();
        assert!(status.held);
        let reason = status.reason.unwrap();
        assert!(reason.contains("on_4xx: hold"), "{reason}");
        assert!(reason.contains("HTTP 400 Bad Request"), "{reason}");
        assert!(
            !reason.contains("engine says no"),
            "4xx bodies are not kept: {reason}"
        );
        reopened.retry(ids_[0], Operator::cli(None)).await.unwrap();
        wait_idle(&reopened).await;
        running.stop().await;
        assert_eq!(engine.committed(), ["MSG1", "MSG2"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_from_the_send_config_are_honoured() {
    bounded(async {
        let pki = Pki::new();
        let engine = Trust::start(pki.engine_tls(&pki.server));
        engine.script("MSG1", &[Reply::Status(503); 4]);
        engine.script("MSG2", &[Reply::Ar("duplicate order")]);
        let config = SendConfig {
            url: engine.url_for("localhost").into(),
            cert: "client.crt".into(),
            key: "client.key".into(),
            server_ca: "server-ca.crt".into(),
            server_crl: None,
            timeout_ms: 5000,
            backoff_first_ms: 5,
            backoff_max_ms: 20,
            on_failure: FailurePolicies {
                on_connect_error: FailurePolicy::Retry,
                on_timeout: FailurePolicy::Retry,
                on_5xx: FailurePolicy::RetryThenHold(3),
                on_4xx: FailurePolicy::Hold,
                on_bad_ack: FailurePolicy::Retry,
                on_ae: FailurePolicy::Hold,
                on_ar: FailurePolicy::Skip,
            },
            header: SendHeader::DEFAULT,
        };
        let policies = Policies::from_config(&config);
        assert_eq!(policies.backoff, Backoff::from_millis(5, 20));
        let client = HttpsClient::from_config(
            &config,
            &pki.path(&config.cert),
            &pki.path(&config.key),
            &pki.path(&config.server_ca),
        )
        .unwrap();
        let store = temp_store();
        let ids_ = enqueue(&store.queue, 1..=3).await;
        let mut running = start(&store.queue, client, policies);

        // retry(3) then hold: the first send and 3 retries, then held.
        running
            .wait_for("the hold", |e| matches!(e, SequencerEvent::Held { .. }))
            .await;
        assert_eq!(engine.arrival_ids(), ["MSG1"; 4]);
        let status = store.queue.status(DEST).await.unwrap();
        let reason = status.reason.unwrap();
        assert!(
            reason.contains("4 attempts failed (on_5xx: retry(3) then hold)"),
            "{reason}"
        );
        assert!(reason.contains("HTTP 503 Service Unavailable"), "{reason}");
        let m1 = store.queue.show(ids_[0]).await.unwrap().unwrap().info;
        assert_eq!((m1.attempts, m1.failures), (4, 4));

        // The operator retries: a fresh count; the engine now accepts. AR → skip by policy.
        store
            .queue
            .retry(ids_[0], Operator::cli(None))
            .await
            .unwrap();
        running
            .wait_for("the skip", |e| matches!(e, SequencerEvent::Skipped { .. }))
            .await;
        wait_idle(&store.queue).await;
        let events = running.drain().to_vec();
        running.stop().await;

        assert_eq!(
            classes(&events),
            [
                FailureClass::Http5xx,
                FailureClass::Http5xx,
                FailureClass::Http5xx,
                FailureClass::Http5xx,
                FailureClass::AckReject
            ]
        );
        assert_eq!(engine.committed(), ["MSG1", "MSG3"]);
        let m2 = store.queue.show(ids_[1]).await.unwrap().unwrap().info;
        assert_eq!(m2.state, MessageState::Skipped);
        let why = m2.skip_reason.unwrap();
        assert!(why.contains("skipped by policy on_ar: skip"), "{why}");
        assert!(why.contains("duplicate order"), "{why}");
        assert_eq!(
            m2.last_response.unwrap().ack_code,
            Some(AckCode::ApplicationReject)
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_grows_and_is_bounded() {
    bounded(async {
        let pki = Pki::new();
        let engine = Trust::start(pki.engine_tls(&pki.server));
        engine.script("MSG1", &[Reply::Status(503); 7]);
        let store = temp_store();
        enqueue(&store.queue, 1..=1).await;
        let policies = Policies {
            backoff: Backoff::from_millis(40, 160),
            ..Policies::default()
        };
        let mut running = start(
            &store.queue,
            pki.client(&engine.url_for("localhost"), Duration::from_secs(5)),
            policies,
        );
        wait_idle(&store.queue).await;
        let events = running.drain().to_vec();
        running.stop().await;

        let delays: Vec<(u32, Duration)> = events
            .iter()
            .filter_map(|e| match e {
                SequencerEvent::Retrying {
                    failures, delay, ..
                } => Some((*failures, *delay)),
                _ => None,
            })
            .collect();
        assert_eq!(delays.len(), 7);
        let bases = [40u64, 80, 160, 160, 160, 160, 160];
        for ((failures, delay), base) in delays.iter().zip(bases) {
            let base = Duration::from_millis(base);
            assert!(
                *delay >= base / 2 && *delay <= base,
                "failure {failures}: {delay:?} outside [{:?}, {base:?}]",
                base / 2
            );
        }
        // The engine saw the retries spaced at least by the chosen delays.
        let arrivals = engine.arrivals();
        assert_eq!(arrivals.len(), 8);
        for (i, (_, delay)) in delays.iter().enumerate() {
            let gap = arrivals[i + 1].at - arrivals[i].at;
            assert!(
                gap + Duration::from_millis(5) >= *delay,
                "gap {i}: {gap:?} < {delay:?}"
            );
            assert!(gap < Duration::from_secs(3), "gap {i}: {gap:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_reconnects_when_the_engine_closes_each_connection() {
    bounded(async {
        let pki = Pki::new();
        let engine = Trust::start(pki.engine_tls(&pki.server));
        engine.set_default(Reply::AaClose);
        let store = temp_store();
        enqueue(&store.queue, 1..=4).await;
        let mut running = start(
            &store.queue,
            pki.client(&engine.url_for("localhost"), Duration::from_secs(5)),
            fast_policies(),
        );
        wait_idle(&store.queue).await;
        let events = running.drain().to_vec();
        running.stop().await;
        assert!(classes(&events).is_empty(), "no failures: {events:#?}");
        assert_eq!(engine.committed(), ids(1..=4));
        assert_eq!(engine.handshakes(), 4);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_independent_and_listed_by_destination() {
    bounded(async {
        let pki = Pki::new();
        let engine = Trust::start(pki.engine_tls(&pki.server));
        engine.script("MSG1", &[Reply::Ae("held stream")]);
        let store = temp_store();
        enqueue(&store.queue, 1..=2).await;
        let other: Vec<Vec<u8>> = (10..=11).map(message).collect();
        store.queue.enqueue_all("lab", other).await.unwrap();
        let mut held = start(
            &store.queue,
            pki.client(&engine.url_for("localhost"), Duration::from_secs(5)),
            fast_policies(),
        );
        let (tx, _events) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let lab = tokio::spawn(
            Sequencer::new(
                store.queue.clone(),
                "lab",
                pki.client(&engine.url_for("localhost"), Duration::from_secs(5)),
                fast_policies(),
            )
            .with_events(tx)
            .run(async move {
                let _ = stopped.await;
            }),
        );
        held.wait_for("the hold", |e| matches!(e, SequencerEvent::Held { .. }))
            .await;
        for _ in 0..500 {
            if engine.committed().len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            engine.committed(),
            ["MSG10", "MSG11"],
            "lab flows while trust is held"
        );
        // The engine commits before the sequencer records the ACK: wait (bounded) for lab's
        // last delivery to be recorded.
        let mut all = store.queue.status_all().await.unwrap();
        for _ in 0..500 {
            if all.first().is_some_and(|s| s.state == StreamState::Idle) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            all = store.queue.status_all().await.unwrap();
        }
        let names: Vec<&str> = all.iter().map(|s| s.destination.as_str()).collect();
        assert_eq!(names, ["lab", "trust"]);
        assert_eq!(all[0].state, StreamState::Idle);
        assert_eq!(all[1].state, StreamState::Held);
        let trust = store
            .queue
            .list(ListFilter {
                destination: Some(DEST.into()),
                ..ListFilter::pending()
            })
            .await
            .unwrap();
        let listed: Vec<&str> = trust.iter().map(|m| m.control_id.as_str()).collect();
        assert_eq!(listed, ["MSG1", "MSG2"]);
        let page = store
            .queue
            .list(ListFilter {
                after: trust[0].id,
                limit: 1,
                ..ListFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].control_id, "MSG2");
        held.stop().await;
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(10), lab)
            .await
            .unwrap()
            .unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_refuses_what_could_not_be_matched_or_would_be_dropped() {
    bounded(async {
        let store = temp_store();
        let q = &store.queue;
        let first = q.enqueue(DEST, message(1)).await.unwrap();
        assert!(first.created);
        // The same bytes again: idempotent.
        let again = q.enqueue(DEST, message(1)).await.unwrap();
        assert_eq!((again.id, again.created), (first.id, false));
        // Another message reusing MSH-10 MSG1: the receiver would drop it.
        let mut reused = message(1);
        reused.extend_from_slice(b"NTE|1||changed\r");
        assert!(matches!(
            q.enqueue(DEST, reused.clone()).await,
            Err(QueueError::DuplicateControlId { existing, .. }) if existing == first.id
        ));
        // …but another destination has its own stream.
        assert!(q.enqueue("lab", reused).await.unwrap().created);
        assert!(matches!(
            q.enqueue(DEST, b"hello".to_vec()).await,
            Err(QueueError::NotHl7(_))
        ));
        let lf = String::from_utf8(message(5)).unwrap().replace('\r', "\n");
        assert!(matches!(
            q.enqueue(DEST, lf.into_bytes()).await,
            Err(QueueError::NotHl7(_))
        ));
        assert!(matches!(
            q.enqueue(
                DEST,
                b"MSH|^~\\&|A|B|C|D|20260101||ADT^A28|||2.4\r".to_vec()
            )
            .await,
            Err(QueueError::MissingControlId)
        ));
        assert!(matches!(
            q.enqueue(" ", message(2)).await,
            Err(QueueError::EmptyDestination)
        ));
        // All or none.
        let batch = vec![message(2), b"junk".to_vec()];
        assert!(q.enqueue_all(DEST, batch).await.is_err());
        assert_eq!(q.status(DEST).await.unwrap().depth, 1);
        // Durable: another handle on the file sees it.
        let reopened = Queue::new(Store::open(&store.path).unwrap());
        let head = reopened.blocking().head(DEST).unwrap().unwrap();
        assert_eq!(head.raw, message(1));
        assert_eq!(head.info.state, MessageState::Queued);
        assert_eq!(
            reopened.store().pragmas().await.unwrap().schema_version,
            hl7gw_runtime::store::schema::latest_version()
        );
    })
    .await;
}
