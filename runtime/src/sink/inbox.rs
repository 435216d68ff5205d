//! The inbox API: EMS pulls committed records over plain HTTP on a loopback address.
//!
//! | request | answer |
//! |---|---|
//! | `GET /inbox?after=<id>&limit=<n>&include_acknowledged=<bool>` | `200 {"items": [item…], "next_after": <id>}`: rows with an id above `after` (default 0), oldest first, at most `limit` (default 100, at most 1000); rows already acknowledged only with `include_acknowledged=true` |
//! | `GET /inbox/<id>` | `200` the item plus `raw_base64`, the message exactly as received; `404` for an unknown id |
//! | `POST /inbox/<id>/ack` | `200 {"id": …, "acknowledged_at": …}`, idempotent (the first time is kept); `404` for an unknown id |
//!
//! An item is `{"id", "received_at", "message_type", "sending_application",
//! "sending_facility", "control_id", "record", "acknowledged_at"}`. Errors are
//! `{"error": "…"}` with 400 (bad query), 404, 405 (with `Allow`) or 500.
//!
//! EMS's loop: list after its cursor, fetch or use the listed record, process it, POST the
//! ack, move its cursor to `next_after`. Ids only grow, so the cursor never skips a row;
//! listing from 0 again finds every record not yet acknowledged. Acknowledged rows become
//! eligible for retention; unacknowledged ones are never pruned.
//!
//! Who may call it is the environment's [`EmsAuth`]: mutual TLS with EMS's client
//! certificate and a subject allowlist (any address), or plain HTTP without authentication on
//! loopback addresses only ([`InboxServer::bind`] refuses any other), reachable only from the
//! gateway's host. Browsers are kept out either way: a request carrying an `Origin` header (a
//! web page's fetch or form) is refused, and on plain loopback so is one whose `Host` is not a
//! loopback address or `localhost` (DNS rebinding). Its connections are bounded as every
//! EMS-facing listener's are ([`crate::ems::EmsAuth::with_limits`]).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};

use base64::display::Base64Display;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HOST, HeaderValue, ORIGIN};
use hyper::{Method, Request, Response, StatusCode};
use serde::{Serialize, Serializer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::ems::{EmsAuth, NotLoopback};
use crate::listeners::Role;
use crate::store::{InboxItem, Store, timestamp};

/// Items per list when the request gives no `limit`.
pub const DEFAULT_LIMIT: u32 = 100;
/// The largest `limit` accepted.
pub const MAX_LIMIT: u32 = crate::store::INBOX_MAX_LIST;

/// Why the inbox API could not run.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    /// Plain loopback asked to bind another address.
    #[error("{0}")]
    NotLoopback(#[from] NotLoopback),
    /// The address could not be bound.
    #[error("inbox API {addr}: cannot listen: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A bound inbox API, not yet serving.
#[derive(Debug)]
pub struct InboxServer {
    listener: TcpListener,
    local: SocketAddr,
    store: Store,
    auth: EmsAuth,
}

impl InboxServer {
    /// Binds `addr` for plain HTTP, which must be a loopback address (port 0 picks a free
    /// port).
    pub async fn bind(addr: SocketAddr, store: Store) -> Result<Self, InboxError> {
        Self::bind_with(addr, store, EmsAuth::plain_loopback()).await
    }

    /// Binds `addr` for the clients `auth` admits (loopback only without mutual TLS).
    pub async fn bind_with(
        addr: SocketAddr,
        store: Store,
        auth: EmsAuth,
    ) -> Result<Self, InboxError> {
        auth.check_bind("the inbox API", addr)?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| InboxError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| InboxError::Bind { addr, source })?;
        Ok(Self {
            listener,
            local,
            store,
            auth,
        })
    }

    /// The address bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Serves until `shutdown` completes, then stops accepting and waits up to 5 s for
    /// requests in progress.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        // Turns true on shutdown: a TLS handshake still under way is dropped.
        let (stop_tx, stop_rx) = watch::channel(false);
        let api = InboxApi::new(self.store, &self.auth);
        let serving = crate::ems_listener::serve_http(
            self.listener,
            self.auth.door(Role::Inbox),
            stop_rx,
            move |request: Request<Incoming>, _peer| {
                let api = api.clone();
                async move {
                    let path = request.uri().path().to_owned();
                    api.answer(request, &path).await
                }
            },
        );
        tokio::join!(serving, async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
    }
}

/// Binds `addr` (loopback only) and serves the inbox API until `shutdown` completes.
pub async fn serve(
    addr: SocketAddr,
    store: Store,
    shutdown: impl Future<Output = ()>,
) -> Result<(), InboxError> {
    InboxServer::bind(addr, store).await?.serve(shutdown).await;
    Ok(())
}

pub(crate) type Reply = Response<Full<Bytes>>;

pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Reply {
    json_body(status, serde_json::to_vec(value).unwrap_or_default())
}

/// A response carrying JSON already written.
fn json_body(status: StatusCode, body: Vec<u8>) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

pub(crate) fn error(status: StatusCode, message: &str) -> Reply {
    json(status, &serde_json::json!({ "error": message }))
}

pub(crate) fn not_allowed(allow: &'static str) -> Reply {
    let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}

fn item_json(item: &InboxItem) -> serde_json::Value {
    serde_json::to_value(item).unwrap_or(serde_json::Value::Null)
}

/// True when `Host` names a loopback address or `localhost` (with any port), or is absent.
pub(crate) fn host_is_local(request: &Request<Incoming>) -> bool {
    let Some(host) = request.headers().get(HOST) else {
        return true;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// One environment's inbox API without a listener of its own: [`InboxServer`] serves it on
/// the environment's port, and the host ([`crate::host`]) under `/<customer code>` on its
/// shared one. Cheap to clone.
#[derive(Debug, Clone)]
pub struct InboxApi {
    store: Store,
    /// Plain loopback: the `Host` must be a loopback address (DNS rebinding).
    local_host_only: bool,
}

impl InboxApi {
    /// The API on `store`, for the clients `auth` admits.
    pub fn new(store: Store, auth: &EmsAuth) -> Self {
        Self {
            store,
            local_host_only: !auth.is_mutual_tls(),
        }
    }

    /// The answer to `request`, read as if its path were `path` (the host strips the
    /// customer's segment first).
    pub async fn answer(&self, request: Request<Incoming>, path: &str) -> Reply {
        handle(&self.store, request, path, self.local_host_only).await
    }
}

async fn handle(
    store: &Store,
    request: Request<Incoming>,
    path: &str,
    local_host_only: bool,
) -> Reply {
    if request.headers().contains_key(ORIGIN) {
        return error(StatusCode::FORBIDDEN, "requests from web pages are refused");
    }
    if local_host_only && !host_is_local(&request) {
        return error(StatusCode::FORBIDDEN, "Host must be a loopback address");
    }
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let method = request.method().clone();
    match segments.as_slice() {
        ["inbox"] => {
            if method != Method::GET {
                return not_allowed("GET");
            }
            list(store, request.uri().query().unwrap_or_default()).await
        }
        ["inbox", id] => {
            if method != Method::GET {
                return not_allowed("GET");
            }
            match id.parse::<i64>() {
                Ok(id) => fetch(store, id).await,
                Err(_) => error(StatusCode::NOT_FOUND, "no such inbox record"),
            }
        }
        ["inbox", id, "ack"] => {
            if method != Method::POST {
                return not_allowed("POST");
            }
            match id.parse::<i64>() {
                Ok(id) => acknowledge(store, id).await,
                Err(_) => error(StatusCode::NOT_FOUND, "no such inbox record"),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

struct ListQuery {
    after: i64,
    limit: u32,
    include_acknowledged: bool,
}

/// Why a list query is refused (answered 400 with this text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum BadQuery {
    #[error("after must be a record id (0 or more)")]
    After,
    #[error("limit must be 1 to {MAX_LIMIT}")]
    Limit,
    #[error("include_acknowledged must be true or false")]
    IncludeAcknowledged,
}

fn parse_query(query: &str) -> Result<ListQuery, BadQuery> {
    let mut out = ListQuery {
        after: 0,
        limit: DEFAULT_LIMIT,
        include_acknowledged: false,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "after" => {
                out.after = value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or(BadQuery::After)?;
            }
            "limit" => {
                out.limit = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or(BadQuery::Limit)?;
            }
            "include_acknowledged" => {
                out.include_acknowledged = match value {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(BadQuery::IncludeAcknowledged),
                };
            }
            _ => {}
        }
    }
    Ok(out)
}

async fn list(store: &Store, query: &str) -> Reply {
    let query = match parse_query(query) {
        Ok(q) => q,
        Err(bad) => return error(StatusCode::BAD_REQUEST, &bad.to_string()),
    };
    match store
        .inbox_list(query.after, query.limit, query.include_acknowledged)
        .await
    {
        Ok(items) => {
            let next_after = items.last().map_or(query.after, |i| i.id);
            let items: Vec<_> = items.iter().map(item_json).collect();
            json(
                StatusCode::OK,
                &serde_json::json!({ "items": items, "next_after": next_after }),
            )
        }
        Err(e) => store_error(&e),
    }
}

/// `GET /inbox/<id>`'s body: the item and the message in base64.
#[derive(Serialize)]
struct Fetched<'a> {
    #[serde(flatten)]
    item: &'a InboxItem,
    #[serde(serialize_with = "as_base64")]
    raw_base64: &'a [u8],
}

/// Encodes straight into the JSON being written: no base64 string beside the response body,
/// which for a 5 MiB message would be one more copy of 6.7 MB.
fn as_base64<S: Serializer>(raw: &&[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&Base64Display::new(raw, &STANDARD))
}

async fn fetch(store: &Store, id: i64) -> Reply {
    match store.inbox_get(id).await {
        Ok(Some(entry)) => {
            let fetched = Fetched {
                item: &entry.item,
                raw_base64: &entry.raw,
            };
            // The base64 text and room for the item: written once, never regrown.
            let mut body = Vec::with_capacity(entry.raw.len().div_ceil(3) * 4 + 4096);
            match serde_json::to_writer(&mut body, &fetched) {
                Ok(()) => json_body(StatusCode::OK, body),
                Err(e) => error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("the record cannot be written as JSON: {e}"),
                ),
            }
        }
        Ok(None) => error(StatusCode::NOT_FOUND, "no such inbox record"),
        Err(e) => store_error(&e),
    }
}

async fn acknowledge(store: &Store, id: i64) -> Reply {
    match store.inbox_ack(id).await {
        Ok(Some(at)) => json(
            StatusCode::OK,
            &serde_json::json!({ "id": id, "acknowledged_at": timestamp::format(at) }),
        ),
        Ok(None) => error(StatusCode::NOT_FOUND, "no such inbox record"),
        Err(e) => store_error(&e),
    }
}

fn store_error(e: &crate::store::StoreError) -> Reply {
    tracing::error!("inbox API: {e}");
    error(StatusCode::INTERNAL_SERVER_ERROR, "store error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        let q = parse_query("after=5&limit=10&include_acknowledged=true").unwrap();
        assert_eq!((q.after, q.limit, q.include_acknowledged), (5, 10, true));
        let q = parse_query("").unwrap();
        assert_eq!((q.after, q.limit, q.include_acknowledged), (0, 100, false));
        assert!(parse_query("after=-1").is_err());
        assert!(parse_query("limit=0").is_err());
        assert!(parse_query("limit=1001").is_err());
        assert!(parse_query("include_acknowledged=yes").is_err());
        assert_eq!(
            parse_query("limit=0")
                .err()
                .map(|e| e.to_string())
                .as_deref(),
            Some("limit must be 1 to 1000")
        );
    }
}
