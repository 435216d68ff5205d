//! The operators' audit trail (table `operator_audit`, SQLite migration 6, PostgreSQL
//! migration 3): who retried, skipped or opened an outbound message, from where, when and
//! why.
//!
//! A retry or skip writes its row in the transaction that changes the message
//! ([`Store`]'s queue operator call), so the trail and the queue never disagree: a refused
//! action (the message was delivered meanwhile) leaves no row. Opening a message (its bytes,
//! which hold patient data) reads it and writes the row in one transaction too. The `gw queue
//! retry/skip` commands and the operations console go through the same calls.
//!
//! | column | meaning |
//! |---|---|
//! | `id` | grows with time |
//! | `at` | when (UTC RFC 3339, microseconds) |
//! | `action` | `retry`, `skip`, `open` |
//! | `operator` | the name the operator gave (the console) or the OS user (the CLI) |
//! | `peer` | where the request came from: the console's TCP peer, or `cli` |
//! | `reason` | why, as given |
//! | `message_id`, `destination`, `control_id` | the message: queue id, stream, MSH-10 |
//!
//! Retention does not prune the trail: it holds no patient data and stays small.

use serde::Serialize;
use time::OffsetDateTime;

use super::{Backend, BlockingStore, Store, StoreError, postgres, timestamp};
use crate::queue::{Event, MessageDetail, QueueError, QueueId};

/// The longest operator name and reason kept; longer ones are refused.
pub const MAX_OPERATOR: usize = 100;
/// See [`MAX_OPERATOR`].
pub const MAX_REASON: usize = 1000;

/// What an operator did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// Released a message (`queue retry`).
    Retry,
    /// Skipped a message (`queue skip`).
    Skip,
    /// Read a message's bytes.
    Open,
}

impl AuditAction {
    /// As stored: `retry`, `skip`, `open`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retry => "retry",
            Self::Skip => "skip",
            Self::Open => "open",
        }
    }

    /// Reads [`AuditAction::as_str`] back.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Retry, Self::Skip, Self::Open]
            .into_iter()
            .find(|a| a.as_str() == text)
    }

    /// The action an operator's queue event is recorded as (retry or skip).
    pub(crate) fn of(event: &Event) -> Self {
        match event {
            Event::Skip { .. } => Self::Skip,
            _ => Self::Retry,
        }
    }
}

/// Who asks for an operator action, from where and why: recorded with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Operator {
    /// The operator's name.
    pub name: String,
    /// Where the request came from (`127.0.0.1:53122`, `cli`).
    pub peer: String,
    /// Why; may be empty only for the CLI's optional note.
    pub reason: String,
}

/// Why an [`Operator`] is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperatorError {
    /// No name.
    #[error("an operator name is required")]
    MissingName,
    /// No reason where one is required.
    #[error("a reason is required")]
    MissingReason,
    /// Too long, or control characters.
    #[error("{field}: at most {max} characters, no control characters")]
    Invalid {
        /// `operator` or `reason`.
        field: &'static str,
        /// The limit.
        max: usize,
    },
}

impl Operator {
    /// Checks and trims what an operator typed: a name, and a reason when `reason_required`.
    pub fn new(
        name: &str,
        peer: impl Into<String>,
        reason: &str,
        reason_required: bool,
    ) -> Result<Self, OperatorError> {
        let (name, reason) = (name.trim(), reason.trim());
        let bad = |s: &str, max: usize| s.chars().count() > max || s.chars().any(char::is_control);
        if name.is_empty() {
            return Err(OperatorError::MissingName);
        }
        if bad(name, MAX_OPERATOR) {
            return Err(OperatorError::Invalid {
                field: "operator",
                max: MAX_OPERATOR,
            });
        }
        if reason_required && reason.is_empty() {
            return Err(OperatorError::MissingReason);
        }
        if bad(reason, MAX_REASON) {
            return Err(OperatorError::Invalid {
                field: "reason",
                max: MAX_REASON,
            });
        }
        Ok(Self {
            name: name.to_owned(),
            peer: peer.into(),
            reason: reason.to_owned(),
        })
    }

    /// The OS user running a CLI command (`$USER`, else `unknown`), with `note` as the reason.
    pub fn cli(note: Option<&str>) -> Self {
        let name = std::env::var("USER")
            .ok()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| "unknown".to_owned());
        Self {
            name,
            peer: "cli".to_owned(),
            reason: note.map(str::trim).unwrap_or_default().to_owned(),
        }
    }
}

/// One row of the trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Its id.
    pub id: i64,
    /// When.
    #[serde(serialize_with = "timestamp::text::serialize")]
    pub at: OffsetDateTime,
    /// What.
    pub action: AuditAction,
    /// Who.
    pub operator: String,
    /// From where.
    pub peer: String,
    /// Why.
    pub reason: String,
    /// The message's queue id.
    pub message_id: QueueId,
    /// Its stream.
    pub destination: String,
    /// Its MSH-10.
    pub control_id: String,
}

/// The most rows one [`Store::audit_list`] returns.
pub const MAX_AUDIT_LIST: u32 = 500;

impl Store {
    /// Message `id` with its bytes, recording that `by` opened it (one transaction); `None`
    /// (and nothing recorded) when there is no such message.
    pub async fn audit_open(
        &self,
        id: QueueId,
        by: Operator,
    ) -> Result<Option<MessageDetail>, QueueError> {
        let at = timestamp::now();
        match &self.inner.backend {
            Backend::Sqlite(_) => self.run(move |s| s.audit_open(id, &by, at)).await,
            Backend::Postgres(pg) => pg.run(postgres::audit::open(pg.pool(), id, by, at)).await,
        }
    }

    /// The trail, newest first, at most `limit` (capped at [`MAX_AUDIT_LIST`]): every row,
    /// or those of stream `destination`.
    pub async fn audit_list(
        &self,
        destination: Option<String>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let limit = limit.min(MAX_AUDIT_LIST);
        match &self.inner.backend {
            Backend::Sqlite(_) => {
                self.run(move |s| s.audit_list(destination.as_deref(), limit))
                    .await
            }
            Backend::Postgres(pg) => {
                pg.run(postgres::audit::list(pg.pool(), destination, limit))
                    .await
            }
        }
    }
}

impl BlockingStore {
    /// See [`Store::audit_open`].
    pub fn audit_open(
        &self,
        id: QueueId,
        by: &Operator,
        at: OffsetDateTime,
    ) -> Result<Option<MessageDetail>, QueueError> {
        match &self.backend {
            Backend::Sqlite(db) => db.audit_open(id, by, at),
            Backend::Postgres(pg) => pg.block(postgres::audit::open(pg.pool(), id, by.clone(), at)),
        }
    }

    /// See [`Store::audit_list`].
    pub fn audit_list(
        &self,
        destination: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let limit = limit.min(MAX_AUDIT_LIST);
        match &self.backend {
            Backend::Sqlite(db) => db.audit_list(destination, limit),
            Backend::Postgres(pg) => pg.block(postgres::audit::list(
                pg.pool(),
                destination.map(str::to_owned),
                limit,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operator_needs_a_name_and_where_required_a_reason() {
        assert_eq!(
            Operator::new(" ", "p", "why", true),
            Err(OperatorError::MissingName)
        );
        assert_eq!(
            Operator::new("ann", "p", "  ", true),
            Err(OperatorError::MissingReason)
        );
        assert!(Operator::new("ann", "p", "", false).is_ok());
        assert!(matches!(
            Operator::new("ann\u{7}", "p", "x", true),
            Err(OperatorError::Invalid {
                field: "operator",
                ..
            })
        ));
        assert!(matches!(
            Operator::new("ann", "p", &"x".repeat(MAX_REASON + 1), true),
            Err(OperatorError::Invalid {
                field: "reason",
                ..
            })
        ));
        let ok = Operator::new(" ann ", "127.0.0.1:1", " fixed upstream ", true).unwrap();
        assert_eq!(
            (ok.name.as_str(), ok.reason.as_str()),
            ("ann", "fixed upstream")
        );
    }
}
