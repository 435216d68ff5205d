//! Sinks: where an accepted message goes before the gateway answers AA.
//!
//! - [`Sink::Inbox`], the default: the record stays in the store and EMS pulls it through
//!   the local HTTP API of [`inbox`] (list after a cursor, fetch, acknowledge). The commit
//!   is the delivery.
//! - [`Sink::Webhook`]: POST the record as JSON to an internal URL ([`WebhookSink`]); accepted
//!   only on a 2xx.
//! - [`Sink::Mllp`]: forward the HL7 to a local engine over MLLP ([`MllpSink`]); the
//!   gateway answers its own ACK built from the engine's MSA-1, MSA-3 and ERR, never the
//!   engine's bytes.
//!
//! # Order: deliver, then commit
//!
//! [`deliver_and_commit`] is the one place the receiver calls for a message it has read and
//! judged. For an accepted message it:
//!
//! 1. holds the message's [key](DedupKey) in an [`InFlight`] set, so a retry racing the
//!    original waits for it; for a webhook or MLLP sink also across replicas on one
//!    PostgreSQL store, by a [`DeliveryClaim`](crate::store::DeliveryClaim) released after
//!    the commit, so the same key at two replicas at once is delivered once;
//! 2. answers the stored ACK if the key is already committed (a duplicate is never
//!    delivered again);
//! 3. delivers to the sink; a failure is a [`DeliveryError`], which the receiver answers
//!    with 503 so the sender retries; nothing was written;
//! 4. commits the message with the ACK it will answer (the gateway's own, for MLLP built
//!    from the engine's answer), durably, and only then returns the ACK to send.
//!
//! A committed key is a duplicate only when the message is the same: the store keeps a
//! [`digest`] of each message. The same key with another digest is
//! answered AR (table 0357 code 205 at MSH-10), kept as an audit row and reported as
//! [`Disposition::Conflict`]; the committed row is never overwritten.
//!
//! Delivering first and committing after never loses a message and never half-commits one:
//! the store holds a committed row only for a message the sink took. The price is on a
//! crash (or a store failure) between a successful delivery and the commit: the sender got
//! no ACK, retries, and the webhook or engine receives the message a second time. Delivery
//! to webhook and MLLP sinks is therefore at least once; the webhook body carries the key
//! (`sending_application`, `sending_facility`, `control_id`) and the engine sees the same
//! MSH-10, so either can drop the repeat. The other order (commit, then deliver) would
//! answer AA for, or lose, a message the sink never took when the delivery failed after the
//! commit. Holding a SQLite write transaction open across the network call instead would
//! block every other commit for up to the sink's timeout, for the same crash window.
//!
//! A message the gateway refuses (AE/AR from its own checks) is not delivered: it is stored
//! as an audit row and answered, unless its key was already committed, in which case the
//! original ACK is answered (the message is not processed again).

pub mod inbox;
mod mllp;
mod webhook;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::dedup::{DedupKey, InFlight, digest};
use crate::hl7::ack::error_code;
use crate::hl7::{AckCode, AckError, Location, Severity};
use crate::store::{CommitResult, InboundRecord, Store, StoreError, StoredAck};

pub use mllp::{MAX_ACK, MllpSink};
pub use webhook::{WebhookConfigError, WebhookSink};

/// Which sink took delivery, as stored with each row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SinkKind {
    /// The store's inbox.
    Inbox,
    /// An HTTP webhook.
    Webhook,
    /// A local engine over MLLP.
    Mllp,
}

impl SinkKind {
    /// `inbox`, `webhook` or `mllp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbox => "inbox",
            Self::Webhook => "webhook",
            Self::Mllp => "mllp",
        }
    }
}

impl fmt::Display for SinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message to deliver: what the sinks need of it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryItem {
    /// MSH-3, MSH-4, MSH-10.
    pub key: DedupKey,
    /// MSH-9 as `ADT^A28`.
    pub message_type: String,
    /// When the request arrived.
    pub received_at: SystemTime,
    /// The message as received (the MLLP sink forwards it with CR segment ends): the
    /// request body's own buffer, shared, never copied (a 5 MiB PDF is held once).
    pub raw: Bytes,
    /// The mapped record (sent by the webhook sink).
    pub record: Option<serde_json::Value>,
}

/// What a sink did with a message it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkOutcome {
    /// Taken; the gateway answers its own AA/CA.
    Accepted,
    /// The downstream engine answered: the gateway builds its own ACK from this outcome, in
    /// its acknowledgement mode (the engine's bytes never reach the sender).
    Answered {
        /// The engine's MSA-1.
        code: AckCode,
        /// The engine's errors (ERR, or MSA-3 alone), as the gateway reports them.
        errors: Vec<AckError>,
    },
}

/// Why a sink did not take a message. The receiver answers 503: the sender retries.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The sink's address could not be reached.
    #[error("{sink} sink {target}: cannot connect: {source}")]
    Connect {
        /// Which sink.
        sink: SinkKind,
        /// Its address.
        target: String,
        /// Why.
        source: std::io::Error,
    },
    /// The sink did not answer in time.
    #[error("{sink} sink {target}: no answer within {after:?}")]
    Timeout {
        /// Which sink.
        sink: SinkKind,
        /// Its address.
        target: String,
        /// The timeout.
        after: Duration,
    },
    /// The webhook answered a status other than 2xx.
    #[error("webhook sink {target}: answered HTTP {status}")]
    Status {
        /// The URL.
        target: String,
        /// The status code.
        status: u16,
    },
    /// The HTTP exchange failed.
    #[error("webhook sink {target}: {message}")]
    Http {
        /// The URL.
        target: String,
        /// What failed.
        message: String,
    },
    /// The MLLP exchange failed (I/O or framing).
    #[error("mllp sink {target}: {source}")]
    Mllp {
        /// The engine's address.
        target: String,
        /// What failed.
        source: crate::mllp::MllpError,
    },
    /// The engine closed the connection without answering.
    #[error("mllp sink {target}: the engine closed the connection without an ACK")]
    NoAck {
        /// The engine's address.
        target: String,
    },
    /// The engine's answer is not an ACK this gateway can read.
    #[error("mllp sink {target}: unreadable ACK: {reason}")]
    BadAck {
        /// The engine's address.
        target: String,
        /// Why.
        reason: String,
    },
    /// The engine acknowledged another message (MSA-2 is not the MSH-10 sent).
    #[error("mllp sink {target}: the ACK names control ID {found:?}, not {expected:?}")]
    AckMismatch {
        /// The engine's address.
        target: String,
        /// The MSH-10 sent.
        expected: String,
        /// MSA-2 received.
        found: String,
    },
    /// The message holds an MLLP framing byte (0x0B or 0x1C) and cannot be forwarded over
    /// MLLP. Retrying will not help.
    #[error("mllp sink {target}: the message contains an MLLP framing byte")]
    Unframeable {
        /// The engine's address.
        target: String,
    },
}

impl SinkError {
    /// False when the same message will fail the same way again (the receiver may answer
    /// AR instead of 503 so the sender's stream does not retry forever).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::Unframeable { .. })
    }
}

/// The configured sink.
#[derive(Debug, Clone)]
pub enum Sink {
    /// Records stay in the store for EMS to pull.
    Inbox,
    /// POST to an internal URL.
    Webhook(WebhookSink),
    /// Forward to a local engine over MLLP.
    Mllp(MllpSink),
}

impl Sink {
    /// Which sink this is.
    pub fn kind(&self) -> SinkKind {
        match self {
            Self::Inbox => SinkKind::Inbox,
            Self::Webhook(_) => SinkKind::Webhook,
            Self::Mllp(_) => SinkKind::Mllp,
        }
    }

    /// Delivers one message. For the inbox this does nothing: the commit that follows is the
    /// delivery.
    pub async fn deliver(&self, item: &DeliveryItem) -> Result<SinkOutcome, SinkError> {
        match self {
            Self::Inbox => Ok(SinkOutcome::Accepted),
            Self::Webhook(webhook) => webhook.deliver(item).await,
            Self::Mllp(mllp) => mllp.deliver(item).await,
        }
    }
}

/// A message the receiver has read, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    /// The message.
    pub item: DeliveryItem,
    /// The TCP peer.
    pub peer_ip: Option<IpAddr>,
    /// The peer certificate's subject.
    pub peer_subject: Option<String>,
}

/// The ACK the gateway itself would answer: AA/CA when its checks accepted the message,
/// AE/AR (CE/CR) when they did not; and how to build another for the same message.
#[derive(Debug, Clone)]
pub struct GatewayAck {
    /// The ACK message.
    pub ack: Vec<u8>,
    /// Its MSA-1.
    pub code: AckCode,
    /// Builds the ACK for an outcome decided later: an engine's answer, a conflicting key.
    pub build: AckBuilder,
}

type BuildFn = dyn Fn(AckCode, &[AckError]) -> Result<(Vec<u8>, AckCode), String> + Send + Sync;

/// The gateway's ACK for the message in hand with another outcome (AA/AE/AR, answered in the
/// environment's acknowledgement mode) and errors; returns the ACK and its MSA-1. The
/// receiver makes one per message; the sinks' results and the duplicate check use it.
#[derive(Clone)]
pub struct AckBuilder(Arc<BuildFn>);

impl AckBuilder {
    /// A builder from a function of the outcome and its errors.
    pub fn new(
        build: impl Fn(AckCode, &[AckError]) -> Result<(Vec<u8>, AckCode), String>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        Self(Arc::new(build))
    }

    /// The ACK for `outcome` with `errors`.
    pub fn build(
        &self,
        outcome: AckCode,
        errors: &[AckError],
    ) -> Result<(Vec<u8>, AckCode), DeliveryError> {
        (self.0)(outcome, errors).map_err(DeliveryError::Ack)
    }
}

impl fmt::Debug for AckBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AckBuilder")
    }
}

/// What became of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Delivered and committed as this row.
    Committed(i64),
    /// Not delivered (refused by the gateway or the engine); kept as this audit row.
    Recorded(i64),
    /// Already committed as this row: not processed again.
    Duplicate(i64),
    /// The key was committed (`original`) for a message with other content: refused (AR
    /// 205) and kept as the audit row `row`.
    Conflict {
        /// The audit row of this message.
        row: i64,
        /// The committed row that holds the key.
        original: i64,
    },
}

/// The ACK to answer (HTTP 200), now that the store holds what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The ACK message.
    pub ack: Vec<u8>,
    /// Its MSA-1.
    pub code: AckCode,
    /// What happened.
    pub disposition: Disposition,
}

/// Why no ACK can be answered. The receiver answers 503: the sender retries.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The sink did not take the message; nothing was committed.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The store failed. If the sink had already taken the message it will see it again on
    /// the sender's retry.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An accepted message without MSH-10 cannot be committed (its key would match every
    /// other such message); the receiver should have refused it. Nothing was delivered.
    #[error("an accepted message needs a non-empty MSH-10")]
    MissingControlId,
    /// The gateway could not build its ACK (a value its charset cannot hold).
    #[error("cannot build the ACK: {0}")]
    Ack(String),
}

/// Delivers an accepted message and commits it, or records a refused one; see the module
/// docs for the order and its trade-offs. Returns the ACK to answer only once the store
/// holds it durably.
pub async fn deliver_and_commit(
    store: &Store,
    sink: &Sink,
    inflight: &Arc<InFlight>,
    inbound: Inbound,
    gateway_ack: GatewayAck,
) -> Result<Answer, DeliveryError> {
    let accepted = gateway_ack.code.is_accept();
    if accepted && inbound.item.key.control_id.is_empty() {
        return Err(DeliveryError::MissingControlId);
    }
    let _held = inflight.acquire(&inbound.item.key).await;
    // Across replicas: another one delivering this key makes this one wait, then find it
    // committed. The inbox's delivery is the commit itself, unique by its key already.
    let claim = if accepted && sink.kind() != SinkKind::Inbox {
        Some(store.claim_delivery(&inbound.item.key).await?)
    } else {
        None
    };
    let answer = deliver_and_commit_held(store, sink, inbound, gateway_ack, accepted).await;
    if let Some(claim) = claim {
        claim.release().await;
    }
    answer
}

/// [`deliver_and_commit`] once the key is held (in this process and, for a webhook or MLLP
/// sink, across replicas).
async fn deliver_and_commit_held(
    store: &Store,
    sink: &Sink,
    inbound: Inbound,
    gateway_ack: GatewayAck,
    accepted: bool,
) -> Result<Answer, DeliveryError> {
    // An accepted message for the inbox is checked inside its commit instead (the group's
    // transaction looks the key up before the insert and answers a committed key as a
    // duplicate, handled below): one store call per message rather than two. A sink that
    // delivers before the commit must know before it delivers.
    let checked_in_commit = accepted && sink.kind() == SinkKind::Inbox;
    if !inbound.item.key.control_id.is_empty() && !checked_in_commit {
        if let Some(original) = store.find_duplicate(&inbound.item.key).await? {
            return answer_duplicate(store, sink, inbound, &gateway_ack.build, original).await;
        }
    }
    let build = gateway_ack.build;
    let (ack, code) = if accepted {
        match sink.deliver(&inbound.item).await? {
            SinkOutcome::Accepted => (gateway_ack.ack, gateway_ack.code),
            SinkOutcome::Answered { code, errors } => build.build(code, &errors)?,
        }
    } else {
        (gateway_ack.ack, gateway_ack.code)
    };
    let delivered = code.is_accept();
    let key = inbound.item.key.clone();
    let record = InboundRecord {
        received_at: inbound.item.received_at,
        peer_ip: inbound.peer_ip,
        peer_subject: inbound.peer_subject,
        key: inbound.item.key,
        message_type: inbound.item.message_type,
        raw: inbound.item.raw,
        record: inbound.item.record,
        ack,
        ack_code: code,
        sink: sink.kind(),
    };
    let ack = record.ack.clone();
    // The message's bytes (a reference, not a copy), for the duplicate check below should
    // the commit fail.
    let raw = record.raw.clone();
    match store.commit_inbound_keeping(record).await {
        Ok((CommitResult::Committed(id), _)) => Ok(Answer {
            ack,
            code,
            disposition: if delivered {
                Disposition::Committed(id)
            } else {
                Disposition::Recorded(id)
            },
        }),
        Ok((CommitResult::Duplicate(original), record)) => {
            // A concurrent original won the key: what is kept of this message.
            let rejected = Inbound {
                item: DeliveryItem {
                    key: record.key,
                    message_type: record.message_type,
                    received_at: record.received_at,
                    raw: record.raw,
                    record: None,
                },
                peer_ip: record.peer_ip,
                peer_subject: record.peer_subject,
            };
            answer_duplicate(store, sink, rejected, &build, original).await
        }
        Err(e) if checked_in_commit => {
            // A retry of a message committed earlier is answered with its original ACK even
            // while the store cannot write (a full disk): the lookup skipped before the
            // commit is made now. Other content would need an AR 205 audit row, which
            // cannot be written now either: the sender retries.
            match store.find_duplicate(&key).await {
                Ok(Some(original)) if original.same_content(&digest(&raw)) => {
                    tracing::info!(
                        key = %key,
                        row = original.id,
                        "duplicate message: answering the original ACK (the store cannot write now: {e})"
                    );
                    Ok(Answer {
                        ack: original.ack,
                        code: original.ack_code,
                        disposition: Disposition::Duplicate(original.id),
                    })
                }
                _ => Err(e.into()),
            }
        }
        Err(e) => {
            if accepted && sink.kind() != SinkKind::Inbox {
                tracing::error!(
                    key = %key,
                    sink = %sink.kind(),
                    "delivered but not committed ({e}): the sender will retry and the sink \
                     will receive the message again"
                );
            }
            Err(e.into())
        }
    }
}

/// The answer to a message whose key is already committed: the original ACK when the content
/// is the same (a retry), else AR 205 kept as an audit row (a control ID reused for another
/// message; the committed row stays as it is).
async fn answer_duplicate(
    store: &Store,
    sink: &Sink,
    inbound: Inbound,
    build: &AckBuilder,
    original: StoredAck,
) -> Result<Answer, DeliveryError> {
    if original.same_content(&digest(&inbound.item.raw)) {
        tracing::info!(
            key = %inbound.item.key,
            row = original.id,
            "duplicate message: answering the original ACK"
        );
        return Ok(Answer {
            ack: original.ack,
            code: original.ack_code,
            disposition: Disposition::Duplicate(original.id),
        });
    }
    let received = crate::store::timestamp::format(original.received_at);
    let error = AckError {
        code: error_code::DUPLICATE_KEY_IDENTIFIER,
        severity: Severity::Error,
        location: Some(Location {
            segment: "MSH".into(),
            occurrence: 1,
            field: 10,
            repetition: 1,
            component: None,
            subcomponent: None,
        }),
        message: format!(
            "control ID {:?} of this sender was already used for a message with other content \
             (received {received}); this message is not processed: send it with a new control ID",
            inbound.item.key.control_id
        ),
    };
    let (ack, code) = build.build(AckCode::ApplicationReject, &[error])?;
    tracing::warn!(
        key = %inbound.item.key,
        original = original.id,
        "control ID reused for other content: answering AR 205"
    );
    let key = inbound.item.key;
    let row = store
        .commit_inbound(InboundRecord {
            received_at: inbound.item.received_at,
            peer_ip: inbound.peer_ip,
            peer_subject: inbound.peer_subject,
            key,
            message_type: inbound.item.message_type,
            raw: inbound.item.raw,
            record: None,
            ack: ack.clone(),
            ack_code: code,
            sink: sink.kind(),
        })
        .await?;
    let row = match row {
        CommitResult::Committed(id) => id,
        // An AR row is never committed as the key's holder; kept for completeness.
        CommitResult::Duplicate(stored) => stored.id,
    };
    Ok(Answer {
        ack,
        code,
        disposition: Disposition::Conflict {
            row,
            original: original.id,
        },
    })
}
