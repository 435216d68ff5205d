//! The receiving gateway's processing: what happens to one POSTed message between the
//! transport ([`crate::server`]) and the store ([`crate::store`]).
//!
//! Parse (lenient line endings, the request's charset when MSH-18 is empty) → reject what
//! cannot be acknowledged (400 when MSH is unreadable; AR for an empty or over-long MSH-10)
//! → decide with [`crate::inbound::evaluate`] and the generated mapping → build the ACK in the
//! message's own version and charset, in the environment's acknowledgement mode → hand it to
//! [`crate::sink::deliver_and_commit`], which answers an already committed duplicate with its
//! original ACK (or AR 205 when the key comes back with other content), delivers, commits
//! durably, and only then lets the AA go out. A store or sink failure answers 503 so the
//! sender retries; nothing is half-committed.
//!
//! A sender's values reach metrics and logs only when sane: a type not declared inbound is
//! counted as `undeclared` and logged cut to 40 characters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use crate::config::Environment;
use crate::dedup::{DedupKey, InFlight};
use crate::hl7::ack::error_code;
use crate::hl7::{
    AckCode, AckError, AckMode, AckRequest, Charset, LineEndings, Location, Message, ParseOptions,
    Severity, build_ack, timestamp,
};
use crate::inbound::{MAX_CONTROL_ID_CHARS, UNDECLARED, evaluate, shown};
use crate::metrics::Metrics;
use crate::server::{Ack, Handler, Hl7Request, Hl7Response};
use crate::sink::{
    AckBuilder, DeliveryError, DeliveryItem, Disposition, GatewayAck, Inbound, Sink,
    deliver_and_commit,
};
use crate::spec::GatewaySpec;
use crate::store::Store;

/// One environment's receiving gateway.
pub struct Gateway {
    spec: Arc<GatewaySpec>,
    environment: Environment,
    store: Store,
    sink: Sink,
    inflight: Arc<InFlight>,
    metrics: Arc<Metrics>,
    ack_prefix: String,
    next_ack: AtomicU64,
}

impl Gateway {
    /// A gateway for `environment` (the spec's or one derived from it), accepting the
    /// spec's inbound types mapped by its bindings.
    pub fn new(
        spec: Arc<GatewaySpec>,
        environment: Environment,
        store: Store,
        sink: Sink,
        metrics: Arc<Metrics>,
    ) -> Self {
        let started = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Self {
            spec,
            environment,
            store,
            sink,
            inflight: Arc::new(InFlight::new()),
            metrics,
            ack_prefix: format!("{started:x}"),
            next_ack: AtomicU64::new(1),
        }
    }

    /// A new MSH-10 for an ACK: unique per gateway process and ordered.
    fn next_control_id(&self) -> String {
        let n = self.next_ack.fetch_add(1, Ordering::Relaxed);
        format!("ACK{}-{n}", self.ack_prefix)
    }

    /// Decides about one message body; see the module documentation.
    pub async fn process(&self, request: Hl7Request) -> Hl7Response {
        let received_at = SystemTime::now();
        let options = ParseOptions {
            line_endings: LineEndings::Lenient,
            default_charset: request.charset.unwrap_or(Charset::Utf8),
        };
        let body: &[u8] = &request.body;
        let (message, unreadable) = match Message::parse_with(body, &options) {
            Ok(m) => (m, None),
            Err(whole) => match header_only(body, &options) {
                // MSH reads, the rest does not: answer AR so the sender stops and a person
                // looks, rather than 400, which engines retry forever.
                Some(m) => (m, Some(whole.to_string())),
                None => return Hl7Response::NotHl7(whole.to_string()),
            },
        };
        let policy = self.spec.policy_for(&self.environment);
        let mode = self.environment.acknowledgement.mode_for(&message);
        let mut key = DedupKey::of(&message);
        // An over-long MSH-10 never reaches the store or the logs, readable message or not:
        // the message is kept without a key.
        let over_long = key.control_id.chars().count() > MAX_CONTROL_ID_CHARS;
        if over_long {
            key.control_id.clear();
        }
        let sent_type = format!("{}^{}", message.message_code(), message.trigger_event());
        let label = policy.metric_label(&sent_type).to_owned();
        if label == UNDECLARED {
            tracing::info!(
                request = %request.request_id,
                message_type = %shown(&sent_type),
                "message type not declared inbound"
            );
        }
        let refused = |code: u16, location: Option<Location>, message: String| {
            (
                AckCode::ApplicationReject,
                vec![AckError {
                    code,
                    severity: Severity::Error,
                    location,
                    message,
                }],
                None,
                shown(&sent_type),
            )
        };
        let (outcome, errors, record, message_type) = if let Some(why) = unreadable {
            refused(
                error_code::DATA_TYPE_ERROR,
                None,
                format!("the message cannot be read: {why}"),
            )
        } else if over_long {
            refused(
                error_code::DATA_TYPE_ERROR,
                Some(header_location(10)),
                format!(
                    "MSH-10 (message control ID) is longer than {MAX_CONTROL_ID_CHARS} characters"
                ),
            )
        } else if key.control_id.is_empty() {
            refused(
                error_code::REQUIRED_FIELD_MISSING,
                Some(header_location(10)),
                "MSH-10 (message control ID) is empty: the message cannot be acknowledged or deduplicated".into(),
            )
        } else {
            let outcome = evaluate(&message, &policy, |message_type, message| {
                self.spec.map_inbound(message_type, message)
            });
            (
                outcome.ack_code(),
                outcome.ack_errors(),
                outcome.record,
                outcome.message_type,
            )
        };
        let code = mode.code_for(outcome);
        let stamp = timestamp::format_utc(received_at);
        let control_id = self.next_control_id();
        let ack = match build_ack(
            &message,
            &AckRequest {
                code,
                control_id: &control_id,
                timestamp: &stamp,
                errors: &errors,
            },
        ) {
            Ok(ack) => ack,
            Err(e) => {
                // Only a value the message's charset cannot hold gets here.
                return Hl7Response::Unavailable(format!("cannot build the ACK: {e}"));
            }
        };
        let build = ack_builder(&request, mode, control_id, stamp);
        let charset = message.charset();
        let inbound = Inbound {
            item: DeliveryItem {
                key,
                message_type: message_type.clone(),
                received_at,
                raw: request.body.clone(),
                record,
            },
            peer_ip: Some(request.peer_ip),
            peer_subject: Some(request.peer_subject.clone()),
        };
        match deliver_and_commit(
            &self.store,
            &self.sink,
            &self.inflight,
            inbound,
            GatewayAck { ack, code, build },
        )
        .await
        {
            Ok(answer) => {
                if matches!(answer.disposition, Disposition::Conflict { .. }) {
                    self.metrics.duplicate_conflict();
                }
                Hl7Response::Ack(Ack {
                    body: answer.ack,
                    charset,
                    message_type: label,
                    code: answer.code.as_str().to_string(),
                })
            }
            Err(e) => {
                // `hl7gw_store_errors_total` counts the store's failures only: a sink that
                // refused the message (webhook down) is not a store problem.
                if matches!(e, DeliveryError::Store(_)) {
                    self.metrics.store_error();
                }
                tracing::warn!(request = %request.request_id, error = %e, "message not committed; answering 503");
                Hl7Response::Unavailable(
                    "the gateway cannot commit the message now; retry later".into(),
                )
            }
        }
    }
}

/// Builds this request's ACK for an outcome decided after the gateway's own checks (a local
/// engine's answer, a reused control ID), in the same mode and charset, with the MSH-10 and
/// MSH-7 of the ACK it replaces.
fn ack_builder(
    request: &Hl7Request,
    mode: AckMode,
    control_id: String,
    stamp: String,
) -> AckBuilder {
    let body = request.body.clone();
    let options = ParseOptions {
        line_endings: LineEndings::Lenient,
        default_charset: request.charset.unwrap_or(Charset::Utf8),
    };
    AckBuilder::new(move |outcome, errors| {
        let message = Message::parse_with(&body, &options)
            .or_else(|e| header_only(&body, &options).ok_or(e))
            .map_err(|e| e.to_string())?;
        let code = mode.code_for(outcome);
        let ack = build_ack(
            &message,
            &AckRequest {
                code,
                control_id: &control_id,
                timestamp: &stamp,
                errors,
            },
        )
        .map_err(|e| e.to_string())?;
        Ok((ack, code))
    })
}

impl Handler for Gateway {
    fn handle(&self, request: Hl7Request) -> impl Future<Output = Hl7Response> + Send {
        self.process(request)
    }
}

/// The message's first segment alone, when it is a readable MSH: enough to acknowledge.
fn header_only<'a>(body: &'a [u8], options: &ParseOptions) -> Option<Message<'a>> {
    let start = usize::from(body.starts_with(b"\xEF\xBB\xBF")) * 3;
    let end = body[start..]
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .map_or(body.len(), |i| start + i);
    Message::parse_with(&body[..end], options).ok()
}

fn header_location(field: usize) -> Location {
    Location {
        segment: "MSH".into(),
        occurrence: 1,
        field,
        repetition: 1,
        component: None,
        subcomponent: None,
    }
}
