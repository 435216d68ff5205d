//! Inbound messages in PostgreSQL: the commit protocol, duplicates, the audit trail and
//! retention. Same rules as the SQLite backend; how concurrent replicas keep them is in the
//! [module docs](super).

use std::time::SystemTime;

use deadpool_postgres::{GenericClient, Pool};

use super::{delete_in_batches, instant, instant_opt, locks, parse_record, parsed};
use crate::dedup::DedupKey;
use crate::hl7::AckCode;
use crate::store::{
    APPLICATION_ID, CommitResult, InboundRecord, InboundRow, InboundStatus, StoreError, StoredAck,
    timestamp,
};

async fn find_committed(
    client: &impl GenericClient,
    key: &DedupKey,
) -> Result<Option<StoredAck>, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT id, ack, ack_code, received_at, digest FROM inbound_messages
             WHERE sending_application = $1 AND sending_facility = $2 AND control_id = $3
               AND status = 'committed'",
        )
        .await?;
    let row = client
        .query_opt(
            &stmt,
            &[
                &key.sending_application,
                &key.sending_facility,
                &key.control_id,
            ],
        )
        .await?;
    match row {
        None => Ok(None),
        Some(r) => Ok(Some(StoredAck {
            id: r.try_get("id")?,
            ack: r.try_get("ack")?,
            ack_code: parsed(&r, "ack_code", AckCode::parse)?,
            received_at: instant(&r, "received_at")?,
            digest: r.try_get("digest")?,
        })),
    }
}

pub(crate) async fn find_duplicate(
    pool: Pool,
    key: DedupKey,
) -> Result<Option<StoredAck>, StoreError> {
    let client = pool.get().await?;
    find_committed(&client, &key).await
}

/// One transaction, committed (and, with the server's default `synchronous_commit`,
/// flushed) before this returns `Ok`. The inbound lock orders ids by commit; the insert
/// skips a committed key another writer holds, and the winner's ACK is read back.
pub(crate) async fn commit_inbound(
    pool: Pool,
    record: InboundRecord,
) -> Result<(CommitResult, InboundRecord), StoreError> {
    let (status, record_json) = record.status_and_json()?;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&APPLICATION_ID, &locks::INBOUND],
    )
    .await?;
    let stmt = tx
        .prepare_cached(
            "INSERT INTO inbound_messages (
                 received_at, committed_at, peer_ip, peer_subject,
                 sending_application, sending_facility, control_id, message_type,
                 raw, record_json, ack, ack_code, status, sink, digest)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
             ON CONFLICT (sending_application, sending_facility, control_id)
                 WHERE status = 'committed' DO NOTHING
             RETURNING id",
        )
        .await?;
    let inserted = tx
        .query_opt(
            &stmt,
            &[
                &timestamp::format_rfc3339(record.received_at),
                &timestamp::format(timestamp::now()),
                &record.peer_ip.map(|ip| ip.to_string()),
                &record.peer_subject,
                &record.key.sending_application,
                &record.key.sending_facility,
                &record.key.control_id,
                &record.message_type,
                &record.raw,
                &record_json,
                &record.ack,
                &record.ack_code.as_str(),
                &status.as_str(),
                &record.sink.as_str(),
                &crate::dedup::digest(&record.raw),
            ],
        )
        .await?;
    let result = match inserted {
        Some(row) => CommitResult::Committed(row.try_get("id")?),
        None => match find_committed(&tx, &record.key).await? {
            Some(original) => CommitResult::Duplicate(original),
            // The conflicting row was deleted between the insert and the read (a prune):
            // nothing was written; the caller's retry commits it.
            None => {
                return Err(StoreError::Task(
                    "a committed row with this key vanished during the commit; try again".into(),
                ));
            }
        },
    };
    tx.commit().await?;
    Ok((result, record))
}

pub(crate) async fn inbound(pool: Pool, id: i64) -> Result<Option<InboundRow>, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT id, received_at, committed_at, peer_ip, peer_subject,
                    sending_application, sending_facility, control_id, message_type,
                    raw, record_json, ack, ack_code, status, sink, inbox_acknowledged_at
             FROM inbound_messages WHERE id = $1",
        )
        .await?;
    let Some(r) = client.query_opt(&stmt, &[&id]).await? else {
        return Ok(None);
    };
    Ok(Some(InboundRow {
        id: r.try_get("id")?,
        received_at: instant(&r, "received_at")?,
        committed_at: instant(&r, "committed_at")?,
        peer_ip: r.try_get("peer_ip")?,
        peer_subject: r.try_get("peer_subject")?,
        key: DedupKey::new(
            r.try_get::<_, String>("sending_application")?,
            r.try_get::<_, String>("sending_facility")?,
            r.try_get::<_, String>("control_id")?,
        ),
        message_type: r.try_get("message_type")?,
        raw: r.try_get("raw")?,
        record: parse_record(r.try_get("record_json")?)?,
        ack: r.try_get("ack")?,
        ack_code: parsed(&r, "ack_code", AckCode::parse)?,
        status: parsed(&r, "status", InboundStatus::parse)?,
        sink: r.try_get("sink")?,
        inbox_acknowledged_at: instant_opt(&r, "inbox_acknowledged_at")?,
    }))
}

/// Deletes rows received before `cutoff`, except committed inbox rows EMS has not
/// acknowledged, in batches.
pub(crate) async fn prune_before(pool: &Pool, cutoff: SystemTime) -> Result<usize, StoreError> {
    delete_in_batches(
        pool,
        "DELETE FROM inbound_messages WHERE id IN (
             SELECT id FROM inbound_messages
             WHERE received_at < $1
               AND NOT (status = 'committed' AND sink = 'inbox'
                        AND inbox_acknowledged_at IS NULL)
             LIMIT 1000)",
        &timestamp::format_rfc3339(cutoff),
    )
    .await
}
