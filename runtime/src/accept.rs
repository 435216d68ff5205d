//! One TLS accept path for every listener that authenticates its clients with mutual TLS:
//! the receiver (the Trust's engines) and the EMS-facing listeners ([`crate::ems`]).
//!
//! [`accept_allowed`] runs the handshake bounded by a timeout and dropped when the listener
//! stops, gives the connection's place in the handshake budget back as soon as the handshake
//! ends, classifies and counts a failed handshake (`hl7gw_tls_failures_total{listener,
//! reason}`), and checks the client certificate's subject against the allowlist (closing
//! with a TLS close_notify and counting `hl7gw_connections_rejected_total{listener,
//! reason="subject"}` when it names nobody allowed). Every refusal is logged at the peer's
//! address with its reason; on the EMS side the line begins "EMS connection refused".

use std::net::IpAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::{info, warn};

use crate::admission::HandshakeSlot;
use crate::listeners::Role;
use crate::metrics::{Metrics, reject};
use crate::tls::{TlsFailure, matching_subject, peer_subjects};

/// How long a refused client gets to take its close_notify.
const REFUSAL_CLOSE: Duration = Duration::from_secs(1);

/// Which listener accepts, for the metrics and the logs.
#[derive(Clone, Copy)]
pub(crate) struct Listener<'a> {
    /// The listener.
    pub role: Role,
    /// Where its refusals are counted.
    pub metrics: &'a Metrics,
}

/// How one listener's TLS handshakes go.
#[derive(Clone, Copy)]
pub(crate) struct Handshake<'a> {
    /// The server's TLS configuration (client certificates required).
    pub acceptor: &'a TlsAcceptor,
    /// Time for the whole handshake.
    pub timeout: Duration,
    /// Client certificate subjects allowed (see [`matching_subject`]); empty: nobody.
    pub allowed: &'a [String],
}

/// A connection whose handshake succeeded and whose client is allowed.
pub(crate) struct Accepted {
    /// The TLS stream.
    pub stream: TlsStream<TcpStream>,
    /// The allowlist entry the client certificate matched.
    pub subject: String,
}

/// The TLS stream of `tcp` with an allowed client, or `None` (logged and counted) when the
/// handshake fails or times out, the client's subject is not allowed, or `stop` turns true
/// first. `handshake_slot` is released once the handshake ends, whatever its outcome.
pub(crate) async fn accept_allowed(
    handshake: Handshake<'_>,
    listener: Listener<'_>,
    tcp: TcpStream,
    peer_ip: IpAddr,
    handshake_slot: HandshakeSlot,
    stop: &mut watch::Receiver<bool>,
) -> Option<Accepted> {
    let Listener { role, metrics } = listener;
    let refused = if role.faces_ems() {
        "EMS connection refused"
    } else {
        "connection refused"
    };
    let bounded = tokio::time::timeout(handshake.timeout, handshake.acceptor.accept(tcp));
    let outcome = tokio::select! {
        outcome = bounded => outcome,
        _ = stop.wait_for(|stopping| *stopping) => return None,
    };
    // The handshake is over: its place in the budget goes to the next connection.
    drop(handshake_slot);
    let failure = match outcome {
        Ok(Ok(stream)) => Ok(stream),
        Err(_elapsed) => Err((TlsFailure::Timeout, None)),
        Ok(Err(e)) => Err((TlsFailure::classify(&e), Some(e))),
    };
    let mut stream = match failure {
        Ok(stream) => stream,
        Err((reason, error)) => {
            metrics.tls_failure(role, reason);
            let error = error.map(|e| e.to_string()).unwrap_or_default();
            info!(peer_ip = %peer_ip, listener = role.label(), reason = reason.as_str(), error = %error, "{refused}: TLS handshake failed");
            return None;
        }
    };
    let subjects = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| peer_subjects(cert.as_ref()))
        .unwrap_or_default();
    let Some(subject) = matching_subject(&subjects, handshake.allowed).map(str::to_owned) else {
        metrics.connection_rejected(role, reject::SUBJECT);
        warn!(peer_ip = %peer_ip, listener = role.label(), subjects = ?subjects, reason = reject::SUBJECT, "{refused}: client certificate subject not allowed");
        let _ = tokio::time::timeout(REFUSAL_CLOSE, stream.shutdown()).await;
        return None;
    };
    Some(Accepted { stream, subject })
}
