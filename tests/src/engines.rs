//! The Trusts' integration engines as `docs/peers.md` describes them, one section each
//! (§1 HAPI, §2 Mirth Connect / OIE, §3 InterSystems, §4 Rhapsody, §5 BizTalk): each one's
//! request bytes (header order, casing, framing, charset) and its decision table applied to
//! the answer, ending in that engine's own states. The receiver's transport tests
//! (`runtime/tests/server_tls.rs`) and its end-to-end tests (`tests/tests/receiver.rs`) both
//! send through these.
//!
//! Only tests link this; a message the test wrote that latin1 cannot carry ends the test,
//! hence `unwrap`.
#![allow(clippy::unwrap_used)]

use std::time::SystemTime;

use hl7gw_runtime::hl7::{Charset, Message, ParseOptions};
use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

use crate::messages::AckView;
use crate::wire::{RawResponse, post};

/// The Content-Type's media type (lowercase, no parameters) and its `charset` parameter.
fn content_type(response: &RawResponse) -> Option<(String, Option<String>)> {
    let value = response.header("content-type")?;
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let charset = parts
        .filter_map(|p| p.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("charset"))
        .map(|(_, v)| v.trim().trim_matches('"').to_owned());
    Some((media, charset))
}

fn decode(body: &[u8], charset: Option<&str>) -> Result<String, String> {
    let charset = match charset {
        Some(name) => Charset::from_mime_name(name).ok_or(format!("unknown charset {name}"))?,
        None => Charset::Utf8,
    };
    charset
        .decode(body)
        .map(|text| text.into_owned())
        .map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------
// HAPI hl7overhttp (docs/peers.md §1).

/// HAPI's Date format, `EEE, dd MMM yy HH:mm:ss z`, in an English locale and the JVM's zone
/// (UTC here): a two-digit year, not RFC 1123.
const HAPI_DATE: &[BorrowedFormatItem<'static>] = format_description!(
    "[weekday repr:short], [day] [month repr:short] [year repr:last_two] [hour]:[minute]:[second] UTC"
);

/// The Date header HAPI writes for the instant `at` (docs/peers.md §1).
pub fn hapi_date(at: SystemTime) -> String {
    OffsetDateTime::from(at)
        .format(HAPI_DATE)
        .unwrap_or_default()
}

/// HAPI's request: Content-Type, Content-Length, User-Agent, Host with the port, Date; no
/// Connection, no Expect; the body as is.
pub fn hapi_request(path: &str, host: &str, port: u16, body: &[u8]) -> Vec<u8> {
    post(
        path,
        &[
            "Content-Type: application/hl7-v2; charset=UTF-8".to_owned(),
            format!("Content-Length: {}", body.len()),
            "User-Agent: HAPI (HL7 over HTTP) Client 2.3".to_owned(),
            format!("Host: {host}:{port}"),
            format!("Date: {}", hapi_date(SystemTime::now())),
        ],
        body,
    )
}

/// What HAPI's client ends with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HapiOutcome {
    /// The response body, parsed into a message, is handed to the caller (whatever the
    /// status: HAPI never checks it, nor MSA).
    Delivered(String),
    /// `DecodeException`.
    DecodeException(String),
    /// `NonHl7ResponseException`.
    NonHl7Response(String),
    /// The body does not parse into a message (`HL7Exception`).
    ParseFailure(String),
}

/// `AbstractHl7OverHttpDecoder` and `HohClientSimple` applied to a response.
pub fn hapi_decide(response: &RawResponse) -> HapiOutcome {
    use HapiOutcome::*;
    let Some(rest) = response.status_line.strip_prefix("HTTP/1.1 ") else {
        return DecodeException(format!("status line {:?}", response.status_line));
    };
    let reason = rest.split_once(' ').map_or("", |(_, r)| r.trim());
    if reason.is_empty() {
        return DecodeException(format!("no reason phrase: {:?}", response.status_line));
    }
    let Some(value) = response.header("content-type") else {
        return DecodeException("no Content-Type".into());
    };
    let media = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if media != "application/hl7-v2" && media != "application/hl7-v2+xml" {
        return NonHl7Response(format!("Content-Type {value}"));
    }
    if let Some(te) = response.header("transfer-encoding")
        && !te.eq_ignore_ascii_case("chunked")
    {
        return DecodeException(format!("Transfer-Encoding {te}"));
    }
    if let Some(ce) = response.header("content-encoding")
        && !ce.eq_ignore_ascii_case("gzip")
    {
        return DecodeException(format!("Content-Encoding {ce}"));
    }
    // Only `charset=` in exact lowercase is recognised; otherwise the default (UTF-8).
    let charset = value
        .split(';')
        .skip(1)
        .find_map(|p| p.trim().strip_prefix("charset="))
        .map(|c| c.trim().to_owned());
    let text = match decode(&response.body, charset.as_deref()) {
        Ok(text) => text,
        Err(e) => return DecodeException(e),
    };
    match Message::parse_with(text.as_bytes(), &ParseOptions::default()) {
        Ok(_) => Delivered(text),
        Err(e) => ParseFailure(e.to_string()),
    }
}

// ---------------------------------------------------------------------------------------
// Mirth Connect / OIE HTTP Sender with its defaults (docs/peers.md §2).

/// Mirth's request: its own headers first, then Apache HttpClient's (Host with the port
/// because it is not the default one: HttpClient leaves the port out only for 443 (§2), and
/// no test listens there; keep-alive, gzip/deflate accepted).
pub fn mirth_request(path: &str, host: &str, port: u16, body: &[u8]) -> Vec<u8> {
    post(
        path,
        &[
            "user-agent: Mirth Connect".to_owned(),
            "Content-Type: text/plain; charset=UTF-8".to_owned(),
            format!("Content-Length: {}", body.len()),
            format!("Host: {host}:{port}"),
            "Connection: Keep-Alive".to_owned(),
            "Accept-Encoding: gzip,deflate".to_owned(),
        ],
        body,
    )
}

/// A message's state in Mirth after the HTTP Sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirthStatus {
    /// Done.
    Sent,
    /// Retried (every 10 s when the queue is on).
    Queued(String),
    /// Final, not retried.
    Error(String),
}

/// The HTTP Sender (and, with `validate`, `HL7v2ResponseValidator`) applied to an answer.
/// `sent` is the outbound MSH-10.
pub fn mirth_decide(
    response: Result<&RawResponse, &std::io::Error>,
    validate: bool,
    sent: &str,
) -> MirthStatus {
    use MirthStatus::*;
    let response = match response {
        Ok(r) => r,
        Err(e) => return Queued(format!("exception: {e}")),
    };
    if response.status >= 400 {
        return Queued(format!("HTTP {}", response.status));
    }
    if !validate {
        return Sent;
    }
    let (media, charset) = content_type(response).unwrap_or_default();
    // The default "Binary MIME types" regex `application/.*(?<!json|xml)$`: such a response
    // is Base64-encoded before validation, so no MSA is found.
    let binary =
        media.starts_with("application/") && !media.ends_with("json") && !media.ends_with("xml");
    if response.body.is_empty() {
        return Queued("blank response".into());
    }
    if binary {
        return Queued(format!("{media} response Base64-encoded: no MSA"));
    }
    let Ok(text) = decode(&response.body, charset.as_deref()) else {
        return Queued("undecodable response".into());
    };
    let Some(ack) = AckView::read(&text).filter(|a| a.has("MSA")) else {
        return Queued("no MSA".into());
    };
    match ack.code() {
        "AA" | "CA" if ack.acknowledged() == sent => Sent,
        "AA" | "CA" => Error(format!("MSA-2 {} is not {sent}", ack.acknowledged())),
        "AE" | "CE" | "AR" | "CR" => Error(format!("{} ACK", ack.code())),
        other => Queued(format!("unknown ACK code {other:?}")),
    }
}

// ---------------------------------------------------------------------------------------
// InterSystems Ensemble / IRIS, EnsLib.HL7.Operation.HTTPOperation (docs/peers.md §3).

/// IRIS's request: a new `%Net.HttpRequest` per message, the body in latin1 (its default
/// `DefCharEncoding`, MSH-18 being empty), framed with MLLP (its default `Framing`) or not.
/// `content_type` is the operation's ContentType setting.
pub fn iris_request(
    path: &str,
    host: &str,
    port: u16,
    content_type: &str,
    message: &str,
    framed: bool,
) -> Vec<u8> {
    let encoded = Charset::Latin1.encode(message).unwrap().into_owned();
    let body = if framed {
        let mut framed = vec![0x0b];
        framed.extend_from_slice(&encoded);
        framed.extend_from_slice(&[0x1c, 0x0d]);
        framed
    } else {
        encoded
    };
    post(
        path,
        &[
            format!("Host: {host}:{port}"),
            "User-Agent: Mozilla/4.0 (compatible; IRIS)".to_owned(),
            format!("Content-Type: {content_type}; charset=latin1"),
            format!("Content-Length: {}", body.len()),
        ],
        &body,
    )
}

/// What the operation does after ReplyCodeActions `:?R=RF,:?E=S,:~=S,:?A=C,:*=S,:I?=W,:T?=C`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IrisAction {
    /// `C`: completed.
    Completed {
        /// MSA-1.
        code: String,
        /// MSA-2 did not match (`:I?=W`).
        warning: bool,
    },
    /// `RF`: retry, then fail.
    RetryThenFail(String),
    /// `S`: suspended.
    Suspend(String),
    /// The reply could not be parsed: an error.
    Error(String),
}

/// HTTPOperation's reply handling: the body parsed whatever the status; an empty body
/// becomes an ACK from the status (200 → AA, 503 → AR, else AE); then ReplyCodeActions.
pub fn iris_decide(response: &RawResponse, sent: &str) -> IrisAction {
    use IrisAction::*;
    let (code, acknowledged) = if response.body.is_empty() {
        let code = match response.status {
            200 => "AA",
            503 => "AR",
            _ => "AE",
        };
        (code.to_owned(), sent.to_owned())
    } else {
        let charset = content_type(response).and_then(|(_, c)| c);
        let text = match decode(&response.body, charset.as_deref()) {
            Ok(t) => t,
            Err(e) => return Error(e),
        };
        match AckView::read(&text) {
            Some(ack) if ack.has("MSA") => (ack.code().to_owned(), ack.acknowledged().to_owned()),
            Some(_) => return Suspend("no MSA".into()),
            None => return Error(format!("reply is not HL7: {text:?}")),
        }
    };
    match code.as_str() {
        "AR" | "CR" => RetryThenFail(code),
        "AE" | "CE" => Suspend(code),
        "AA" | "CA" => Completed {
            code,
            warning: acknowledged != sent,
        },
        _ => Suspend(format!("unknown code {code:?}")),
    }
}

// ---------------------------------------------------------------------------------------
// Rhapsody HTTP Client, Out→In mode (docs/peers.md §4).

/// Rhapsody's request: POST, its default Content-Type `text/plain` with the configured
/// Content Encoding.
pub fn rhapsody_request(path: &str, host: &str, port: u16, body: &[u8]) -> Vec<u8> {
    post(
        path,
        &[
            format!("Host: {host}:{port}"),
            "Content-Type: text/plain; charset=UTF-8".to_owned(),
            format!("Content-Length: {}", body.len()),
        ],
        body,
    )
}

/// Where the message goes in Rhapsody.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RhapsodyOutcome {
    /// 2xx: the body becomes the reply message, handed to the route (no MSA check).
    ReplyToRoute(Vec<u8>),
    /// 4xx/5xx: "Mark as connection failed", Connection Retries apply.
    ConnectionFailed(u16),
    /// 3xx (Follow Redirects off) and the rest: a message error.
    MessageError(u16),
}

/// Rhapsody's HTTP Client applied to an answer.
pub fn rhapsody_decide(response: &RawResponse) -> RhapsodyOutcome {
    match response.status {
        200..=299 => RhapsodyOutcome::ReplyToRoute(response.body.clone()),
        400..=599 => RhapsodyOutcome::ConnectionFailed(response.status),
        other => RhapsodyOutcome::MessageError(other),
    }
}

// ---------------------------------------------------------------------------------------
// BizTalk HTTP adapter + BTAHL7 send pipeline (docs/peers.md §5).

/// The request head .NET's HttpWebRequest writes: Host, Content-Length,
/// `Expect: 100-continue`, `Connection: Keep-Alive` on a new connection; the body (unframed
/// ER7) follows only after `100 Continue`.
pub fn biztalk_head(path: &str, host: &str, port: u16, len: usize, first: bool) -> Vec<u8> {
    let mut headers = vec![
        format!("Host: {host}:{port}"),
        format!("Content-Length: {len}"),
        "Expect: 100-continue".to_owned(),
    ];
    if first {
        headers.push("Connection: Keep-Alive".to_owned());
    }
    post(path, &headers, b"")
}

/// The send port's view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BizTalkOutcome {
    /// A 2xx: transmitted, whatever MSA says (acceptable-ACK handling is MLLP-only).
    Transmitted,
    /// Non-2xx: a transmission failure, retried 3 times 5 minutes apart, then suspended.
    TransmissionFailure(u16),
}

/// The HTTP adapter's send port applied to an answer.
pub fn biztalk_decide(response: &RawResponse) -> BizTalkOutcome {
    if (200..300).contains(&response.status) {
        BizTalkOutcome::Transmitted
    } else {
        BizTalkOutcome::TransmissionFailure(response.status)
    }
}
