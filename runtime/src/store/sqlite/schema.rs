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
}
