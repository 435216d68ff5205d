//! The inbox in SQLite: committed rows of the `inbox` sink, listed after a cursor, fetched
//! and acknowledged.

use rusqlite::{OptionalExtension, params};
use time::OffsetDateTime;

use super::{Sqlite, instant, instant_opt, parse_record};
use crate::store::{INBOX_MAX_LIST, InboxEntry, InboxItem, StoreError, timestamp};

const COLUMNS: &str = "id, received_at, message_type, sending_application, sending_facility,
                       control_id, record_json, inbox_acknowledged_at";

fn item(r: &rusqlite::Row<'_>) -> rusqlite::Result<(InboxItem, Option<String>)> {
    Ok((
        InboxItem {
            id: r.get(0)?,
            received_at: instant(r, 1)?,
            message_type: r.get(2)?,
            sending_application: r.get(3)?,
            sending_facility: r.get(4)?,
            control_id: r.get(5)?,
            record: None,
            acknowledged_at: instant_opt(r, 7)?,
        },
        r.get(6)?,
    ))
}

fn with_record((mut item, json): (InboxItem, Option<String>)) -> Result<InboxItem, StoreError> {
    item.record = parse_record(json)?;
    Ok(item)
}

impl Sqlite {
    pub(crate) fn inbox_list(
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
                params![after, include_acknowledged, limit.min(INBOX_MAX_LIST)],
                item,
            )?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(with_record).collect()
    }

    pub(crate) fn inbox_get(&self, id: i64) -> Result<Option<InboxEntry>, StoreError> {
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

    pub(crate) fn inbox_ack(&self, id: i64) -> Result<Option<OffsetDateTime>, StoreError> {
        let conn = self.conn();
        conn.execute(
            "UPDATE inbound_messages SET inbox_acknowledged_at = ?2
             WHERE id = ?1 AND status = 'committed' AND sink = 'inbox'
               AND inbox_acknowledged_at IS NULL",
            params![id, timestamp::format(timestamp::now())],
        )?;
        let at = conn
            .query_row(
                "SELECT inbox_acknowledged_at FROM inbound_messages
                 WHERE id = ?1 AND status = 'committed' AND sink = 'inbox'",
                [id],
                |r| instant_opt(r, 0),
            )
            .optional()?
            .flatten();
        Ok(at)
    }

    pub(crate) fn inbox_pending(&self) -> Result<u64, StoreError> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM inbound_messages
             WHERE status = 'committed' AND sink = 'inbox' AND inbox_acknowledged_at IS NULL",
            [],
            |r| r.get(0),
        )?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
