//! A minimal HTTP/1.1 client for the demo: one request per connection, over plain TCP (the
//! gateway's loopback intake and inbox APIs) or over mutual TLS (the Trust's engine posting
//! to the gateway). Every call is bounded by [`TIMEOUT`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The longest any one request may take, connection and response body included.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The largest response body read.
const MAX_RESPONSE: usize = 4 << 20;

/// An HTTP response: status and body.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: Bytes,
}

impl Response {
    /// The body as JSON, or `Null` when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// What a request to send.
pub struct Call<'a> {
    /// `GET` or `POST`.
    pub method: &'a str,
    /// The path and query.
    pub path: &'a str,
    /// The `Content-Type`, for a body.
    pub content_type: Option<&'a str>,
    /// The body (empty for a GET).
    pub body: Vec<u8>,
}

/// Sends `call` to `addr` over plain TCP.
pub async fn plain(addr: SocketAddr, call: Call<'_>) -> Result<Response, String> {
    let host = addr.to_string();
    bounded(async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        exchange(tcp, &host, call).await
    })
    .await
}

/// Sends `call` to `addr` over TLS, verifying the server as `server_name` and presenting
/// the client certificate `tls` carries.
pub async fn tls(
    addr: SocketAddr,
    server_name: &str,
    tls: Arc<rustls::ClientConfig>,
    call: Call<'_>,
) -> Result<Response, String> {
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|_| format!("{server_name:?} is not a host name"))?;
    let host = format!("{server_name}:{}", addr.port());
    bounded(async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let stream = TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {addr} failed: {e}"))?;
        exchange(stream, &host, call).await
    })
    .await
}

async fn bounded(work: impl Future<Output = Result<Response, String>>) -> Result<Response, String> {
    tokio::time::timeout(TIMEOUT, work)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", TIMEOUT.as_secs())))
}

async fn exchange<S>(stream: S, host: &str, call: Call<'_>) -> Result<Response, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let mut driver = tokio::spawn(connection);
    let mut request = Request::builder()
        .method(call.method)
        .uri(call.path)
        .header(HOST, host);
    if let Some(content_type) = call.content_type {
        request = request.header(CONTENT_TYPE, content_type);
    }
    let request = request
        .body(Full::new(Bytes::from(call.body)))
        .map_err(|e| format!("HTTP request: {e}"))?;
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| format!("reading the response: {e}"))?
            .to_bytes();
        Ok(Response { status, body })
    }
    .await;
    // Closing the request side ends the connection; it is given a moment to say goodbye.
    drop(sender);
    if tokio::time::timeout(Duration::from_secs(1), &mut driver)
        .await
        .is_err()
    {
        driver.abort();
    }
    result
}
