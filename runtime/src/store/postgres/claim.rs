//! Delivery claims: while one replica delivers a key to a webhook or MLLP sink and commits
//! it, another replica receiving the same key waits, then finds it committed and answers
//! the stored ACK instead of delivering it a second time.
//!
//! A claim is a session-level advisory lock on the two-key form
//! `(locks::DELIVERY, hashtext(key))`, held on a connection of a pool of its own (a claim
//! holder then commits through the main pool; sharing one pool, claims could take every
//! connection and wait for the commits they hold up). Released by `pg_advisory_unlock`, or,
//! when that is not possible (the claim was dropped mid-delivery, the connection broke), by
//! closing the connection: the server releases a session's locks when it ends, also when a
//! replica dies. Two keys hashing alike only wait for each other.

use std::time::{Duration, Instant};

use deadpool_postgres::{Object, Pool};

use super::locks;
use crate::dedup::DedupKey;
use crate::store::StoreError;

/// How often a waiting claim asks again.
const RETRY: Duration = Duration::from_millis(20);

/// The text the lock key is hashed from: the three parts, unambiguously joined.
fn key_text(key: &DedupKey) -> String {
    format!(
        "{}\u{1f}{}\u{1f}{}",
        key.sending_application, key.sending_facility, key.control_id
    )
}

/// A claim held: released by [`Claim::release`], or by closing its connection when dropped
/// unreleased.
pub(crate) struct Claim {
    client: Option<Object>,
    key: DedupKey,
    /// The backend's runtime, where the connection's I/O runs.
    handle: tokio::runtime::Handle,
}

impl Claim {
    /// Releases the claim and returns the connection to its pool; a connection that cannot
    /// release it is closed instead (which releases it).
    pub(crate) async fn release(mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let key = self.key.clone();
        let _ = self.handle.spawn(unlock(client, key)).await;
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            close(client);
        }
    }
}

/// Takes `key`'s claim, waiting up to `wait` while another replica holds it. Runs on the
/// backend's runtime (`handle`).
pub(crate) async fn claim(
    pool: Pool,
    key: DedupKey,
    wait: Duration,
    handle: tokio::runtime::Handle,
) -> Result<Claim, StoreError> {
    let client = pool.get().await?;
    let text = key_text(&key);
    let stmt = client
        .prepare_cached("SELECT pg_try_advisory_lock($1, hashtext($2))")
        .await?;
    let deadline = Instant::now() + wait;
    loop {
        let taken: bool = client
            .query_one(&stmt, &[&locks::DELIVERY, &text])
            .await?
            .try_get(0)?;
        if taken {
            return Ok(Claim {
                client: Some(client),
                key,
                handle,
            });
        }
        if Instant::now() >= deadline {
            return Err(StoreError::ClaimTimeout {
                key: key.to_string(),
                waited: wait,
            });
        }
        tokio::time::sleep(RETRY).await;
    }
}

async fn unlock(client: Object, key: DedupKey) {
    let text = key_text(&key);
    let released = client
        .query_one(
            "SELECT pg_advisory_unlock($1, hashtext($2))",
            &[&locks::DELIVERY, &text],
        )
        .await
        .and_then(|row| row.try_get::<_, bool>(0));
    if !matches!(released, Ok(true)) {
        tracing::warn!(key = %key, "store: could not release a delivery claim; closing its connection");
        close(client);
    }
}

/// Closes the claim's connection instead of pooling it: the server then releases the lock.
fn close(client: Object) {
    drop(Object::take(client));
}
