//! The host's receive listener: one TCP socket for every customer, each connection routed
//! by the TLS server name (SNI) in its ClientHello to that customer's own receiver.
//!
//! The ClientHello is only *peeked* (read without being consumed, parsed by rustls'
//! [`Acceptor`]), so the customer's receiver then runs its unchanged accept path on the
//! untouched connection ([`crate::server::Receiver::routed`]): its IP allowlist, its
//! admission (connections, per address, handshakes), the handshake with its own
//! certificate, client CA and CRLs, its subject allowlist, its limits, store and ACK.
//!
//! Before the name is known, the host bounds the connections still sending their
//! ClientHello with an admission of its own (per address and in total) and a time limit;
//! a connection gives that slot back as soon as it is routed (a refused one once its alert
//! is sent). A flood of complete ClientHellos at one customer's name therefore only takes
//! the host's ClientHello slots for the moment it takes to read one, then that customer's
//! own slots, never another customer's. Connections that stall before their server name
//! arrives share the host's pool (per address and in total, each for at most the time
//! limit): an attacker with many addresses can fill it for every customer, as with any
//! front end that must read the name before it knows the customer.
//!
//! A connection without a server name, with a name no customer serves, or with a
//! ClientHello that does not parse is refused in the handshake: the host completes the
//! handshake with a configuration that has no certificate, so rustls answers with a fatal
//! `access_denied` alert (or `decode_error`) and no customer sees it. Each refusal is
//! counted in `hl7gw_host_connections_refused_total{reason}`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustls::server::{Acceptor, ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::admission::Admission;
use crate::server::{RoutedConnection, canonical_ip};

/// The largest ClientHello the host reads (several TLS records; real ones are under 2 KiB).
const MAX_HELLO: usize = 32 * 1024;

/// How long a refused client gets to take its alert.
const REFUSAL_TIME: Duration = Duration::from_secs(2);

/// Why the host refused a connection before any customer saw it: the
/// `hl7gw_host_connections_refused_total` reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The ClientHello named no server.
    MissingName,
    /// The ClientHello named a server no customer of this host serves.
    UnknownName,
    /// The first bytes are not a TLS ClientHello.
    Malformed,
    /// The ClientHello did not arrive within the time limit.
    Timeout,
    /// The host's ClientHello slots (per address or in total) were taken.
    Capacity,
    /// The customer's receiver has a backlog of routed connections it has not taken.
    Backlog,
    /// The customer's gateway has stopped, or did not start.
    Stopped,
}

impl Refusal {
    /// Every reason, in the order `/metrics` lists them.
    pub const ALL: [Refusal; 7] = [
        Self::MissingName,
        Self::UnknownName,
        Self::Malformed,
        Self::Timeout,
        Self::Capacity,
        Self::Backlog,
        Self::Stopped,
    ];

    /// The metric's `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingName => "missing_name",
            Self::UnknownName => "unknown_name",
            Self::Malformed => "malformed",
            Self::Timeout => "timeout",
            Self::Capacity => "capacity",
            Self::Backlog => "backlog",
            Self::Stopped => "stopped",
        }
    }
}

/// The host's own counters (the customers' are in their registries).
#[derive(Debug, Default)]
pub struct HostCounters {
    accepted: AtomicU64,
    refused: [AtomicU64; Refusal::ALL.len()],
}

impl HostCounters {
    /// One refusal.
    fn refused(&self, why: Refusal) {
        if let Some(i) = Refusal::ALL.iter().position(|r| *r == why)
            && let Some(counter) = self.refused.get(i)
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Refusals so far for `why`.
    pub fn refused_count(&self, why: Refusal) -> u64 {
        Refusal::ALL
            .iter()
            .position(|r| *r == why)
            .and_then(|i| self.refused.get(i))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// The host's series in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# HELP hl7gw_host_connections_accepted_total TCP connections the host's receive listener accepted, before routing.\n\
             # TYPE hl7gw_host_connections_accepted_total counter\n",
        );
        out.push_str(&format!(
            "hl7gw_host_connections_accepted_total {}\n",
            self.accepted.load(Ordering::Relaxed)
        ));
        out.push_str(
            "# HELP hl7gw_host_connections_refused_total Connections the host refused before routing them to a customer, by reason.\n\
             # TYPE hl7gw_host_connections_refused_total counter\n",
        );
        for why in Refusal::ALL {
            out.push_str(&format!(
                "hl7gw_host_connections_refused_total{{reason=\"{}\"}} {}\n",
                why.as_str(),
                self.refused_count(why)
            ));
        }
        out
    }
}

/// Where each server name goes: lower-case host name to its customer's receiver.
pub(crate) struct Routes {
    by_name: HashMap<String, Route>,
}

struct Route {
    customer: String,
    connections: mpsc::Sender<RoutedConnection>,
}

impl Routes {
    pub(crate) fn new() -> Self {
        Self {
            by_name: HashMap::new(),
        }
    }

    /// Routes `hostname` to `customer`'s receiver.
    pub(crate) fn insert(
        &mut self,
        hostname: &str,
        customer: &str,
        connections: mpsc::Sender<RoutedConnection>,
    ) {
        self.by_name.insert(
            hostname.trim_end_matches('.').to_ascii_lowercase(),
            Route {
                customer: customer.to_owned(),
                connections,
            },
        );
    }

    fn get(&self, name: &str) -> Option<&Route> {
        self.by_name
            .get(&name.trim_end_matches('.').to_ascii_lowercase())
    }
}

/// How the host's front admits connections before their name is known.
#[derive(Debug, Clone, Copy)]
pub struct FrontLimits {
    /// Time for the whole ClientHello to arrive.
    pub hello_timeout: Duration,
    /// Connections from one address still sending their ClientHello.
    pub per_ip: usize,
    /// Connections still sending their ClientHello, in total.
    pub pending: usize,
}

/// The host's receive listener, bound.
pub(crate) struct Front {
    pub(crate) listener: TcpListener,
    pub(crate) routes: Arc<Routes>,
    pub(crate) counters: Arc<HostCounters>,
    pub(crate) limits: FrontLimits,
    pub(crate) refusal: TlsAcceptor,
}

impl Front {
    /// Accepts and routes until `shutdown` completes. Connections already routed belong to
    /// their customers' receivers, which drain them on their own shutdown.
    pub(crate) async fn run(self, shutdown: impl Future<Output = ()>) {
        let Self {
            listener,
            routes,
            counters,
            limits,
            refusal,
        } = self;
        let admission = Admission::new(limits.per_ip, limits.pending);
        let mut tasks = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        counters.accepted.fetch_add(1, Ordering::Relaxed);
                        let ip = canonical_ip(peer.ip());
                        let slots = match admission.admit(ip) {
                            Ok(slots) => slots,
                            Err(refused) => {
                                counters.refused(Refusal::Capacity);
                                info!(peer_ip = %ip, reason = refused.reason(), "host: connection refused before routing: no ClientHello slot");
                                drop(tcp);
                                continue;
                            }
                        };
                        let (routes, counters, refusal) = (routes.clone(), counters.clone(), refusal.clone());
                        tasks.spawn(async move {
                            let routed = route(&routes, tcp, peer, ip, limits.hello_timeout).await;
                            // Routed: the ClientHello slot goes to the next one. Refused: it is
                            // held until the alert is sent, so a flood of bad names stays
                            // within the host's slots instead of growing tasks and sockets.
                            if let Err((why, tcp)) = routed {
                                counters.refused(why);
                                info!(peer_ip = %ip, reason = why.as_str(), "host: connection refused in the handshake");
                                if let Some(tcp) = tcp {
                                    let _ = tokio::time::timeout(REFUSAL_TIME, refusal.accept(tcp)).await;
                                }
                            }
                            drop(slots);
                        });
                    }
                    Err(e) => {
                        warn!(error = %e, "host: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        drop(listener);
        tasks.shutdown().await;
    }
}

/// Hands `tcp` to the customer its ClientHello names, or says why not (with the connection
/// when a refusal alert can still be sent on it).
async fn route(
    routes: &Routes,
    tcp: TcpStream,
    peer: SocketAddr,
    ip: IpAddr,
    hello_timeout: Duration,
) -> Result<(), (Refusal, Option<TcpStream>)> {
    let name = match tokio::time::timeout(hello_timeout, peek_server_name(&tcp)).await {
        Err(_) => return Err((Refusal::Timeout, None)),
        Ok(Err(Hello::Closed)) => {
            debug!(peer_ip = %ip, "host: connection closed before its ClientHello");
            return Ok(());
        }
        Ok(Err(Hello::Malformed)) => return Err((Refusal::Malformed, Some(tcp))),
        Ok(Err(Hello::Unavailable)) => return Err((Refusal::Capacity, Some(tcp))),
        Ok(Ok(None)) => return Err((Refusal::MissingName, Some(tcp))),
        Ok(Ok(Some(name))) => name,
    };
    let Some(route) = routes.get(&name) else {
        return Err((Refusal::UnknownName, Some(tcp)));
    };
    match route.connections.try_send(RoutedConnection { tcp, peer }) {
        Ok(()) => {
            debug!(peer_ip = %ip, customer = %route.customer, "host: connection routed");
            Ok(())
        }
        Err(TrySendError::Full(c)) => Err((Refusal::Backlog, Some(c.tcp))),
        Err(TrySendError::Closed(c)) => Err((Refusal::Stopped, Some(c.tcp))),
    }
}

/// Why no server name was read.
enum Hello {
    /// The peer closed (or reset) before sending a whole ClientHello.
    Closed,
    /// The bytes are not a ClientHello.
    Malformed,
    /// The socket could not be peeked (no second descriptor: the process is out of them).
    Unavailable,
}

/// The server name of the ClientHello waiting on `tcp`, without consuming a byte. A
/// ClientHello that arrives in pieces is re-read until whole (the caller bounds the time).
async fn peek_server_name(tcp: &TcpStream) -> Result<Option<String>, Hello> {
    peek_counted(tcp, &mut 0).await
}

/// [`peek_server_name`], counting in `peeks` how often the socket was peeked (a test checks
/// that a ClientHello trickling in is peeked once per arrival, not polled).
async fn peek_counted(tcp: &TcpStream, peeks: &mut u32) -> Result<Option<String>, Hello> {
    let probe = Probe::new(tcp).map_err(|e| {
        warn!(error = %e, "host: a connection cannot be peeked (out of file descriptors?); refused");
        Hello::Unavailable
    })?;
    let mut buf = vec![0u8; MAX_HELLO];
    let mut seen = 0;
    loop {
        let n = probe
            .more_than(tcp, &mut buf, seen)
            .await
            .map_err(|_| Hello::Closed)?;
        *peeks += 1;
        if n == 0 {
            return Err(Hello::Closed);
        }
        seen = n;
        if !worth_parsing(buf.get(..n).unwrap_or_default()) {
            continue;
        }
        let mut acceptor = Acceptor::default();
        let mut data = buf.get(..n).unwrap_or_default();
        while !data.is_empty() {
            match acceptor.read_tls(&mut data) {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => return Err(Hello::Malformed),
            }
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                return Ok(accepted.client_hello().server_name().map(str::to_owned));
            }
            Ok(None) if n < MAX_HELLO => {}
            Ok(None) | Err(_) => return Err(Hello::Malformed),
        }
    }
}

/// Peeks at a connection's first bytes without consuming them, waking only when more
/// arrive. A peek leaves the bytes in the socket, so it stays readable: a peek that finds
/// nothing new clears the readiness it was taken under (`try_io`), and the next wait lasts
/// until the next bytes (or the close) arrive. Readiness that arrives during the peek has a
/// newer tick and is not cleared, so no arrival is missed.
struct Probe {
    /// The same socket through a second descriptor (non-blocking like the first), for a
    /// synchronous peek inside `try_io`.
    #[cfg(unix)]
    peer: std::net::TcpStream,
}

impl Probe {
    #[cfg(unix)]
    fn new(tcp: &TcpStream) -> std::io::Result<Self> {
        use std::os::fd::AsFd;
        Ok(Self {
            peer: std::net::TcpStream::from(tcp.as_fd().try_clone_to_owned()?),
        })
    }

    /// Waits until the socket holds more than `seen` bytes: how many it holds, copied into
    /// `buf`; 0 once the peer has closed with nothing more.
    #[cfg(unix)]
    async fn more_than(
        &self,
        tcp: &TcpStream,
        buf: &mut [u8],
        seen: usize,
    ) -> std::io::Result<usize> {
        use std::io::ErrorKind::WouldBlock;
        use tokio::io::Interest;
        loop {
            let ready = tcp.ready(Interest::READABLE).await?;
            let peeked = tcp.try_io(Interest::READABLE, || match self.peer.peek(&mut *buf)? {
                n if n == seen && n != 0 => Err(WouldBlock.into()),
                n => Ok(n),
            });
            match peeked {
                // The peer has closed and nothing new came: nothing more ever will (the
                // closed state stays ready, so waiting again would not wait).
                Err(e) if e.kind() == WouldBlock && ready.is_read_closed() => return Ok(0),
                Err(e) if e.kind() == WouldBlock => continue,
                other => return other,
            }
        }
    }

    #[cfg(not(unix))]
    fn new(_tcp: &TcpStream) -> std::io::Result<Self> {
        Ok(Self {})
    }

    /// Elsewhere than Unix: peek, and poll every 5 ms while nothing new has come.
    #[cfg(not(unix))]
    async fn more_than(
        &self,
        tcp: &TcpStream,
        buf: &mut [u8],
        seen: usize,
    ) -> std::io::Result<usize> {
        loop {
            let n = tcp.peek(buf).await?;
            if n != seen || n == 0 {
                return Ok(n);
            }
            // Without readiness to clear, a peer that closed after part of a ClientHello
            // is only noticed by the caller's time limit.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Whether the peeked bytes are worth handing to rustls: the first TLS record is whole (a
/// ClientHello nearly always fits one), or the bytes cannot be a handshake record at all
/// (rustls then says malformed at once). A ClientHello trickling in is so parsed once per
/// completed record, not once per peek.
fn worth_parsing(data: &[u8]) -> bool {
    /// TLS handshake record type.
    const HANDSHAKE: u8 = 0x16;
    /// The largest record body TLS allows (2^14 plus the ciphertext expansion).
    const MAX_RECORD: usize = (1 << 14) + 2048;
    match (data.first(), data.get(3..5)) {
        (Some(&kind), _) if kind != HANDSHAKE => true,
        (_, Some(&[high, low])) => {
            let body = usize::from(u16::from_be_bytes([high, low]));
            body > MAX_RECORD || data.len() >= 5 + body
        }
        _ => false,
    }
}

/// A TLS acceptor that has no certificate for anyone: rustls ends its handshakes with a
/// fatal alert.
pub(crate) fn refusal_acceptor() -> Result<TlsAcceptor, rustls::Error> {
    let config = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(NoCertificate));
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[derive(Debug)]
struct NoCertificate;

impl ResolvesServerCert for NoCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Sends `pieces` 50 ms apart on a fresh loopback connection; the server side's peek,
    /// then every byte the server can still read.
    async fn peeked(pieces: Vec<Vec<u8>>) -> (Result<Option<String>, &'static str>, Vec<u8>) {
        let (name, rest, _) = peeked_counted(pieces).await;
        (name, rest)
    }

    /// [`peeked`], with how many peeks the server side made.
    async fn peeked_counted(
        pieces: Vec<Vec<u8>>,
    ) -> (Result<Option<String>, &'static str>, Vec<u8>, u32) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            for piece in pieces {
                tcp.write_all(&piece).await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tcp.shutdown().await.unwrap();
        });
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut peeks = 0;
        let peek = peek_counted(&tcp, &mut peeks);
        let name = match tokio::time::timeout(Duration::from_secs(1), peek).await {
            Err(_) => Err("timeout"),
            Ok(Ok(name)) => Ok(name),
            Ok(Err(Hello::Closed)) => Err("closed"),
            Ok(Err(Hello::Malformed)) => Err("malformed"),
            Ok(Err(Hello::Unavailable)) => Err("unavailable"),
        };
        client.await.unwrap();
        let mut rest = Vec::new();
        tcp.read_to_end(&mut rest).await.unwrap();
        (name, rest, peeks)
    }

    #[tokio::test]
    async fn the_server_name_is_read_without_consuming_the_client_hello() {
        let hello = hl7gw_tests::wire::client_hello("Demo-Test.api.example-ems.cloud");
        let (first, second) = hello.split_at(hello.len() / 2);
        let (name, rest) = peeked(vec![first.to_vec(), second.to_vec()]).await;
        assert_eq!(name, Ok(Some("demo-test.api.example-ems.cloud".into())));
        assert_eq!(
            rest, hello,
            "every byte is left for the customer's handshake"
        );
        let (name, _) = peeked(vec![hl7gw_tests::wire::client_hello("127.0.0.1")]).await;
        assert_eq!(name, Ok(None), "an IP address sends no server name");
    }

    /// A ClientHello in five pieces 50 ms apart is peeked about once per piece, not polled
    /// for the 200 ms it trickles in (every 5 ms would be about 40 peeks).
    #[tokio::test]
    async fn a_trickling_client_hello_is_peeked_once_per_arrival() {
        let hello = hl7gw_tests::wire::client_hello("demo-test.api.example-ems.cloud");
        let pieces: Vec<Vec<u8>> = hello
            .chunks(hello.len() / 5 + 1)
            .map(<[u8]>::to_vec)
            .collect();
        assert_eq!(pieces.len(), 5);
        let (name, rest, peeks) = peeked_counted(pieces).await;
        assert_eq!(name, Ok(Some("demo-test.api.example-ems.cloud".into())));
        assert_eq!(rest, hello);
        assert!((5..=10).contains(&peeks), "{peeks} peeks");
    }

    #[tokio::test]
    async fn what_is_not_a_client_hello_is_malformed_and_half_of_one_waits_for_the_rest() {
        let (name, _) = peeked(vec![b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()]).await;
        assert_eq!(name, Err("malformed"));
        let (name, _) = peeked(vec![]).await;
        assert_eq!(name, Err("closed"));
        // Part of one, then the peer closes: nothing more can come.
        let hello = hl7gw_tests::wire::client_hello("demo-test.api.example-ems.cloud");
        let (name, _) = peeked(vec![hello[..10].to_vec()]).await;
        assert_eq!(name, Err("closed"));
        // Part of one on a connection kept open: the rest may still come, so only the
        // caller's ClientHello limit ends the wait.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        client.write_all(&hello[..10]).await.unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(300), peek_server_name(&tcp)).await;
        assert!(waited.is_err(), "it did not wait for the rest");
    }

    /// rustls sees the bytes once the first record is whole, or at once when they are not
    /// a handshake record; a header claiming an impossible length is not waited for.
    #[test]
    fn a_client_hello_is_parsed_once_its_first_record_is_whole() {
        let hello = hl7gw_tests::wire::client_hello("demo-test.api.example-ems.cloud");
        assert!(!worth_parsing(&hello[..4]));
        assert!(!worth_parsing(&hello[..hello.len() - 1]));
        assert!(worth_parsing(&hello));
        assert!(worth_parsing(b"GET / HTTP/1.1\r\n"));
        assert!(worth_parsing(&[0x16, 3, 1, 0xff, 0xff]));
    }

    #[test]
    fn routes_ignore_case_and_a_trailing_dot() {
        let (route, _keep) = mpsc::channel(1);
        let mut routes = Routes::new();
        routes.insert("Demo-Test.api.example-ems.cloud", "demo", route);
        assert!(routes.get("demo-test.api.example-ems.cloud.").is_some());
        assert!(routes.get("northwest-test.api.example-ems.cloud").is_none());
    }
}
