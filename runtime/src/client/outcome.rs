//! What one delivery attempt came to: the failure classes and the pure classification of
//! a complete HTTP response (status, body, MSA-1 and MSA-2) into accepted or a class. No I/O
//! here: the connection code in the parent module hands over what it read, so every rule of
//! the table in the [client docs](super) is tested without a socket.

use std::fmt;

use hyper::StatusCode;
use serde::Serialize;

use crate::hl7::{AckCode, AckReceipt, Charset, LineEndings, Message, ParseOptions, read_ack};

/// The longest [`Outcome::detail`] kept, in bytes.
pub const MAX_DETAIL: usize = 1000;

/// A failure class; each has its own policy in the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum FailureClass {
    /// No connection, TLS refused, or the connection lost before a complete response.
    #[serde(rename = "connect_error")]
    Connect,
    /// No complete response within the timeout.
    #[serde(rename = "timeout")]
    Timeout,
    /// HTTP 5xx.
    #[serde(rename = "http_5xx")]
    Http5xx,
    /// HTTP 4xx (and other non-2xx statuses).
    #[serde(rename = "http_4xx")]
    Http4xx,
    /// Not an ACK, or MSA-2 not the sent MSH-10.
    #[serde(rename = "bad_ack")]
    BadAck,
    /// AE or CE.
    #[serde(rename = "ae")]
    AckError,
    /// AR or CR.
    #[serde(rename = "ar")]
    AckReject,
}

impl FailureClass {
    /// Every class.
    pub const ALL: [FailureClass; 7] = [
        Self::Connect,
        Self::Timeout,
        Self::Http5xx,
        Self::Http4xx,
        Self::BadAck,
        Self::AckError,
        Self::AckReject,
    ];

    /// As stored and shown: `connect_error`, `timeout`, `http_5xx`, `http_4xx`, `bad_ack`,
    /// `ae`, `ar`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect_error",
            Self::Timeout => "timeout",
            Self::Http5xx => "http_5xx",
            Self::Http4xx => "http_4xx",
            Self::BadAck => "bad_ack",
            Self::AckError => "ae",
            Self::AckReject => "ar",
        }
    }

    /// Reads [`FailureClass::as_str`] back.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == text)
    }

    /// The spec key holding this class's policy (`on_connect_error`, …).
    pub fn spec_key(self) -> &'static str {
        match self {
            Self::Connect => "on_connect_error",
            Self::Timeout => "on_timeout",
            Self::Http5xx => "on_5xx",
            Self::Http4xx => "on_4xx",
            Self::BadAck => "on_bad_ack",
            Self::AckError => "on_ae",
            Self::AckReject => "on_ar",
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one attempt to deliver a message came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `None`: accepted (AA/CA with MSA-2 equal to the sent MSH-10).
    pub failure: Option<FailureClass>,
    /// The HTTP status, when a response arrived.
    pub http_status: Option<u16>,
    /// MSA-1, when an ACK could be read.
    pub ack_code: Option<AckCode>,
    /// For a person: MSA-3 and ERR texts, the status, or what went wrong. Never the message;
    /// at most [`MAX_DETAIL`] bytes.
    pub detail: String,
}

impl Outcome {
    /// An accepted message.
    pub fn accepted(http_status: u16, code: AckCode, detail: impl Into<String>) -> Self {
        Self {
            failure: None,
            http_status: Some(http_status),
            ack_code: Some(code),
            detail: cap(detail.into()),
        }
    }

    /// A failure without a response.
    pub fn failed(class: FailureClass, detail: impl Into<String>) -> Self {
        Self {
            failure: Some(class),
            http_status: None,
            ack_code: None,
            detail: cap(detail.into()),
        }
    }

    /// A failure with a response.
    pub fn responded(
        class: FailureClass,
        http_status: u16,
        ack_code: Option<AckCode>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            failure: Some(class),
            http_status: Some(http_status),
            ack_code,
            detail: cap(detail.into()),
        }
    }

    /// True when the message was accepted.
    pub fn is_accepted(&self) -> bool {
        self.failure.is_none()
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.failure {
            None => f.write_str("accepted")?,
            Some(class) => f.write_str(class.as_str())?,
        }
        if let Some(status) = self.http_status {
            write!(f, ", HTTP {status}")?;
        }
        if let Some(code) = self.ack_code {
            write!(f, ", {code}")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

fn cap(mut text: String) -> String {
    if text.len() > MAX_DETAIL {
        let mut end = MAX_DETAIL;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// The `charset=` parameter of a Content-Type.
pub(crate) fn charset_param(content_type: &str) -> Option<Charset> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        if name.trim().eq_ignore_ascii_case("charset") {
            Charset::from_mime_name(value)
        } else {
            None
        }
    })
}

/// Sorts a complete response.
pub(crate) fn classify(
    status: StatusCode,
    charset: Charset,
    body: &[u8],
    control_id: &str,
) -> Outcome {
    let code = status.as_u16();
    let status_text = match status.canonical_reason() {
        Some(reason) => format!("HTTP {code} {reason}"),
        None => format!("HTTP {code}"),
    };
    if status.is_server_error() {
        return Outcome::responded(FailureClass::Http5xx, code, None, status_text);
    }
    if status.is_client_error() {
        return Outcome::responded(FailureClass::Http4xx, code, None, status_text);
    }
    if !status.is_success() {
        return Outcome::responded(
            FailureClass::Http4xx,
            code,
            None,
            format!("{status_text}: not a 2xx answer (redirects are not followed)"),
        );
    }
    let body = strip_mllp(body);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Outcome::responded(
            FailureClass::BadAck,
            code,
            None,
            format!("{status_text} with an empty body: no ACK"),
        );
    }
    let options = ParseOptions {
        line_endings: LineEndings::Lenient,
        default_charset: charset,
    };
    let message = match Message::parse_with(body, &options) {
        Ok(message) => message,
        Err(e) => {
            return Outcome::responded(
                FailureClass::BadAck,
                code,
                None,
                format!("the response is not an HL7 ACK: {e}"),
            );
        }
    };
    let receipt = match read_ack(&message) {
        Ok(receipt) => receipt,
        Err(e) => {
            return Outcome::responded(
                FailureClass::BadAck,
                code,
                None,
                format!("the response is not an ACK: {e}"),
            );
        }
    };
    if receipt.control_id != control_id {
        return Outcome::responded(
            FailureClass::BadAck,
            code,
            Some(receipt.code),
            format!(
                "MSA-2 {:?} does not match the sent MSH-10 {control_id:?}: the ACK is for another message",
                receipt.control_id
            ),
        );
    }
    let text = ack_text(&receipt);
    if receipt.code.is_accept() {
        Outcome::accepted(code, receipt.code, text)
    } else if receipt.code.is_error() {
        Outcome::responded(FailureClass::AckError, code, Some(receipt.code), text)
    } else {
        Outcome::responded(FailureClass::AckReject, code, Some(receipt.code), text)
    }
}

/// MSA-3 and the ERR segments as one line.
fn ack_text(receipt: &AckReceipt) -> String {
    let mut parts: Vec<String> = Vec::new();
    if !receipt.text.trim().is_empty() {
        parts.push(receipt.text.trim().to_owned());
    }
    for error in &receipt.errors {
        let mut line = String::from("ERR");
        if let Some(code) = error.code {
            line.push_str(&format!(" {code}"));
        }
        if !error.code_text.is_empty() {
            line.push_str(&format!(" {}", error.code_text));
        }
        if let Some(location) = &error.location {
            line.push_str(&format!(" at {location}"));
        }
        if !error.message.is_empty() && !parts.iter().any(|p| p == &error.message) {
            line.push_str(&format!(": {}", error.message));
        }
        parts.push(line);
    }
    parts.join("; ")
}

/// The message inside MLLP framing bytes, if an engine framed its answer.
fn strip_mllp(body: &[u8]) -> &[u8] {
    let body = body.strip_prefix(&[0x0B]).unwrap_or(body);
    let body = body.strip_suffix(&[0x1C, 0x0D]).unwrap_or(body);
    body.strip_suffix(&[0x1C]).unwrap_or(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACK_AA: &[u8] =
        b"MSH|^~\\&|TIE|TRUST|GW|EMS|20260101120000||ACK^A28^ACK|A1|T|2.5.1\rMSA|AA|MSG1\r";

    #[test]
    fn statuses_and_acks_are_classified() {
        let ok = StatusCode::OK;
        assert!(classify(ok, Charset::Utf8, ACK_AA, "MSG1").is_accepted());
        let wrong = classify(ok, Charset::Utf8, ACK_AA, "MSG2");
        assert_eq!(wrong.failure, Some(FailureClass::BadAck));
        assert_eq!(wrong.ack_code, Some(AckCode::ApplicationAccept));
        assert!(wrong.detail.contains("MSA-2"), "{}", wrong.detail);
        let ae = b"MSH|^~\\&|TIE|TRUST|GW|EMS|20260101120000||ACK|A1|T|2.4\rMSA|AE|MSG1|bad procedure\rERR|OBR^1^4&1^103&Table value not found&HL70357\r";
        let out = classify(ok, Charset::Utf8, ae, "MSG1");
        assert_eq!(out.failure, Some(FailureClass::AckError));
        assert!(
            out.detail.starts_with("bad procedure; ERR 103"),
            "{}",
            out.detail
        );
        let ar = b"MSH|^~\\&|a|b|c|d|1||ACK|A1|T|2.4\nMSA|CR|MSG1\n";
        assert_eq!(
            classify(ok, Charset::Utf8, ar, "MSG1").failure,
            Some(FailureClass::AckReject)
        );
        for (status, class) in [
            (503, FailureClass::Http5xx),
            (500, FailureClass::Http5xx),
            (400, FailureClass::Http4xx),
            (404, FailureClass::Http4xx),
            (301, FailureClass::Http4xx),
        ] {
            let s = StatusCode::from_u16(status).unwrap();
            let out = classify(s, Charset::Utf8, ACK_AA, "MSG1");
            assert_eq!(out.failure, Some(class), "{status}");
            assert_eq!(out.http_status, Some(status));
        }
        for garbage in [
            &b""[..],
            b"  \r\n",
            b"<html>oops</html>",
            b"MSH|^~\\&|a|b\rPID|1\r",
        ] {
            assert_eq!(
                classify(ok, Charset::Utf8, garbage, "MSG1").failure,
                Some(FailureClass::BadAck)
            );
        }
        let mut framed = vec![0x0B];
        framed.extend_from_slice(ACK_AA);
        framed.extend_from_slice(&[0x1C, 0x0D]);
        assert!(classify(ok, Charset::Utf8, &framed, "MSG1").is_accepted());
    }

    #[test]
    fn details_are_capped_on_a_char_boundary() {
        let long = "é".repeat(MAX_DETAIL);
        let out = Outcome::failed(FailureClass::Connect, long);
        assert!(out.detail.len() <= MAX_DETAIL + '…'.len_utf8());
        assert_eq!(FailureClass::parse("http_5xx"), Some(FailureClass::Http5xx));
        assert_eq!(
            charset_param("application/hl7-v2; Charset=\"iso-8859-1\""),
            Some(Charset::Latin1)
        );
    }
}
