//! Group commit of inbound messages: commits that arrive while another is being written wait
//! in one queue, and the next writer takes them all (up to [`MAX_GROUP`]) into one
//! transaction, so they share one fsync (SQLite) or one round trip (PostgreSQL).
//!
//! There is no committer thread: whoever gets the backend's writer (SQLite's connection, the
//! PostgreSQL backend's commit lock) next leads. It takes what is waiting, oldest first,
//! writes it, answers every member and lets go; a caller whose commit another leader already
//! answered just returns that answer. Each answer is given only after the transaction holding
//! its row committed, so an ACK still leaves only once its own row is durable.
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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{CommitResult, InboundRecord, StoreError};

/// The most messages one transaction takes. Large enough that 32 or more concurrent senders
/// share few fsyncs, small enough that one transaction (and the wait of its first member)
/// stays short; further messages wait for the next group.
pub const MAX_GROUP: usize = 64;

/// Upper bounds of the group size histogram's buckets (`hl7gw_store_commit_group_size`).
pub const GROUP_SIZE_BUCKETS: [u64; 8] = [1, 2, 4, 8, 16, 32, 64, 128];

/// What a commit hands back: the result and the record, for the caller to keep.
pub(crate) type Outcome = Result<(CommitResult, InboundRecord), StoreError>;

/// Where a member's answer is left by the group's leader.
type Slot = Mutex<Option<Outcome>>;

/// One commit waiting to be taken into a group.
pub(crate) struct Pending {
    /// The message.
    pub(crate) record: InboundRecord,
    slot: Arc<Slot>,
}

impl Pending {
    /// Leaves the member's answer for it.
    pub(crate) fn answer(self, result: Result<CommitResult, StoreError>) {
        let outcome = result.map(|r| (r, self.record));
        *lock(&self.slot) = Some(outcome);
    }
}

/// A caller's ticket: where its answer will be.
pub(crate) struct Ticket {
    slot: Arc<Slot>,
}

impl Ticket {
    /// The answer, once a leader left it.
    pub(crate) fn take(&self) -> Option<Outcome> {
        lock(&self.slot).take()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing here can be left half-updated by a panic: a push, a drain, a store.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The commits waiting, and how large the groups were.
#[derive(Default)]
pub(crate) struct GroupQueue {
    waiting: Mutex<VecDeque<Pending>>,
    stats: Arc<GroupStats>,
}

impl GroupQueue {
    /// Queues `record`; the caller then waits for the writer and [`take`](Self::take)s a
    /// group unless its ticket was answered meanwhile.
    pub(crate) fn enqueue(&self, record: InboundRecord) -> Ticket {
        let slot = Arc::new(Slot::default());
        lock(&self.waiting).push_back(Pending {
            record,
            slot: Arc::clone(&slot),
        });
        Ticket { slot }
    }

    /// The oldest waiting commits, at most [`MAX_GROUP`]. Call it only while holding the
    /// writer, and answer every member before letting the writer go.
    pub(crate) fn take(&self) -> Vec<Pending> {
        let mut waiting = lock(&self.waiting);
        let n = waiting.len().min(MAX_GROUP);
        let group: Vec<Pending> = waiting.drain(..n).collect();
        drop(waiting);
        if !group.is_empty() {
            self.stats.observe(group.len());
        }
        group
    }

    /// The group sizes seen so far.
    pub(crate) fn stats(&self) -> Arc<GroupStats> {
        Arc::clone(&self.stats)
    }
}

/// The answer for a caller whose ticket is empty although no commit is waiting: the leader
/// that took it ended without answering (its task was cancelled). Whether its transaction
/// committed is unknown; the sender's retry finds out.
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
