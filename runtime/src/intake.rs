//! Intake from EMS: how outbound messages get into the durable queue.
//!
//! Two doors, for the clients the environment's [`EmsAuth`] admits: mutual TLS with EMS's
//! client certificate and a subject allowlist (HTTPS, and MLLP over TLS; any address), or
//! plain HTTP and MLLP on loopback only ([`crate::ems`]):
//!
//! - an HTTP API: `POST /outbound` with an HL7 message as the body, or
//!   `POST /outbound/TYPE^TRIGGER` (the `^` may be written `%5E`) with a typed record as
//!   JSON, `{"record": {...}, "header": {...}}` (no other key; the header only MSH-3 to
//!   MSH-6) or the record alone, built into HL7 by the spec's binding
//!   ([`GatewaySpec::build_outbound`]); answers `201 {"id", "created", "control_id",
//!   "message_type"}` once the message is on disk (`200` with `"created": false` for a
//!   repeat: the same HL7 bytes, or the same request under the same `Idempotency-Key`; the
//!   key with a different request is `409`); `GET /outbound` gives the stream's status and
//!   `GET /outbound/ID` one message;
//! - an MLLP listener for systems that speak MLLP: each framed message is queued and
//!   answered with a commit ACK (AA, or CA in enhanced mode) once it is on disk; AR when its
//!   type is not declared outbound, AE with one ERR per mapping error when it does not map
//!   to its record, AE (207) when it cannot be queued.
//!
//! Both check, before queuing, the message type against the spec's outbound types, MSH-11
//! against the environment, and the message against its outbound record, read as the
//! Trust's end will read it (a code not in the customer's table, a missing required field,
//! a bad NHS number: `422` with every error as `{code, location, message}`, the shape the
//! receiving side reports); the queue itself refuses a message without MSH-10 or a
//! different message reusing one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{CONNECTION, HeaderMap, HeaderValue, ORIGIN};
use hyper::{Method, Request, StatusCode};
use tokio::net::TcpListener;

use crate::config::SendHeader;
use crate::ems::{EmsAuth, EmsStream, NotLoopback};
use crate::hl7::ack::error_code;
use crate::hl7::{
    AckCode, AckError, AckRequest, Message, ParseOptions, Severity, build_ack, timestamp,
};
use crate::inbound::OutcomeError;
use crate::listeners::Role;
use crate::mapping::{MappingError, OutboundHeader};
use crate::queue::{IdempotencyKey, Queue, QueueError};
use crate::sink::inbox::{Reply, error, host_is_local, json, not_allowed};
use crate::spec::{GatewaySpec, OutboundError};

/// Largest body the intake accepts.
const MAX_BODY: usize = 32 << 20;

/// Time for a request's body once its headers are in, as the receiver's default
/// (`408 Request Timeout` past it).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(60);

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
    /// MSH-3 to MSH-6 written into messages built from JSON, unless the request names
    /// others: the environment's send settings.
    pub header: SendHeader,
    /// Which ACK codes the MLLP listener answers with (the environment's).
    pub acknowledgement: crate::config::Acknowledgement,
    /// The MSH-12 versions a message handed over may carry: the environment's
    /// (`hl7_version`, then `accept_versions`), as on the receiving side; empty accepts any.
    pub versions: Vec<String>,
}

/// Why the intake could not start.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// Plain loopback asked to bind another address.
    #[error("{0}")]
    NotLoopback(#[from] NotLoopback),
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
    /// In the host: the other customers' receiving facilities (MSH-6.1) with their codes.
    /// A message naming one is refused here, not queued for the wrong Trust.
    others: std::sync::OnceLock<Vec<(String, String)>>,
}

impl Shared {
    /// A new MSH-10 for a message built from JSON.
    fn control_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("EMS{:x}-{n}", self.started)
    }

    /// Checks an HL7 message (its type, its MSH-11, and that it maps to the outbound record
    /// of its type, as the receiving end will read it) and queues its canonical bytes, under
    /// the request's `Idempotency-Key` when it has one.
    async fn queue_message(
        &self,
        bytes: &[u8],
        key: Option<IdempotencyKey>,
    ) -> Result<Queued, Refusal> {
        let message = Message::parse_with(bytes, &ParseOptions::lenient())
            .map_err(|e| Refusal::NotHl7(e.to_string()))?;
        if let Some(others) = self.others.get() {
            let facility = message.header_text(6, 1);
            if let Some((_, code)) = others.iter().find(|(f, _)| **f == *facility) {
                return Err(Refusal::Invalid(format!(
                    "MSH-6 {:?} is customer {code}'s receiving facility on this host: send it to {code}'s intake",
                    crate::inbound::shown(&facility)
                )));
            }
        }
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
        let version = message.header_text(12, 1);
        let versions = &self.config.versions;
        if !versions.is_empty() && !versions.iter().any(|v| v == version.trim()) {
            // The Trust's engine would answer AR 203; refuse it before it is queued.
            let shown: String = version.chars().take(20).collect();
            return Err(Refusal::Invalid(format!(
                "MSH-12 is {shown:?}; this interface exchanges HL7 {}",
                versions.join(", ")
            )));
        }
        if let Err(errors) = self.config.spec.map_outbound(&message_type, &message) {
            return Err(Refusal::Mapping(errors));
        }
        let control_id = message.control_id().into_owned();
        let canonical = message.to_bytes();
        let destination = &self.config.destination;
        let enqueued = match key {
            Some(key) => {
                self.queue
                    .enqueue_idempotent(destination, canonical, key)
                    .await
            }
            None => self.queue.enqueue(destination, canonical).await,
        };
        let done = match enqueued {
            Ok(done) => done,
            Err(QueueError::Store(e)) => return Err(Refusal::Unavailable(e.to_string())),
            Err(e @ QueueError::IdempotencyConflict { .. }) => {
                return Err(Refusal::Conflict(e.to_string()));
            }
            Err(other) => return Err(Refusal::Invalid(other.to_string())),
        };
        if done.created {
            return Ok(Queued {
                id: done.id,
                created: true,
                control_id,
                message_type,
            });
        }
        // A repeat: answer with the earlier entry as it was queued (a record sent again as
        // JSON was built with a new MSH-10 that was not used).
        match self.queue.show(done.id).await {
            Ok(Some(earlier)) => Ok(Queued {
                id: done.id,
                created: false,
                control_id: earlier.info.control_id,
                message_type: earlier.info.message_type,
            }),
            Ok(None) => Err(Refusal::Unavailable(format!(
                "queued message {} is no longer in the store",
                done.id
            ))),
            Err(e) => Err(Refusal::Unavailable(e.to_string())),
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
    /// 400: the body is not HL7 (or the request is malformed).
    NotHl7(String),
    /// 422: the type is not declared outbound.
    Undeclared(String),
    /// 422: the message cannot be queued as it is.
    Invalid(String),
    /// 422: the message does not map to its outbound record (codes 101, 102, 103).
    Mapping(Vec<MappingError>),
    /// 409: the `Idempotency-Key` queued a different request.
    Conflict(String),
    /// 503: the store failed.
    Unavailable(String),
}

impl Refusal {
    fn reply(&self) -> Reply {
        let reply = match self {
            Self::NotHl7(m) => error(StatusCode::BAD_REQUEST, m),
            Self::Undeclared(m) | Self::Invalid(m) => error(StatusCode::UNPROCESSABLE_ENTITY, m),
            Self::Mapping(errors) => mapping_errors(errors),
            Self::Conflict(m) => error(StatusCode::CONFLICT, m),
            Self::Unavailable(m) => error(StatusCode::SERVICE_UNAVAILABLE, m),
        };
        because(reply, self.reason())
    }

    /// Why, as the log line says it: a fixed word, never the message's content (the texts
    /// above may quote values of the message; they go to EMS only).
    fn reason(&self) -> &'static str {
        match self {
            Self::NotHl7(_) => "not_hl7",
            Self::Undeclared(_) => "type_not_declared",
            Self::Invalid(_) => "invalid",
            Self::Mapping(_) => "does_not_map",
            Self::Conflict(_) => "idempotency_conflict",
            Self::Unavailable(_) => "store_unavailable",
        }
    }
}

/// Why a request was refused, carried on the response (never sent) for the log line of
/// [`logged`].
#[derive(Debug, Clone, Copy)]
struct Reason(&'static str);

/// `reply` marked with the reason it is logged with.
fn because(mut reply: Reply, reason: &'static str) -> Reply {
    reply.extensions_mut().insert(Reason(reason));
    reply
}

/// An error answer with the reason it is logged with.
fn refused(status: StatusCode, reason: &'static str, message: &str) -> Reply {
    because(error(status, message), reason)
}

/// Logs a refused request (4xx or 5xx) as the receiver logs its refusals: peer, method,
/// path, status and a fixed reason; no body, no message content.
fn logged(reply: Reply, peer: SocketAddr, method: &Method, path: &str) -> Reply {
    let status = reply.status();
    if status.is_client_error() || status.is_server_error() {
        let reason = reply
            .extensions()
            .get::<Reason>()
            .map_or_else(|| status.canonical_reason().unwrap_or("refused"), |r| r.0);
        let path = crate::inbound::shown(path);
        if status.is_server_error() {
            tracing::warn!(peer = %peer, method = %method, path, status = status.as_u16(), reason, "intake API: request refused");
        } else {
            tracing::info!(peer = %peer, method = %method, path, status = status.as_u16(), reason, "intake API: request refused");
        }
    }
    reply
}

/// 422 with every mapping error in the shape the receiving side reports them (`code`,
/// `location`, `message`, as in `gw-<code> map` and `hl7gw test --format json`).
fn mapping_errors(errors: &[MappingError]) -> Reply {
    let list: Vec<OutcomeError> = errors.iter().map(OutcomeError::from).collect();
    let summary = match errors {
        [one] => format!("the message does not map to its outbound record: {one}"),
        _ => format!(
            "the message does not map to its outbound record: {} errors",
            errors.len()
        ),
    };
    json(
        StatusCode::UNPROCESSABLE_ENTITY,
        &serde_json::json!({ "error": summary, "errors": list }),
    )
}

/// The intake's doors, bound and ready to serve.
pub struct Intake {
    http: TcpListener,
    mllp: Option<TcpListener>,
    mllp_limits: crate::mllp::ListenerLimits,
    api: IntakeApi,
    auth: EmsAuth,
}

/// One environment's intake without listeners of its own: [`Intake`] serves it on the
/// environment's ports, and the host ([`crate::host`]) under `/<customer code>` on its
/// shared HTTP port and, routed by MSH-6, on its shared MLLP port. Cheap to clone.
#[derive(Clone)]
pub struct IntakeApi {
    shared: Arc<Shared>,
    rules: HttpRules,
}

impl std::fmt::Debug for IntakeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntakeApi")
            .field("destination", &self.shared.config.destination)
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl IntakeApi {
    /// The intake of `queue` under `config`, for the clients `auth` admits.
    pub fn new(queue: Queue, config: IntakeConfig, auth: &EmsAuth) -> Self {
        let started = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Self {
            shared: Arc::new(Shared {
                queue,
                config,
                next_id: AtomicU64::new(1),
                started,
                others: std::sync::OnceLock::new(),
            }),
            rules: HttpRules {
                local_host_only: !auth.is_mutual_tls(),
                body_timeout: BODY_TIMEOUT,
            },
        }
    }

    /// Sets the time for a request's body (default [`BODY_TIMEOUT`]).
    pub fn with_body_timeout(mut self, timeout: Duration) -> Self {
        self.rules.body_timeout = timeout;
        self
    }

    /// The answer to an HTTP `request` from `peer`, read as if its path were `path` (the
    /// host strips the customer's segment first); refusals are logged.
    pub async fn answer(&self, request: Request<Incoming>, path: &str, peer: SocketAddr) -> Reply {
        let method = request.method().clone();
        let reply = handle(&self.shared, request, path, self.rules).await;
        logged(reply, peer, &method, path)
    }

    /// Refuses from now on any message whose MSH-6.1 is one of `others`' receiving
    /// facilities (facility, customer code): the host sets the other customers' once, so a
    /// message for another Trust posted under this customer's path is not queued here.
    pub fn refuse_facilities_of(&self, others: Vec<(String, String)>) {
        let _ = self.shared.others.set(others);
    }

    /// The commit ACK for one MLLP message from `peer`: AA (CA) once queued, AR or AE with
    /// the reason otherwise; `None` when it is not HL7 (the connection is closed).
    pub async fn answer_mllp(&self, peer: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
        mllp_answer(&self.shared, peer, bytes).await
    }
}

impl Intake {
    /// Binds the HTTP API and, when given, the MLLP listener, plain (loopback addresses
    /// only).
    pub async fn bind(
        http: SocketAddr,
        mllp: Option<SocketAddr>,
        queue: Queue,
        config: IntakeConfig,
    ) -> Result<Self, IntakeError> {
        Self::bind_with(http, mllp, queue, config, EmsAuth::plain_loopback()).await
    }

    /// Binds both doors for the clients `auth` admits (loopback only without mutual TLS).
    pub async fn bind_with(
        http: SocketAddr,
        mllp: Option<SocketAddr>,
        queue: Queue,
        config: IntakeConfig,
        auth: EmsAuth,
    ) -> Result<Self, IntakeError> {
        auth.check_bind("the intake API", http)?;
        if let Some(addr) = mllp {
            auth.check_bind("the intake MLLP listener", addr)?;
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
        Ok(Self {
            http,
            mllp,
            mllp_limits: crate::mllp::ListenerLimits::default(),
            api: IntakeApi::new(queue, config, &auth),
            auth,
        })
    }

    /// Bounds the MLLP listener's connections (default: [`crate::config::Limits::DEFAULT`]).
    pub fn with_mllp_limits(mut self, limits: crate::mllp::ListenerLimits) -> Self {
        self.mllp_limits = limits;
        self
    }

    /// Sets the time for a request's body (default [`BODY_TIMEOUT`]).
    pub fn with_body_timeout(mut self, timeout: Duration) -> Self {
        self.api = self.api.with_body_timeout(timeout);
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
            api,
            auth,
        } = self;
        // Turns true on shutdown: both doors stop accepting and TLS handshakes still under
        // way are dropped; HTTP requests in progress get up to 5 s.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mllp = {
            let (api, stop) = (api.clone(), stop_rx.clone());
            let door = auth.door(Role::IntakeMllp);
            async move {
                if let Some(listener) = mllp {
                    crate::ems_listener::serve_mllp(
                        listener,
                        door,
                        mllp_limits,
                        stop,
                        move |message, peer| {
                            let api = api.clone();
                            async move { api.answer_mllp(peer, &message).await }
                        },
                    )
                    .await;
                }
            }
        };
        let http = crate::ems_listener::serve_http(
            http,
            auth.door(Role::Intake),
            stop_rx,
            move |request: Request<Incoming>, peer| {
                let api = api.clone();
                async move {
                    let path = request.uri().path().to_owned();
                    api.answer(request, &path, peer).await
                }
            },
        );
        tokio::join!(http, mllp, async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
    }
}

/// How the HTTP API treats a request.
#[derive(Debug, Clone, Copy)]
struct HttpRules {
    /// Plain loopback: the `Host` must be a loopback address (DNS rebinding).
    local_host_only: bool,
    /// Time to receive a body once its headers are in.
    body_timeout: Duration,
}

async fn handle(
    shared: &Shared,
    request: Request<Incoming>,
    path: &str,
    rules: HttpRules,
) -> Reply {
    if request.headers().contains_key(ORIGIN) {
        return refused(
            StatusCode::FORBIDDEN,
            "origin",
            "requests from web pages are refused",
        );
    }
    if rules.local_host_only && !host_is_local(&request) {
        return refused(
            StatusCode::FORBIDDEN,
            "host",
            "Host must be a loopback address",
        );
    }
    let path = path.replace("%5E", "^").replace("%5e", "^");
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
                // The store is away: what this replica's sequencer found still shows.
                Err(e) => {
                    let stall = shared.queue.stalled(&shared.config.destination);
                    let detail = match stall {
                        Some(stall) => format!(
                            "{e}; the stream is stalled since {}: {}",
                            crate::store::timestamp::format(stall.since),
                            stall.reason
                        ),
                        None => e.to_string(),
                    };
                    refused(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "store_unavailable",
                        &detail,
                    )
                }
            }
        }
        ["outbound"] if method == Method::POST => {
            let headers = request.headers().clone();
            let body = match read_body(request, rules.body_timeout).await {
                Ok(b) => b,
                Err(reply) => return reply,
            };
            let key = match idempotency_key(&headers, &path, &body) {
                Ok(key) => key,
                Err(reply) => return *reply,
            };
            match shared.queue_message(&body, key).await {
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
                Ok(None) => refused(
                    StatusCode::NOT_FOUND,
                    "no_such_message",
                    "no such queued message",
                ),
                Err(e) => refused(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    &e.to_string(),
                ),
            }
        }
        ["outbound", message_type] if method == Method::POST => {
            let message_type = message_type.to_string();
            let headers = request.headers().clone();
            let body = match read_body(request, rules.body_timeout).await {
                Ok(b) => b,
                Err(reply) => return reply,
            };
            let key = match idempotency_key(&headers, &path, &body) {
                Ok(key) => key,
                Err(reply) => return *reply,
            };
            from_json(shared, &message_type, &body, key).await
        }
        ["outbound", _] => not_allowed("GET, POST"),
        _ => refused(StatusCode::NOT_FOUND, "no_such_path", "not found"),
    }
}

/// The body, or 413 when it is over [`MAX_BODY`] or cut off, or 408 (closing the
/// connection) when it does not arrive within `timeout`: a client that stalls mid-body holds
/// its connection no longer than that.
async fn read_body(request: Request<Incoming>, timeout: Duration) -> Result<Bytes, Reply> {
    let collect = Limited::new(request.into_body(), MAX_BODY).collect();
    match tokio::time::timeout(timeout, collect).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(_)) => Err(refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "the body is too large or was cut off",
        )),
        Err(_elapsed) => {
            let mut reply = refused(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                &format!("the body did not arrive within {} s", timeout.as_secs_f64()),
            );
            // The rest of the body may still come: the connection cannot carry another
            // request.
            reply
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            Err(reply)
        }
    }
}

/// The longest `Idempotency-Key` accepted.
const MAX_KEY: usize = 255;

/// The request's `Idempotency-Key` with the SHA-256 of its target and body; `None` without
/// the header; 400 for a key that is empty, too long or not printable ASCII.
fn idempotency_key(
    headers: &HeaderMap,
    target: &str,
    body: &[u8],
) -> Result<Option<IdempotencyKey>, Box<Reply>> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| {
            !k.is_empty()
                && k.len() <= MAX_KEY
                && k.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        })
        .ok_or_else(|| {
            Box::new(refused(
                StatusCode::BAD_REQUEST,
                "bad_idempotency_key",
                &format!("Idempotency-Key must be 1 to {MAX_KEY} printable ASCII characters"),
            ))
        })?;
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(target.as_bytes());
    context.update(b"\n");
    context.update(body);
    let request_sha256 = crate::dedup::lower_hex(context.finish().as_ref());
    Ok(Some(IdempotencyKey {
        key: key.to_string(),
        request_sha256,
    }))
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

/// The header object of a JSON intake request: MSH-3 to MSH-6 for this message, each
/// defaulting to the environment's send settings. Any other key is refused, so a field EMS
/// believes it sets (`control_id`) is never silently dropped.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonHeader {
    sending_application: Option<String>,
    sending_facility: Option<String>,
    receiving_application: Option<String>,
    receiving_facility: Option<String>,
}

/// `{"record": …, "header": {…}}`; no other key.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRequest {
    record: serde_json::Value,
    #[serde(default)]
    header: JsonHeader,
}

/// `POST /outbound/TYPE^TRIGGER` with `{"record": …, "header": {…}}` or the record alone.
async fn from_json(
    shared: &Shared,
    message_type: &str,
    body: &[u8],
    key: Option<IdempotencyKey>,
) -> Reply {
    let value: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return refused(
                StatusCode::BAD_REQUEST,
                "not_json",
                &format!("not JSON: {e}"),
            );
        }
    };
    let request = if value.get("record").is_some() {
        match serde_path_to_error::deserialize::<_, JsonRequest>(value) {
            Ok(request) => request,
            Err(e) => {
                return refused(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "bad_json_request",
                    &format!("request {}: {}", e.path(), e.inner()),
                );
            }
        }
    } else {
        JsonRequest {
            record: value,
            header: JsonHeader::default(),
        }
    };
    let config = &shared.config;
    let pick = |given: &Option<String>, default: &str| {
        given.clone().unwrap_or_else(|| default.to_string())
    };
    let given = &request.header;
    let (sending_app, sending_fac, receiving_app, receiving_fac) = (
        pick(
            &given.sending_application,
            &config.header.sending_application,
        ),
        pick(&given.sending_facility, &config.header.sending_facility),
        pick(
            &given.receiving_application,
            &config.header.receiving_application,
        ),
        pick(&given.receiving_facility, &config.header.receiving_facility),
    );
    let control_id = shared.control_id();
    let stamp = timestamp::format_utc(SystemTime::now());
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
    let bytes = match config
        .spec
        .build_outbound(message_type, &request.record, &header)
    {
        Ok(b) => b,
        Err(OutboundError::Record(crate::mapping::OutboundError::Mapping(errors))) => {
            return because(mapping_errors(&errors), "does_not_map");
        }
        Err(why) => {
            return refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                "does_not_build",
                &why.to_string(),
            );
        }
    };
    match shared.queue_message(&bytes, key).await {
        Ok(q) => queued_reply(&q),
        Err(refusal) => refusal.reply(),
    }
}

/// One MLLP connection: each framed message is answered by `answer` (queued and answered
/// with a commit ACK), in order; `None` closes the connection.
pub(crate) async fn serve_mllp<A, F>(mut stream: EmsStream, idle: Duration, answer: A)
where
    A: Fn(Vec<u8>) -> F,
    F: Future<Output = Option<Vec<u8>>>,
{
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
        let ack = answer(message).await;
        let Some(ack) = ack else { return };
        // A peer that stops reading holds its slot no longer than an idle one.
        let write = crate::mllp::write_message(&mut stream, &ack);
        if !matches!(tokio::time::timeout(idle, write).await, Ok(Ok(()))) {
            return;
        }
    }
}

/// The commit ACK for one MLLP message; `None` when it is not HL7 at all (the connection is
/// closed: there is nothing to acknowledge). Every AR and AE is logged with its reason.
async fn mllp_answer(shared: &Shared, peer: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let message = match Message::parse_with(bytes, &ParseOptions::lenient()) {
        Ok(message) => message,
        Err(_) => {
            tracing::info!(peer = %peer, reason = "not_hl7", "intake MLLP: message refused, not HL7; connection closed");
            return None;
        }
    };
    let mode = shared.config.acknowledgement.mode_for(&message);
    let queued = shared.queue_message(bytes, None).await;
    let reason = queued.as_ref().err().map(Refusal::reason);
    let (code, errors) = match queued {
        Ok(_) => (AckCode::ApplicationAccept, Vec::new()),
        Err(Refusal::Mapping(errors)) => (
            AckCode::ApplicationError,
            errors.iter().map(MappingError::to_ack_error).collect(),
        ),
        Err(Refusal::Undeclared(m)) => (
            AckCode::ApplicationReject,
            vec![ack_error(error_code::UNSUPPORTED_MESSAGE_TYPE, m)],
        ),
        Err(Refusal::NotHl7(m) | Refusal::Invalid(m) | Refusal::Conflict(m)) => (
            AckCode::ApplicationReject,
            vec![ack_error(error_code::APPLICATION_INTERNAL_ERROR, m)],
        ),
        Err(Refusal::Unavailable(m)) => (
            AckCode::ApplicationError,
            vec![ack_error(error_code::APPLICATION_INTERNAL_ERROR, m)],
        ),
    };
    if let Some(reason) = reason {
        let message_type = format!("{}^{}", message.message_code(), message.trigger_event());
        tracing::info!(
            peer = %peer,
            message_type = %crate::inbound::shown(&message_type),
            ack = code.as_str(),
            reason,
            "intake MLLP: message refused"
        );
    }
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
    .map_err(|e| {
        tracing::error!(
            peer = %peer,
            "intake MLLP: no ACK could be built ({e}); the connection is closed without one"
        );
    })
    .ok()
}

/// The ACK the host answers for an MLLP message it cannot hand to any customer
/// ([`crate::host`]): `code` (original mode) with one ERR of `error` and `text`; `None` when
/// no ACK can be built (the connection is closed). Nothing is queued.
pub(crate) fn host_refusal(
    bytes: &[u8],
    code: AckCode,
    error: u16,
    text: String,
) -> Option<Vec<u8>> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let message = Message::parse_with(bytes, &ParseOptions::lenient()).ok()?;
    let control_id = format!("HOST-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let stamp = timestamp::format_utc(SystemTime::now());
    build_ack(
        &message,
        &AckRequest {
            code,
            control_id: &control_id,
            timestamp: &stamp,
            errors: &[ack_error(error, text)],
        },
    )
    .map_err(|e| {
        tracing::error!(
            "host intake MLLP: no ACK could be built ({e}); the connection is closed without one"
        )
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    use hyper::service::service_fn;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A body that stops arriving is cut with 408 and `Connection: close` once the body
    /// timeout passes, not held for as long as the client likes.
    #[tokio::test]
    async fn a_stalled_body_is_cut_with_408() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let timeout = Duration::from_millis(200);
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let service = service_fn(move |request| async move {
                let reply = match read_body(request, timeout).await {
                    Ok(body) => json(StatusCode::OK, &serde_json::json!({ "len": body.len() })),
                    Err(reply) => reply,
                };
                Ok::<_, Infallible>(reply)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client
            .write_all(
                b"POST /outbound HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nMSH|",
            )
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let mut response = Vec::new();
        // The server answers and closes: read to the end, bounded.
        tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut response))
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&response).to_ascii_lowercase();
        assert!(text.starts_with("http/1.1 408"), "{text}");
        assert!(text.contains("connection: close"), "{text}");
        assert!(started.elapsed() >= timeout);
        server.await.unwrap();
    }
}
