//! Two replicas of the demo gateway, each in its own process, on one PostgreSQL store (a
//! private server the test starts; without PostgreSQL this says it skipped, unless
//! `HL7GW_REQUIRE_POSTGRES=1`): the same message arriving at both at once is committed once
//! and every answer carries the same ACK, and EMS sees one inbox from either replica. While
//! the database is away the receiver answers 503 (never AA) and `/healthz` says 503; the
//! sender's retry commits once it is back.
//!
//! The gateways are the receiver suite's child processes (`receiver_support`), pointed at
//! the database instead of an SQLite file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "receiver_support/mod.rs"]
mod receiver_support;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hl7gw_runtime::dedup::DedupKey;
use hl7gw_tests::messages::{self as samples, AckView};
use hl7gw_tests::postgres::ChildStore;
use hl7gw_tests::postgres::TestPostgres;
use hl7gw_tests::wire::{self, Http, RawResponse, client_config, connect};
use receiver_support::{Gateway, GatewayConfig, Spec, Webhook, bounded, child_main, pki};

/// The gateway child's entry point (see `receiver_support`).
#[test]
#[ignore = "runs only as the gateway child process of the other tests"]
fn child_gateway_process() {
    child_main();
}

fn replica(dir: &Path, name: &str, store: &ChildStore) -> Gateway {
    let mut config = GatewayConfig::new(Spec::Demo, dir.join(format!("{name}.sqlite")));
    config.postgres = Some(store.clone());
    Gateway::start(config, &dir.join(format!("{name}.log")))
}

async fn post(gateway: SocketAddr, body: Arc<Vec<u8>>) -> RawResponse {
    try_post(gateway, body).await.unwrap()
}

/// One message on a fresh connection: the answer, or why there was none (a replica that
/// was just killed refuses or drops the connection).
async fn try_post(gateway: SocketAddr, body: Arc<Vec<u8>>) -> std::io::Result<RawResponse> {
    post_as(Spec::Demo, gateway, body).await
}

/// [`try_post`] to a gateway of `spec`, as its Trust's engine.
async fn post_as(
    spec: Spec,
    gateway: SocketAddr,
    body: Arc<Vec<u8>>,
) -> std::io::Result<RawResponse> {
    // As each Trust's engine labels HL7 (see `tests/receiver.rs`).
    let (engine, content_type) = match spec {
        Spec::Northwest => (
            client_config(
                &pki::northwest_gateway_ca(),
                Some(&pki::northwest_engine()),
                &[],
            ),
            "text/plain; charset=UTF-8",
        ),
        _ => (
            client_config(&pki::demo_gateway_ca(), Some(&pki::demo_engine()), &[]),
            "application/hl7-v2",
        ),
    };
    let request = wire::post(
        spec.path(),
        &[
            format!("Host: {}:{}", spec.hostname(), gateway.port()),
            format!("Content-Type: {content_type}"),
            format!("Content-Length: {}", body.len()),
        ],
        &body,
    );
    let tls = connect(gateway, spec.hostname(), engine).await?;
    let mut http = Http::new(tls);
    http.send(&request).await?;
    http.read_response().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_message_at_two_replicas_at_once_is_stored_once_with_one_ack() {
    let Some(server) = TestPostgres::shared("the_same_message_at_two_replicas") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = ChildStore::create(server, "replicas", dir.path(), 10_000);
    let replicas = [
        replica(dir.path(), "a", &store),
        replica(dir.path(), "b", &store),
    ];
    bounded(async {
        let rounds = 8;
        for round in 0..rounds {
            let control_id = format!("REP-{round}");
            let body = Arc::new(samples::demo_order(&control_id, "COL", "SMITH", "T").into_bytes());
            let mut racers = tokio::task::JoinSet::new();
            for n in 0..4 {
                let addr = replicas[n % 2].listen;
                racers.spawn(post(addr, Arc::clone(&body)));
            }
            let answers = racers.join_all().await;
            for answer in &answers {
                assert_eq!(answer.status, 200, "{}", answer.body_text());
                let ack = AckView::read(&answer.body_text()).expect("an ACK");
                assert_eq!(ack.code(), "AA");
                assert_eq!(
                    answer.body, answers[0].body,
                    "round {round}: both replicas answer the one stored ACK"
                );
            }
        }
        // Exactly one committed row per message, whichever replica took it.
        assert_eq!(
            server.psql(
                &store.dbname,
                "SELECT COUNT(*), COUNT(DISTINCT control_id) FROM inbound_messages \
                 WHERE status = 'committed'"
            ),
            format!("{rounds}|{rounds}")
        );
        let view = store.open();
        let first = view
            .find_duplicate(&DedupKey::new("TIE", "DEMO-TRUST", "REP-0"))
            .await
            .unwrap()
            .expect("REP-0 is committed");
        // One inbox, seen from either replica.
        let from_a = replicas[0].inbox_get("/inbox");
        let from_b = replicas[1].inbox_get("/inbox");
        assert_eq!(from_a["items"], from_b["items"]);
        assert_eq!(from_a["items"].as_array().unwrap().len(), rounds);
        assert_eq!(from_a["items"][0]["id"], first.id);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_database_is_away_the_receiver_answers_503_and_never_aa() {
    // A server of its own: this test stops it.
    let Some(server) = TestPostgres::start("while_the_database_is_away") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = ChildStore::create(&server, "away", dir.path(), 10_000);
    let gateway = replica(dir.path(), "only", &store);
    bounded(async {
        let order = |id: &str| Arc::new(samples::demo_order(id, "COL", "SMITH", "T").into_bytes());
        let before = post(gateway.listen, order("AWAY-1")).await;
        assert_eq!(AckView::read(&before.body_text()).unwrap().code(), "AA");

        tokio::task::block_in_place(|| server.stop());
        let during = post(gateway.listen, order("AWAY-2")).await;
        assert_eq!(during.status, 503, "{}", during.body_text());
        assert!(
            AckView::read(&during.body_text()).is_none(),
            "no ACK without a commit"
        );
        let (health, _) = tokio::task::block_in_place(|| gateway.ops_get("/healthz"));
        assert_eq!(health, 503);

        tokio::task::block_in_place(|| server.restart());
        // The sender's retry, once the database is back: committed now.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let after = loop {
            let answer = post(gateway.listen, order("AWAY-2")).await;
            if answer.status == 200 || std::time::Instant::now() > deadline {
                break answer;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(AckView::read(&after.body_text()).unwrap().code(), "AA");
        assert_eq!(
            server.psql(
                &store.dbname,
                "SELECT string_agg(control_id, ',' ORDER BY id) FROM inbound_messages"
            ),
            "AWAY-1,AWAY-2"
        );
    })
    .await;
}

/// Concurrent senders, and how often the one replica is killed while they send.
const SENDERS: usize = 16;
const KILLS: usize = 5;

/// A Trust engine's strict sender: the next message only after the previous one's AA; on a
/// refused or dropped connection or a 503 the same message again at the other replica.
/// Sends until `stop` is set (after at least a few messages), and returns how many were
/// AA'd (control ids `K<sender>-<n>`, n from 0) and how many tries failed.
async fn strict_sender(
    sender: usize,
    replicas: Arc<RwLock<[SocketAddr; 2]>>,
    stop: Arc<AtomicBool>,
) -> (usize, u64) {
    let mut failed = 0;
    let mut n = 0;
    while n < 3 || !stop.load(Ordering::SeqCst) {
        let control_id = format!("K{sender:02}-{n:04}");
        let body = Arc::new(samples::demo_order(&control_id, "COL", "SMITH", "T").into_bytes());
        // Alternate between the replicas; a failure moves to the other one.
        let mut target = (sender + n) % 2;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let addr = replicas.read().unwrap()[target];
            match try_post(addr, Arc::clone(&body)).await {
                Ok(answer) if answer.status == 200 => {
                    let ack = AckView::read(&answer.body_text()).expect("an ACK with 200");
                    assert_eq!(ack.code(), "AA", "{control_id}: {}", answer.body_text());
                    break;
                }
                Ok(answer) => assert_eq!(
                    answer.status,
                    503,
                    "{control_id}: only 503 while a replica goes: {}",
                    answer.body_text()
                ),
                Err(_) => {}
            }
            failed += 1;
            assert!(
                Instant::now() < deadline,
                "{control_id}: no AA from either replica"
            );
            target = 1 - target;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        n += 1;
    }
    (n, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_strict_senders_while_one_replica_is_killed_repeatedly_store_each_aa_once() {
    let Some(server) = TestPostgres::shared("sixteen_strict_senders_while_one_replica") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = ChildStore::create(server, "killed", dir.path(), 10_000);
    let steady = replica(dir.path(), "steady", &store);
    let mut killed = replica(dir.path(), "killed-0", &store);
    let replicas = Arc::new(RwLock::new([killed.listen, steady.listen]));
    let stop = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicU64::new(0));
    bounded(async {
        let mut senders = tokio::task::JoinSet::new();
        for sender in 0..SENDERS {
            senders.spawn(strict_sender(
                sender,
                Arc::clone(&replicas),
                Arc::clone(&stop),
            ));
        }
        // The killer: SIGKILL in the middle of the traffic, then a fresh process (on a new
        // port) a little later, the senders meanwhile all at the other replica.
        let killer = {
            let (replicas, stop, kills) =
                (Arc::clone(&replicas), Arc::clone(&stop), Arc::clone(&kills));
            let dir = dir.path().to_path_buf();
            let store = store.clone();
            tokio::task::spawn_blocking(move || {
                for k in 1..=KILLS {
                    std::thread::sleep(Duration::from_millis(400));
                    killed.kill9();
                    kills.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(200));
                    killed = replica(&dir, &format!("killed-{k}"), &store);
                    replicas.write().unwrap()[0] = killed.listen;
                }
                std::thread::sleep(Duration::from_millis(400));
                stop.store(true, Ordering::SeqCst);
                killed
            })
        };
        // A panicking sender (a false AA, a message never answered) fails the test here.
        let sent: Vec<(usize, u64)> = senders.join_all().await;
        let _last = killer.await.unwrap();
        assert_eq!(kills.load(Ordering::SeqCst), KILLS as u64);
        let aa: usize = sent.iter().map(|(n, _)| n).sum();
        let failed: u64 = sent.iter().map(|(_, f)| f).sum();
        assert!(failed > 0, "the kills hit no request");

        // Every AA'd message stored exactly once, none else, each sender's in its order.
        let rows = tokio::task::block_in_place(|| {
            server.psql(
                &store.dbname,
                "SELECT control_id FROM inbound_messages WHERE status = 'committed' ORDER BY id",
            )
        });
        let mut by_sender: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for control_id in rows.lines() {
            let (sender, n) = control_id.split_once('-').expect("K<sender>-<n>");
            by_sender
                .entry(sender)
                .or_default()
                .push(n.parse().expect("a number"));
        }
        assert_eq!(rows.lines().count(), aa, "one row per AA'd message");
        assert_eq!(by_sender.len(), SENDERS);
        let mut counts: Vec<usize> = Vec::new();
        for (sender, numbers) in &by_sender {
            assert!(
                numbers.iter().copied().eq(0..numbers.len()),
                "{sender}: committed once each, in the sender's order: {numbers:?}"
            );
            counts.push(numbers.len());
        }
        let mut expected: Vec<usize> = sent.iter().map(|(n, _)| *n).collect();
        expected.sort_unstable();
        counts.sort_unstable();
        assert_eq!(counts, expected, "each sender's AA'd messages, no more");
        let _ = writeln!(
            std::io::stderr(),
            "replicas: {SENDERS} strict senders, {KILLS} kills: {aa} messages AA'd and stored \
             once each; {failed} tries refused, dropped or 503 and retried at the other replica"
        );
        drop(steady);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_message_at_two_replicas_at_once_reaches_the_webhook_once() {
    let Some(server) = TestPostgres::shared("the_same_message_at_two_replicas_reaches") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = ChildStore::create(server, "claims", dir.path(), 10_000);
    // A slow webhook: the first replica is still delivering when the second gets the copy.
    let webhook = Webhook::start(200).await;
    webhook.delay_ms.store(300, Ordering::SeqCst);
    let replica = |name: &str| {
        let mut config =
            GatewayConfig::new(Spec::Northwest, dir.path().join(format!("{name}.sqlite")));
        config.postgres = Some(store.clone());
        config.webhook = Some(webhook.url());
        Gateway::start(config, &dir.path().join(format!("{name}.log")))
    };
    let replicas = [replica("a"), replica("b")];
    bounded(async {
        let rounds = 6;
        for round in 0..rounds {
            let control_id = format!("CLAIM-{round}");
            let (message, _) = samples::northwest_sample("ADT^A28", &control_id).unwrap();
            let body = Arc::new(message);
            let mut racers = tokio::task::JoinSet::new();
            for n in 0..4 {
                let addr = replicas[n % 2].listen;
                racers.spawn(post_as(Spec::Northwest, addr, Arc::clone(&body)));
            }
            let answers: Vec<RawResponse> = racers
                .join_all()
                .await
                .into_iter()
                .map(Result::unwrap)
                .collect();
            for answer in &answers {
                assert_eq!(answer.status, 200, "{}", answer.body_text());
                let ack = AckView::read(&answer.body_text()).expect("an ACK");
                assert_eq!(ack.code(), "AA");
                assert_eq!(answer.body, answers[0].body, "round {round}: one ACK");
            }
        }
        // Each message reached the webhook once, whichever replica delivered it.
        let delivered: Vec<String> = webhook
            .received()
            .iter()
            .map(|body| body["control_id"].as_str().unwrap().to_owned())
            .collect();
        let expected: Vec<String> = (0..rounds).map(|r| format!("CLAIM-{r}")).collect();
        assert_eq!(delivered, expected, "each key delivered once");
        let committed = tokio::task::block_in_place(|| {
            server.psql(
                &store.dbname,
                "SELECT COUNT(*), COUNT(DISTINCT control_id) FROM inbound_messages \
                 WHERE status = 'committed'",
            )
        });
        assert_eq!(committed, format!("{rounds}|{rounds}"));
    })
    .await;
}
