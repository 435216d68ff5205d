//! A loopback TCP proxy that counts how often its clients waited for the server: a *turn* is
//! a client sending after the server last spoke on that connection (or first), so each
//! sequential round trip is one turn, and requests a client pipelines before it reads an
//! answer share one. The store's tests count a PostgreSQL transaction's round trips with it
//! (`runtime/src/store/postgres/tests.rs`), which no timing could show reliably.
//!
//! Only tests link this; a proxy that cannot listen is reported, hence `expect`.
#![allow(clippy::expect_used)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a blocked accept or read waits before it looks at the stop flag again.
const POLL: Duration = Duration::from_millis(20);

/// The proxy: listens on 127.0.0.1 and forwards every connection to a server on
/// 127.0.0.1; stops when dropped (its threads end within 20 ms of that).
pub struct TurnCounter {
    port: u16,
    turns: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl TurnCounter {
    /// A proxy on a free port of 127.0.0.1 to `127.0.0.1:target`.
    pub fn start(target: u16) -> Self {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("the turn counter listens");
        listener
            .set_nonblocking(true)
            .expect("the turn counter's listener polls");
        let port = listener
            .local_addr()
            .expect("the turn counter's port")
            .port();
        let turns = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (turns, stop) = (turns.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            let (turns, stop) = (turns.clone(), stop.clone());
                            std::thread::spawn(move || forward(client, target, &turns, &stop));
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL),
                        Err(_) => break,
                    }
                }
            })
        };
        Self {
            port,
            turns,
            stop,
            accept: Some(accept),
        }
    }

    /// The port to connect to instead of the server's.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The turns of every connection so far.
    pub fn turns(&self) -> u64 {
        self.turns.load(Ordering::SeqCst)
    }
}

impl Drop for TurnCounter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// Forwards one connection both ways until either side closes or the proxy stops. The
/// server's side marks that it spoke before its bytes reach the client, so the client's next
/// bytes, an answer to them, count as a new turn.
fn forward(client: TcpStream, target: u16, turns: &AtomicU64, stop: &Arc<AtomicBool>) {
    let Ok(server) = TcpStream::connect((Ipv4Addr::LOCALHOST, target)) else {
        return;
    };
    let (Ok(client_out), Ok(server_in)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let server_spoke = Arc::new(AtomicBool::new(true));
    let answers = {
        let (server_spoke, stop) = (server_spoke.clone(), stop.clone());
        std::thread::spawn(move || {
            pump(server_in, client_out, &stop, || {
                server_spoke.store(true, Ordering::SeqCst);
            });
        })
    };
    pump(client, server, stop, || {
        if server_spoke.swap(false, Ordering::SeqCst) {
            turns.fetch_add(1, Ordering::SeqCst);
        }
    });
    let _ = answers.join();
}

/// Copies `from` to `to`, calling `on_bytes` before each chunk is passed on.
fn pump(mut from: TcpStream, mut to: TcpStream, stop: &AtomicBool, on_bytes: impl Fn()) {
    let _ = (from.set_nodelay(true), to.set_nodelay(true));
    if from.set_read_timeout(Some(POLL)).is_err() {
        return;
    }
    let mut buf = vec![0; 64 * 1024];
    while !stop.load(Ordering::SeqCst) {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                on_bytes();
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
