//! The queue's records, backend-neutral: a message's row as listed and shown, a stream's
//! status, the list filter, and a message checked for enqueueing. The backend builds them;
//! the `queue` commands and the intake API print them as JSON (instants in the store's
//! fixed RFC 3339 text).

use std::time::{Duration, SystemTime};

use serde::{Serialize, Serializer};
use time::OffsetDateTime;

use super::{QueueError, QueueId};
use crate::client::{FailureClass, Outcome};
use crate::hl7::{AckCode, Message};
use crate::store::timestamp;

/// Where a message is: the kind of its [`State`](super::State), as stored and listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageState {
    /// Waiting to be sent (or to be sent again after a failure).
    Queued,
    /// Sent; the outcome is not recorded yet.
    InFlight,
    /// Accepted by the engine.
    Delivered,
    /// Holding the stream until an operator acts.
    Held,
    /// Passed over (by policy or an operator); kept, never sent again.
    Skipped,
}

impl MessageState {
    /// Every state.
    pub const ALL: [MessageState; 5] = [
        Self::Queued,
        Self::InFlight,
        Self::Delivered,
        Self::Held,
        Self::Skipped,
    ];

    /// As stored: `queued`, `in_flight`, `delivered`, `held`, `skipped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::InFlight => "in_flight",
            Self::Delivered => "delivered",
            Self::Held => "held",
            Self::Skipped => "skipped",
        }
    }

    /// Reads [`MessageState::as_str`] back.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Queued, in flight or held: not done, part of the stream's depth.
    pub fn is_pending(self) -> bool {
        matches!(self, Self::Queued | Self::InFlight | Self::Held)
    }
}

impl std::fmt::Display for MessageState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`Queue::enqueue`](super::Queue::enqueue) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Enqueued {
    /// The queue id.
    pub id: QueueId,
    /// False when the same bytes with the same MSH-10, or the same request under the same
    /// `Idempotency-Key`, were already queued for this destination (an idempotent repeat):
    /// nothing was added and `id` is the earlier entry.
    pub created: bool,
}

/// The latest response (or failure) recorded for a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastResponse {
    /// When it was recorded.
    #[serde(serialize_with = "timestamp::text::serialize")]
    pub at: OffsetDateTime,
    /// `None`: accepted. Serialized as `outcome`: `accepted` or the class.
    #[serde(rename = "outcome", serialize_with = "ser_outcome")]
    pub failure: Option<FailureClass>,
    /// HTTP status, when a response arrived.
    pub http_status: Option<u16>,
    /// MSA-1, when an ACK was read.
    #[serde(serialize_with = "ser_ack_code")]
    pub ack_code: Option<AckCode>,
    /// MSA-3 and ERR texts, the status, or what went wrong.
    pub text: String,
}

impl std::fmt::Display for LastResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let outcome = Outcome {
            failure: self.failure,
            http_status: self.http_status,
            ack_code: self.ack_code,
            detail: self.text.clone(),
        };
        write!(f, "{outcome}")
    }
}

fn ser_outcome<S: Serializer>(v: &Option<FailureClass>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.map_or("accepted", FailureClass::as_str))
}

fn ser_ack_code<S: Serializer>(v: &Option<AckCode>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(code) => s.serialize_some(code.as_str()),
        None => s.serialize_none(),
    }
}

/// One queued message without its bytes: the row as listed and shown (the flat record the
/// `queue` commands print; [`MessageInfo::progress`] gives its typed [`State`](super::State)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageInfo {
    /// The queue id.
    pub id: QueueId,
    /// The stream.
    pub destination: String,
    /// MSH-10.
    pub control_id: String,
    /// MSH-9 as `ADT^A28`.
    pub message_type: String,
    /// Where it is.
    pub state: MessageState,
    /// When it was queued.
    #[serde(serialize_with = "timestamp::text::serialize")]
    pub enqueued_at: OffsetDateTime,
    /// Sends so far.
    pub attempts: u32,
    /// Failed attempts since it was queued or last released by an operator.
    pub failures: u32,
    /// The first send.
    #[serde(serialize_with = "timestamp::text::option")]
    pub first_attempt_at: Option<OffsetDateTime>,
    /// The latest send.
    #[serde(serialize_with = "timestamp::text::option")]
    pub last_attempt_at: Option<OffsetDateTime>,
    /// The first failure since it was queued or last released.
    #[serde(serialize_with = "timestamp::text::option")]
    pub failing_since: Option<OffsetDateTime>,
    /// When the next retry is due.
    #[serde(serialize_with = "timestamp::text::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
    /// When it was accepted.
    #[serde(serialize_with = "timestamp::text::option")]
    pub delivered_at: Option<OffsetDateTime>,
    /// Held since.
    #[serde(serialize_with = "timestamp::text::option")]
    pub held_at: Option<OffsetDateTime>,
    /// Why it is held (kept after a skip, for the record).
    pub held_reason: Option<String>,
    /// When it was skipped.
    #[serde(serialize_with = "timestamp::text::option")]
    pub skipped_at: Option<OffsetDateTime>,
    /// Why it was skipped.
    pub skip_reason: Option<String>,
    /// The latest operator retry.
    #[serde(serialize_with = "timestamp::text::option")]
    pub released_at: Option<OffsetDateTime>,
    /// The latest response.
    pub last_response: Option<LastResponse>,
}

/// One message with its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageDetail {
    /// The row.
    pub info: MessageInfo,
    /// The message as sent.
    pub raw: Vec<u8>,
}

/// What a stream is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamState {
    /// Nothing pending.
    Idle,
    /// Sending the head (or about to), no failure so far.
    Sending,
    /// The head failed and is being retried with backoff.
    Retrying,
    /// The head holds the stream until an operator acts.
    Held,
}

impl StreamState {
    /// `idle`, `sending`, `retrying`, `held`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Sending => "sending",
            Self::Retrying => "retrying",
            Self::Held => "held",
        }
    }
}

/// One stream, as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamStatus {
    /// The destination.
    pub destination: String,
    /// What it is doing.
    pub state: StreamState,
    /// True when an operator must act.
    pub held: bool,
    /// Pending messages (queued, in flight, held).
    pub depth: u64,
    /// Why it is held or retrying.
    pub reason: Option<String>,
    /// Since when (held: `held_at`; retrying: `failing_since`).
    #[serde(serialize_with = "timestamp::text::option")]
    pub since: Option<OffsetDateTime>,
    /// The head: the message being sent, retried or holding the stream.
    pub head: Option<MessageInfo>,
    /// When the oldest unacknowledged message (the head) was queued.
    #[serde(serialize_with = "timestamp::text::option")]
    pub oldest_unacknowledged_at: Option<OffsetDateTime>,
    /// Its age in seconds.
    pub oldest_unacknowledged_age_secs: Option<u64>,
    /// The head's latest response.
    pub last_response: Option<LastResponse>,
    /// Messages delivered so far (still in the store).
    pub delivered: u64,
    /// Messages skipped.
    pub skipped: u64,
    /// The latest delivery.
    #[serde(serialize_with = "timestamp::text::option")]
    pub last_delivered_at: Option<OffsetDateTime>,
    /// Why the stream cannot progress now, whatever its state says (the store refuses
    /// writes); absent when nothing stops it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stalled: Option<Stall>,
    /// The replica that holds the stream's lease and since when (`acquired_at`): a shared
    /// (PostgreSQL) store's lease row, or this process's own lease. Absent when no replica
    /// holds one, and with SQLite outside the gateway process (its one process leads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<crate::store::LeaseInfo>,
}

/// Why a stream cannot progress, and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stall {
    /// What stops it.
    pub reason: String,
    /// Since when.
    #[serde(serialize_with = "timestamp::text::serialize")]
    pub since: OffsetDateTime,
}

/// The counts of one stream, as the store reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct StreamCounts {
    /// Queued, in flight or held.
    pub depth: u64,
    /// Delivered (still in the store).
    pub delivered: u64,
    /// Skipped.
    pub skipped: u64,
    /// The latest delivery.
    pub last_delivered_at: Option<OffsetDateTime>,
}

/// Which messages [`Queue::list`](super::Queue::list) returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListFilter {
    /// One destination, or all.
    pub destination: Option<String>,
    /// These states, or all when empty.
    pub states: Vec<MessageState>,
    /// Ids above this (a cursor: the last id seen).
    pub after: QueueId,
    /// At most this many (capped at [`MAX_LIST`](super::MAX_LIST)).
    pub limit: u32,
    /// Highest ids first (the console's stream page); the cursor still excludes ids at or
    /// below `after`.
    pub newest_first: bool,
}

impl Default for ListFilter {
    fn default() -> Self {
        Self {
            destination: None,
            states: Vec::new(),
            after: 0,
            limit: 100,
            newest_first: false,
        }
    }
}

impl ListFilter {
    /// Pending messages (queued, in flight, held) of every destination.
    pub fn pending() -> Self {
        Self {
            states: vec![
                MessageState::Queued,
                MessageState::InFlight,
                MessageState::Held,
            ],
            ..Self::default()
        }
    }
}

/// The head of a stream, with its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The row.
    pub info: MessageInfo,
    /// The message.
    pub raw: Vec<u8>,
}

/// A message checked for the queue: its MSH-10 and MSH-9 read, ready for the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewMessage {
    /// MSH-10, not empty.
    pub control_id: String,
    /// MSH-9 as `ADT^A28`.
    pub message_type: String,
    /// The bytes to send.
    pub raw: Vec<u8>,
    /// The intake request's key, when it named one.
    pub idempotency: Option<IdempotencyKey>,
}

/// An intake request's `Idempotency-Key` and the SHA-256 of what was asked, so a repeat of
/// the key is told apart from another request reusing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// The key as the client sent it.
    pub key: String,
    /// Lower-case hex SHA-256 of the request (its target and body).
    pub request_sha256: String,
}

impl NewMessage {
    /// Reads MSH-10 and MSH-9 of one HL7 message; refuses what could not be matched to its
    /// ACK.
    fn check(raw: Vec<u8>) -> Result<Self, QueueError> {
        let message = Message::parse(&raw)?;
        let control_id = message.control_id().into_owned();
        if control_id.is_empty() {
            return Err(QueueError::MissingControlId);
        }
        let code = message.message_code();
        let trigger = message.trigger_event();
        let message_type = if trigger.is_empty() {
            code.into_owned()
        } else {
            format!("{code}^{trigger}")
        };
        drop(message);
        Ok(Self {
            control_id,
            message_type,
            raw,
            idempotency: None,
        })
    }

    pub(crate) fn check_all(
        destination: &str,
        messages: Vec<Vec<u8>>,
    ) -> Result<Vec<Self>, QueueError> {
        if destination.trim().is_empty() {
            return Err(QueueError::EmptyDestination);
        }
        messages.into_iter().map(Self::check).collect()
    }
}

/// A stream's status from its head and counts.
pub(crate) fn stream_status(
    destination: &str,
    head: Option<MessageInfo>,
    counts: StreamCounts,
) -> StreamStatus {
    let (state, reason, since) = match &head {
        None => (StreamState::Idle, None, None),
        Some(h) if h.state == MessageState::Held => {
            (StreamState::Held, h.held_reason.clone(), h.held_at)
        }
        Some(h) if h.failures > 0 => {
            let last = h
                .last_response
                .as_ref()
                .map_or_else(String::new, |r| format!("; last: {r}"));
            let next = h.next_attempt_at.map_or_else(String::new, |n| {
                format!("; next attempt at {}", timestamp::format(n))
            });
            (
                StreamState::Retrying,
                Some(format!(
                    "message {} (MSH-10 {}) failed {} time(s){last}{next}",
                    h.id, h.control_id, h.failures
                )),
                h.failing_since,
            )
        }
        Some(_) => (StreamState::Sending, None, None),
    };
    let oldest = head.as_ref().map(|h| h.enqueued_at);
    let age = oldest.map(|at| {
        SystemTime::now()
            .duration_since(SystemTime::from(at))
            .unwrap_or(Duration::ZERO)
            .as_secs()
    });
    StreamStatus {
        destination: destination.to_owned(),
        state,
        held: state == StreamState::Held,
        depth: counts.depth,
        reason,
        since,
        last_response: head.as_ref().and_then(|h| h.last_response.clone()),
        head,
        oldest_unacknowledged_at: oldest,
        oldest_unacknowledged_age_secs: age,
        leader: None,
        delivered: counts.delivered,
        skipped: counts.skipped,
        last_delivered_at: counts.last_delivered_at,
        stalled: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip() {
        for s in MessageState::ALL {
            assert_eq!(MessageState::parse(s.as_str()), Some(s));
        }
        assert_eq!(MessageState::parse("gone"), None);
    }
}
