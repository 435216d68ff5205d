//! The operators' audit trail and the console's last hour in PostgreSQL (migration 3); the
//! same rows and rules as SQLite's (`store/sqlite/audit.rs`).

use deadpool_postgres::{GenericClient, Pool};
use time::OffsetDateTime;

use super::{instant, parsed};
use crate::queue::{MessageDetail, MessageInfo, QueueError, QueueId};
use crate::store::activity::{self, ActivityRow};
use crate::store::audit::{AuditAction, AuditEntry, Operator};
use crate::store::{StoreError, timestamp};

/// Writes one row of the trail for `message`, in the caller's transaction.
pub(super) async fn record(
    tx: &impl GenericClient,
    action: AuditAction,
    by: &Operator,
    message: &MessageInfo,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO operator_audit
                 (at, action, operator, peer, reason, message_id, destination, control_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &timestamp::format(at),
            &action.as_str(),
            &by.name,
            &by.peer,
            &by.reason,
            &message.id,
            &message.destination,
            &message.control_id,
        ],
    )
    .await?;
    Ok(())
}

/// Message `id` with its bytes, recording that `by` opened it.
pub(crate) async fn open(
    pool: Pool,
    id: QueueId,
    by: Operator,
    at: OffsetDateTime,
) -> Result<Option<MessageDetail>, QueueError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let Some(detail) = super::queue::detail(&tx, id).await? else {
        return Ok(None);
    };
    record(&tx, AuditAction::Open, &by, &detail.info, at).await?;
    tx.commit().await?;
    Ok(Some(detail))
}

/// The trail, newest first.
pub(crate) async fn list(
    pool: Pool,
    destination: Option<String>,
    limit: u32,
) -> Result<Vec<AuditEntry>, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT id, at, action, operator, peer, reason, message_id, destination, control_id
             FROM operator_audit WHERE $1::TEXT IS NULL OR destination = $1
             ORDER BY id DESC LIMIT $2",
        )
        .await?;
    let rows = client
        .query(&stmt, &[&destination, &i64::from(limit)])
        .await?;
    rows.iter()
        .map(|r| {
            Ok(AuditEntry {
                id: r.try_get("id")?,
                at: instant(r, "at")?,
                action: parsed(r, "action", AuditAction::parse)?,
                operator: r.try_get("operator")?,
                peer: r.try_get("peer")?,
                reason: r.try_get("reason")?,
                message_id: r.try_get("message_id")?,
                destination: r.try_get("destination")?,
                control_id: r.try_get("control_id")?,
            })
        })
        .collect()
}

/// The grouped rows of [`activity::query`] since `since` (stored time text).
pub(crate) async fn activity(pool: Pool, since: String) -> Result<Vec<ActivityRow>, StoreError> {
    let client = pool.get().await?;
    let stmt = client.prepare_cached(&activity::query("$1")).await?;
    let rows = client.query(&stmt, &[&since]).await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
        .collect()
}
