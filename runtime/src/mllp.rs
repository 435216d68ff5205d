//! MLLP framing: `0x0B message 0x1C 0x0D`.
//!
//! Two uses:
//!
//! - **Inside an HTTP body.** InterSystems' HL7 HTTP operation writes its body through the
//!   `Framing` setting, whose default is MLLP, so a default install POSTs a framed message.
//!   [`strip_http_body`] removes the framing (tolerantly: see there) and leaves anything else
//!   untouched; the receiver calls it on every body.
//! - **Over TCP** (the MLLP sink and the intake's MLLP listener): [`frame`] wraps one
//!   message, [`Deframer`] splits a byte stream back into messages, [`read_message`] and
//!   [`write_message`] do both on tokio streams. A listener bounds what its peers can hold
//!   with [`ListenerLimits`]: a cap on open connections and an idle timeout
//!   ([`read_message_within`]), so idle connections cannot exhaust the process's file
//!   descriptors and stop every other listener with them. These are strict: bytes outside a frame other
//!   than line breaks and spaces, a start byte inside a frame, or an end byte not followed by
//!   CR are errors, because on a raw TCP stream they mean the two sides disagree about framing
//!   and every later message would be cut wrongly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Start block, VT.
pub const START_BLOCK: u8 = 0x0B;
/// End block, FS.
pub const END_BLOCK: u8 = 0x1C;
/// Carriage return, after the end block.
pub const CARRIAGE_RETURN: u8 = 0x0D;

/// The message inside an HTTP body that may carry MLLP framing.
///
/// Removes, each independently so that a half-framed body is cleaned too: a leading start
/// block (after any leading CR, LF, space or tab), and a trailing end block followed by
/// nothing, CR, LF or CRLF (and any spaces or tabs). A body without framing comes back
/// unchanged, byte for byte: segment separators (CR, LF, CRLF) are the parser's business.
pub fn strip_http_body(body: &[u8]) -> &[u8] {
    body.get(unframed_range(body)).unwrap_or_default()
}

/// Where [`strip_http_body`]'s result lies in `body` (to slice a shared buffer without a
/// copy).
pub fn unframed_range(body: &[u8]) -> std::ops::Range<usize> {
    let mut start = 0;
    let mut end = body.len();
    let lead = body
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n' | b' ' | b'\t'));
    if let Some(at) = lead
        && body.get(at) == Some(&START_BLOCK)
    {
        start = at + 1;
    }
    // Trailing: [FS] [CR] [LF], with FS required for anything to be removed.
    let mut tail = end;
    while tail > start && matches!(body.get(tail - 1), Some(b' ' | b'\t')) {
        tail -= 1;
    }
    if tail > start && body.get(tail - 1) == Some(&b'\n') {
        tail -= 1;
    }
    if tail > start && body.get(tail - 1) == Some(&CARRIAGE_RETURN) {
        tail -= 1;
    }
    if tail > start && body.get(tail - 1) == Some(&END_BLOCK) {
        end = tail - 1;
    }
    start..end
}

/// One message framed for MLLP: `0x0B message 0x1C 0x0D`.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 3);
    out.push(START_BLOCK);
    out.extend_from_slice(message);
    out.push(END_BLOCK);
    out.push(CARRIAGE_RETURN);
    out
}

/// What went wrong reading MLLP frames from a stream.
#[derive(Debug, thiserror::Error)]
pub enum MllpError {
    /// A byte outside any frame that is not a line break or space.
    #[error("byte 0x{byte:02X} outside an MLLP frame (expected 0x0B to start one)")]
    OutsideFrame {
        /// The byte.
        byte: u8,
    },
    /// A start block inside a frame.
    #[error("start block 0x0B inside an MLLP frame (the previous frame was not ended)")]
    NestedStart,
    /// An end block followed by something other than CR.
    #[error("end block 0x1C followed by 0x{byte:02X}, not 0x0D")]
    BadTrailer {
        /// The byte after the end block.
        byte: u8,
    },
    /// A frame longer than the limit.
    #[error("MLLP message longer than {limit} bytes")]
    TooLong {
        /// The limit.
        limit: usize,
    },
    /// The stream ended inside a frame.
    #[error("the connection ended inside an MLLP frame")]
    Truncated,
    /// No byte arrived within the idle timeout.
    #[error("no byte for {} s: the connection is idle", .0.as_secs_f64())]
    Idle(Duration),
    /// The stream failed.
    #[error("MLLP I/O error: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between frames.
    Outside,
    /// Inside a frame.
    Inside,
    /// Just read the end block; CR must follow.
    AfterEnd,
}

/// Splits a byte stream into MLLP messages, incrementally.
///
/// [`push`](Self::push) bytes as they arrive, then take messages with
/// [`next_message`](Self::next_message) until it returns `Ok(None)`. After an error the
/// stream's framing is lost: close the connection.
#[derive(Debug)]
pub struct Deframer {
    buf: Vec<u8>,
    /// How far `buf` has been scanned.
    pos: usize,
    state: State,
    /// Start of the current message in `buf` (after the start block).
    msg_start: usize,
    limit: usize,
}

impl Deframer {
    /// A deframer accepting messages of up to `max_message` bytes (framing not counted).
    pub fn new(max_message: usize) -> Self {
        Self {
            buf: Vec::new(),
            pos: 0,
            state: State::Outside,
            msg_start: 0,
            limit: max_message,
        }
    }

    /// Adds bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Whether a frame has started and not ended (the stream must not end here).
    pub fn in_frame(&self) -> bool {
        self.state != State::Outside
    }

    /// The next complete message, if the bytes pushed so far hold one.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, MllpError> {
        while let Some(&byte) = self.buf.get(self.pos) {
            match self.state {
                State::Outside => match byte {
                    START_BLOCK => {
                        self.state = State::Inside;
                        self.msg_start = self.pos + 1;
                    }
                    b'\r' | b'\n' | b' ' | b'\t' => {}
                    other => return Err(MllpError::OutsideFrame { byte: other }),
                },
                State::Inside => match byte {
                    END_BLOCK => self.state = State::AfterEnd,
                    START_BLOCK => return Err(MllpError::NestedStart),
                    _ => {
                        if self.pos - self.msg_start >= self.limit {
                            return Err(MllpError::TooLong { limit: self.limit });
                        }
                    }
                },
                State::AfterEnd => {
                    if byte != CARRIAGE_RETURN {
                        return Err(MllpError::BadTrailer { byte });
                    }
                    // The message is buf[msg_start .. pos - 1] (before the end block).
                    let message = self
                        .buf
                        .get(self.msg_start..self.pos.saturating_sub(1))
                        .map(<[u8]>::to_vec)
                        .unwrap_or_default();
                    self.buf.drain(..=self.pos);
                    self.pos = 0;
                    self.msg_start = 0;
                    self.state = State::Outside;
                    return Ok(Some(message));
                }
            }
            self.pos += 1;
        }
        if self.state == State::Outside {
            // Nothing but whitespace scanned: forget it.
            self.buf.clear();
            self.pos = 0;
        }
        Ok(None)
    }
}

/// Reads the next MLLP message from a stream. `Ok(None)` when the stream ends cleanly
/// between frames.
pub async fn read_message<R>(
    reader: &mut R,
    deframer: &mut Deframer,
) -> Result<Option<Vec<u8>>, MllpError>
where
    R: AsyncRead + Unpin,
{
    read_message_within(reader, deframer, None).await
}

/// [`read_message`], failing with [`MllpError::Idle`] when no byte arrives for `idle`
/// (between messages or inside one).
pub async fn read_message_within<R>(
    reader: &mut R,
    deframer: &mut Deframer,
    idle: Option<Duration>,
) -> Result<Option<Vec<u8>>, MllpError>
where
    R: AsyncRead + Unpin,
{
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(message) = deframer.next_message()? {
            return Ok(Some(message));
        }
        let n = match idle {
            Some(limit) => tokio::time::timeout(limit, reader.read(&mut chunk))
                .await
                .map_err(|_| MllpError::Idle(limit))??,
            None => reader.read(&mut chunk).await?,
        };
        if n == 0 {
            return if deframer.in_frame() {
                Err(MllpError::Truncated)
            } else {
                Ok(None)
            };
        }
        deframer.push(chunk.get(..n).unwrap_or_default());
    }
}

/// What an MLLP listener lets its peers hold: at most `max_connections` open at once (past
/// it a new connection is closed at once, logged), each closed after `idle_timeout` without
/// a byte. Cheap to clone: clones share the count.
#[derive(Debug, Clone)]
pub struct ListenerLimits {
    slots: Arc<Semaphore>,
    max_connections: usize,
    idle_timeout: Duration,
}

/// An open connection's place under [`ListenerLimits`]; given back when dropped.
#[derive(Debug)]
pub struct ConnectionSlot(#[allow(dead_code)] OwnedSemaphorePermit);

impl ListenerLimits {
    /// At most `max_connections` at once, each closed after `idle_timeout` without a byte.
    pub fn new(max_connections: usize, idle_timeout: Duration) -> Self {
        let max_connections = max_connections.min(Semaphore::MAX_PERMITS);
        Self {
            slots: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            idle_timeout,
        }
    }

    /// The limits of an environment's `limits:`.
    pub fn from_limits(limits: &crate::config::Limits) -> Self {
        Self::new(
            usize::try_from(limits.mllp_connections).unwrap_or(usize::MAX),
            limits.mllp_idle_timeout.to_std(),
        )
    }

    /// How long a connection may stay silent.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// A slot for a connection just accepted from `peer`, or `None` (logged) when every slot
    /// is taken: the caller closes the connection.
    pub fn admit(&self, peer: SocketAddr) -> Option<ConnectionSlot> {
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => Some(ConnectionSlot(permit)),
            Err(_) => {
                tracing::warn!(
                    peer = %peer,
                    open = self.max_connections,
                    "MLLP connection refused: too many connections"
                );
                None
            }
        }
    }
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self::from_limits(&crate::config::Limits::DEFAULT)
    }
}

/// Writes one message, framed, and flushes.
pub async fn write_message<W>(writer: &mut W, message: &[u8]) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    writer.write_all(&frame(message)).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_full_framing() {
        assert_eq!(
            strip_http_body(b"\x0bMSH|^~\\&|A\r\x1c\r"),
            b"MSH|^~\\&|A\r"
        );
        assert_eq!(
            strip_http_body(b"\x0bMSH|^~\\&|A\r\x1c\r\n"),
            b"MSH|^~\\&|A\r"
        );
        assert_eq!(strip_http_body(b"\x0bMSH|A\r\x1c"), b"MSH|A\r");
        assert_eq!(strip_http_body(b"\r\n\x0bMSH|A\r\x1c\r"), b"MSH|A\r");
    }

    #[test]
    fn leaves_unframed_bodies_alone() {
        for body in [
            &b"MSH|^~\\&|A\rPID|1\r"[..],
            b"MSH|^~\\&|A\nPID|1\n",
            b"MSH|^~\\&|A\r\nPID|1\r\n",
            b"",
            b"\r\n",
        ] {
            assert_eq!(strip_http_body(body), body);
        }
    }

    #[test]
    fn strips_half_framing() {
        assert_eq!(strip_http_body(b"\x0bMSH|A\r"), b"MSH|A\r");
        assert_eq!(strip_http_body(b"MSH|A\r\x1c\r"), b"MSH|A\r");
        assert_eq!(strip_http_body(b"\x0b"), b"");
        assert_eq!(strip_http_body(b"\x0b\x1c\r"), b"");
        assert_eq!(strip_http_body(b"\x1c\r"), b"");
    }

    #[test]
    fn frames_and_deframes() {
        let mut d = Deframer::new(100);
        let mut stream = frame(b"MSH|one\r");
        stream.extend_from_slice(b"\r\n");
        stream.extend(frame(b"MSH|two\r"));
        // Byte by byte: the deframer must not care how the stream is cut.
        let mut out = Vec::new();
        for b in &stream {
            d.push(std::slice::from_ref(b));
            while let Some(m) = d.next_message().unwrap() {
                out.push(m);
            }
        }
        assert_eq!(out, vec![b"MSH|one\r".to_vec(), b"MSH|two\r".to_vec()]);
        assert!(!d.in_frame());
    }

    #[test]
    fn deframer_errors() {
        let mut d = Deframer::new(100);
        d.push(b"x");
        assert!(matches!(
            d.next_message(),
            Err(MllpError::OutsideFrame { byte: b'x' })
        ));
        let mut d = Deframer::new(100);
        d.push(b"\x0babc\x0b");
        assert!(matches!(d.next_message(), Err(MllpError::NestedStart)));
        let mut d = Deframer::new(100);
        d.push(b"\x0babc\x1cX");
        assert!(matches!(
            d.next_message(),
            Err(MllpError::BadTrailer { byte: b'X' })
        ));
        let mut d = Deframer::new(3);
        d.push(b"\x0babc\x1c\r");
        assert_eq!(d.next_message().unwrap(), Some(b"abc".to_vec()));
        d.push(b"\x0babcd\x1c\r");
        assert!(matches!(
            d.next_message(),
            Err(MllpError::TooLong { limit: 3 })
        ));
    }

    #[tokio::test]
    async fn reads_and_writes_streams() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            write_message(&mut a, b"MSH|1\r").await.unwrap();
            write_message(&mut a, &vec![b'x'; 500]).await.unwrap();
        });
        let mut d = Deframer::new(1000);
        assert_eq!(
            read_message(&mut b, &mut d).await.unwrap(),
            Some(b"MSH|1\r".to_vec())
        );
        assert_eq!(
            read_message(&mut b, &mut d).await.unwrap(),
            Some(vec![b'x'; 500])
        );
        writer.await.unwrap();
        assert_eq!(read_message(&mut b, &mut d).await.unwrap(), None);

        let (mut a, mut b) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut a, b"\x0bMSH|cut")
            .await
            .unwrap();
        drop(a);
        let mut d = Deframer::new(1000);
        assert!(matches!(
            read_message(&mut b, &mut d).await,
            Err(MllpError::Truncated)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_is_idle_even_inside_a_frame() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let idle = Some(Duration::from_secs(60));
        let mut d = Deframer::new(1000);
        tokio::io::AsyncWriteExt::write_all(&mut a, b"\x0bMSH|half")
            .await
            .unwrap();
        assert!(matches!(
            read_message_within(&mut b, &mut d, idle).await,
            Err(MllpError::Idle(_))
        ));
        // Bytes keep a connection alive however long the whole message takes.
        let mut d = Deframer::new(1000);
        let writer = tokio::spawn(async move {
            for part in [&b"\x0bMSH|"[..], b"slow", b"\x1c\r"] {
                tokio::time::sleep(Duration::from_secs(45)).await;
                tokio::io::AsyncWriteExt::write_all(&mut a, part)
                    .await
                    .unwrap();
            }
            a
        });
        assert_eq!(
            read_message_within(&mut b, &mut d, idle).await.unwrap(),
            Some(b"MSH|slow".to_vec())
        );
        drop(writer.await.unwrap());
    }

    #[test]
    fn a_listener_admits_up_to_its_cap() {
        let limits = ListenerLimits::new(2, Duration::from_secs(1));
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let first = limits.admit(peer).unwrap();
        let _second = limits.clone().admit(peer).unwrap();
        assert!(limits.admit(peer).is_none(), "clones share the count");
        drop(first);
        assert!(limits.admit(peer).is_some());
    }
}
