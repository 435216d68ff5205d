//! The outbound queue's operations on the store: what [`crate::queue::Queue`] and its
//! sequencer call, dispatched to the backend like every other operation. Each is one
//! transaction in the backend; the decisions (which transition, which policy) are made by
//! [`crate::queue::apply`] and the sequencer, not here.
//!
//! The calls a sequencer makes as the stream's leader (recover, begin an attempt, record an
//! outcome) take its [`Fence`]; a shared backend checks it in the same transaction (see
//! [`super::lease`]), SQLite's one process needs no check.

use time::OffsetDateTime;

use super::{Backend, BlockingStore, Fence, Store, postgres};
use crate::client::Outcome;
use crate::queue::{
    Action, Enqueued, Event, ListFilter, MessageDetail, MessageInfo, NewMessage, Pending,
    QueueError, QueueId, StreamCounts,
};

use postgres::queue as pg_queue;

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

    pub(crate) async fn queue_operator(
        &self,
        id: QueueId,
        event: Event,
    ) -> Result<MessageInfo, QueueError> {
        match &self.inner.backend {
            Backend::Sqlite(_) => self.run(move |s| s.queue_operator(id, event)).await,
            Backend::Postgres(pg) => pg.run(pg_queue::operator(pg.pool(), id, event)).await,
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

    pub(crate) async fn queue_record_delivered(
        &self,
        id: QueueId,
        outcome: Outcome,
        at: OffsetDateTime,
        fence: Option<Fence>,
    ) -> Result<bool, QueueError> {
        match &self.inner.backend {
            Backend::Sqlite(_) => {
                self.run(move |s| s.queue_record_delivered(id, &outcome, at))
                    .await
            }
            Backend::Postgres(pg) => {
                pg.run(pg_queue::record_delivered(
                    pg.pool(),
                    id,
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
    ) -> Result<MessageInfo, QueueError> {
        match &self.backend {
            Backend::Sqlite(db) => db.queue_operator(id, event),
            Backend::Postgres(pg) => pg.block(pg_queue::operator(pg.pool(), id, event)),
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

    pub(crate) fn queue_record_delivered(
        &self,
        id: QueueId,
        outcome: &Outcome,
        at: OffsetDateTime,
    ) -> Result<bool, QueueError> {
        match &self.backend {
            Backend::Sqlite(db) => db.queue_record_delivered(id, outcome, at),
            Backend::Postgres(pg) => pg.block(pg_queue::record_delivered(
                pg.pool(),
                id,
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
