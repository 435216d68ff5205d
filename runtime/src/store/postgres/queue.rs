//! The outbound queue in PostgreSQL: table `outbound_messages`, same columns and rules as the
//! SQLite backend's (`store/sqlite/queue.rs`).
//!
//! Every change is one transaction that locks the row (`FOR UPDATE`), lets the pure
//! [`apply`] decide, and writes the new [`Progress`] with [`save`]. The sequencer's changes
//! (marking in flight, recording an outcome, recovering) first check its [`Fence`] against
//! the stream's lease row in the same transaction, holding that row (`FOR SHARE`) until the
//! commit: a replica whose lease was taken over cannot record, and a takeover waits for a
//! recording in progress to commit.
//!
//! The sequencer's per-message transactions ([`begin_attempt`], [`record_delivered_then_begin`],
//! [`record_failure`]) are on the path of every message, so they pipeline: after `BEGIN`, the
//! fence check and the row locks go out together (one round trip), Rust decides, the writes
//! go out together (one round trip), then `COMMIT`, only once every write has answered. A
//! batch's statements are prepared before it is sent ([`prepare`]; cached per connection, so
//! no round trip after a connection's first use) and its futures are polled in the order
//! written (`biased`), each sending its statement when first polled, so the batch reaches
//! the server, and takes its locks, in that order: lease row, then the message, then the
//! next head.

use deadpool_postgres::{GenericClient, Pool};
use time::OffsetDateTime;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};

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

/// The pending messages of stream `$1`.
const PENDING: &str = "FROM outbound_messages
     WHERE destination = $1 AND state IN ('queued', 'in_flight', 'held')";

/// The head of stream `$1`: its lowest pending id ([`PENDING`]).
fn head_sql(columns: &str) -> String {
    format!("SELECT {columns} {PENDING} ORDER BY id LIMIT 1")
}

/// The head of stream `$1` once message `$2` is no longer pending, locked: what
/// [`head_sql`] selects after `$2` became `delivered` in this transaction, read before that
/// write so that the two can share a round trip. The write changes only row `$2`, and a
/// delivered row is not pending, so the pending rows then are the pending rows now other
/// than `$2` (if `$2` is of another stream, `id <> $2` excludes nothing). The row is locked
/// as it is selected: a row that a concurrent transaction changed while this one waited for
/// its lock is checked against the states again (READ COMMITTED), so one skipped meanwhile is
/// passed over for the next pending one, never returned.
fn next_head_sql(columns: &str) -> String {
    format!("SELECT {columns} {PENDING} AND id <> $2 ORDER BY id LIMIT 1 FOR UPDATE")
}

/// Row `$1`, locked for the rest of the transaction.
fn locked_sql(columns: &str) -> String {
    format!("SELECT {columns} FROM outbound_messages WHERE id = $1 FOR UPDATE")
}

/// The stream's lease row when `holder` still holds it with `token`, held (`FOR SHARE`)
/// until the transaction ends, so that a takeover waits for it.
const FENCE: &str = "SELECT token FROM stream_leases
     WHERE destination = $1 AND holder = $2 AND token = $3 FOR SHARE";

/// Writes a [`Progress`] to row `$1` ([`SavedProgress`] says which columns change).
const SAVE: &str = "UPDATE outbound_messages SET
         state = $2, attempts = $3, failures = $4, first_attempt_at = $5,
         last_attempt_at = $6, failing_since = $7, released_at = $8, next_attempt_at = $9,
         delivered_at = CASE WHEN $10 THEN $11 ELSE delivered_at END,
         held_at = CASE WHEN $12 THEN $13 ELSE held_at END,
         held_reason = CASE WHEN $12 THEN $14 ELSE held_reason END,
         skipped_at = CASE WHEN $15 THEN $16 ELSE skipped_at END,
         skip_reason = CASE WHEN $15 THEN $17 ELSE skip_reason END
     WHERE id = $1";

/// Records the latest response of row `$1`.
const RECORD_RESPONSE: &str = "UPDATE outbound_messages
     SET last_outcome = $2, last_http_status = $3, last_ack_code = $4,
         last_response = $5, last_response_at = $6
     WHERE id = $1";

/// `sql` prepared on this connection, from its cache when it was prepared before.
async fn prepare(tx: &impl GenericClient, sql: &str) -> Result<Statement, QueueError> {
    Ok(tx.prepare_cached(sql).await?)
}

/// A fence to check, with [`FENCE`] prepared.
struct FenceCheck<'a> {
    stmt: Statement,
    fence: &'a Fence,
}

/// The check of `fence`, prepared; `None` when there is no fence to check.
async fn prepare_fence<'a>(
    tx: &impl GenericClient,
    fence: Option<&'a Fence>,
) -> Result<Option<FenceCheck<'a>>, QueueError> {
    match fence {
        Some(fence) => Ok(Some(FenceCheck {
            stmt: prepare(tx, FENCE).await?,
            fence,
        })),
        None => Ok(None),
    }
}

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
    let stmt = prepare(tx, &locked_sql(COLUMNS)).await?;
    locked_info_with(tx, &stmt, id).await
}

/// [`locked_info`] with its statement prepared (`locked_sql(COLUMNS)`).
async fn locked_info_with(
    tx: &impl GenericClient,
    stmt: &Statement,
    id: QueueId,
) -> Result<Option<MessageInfo>, QueueError> {
    match tx.query_opt(stmt, &[&id]).await? {
        Some(r) => Ok(Some(info(&r)?)),
        None => Ok(None),
    }
}

/// A row selected with its bytes (`raw` after the columns), if any.
async fn pending_with(
    tx: &impl GenericClient,
    stmt: &Statement,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Pending>, QueueError> {
    match tx.query_opt(stmt, params).await? {
        Some(r) => Ok(Some(Pending {
            info: info(&r)?,
            raw: r.try_get("raw")?,
        })),
        None => Ok(None),
    }
}

/// Writes `p` to row `id` ([`SavedProgress`] says which columns change).
async fn save(tx: &impl GenericClient, id: QueueId, p: &Progress) -> Result<(), QueueError> {
    let stmt = prepare(tx, SAVE).await?;
    save_with(tx, &stmt, id, p).await
}

/// [`save`] with its statement prepared ([`SAVE`]).
async fn save_with(
    tx: &impl GenericClient,
    stmt: &Statement,
    id: QueueId,
    p: &Progress,
) -> Result<(), QueueError> {
    let v = SavedProgress::of(p);
    tx.execute(
        stmt,
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

/// Records the latest response (columns `last_outcome` … `last_response_at`), with its
/// statement prepared ([`RECORD_RESPONSE`]).
async fn record_response_with(
    tx: &impl GenericClient,
    stmt: &Statement,
    id: QueueId,
    outcome: &Outcome,
    at: OffsetDateTime,
) -> Result<(), QueueError> {
    tx.execute(
        stmt,
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
    let check = prepare_fence(tx, fence).await?;
    check_fence_with(tx, check.as_ref()).await
}

/// [`check_fence`] with its statement prepared ([`prepare_fence`]).
async fn check_fence_with(
    tx: &impl GenericClient,
    check: Option<&FenceCheck<'_>>,
) -> Result<(), QueueError> {
    let Some(FenceCheck { stmt, fence }) = check else {
        return Ok(());
    };
    let held = tx
        .query_opt(stmt, &[&fence.destination, &fence.holder, &fence.token])
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
    // Prepared once per connection: as text it would be parsed in a round trip of its own
    // every time.
    let lock = tx
        .prepare_cached(
            "SELECT pg_advisory_xact_lock(hashtextextended('hl7gw.outbound.' || $1::TEXT, 0))",
        )
        .await?;
    tx.execute(&lock, &[&destination]).await?;
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
    let stmt = client.prepare_cached(&head_sql(COLUMNS)).await?;
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
        .prepare_cached(&head_sql(&format!("{COLUMNS}, raw")))
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
/// Four round trips: `BEGIN`; the fence check and the row (locked, with its bytes),
/// pipelined; the write; `COMMIT`.
pub(crate) async fn begin_attempt(
    pool: Pool,
    id: QueueId,
    at: OffsetDateTime,
    fence: Option<Fence>,
) -> Result<Option<Vec<u8>>, QueueError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let locked_sql = locked_sql(&format!("{COLUMNS}, raw"));
    let (fence_check, locked, save_stmt) = tokio::try_join!(
        biased;
        prepare_fence(&tx, fence.as_ref()),
        prepare(&tx, &locked_sql),
        prepare(&tx, SAVE),
    )?;
    let params: [&(dyn ToSql + Sync); 1] = [&id];
    let ((), row) = tokio::try_join!(
        biased;
        check_fence_with(&tx, fence_check.as_ref()),
        pending_with(&tx, &locked, &params),
    )?;
    let Some(row) = row else {
        return Ok(None);
    };
    let Ok(next) = apply(&row.info.progress(), Event::Send { at }) else {
        return Ok(None);
    };
    save_with(&tx, &save_stmt, id, &next).await?;
    tx.commit().await?;
    Ok(Some(row.raw))
}

/// Records an accepting ACK and, in the same transaction (the fencing token checked in it),
/// marks the stream's next message in flight when it is queued: one commit per delivery.
/// `(false, None)` when the message was delivered already or is not there, and nothing is
/// written; `(true, None)` when the next head is held or in flight (left as it is) or there
/// is none. Four sequential round trips: `BEGIN`; the fence check, the message and the next
/// head (both locked), pipelined; the writes, pipelined; `COMMIT`, sent only once every
/// write has answered (on an aborted transaction PostgreSQL answers `COMMIT` with a
/// rollback, not an error).
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
    let (locked_sql, next_head_sql) = (
        locked_sql(COLUMNS),
        next_head_sql(&format!("{COLUMNS}, raw")),
    );
    let (fence_check, locked, next_head, save_stmt, response_stmt) = tokio::try_join!(
        biased;
        prepare_fence(&tx, fence.as_ref()),
        prepare(&tx, &locked_sql),
        prepare(&tx, &next_head_sql),
        prepare(&tx, SAVE),
        prepare(&tx, RECORD_RESPONSE),
    )?;
    let next_head_params: [&(dyn ToSql + Sync); 2] = [&destination, &id];
    // A lost lease returns at once, as its answer comes first; the transaction then rolls
    // back with nothing written.
    let ((), row, head) = tokio::try_join!(
        biased;
        check_fence_with(&tx, fence_check.as_ref()),
        locked_info_with(&tx, &locked, id),
        pending_with(&tx, &next_head, &next_head_params),
    )?;
    let event = Event::Accepted {
        at,
        ack_code: outcome.ack_code,
    };
    let Some(delivered) = row.and_then(|row| apply(&row.progress(), event).ok()) else {
        return Ok((false, None));
    };
    let begun = head
        .filter(|head| head.info.state == MessageState::Queued)
        .and_then(|head| {
            let next = apply(&head.info.progress(), Event::Send { at }).ok()?;
            Some((head, next))
        });
    let begin_head = async {
        match &begun {
            Some((head, next)) => save_with(&tx, &save_stmt, head.info.id, next).await,
            None => Ok(()),
        }
    };
    tokio::try_join!(
        biased;
        save_with(&tx, &save_stmt, id, &delivered),
        record_response_with(&tx, &response_stmt, id, &outcome, at),
        begin_head,
    )?;
    tx.commit().await?;
    Ok((true, begun.map(|(head, _)| head)))
}

/// Records a failure and, when the message is still in flight, the policy's action. Four
/// round trips: `BEGIN`; the fence check and the row (locked), pipelined; the response and
/// the new progress, pipelined; `COMMIT`.
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
    let locked_sql = locked_sql(COLUMNS);
    let (fence_check, locked, save_stmt, response_stmt) = tokio::try_join!(
        biased;
        prepare_fence(&tx, fence.as_ref()),
        prepare(&tx, &locked_sql),
        prepare(&tx, SAVE),
        prepare(&tx, RECORD_RESPONSE),
    )?;
    let ((), row) = tokio::try_join!(
        biased;
        check_fence_with(&tx, fence_check.as_ref()),
        locked_info_with(&tx, &locked, id),
    )?;
    let row = row.ok_or(QueueError::NotFound(id))?;
    let decided = failure_decision(&row, at, decide);
    let save_decided = async {
        match &decided {
            Some((_, _, next)) => save_with(&tx, &save_stmt, id, next).await,
            None => Ok(()),
        }
    };
    tokio::try_join!(
        biased;
        record_response_with(&tx, &response_stmt, id, &outcome, at),
        save_decided,
    )?;
    tx.commit().await?;
    Ok(decided.map(|(failures, action, _)| (failures, action)))
}
