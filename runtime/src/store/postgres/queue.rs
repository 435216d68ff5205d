//! The outbound queue in PostgreSQL: table `outbound_messages`, same columns and rules as the
//! SQLite backend's (`store/sqlite/queue.rs`).
//!
//! Every change is one transaction that locks the row (`FOR UPDATE`), lets the pure
//! [`apply`] decide, and writes the new [`Progress`] with [`save`]. The sequencer's changes
//! (marking in flight, recording an outcome, recovering) first check its [`Fence`] against
//! the stream's lease row in the same transaction, holding that row (`FOR SHARE`) until the
//! commit: a replica whose lease was taken over cannot record, and a takeover waits for a
//! recording in progress to commit.

use deadpool_postgres::{GenericClient, Pool};
use time::OffsetDateTime;
use tokio_postgres::Row;

use super::{instant, instant_opt, parsed, parsed_opt};
use crate::client::{FailureClass, Outcome};
use crate::hl7::AckCode;
use crate::queue::{
    Action, Enqueued, Event, LastResponse, ListFilter, MAX_LIST, MessageDetail, MessageInfo,
    MessageState, NewMessage, Pending, Progress, QueueError, QueueId, Refusal, StreamCounts, apply,
};
use crate::store::audit::{AuditAction, Operator};
use crate::store::outbound::{SavedProgress, failure_decision};
use crate::store::{Fence, StoreError, timestamp};

impl From<tokio_postgres::Error> for QueueError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Store(StoreError::Postgres(e))
    }
}

impl From<deadpool_postgres::PoolError> for QueueError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Store(StoreError::from(e))
    }
}

use crate::store::outbound::COLUMNS;

/// The head of stream `$1`: its lowest pending id.
const HEAD: &str = "FROM outbound_messages
     WHERE destination = $1 AND state IN ('queued', 'in_flight', 'held')
     ORDER BY id LIMIT 1";

fn count(r: &Row, column: &str) -> Result<u32, StoreError> {
    let n: i64 = r.try_get(column)?;
    Ok(u32::try_from(n.max(0)).unwrap_or(u32::MAX))
}

fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn info(r: &Row) -> Result<MessageInfo, StoreError> {
    let last_response = match r.try_get::<_, Option<String>>("last_outcome")? {
        None => None,
        Some(outcome) => {
            let failure = if outcome == "accepted" {
                None
            } else {
                Some(parsed(r, "last_outcome", FailureClass::parse)?)
            };
            let at = match instant_opt(r, "last_response_at")? {
                Some(at) => at,
                None => instant(r, "enqueued_at")?,
            };
            Some(LastResponse {
                at,
                failure,
                http_status: r
                    .try_get::<_, Option<i64>>("last_http_status")?
                    .and_then(|s| u16::try_from(s).ok()),
                ack_code: parsed_opt(r, "last_ack_code", AckCode::parse)?,
                text: r
                    .try_get::<_, Option<String>>("last_response")?
                    .unwrap_or_default(),
            })
        }
    };
    Ok(MessageInfo {
        id: r.try_get("id")?,
        destination: r.try_get("destination")?,
        control_id: r.try_get("control_id")?,
        message_type: r.try_get("message_type")?,
        state: parsed(r, "state", MessageState::parse)?,
        enqueued_at: instant(r, "enqueued_at")?,
        attempts: count(r, "attempts")?,
        failures: count(r, "failures")?,
        first_attempt_at: instant_opt(r, "first_attempt_at")?,
        last_attempt_at: instant_opt(r, "last_attempt_at")?,
        failing_since: instant_opt(r, "failing_since")?,
        next_attempt_at: instant_opt(r, "next_attempt_at")?,
        delivered_at: instant_opt(r, "delivered_at")?,
        held_at: instant_opt(r, "held_at")?,
        held_reason: r.try_get("held_reason")?,
        skipped_at: instant_opt(r, "skipped_at")?,
        skip_reason: r.try_get("skip_reason")?,
        released_at: instant_opt(r, "released_at")?,
        last_response,
    })
}

/// Row `id`, locked for the rest of the transaction.
async fn locked_info(
    tx: &impl GenericClient,
    id: QueueId,
) -> Result<Option<MessageInfo>, QueueError> {
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM outbound_messages WHERE id = $1 FOR UPDATE"
        ))
        .await?;
    match tx.query_opt(&stmt, &[&id]).await? {
        Some(r) => Ok(Some(info(&r)?)),
        None => Ok(None),
    }
}

/// Writes `p` to row `id` ([`SavedProgress`] says which columns change).
async fn save(tx: &impl GenericClient, id: QueueId, p: &Progress) -> Result<(), QueueError> {
    let v = SavedProgress::of(p);
    let stmt = tx
        .prepare_cached(
            "UPDATE outbound_messages SET
                 state = $2, attempts = $3, failures = $4, first_attempt_at = $5,
                 last_attempt_at = $6, failing_since = $7, released_at = $8, next_attempt_at = $9,
                 delivered_at = CASE WHEN $10 THEN $11 ELSE delivered_at END,
                 held_at = CASE WHEN $12 THEN $13 ELSE held_at END,
                 held_reason = CASE WHEN $12 THEN $14 ELSE held_reason END,
                 skipped_at = CASE WHEN $15 THEN $16 ELSE skipped_at END,
                 skip_reason = CASE WHEN $15 THEN $17 ELSE skip_reason END
             WHERE id = $1",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &id,
            &v.state,
            &v.attempts,
            &v.failures,
            &v.first_attempt_at,
            &v.last_attempt_at,
            &v.failing_since,
            &v.released_at,
            &v.next_attempt_at,
            &v.delivered.0,
            &v.delivered.1,
            &v.held.0,
            &v.held.1,
            &v.held.2,
            &v.skipped.0,
            &v.skipped.1,
            &v.skipped.2,
        ],
    )
    .await?;
    Ok(())
}

/// Records the latest response (columns `last_outcome` … `last_response_at`).
async fn record_response(
    tx: &impl GenericClient,
    id: QueueId,
    outcome: &Outcome,
    at: OffsetDateTime,
) -> Result<(), QueueError> {
    let stmt = tx
        .prepare_cached(
            "UPDATE outbound_messages
             SET last_outcome = $2, last_http_status = $3, last_ack_code = $4,
                 last_response = $5, last_response_at = $6
             WHERE id = $1",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &id,
            &outcome.failure.map_or("accepted", FailureClass::as_str),
            &outcome.http_status.map(i64::from),
            &outcome.ack_code.map(AckCode::as_str),
            &outcome.detail,
            &timestamp::format(at),
        ],
    )
    .await?;
    Ok(())
}

/// Locks row `id`, applies `event` and saves the result; the row as it was and the
/// transition's verdict.
async fn transition(
    tx: &impl GenericClient,
    id: QueueId,
    event: Event,
) -> Result<Result<MessageInfo, Refusal>, QueueError> {
    let row = locked_info(tx, id).await?.ok_or(QueueError::NotFound(id))?;
    match apply(&row.progress(), event) {
        Ok(next) => {
            save(tx, id, &next).await?;
            Ok(Ok(row))
        }
        Err(refusal) => Ok(Err(refusal)),
    }
}

/// Refuses with [`QueueError::LeaseLost`] unless `fence` is still the stream's lease; holds
/// the lease row until the transaction ends, so a takeover waits for this one.
async fn check_fence(tx: &impl GenericClient, fence: Option<&Fence>) -> Result<(), QueueError> {
    let Some(fence) = fence else {
        return Ok(());
    };
    let stmt = tx
        .prepare_cached(
            "SELECT token FROM stream_leases
             WHERE destination = $1 AND holder = $2 AND token = $3 FOR SHARE",
        )
        .await?;
    let held = tx
        .query_opt(&stmt, &[&fence.destination, &fence.holder, &fence.token])
        .await?;
    if held.is_none() {
        return Err(QueueError::LeaseLost {
            destination: fence.destination.clone(),
            token: fence.token,
        });
    }
    Ok(())
}

async fn insert(
    tx: &impl GenericClient,
    destination: &str,
    message: &NewMessage,
    at: &str,
) -> Result<Enqueued, QueueError> {
    if let Some(idempotency) = &message.idempotency {
        let stmt = tx
            .prepare_cached(
                "SELECT id, request_sha256 FROM outbound_messages
                 WHERE destination = $1 AND idempotency_key = $2",
            )
            .await?;
        if let Some(r) = tx
            .query_opt(&stmt, &[&destination, &idempotency.key])
            .await?
        {
            let digest: Option<String> = r.try_get("request_sha256")?;
            return message.repeat_of_key(r.try_get("id")?, digest.as_deref());
        }
    }
    let stmt = tx
        .prepare_cached(
            "SELECT id, raw FROM outbound_messages WHERE destination = $1 AND control_id = $2",
        )
        .await?;
    if let Some(r) = tx
        .query_opt(&stmt, &[&destination, &message.control_id])
        .await?
    {
        let stored: Vec<u8> = r.try_get("raw")?;
        return message.repeat_of_control_id(destination, r.try_get("id")?, &stored);
    }
    let (key, digest) = message.idempotency_columns();
    let stmt = tx
        .prepare_cached(
            "INSERT INTO outbound_messages
                 (destination, control_id, message_type, raw, state, enqueued_at,
                  idempotency_key, request_sha256)
             VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7)
             RETURNING id",
        )
        .await?;
    let row = tx
        .query_one(
            &stmt,
            &[
                &destination,
                &message.control_id,
                &message.message_type,
                &message.raw,
                &at,
                &key,
                &digest,
            ],
        )
        .await?;
    Ok(Enqueued {
        id: row.try_get("id")?,
        created: true,
    })
}

/// All or none, in one transaction under the destination's lock: the stream's ids commit in
/// order, and a repeat of an MSH-10 or an `Idempotency-Key` finds the first.
pub(crate) async fn enqueue(
    pool: Pool,
    destination: String,
    messages: Vec<NewMessage>,
    at: OffsetDateTime,
) -> Result<Vec<Enqueued>, QueueError> {
    let at = timestamp::format(at);
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('hl7gw.outbound.' || $1::TEXT, 0))",
        &[&destination],
    )
    .await?;
    let mut done = Vec::with_capacity(messages.len());
    for message in &messages {
        done.push(insert(&tx, &destination, message, &at).await?);
    }
    tx.commit().await?;
    Ok(done)
}

/// The lowest pending message of the stream, without its bytes.
pub(crate) async fn head(
    pool: Pool,
    destination: String,
) -> Result<Option<MessageInfo>, QueueError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(&format!("SELECT {COLUMNS} {HEAD}"))
        .await?;
    match client.query_opt(&stmt, &[&destination]).await? {
        Some(r) => Ok(Some(info(&r)?)),
        None => Ok(None),
    }
}

/// The lowest pending message of the stream, with its bytes.
pub(crate) async fn head_with_raw(
    pool: Pool,
    destination: String,
) -> Result<Option<Pending>, QueueError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(&format!("SELECT {COLUMNS}, raw {HEAD}"))
        .await?;
    match client.query_opt(&stmt, &[&destination]).await? {
        Some(r) => Ok(Some(Pending {
            info: info(&r)?,
            raw: r.try_get("raw")?,
        })),
        None => Ok(None),
    }
}

pub(crate) async fn counts(pool: Pool, destination: String) -> Result<StreamCounts, QueueError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT COUNT(*) FILTER (WHERE state IN ('queued', 'in_flight', 'held')) AS depth,
                    COUNT(*) FILTER (WHERE state = 'delivered') AS delivered,
                    COUNT(*) FILTER (WHERE state = 'skipped') AS skipped,
                    MAX(delivered_at) AS last_delivered_at
             FROM outbound_messages WHERE destination = $1",
        )
        .await?;
    let r = client.query_one(&stmt, &[&destination]).await?;
    Ok(StreamCounts {
        depth: unsigned(r.try_get("depth")?),
        delivered: unsigned(r.try_get("delivered")?),
        skipped: unsigned(r.try_get("skipped")?),
        last_delivered_at: instant_opt(&r, "last_delivered_at")?,
    })
}

pub(crate) async fn destinations(pool: Pool) -> Result<Vec<String>, QueueError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached("SELECT DISTINCT destination FROM outbound_messages ORDER BY destination")
        .await?;
    let rows = client.query(&stmt, &[]).await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get::<_, String>(0))
        .collect::<Result<Vec<_>, _>>()?)
}

pub(crate) async fn list(pool: Pool, filter: ListFilter) -> Result<Vec<MessageInfo>, QueueError> {
    let states: Vec<&str> = if filter.states.is_empty() {
        MessageState::ALL.iter().map(|s| s.as_str()).collect()
    } else {
        filter.states.iter().map(|s| s.as_str()).collect()
    };
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM outbound_messages
             WHERE id > $1 AND ($2::TEXT IS NULL OR destination = $2) AND state = ANY($3)
             ORDER BY id {} LIMIT $4",
            if filter.newest_first { "DESC" } else { "ASC" }
        ))
        .await?;
    let limit = i64::from(filter.limit.min(MAX_LIST));
    let rows = client
        .query(
            &stmt,
            &[&filter.after, &filter.destination, &states, &limit],
        )
        .await?;
    Ok(rows.iter().map(info).collect::<Result<Vec<_>, _>>()?)
}

pub(crate) async fn show(pool: Pool, id: QueueId) -> Result<Option<MessageDetail>, QueueError> {
    let client = pool.get().await?;
    detail(&client, id).await
}

/// Message `id` with its bytes.
pub(super) async fn detail(
    client: &impl GenericClient,
    id: QueueId,
) -> Result<Option<MessageDetail>, QueueError> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS}, raw FROM outbound_messages WHERE id = $1"
        ))
        .await?;
    match client.query_opt(&stmt, &[&id]).await? {
        Some(r) => Ok(Some(MessageDetail {
            info: info(&r)?,
            raw: r.try_get("raw")?,
        })),
        None => Ok(None),
    }
}

/// An operator's retry or skip, recorded in the audit trail in the same transaction; the
/// row after it. Operators act from any replica, without a lease: the row lock orders them
/// with the leader's own transitions.
pub(crate) async fn operator(
    pool: Pool,
    id: QueueId,
    event: Event,
    by: Operator,
) -> Result<MessageInfo, QueueError> {
    let action = AuditAction::of(&event);
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    if let Err(refusal) = transition(&tx, id, event).await? {
        return Err(QueueError::NotPending {
            id,
            state: refusal.state(),
        });
    }
    let row = locked_info(&tx, id)
        .await?
        .ok_or(QueueError::NotFound(id))?;
    super::audit::record(&tx, action, &by, &row, timestamp::now()).await?;
    tx.commit().await?;
    Ok(row)
}

/// Deletes delivered messages delivered before `cutoff` and skipped ones skipped before it.
pub(crate) async fn prune_finished(
    pool: &Pool,
    cutoff: OffsetDateTime,
) -> Result<usize, StoreError> {
    super::delete_in_batches(
        pool,
        "DELETE FROM outbound_messages WHERE id IN (
             SELECT id FROM outbound_messages
             WHERE (state = 'delivered' AND delivered_at < $1)
                OR (state = 'skipped' AND skipped_at < $1)
             LIMIT 1000)",
        &timestamp::format(cutoff),
    )
    .await
}

/// Puts the stream's in-flight messages back to `queued`; returns them as they were.
pub(crate) async fn recover(
    pool: Pool,
    destination: String,
    fence: Option<Fence>,
) -> Result<Vec<MessageInfo>, QueueError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    check_fence(&tx, fence.as_ref()).await?;
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM outbound_messages
             WHERE destination = $1 AND state = 'in_flight' ORDER BY id FOR UPDATE"
        ))
        .await?;
    let found = tx
        .query(&stmt, &[&destination])
        .await?
        .iter()
        .map(info)
        .collect::<Result<Vec<_>, _>>()?;
    for row in &found {
        if let Ok(next) = apply(&row.progress(), Event::Restart) {
            save(&tx, row.id, &next).await?;
        }
    }
    tx.commit().await?;
    Ok(found)
}

/// Marks the message in flight and returns its bytes; `None` when it is not sendable.
pub(crate) async fn begin_attempt(
    pool: Pool,
    id: QueueId,
    at: OffsetDateTime,
    fence: Option<Fence>,
) -> Result<Option<Vec<u8>>, QueueError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    check_fence(&tx, fence.as_ref()).await?;
    match transition(&tx, id, Event::Send { at }).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) | Err(QueueError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    }
    let stmt = tx
        .prepare_cached("SELECT raw FROM outbound_messages WHERE id = $1")
        .await?;
    let raw: Vec<u8> = tx.query_one(&stmt, &[&id]).await?.try_get("raw")?;
    tx.commit().await?;
    Ok(Some(raw))
}

/// Records an accepting ACK and, in the same transaction (the fencing token checked in it),
/// marks the stream's next message in flight when it is queued: one commit per delivery.
/// `(false, None)` when the message was delivered already.
pub(crate) async fn record_delivered_then_begin(
    pool: Pool,
    id: QueueId,
    destination: String,
    outcome: Outcome,
    at: OffsetDateTime,
    fence: Option<Fence>,
) -> Result<(bool, Option<Pending>), QueueError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    check_fence(&tx, fence.as_ref()).await?;
    let event = Event::Accepted {
        at,
        ack_code: outcome.ack_code,
    };
    match transition(&tx, id, event).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) | Err(QueueError::NotFound(_)) => return Ok((false, None)),
        Err(e) => return Err(e),
    }
    record_response(&tx, id, &outcome, at).await?;
    let next = begin_head(&tx, &destination, at).await?;
    tx.commit().await?;
    Ok((true, next))
}

/// Marks the head of `destination` in flight when it is queued (not held, not in flight
/// already) and returns it with its bytes, as it was before.
async fn begin_head(
    tx: &impl GenericClient,
    destination: &str,
    at: OffsetDateTime,
) -> Result<Option<Pending>, QueueError> {
    let stmt = tx
        .prepare_cached(&format!("SELECT {COLUMNS}, raw {HEAD}"))
        .await?;
    let Some(r) = tx.query_opt(&stmt, &[&destination]).await? else {
        return Ok(None);
    };
    let head = Pending {
        info: info(&r)?,
        raw: r.try_get("raw")?,
    };
    if head.info.state != MessageState::Queued {
        return Ok(None);
    }
    match transition(tx, head.info.id, Event::Send { at }).await? {
        Ok(_) => Ok(Some(head)),
        Err(_) => Ok(None),
    }
}

/// Records a failure and, when the message is still in flight, the policy's action.
pub(crate) async fn record_failure(
    pool: Pool,
    id: QueueId,
    outcome: Outcome,
    at: OffsetDateTime,
    decide: impl FnOnce(u32) -> Action + Send + 'static,
    fence: Option<Fence>,
) -> Result<Option<(u32, Action)>, QueueError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    check_fence(&tx, fence.as_ref()).await?;
    let row = locked_info(&tx, id)
        .await?
        .ok_or(QueueError::NotFound(id))?;
    record_response(&tx, id, &outcome, at).await?;
    let decided = match failure_decision(&row, at, decide) {
        Some((failures, action, next)) => {
            save(&tx, id, &next).await?;
            Some((failures, action))
        }
        None => None,
    };
    tx.commit().await?;
    Ok(decided)
}
