//! One connection: TLS handshake and subject check ([`crate::accept`]), HTTP, and the watchdog that enforces the
//! header and idle limits.

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info};

use super::http::{ConnInfo, respond};
use super::{Handler, Shared};
use crate::accept::{Accepted, Handshake, Listener, accept_allowed};
use crate::admission::{AddressSlot, HandshakeSlot};
use crate::listeners::Role;

/// How long an idle connection told to close (or one whose server is stopping, past the
/// server's own limit) may take to do so.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

const NOT_STARTED: u64 = u64::MAX;

/// What the watchdog needs to know about a connection: requests in progress, and when the
/// connection last became idle or began receiving a new request.
pub(super) struct Activity {
    base: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds since `base` when the last request finished (or the connection opened).
    idle_since: AtomicU64,
    /// Milliseconds since `base` of the first byte of a request not yet handed to the
    /// service, or `NOT_STARTED`.
    head_started: AtomicU64,
}

/// Why the watchdog acts.
#[derive(Debug, PartialEq, Eq)]
enum Expired {
    Header,
    Idle,
}

impl Activity {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(NOT_STARTED),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(NOT_STARTED - 1)
    }

    /// Bytes arrived: with no request in progress, they begin the next one.
    fn on_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let _ = self.head_started.compare_exchange(
                NOT_STARTED,
                self.now_ms(),
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }

    /// A request's head was read and handed to the service; the guard ends it.
    pub(super) fn begin_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_started.store(NOT_STARTED, Ordering::Release);
        InFlight(self.clone())
    }

    fn expired(&self, header_timeout: Option<Duration>, idle_timeout: Duration) -> Option<Expired> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let now = self.now_ms();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let head = self.head_started.load(Ordering::Acquire);
        if let Some(limit) = header_timeout
            && head != NOT_STARTED
        {
            return (now.saturating_sub(head) >= ms(limit)).then_some(Expired::Header);
        }
        let idle = self.idle_since.load(Ordering::Acquire);
        (now.saturating_sub(idle) >= ms(idle_timeout)).then_some(Expired::Idle)
    }
}

/// A request in progress.
pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.idle_since.store(self.0.now_ms(), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The TLS stream, reporting reads to the [`Activity`].
struct ActivityIo<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for ActivityIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ActivityIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Counts the connection as open while it lives.
struct OpenGuard<'a>(&'a crate::metrics::Metrics);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.connection_closed();
    }
}

/// Serves one accepted connection whose IP was allowed.
pub(super) async fn serve_connection<H: Handler>(
    shared: Arc<Shared<H>>,
    tcp: TcpStream,
    peer_ip: IpAddr,
    (_address_slot, handshake_slot): (AddressSlot, HandshakeSlot),
    mut stop: watch::Receiver<bool>,
) {
    let settings = &shared.settings;
    let metrics = &shared.metrics;
    metrics.connection_opened();
    let _open = OpenGuard(metrics);
    let _ = tcp.set_nodelay(true);

    let acceptor = TlsAcceptor::from(shared.tls.clone());
    let handshake = Handshake {
        acceptor: &acceptor,
        timeout: settings.handshake_timeout,
        allowed: &settings.allowed_clients,
    };
    let listener = Listener {
        role: Role::Receive,
        metrics,
    };
    let Some(Accepted {
        stream: tls,
        subject,
    }) = accept_allowed(handshake, listener, tcp, peer_ip, handshake_slot, &mut stop).await
    else {
        return;
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
    debug!(peer_ip = %peer_ip, subject = %subject, h2, "client connected");

    let activity = Arc::new(Activity::new());
    let info = Arc::new(ConnInfo {
        peer_ip,
        subject,
        activity: activity.clone(),
    });
    let service_shared = shared.clone();
    let service = hyper::service::service_fn(move |request| {
        let shared = service_shared.clone();
        let info = info.clone();
        respond(shared, info, request)
    });

    let mut builder = auto::Builder::new(TokioExecutor::new());
    if !settings.http2 {
        // ALPN offered only `http/1.1`; an HTTP/2 preface sent without it is refused too.
        builder = builder.http1_only();
    }
    builder
        .http1()
        .timer(TokioTimer::new())
        // The watchdog below enforces the header limit; hyper's would also cut idle
        // keep-alive connections (see the module docs).
        .header_read_timeout(None)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(Some(32))
        .max_header_list_size(64 * 1024);
    let io = TokioIo::new(ActivityIo {
        inner: tls,
        activity: activity.clone(),
    });
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);

    // HTTP/2 clients send frames (PING, SETTINGS) between requests, so only HTTP/1.1 gets
    // the header limit; both get the idle limit.
    let header_timeout = (!h2).then_some(settings.header_timeout);
    let tick = settings
        .header_timeout
        .min(settings.idle_timeout)
        .checked_div(4)
        .unwrap_or_default()
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut closing: Option<Instant> = None;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    debug!(peer_ip = %peer_ip, error = %e, "connection ended with an error");
                }
                break;
            }
            _ = stop.wait_for(|stopping| *stopping), if closing.is_none() => {
                connection.as_mut().graceful_shutdown();
                // The server bounds the whole shutdown; this only stops the watchdog acting.
                closing = Some(Instant::now() + settings.shutdown_timeout + CLOSE_GRACE);
            }
            () = tokio::time::sleep(tick) => {
                if let Some(deadline) = closing {
                    if Instant::now() >= deadline {
                        break;
                    }
                    continue;
                }
                match activity.expired(header_timeout, settings.idle_timeout) {
                    None => {}
                    Some(Expired::Header) => {
                        info!(peer_ip = %peer_ip, "connection closed: request headers not received in time");
                        break;
                    }
                    Some(Expired::Idle) => {
                        debug!(peer_ip = %peer_ip, "closing idle connection");
                        connection.as_mut().graceful_shutdown();
                        closing = Some(Instant::now() + CLOSE_GRACE);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn watchdog_tells_header_from_idle() {
        let a = Arc::new(Activity::new());
        let header = Some(Duration::from_secs(5));
        let idle = Duration::from_secs(60);
        assert_eq!(a.expired(header, idle), None);
        tokio::time::advance(Duration::from_secs(2)).await;
        a.on_read();
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(a.expired(header, idle), Some(Expired::Header));
        // HTTP/2: no header limit, bytes between requests do not count.
        assert_eq!(a.expired(None, idle), None);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(a.expired(None, idle), Some(Expired::Idle));
        let guard = a.begin_request();
        tokio::time::advance(Duration::from_secs(600)).await;
        assert_eq!(
            a.expired(header, idle),
            None,
            "a request in progress is never idle"
        );
        // Bytes during a request (its body) do not start a new head.
        a.on_read();
        drop(guard);
        assert_eq!(a.expired(header, idle), None);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(a.expired(header, idle), Some(Expired::Idle));
    }
}
