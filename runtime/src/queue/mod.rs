//! The sender's durable queue: one strictly ordered stream of HL7 messages per destination,
//! kept in the gateway's SQLite [store](crate::store), and the [`Sequencer`] that delivers a
//! stream one message at a time.
//!
//! # Guarantees
//!
//! - **Durable**: [`Queue::enqueue`] returns once the message is on disk (WAL,
//!   `synchronous=FULL`). Every state change the sequencer makes is committed before it moves
//!   on; an ACK is recorded before the next message is sent.
//! - **Ordered**: a stream's *head* is its lowest pending id (state `queued`, `in_flight` or
//!   `held`). Only the head is ever sent; the next message goes only after the head is
//!   `delivered` (AA/CA with MSA-2 equal to its MSH-10) or `skipped`.
//! - **At least once, same MSH-10**: a message is marked `in_flight` before it is sent. After a
//!   crash or a restart the sequencer resumes with the head: a message that was in flight is
//!   sent again, byte for byte, so with the same MSH-10, and the receiver's duplicate check
//!   answers it without applying it twice. One MSH-10 per destination is enforced at enqueue
//!   ([`QueueError::DuplicateControlId`]), because the receiver would drop a second message
//!   reusing one.
//! - **Held means held**: a held head stays held across restarts until an operator
//!   [retries](Queue::retry) or [skips](Queue::skip) it. Skipped messages are kept (state
//!   `skipped`), never deleted, also by [`Queue::prune_delivered`].
//!
//! # States
//!
//! ```text
//! queued ──send──▶ in_flight ──AA/CA──▶ delivered
//!   ▲                 │
//!   │  retry policy   │ failure: policy of its class (client::FailureClass)
//!   ├─────────────────┤──hold──▶ held ──operator retry──▶ queued
//!   │                 └──skip──▶ skipped ◀──operator skip── (queued, in_flight, held)
//!   └── restart: in_flight is sent again
//! ```
//!
//! # Table `outbound_messages` (store migration 2)
//!
//! | column | meaning |
//! |---|---|
//! | `id` | queue id, `AUTOINCREMENT`: the order of the stream |
//! | `destination` | the stream |
//! | `control_id`, `message_type` | MSH-10 (unique per destination), MSH-9 as `ADT^A28` |
//! | `raw` | the message, byte for byte as sent |
//! | `state` | `queued`, `in_flight`, `delivered`, `held`, `skipped` |
//! | `enqueued_at` | when it was queued (UTC RFC 3339, microseconds, like every time here) |
//! | `attempts` | sends so far |
//! | `failures` | failed attempts since it was queued or last released by an operator: what `retry(N) then hold` counts |
//! | `first_attempt_at`, `last_attempt_at` | first and latest send |
//! | `failing_since` | the first failure since it was queued or last released |
//! | `next_attempt_at` | when a retry is due (backoff); informational, the sequencer keeps the timer |
//! | `delivered_at` | when the accepting ACK arrived |
//! | `held_at`, `held_reason` | since when and why it holds the stream |
//! | `skipped_at`, `skip_reason` | when and why it was skipped (policy or operator) |
//! | `released_at` | the latest operator retry |
//! | `last_outcome` | `accepted` or a [`FailureClass`] (`connect_error`, `timeout`, `http_5xx`, `http_4xx`, `bad_ack`, `ae`, `ar`) |
//! | `last_http_status`, `last_ack_code` | of the latest response |
//! | `last_response`, `last_response_at` | MSA-3 and ERR texts, the status, or what went wrong; never patient data |
//!
//! # Operators
//!
//! [`Queue::status`] (per stream: state, depth, why held or retrying, since when, the age of
//! the oldest unacknowledged message, the last response), [`Queue::list`], [`Queue::show`],
//! [`Queue::retry`] and [`Queue::skip`] work from any process on the same store file (a
//! `queue` command beside a running `send`): the sequencer polls the store while it waits,
//! and in-process callers also wake it at once. Every call has a blocking twin on
//! [`BlockingQueue`] for CLI code outside an async runtime.

mod sequencer;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::{Serialize, Serializer};
use tokio::sync::Notify;

pub use sequencer::{Action, Backoff, Policies, Sequencer, SequencerEvent};

use crate::client::{FailureClass, Outcome};
use crate::hl7::{AckCode, Message};
use crate::store::{BlockingStore, Store, StoreError, format_rfc3339};

/// A message's id in the queue; ids grow with enqueue order.
pub type QueueId = i64;

/// The most rows one [`Queue::list`] returns.
pub const MAX_LIST: u32 = 1000;

/// Where a message is.
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

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The destination name is empty.
    #[error("the destination name is empty")]
    EmptyDestination,
    /// The bytes are not one HL7 message (segments must end with CR).
    #[error("not an HL7 message: {0}")]
    NotHl7(String),
    /// MSH-10 is empty: the ACK could not be matched to the message.
    #[error("the message has no MSH-10 (message control ID): its ACK could not be matched")]
    MissingControlId,
    /// Another message with this MSH-10 is already in the destination's queue.
    #[error(
        "destination {destination:?} already has message {existing} with MSH-10 {control_id:?}: \
         the receiver would drop this one as a duplicate; give it a new MSH-10"
    )]
    DuplicateControlId {
        /// The destination.
        destination: String,
        /// The MSH-10.
        control_id: String,
        /// The queued message with it.
        existing: QueueId,
    },
    /// No message with this id.
    #[error("no queued message {0}")]
    NotFound(QueueId),
    /// The message is done (delivered or skipped); retry and skip act on pending messages.
    #[error(
        "message {id} is {state}: only queued, in-flight or held messages can be retried or skipped"
    )]
    NotPending {
        /// The message.
        id: QueueId,
        /// Its state.
        state: MessageState,
    },
}

impl From<rusqlite::Error> for QueueError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Store(StoreError::Sqlite(e))
    }
}

/// What [`Queue::enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Enqueued {
    /// The queue id.
    pub id: QueueId,
    /// False when the same bytes with the same MSH-10 were already queued for this
    /// destination (an idempotent repeat): nothing was added.
    pub created: bool,
}

/// The latest response (or failure) recorded for a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastResponse {
    /// When it was recorded.
    pub at: String,
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

/// One queued message without its bytes.
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
    pub enqueued_at: String,
    /// Sends so far.
    pub attempts: u32,
    /// Failed attempts since it was queued or last released by an operator.
    pub failures: u32,
    /// The first send.
    pub first_attempt_at: Option<String>,
    /// The latest send.
    pub last_attempt_at: Option<String>,
    /// The first failure since it was queued or last released.
    pub failing_since: Option<String>,
    /// When the next retry is due.
    pub next_attempt_at: Option<String>,
    /// When it was accepted.
    pub delivered_at: Option<String>,
    /// Held since.
    pub held_at: Option<String>,
    /// Why it is held (kept after a skip, for the record).
    pub held_reason: Option<String>,
    /// When it was skipped.
    pub skipped_at: Option<String>,
    /// Why it was skipped.
    pub skip_reason: Option<String>,
    /// The latest operator retry.
    pub released_at: Option<String>,
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
    pub since: Option<String>,
    /// The head: the message being sent, retried or holding the stream.
    pub head: Option<MessageInfo>,
    /// When the oldest unacknowledged message (the head) was queued.
    pub oldest_unacknowledged_at: Option<String>,
    /// Its age in seconds.
    pub oldest_unacknowledged_age_secs: Option<u64>,
    /// The head's latest response.
    pub last_response: Option<LastResponse>,
    /// Messages delivered so far (still in the store).
    pub delivered: u64,
    /// Messages skipped.
    pub skipped: u64,
    /// The latest delivery.
    pub last_delivered_at: Option<String>,
}

/// Which messages [`Queue::list`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListFilter {
    /// One destination, or all.
    pub destination: Option<String>,
    /// These states, or all when empty.
    pub states: Vec<MessageState>,
    /// Ids above this (a cursor: the last id seen).
    pub after: QueueId,
    /// At most this many (capped at [`MAX_LIST`]).
    pub limit: u32,
}

impl Default for ListFilter {
    fn default() -> Self {
        Self {
            destination: None,
            states: Vec::new(),
            after: 0,
            limit: 100,
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

/// The head of a stream, with its bytes: what the sequencer sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The row.
    pub info: MessageInfo,
    /// The message.
    pub raw: Vec<u8>,
}

/// The queue: a handle on the store plus a wake-up signal for sequencers in this process.
/// Cheap to clone; clones share both.
#[derive(Clone, Debug)]
pub struct Queue {
    store: Store,
    wake: Arc<Notify>,
}

impl Queue {
    /// The queue in `store` (migration 2 made its table).
    pub fn new(store: Store) -> Self {
        Self {
            store,
            wake: Arc::new(Notify::new()),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The same operations as blocking calls (CLI code, tests). Changes made through it wake
    /// this process's sequencers too.
    pub fn blocking(&self) -> BlockingQueue<'_> {
        BlockingQueue {
            store: self.store.blocking(),
            wake: &self.wake,
        }
    }

    /// Wakes this process's sequencers to re-read the store now (they also poll).
    pub fn wake(&self) {
        self.wake.notify_waiters();
    }

    pub(crate) fn wake_handle(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    async fn run<T, F>(&self, f: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&BlockingQueue<'_>) -> Result<T, QueueError> + Send + 'static,
    {
        let wake = Arc::clone(&self.wake);
        self.store
            .run(move |s| {
                Ok(f(&BlockingQueue {
                    store: s,
                    wake: &wake,
                }))
            })
            .await?
    }

    /// Queues `raw` (one HL7 message, CR segment terminators, a non-empty MSH-10) at the end
    /// of `destination`'s stream; on disk when this returns.
    pub async fn enqueue(&self, destination: &str, raw: Vec<u8>) -> Result<Enqueued, QueueError> {
        let destination = destination.to_owned();
        self.run(move |q| q.enqueue(&destination, &raw)).await
    }

    /// Queues several messages in this order, all or none, in one transaction.
    pub async fn enqueue_all(
        &self,
        destination: &str,
        messages: Vec<Vec<u8>>,
    ) -> Result<Vec<Enqueued>, QueueError> {
        let destination = destination.to_owned();
        self.run(move |q| q.enqueue_all(&destination, &messages))
            .await
    }

    /// The head of the stream: its lowest pending message, with its bytes.
    pub async fn head(&self, destination: &str) -> Result<Option<Pending>, QueueError> {
        let destination = destination.to_owned();
        self.run(move |q| q.head(&destination)).await
    }

    /// One stream's status.
    pub async fn status(&self, destination: &str) -> Result<StreamStatus, QueueError> {
        let destination = destination.to_owned();
        self.run(move |q| q.status(&destination)).await
    }

    /// Every stream's status, by destination name.
    pub async fn status_all(&self) -> Result<Vec<StreamStatus>, QueueError> {
        self.run(|q| q.status_all()).await
    }

    /// Messages in id order.
    pub async fn list(&self, filter: ListFilter) -> Result<Vec<MessageInfo>, QueueError> {
        self.run(move |q| q.list(&filter)).await
    }

    /// One message with its bytes.
    pub async fn show(&self, id: QueueId) -> Result<Option<MessageDetail>, QueueError> {
        self.run(move |q| q.show(id)).await
    }

    /// Releases a pending message: it is sent next (it is its stream's head, or will be),
    /// with a fresh failure count. On a held message this is the operator's "retry"; on a
    /// retrying one it cuts the backoff short.
    pub async fn retry(&self, id: QueueId) -> Result<MessageInfo, QueueError> {
        self.run(move |q| q.retry(id)).await
    }

    /// Marks a pending message skipped (kept, never sent again) and releases its stream.
    pub async fn skip(&self, id: QueueId, note: Option<String>) -> Result<MessageInfo, QueueError> {
        self.run(move |q| q.skip(id, note.as_deref())).await
    }

    /// Deletes delivered messages delivered more than `older_than` ago; skipped and pending
    /// ones are never deleted. Returns how many went.
    pub async fn prune_delivered(&self, older_than: Duration) -> Result<usize, QueueError> {
        self.run(move |q| q.prune_delivered(older_than)).await
    }

    pub(crate) async fn recover(&self, destination: &str) -> Result<Vec<MessageInfo>, QueueError> {
        let destination = destination.to_owned();
        self.run(move |q| q.recover(&destination)).await
    }

    pub(crate) async fn begin_attempt(&self, id: QueueId) -> Result<bool, QueueError> {
        self.run(move |q| q.begin_attempt(id)).await
    }

    pub(crate) async fn record_delivered(
        &self,
        id: QueueId,
        outcome: Outcome,
    ) -> Result<bool, QueueError> {
        self.run(move |q| q.record_delivered(id, &outcome)).await
    }

    pub(crate) async fn record_failure(
        &self,
        id: QueueId,
        outcome: Outcome,
        decide: impl FnOnce(u32) -> Action + Send + 'static,
    ) -> Result<Option<(u32, Action)>, QueueError> {
        self.run(move |q| q.record_failure(id, &outcome, decide))
            .await
    }
}

/// [`Queue`]'s operations as blocking calls; see [`Queue::blocking`].
pub struct BlockingQueue<'s> {
    store: &'s BlockingStore,
    wake: &'s Notify,
}

const COLUMNS: &str = "id, destination, control_id, message_type, state, enqueued_at, attempts,
    failures, first_attempt_at, last_attempt_at, failing_since, next_attempt_at, delivered_at,
    held_at, held_reason, skipped_at, skip_reason, released_at, last_outcome, last_http_status,
    last_ack_code, last_response, last_response_at";

/// A stored text that should be one of a few values and is not (the file was edited).
#[derive(Debug, thiserror::Error)]
#[error("unexpected stored value {0:?}")]
struct BadValue(String);

fn bad_value(idx: usize, text: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        idx,
        rusqlite::types::Type::Text,
        Box::new(BadValue(text)),
    )
}

fn count(r: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<u32> {
    let n: i64 = r.get(idx)?;
    Ok(u32::try_from(n.max(0)).unwrap_or(u32::MAX))
}

fn info(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageInfo> {
    let state: String = r.get(4)?;
    let state = MessageState::parse(&state).ok_or_else(|| bad_value(4, state))?;
    let outcome: Option<String> = r.get(18)?;
    let last_response = match outcome {
        None => None,
        Some(text) => {
            let failure = if text == "accepted" {
                None
            } else {
                Some(FailureClass::parse(&text).ok_or_else(|| bad_value(18, text))?)
            };
            let ack_code = match r.get::<_, Option<String>>(20)? {
                None => None,
                Some(code) => Some(AckCode::parse(&code).ok_or_else(|| bad_value(20, code))?),
            };
            Some(LastResponse {
                at: r.get::<_, Option<String>>(22)?.unwrap_or_default(),
                failure,
                http_status: r
                    .get::<_, Option<i64>>(19)?
                    .and_then(|s| u16::try_from(s).ok()),
                ack_code,
                text: r.get::<_, Option<String>>(21)?.unwrap_or_default(),
            })
        }
    };
    Ok(MessageInfo {
        id: r.get(0)?,
        destination: r.get(1)?,
        control_id: r.get(2)?,
        message_type: r.get(3)?,
        state,
        enqueued_at: r.get(5)?,
        attempts: count(r, 6)?,
        failures: count(r, 7)?,
        first_attempt_at: r.get(8)?,
        last_attempt_at: r.get(9)?,
        failing_since: r.get(10)?,
        next_attempt_at: r.get(11)?,
        delivered_at: r.get(12)?,
        held_at: r.get(13)?,
        held_reason: r.get(14)?,
        skipped_at: r.get(15)?,
        skip_reason: r.get(16)?,
        released_at: r.get(17)?,
        last_response,
    })
}

fn info_by_id(conn: &Connection, id: QueueId) -> Result<Option<MessageInfo>, QueueError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM outbound_messages WHERE id = ?1"
    ))?;
    Ok(stmt.query_row([id], info).optional()?)
}

fn now() -> String {
    format_rfc3339(SystemTime::now())
}

/// The outcome columns (`last_outcome` … `last_response_at`) as parameters 2‥6.
fn outcome_params(outcome: &Outcome) -> (&'static str, Option<u16>, Option<&'static str>, &str) {
    (
        outcome.failure.map_or("accepted", FailureClass::as_str),
        outcome.http_status,
        outcome.ack_code.map(AckCode::as_str),
        outcome.detail.as_str(),
    )
}

/// MSH-10, MSH-9 of a message to queue.
fn describe_message(raw: &[u8]) -> Result<(String, String), QueueError> {
    let message = Message::parse(raw).map_err(|e| QueueError::NotHl7(e.to_string()))?;
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
    Ok((control_id, message_type))
}

fn insert(
    tx: &Connection,
    destination: &str,
    raw: &[u8],
    at: &str,
) -> Result<Enqueued, QueueError> {
    let (control_id, message_type) = describe_message(raw)?;
    let existing: Option<(QueueId, Vec<u8>)> = tx
        .prepare_cached(
            "SELECT id, raw FROM outbound_messages WHERE destination = ?1 AND control_id = ?2",
        )?
        .query_row(params![destination, control_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    if let Some((id, stored)) = existing {
        if stored == raw {
            return Ok(Enqueued { id, created: false });
        }
        return Err(QueueError::DuplicateControlId {
            destination: destination.to_owned(),
            control_id,
            existing: id,
        });
    }
    tx.prepare_cached(
        "INSERT INTO outbound_messages (destination, control_id, message_type, raw, state, enqueued_at)
         VALUES (?1, ?2, ?3, ?4, 'queued', ?5)",
    )?
    .execute(params![destination, control_id, message_type, raw, at])?;
    Ok(Enqueued {
        id: tx.last_insert_rowid(),
        created: true,
    })
}

impl BlockingQueue<'_> {
    /// See [`Queue::enqueue`].
    pub fn enqueue(&self, destination: &str, raw: &[u8]) -> Result<Enqueued, QueueError> {
        self.insert_all(destination, |tx, at| insert(tx, destination, raw, at))
    }

    /// See [`Queue::enqueue_all`].
    pub fn enqueue_all<B: AsRef<[u8]>>(
        &self,
        destination: &str,
        messages: &[B],
    ) -> Result<Vec<Enqueued>, QueueError> {
        self.insert_all(destination, |tx, at| {
            messages
                .iter()
                .map(|raw| insert(tx, destination, raw.as_ref(), at))
                .collect()
        })
    }

    /// Runs `write` in one `BEGIN IMMEDIATE` transaction (durable at commit), then wakes the
    /// sequencers.
    fn insert_all<T>(
        &self,
        destination: &str,
        write: impl FnOnce(&Connection, &str) -> Result<T, QueueError>,
    ) -> Result<T, QueueError> {
        if destination.trim().is_empty() {
            return Err(QueueError::EmptyDestination);
        }
        let mut conn = self.store.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = write(&tx, &now())?;
        tx.commit()?;
        drop(conn);
        self.wake.notify_waiters();
        Ok(out)
    }

    /// See [`Queue::head`].
    pub fn head(&self, destination: &str) -> Result<Option<Pending>, QueueError> {
        let conn = self.store.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS}, raw FROM outbound_messages
             WHERE destination = ?1 AND state IN ('queued', 'in_flight', 'held')
             ORDER BY id LIMIT 1"
        ))?;
        Ok(stmt
            .query_row([destination], |r| {
                Ok(Pending {
                    info: info(r)?,
                    raw: r.get(23)?,
                })
            })
            .optional()?)
    }

    /// The destinations that have messages, by name.
    pub fn destinations(&self) -> Result<Vec<String>, QueueError> {
        let conn = self.store.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT DISTINCT destination FROM outbound_messages ORDER BY destination",
        )?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<Vec<String>, _>>()?)
    }

    /// See [`Queue::status`].
    pub fn status(&self, destination: &str) -> Result<StreamStatus, QueueError> {
        let head = self.head(destination)?.map(|p| p.info);
        let conn = self.store.conn();
        let (depth, delivered, skipped, last_delivered_at): (i64, i64, i64, Option<String>) = conn
            .prepare_cached(
                "SELECT COALESCE(SUM(state IN ('queued', 'in_flight', 'held')), 0),
                        COALESCE(SUM(state = 'delivered'), 0),
                        COALESCE(SUM(state = 'skipped'), 0),
                        MAX(delivered_at)
                 FROM outbound_messages WHERE destination = ?1",
            )?
            .query_row([destination], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
        drop(conn);
        let unsigned = |n: i64| u64::try_from(n).unwrap_or(0);
        let (state, reason, since) = match &head {
            None => (StreamState::Idle, None, None),
            Some(h) if h.state == MessageState::Held => {
                (StreamState::Held, h.held_reason.clone(), h.held_at.clone())
            }
            Some(h) if h.failures > 0 => {
                let last = h
                    .last_response
                    .as_ref()
                    .map_or_else(String::new, |r| format!("; last: {r}"));
                let next = h
                    .next_attempt_at
                    .as_ref()
                    .map_or_else(String::new, |n| format!("; next attempt at {n}"));
                (
                    StreamState::Retrying,
                    Some(format!(
                        "message {} (MSH-10 {}) failed {} time(s){last}{next}",
                        h.id, h.control_id, h.failures
                    )),
                    h.failing_since.clone(),
                )
            }
            Some(_) => (StreamState::Sending, None, None),
        };
        let oldest = head.as_ref().map(|h| h.enqueued_at.clone());
        let age = oldest.as_deref().and_then(parse_time).map(|at| {
            SystemTime::now()
                .duration_since(at)
                .unwrap_or(Duration::ZERO)
                .as_secs()
        });
        Ok(StreamStatus {
            destination: destination.to_owned(),
            state,
            held: state == StreamState::Held,
            depth: unsigned(depth),
            reason,
            since,
            last_response: head.as_ref().and_then(|h| h.last_response.clone()),
            head,
            oldest_unacknowledged_at: oldest,
            oldest_unacknowledged_age_secs: age,
            delivered: unsigned(delivered),
            skipped: unsigned(skipped),
            last_delivered_at,
        })
    }

    /// See [`Queue::status_all`].
    pub fn status_all(&self) -> Result<Vec<StreamStatus>, QueueError> {
        self.destinations()?
            .iter()
            .map(|d| self.status(d))
            .collect()
    }

    /// See [`Queue::list`].
    pub fn list(&self, filter: &ListFilter) -> Result<Vec<MessageInfo>, QueueError> {
        let states = if filter.states.is_empty() {
            MessageState::ALL.to_vec()
        } else {
            filter.states.clone()
        };
        // The state names are this module's constants, not input.
        let in_list = states
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {COLUMNS} FROM outbound_messages
             WHERE id > ?1 AND (?2 IS NULL OR destination = ?2) AND state IN ({in_list})
             ORDER BY id LIMIT ?3"
        );
        let conn = self.store.conn();
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(
            params![filter.after, filter.destination, filter.limit.min(MAX_LIST)],
            info,
        )?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// See [`Queue::show`].
    pub fn show(&self, id: QueueId) -> Result<Option<MessageDetail>, QueueError> {
        let conn = self.store.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS}, raw FROM outbound_messages WHERE id = ?1"
        ))?;
        Ok(stmt
            .query_row([id], |r| {
                Ok(MessageDetail {
                    info: info(r)?,
                    raw: r.get(23)?,
                })
            })
            .optional()?)
    }

    fn pending_state(conn: &Connection, id: QueueId) -> Result<MessageState, QueueError> {
        let state: Option<String> = conn
            .prepare_cached("SELECT state FROM outbound_messages WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        let state = state.ok_or(QueueError::NotFound(id))?;
        let state = MessageState::parse(&state).ok_or_else(|| bad_value(0, state))?;
        if !state.is_pending() {
            return Err(QueueError::NotPending { id, state });
        }
        Ok(state)
    }

    /// See [`Queue::retry`].
    pub fn retry(&self, id: QueueId) -> Result<MessageInfo, QueueError> {
        let mut conn = self.store.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        Self::pending_state(&tx, id)?;
        tx.execute(
            "UPDATE outbound_messages
             SET state = 'queued', failures = 0, failing_since = NULL, next_attempt_at = NULL,
                 held_at = NULL, held_reason = NULL, released_at = ?2
             WHERE id = ?1",
            params![id, now()],
        )?;
        let row = info_by_id(&tx, id)?.ok_or(QueueError::NotFound(id))?;
        tx.commit()?;
        drop(conn);
        tracing::info!(id, control_id = %row.control_id, destination = %row.destination, "queue: operator released message");
        self.wake.notify_waiters();
        Ok(row)
    }

    /// See [`Queue::skip`].
    pub fn skip(&self, id: QueueId, note: Option<&str>) -> Result<MessageInfo, QueueError> {
        let reason = match note.map(str::trim).filter(|n| !n.is_empty()) {
            Some(note) => format!("skipped by an operator: {note}"),
            None => "skipped by an operator".to_owned(),
        };
        let mut conn = self.store.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        Self::pending_state(&tx, id)?;
        tx.execute(
            "UPDATE outbound_messages
             SET state = 'skipped', skipped_at = ?2, skip_reason = ?3, next_attempt_at = NULL
             WHERE id = ?1",
            params![id, now(), reason],
        )?;
        let row = info_by_id(&tx, id)?.ok_or(QueueError::NotFound(id))?;
        tx.commit()?;
        drop(conn);
        tracing::warn!(id, control_id = %row.control_id, destination = %row.destination, "queue: operator skipped message");
        self.wake.notify_waiters();
        Ok(row)
    }

    /// See [`Queue::prune_delivered`].
    pub fn prune_delivered(&self, older_than: Duration) -> Result<usize, QueueError> {
        let cutoff = format_rfc3339(
            SystemTime::now()
                .checked_sub(older_than)
                .unwrap_or(UNIX_EPOCH),
        );
        let mut total = 0;
        loop {
            let deleted = {
                let mut conn = self.store.conn();
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let n = tx.execute(
                    "DELETE FROM outbound_messages WHERE id IN (
                         SELECT id FROM outbound_messages
                         WHERE state = 'delivered' AND delivered_at < ?1 LIMIT 1000)",
                    [&cutoff],
                )?;
                tx.commit()?;
                n
            };
            total += deleted;
            if deleted < 1000 {
                return Ok(total);
            }
        }
    }

    /// Puts the destination's in-flight messages (sent before a crash or restart, outcome
    /// unknown) back to `queued`; returns them.
    pub(crate) fn recover(&self, destination: &str) -> Result<Vec<MessageInfo>, QueueError> {
        let mut conn = self.store.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found = {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM outbound_messages
                 WHERE destination = ?1 AND state = 'in_flight' ORDER BY id"
            ))?;
            let rows = stmt.query_map([destination], info)?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        tx.execute(
            "UPDATE outbound_messages SET state = 'queued'
             WHERE destination = ?1 AND state = 'in_flight'",
            [destination],
        )?;
        tx.commit()?;
        Ok(found)
    }

    /// Marks a message in flight before it is sent; false when it is no longer sendable (an
    /// operator skipped or held it meanwhile).
    pub(crate) fn begin_attempt(&self, id: QueueId) -> Result<bool, QueueError> {
        let at = now();
        let n = self.store.conn().execute(
            "UPDATE outbound_messages
             SET state = 'in_flight', attempts = attempts + 1,
                 first_attempt_at = COALESCE(first_attempt_at, ?2), last_attempt_at = ?2,
                 next_attempt_at = NULL
             WHERE id = ?1 AND state IN ('queued', 'in_flight')",
            params![id, at],
        )?;
        Ok(n == 1)
    }

    /// Records an accepting ACK. A delivered message is delivered whatever an operator did
    /// meanwhile: that is what happened. False when it was already delivered.
    pub(crate) fn record_delivered(
        &self,
        id: QueueId,
        outcome: &Outcome,
    ) -> Result<bool, QueueError> {
        let at = now();
        let (kind, status, code, text) = outcome_params(outcome);
        let n = self.store.conn().execute(
            "UPDATE outbound_messages
             SET state = 'delivered', delivered_at = ?6, next_attempt_at = NULL,
                 last_outcome = ?2, last_http_status = ?3, last_ack_code = ?4,
                 last_response = ?5, last_response_at = ?6
             WHERE id = ?1 AND state <> 'delivered'",
            params![id, kind, status, code, text, at],
        )?;
        Ok(n == 1)
    }

    /// Records a failure and applies `decide` (given the failure count including this one)
    /// in one transaction. When an operator changed the message meanwhile (it is no longer
    /// in flight), only the response is recorded and `None` returned: the operator's
    /// decision stands.
    pub(crate) fn record_failure(
        &self,
        id: QueueId,
        outcome: &Outcome,
        decide: impl FnOnce(u32) -> Action,
    ) -> Result<Option<(u32, Action)>, QueueError> {
        let at = now();
        let (kind, status, code, text) = outcome_params(outcome);
        let mut conn = self.store.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE outbound_messages
             SET last_outcome = ?2, last_http_status = ?3, last_ack_code = ?4,
                 last_response = ?5, last_response_at = ?6
             WHERE id = ?1",
            params![id, kind, status, code, text, at],
        )?;
        let row: Option<(String, i64)> = tx
            .prepare_cached("SELECT state, failures FROM outbound_messages WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((state, failures)) = row else {
            return Err(QueueError::NotFound(id));
        };
        if state != MessageState::InFlight.as_str() {
            tx.commit()?;
            return Ok(None);
        }
        let failures = u32::try_from(failures.max(0))
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        let action = decide(failures);
        match &action {
            Action::Retry(delay) => {
                let next = format_rfc3339(SystemTime::now() + *delay);
                tx.execute(
                    "UPDATE outbound_messages
                     SET state = 'queued', failures = ?2,
                         failing_since = COALESCE(failing_since, ?3), next_attempt_at = ?4
                     WHERE id = ?1",
                    params![id, failures, at, next],
                )?;
            }
            Action::Hold(reason) => {
                tx.execute(
                    "UPDATE outbound_messages
                     SET state = 'held', failures = ?2, failing_since = COALESCE(failing_since, ?3),
                         next_attempt_at = NULL, held_at = ?3, held_reason = ?4
                     WHERE id = ?1",
                    params![id, failures, at, reason],
                )?;
            }
            Action::Skip(reason) => {
                tx.execute(
                    "UPDATE outbound_messages
                     SET state = 'skipped', failures = ?2, failing_since = COALESCE(failing_since, ?3),
                         next_attempt_at = NULL, skipped_at = ?3, skip_reason = ?4
                     WHERE id = ?1",
                    params![id, failures, at, reason],
                )?;
            }
        }
        tx.commit()?;
        Ok(Some((failures, action)))
    }
}

/// Reads [`format_rfc3339`]'s fixed format (`YYYY-MM-DDTHH:MM:SS.ffffffZ`) back.
fn parse_time(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    if b.len() != 27 || b.get(26) != Some(&b'Z') {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> { text.get(from..to)?.parse().ok() };
    let (y, m, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hh, mm, ss, us) = (num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 26)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Days from civil (H. Hinnant), the inverse of the store's formatter.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    let secs = u64::try_from(secs).ok()?;
    let micros = u64::try_from(us).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_back() {
        for t in [
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::from_micros(951_782_403_000_042),
            UNIX_EPOCH + Duration::from_secs(1_798_761_599),
        ] {
            assert_eq!(parse_time(&format_rfc3339(t)), Some(t));
        }
        assert_eq!(parse_time("2024-13-01T00:00:00.000000Z"), None);
        assert_eq!(parse_time("garbage"), None);
    }

    #[test]
    fn states_round_trip() {
        for s in MessageState::ALL {
            assert_eq!(MessageState::parse(s.as_str()), Some(s));
        }
        assert_eq!(MessageState::parse("gone"), None);
    }
}
