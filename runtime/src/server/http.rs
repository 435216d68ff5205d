//! One HTTP request: the transport checks in the order of the module docs, the body, the
//! handler, the response. A request its client cancels (HTTP/2 RST_STREAM, or the connection
//! closed) is logged and counted as cancelled, never as a response that was not sent.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Version};
use tracing::info;

use super::conn::Activity;
use super::memory::{BodyError, RETRY_AFTER_SECS};
use super::{
    Handler, Hl7Request, Hl7Response, MediaType, RequestContentType, ResponseContentType, Shared,
};
use crate::hl7::Charset;
use crate::metrics::{cancelled, unexpected_media_label};

/// What the connection knows about its peer.
pub(super) struct ConnInfo {
    pub peer_ip: IpAddr,
    /// The allowed-client entry the certificate matched.
    pub subject: String,
    pub activity: Arc<Activity>,
}

/// A response before it becomes HTTP.
struct Reply {
    status: StatusCode,
    content_type: String,
    body: Bytes,
    /// The request body was not read: HTTP/1.1 must close after this response.
    close: bool,
    allow_post: bool,
    /// Message type and ACK code, for a 200.
    ack: Option<(String, String)>,
    request_bytes: usize,
    /// The client cancelled the request (why): no response reaches it.
    cancelled: Option<&'static str>,
    /// A 503 for spent body memory: tell the client when to retry.
    retry_after: bool,
}

impl Reply {
    fn text(status: StatusCode, message: impl Into<String>) -> Self {
        let mut text: String = message.into();
        text.push('\n');
        Self {
            status,
            content_type: "text/plain; charset=utf-8".to_owned(),
            body: Bytes::from(text),
            close: false,
            allow_post: false,
            ack: None,
            request_bytes: 0,
            cancelled: None,
            retry_after: false,
        }
    }

    /// The client went away while the body was arriving.
    fn cancelled(why: &'static str) -> Self {
        let mut reply = Self::text(StatusCode::BAD_REQUEST, "the request was cancelled").closing();
        reply.cancelled = Some(why);
        reply
    }

    fn closing(mut self) -> Self {
        self.close = true;
        self
    }
}

/// Serves one request. Never fails: every outcome is a response.
pub(super) async fn respond<H: Handler>(
    shared: Arc<Shared<H>>,
    conn: Arc<ConnInfo>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let _in_flight = conn.activity.begin_request();
    let started = Instant::now();
    let request_id = shared.request_id();
    let version = request.version();
    // hyper drops this future when the client resets the stream (or closes the connection)
    // while the message is processed; the watch then logs the cancellation.
    let mut watch = CancelWatch {
        shared: &shared,
        conn: &conn,
        request_id: &request_id,
        started,
        armed: true,
    };
    let reply = process(&shared, &conn, request, &request_id).await;
    watch.armed = false;

    let elapsed = started.elapsed();
    let latency_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    if let Some(why) = reply.cancelled {
        // The client is gone: the 400 below has nowhere to go (hyper returns it only if the
        // connection can still carry it), so it is neither logged nor counted as a response.
        shared.metrics.request_cancelled(cancelled::BODY);
        info!(
            request_id = %request_id,
            peer_ip = %conn.peer_ip,
            subject = %conn.subject,
            http = ?version,
            stage = cancelled::BODY,
            reason = why,
            latency_ms,
            "request cancelled by the client"
        );
    } else {
        shared.metrics.http_response(reply.status.as_u16());
        shared.metrics.request_latency(elapsed);
        if let Some((message_type, code)) = &reply.ack {
            shared.metrics.message(message_type, code);
        }
        info!(
            request_id = %request_id,
            peer_ip = %conn.peer_ip,
            subject = %conn.subject,
            http = ?version,
            status = reply.status.as_u16(),
            request_bytes = reply.request_bytes,
            response_bytes = reply.body.len(),
            latency_ms,
            message_type = reply.ack.as_ref().map(|(t, _)| t.as_str()),
            ack = reply.ack.as_ref().map(|(_, c)| c.as_str()),
            "request"
        );
    }

    let mut response = Response::new(Full::new(reply.body));
    *response.status_mut() = reply.status;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&reply.content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert("x-request-id", value);
    }
    if reply.allow_post {
        headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    if reply.retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    if reply.close && version < Version::HTTP_2 {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(response)
}

/// Logs a request whose future hyper dropped before it answered: the client reset the
/// stream or closed the connection while the message was processed (or the gateway stopped
/// past its shutdown limit). The processing itself runs on its own task and finishes.
struct CancelWatch<'a, H> {
    shared: &'a Shared<H>,
    conn: &'a ConnInfo,
    request_id: &'a str,
    started: Instant,
    armed: bool,
}

impl<H> Drop for CancelWatch<'_, H> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.shared.metrics.request_cancelled(cancelled::PROCESSING);
        info!(
            request_id = %self.request_id,
            peer_ip = %self.conn.peer_ip,
            subject = %self.conn.subject,
            stage = cancelled::PROCESSING,
            latency_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "request cancelled by the client before its response; processing goes on"
        );
    }
}

/// Whether the request's `Host` header (HTTP/1.1) or `:authority` (HTTP/2), without its
/// port, is `expected`, case ignored. A request naming no host does not.
fn names_host(request: &Request<Incoming>, expected: &str) -> bool {
    let named = request.uri().host().map(str::to_owned).or_else(|| {
        request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<hyper::http::uri::Authority>().ok())
            .map(|a| a.host().to_owned())
    });
    named.is_some_and(|host| host.trim_end_matches('.').eq_ignore_ascii_case(expected))
}

async fn process<H: Handler>(
    shared: &Arc<Shared<H>>,
    conn: &ConnInfo,
    request: Request<Incoming>,
    request_id: &str,
) -> Reply {
    let settings = &shared.settings;
    if let Some(expected) = &settings.expected_host
        && !names_host(&request, expected)
    {
        return Reply::text(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "this connection is for {expected}: the request's Host must name it (the TLS server name chose the customer)"
            ),
        )
        .closing();
    }
    if request.uri().path() != settings.path {
        return Reply::text(
            StatusCode::NOT_FOUND,
            format!(
                "no HL7 endpoint at this path: POST HL7 v2 messages to {}",
                settings.path
            ),
        )
        .closing();
    }
    if request.method() != Method::POST {
        let mut reply = Reply::text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "method {} not allowed: POST one HL7 v2 message per request",
                request.method()
            ),
        )
        .closing();
        reply.allow_post = true;
        return reply;
    }
    if request.body().size_hint().lower() > settings.max_body {
        return Reply::text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "body of {} bytes is over the limit of {} bytes",
                request.body().size_hint().lower(),
                settings.max_body
            ),
        )
        .closing();
    }
    let (declared, charset) = match content_type(request.headers().get(header::CONTENT_TYPE)) {
        Ok(found) => found,
        Err(message) => {
            return Reply::text(StatusCode::UNSUPPORTED_MEDIA_TYPE, message).closing();
        }
    };
    if let Declared::Other { shown, .. } = &declared
        && settings.request_content_type == RequestContentType::Strict
    {
        return Reply::text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported Content-Type {shown}: send one of {}",
                accepted()
            ),
        )
        .closing();
    }

    // Reading the body is what makes hyper send `100 Continue` to a client that asked.
    let collected = tokio::time::timeout(
        settings.body_timeout,
        shared
            .body_memory
            .read(request.into_body(), settings.max_body),
    )
    .await;
    let (body, reserved) = match collected {
        Err(_elapsed) => {
            return Reply::text(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {} s",
                    settings.body_timeout.as_secs_f64()
                ),
            )
            .closing();
        }
        Ok(Err(BodyError::TooLarge)) => {
            return Reply::text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body over the limit of {} bytes", settings.max_body),
            )
            .closing();
        }
        Ok(Err(BodyError::Spent)) => {
            let mut reply = Reply::text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the gateway holds as many message bodies as its memory limit allows ({} bytes); retry in {RETRY_AFTER_SECS} s",
                    shared.body_memory.total()
                ),
            )
            .closing();
            reply.retry_after = true;
            return reply;
        }
        Ok(Err(BodyError::Failed(e))) => {
            if let Some(why) = cancelled_by_client(e.as_ref()) {
                return Reply::cancelled(why);
            }
            return Reply::text(
                StatusCode::BAD_REQUEST,
                format!("the body could not be read: {e}"),
            )
            .closing();
        }
        Ok(Ok(read)) => read,
    };
    let request_bytes = body.len();
    let message = body.slice(crate::mllp::unframed_range(&body));
    let not_hl7 = |text: &str| {
        let mut reply = match &declared {
            // Lenient: an odd type was read in case the body is HL7; it is not.
            Declared::Other { shown, .. } => Reply::text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "unsupported Content-Type {shown}, and the body is not HL7 either ({text}): send one HL7 v2 message as one of {}",
                    accepted()
                ),
            ),
            _ => Reply::text(StatusCode::BAD_REQUEST, text),
        };
        reply.request_bytes = request_bytes;
        reply
    };
    if message
        .iter()
        .all(|b| matches!(b, b'\r' | b'\n' | b' ' | b'\t'))
    {
        return not_hl7("empty body: POST one HL7 v2 message");
    }

    let request = Hl7Request {
        body: message,
        charset,
        media_type: declared.media_type(),
        peer_ip: conn.peer_ip,
        peer_subject: conn.subject.clone(),
        request_id: request_id.to_owned(),
    };
    // On its own task, so that a client cancelling the request cannot cut the processing
    // short between the sink and the commit: it finishes, and a retry is answered from the
    // store.
    let handling = shared.clone();
    // The body's bytes stay reserved until the handler is done with them.
    let response = tokio::spawn(async move {
        let _reserved = reserved;
        handling.handler.handle(request).await
    })
    .await
    .unwrap_or_else(|_| {
        Hl7Response::Unavailable("the message could not be processed; retry".to_owned())
    });
    let mut reply = match response {
        Hl7Response::Ack(ack) => {
            if let Declared::Other { label, .. } = declared {
                shared.metrics.unexpected_content_type(label);
            }
            let media = match settings.response_content_type {
                ResponseContentType::FollowRequest => {
                    declared.media_type().unwrap_or(MediaType::TextPlain)
                }
                ResponseContentType::Fixed(media) => media,
            };
            Reply {
                status: StatusCode::OK,
                content_type: format!("{media}; charset={}", ack.charset.mime_name()),
                body: Bytes::from(ack.body),
                close: false,
                allow_post: false,
                ack: Some((ack.message_type, ack.code)),
                request_bytes,
                cancelled: None,
                retry_after: false,
            }
        }
        Hl7Response::NotHl7(text) => return not_hl7(&text),
        Hl7Response::Unavailable(text) => Reply::text(StatusCode::SERVICE_UNAVAILABLE, text),
    };
    reply.request_bytes = request_bytes;
    reply
}

/// Why a body could not be read, when the reason is that the client went away: an HTTP/2
/// stream reset (RST_STREAM) or GOAWAY, or the connection closed or reset before the body
/// was complete. `None` for a body that arrived but was malformed.
fn cancelled_by_client(error: &(dyn StdError + 'static)) -> Option<&'static str> {
    std::iter::successors(Some(error), |&e| e.source()).find_map(|e| {
        if let Some(e) = e.downcast_ref::<hyper::Error>() {
            return e
                .is_incomplete_message()
                .then_some("connection closed before the body was complete");
        }
        if let Some(e) = e.downcast_ref::<h2::Error>() {
            if e.is_reset() && e.is_remote() {
                return Some("stream reset by the client (RST_STREAM)");
            }
            if e.is_go_away() && e.is_remote() {
                return Some("connection closed by the client (GOAWAY)");
            }
            return e.is_io().then_some("connection lost");
        }
        let e = e.downcast_ref::<std::io::Error>()?;
        matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof
        )
        .then_some("connection lost")
    })
}

/// What a request's Content-Type names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Declared {
    /// No Content-Type header.
    Nothing,
    /// One of the accepted media types.
    Hl7(MediaType),
    /// Another media type (or an unreadable header): its metric label, and the text quoted
    /// back to the sender.
    Other { label: &'static str, shown: String },
}

impl Declared {
    /// The media type the handler and the ACK's Content-Type see: none for another type,
    /// which is answered as a request without Content-Type.
    fn media_type(&self) -> Option<MediaType> {
        match self {
            Self::Hl7(media) => Some(*media),
            Self::Nothing | Self::Other { .. } => None,
        }
    }
}

/// The accepted media types, for error texts.
fn accepted() -> String {
    MediaType::ALL
        .iter()
        .map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a Content-Type header names, and its charset; or the 415 text for a charset that
/// is not supported (never a guess, whatever the media type). No header: nothing declared,
/// no charset (accepted; see the module docs).
fn content_type(value: Option<&HeaderValue>) -> Result<(Declared, Option<Charset>), String> {
    let Some(value) = value else {
        return Ok((Declared::Nothing, None));
    };
    let Ok(text) = value.to_str() else {
        let unreadable = Declared::Other {
            label: "other",
            shown: "(unreadable)".to_owned(),
        };
        return Ok((unreadable, None));
    };
    let mut parts = text.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    let declared = match MediaType::parse(essence) {
        Some(media) => Declared::Hl7(media),
        None => Declared::Other {
            label: unexpected_media_label(essence),
            shown: shorten(essence),
        },
    };
    let mut charset = None;
    for param in parts {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("charset") {
            continue;
        }
        match Charset::from_mime_name(value) {
            Some(found) => charset = Some(found),
            None => {
                return Err(format!(
                    "unsupported charset {}: send UTF-8, ISO-8859-1 (latin1) or US-ASCII",
                    shorten(value.trim())
                ));
            }
        }
    }
    Ok((declared, charset))
}

/// A header value quoted back in an error text, cut short.
fn shorten(text: &str) -> String {
    let cut: String = text.chars().take(64).collect();
    if cut.len() < text.len() {
        format!("`{cut}…`")
    } else {
        format!("`{cut}`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(Declared, Option<Charset>), String> {
        content_type(Some(&HeaderValue::from_str(text).unwrap()))
    }

    #[test]
    fn content_types_and_charsets() {
        assert_eq!(content_type(None), Ok((Declared::Nothing, None)));
        assert_eq!(
            parse("application/hl7-v2; charset=UTF-8"),
            Ok((Declared::Hl7(MediaType::Hl7V2), Some(Charset::Utf8)))
        );
        assert_eq!(
            parse("TEXT/PLAIN;CHARSET=\"iso-8859-1\""),
            Ok((Declared::Hl7(MediaType::TextPlain), Some(Charset::Latin1)))
        );
        assert_eq!(
            parse("x-application/hl7-v2+er7; foo=bar; charset=latin1"),
            Ok((Declared::Hl7(MediaType::XHl7V2Er7), Some(Charset::Latin1)))
        );
        assert_eq!(
            parse("application/hl7-v2+er7"),
            Ok((Declared::Hl7(MediaType::Hl7V2Er7), None))
        );
        assert!(parse("text/plain; charset=koi8-r").is_err());
        assert!(parse("text/html; charset=koi8-r").is_err());
        let other = |label: &'static str, shown: &str| Declared::Other {
            label,
            shown: shown.to_owned(),
        };
        assert_eq!(
            parse("text/html; charset=utf-8"),
            Ok((other("text/html", "`text/html`"), Some(Charset::Utf8)))
        );
        assert_eq!(
            parse("Text/XML"),
            Ok((other("text/xml", "`Text/XML`"), None))
        );
        assert_eq!(
            parse("application/json"),
            Ok((other("application/json", "`application/json`"), None))
        );
        let long = format!("application/{}", "x".repeat(200));
        let Ok((Declared::Other { label, shown }, None)) = parse(&long) else {
            panic!("a long type is another type");
        };
        assert_eq!(label, "other");
        assert!(shown.len() < 200);
        let unreadable = HeaderValue::from_bytes(b"text/html\xff").unwrap();
        assert!(matches!(
            content_type(Some(&unreadable)),
            Ok((Declared::Other { label: "other", .. }, None))
        ));
    }
}
