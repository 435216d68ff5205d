//! `store migrate`: copies an SQLite store into an empty PostgreSQL store, for a customer
//! moving from one box to replicas. Every inbound row (audit trail, inbox, the duplicate keys),
//! every outbound message and the operators' audit trail is copied with its id, state and
//! times, in one transaction:
//! all or nothing. The ids go on from the highest the SQLite store ever handed out, so an EMS
//! inbox cursor stays valid and no id is reused. Stream leases and the health row are not
//! copied (they are made anew).
//!
//! The target's tables are locked (`EXCLUSIVE`) for the copy, and a target that already
//! holds a row is refused: a copy never merges two stores.

use deadpool_postgres::Pool;
use rusqlite::types::Value;
use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;

use super::Postgres;
use crate::store::StoreError;
use crate::store::sqlite::Sqlite;

/// How a column is typed in PostgreSQL.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Int,
    Text,
    Blob,
}

use Kind::{Blob, Int, Text};

/// A table's name and its columns.
type TableColumns = (&'static str, &'static [(&'static str, Kind)]);

/// The copied tables and their columns, `id` first.
const TABLES: [TableColumns; 3] = [
    (
        "inbound_messages",
        &[
            ("id", Int),
            ("received_at", Text),
            ("committed_at", Text),
            ("peer_ip", Text),
            ("peer_subject", Text),
            ("sending_application", Text),
            ("sending_facility", Text),
            ("control_id", Text),
            ("message_type", Text),
            ("raw", Blob),
            ("record_json", Text),
            ("ack", Blob),
            ("ack_code", Text),
            ("status", Text),
            ("sink", Text),
            ("inbox_acknowledged_at", Text),
            ("digest", Text),
        ],
    ),
    (
        "outbound_messages",
        &[
            ("id", Int),
            ("destination", Text),
            ("control_id", Text),
            ("message_type", Text),
            ("raw", Blob),
            ("state", Text),
            ("enqueued_at", Text),
            ("attempts", Int),
            ("failures", Int),
            ("first_attempt_at", Text),
            ("last_attempt_at", Text),
            ("failing_since", Text),
            ("next_attempt_at", Text),
            ("delivered_at", Text),
            ("held_at", Text),
            ("held_reason", Text),
            ("skipped_at", Text),
            ("skip_reason", Text),
            ("released_at", Text),
            ("last_outcome", Text),
            ("last_http_status", Int),
            ("last_ack_code", Text),
            ("last_response", Text),
            ("last_response_at", Text),
            ("idempotency_key", Text),
            ("request_sha256", Text),
        ],
    ),
    (
        "operator_audit",
        &[
            ("id", Int),
            ("at", Text),
            ("action", Text),
            ("operator", Text),
            ("peer", Text),
            ("reason", Text),
            ("message_id", Int),
            ("destination", Text),
            ("control_id", Text),
        ],
    ),
];

/// Rows read per round: bounded memory whatever the store's size (a row may hold a
/// message of several MiB).
const BATCH: usize = 50;

/// What a copy took over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copied {
    /// Inbound rows.
    pub inbound: u64,
    /// Outbound messages.
    pub outbound: u64,
    /// Rows of the operators' audit trail.
    pub audit: u64,
}

/// What the reader hands the writer.
enum Batch {
    Rows {
        table: usize,
        rows: Vec<Vec<Value>>,
    },
    /// The table's highest id ever handed out.
    LastId {
        table: usize,
        last: i64,
    },
    Commit,
}

impl Postgres {
    /// Copies `source` into this (empty) store. Blocking: a CLI command's call. The SQLite
    /// rows are read on this thread, a batch at a time, and written by one transaction on the
    /// backend's runtime; a failure on either side rolls everything back.
    pub(crate) fn import_sqlite(&self, source: &Sqlite) -> Result<Copied, StoreError> {
        let (batches, received) = mpsc::channel(2);
        let (done, result) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn({
            let pool = self.pool();
            async move {
                let _ = done.send(write(pool, received).await);
            }
        });
        let send = |batch: Batch| {
            let batches = batches.clone();
            // `false` once the writer has stopped (it failed; its error is the answer).
            self.block(async move { Ok::<_, StoreError>(batches.send(batch).await.is_ok()) })
        };
        let read = (|| {
            for (table, (name, columns)) in TABLES.iter().enumerate() {
                let names: Vec<&str> = columns.iter().map(|(c, _)| *c).collect();
                let mut after = 0;
                loop {
                    let rows = source.export_rows(name, &names, after, BATCH)?;
                    let Some(last) = rows.last() else { break };
                    after = match last.first() {
                        Some(Value::Integer(id)) => *id,
                        other => {
                            return Err(StoreError::BadValue {
                                column: format!("{name}.id"),
                                value: format!("{other:?}"),
                            });
                        }
                    };
                    if !send(Batch::Rows { table, rows })? {
                        return Ok(());
                    }
                }
                let last = source.last_id(name)?;
                if !send(Batch::LastId { table, last })? {
                    return Ok(());
                }
            }
            send(Batch::Commit).map(drop)
        })();
        drop(batches);
        let written = result.recv().map_err(|_| {
            StoreError::Task("the PostgreSQL side of the copy ended without an answer".into())
        })?;
        // A read error is the cause; the writer then only saw the copy stop short.
        read?;
        written
    }
}

/// The writer: one transaction, committed on [`Batch::Commit`] only.
async fn write(pool: Pool, mut batches: mpsc::Receiver<Batch>) -> Result<Copied, StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // The copy waits on the SQLite reads between batches: not an idle transaction to end.
    tx.batch_execute(
        "SET LOCAL idle_in_transaction_session_timeout = 0;
         LOCK TABLE inbound_messages, outbound_messages, operator_audit IN EXCLUSIVE MODE",
    )
    .await?;
    let held: i64 = tx
        .query_one(
            "SELECT (SELECT COUNT(*) FROM inbound_messages) + (SELECT COUNT(*) FROM outbound_messages)
                  + (SELECT COUNT(*) FROM operator_audit)",
            &[],
        )
        .await?
        .try_get(0)?;
    if held > 0 {
        return Err(StoreError::Migrate(format!(
            "the PostgreSQL store already holds {held} rows; `store migrate` copies into an \
             empty store only (a copy never merges two stores)"
        )));
    }
    let mut statements = Vec::new();
    for (name, columns) in TABLES {
        let names: Vec<&str> = columns.iter().map(|(c, _)| *c).collect();
        let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
        statements.push(
            tx.prepare(&format!(
                "INSERT INTO {name} ({}) OVERRIDING SYSTEM VALUE VALUES ({})",
                names.join(", "),
                placeholders.join(", ")
            ))
            .await?,
        );
    }
    let mut copied = Copied::default();
    while let Some(batch) = batches.recv().await {
        match batch {
            Batch::Rows { table, rows } => {
                let ((name, columns), statement) = table_and_statement(table, &statements)?;
                for row in rows {
                    let values = row
                        .into_iter()
                        .zip(columns)
                        .map(|(value, (column, kind))| param(name, column, *kind, value))
                        .collect::<Result<Vec<_>, _>>()?;
                    let refs: Vec<&(dyn ToSql + Sync)> =
                        values.iter().map(|v| &**v as &(dyn ToSql + Sync)).collect();
                    tx.execute(statement, &refs).await?;
                    match table {
                        0 => copied.inbound += 1,
                        1 => copied.outbound += 1,
                        _ => copied.audit += 1,
                    }
                }
            }
            Batch::LastId { table, last } => {
                let ((name, _), _) = table_and_statement(table, &statements)?;
                if last > 0 {
                    tx.execute(
                        "SELECT setval(pg_get_serial_sequence($1, 'id'), $2)",
                        &[&name, &last],
                    )
                    .await?;
                }
            }
            Batch::Commit => {
                tx.commit().await?;
                return Ok(copied);
            }
        }
    }
    Err(StoreError::Migrate(
        "the copy stopped before its end; nothing was written".into(),
    ))
}

/// Table `index` of [`TABLES`] and its insert statement.
fn table_and_statement(
    index: usize,
    statements: &[tokio_postgres::Statement],
) -> Result<(TableColumns, &tokio_postgres::Statement), StoreError> {
    match (TABLES.get(index), statements.get(index)) {
        (Some(table), Some(statement)) => Ok((*table, statement)),
        _ => Err(StoreError::Migrate(format!("no copied table {index}"))),
    }
}

/// One SQLite value as the PostgreSQL parameter of a column of `kind`.
fn param(
    table: &str,
    column: &str,
    kind: Kind,
    value: Value,
) -> Result<Box<dyn ToSql + Sync + Send>, StoreError> {
    Ok(match (kind, value) {
        (Int, Value::Null) => Box::new(None::<i64>),
        (Text, Value::Null) => Box::new(None::<String>),
        (Blob, Value::Null) => Box::new(None::<Vec<u8>>),
        (Int, Value::Integer(n)) => Box::new(n),
        (Text, Value::Text(t)) => Box::new(t),
        (Blob, Value::Blob(b)) => Box::new(b),
        (_, other) => {
            return Err(StoreError::BadValue {
                column: format!("{table}.{column}"),
                value: format!("{other:?}"),
            });
        }
    })
}
