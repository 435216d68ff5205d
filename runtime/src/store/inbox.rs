//! The inbox: committed rows of the `inbox` sink, which EMS lists after a cursor, fetches and
//! acknowledges.

use std::time::SystemTime;

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::inbound::parse_record;
use super::{BlockingStore, StoreError, time::format_rfc3339};

/// The most rows one [`BlockingStore::inbox_list`] call returns.
pub const MAX_LIST: u32 = 1000;

/// One inbox row as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InboxItem {
    /// The row id, also the cursor: list again with `after` = the last id seen.
    pub id: i64,
    /// When the message arrived (RFC 3339 UTC).
    pub received_at: String,
    /// MSH-9 as `ADT^A28`.
    pub message_type: String,
    /// MSH-3 as sent.
    pub sending_application: String,
    /// MSH-4 as sent.
    pub sending_facility: String,
    /// MSH-10.
    pub control_id: String,
    /// The mapped record.
    pub record: Option<serde_json::Value>,
    /// When EMS acknowledged it, if it did.
    pub acknowledged_at: Option<String>,
}

/// One inbox row with the message as received.
#[derive(Debug, Clone, PartialEq)]
pub struct InboxEntry {
    /// The listed fields.
    pub item: InboxItem,
    /// The exact bytes received.
    pub raw: Vec<u8>,
}

const COLUMNS: &str = "id, received_at, message_type, sending_application, sending_facility,
                       control_id, record_json, inbox_acknowledged_at";

fn item(r: &rusqlite::Row<'_>) -> rusqlite::Result<(InboxItem, Option<String>)> {
    Ok((
        InboxItem {
            id: r.get(0)?,
            received_at: r.get(1)?,
            message_type: r.get(2)?,
            sending_application: r.get(3)?,
            sending_facility: r.get(4)?,
            control_id: r.get(5)?,
            record: None,
            acknowledged_at: r.get(7)?,
        },
        r.get(6)?,
    ))
}

fn with_record((mut item, json): (InboxItem, Option<String>)) -> Result<InboxItem, StoreError> {
    item.record = parse_record(json)?;
    Ok(item)
}

impl BlockingStore {
    /// Committed inbox rows with an id above `after`, oldest first, at most `limit` (capped
    /// at [`MAX_LIST`]); rows EMS acknowledged are left out unless `include_acknowledged`.
    pub fn inbox_list(
        &self,
        after: i64,
        limit: u32,
        include_acknowledged: bool,
    ) -> Result<Vec<InboxItem>, StoreError> {
        let conn = self.conn();
        let sql = format!(
            "SELECT {COLUMNS} FROM inbound_messages
             WHERE id > ?1 AND status = 'committed' AND sink = 'inbox'
               AND (?2 OR inbox_acknowledged_at IS NULL)
             ORDER BY id LIMIT ?3"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt
            .query_map(
                params![after, include_acknowledged, limit.min(MAX_LIST)],
                item,
            )?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(with_record).collect()
    }

    /// One committed inbox row, acknowledged or not, with its raw message.
    pub fn inbox_get(&self, id: i64) -> Result<Option<InboxEntry>, StoreError> {
        let conn = self.conn();
        let sql = format!(
            "SELECT {COLUMNS}, raw FROM inbound_messages
             WHERE id = ?1 AND status = 'committed' AND sink = 'inbox'"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let found = stmt
            .query_row([id], |r| Ok((item(r)?, r.get::<_, Vec<u8>>(8)?)))
            .optional()?;
        match found {
            Some((row, raw)) => Ok(Some(InboxEntry {
                item: with_record(row)?,
                raw,
            })),
            None => Ok(None),
        }
    }

    /// Marks a committed inbox row as taken by EMS. Idempotent: acknowledging again keeps
    /// the first time, which is returned. `None` when there is no such inbox row.
    pub fn inbox_ack(&self, id: i64) -> Result<Option<String>, StoreError> {
        let conn = self.conn();
        conn.execute(
            "UPDATE inbound_messages SET inbox_acknowledged_at = ?2
             WHERE id = ?1 AND status = 'committed' AND sink = 'inbox'
               AND inbox_acknowledged_at IS NULL",
            params![id, format_rfc3339(SystemTime::now())],
        )?;
        let at = conn
            .query_row(
                "SELECT inbox_acknowledged_at FROM inbound_messages
                 WHERE id = ?1 AND status = 'committed' AND sink = 'inbox'",
                [id],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()?
            .flatten();
        Ok(at)
    }

    /// How many committed inbox rows EMS has not acknowledged.
    pub fn inbox_pending(&self) -> Result<u64, StoreError> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM inbound_messages
             WHERE status = 'committed' AND sink = 'inbox' AND inbox_acknowledged_at IS NULL",
            [],
            |r| r.get(0),
        )?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
