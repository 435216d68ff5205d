//! Group commit of inbound messages: commits that arrive while another is being written wait
//! in one queue, and the writer takes them all (up to [`MAX_GROUP`]) into one transaction, so
//! they share one fsync (SQLite) or one round trip (PostgreSQL).
//!
//! There is no committer thread. The caller whose commit finds nobody writing becomes the
//! *leader* ([`Lead`]): it starts one writer (a blocking-pool thread for SQLite, a task for
//! PostgreSQL) that takes what is waiting, oldest first, writes it, answers every member and
//! takes the next group, until the queue is empty. Every other caller only waits for its
//! answer ([`Ticket`]): no thread is parked per waiting message and nobody queues on the
//! connection's lock, so a group of N costs one hand-over to the writer and N wake-ups, not
//! N of each. Each answer is given only after the transaction holding its row committed, so
//! an ACK still leaves only once its own row is durable.
//!
//! "Is anyone writing?" and the queue live under one lock, so a commit queued just as the
//! writer found the queue empty is never stranded: either the writer sees it, or its caller
//! sees nobody writing and leads.
//!
//! What a failure does, in both backends:
//!
//! - A member that cannot be written (a constraint, a value the database refuses) fails alone:
//!   its own savepoint (SQLite) or its own transaction (PostgreSQL, after the group's
//!   statement failed) is rolled back, the others are written.
//! - A failed commit of the transaction (a full disk, a lost connection) fails every member
//!   of the group with [`StoreError::GroupCommit`] and nothing else: the next group starts
//!   afresh.
//! - Two copies of one key in one group: the first is committed, the second is answered as a
//!   [`CommitResult::Duplicate`] of it, exactly as if it had arrived just after.
//! - A writer that ends without answering (it panicked, or its task could not start) answers
//!   every member it took and every commit still waiting with [`abandoned`]: whether a taken
//!   member's transaction committed is unknown, and the sender's retry finds out.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::{CommitResult, InboundRecord, StoreError};

/// The most messages one transaction takes. Large enough that 32 or more concurrent senders
/// share few fsyncs, small enough that one transaction (and the wait of its first member)
/// stays short; further messages wait for the next group.
pub const MAX_GROUP: usize = 64;

/// Upper bounds of the group size histogram's buckets (`hl7gw_store_commit_group_size`).
pub const GROUP_SIZE_BUCKETS: [u64; 8] = [1, 2, 4, 8, 16, 32, 64, 128];

/// What a commit hands back: the result and the record, for the caller to keep.
pub(crate) type Outcome = Result<(CommitResult, InboundRecord), StoreError>;

/// One commit waiting to be taken into a group.
pub(crate) struct Pending {
    /// The message.
    pub(crate) record: InboundRecord,
    answer: oneshot::Sender<Outcome>,
}

impl Pending {
    /// Gives the member its answer. A caller that stopped waiting (its request was
    /// cancelled) is not an error: its row's fate is in the store either way.
    pub(crate) fn answer(self, result: Result<CommitResult, StoreError>) {
        let Self { record, answer } = self;
        let _ = answer.send(result.map(|r| (r, record)));
    }
}

/// A caller's ticket: where its answer will come.
pub(crate) struct Ticket {
    answer: oneshot::Receiver<Outcome>,
}

impl Ticket {
    /// Waits for the answer in an async task.
    pub(crate) async fn wait(self) -> Outcome {
        self.answer.await.unwrap_or_else(|_| Err(abandoned()))
    }

    /// Waits for the answer on a thread that may block (never in an async task).
    pub(crate) fn wait_blocking(self) -> Outcome {
        self.answer
            .blocking_recv()
            .unwrap_or_else(|_| Err(abandoned()))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing here can be left half-updated by a panic: a push, a drain, a flag.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The waiting commits and whether a writer is taking them.
#[derive(Default)]
struct Waiting {
    queue: VecDeque<Pending>,
    writing: bool,
}

/// The commits waiting, and how large the groups were.
#[derive(Default)]
pub(crate) struct GroupQueue {
    waiting: Arc<Mutex<Waiting>>,
    stats: Arc<GroupStats>,
}

impl GroupQueue {
    /// Queues `record`. With a [`Lead`] the caller must start the writer (and give it the
    /// lead); either way it then waits on the ticket.
    pub(crate) fn enqueue(&self, record: InboundRecord) -> (Ticket, Option<Lead>) {
        let (answer, receiver) = oneshot::channel();
        let mut waiting = lock(&self.waiting);
        waiting.queue.push_back(Pending { record, answer });
        let lead = (!waiting.writing).then(|| {
            waiting.writing = true;
            Lead {
                waiting: Arc::clone(&self.waiting),
                stats: Arc::clone(&self.stats),
                done: false,
            }
        });
        (Ticket { answer: receiver }, lead)
    }

    /// The group sizes seen so far.
    pub(crate) fn stats(&self) -> Arc<GroupStats> {
        Arc::clone(&self.stats)
    }
}

/// The right, and the duty, to write every waiting commit: whoever holds it takes groups
/// with [`next_group`](Self::next_group), writes and answers each, until it returns `None`.
/// Dropped earlier (a panic, a writer that could not start), it answers everything still
/// waiting with [`abandoned`] and lets the next caller lead.
#[must_use = "the waiting commits are answered only by the writer holding the lead"]
pub(crate) struct Lead {
    waiting: Arc<Mutex<Waiting>>,
    stats: Arc<GroupStats>,
    done: bool,
}

impl Lead {
    /// The oldest waiting commits, at most [`MAX_GROUP`]; `None` when none is waiting, which
    /// ends the lead. Answer every member before asking for the next group.
    pub(crate) fn next_group(&mut self) -> Option<Vec<Pending>> {
        let mut waiting = lock(&self.waiting);
        let n = waiting.queue.len().min(MAX_GROUP);
        if n == 0 {
            waiting.writing = false;
            self.done = true;
            return None;
        }
        let group: Vec<Pending> = waiting.queue.drain(..n).collect();
        drop(waiting);
        self.stats.observe(group.len());
        Some(group)
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let stranded: Vec<Pending> = {
            let mut waiting = lock(&self.waiting);
            waiting.writing = false;
            waiting.queue.drain(..).collect()
        };
        // Only a panic in the writer, or a writer that could not start (the runtime shutting
        // down), gets here: the senders see 503s, the log says why.
        tracing::error!(
            waiting = stranded.len(),
            panicking = std::thread::panicking(),
            "store: the inbound group commit writer ended without answering; its commits \
             and those waiting are answered with an error (503) and will be retried"
        );
        for member in stranded {
            member.answer(Err(abandoned()));
        }
    }
}

/// The answer for a commit whose writer ended without answering it (it panicked, or could
/// not start). Whether its transaction committed is unknown; the sender's retry finds out.
pub(crate) fn abandoned() -> StoreError {
    StoreError::Task("the group commit holding this message ended without an answer".into())
}

/// Fails every member of a group whose transaction did not commit; see [`finish`].
pub(crate) fn fail_all(group: Vec<Pending>, error: StoreError) {
    let results = group.iter().map(|_| Ok(None)).collect();
    finish(group, results, Err(error));
}

/// Answers every member once the group's transaction ended: `results[i]` is what member `i`
/// wrote (`Ok(None)` when nothing is known yet, only for a failed commit) or why it alone
/// failed; `commit` is how the transaction ended. When it did not commit, every member that
/// had not failed alone fails with it: the member that caused it (a group of one) keeps the
/// error itself, the others get [`StoreError::GroupCommit`].
pub(crate) fn finish(
    group: Vec<Pending>,
    results: Vec<Result<Option<CommitResult>, StoreError>>,
    commit: Result<(), StoreError>,
) {
    let size = group.len();
    let mut error = commit.err();
    let reason = error.as_ref().map(ToString::to_string);
    let mut results = results.into_iter();
    for member in group {
        let own = results
            .next()
            .unwrap_or_else(|| Err(StoreError::Task("no result for a group member".into())));
        let answer = match (own, &reason) {
            (Err(e), _) => Err(e),
            (Ok(Some(result)), None) => Ok(result),
            (Ok(_), Some(reason)) => Err(if size == 1 {
                error
                    .take()
                    .unwrap_or_else(|| StoreError::Task(reason.clone()))
            } else {
                StoreError::GroupCommit {
                    size,
                    reason: reason.clone(),
                }
            }),
            (Ok(None), None) => Err(StoreError::Task("no result for a group member".into())),
        };
        member.answer(answer);
    }
}

/// How many transactions the inbound commits took and how many messages each held: the
/// `hl7gw_store_commit_group_size` histogram. Shared by every clone of a store.
#[derive(Debug, Default)]
pub struct GroupStats {
    /// Per bucket of [`GROUP_SIZE_BUCKETS`], plus one above the last.
    buckets: [AtomicU64; GROUP_SIZE_BUCKETS.len() + 1],
    groups: AtomicU64,
    messages: AtomicU64,
}

impl GroupStats {
    fn observe(&self, size: usize) {
        let size = u64::try_from(size).unwrap_or(u64::MAX);
        let i = GROUP_SIZE_BUCKETS
            .iter()
            .position(|b| size <= *b)
            .unwrap_or(GROUP_SIZE_BUCKETS.len());
        if let Some(bucket) = self.buckets.get(i) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.groups.fetch_add(1, Ordering::Relaxed);
        self.messages.fetch_add(size, Ordering::Relaxed);
    }

    /// Transactions written for inbound commits.
    pub fn groups(&self) -> u64 {
        self.groups.load(Ordering::Relaxed)
    }

    /// Inbound commits taken into them.
    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    /// Groups per bucket of [`GROUP_SIZE_BUCKETS`] (not cumulative), and those above the
    /// last bound.
    pub fn buckets(&self) -> [u64; GROUP_SIZE_BUCKETS.len() + 1] {
        std::array::from_fn(|i| self.buckets.get(i).map_or(0, |b| b.load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedup::DedupKey;
    use crate::hl7::AckCode;
    use crate::sink::SinkKind;

    fn record(control_id: &str) -> InboundRecord {
        InboundRecord {
            received_at: std::time::SystemTime::UNIX_EPOCH,
            peer_ip: None,
            peer_subject: None,
            key: DedupKey::new("APP", "FAC", control_id),
            message_type: "ADT^A28".into(),
            raw: bytes::Bytes::from_static(b"MSH|^~\\&|APP|FAC\r"),
            record: None,
            ack: Vec::new(),
            ack_code: AckCode::ApplicationAccept,
            sink: SinkKind::Inbox,
        }
    }

    fn control_id(outcome: Outcome) -> String {
        match outcome {
            Ok((CommitResult::Committed(_), record)) => record.key.control_id,
            other => panic!("expected a commit, got {other:?}"),
        }
    }

    #[test]
    fn one_lead_at_a_time_and_everything_queued_meanwhile_is_taken_in_order() {
        let queue = GroupQueue::default();
        let (first, lead) = queue.enqueue(record("1"));
        let mut lead = lead.expect("nobody writes yet: the first caller leads");
        let (second, none) = queue.enqueue(record("2"));
        assert!(none.is_none(), "a writer holds the lead");
        let (third, _) = queue.enqueue(record("3"));
        let group = lead.next_group().expect("three waiting");
        let ids: Vec<&str> = group
            .iter()
            .map(|p| p.record.key.control_id.as_str())
            .collect();
        assert_eq!(ids, ["1", "2", "3"]);
        for (n, member) in group.into_iter().enumerate() {
            member.answer(Ok(CommitResult::Committed(n as i64)));
        }
        assert!(
            lead.next_group().is_none(),
            "the queue is empty: the lead ends"
        );
        drop(lead);
        for (ticket, id) in [(first, "1"), (second, "2"), (third, "3")] {
            assert_eq!(control_id(ticket.wait_blocking()), id);
        }
        // The lead ended: the next caller leads again.
        let (_, again) = queue.enqueue(record("4"));
        assert!(again.is_some());
        assert_eq!(queue.stats().groups(), 1);
        assert_eq!(queue.stats().messages(), 3);
    }

    #[test]
    fn a_group_is_at_most_max_group_and_the_rest_waits_for_the_next() {
        let queue = GroupQueue::default();
        let mut lead = None;
        for n in 0..MAX_GROUP + 5 {
            let (_, l) = queue.enqueue(record(&n.to_string()));
            lead = lead.or(l);
        }
        let mut lead = lead.expect("the first caller leads");
        assert_eq!(lead.next_group().map(|g| g.len()), Some(MAX_GROUP));
        assert_eq!(lead.next_group().map(|g| g.len()), Some(5));
        assert!(lead.next_group().is_none());
    }

    #[test]
    fn a_writer_that_ends_without_answering_answers_every_waiting_commit_with_an_error() {
        let queue = GroupQueue::default();
        let (taken, lead) = queue.enqueue(record("taken"));
        let mut lead = lead.expect("leads");
        let (waiting, _) = queue.enqueue(record("waiting"));
        let group = lead.next_group().expect("two waiting");
        // The writer dies holding the group and the lead (a panic unwinds through both).
        drop(group);
        let (late, none) = queue.enqueue(record("late"));
        assert!(none.is_none(), "the dead writer still holds the lead");
        drop(lead);
        for ticket in [taken, waiting, late] {
            let error = ticket
                .wait_blocking()
                .expect_err("no answer is a failure, not a hang");
            assert!(
                error.to_string().contains("ended without an answer"),
                "{error}"
            );
        }
        // Nothing is left leading: the next caller writes.
        let (_, lead) = queue.enqueue(record("next"));
        assert!(lead.is_some());
    }
}
