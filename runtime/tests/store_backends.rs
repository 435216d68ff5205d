//! The store's behaviour that both backends share, run against each: SQLite (a file in a
//! temporary folder) and PostgreSQL (a private server started by the test,
//! `hl7gw_tests::postgres`; without PostgreSQL installed these say they skipped, unless
//! `HL7GW_REQUIRE_POSTGRES=1`). Each test is written once as a function of a [`Db`] and
//! instantiated per backend by `both!`. Then what only PostgreSQL has: migrations under
//! concurrent opens, a newer or foreign schema refused, and stream leases with their fencing
//! tokens between two replicas of one database.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hl7gw_runtime::client::{Outcome, Outgoing, Transport};
use hl7gw_runtime::dedup::DedupKey;
use hl7gw_runtime::hl7::{AckCode, AckRequest, Message, build_ack};
use hl7gw_runtime::queue::{
    ListFilter, MessageState, Policies, Queue, QueueError, Sequencer, SequencerEvent,
};
use hl7gw_runtime::sink::SinkKind;
use hl7gw_runtime::store::audit::Operator;
use hl7gw_runtime::store::{
    CommitResult, InboundRecord, InboundStatus, PostgresOptions, PostgresTls, Store, StoreError,
};
use hl7gw_tests::postgres::{self as pg, TestPostgres};
use tokio::sync::mpsc;

const LIMIT: Duration = Duration::from_secs(60);

/// Where a test's store lives; [`Db::open`] opens another connection (pool) to it, as
/// another process or replica would.
enum Db {
    Sqlite(tempfile::TempDir),
    Postgres(PostgresOptions),
}

impl Db {
    fn sqlite() -> Option<Self> {
        Some(Self::Sqlite(tempfile::tempdir().unwrap()))
    }

    fn postgres(test: &str) -> Option<Self> {
        let server = TestPostgres::shared(test)?;
        Some(Self::Postgres(options(
            server,
            &server.create_database(test),
        )))
    }

    /// Runs `sql` on a connection of its own (test set-up the store has no call for).
    fn execute(&self, sqlite: &str, postgres: &str) {
        match self {
            Self::Sqlite(dir) => rusqlite::Connection::open(dir.path().join("gateway-test.sqlite"))
                .unwrap()
                .execute_batch(sqlite)
                .unwrap(),
            Self::Postgres(options) => {
                let sql = postgres.to_owned();
                let options = options.clone();
                runtime().block_on(async move {
                    let client = pg_connect(&options).await;
                    client.batch_execute(&sql).await.unwrap();
                });
            }
        }
    }

    /// Another connection takes the store's writer (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: the
    /// inbound table locked against inserts) and keeps it until the hold is released, so
    /// the commits made meanwhile queue up.
    fn hold_writer(&self) -> WriterHold {
        let (taken_tx, taken) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let thread = match self {
            Self::Sqlite(dir) => {
                let path = dir.path().join("gateway-test.sqlite");
                std::thread::spawn(move || {
                    let conn = rusqlite::Connection::open(path).unwrap();
                    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
                    taken_tx.send(()).unwrap();
                    let _ = released.recv_timeout(LIMIT);
                    conn.execute_batch("COMMIT").unwrap();
                })
            }
            Self::Postgres(options) => {
                let options = options.clone();
                std::thread::spawn(move || {
                    runtime().block_on(async move {
                        let client = pg_connect(&options).await;
                        client
                            .batch_execute("BEGIN; LOCK TABLE inbound_messages IN EXCLUSIVE MODE")
                            .await
                            .unwrap();
                        taken_tx.send(()).unwrap();
                        tokio::task::spawn_blocking(move || released.recv_timeout(LIMIT))
                            .await
                            .unwrap()
                            .ok();
                        client.batch_execute("COMMIT").await.unwrap();
                    });
                })
            }
        };
        taken.recv_timeout(LIMIT).unwrap();
        WriterHold { release, thread }
    }

    fn open(&self) -> Store {
        match self {
            Self::Sqlite(dir) => Store::open(dir.path().join("gateway-test.sqlite")).unwrap(),
            Self::Postgres(options) => Store::open_postgres(options).unwrap(),
        }
    }
}

/// The writer held by another connection; see [`Db::hold_writer`].
struct WriterHold {
    release: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl WriterHold {
    fn release(self) {
        self.release.send(()).unwrap();
        self.thread.join().unwrap();
    }
}

async fn pg_connect(options: &PostgresOptions) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(
        &format!(
            "host={} port={} user={} password={} dbname={}",
            options.host,
            options.port,
            options.user,
            options.password.as_deref().unwrap_or(""),
            options.dbname
        ),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    client
}

/// Two stores on one new database of the shared server, as two replicas have.
fn two_replicas(test: &str) -> Option<(Store, Store)> {
    let server = TestPostgres::shared(test)?;
    let options = options(server, &server.create_database(test));
    Some((
        Store::open_postgres(&options).unwrap(),
        Store::open_postgres(&options).unwrap(),
    ))
}

fn options(server: &TestPostgres, dbname: &str) -> PostgresOptions {
    let mut options = PostgresOptions::new(server.host(), dbname, pg::USER);
    options.port = server.port();
    options.password = Some(pg::PASSWORD.to_owned());
    options.tls = PostgresTls::Disable;
    options
}

/// Instantiates each test function once per backend.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { if let Some(db) = super::Db::sqlite() { super::$name(&db) } })*
        }
        mod postgres {
            $(#[test] fn $name() {
                if let Some(db) = super::Db::postgres(stringify!($name)) { super::$name(&db) }
            })*
        }
    };
}

both!(
    commit_then_find_duplicate_returns_the_original_ack,
    error_and_reject_rows_are_audit_only,
    a_committed_message_needs_a_control_id,
    concurrent_commits_of_one_key_from_two_connections_commit_once,
    concurrent_async_commits_of_one_key_commit_once,
    prune_keeps_unacknowledged_inbox_rows_and_pending_messages,
    the_inbox_lists_after_a_cursor_fetches_and_acknowledges_once,
    the_queue_keeps_order_refuses_reused_control_ids_and_checks_idempotency_keys,
    a_sequencer_delivers_the_stream_in_order,
    the_store_reports_whether_it_takes_writes,
    the_stores_other_writers_get_their_turn_while_inbound_commits_stream_in,
    concurrent_commits_share_transactions_and_each_gets_its_own_ack,
    a_member_the_database_refuses_fails_alone,
    a_failed_group_fails_every_member_and_no_other_group,
    two_copies_of_one_key_in_one_group_commit_once,
    large_messages_are_stored_byte_for_byte_alone_and_in_a_group,
    operator_actions_are_audited_and_the_last_hour_counted,
);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn raw_message(app: &str, control_id: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|{app}|RX1|HL7GW|EMS|20240501120000||ADT^A28^ADT_A05|{control_id}|P|2.4\r\
         PID|1||123456^^^RX1^MR~9434765919^^^NHS^NH||SMITH^JOHN||19700101|M\r"
    )
    .into_bytes()
}

fn ack_for(raw: &[u8], code: AckCode) -> Vec<u8> {
    let message = Message::parse(raw).unwrap();
    build_ack(
        &message,
        &AckRequest {
            code,
            control_id: "ACK0001",
            timestamp: "20240501120001+0000",
            errors: &[],
        },
    )
    .unwrap()
}

fn record_at(
    control_id: &str,
    code: AckCode,
    sink: SinkKind,
    received_at: SystemTime,
) -> InboundRecord {
    let raw = raw_message("EPIC", control_id);
    InboundRecord {
        received_at,
        peer_ip: Some(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))),
        peer_subject: Some("CN=rx1-test.example.nhs.uk,O=RX1".into()),
        key: DedupKey::new("EPIC", "RX1", control_id),
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

fn record(control_id: &str, code: AckCode, sink: SinkKind) -> InboundRecord {
    record_at(control_id, code, sink, SystemTime::now())
}

fn committed(result: CommitResult) -> i64 {
    match result {
        CommitResult::Committed(id) => id,
        other => panic!("expected a commit, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Inbound rows, duplicates, the inbox, retention
// ---------------------------------------------------------------------------------------

fn commit_then_find_duplicate_returns_the_original_ack(db: &Db) {
    let store = db.open();
    let s = store.blocking();
    let first = record("MSG0001", AckCode::ApplicationAccept, SinkKind::Inbox);
    let id = committed(s.commit_inbound(&first).unwrap());
    let found = s.find_duplicate(&first.key).unwrap().expect("found");
    assert_eq!((found.id, &found.ack), (id, &first.ack));
    assert_eq!(found.ack_code, AckCode::ApplicationAccept);
    assert_eq!(
        found.digest.as_deref(),
        Some(hl7gw_runtime::dedup::digest(&first.raw).as_str())
    );
    // A retry with a freshly built ACK: nothing written, the original bytes answered.
    let mut retry = first.clone();
    retry.ack = b"MSH|^~\\&|other ack\rMSA|AA|MSG0001\r".to_vec();
    match s.commit_inbound(&retry).unwrap() {
        CommitResult::Duplicate(original) => {
            assert_eq!((original.id, original.ack), (id, first.ack.clone()));
        }
        other => panic!("expected a duplicate, got {other:?}"),
    }
    for other in [
        DedupKey::new("EPIC", "RX2", "MSG0001"),
        DedupKey::new("CERNER", "RX1", "MSG0001"),
        DedupKey::new("EPIC", "RX1", "MSG0002"),
    ] {
        assert!(s.find_duplicate(&other).unwrap().is_none(), "{other:?}");
    }
    let row = s.inbound(id).unwrap().expect("row");
    assert_eq!((row.raw, row.ack), (first.raw.to_vec(), first.ack.clone()));
    assert_eq!(row.status, InboundStatus::Committed);
    assert_eq!(row.peer_ip.as_deref(), Some("10.1.2.3"));
    assert_eq!(row.record, first.record);
    assert_eq!(row.sink, "inbox");
    assert_eq!(
        row.received_at,
        hl7gw_runtime::store::timestamp::from_system(first.received_at)
    );
    assert!(s.inbound(id + 1000).unwrap().is_none());
    // Another connection (process, replica) sees the same.
    let other = db.open();
    assert_eq!(
        other
            .blocking()
            .find_duplicate(&first.key)
            .unwrap()
            .unwrap()
            .id,
        id
    );
}

fn error_and_reject_rows_are_audit_only(db: &Db) {
    let store = db.open();
    let s = store.blocking();
    let ae = record("MSG7", AckCode::ApplicationError, SinkKind::Inbox);
    let ar = record("MSG7", AckCode::ApplicationReject, SinkKind::Inbox);
    let ae_id = committed(s.commit_inbound(&ae).unwrap());
    let ar_id = committed(s.commit_inbound(&ar).unwrap());
    assert_ne!(ae_id, ar_id);
    assert!(s.find_duplicate(&ae.key).unwrap().is_none());
    assert_eq!(
        s.inbound(ae_id).unwrap().unwrap().status,
        InboundStatus::Error
    );
    assert_eq!(
        s.inbound(ar_id).unwrap().unwrap().status,
        InboundStatus::Rejected
    );
    let fixed = record("MSG7", AckCode::ApplicationAccept, SinkKind::Inbox);
    committed(s.commit_inbound(&fixed).unwrap());
    let listed: Vec<i64> = s
        .inbox_list(0, 100, true)
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(listed.len(), 1);
    assert!(!listed.contains(&ae_id) && !listed.contains(&ar_id));
}

fn a_committed_message_needs_a_control_id(db: &Db) {
    let store = db.open();
    let mut rec = record("", AckCode::ApplicationAccept, SinkKind::Inbox);
    rec.key.control_id.clear();
    assert!(matches!(
        store.blocking().commit_inbound(&rec),
        Err(StoreError::MissingControlId)
    ));
    let ar = record("", AckCode::ApplicationReject, SinkKind::Inbox);
    assert!(store.blocking().commit_inbound(&ar).is_ok());
}

fn concurrent_commits_of_one_key_from_two_connections_commit_once(db: &Db) {
    let stores = [db.open(), db.open()];
    for round in 0..10 {
        let barrier = Arc::new(Barrier::new(2));
        let control_id = format!("RACE{round}");
        let handles: Vec<_> = stores
            .iter()
            .map(|store| {
                let store = store.clone();
                let barrier = Arc::clone(&barrier);
                let rec = record(&control_id, AckCode::ApplicationAccept, SinkKind::Inbox);
                std::thread::spawn(move || {
                    barrier.wait();
                    store.blocking().commit_inbound(&rec).unwrap()
                })
            })
            .collect();
        let results: Vec<CommitResult> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let ids: Vec<i64> = results
            .iter()
            .filter_map(|r| match r {
                CommitResult::Committed(id) => Some(*id),
                CommitResult::Duplicate(_) => None,
            })
            .collect();
        assert_eq!(ids.len(), 1, "round {round}: {results:?}");
        let Some(CommitResult::Duplicate(original)) = results
            .iter()
            .find(|r| matches!(r, CommitResult::Duplicate(_)))
        else {
            panic!("round {round}: the other one is a duplicate: {results:?}");
        };
        // Both callers answer the same stored ACK.
        assert_eq!(original.id, ids[0]);
        let row = stores[0].blocking().inbound(ids[0]).unwrap().unwrap();
        assert_eq!(original.ack, row.ack);
    }
}

fn concurrent_async_commits_of_one_key_commit_once(db: &Db) {
    let stores = [db.open(), db.open()];
    runtime().block_on(async {
        let tasks: Vec<_> = (0..8)
            .map(|n| {
                let store = stores[n % 2].clone();
                tokio::spawn(async move {
                    store
                        .commit_inbound(record(
                            "ASYNC1",
                            AckCode::ApplicationAccept,
                            SinkKind::Inbox,
                        ))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let (mut commits, mut duplicates) = (0, 0);
        for task in tasks {
            match tokio::time::timeout(LIMIT, task).await.unwrap().unwrap() {
                CommitResult::Committed(_) => commits += 1,
                CommitResult::Duplicate(_) => duplicates += 1,
            }
        }
        assert_eq!((commits, duplicates), (1, 7));
    });
}

fn prune_keeps_unacknowledged_inbox_rows_and_pending_messages(db: &Db) {
    let store = db.open();
    let s = store.blocking();
    let old = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let cutoff = old + Duration::from_secs(86_400);
    let commit = |id: &str, code, sink, at| {
        committed(s.commit_inbound(&record_at(id, code, sink, at)).unwrap())
    };
    let old_taken = commit("P1", AckCode::ApplicationAccept, SinkKind::Inbox, old);
    let old_pending = commit("P2", AckCode::ApplicationAccept, SinkKind::Inbox, old);
    let old_webhook = commit("P3", AckCode::ApplicationAccept, SinkKind::Webhook, old);
    let old_error = commit("P4", AckCode::ApplicationError, SinkKind::Inbox, old);
    let new_taken = commit(
        "P5",
        AckCode::ApplicationAccept,
        SinkKind::Inbox,
        SystemTime::now(),
    );
    assert!(s.inbox_ack(old_taken).unwrap().is_some());
    assert!(s.inbox_ack(new_taken).unwrap().is_some());
    assert_eq!(s.inbox_pending().unwrap(), 1);
    // A queued message is never pruned, however old the cutoff.
    let queue = Queue::new(store.clone());
    queue
        .blocking()
        .enqueue("trust", &raw_message("EMS", "Q1"))
        .unwrap();

    let pruned = s.prune_before(cutoff).unwrap();
    assert_eq!((pruned.inbound, pruned.outbound), (3, 0));
    for gone in [old_taken, old_webhook, old_error] {
        assert!(s.inbound(gone).unwrap().is_none(), "row {gone} pruned");
    }
    for kept in [old_pending, new_taken] {
        assert!(s.inbound(kept).unwrap().is_some(), "row {kept} kept");
    }
    assert!(
        s.find_duplicate(&DedupKey::new("EPIC", "RX1", "P1"))
            .unwrap()
            .is_none()
    );
    let pruned = s.prune(Duration::ZERO).unwrap();
    assert_eq!(pruned.outbound, 0, "a pending message is never pruned");
    assert_eq!(queue.blocking().status("trust").unwrap().depth, 1);
    // Ids are never reused after a prune, so an inbox cursor cannot skip a row.
    let next = commit(
        "P6",
        AckCode::ApplicationAccept,
        SinkKind::Inbox,
        SystemTime::now(),
    );
    assert!(next > new_taken);
    // In batches: more than one batch of 1000 goes in one call.
    for n in 0..1_100 {
        commit(
            &format!("B{n}"),
            AckCode::ApplicationAccept,
            SinkKind::Webhook,
            old,
        );
    }
    assert_eq!(s.prune_before(cutoff).unwrap().inbound, 1_100);
}

fn the_inbox_lists_after_a_cursor_fetches_and_acknowledges_once(db: &Db) {
    let store = db.open();
    runtime().block_on(async {
        let mut ids = Vec::new();
        for n in 1..=3 {
            let rec = record(
                &format!("IN{n}"),
                AckCode::ApplicationAccept,
                SinkKind::Inbox,
            );
            ids.push(committed(store.commit_inbound(rec).await.unwrap()));
        }
        let webhook = record("W1", AckCode::ApplicationAccept, SinkKind::Webhook);
        let webhook_id = committed(store.commit_inbound(webhook).await.unwrap());
        assert_eq!(store.inbox_pending().await.unwrap(), 3);
        let listed = store.inbox_list(0, 2, false).await.unwrap();
        assert_eq!(
            listed.iter().map(|i| i.id).collect::<Vec<_>>(),
            ids[..2].to_vec()
        );
        assert_eq!(listed[0].control_id, "IN1");
        assert_eq!(
            listed[0].record.as_ref().unwrap()["family"],
            serde_json::json!("SMITH")
        );
        let after = store.inbox_list(listed[1].id, 10, false).await.unwrap();
        assert_eq!(after.iter().map(|i| i.id).collect::<Vec<_>>(), vec![ids[2]]);
        let entry = store.inbox_get(ids[0]).await.unwrap().unwrap();
        assert_eq!(entry.raw, raw_message("EPIC", "IN1"));
        assert!(store.inbox_get(webhook_id).await.unwrap().is_none());
        let first = store
            .inbox_ack(ids[0])
            .await
            .unwrap()
            .expect("acknowledged");
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(store.inbox_ack(ids[0]).await.unwrap(), Some(first));
        assert_eq!(store.inbox_ack(webhook_id).await.unwrap(), None);
        assert_eq!(store.inbox_pending().await.unwrap(), 2);
        let unacked = store.inbox_list(0, 10, false).await.unwrap();
        assert_eq!(unacked.len(), 2);
        let all = store.inbox_list(0, 10, true).await.unwrap();
        assert_eq!(all[0].acknowledged_at, Some(first));
    });
}

fn the_store_reports_whether_it_takes_writes(db: &Db) {
    let store = db.open();
    store.blocking().check_writable().unwrap();
    runtime().block_on(async { store.check_writable().await.unwrap() });
    // Reopening applies nothing and keeps the rows.
    let id = committed(
        store
            .blocking()
            .commit_inbound(&record("R1", AckCode::ApplicationAccept, SinkKind::Inbox))
            .unwrap(),
    );
    drop(store);
    assert!(db.open().blocking().inbound(id).unwrap().is_some());
}

/// Under a steady stream of inbound commits the group writer never runs out of work; the
/// store's other writers (the health check here; the inbox and the outbound queue share the
/// same connection on SQLite) must still get their turn, within a group or two. On SQLite
/// this holds because the writer lets go of the connection after every group: a writer
/// keeping it from one group to the next makes this test fail (checks waiting 2–4 s).
fn the_stores_other_writers_get_their_turn_while_inbound_commits_stream_in(db: &Db) {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    let store = db.open();
    let rt = runtime();
    let stop = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(AtomicU32::new(0));
    let senders: Vec<_> = (0..16)
        .map(|sender| {
            let (store, stop, committed) = (store.clone(), stop.clone(), committed.clone());
            rt.spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("LOAD-{sender}-{n}");
                    let rec = record(&key, AckCode::ApplicationAccept, SinkKind::Inbox);
                    store.commit_inbound(rec).await.unwrap();
                    committed.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
            })
        })
        .collect();
    // The stream is flowing.
    let started = std::time::Instant::now();
    while committed.load(Ordering::Relaxed) < 200 {
        assert!(started.elapsed() < LIMIT, "the commits did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    let (done, checks) = std::sync::mpsc::channel();
    let checker = {
        let store = store.clone();
        std::thread::spawn(move || {
            let mut slowest = Duration::ZERO;
            for _ in 0..10 {
                let t = std::time::Instant::now();
                store.blocking().check_writable().unwrap();
                slowest = slowest.max(t.elapsed());
            }
            let _ = done.send(());
            slowest
        })
    };
    // Bounded: a starved check finishes once the stream stops, and then shows how long it
    // waited.
    let _ = checks.recv_timeout(Duration::from_secs(4));
    stop.store(true, Ordering::Relaxed);
    let slowest = checker.join().unwrap();
    rt.block_on(async {
        for sender in senders {
            tokio::time::timeout(LIMIT, sender).await.unwrap().unwrap();
        }
    });
    assert!(
        slowest < Duration::from_secs(1),
        "a health check waited {slowest:?} behind the group writer ({} commits meanwhile)",
        committed.load(Ordering::Relaxed)
    );
}

// ---------------------------------------------------------------------------------------
// Group commit
// ---------------------------------------------------------------------------------------

/// How long the commits started while the writer is held get to reach the store's queue.
const QUEUE_UP: Duration = Duration::from_millis(500);

/// Commits `records` concurrently (async, as the receiver does) while another connection
/// holds the writer: a first commit alone, which takes the writer's turn and waits, then the
/// rest, which queue behind it and become the next group. Returns the results in the order
/// of `records` (the first one's first).
fn commit_queued(
    db: &Db,
    store: &Store,
    records: Vec<InboundRecord>,
) -> Vec<Result<CommitResult, StoreError>> {
    let hold = db.hold_writer();
    let rt = runtime();
    let mut records = records.into_iter();
    let first = records.next().unwrap();
    let first = {
        let store = store.clone();
        rt.spawn(async move { store.commit_inbound(first).await })
    };
    std::thread::sleep(QUEUE_UP);
    let rest: Vec<_> = records
        .map(|record| {
            let store = store.clone();
            rt.spawn(async move { store.commit_inbound(record).await })
        })
        .collect();
    std::thread::sleep(QUEUE_UP);
    hold.release();
    rt.block_on(async {
        let mut results = vec![tokio::time::timeout(LIMIT, first).await.unwrap().unwrap()];
        for task in rest {
            results.push(tokio::time::timeout(LIMIT, task).await.unwrap().unwrap());
        }
        results
    })
}

fn concurrent_commits_share_transactions_and_each_gets_its_own_ack(db: &Db) {
    let store = db.open();
    let stats = store.commit_group_stats();
    let (groups, messages) = (stats.groups(), stats.messages());
    let records: Vec<InboundRecord> = (0..32)
        .map(|n| {
            record(
                &format!("GRP{n}"),
                AckCode::ApplicationAccept,
                SinkKind::Inbox,
            )
        })
        .collect();
    let results = commit_queued(db, &store, records.clone());
    // The first alone, the 31 queued behind it in one transaction.
    assert_eq!(stats.messages() - messages, 32);
    assert_eq!(stats.groups() - groups, 2, "{:?}", stats.buckets());
    // As an operator sees it.
    let metrics = hl7gw_runtime::metrics::Metrics::new();
    metrics.watch_commit_groups(store.commit_group_stats());
    let text = metrics.render();
    for line in [
        "hl7gw_store_commit_group_size_bucket{le=\"1\"} 1\n",
        "hl7gw_store_commit_group_size_bucket{le=\"16\"} 1\n",
        "hl7gw_store_commit_group_size_bucket{le=\"32\"} 2\n",
        "hl7gw_store_commit_group_size_bucket{le=\"+Inf\"} 2\n",
        "hl7gw_store_commit_group_size_sum 32\n",
        "hl7gw_store_commit_group_size_count 2\n",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    let mut ids = std::collections::BTreeSet::new();
    for (rec, result) in records.iter().zip(results) {
        let id = committed(result.unwrap());
        assert!(ids.insert(id), "ids are distinct");
        // Every caller's answer is its own row: its key and its ACK.
        let row = store.blocking().inbound(id).unwrap().unwrap();
        assert_eq!(row.key, rec.key);
        assert_eq!(row.ack, rec.ack);
        assert_eq!(row.raw, rec.raw);
        let dup = store.blocking().find_duplicate(&rec.key).unwrap().unwrap();
        assert_eq!(dup.id, id);
    }
    // Once more without a held writer: every commit answered, ids still distinct.
    let more: Vec<CommitResult> = runtime().block_on(async {
        let tasks: Vec<_> = (0..32)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move {
                    let rec = record(
                        &format!("FREE{n}"),
                        AckCode::ApplicationAccept,
                        SinkKind::Inbox,
                    );
                    store.commit_inbound(rec).await.unwrap()
                })
            })
            .collect();
        let mut out = Vec::new();
        for task in tasks {
            out.push(tokio::time::timeout(LIMIT, task).await.unwrap().unwrap());
        }
        out
    });
    for result in more {
        assert!(ids.insert(committed(result)));
    }
}

/// A trigger that refuses one control ID row by row: the statement fails, the transaction
/// goes on.
const REFUSE_BAD: (&str, &str) = (
    "CREATE TRIGGER refuse_bad BEFORE INSERT ON inbound_messages
     WHEN NEW.control_id = 'BAD' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
    "CREATE FUNCTION refuse_bad() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       IF NEW.control_id = 'BAD' THEN RAISE EXCEPTION 'refused by the test'; END IF;
       RETURN NEW;
     END $$;
     CREATE TRIGGER refuse_bad BEFORE INSERT ON inbound_messages
       FOR EACH ROW EXECUTE FUNCTION refuse_bad();",
);

fn a_member_the_database_refuses_fails_alone(db: &Db) {
    let store = db.open();
    db.execute(REFUSE_BAD.0, REFUSE_BAD.1);
    let records: Vec<InboundRecord> = ["FIRST", "OK1", "BAD", "OK2", "OK3"]
        .iter()
        .map(|id| record(id, AckCode::ApplicationAccept, SinkKind::Inbox))
        .collect();
    let results = commit_queued(db, &store, records.clone());
    for (rec, result) in records.iter().zip(results) {
        let found = store.blocking().find_duplicate(&rec.key).unwrap();
        if rec.key.control_id == "BAD" {
            let error = result.unwrap_err().to_string();
            assert!(error.contains("refused by the test"), "{error}");
            assert!(found.is_none());
        } else {
            let id = committed(result.unwrap());
            assert_eq!(found.unwrap().id, id);
        }
    }
}

/// A trigger that dooms the whole transaction when one control ID is in it: SQLite rolls it
/// back at once (`RAISE(ROLLBACK)`), PostgreSQL refuses its commit (a deferred constraint
/// trigger).
const DOOM: (&str, &str) = (
    "CREATE TRIGGER doom BEFORE INSERT ON inbound_messages
     WHEN NEW.control_id = 'DOOM' BEGIN SELECT RAISE(ROLLBACK, 'doomed by the test'); END;",
    "CREATE FUNCTION doom() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       IF NEW.control_id = 'DOOM' THEN RAISE EXCEPTION 'doomed by the test'; END IF;
       RETURN NULL;
     END $$;
     CREATE CONSTRAINT TRIGGER doom AFTER INSERT ON inbound_messages
       DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION doom();",
);

fn a_failed_group_fails_every_member_and_no_other_group(db: &Db) {
    let store = db.open();
    db.execute(DOOM.0, DOOM.1);
    let stats = store.commit_group_stats();
    let groups = stats.groups();
    let records: Vec<InboundRecord> = ["BEFORE", "G1", "G2", "DOOM", "G3", "G4"]
        .iter()
        .map(|id| record(id, AckCode::ApplicationAccept, SinkKind::Inbox))
        .collect();
    let results = commit_queued(db, &store, records.clone());
    assert_eq!(stats.groups() - groups, 2);
    let mut results = results.into_iter();
    // The group before it committed.
    let before = committed(results.next().unwrap().unwrap());
    assert!(store.blocking().inbound(before).unwrap().is_some());
    // Every member of the doomed group failed, and none of them was written.
    for (rec, result) in records.iter().skip(1).zip(results) {
        match result {
            Err(StoreError::GroupCommit { size, reason }) => {
                assert_eq!(size, 5);
                assert!(reason.contains("doomed by the test"), "{reason}");
            }
            other => panic!("{}: expected the group's failure, got {other:?}", rec.key),
        }
        assert!(store.blocking().find_duplicate(&rec.key).unwrap().is_none());
    }
    // The next group is not affected: the same messages, sent again without DOOM, commit.
    let retried: Vec<InboundRecord> = records
        .iter()
        .skip(1)
        .filter(|r| r.key.control_id != "DOOM")
        .cloned()
        .collect();
    let results = commit_queued(db, &store, retried.clone());
    for (rec, result) in retried.iter().zip(results) {
        let id = committed(result.unwrap());
        assert_eq!(store.blocking().inbound(id).unwrap().unwrap().key, rec.key);
    }
}

/// A record of `len` bytes: the message with an NTE padded to that length.
fn large_record(control_id: &str, len: usize) -> InboundRecord {
    let mut record = record(control_id, AckCode::ApplicationAccept, SinkKind::Inbox);
    let mut raw = record.raw.to_vec();
    raw.extend_from_slice(b"NTE|1||");
    // Bytes that differ from one place to the next, so a misplaced chunk shows.
    let mut n = 0u32;
    while raw.len() < len - 1 {
        n = n.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        raw.push(b'A' + (n >> 27) as u8 % 26);
    }
    raw.push(b'\r');
    record.raw = raw.into();
    record
}

/// Messages of 64 KiB and more are written into their row in pieces on SQLite
/// (`sqlite/inbound.rs`), smaller ones bound whole: both read back as sent, alone and in one
/// group, and a repeat of a large one is still recognised by its digest.
fn large_messages_are_stored_byte_for_byte_alone_and_in_a_group(db: &Db) {
    let store = db.open();
    let s = store.blocking();
    let alone = large_record("BIG-0", 3 << 20);
    let id = committed(s.commit_inbound(&alone).unwrap());
    assert_eq!(s.inbound(id).unwrap().expect("row").raw, alone.raw.to_vec());
    match s.commit_inbound(&alone).unwrap() {
        CommitResult::Duplicate(original) => {
            assert_eq!(original.id, id);
            assert!(original.same_content(&hl7gw_runtime::dedup::digest(&alone.raw)));
        }
        other => panic!("expected a duplicate, got {other:?}"),
    }
    let records = vec![
        large_record("BIG-1", (64 << 10) - 1),
        large_record("BIG-2", 64 << 10),
        record("SMALL-3", AckCode::ApplicationAccept, SinkKind::Inbox),
        large_record("BIG-4", 1 << 20),
    ];
    let results = commit_queued(db, &store, records.clone());
    for (record, result) in records.iter().zip(results) {
        let id = committed(result.unwrap());
        let row = s.inbound(id).unwrap().expect("row");
        assert_eq!(row.key, record.key);
        assert!(row.raw == record.raw, "{} read back as sent", record.key);
    }
}

fn two_copies_of_one_key_in_one_group_commit_once(db: &Db) {
    let store = db.open();
    let copy = record("TWICE", AckCode::ApplicationAccept, SinkKind::Inbox);
    let mut other_content = copy.clone();
    other_content.raw = [&copy.raw[..], b"NTE|1||changed\r"].concat().into();
    let records = vec![
        record("PILOT", AckCode::ApplicationAccept, SinkKind::Inbox),
        copy.clone(),
        record("ONCE", AckCode::ApplicationAccept, SinkKind::Inbox),
        copy.clone(),
        other_content,
    ];
    let results: Vec<CommitResult> = commit_queued(db, &store, records)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let twice: Vec<&CommitResult> = [&results[1], &results[3], &results[4]].into();
    let winners: Vec<i64> = twice
        .iter()
        .filter_map(|r| match r {
            CommitResult::Committed(id) => Some(*id),
            CommitResult::Duplicate(_) => None,
        })
        .collect();
    assert_eq!(winners.len(), 1, "{twice:?}");
    let row = store.blocking().inbound(winners[0]).unwrap().unwrap();
    for result in twice {
        if let CommitResult::Duplicate(original) = result {
            // The others are answered the winner's stored ACK and digest: the receiver
            // answers a same-content copy this ACK and the changed one AR.
            assert_eq!(original.id, winners[0]);
            assert_eq!(original.ack, row.ack);
        }
    }
    committed(results[0].clone());
    committed(results[2].clone());
}

// ---------------------------------------------------------------------------------------
// The outbound queue
// ---------------------------------------------------------------------------------------

fn the_queue_keeps_order_refuses_reused_control_ids_and_checks_idempotency_keys(db: &Db) {
    let store = db.open();
    let queue = Queue::new(store.clone());
    let q = queue.blocking();
    let first = q.enqueue("trust", &raw_message("EMS", "O1")).unwrap();
    let rest = q
        .enqueue_all(
            "trust",
            &[raw_message("EMS", "O2"), raw_message("EMS", "O3")],
        )
        .unwrap();
    assert!(first.created && rest.iter().all(|e| e.created));
    assert!(first.id < rest[0].id && rest[0].id < rest[1].id);
    // The same bytes again: the earlier entry; other bytes under the MSH-10: refused.
    let again = q.enqueue("trust", &raw_message("EMS", "O1")).unwrap();
    assert_eq!((again.id, again.created), (first.id, false));
    assert!(matches!(
        q.enqueue("trust", &raw_message("OTHER", "O1")),
        Err(QueueError::DuplicateControlId { existing, .. }) if existing == first.id
    ));
    // Another stream may reuse it.
    assert!(q.enqueue("lab", &raw_message("EMS", "O1")).unwrap().created);
    assert_eq!(q.destinations().unwrap(), vec!["lab", "trust"]);

    let head = q.head("trust").unwrap().unwrap();
    assert_eq!(
        (head.info.id, head.raw),
        (first.id, raw_message("EMS", "O1"))
    );
    let status = q.status("trust").unwrap();
    assert_eq!(status.depth, 3);
    let listed = q
        .list(&ListFilter {
            destination: Some("trust".into()),
            states: vec![MessageState::Queued],
            ..ListFilter::default()
        })
        .unwrap();
    assert_eq!(listed.len(), 3);
    // Skip the head: kept, the next one is the head.
    let skipped = q
        .skip(first.id, &Operator::cli(Some("wrong patient")))
        .unwrap();
    assert_eq!(skipped.state, MessageState::Skipped);
    assert_eq!(
        skipped.skip_reason.as_deref(),
        Some("skipped by an operator: wrong patient")
    );
    assert_eq!(q.head("trust").unwrap().unwrap().info.id, rest[0].id);
    assert!(matches!(
        q.skip(first.id, &Operator::cli(None)),
        Err(QueueError::NotPending {
            state: MessageState::Skipped,
            ..
        })
    ));
    assert!(matches!(
        q.retry(99_999, &Operator::cli(None)),
        Err(QueueError::NotFound(99_999))
    ));
    let shown = q.show(first.id).unwrap().unwrap();
    assert_eq!(shown.raw, raw_message("EMS", "O1"));

    // Idempotency keys, from two connections at once: queued once.
    let key = hl7gw_runtime::queue::IdempotencyKey {
        key: "req-1".into(),
        request_sha256: "ab".repeat(32),
    };
    let stores = [db.open(), db.open()];
    let results = runtime().block_on(async {
        let tasks: Vec<_> = stores
            .iter()
            .map(|store| {
                let queue = Queue::new(store.clone());
                let key = key.clone();
                tokio::spawn(async move {
                    queue
                        .enqueue_idempotent("trust", raw_message("EMS", "I1"), key)
                        .await
                })
            })
            .collect();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap().unwrap());
        }
        results
    });
    assert_eq!(results[0].id, results[1].id);
    assert_eq!(results.iter().filter(|e| e.created).count(), 1);
    let conflict = runtime().block_on(queue.enqueue_idempotent(
        "trust",
        raw_message("EMS", "I2"),
        hl7gw_runtime::queue::IdempotencyKey {
            key: "req-1".into(),
            request_sha256: "cd".repeat(32),
        },
    ));
    assert!(matches!(
        conflict,
        Err(QueueError::IdempotencyConflict { .. })
    ));
}

/// A receiving peer in this process: records the MSH-10s it is sent and answers AA; never
/// answers the message `hang_on` (a leader killed while it waits for that ACK).
#[derive(Clone, Default)]
struct Peer {
    seen: Arc<Mutex<Vec<String>>>,
    hang_on: Option<String>,
}

impl Transport for Peer {
    fn send(&mut self, message: &Outgoing<'_>) -> impl Future<Output = Outcome> + Send {
        let control_id = message.control_id.to_owned();
        let peer = self.clone();
        async move {
            peer.seen.lock().unwrap().push(control_id.clone());
            if peer.hang_on.as_deref() == Some(control_id.as_str()) {
                std::future::pending::<()>().await;
            }
            Outcome::accepted(200, AckCode::ApplicationAccept, "")
        }
    }
}

/// A sequencer of stream `trust` in `queue` sending to `peer`, as replica `holder` with this
/// lease, re-reading the store every 20 ms, on its own task. It stops cleanly (releasing its
/// lease) when `stop` is sent or dropped; aborting `task` kills it (the lease lapses).
struct Running {
    task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
    events: mpsc::UnboundedReceiver<SequencerEvent>,
}

fn run_sequencer(queue: &Queue, peer: Peer, holder: &str, lease: Duration) -> Running {
    let (events, received) = mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sequencer = Sequencer::new(queue.clone(), "trust", peer, Policies::default())
        .with_poll_interval(Duration::from_millis(20))
        .with_lease(lease)
        .with_holder(holder)
        .with_events(events);
    let task = tokio::spawn(sequencer.run(async {
        let _ = stopped.await;
    }));
    Running {
        task,
        stop,
        events: received,
    }
}

impl Running {
    /// Waits (bounded) for `n` more deliveries; the other events on the way.
    async fn delivered(&mut self, n: usize) -> Vec<SequencerEvent> {
        let mut others = Vec::new();
        let mut delivered = 0;
        while delivered < n {
            match tokio::time::timeout(LIMIT, self.events.recv())
                .await
                .unwrap()
            {
                Some(SequencerEvent::Delivered { .. }) => delivered += 1,
                Some(event) => others.push(event),
                None => panic!("the sequencer ended"),
            }
        }
        others
    }
}

fn a_sequencer_delivers_the_stream_in_order(db: &Db) {
    let store = db.open();
    let queue = Queue::new(store.clone());
    let ids: Vec<String> = (1..=20).map(|n| format!("S{n:02}")).collect();
    let raws: Vec<Vec<u8>> = ids.iter().map(|id| raw_message("EMS", id)).collect();
    queue.blocking().enqueue_all("trust", &raws).unwrap();
    runtime().block_on(async {
        let peer = Peer::default();
        let lease = hl7gw_runtime::config::defaults::STREAM_LEASE.to_std();
        let mut running = run_sequencer(&queue, peer.clone(), "replica", lease);
        running.delivered(ids.len()).await;
        let _ = running.stop.send(());
        tokio::time::timeout(LIMIT, running.task)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(*peer.seen.lock().unwrap(), ids);
        let status = queue.status("trust").await.unwrap();
        assert_eq!((status.depth, status.delivered), (0, 20));
        // One commit per delivery: the commit that recorded a message's ACK also marked the
        // next one in flight, so the next one's first attempt is that very instant.
        let mut rows = queue
            .list(ListFilter {
                destination: Some("trust".into()),
                ..ListFilter::default()
            })
            .await
            .unwrap();
        rows.sort_by_key(|m| m.id);
        assert_eq!(rows.len(), 20);
        for pair in rows.windows(2) {
            assert_eq!(pair[0].state, MessageState::Delivered);
            assert_eq!(pair[1].attempts, 1);
            assert!(pair[0].delivered_at.is_some());
            assert_eq!(
                pair[1].first_attempt_at, pair[0].delivered_at,
                "message {} began in the commit that delivered {}",
                pair[1].id, pair[0].id
            );
        }
        // The console's last hour counts the deliveries and the engine's ACKs.
        let activity = store.activity().await.unwrap();
        assert_eq!((activity.sent, activity.responses.aa), (20, 20));
        assert_eq!(activity.slots.iter().map(|s| s.sent).sum::<u64>(), 20);
    });
}

/// A retry or skip is written to the audit trail with who, from where and why, in the
/// transaction that changes the message; a refused one leaves no row. Opening a message is
/// recorded too. The last hour counts inbound rows by the ACK they were answered.
fn operator_actions_are_audited_and_the_last_hour_counted(db: &Db) {
    let store = db.open();
    let q = Queue::new(store.clone());
    let first = q
        .blocking()
        .enqueue("trust", &raw_message("EMS", "A1"))
        .unwrap();
    q.blocking()
        .enqueue("lab", &raw_message("EMS", "B1"))
        .unwrap();
    let ann = Operator::new("ann", "127.0.0.1:5000", "wrong ward", true).unwrap();
    let skipped = q.blocking().skip(first.id, &ann).unwrap();
    assert_eq!(
        skipped.skip_reason.as_deref(),
        Some("skipped by an operator: wrong ward")
    );
    // Refused (already skipped): nothing recorded.
    let bob = Operator::new("bob", "127.0.0.1:5001", "again", true).unwrap();
    assert!(q.blocking().retry(first.id, &bob).is_err());
    let opened = store
        .blocking()
        .audit_open(first.id, &bob, hl7gw_runtime::store::timestamp::now())
        .unwrap();
    assert_eq!(opened.unwrap().raw, raw_message("EMS", "A1"));
    assert!(
        store
            .blocking()
            .audit_open(99_999, &bob, hl7gw_runtime::store::timestamp::now())
            .unwrap()
            .is_none()
    );
    // Another connection (another process or replica) reads the same trail.
    let other = db.open();
    let trail = other.blocking().audit_list(Some("trust"), 10).unwrap();
    let seen: Vec<_> = trail
        .iter()
        .map(|e| {
            (
                e.action.as_str(),
                e.operator.as_str(),
                e.peer.as_str(),
                e.reason.as_str(),
                e.control_id.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("open", "bob", "127.0.0.1:5001", "again", "A1"),
            ("skip", "ann", "127.0.0.1:5000", "wrong ward", "A1"),
        ]
    );
    assert!(trail[0].id > trail[1].id && trail[0].at >= trail[1].at);
    assert!(
        other
            .blocking()
            .audit_list(Some("lab"), 10)
            .unwrap()
            .is_empty()
    );

    for (id, code) in [
        ("I1", AckCode::ApplicationAccept),
        ("I2", AckCode::ApplicationError),
        ("I3", AckCode::ApplicationReject),
    ] {
        store
            .blocking()
            .commit_inbound(&record(id, code, SinkKind::Inbox))
            .unwrap();
    }
    // Two hours ago: outside the last hour.
    let old = SystemTime::now() - Duration::from_secs(7200);
    store
        .blocking()
        .commit_inbound(&record_at(
            "I0",
            AckCode::ApplicationAccept,
            SinkKind::Inbox,
            old,
        ))
        .unwrap();
    let activity = runtime().block_on(other.activity()).unwrap();
    assert_eq!(activity.received, 3);
    assert_eq!(
        (
            activity.answered.aa,
            activity.answered.ae,
            activity.answered.ar
        ),
        (1, 1, 1)
    );
    // Per slot they may straddle a ten-minute boundary; all three are in the last hour's.
    assert_eq!(activity.slots.iter().map(|s| s.received).sum::<u64>(), 3);
    assert_eq!(activity.sent, 0);
}

// ---------------------------------------------------------------------------------------
// PostgreSQL only: migrations, refusals, leases
// ---------------------------------------------------------------------------------------

#[test]
fn replicas_opening_a_new_database_together_migrate_it_once() {
    let Some(server) = TestPostgres::shared("replicas_opening_a_new_database_together") else {
        return;
    };
    let options = options(server, &server.create_database("migrate_once"));
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (options, barrier) = (options.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                Store::open_postgres(&options).map(drop)
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap().unwrap();
    }
    let latest = hl7gw_runtime::store::postgres_schema::latest_version();
    assert_eq!(
        server.psql(
            &options.dbname,
            "SELECT COUNT(*), MAX(version) FROM schema_migrations"
        ),
        format!("{latest}|{latest}")
    );
    let store = Store::open_postgres(&options).unwrap();
    assert_eq!(store.blocking().pragmas().unwrap().schema_version, latest);
    assert_eq!(
        store.path().display().to_string(),
        format!(
            "postgresql://{}@127.0.0.1:{}/{}",
            pg::USER,
            server.port(),
            options.dbname
        )
    );
}

#[test]
fn a_newer_schema_or_a_foreign_database_is_refused() {
    let Some(server) = TestPostgres::shared("a_newer_schema_or_a_foreign_database") else {
        return;
    };
    let newer = options(server, &server.create_database("newer"));
    drop(Store::open_postgres(&newer).unwrap());
    server.psql(
        &newer.dbname,
        "INSERT INTO schema_migrations (version, description, applied_at) VALUES (999, 'future', 'x')",
    );
    let err = Store::open_postgres(&newer).unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found: 999, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("newer than this gateway knows"),
        "{err}"
    );

    let foreign = options(server, &server.create_database("foreign"));
    server.psql(
        &foreign.dbname,
        "CREATE TABLE patients (id INTEGER PRIMARY KEY)",
    );
    let err = Store::open_postgres(&foreign).unwrap_err();
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err}");
    assert!(err.to_string().contains("patients"), "{err}");
    // Nothing was created in it.
    assert_eq!(
        server.psql(
            &foreign.dbname,
            "SELECT to_regclass('schema_migrations') IS NULL"
        ),
        "t"
    );
}

#[test]
fn a_wrong_password_or_an_unreachable_server_fails_at_open_with_the_reason() {
    let Some(server) = TestPostgres::shared("a_wrong_password_or_an_unreachable_server") else {
        return;
    };
    let mut wrong = options(server, &server.create_database("wrong_password"));
    wrong.password = Some("not-the-password".into());
    let err = Store::open_postgres(&wrong).unwrap_err();
    assert!(err.to_string().contains("password"), "{err}");
    assert!(!err.to_string().contains("not-the-password"), "{err}");

    let mut unreachable = options(server, "postgres");
    unreachable.port = 1;
    unreachable.connect_timeout = Duration::from_secs(2);
    let started = std::time::Instant::now();
    assert!(Store::open_postgres(&unreachable).is_err());
    assert!(started.elapsed() < Duration::from_secs(10));

    let mut tls = options(server, "postgres");
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate").unwrap();
    tls.tls = PostgresTls::VerifyFull { ca };
    let err = Store::open_postgres(&tls).unwrap_err();
    assert!(err.to_string().contains("tls.ca"), "{err}");
}

#[test]
fn a_lease_is_held_by_one_replica_renewed_and_taken_over_after_expiry() {
    let Some((a, b)) = two_replicas("a_lease_is_held_by_one_replica") else {
        return;
    };
    let short = Duration::from_millis(400);
    // `holder`'s try for the lease: its holder and token when granted.
    let take = |store: &Store, destination: &'static str, holder: &'static str| {
        let store = store.clone();
        async move {
            let lease = store
                .lease_acquire(destination, holder, short)
                .await
                .unwrap();
            lease.map(|l| (l.holder, l.token))
        }
    };
    let granted = |holder: &str, token: i64| Some((holder.to_owned(), token));
    runtime().block_on(async {
        let first = a
            .lease_acquire("trust", "replica-a", short)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((first.holder.as_str(), first.token), ("replica-a", 1));
        // Live: the other replica does not get it; another stream is free.
        assert_eq!(take(&b, "trust", "replica-b").await, None);
        assert_eq!(take(&b, "lab", "replica-b").await, granted("replica-b", 1));
        // The holder renews, keeping its token and since when it leads.
        let renewed = a.lease_renew(&first.fence(), short).await.unwrap().unwrap();
        assert_eq!((renewed.token, renewed.acquired_at), (1, first.acquired_at));
        assert!(renewed.expires_at >= first.expires_at);
        assert_eq!(
            take(&a, "trust", "replica-a").await,
            granted("replica-a", 1)
        );
        // Expired: taken over with a new token; the old holder's renewal fails.
        tokio::time::sleep(short + Duration::from_millis(200)).await;
        let taken = b
            .lease_acquire("trust", "replica-b", short)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((taken.holder.as_str(), taken.token), ("replica-b", 2));
        assert!(
            a.lease_renew(&first.fence(), short)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(take(&a, "trust", "replica-a").await, None);
        // Released: the next replica takes it at once.
        b.lease_release(&taken.fence()).await.unwrap();
        assert_eq!(
            take(&a, "trust", "replica-a").await,
            granted("replica-a", 3)
        );
    });
    let leases = a.blocking().leases().unwrap();
    assert_eq!(
        leases
            .iter()
            .map(|l| (l.destination.as_str(), l.holder.as_str(), l.token))
            .collect::<Vec<_>>(),
        vec![("lab", "replica-b", 1), ("trust", "replica-a", 3)]
    );
}

#[test]
fn another_replica_takes_a_dead_leaders_stream_over_and_resends_only_the_message_in_flight() {
    let Some((a, b)) = two_replicas("another_replica_takes_over") else {
        return;
    };
    let (a, b) = (Queue::new(a), Queue::new(b));
    let ids: Vec<String> = (1..=12).map(|n| format!("T{n:02}")).collect();
    let raws: Vec<Vec<u8>> = ids.iter().map(|id| raw_message("EMS", id)).collect();
    a.blocking().enqueue_all("trust", &raws).unwrap();
    let lease = Duration::from_millis(600);
    runtime().block_on(async {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let peer = |hang_on: Option<&str>| Peer {
            seen: Arc::clone(&seen),
            hang_on: hang_on.map(str::to_owned),
        };
        // A leads and dies waiting for T05's ACK (the task is aborted: no release).
        let mut leader = run_sequencer(&a, peer(Some("T05")), "replica-a", lease);
        match tokio::time::timeout(LIMIT, leader.events.recv())
            .await
            .unwrap()
        {
            Some(SequencerEvent::Leading { token: 1 }) => {}
            other => panic!("A should lead first: {other:?}"),
        }
        let mut follower = run_sequencer(&b, peer(None), "replica-b", lease);
        loop {
            match tokio::time::timeout(LIMIT, leader.events.recv())
                .await
                .unwrap()
            {
                Some(SequencerEvent::Sending { control_id, .. }) if control_id == "T05" => break,
                Some(_) => {}
                None => panic!("A ended"),
            }
        }
        assert_eq!(a.leading("trust").map(|l| l.token), Some(1));
        let killed = std::time::Instant::now();
        leader.task.abort();
        // B takes over once the lease lapsed, resends T05 (same MSH-10) and delivers the rest.
        let events = follower.delivered(8).await;
        let took = killed.elapsed();
        assert!(
            took < lease * 4,
            "takeover took {took:?} with a lease of {lease:?}"
        );
        assert!(
            matches!(events[0], SequencerEvent::Leading { token: 2 }),
            "{events:?}"
        );
        assert!(
            events.iter().any(|e| matches!(
                e,
                SequencerEvent::Resumed { control_id, .. } if control_id == "T05"
            )),
            "{events:?}"
        );
        // `queue status` from another process reads who leads from the lease row.
        let queue = b.clone();
        let status = tokio::task::spawn_blocking(move || queue.blocking().status("trust"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((status.depth, status.delivered), (0, 12));
        let leader = status.leader.expect("B's lease is live");
        assert_eq!((leader.holder.as_str(), leader.token), ("replica-b", 2));
        follower.task.abort();
        let mut expected: Vec<String> = ids[..5].to_vec();
        expected.extend(ids[4..].iter().cloned());
        assert_eq!(*seen.lock().unwrap(), expected, "in order; only T05 twice");
    });
}

#[test]
fn store_migrate_copies_an_sqlite_store_into_an_empty_postgres_store_with_its_ids() {
    let Some(server) = TestPostgres::shared("store_migrate_copies") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::open(dir.path().join("one-box.sqlite")).unwrap();
    let s = sqlite.blocking();
    let old = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut inbound = Vec::new();
    for (n, (code, sink)) in [
        (AckCode::ApplicationAccept, SinkKind::Inbox),
        (AckCode::ApplicationAccept, SinkKind::Webhook),
        (AckCode::ApplicationError, SinkKind::Inbox),
        (AckCode::ApplicationAccept, SinkKind::Inbox),
    ]
    .into_iter()
    .enumerate()
    {
        inbound.push(committed(
            s.commit_inbound(&record(&format!("M{n}"), code, sink))
                .unwrap(),
        ));
    }
    s.inbox_ack(inbound[0]).unwrap();
    // More than one batch of the copy (50 rows).
    for n in 0..55 {
        inbound.push(committed(
            s.commit_inbound(&record(
                &format!("W{n}"),
                AckCode::ApplicationAccept,
                SinkKind::Webhook,
            ))
            .unwrap(),
        ));
    }
    // A pruned row: its id is never handed out again, in SQLite or after the copy.
    let pruned = committed(
        s.commit_inbound(&record_at(
            "OLD",
            AckCode::ApplicationAccept,
            SinkKind::Webhook,
            old,
        ))
        .unwrap(),
    );
    assert_eq!(
        s.prune_before(old + Duration::from_secs(1))
            .unwrap()
            .inbound,
        1
    );
    let queue = Queue::new(sqlite.clone());
    let q = queue.blocking();
    let queued = q
        .enqueue_all(
            "trust",
            &[
                raw_message("EMS", "O1"),
                raw_message("EMS", "O2"),
                raw_message("EMS", "O3"),
            ],
        )
        .unwrap();
    q.skip(queued[0].id, &Operator::cli(Some("duplicate order")))
        .unwrap();
    runtime()
        .block_on(queue.enqueue_idempotent(
            "trust",
            raw_message("EMS", "O4"),
            hl7gw_runtime::queue::IdempotencyKey {
                key: "req-9".into(),
                request_sha256: "ef".repeat(32),
            },
        ))
        .unwrap();
    let before_inbox = s.inbox_list(0, 100, true).unwrap();
    let before_queue = q.list(&ListFilter::default()).unwrap();

    let target_options = options(server, &server.create_database("migrate_target"));
    let target = Store::open_postgres(&target_options).unwrap();
    let copied = target.import_sqlite(&sqlite).unwrap();
    assert_eq!((copied.inbound, copied.outbound, copied.audit), (59, 4, 1));
    // The operators' audit trail comes along, and its ids go on.
    assert_eq!(
        target.blocking().audit_list(None, 10).unwrap(),
        s.audit_list(None, 10).unwrap()
    );
    let t = target.blocking();
    for id in &inbound {
        assert_eq!(t.inbound(*id).unwrap(), s.inbound(*id).unwrap(), "row {id}");
    }
    assert_eq!(t.inbox_list(0, 100, true).unwrap(), before_inbox);
    assert_eq!(t.inbox_pending().unwrap(), s.inbox_pending().unwrap());
    let original = record("M0", AckCode::ApplicationAccept, SinkKind::Inbox);
    assert_eq!(
        t.find_duplicate(&original.key).unwrap().unwrap().id,
        inbound[0]
    );
    let target_queue = Queue::new(target.clone());
    assert_eq!(
        target_queue
            .blocking()
            .list(&ListFilter::default())
            .unwrap(),
        before_queue
    );
    assert_eq!(
        target_queue
            .blocking()
            .show(queued[1].id)
            .unwrap()
            .unwrap()
            .raw,
        raw_message("EMS", "O2")
    );
    // The copied keys still rule: the same idempotency key and MSH-10 find their rows.
    let again = runtime()
        .block_on(target_queue.enqueue_idempotent(
            "trust",
            raw_message("EMS", "O4"),
            hl7gw_runtime::queue::IdempotencyKey {
                key: "req-9".into(),
                request_sha256: "ef".repeat(32),
            },
        ))
        .unwrap();
    assert!(!again.created);
    // New ids go on after the highest the SQLite store ever gave, the pruned one included.
    let next = committed(
        t.commit_inbound(&record("NEW", AckCode::ApplicationAccept, SinkKind::Inbox))
            .unwrap(),
    );
    assert!(next > pruned, "{next} after {pruned}");
    let next_out = target_queue
        .blocking()
        .enqueue("trust", &raw_message("EMS", "O5"))
        .unwrap();
    assert!(next_out.id > queued[2].id);

    // A target that holds anything is refused, and nothing is added to it.
    let err = target.import_sqlite(&sqlite).unwrap_err();
    assert!(matches!(err, StoreError::Migrate(_)), "{err}");
    assert!(err.to_string().contains("empty store only"), "{err}");
    assert_eq!(
        server.psql(
            &target_options.dbname,
            "SELECT COUNT(*) FROM inbound_messages"
        ),
        "60"
    );
    // Only SQLite into PostgreSQL.
    assert!(matches!(
        sqlite.import_sqlite(&target),
        Err(StoreError::Migrate(_))
    ));
}

#[test]
fn the_database_going_away_fails_calls_promptly_and_the_same_store_resumes_when_it_returns() {
    // A server of its own: this test stops it.
    let Some(server) = TestPostgres::start("the_database_going_away") else {
        return;
    };
    let mut options = options(&server, &server.create_database("going_away"));
    options.connect_timeout = Duration::from_secs(2);
    let store = Store::open_postgres(&options).unwrap();
    let queue = Queue::new(store.clone());
    queue
        .blocking()
        .enqueue_all(
            "trust",
            &[raw_message("EMS", "G1"), raw_message("EMS", "G2")],
        )
        .unwrap();
    runtime().block_on(async {
        let peer = Peer::default();
        let mut running = run_sequencer(&queue, peer.clone(), "replica", Duration::from_secs(3));
        running.delivered(2).await;
        // The server goes away: calls fail within the connect timeout, nothing is committed.
        tokio::task::block_in_place(|| server.stop());
        let started = std::time::Instant::now();
        let failed = store
            .commit_inbound(record("DOWN1", AckCode::ApplicationAccept, SinkKind::Inbox))
            .await;
        assert!(
            failed.is_err(),
            "no commit without the database: {failed:?}"
        );
        assert!(store.check_writable().await.is_err());
        assert!(
            queue
                .enqueue("trust", raw_message("EMS", "G9"))
                .await
                .is_err()
        );
        assert!(started.elapsed() < Duration::from_secs(15));
        // Back: the same store (pool) commits again, and the stream goes on.
        tokio::task::block_in_place(|| server.restart());
        let back = tokio::time::timeout(LIMIT, async {
            loop {
                match store
                    .commit_inbound(record("UP1", AckCode::ApplicationAccept, SinkKind::Inbox))
                    .await
                {
                    Ok(result) => return result,
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        })
        .await
        .unwrap();
        committed(back);
        queue
            .enqueue("trust", raw_message("EMS", "G3"))
            .await
            .unwrap();
        running.delivered(1).await;
        running.task.abort();
        assert_eq!(*peer.seen.lock().unwrap(), vec!["G1", "G2", "G3"]);
    });
}

#[test]
fn a_leader_stopping_cleanly_hands_its_stream_over_at_once() {
    let Some((a, b)) = two_replicas("a_leader_stopping_cleanly") else {
        return;
    };
    let (a, b) = (Queue::new(a), Queue::new(b));
    a.blocking()
        .enqueue("trust", &raw_message("EMS", "H1"))
        .unwrap();
    // A lease far longer than the test: only the release lets B in.
    let lease = Duration::from_secs(120);
    runtime().block_on(async {
        let leader = {
            let mut leader = run_sequencer(&a, Peer::default(), "replica-a", lease);
            leader.delivered(1).await;
            leader
        };
        let mut follower = run_sequencer(&b, Peer::default(), "replica-b", lease);
        let _ = leader.stop.send(());
        tokio::time::timeout(LIMIT, leader.task)
            .await
            .unwrap()
            .unwrap();
        let stopped = std::time::Instant::now();
        match tokio::time::timeout(LIMIT, follower.events.recv())
            .await
            .unwrap()
        {
            Some(SequencerEvent::Leading { token: 2 }) => {}
            other => panic!("B should lead next: {other:?}"),
        }
        assert!(stopped.elapsed() < Duration::from_secs(5));
        follower.task.abort();
    });
}
