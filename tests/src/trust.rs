//! The Trust's engine as the sending gateway meets it: an HTTPS server (hyper +
//! tokio-rustls, on its own small tokio runtime, 127.0.0.1, ephemeral port) that requires
//! the gateway's client certificate, records every request in arrival order, commits each
//! MSH-10 once (a repeat is answered AA as a duplicate, as a real receiver does) and can be
//! told, per MSH-10, to answer AE, AR, a wrong MSA-2, a body that is not HL7, an HTTP
//! status, slowly, or to close the connection mid-request. A gate holds every request until
//! the test opens it. The sender's in-process tests (`runtime/tests/queue_client.rs`) and
//! its end-to-end tests (`tests/tests/sender.rs`) both send to it.
//!
//! Its ACKs are written by hand (not by the runtime under test).
//!
//! Only tests link this; a listener or certificate the test cannot have ends the test, hence
//! `unwrap`.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONNECTION, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use crate::messages::control_id_of;
use crate::specs;

/// The path the gateway posts to (gw-demo TEST: `https://…/hl7/ems`); other paths get a 404.
pub const PATH: &str = "/hl7/ems";

/// How long the gate or a hanging request waits at most.
const HANG_LIMIT: Duration = Duration::from_secs(30);

/// What the Trust does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Commit (once per MSH-10), answer AA.
    Aa,
    /// Commit, answer AA with `Connection: close`.
    AaClose,
    /// Answer AE with this text; nothing committed.
    Ae(&'static str),
    /// Answer AR with this text; nothing committed.
    Ar(&'static str),
    /// Answer this HTTP status with a text body; nothing committed.
    Status(u16),
    /// Answer AA for another MSH-10; nothing committed.
    WrongMsa2,
    /// Answer 200 with a body that is not HL7; nothing committed.
    Garbage,
    /// Wait, then commit and answer AA.
    Delay(Duration),
    /// Read the request, then close the connection without committing or answering.
    CloseBeforeCommit,
    /// Commit, then close the connection without answering: the ACK is lost.
    CommitThenClose,
    /// Commit, then never answer (until the connection or the Trust goes).
    CommitThenHang,
}

/// One request, as it arrived.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// MSH-10.
    pub control_id: String,
    /// Which TLS connection (1, 2, …).
    pub connection: u64,
    /// The client certificate's names (`CN=…`, `DNS:…`).
    pub client: Vec<String>,
    /// The request's path.
    pub path: String,
    /// The request's Content-Type, as sent.
    pub content_type: String,
    /// The request body.
    pub body: Vec<u8>,
    /// When it arrived (before the gate).
    pub at: Instant,
}

struct State {
    scripts: Mutex<HashMap<String, VecDeque<Reply>>>,
    default: Mutex<Reply>,
    arrivals: Mutex<Vec<Arrival>>,
    /// Committed MSH-10s in commit order, each once: the Trust's store.
    committed: Mutex<Vec<String>>,
    duplicates: AtomicU64,
    tcp_accepted: AtomicU64,
    handshakes: AtomicU64,
    handshake_failures: Mutex<Vec<String>>,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    gate: watch::Sender<bool>,
}

impl State {
    fn next_reply(&self, control_id: &str) -> Reply {
        if let Some(reply) = self
            .scripts
            .lock()
            .unwrap()
            .get_mut(control_id)
            .and_then(VecDeque::pop_front)
        {
            return reply;
        }
        *self.default.lock().unwrap()
    }

    /// Commits `control_id` unless it already was (then it is a duplicate).
    fn commit(&self, control_id: &str) {
        let mut committed = self.committed.lock().unwrap();
        if committed.iter().any(|c| c == control_id) {
            self.duplicates.fetch_add(1, Ordering::SeqCst);
        } else {
            committed.push(control_id.to_owned());
        }
    }
}

struct InFlight<'a>(&'a State);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The Trust's engine; stops when dropped.
pub struct Trust {
    /// Where it listens (127.0.0.1).
    pub addr: SocketAddr,
    state: Arc<State>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Trust {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The Trust's server TLS from the spec's development certificates: `tie-server.crt` (for
/// localhost and 127.0.0.1, issued by the Trust CA the gateway trusts), client certificates
/// required from the EMS CA that issued the gateway's `client.crt`.
pub fn dev_tls() -> Arc<rustls::ServerConfig> {
    let dir = specs().join("certs/test/trust");
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    hl7gw_runtime::tls::server_config_from_pem(
        &read("tie-server.crt"),
        &read("tie-server.key"),
        &read("ems-ca.crt"),
    )
    .unwrap()
}

/// The same, but serving `cert_pem`/`key_pem` (another CA's certificate for localhost).
pub fn tls_with(cert_pem: &str, key_pem: &str) -> Arc<rustls::ServerConfig> {
    let ems_ca = std::fs::read(specs().join("certs/test/trust/ems-ca.crt")).unwrap();
    hl7gw_runtime::tls::server_config_from_pem(cert_pem.as_bytes(), key_pem.as_bytes(), &ems_ca)
        .unwrap()
}

impl Trust {
    /// Listens on 127.0.0.1 with `tls`; the gate is open, every request answered AA.
    pub fn start(tls: Arc<rustls::ServerConfig>) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std_listener.local_addr().unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let (gate, _) = watch::channel(true);
        let state = Arc::new(State {
            scripts: Mutex::default(),
            default: Mutex::new(Reply::Aa),
            arrivals: Mutex::default(),
            committed: Mutex::default(),
            duplicates: AtomicU64::new(0),
            tcp_accepted: AtomicU64::new(0),
            handshakes: AtomicU64::new(0),
            handshake_failures: Mutex::default(),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            gate,
        });
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let shared = state.clone();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                shared.tcp_accepted.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                let state = shared.clone();
                tokio::spawn(async move {
                    let tls = match tokio::time::timeout(HANG_LIMIT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            state.handshake_failures.lock().unwrap().push(e.to_string());
                            return;
                        }
                        Err(_) => return,
                    };
                    let n = state.handshakes.fetch_add(1, Ordering::SeqCst) + 1;
                    let client = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .map(|cert| hl7gw_runtime::tls::peer_subjects(cert.as_ref()))
                        .unwrap_or_default();
                    let service = service_fn(move |request| {
                        handle(state.clone(), n, client.clone(), request)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            state,
            runtime: Some(runtime),
        }
    }

    /// The URL the gateway sends to.
    pub fn url(&self) -> String {
        self.url_for("127.0.0.1")
    }

    /// The URL naming the Trust `host` (`localhost`, so that the server certificate's name
    /// is checked against it).
    pub fn url_for(&self, host: &str) -> String {
        format!("https://{host}:{}{PATH}", self.addr.port())
    }

    /// Replies for `control_id`, taken in order; then the default.
    pub fn script(&self, control_id: &str, replies: &[Reply]) {
        self.state
            .scripts
            .lock()
            .unwrap()
            .entry(control_id.to_owned())
            .or_default()
            .extend(replies.iter().copied());
    }

    /// The reply when no script is left (AA at first).
    pub fn set_default(&self, reply: Reply) {
        *self.state.default.lock().unwrap() = reply;
    }

    /// Closes the gate: requests wait (after arriving) until it opens.
    pub fn close_gate(&self) {
        self.state.gate.send_replace(false);
    }

    /// Opens the gate.
    pub fn open_gate(&self) {
        self.state.gate.send_replace(true);
    }

    /// Every request, in arrival order.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.state.arrivals.lock().unwrap().clone()
    }

    /// MSH-10s in arrival order, repeats included.
    pub fn arrival_ids(&self) -> Vec<String> {
        self.arrivals().into_iter().map(|a| a.control_id).collect()
    }

    /// The Trust's store: committed MSH-10s in commit order, each once.
    pub fn committed(&self) -> Vec<String> {
        self.state.committed.lock().unwrap().clone()
    }

    /// Repeats of committed MSH-10s, answered AA without committing again.
    pub fn duplicates(&self) -> u64 {
        self.state.duplicates.load(Ordering::SeqCst)
    }

    /// TCP connections accepted.
    pub fn tcp_accepted(&self) -> u64 {
        self.state.tcp_accepted.load(Ordering::SeqCst)
    }

    /// TLS handshakes completed.
    pub fn handshakes(&self) -> u64 {
        self.state.handshakes.load(Ordering::SeqCst)
    }

    /// Why handshakes failed, as the Trust's side saw it.
    pub fn handshake_failures(&self) -> Vec<String> {
        self.state.handshake_failures.lock().unwrap().clone()
    }

    /// The most requests ever being handled at once.
    pub fn max_in_flight(&self) -> u64 {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// What the Trust has seen, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "arrivals {:?}, committed {:?}, duplicates {}, tcp {}, handshakes {}, handshake failures {:?}",
            self.arrival_ids(),
            self.committed(),
            self.duplicates(),
            self.tcp_accepted(),
            self.handshakes(),
            self.handshake_failures()
        )
    }
}

fn text_response(
    status: StatusCode,
    content_type: &'static str,
    body: String,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, content_type.parse().unwrap());
    response
}

/// An ACK for `control_id` (the ACK's MSA-2), written as an engine writes it: MSA-3 and an ERR segment (v2.5
/// layout: ERR-3 code, ERR-4 severity, ERR-8 user message) for AE/AR.
fn ack(code: &str, control_id: &str, text: Option<&str>) -> Response<Full<Bytes>> {
    let mut body = format!(
        "MSH|^~\\&|TIE|DEMO-TRUST|EMS|EMS-HOST|20260101120000||ACK^R01^ACK|ACK-{control_id}|T|2.5.1\r\
         MSA|{code}|{control_id}|{}\r",
        text.unwrap_or_default()
    );
    if let Some(text) = text {
        body.push_str(&format!(
            "ERR|||207^Application internal error^HL70357|E||||{text}\r"
        ));
    }
    text_response(StatusCode::OK, "application/hl7-v2; charset=UTF-8", body)
}

async fn handle(
    state: Arc<State>,
    connection: u64,
    client: Vec<String>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let path = request.uri().path().to_owned();
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = request
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let _guard = InFlight(&state);
    if path != PATH {
        return Ok(text_response(
            StatusCode::NOT_FOUND,
            "text/plain",
            "no such path".into(),
        ));
    }
    let Some(control_id) = control_id_of(&body) else {
        return Ok(text_response(
            StatusCode::BAD_REQUEST,
            "text/plain",
            "not HL7".into(),
        ));
    };
    state.arrivals.lock().unwrap().push(Arrival {
        control_id: control_id.clone(),
        connection,
        client,
        path,
        content_type,
        body: body.to_vec(),
        at: Instant::now(),
    });
    let mut gate = state.gate.subscribe();
    let _ = tokio::time::timeout(HANG_LIMIT, gate.wait_for(|open| *open)).await;
    Ok(match state.next_reply(&control_id) {
        Reply::Aa => {
            state.commit(&control_id);
            ack("AA", &control_id, None)
        }
        Reply::AaClose => {
            state.commit(&control_id);
            let mut response = ack("AA", &control_id, None);
            response
                .headers_mut()
                .insert(CONNECTION, "close".parse().unwrap());
            response
        }
        Reply::Ae(text) => ack("AE", &control_id, Some(text)),
        Reply::Ar(text) => ack("AR", &control_id, Some(text)),
        Reply::Status(status) => text_response(
            StatusCode::from_u16(status).unwrap(),
            "text/plain",
            "the Trust's engine says no (this body is not kept)".into(),
        ),
        Reply::WrongMsa2 => ack("AA", &format!("NOT-{control_id}"), None),
        Reply::Garbage => text_response(
            StatusCode::OK,
            "application/hl7-v2; charset=UTF-8",
            "<html>gateway error</html>".into(),
        ),
        Reply::Delay(d) => {
            tokio::time::sleep(d).await;
            state.commit(&control_id);
            ack("AA", &control_id, None)
        }
        Reply::CloseBeforeCommit => return Err(std::io::Error::other("closing mid-request")),
        Reply::CommitThenClose => {
            state.commit(&control_id);
            return Err(std::io::Error::other(
                "closing after the commit, before the ACK",
            ));
        }
        Reply::CommitThenHang => {
            state.commit(&control_id);
            tokio::time::sleep(HANG_LIMIT).await;
            return Err(std::io::Error::other("hung up"));
        }
    })
}
