//! Retention and what the store leaves on disk, on real SQLite files: the retention prune
//! takes old delivered and skipped outbound messages but never pending or held ones; pruned
//! patient data is not left readable in the database file or its WAL (`secure_delete` and the
//! checkpoint after a prune); the store's files are for its user alone (0600), and loose
//! permissions on an existing store are tightened at open.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hl7gw_runtime::dedup::DedupKey;
use hl7gw_runtime::hl7::AckCode;
use hl7gw_runtime::queue::Queue;
use hl7gw_runtime::sink::SinkKind;
use hl7gw_runtime::store::{CommitResult, InboundRecord, Pruned, Store, timestamp};

const DEST: &str = "trust";

/// A patient name no other byte of the store contains.
const MARKER: &str = "ZZQXSECRETPATIENT";

fn open(dir: &Path) -> Store {
    Store::open(dir.join("gateway.sqlite")).expect("store opens")
}

fn outbound(control_id: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|EMS|EMS|TIE|TRUST|20260101130000||ORU^R01^ORU_R01|{control_id}|T|2.4\r\
         PID|1||9449305552^^^NHS^NH||{MARKER}OUT^JOHN||19700101|F\r"
    )
    .into_bytes()
}

/// An inbound message the webhook took (so nothing keeps it from retention), received at
/// `received_at`.
fn inbound(control_id: &str, received_at: SystemTime) -> InboundRecord {
    let raw = format!(
        "MSH|^~\\&|PAS|RX1|HL7GW|EMS|20240501120000||ADT^A28^ADT_A05|{control_id}|T|2.4\r\
         PID|1||9434765919^^^NHS^NH||{MARKER}IN^JOHN||19700101|M\r"
    )
    .into_bytes();
    InboundRecord {
        received_at,
        peer_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        peer_subject: None,
        key: DedupKey::new("PAS", "RX1", control_id),
        message_type: "ADT^A28".into(),
        raw: raw.into(),
        record: Some(serde_json::json!({ "family": format!("{MARKER}JSON") })),
        ack: format!(
            "MSH|^~\\&|HL7GW|EMS|PAS|RX1|20240501120001||ACK|A1|T|2.4\rMSA|AA|{control_id}\r"
        )
        .into_bytes(),
        ack_code: AckCode::ApplicationAccept,
        sink: SinkKind::Webhook,
    }
}

/// Sets a queue row's state and its time columns as the sequencer or an operator would
/// have left them at `at`.
fn set_state(store: &Store, id: i64, state: &str, at: SystemTime) {
    let at = timestamp::format(timestamp::from_system(at));
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    let column = match state {
        "delivered" => "delivered_at",
        "skipped" => "skipped_at",
        "held" => "held_at",
        "in_flight" => "last_attempt_at",
        other => panic!("no time column for {other}"),
    };
    conn.execute(
        &format!("UPDATE outbound_messages SET state = ?1, {column} = ?2 WHERE id = ?3"),
        rusqlite::params![state, at, id],
    )
    .unwrap();
    conn.execute(
        "UPDATE outbound_messages SET held_reason = 'on_ae: hold' WHERE id = ?1 AND state = 'held'",
        [id],
    )
    .unwrap();
}

fn outbound_ids(store: &Store) -> Vec<i64> {
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    let mut stmt = conn
        .prepare("SELECT id FROM outbound_messages ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn retention_prunes_old_delivered_and_skipped_messages_never_pending_or_held_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let queue = Queue::new(store.clone());
    let long_ago = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let recently = SystemTime::now() - Duration::from_secs(60);
    let mut ids = Vec::new();
    for n in 1..=7 {
        ids.push(
            queue
                .blocking()
                .enqueue(DEST, &outbound(&format!("OUT-{n}")))
                .unwrap()
                .id,
        );
    }
    // Everything was queued long ago; what counts is when it was finished.
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    conn.execute(
        "UPDATE outbound_messages SET enqueued_at = ?1",
        [timestamp::format(timestamp::from_system(long_ago))],
    )
    .unwrap();
    set_state(&store, ids[0], "delivered", long_ago);
    set_state(&store, ids[1], "skipped", long_ago);
    set_state(&store, ids[2], "delivered", recently);
    set_state(&store, ids[3], "skipped", recently);
    set_state(&store, ids[4], "held", long_ago);
    set_state(&store, ids[5], "in_flight", long_ago);
    // ids[6] stays queued.

    let pruned = store.blocking().prune(Duration::from_secs(86_400)).unwrap();
    assert_eq!(
        pruned,
        Pruned {
            inbound: 0,
            outbound: 2
        }
    );
    assert_eq!(outbound_ids(&store), ids[2..].to_vec());
    // The held head still holds its stream.
    let status = queue.blocking().status(DEST).unwrap();
    assert!(status.held, "{status:?}");
    assert_eq!(status.depth, 3);

    // Once they are old enough the recent ones go too; pending ones never.
    let pruned = store.blocking().prune(Duration::ZERO).unwrap();
    assert_eq!(pruned.outbound, 2);
    assert_eq!(outbound_ids(&store), ids[4..].to_vec());
}

#[tokio::test]
async fn the_retention_task_prunes_both_directions_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let long_ago = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let CommitResult::Committed(inbound_id) = store
        .commit_inbound(inbound("IN-1", long_ago))
        .await
        .unwrap()
    else {
        panic!("committed");
    };
    let queue = Queue::new(store.clone());
    let id = queue.enqueue(DEST, outbound("OUT-1")).await.unwrap().id;
    set_state(&store, id, "delivered", long_ago);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .run_retention(
                    Duration::from_secs(86_400),
                    Duration::from_millis(20),
                    async {
                        let _ = stopped.await;
                    },
                )
                .await;
        })
    };
    tokio::time::timeout(Duration::from_secs(30), async {
        while !outbound_ids(&store).is_empty() || store.inbound(inbound_id).await.unwrap().is_some()
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the retention task pruned the old rows");
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap();
}

/// The store's file and its WAL (absent when empty) as bytes.
fn files(store: &Store) -> Vec<(PathBuf, Vec<u8>)> {
    let mut wal = store.path().as_os_str().to_owned();
    wal.push("-wal");
    [store.path().to_path_buf(), PathBuf::from(wal)]
        .into_iter()
        .filter_map(|p| std::fs::read(&p).ok().map(|bytes| (p, bytes)))
        .collect()
}

fn holds(bytes: &[u8], needle: &str) -> bool {
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn pruned_patient_data_is_not_left_in_the_database_or_its_wal() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let pragmas = store.blocking().pragmas().unwrap();
    assert_eq!(pragmas.secure_delete, 1);
    assert_eq!(pragmas.journal_size_limit, 1 << 20);
    assert_eq!(pragmas.wal_autocheckpoint, 256);
    let long_ago = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    // Enough rows that pruning frees whole pages, not only cells within a page.
    for n in 0..200 {
        let result = store
            .blocking()
            .commit_inbound(&inbound(&format!("IN-{n}"), long_ago))
            .unwrap();
        assert!(matches!(result, CommitResult::Committed(_)));
    }
    let queue = Queue::new(store.clone());
    let id = queue
        .blocking()
        .enqueue(DEST, &outbound("OUT-1"))
        .unwrap()
        .id;
    set_state(&store, id, "delivered", long_ago);
    // A row that stays (another patient), so the file still has live data around the
    // freed space.
    let mut kept = inbound("KEPT", SystemTime::now());
    kept.raw = String::from_utf8(kept.raw.to_vec())
        .unwrap()
        .replace(MARKER, "JONES")
        .into_bytes()
        .into();
    kept.record = Some(serde_json::json!({ "family": "JONES" }));
    store.blocking().commit_inbound(&kept).unwrap();
    assert!(store.blocking().checkpoint().unwrap());

    // The precondition: the names are on disk, where the test looks.
    let before = files(&store);
    for marker in ["IN^JOHN", "OUT^JOHN", "JSON"] {
        let needle = format!("{MARKER}{marker}");
        assert!(
            before.iter().any(|(_, bytes)| holds(bytes, &needle)),
            "{needle} was written"
        );
    }

    let pruned = store.blocking().prune(Duration::from_secs(86_400)).unwrap();
    assert_eq!((pruned.inbound, pruned.outbound), (200, 1));
    for (path, bytes) in files(&store) {
        assert!(
            !holds(&bytes, MARKER),
            "{} still holds pruned patient data",
            path.display()
        );
        assert!(holds(&bytes, "JONES") || bytes.is_empty());
    }
    // The WAL was truncated by the checkpoint after the prune.
    let mut wal = store.path().as_os_str().to_owned();
    wal.push("-wal");
    let wal_len = std::fs::metadata(PathBuf::from(wal)).map_or(0, |m| m.len());
    assert_eq!(wal_len, 0);
    assert!(store.blocking().inbound(1).unwrap().is_none());
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
#[test]
fn store_files_are_0600_and_loose_ones_are_tightened_at_open() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    first
        .blocking()
        .commit_inbound(&inbound("IN-1", SystemTime::now()))
        .unwrap();
    let path = first.path().to_path_buf();
    let with = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    let all = [path.clone(), with("-wal"), with("-shm")];
    // New files: the user's alone.
    for file in &all {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    // Someone made them readable (a copy, a restore); the next open tightens them.
    for file in &all {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let second = open(dir.path());
    for file in &all {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    // And the data is still there.
    assert!(second.blocking().inbound(1).unwrap().is_some());
    drop(first);
}
