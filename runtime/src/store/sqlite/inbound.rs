//! Inbound messages in SQLite: the commit protocol, duplicates, the audit trail and
//! retention.

use std::time::SystemTime;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, MAIN_DB, OptionalExtension, Transaction, TransactionBehavior, params};

use super::{Sqlite, delete_in_batches, instant, instant_opt, parse_record, parsed};
use crate::dedup::DedupKey;
use crate::hl7::AckCode;
use crate::store::group::{self, Lead, Outcome, Pending, Ticket};
use crate::store::{
    CommitResult, InboundRecord, InboundRow, InboundStatus, StoreError, StoredAck, timestamp,
};

fn find_committed(conn: &Connection, key: &DedupKey) -> Result<Option<StoredAck>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, ack, ack_code, received_at, digest FROM inbound_messages
         WHERE sending_application = ?1 AND sending_facility = ?2 AND control_id = ?3
           AND status = 'committed'",
    )?;
    let found = stmt
        .query_row(
            params![
                key.sending_application,
                key.sending_facility,
                key.control_id
            ],
            |r| {
                Ok(StoredAck {
                    id: r.get(0)?,
                    ack: r.get(1)?,
                    ack_code: parsed(2, r.get(2)?, AckCode::parse)?,
                    received_at: instant(r, 3)?,
                    digest: r.get(4)?,
                })
            },
        )
        .optional()?;
    Ok(found)
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    )
}

/// One transaction for the whole group, one fsync at its commit. The members are written
/// straight into the transaction; only when one of them fails is the transaction rolled back
/// and the group written again with a savepoint per member, so that the one that fails
/// fails alone and the others go on (a savepoint per member costs two statements and a copy
/// of every page it touches, on every message, for a case that is rare). An error after
/// which SQLite has rolled the whole transaction back (a full disk, an I/O error) or a failed
/// commit fails every member.
fn commit_group(conn: &mut Connection, members: Vec<Pending>) {
    let written = match write_group(conn, &members, Savepoints::None) {
        // Written again only once the rollback has ended the transaction; should it not
        // have, nothing of this group may commit with a later one.
        Attempt::MemberFailed if conn.is_autocommit() => {
            write_group(conn, &members, Savepoints::PerMember)
        }
        other => other,
    };
    match written {
        Attempt::Written(results, commit) => group::finish(members, results, commit),
        Attempt::Failed(e) => group::fail_all(members, e),
        Attempt::MemberFailed => group::fail_all(
            members,
            StoreError::Task(
                "a group member failed and the transaction could not be rolled back to write \
                 the others again"
                    .into(),
            ),
        ),
    }
}

/// Whether each member of a group gets a savepoint of its own.
#[derive(Clone, Copy, PartialEq)]
enum Savepoints {
    None,
    PerMember,
}

/// How one attempt at writing a group ended.
enum Attempt {
    /// Each member's result and how the transaction's commit ended.
    Written(
        Vec<Result<Option<CommitResult>, StoreError>>,
        Result<(), StoreError>,
    ),
    /// A member failed without a savepoint: the transaction was rolled back, nothing written.
    MemberFailed,
    /// The transaction could not begin, or SQLite rolled it back: nothing written.
    Failed(StoreError),
}

fn write_group(conn: &mut Connection, members: &[Pending], savepoints: Savepoints) -> Attempt {
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => return Attempt::Failed(e.into()),
    };
    let mut results = Vec::with_capacity(members.len());
    for member in members {
        let written = match savepoints {
            Savepoints::None => write_one(&tx, &member.record),
            Savepoints::PerMember => in_savepoint(&mut tx, &member.record),
        };
        match written {
            Ok(result) => results.push(Ok(Some(result))),
            // The transaction is gone, and with it every row written so far.
            Err(e) if tx.is_autocommit() => return Attempt::Failed(e),
            // Dropping the transaction rolls it back.
            Err(_) if savepoints == Savepoints::None => return Attempt::MemberFailed,
            Err(e) => results.push(Err(e)),
        }
    }
    let commit = tx.commit().map_err(StoreError::from);
    Attempt::Written(results, commit)
}

/// [`write_one`] inside a savepoint of its own: a failure rolls back this member only.
fn in_savepoint(
    tx: &mut Transaction<'_>,
    record: &InboundRecord,
) -> Result<CommitResult, StoreError> {
    let sp = tx.savepoint()?;
    let result = write_one(&sp, record)?;
    sp.commit()?;
    Ok(result)
}

/// One member of a group: the duplicate check and the insert (and, for a large message,
/// the blob written into its row). On error it may have written part of the row: the
/// caller rolls back.
fn write_one(conn: &Connection, record: &InboundRecord) -> Result<CommitResult, StoreError> {
    let (status, record_json) = record.status_and_json()?;
    let committed = status == InboundStatus::Committed;
    if committed {
        // Sees the rows of earlier members of this group too: a second copy of a key in one
        // group is answered as a duplicate of the first.
        if let Some(original) = find_committed(conn, &record.key)? {
            return Ok(CommitResult::Duplicate(original));
        }
    }
    // A large message goes in as a zeroblob and is streamed into its row afterwards: bound
    // as a value, SQLite would copy it once for the binding and once more for the row.
    let streamed = record.raw.len() >= STREAM_RAW_FROM;
    let raw = if streamed {
        // Beyond 2 GiB, over SQLite's own limit of 1 GB for a value: refused either way.
        let length = i32::try_from(record.raw.len())
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        ToSqlOutput::ZeroBlob(length)
    } else {
        ToSqlOutput::Borrowed(ValueRef::Blob(&record.raw))
    };
    let mut insert = conn.prepare_cached(
        "INSERT INTO inbound_messages (
             received_at, committed_at, peer_ip, peer_subject,
             sending_application, sending_facility, control_id, message_type,
             record_json, ack, ack_code, status, sink, digest, raw)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?;
    let inserted = insert.execute(params![
        timestamp::format_rfc3339(record.received_at),
        timestamp::format(timestamp::now()),
        record.peer_ip.map(|ip| ip.to_string()),
        record.peer_subject,
        record.key.sending_application,
        record.key.sending_facility,
        record.key.control_id,
        record.message_type,
        record_json,
        record.ack,
        record.ack_code.as_str(),
        status.as_str(),
        record.sink.as_str(),
        crate::dedup::digest(&record.raw),
        raw,
    ]);
    drop(insert);
    match inserted {
        Ok(_) => {}
        // Unreachable while every writer takes the lock first, kept as the backstop: the
        // failed statement wrote nothing, the transaction is still usable.
        Err(e) if committed && is_unique_violation(&e) => {
            return match find_committed(conn, &record.key)? {
                Some(original) => Ok(CommitResult::Duplicate(original)),
                None => Err(e.into()),
            };
        }
        Err(e) => return Err(e.into()),
    }
    let id = conn.last_insert_rowid();
    if streamed {
        // Into the pages of the row just written, in this transaction: no copy of the whole.
        let mut blob = conn.blob_open(MAIN_DB, "inbound_messages", "raw", id, false)?;
        blob.write_at(&record.raw, 0)?;
        blob.close()?;
    }
    Ok(CommitResult::Committed(id))
}

/// Messages of this many bytes and more are streamed into their row (see [`write_one`]);
/// smaller ones are bound as a value, one call fewer on the commit's path.
const STREAM_RAW_FROM: usize = 64 << 10;

impl Sqlite {
    pub(crate) fn find_duplicate(&self, key: &DedupKey) -> Result<Option<StoredAck>, StoreError> {
        find_committed(&self.conn(), key)
    }

    /// Commits `record` with whatever other commits are waiting (group commit, see
    /// [`group`](crate::store::group)) and blocks until it is durable: one `BEGIN IMMEDIATE`
    /// transaction per group (a savepoint per message only when one of them failed, see
    /// [`commit_group`]); with WAL and `synchronous=FULL` the row is on disk when this
    /// returns `Ok`. When nobody is writing, this thread writes, and goes on with the groups
    /// queued meanwhile until none is left. Never call it from an async task or a runtime's
    /// worker thread: it waits with `blocking_recv`, which panics there.
    pub(crate) fn commit_inbound(&self, record: InboundRecord) -> Outcome {
        let (ticket, lead) = self.groups.enqueue(record);
        if let Some(lead) = lead {
            self.write_groups(lead);
        }
        ticket.wait_blocking()
    }

    /// Queues `record` for the next group; the caller starts [`write_groups`](Self::write_groups)
    /// on a thread that may block when it is handed the lead, then waits on the ticket.
    pub(crate) fn enqueue_inbound(&self, record: InboundRecord) -> (Ticket, Option<Lead>) {
        self.groups.enqueue(record)
    }

    /// The writer: takes the waiting commits group by group, each in one transaction under
    /// the connection's lock (taken per group, so the store's other writers interleave),
    /// until none is waiting.
    pub(crate) fn write_groups(&self, mut lead: Lead) {
        while let Some(members) = lead.next_group() {
            let mut conn = self.conn();
            commit_group(&mut conn, members);
            // Under steady load the queue never empties: taking the lock back at once, as an
            // unfair unlock lets this thread do, would starve the health check, inbox reads
            // and the outbound queue. Hand it to whoever waits first.
            parking_lot::MutexGuard::unlock_fair(conn);
        }
    }

    pub(crate) fn inbound(&self, id: i64) -> Result<Option<InboundRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, received_at, committed_at, peer_ip, peer_subject,
                    sending_application, sending_facility, control_id, message_type,
                    raw, record_json, ack, ack_code, status, sink, inbox_acknowledged_at
             FROM inbound_messages WHERE id = ?1",
        )?;
        let row = stmt
            .query_row([id], |r| {
                Ok((
                    InboundRow {
                        id: r.get(0)?,
                        received_at: instant(r, 1)?,
                        committed_at: instant(r, 2)?,
                        peer_ip: r.get(3)?,
                        peer_subject: r.get(4)?,
                        key: DedupKey::new(
                            r.get::<_, String>(5)?,
                            r.get::<_, String>(6)?,
                            r.get::<_, String>(7)?,
                        ),
                        message_type: r.get(8)?,
                        raw: r.get(9)?,
                        record: None,
                        ack: r.get(11)?,
                        ack_code: parsed(12, r.get(12)?, AckCode::parse)?,
                        status: parsed(13, r.get(13)?, InboundStatus::parse)?,
                        sink: r.get(14)?,
                        inbox_acknowledged_at: instant_opt(r, 15)?,
                    },
                    r.get::<_, Option<String>>(10)?,
                ))
            })
            .optional()?;
        match row {
            Some((mut row, json)) => {
                row.record = parse_record(json)?;
                Ok(Some(row))
            }
            None => Ok(None),
        }
    }

    /// Deletes rows received before `cutoff`, except committed inbox rows EMS has not
    /// acknowledged, in batches.
    pub(crate) fn prune_before(&self, cutoff: SystemTime) -> Result<usize, StoreError> {
        Ok(delete_in_batches(
            self,
            "DELETE FROM inbound_messages WHERE id IN (
                 SELECT id FROM inbound_messages
                 WHERE received_at < ?1
                   AND NOT (status = 'committed' AND sink = 'inbox'
                            AND inbox_acknowledged_at IS NULL)
                 LIMIT 1000)",
            &timestamp::format_rfc3339(cutoff),
        )?)
    }
}
