//! Stream leadership: which replica delivers each outbound stream.
//!
//! With PostgreSQL, several replicas share one queue, and exactly one may deliver a given
//! stream at a time. The sequencer of a stream first takes the stream's **lease** (a row in
//! the database with the holder, an expiry and a **fencing token**), renews it while it
//! delivers, and hands its [`Fence`] to every call that marks a message in flight or records
//! an outcome. The backend checks the fence in the same transaction as the change: once
//! another replica took the lease over (after it expired, with the token increased), the old
//! holder's calls fail with [`QueueError::LeaseLost`](crate::queue::QueueError::LeaseLost)
//! and it can neither record nor send out of turn.
//!
//! With SQLite the store is one file owned by one process: that process holds every lease
//! trivially. [`Store::lease_acquire`] always succeeds (token 1), renewals always hold, and
//! the fence is not checked; no lease rows exist, so `queue status` shows no leader.

use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use super::{Backend, BlockingStore, Store, StoreError, postgres, timestamp};

/// Proof of leadership handed to the queue's recording calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The stream.
    pub destination: String,
    /// The replica holding it.
    pub holder: String,
    /// The token it was granted; a takeover increases it.
    pub token: i64,
}

/// One stream's lease as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseInfo {
    /// The stream.
    pub destination: String,
    /// The replica holding it (host, process id, random part).
    pub holder: String,
    /// The fencing token.
    pub token: i64,
    /// When this holder took it (renewals keep it).
    #[serde(serialize_with = "super::timestamp::text::serialize")]
    pub acquired_at: OffsetDateTime,
    /// When it lapses unless renewed (the database's clock).
    #[serde(serialize_with = "super::timestamp::text::serialize")]
    pub expires_at: OffsetDateTime,
}

impl LeaseInfo {
    /// The fence this lease grants.
    pub fn fence(&self) -> Fence {
        Fence {
            destination: self.destination.clone(),
            holder: self.holder.clone(),
            token: self.token,
        }
    }
}

/// This process's name as a lease holder: host name, process id and a random part (two
/// gateway processes started on one host one after the other never share it).
pub fn holder_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned());
    let mut random = std::collections::hash_map::RandomState::new().build_hasher();
    random.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    format!(
        "{host}:{}:{:08x}",
        std::process::id(),
        random.finish() & 0xffff_ffff
    )
}

/// SQLite's trivial lease: held by this process for as long as it asks.
fn sqlite_lease(destination: String, holder: String, duration: Duration) -> LeaseInfo {
    let now = timestamp::now();
    LeaseInfo {
        destination,
        holder,
        token: 1,
        acquired_at: now,
        expires_at: time::Duration::try_from(duration)
            .ok()
            .and_then(|d| now.checked_add(d))
            .unwrap_or(now),
    }
}

impl Store {
    /// Takes `destination`'s lease for `holder` (or renews it, when `holder` has it), for
    /// `duration`; `None` while another replica's lease is live.
    pub async fn lease_acquire(
        &self,
        destination: &str,
        holder: &str,
        duration: Duration,
    ) -> Result<Option<LeaseInfo>, StoreError> {
        let (destination, holder) = (destination.to_owned(), holder.to_owned());
        match &self.inner.backend {
            Backend::Sqlite(_) => Ok(Some(sqlite_lease(destination, holder, duration))),
            Backend::Postgres(pg) => {
                pg.run(postgres::lease::acquire(
                    pg.pool(),
                    destination,
                    holder,
                    duration,
                ))
                .await
            }
        }
    }

    /// Extends the lease `fence` names by `duration`; `None` when it was taken over.
    pub async fn lease_renew(
        &self,
        fence: &Fence,
        duration: Duration,
    ) -> Result<Option<LeaseInfo>, StoreError> {
        let fence = fence.clone();
        match &self.inner.backend {
            Backend::Sqlite(_) => Ok(Some(sqlite_lease(
                fence.destination,
                fence.holder,
                duration,
            ))),
            Backend::Postgres(pg) => {
                pg.run(postgres::lease::renew(pg.pool(), fence, duration))
                    .await
            }
        }
    }

    /// The live lease on `destination`'s stream, if a replica holds one (none with SQLite).
    pub async fn lease_holder(&self, destination: &str) -> Result<Option<LeaseInfo>, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(_) => Ok(None),
            Backend::Postgres(pg) => {
                let leases = pg.run(postgres::lease::list(pg.pool())).await?;
                Ok(live(leases, destination))
            }
        }
    }

    /// Lets the lease lapse now, so another replica takes the stream at once.
    pub async fn lease_release(&self, fence: &Fence) -> Result<(), StoreError> {
        let fence = fence.clone();
        match &self.inner.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(pg) => pg.run(postgres::lease::release(pg.pool(), fence)).await,
        }
    }
}

impl BlockingStore {
    /// Every stream's lease, live or lapsed (none with SQLite, whose one process holds them
    /// all).
    pub fn leases(&self) -> Result<Vec<LeaseInfo>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Vec::new()),
            Backend::Postgres(pg) => pg.block(postgres::lease::list(pg.pool())),
        }
    }

    /// See [`Store::lease_holder`].
    pub fn lease_holder(&self, destination: &str) -> Result<Option<LeaseInfo>, StoreError> {
        Ok(live(self.leases()?, destination))
    }
}

/// `destination`'s lease when it has not lapsed (by this host's clock: for display only;
/// who may record is decided by the database's).
fn live(leases: Vec<LeaseInfo>, destination: &str) -> Option<LeaseInfo> {
    let now = timestamp::now();
    leases
        .into_iter()
        .find(|l| l.destination == destination && l.expires_at > now)
}
