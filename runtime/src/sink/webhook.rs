//! The webhook sink: POST the record as JSON to an internal URL; taken only on a 2xx.
//!
//! The body is one JSON object:
//!
//! ```json
//! {"message_type": "ADT^A28", "sending_application": "EPIC", "sending_facility": "RX1",
//!  "control_id": "MSG0001", "received_at": "2024-05-01T12:00:00.000000Z", "record": {…}}
//! ```
//!
//! Delivery is at least once (see [the ordering](super)): a receiver that must not apply a
//! message twice keys on (`sending_application`, `sending_facility`, `control_id`).
//!
//! One plain-HTTP/1.1 connection per message, opened and closed within the timeout, which
//! bounds connect, request and response head together. The URL must be `http://`
//! ([`Endpoint::http`], the parser `hl7gw validate` uses too): the webhook is an internal
//! service next to the gateway.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use hyper::header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue, USER_AGENT};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{DeliveryItem, SinkError, SinkKind, SinkOutcome};
use crate::endpoint::Endpoint;
use crate::store::format_rfc3339;

/// A webhook URL that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WebhookConfigError {
    /// Not a URL.
    #[error("webhook URL {url:?} {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why (the same refusal `hl7gw validate` reports as `net-url`).
        reason: crate::endpoint::EndpointError,
    },
    /// A header name or value that HTTP does not allow.
    #[error("webhook header {name:?}: invalid name or value")]
    BadHeader {
        /// The header name.
        name: String,
    },
}

/// POSTs records to an internal URL.
#[derive(Debug, Clone)]
pub struct WebhookSink {
    endpoint: Endpoint,
    timeout: Duration,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl WebhookSink {
    /// A webhook posting to `url` (`http://host[:port]/path`), giving up after `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, WebhookConfigError> {
        let endpoint = Endpoint::http(url).map_err(|reason| WebhookConfigError::BadUrl {
            url: url.to_owned(),
            reason,
        })?;
        Ok(Self {
            endpoint,
            timeout,
            headers: Vec::new(),
        })
    }

    /// Adds a header sent with every POST (for example `Authorization`).
    pub fn with_header(mut self, name: &str, value: &str) -> Result<Self, WebhookConfigError> {
        let bad = || WebhookConfigError::BadHeader {
            name: name.to_owned(),
        };
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
        let mut value = HeaderValue::from_str(value).map_err(|_| bad())?;
        value.set_sensitive(true);
        self.headers.push((name, value));
        Ok(self)
    }

    /// The URL.
    pub fn url(&self) -> &str {
        self.endpoint.url()
    }

    /// The JSON body for one message.
    pub fn body(item: &DeliveryItem) -> serde_json::Value {
        serde_json::json!({
            "message_type": item.message_type,
            "sending_application": item.key.sending_application,
            "sending_facility": item.key.sending_facility,
            "control_id": item.key.control_id,
            "received_at": format_rfc3339(item.received_at),
            "record": item.record,
        })
    }

    /// POSTs one record; `Ok` only on a 2xx within the timeout.
    pub async fn deliver(&self, item: &DeliveryItem) -> Result<SinkOutcome, SinkError> {
        match tokio::time::timeout(self.timeout, self.post(item)).await {
            Ok(result) => result,
            Err(_) => Err(SinkError::Timeout {
                sink: SinkKind::Webhook,
                target: self.endpoint.url().to_owned(),
                after: self.timeout,
            }),
        }
    }

    async fn post(&self, item: &DeliveryItem) -> Result<SinkOutcome, SinkError> {
        let http = |message: String| SinkError::Http {
            target: self.endpoint.url().to_owned(),
            message,
        };
        let body = serde_json::to_vec(&Self::body(item)).map_err(|e| http(e.to_string()))?;
        let stream = TcpStream::connect((self.endpoint.host(), self.endpoint.port()))
            .await
            .map_err(|source| SinkError::Connect {
                sink: SinkKind::Webhook,
                target: self.endpoint.url().to_owned(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| http(e.to_string()))?;
        // Drives the connection; aborted when this call ends (or is cancelled by the timeout).
        let driver = AbortOnDrop(tokio::spawn(connection));
        let mut request = Request::post(self.endpoint.path().clone())
            .header(HOST, self.endpoint.authority().clone())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("hl7gw/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| http(e.to_string()))?;
        for (name, value) in &self.headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| http(e.to_string()))?;
        drop(driver);
        let status = response.status();
        if status.is_success() {
            Ok(SinkOutcome::Accepted)
        } else {
            Err(SinkError::Status {
                target: self.endpoint.url().to_owned(),
                status: status.as_u16(),
            })
        }
    }
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
