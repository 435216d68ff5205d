//! Who may use the EMS-facing listeners: the inbox API, the intake API and the intake MLLP
//! listener.
//!
//! Two ways, chosen per environment in the spec (`ems:`):
//!
//! - **plain loopback** ([`EmsAuth::plain_loopback`]): plain HTTP and MLLP, no
//!   authentication, so the listeners bind loopback addresses only and any process on the
//!   gateway's host can use them. For the demo and local development; the go-live report
//!   flags it.
//! - **mutual TLS** ([`EmsAuth::mutual_tls`]): every connection's TLS handshake requires a
//!   client certificate issued by the spec's `ems.tls.client_ca` (checked against its CRL when
//!   named), and its subject must match `ems.allowed_clients` (the receiver's rules,
//!   [`crate::tls::matching_subject`]); otherwise the connection is closed and logged. The
//!   listeners may then bind any address. The certificate material is a
//!   [`crate::reload::ServerTls`], so `gw reload` and SIGHUP rotate it with the receiver's.
//!   The handshake and subject check are the receiver's own (`crate::accept`): bounded by
//!   [`HANDSHAKE_TIMEOUT`], dropped on shutdown, counted in
//!   `hl7gw_tls_failures_total{listener}`.
//!
//! Either way each listener is guarded, before any byte is read, by an `EmsDoor`: the
//! environment's `limits.connections`, `limits.connections_per_ip` and `limits.handshakes`
//! (the receiver's numbers, counted per listener), so idle raw TCP connections from one
//! address fill only that address's share of one door.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::{info, warn};

use crate::accept::{Handshake, Listener, accept_allowed};
use crate::admission::{AddressSlot, Admission, HandshakeSlot};
use crate::config::Limits;
use crate::listeners::Role;
use crate::metrics::{Metrics, reject};
use crate::reload::ServerTls;
use crate::server::canonical_ip;
use crate::tls::TlsError;

/// How long an EMS client gets to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The access rule of one environment's EMS-facing listeners (cheap to clone).
#[derive(Clone)]
pub struct EmsAuth {
    tls: Option<MutualTls>,
    limits: Limits,
    metrics: Arc<Metrics>,
}

#[derive(Clone)]
struct MutualTls {
    acceptor: TlsAcceptor,
    allowed: Arc<[String]>,
}

impl std::fmt::Debug for EmsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.tls {
            None => f.write_str("EmsAuth::PlainLoopback"),
            Some(tls) => write!(f, "EmsAuth::MutualTls({:?})", tls.allowed),
        }
    }
}

/// A listener asked to bind beyond loopback without mutual TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} on {addr}: without `ems.tls` (plain_loopback) it has no authentication, so it binds loopback addresses only (127.0.0.0/8 or ::1)"
)]
pub struct NotLoopback {
    /// Which listener.
    pub what: &'static str,
    /// The address asked for.
    pub addr: SocketAddr,
}

impl EmsAuth {
    /// Plain HTTP and MLLP on loopback, without authentication.
    pub fn plain_loopback() -> Self {
        Self {
            tls: None,
            limits: Limits::DEFAULT,
            metrics: Arc::new(Metrics::new()),
        }
    }

    /// This rule with an environment's connection limits (each EMS-facing listener gets its
    /// own counts on the receiver's numbers: see `EmsDoor`) and the registry its refusals
    /// are counted in. Without it: [`Limits::DEFAULT`] and a registry of its own.
    pub fn with_limits(mut self, limits: &Limits, metrics: Arc<Metrics>) -> Self {
        self.limits = *limits;
        self.metrics = metrics;
        self
    }

    /// Mutual TLS on `tls`'s certificate, admitting client certificates whose subject
    /// matches one of `allowed_clients` (an empty list admits nobody).
    pub fn mutual_tls(
        tls: &Arc<ServerTls>,
        allowed_clients: Vec<String>,
    ) -> Result<Self, TlsError> {
        if allowed_clients.is_empty() {
            warn!(
                "EMS listeners: no allowed client subjects; every EMS connection will be refused"
            );
        }
        Ok(Self {
            tls: Some(MutualTls {
                acceptor: TlsAcceptor::from(tls.config()?),
                allowed: allowed_clients.into(),
            }),
            ..Self::plain_loopback()
        })
    }

    /// Whether connections are authenticated by mutual TLS.
    pub fn is_mutual_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether `what` may bind `addr`: anywhere with mutual TLS, loopback only without.
    pub fn check_bind(&self, what: &'static str, addr: SocketAddr) -> Result<(), NotLoopback> {
        if self.tls.is_some() || addr.ip().is_loopback() {
            Ok(())
        } else {
            Err(NotLoopback { what, addr })
        }
    }

    /// The guard of one EMS-facing listener (`role`): its own admission and connection cap
    /// on these limits, so a flood on one door takes nothing from another or from the
    /// receiver.
    pub(crate) fn door(&self, role: Role) -> EmsDoor {
        let count = |n: u32| usize::try_from(n).unwrap_or(usize::MAX);
        let limits = &self.limits;
        EmsDoor {
            auth: self.clone(),
            role,
            admission: Admission::new(count(limits.connections_per_ip), count(limits.handshakes)),
            open: Arc::new(Semaphore::new(
                count(limits.connections).min(Semaphore::MAX_PERMITS),
            )),
        }
    }
}

/// One EMS-facing listener's guard, in front of its TLS accept: at most
/// `limits.connections` connections open, at most `limits.connections_per_ip` from one
/// address, at most `limits.handshakes` in the TLS handshake (see [`crate::admission`]).
/// Cheap to clone: clones share the counts.
#[derive(Clone)]
pub(crate) struct EmsDoor {
    auth: EmsAuth,
    role: Role,
    admission: Arc<Admission>,
    open: Arc<Semaphore>,
}

/// The slots of a connection just admitted, until its handshake ends.
pub(crate) struct Admitted {
    held: Held,
    handshake: HandshakeSlot,
}

/// What an open EMS connection holds: its place under the listener's cap and its address's
/// share. Keep it for as long as the connection is served.
pub(crate) struct Held {
    _address: AddressSlot,
    _open: OwnedSemaphorePermit,
}

impl EmsDoor {
    /// The listener it guards.
    pub(crate) fn role(&self) -> Role {
        self.role
    }

    /// Slots for a connection just accepted from `peer`, or `None` when the listener is full,
    /// the address has its share, or too many handshakes are under way (logged and counted
    /// in `hl7gw_connections_rejected_total{listener}`): the caller closes the connection
    /// before reading a byte.
    pub(crate) fn admit(&self, peer: SocketAddr) -> Option<Admitted> {
        let metrics = &self.auth.metrics;
        let listener = self.role.label();
        let Ok(open) = self.open.clone().try_acquire_owned() else {
            metrics.connection_rejected(self.role, reject::CAPACITY);
            warn!(peer = %peer, listener, reason = reject::CAPACITY, "EMS connection refused: too many connections");
            return None;
        };
        match self.admission.admit(canonical_ip(peer.ip())) {
            Ok((address, handshake)) => Some(Admitted {
                held: Held {
                    _address: address,
                    _open: open,
                },
                handshake,
            }),
            Err(refused) => {
                metrics.connection_rejected(self.role, refused.reason());
                info!(peer = %peer, listener, reason = refused.reason(), "EMS connection refused: no slot for this address now");
                None
            }
        }
    }

    /// The connection to serve, with what it holds, or `None` (logged and counted) when its
    /// handshake fails or times out, its client certificate's subject is not allowed, or
    /// `stop` turns true during the handshake. Plain loopback serves it as it is.
    pub(crate) async fn accept(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
        admitted: Admitted,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<(EmsStream, Held)> {
        let Admitted { held, handshake } = admitted;
        let Some(tls) = &self.auth.tls else {
            return Some((EmsStream::Plain(tcp), held));
        };
        let accepted = accept_allowed(
            Handshake {
                acceptor: &tls.acceptor,
                timeout: HANDSHAKE_TIMEOUT,
                allowed: &tls.allowed,
            },
            Listener {
                role: self.role,
                metrics: &self.auth.metrics,
            },
            tcp,
            canonical_ip(peer.ip()),
            handshake,
            stop,
        )
        .await?;
        Some((EmsStream::Tls(Box::new(accepted.stream)), held))
    }
}

/// An admitted EMS connection: plain on loopback, or TLS.
pub enum EmsStream {
    /// Plain TCP (plain loopback).
    Plain(TcpStream),
    /// Mutual TLS, the client's subject allowed.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for EmsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for EmsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
