//! The operations port: plain HTTP/1.1 on a separate, local address. It has no TLS and no
//! authentication, so it binds loopback addresses only unless the operator says otherwise
//! ([`Exposure::BeyondLoopback`], `--ops-beyond-loopback`: a management network), and then
//! a warning is logged at start.
//!
//! - `GET /healthz`: 200 when the health check passes, 503 otherwise, with a JSON body
//!   naming what is wrong ([`crate::health`]).
//! - `GET /metrics`: the [`Metrics`] in the Prometheus text format.
//! - `/` and `/console/...`: the operations [console](crate::console), when the gateway
//!   gives it one ([`OpsServer::with_console`]).
//!
//! Anything else: 404, or 405 for another method on those paths.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::ServerError;
use crate::console::Console;
use crate::health::HealthSource;
use crate::metrics::Metrics;

/// How long the operations port waits for a request's headers.
const OPS_TIMEOUT: Duration = Duration::from_secs(10);

/// How long, on shutdown, open operations connections (a scrape) get to finish.
const OPS_SHUTDOWN: Duration = Duration::from_secs(2);

/// Where the operations port may bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Exposure {
    /// Loopback addresses only (the default): anything else is refused.
    #[default]
    LoopbackOnly,
    /// Any address, with a warning when it is not loopback (the operator's explicit choice).
    BeyondLoopback,
}

impl Exposure {
    /// Whether `addr` may be bound; logs a warning when it is allowed beyond loopback.
    pub fn check(self, addr: SocketAddr) -> Result<(), ServerError> {
        if addr.ip().is_loopback() {
            return Ok(());
        }
        match self {
            Self::LoopbackOnly => Err(ServerError::OpsNotLoopback { addr }),
            Self::BeyondLoopback => {
                warn!(
                    listen = %addr,
                    "operations port bound beyond loopback (--ops-beyond-loopback): /healthz and /metrics have no TLS and no authentication; keep this address on a management network"
                );
                Ok(())
            }
        }
    }
}

/// What `/metrics` renders: one gateway's [`Metrics`], or the host's view of every
/// customer's ([`crate::host`]).
pub trait MetricsSource: Send + Sync + 'static {
    /// The Prometheus text.
    fn render(&self) -> String;
}

impl MetricsSource for Metrics {
    fn render(&self) -> String {
        Metrics::render(self)
    }
}

/// A bound operations server, ready to [`run`](Self::run).
pub struct OpsServer<F, M = Metrics> {
    listener: TcpListener,
    metrics: Arc<M>,
    health: Arc<F>,
    console: Option<Arc<Console>>,
}

impl<F: HealthSource> OpsServer<F> {
    /// Binds the operations port on a loopback address (see [`Exposure`]).
    pub async fn bind(
        addr: SocketAddr,
        metrics: Arc<Metrics>,
        health: F,
    ) -> Result<Self, ServerError> {
        Self::bind_exposed(addr, Exposure::LoopbackOnly, metrics, health).await
    }

    /// Binds the operations port where `exposure` allows it.
    pub async fn bind_exposed(
        addr: SocketAddr,
        exposure: Exposure,
        metrics: Arc<Metrics>,
        health: F,
    ) -> Result<Self, ServerError> {
        OpsServer::bind_source(addr, exposure, metrics, health).await
    }
}

impl<F: HealthSource, M: MetricsSource> OpsServer<F, M> {
    /// Binds the operations port where `exposure` allows it, serving `metrics` as
    /// `/metrics`.
    pub async fn bind_source(
        addr: SocketAddr,
        exposure: Exposure,
        metrics: Arc<M>,
        health: F,
    ) -> Result<Self, ServerError> {
        exposure.check(addr)?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        Ok(Self {
            listener,
            metrics,
            health: Arc::new(health),
            console: None,
        })
    }

    /// Serves `console` at `/` and `/console/...` too.
    pub fn with_console(mut self, console: Console) -> Self {
        self.console = Some(Arc::new(console));
        self
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let Self {
            listener,
            metrics,
            health,
            console,
        } = self;
        info!(listen = %listener.local_addr().map_or_else(|_| "?".to_owned(), |a| a.to_string()), "operations port listening");
        let mut tasks = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        let metrics = metrics.clone();
                        let health = health.clone();
                        let console = console.clone();
                        tasks.spawn(async move {
                            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                                let metrics = metrics.clone();
                                let health = health.clone();
                                let console = console.clone();
                                async move {
                                    let response = match console {
                                        Some(console) if Console::serves(request.uri().path()) => {
                                            console.answer(request, peer).await
                                        }
                                        _ => answer(&request, &*metrics, &*health).await,
                                    };
                                    Ok::<_, Infallible>(response)
                                }
                            });
                            let mut http = hyper::server::conn::http1::Builder::new();
                            http.timer(TokioTimer::new()).header_read_timeout(OPS_TIMEOUT);
                            let _ = http.serve_connection(TokioIo::new(tcp), service).await;
                        });
                    }
                    Err(e) => {
                        warn!(error = %e, "operations port: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        drop(listener);
        if tokio::time::timeout(OPS_SHUTDOWN, async {
            while tasks.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tasks.shutdown().await;
        }
        Ok(())
    }
}

/// Binds and runs the operations port until `shutdown` completes.
pub async fn serve_ops<F>(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: F,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError>
where
    F: HealthSource,
{
    OpsServer::bind(addr, metrics, health)
        .await?
        .run(shutdown)
        .await
}

async fn answer(
    request: &Request<Incoming>,
    metrics: &impl MetricsSource,
    health: &impl HealthSource,
) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if path != "/healthz" && path != "/metrics" {
        return text(
            StatusCode::NOT_FOUND,
            "not found: GET /healthz, /metrics or /console\n",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    if path == "/healthz" {
        let report = health.report().await;
        if !report.healthy() {
            tracing::warn!(problems = ?report.problems, "health check: unavailable");
        }
        let mut response = Response::new(Full::new(Bytes::from(report.to_json().to_string())));
        if !report.healthy() {
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        }
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    } else {
        let mut response = Response::new(Full::new(Bytes::from(metrics.render())));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        response
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beyond_loopback_only_when_exposed() {
        let local: SocketAddr = ([127, 0, 0, 1], 9444).into();
        let v6_local: SocketAddr = (std::net::Ipv6Addr::LOCALHOST, 9444).into();
        let any: SocketAddr = ([0, 0, 0, 0], 9444).into();
        let lan: SocketAddr = ([10, 1, 2, 3], 9444).into();
        for addr in [local, v6_local] {
            assert!(Exposure::LoopbackOnly.check(addr).is_ok());
            assert!(Exposure::BeyondLoopback.check(addr).is_ok());
        }
        for addr in [any, lan] {
            assert!(matches!(
                Exposure::LoopbackOnly.check(addr),
                Err(ServerError::OpsNotLoopback { addr: refused }) if refused == addr
            ));
            assert!(Exposure::BeyondLoopback.check(addr).is_ok());
        }
    }
}
