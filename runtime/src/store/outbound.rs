//! The outbound queue's operations on the store: what [`crate::queue::Queue`] and its
//! sequencer call, dispatched to the backend like every other operation. Each is one
//! transaction in the backend; the decisions (which transition, which policy) are made by
//! [`crate::queue::apply`] and the sequencer, not here.

use time::OffsetDateTime;

use super::{Backend, BlockingStore, Store};
use crate::client::Outcome;
use crate::queue::{
    Action, Enqueued, Event, ListFilter, MessageDetail, MessageInfo, NewMessage, Pending,
    QueueError, QueueId, StreamCounts,
};

impl Store {
    pub(crate) async fn queue_enqueue(
        &self,
        destination: String,
        messages: Vec<NewMessage>,
        at: OffsetDateTime,
    ) -> Result<Vec<Enqueued>, QueueError> {
        self.run(move |s| s.queue_enqueue(&destination, &messages, at))
            .await
    }

    /// The stream's head without its bytes.
    pub(crate) async fn queue_head(
        &self,
        destination: String,
    ) -> Result<Option<MessageInfo>, QueueError> {
        self.run(move |s| s.queue_head(&destination)).await
    }

    /// The stream's head with its bytes.
    pub(crate) async fn queue_head_with_raw(
        &self,
        destination: String,
    ) -> Result<Option<Pending>, QueueError> {
        self.run(move |s| s.queue_head_with_raw(&destination)).await
    }

    pub(crate) async fn queue_counts(
        &self,
        destination: String,
    ) -> Result<StreamCounts, QueueError> {
        self.run(move |s| s.queue_counts(&destination)).await
    }

    pub(crate) async fn queue_destinations(&self) -> Result<Vec<String>, QueueError> {
        self.run(|s| s.queue_destinations()).await
    }

    pub(crate) async fn queue_list(
        &self,
        filter: ListFilter,
    ) -> Result<Vec<MessageInfo>, QueueError> {
        self.run(move |s| s.queue_list(&filter)).await
    }

    pub(crate) async fn queue_show(
        &self,
        id: QueueId,
    ) -> Result<Option<MessageDetail>, QueueError> {
        self.run(move |s| s.queue_show(id)).await
    }

    pub(crate) async fn queue_operator(
        &self,
        id: QueueId,
        event: Event,
    ) -> Result<MessageInfo, QueueError> {
        self.run(move |s| s.queue_operator(id, event)).await
    }

    pub(crate) async fn queue_prune_finished(
        &self,
        cutoff: OffsetDateTime,
    ) -> Result<usize, QueueError> {
        self.run(move |s| s.queue_prune_finished(cutoff)).await
    }

    pub(crate) async fn queue_recover(
        &self,
        destination: String,
    ) -> Result<Vec<MessageInfo>, QueueError> {
        self.run(move |s| s.queue_recover(&destination)).await
    }

    pub(crate) async fn queue_begin_attempt(
        &self,
        id: QueueId,
        at: OffsetDateTime,
    ) -> Result<Option<Vec<u8>>, QueueError> {
        self.run(move |s| s.queue_begin_attempt(id, at)).await
    }

    pub(crate) async fn queue_record_delivered(
        &self,
        id: QueueId,
        outcome: Outcome,
        at: OffsetDateTime,
    ) -> Result<bool, QueueError> {
        self.run(move |s| s.queue_record_delivered(id, &outcome, at))
            .await
    }

    pub(crate) async fn queue_record_failure(
        &self,
        id: QueueId,
        outcome: Outcome,
        at: OffsetDateTime,
        decide: impl FnOnce(u32) -> Action + Send + 'static,
    ) -> Result<Option<(u32, Action)>, QueueError> {
        self.run(move |s| s.queue_record_failure(id, &outcome, at, decide))
            .await
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
        }
    }

    /// The stream's head without its bytes.
    pub(crate) fn queue_head(&self, destination: &str) -> Result<Option<MessageInfo>, QueueError> {
        match &self.backend {
            Backend::Sqlite(db) => db.queue_head(destination),
        }
    }

    /// The stream's head with its bytes.
    pub(crate) fn queue_head_with_raw(
        &self,
        destination: &str,
    ) -> Result<Option<Pending>, QueueError> {
        match &self.backend {
            Backend::Sqlite(db) => db.queue_head_with_raw(destination),
        }
    }

    pub(crate) fn queue_counts(&self, destination: &str) -> Result<StreamCounts, QueueError> {
        match &self.backend {
            Backend::Sqlite(db) => db.queue_counts(destination),
        }
    }

    pub(crate) fn queue_destinations(&self) -> Result<Vec<String>, QueueError> {
        match &self.backend {
            Backend::Sqlite(db) => db.queue_destinations(),
        }
    }

    pub(crate) fn queue_list(&self, filter: &ListFilter) -> Result<Vec<MessageInfo>, QueueError> {
        match &self.backend {
            Backend::Sqlite(db) => db.queue_list(filter),
        }
    }

    pub(crate) fn queue_show(&self, id: QueueId) -> Result<Option<MessageDetail>, QueueError> {
        match &self.backend {
            Backend::Sqlite(db) => db.queue_show(id),
        }
    }

    pub(crate) fn queue_operator(
        &self,
        id: QueueId,
        event: Event,
    ) -> Result<MessageInfo, QueueError> {
        match &self.backend {
            Backend::Sqlite(db) => db.queue_operator(id, event),
        }
    }

    pub(crate) fn queue_prune_finished(&self, cutoff: OffsetDateTime) -> Result<usize, QueueError> {
        match &self.backend {
            Backend::Sqlite(db) => Ok(db.queue_prune_finished(cutoff)?),
        }
    }

    pub(crate) fn queue_recover(&self, destination: &str) -> Result<Vec<MessageInfo>, QueueError> {
        match &self.backend {
            Backend::Sqlite(db) => db.queue_recover(destination),
        }
    }

    pub(crate) fn queue_begin_attempt(
        &self,
        id: QueueId,
        at: OffsetDateTime,
    ) -> Result<Option<Vec<u8>>, QueueError> {
        match &self.backend {
            Backend::Sqlite(db) => db.queue_begin_attempt(id, at),
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
        }
    }

    pub(crate) fn queue_record_failure(
        &self,
        id: QueueId,
        outcome: &Outcome,
        at: OffsetDateTime,
        decide: impl FnOnce(u32) -> Action,
    ) -> Result<Option<(u32, Action)>, QueueError> {
        match &self.backend {
            Backend::Sqlite(db) => db.queue_record_failure(id, outcome, at, decide),
        }
    }
}
