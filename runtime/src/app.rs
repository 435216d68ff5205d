//! What a generated gateway's `serve` and `check` commands run: the receiver, its
//! operations port (`/healthz`, `/metrics`), the inbox API and the retention task, wired
//! from the generated configuration plus the operator's overrides.
//!
//! Relative paths in the configuration (certificates, store) resolve against the spec's
//! folder; `--cert-dir` looks every certificate and key up by file name in another folder
//! instead, so operators deploy without regenerating. The operations port defaults to the
//! receive port + 1 and the inbox API to + 2, both on 127.0.0.1.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Environment, ReceiveConfig, SinkConfig};
use crate::gateway::{Gateway, MapFn};
use crate::metrics::Metrics;
use crate::server::{self, Receiver, Settings};
use crate::sink::{MllpSink, Sink, WebhookSink};
use crate::store::Store;
use crate::tls;

/// The generated parts a gateway runs with.
#[derive(Clone, Copy)]
pub struct GatewayDefinition {
    /// The customer code, for logs.
    pub customer: &'static str,
    /// The environment being served.
    pub environment: &'static Environment,
    /// Inbound message types, `TYPE^TRIGGER`.
    pub declared: &'static [&'static str],
    /// The generated mapping.
    pub map: MapFn,
}

/// The operator's overrides and the folder relative paths resolve against.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The spec's folder.
    pub base_dir: PathBuf,
    /// Listen here instead of the spec's address.
    pub listen: Option<SocketAddr>,
    /// Look certificates and keys up by file name here.
    pub cert_dir: Option<PathBuf>,
    /// Use this store file instead of the spec's.
    pub store: Option<PathBuf>,
    /// Operations port (`/healthz`, `/metrics`).
    pub ops_listen: Option<SocketAddr>,
    /// Inbox API port.
    pub inbox_listen: Option<SocketAddr>,
    /// Audit rows older than this are pruned (never records EMS has not taken).
    pub retention: Duration,
}

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The environment has no receiving side.
    #[error("the {0} environment receives nothing (no `receive:` in the spec)")]
    NoReceive(&'static str),
    /// A listen address does not parse.
    #[error("listen address {0:?} is not IP:PORT")]
    Listen(String),
    /// Certificates or keys do not load.
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
    /// The store does not open.
    #[error("store {path}: {source}")]
    Store {
        /// The file.
        path: PathBuf,
        /// Why.
        source: crate::store::StoreError,
    },
    /// Settings are unusable.
    #[error("settings: {0}")]
    Settings(String),
    /// A server failed.
    #[error("{0}")]
    Server(#[from] server::ServerError),
    /// The inbox API failed.
    #[error("inbox API: {0}")]
    Inbox(String),
    /// The async runtime did not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// The files and addresses a run uses, resolved.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Where the receiver listens.
    pub listen: SocketAddr,
    /// Operations port.
    pub ops_listen: SocketAddr,
    /// Inbox API port.
    pub inbox_listen: SocketAddr,
    /// Server certificate chain.
    pub cert: PathBuf,
    /// Server key.
    pub key: PathBuf,
    /// Client CA.
    pub client_ca: PathBuf,
    /// The store file.
    pub store: PathBuf,
}

fn receive(def: &GatewayDefinition) -> Result<&'static ReceiveConfig, AppError> {
    def.environment
        .receive
        .as_ref()
        .ok_or(AppError::NoReceive(def.environment.name.as_str()))
}

/// Resolves paths and addresses from the configuration and the overrides.
pub fn resolve(def: &GatewayDefinition, options: &RunOptions) -> Result<Resolved, AppError> {
    let r = receive(def)?;
    let listen = match options.listen {
        Some(a) => a,
        None => r
            .listen
            .parse()
            .map_err(|_| AppError::Listen(r.listen.to_string()))?,
    };
    let local = |offset: u16| {
        SocketAddr::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            if listen.port() == 0 {
                0
            } else {
                listen.port().saturating_add(offset)
            },
        )
    };
    let file = |name: &str| -> PathBuf {
        match &options.cert_dir {
            Some(dir) => dir.join(Path::new(name).file_name().unwrap_or_default()),
            None => options.base_dir.join(name),
        }
    };
    Ok(Resolved {
        listen,
        ops_listen: options.ops_listen.unwrap_or_else(|| local(1)),
        inbox_listen: options.inbox_listen.unwrap_or_else(|| local(2)),
        cert: file(r.cert),
        key: file(r.key),
        client_ca: file(r.client_ca),
        store: options
            .store
            .clone()
            .unwrap_or_else(|| options.base_dir.join(def.environment.store)),
    })
}

/// What `check` found: everything loaded.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// The resolved run.
    pub resolved: Resolved,
    /// The store's journal mode and synchronous setting, as SQLite reports them.
    pub store_pragmas: String,
}

/// Loads the certificates and opens the store without serving.
pub fn check(def: &GatewayDefinition, options: &RunOptions) -> Result<CheckReport, AppError> {
    let resolved = resolve(def, options)?;
    tls::server_config(&resolved.cert, &resolved.key, &resolved.client_ca)?;
    let store = Store::open(&resolved.store).map_err(|source| AppError::Store {
        path: resolved.store.clone(),
        source,
    })?;
    let pragmas = store
        .blocking()
        .pragmas()
        .map(|p| format!("{p:?}"))
        .unwrap_or_else(|e| format!("unreadable: {e}"));
    Ok(CheckReport {
        resolved,
        store_pragmas: pragmas,
    })
}

fn sink_for(config: &SinkConfig) -> Result<Sink, AppError> {
    Ok(match config {
        SinkConfig::Inbox => Sink::Inbox,
        SinkConfig::Webhook { url } => Sink::Webhook(
            WebhookSink::new(url, Duration::from_secs(10))
                .map_err(|e| AppError::Settings(format!("webhook sink: {e}")))?,
        ),
        SinkConfig::Mllp { addr } => Sink::Mllp(MllpSink::new(*addr, Duration::from_secs(30))),
    })
}

/// Serves until `shutdown` completes: the receiver, the operations port, the inbox API (for
/// the inbox sink) and retention. `ready` is called with the bound addresses once every
/// socket listens (tests and the demo use it to find ephemeral ports).
pub async fn serve(
    def: &GatewayDefinition,
    options: &RunOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(&Resolved) + Send,
) -> Result<(), AppError> {
    let mut resolved = resolve(def, options)?;
    let r = receive(def)?;
    let tls_config = tls::server_config(&resolved.cert, &resolved.key, &resolved.client_ca)?;
    let store = Store::open(&resolved.store).map_err(|source| AppError::Store {
        path: resolved.store.clone(),
        source,
    })?;
    let mut settings = Settings::from_receive(r).map_err(|e| AppError::Settings(e.to_string()))?;
    settings.listen = resolved.listen;
    let metrics = Arc::new(Metrics::new());
    let sink = sink_for(&def.environment.sink)?;
    let uses_inbox = matches!(def.environment.sink, SinkConfig::Inbox);
    let gateway = Gateway::new(
        def.environment,
        def.declared,
        def.map,
        store.clone(),
        sink,
        metrics.clone(),
    );
    let receiver = Receiver::bind(settings, tls_config, gateway, metrics.clone()).await?;
    resolved.listen = receiver.local_addr().map_err(|e| {
        AppError::Server(server::ServerError::Bind {
            addr: resolved.listen,
            source: e,
        })
    })?;
    let ops = server::OpsServer::bind(resolved.ops_listen, metrics.clone(), || true).await?;
    resolved.ops_listen = ops.local_addr().map_err(|e| {
        AppError::Server(server::ServerError::Bind {
            addr: resolved.ops_listen,
            source: e,
        })
    })?;
    let inbox = if uses_inbox {
        let server = crate::sink::inbox::InboxServer::bind(resolved.inbox_listen, store.clone())
            .await
            .map_err(|e| AppError::Inbox(e.to_string()))?;
        resolved.inbox_listen = server.local_addr();
        Some(server)
    } else {
        None
    };

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let signal = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    tracing::info!(
        customer = def.customer,
        env = def.environment.name.as_str(),
        listen = %resolved.listen,
        ops = %resolved.ops_listen,
        inbox = ?inbox.as_ref().map(|_| resolved.inbox_listen),
        store = %resolved.store.display(),
        "gateway ready"
    );
    ready(&resolved);

    let ops_task = tokio::spawn(ops.run(signal(stopped.clone())));
    let inbox_task = inbox.map(|server| tokio::spawn(server.serve(signal(stopped.clone()))));
    let retention_store = store.clone();
    let retention = options.retention;
    let retention_stop = signal(stopped.clone());
    let retention_task = tokio::spawn(async move {
        retention_store
            .run_retention(retention, Duration::from_secs(3600), retention_stop)
            .await;
    });
    let relay = tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let result = receiver.run(signal(stopped)).await;
    relay.abort();
    let _ = ops_task.await;
    if let Some(task) = inbox_task {
        let _ = task.await;
    }
    let _ = retention_task.await;
    result.map_err(AppError::from)
}

/// Ctrl-C or SIGTERM.
pub async fn termination() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs `serve` on a fresh multi-threaded runtime until Ctrl-C or SIGTERM, printing the
/// bound addresses on standard output as `listening <addr>` lines for scripts.
pub fn serve_blocking(def: &GatewayDefinition, options: &RunOptions) -> Result<(), AppError> {
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(AppError::Runtime)?;
    runtime.block_on(serve(def, options, termination(), |resolved| {
        println!("listening {} (HL7 over HTTPS)", resolved.listen);
        println!(
            "listening {} (operations: /healthz, /metrics)",
            resolved.ops_listen
        );
        if matches!(def.environment.sink, SinkConfig::Inbox) {
            println!("listening {} (inbox API)", resolved.inbox_listen);
        }
    }))
}

/// Structured logs on standard error; `HL7GW_LOG=debug` for more. Logs never carry message
/// content.
pub fn init_logging() {
    let level = match std::env::var("HL7GW_LOG").as_deref() {
        Ok("debug") => tracing::Level::DEBUG,
        Ok("warn") => tracing::Level::WARN,
        Ok("error") => tracing::Level::ERROR,
        Ok("trace") => tracing::Level::TRACE,
        _ => tracing::Level::INFO,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
