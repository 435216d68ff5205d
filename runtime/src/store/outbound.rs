//! The outbound queue's operations on the store: what [`crate::queue::Queue`] and its
//! sequencer call, dispatched to the backend like every other operation. Each is one
//! transaction in the backend; the decisions (which transition, which policy) are made by
//! [`crate::queue::apply`] and the sequencer, not here.
//!
//! The calls a sequencer makes as the stream's leader (recover, begin an attempt, record an
//! outcome) take its [`Fence`]; a shared backend checks it in the same transaction (see
//! [`super::lease`]), SQLite's one process needs no check.

use time::OffsetDateTime;

use super::audit::Operator;
use super::{Backend, BlockingStore, Fence, Store, postgres};
use crate::client::Outcome;
use crate::queue::{
    Action, Enqueued, Event, ListFilter, MessageDetail, MessageInfo, NewMessage, Pending,
    QueueError, QueueId, StreamCounts,
};

use postgres::queue as pg_queue;

/// Every column of `outbound_messages` but `raw`, in the order both backends' readers take
/// them (SQLite's `info` reads by index).
pub(super) const COLUMNS: &str = "id, destination, control_id, message_type, state, enqueued_at,
    attempts, failures, first_attempt_at, last_attempt_at, failing_since, next_attempt_at,
    delivered_at, held_at, held_reason, skipped_at, skip_reason, released_at, last_outcome,
    last_http_status, last_ack_code, last_response, last_response_at";

impl NewMessage {
    /// The answer to a message whose `Idempotency-Key` already queued row `id` (with the
    /// request digest `digest`): that entry for the same request, a conflict for another.
    pub(super) fn repeat_of_key(
        &self,
        id: QueueId,
        digest: Option<&str>,
    ) -> Result<Enqueued, QueueError> {
        match &self.idempotency {
            Some(i) if digest != Some(i.request_sha256.as_str()) => {
                Err(QueueError::IdempotencyConflict {
                    key: i.key.clone(),
                    existing: id,
                })
            }
            _ => Ok(Enqueued { id, created: false }),
        }
    }

    /// The answer to a message whose MSH-10 row `id` of `destination` already has, holding
    /// `stored`: that entry for the same bytes, a refusal for others (the receiver would drop
    /// them as a duplicate).
    pub(super) fn repeat_of_control_id(
        &self,
        destination: &str,
        id: QueueId,
        stored: &[u8],
    ) -> Result<Enqueued, QueueError> {
        if stored == self.raw {
            return Ok(Enqueued { id, created: false });
        }
        Err(QueueError::DuplicateControlId {
            destination: destination.to_owned(),
            control_id: self.control_id.clone(),
            existing: id,
        })
    }

    /// `idempotency_key` and `request_sha256` as stored.
    pub(super) fn idempotency_columns(&self) -> (Option<&str>, Option<&str>) {
        match &self.idempotency {
            Some(i) => (Some(&i.key), Some(&i.request_sha256)),
            None => (None, None),
        }
    }
}

/// A failure recorded for a message that was `row`: when it is still in flight, the
/// policy's decision (`decide`, given the failure count including this one) and the
/// progress to save; `None` when an operator changed it meanwhile (their decision stands).
pub(super) fn failure_decision(
    row: &MessageInfo,
    at: OffsetDateTime,
    decide: impl FnOnce(u32) -> Action,
) -> Option<(u32, Action, crate::queue::Progress)> {
    let progress = row.progress();
    if progress.state.kind() != crate::queue::MessageState::InFlight {
        return None;
    }
    let failures = crate::queue::failures_after_one_more(&progress);
    let action = decide(failures);
    let event = Event::Failed {
        at,
        action: action.clone(),
    };
    let next = crate::queue::apply(&progress, event).ok()?;
    Some((failures, action, next))
}

/// The column values a [`Progress`](crate::queue::Progress) is saved as, in every backend:
/// the columns of the new state are set; `next_attempt_at` belongs to `queued` only; a
/// queued or in-flight message has no hold; a delivered or skipped one keeps why it was held
/// (and a delivered one when it was skipped), for the record. A `(false, ..)` group leaves
/// its columns as they are.
pub(super) struct SavedProgress {
    pub state: &'static str,
    pub attempts: i64,
    pub failures: i64,
    pub first_attempt_at: Option<String>,
    pub last_attempt_at: Option<String>,
    pub failing_since: Option<String>,
    pub released_at: Option<String>,
    pub next_attempt_at: Option<String>,
    /// Set?, `delivered_at`.
    pub delivered: (bool, Option<String>),
    /// Set?, `held_at`, `held_reason`.
    pub held: (bool, Option<String>, Option<String>),
    /// Set?, `skipped_at`, `skip_reason`.
    pub skipped: (bool, Option<String>, Option<String>),
}

impl SavedProgress {
    pub(super) fn of(p: &crate::queue::Progress) -> Self {
        use super::timestamp::format;
        use crate::queue::State;
        let text = |at: Option<OffsetDateTime>| at.map(format);
        let mut saved = Self {
            state: p.state.kind().as_str(),
            attempts: i64::from(p.attempts),
            failures: i64::from(p.failures),
            first_attempt_at: text(p.first_attempt_at),
            last_attempt_at: text(p.last_attempt_at),
            failing_since: text(p.failing_since),
            released_at: text(p.released_at),
            next_attempt_at: None,
            delivered: (false, None),
            held: (false, None, None),
            skipped: (false, None, None),
        };
        match &p.state {
            State::Queued { next_attempt_at } => {
                saved.next_attempt_at = text(*next_attempt_at);
                saved.held = (true, None, None);
            }
            State::InFlight { .. } => saved.held = (true, None, None),
            State::Delivered { at, .. } => saved.delivered = (true, Some(format(*at))),
            State::Held { since, reason } => {
                saved.held = (true, Some(format(*since)), Some(reason.clone()));
            }
            State::Skipped { at, reason } => {
                saved.skipped = (true, Some(format(*at)), Some(reason.clone()));
            }
        }
        saved
    }
}

impl Store {
    pub(crate) async fn queue_enqueue(
        &self,
        destination: String,
        messages: Vec<NewMessage>,
        at: OffsetDateTime,
    ) -> Result<Vec<Enqueued>, QueueError> {
        match &self.inner.backend {
            Backend::Sqlite(_) => {
                self.run(move |s| s.queue_enqueue(&destination, &messages, at))
                    .await
            }
            Backend::Postgres(pg) => {
                pg.run(pg_queue::enqueue(pg.pool(), destination, messages, at))
                    .await
            }
        }
    }

    /// The stream's head without its bytes.
    pub(crate) async fn queue_head(
        &self,
        destination: String,
    ) -> Result<Option<MessageInfo>, QueueError> {
        match &self.inner.backend {
            Backend::Sqlite(_) => self.run(move |s| s.queue_head(&destination)).await,
            Backend::Postgres(pg) => pg.run(pg_queue::head(pg.pool(), destination)).await,
        }
    }

    /// The stream's head with its bytes.
    pub(crate) async fn queue_head_with_raw(
        &self,
        destination: String,
    ) -> Result<Option<Pending>, QueueError> {
        match &self.inner.backend {
            Backend::Sqlite(_) => self.run(move |s| s.queue_head_with_raw(&destination)).await,
            Backend::Postgres(pg) => {
                pg.run(pg_queue::head_with_raw(pg.pool(), destination))
                    .await
            }
        }
    }

    pub(crate) async fn queue_counts(
        &self,
        destination: String,
    ) -> Result<StreamCounts, QueueError> {
        match &self.inner.backend {
            Backend::Sqlite(_) => self.run(move |s| s.queue_counts(&destination)).await,
            Backend::Postgres(pg) => pg.run(pg_queue::counts(pg.pool(), destination)).await,
        }
    }

    pub(crate) async fn queue_destinations(&self) -> Result<Vec<String>, QueueError> {
        match &self.inner.backend {
            Backend::Sqlite(_) => self.run(|s| s.queue_destinations()).await,
            Backend::Postgres(pg) => pg.run(pg_queue::destinations(pg.pool())).await,
        }
    }

    pub(crate) async fn queue_list(
        &self,
        filter: ListFilter,
    ) -> Result<Vec<MessageInfo>, QueueError> {
        match &self.inner.backend {
            Backend::Sqlite(_) => self.run(move |s| s.queue_list(&filter)).await,
            Backend::Postgres(pg) => pg.run(pg_queue::list(pg.pool(), filter)).await,
        }
    }

    pub(crate) async fn queue_show(
        &self,
        id: QueueId,
    ) -> Result<Option<MessageDetail>, QueueError> {
        match &self.inner.backend {
            Backend::Sqlite(_) => self.run(move |s| s.queue_show(id)).await,
            Backend::Postgres(pg) => pg.run(pg_queue::show(pg.pool(), id)).await,
        }
    }

    /// An operator's retry or skip, recorded in the audit trail with `by` in the same
    /// transaction.
    pub(crate) async fn queue_operator(
        &self,
        id: QueueId,
        event: Event,
        by: Operator,
    ) -> Result<MessageInfo, QueueError> {
        match &self.inner.backend {
            Backend::Sqlite(_) => self.run(move |s| s.queue_operator(id, event, &by)).await,
            Backend::Postgres(pg) => pg.run(pg_queue::operator(pg.pool(), id, event, by)).await,
        }
    }

    pub(crate) async fn queue_prune_finished(
        &self,
        cutoff: OffsetDateTime,
    ) -> Result<usize, QueueError> {
        match &self.inner.backend {
            Backend::Sqlite(_) => self.run(move |s| s.queue_prune_finished(cutoff)).await,
            Backend::Postgres(pg) => {
                let pool = pg.pool();
                pg.run(async move { Ok(pg_queue::prune_finished(&pool, cutoff).await?) })
                    .await
            }
        }
    }

    pub(crate) async fn queue_recover(
        &self,
        destination: String,
        fence: Option<Fence>,
    ) -> Result<Vec<MessageInfo>, QueueError> {
        match &self.inner.backend {
            Backend::Sqlite(_) => self.run(move |s| s.queue_recover(&destination)).await,
            Backend::Postgres(pg) => {
                pg.run(pg_queue::recover(pg.pool(), destination, fence))
                    .await
            }
        }
    }

    pub(crate) async fn queue_begin_attempt(
        &self,
        id: QueueId,
        at: OffsetDateTime,
        fence: Option<Fence>,
    ) -> Result<Option<Vec<u8>>, QueueError> {
        match &self.inner.backend {
            Backend::Sqlite(_) => self.run(move |s| s.queue_begin_attempt(id, at)).await,
            Backend::Postgres(pg) => {
                pg.run(pg_queue::begin_attempt(pg.pool(), id, at, fence))
                    .await
            }
        }
    }

    pub(crate) async fn queue_record_delivered_then_begin(
        &self,
        id: QueueId,
        destination: String,
        outcome: Outcome,
        at: OffsetDateTime,
        fence: Option<Fence>,
    ) -> Result<(bool, Option<Pending>), QueueError> {
        match &self.inner.backend {
            Backend::Sqlite(_) => {
                self.run(move |s| {
                    s.queue_record_delivered_then_begin(id, &destination, &outcome, at)
                })
                .await
            }
            Backend::Postgres(pg) => {
                pg.run(pg_queue::record_delivered_then_begin(
                    pg.pool(),
                    id,
                    destination,
                    outcome,
                    at,
                    fence,
                ))
                .await
            }
        }
    }

    pub(crate) async fn queue_record_failure(
        &self,
        id: QueueId,
        outcome: Outcome,
        at: OffsetDateTime,
        decide: impl FnOnce(u32) -> Action + Send + 'static,
        fence: Option<Fence>,
    ) -> Result<Option<(u32, Action)>, QueueError> {
        match &self.inner.backend {
            Backend::Sqlite(_) => {
                self.run(move |s| s.queue_record_failure(id, &outcome, at, decide))
                    .await
            }
            Backend::Postgres(pg) => {
                pg.run(pg_queue::record_failure(
                    pg.pool(),
                    id,
                    outcome,
                    at,
                    decide,
                    fence,
                ))
                .await
            }
        }
    }
}

impl BlockingStore {
    pub(crate) fn queue_enqueue(
        &self,
        destination: &str,
        messages: &[NewMessage],
        at: OffsetDateTime,
    ) -> Result<Vec<Enqueued>, QueueError> {
        match &self.backend {
            Backend::Sqlite(db) => db.queue_enqueue(destination, messages, at),
            Backend::Postgres(pg) => pg.block(pg_queue::enqueue(
                pg.pool(),
                destination.to_owned(),
                messages.to_vec(),
                at,
            )),
        }
    }

    /// The stream's head without its bytes.
    pub(crate) fn queue_head(&self, destination: &str) -> Result<Option<MessageInfo>, QueueError> {
        match &self.backend {
            Backend::Sqlite(db) => db.queue_head(destination),
            Backend::Postgres(pg) => pg.block(pg_queue::head(pg.pool(), destination.to_owned())),
        }
    }

    /// The stream's head with its bytes.
    pub(crate) fn queue_head_with_raw(
        &self,
        destination: &str,
    ) -> Result<Option<Pending>, QueueError> {
        match &self.backend {
            Backend::Sqlite(db) => db.queue_head_with_raw(destination),
            Backend::Postgres(pg) => {
                pg.block(pg_queue::head_with_raw(pg.pool(), destination.to_owned()))
            }
        }
    }

    pub(crate) fn queue_counts(&self, destination: &str) -> Result<StreamCounts, QueueError> {
        match &self.backend {
            Backend::Sqlite(db) => db.queue_counts(destination),
            Backend::Postgres(pg) => pg.block(pg_queue::counts(pg.pool(), destination.to_owned())),
        }
    }

    pub(crate) fn queue_destinations(&self) -> Result<Vec<String>, QueueError> {
        match &self.backend {
            Backend::Sqlite(db) => db.queue_destinations(),
            Backend::Postgres(pg) => pg.block(pg_queue::destinations(pg.pool())),
        }
    }

    pub(crate) fn queue_list(&self, filter: &ListFilter) -> Result<Vec<MessageInfo>, QueueError> {
        match &self.backend {
            Backend::Sqlite(db) => db.queue_list(filter),
            Backend::Postgres(pg) => pg.block(pg_queue::list(pg.pool(), filter.clone())),
        }
    }

    pub(crate) fn queue_show(&self, id: QueueId) -> Result<Option<MessageDetail>, QueueError> {
        match &self.backend {
            Backend::Sqlite(db) => db.queue_show(id),
            Backend::Postgres(pg) => pg.block(pg_queue::show(pg.pool(), id)),
        }
    }

    pub(crate) fn queue_operator(
        &self,
        id: QueueId,
        event: Event,
        by: &Operator,
    ) -> Result<MessageInfo, QueueError> {
        match &self.backend {
            Backend::Sqlite(db) => db.queue_operator(id, event, by),
            Backend::Postgres(pg) => pg.block(pg_queue::operator(pg.pool(), id, event, by.clone())),
        }
    }

    pub(crate) fn queue_prune_finished(&self, cutoff: OffsetDateTime) -> Result<usize, QueueError> {
        match &self.backend {
            Backend::Sqlite(db) => Ok(db.queue_prune_finished(cutoff)?),
            Backend::Postgres(pg) => {
                let pool = pg.pool();
                pg.block(async move { Ok(pg_queue::prune_finished(&pool, cutoff).await?) })
            }
        }
    }

    pub(crate) fn queue_recover(&self, destination: &str) -> Result<Vec<MessageInfo>, QueueError> {
        match &self.backend {
            Backend::Sqlite(db) => db.queue_recover(destination),
            Backend::Postgres(pg) => {
                pg.block(pg_queue::recover(pg.pool(), destination.to_owned(), None))
            }
        }
    }

    pub(crate) fn queue_begin_attempt(
        &self,
        id: QueueId,
        at: OffsetDateTime,
    ) -> Result<Option<Vec<u8>>, QueueError> {
        match &self.backend {
            Backend::Sqlite(db) => db.queue_begin_attempt(id, at),
            Backend::Postgres(pg) => pg.block(pg_queue::begin_attempt(pg.pool(), id, at, None)),
        }
    }

    pub(crate) fn queue_record_delivered_then_begin(
        &self,
        id: QueueId,
        destination: &str,
        outcome: &Outcome,
        at: OffsetDateTime,
    ) -> Result<(bool, Option<Pending>), QueueError> {
        match &self.backend {
            Backend::Sqlite(db) => {
                db.queue_record_delivered_then_begin(id, destination, outcome, at)
            }
            Backend::Postgres(pg) => pg.block(pg_queue::record_delivered_then_begin(
                pg.pool(),
                id,
                destination.to_owned(),
                outcome.clone(),
                at,
                None,
            )),
        }
    }

    pub(crate) fn queue_record_failure(
        &self,
        id: QueueId,
        outcome: &Outcome,
        at: OffsetDateTime,
        decide: impl FnOnce(u32) -> Action + Send + 'static,
    ) -> Result<Option<(u32, Action)>, QueueError> {
        match &self.backend {
            Backend::Sqlite(db) => db.queue_record_failure(id, outcome, at, decide),
            Backend::Postgres(pg) => pg.block(pg_queue::record_failure(
                pg.pool(),
                id,
                outcome.clone(),
                at,
                decide,
                None,
            )),
        }
    }
}
