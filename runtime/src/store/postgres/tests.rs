//! The fencing token against a real PostgreSQL server (`hl7gw_tests::postgres`): a replica
//! whose lease was taken over can neither mark a message in flight nor record an outcome,
//! and what it tried leaves the row as the new leader has it. And the pipelined delivery
//! transaction keeps every answer of the sequential one it replaced, in four round trips.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use hl7gw_tests::postgres::{self as pg, TestPostgres};
use hl7gw_tests::turns::TurnCounter;

use crate::client::{FailureClass, Outcome};
use crate::hl7::AckCode;
use crate::queue::{Action, Event, MessageInfo, MessageState, NewMessage, QueueError, QueueId};
use crate::store::audit::Operator;
use crate::store::{Backend, PostgresOptions, Store, timestamp};

const RAW: &[u8] = b"MSH|^~\\&|GW|EMS|TIE|TRUST|20260101120000||ORU^R01|MSG1|T|2.4\rPID|1\r";

fn options(test: &str) -> Option<PostgresOptions> {
    let server = TestPostgres::shared(test)?;
    let mut options = PostgresOptions::new(server.host(), &server.create_database(test), pg::USER);
    options.port = server.port();
    options.password = Some(pg::PASSWORD.to_owned());
    Some(options)
}

fn open_two(test: &str) -> Option<(Store, Store)> {
    let options = options(test)?;
    Some((
        Store::open_postgres(&options).unwrap(),
        Store::open_postgres(&options).unwrap(),
    ))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_leader_paused_inside_a_transaction_does_not_hold_the_takeover_back() {
    let Some(mut options) = options("paused_inside_a_transaction") else {
        return;
    };
    options.idle_in_transaction_timeout = Duration::from_millis(500);
    let (a, b) = (
        Store::open_postgres(&options).unwrap(),
        Store::open_postgres(&options).unwrap(),
    );
    let Backend::Postgres(a_db) = &a.inner.backend else {
        panic!("a PostgreSQL store");
    };
    let pool = a_db.pool();
    runtime().block_on(async {
        let lease = Duration::from_millis(300);
        let old = a.lease_acquire("trust", "a", lease).await.unwrap().unwrap();
        // A is stopped in the middle of recording: its transaction holds the lease row.
        let mut client = pool.get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        tx.query(
            "SELECT token FROM stream_leases WHERE destination = 'trust' FOR SHARE",
            &[],
        )
        .await
        .unwrap();
        tokio::time::sleep(lease).await;
        // B takes over once the server ended A's idle transaction, not when A resumes.
        let started = std::time::Instant::now();
        let new = tokio::time::timeout(
            Duration::from_secs(10),
            b.lease_acquire("trust", "b", lease),
        )
        .await
        .expect("the takeover does not wait for the paused leader")
        .unwrap()
        .unwrap();
        assert_eq!(new.token, old.token + 1);
        assert!(started.elapsed() < Duration::from_secs(5));
        // A's transaction is gone with its session: it can commit nothing.
        assert!(tx.commit().await.is_err());
    });
}

#[test]
fn a_stale_fencing_token_cannot_send_or_record() {
    let Some((a, b)) = open_two("stale_fencing_token") else {
        return;
    };
    runtime().block_on(async {
        let now = timestamp::now();
        let message = NewMessage {
            control_id: "MSG1".into(),
            message_type: "ORU^R01".into(),
            raw: RAW.to_vec(),
            idempotency: None,
        };
        let id = a
            .queue_enqueue("trust".into(), vec![message], now)
            .await
            .unwrap()[0]
            .id;
        let lease = Duration::from_millis(300);
        let old = a.lease_acquire("trust", "a", lease).await.unwrap().unwrap();
        // The leader marks it in flight under its token.
        let sent = a
            .queue_begin_attempt(id, now, Some(old.fence()))
            .await
            .unwrap();
        assert_eq!(sent.as_deref(), Some(RAW));
        // Paused past its lease; the other replica takes over with a newer token.
        tokio::time::sleep(lease + Duration::from_millis(200)).await;
        let new = b.lease_acquire("trust", "b", lease).await.unwrap().unwrap();
        assert_eq!(new.token, old.token + 1);
        // The old leader wakes up with the engine's ACK: it may not record it...
        let accepted = Outcome::accepted(200, AckCode::ApplicationAccept, "");
        let refused = a
            .queue_record_delivered_then_begin(
                id,
                "trust".into(),
                accepted.clone(),
                now,
                Some(old.fence()),
            )
            .await;
        assert!(
            matches!(refused, Err(QueueError::LeaseLost { token, .. }) if token == old.token),
            "{refused:?}"
        );
        // ... nor a failure, nor start another send, nor recover the stream.
        let failed = Outcome::failed(FailureClass::Http5xx, "HTTP 503");
        let refused = a
            .queue_record_failure(
                id,
                failed,
                now,
                |_| Action::Hold("x".into()),
                Some(old.fence()),
            )
            .await;
        assert!(
            matches!(refused, Err(QueueError::LeaseLost { .. })),
            "{refused:?}"
        );
        let refused = a.queue_begin_attempt(id, now, Some(old.fence())).await;
        assert!(
            matches!(refused, Err(QueueError::LeaseLost { .. })),
            "{refused:?}"
        );
        let refused = a.queue_recover("trust".into(), Some(old.fence())).await;
        assert!(
            matches!(refused, Err(QueueError::LeaseLost { .. })),
            "{refused:?}"
        );
        // Nothing of it reached the row: still in flight, one attempt, no response.
        let row = b.queue_show(id).await.unwrap().unwrap().info;
        assert_eq!((row.state, row.attempts), (MessageState::InFlight, 1));
        assert!(row.last_response.is_none());
        // The new leader resumes it (same message, same MSH-10) and records its ACK.
        let resumed = b
            .queue_recover("trust".into(), Some(new.fence()))
            .await
            .unwrap();
        assert_eq!(resumed.iter().map(|m| m.id).collect::<Vec<_>>(), vec![id]);
        let resent = b
            .queue_begin_attempt(id, now, Some(new.fence()))
            .await
            .unwrap();
        assert_eq!(resent.as_deref(), Some(RAW));
        let (recorded, next) = b
            .queue_record_delivered_then_begin(id, "trust".into(), accepted, now, Some(new.fence()))
            .await
            .unwrap();
        assert!(recorded);
        assert!(next.is_none(), "nothing else is queued");
        let row = a.queue_show(id).await.unwrap().unwrap().info;
        assert_eq!((row.state, row.attempts), (MessageState::Delivered, 2));
    });
}

fn message(control_id: &str) -> NewMessage {
    NewMessage {
        control_id: control_id.into(),
        message_type: "ORU^R01".into(),
        raw: RAW.to_vec(),
        idempotency: None,
    }
}

/// Queues `messages` on stream `trust`; their ids.
async fn enqueue(store: &Store, messages: Vec<NewMessage>) -> Vec<QueueId> {
    let enqueued = store
        .queue_enqueue("trust".into(), messages, timestamp::now())
        .await
        .unwrap();
    enqueued.iter().map(|e| e.id).collect()
}

async fn row(store: &Store, id: QueueId) -> MessageInfo {
    store.queue_show(id).await.unwrap().unwrap().info
}

/// Every answer of `record_delivered_then_begin`: the next head begun (also when it is a lower
/// id than the delivered message), a held or in-flight head left as it is, a repeat or an
/// unknown id refused with nothing written, and a lost lease refused with neither the
/// message nor the next one touched.
#[test]
fn a_delivery_begins_only_a_queued_head_and_a_refused_one_writes_nothing() {
    let Some((a, b)) = open_two("delivery_refusals") else {
        return;
    };
    runtime().block_on(async {
        // Whole seconds from one instant: each time written is read back equal.
        let start = timestamp::now().replace_nanosecond(0).unwrap();
        let at = |s: i64| start + time::Duration::seconds(s);
        let t0 = at(0);
        let ids = enqueue(
            &a,
            ["M1", "M2", "M3", "M4", "M5", "M6"].map(message).to_vec(),
        )
        .await;
        let [m1, m2, m3, m4, m5, m6] = ids[..] else {
            panic!("six ids: {ids:?}");
        };
        let lease = Duration::from_millis(300);
        let old = a.lease_acquire("trust", "a", lease).await.unwrap().unwrap();
        let fence = || Some(old.fence());
        let deliver = |id: QueueId, detail: &'static str, at| {
            let outcome = Outcome::accepted(200, AckCode::ApplicationAccept, detail);
            a.queue_record_delivered_then_begin(id, "trust".into(), outcome, at, fence())
        };

        // M1 in flight, M2 held behind it: delivering M1 leaves the held head as it is.
        a.queue_begin_attempt(m1, t0, fence())
            .await
            .unwrap()
            .unwrap();
        a.queue_begin_attempt(m2, t0, fence())
            .await
            .unwrap()
            .unwrap();
        let failed = Outcome::failed(FailureClass::Http5xx, "HTTP 503");
        a.queue_record_failure(m2, failed, t0, |_| Action::Hold("x".into()), fence())
            .await
            .unwrap();
        let (recorded, next) = deliver(m1, "first", at(1)).await.unwrap();
        assert!(recorded);
        assert!(next.is_none(), "the head is held: {next:?}");
        let delivered = row(&a, m1).await;
        assert_eq!(delivered.state, MessageState::Delivered);
        assert_eq!(delivered.delivered_at, Some(at(1)));
        assert_eq!(delivered.last_response.as_ref().unwrap().text, "first");
        assert_eq!(row(&a, m2).await.state, MessageState::Held);
        assert_eq!(
            (row(&a, m3).await.state, row(&a, m3).await.attempts),
            (MessageState::Queued, 0)
        );

        // Released, M2 is the queued head; a repeat of M1's delivery, or one of a message
        // that is not there, records nothing and begins nothing.
        let by = Operator {
            name: "test".into(),
            peer: "cli".into(),
            reason: "released".into(),
        };
        a.queue_operator(m2, Event::Release { at: at(2) }, by)
            .await
            .unwrap();
        assert_eq!(deliver(m1, "again", at(3)).await.unwrap(), (false, None));
        assert_eq!(
            deliver(QueueId::MAX, "nobody", at(3)).await.unwrap(),
            (false, None)
        );
        let repeated = row(&a, m1).await;
        assert_eq!(repeated.delivered_at, Some(at(1)));
        assert_eq!(repeated.last_response.unwrap().text, "first");
        let m2_row = row(&a, m2).await;
        assert_eq!((m2_row.state, m2_row.attempts), (MessageState::Queued, 1));

        // M4 delivered out of order: the next head is M2, below it, handed back as it was
        // and now in flight from the delivery's instant.
        a.queue_begin_attempt(m4, at(4), fence())
            .await
            .unwrap()
            .unwrap();
        let (recorded, next) = deliver(m4, "fourth", at(5)).await.unwrap();
        assert!(recorded);
        let next = next.expect("the queued head is begun");
        assert_eq!((next.info.id, next.info.state), (m2, MessageState::Queued));
        assert_eq!(next.info.attempts, 1);
        assert_eq!(next.raw, RAW);
        let begun = row(&a, m2).await;
        assert_eq!((begun.state, begun.attempts), (MessageState::InFlight, 2));
        assert_eq!(begun.last_attempt_at, Some(at(5)));
        assert_eq!(row(&a, m4).await.state, MessageState::Delivered);

        // M3 delivered while M2, the head, is in flight: M2 is left as it is.
        a.queue_begin_attempt(m3, at(6), fence())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(deliver(m3, "third", at(7)).await.unwrap(), (true, None));
        let in_flight = row(&a, m2).await;
        assert_eq!(
            (in_flight.state, in_flight.attempts),
            (MessageState::InFlight, 2)
        );

        // M2 delivered: the head is M5, queued, begun.
        let (recorded, next) = deliver(m2, "second", at(8)).await.unwrap();
        assert!(recorded);
        assert_eq!(next.map(|n| n.info.id), Some(m5));

        // The lease taken over while M5 is in flight: its delivery is refused, and neither
        // M5 nor M6, the next head, is touched.
        tokio::time::sleep(lease + Duration::from_millis(200)).await;
        let new = b.lease_acquire("trust", "b", lease).await.unwrap().unwrap();
        assert_eq!(new.token, old.token + 1);
        let refused = deliver(m5, "fifth", at(9)).await;
        assert!(
            matches!(refused, Err(QueueError::LeaseLost { token, .. }) if token == old.token),
            "{refused:?}"
        );
        let m5_row = row(&b, m5).await;
        assert_eq!((m5_row.state, m5_row.attempts), (MessageState::InFlight, 1));
        assert!(m5_row.last_response.is_none());
        let m6_row = row(&b, m6).await;
        assert_eq!((m6_row.state, m6_row.attempts), (MessageState::Queued, 0));
    });
}

/// The sequencer's transactions' sequential round trips to the server, counted by a proxy
/// in front of it: four each (`BEGIN`; the reads, pipelined; the writes, pipelined;
/// `COMMIT`), where one per statement made nine for a delivery and six for a send or a
/// failure. A pipelined batch counts twice when the server's answer to its first statement
/// reached the proxy before the rest were sent (a loaded machine), hence the slack, far from
/// one round trip per statement.
#[test]
fn the_sequencers_transactions_take_four_round_trips_each() {
    let Some(server) = TestPostgres::shared("four_round_trips") else {
        return;
    };
    let counter = TurnCounter::start(server.port());
    let mut options = PostgresOptions::new(
        server.host(),
        &server.create_database("four_round_trips"),
        pg::USER,
    );
    options.port = counter.port();
    options.password = Some(pg::PASSWORD.to_owned());
    let store = Store::open_postgres(&options).unwrap();
    const N: u64 = 40;
    runtime().block_on(async {
        let now = timestamp::now();
        let ids = enqueue(
            &store,
            (0..N + 4).map(|n| message(&format!("R{n}"))).collect(),
        )
        .await;
        let lease = store
            .lease_acquire("trust", "a", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        let fence = || Some(lease.fence());
        let deliver = |id: QueueId| {
            let outcome = Outcome::accepted(200, AckCode::ApplicationAccept, "");
            store.queue_record_delivered_then_begin(id, "trust".into(), outcome, now, fence())
        };
        let (sent, failed) = (ids[ids.len() - 1], ids[0]);
        let retry = |_| Action::Retry(Duration::from_millis(1));
        let fail = || Outcome::failed(FailureClass::Http5xx, "HTTP 503");
        let send_and_fail = async || {
            store
                .queue_begin_attempt(sent, now, fence())
                .await
                .unwrap()
                .unwrap();
            store
                .queue_record_failure(sent, fail(), now, retry, fence())
                .await
                .unwrap();
        };
        // Once first, so that every statement is prepared on the connection.
        send_and_fail().await;
        let before = counter.turns();
        for _ in 0..N / 2 {
            send_and_fail().await;
        }
        let turns = counter.turns() - before;
        assert!(
            (4 * N..=4 * N + N / 4).contains(&turns),
            "{turns} round trips for {} sends and as many failures",
            N / 2
        );

        store
            .queue_begin_attempt(failed, now, fence())
            .await
            .unwrap()
            .unwrap();
        let (_, next) = deliver(failed).await.unwrap();
        let mut current = next.unwrap().info.id;
        let before = counter.turns();
        for _ in 0..N {
            let (recorded, next) = deliver(current).await.unwrap();
            assert!(recorded);
            current = next.expect("the next message begun").info.id;
        }
        let turns = counter.turns() - before;
        assert!(
            (4 * N..=4 * N + N / 4).contains(&turns),
            "{turns} round trips for {N} deliveries"
        );
    });
}
