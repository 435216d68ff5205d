//! Serving one EMS-facing listener: the accept loops the inbox API, the intake (HTTP and
//! MLLP) and the host's shared EMS side ([`crate::host`]) have in common. Each connection
//! passes its listener's door first ([`crate::ems`]: admission, then the TLS handshake and
//! subject check, or plain loopback), then is served by the caller's `answer`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::ems::EmsDoor;
use crate::mllp::ListenerLimits;
use crate::sink::inbox::Reply;

/// How long an HTTP listener's shutdown waits for requests in progress.
const DRAIN: Duration = Duration::from_secs(5);

/// How long to wait after a failed accept (out of file descriptors and the like), without
/// blocking the runtime's thread.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// The next connection, or `None` once `stop` turns true. Failed accepts are logged and
/// retried after [`ACCEPT_RETRY`].
async fn next_connection(
    listener: &TcpListener,
    stop: &mut watch::Receiver<bool>,
    door: &EmsDoor,
) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    loop {
        // The select ends before anything is awaited: its output must not hold the watch
        // guard across an await (not Send).
        let accepted = tokio::select! {
            accepted = listener.accept() => Some(accepted),
            _ = stop.wait_for(|s| *s) => None,
        };
        match accepted? {
            Ok(connection) => return Some(connection),
            Err(e) => {
                tracing::warn!("{}: accept failed: {e}", door.role());
                tokio::time::sleep(ACCEPT_RETRY).await;
            }
        }
    }
}

/// Serves HTTP/1.1 on `listener` behind `door` until `stop` turns true, each request of an
/// admitted connection answered by `answer(request, peer)`; then stops accepting, drops TLS
/// handshakes still under way, and waits up to 5 s for requests in progress.
pub(crate) async fn serve_http<A, F>(
    listener: TcpListener,
    door: EmsDoor,
    mut stop: watch::Receiver<bool>,
    answer: A,
) where
    A: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Reply> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    while let Some((stream, peer)) = next_connection(&listener, &mut stop, &door).await {
        let Some(admitted) = door.admit(peer) else {
            continue;
        };
        let answer = answer.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let answer = answer.clone();
            async move { Ok::<_, Infallible>(answer(request, peer).await) }
        });
        let watcher = graceful.watcher();
        let (door, mut stop) = (door.clone(), stop.clone());
        tokio::spawn(async move {
            let Some((stream, _held)) = door.accept(stream, peer, admitted, &mut stop).await else {
                return;
            };
            // With a timer, hyper bounds reading a request head and the wait for the next
            // one (30 s); the APIs bound their bodies.
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!("{} connection from {peer}: {e}", door.role());
            }
        });
    }
    let role = door.role();
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("{role}: requests still running after {DRAIN:?}; closing");
    }
}

/// Serves MLLP on `listener` behind `door` until `stop` turns true: an authenticated
/// connection takes one of `limits`' slots, then each framed message is answered by
/// `answer(message, peer)` before the next is read ([`crate::intake::serve_mllp`]).
pub(crate) async fn serve_mllp<A, F>(
    listener: TcpListener,
    door: EmsDoor,
    limits: ListenerLimits,
    mut stop: watch::Receiver<bool>,
    answer: A,
) where
    A: Fn(Vec<u8>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Option<Vec<u8>>> + Send + 'static,
{
    while let Some((stream, peer)) = next_connection(&listener, &mut stop, &door).await {
        let Some(admitted) = door.admit(peer) else {
            continue;
        };
        let (door, limits, answer, mut stop) =
            (door.clone(), limits.clone(), answer.clone(), stop.clone());
        tokio::spawn(async move {
            let Some((stream, _held)) = door.accept(stream, peer, admitted, &mut stop).await else {
                return;
            };
            // An MLLP slot only once the client is authenticated: a flood without
            // certificates never holds one.
            let Some(_slot) = limits.admit(peer) else {
                return;
            };
            crate::intake::serve_mllp(stream, limits.idle_timeout(), |message| {
                answer(message, peer)
            })
            .await;
        });
    }
}
