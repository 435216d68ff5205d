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

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::{info, warn};

use crate::reload::ServerTls;
use crate::tls::{TlsError, TlsFailure, matching_subject, peer_subjects};

/// How long an EMS client gets to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The access rule of one environment's EMS-facing listeners (cheap to clone).
#[derive(Clone)]
pub struct EmsAuth {
    tls: Option<MutualTls>,
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
        Self { tls: None }
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

    /// The connection to serve, or `None` (logged) when its handshake fails or its client
    /// certificate's subject is not allowed. `what` names the listener in the log.
    pub async fn admit(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
        what: &'static str,
    ) -> Option<EmsStream> {
        let Some(tls) = &self.tls else {
            return Some(EmsStream::Plain(tcp));
        };
        let mut stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor.accept(tcp))
            .await
        {
            Err(_elapsed) => {
                info!(peer = %peer, listener = what, reason = TlsFailure::Timeout.as_str(), "EMS connection refused: TLS handshake failed");
                return None;
            }
            Ok(Err(e)) => {
                let reason = TlsFailure::classify(&e);
                info!(peer = %peer, listener = what, reason = reason.as_str(), error = %e, "EMS connection refused: TLS handshake failed");
                return None;
            }
            Ok(Ok(stream)) => stream,
        };
        let subjects = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|cert| peer_subjects(cert.as_ref()))
            .unwrap_or_default();
        if matching_subject(&subjects, &tls.allowed).is_none() {
            warn!(peer = %peer, listener = what, subjects = ?subjects, reason = "subject", "EMS connection refused: client certificate subject not allowed");
            let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
            return None;
        }
        Some(EmsStream::Tls(Box::new(stream)))
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
