//! Inbound messages: the commit protocol, duplicates, the audit trail and retention.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{BlockingStore, StoreError, time::format_rfc3339};
use crate::dedup::DedupKey;
use crate::hl7::AckCode;
use crate::sink::SinkKind;

/// What became of a message, from the ACK it was answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InboundStatus {
    /// AA or CA: committed; its key is unique.
    Committed,
    /// AE or CE: kept for audit only.
    Error,
    /// AR or CR: kept for audit only.
    Rejected,
}

impl InboundStatus {
    /// The status an ACK code stands for.
    pub fn of(code: AckCode) -> Self {
        if code.is_accept() {
            Self::Committed
        } else if code.is_error() {
            Self::Error
        } else {
            Self::Rejected
        }
    }

    /// As stored: `committed`, `error`, `rejected`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Committed => "committed",
            Self::Error => "error",
            Self::Rejected => "rejected",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "committed" => Self::Committed,
            "error" => Self::Error,
            "rejected" => Self::Rejected,
            _ => return None,
        })
    }
}

/// One message and the ACK it is answered with, as the receiver hands it to the store.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundRecord {
    /// When the request arrived.
    pub received_at: SystemTime,
    /// The TCP peer.
    pub peer_ip: Option<IpAddr>,
    /// The subject of the peer's client certificate.
    pub peer_subject: Option<String>,
    /// MSH-3, MSH-4, MSH-10.
    pub key: DedupKey,
    /// MSH-9 as `ADT^A28`.
    pub message_type: String,
    /// The exact bytes received.
    pub raw: Vec<u8>,
    /// The mapped record, when mapping succeeded.
    pub record: Option<serde_json::Value>,
    /// The ACK answered, byte for byte.
    pub ack: Vec<u8>,
    /// Its MSA-1; decides the [`InboundStatus`].
    pub ack_code: AckCode,
    /// Who took delivery.
    pub sink: SinkKind,
}

/// The ACK a committed message was answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAck {
    /// The row.
    pub id: i64,
    /// The ACK, byte for byte.
    pub ack: Vec<u8>,
    /// Its MSA-1.
    pub ack_code: AckCode,
    /// When the original arrived.
    pub received_at: String,
}

/// What [`BlockingStore::commit_inbound`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitResult {
    /// The row was written (committed or audit row) and is on disk.
    Committed(i64),
    /// A committed message with the same key was already there (a concurrent retry won):
    /// nothing was written; answer this ACK.
    Duplicate(StoredAck),
}

/// One row of the audit trail.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundRow {
    /// The row id.
    pub id: i64,
    /// When the request arrived (RFC 3339 UTC).
    pub received_at: String,
    /// When the row was written (RFC 3339 UTC).
    pub committed_at: String,
    /// The TCP peer.
    pub peer_ip: Option<String>,
    /// The peer certificate's subject.
    pub peer_subject: Option<String>,
    /// MSH-3, MSH-4, MSH-10.
    pub key: DedupKey,
    /// MSH-9.
    pub message_type: String,
    /// The bytes received.
    pub raw: Vec<u8>,
    /// The mapped record.
    pub record: Option<serde_json::Value>,
    /// The ACK answered.
    pub ack: Vec<u8>,
    /// Its MSA-1.
    pub ack_code: AckCode,
    /// Committed, error or rejected.
    pub status: InboundStatus,
    /// `inbox`, `webhook` or `mllp`.
    pub sink: String,
    /// When EMS acknowledged it (inbox rows).
    pub inbox_acknowledged_at: Option<String>,
}

/// A stored text that should be one of a few values and is not (the file was edited).
#[derive(Debug, thiserror::Error)]
#[error("unexpected stored value {0:?}")]
struct BadValue(String);

pub(super) fn ack_code(idx: usize, text: String) -> rusqlite::Result<AckCode> {
    AckCode::parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            rusqlite::types::Type::Text,
            Box::new(BadValue(text)),
        )
    })
}

fn status(idx: usize, text: String) -> rusqlite::Result<InboundStatus> {
    InboundStatus::parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            rusqlite::types::Type::Text,
            Box::new(BadValue(text)),
        )
    })
}

pub(super) fn parse_record(json: Option<String>) -> Result<Option<serde_json::Value>, StoreError> {
    Ok(match json {
        Some(text) => Some(serde_json::from_str(&text)?),
        None => None,
    })
}

fn find_committed(conn: &Connection, key: &DedupKey) -> Result<Option<StoredAck>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, ack, ack_code, received_at FROM inbound_messages
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
                    ack_code: ack_code(2, r.get(2)?)?,
                    received_at: r.get(3)?,
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

impl BlockingStore {
    /// The stored ACK of the committed message with this key, if any.
    pub fn find_duplicate(&self, key: &DedupKey) -> Result<Option<StoredAck>, StoreError> {
        find_committed(&self.conn(), key)
    }

    /// Writes one message and its ACK in one `BEGIN IMMEDIATE` transaction; with WAL and
    /// `synchronous=FULL` the row is on disk when this returns `Ok`. Only then may the
    /// receiver answer the ACK.
    ///
    /// A committed record (AA/CA) whose key is already committed writes nothing and returns
    /// [`CommitResult::Duplicate`] with the original ACK. Error and rejected records are
    /// always written, as audit rows. A committed record with an empty MSH-10 is refused.
    pub fn commit_inbound(&self, record: &InboundRecord) -> Result<CommitResult, StoreError> {
        let status = InboundStatus::of(record.ack_code);
        let committed = status == InboundStatus::Committed;
        if committed && record.key.control_id.is_empty() {
            return Err(StoreError::MissingControlId);
        }
        let record_json = match &record.record {
            Some(value) => Some(serde_json::to_string(value)?),
            None => None,
        };
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if committed {
            if let Some(original) = find_committed(&tx, &record.key)? {
                return Ok(CommitResult::Duplicate(original));
            }
        }
        let inserted = tx.execute(
            "INSERT INTO inbound_messages (
                 received_at, committed_at, peer_ip, peer_subject,
                 sending_application, sending_facility, control_id, message_type,
                 raw, record_json, ack, ack_code, status, sink)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            params![
                format_rfc3339(record.received_at),
                format_rfc3339(SystemTime::now()),
                record.peer_ip.map(|ip| ip.to_string()),
                record.peer_subject,
                record.key.sending_application,
                record.key.sending_facility,
                record.key.control_id,
                record.message_type,
                record.raw,
                record_json,
                record.ack,
                record.ack_code.as_str(),
                status.as_str(),
                record.sink.as_str(),
            ],
        );
        match inserted {
            Ok(_) => {}
            // Unreachable while every writer takes the lock first, kept as the backstop.
            Err(e) if committed && is_unique_violation(&e) => {
                drop(tx);
                return match find_committed(&conn, &record.key)? {
                    Some(original) => Ok(CommitResult::Duplicate(original)),
                    None => Err(e.into()),
                };
            }
            Err(e) => return Err(e.into()),
        }
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(CommitResult::Committed(id))
    }

    /// One row of the audit trail.
    pub fn inbound(&self, id: i64) -> Result<Option<InboundRow>, StoreError> {
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
                        received_at: r.get(1)?,
                        committed_at: r.get(2)?,
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
                        ack_code: ack_code(12, r.get(12)?)?,
                        status: status(13, r.get(13)?)?,
                        sink: r.get(14)?,
                        inbox_acknowledged_at: r.get(15)?,
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

    /// Deletes rows received more than `older_than` ago; see [`BlockingStore::prune_before`].
    pub fn prune(&self, older_than: Duration) -> Result<usize, StoreError> {
        let cutoff = SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(UNIX_EPOCH);
        self.prune_before(cutoff)
    }

    /// Deletes rows received before `cutoff`, except committed inbox rows EMS has not
    /// acknowledged. Deletes in batches of 1000 rows, one transaction each, so a large
    /// prune never holds the write lock long enough to delay a commit. Returns how many
    /// rows went.
    pub fn prune_before(&self, cutoff: SystemTime) -> Result<usize, StoreError> {
        let cutoff = format_rfc3339(cutoff);
        let mut total = 0;
        loop {
            let deleted = {
                let mut conn = self.conn();
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let n = tx.execute(
                    "DELETE FROM inbound_messages WHERE id IN (
                         SELECT id FROM inbound_messages
                         WHERE received_at < ?1
                           AND NOT (status = 'committed' AND sink = 'inbox'
                                    AND inbox_acknowledged_at IS NULL)
                         LIMIT 1000)",
                    [&cutoff],
                )?;
                tx.commit()?;
                n
            };
            total += deleted;
            if deleted < 1000 {
                return Ok(total);
            }
        }
    }
}
