//! The inbox as EMS sees it: committed rows of the `inbox` sink, listed after a cursor,
//! fetched and acknowledged. Backend-neutral records; the queries live in the backend.

use serde::Serialize;
use time::OffsetDateTime;

/// The most rows one [`Store::inbox_list`](super::Store::inbox_list) call returns.
pub const MAX_LIST: u32 = 1000;

/// One inbox row as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InboxItem {
    /// The row id, also the cursor: list again with `after` = the last id seen.
    pub id: i64,
    /// When the message arrived.
    #[serde(serialize_with = "super::timestamp::text::serialize")]
    pub received_at: OffsetDateTime,
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
    #[serde(serialize_with = "super::timestamp::text::option")]
    pub acknowledged_at: Option<OffsetDateTime>,
}

/// One inbox row with the message as received.
#[derive(Debug, Clone, PartialEq)]
pub struct InboxEntry {
    /// The listed fields.
    pub item: InboxItem,
    /// The exact bytes received.
    pub raw: Vec<u8>,
}
