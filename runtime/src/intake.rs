//! Intake from EMS: how outbound messages get into the durable queue.
//!
//! Two doors, both on loopback only:
//!
//! - an HTTP API: `POST /outbound` with an HL7 message as the body, or
//!   `POST /outbound/TYPE^TRIGGER` (the `^` may be written `%5E`) with a typed record as
//!   JSON, `{"record": {...}, "header": {...}}` or the record alone, built into HL7 by the
//!   spec's binding ([`GatewaySpec::build_outbound`]); answers `201 {"id", "control_id", "message_type"}` once
//!   the message is on disk (`200` with `"created": false` for an identical repeat);
//!   `GET /outbound` gives the stream's status and `GET /outbound/ID` one message;
//! - an MLLP listener for systems that speak MLLP: each framed message is queued and
//!   answered with a commit ACK (AA, or CA in enhanced mode) once it is on disk; AR when its
//!   type is not declared outbound, AE (207) when it cannot be queued.
//!
//! Both check the message type against the spec's outbound types and MSH-11 against the
//! environment before queuing; the queue itself refuses a message without MSH-10 or a
//! different message reusing one.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::ORIGIN;
use hyper::service::service_fn;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::hl7::ack::error_code;
use crate::hl7::{
    AckCode, AckError, AckMode, AckRequest, Message, ParseOptions, Severity, build_ack, timestamp,
};
use crate::mapping::OutboundHeader;
use crate::queue::{Queue, QueueError};
use crate::sink::inbox::{Reply, error, host_is_local, json, not_allowed};
use crate::spec::GatewaySpec;

/// Largest body the intake accepts.
const MAX_BODY: usize = 32 << 20;

/// What the intake needs to know.
#[derive(Clone)]
pub struct IntakeConfig {
    /// The queue's destination (one per environment).
    pub destination: String,
    /// The gateway: its outbound types (checked before queuing), its HL7 version (MSH-12
    /// of messages built from JSON) and its builders.
    pub spec: Arc<GatewaySpec>,
    /// MSH-11 of this environment.
    pub processing_id: String,
    /// MSH-3 written into messages built from JSON, unless the request names another.
    pub sending_application: String,
    /// MSH-4 default.
    pub sending_facility: String,
}

/// Why the intake could not start.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// Not a loopback address.
    #[error(
        "the intake serves loopback addresses only, not {0}: it has no authentication of its own"
    )]
    NotLoopback(SocketAddr),
    /// Bind failed.
    #[error("intake {addr}: cannot listen: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// The shared state of both doors.
struct Shared {
    queue: Queue,
    config: IntakeConfig,
    next_id: AtomicU64,
    started: u128,
}

impl Shared {
    /// A new MSH-10 for a message built from JSON.
    fn control_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("EMS{:x}-{n}", self.started)
    }

    /// Checks an HL7 message and queues its canonical bytes.
    async fn queue_message(&self, bytes: &[u8]) -> Result<Queued, Refusal> {
        let message = Message::parse_with(bytes, &ParseOptions::lenient())
            .map_err(|e| Refusal::NotHl7(e.to_string()))?;
        let message_type = format!("{}^{}", message.message_code(), message.trigger_event());
        let declared = self.config.spec.outbound_types();
        if !declared.contains(&message_type.as_str()) {
            return Err(Refusal::Undeclared(format!(
                "message type {message_type} is not declared outbound; declared: {}",
                declared.join(", ")
            )));
        }
        let processing_id = message.processing_id();
        if processing_id != self.config.processing_id {
            return Err(Refusal::Invalid(format!(
                "MSH-11 is {processing_id:?}; this environment sends {:?}",
                self.config.processing_id
            )));
        }
        let control_id = message.control_id().into_owned();
        let canonical = message.to_bytes();
        match self
            .queue
            .enqueue(&self.config.destination, canonical)
            .await
        {
            Ok(done) => Ok(Queued {
                id: done.id,
                created: done.created,
                control_id,
                message_type,
            }),
            Err(QueueError::Store(e)) => Err(Refusal::Unavailable(e.to_string())),
            Err(other) => Err(Refusal::Invalid(other.to_string())),
        }
    }
}

struct Queued {
    id: i64,
    created: bool,
    control_id: String,
    message_type: String,
}

enum Refusal {
    NotHl7(String),
    Undeclared(String),
    Invalid(String),
    Unavailable(String),
}

impl Refusal {
    fn reply(&self) -> Reply {
        match self {
            Self::NotHl7(m) => error(StatusCode::BAD_REQUEST, m),
            Self::Undeclared(m) | Self::Invalid(m) => error(StatusCode::UNPROCESSABLE_ENTITY, m),
            Self::Unavailable(m) => error(StatusCode::SERVICE_UNAVAILABLE, m),
        }
    }
}

/// The intake's doors, bound and ready to serve.
pub struct Intake {
    http: TcpListener,
    mllp: Option<TcpListener>,
    mllp_limits: crate::mllp::ListenerLimits,
    shared: Arc<Shared>,
}

impl Intake {
    /// Binds the HTTP API and, when given, the MLLP listener (loopback addresses only).
    pub async fn bind(
        http: SocketAddr,
        mllp: Option<SocketAddr>,
        queue: Queue,
        config: IntakeConfig,
    ) -> Result<Self, IntakeError> {
        for addr in std::iter::once(http).chain(mllp) {
            if !addr.ip().is_loopback() {
                return Err(IntakeError::NotLoopback(addr));
            }
        }
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| IntakeError::Bind { addr, source })
        };
        let http = bind(http).await?;
        let mllp = match mllp {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let started = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Ok(Self {
            http,
            mllp,
            mllp_limits: crate::mllp::ListenerLimits::default(),
            shared: Arc::new(Shared {
                queue,
                config,
                next_id: AtomicU64::new(1),
                started,
            }),
        })
    }

    /// Bounds the MLLP listener's connections (default: [`crate::config::Limits::DEFAULT`]).
    pub fn with_mllp_limits(mut self, limits: crate::mllp::ListenerLimits) -> Self {
        self.mllp_limits = limits;
        self
    }

    /// The HTTP API's address.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.local_addr().ok()
    }

    /// The MLLP listener's address.
    pub fn mllp_addr(&self) -> Option<SocketAddr> {
        self.mllp.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves both doors until `shutdown` completes.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let Self {
            http,
            mllp,
            mllp_limits,
            shared,
        } = self;
        let mut shutdown = std::pin::pin!(shutdown);
        let mllp_shared = shared.clone();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mllp_task = mllp.map(|listener| {
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                loop {
                    // The select ends before anything is awaited: its output must not hold
                    // the watch guard across an await (not Send).
                    let accepted = tokio::select! {
                        accepted = listener.accept() => accepted,
                        _ = stop.wait_for(|s| *s) => break,
                    };
                    match accepted {
                        Ok((stream, peer)) => {
                            let Some(slot) = mllp_limits.admit(peer) else {
                                continue;
                            };
                            let shared = mllp_shared.clone();
                            let idle = mllp_limits.idle_timeout();
                            tokio::spawn(async move {
                                let _slot = slot;
                                serve_mllp(stream, &shared, idle).await;
                            });
                        }
                        Err(e) => {
                            // Out of file descriptors and the like: wait without blocking
                            // the runtime's thread.
                            tracing::warn!("intake MLLP: accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            })
        });
        loop {
            tokio::select! {
                accepted = http.accept() => {
                    let (stream, _) = match accepted {
                        Ok(conn) => conn,
                        Err(e) => {
                            tracing::warn!("intake API: accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let shared = shared.clone();
                    let service = service_fn(move |request| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(handle(&shared, request).await) }
                    });
                    let connection = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::debug!("intake API connection: {e}");
                        }
                    });
                }
                () = &mut shutdown => break,
            }
        }
        let _ = stop_tx.send(true);
        if let Some(task) = mllp_task {
            let _ = task.await;
        }
    }
}

async fn handle(shared: &Shared, request: Request<Incoming>) -> Reply {
    if request.headers().contains_key(ORIGIN) {
        return error(StatusCode::FORBIDDEN, "requests from web pages are refused");
    }
    if !host_is_local(&request) {
        return error(StatusCode::FORBIDDEN, "Host must be a loopback address");
    }
    let path = request.uri().path().replace("%5E", "^").replace("%5e", "^");
    let segments: Vec<String> = path
        .trim_end_matches('/')
        .split('/')
        .skip(1)
        .map(str::to_owned)
        .collect();
    let method = request.method().clone();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match segments.as_slice() {
        ["outbound"] if method == Method::GET => {
            match shared.queue.status(&shared.config.destination).await {
                Ok(status) => json(
                    StatusCode::OK,
                    &serde_json::to_value(&status).unwrap_or_default(),
                ),
                Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
            }
        }
        ["outbound"] if method == Method::POST => {
            let body = match read_body(request).await {
                Ok(b) => b,
                Err(reply) => return reply,
            };
            match shared.queue_message(&body).await {
                Ok(q) => queued_reply(&q),
                Err(refusal) => refusal.reply(),
            }
        }
        ["outbound"] => not_allowed("GET, POST"),
        ["outbound", id] if method == Method::GET && id.parse::<i64>().is_ok() => {
            let id = id.parse::<i64>().unwrap_or(0);
            match shared.queue.show(id).await {
                Ok(Some(detail)) => json(
                    StatusCode::OK,
                    &serde_json::json!({
                        "message": serde_json::to_value(&detail.info).unwrap_or_default(),
                        "raw": String::from_utf8_lossy(&detail.raw),
                    }),
                ),
                Ok(None) => error(StatusCode::NOT_FOUND, "no such queued message"),
                Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
            }
        }
        ["outbound", message_type] if method == Method::POST => {
            let message_type = message_type.to_string();
            let body = match read_body(request).await {
                Ok(b) => b,
                Err(reply) => return reply,
            };
            from_json(shared, &message_type, &body).await
        }
        ["outbound", _] => not_allowed("GET, POST"),
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

async fn read_body(request: Request<Incoming>) -> Result<Bytes, Reply> {
    match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(_) => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the body is too large or was cut off",
        )),
    }
}

fn queued_reply(q: &Queued) -> Reply {
    json(
        if q.created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        &serde_json::json!({
            "id": q.id,
            "created": q.created,
            "control_id": q.control_id,
            "message_type": q.message_type,
        }),
    )
}

/// `POST /outbound/TYPE^TRIGGER` with `{"record": …, "header": {…}}` or the record alone.
async fn from_json(shared: &Shared, message_type: &str, body: &[u8]) -> Reply {
    let value: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("not JSON: {e}")),
    };
    let (record, header) = match value.get("record") {
        Some(record) => (record.clone(), value.get("header").cloned()),
        None => (value, None),
    };
    let text = |key: &str, default: &str| -> String {
        header
            .as_ref()
            .and_then(|h| h.get(key))
            .and_then(|v| v.as_str())
            .unwrap_or(default)
            .to_string()
    };
    let config = &shared.config;
    let control_id = shared.control_id();
    let stamp = timestamp::format_utc(SystemTime::now());
    let (sending_app, sending_fac, receiving_app, receiving_fac) = (
        text("sending_application", &config.sending_application),
        text("sending_facility", &config.sending_facility),
        text("receiving_application", ""),
        text("receiving_facility", ""),
    );
    let header = OutboundHeader {
        sending_application: &sending_app,
        sending_facility: &sending_fac,
        receiving_application: &receiving_app,
        receiving_facility: &receiving_fac,
        timestamp: &stamp,
        control_id: &control_id,
        processing_id: &config.processing_id,
        version: &config.spec.hl7_version,
    };
    let bytes = match config.spec.build_outbound(message_type, &record, &header) {
        Ok(b) => b,
        Err(why) => return error(StatusCode::UNPROCESSABLE_ENTITY, &why.to_string()),
    };
    match shared.queue_message(&bytes).await {
        Ok(q) => queued_reply(&q),
        Err(refusal) => refusal.reply(),
    }
}

/// One MLLP connection: each framed message is queued and answered with a commit ACK.
async fn serve_mllp(mut stream: tokio::net::TcpStream, shared: &Shared, idle: Duration) {
    let mut deframer = crate::mllp::Deframer::new(MAX_BODY);
    loop {
        let read = crate::mllp::read_message_within(&mut stream, &mut deframer, Some(idle));
        let message = match read.await {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!("intake MLLP: {e}");
                return;
            }
        };
        let ack = mllp_answer(shared, &message).await;
        let Some(ack) = ack else { return };
        if crate::mllp::write_message(&mut stream, &ack).await.is_err() {
            return;
        }
    }
}

/// The commit ACK for one MLLP message; `None` when it is not HL7 at all (the connection is
/// closed: there is nothing to acknowledge).
async fn mllp_answer(shared: &Shared, bytes: &[u8]) -> Option<Vec<u8>> {
    let message = Message::parse_with(bytes, &ParseOptions::lenient()).ok()?;
    let mode = AckMode::of(&message);
    let (code, errors) = match shared.queue_message(bytes).await {
        Ok(_) => (AckCode::ApplicationAccept, Vec::new()),
        Err(Refusal::Undeclared(m)) => (
            AckCode::ApplicationReject,
            vec![ack_error(error_code::UNSUPPORTED_MESSAGE_TYPE, m)],
        ),
        Err(Refusal::NotHl7(m) | Refusal::Invalid(m)) => (
            AckCode::ApplicationReject,
            vec![ack_error(error_code::APPLICATION_INTERNAL_ERROR, m)],
        ),
        Err(Refusal::Unavailable(m)) => (
            AckCode::ApplicationError,
            vec![ack_error(error_code::APPLICATION_INTERNAL_ERROR, m)],
        ),
    };
    let control_id = shared.control_id();
    let stamp = timestamp::format_utc(SystemTime::now());
    build_ack(
        &message,
        &AckRequest {
            code: mode.code_for(code),
            control_id: &control_id,
            timestamp: &stamp,
            errors: &errors,
        },
    )
    .ok()
}

fn ack_error(code: u16, message: String) -> AckError {
    AckError {
        code,
        severity: Severity::Error,
        location: None,
        message,
    }
}
