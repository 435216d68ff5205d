//! Duplicates: the key a committed message is known by, and a per-key lock for messages in
//! flight.
//!
//! A message whose sending application (MSH-3), sending facility (MSH-4) and control ID
//! (MSH-10) were already committed is not processed again: the receiver answers the ACK it
//! stored with the original ([`crate::store::Store::find_duplicate`]). That makes a sender's
//! retry after a lost ACK safe.
//!
//! MSH-3 and MSH-4 are taken whole, as sent (all HD components, escapes undecoded): two
//! senders that share a namespace ID but differ in universal ID are different senders. A
//! difference in how a retry writes them only means it is processed again, never that one
//! message is answered with another's ACK.
//!
//! A key is not the whole story: a sender that reuses a control ID for another message must
//! not get the first one's AA while its new content is dropped. The store keeps a
//! [`digest`] of each message; the same key with another digest is answered AR 205 (duplicate
//! key identifier) and kept as an audit row (`sink::deliver_and_commit`).
//!
//! [`InFlight`] closes the window between "not a duplicate yet" and "committed": a retry that
//! arrives while the original is still being delivered (the sender's timeout was shorter than
//! the sink's) waits for the original, then finds it committed and gets its ACK, instead of
//! delivering the message downstream a second time. The lock is per process; across a crash
//! the store's unique index is the backstop.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use crate::hl7::Message;

/// SHA-256 of the message with its line endings normalised (every segment ended by CR), in
/// lower-case hex: a retry that an engine re-wrote with CRLF is the same message.
///
/// Hashes the bytes [`crate::hl7::with_cr_segments`] would make, line by line, without
/// copying the message: every committed message is digested, PDFs of megabytes included.
pub fn digest(raw: &[u8]) -> String {
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    let mut rest = raw;
    while let Some(lf) = memchr::memchr(b'\n', rest) {
        let (line, after) = (&rest[..lf], &rest[lf + 1..]);
        // CRLF and LF both end a segment with one CR.
        hash.update(line);
        if line.last() != Some(&b'\r') {
            hash.update(b"\r");
        }
        rest = after;
    }
    hash.update(rest);
    if rest.last().is_some_and(|&b| b != b'\r') {
        hash.update(b"\r");
    }
    lower_hex(hash.finish().as_ref())
}

/// Bytes as lower-case hex, two digits each (how digests are stored and compared).
pub(crate) fn lower_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// MSH-3, MSH-4 and MSH-10 of a message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DedupKey {
    /// MSH-3 as sent.
    pub sending_application: String,
    /// MSH-4 as sent.
    pub sending_facility: String,
    /// MSH-10, decoded.
    pub control_id: String,
}

impl DedupKey {
    /// A key from its parts.
    pub fn new(
        sending_application: impl Into<String>,
        sending_facility: impl Into<String>,
        control_id: impl Into<String>,
    ) -> Self {
        Self {
            sending_application: sending_application.into(),
            sending_facility: sending_facility.into(),
            control_id: control_id.into(),
        }
    }

    /// The key of a parsed message. The control ID may be empty; the store refuses to commit
    /// such a message (the receiver rejects it: its ACK could not name it in MSA-2).
    pub fn of(message: &Message<'_>) -> Self {
        let whole = |n: usize| {
            message
                .msh()
                .field(n)
                .map(|f| String::from_utf8_lossy(f.raw()).trim().to_owned())
                .unwrap_or_default()
        };
        Self {
            sending_application: whole(3),
            sending_facility: whole(4),
            control_id: message.control_id().trim().to_owned(),
        }
    }
}

impl fmt::Display for DedupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}|{}|{}",
            self.sending_application, self.sending_facility, self.control_id
        )
    }
}

type Slot = Arc<tokio::sync::Mutex<()>>;

/// Per-key locks for messages being processed. Entries exist only while held or awaited.
#[derive(Debug, Default)]
pub struct InFlight {
    slots: Mutex<HashMap<DedupKey, Slot>>,
}

impl InFlight {
    /// No keys in flight.
    pub fn new() -> Self {
        Self::default()
    }

    /// Waits until no other holder has `key`, then holds it until the guard drops.
    pub async fn acquire(self: &Arc<Self>, key: &DedupKey) -> InFlightGuard {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(slots.entry(key.clone()).or_default())
        };
        let guard = slot.lock_owned().await;
        InFlightGuard {
            owner: Arc::clone(self),
            key: key.clone(),
            guard: Some(guard),
        }
    }

    /// How many keys are held or awaited.
    pub fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Holds a key of an [`InFlight`] until dropped.
#[derive(Debug)]
pub struct InFlightGuard {
    owner: Arc<InFlight>,
    key: DedupKey,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut slots = self.owner.slots.lock().unwrap_or_else(|e| e.into_inner());
        // Release first; then, with the map locked (nobody can clone the slot meanwhile), drop
        // the entry when the map holds the only reference left: no holder, nobody waiting.
        self.guard = None;
        if slots
            .get(&self.key)
            .is_some_and(|slot| Arc::strong_count(slot) == 1)
        {
            slots.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::Just;
    use std::time::Duration;

    #[tokio::test]
    async fn a_second_holder_waits_and_entries_go_away() {
        let inflight = Arc::new(InFlight::new());
        let key = DedupKey::new("APP", "FAC", "1");
        let first = inflight.acquire(&key).await;
        let other = inflight.acquire(&DedupKey::new("APP", "FAC", "2")).await;
        assert_eq!(inflight.len(), 2);
        let waiting = {
            let inflight = Arc::clone(&inflight);
            let key = key.clone();
            tokio::spawn(async move {
                let _g = inflight.acquire(&key).await;
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("second holder got the key")
            .expect("task");
        drop(other);
        assert!(inflight.is_empty());
    }

    proptest::proptest! {
        /// The streamed digest is the digest of `with_cr_segments`' bytes, whatever the line
        /// endings (CR, LF, CRLF, doubled, at the end or not).
        #[test]
        fn digest_hashes_what_with_cr_segments_makes(
            raw in proptest::collection::vec(
                proptest::prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'A'), Just(b'|')],
                0..64,
            )
        ) {
            let copied = ring::digest::digest(
                &ring::digest::SHA256,
                &crate::hl7::with_cr_segments(&raw),
            );
            let hex: String = copied.as_ref().iter().map(|b| format!("{b:02x}")).collect();
            proptest::prop_assert_eq!(digest(&raw), hex);
        }
    }

    #[test]
    fn digests_ignore_line_endings_only() {
        let cr = digest(b"MSH|^~\\&|A|B\rPID|1||9449305552\r");
        assert_eq!(cr.len(), 64);
        assert_eq!(cr, digest(b"MSH|^~\\&|A|B\r\nPID|1||9449305552\r\n"));
        assert_eq!(cr, digest(b"MSH|^~\\&|A|B\nPID|1||9449305552"));
        assert_ne!(cr, digest(b"MSH|^~\\&|A|B\rPID|1||9434765919\r"));
    }

    #[test]
    fn key_of_a_message_takes_msh3_and_msh4_whole() {
        let raw = b"MSH|^~\\&|EPIC^1.2.3^ISO|RX1|GW|EMS|20240101||ADT^A28|MSG 1 |P|2.4\r";
        let message = Message::parse(raw).expect("parses");
        let key = DedupKey::of(&message);
        assert_eq!(key, DedupKey::new("EPIC^1.2.3^ISO", "RX1", "MSG 1"));
        assert_eq!(key.to_string(), "EPIC^1.2.3^ISO|RX1|MSG 1");
    }
}
