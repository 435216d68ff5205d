//! Schema versions: numbered migrations applied in order, recorded in `schema_migrations`.
//!
//! A migration, once released, is never edited: a change is a new migration appended to
//! [`MIGRATIONS`]. Opening a store applies every missing migration in one `BEGIN IMMEDIATE`
//! transaction (all or nothing; two processes opening the same new file do not both
//! migrate), and refuses a store whose newest version this build does not know.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::store::{APPLICATION_ID, StoreError, timestamp};

/// One schema change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// Its number, from 1, without gaps.
    pub version: i64,
    /// What it does, recorded with it.
    pub description: &'static str,
    /// The statements.
    pub sql: &'static str,
}

/// Every migration, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "inbound_messages: audit trail, duplicate key, inbox",
        sql: r#"
CREATE TABLE inbound_messages (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at           TEXT NOT NULL,
    committed_at          TEXT NOT NULL,
    peer_ip               TEXT,
    peer_subject          TEXT,
    sending_application   TEXT NOT NULL,
    sending_facility      TEXT NOT NULL,
    control_id            TEXT NOT NULL,
    message_type          TEXT NOT NULL,
    raw                   BLOB NOT NULL,
    record_json           TEXT,
    ack                   BLOB NOT NULL,
    ack_code              TEXT NOT NULL CHECK (ack_code IN ('AA', 'AE', 'AR', 'CA', 'CE', 'CR')),
    status                TEXT NOT NULL CHECK (status IN ('committed', 'error', 'rejected')),
    sink                  TEXT NOT NULL,
    inbox_acknowledged_at TEXT
) STRICT;
-- A committed message is unique by its key; error and rejected rows are audit rows only.
CREATE UNIQUE INDEX inbound_messages_committed_key
    ON inbound_messages (sending_application, sending_facility, control_id)
    WHERE status = 'committed';
CREATE INDEX inbound_messages_received_at ON inbound_messages (received_at);
CREATE INDEX inbound_messages_inbox_pending ON inbound_messages (id)
    WHERE status = 'committed' AND sink = 'inbox' AND inbox_acknowledged_at IS NULL;
"#,
    },
    Migration {
        version: 2,
        description: "outbound_messages: the sender's durable queue, one ordered stream per destination",
        sql: r#"
CREATE TABLE outbound_messages (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    destination      TEXT NOT NULL,
    control_id       TEXT NOT NULL CHECK (control_id <> ''),
    message_type     TEXT NOT NULL,
    raw              BLOB NOT NULL,
    state            TEXT NOT NULL
                     CHECK (state IN ('queued', 'in_flight', 'delivered', 'held', 'skipped')),
    enqueued_at      TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    failures         INTEGER NOT NULL DEFAULT 0,
    first_attempt_at TEXT,
    last_attempt_at  TEXT,
    failing_since    TEXT,
    next_attempt_at  TEXT,
    delivered_at     TEXT,
    held_at          TEXT,
    held_reason      TEXT,
    skipped_at       TEXT,
    skip_reason      TEXT,
    released_at      TEXT,
    last_outcome     TEXT,
    last_http_status INTEGER,
    last_ack_code    TEXT,
    last_response    TEXT,
    last_response_at TEXT
) STRICT;
-- The receiver de-duplicates by MSH-10, so two different messages with one MSH-10 would
-- lose the second: one MSH-10 per destination.
CREATE UNIQUE INDEX outbound_messages_control_id ON outbound_messages (destination, control_id);
-- The head of a stream: its lowest pending id.
CREATE INDEX outbound_messages_pending ON outbound_messages (destination, id)
    WHERE state IN ('queued', 'in_flight', 'held');
"#,
    },
    Migration {
        version: 3,
        description: "inbound_messages.digest: a duplicate key with other content is not a duplicate",
        sql: r#"
-- SHA-256 (hex) of the message with CR segment ends (dedup::digest). Rows written before
-- this migration have none and keep answering their original ACK to any repeat of the key.
ALTER TABLE inbound_messages ADD COLUMN digest TEXT;
"#,
    },
    Migration {
        version: 4,
        description: "outbound_messages: the intake's Idempotency-Key and the digest of its request",
        sql: r#"
ALTER TABLE outbound_messages ADD COLUMN idempotency_key TEXT CHECK (idempotency_key <> '');
ALTER TABLE outbound_messages ADD COLUMN request_sha256 TEXT;
-- A key names one request per destination: a repeat finds the message it queued.
CREATE UNIQUE INDEX outbound_messages_idempotency_key
    ON outbound_messages (destination, idempotency_key) WHERE idempotency_key IS NOT NULL;
"#,
    },
    Migration {
        version: 5,
        description: "health: the one row the health check rewrites to prove the store takes writes",
        sql: "CREATE TABLE health (id INTEGER PRIMARY KEY CHECK (id = 1), checked_at TEXT NOT NULL) STRICT;",
    },
    Migration {
        version: 6,
        description: "operator_audit: who retried, skipped or opened a message, from where, when and why; indexes for the console's last hour",
        sql: r#"
CREATE TABLE operator_audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          TEXT NOT NULL,
    action      TEXT NOT NULL CHECK (action IN ('retry', 'skip', 'open')),
    operator    TEXT NOT NULL CHECK (operator <> ''),
    peer        TEXT NOT NULL,
    reason      TEXT NOT NULL,
    message_id  INTEGER NOT NULL,
    destination TEXT NOT NULL,
    control_id  TEXT NOT NULL
) STRICT;
CREATE INDEX operator_audit_message ON operator_audit (message_id, id);
-- The console's last hour: deliveries and responses by time.
CREATE INDEX outbound_messages_delivered_at ON outbound_messages (delivered_at)
    WHERE delivered_at IS NOT NULL;
CREATE INDEX outbound_messages_last_response_at ON outbound_messages (last_response_at)
    WHERE last_response_at IS NOT NULL;
"#,
    },
    Migration {
        version: 7,
        description: "inbound_messages: raw moved to the last column, so a large message is written into its row without a copy in memory",
        sql: r#"
-- SQLite builds a row in memory before writing it, blob included, unless the blob is a
-- zeroblob() in the row's last column: then the row is written with zeros and the message
-- is streamed into it (sqlite/inbound.rs, write_one). Same columns, same ids, same indexes.
CREATE TABLE inbound_messages_v7 (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at           TEXT NOT NULL,
    committed_at          TEXT NOT NULL,
    peer_ip               TEXT,
    peer_subject          TEXT,
    sending_application   TEXT NOT NULL,
    sending_facility      TEXT NOT NULL,
    control_id            TEXT NOT NULL,
    message_type          TEXT NOT NULL,
    record_json           TEXT,
    ack                   BLOB NOT NULL,
    ack_code              TEXT NOT NULL CHECK (ack_code IN ('AA', 'AE', 'AR', 'CA', 'CE', 'CR')),
    status                TEXT NOT NULL CHECK (status IN ('committed', 'error', 'rejected')),
    sink                  TEXT NOT NULL,
    inbox_acknowledged_at TEXT,
    digest                TEXT,
    raw                   BLOB NOT NULL
) STRICT;
INSERT INTO inbound_messages_v7 (
    id, received_at, committed_at, peer_ip, peer_subject, sending_application,
    sending_facility, control_id, message_type, record_json, ack, ack_code, status, sink,
    inbox_acknowledged_at, digest, raw)
SELECT
    id, received_at, committed_at, peer_ip, peer_subject, sending_application,
    sending_facility, control_id, message_type, record_json, ack, ack_code, status, sink,
    inbox_acknowledged_at, digest, raw
FROM inbound_messages ORDER BY id;
-- Ids are never reused (the inbox cursor relies on it), rows deleted by retention included.
-- The old table's counter is at least its largest id, copied or not.
DELETE FROM sqlite_sequence WHERE name = 'inbound_messages_v7';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'inbound_messages_v7', seq FROM sqlite_sequence WHERE name = 'inbound_messages';
DROP TABLE inbound_messages;
ALTER TABLE inbound_messages_v7 RENAME TO inbound_messages;
CREATE UNIQUE INDEX inbound_messages_committed_key
    ON inbound_messages (sending_application, sending_facility, control_id)
    WHERE status = 'committed';
CREATE INDEX inbound_messages_received_at ON inbound_messages (received_at);
CREATE INDEX inbound_messages_inbox_pending ON inbound_messages (id)
    WHERE status = 'committed' AND sink = 'inbox' AND inbox_acknowledged_at IS NULL;
"#,
    },
];

/// The newest version this build knows.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// The newest applied version (0 for a new file).
pub(crate) fn current_version(conn: &Connection) -> Result<i64, StoreError> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations')",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(0);
    }
    let version: Option<i64> = conn
        .query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })
        .optional()?
        .flatten();
    Ok(version.unwrap_or(0))
}

/// Checks the file is ours and applies the missing migrations.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let app_id: i32 = tx.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let has_tables: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%')",
        [],
        |r| r.get(0),
    )?;
    if app_id != APPLICATION_ID && (app_id != 0 || has_tables) {
        return Err(StoreError::ForeignDatabase {
            path: path.to_path_buf(),
            found: app_id,
        });
    }
    let found = current_version(&tx)?;
    let supported = latest_version();
    if found > supported {
        return Err(StoreError::SchemaTooNew {
            path: path.to_path_buf(),
            found,
            supported,
        });
    }
    if found == supported && app_id == APPLICATION_ID {
        return Ok(());
    }
    tx.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID};"))?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version     INTEGER PRIMARY KEY,
             description TEXT NOT NULL,
             applied_at  TEXT NOT NULL
         ) STRICT;",
    )?;
    let now = timestamp::format(timestamp::now());
    for migration in MIGRATIONS.iter().filter(|m| m.version > found) {
        tx.execute_batch(migration.sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?1, ?2, ?3)",
            (migration.version, migration.description, &now),
        )?;
        tracing::info!(
            store = %path.display(),
            version = migration.version,
            "applied store migration: {}",
            migration.description
        );
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_numbered_from_one_without_gaps() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "{}", m.description);
        }
    }

    /// Migration 7 rebuilds `inbound_messages` with `raw` last: every row and column kept,
    /// the indexes back, and ids never reused, even one retention deleted.
    #[test]
    fn moving_raw_last_keeps_rows_indexes_and_ids() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID};"))
            .unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, \
             description TEXT NOT NULL, applied_at TEXT NOT NULL) STRICT;",
        )
        .unwrap();
        for m in MIGRATIONS.iter().filter(|m| m.version <= 6) {
            conn.execute_batch(m.sql).unwrap();
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?1, ?2, 'then')",
                (m.version, m.description),
            )
            .unwrap();
        }
        let insert = |conn: &Connection, control_id: &str, raw: &[u8]| {
            conn.execute(
                "INSERT INTO inbound_messages (received_at, committed_at, sending_application, \
                 sending_facility, control_id, message_type, raw, record_json, ack, ack_code, \
                 status, sink, digest) VALUES ('r', 'c', 'APP', 'FAC', ?1, 'ADT^A28', ?2, \
                 '{}', x'41', 'AA', 'committed', 'inbox', 'd')",
                (control_id, raw),
            )
            .unwrap();
        };
        insert(&conn, "A", b"MSH|A\r");
        insert(&conn, "B", b"MSH|B\r");
        insert(&conn, "C", b"MSH|C\r");
        conn.execute("DELETE FROM inbound_messages WHERE control_id = 'C'", [])
            .unwrap();

        migrate(&mut conn, Path::new(":memory:")).unwrap();

        let columns: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info('inbound_messages') ORDER BY cid")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(columns.len(), 17, "{columns:?}");
        assert_eq!(columns.last().map(String::as_str), Some("raw"));
        let rows: Vec<(i64, String, Vec<u8>, String)> = conn
            .prepare("SELECT id, control_id, raw, digest FROM inbound_messages ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            vec![
                (1, "A".to_owned(), b"MSH|A\r".to_vec(), "d".to_owned()),
                (2, "B".to_owned(), b"MSH|B\r".to_vec(), "d".to_owned()),
            ]
        );
        let indexes: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_schema WHERE type = 'index' \
                 AND tbl_name = 'inbound_messages' AND sql IS NOT NULL ORDER BY name",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            indexes,
            [
                "inbound_messages_committed_key",
                "inbound_messages_inbox_pending",
                "inbound_messages_received_at"
            ]
        );
        // The unique key still holds, and the deleted id 3 is not handed out again.
        let again = conn.execute(
            "INSERT INTO inbound_messages (received_at, committed_at, sending_application, \
             sending_facility, control_id, message_type, ack, ack_code, status, sink, raw) \
             VALUES ('r', 'c', 'APP', 'FAC', 'A', 'ADT^A28', x'41', 'AA', 'committed', \
             'inbox', x'00')",
            [],
        );
        assert!(again.is_err(), "a second committed A");
        insert(&conn, "D", b"MSH|D\r");
        let id: i64 = conn
            .query_row(
                "SELECT id FROM inbound_messages WHERE control_id = 'D'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(id, 4);
    }
}
