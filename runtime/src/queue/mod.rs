//! The sender's durable queue: one strictly ordered stream of HL7 messages per destination,
//! kept in the gateway's [store](crate::store), and the [`Sequencer`] that delivers a
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
//!   `skipped`) until retention prunes them ([`Queue::prune_finished`], run by the store's
//!   retention task); pending messages (queued, in flight, held) are never pruned.
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
//! The states and their transitions are pure functions in `state.rs` ([`State`], [`apply`]);
//! the SQL is the store backend's (`store/sqlite/queue.rs` for SQLite,
//! `store/postgres/queue.rs` for PostgreSQL), which reads a row, applies the transition and
//! writes it back in one transaction. With several replicas on PostgreSQL, only the
//! replica holding the stream's lease delivers it ([`Sequencer`]). The sequencer reads the
//! head's metadata only; the message bytes are loaded by the call that marks it in flight,
//! so a held or backing-off head is never re-read whole while the stream waits.
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
//! | `last_outcome` | `accepted` or a [`FailureClass`](crate::client::FailureClass) (`connect_error`, `timeout`, `http_5xx`, `http_4xx`, `bad_ack`, `ae`, `ar`) |
//! | `last_http_status`, `last_ack_code` | of the latest response |
//! | `last_response`, `last_response_at` | MSA-3 and ERR texts, the status, or what went wrong; never patient data |
//! | `idempotency_key`, `request_sha256` | (migration 4) the intake request's `Idempotency-Key` (unique per destination) and the SHA-256 of its target and body |
//!
//! # Operators
//!
//! [`Queue::status`] (per stream: state, depth, why held or retrying, since when, the age of
//! the oldest unacknowledged message, the last response), [`Queue::list`], [`Queue::show`],
//! [`Queue::retry`] and [`Queue::skip`] work from any process on the same store file (a
//! `queue` command beside a running `send`): the sequencer polls the store while it waits,
//! and in-process callers also wake it at once. Every call has a blocking twin on
//! [`BlockingQueue`] for CLI code outside an async runtime.

mod record;
mod sequencer;
mod state;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use time::OffsetDateTime;
use tokio::sync::Notify;

pub use record::{
    Enqueued, IdempotencyKey, LastResponse, ListFilter, MessageDetail, MessageInfo, MessageState,
    Pending, Stall, StreamState, StreamStatus,
};
pub(crate) use record::{NewMessage, StreamCounts};
pub use sequencer::{Backoff, Policies, Sequencer, SequencerEvent};
pub use state::{Action, Event, Progress, Refusal, State, apply, failures_after_one_more};

use crate::client::Outcome;
use crate::store::audit::Operator;
use crate::store::{BlockingStore, Fence, LeaseInfo, Store, StoreError, timestamp};
use record::stream_status;

/// A message's id in the queue; ids grow with enqueue order.
pub type QueueId = i64;

/// The most rows one [`Queue::list`] returns.
pub const MAX_LIST: u32 = 1000;

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
    NotHl7(#[from] crate::hl7::ParseError),
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
    /// An `Idempotency-Key` already queued a different request for this destination.
    #[error(
        "Idempotency-Key {key:?} was already used for a different request (queued as message \
         {existing}); a repeat must send the same body to the same URL, a new request needs a new key"
    )]
    IdempotencyConflict {
        /// The key.
        key: String,
        /// The message the key queued.
        existing: QueueId,
    },
    /// This replica no longer leads the stream: another one took its lease over (this one
    /// was paused or cut off past the lease's expiry). Nothing was recorded.
    #[error(
        "the lease on stream {destination:?} (token {token}) was taken over by another replica; \
         nothing was recorded"
    )]
    LeaseLost {
        /// The stream.
        destination: String,
        /// The token this replica held.
        token: i64,
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

/// The queue: a handle on the store plus a wake-up signal for sequencers in this process,
/// and what the sequencers here found stopping their streams. Cheap to clone; clones share
/// all three.
#[derive(Clone, Debug)]
pub struct Queue {
    store: Store,
    wake: Arc<Notify>,
    stalls: Arc<std::sync::Mutex<std::collections::HashMap<String, Stall>>>,
    leaders: Arc<std::sync::Mutex<std::collections::HashMap<String, LeaseInfo>>>,
}

impl Queue {
    /// The queue in `store` (migration 2 made its table).
    pub fn new(store: Store) -> Self {
        Self {
            store,
            wake: Arc::new(Notify::new()),
            stalls: Arc::default(),
            leaders: Arc::default(),
        }
    }

    /// A sequencer here took (`Some`, also on each renewal) or gave up (`None`) the lease
    /// of `destination`'s stream.
    pub(crate) fn set_leader(&self, destination: &str, lease: Option<LeaseInfo>) {
        let mut leaders = self.leaders.lock().unwrap_or_else(|e| e.into_inner());
        match lease {
            Some(lease) => leaders.insert(destination.to_owned(), lease),
            None => leaders.remove(destination),
        };
    }

    /// The lease a sequencer in this process holds on `destination`'s stream: `Some` while
    /// this replica leads it (the `hl7gw_queue_leader` metric).
    pub fn leading(&self, destination: &str) -> Option<LeaseInfo> {
        let leaders = self.leaders.lock().unwrap_or_else(|e| e.into_inner());
        leaders.get(destination).cloned()
    }

    /// A sequencer cannot move `destination`'s stream on: `reason` shows in its status
    /// (`stalled`) until [`Queue::clear_stall`]. The first reason's time is kept while the
    /// stall lasts.
    pub fn report_stall(&self, destination: &str, reason: String) {
        let mut stalls = self.stalls.lock().unwrap_or_else(|e| e.into_inner());
        let since = stalls
            .get(destination)
            .map_or_else(timestamp::now, |s| s.since);
        stalls.insert(destination.to_owned(), Stall { reason, since });
    }

    /// The stream moves again.
    pub fn clear_stall(&self, destination: &str) {
        let mut stalls = self.stalls.lock().unwrap_or_else(|e| e.into_inner());
        if !stalls.is_empty() {
            stalls.remove(destination);
        }
    }

    /// Why a sequencer in this process cannot move `destination`'s stream on, if it
    /// cannot: known without the store (the `hl7gw_queue_stalled` metric).
    pub fn stalled(&self, destination: &str) -> Option<Stall> {
        let stalls = self.stalls.lock().unwrap_or_else(|e| e.into_inner());
        stalls.get(destination).cloned()
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

    /// Queues `raw` (one HL7 message, CR segment terminators, a non-empty MSH-10) at the end
    /// of `destination`'s stream; on disk when this returns.
    pub async fn enqueue(&self, destination: &str, raw: Vec<u8>) -> Result<Enqueued, QueueError> {
        let mut done = self.enqueue_all(destination, vec![raw]).await?;
        done.pop().ok_or(QueueError::EmptyDestination)
    }

    /// Queues `raw` as [`enqueue`](Self::enqueue) does, under an intake request's key: a
    /// repeat of the same request returns the entry the key queued (`created: false`), and
    /// another request under the same key is [`QueueError::IdempotencyConflict`]. The key is
    /// checked in the transaction that inserts, so two concurrent repeats queue once.
    pub async fn enqueue_idempotent(
        &self,
        destination: &str,
        raw: Vec<u8>,
        key: IdempotencyKey,
    ) -> Result<Enqueued, QueueError> {
        let mut messages = NewMessage::check_all(destination, vec![raw])?;
        for message in &mut messages {
            message.idempotency = Some(key.clone());
        }
        let mut done = self
            .store
            .queue_enqueue(destination.to_owned(), messages, timestamp::now())
            .await?;
        self.wake.notify_waiters();
        done.pop().ok_or(QueueError::EmptyDestination)
    }

    /// Queues several messages in this order, all or none, in one transaction.
    pub async fn enqueue_all(
        &self,
        destination: &str,
        messages: Vec<Vec<u8>>,
    ) -> Result<Vec<Enqueued>, QueueError> {
        let messages = NewMessage::check_all(destination, messages)?;
        let done = self
            .store
            .queue_enqueue(destination.to_owned(), messages, timestamp::now())
            .await?;
        self.wake.notify_waiters();
        Ok(done)
    }

    /// The head of the stream: its lowest pending message, with its bytes.
    pub async fn head(&self, destination: &str) -> Result<Option<Pending>, QueueError> {
        self.store.queue_head_with_raw(destination.to_owned()).await
    }

    /// The head's row without its bytes: what the sequencer reads while it waits.
    pub(crate) async fn head_info(
        &self,
        destination: &str,
    ) -> Result<Option<MessageInfo>, QueueError> {
        self.store.queue_head(destination.to_owned()).await
    }

    /// One stream's status.
    pub async fn status(&self, destination: &str) -> Result<StreamStatus, QueueError> {
        let head = self.head_info(destination).await?;
        let counts = self.store.queue_counts(destination.to_owned()).await?;
        let mut status = stream_status(destination, head, counts);
        status.stalled = self.stalled(destination);
        status.leader = match self.leading(destination) {
            Some(lease) => Some(lease),
            // A replica that does not lead reads who does from the store.
            None => self.store.lease_holder(destination).await?,
        };
        Ok(status)
    }

    /// Every stream's status, by destination name.
    pub async fn status_all(&self) -> Result<Vec<StreamStatus>, QueueError> {
        let mut all = Vec::new();
        for destination in self.store.queue_destinations().await? {
            all.push(self.status(&destination).await?);
        }
        Ok(all)
    }

    /// Messages in id order.
    pub async fn list(&self, filter: ListFilter) -> Result<Vec<MessageInfo>, QueueError> {
        self.store.queue_list(filter).await
    }

    /// One message with its bytes.
    pub async fn show(&self, id: QueueId) -> Result<Option<MessageDetail>, QueueError> {
        self.store.queue_show(id).await
    }

    /// Releases a pending message: it is sent next (it is its stream's head, or will be),
    /// with a fresh failure count. On a held message this is the operator's "retry"; on a
    /// retrying one it cuts the backoff short. Recorded in the audit trail with `by`
    /// ([`crate::store::audit`]) in the same transaction.
    pub async fn retry(&self, id: QueueId, by: Operator) -> Result<MessageInfo, QueueError> {
        let event = Event::Release {
            at: timestamp::now(),
        };
        let row = self.store.queue_operator(id, event, by.clone()).await?;
        released(&row, &by);
        self.wake.notify_waiters();
        Ok(row)
    }

    /// Marks a pending message skipped (kept, never sent again) and releases its stream;
    /// `by`'s reason becomes the skip's note. Recorded in the audit trail like
    /// [`retry`](Self::retry).
    pub async fn skip(&self, id: QueueId, by: Operator) -> Result<MessageInfo, QueueError> {
        let event = skip_event(Some(&by.reason));
        let row = self.store.queue_operator(id, event, by.clone()).await?;
        skipped(&row, &by);
        self.wake.notify_waiters();
        Ok(row)
    }

    /// Deletes messages delivered or skipped more than `older_than` ago; pending ones
    /// (queued, in flight, held) are never deleted. Returns how many went. The store's
    /// retention task does the same for every destination ([`crate::store::Store::prune`]).
    pub async fn prune_finished(&self, older_than: Duration) -> Result<usize, QueueError> {
        self.store.queue_prune_finished(cutoff(older_than)).await
    }

    /// Puts the destination's in-flight messages (sent before a crash or restart, outcome
    /// unknown) back to `queued`; returns them.
    pub(crate) async fn recover(
        &self,
        destination: &str,
        fence: Option<Fence>,
    ) -> Result<Vec<MessageInfo>, QueueError> {
        self.store
            .queue_recover(destination.to_owned(), fence)
            .await
    }

    /// Marks a message in flight and loads its bytes, in one transaction; `None` when it is
    /// no longer sendable (an operator skipped or held it meanwhile).
    pub(crate) async fn begin_attempt(
        &self,
        id: QueueId,
        fence: Option<Fence>,
    ) -> Result<Option<Vec<u8>>, QueueError> {
        self.store
            .queue_begin_attempt(id, timestamp::now(), fence)
            .await
    }

    /// Records an accepting ACK and, in the same transaction, marks the stream's next
    /// message in flight when one is queued (one commit per delivery; with PostgreSQL the
    /// fence is checked in it). Whether it was recorded (false: delivered already), and the
    /// next message with its bytes when it was taken.
    pub(crate) async fn record_delivered_then_begin(
        &self,
        id: QueueId,
        destination: &str,
        outcome: Outcome,
        fence: Option<Fence>,
    ) -> Result<(bool, Option<Pending>), QueueError> {
        self.store
            .queue_record_delivered_then_begin(
                id,
                destination.to_owned(),
                outcome,
                timestamp::now(),
                fence,
            )
            .await
    }

    /// Records a failure and applies `decide` (given the failure count including this one)
    /// in one transaction. When an operator changed the message meanwhile (it is no longer
    /// in flight), only the response is recorded and `None` returned: the operator's
    /// decision stands.
    pub(crate) async fn record_failure(
        &self,
        id: QueueId,
        outcome: Outcome,
        decide: impl FnOnce(u32) -> Action + Send + 'static,
        fence: Option<Fence>,
    ) -> Result<Option<(u32, Action)>, QueueError> {
        self.store
            .queue_record_failure(id, outcome, timestamp::now(), decide, fence)
            .await
    }
}

/// [`Queue`]'s operations as blocking calls; see [`Queue::blocking`].
pub struct BlockingQueue<'s> {
    store: &'s BlockingStore,
    wake: &'s Notify,
}

impl BlockingQueue<'_> {
    /// See [`Queue::enqueue`].
    pub fn enqueue(&self, destination: &str, raw: &[u8]) -> Result<Enqueued, QueueError> {
        let mut done = self.enqueue_all(destination, &[raw])?;
        done.pop().ok_or(QueueError::EmptyDestination)
    }

    /// See [`Queue::enqueue_all`].
    pub fn enqueue_all<B: AsRef<[u8]>>(
        &self,
        destination: &str,
        messages: &[B],
    ) -> Result<Vec<Enqueued>, QueueError> {
        let messages = messages.iter().map(|m| m.as_ref().to_vec()).collect();
        let messages = NewMessage::check_all(destination, messages)?;
        let done = self
            .store
            .queue_enqueue(destination, &messages, timestamp::now())?;
        self.wake.notify_waiters();
        Ok(done)
    }

    /// See [`Queue::head`].
    pub fn head(&self, destination: &str) -> Result<Option<Pending>, QueueError> {
        self.store.queue_head_with_raw(destination)
    }

    /// The destinations that have messages, by name.
    pub fn destinations(&self) -> Result<Vec<String>, QueueError> {
        self.store.queue_destinations()
    }

    /// See [`Queue::status`]; the leader is read from the store's lease rows (a live lease
    /// only; none with SQLite).
    pub fn status(&self, destination: &str) -> Result<StreamStatus, QueueError> {
        let head = self.store.queue_head(destination)?;
        let counts = self.store.queue_counts(destination)?;
        let mut status = stream_status(destination, head, counts);
        status.leader = self.store.lease_holder(destination)?;
        Ok(status)
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
        self.store.queue_list(filter)
    }

    /// See [`Queue::show`].
    pub fn show(&self, id: QueueId) -> Result<Option<MessageDetail>, QueueError> {
        self.store.queue_show(id)
    }

    /// Message `id` with its bytes (patient data), recording in the audit trail that `by`
    /// opened it, as the console's Open does.
    pub fn open(&self, id: QueueId, by: &Operator) -> Result<Option<MessageDetail>, QueueError> {
        self.store.audit_open(id, by, timestamp::now())
    }

    /// See [`Queue::retry`].
    pub fn retry(&self, id: QueueId, by: &Operator) -> Result<MessageInfo, QueueError> {
        let event = Event::Release {
            at: timestamp::now(),
        };
        let row = self.store.queue_operator(id, event, by)?;
        released(&row, by);
        self.wake.notify_waiters();
        Ok(row)
    }

    /// See [`Queue::skip`].
    pub fn skip(&self, id: QueueId, by: &Operator) -> Result<MessageInfo, QueueError> {
        let row = self
            .store
            .queue_operator(id, skip_event(Some(&by.reason)), by)?;
        skipped(&row, by);
        self.wake.notify_waiters();
        Ok(row)
    }

    /// See [`Queue::prune_finished`].
    pub fn prune_finished(&self, older_than: Duration) -> Result<usize, QueueError> {
        self.store.queue_prune_finished(cutoff(older_than))
    }
}

fn cutoff(older_than: Duration) -> OffsetDateTime {
    timestamp::from_system(
        SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(SystemTime::UNIX_EPOCH),
    )
}

fn skip_event(note: Option<&str>) -> Event {
    let reason = match note.map(str::trim).filter(|n| !n.is_empty()) {
        Some(note) => format!("skipped by an operator: {note}"),
        None => "skipped by an operator".to_owned(),
    };
    Event::Skip {
        at: timestamp::now(),
        reason,
    }
}

fn released(row: &MessageInfo, by: &Operator) {
    tracing::info!(id = row.id, control_id = %row.control_id, destination = %row.destination, operator = %by.name, peer = %by.peer, reason = %by.reason, "queue: operator released message");
}

fn skipped(row: &MessageInfo, by: &Operator) {
    tracing::warn!(id = row.id, control_id = %row.control_id, destination = %row.destination, operator = %by.name, peer = %by.peer, reason = %by.reason, "queue: operator skipped message");
}
