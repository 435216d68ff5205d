//! Schema versions of the PostgreSQL backend: numbered migrations of its own (the tables are
//! those of the SQLite backend's migrations 1-5, in PostgreSQL's types), recorded in
//! `schema_migrations` like SQLite's.
//!
//! A migration, once released, is never edited: a change is a new migration appended to
//! [`MIGRATIONS`]. Opening applies every missing migration in one transaction under an
//! advisory lock, so two replicas starting together migrate once (the second waits, then
//! finds nothing to do), and refuses a database whose newest version this build does not know
//! ([`StoreError::SchemaTooNew`], as for SQLite) or that holds tables of something else.

use std::path::PathBuf;

use deadpool_postgres::Pool;

use super::locks;
use crate::store::sqlite::schema::Migration;
use crate::store::{APPLICATION_ID, StoreError, timestamp};

/// Every migration, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "inbound_messages, outbound_messages, health: the tables of SQLite migrations 1-5",
        sql: r#"
CREATE TABLE inbound_messages (
    id                    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at           TEXT COLLATE "C" NOT NULL,
    committed_at          TEXT COLLATE "C" NOT NULL,
    peer_ip               TEXT,
    peer_subject          TEXT,
    sending_application   TEXT NOT NULL,
    sending_facility      TEXT NOT NULL,
    control_id            TEXT NOT NULL,
    message_type          TEXT NOT NULL,
    raw                   BYTEA NOT NULL,
    record_json           TEXT,
    ack                   BYTEA NOT NULL,
    ack_code              TEXT NOT NULL CHECK (ack_code IN ('AA', 'AE', 'AR', 'CA', 'CE', 'CR')),
    status                TEXT NOT NULL CHECK (status IN ('committed', 'error', 'rejected')),
    sink                  TEXT NOT NULL,
    inbox_acknowledged_at TEXT COLLATE "C",
    digest                TEXT
);
-- A committed message is unique by its key; error and rejected rows are audit rows only.
CREATE UNIQUE INDEX inbound_messages_committed_key
    ON inbound_messages (sending_application, sending_facility, control_id)
    WHERE status = 'committed';
CREATE INDEX inbound_messages_received_at ON inbound_messages (received_at);
CREATE INDEX inbound_messages_inbox_pending ON inbound_messages (id)
    WHERE status = 'committed' AND sink = 'inbox' AND inbox_acknowledged_at IS NULL;

CREATE TABLE outbound_messages (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    destination      TEXT COLLATE "C" NOT NULL,
    control_id       TEXT NOT NULL CHECK (control_id <> ''),
    message_type     TEXT NOT NULL,
    raw              BYTEA NOT NULL,
    state            TEXT NOT NULL
                     CHECK (state IN ('queued', 'in_flight', 'delivered', 'held', 'skipped')),
    enqueued_at      TEXT COLLATE "C" NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    failures         BIGINT NOT NULL DEFAULT 0,
    first_attempt_at TEXT COLLATE "C",
    last_attempt_at  TEXT COLLATE "C",
    failing_since    TEXT COLLATE "C",
    next_attempt_at  TEXT COLLATE "C",
    delivered_at     TEXT COLLATE "C",
    held_at          TEXT COLLATE "C",
    held_reason      TEXT,
    skipped_at       TEXT COLLATE "C",
    skip_reason      TEXT,
    released_at      TEXT COLLATE "C",
    last_outcome     TEXT,
    last_http_status BIGINT,
    last_ack_code    TEXT,
    last_response    TEXT,
    last_response_at TEXT COLLATE "C",
    idempotency_key  TEXT CHECK (idempotency_key <> ''),
    request_sha256   TEXT
);
-- One MSH-10 per destination (the receiver de-duplicates by it).
CREATE UNIQUE INDEX outbound_messages_control_id ON outbound_messages (destination, control_id);
-- The head of a stream: its lowest pending id.
CREATE INDEX outbound_messages_pending ON outbound_messages (destination, id)
    WHERE state IN ('queued', 'in_flight', 'held');
-- A key names one request per destination: a repeat finds the message it queued.
CREATE UNIQUE INDEX outbound_messages_idempotency_key
    ON outbound_messages (destination, idempotency_key) WHERE idempotency_key IS NOT NULL;

CREATE TABLE health (id INTEGER PRIMARY KEY CHECK (id = 1), checked_at TEXT NOT NULL);
"#,
    },
    Migration {
        version: 2,
        description: "stream_leases: which replica delivers each outbound stream, with a fencing token",
        sql: r#"
CREATE TABLE stream_leases (
    destination TEXT COLLATE "C" PRIMARY KEY,
    -- The replica holding it: host, process id and a random part.
    holder      TEXT NOT NULL,
    -- Grows by one on every takeover; a delivery is recorded only under the current token.
    token       BIGINT NOT NULL CHECK (token > 0),
    acquired_at TIMESTAMPTZ NOT NULL,
    renewed_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);
"#,
    },
    Migration {
        version: 3,
        description: "operator_audit: who retried, skipped or opened a message, from where, when and why; indexes for the console's last hour (SQLite migration 6)",
        sql: r#"
CREATE TABLE operator_audit (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          TEXT COLLATE "C" NOT NULL,
    action      TEXT NOT NULL CHECK (action IN ('retry', 'skip', 'open')),
    operator    TEXT NOT NULL CHECK (operator <> ''),
    peer        TEXT NOT NULL,
    reason      TEXT NOT NULL,
    message_id  BIGINT NOT NULL,
    destination TEXT COLLATE "C" NOT NULL,
    control_id  TEXT NOT NULL
);
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

/// The newest applied version (0 for an empty database).
pub(crate) async fn current_version(pool: Pool) -> Result<i64, StoreError> {
    let client = pool.get().await?;
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await?
        .try_get(0)?;
    if !exists {
        return Ok(0);
    }
    let version: Option<i64> = client
        .query_one("SELECT MAX(version) FROM schema_migrations", &[])
        .await?
        .try_get(0)?;
    Ok(version.unwrap_or(0))
}

/// Checks the database is ours (or empty) and applies the missing migrations, all in one
/// transaction under the migration lock.
pub(crate) async fn migrate(pool: Pool, label: PathBuf) -> Result<(), StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&APPLICATION_ID, &locks::MIGRATE],
    )
    .await?;
    let ours: bool = tx
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await?
        .try_get(0)?;
    if !ours {
        let tables = other_tables(&tx).await?;
        if !tables.is_empty() {
            return Err(StoreError::NotAStore {
                path: label,
                reason: format!(
                    "the database has tables ({}) but no hl7gw schema_migrations; give the \
                     gateway a database of its own",
                    tables.join(", ")
                ),
            });
        }
        tx.batch_execute(
            "CREATE TABLE schema_migrations (
                 version     BIGINT PRIMARY KEY,
                 description TEXT NOT NULL,
                 applied_at  TEXT NOT NULL
             );",
        )
        .await?;
    }
    let found: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations",
            &[],
        )
        .await?
        .try_get(0)?;
    let supported = latest_version();
    if found > supported {
        return Err(StoreError::SchemaTooNew {
            path: label,
            found,
            supported,
        });
    }
    let now = timestamp::format(timestamp::now());
    for migration in MIGRATIONS.iter().filter(|m| m.version > found) {
        tx.batch_execute(migration.sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, description, applied_at) VALUES ($1, $2, $3)",
            &[&migration.version, &migration.description, &now],
        )
        .await?;
        tracing::info!(
            store = %label.display(),
            version = migration.version,
            "applied store migration: {}",
            migration.description
        );
    }
    tx.commit().await?;
    Ok(())
}

/// The tables of the current schema, by name.
async fn other_tables(tx: &deadpool_postgres::Transaction<'_>) -> Result<Vec<String>, StoreError> {
    let rows = tx
        .query(
            "SELECT tablename::TEXT FROM pg_tables WHERE schemaname = current_schema()
             ORDER BY tablename",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| r.try_get::<_, String>(0).map_err(StoreError::from))
        .collect()
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
