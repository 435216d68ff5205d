//! The fencing token against a real PostgreSQL server (`hl7gw_tests::postgres`): a replica
//! whose lease was taken over can neither mark a message in flight nor record an outcome,
//! and what it tried leaves the row as the new leader has it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use hl7gw_tests::postgres::{self as pg, TestPostgres};

use crate::client::{FailureClass, Outcome};
use crate::hl7::AckCode;
use crate::queue::{Action, MessageState, NewMessage, QueueError};
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
