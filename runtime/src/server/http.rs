//! One HTTP request: the transport checks in the order of the module docs, the body, the
//! handler, the response.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Version};
use tracing::info;

use super::conn::Activity;
use super::{Handler, Hl7Request, Hl7Response, MediaType, ResponseContentType, Shared};
use crate::hl7::Charset;

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
        }
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
    let reply = process(&shared, &conn, request, &request_id).await;

    let elapsed = started.elapsed();
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
        latency_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        message_type = reply.ack.as_ref().map(|(t, _)| t.as_str()),
        ack = reply.ack.as_ref().map(|(_, c)| c.as_str()),
        "request"
    );

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
    if reply.close && version < Version::HTTP_2 {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(response)
}

async fn process<H: Handler>(
    shared: &Shared<H>,
    conn: &ConnInfo,
    request: Request<Incoming>,
    request_id: &str,
) -> Reply {
    let settings = &shared.settings;
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
    let (media_type, charset) = match content_type(request.headers().get(header::CONTENT_TYPE)) {
        Ok(found) => found,
        Err(message) => {
            return Reply::text(StatusCode::UNSUPPORTED_MEDIA_TYPE, message).closing();
        }
    };

    // Reading the body is what makes hyper send `100 Continue` to a client that asked.
    let limit = usize::try_from(settings.max_body).unwrap_or(usize::MAX);
    let collected = tokio::time::timeout(
        settings.body_timeout,
        Limited::new(request.into_body(), limit).collect(),
    )
    .await;
    let body = match collected {
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
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Reply::text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body over the limit of {} bytes", settings.max_body),
            )
            .closing();
        }
        Ok(Err(e)) => {
            return Reply::text(
                StatusCode::BAD_REQUEST,
                format!("the body could not be read: {e}"),
            )
            .closing();
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    let request_bytes = body.len();
    let message = body.slice(crate::mllp::unframed_range(&body));
    if message
        .iter()
        .all(|b| matches!(b, b'\r' | b'\n' | b' ' | b'\t'))
    {
        let mut reply = Reply::text(
            StatusCode::BAD_REQUEST,
            "empty body: POST one HL7 v2 message",
        );
        reply.request_bytes = request_bytes;
        return reply;
    }

    let response = shared
        .handler
        .handle(Hl7Request {
            body: message,
            charset,
            media_type,
            peer_ip: conn.peer_ip,
            peer_subject: conn.subject.clone(),
            request_id: request_id.to_owned(),
        })
        .await;
    let mut reply = match response {
        Hl7Response::Ack(ack) => {
            let media = match settings.response_content_type {
                ResponseContentType::FollowRequest => media_type.unwrap_or(MediaType::TextPlain),
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
            }
        }
        Hl7Response::NotHl7(text) => Reply::text(StatusCode::BAD_REQUEST, text),
        Hl7Response::Unavailable(text) => Reply::text(StatusCode::SERVICE_UNAVAILABLE, text),
    };
    reply.request_bytes = request_bytes;
    reply
}

/// The media type and charset of a Content-Type header, or the 415 text.
/// No header: no media type, no charset (accepted; see the module docs).
fn content_type(
    value: Option<&HeaderValue>,
) -> Result<(Option<MediaType>, Option<Charset>), String> {
    let Some(value) = value else {
        return Ok((None, None));
    };
    let accepted = || {
        MediaType::ALL
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Ok(text) = value.to_str() else {
        return Err(format!(
            "unreadable Content-Type: send one of {}",
            accepted()
        ));
    };
    let mut parts = text.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    let Some(media) = MediaType::parse(essence) else {
        return Err(format!(
            "unsupported Content-Type {}: send one of {}",
            shorten(essence),
            accepted()
        ));
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
    Ok((Some(media), charset))
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

    fn parse(text: &str) -> Result<(Option<MediaType>, Option<Charset>), String> {
        content_type(Some(&HeaderValue::from_str(text).unwrap()))
    }

    #[test]
    fn content_types_and_charsets() {
        assert_eq!(content_type(None), Ok((None, None)));
        assert_eq!(
            parse("application/hl7-v2; charset=UTF-8"),
            Ok((Some(MediaType::Hl7V2), Some(Charset::Utf8)))
        );
        assert_eq!(
            parse("TEXT/PLAIN;CHARSET=\"iso-8859-1\""),
            Ok((Some(MediaType::TextPlain), Some(Charset::Latin1)))
        );
        assert_eq!(
            parse("x-application/hl7-v2+er7; foo=bar; charset=latin1"),
            Ok((Some(MediaType::XHl7V2Er7), Some(Charset::Latin1)))
        );
        assert_eq!(
            parse("application/hl7-v2+er7"),
            Ok((Some(MediaType::Hl7V2Er7), None))
        );
        assert!(parse("application/json").is_err());
        assert!(parse("text/plain; charset=koi8-r").is_err());
        assert!(parse("text/html").is_err());
        let long = format!("application/{}", "x".repeat(200));
        assert!(parse(&long).unwrap_err().len() < 200);
    }
}
