//! The sending gateway across processes on loopback (issue 6, item 7): gw-demo's TEST
//! gateway runs in a child process (`app::serve`: intake API, durable queue, sequencer,
//! HTTPS client with the spec's development certificates); the Trust's engine
//! ([`hl7gw_tests::trust::Trust`]) runs in the test process and requires the gateway's
//! client certificate. Messages enter through the child's intake API (`POST /outbound`);
//! the operator's `queue` commands run from the test process on the child's store, as
//! `gw-demo queue …` beside a running gateway would.
//!
//! Covered: 50 messages queued at once with a slow receiver (queue order, one in flight,
//! one connection); 503 then 200; AE and an operator retry; AR and an operator skip; the
//! receiver closing connections mid-request (before and after its commit); `kill -9` of the
//! sender mid-stream with the ACK in flight, and a restart; a server certificate from
//! another CA; an idle MLLP connection closed after `limits.mllp_idle_timeout` (issue 11);
//! `/healthz` 503 naming a stopped sequencer and 200 once it is restarted (issue 11). The
//! in-process versions of these (and more failure classes) are in
//! `runtime/tests/queue_client.rs`, `runtime/tests/health.rs` and `tests/tests/intake.rs`.
//!
//! The behaviour both store backends share (queue order with one in flight, 503 then 200,
//! AE held until an operator's retry) runs again on PostgreSQL (`on_postgres_`).
//!
//! How the child process is run: see `sender_support/mod.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod sender_support;

use std::time::Duration;

use hl7gw_runtime::app::QueueCommand;
use hl7gw_tests::messages::{ids, oru};
use hl7gw_tests::pki::{ca, leaf};
use hl7gw_tests::postgres::{ChildStore, TestPostgres};
use hl7gw_tests::trust::{self, Reply, Trust};
use rcgen::ExtendedKeyUsagePurpose;
use sender_support::{Sender, SenderConfig, child_main, wait_until};
use serde_json::Value;

/// The gateway child's entry point (see `sender_support`): ignored in normal runs, selected
/// with `--ignored --exact` by the parent, which sets the configuration.
#[test]
#[ignore = "runs only as the sending gateway child process of the other tests"]
fn child_sender_process() {
    child_main();
}

/// The gateway's client certificate as the Trust sees it.
const GATEWAY_CLIENT: &str = "CN=hl7gw dev gateway client (demo test)";

/// A sender child in its own temporary directory (store and log inside), sending to
/// `trust`. The child is dropped (killed, its log shown if the test failed) before the
/// directory.
struct Case {
    sender: Sender,
    _dir: tempfile::TempDir,
}

/// Where a case's gateway keeps its queue: the behaviour both backends share runs on each
/// (the `on_postgres_` tests; a private PostgreSQL server, skipped without one unless
/// `HL7GW_REQUIRE_POSTGRES=1`).
#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Case {
    fn start(trust: &Trust) -> Self {
        Self::start_on(Backend::Sqlite, "", trust).unwrap()
    }

    /// A case on `backend`; `None` when `test` skips (no PostgreSQL).
    fn start_on(backend: Backend, test: &str, trust: &Trust) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mut config = SenderConfig::new(dir.path().join("store.sqlite"), trust.url());
        if let Backend::Postgres = backend {
            let server = TestPostgres::shared(test)?;
            config.postgres = Some(ChildStore::create(server, "sender", dir.path(), 10_000));
        }
        let sender = Sender::start(config, &dir.path().join("sender.log"));
        Some(Self { sender, _dir: dir })
    }

    /// Queues ORU^R01 messages with these MSH-10s, in this order: their queue ids.
    fn queue_all(&self, control_ids: &[String]) -> Vec<i64> {
        control_ids
            .iter()
            .map(|id| self.sender.queue(&oru(id)))
            .collect()
    }
}

/// Waits (bounded) until the Trust has committed `n` messages.
fn wait_committed(trust: &Trust, n: usize) {
    wait_until(
        &format!("{n} messages committed by the Trust"),
        || trust.committed().len() >= n,
        || trust.describe(),
    );
}

/// `c[i]` for each index: an expected sequence of MSH-10s.
fn pick(c: &[String], indexes: &[usize]) -> Vec<String> {
    indexes.iter().map(|&i| c[i].clone()).collect()
}

/// The queue row with this MSH-10.
fn row<'a>(list: &'a [Value], control_id: &str) -> &'a Value {
    list.iter()
        .find(|m| m["control_id"] == control_id)
        .unwrap_or_else(|| panic!("{control_id} is not in the queue: {list:#?}"))
}

/// Every row delivered, attempts as given (MSH-10 → attempts; 1 otherwise).
fn assert_all_delivered(list: &[Value], expected: &[String], attempts: &[(&str, u64)]) {
    let listed: Vec<&str> = list
        .iter()
        .map(|m| m["control_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, expected, "the queue holds every message, in order");
    for m in list {
        let id = m["control_id"].as_str().unwrap();
        assert_eq!(m["state"], "delivered", "{m:#}");
        let want = attempts
            .iter()
            .find(|(c, _)| *c == id)
            .map_or(1, |(_, n)| *n);
        assert_eq!(m["attempts"], want, "attempts of {id}: {m:#}");
        assert_eq!(m["last_response"]["outcome"], "accepted", "{m:#}");
    }
}

// ---------------------------------------------------------------------------------------

#[test]
fn fifty_messages_queued_at_once_arrive_in_queue_order_one_at_a_time() {
    fifty_messages_on(Backend::Sqlite, "");
}

#[test]
fn on_postgres_fifty_messages_queued_at_once_arrive_in_queue_order_one_at_a_time() {
    fifty_messages_on(Backend::Postgres, "on_postgres_fifty_messages");
}

fn fifty_messages_on(backend: Backend, test: &str) {
    let trust = Trust::start(trust::dev_tls());
    trust.set_default(Reply::Delay(Duration::from_millis(15)));
    // The first message waits at the Trust until all fifty are queued.
    trust.close_gate();
    let Some(case) = Case::start_on(backend, test, &trust) else {
        return;
    };
    let control_ids = ids("SLOW", 1..=50);

    // Five EMS clients post at once; the queue decides the order.
    let mut queued: Vec<(i64, String)> = std::thread::scope(|scope| {
        let workers: Vec<_> = control_ids
            .chunks(10)
            .map(|chunk| {
                let sender = &case.sender;
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|id| (sender.queue(&oru(id)), id.clone()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    queued.sort();
    let queue_order: Vec<String> = queued.into_iter().map(|(_, id)| id).collect();
    wait_until(
        "the first message at the Trust",
        || !trust.arrivals().is_empty(),
        || trust.describe(),
    );
    let intake = case.sender.intake_status();
    assert_eq!(intake["depth"], 50, "all fifty are queued: {intake:#}");
    assert_eq!(
        trust.arrival_ids(),
        queue_order[..1],
        "one sent, the rest wait"
    );

    trust.open_gate();
    wait_committed(&trust, 50);
    let status = case
        .sender
        .wait_status("an idle stream", |s| s["state"] == "idle");

    assert_eq!(
        trust.arrival_ids(),
        queue_order,
        "arrival order = queue order"
    );
    assert_eq!(trust.committed(), queue_order);
    assert_eq!(trust.duplicates(), 0);
    assert_eq!(trust.max_in_flight(), 1, "never two in flight");
    assert_eq!(trust.handshakes(), 1, "one kept-alive connection");
    for arrival in trust.arrivals() {
        assert!(
            arrival.client.iter().any(|c| c == GATEWAY_CLIENT),
            "{:?}",
            arrival.client
        );
        assert_eq!(arrival.path, trust::PATH);
        assert!(
            arrival.content_type.starts_with("application/hl7-v2"),
            "{}",
            arrival.content_type
        );
        let text = String::from_utf8(arrival.body).unwrap();
        assert!(text.contains("|ORU^R01^ORU_R01|"), "{text}");
        assert!(
            text.contains("^application^pdf^Base64^JVBERi0xLjQK"),
            "{text}"
        );
    }
    assert_eq!(status["delivered"], 50, "{status:#}");
    assert_eq!(status["depth"], 0, "{status:#}");
    let list = case.sender.list();
    assert_all_delivered(&list, &queue_order, &[]);
    let delivered_at: Vec<&str> = list
        .iter()
        .map(|m| m["delivered_at"].as_str().unwrap())
        .collect();
    assert!(
        delivered_at.windows(2).all(|w| w[0] <= w[1]),
        "delivered in queue order: {delivered_at:?}"
    );
}

#[test]
fn a_503_then_200_is_sent_again_without_gap_or_duplicate() {
    a_503_then_200_on(Backend::Sqlite, "");
}

#[test]
fn on_postgres_a_503_then_200_is_sent_again_without_gap_or_duplicate() {
    a_503_then_200_on(Backend::Postgres, "on_postgres_a_503_then_200");
}

fn a_503_then_200_on(backend: Backend, test: &str) {
    let trust = Trust::start(trust::dev_tls());
    let control_ids = ids("BUSY", 1..=5);
    trust.script(&control_ids[1], &[Reply::Status(503), Reply::Status(503)]);
    let Some(case) = Case::start_on(backend, test, &trust) else {
        return;
    };
    case.queue_all(&control_ids);
    wait_committed(&trust, 5);
    case.sender
        .wait_status("an idle stream", |s| s["state"] == "idle");

    let c = &control_ids;
    assert_eq!(
        trust.arrival_ids(),
        pick(c, &[0, 1, 1, 1, 2, 3, 4]),
        "the 503s are sent again before anything after them"
    );
    assert_eq!(trust.committed(), control_ids, "no gap");
    assert_eq!(trust.duplicates(), 0, "no duplicate record");
    assert_eq!(trust.max_in_flight(), 1);
    let list = case.sender.list();
    assert_all_delivered(&list, &control_ids, &[(c[1].as_str(), 3)]);
}

#[test]
fn ae_holds_the_stream_until_an_operator_retries() {
    ae_holds_on(Backend::Sqlite, "");
}

#[test]
fn on_postgres_ae_holds_the_stream_until_an_operator_retries() {
    ae_holds_on(Backend::Postgres, "on_postgres_ae_holds");
}

fn ae_holds_on(backend: Backend, test: &str) {
    let trust = Trust::start(trust::dev_tls());
    let control_ids = ids("AE", 1..=3);
    let c = &control_ids;
    trust.script(&c[1], &[Reply::Ae("unknown placer order PLC-1001")]);
    let Some(case) = Case::start_on(backend, test, &trust) else {
        return;
    };
    let queue_ids = case.queue_all(&control_ids);

    let status = case
        .sender
        .wait_status("a held stream", |s| s["state"] == "held");
    assert_eq!(status["held"], true, "{status:#}");
    assert_eq!(status["depth"], 2, "{status:#}");
    assert_eq!(status["head"]["control_id"], c[1].as_str(), "{status:#}");
    let reason = status["reason"].as_str().unwrap();
    assert!(reason.contains("on_ae: hold"), "{reason}");
    assert!(reason.contains("unknown placer order PLC-1001"), "{reason}");
    assert!(status["since"].is_string(), "{status:#}");
    assert_eq!(status["last_response"]["outcome"], "ae", "{status:#}");
    assert_eq!(status["last_response"]["ack_code"], "AE", "{status:#}");
    assert_eq!(status["last_response"]["http_status"], 200, "{status:#}");
    // Held means held: nothing after the held message goes.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(trust.arrival_ids(), pick(c, &[0, 1]));
    assert_eq!(trust.committed(), pick(c, &[0]));

    let printed = case
        .sender
        .queue_command(&QueueCommand::Retry(queue_ids[1]));
    assert!(printed.contains("released"), "{printed}");
    wait_committed(&trust, 3);
    let status = case
        .sender
        .wait_status("an idle stream", |s| s["state"] == "idle");
    assert_eq!(status["delivered"], 3, "{status:#}");

    assert_eq!(trust.arrival_ids(), pick(c, &[0, 1, 1, 2]));
    assert_eq!(trust.committed(), control_ids);
    assert_eq!(trust.duplicates(), 0);
    let list = case.sender.list();
    assert_all_delivered(&list, &control_ids, &[(c[1].as_str(), 2)]);
    assert!(row(&list, &c[1])["released_at"].is_string());
}

#[test]
fn ar_holds_the_stream_and_a_skip_releases_it() {
    let trust = Trust::start(trust::dev_tls());
    let control_ids = ids("AR", 1..=3);
    let c = &control_ids;
    trust.script(&c[1], &[Reply::Ar("message type not supported here")]);
    let case = Case::start(&trust);
    let queue_ids = case.queue_all(&control_ids);

    let status = case
        .sender
        .wait_status("a held stream", |s| s["state"] == "held");
    let reason = status["reason"].as_str().unwrap();
    assert!(reason.contains("on_ar: hold"), "{reason}");
    assert!(
        reason.contains("message type not supported here"),
        "{reason}"
    );
    assert_eq!(status["head"]["id"], queue_ids[1], "{status:#}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        trust.arrival_ids(),
        pick(c, &[0, 1]),
        "held: nothing more goes"
    );

    let printed = case.sender.queue_command(&QueueCommand::Skip(
        queue_ids[1],
        Some("sent to the Trust by hand".into()),
    ));
    assert!(printed.contains("skipped"), "{printed}");
    wait_committed(&trust, 2);
    let status = case
        .sender
        .wait_status("an idle stream", |s| s["state"] == "idle");
    assert_eq!(status["delivered"], 2, "{status:#}");
    assert_eq!(status["skipped"], 1, "{status:#}");

    assert_eq!(
        trust.arrival_ids(),
        pick(c, &[0, 1, 2]),
        "the stream moved on"
    );
    assert_eq!(trust.committed(), pick(c, &[0, 2]));
    let list = case.sender.list();
    let listed: Vec<&str> = list
        .iter()
        .map(|m| m["control_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, control_ids, "the skipped message is still listed");
    let skipped = row(&list, &c[1]);
    assert_eq!(skipped["state"], "skipped", "{skipped:#}");
    assert!(
        skipped["skip_reason"]
            .as_str()
            .unwrap()
            .contains("sent to the Trust by hand"),
        "{skipped:#}"
    );
    assert!(
        skipped["held_reason"]
            .as_str()
            .unwrap()
            .contains("on_ar: hold"),
        "the hold is kept for the record: {skipped:#}"
    );
    assert_eq!(row(&list, &c[2])["state"], "delivered");
    // The skipped message is kept with its bytes.
    let shown = case.sender.queue_command(&QueueCommand::Show(queue_ids[1]));
    assert!(shown.contains(c[1].as_str()), "{shown}");
}

#[test]
fn connections_closed_mid_request_are_retried_and_recorded_once() {
    let trust = Trust::start(trust::dev_tls());
    let control_ids = ids("CLOSE", 1..=5);
    let c = &control_ids;
    // Closed before the Trust committed it, and after (the ACK is lost).
    trust.script(&c[1], &[Reply::CloseBeforeCommit]);
    trust.script(&c[3], &[Reply::CommitThenClose]);
    let case = Case::start(&trust);
    case.queue_all(&control_ids);
    wait_committed(&trust, 5);
    case.sender
        .wait_status("an idle stream", |s| s["state"] == "idle");

    assert_eq!(
        trust.arrival_ids(),
        pick(c, &[0, 1, 1, 2, 3, 3, 4]),
        "each closed request is sent again, before the next message"
    );
    assert_eq!(
        trust.committed(),
        control_ids,
        "each recorded once, in order"
    );
    assert_eq!(
        trust.duplicates(),
        1,
        "the resend of the message whose ACK was lost is the duplicate"
    );
    assert_eq!(trust.max_in_flight(), 1);
    assert!(
        trust.handshakes() >= 3,
        "a new connection after each close: {}",
        trust.describe()
    );
    let list = case.sender.list();
    assert_all_delivered(
        &list,
        &control_ids,
        &[(c[1].as_str(), 2), (c[3].as_str(), 2)],
    );
}

#[test]
fn kill_9_mid_stream_and_a_restart_deliver_every_message_once_in_order() {
    let trust = Trust::start(trust::dev_tls());
    trust.set_default(Reply::Delay(Duration::from_millis(2)));
    let control_ids = ids("KILL", 1..=60);
    // The 21st is committed by the Trust, but its ACK never comes: the sender is killed
    // while waiting for it.
    trust.script(&control_ids[20], &[Reply::CommitThenHang]);
    let dir = tempfile::tempdir().unwrap();
    let config = SenderConfig::new(dir.path().join("store.sqlite"), trust.url());
    let mut first = Sender::start(config.clone(), &dir.path().join("sender-1.log"));
    for id in &control_ids {
        first.queue(&oru(id));
    }
    wait_until(
        "the 21st message at the Trust",
        || trust.arrivals().len() >= 21,
        || trust.describe(),
    );
    first.kill9();
    assert_eq!(trust.arrival_ids(), control_ids[..21]);

    // On disk after the kill: 20 delivered, the 21st in flight, the rest queued.
    let list = sender_support::queue_command(
        &config,
        &QueueCommand::List {
            after: 0,
            limit: 1000,
        },
    );
    let list: Vec<Value> = serde_json::from_str(&list).unwrap();
    let states: Vec<&str> = list.iter().map(|m| m["state"].as_str().unwrap()).collect();
    assert_eq!(states[..20], ["delivered"; 20]);
    assert_eq!(states[20], "in_flight");
    assert!(states[21..].iter().all(|s| *s == "queued"), "{states:?}");

    // Restart on the same store.
    let second = Sender::start(config, &dir.path().join("sender-2.log"));
    wait_committed(&trust, 60);
    let status = second.wait_status("an idle stream", |s| s["state"] == "idle");
    assert_eq!(status["delivered"], 60, "{status:#}");

    // The Trust's store: every message once, in order.
    assert_eq!(trust.committed(), control_ids);
    // On the wire: the one whose ACK was lost went again (same MSH-10), nothing else twice.
    let mut expected: Vec<String> = control_ids[..21].to_vec();
    expected.extend_from_slice(&control_ids[20..]);
    assert_eq!(trust.arrival_ids(), expected);
    assert_eq!(trust.duplicates(), 1);
    let resent: Vec<_> = trust
        .arrivals()
        .into_iter()
        .filter(|a| a.control_id == control_ids[20])
        .collect();
    assert_eq!(resent.len(), 2);
    assert_eq!(resent[0].body, resent[1].body, "sent again byte for byte");
    assert_eq!(trust.max_in_flight(), 1);
    let list = second.list();
    assert_all_delivered(&list, &control_ids, &[(control_ids[20].as_str(), 2)]);
    let log = second.log_text();
    assert!(
        log.contains("was in flight at the last stop"),
        "the restart says it resends: {log}"
    );
}

#[test]
fn a_server_certificate_from_another_ca_sends_nothing_and_queue_status_says_why() {
    // A Trust whose server certificate (for 127.0.0.1 and localhost, so only the issuer is
    // wrong) comes from a CA the spec does not name.
    let other = ca("some other CA");
    let server = leaf(
        &other,
        "localhost",
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let trust = Trust::start(trust::tls_with(&server.cert_pem, &server.key_pem));
    let case = Case::start(&trust);
    let control_ids = ids("CERT", 1..=2);
    case.queue_all(&control_ids);

    let status = case.sender.wait_status("two failed attempts", |s| {
        s["head"]["failures"].as_u64().unwrap_or(0) >= 2
    });
    assert_eq!(status["state"], "retrying", "{status:#}");
    assert_eq!(status["held"], false, "on_connect_error: retry: {status:#}");
    assert_eq!(status["depth"], 2, "{status:#}");
    assert_eq!(status["head"]["control_id"], control_ids[0].as_str());
    let reason = status["reason"].as_str().unwrap();
    assert!(reason.contains("connect_error"), "{reason}");
    assert!(reason.contains("certificate"), "{reason}");
    assert!(
        reason.contains("not issued by the server CA the spec names"),
        "{reason}"
    );
    assert_eq!(status["last_response"]["outcome"], "connect_error");
    assert!(status["since"].is_string(), "{status:#}");

    assert!(
        trust.arrivals().is_empty(),
        "nothing sent: {}",
        trust.describe()
    );
    assert_eq!(trust.handshakes(), 0, "no handshake completed");
    assert!(trust.tcp_accepted() >= 2, "{}", trust.describe());
    // The Trust saw why: the gateway refused its certificate with an alert.
    let failures = trust.handshake_failures();
    assert!(!failures.is_empty(), "{}", trust.describe());
    assert!(
        failures.iter().all(|f| f.contains("UnknownCA")),
        "{failures:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Resources and health (issue 11).

/// Reads from a blocking MLLP connection until the peer closes it (EOF or reset), at most
/// `limit`: how long that took, or `None` if it stayed open. Bytes that arrive meanwhile
/// (an ACK) are returned too.
fn read_until_closed(
    stream: &mut std::net::TcpStream,
    limit: Duration,
) -> (Option<Duration>, Vec<u8>) {
    use std::io::Read;
    let started = std::time::Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < limit {
        let left = limit
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(1));
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return (Some(started.elapsed()), received),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (Some(started.elapsed()), received),
        }
    }
    (None, received)
}

/// An idle MLLP connection to the intake is closed by the gateway once
/// `limits.mllp_idle_timeout` passes without a byte, not before; the clock restarts with
/// each message, so a connection that talks keeps its slot.
#[test]
fn an_idle_mllp_connection_is_closed_after_the_idle_timeout() {
    use std::io::Write;
    const IDLE: Duration = Duration::from_millis(1500);
    let trust = Trust::start(trust::dev_tls());
    let dir = tempfile::tempdir().unwrap();
    let mut config = SenderConfig::new(dir.path().join("store.sqlite"), trust.url());
    config.mllp_idle_timeout_ms = Some(u64::try_from(IDLE.as_millis()).unwrap());
    let sender = Sender::start(config, &dir.path().join("sender.log"));

    // A raw TCP client that never sends a byte.
    let mut silent = std::net::TcpStream::connect(sender.mllp).unwrap();
    let (closed, bytes) = read_until_closed(&mut silent, Duration::from_secs(20));
    let closed = closed.expect("an idle MLLP connection is closed within 20 s");
    assert!(bytes.is_empty(), "nothing was said to it: {bytes:?}");
    assert!(
        closed >= IDLE - Duration::from_millis(100),
        "closed after {closed:?}, before the idle timeout"
    );

    // One that sends a message gets its ACK, then is closed an idle timeout after that.
    let mut talking = std::net::TcpStream::connect(sender.mllp).unwrap();
    std::thread::sleep(IDLE / 2);
    talking
        .write_all(&hl7gw_runtime::mllp::frame(&oru("IDLE-1")))
        .unwrap();
    let (closed, ack) = read_until_closed(&mut talking, Duration::from_secs(20));
    let ack = String::from_utf8_lossy(&ack);
    assert!(ack.contains("MSA|AA|IDLE-1"), "{ack:?}");
    let closed = closed.expect("closed once idle again");
    assert!(
        closed >= IDLE - Duration::from_millis(100),
        "closed {closed:?} after the message, before the idle timeout"
    );
    assert!(
        sender.log_text().contains("the connection is idle"),
        "{}",
        sender.log_tail(20)
    );
    wait_committed(&trust, 1);
}

/// `/healthz` of a real gateway process tells the truth about its sequencer: 200 while it
/// runs, 503 naming it once it has stopped (messages are still queued, none delivered), and
/// 200 again once the supervisor's restart runs, which then delivers what waited.
#[test]
fn healthz_is_503_naming_a_stopped_sequencer_and_200_once_it_is_restarted() {
    let trust = Trust::start(trust::dev_tls());
    let case = Case::start(&trust);
    let sender = &case.sender;
    let body = sender.wait_healthz(200);
    assert_eq!(body["status"], "ok", "{body:#}");
    sender.queue(&oru("HEALTH-1"));
    wait_committed(&trust, 1);

    sender.stop_sequencer(true);
    let body = sender.wait_healthz(503);
    assert_eq!(body["status"], "unavailable", "{body:#}");
    let problems = body["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "only the sequencer: {body:#}");
    assert_eq!(problems[0]["check"], "task", "{body:#}");
    assert_eq!(problems[0]["subject"], "sequencer engine", "{body:#}");
    assert!(
        problems[0]["detail"].as_str().unwrap().contains("ended"),
        "{body:#}"
    );
    // The intake still takes messages; nobody delivers them.
    sender.queue(&oru("HEALTH-2"));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(trust.committed().len(), 1, "{}", trust.describe());
    assert_eq!(sender.healthz().0, 503, "still stopped");

    sender.stop_sequencer(false);
    let body = sender.wait_healthz(200);
    assert_eq!(body["problems"], serde_json::json!([]), "{body:#}");
    wait_committed(&trust, 2);
    assert_eq!(trust.committed()[1], "HEALTH-2", "{}", trust.describe());
    let log = sender.log_text();
    assert!(
        log.contains("sequencer engine") && log.contains("restarting it"),
        "the supervisor logged the stop: {}",
        sender.log_tail(30)
    );
}
