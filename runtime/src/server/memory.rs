//! The memory request bodies may hold, in total: a semaphore of bytes shared by every
//! connection. A body is held whole from its first byte until its message is committed, so
//! without this 256 connections × `max_body` could be in memory at once. A request whose
//! `Content-Length` does not fit in what is left is answered 503 with `Retry-After` before
//! its body is read; a body without a declared length takes its bytes as they arrive and is
//! answered the same way when they run out.

use std::error::Error as StdError;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What a client is told to wait before retrying when the budget is spent, in seconds.
pub(super) const RETRY_AFTER_SECS: u64 = 5;

/// The bytes of bodies the receiver may hold at once.
pub(super) struct BodyMemory {
    budget: Arc<Semaphore>,
    total: u64,
}

/// Bytes reserved for one body; given back when dropped (after its message is processed).
#[derive(Default)]
pub(super) struct Reserved {
    permit: Option<OwnedSemaphorePermit>,
    bytes: u64,
}

/// Why a body was not read.
#[derive(Debug)]
pub(super) enum BodyError {
    /// Longer than the receiver's `max_body`.
    TooLarge,
    /// The memory budget is spent.
    Spent,
    /// The body could not be read (the client went away, a malformed chunk).
    Failed(Box<dyn StdError + Send + Sync>),
}

impl BodyMemory {
    pub(super) fn new(total: u64) -> Self {
        let permits = usize::try_from(total)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Self {
            budget: Arc::new(Semaphore::new(permits)),
            total,
        }
    }

    /// The whole budget, in bytes.
    pub(super) fn total(&self) -> u64 {
        self.total
    }

    /// Adds `bytes` to `reserved`, or fails without waiting when they are not free.
    fn reserve(&self, reserved: &mut Reserved, bytes: u64) -> Result<(), BodyError> {
        let mut left = bytes;
        while left > 0 {
            let step = u32::try_from(left).unwrap_or(u32::MAX);
            let permit = self
                .budget
                .clone()
                .try_acquire_many_owned(step)
                .map_err(|_| BodyError::Spent)?;
            match &mut reserved.permit {
                Some(held) => held.merge(permit),
                None => reserved.permit = Some(permit),
            }
            reserved.bytes += u64::from(step);
            left -= u64::from(step);
        }
        Ok(())
    }

    /// Reads a whole body of at most `max` bytes within the budget. The bytes stay reserved
    /// as long as the returned [`Reserved`] lives.
    pub(super) async fn read(
        &self,
        mut body: Incoming,
        max: u64,
    ) -> Result<(Bytes, Reserved), BodyError> {
        let mut reserved = Reserved::default();
        let declared = body.size_hint().exact();
        if let Some(declared) = declared {
            if declared > max {
                return Err(BodyError::TooLarge);
            }
            self.reserve(&mut reserved, declared)?;
        }
        // A declared length is allocated once (never grown to twice the body by doubling).
        let capacity = declared.and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
        let mut collected = BytesMut::with_capacity(capacity);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| BodyError::Failed(Box::new(e)))?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            let length = u64::try_from(collected.len() + data.len()).unwrap_or(u64::MAX);
            if length > max {
                return Err(BodyError::TooLarge);
            }
            let missing = length.saturating_sub(reserved.bytes);
            if missing > 0 {
                self.reserve(&mut reserved, missing)?;
            }
            collected.extend_from_slice(&data);
        }
        Ok((collected.freeze(), reserved))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_given_back_when_dropped() {
        let memory = BodyMemory::new(100);
        let mut a = Reserved::default();
        memory.reserve(&mut a, 60).unwrap();
        memory.reserve(&mut a, 20).unwrap();
        assert_eq!(a.bytes, 80);
        let mut b = Reserved::default();
        assert!(matches!(memory.reserve(&mut b, 30), Err(BodyError::Spent)));
        drop(a);
        memory.reserve(&mut b, 100).unwrap();
        assert_eq!(memory.total(), 100);
    }
}
