//! Delivery claims: at most one replica delivers a given key to a webhook or MLLP sink at a
//! time.
//!
//! Within one process the receiver's in-flight set makes a retry racing its original wait
//! (see [`crate::sink`]). Replicas on one PostgreSQL store share no memory: the same key
//! arriving at two of them at once would be delivered by both before either commits. A
//! claim closes that gap: the receiver takes it after its in-flight set and before looking
//! for a committed duplicate, and releases it after the commit, so the second replica finds
//! the key committed and answers the stored ACK. With SQLite one process owns the store and
//! a claim holds nothing.

use super::{Backend, Store, StoreError, postgres};
use crate::dedup::DedupKey;

/// A key claimed for delivery; release it with [`DeliveryClaim::release`] once the message is
/// committed (or refused). Dropped unreleased (a cancelled request), the claim still ends:
/// its database connection is closed.
pub struct DeliveryClaim {
    held: Option<postgres::claim::Claim>,
}

impl DeliveryClaim {
    /// Ends the claim; another replica waiting on the key goes on.
    pub async fn release(self) {
        if let Some(held) = self.held {
            held.release().await;
        }
    }
}

impl Store {
    /// Claims `key` for delivery, waiting (bounded by the store's connect timeout) while
    /// another replica holds it; [`StoreError::ClaimTimeout`] after that, which the receiver
    /// answers 503 so the sender retries.
    pub async fn claim_delivery(&self, key: &DedupKey) -> Result<DeliveryClaim, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(_) => Ok(DeliveryClaim { held: None }),
            Backend::Postgres(pg) => Ok(DeliveryClaim {
                held: Some(pg.claim(key.clone()).await?),
            }),
        }
    }
}
