//! The MLLP sink: forward the HL7 message to a local engine over MLLP and read its ACK.
//!
//! One TCP connection per message: connect, send the framed message with CR segment ends
//! (whatever line endings the Trust used), read one framed answer, close. The timeout bounds
//! the whole exchange. The answer must be an ACK (an MSA segment with a known code) whose
//! MSA-2 is the MSH-10 sent. Its bytes never reach the Trust: the sink returns the engine's
//! outcome (MSA-1) and errors (ERR, or MSA-3 alone), and the gateway answers its own ACK
//! (its MSH, the message's version, CR separators, its acknowledgement mode). AA/CA commits
//! the message; AE/AR is answered and kept as an audit row. A connection failure, a timeout,
//! a closed connection or an answer that is not such an ACK is a [`SinkError`]: the receiver
//! answers 503 and the sender retries, so the engine may see the message again (engines drop
//! repeats by MSH-10).

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{DeliveryItem, SinkError, SinkKind, SinkOutcome};
use crate::hl7::ack::error_code;
use crate::hl7::{
    AckError, AckReceipt, Message, ParseOptions, Severity, read_ack, with_cr_segments,
};
use crate::mllp::{self, Deframer, END_BLOCK, START_BLOCK};

/// The largest ACK read from the engine.
pub const MAX_ACK: usize = 1 << 20;

/// Forwards messages to a local engine over MLLP.
#[derive(Debug, Clone)]
pub struct MllpSink {
    target: String,
    timeout: Duration,
}

impl MllpSink {
    /// An engine listening at `target` (`host:port`), given `timeout` for each exchange.
    pub fn new(target: impl Into<String>, timeout: Duration) -> Self {
        Self {
            target: target.into(),
            timeout,
        }
    }

    /// The engine's address.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Sends one message and returns the engine's outcome.
    pub async fn deliver(&self, item: &DeliveryItem) -> Result<SinkOutcome, SinkError> {
        if item.raw.iter().any(|&b| b == START_BLOCK || b == END_BLOCK) {
            return Err(SinkError::Unframeable {
                target: self.target.clone(),
            });
        }
        let message = with_cr_segments(&item.raw);
        match tokio::time::timeout(self.timeout, self.exchange(&message)).await {
            Ok(Ok(ack)) => self.check(ack, &item.key.control_id),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(SinkError::Timeout {
                sink: SinkKind::Mllp,
                target: self.target.clone(),
                after: self.timeout,
            }),
        }
    }

    async fn exchange(&self, message: &[u8]) -> Result<Vec<u8>, SinkError> {
        let framing = |source| SinkError::Mllp {
            target: self.target.clone(),
            source,
        };
        let mut stream = TcpStream::connect(self.target.as_str())
            .await
            .map_err(|source| SinkError::Connect {
                sink: SinkKind::Mllp,
                target: self.target.clone(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        mllp::write_message(&mut stream, message)
            .await
            .map_err(|e| framing(e.into()))?;
        let mut deframer = Deframer::new(MAX_ACK);
        let ack = mllp::read_message(&mut stream, &mut deframer)
            .await
            .map_err(framing)?
            .ok_or_else(|| SinkError::NoAck {
                target: self.target.clone(),
            })?;
        let _ = stream.shutdown().await;
        Ok(ack)
    }

    fn check(&self, ack: Vec<u8>, control_id: &str) -> Result<SinkOutcome, SinkError> {
        let bad = |reason: String| SinkError::BadAck {
            target: self.target.clone(),
            reason,
        };
        let receipt = {
            let message = Message::parse_with(&ack, &ParseOptions::lenient())
                .map_err(|e| bad(e.to_string()))?;
            read_ack(&message).map_err(|e| bad(e.to_string()))?
        };
        if receipt.control_id.trim() != control_id {
            return Err(SinkError::AckMismatch {
                target: self.target.clone(),
                expected: control_id.to_owned(),
                found: receipt.control_id,
            });
        }
        Ok(SinkOutcome::Answered {
            code: receipt.code,
            errors: engine_errors(&receipt),
        })
    }
}

/// The engine's errors as the gateway reports them: each ERR with its code (207 when it gave
/// none), location and text (ERR-8, else MSA-3); MSA-3 alone for an AE/AR without ERR.
fn engine_errors(receipt: &AckReceipt) -> Vec<AckError> {
    let text = |own: &str| {
        if own.is_empty() {
            receipt.text.clone()
        } else {
            own.to_owned()
        }
    };
    let mut errors: Vec<AckError> = receipt
        .errors
        .iter()
        .map(|e| AckError {
            code: e.code.unwrap_or(error_code::APPLICATION_INTERNAL_ERROR),
            severity: e.severity.unwrap_or(Severity::Error),
            location: e.location.clone(),
            message: text(&e.message),
        })
        .collect();
    if errors.is_empty() && !receipt.code.is_accept() {
        errors.push(AckError {
            code: error_code::APPLICATION_INTERNAL_ERROR,
            severity: Severity::Error,
            location: None,
            message: text(""),
        });
    }
    errors
}
