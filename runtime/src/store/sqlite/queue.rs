//! The outbound queue in SQLite: table `outbound_messages` (migrations 2 and 3).
//!
//! Every change is one `BEGIN IMMEDIATE` transaction that reads the row, lets the pure
//! [`apply`] decide, and writes the new [`Progress`] with [`save`]. The head is read without
//! its bytes; [`Sqlite::queue_begin_attempt`] loads them in the transaction that marks the
//! message in flight.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use time::OffsetDateTime;

use super::{Sqlite, delete_in_batches, instant, instant_opt, parsed};
use crate::client::{FailureClass, Outcome};
use crate::hl7::AckCode;
use crate::queue::{
    Action, Enqueued, Event, LastResponse, ListFilter, MAX_LIST, MessageDetail, MessageInfo,
    MessageState, NewMessage, Pending, Progress, QueueError, QueueId, Refusal, StreamCounts, apply,
};
use crate::store::audit::{AuditAction, Operator};
use crate::store::outbound::{SavedProgress, failure_decision};
use crate::store::{StoreError, timestamp};

impl From<rusqlite::Error> for QueueError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Store(StoreError::Sqlite(e))
    }
}

use crate::store::outbound::COLUMNS;

/// The index of `raw` when it follows [`COLUMNS`].
const RAW: usize = 23;

/// The head of stream `?1`: its lowest pending id.
const HEAD: &str = "FROM outbound_messages
     WHERE destination = ?1 AND state IN ('queued', 'in_flight', 'held')
     ORDER BY id LIMIT 1";

fn count(r: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<u32> {
    let n: i64 = r.get(idx)?;
    Ok(u32::try_from(n.max(0)).unwrap_or(u32::MAX))
}

fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn info(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageInfo> {
    let outcome: Option<String> = r.get(18)?;
    let last_response = match outcome {
        None => None,
        Some(text) => {
            let failure = if text == "accepted" {
                None
            } else {
                Some(parsed(18, text, FailureClass::parse)?)
            };
            let ack_code = match r.get::<_, Option<String>>(20)? {
                None => None,
                Some(code) => Some(parsed(20, code, AckCode::parse)?),
            };
            let at = match instant_opt(r, 22)? {
                Some(at) => at,
                None => instant(r, 5)?,
            };
            Some(LastResponse {
                at,
                failure,
                http_status: r
                    .get::<_, Option<i64>>(19)?
                    .and_then(|s| u16::try_from(s).ok()),
                ack_code,
                text: r.get::<_, Option<String>>(21)?.unwrap_or_default(),
            })
        }
    };
    Ok(MessageInfo {
        id: r.get(0)?,
        destination: r.get(1)?,
        control_id: r.get(2)?,
        message_type: r.get(3)?,
        state: parsed(4, r.get(4)?, MessageState::parse)?,
        enqueued_at: instant(r, 5)?,
        attempts: count(r, 6)?,
        failures: count(r, 7)?,
        first_attempt_at: instant_opt(r, 8)?,
        last_attempt_at: instant_opt(r, 9)?,
        failing_since: instant_opt(r, 10)?,
        next_attempt_at: instant_opt(r, 11)?,
        delivered_at: instant_opt(r, 12)?,
        held_at: instant_opt(r, 13)?,
        held_reason: r.get(14)?,
        skipped_at: instant_opt(r, 15)?,
        skip_reason: r.get(16)?,
        released_at: instant_opt(r, 17)?,
        last_response,
    })
}

fn info_by_id(conn: &Connection, id: QueueId) -> Result<Option<MessageInfo>, QueueError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM outbound_messages WHERE id = ?1"
    ))?;
    Ok(stmt.query_row([id], info).optional()?)
}

/// Message `id` with its bytes.
pub(super) fn detail(conn: &Connection, id: QueueId) -> Result<Option<MessageDetail>, QueueError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS}, raw FROM outbound_messages WHERE id = ?1"
    ))?;
    Ok(stmt
        .query_row([id], |r| {
            Ok(MessageDetail {
                info: info(r)?,
                raw: r.get(RAW)?,
            })
        })
        .optional()?)
}

/// Writes `p` to row `id` ([`SavedProgress`] says which columns change).
fn save(tx: &Connection, id: QueueId, p: &Progress) -> Result<(), QueueError> {
    let v = SavedProgress::of(p);
    tx.prepare_cached(
        "UPDATE outbound_messages SET
             state = ?2, attempts = ?3, failures = ?4, first_attempt_at = ?5,
             last_attempt_at = ?6, failing_since = ?7, released_at = ?8, next_attempt_at = ?9,
             delivered_at = CASE WHEN ?10 THEN ?11 ELSE delivered_at END,
             held_at = CASE WHEN ?12 THEN ?13 ELSE held_at END,
             held_reason = CASE WHEN ?12 THEN ?14 ELSE held_reason END,
             skipped_at = CASE WHEN ?15 THEN ?16 ELSE skipped_at END,
             skip_reason = CASE WHEN ?15 THEN ?17 ELSE skip_reason END
         WHERE id = ?1",
    )?
    .execute(params![
        id,
        v.state,
        v.attempts,
        v.failures,
        v.first_attempt_at,
        v.last_attempt_at,
        v.failing_since,
        v.released_at,
        v.next_attempt_at,
        v.delivered.0,
        v.delivered.1,
        v.held.0,
        v.held.1,
        v.held.2,
        v.skipped.0,
        v.skipped.1,
        v.skipped.2,
    ])?;
    Ok(())
}

/// Records the latest response (columns `last_outcome` … `last_response_at`).
fn record_response(
    tx: &Connection,
    id: QueueId,
    outcome: &Outcome,
    at: OffsetDateTime,
) -> Result<(), QueueError> {
    tx.prepare_cached(
        "UPDATE outbound_messages
         SET last_outcome = ?2, last_http_status = ?3, last_ack_code = ?4,
             last_response = ?5, last_response_at = ?6
         WHERE id = ?1",
    )?
    .execute(params![
        id,
        outcome.failure.map_or("accepted", FailureClass::as_str),
        outcome.http_status,
        outcome.ack_code.map(AckCode::as_str),
        outcome.detail,
        timestamp::format(at),
    ])?;
    Ok(())
}

/// Reads row `id`, applies `event` and saves the result; the row as it was and the
/// transition's verdict.
fn transition(
    tx: &Connection,
    id: QueueId,
    event: Event,
) -> Result<Result<MessageInfo, Refusal>, QueueError> {
    let row = info_by_id(tx, id)?.ok_or(QueueError::NotFound(id))?;
    match apply(&row.progress(), event) {
        Ok(next) => {
            save(tx, id, &next)?;
            Ok(Ok(row))
        }
        Err(refusal) => Ok(Err(refusal)),
    }
}

/// The lowest pending message of `destination`, with its bytes.
fn head_with_raw(conn: &Connection, destination: &str) -> Result<Option<Pending>, QueueError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS}, raw {HEAD}"))?;
    Ok(stmt
        .query_row([destination], |r| {
            Ok(Pending {
                info: info(r)?,
                raw: r.get(RAW)?,
            })
        })
        .optional()?)
}

/// Marks the head of `destination` in flight when it is queued (not held, not in flight
/// already) and returns it with its bytes, as it was before.
fn begin_head(
    tx: &Connection,
    destination: &str,
    at: OffsetDateTime,
) -> Result<Option<Pending>, QueueError> {
    let head = head_with_raw(tx, destination)?;
    let Some(head) = head.filter(|h| h.info.state == MessageState::Queued) else {
        return Ok(None);
    };
    match transition(tx, head.info.id, Event::Send { at })? {
        Ok(_) => Ok(Some(head)),
        Err(_) => Ok(None),
    }
}

fn insert(
    tx: &Connection,
    destination: &str,
    message: &NewMessage,
    at: &str,
) -> Result<Enqueued, QueueError> {
    if let Some(idempotency) = &message.idempotency {
        let earlier: Option<(QueueId, Option<String>)> = tx
            .prepare_cached(
                "SELECT id, request_sha256 FROM outbound_messages
                 WHERE destination = ?1 AND idempotency_key = ?2",
            )?
            .query_row(params![destination, idempotency.key], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        if let Some((id, digest)) = earlier {
            return message.repeat_of_key(id, digest.as_deref());
        }
    }
    let existing: Option<(QueueId, Vec<u8>)> = tx
        .prepare_cached(
            "SELECT id, raw FROM outbound_messages WHERE destination = ?1 AND control_id = ?2",
        )?
        .query_row(params![destination, message.control_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    if let Some((id, stored)) = existing {
        return message.repeat_of_control_id(destination, id, &stored);
    }
    let (key, digest) = message.idempotency_columns();
    tx.prepare_cached(
        "INSERT INTO outbound_messages
             (destination, control_id, message_type, raw, state, enqueued_at, idempotency_key, request_sha256)
         VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6, ?7)",
    )?
    .execute(params![
        destination,
        message.control_id,
        message.message_type,
        message.raw,
        at,
        key,
        digest
    ])?;
    Ok(Enqueued {
        id: tx.last_insert_rowid(),
        created: true,
    })
}

impl Sqlite {
    /// All or none, in one transaction.
    pub(crate) fn queue_enqueue(
        &self,
        destination: &str,
        messages: &[NewMessage],
        at: OffsetDateTime,
    ) -> Result<Vec<Enqueued>, QueueError> {
        let at = timestamp::format(at);
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let done = messages
            .iter()
            .map(|m| insert(&tx, destination, m, &at))
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit()?;
        Ok(done)
    }

    /// The lowest pending message of the stream, without its bytes: what the sequencer
    /// reads while the stream waits.
    pub(crate) fn queue_head(&self, destination: &str) -> Result<Option<MessageInfo>, QueueError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} {HEAD}"))?;
        Ok(stmt.query_row([destination], info).optional()?)
    }

    /// The lowest pending message of the stream, with its bytes.
    pub(crate) fn queue_head_with_raw(
        &self,
        destination: &str,
    ) -> Result<Option<Pending>, QueueError> {
        head_with_raw(&self.conn(), destination)
    }

    pub(crate) fn queue_counts(&self, destination: &str) -> Result<StreamCounts, QueueError> {
        let conn = self.conn();
        let counts = conn
            .prepare_cached(
                "SELECT COALESCE(SUM(state IN ('queued', 'in_flight', 'held')), 0),
                        COALESCE(SUM(state = 'delivered'), 0),
                        COALESCE(SUM(state = 'skipped'), 0),
                        MAX(delivered_at)
                 FROM outbound_messages WHERE destination = ?1",
            )?
            .query_row([destination], |r| {
                Ok(StreamCounts {
                    depth: unsigned(r.get(0)?),
                    delivered: unsigned(r.get(1)?),
                    skipped: unsigned(r.get(2)?),
                    last_delivered_at: instant_opt(r, 3)?,
                })
            })?;
        Ok(counts)
    }

    pub(crate) fn queue_destinations(&self) -> Result<Vec<String>, QueueError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT DISTINCT destination FROM outbound_messages ORDER BY destination",
        )?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<Vec<String>, _>>()?)
    }

    pub(crate) fn queue_list(&self, filter: &ListFilter) -> Result<Vec<MessageInfo>, QueueError> {
        let states = if filter.states.is_empty() {
            MessageState::ALL.to_vec()
        } else {
            filter.states.clone()
        };
        // The state names are the queue's constants, not input.
        let in_list = states
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let order = if filter.newest_first { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT {COLUMNS} FROM outbound_messages
             WHERE id > ?1 AND (?2 IS NULL OR destination = ?2) AND state IN ({in_list})
             ORDER BY id {order} LIMIT ?3"
        );
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(
            params![filter.after, filter.destination, filter.limit.min(MAX_LIST)],
            info,
        )?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    pub(crate) fn queue_show(&self, id: QueueId) -> Result<Option<MessageDetail>, QueueError> {
        detail(&self.conn(), id)
    }

    /// An operator's retry or skip, recorded in the audit trail in the same transaction;
    /// the row after it.
    pub(crate) fn queue_operator(
        &self,
        id: QueueId,
        event: Event,
        by: &Operator,
    ) -> Result<MessageInfo, QueueError> {
        let action = AuditAction::of(&event);
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Err(refusal) = transition(&tx, id, event)? {
            return Err(QueueError::NotPending {
                id,
                state: refusal.state(),
            });
        }
        let row = info_by_id(&tx, id)?.ok_or(QueueError::NotFound(id))?;
        super::audit::record(&tx, action, by, &row, timestamp::now())?;
        tx.commit()?;
        Ok(row)
    }

    /// Deletes delivered messages delivered before `cutoff` and skipped ones skipped before
    /// it; pending ones (queued, in flight, held) never.
    pub(crate) fn queue_prune_finished(&self, cutoff: OffsetDateTime) -> Result<usize, StoreError> {
        Ok(delete_in_batches(
            self,
            "DELETE FROM outbound_messages WHERE id IN (
                 SELECT id FROM outbound_messages
                 WHERE (state = 'delivered' AND delivered_at < ?1)
                    OR (state = 'skipped' AND skipped_at < ?1)
                 LIMIT 1000)",
            &timestamp::format(cutoff),
        )?)
    }

    /// Puts the stream's in-flight messages back to `queued`; returns them as they were.
    pub(crate) fn queue_recover(&self, destination: &str) -> Result<Vec<MessageInfo>, QueueError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found = {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM outbound_messages
                 WHERE destination = ?1 AND state = 'in_flight' ORDER BY id"
            ))?;
            let rows = stmt.query_map([destination], info)?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        for row in &found {
            if let Ok(next) = apply(&row.progress(), Event::Restart) {
                save(&tx, row.id, &next)?;
            }
        }
        tx.commit()?;
        Ok(found)
    }

    /// Marks the message in flight and returns its bytes; `None` when it is not sendable.
    pub(crate) fn queue_begin_attempt(
        &self,
        id: QueueId,
        at: OffsetDateTime,
    ) -> Result<Option<Vec<u8>>, QueueError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        match transition(&tx, id, Event::Send { at }) {
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(QueueError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        }
        let raw: Vec<u8> = tx
            .prepare_cached("SELECT raw FROM outbound_messages WHERE id = ?1")?
            .query_row([id], |r| r.get(0))?;
        tx.commit()?;
        Ok(Some(raw))
    }

    /// Records an accepting ACK and, in the same transaction (one fsync), marks the
    /// stream's next message in flight when it is queued: the delivery and the next send's
    /// start share one commit. `(false, None)` when the message was delivered already.
    pub(crate) fn queue_record_delivered_then_begin(
        &self,
        id: QueueId,
        destination: &str,
        outcome: &Outcome,
        at: OffsetDateTime,
    ) -> Result<(bool, Option<Pending>), QueueError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let event = Event::Accepted {
            at,
            ack_code: outcome.ack_code,
        };
        match transition(&tx, id, event) {
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(QueueError::NotFound(_)) => return Ok((false, None)),
            Err(e) => return Err(e),
        }
        record_response(&tx, id, outcome, at)?;
        let next = begin_head(&tx, destination, at)?;
        tx.commit()?;
        Ok((true, next))
    }

    /// Records a failure and, when the message is still in flight, the policy's action.
    pub(crate) fn queue_record_failure(
        &self,
        id: QueueId,
        outcome: &Outcome,
        at: OffsetDateTime,
        decide: impl FnOnce(u32) -> Action,
    ) -> Result<Option<(u32, Action)>, QueueError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        record_response(&tx, id, outcome, at)?;
        let row = info_by_id(&tx, id)?.ok_or(QueueError::NotFound(id))?;
        let decided = match failure_decision(&row, at, decide) {
            Some((failures, action, next)) => {
                save(&tx, id, &next)?;
                Some((failures, action))
            }
            None => None,
        };
        tx.commit()?;
        Ok(decided)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use crate::store::StoreOptions;

    const RAW: &[u8] = b"MSH|^~\\&|GW|EMS|TIE|TRUST|20260101120000||ORU^R01|MSG1|T|2.4\rPID|1\r";

    fn open() -> (tempfile::TempDir, Sqlite) {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::open(&dir.path().join("q.sqlite"), &StoreOptions::default()).unwrap();
        (dir, db)
    }

    fn new_message() -> NewMessage {
        NewMessage {
            control_id: "MSG1".into(),
            message_type: "ORU^R01".into(),
            raw: RAW.to_vec(),
            idempotency: None,
        }
    }

    #[test]
    fn the_head_is_read_without_its_bytes_until_a_send_is_due() {
        let (_dir, db) = open();
        let now = timestamp::now();
        let id = db.queue_enqueue("engine", &[new_message()], now).unwrap()[0].id;
        let head = db.queue_head("engine").unwrap().unwrap();
        assert_eq!((head.id, head.state), (id, MessageState::Queued));
        assert_eq!(db.queue_head_with_raw("engine").unwrap().unwrap().raw, RAW);
        // Marking it in flight is what loads the bytes.
        assert_eq!(
            db.queue_begin_attempt(id, now).unwrap().as_deref(),
            Some(RAW)
        );
        let row = db.queue_show(id).unwrap().unwrap().info;
        assert_eq!((row.state, row.attempts), (MessageState::InFlight, 1));
        assert_eq!(row.first_attempt_at, Some(now));
        assert_eq!(db.queue_begin_attempt(9999, now).unwrap(), None);
    }

    #[test]
    fn a_held_message_is_not_sent_and_a_skip_keeps_why_it_was_held() {
        let (_dir, db) = open();
        let now = timestamp::now();
        let id = db.queue_enqueue("engine", &[new_message()], now).unwrap()[0].id;
        db.queue_begin_attempt(id, now).unwrap();
        let outcome = Outcome::failed(FailureClass::Http4xx, "HTTP 400");
        let decided = db
            .queue_record_failure(id, &outcome, now, |n| {
                Action::Hold(format!("held after {n}"))
            })
            .unwrap();
        assert_eq!(decided, Some((1, Action::Hold("held after 1".into()))));
        assert_eq!(
            db.queue_begin_attempt(id, now).unwrap(),
            None,
            "held means held"
        );
        let skip = Event::Skip {
            at: now,
            reason: "skipped by an operator".into(),
        };
        let by = Operator::cli(Some("test"));
        let row = db.queue_operator(id, skip.clone(), &by).unwrap();
        assert_eq!(row.state, MessageState::Skipped);
        assert_eq!(row.held_reason.as_deref(), Some("held after 1"));
        assert_eq!(
            row.last_response.unwrap().failure,
            Some(FailureClass::Http4xx)
        );
        assert!(matches!(
            db.queue_operator(id, skip, &by),
            Err(QueueError::NotPending {
                state: MessageState::Skipped,
                ..
            })
        ));
    }
}
