//! The operations console: an HTML page on the operations listener showing every customer ×
//! environment it is given ([`ConsolePart`]): messages received and sent in the last hour,
//! ACK codes as small charts, each stream's state (and why, since when), queue depth, the
//! oldest unacknowledged message's age, the last ACK and the days the certificates have
//! left; and a page per stream with its messages (metadata only) where an operator retries,
//! skips or opens one, each recorded in the store's audit trail
//! ([`crate::store::audit`]).
//!
//! The single-customer gateway gives it one part; a host serving many customers gives it
//! one per customer and environment.
//!
//! | request | answer |
//! |---|---|
//! | `GET /`, `GET /console` | the overview; it polls `status.json` every 5 s and patches itself |
//! | `GET /console/status.json` | the overview as JSON |
//! | `GET /console/{code}/{env}/{stream}` | the stream page |
//! | `POST /console/{code}/{env}/messages/{id}/retry`, `/skip`, `/open` | JSON `{"operator", "reason"}` and the `X-CSRF-Token` header ([`csrf`]) |
//! | `GET /console/assets/console.css`, `console.js` | served from the binary |
//!
//! Every response carries a Content-Security-Policy without external sources,
//! `frame-ancestors 'none'`, `X-Frame-Options: DENY` and `Cache-Control: no-store`. GET never
//! changes state. The listener has no authentication (loopback only unless
//! `--ops-beyond-loopback`): the operator types a name, recorded with the peer address.

pub mod csrf;
mod page;
pub mod view;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;

use crate::health::Expiry;
use crate::metrics::Metrics;
use crate::queue::{Queue, QueueError, QueueId};
use crate::store::audit::Operator;
use crate::store::{Store, timestamp};
use csrf::CsrfToken;
use page::Pages;

/// The largest body a console POST may have.
const MAX_BODY: usize = 8 * 1024;

/// One customer × environment, as the console shows it.
#[derive(Clone)]
pub struct ConsolePart {
    /// The customer code (`demo`).
    pub customer_code: String,
    /// The customer's name.
    pub customer_name: String,
    /// The environment (`test`, `prod`).
    pub env: String,
    /// Its store: the last hour, the messages, the audit trail.
    pub store: Store,
    /// Its outbound queue (the running sequencer's, so an operator's retry wakes it).
    pub queue: Queue,
    /// Its metrics (open connections).
    pub metrics: Arc<Metrics>,
    /// Its certificates' expiry dates, replaced after a reload.
    pub certificates: Arc<RwLock<Vec<Expiry>>>,
}

/// Why the console could not be built: a bug in hl7gw (a template) or no randomness.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// An embedded template does not parse.
    #[error("console templates: {0}")]
    Template(String),
    /// The system's random source failed.
    #[error("console: no random CSRF token could be made")]
    Random,
}

/// The console: its parts, the per-process CSRF token and the parsed templates.
pub struct Console {
    parts: Vec<ConsolePart>,
    csrf: CsrfToken,
    pages: Pages,
}

/// What an operator's POST carries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionRequest {
    operator: String,
    #[serde(default)]
    reason: String,
}

impl Console {
    /// The console of `parts`.
    pub fn new(parts: Vec<ConsolePart>) -> Result<Self, ConsoleError> {
        Ok(Self {
            parts,
            csrf: CsrfToken::generate().map_err(|_| ConsoleError::Random)?,
            pages: Pages::new().map_err(|e| ConsoleError::Template(e.to_string()))?,
        })
    }

    /// Whether `path` is the console's.
    pub fn serves(path: &str) -> bool {
        path == "/" || path == "/console" || path.starts_with("/console/")
    }

    fn part(&self, code: &str, env: &str) -> Option<&ConsolePart> {
        self.parts
            .iter()
            .find(|p| p.customer_code == code && p.env == env)
    }

    /// Answers one request from `peer`.
    pub async fn answer(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Full<Bytes>> {
        if let Err(refused) = csrf::check_host(request.headers()) {
            tracing::warn!(peer = %peer, "console: refused a request: {refused}");
            return page::error(StatusCode::FORBIDDEN, refused);
        }
        let path = request.uri().path().to_owned();
        let rest = path
            .strip_prefix("/console")
            .unwrap_or("")
            .trim_matches('/');
        let segments: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        let method = request.method().clone();
        match (segments.as_slice(), method == Method::POST) {
            ([code, env, "messages", id, action], true) => {
                let (code, env, id, action) = (
                    (*code).to_owned(),
                    (*env).to_owned(),
                    (*id).to_owned(),
                    (*action).to_owned(),
                );
                self.act(request, peer, &code, &env, &id, &action).await
            }
            (_, true) => page::error(
                StatusCode::NOT_FOUND,
                format!("no console action at {path}"),
            ),
            _ if method != Method::GET && method != Method::HEAD => {
                let mut response =
                    page::error(StatusCode::METHOD_NOT_ALLOWED, "use GET (POST for actions)");
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
                response
            }
            ([], _) => self.overview_page().await,
            (["status.json"], _) => {
                let overview = self.overview().await;
                page::json(StatusCode::OK, &overview)
            }
            (["assets", "console.css"], _) => page::respond(
                StatusCode::OK,
                "text/css; charset=utf-8",
                Bytes::from_static(page::CSS.as_bytes()),
            ),
            (["assets", "console.js"], _) => page::respond(
                StatusCode::OK,
                "text/javascript; charset=utf-8",
                Bytes::from_static(page::JS.as_bytes()),
            ),
            ([code, env, destination], _) => self.stream_page(code, env, destination).await,
            _ => page::text(
                StatusCode::NOT_FOUND,
                format!("not found: {path}; the console is at /console\n"),
            ),
        }
    }

    async fn overview(&self) -> view::Overview {
        let now = timestamp::now();
        let mut parts = Vec::with_capacity(self.parts.len());
        for part in &self.parts {
            parts.push(part.view(now).await);
        }
        view::Overview {
            generated_at: view::when(now),
            parts,
        }
    }

    async fn overview_page(&self) -> Response<Full<Bytes>> {
        let overview = self.overview().await;
        self.pages.render(
            "overview.html",
            &overview,
            self.csrf.as_str(),
            &overview.generated_at,
        )
    }

    async fn stream_page(&self, code: &str, env: &str, destination: &str) -> Response<Full<Bytes>> {
        let Some(part) = self.part(code, env) else {
            return page::text(
                StatusCode::NOT_FOUND,
                format!("no customer {code:?} environment {env:?} here\n"),
            );
        };
        match part.stream_page(destination).await {
            Ok(Some(stream)) => self.pages.render(
                "stream.html",
                &serde_json::json!({ "page": stream }),
                self.csrf.as_str(),
                &view::when(timestamp::now()),
            ),
            Ok(None) => page::text(
                StatusCode::NOT_FOUND,
                format!("no stream {destination:?} in {code}/{env}\n"),
            ),
            Err(e) => page::text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the store could not be read: {e}\n"),
            ),
        }
    }

    /// An operator's retry, skip or open: checked against cross-site requests first, then
    /// the body; recorded in the audit trail by the store call that does it.
    async fn act(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        code: &str,
        env: &str,
        id: &str,
        action: &str,
    ) -> Response<Full<Bytes>> {
        if let Err(refused) = self.csrf.check(request.headers()) {
            tracing::warn!(peer = %peer, "console: refused a state-changing request: {refused}");
            return page::error(StatusCode::FORBIDDEN, refused);
        }
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
            });
        if !is_json {
            return page::error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send application/json");
        }
        let Some(part) = self.part(code, env) else {
            return page::error(
                StatusCode::NOT_FOUND,
                format!("no customer {code:?} environment {env:?} here"),
            );
        };
        let Ok(id) = id.parse::<QueueId>() else {
            return page::error(StatusCode::NOT_FOUND, format!("{id:?} is not a message id"));
        };
        let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                return page::error(
                    StatusCode::BAD_REQUEST,
                    format!("body: {e} (at most {MAX_BODY} bytes)"),
                );
            }
        };
        let asked: ActionRequest = match serde_json::from_slice(&body) {
            Ok(a) => a,
            Err(e) => return page::error(StatusCode::BAD_REQUEST, format!("body: {e}")),
        };
        let by = match Operator::new(&asked.operator, peer.to_string(), &asked.reason, true) {
            Ok(by) => by,
            Err(e) => return page::error(StatusCode::BAD_REQUEST, e),
        };
        let done = match action {
            "retry" => part
                .queue
                .retry(id, by)
                .await
                .map(|m| serde_json::json!({ "message": m })),
            "skip" => part
                .queue
                .skip(id, by)
                .await
                .map(|m| serde_json::json!({ "message": m })),
            "open" => {
                let (name, from) = (by.name.clone(), by.peer.clone());
                match part.store.audit_open(id, by).await {
                    Ok(Some(detail)) => {
                        tracing::info!(id, operator = %name, peer = %from, "console: operator opened message");
                        Ok(serde_json::json!({
                            "message": detail.info,
                            "raw": String::from_utf8_lossy(&detail.raw).replace('\r', "\n"),
                        }))
                    }
                    Ok(None) => Err(QueueError::NotFound(id)),
                    Err(e) => Err(e),
                }
            }
            other => {
                return page::error(
                    StatusCode::NOT_FOUND,
                    format!("no action {other:?}: retry, skip or open"),
                );
            }
        };
        match done {
            Ok(answer) => page::json(StatusCode::OK, &answer),
            Err(e @ QueueError::NotFound(_)) => page::error(StatusCode::NOT_FOUND, e),
            Err(e @ QueueError::NotPending { .. }) => page::error(StatusCode::CONFLICT, e),
            Err(e) => page::error(StatusCode::SERVICE_UNAVAILABLE, e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{FailureClass, Outcome};
    use crate::queue::Action;

    const RAW: &[u8] =
        b"MSH|^~\\&|GW|EMS|TIE|TRUST|20260101120000||ORU^R01|MSG<1>|T|2.4\rPID|1||9434765919\r";

    async fn body(response: Response<Full<Bytes>>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    /// The pages render from a real store: a held stream shows held with its reason
    /// (escaped), the stream page lists the message's metadata but not its bytes, and every
    /// response carries the security headers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_pages_show_a_held_stream_and_no_patient_data() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("console.sqlite")).unwrap();
        let queue = Queue::new(store.clone());
        let id = queue.enqueue("engine", RAW.to_vec()).await.unwrap().id;
        queue.begin_attempt(id, None).await.unwrap();
        queue
            .record_failure(
                id,
                Outcome::failed(FailureClass::AckReject, "AR <unknown ward>"),
                |_| Action::Hold("on_ar: hold".into()),
                None,
            )
            .await
            .unwrap();
        let console = Console::new(vec![ConsolePart {
            customer_code: "demo".into(),
            customer_name: "Demo & Co".into(),
            env: "test".into(),
            store: store.clone(),
            queue,
            metrics: Arc::new(Metrics::new()),
            certificates: Arc::default(),
        }])
        .unwrap();
        let overview = console.overview_page().await;
        assert_eq!(overview.status(), StatusCode::OK);
        let csp = overview.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
        assert_eq!(overview.headers()[header::CACHE_CONTROL], "no-store");
        let html = body(overview).await;
        assert!(html.contains("Demo &amp; Co"), "{html}");
        assert!(
            html.contains(r#"<span class="state held">held</span>"#),
            "{html}"
        );
        assert!(html.contains("on_ar: hold"), "{html}");
        assert!(html.contains(console.csrf.as_str()));

        let stream = body(console.stream_page("demo", "test", "engine").await).await;
        assert!(stream.contains("MSG&lt;1&gt;"), "escaped: {stream}");
        assert!(stream.contains("AR &lt;unknown ward&gt;"), "{stream}");
        assert!(
            !stream.contains("9434765919"),
            "no patient data on the stream page"
        );
        // A held head with more newer messages than the page lists is still on it.
        let newer: Vec<Vec<u8>> = (0..=view::STREAM_PAGE_MESSAGES)
            .map(|n| {
                String::from_utf8_lossy(RAW)
                    .replace("MSG<1>", &format!("NEWER{n}"))
                    .into_bytes()
            })
            .collect();
        console.parts[0]
            .queue
            .enqueue_all("engine", newer)
            .await
            .unwrap();
        let crowded = body(console.stream_page("demo", "test", "engine").await).await;
        assert!(
            crowded.contains("NEWER200<") && !crowded.contains("NEWER0<"),
            "{crowded}"
        );
        assert!(crowded.contains("MSG&lt;1&gt;"), "the held head is listed");
        assert!(crowded.contains(&format!(r#"data-action="retry" data-id="{id}""#)));

        let missing = console.stream_page("demo", "test", "nowhere").await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);

        let json: serde_json::Value = serde_json::to_value(console.overview().await).unwrap();
        assert_eq!(json["parts"][0]["streams"][0]["state"], "held");
        assert_eq!(json["parts"][0]["key"], "demo/test");
    }
}
