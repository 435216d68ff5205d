//! The inbox in PostgreSQL: committed rows of the `inbox` sink, listed after a cursor,
//! fetched and acknowledged. Any replica answers EMS from the one database.

use deadpool_postgres::Pool;
use time::OffsetDateTime;
use tokio_postgres::Row;

use super::{instant, instant_opt, parse_record};
use crate::store::{INBOX_MAX_LIST, InboxEntry, InboxItem, StoreError, timestamp};

const COLUMNS: &str = "id, received_at, message_type, sending_application, sending_facility,
                       control_id, record_json, inbox_acknowledged_at";

fn item(r: &Row) -> Result<InboxItem, StoreError> {
    Ok(InboxItem {
        id: r.try_get("id")?,
        received_at: instant(r, "received_at")?,
        message_type: r.try_get("message_type")?,
        sending_application: r.try_get("sending_application")?,
        sending_facility: r.try_get("sending_facility")?,
        control_id: r.try_get("control_id")?,
        record: parse_record(r.try_get("record_json")?)?,
        acknowledged_at: instant_opt(r, "inbox_acknowledged_at")?,
    })
}

pub(crate) async fn inbox_list(
    pool: Pool,
    after: i64,
    limit: u32,
    include_acknowledged: bool,
) -> Result<Vec<InboxItem>, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM inbound_messages
             WHERE id > $1 AND status = 'committed' AND sink = 'inbox'
               AND ($2 OR inbox_acknowledged_at IS NULL)
             ORDER BY id LIMIT $3"
        ))
        .await?;
    let limit = i64::from(limit.min(INBOX_MAX_LIST));
    let rows = client
        .query(&stmt, &[&after, &include_acknowledged, &limit])
        .await?;
    rows.iter().map(item).collect()
}

pub(crate) async fn inbox_get(pool: Pool, id: i64) -> Result<Option<InboxEntry>, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS}, raw FROM inbound_messages
             WHERE id = $1 AND status = 'committed' AND sink = 'inbox'"
        ))
        .await?;
    match client.query_opt(&stmt, &[&id]).await? {
        None => Ok(None),
        Some(r) => Ok(Some(InboxEntry {
            item: item(&r)?,
            raw: r.try_get("raw")?,
        })),
    }
}

/// Sets the acknowledgement time once (the first acknowledgement's time is kept) and reads
/// it back, in one transaction.
pub(crate) async fn inbox_ack(pool: Pool, id: i64) -> Result<Option<OffsetDateTime>, StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let stmt = tx
        .prepare_cached(
            "UPDATE inbound_messages SET inbox_acknowledged_at = $2
             WHERE id = $1 AND status = 'committed' AND sink = 'inbox'
               AND inbox_acknowledged_at IS NULL",
        )
        .await?;
    tx.execute(&stmt, &[&id, &timestamp::format(timestamp::now())])
        .await?;
    let stmt = tx
        .prepare_cached(
            "SELECT inbox_acknowledged_at FROM inbound_messages
             WHERE id = $1 AND status = 'committed' AND sink = 'inbox'",
        )
        .await?;
    let at = match tx.query_opt(&stmt, &[&id]).await? {
        Some(r) => instant_opt(&r, "inbox_acknowledged_at")?,
        None => None,
    };
    tx.commit().await?;
    Ok(at)
}

pub(crate) async fn inbox_pending(pool: Pool) -> Result<u64, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT COUNT(*) FROM inbound_messages
             WHERE status = 'committed' AND sink = 'inbox' AND inbox_acknowledged_at IS NULL",
        )
        .await?;
    let n: i64 = client.query_one(&stmt, &[]).await?.try_get(0)?;
    Ok(u64::try_from(n).unwrap_or(0))
}
