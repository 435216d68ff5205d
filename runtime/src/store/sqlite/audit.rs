//! The operators' audit trail and the console's last hour in SQLite (migration 6); see
//! [`crate::store::audit`] and [`crate::store::activity`].

use rusqlite::{Connection, TransactionBehavior, params};
use time::OffsetDateTime;

use super::{Sqlite, instant, parsed};
use crate::queue::{MessageDetail, MessageInfo, QueueError, QueueId};
use crate::store::activity::{self, ActivityRow};
use crate::store::audit::{AuditAction, AuditEntry, Operator};
use crate::store::{StoreError, timestamp};

/// Writes one row of the trail for `message`, in the caller's transaction.
pub(super) fn record(
    tx: &Connection,
    action: AuditAction,
    by: &Operator,
    message: &MessageInfo,
    at: OffsetDateTime,
) -> Result<(), rusqlite::Error> {
    tx.prepare_cached(
        "INSERT INTO operator_audit
             (at, action, operator, peer, reason, message_id, destination, control_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        timestamp::format(at),
        action.as_str(),
        by.name,
        by.peer,
        by.reason,
        message.id,
        message.destination,
        message.control_id,
    ])?;
    Ok(())
}

impl Sqlite {
    /// Message `id` with its bytes, recording that `by` opened it.
    pub(crate) fn audit_open(
        &self,
        id: QueueId,
        by: &Operator,
        at: OffsetDateTime,
    ) -> Result<Option<MessageDetail>, QueueError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(detail) = super::queue::detail(&tx, id)? else {
            return Ok(None);
        };
        record(&tx, AuditAction::Open, by, &detail.info, at)?;
        tx.commit()?;
        Ok(Some(detail))
    }

    /// The trail, newest first.
    pub(crate) fn audit_list(
        &self,
        destination: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, at, action, operator, peer, reason, message_id, destination, control_id
             FROM operator_audit WHERE ?1 IS NULL OR destination = ?1
             ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![destination, limit], |r| {
            Ok(AuditEntry {
                id: r.get(0)?,
                at: instant(r, 1)?,
                action: parsed(2, r.get(2)?, AuditAction::parse)?,
                operator: r.get(3)?,
                peer: r.get(4)?,
                reason: r.get(5)?,
                message_id: r.get(6)?,
                destination: r.get(7)?,
                control_id: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The grouped rows of [`activity::query`] since `since` (stored time text).
    pub(crate) fn activity_rows(&self, since: &str) -> Result<Vec<ActivityRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&activity::query("?1"))?;
        let rows = stmt.query_map([since], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}
