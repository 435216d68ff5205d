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

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hl7gw_runtime::dedup::DedupKey;
use hl7gw_tests::messages::{self as samples, AckView};
use hl7gw_tests::postgres::ChildStore;
use hl7gw_tests::postgres::TestPostgres;
use hl7gw_tests::wire::{self, Http, RawResponse, client_config, connect};
use receiver_support::{Gateway, GatewayConfig, Spec, child_main, pki};

const TEST_LIMIT: Duration = Duration::from_secs(90);

async fn bounded<F: Future>(body: F) -> F::Output {
    tokio::time::timeout(TEST_LIMIT, body)
        .await
        .expect("test took too long")
}

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

async fn post(gateway: std::net::SocketAddr, body: Arc<Vec<u8>>) -> RawResponse {
    let engine = client_config(&pki::demo_gateway_ca(), Some(&pki::demo_engine()), &[]);
    let request = wire::post(
        Spec::Demo.path(),
        &[
            format!("Host: {}:{}", Spec::Demo.hostname(), gateway.port()),
            "Content-Type: application/hl7-v2".to_owned(),
            format!("Content-Length: {}", body.len()),
        ],
        &body,
    );
    let tls = connect(gateway, Spec::Demo.hostname(), engine)
        .await
        .unwrap();
    let mut http = Http::new(tls);
    http.send(&request).await.unwrap();
    http.read_response().await.unwrap()
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
