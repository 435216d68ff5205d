//! Inbound messages in PostgreSQL: the commit protocol, duplicates, the audit trail and
//! retention. Same rules as the SQLite backend; how concurrent replicas keep them is in the
//! [module docs](super).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use deadpool_postgres::{GenericClient, Pool};

use super::{delete_in_batches, instant, instant_opt, locks, parse_record, parsed};
use crate::dedup::DedupKey;
use crate::hl7::AckCode;
use crate::store::group::{self, GroupQueue, GroupStats, Lead, Outcome, Pending};
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

/// The inbound commits waiting for this process's writer: one group in flight at a time per
/// process (the inbound advisory lock serialises the commits of every replica anyway).
#[derive(Default)]
pub(crate) struct Committer {
    queue: GroupQueue,
}

impl Committer {
    /// How large the groups were.
    pub(crate) fn stats(&self) -> Arc<GroupStats> {
        self.queue.stats()
    }
}

/// Commits `record` with whatever other commits are waiting (group commit, see
/// [`group`](crate::store::group)): one transaction, committed (and, with the server's default
/// `synchronous_commit`, flushed) before this returns `Ok`. Run it on the backend's runtime:
/// the caller handed the lead spawns the writer there, a task of its own, so a caller that
/// stops waiting never cuts a group short.
pub(crate) async fn commit_inbound(
    pool: Pool,
    committer: Arc<Committer>,
    record: InboundRecord,
) -> Outcome {
    let (ticket, lead) = committer.queue.enqueue(record);
    if let Some(lead) = lead {
        tokio::spawn(write_groups(pool, lead));
    }
    ticket.wait().await
}

/// The writer: takes the waiting commits group by group, one transaction each, until none
/// is waiting.
async fn write_groups(pool: Pool, mut lead: Lead) {
    while let Some(members) = lead.next_group() {
        commit_group(&pool, members).await;
    }
}

/// One member, ready for the group's statement.
struct Row {
    status: InboundStatus,
    record_json: Option<String>,
    digest: String,
}

/// The group's statement: every member in one multi-row insert, in the group's order, a
/// committed key another writer (or an earlier member) holds skipped.
const INSERT_GROUP: &str = r#"
INSERT INTO inbound_messages (
    received_at, committed_at, peer_ip, peer_subject,
    sending_application, sending_facility, control_id, message_type,
    raw, record_json, ack, ack_code, status, sink, digest)
SELECT m.received_at, $2, m.peer_ip, m.peer_subject,
       m.sending_application, m.sending_facility, m.control_id, m.message_type,
       m.raw, m.record_json, m.ack, m.ack_code, m.status, m.sink, m.digest
FROM unnest($1::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::text[], $9::bytea[], $10::text[], $11::bytea[], $12::text[], $13::text[],
            $14::text[], $15::text[])
     WITH ORDINALITY AS m(received_at, peer_ip, peer_subject, sending_application,
                          sending_facility, control_id, message_type, raw, record_json, ack,
                          ack_code, status, sink, digest, n)
ORDER BY m.n
ON CONFLICT (sending_application, sending_facility, control_id)
    WHERE status = 'committed' DO NOTHING
RETURNING id, sending_application, sending_facility, control_id, status"#;

/// One round trip for the whole group: `BEGIN` and the inbound lock, the multi-row insert and
/// `COMMIT` are pipelined. When the server refuses the insert itself (a value it cannot
/// store), nothing was written and each member is committed on its own instead, so the
/// bad one fails alone; any other failure fails every member.
async fn commit_group(pool: &Pool, members: Vec<Pending>) {
    // A member that cannot be written at all (no MSH-10, a record that is not JSON) is
    // answered now and left out.
    let mut rows = Vec::with_capacity(members.len());
    let mut kept = Vec::with_capacity(members.len());
    for member in members {
        match member.record.status_and_json() {
            Ok((status, record_json)) => {
                let digest = crate::dedup::digest(&member.record.raw);
                rows.push(Row {
                    status,
                    record_json,
                    digest,
                });
                kept.push(member);
            }
            Err(e) => member.answer(Err(e)),
        }
    }
    if kept.is_empty() {
        return;
    }
    let large = kept
        .iter()
        .any(|m| m.record.raw.len() >= RETIRE_CONNECTION_FROM);
    let mut client = match pool.get().await {
        Ok(client) => client,
        Err(e) => return group::fail_all(kept, e.into()),
    };
    match insert_group(&client, &kept, &rows).await {
        Ok(inserted) => {
            let results = assign(&client, &kept, &rows, inserted).await;
            group::finish(kept, results, Ok(()));
        }
        Err(GroupFailure::Refused(e)) => {
            tracing::warn!(
                size = kept.len(),
                "store: the server refused a group of inbound messages ({e}); committing them \
                 one by one"
            );
            for member in kept {
                let result = commit_one(&mut client, &member.record).await;
                member.answer(result);
            }
        }
        Err(GroupFailure::Failed(e)) => {
            // The connection's state is unknown: it does not go back to the pool.
            drop(deadpool_postgres::Object::take(client));
            return group::fail_all(kept, e);
        }
    }
    if large {
        // tokio-postgres keeps the buffers a large message grew (its encoding buffer and
        // its connection's write buffer, each the size of the message) for the connection's
        // life: closing it gives that memory back.
        drop(deadpool_postgres::Object::take(client));
    }
}

/// A connection that carried a message of this many bytes or more is closed after its
/// commit instead of going back to the pool (see [`commit_group`]): the size from which
/// the allocator maps a buffer on its own and gives it back when freed (`hl7gw-malloc`).
const RETIRE_CONNECTION_FROM: usize = 1 << 20;

/// How a group's transaction failed.
enum GroupFailure {
    /// The server refused the insert: nothing was written, the connection is usable.
    Refused(StoreError),
    /// Anything else: nothing or everything may have been written.
    Failed(StoreError),
}

/// The pipelined transaction; the rows it inserted (id, key, status).
async fn insert_group(
    client: &deadpool_postgres::Object,
    members: &[Pending],
    rows: &[Row],
) -> Result<Vec<(i64, DedupKey, String)>, GroupFailure> {
    let stmt = client
        .prepare_cached(INSERT_GROUP)
        .await
        .map_err(|e| GroupFailure::Failed(e.into()))?;
    let records = members.iter().map(|m| &m.record);
    let received_at: Vec<String> = records
        .clone()
        .map(|r| timestamp::format_rfc3339(r.received_at))
        .collect();
    let committed_at = timestamp::format(timestamp::now());
    let peer_ip: Vec<Option<String>> = records
        .clone()
        .map(|r| r.peer_ip.map(|ip| ip.to_string()))
        .collect();
    let peer_subject: Vec<Option<&str>> =
        records.clone().map(|r| r.peer_subject.as_deref()).collect();
    let application: Vec<&str> = records
        .clone()
        .map(|r| r.key.sending_application.as_str())
        .collect();
    let facility: Vec<&str> = records
        .clone()
        .map(|r| r.key.sending_facility.as_str())
        .collect();
    let control_id: Vec<&str> = records.clone().map(|r| r.key.control_id.as_str()).collect();
    let message_type: Vec<&str> = records.clone().map(|r| r.message_type.as_str()).collect();
    let raw: Vec<&[u8]> = records.clone().map(|r| &r.raw[..]).collect();
    let record_json: Vec<Option<&str>> = rows.iter().map(|r| r.record_json.as_deref()).collect();
    let ack: Vec<&[u8]> = records.clone().map(|r| r.ack.as_slice()).collect();
    let ack_code: Vec<&str> = records.clone().map(|r| r.ack_code.as_str()).collect();
    let status: Vec<&str> = rows.iter().map(|r| r.status.as_str()).collect();
    let sink: Vec<&str> = records.map(|r| r.sink.as_str()).collect();
    let digest: Vec<&str> = rows.iter().map(|r| r.digest.as_str()).collect();
    let begin_sql = format!(
        "BEGIN; SELECT pg_advisory_xact_lock({APPLICATION_ID}, {})",
        locks::INBOUND
    );
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 15] = [
        &received_at,
        &committed_at,
        &peer_ip,
        &peer_subject,
        &application,
        &facility,
        &control_id,
        &message_type,
        &raw,
        &record_json,
        &ack,
        &ack_code,
        &status,
        &sink,
        &digest,
    ];
    let begin = client.batch_execute(&begin_sql);
    let insert = client.query(&stmt, &params);
    let commit = client.batch_execute("COMMIT");
    // Polled together, the three are sent before any answer is read: one round trip. A
    // failed statement leaves the transaction aborted, and its COMMIT rolls back.
    let (begun, inserted, committed) = tokio::join!(begin, insert, commit);
    match (begun, inserted, committed) {
        (Ok(()), Ok(inserted), Ok(())) => inserted
            .iter()
            .map(|r| {
                Ok((
                    r.try_get("id")?,
                    DedupKey::new(
                        r.try_get::<_, String>("sending_application")?,
                        r.try_get::<_, String>("sending_facility")?,
                        r.try_get::<_, String>("control_id")?,
                    ),
                    r.try_get("status")?,
                ))
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(|e| GroupFailure::Failed(e.into())),
        (Ok(()), Err(e), Ok(())) if e.as_db_error().is_some() => {
            Err(GroupFailure::Refused(e.into()))
        }
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => Err(GroupFailure::Failed(e.into())),
    }
}

/// Which member each inserted row is: a committed key is unique, so its row is found by key;
/// audit rows of one key and status are taken in id order, as they were inserted. A committed
/// member without a row lost its key to an earlier writer (another replica, an earlier
/// member): it is answered that writer's ACK.
async fn assign(
    client: &deadpool_postgres::Object,
    members: &[Pending],
    rows: &[Row],
    inserted: Vec<(i64, DedupKey, String)>,
) -> Vec<Result<Option<CommitResult>, StoreError>> {
    let mut by_key: HashMap<(DedupKey, String), VecDeque<i64>> = HashMap::new();
    let mut inserted = inserted;
    inserted.sort_by_key(|(id, _, _)| *id);
    for (id, key, status) in inserted {
        by_key.entry((key, status)).or_default().push_back(id);
    }
    let mut results = Vec::with_capacity(members.len());
    for (member, row) in members.iter().zip(rows) {
        let key = (member.record.key.clone(), row.status.as_str().to_owned());
        let id = by_key.get_mut(&key).and_then(VecDeque::pop_front);
        results.push(match (id, row.status) {
            (Some(id), _) => Ok(Some(CommitResult::Committed(id))),
            (None, InboundStatus::Committed) => {
                match find_committed(client, &member.record.key).await {
                    Ok(Some(original)) => Ok(Some(CommitResult::Duplicate(original))),
                    Ok(None) => Err(vanished()),
                    Err(e) => Err(e),
                }
            }
            (None, _) => Err(StoreError::Task(
                "the group commit wrote no row for an audit message".into(),
            )),
        });
    }
    results
}

/// The committed row holding a key was deleted between the insert and the read (a prune):
/// nothing was written; the caller's retry commits it.
fn vanished() -> StoreError {
    StoreError::Task("a committed row with this key vanished during the commit; try again".into())
}

/// One message in its own transaction: the group's fallback when the server refused the
/// group's insert. The inbound lock orders ids by commit; the insert skips a committed key
/// another writer holds, and the winner's ACK is read back.
async fn commit_one(
    client: &mut deadpool_postgres::Object,
    record: &InboundRecord,
) -> Result<CommitResult, StoreError> {
    let (status, record_json) = record.status_and_json()?;
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
                &&record.raw[..],
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
            None => return Err(vanished()),
        },
    };
    tx.commit().await?;
    Ok(result)
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
