//! Inbound messages as the receiver hands them to the store and reads them back: the
//! backend-neutral records of the audit trail and the duplicate check.

use std::net::IpAddr;
use std::time::SystemTime;

use bytes::Bytes;
use time::OffsetDateTime;

use crate::dedup::DedupKey;
use crate::hl7::AckCode;
use crate::sink::SinkKind;

/// What became of a message, from the ACK it was answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InboundStatus {
    /// AA or CA: committed; its key is unique.
    Committed,
    /// AE or CE: kept for audit only.
    Error,
    /// AR or CR: kept for audit only.
    Rejected,
}

impl InboundStatus {
    /// The status an ACK code stands for.
    pub fn of(code: AckCode) -> Self {
        if code.is_accept() {
            Self::Committed
        } else if code.is_error() {
            Self::Error
        } else {
            Self::Rejected
        }
    }

    /// As stored: `committed`, `error`, `rejected`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Committed => "committed",
            Self::Error => "error",
            Self::Rejected => "rejected",
        }
    }

    /// Reads [`InboundStatus::as_str`] back.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "committed" => Self::Committed,
            "error" => Self::Error,
            "rejected" => Self::Rejected,
            _ => return None,
        })
    }
}

/// One message and the ACK it is answered with, as the receiver hands it to the store.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundRecord {
    /// When the request arrived.
    pub received_at: SystemTime,
    /// The TCP peer.
    pub peer_ip: Option<IpAddr>,
    /// The subject of the peer's client certificate.
    pub peer_subject: Option<String>,
    /// MSH-3, MSH-4, MSH-10.
    pub key: DedupKey,
    /// MSH-9 as `ADT^A28`.
    pub message_type: String,
    /// The exact bytes received: the request body's buffer, shared with the receiver (never
    /// copied on the way to the store).
    pub raw: Bytes,
    /// The mapped record, when mapping succeeded.
    pub record: Option<serde_json::Value>,
    /// The ACK answered, byte for byte.
    pub ack: Vec<u8>,
    /// Its MSA-1; decides the [`InboundStatus`].
    pub ack_code: AckCode,
    /// Who took delivery.
    pub sink: SinkKind,
}

impl InboundRecord {
    /// What every backend's commit writes beside the record's fields: its status and the
    /// mapped record as JSON text. A committed record (AA/CA) with an empty MSH-10 is
    /// refused: every later message without one would be answered with its ACK.
    pub(crate) fn status_and_json(
        &self,
    ) -> Result<(InboundStatus, Option<String>), super::StoreError> {
        let status = InboundStatus::of(self.ack_code);
        if status == InboundStatus::Committed && self.key.control_id.is_empty() {
            return Err(super::StoreError::MissingControlId);
        }
        let json = match &self.record {
            Some(value) => Some(serde_json::to_string(value)?),
            None => None,
        };
        Ok((status, json))
    }
}

/// The ACK a committed message was answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAck {
    /// The row.
    pub id: i64,
    /// The ACK, byte for byte.
    pub ack: Vec<u8>,
    /// Its MSA-1.
    pub ack_code: AckCode,
    /// When the original arrived.
    pub received_at: OffsetDateTime,
    /// The original's [`digest`](crate::dedup::digest); `None` for a row stored before
    /// digests were kept (any repeat of its key is then answered this ACK).
    pub digest: Option<String>,
}

impl StoredAck {
    /// Whether a message with this `digest` is the same message as the original (always,
    /// when the original has no digest).
    pub fn same_content(&self, digest: &str) -> bool {
        self.digest.as_deref().is_none_or(|d| d == digest)
    }
}

/// What [`Store::commit_inbound`](super::Store::commit_inbound) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitResult {
    /// The row was written (committed or audit row) and is on disk.
    Committed(i64),
    /// A committed message with the same key was already there (a concurrent retry won):
    /// nothing was written; answer this ACK.
    Duplicate(StoredAck),
}

/// One row of the audit trail.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundRow {
    /// The row id.
    pub id: i64,
    /// When the request arrived.
    pub received_at: OffsetDateTime,
    /// When the row was written.
    pub committed_at: OffsetDateTime,
    /// The TCP peer.
    pub peer_ip: Option<String>,
    /// The peer certificate's subject.
    pub peer_subject: Option<String>,
    /// MSH-3, MSH-4, MSH-10.
    pub key: DedupKey,
    /// MSH-9.
    pub message_type: String,
    /// The bytes received.
    pub raw: Vec<u8>,
    /// The mapped record.
    pub record: Option<serde_json::Value>,
    /// The ACK answered.
    pub ack: Vec<u8>,
    /// Its MSA-1.
    pub ack_code: AckCode,
    /// Committed, error or rejected.
    pub status: InboundStatus,
    /// `inbox`, `webhook` or `mllp`.
    pub sink: String,
    /// When EMS acknowledged it (inbox rows).
    pub inbox_acknowledged_at: Option<OffsetDateTime>,
}
