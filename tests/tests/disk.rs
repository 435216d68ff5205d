//! The gateway's disk across processes (issue 11, "Disk full and retention").
//!
//! A full disk: the gateway's store on a 2 MiB tmpfs. While the volume is full no message is
//! acknowledged (the receiver's 503 with no ACK, the intake's 503), none is lost and
//! `/healthz` is 503 naming the store; once space returns the same process accepts messages
//! again, with no restart, and `/healthz` is 200. A store whose
//! loose permissions cannot be tightened (a read-only volume) is refused at open with a
//! message saying so. Mounting needs privileges: without them those tests print that they
//! skipped, unless `HL7GW_REQUIRE_TMPFS=1` (`hl7gw_tests::tmpfs`).
//!
//! Retention: a gateway started on a store with old delivered and skipped outbound messages
//! prunes them, and keeps the held one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod receiver_support;

use std::time::Duration;

use hl7gw_runtime::queue::{ListFilter, Queue};
use hl7gw_runtime::store::{Store, StoreError};
use hl7gw_tests::child::{loopback_options, serve_until};
use hl7gw_tests::messages::{self as samples, AckView};
use hl7gw_tests::tmpfs::Tmpfs;
use hl7gw_tests::wire::{self, RawResponse};
use receiver_support::{
    Gateway, GatewayConfig, Spec, child_main, committed, post_to_demo, stored_rows,
};

/// Every test body runs inside this bound.
const TEST_LIMIT: Duration = Duration::from_secs(120);

/// The gateway child's entry point (see `receiver_support`).
#[test]
#[ignore = "runs only as the gateway child process of the other tests"]
fn child_gateway_process() {
    child_main();
}

/// Sends the demo's ADT^A28 with this MSH-10 on a new connection.
async fn send(gw: &Gateway, control_id: &str) -> RawResponse {
    let (message, _) = samples::demo_sample("ADT^A28", control_id).unwrap();
    post_to_demo(gw, &message).await
}

/// The MSA-1 of a 200, or `None` for any other status (and then no ACK in the body).
fn ack_code(response: &RawResponse) -> Option<String> {
    if response.status == 200 {
        let ack = AckView::read(&response.body_text()).expect("a 200 carries an ACK");
        return Some(ack.code().to_owned());
    }
    assert_eq!(response.status, 503, "{}", response.body_text());
    assert!(!response.body_text().contains("MSA"), "no ACK with a 503");
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_messages_and_the_gateway_recovers_when_space_returns() {
    let Some(volume) = Tmpfs::mount("2m", "a_full_disk_refuses_messages") else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    let store = volume.path().join("gateway.sqlite");
    let gw = Gateway::start(
        GatewayConfig::new(Spec::Demo, &store),
        &logs.path().join("gateway.log"),
    );
    tokio::time::timeout(TEST_LIMIT, async {
        let mut acknowledged = Vec::new();
        let first = send(&gw, "FULL-0").await;
        assert_eq!(ack_code(&first).as_deref(), Some("AA"));
        acknowledged.push("FULL-0".to_owned());

        // Something else fills the volume; the gateway keeps answering, but only once a
        // message is on disk.
        assert!(volume.fill("filler") > 0);
        let mut refused = None;
        for n in 1..=400 {
            let id = format!("FULL-{n}");
            match ack_code(&send(&gw, &id).await) {
                Some(code) => {
                    assert_eq!(code, "AA");
                    acknowledged.push(id);
                }
                None => {
                    refused = Some(id);
                    break;
                }
            }
        }
        let refused = refused.expect("a full volume refuses a message within 400");
        // Still full: still refused, again and again, never a false AA.
        for _ in 0..3 {
            assert_eq!(ack_code(&send(&gw, &refused).await), None);
        }
        // A retry of a message committed before is answered with its original ACK, byte for
        // byte, although the store cannot write (its duplicate check is read, not written).
        let retry = send(&gw, "FULL-0").await;
        assert_eq!(retry.status, 200, "{}", retry.body_text());
        assert_eq!(retry.body_text(), first.body_text(), "the original ACK");
        // Also when it shares a group commit with new messages, whose transaction the full
        // disk fails: the retry is answered from the store, the new ones are refused.
        for round in 0..5 {
            let id: Vec<String> = (0..6).map(|n| format!("FULL-NEW-{round}-{n}")).collect();
            let (retry, a, b, c, d, e, f) = tokio::join!(
                send(&gw, "FULL-0"),
                send(&gw, &id[0]),
                send(&gw, &id[1]),
                send(&gw, &id[2]),
                send(&gw, &id[3]),
                send(&gw, &id[4]),
                send(&gw, &id[5]),
            );
            assert_eq!(
                retry.body_text(),
                first.body_text(),
                "round {round}: the original ACK"
            );
            for response in [a, b, c, d, e, f] {
                assert_eq!(ack_code(&response), None, "round {round}: never a false AA");
            }
        }
        // A large message, streamed into its row after the insert (store/sqlite/inbound.rs),
        // is refused the same way.
        let large = samples::demo_order_with_attachment("FULL-LARGE", 100 << 10);
        assert_eq!(ack_code(&post_to_demo(&gw, &large).await), None);
        // Health tells the truth: the store does not take writes.
        let (status, body) = gw.ops_get("/healthz");
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("\"check\":\"store\""), "{body}");

        // Space returns: the same process accepts the refused message and the next ones.
        std::fs::remove_file(volume.path().join("filler")).unwrap();
        assert_eq!(ack_code(&send(&gw, &refused).await).as_deref(), Some("AA"));
        acknowledged.push(refused.clone());
        assert_eq!(
            ack_code(&post_to_demo(&gw, &large).await).as_deref(),
            Some("AA")
        );
        acknowledged.push("FULL-LARGE".to_owned());
        let (status, body) = gw.ops_get("/healthz");
        assert_eq!(status, 200, "healthy again once space returns: {body}");
        // Enough commits to pass several automatic checkpoints of the WAL.
        for n in 1..=150 {
            let id = format!("AFTER-{n}");
            assert_eq!(
                ack_code(&send(&gw, &id).await).as_deref(),
                Some("AA"),
                "{id}"
            );
            acknowledged.push(id);
        }

        // Every message acknowledged is in the store, once.
        let rows = stored_rows(&store);
        for id in &acknowledged {
            assert_eq!(committed(&rows, id).len(), 1, "{id}");
        }
        assert_eq!(rows.len(), acknowledged.len(), "nothing else was written");
        assert!(
            committed(&rows, "FULL-LARGE")[0].raw == large,
            "stored as sent"
        );
        // The WAL stayed bounded and the volume has room again.
        let mut wal = store.as_os_str().to_owned();
        wal.push("-wal");
        let wal_len = std::fs::metadata(std::path::PathBuf::from(wal)).map_or(0, |m| m.len());
        assert!(wal_len <= 1536 * 1024, "WAL of {wal_len} bytes");
    })
    .await
    .expect("test took too long");
    drop(gw);
}

/// POSTs the demo's ORU^R01 (with its PDF) to the intake; the status.
fn queue_oru(intake: std::net::SocketAddr, control_id: &str) -> u16 {
    let response = wire::plain_request(
        intake,
        "POST",
        "/outbound",
        &["Content-Type: application/hl7-v2"],
        &samples::oru(control_id),
    )
    .unwrap();
    assert!(
        matches!(response.status, 201 | 503),
        "{} {}",
        response.status,
        response.body_text()
    );
    response.status
}

/// The control ids in the outbound queue, as an operator's command sees them (its own
/// connection to the store).
fn queued(store: &std::path::Path) -> Vec<String> {
    let queue = Queue::new(Store::open(store).unwrap());
    let filter = ListFilter {
        limit: hl7gw_runtime::queue::MAX_LIST,
        ..ListFilter::default()
    };
    let listed = queue.blocking().list(&filter).unwrap();
    listed.into_iter().map(|m| m.control_id).collect()
}

#[test]
fn a_full_disk_refuses_outbound_messages_and_the_intake_recovers_when_space_returns() {
    let Some(volume) = Tmpfs::mount("2m", "a_full_disk_refuses_outbound_messages") else {
        return;
    };
    let store = volume.path().join("gateway.sqlite");
    // The demo's TEST gateway in this process, sending to its (absent) Trust engine: the
    // sequencer's failed attempts are store writes too.
    let options = loopback_options(store.clone(), None);
    let (ready, addresses) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        serve_until(
            &gw_demo::SPEC,
            &options,
            async move {
                let _ = stopped.await;
            },
            move |resolved| {
                let _ = ready.send(resolved.send.as_ref().map(|s| s.intake_listen));
            },
        )
    });
    let intake = addresses
        .recv_timeout(Duration::from_secs(60))
        .unwrap()
        .expect("the demo's TEST environment sends");

    let mut accepted = Vec::new();
    assert_eq!(queue_oru(intake, "OUT-0"), 201);
    accepted.push("OUT-0".to_owned());
    assert!(volume.fill("filler") > 0);
    let refused = (1..=200)
        .map(|n| format!("OUT-{n}"))
        .find(|id| {
            let status = queue_oru(intake, id);
            if status == 201 {
                accepted.push(id.clone());
            }
            status == 503
        })
        .expect("a full volume refuses a message within 200");
    assert!(!queued(&store).contains(&refused));

    std::fs::remove_file(volume.path().join("filler")).unwrap();
    assert_eq!(queue_oru(intake, &refused), 201);
    accepted.push(refused);
    // Enough writes to pass several automatic checkpoints of the WAL.
    for n in 1..=150 {
        let id = format!("AFTER-{n}");
        assert_eq!(queue_oru(intake, &id), 201, "{id}");
        accepted.push(id);
    }
    // Every message the intake took is queued, once, in order.
    assert_eq!(queued(&store), accepted);

    stop.send(()).unwrap();
    server.join().unwrap().unwrap();
}

#[cfg(unix)]
#[test]
fn a_store_whose_loose_permissions_cannot_be_tightened_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let Some(volume) = Tmpfs::mount("2m", "a_store_whose_loose_permissions") else {
        return;
    };
    let path = volume.path().join("gateway.sqlite");
    drop(Store::open(&path).unwrap());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    volume.remount(true);
    let error = Store::open(&path).unwrap_err();
    let StoreError::LoosePermissions { mode, .. } = &error else {
        panic!("expected LoosePermissions, got {error}");
    };
    assert_eq!(*mode, 0o644);
    let text = error.to_string();
    assert!(
        text.contains("0644") && text.contains("chmod 600"),
        "{text}"
    );
    volume.remount(false);
    drop(Store::open(&path).unwrap());
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn a_running_gateway_prunes_old_delivered_and_skipped_messages_and_keeps_held_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("gateway.sqlite");
    let ids: Vec<i64> = {
        let queue = Queue::new(Store::open(&store).unwrap());
        (1..=4)
            .map(|n| {
                let raw = samples::oru(&format!("OLD-{n}"));
                queue.blocking().enqueue("engine", &raw).unwrap().id
            })
            .collect()
    };
    // What a sequencer and an operator left behind in 2023 (the spec's retention is 90d).
    let conn = rusqlite::Connection::open(&store).unwrap();
    let long_ago = "2023-11-14T22:13:20.000000Z";
    for (id, set) in [
        (ids[0], "state = 'delivered', delivered_at = ?1"),
        (
            ids[1],
            "state = 'skipped', skipped_at = ?1, skip_reason = 'resent'",
        ),
        (
            ids[2],
            "state = 'held', held_at = ?1, held_reason = 'on_ae: hold'",
        ),
    ] {
        conn.execute(
            &format!("UPDATE outbound_messages SET {set}, enqueued_at = ?1 WHERE id = ?2"),
            rusqlite::params![long_ago, id],
        )
        .unwrap();
    }
    drop(conn);

    let gw = Gateway::start(
        GatewayConfig::new(Spec::Demo, &store),
        &dir.path().join("gateway.log"),
    );
    let deadline = std::time::Instant::now() + TEST_LIMIT;
    while queued(&store) != ["OLD-3", "OLD-4"] {
        assert!(
            std::time::Instant::now() < deadline,
            "not pruned: {:?}",
            queued(&store)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(gw);
}
