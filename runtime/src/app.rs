//! What a generated gateway's `serve` and `check` commands run: the receiver, its
//! operations port (`/healthz`, `/metrics`), the inbox API and the retention task, wired
//! from the generated configuration plus the operator's overrides.
//!
//! Relative paths in the configuration (certificates, store) resolve against the spec's
//! folder; `--cert-dir` looks every certificate and key up by file name in another folder
//! instead, so operators deploy without regenerating. The operations port defaults to the
//! receive port + 1, the inbox API to + 2, the intake API to + 3 and the intake MLLP
//! listener to + 4, all on 127.0.0.1 ([`crate::listeners::plan`], which `hl7gw validate`
//! checks for collisions between environments).
//!
//! An environment with a `send:` side also runs the sending gateway in the same process:
//! the intake (EMS puts outbound messages into the durable queue) and the sequencer (one
//! message in flight to the Trust's engine, the next only after its ACK).
//!
//! Every background task runs under a [`Supervisor`] ([`crate::supervise`]), and the
//! operations port's `/healthz` is a [`HealthCheck`] over the store, the supervisor's task
//! board and the loaded certificates ([`crate::health`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{EmsAccess, EnvName, Environment, ReceiveConfig, SinkConfig, StoreConfig};
use crate::gateway::Gateway;
use crate::health::{Expiry, HealthCheck};
use crate::listeners::Role;
use crate::metrics::Metrics;
use crate::queue::SequencerEvent;
use crate::server::{self, Receiver, Settings};
use crate::sink::{MllpSink, Sink, WebhookSink};
use crate::spec::GatewaySpec;
use crate::store::Store;
use crate::supervise::{Supervisor, TaskBoard};
use crate::tls;

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
    /// With a PostgreSQL store: the folder of the control socket (default: the spec's
    /// folder). An SQLite store's socket is beside its file.
    pub control_dir: Option<PathBuf>,
    /// Operations port (`/healthz`, `/metrics`).
    pub ops_listen: Option<SocketAddr>,
    /// Whether the operations port may bind beyond loopback (`--ops-beyond-loopback`).
    pub ops_exposure: server::Exposure,
    /// Inbox API port.
    pub inbox_listen: Option<SocketAddr>,
    /// Intake API port (outbound messages from EMS).
    pub intake_listen: Option<SocketAddr>,
    /// Intake MLLP port.
    pub mllp_listen: Option<SocketAddr>,
    /// Replaces the spec's `retention`: inbound rows and delivered or skipped outbound
    /// messages older than this are pruned (never records EMS has not taken, never pending
    /// or held messages).
    pub retention: Option<Duration>,
}

/// Why a gateway could not start or a command failed: one variant per cause, so the
/// command line can tell an input error (exit 1) from an I/O error (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The spec describes no such environment.
    #[error("{spec} describes no {env} environment")]
    NoEnvironment {
        /// The spec's path.
        spec: String,
        /// The environment asked for.
        env: &'static str,
    },
    /// The spec's `ems.address` is not an IP address.
    #[error("ems.address {0:?} is not an IP address")]
    EmsAddress(String),
    /// An EMS listener on plain loopback asked to bind another address.
    #[error("{0}")]
    EmsNotLoopback(#[from] crate::ems::NotLoopback),
    /// The environment has no receiving side.
    #[error("the {0} environment receives nothing (no `receive:` in the spec)")]
    NoReceive(&'static str),
    /// A listen address does not parse.
    #[error("listen address {0:?} is not IP:PORT")]
    Listen(String),
    /// The receive port leaves no room for the ports derived from it.
    #[error("{0}")]
    Ports(#[from] crate::listeners::PortRangeError),
    /// Certificates or keys do not load.
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
    /// A certificate, key or CRL file does not load (named).
    #[error("TLS: {0}")]
    TlsFile(#[from] crate::reload::FileError),
    /// `reload` did not reload.
    #[error("{0}")]
    Reload(#[from] crate::control::ControlError),
    /// The receive settings are unusable (an allowed IP range, a content type).
    #[error("receive settings: {0}")]
    Receive(#[from] server::SettingsError),
    /// The resource limits cannot work (`hl7gw validate` reports the same as `env-limits`).
    #[error("limits: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Limits(Vec<crate::config::LimitProblem>),
    /// The sending side's client cannot be built (its URL, certificates or keys).
    #[error("send: {0}")]
    Send(#[from] crate::client::ClientError),
    /// The webhook sink's settings are unusable.
    #[error("webhook sink: {0}")]
    Webhook(#[from] crate::sink::WebhookConfigError),
    /// The store does not open.
    #[error("store {path}: {source}")]
    Store {
        /// The file.
        path: PathBuf,
        /// Why.
        source: crate::store::StoreError,
    },
    /// A server failed (a port in use).
    #[error("{0}")]
    Server(#[from] server::ServerError),
    /// The inbox API cannot listen.
    #[error("inbox API: {0}")]
    Inbox(#[from] crate::sink::inbox::InboxError),
    /// The intake cannot listen.
    #[error("{0}")]
    Intake(#[from] crate::intake::IntakeError),
    /// A queue command failed.
    #[error("{0}")]
    Queue(#[from] crate::queue::QueueError),
    /// The operations console could not be set up (no randomness for its CSRF token).
    #[error("{0}")]
    Console(#[from] crate::console::ConsoleError),
    /// The async runtime did not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// A background task that cannot be restarted ended: the gateway stopped.
    #[error("{0}")]
    TaskFailed(#[from] crate::supervise::Failed),
}

impl AppError {
    /// True for an I/O failure (a port in use, a file that cannot be read or written, the
    /// store): the command line exits 2 for these and 1 for errors in the input.
    pub fn is_io(&self) -> bool {
        use crate::queue::QueueError;
        use crate::sink::inbox::InboxError;
        match self {
            Self::Tls(tls::TlsError::Read { .. })
            | Self::TlsFile(crate::reload::FileError {
                source: tls::TlsError::Read { .. },
                ..
            })
            | Self::Send(crate::client::ClientError::Tls(tls::TlsError::Read { .. }))
            | Self::Store { .. }
            | Self::Server(server::ServerError::Bind { .. })
            | Self::Inbox(InboxError::Bind { .. })
            | Self::Intake(crate::intake::IntakeError::Bind { .. })
            | Self::Queue(QueueError::Store(_))
            | Self::Runtime(_)
            | Self::Console(_)
            | Self::TaskFailed(_) => true,
            Self::Reload(e) => e.is_io(),
            Self::NoEnvironment { .. }
            | Self::NoReceive(_)
            | Self::Listen(_)
            | Self::EmsAddress(_)
            | Self::EmsNotLoopback(_)
            | Self::Ports(_)
            | Self::Tls(_)
            | Self::TlsFile(_)
            | Self::Receive(_)
            | Self::Server(server::ServerError::OpsNotLoopback { .. })
            | Self::Limits(_)
            | Self::Send(_)
            | Self::Webhook(_)
            | Self::Inbox(_)
            | Self::Intake(_)
            | Self::Queue(_) => false,
        }
    }
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
    /// The client CA's CRLs, when the spec names them.
    pub client_crl: Option<PathBuf>,
    /// The SQLite store file; for a PostgreSQL store, the path the control socket is named
    /// after (`<dbname>.postgres` in `--control-dir`, or the spec's folder).
    pub store: PathBuf,
    /// The PostgreSQL store, when the environment names one (and `--store` does not
    /// override it with an SQLite file).
    pub postgres: Option<crate::config::PostgresConfig>,
    /// The spec's folder and certificate folder, for the PostgreSQL store's files.
    pub files: ResolvedFiles,
    /// The sending side, when the environment has one.
    pub send: Option<ResolvedSend>,
    /// The EMS-facing listeners' TLS files and allowed subjects; `None` for plain loopback.
    pub ems: Option<ResolvedEms>,
}

/// How relative paths of the configuration resolve: against the spec's folder, or by file
/// name in `--cert-dir`.
#[derive(Debug, Clone)]
pub struct ResolvedFiles {
    /// The spec's folder.
    pub base_dir: PathBuf,
    /// `--cert-dir`.
    pub cert_dir: Option<PathBuf>,
}

impl ResolvedFiles {
    /// `name` resolved.
    pub fn file(&self, name: &str) -> PathBuf {
        match &self.cert_dir {
            Some(dir) => dir.join(Path::new(name).file_name().unwrap_or_default()),
            None => self.base_dir.join(name),
        }
    }
}

impl Resolved {
    /// Opens the environment's store: the SQLite file, or the PostgreSQL database (its
    /// password read now from where the spec says). Blocking.
    pub fn open_store(&self) -> Result<Store, AppError> {
        let opened = match &self.postgres {
            None => Store::open(&self.store),
            Some(config) => {
                crate::store::PostgresOptions::from_config(config, |name| self.files.file(name))
                    .and_then(|options| Store::open_postgres(&options))
            }
        };
        opened.map_err(|source| AppError::Store {
            path: self.store.clone(),
            source,
        })
    }

    /// How long a replica's lease on an outbound stream lasts (PostgreSQL), the default
    /// otherwise (SQLite's one process holds every lease).
    pub fn stream_lease(&self) -> Duration {
        self.postgres
            .as_ref()
            .map_or(crate::config::defaults::STREAM_LEASE.to_std(), |p| {
                Duration::from_millis(p.lease_ms)
            })
    }
}

/// The EMS-facing listeners' TLS ([`crate::ems`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedEms {
    /// Server certificate, key, EMS's client CA and its CRLs.
    pub files: crate::reload::TlsFiles,
    /// EMS's client subjects allowed after the handshake.
    pub allowed_clients: Vec<String>,
    /// The address the EMS-facing listeners bind (`ems.address`).
    pub address: std::net::IpAddr,
}

/// The sending side's files and ports.
#[derive(Debug, Clone)]
pub struct ResolvedSend {
    /// Client certificate chain.
    pub cert: PathBuf,
    /// Client key.
    pub key: PathBuf,
    /// The Trust's server CA.
    pub server_ca: PathBuf,
    /// The server CA's CRLs, when the spec names them.
    pub server_crl: Option<PathBuf>,
    /// Intake API.
    pub intake_listen: SocketAddr,
    /// Intake MLLP listener.
    pub mllp_listen: SocketAddr,
}

/// The queue's name for an environment's one destination.
pub const DESTINATION: &str = "engine";

/// The environment `env` of `spec`.
pub fn environment(spec: &GatewaySpec, env: EnvName) -> Result<&Environment, AppError> {
    spec.environment(env)
        .ok_or_else(|| AppError::NoEnvironment {
            spec: spec.spec_path.to_string(),
            env: env.as_str(),
        })
}

fn receive(environment: &Environment) -> Result<&ReceiveConfig, AppError> {
    environment
        .receive
        .as_ref()
        .ok_or(AppError::NoReceive(environment.name.as_str()))
}

/// Resolves paths and addresses from the configuration and the overrides.
pub fn resolve(environment: &Environment, options: &RunOptions) -> Result<Resolved, AppError> {
    let r = receive(environment)?;
    let listen = match options.listen {
        Some(a) => a,
        None => r
            .listen
            .parse()
            .map_err(|_| AppError::Listen(r.listen.to_string()))?,
    };
    let ems_ip = match &environment.ems {
        EmsAccess::PlainLoopback => None,
        EmsAccess::MutualTls(tls) => Some(
            tls.address
                .parse()
                .map_err(|_| AppError::EmsAddress(tls.address.to_string()))?,
        ),
    };
    // The same plan `hl7gw validate` checks for collisions (runtime::listeners).
    let planned = crate::listeners::plan(
        listen,
        crate::listeners::Sides {
            inbox: matches!(environment.sink, SinkConfig::Inbox),
            send: environment.send.is_some(),
            ems_ip,
        },
    )?;
    // A listener the environment does not run is never bound; its address only fills the
    // field.
    let local = |role: Role| {
        planned
            .iter()
            .find(|l| l.role == role)
            .map_or_else(|| crate::listeners::derived(0), |l| l.addr)
    };
    let file = |name: &str| -> PathBuf {
        match &options.cert_dir {
            Some(dir) => dir.join(Path::new(name).file_name().unwrap_or_default()),
            None => options.base_dir.join(name),
        }
    };
    Ok(Resolved {
        listen,
        ops_listen: options
            .ops_listen
            .unwrap_or_else(|| local(Role::Operations)),
        inbox_listen: options.inbox_listen.unwrap_or_else(|| local(Role::Inbox)),
        cert: file(&r.cert),
        key: file(&r.key),
        client_ca: file(&r.client_ca),
        client_crl: r.client_crl.as_deref().map(file),
        store: match (&options.store, &environment.store) {
            (Some(path), _) => path.clone(),
            (None, StoreConfig::Sqlite(path)) => options.base_dir.join(&**path),
            (None, StoreConfig::Postgres(p)) => options
                .control_dir
                .as_ref()
                .unwrap_or(&options.base_dir)
                .join(format!("{}.postgres", p.dbname)),
        },
        postgres: match (&options.store, &environment.store) {
            (None, StoreConfig::Postgres(p)) => Some(p.clone()),
            _ => None,
        },
        files: ResolvedFiles {
            base_dir: options.base_dir.clone(),
            cert_dir: options.cert_dir.clone(),
        },
        send: environment.send.as_ref().map(|send| ResolvedSend {
            cert: file(&send.cert),
            key: file(&send.key),
            server_ca: file(&send.server_ca),
            server_crl: send.server_crl.as_deref().map(file),
            intake_listen: options.intake_listen.unwrap_or_else(|| local(Role::Intake)),
            mllp_listen: options
                .mllp_listen
                .unwrap_or_else(|| local(Role::IntakeMllp)),
        }),
        ems: match &environment.ems {
            EmsAccess::PlainLoopback => None,
            EmsAccess::MutualTls(tls) => Some(ResolvedEms {
                files: crate::reload::TlsFiles {
                    cert: file(&tls.cert),
                    key: file(&tls.key),
                    peer_ca: file(&tls.client_ca),
                    peer_crl: tls.client_crl.as_deref().map(file),
                },
                allowed_clients: tls.allowed_clients.iter().map(|c| c.to_string()).collect(),
                address: ems_ip.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
            }),
        },
    })
}

impl Resolved {
    /// The receiver's certificate files.
    pub fn server_tls_files(&self) -> crate::reload::TlsFiles {
        crate::reload::TlsFiles {
            cert: self.cert.clone(),
            key: self.key.clone(),
            peer_ca: self.client_ca.clone(),
            peer_crl: self.client_crl.clone(),
        }
    }
}

impl ResolvedSend {
    /// The sender's certificate files.
    pub fn client_tls_files(&self) -> crate::reload::TlsFiles {
        crate::reload::TlsFiles {
            cert: self.cert.clone(),
            key: self.key.clone(),
            peer_ca: self.server_ca.clone(),
            peer_crl: self.server_crl.clone(),
        }
    }
}

/// What `check` found: everything loaded.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// The resolved run.
    pub resolved: Resolved,
    /// The store's journal mode and synchronous setting, as SQLite reports them.
    pub store_pragmas: String,
}

/// Checks the limits, loads the certificates and opens the store of `environment` without
/// serving.
pub fn check(environment: &Environment, options: &RunOptions) -> Result<CheckReport, AppError> {
    let resolved = resolve(environment, options)?;
    // Everything `serve` builds before it binds: what it would refuse, this refuses.
    drop(prepare(environment, &resolved)?);
    options.ops_exposure.check(resolved.ops_listen)?;
    if resolved.ems.is_none() {
        // Plain loopback: what `serve` would refuse to bind.
        let plain = crate::ems::EmsAuth::plain_loopback();
        if matches!(environment.sink, SinkConfig::Inbox) {
            plain.check_bind("the inbox API", resolved.inbox_listen)?;
        }
        if let Some(send) = &resolved.send {
            plain.check_bind("the intake API", send.intake_listen)?;
            plain.check_bind("the intake MLLP listener", send.mllp_listen)?;
        }
    }
    let store = resolved.open_store()?;
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

/// What `serve` builds from the configuration and the files it names before it opens the
/// store or binds a socket. `check` builds it too, so a certificate, key or CRL that does not
/// load, a receive setting, sink URL or send URL that does not parse, or limits that cannot
/// work are reported by `check` exactly as `serve` would report them.
struct Prepared {
    server_tls: Arc<crate::reload::ServerTls>,
    tls_config: Arc<rustls::ServerConfig>,
    client_tls: Option<Arc<crate::reload::ClientTls>>,
    /// The sequencer's first HTTPS client (a `send:` side only).
    client: Option<crate::client::HttpsClient>,
    ems_tls: Option<Arc<crate::reload::ServerTls>>,
    ems_auth: crate::ems::EmsAuth,
    settings: Settings,
    sink: Sink,
    /// The loaded certificates' expiry dates, for `/healthz`.
    certificates: Vec<Expiry>,
}

fn prepare(environment: &Environment, resolved: &Resolved) -> Result<Prepared, AppError> {
    check_limits(environment)?;
    let server_tls = crate::reload::ServerTls::load(resolved.server_tls_files())?;
    let tls_config = server_tls.config()?;
    let client_tls = match &resolved.send {
        Some(files) => Some(crate::reload::ClientTls::load(files.client_tls_files())?),
        None => None,
    };
    let client = match (&environment.send, &client_tls) {
        (Some(send), Some(tls)) => Some(crate::client::HttpsClient::new(
            &send.url,
            tls.config()?,
            Duration::from_millis(send.timeout_ms),
        )?),
        _ => None,
    };
    let ems_tls = match &resolved.ems {
        Some(ems) => Some(crate::reload::ServerTls::load(ems.files.clone())?),
        None => None,
    };
    let ems_auth = match (&ems_tls, &resolved.ems) {
        (Some(tls), Some(ems)) => {
            crate::ems::EmsAuth::mutual_tls(tls, ems.allowed_clients.clone())?
        }
        _ => crate::ems::EmsAuth::plain_loopback(),
    };
    let mut settings =
        Settings::from_receive(receive(environment)?)?.with_limits(&environment.limits);
    settings.listen = resolved.listen;
    Ok(Prepared {
        server_tls,
        tls_config,
        client_tls,
        client,
        ems_tls,
        ems_auth,
        settings,
        sink: sink_for(&environment.sink)?,
        certificates: certificate_expiries(resolved)?,
    })
}

/// The environment's limits, refused when they cannot work (as `validate` does).
fn check_limits(environment: &Environment) -> Result<(), AppError> {
    let max_body = environment.receive.as_ref().map(|r| r.max_body);
    let problems = environment.limits.problems(max_body);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(AppError::Limits(problems))
    }
}

fn sink_for(config: &SinkConfig) -> Result<Sink, AppError> {
    Ok(match config {
        SinkConfig::Inbox => Sink::Inbox,
        SinkConfig::Webhook { url } => {
            Sink::Webhook(WebhookSink::new(url, Duration::from_secs(10))?)
        }
        SinkConfig::Mllp { addr } => {
            Sink::Mllp(MllpSink::new(addr.to_string(), Duration::from_secs(30)))
        }
    })
}

/// Serves environment `env` of `spec` until `shutdown` completes: the receiver, the
/// operations port, the inbox API (for the inbox sink), retention and, when the environment
/// sends, the intake and the sequencer. `ready` is called with the bound addresses once
/// every socket listens (tests and the demo use it to find ephemeral ports).
pub async fn serve(
    spec: &GatewaySpec,
    env: EnvName,
    options: &RunOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(&Resolved) + Send,
) -> Result<(), AppError> {
    serve_with(spec, env, options, ReceiveSide::Own, shutdown, ready).await
}

/// How an environment's gateway gets its receive connections and serves its operations
/// port.
pub(crate) enum ReceiveSide {
    /// Its own receive socket and operations port: a `gw-<code>` gateway.
    Own,
    /// Inside the host ([`crate::host`]): no socket of its own; the host's listener routes
    /// it the connections whose TLS server name is its `receive.hostname`, and the host's
    /// operations port serves its metrics and health. The callback gets those parts once
    /// the environment is built, before it serves.
    Hosted(Box<dyn FnOnce(HostedParts) + Send>),
}

/// What the host needs of one customer's environment: where to route its connections and
/// what to show on the shared operations port, its console included.
#[derive(Clone)]
pub struct HostedParts {
    /// The TLS server name (and HTTP `Host`) routed to it: its `receive.hostname`.
    pub hostname: String,
    /// Routes a connection to this environment's receiver.
    pub route: tokio::sync::mpsc::Sender<server::RoutedConnection>,
    /// The environment's registry, rendered with a `customer` label.
    pub metrics: Arc<Metrics>,
    /// The environment's health check.
    pub health: HealthCheck,
    /// What the host's console shows of this customer × environment.
    pub console: crate::console::ConsolePart,
    /// Its EMS-facing side, served on the host's shared EMS listeners.
    pub ems: HostedEms,
}

/// One customer's EMS-facing side inside the host: the APIs without listeners of their
/// own (who may use them is the host's one rule, agreed by every customer before start).
#[derive(Debug, Clone)]
pub struct HostedEms {
    /// The inbox API, when the environment's sink is the inbox.
    pub inbox: Option<crate::sink::inbox::InboxApi>,
    /// The intake (HTTP and MLLP), when the environment sends.
    pub intake: Option<crate::intake::IntakeApi>,
    /// Turns true when this environment's gateway begins to stop: the host's EMS routes
    /// refuse it from then on, not only once it has stopped.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

/// [`serve`], with the receive side chosen by the caller.
pub(crate) async fn serve_with(
    spec: &GatewaySpec,
    env: EnvName,
    options: &RunOptions,
    side: ReceiveSide,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(&Resolved) + Send,
) -> Result<(), AppError> {
    // SIGHUP means "reload" to this gateway, never "terminate": tokio's handler, once
    // installed, stays for the process, so one arriving while the gateway starts (before
    // the control task listens) is ignored instead of killing it; the files are read then.
    #[cfg(unix)]
    if let Err(e) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        tracing::warn!("cannot take over SIGHUP: {e}");
    }
    // Memory taken by large messages is given back to the system (process-wide, idempotent).
    if !hl7gw_malloc::give_back_large_allocations() {
        tracing::debug!("allocator's mmap threshold left as it is (not glibc)");
    }
    let environment = environment(spec, env)?.clone();
    let spec = Arc::new(spec.clone());
    let mut resolved = resolve(&environment, options)?;
    let prepared = prepare(&environment, &resolved)?;
    let (client_tls, ems_auth) = (prepared.client_tls, prepared.ems_auth);
    let reloader = crate::reload::TlsReloader::new(Some(prepared.server_tls), client_tls.clone())
        .with_ems(prepared.ems_tls);
    let store = resolved.open_store()?;
    let metrics = Arc::new(Metrics::new());
    metrics.watch_commit_groups(store.commit_group_stats());
    // The EMS-facing listeners are bounded by the receiver's numbers, each with its own
    // counts, and count their refusals beside the receiver's.
    let ems_auth = ems_auth.with_limits(&environment.limits, metrics.clone());
    let uses_inbox = matches!(environment.sink, SinkConfig::Inbox);
    let gateway = Gateway::new(
        spec.clone(),
        environment.clone(),
        store.clone(),
        prepared.sink,
        metrics.clone(),
    );
    let (receiver, hosted) = match side {
        ReceiveSide::Own => (
            Receiver::bind(
                prepared.settings,
                prepared.tls_config,
                gateway,
                metrics.clone(),
            )
            .await?,
            None,
        ),
        ReceiveSide::Hosted(hand_over) => {
            let hostname = receive(&environment)?.hostname.to_ascii_lowercase();
            let mut settings = prepared.settings;
            settings.expected_host = Some(hostname.clone());
            let (receiver, route) =
                Receiver::routed(settings, prepared.tls_config, gateway, metrics.clone());
            (receiver, Some((hand_over, route, hostname)))
        }
    };
    resolved.listen = receiver.local_addr().map_err(|e| {
        AppError::Server(server::ServerError::Bind {
            addr: resolved.listen,
            source: e,
        })
    })?;
    let board = TaskBoard::default();
    let health = HealthCheck::new(store.clone(), board.clone(), prepared.certificates);
    let console_certificates = health.expiries();
    // After a reload, `/healthz` reads the new certificates' expiry dates.
    let reloader = {
        let (expiries, files) = (health.expiries(), resolved.clone());
        reloader.after_reload(move || match certificate_expiries(&files) {
            Ok(found) => match expiries.write() {
                Ok(mut list) => *list = found,
                Err(poisoned) => *poisoned.into_inner() = found,
            },
            Err(e) => tracing::warn!(
                "certificates reloaded, but /healthz could not read their expiry dates: {e}"
            ),
        })
    };
    // Inside the host, the host's operations port serves this environment's metrics and
    // health; a gateway of its own binds its own.
    // (The host gets its parts once the console's part, which needs the queue, is built.)
    let (ops, hosted) = match hosted {
        Some((hand_over, route, hostname)) => (None, Some((hand_over, route, hostname, health))),
        None => {
            let ops = server::OpsServer::bind_exposed(
                resolved.ops_listen,
                options.ops_exposure,
                metrics.clone(),
                health,
            )
            .await?;
            resolved.ops_listen = ops.local_addr().map_err(|e| {
                AppError::Server(server::ServerError::Bind {
                    addr: resolved.ops_listen,
                    source: e,
                })
            })?;
            (Some(ops), None)
        }
    };
    // Inside the host the EMS-facing APIs are served on the host's shared listeners.
    let shared_ems = hosted.is_some();
    let inbox = if uses_inbox && !shared_ems {
        let server = crate::sink::inbox::InboxServer::bind_with(
            resolved.inbox_listen,
            store.clone(),
            ems_auth.clone(),
        )
        .await?;
        resolved.inbox_listen = server.local_addr();
        Some(server)
    } else {
        None
    };

    // A restarted sequencer builds its HTTPS client on the same reloadable TLS material.
    let restart_tls = client_tls.clone();
    let sending = match (&environment.send, &mut resolved.send, prepared.client) {
        (Some(send), Some(files), Some(client)) => {
            let queue = crate::queue::Queue::new(store.clone());
            let config = crate::intake::IntakeConfig {
                destination: DESTINATION.into(),
                spec: spec.clone(),
                processing_id: environment.processing_id.to_string(),
                header: send.header.clone(),
                acknowledgement: environment.acknowledgement,
                versions: environment
                    .accept_versions
                    .iter()
                    .map(|v| v.to_string())
                    .collect(),
            };
            let intake = if shared_ems {
                IntakeSide::Hosted(crate::intake::IntakeApi::new(
                    queue.clone(),
                    config,
                    &ems_auth,
                ))
            } else {
                let intake = crate::intake::Intake::bind_with(
                    files.intake_listen,
                    Some(files.mllp_listen),
                    queue.clone(),
                    config,
                    ems_auth.clone(),
                )
                .await?
                .with_mllp_limits(crate::mllp::ListenerLimits::from_limits(
                    &environment.limits,
                ));
                if let Some(addr) = intake.http_addr() {
                    files.intake_listen = addr;
                }
                if let Some(addr) = intake.mllp_addr() {
                    files.mllp_listen = addr;
                }
                IntakeSide::Own(Box::new(intake))
            };
            Some((
                queue,
                client,
                intake,
                crate::queue::Policies::from_config(send),
            ))
        }
        _ => None,
    };

    // The console shows this customer × environment: the sending queue when it sends (an
    // operator's retry wakes its sequencer), else a queue on the same store.
    let console_part = crate::console::ConsolePart {
        customer_code: spec.customer_code.to_string(),
        customer_name: spec.customer_name.to_string(),
        env: environment.name.as_str().to_owned(),
        store: store.clone(),
        queue: sending.as_ref().map_or_else(
            || crate::queue::Queue::new(store.clone()),
            |(queue, ..)| queue.clone(),
        ),
        metrics: metrics.clone(),
        certificates: console_certificates,
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let ops = match (ops, hosted) {
        (Some(ops), _) => Some(ops.with_console(crate::console::Console::new(vec![console_part])?)),
        (None, Some((hand_over, route, hostname, health))) => {
            let intake = sending.as_ref().and_then(|(_, _, intake, _)| match intake {
                IntakeSide::Hosted(api) => Some(api.clone()),
                IntakeSide::Own(_) => None,
            });
            hand_over(HostedParts {
                hostname,
                route,
                metrics: metrics.clone(),
                health,
                console: console_part,
                ems: HostedEms {
                    inbox: uses_inbox
                        .then(|| crate::sink::inbox::InboxApi::new(store.clone(), &ems_auth)),
                    intake,
                    stopping: stopped.clone(),
                },
            });
            None
        }
        (None, None) => None,
    };

    tracing::info!(
        customer = &*spec.customer_code,
        env = environment.name.as_str(),
        listen = %resolved.listen,
        ops = %resolved.ops_listen,
        inbox = ?inbox.as_ref().map(|_| resolved.inbox_listen),
        ems = if resolved.ems.is_some() { "mutual_tls" } else { "plain_loopback" },
        store = %store.path().display(),
        "gateway ready"
    );
    ready(&resolved);

    // Every background task runs supervised: restarted when it ends or panics, or (when it
    // owns a socket) stopping the process with an error. See crate::supervise.
    let mut tasks = Supervisor::new(stop.clone(), board);
    if let Some(ops) = ops {
        tasks.essential(
            "operations port",
            log_end(ops.run(stopped_signal(&stopped))),
        );
    }
    tasks.essential(
        "control",
        crate::control::serve(reloader, resolved.store.clone(), stopped_signal(&stopped)),
    );
    if let Some(server) = inbox {
        tasks.essential("inbox API", server.serve(stopped_signal(&stopped)));
    }
    let retention_store = store.clone();
    let retention = options
        .retention
        .unwrap_or(Duration::from_millis(environment.retention_ms));
    tasks.restartable("retention", move |stopping| {
        let store = retention_store.clone();
        async move {
            store
                .run_retention(retention, Duration::from_secs(3600), stopping)
                .await;
        }
    });
    if let (Some((queue, client, intake, policies)), Some(send)) = (sending, &environment.send) {
        if let IntakeSide::Own(intake) = intake {
            tasks.essential("intake", intake.serve(stopped_signal(&stopped)));
        }
        let (events, received) = tokio::sync::mpsc::unbounded_channel();
        let mut first_client = Some(client);
        let (send, sequencer_queue) = (send.clone(), queue.clone());
        let lease = resolved.stream_lease();
        tasks.restartable(format!("sequencer {DESTINATION}"), move |stopping| {
            // The first run uses the client built at start; a restart builds a fresh one on
            // the reloadable TLS material (so a reloaded certificate or CRL still applies).
            let client = first_client.take().map(Ok).unwrap_or_else(|| {
                let tls = restart_tls
                    .as_ref()
                    .ok_or_else(|| "no client TLS material".to_string())
                    .and_then(|tls| tls.config().map_err(|e| e.to_string()))?;
                crate::client::HttpsClient::new(
                    &send.url,
                    tls,
                    Duration::from_millis(send.timeout_ms),
                )
                .map_err(|e| e.to_string())
            });
            let (queue, events) = (sequencer_queue.clone(), events.clone());
            stoppable_sequencer(async move {
                match client {
                    Ok(client) => {
                        crate::queue::Sequencer::new(queue, DESTINATION, client, policies)
                            .with_lease(lease)
                            .with_events(events)
                            .run(stopping)
                            .await;
                    }
                    Err(e) => tracing::error!("sequencer: cannot build the HTTPS client: {e}"),
                }
            })
        });
        let received = Arc::new(tokio::sync::Mutex::new(received));
        let latency = metrics.clone();
        tasks.restartable("send latency", move |stopping| {
            let (received, latency) = (received.clone(), latency.clone());
            record_send_latency(received, latency, stopping)
        });
        let gauges = metrics.clone();
        tasks.restartable("queue gauges", move |stopping| {
            update_queue_gauges(queue.clone(), gauges.clone(), stopping)
        });
    }
    let relay = tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let result = receiver.run(stopped_signal(&stopped)).await;
    relay.abort();
    // The receiver also ends when a failing essential task stops the process.
    let supervised = tasks.join().await;
    result?;
    supervised.map_err(AppError::TaskFailed)
}

/// An environment's intake: listening on its own ports, or handed to the host's shared
/// listeners.
enum IntakeSide {
    Own(Box<crate::intake::Intake>),
    Hosted(crate::intake::IntakeApi),
}

/// The sequencer's run as it is: only the test suites' builds (feature `fault-injection`)
/// can stop it from outside ([`crate::fault`]).
#[cfg(not(feature = "fault-injection"))]
fn stoppable_sequencer<F: Future<Output = ()>>(run: F) -> F {
    run
}
#[cfg(feature = "fault-injection")]
use crate::fault::unless_sequencer_stopped as stoppable_sequencer;

/// Resolves once the process is stopping.
fn stopped_signal(
    stopped: &tokio::sync::watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send + 'static {
    crate::supervise::stopped(stopped.clone())
}

/// A server's run, its error logged (the supervisor sees it end).
async fn log_end<E: std::fmt::Display>(run: impl Future<Output = Result<(), E>>) {
    if let Err(e) = run.await {
        tracing::error!("{e}");
    }
}

/// Send latency: from the sequencer's `Sending` event to its `Delivered`.
async fn record_send_latency(
    received: Arc<tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<SequencerEvent>>>,
    latency: Arc<Metrics>,
    stopping: impl Future<Output = ()>,
) {
    let mut received = received.lock().await;
    let mut stopping = std::pin::pin!(stopping);
    let mut started = std::collections::HashMap::new();
    loop {
        let event = tokio::select! {
            event = received.recv() => event,
            () = &mut stopping => return,
        };
        match event {
            Some(SequencerEvent::Sending { id, .. }) => {
                started.insert(id, std::time::Instant::now());
            }
            Some(SequencerEvent::Delivered { id, .. }) => {
                if let Some(t0) = started.remove(&id) {
                    latency.send_latency(t0.elapsed());
                }
            }
            Some(_) => {}
            // Every sender is gone: nothing more will come.
            None => return stopping.await,
        }
    }
}

/// The queue's depth, oldest age and held flag into the metrics, every 5 s. Whether the
/// stream is stalled and whether this replica leads it are known without the store, so they
/// stay current while the store is away (the depth and age keep their last values then).
async fn update_queue_gauges(
    queue: crate::queue::Queue,
    gauges: Arc<Metrics>,
    stopping: impl Future<Output = ()>,
) {
    let mut stopping = std::pin::pin!(stopping);
    loop {
        if let Ok(status) = queue.status(DESTINATION).await {
            gauges.set_queue(
                status.depth,
                status
                    .oldest_unacknowledged_age_secs
                    .map(Duration::from_secs),
                status.held,
            );
        }
        gauges.set_queue_stalled(queue.stalled(DESTINATION).is_some());
        gauges.set_queue_leader(queue.leading(DESTINATION).is_some());
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
            () = &mut stopping => return,
        }
    }
}

/// The end of validity of every certificate the process loaded, for the health check.
fn certificate_expiries(resolved: &Resolved) -> Result<Vec<Expiry>, AppError> {
    let mut files = vec![
        ("receive.tls.cert", &resolved.cert),
        ("receive.tls.client_ca", &resolved.client_ca),
    ];
    if let Some(send) = &resolved.send {
        files.push(("send.tls.cert", &send.cert));
        files.push(("send.tls.server_ca", &send.server_ca));
    }
    if let Some(ems) = &resolved.ems {
        files.push(("ems.tls.cert", &ems.files.cert));
        files.push(("ems.tls.client_ca", &ems.files.peer_ca));
    }
    let mut found = Vec::new();
    for (what, path) in files {
        found.extend(crate::health::expiries(what, path)?);
    }
    Ok(found)
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
pub fn serve_blocking(
    spec: &GatewaySpec,
    env: EnvName,
    options: &RunOptions,
) -> Result<(), AppError> {
    init_logging();
    let inbox = matches!(environment(spec, env)?.sink, SinkConfig::Inbox);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(AppError::Runtime)?;
    runtime.block_on(serve(spec, env, options, termination(), |resolved| {
        println!("listening {} (HL7 over HTTPS)", resolved.listen);
        println!(
            "listening {} (operations: /healthz, /metrics)",
            resolved.ops_listen
        );
        // How EMS connects: mutual TLS, or plain on loopback (crate::ems).
        let how = if resolved.ems.is_some() {
            "mutual TLS"
        } else {
            "plain loopback, no authentication"
        };
        if inbox {
            println!("listening {} (inbox API; {how})", resolved.inbox_listen);
        }
        if let Some(send) = &resolved.send {
            println!(
                "listening {} (intake API: POST /outbound; {how})",
                send.intake_listen
            );
            println!("listening {} (intake MLLP; {how})", send.mllp_listen);
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

/// An operator's queue command (`gw-<code> queue … --env E`).
#[derive(Debug, Clone)]
pub enum QueueCommand {
    /// Why the stream is held, since when, the last response, depth and oldest age.
    Status,
    /// Messages after a cursor, oldest first.
    List {
        /// Ids above this.
        after: i64,
        /// At most this many.
        limit: u32,
    },
    /// One message with its bytes.
    Show(i64),
    /// Release a held message: it is sent again next.
    Retry(i64),
    /// Skip a message (kept, never deleted) and release the stream.
    Skip(i64, Option<String>),
}

/// `store migrate`: copies the SQLite store `from` into the environment's PostgreSQL store,
/// which must be empty; returns what to print. Run it with every gateway of the environment
/// stopped (the copy locks the target's tables, so replicas that are running wait for it).
pub fn store_migrate(
    environment: &Environment,
    options: &RunOptions,
    from: &Path,
) -> Result<String, AppError> {
    let resolved = resolve(environment, options)?;
    let refuse = |path: &Path, reason: String| AppError::Store {
        path: path.to_path_buf(),
        source: crate::store::StoreError::Migrate(reason),
    };
    if resolved.postgres.is_none() {
        return Err(refuse(
            &resolved.store,
            "the environment's store is an SQLite file: name the PostgreSQL database in the \
             spec (`store: { postgres: ... }`) and regenerate first"
                .into(),
        ));
    }
    // Opening would create a missing file: a mistyped path must not copy an empty store.
    if !from.is_file() {
        return Err(refuse(from, "no SQLite store at this path".into()));
    }
    let source = Store::open(from).map_err(|source| AppError::Store {
        path: from.to_path_buf(),
        source,
    })?;
    let target = resolved.open_store()?;
    let copied = target
        .import_sqlite(&source)
        .map_err(|source| AppError::Store {
            path: target.path().to_path_buf(),
            source,
        })?;
    Ok(format!(
        "copied {} inbound rows and {} outbound messages (and {} rows of the operators' audit trail) from {} into {}",
        copied.inbound,
        copied.outbound,
        copied.audit,
        from.display(),
        target.path().display()
    ))
}

/// Runs a queue command against the environment's store and returns what to print (JSON
/// for status, list and show; one line for retry and skip). A running gateway picks up a
/// retry or skip within a second.
pub fn queue_command(
    environment: &Environment,
    options: &RunOptions,
    command: &QueueCommand,
) -> Result<String, AppError> {
    let resolved = resolve(environment, options)?;
    let store = resolved.open_store()?;
    let queue = crate::queue::Queue::new(store.clone());
    let q = queue.blocking();
    let failed = AppError::Queue;
    let pretty = |v: serde_json::Value| serde_json::to_string_pretty(&v).unwrap_or_default();
    Ok(match command {
        QueueCommand::Status => {
            let mut status = q.status(DESTINATION).map_err(failed)?;
            // Another process: the running sequencer's own findings are not visible here,
            // but a store that refuses writes stops it all the same.
            if let Err(e) = store.blocking().check_writable() {
                status.stalled = Some(crate::queue::Stall {
                    reason: format!("the store does not take writes: {e}"),
                    since: crate::store::timestamp::now(),
                });
            }
            pretty(serde_json::to_value(status).unwrap_or_default())
        }
        QueueCommand::List { after, limit } => {
            let filter = crate::queue::ListFilter {
                destination: Some(DESTINATION.into()),
                after: *after,
                limit: *limit,
                ..crate::queue::ListFilter::default()
            };
            pretty(serde_json::to_value(q.list(&filter).map_err(failed)?).unwrap_or_default())
        }
        // The bytes hold patient data: opening them is recorded, as from the console.
        QueueCommand::Show(id) => match q
            .open(*id, &crate::store::audit::Operator::cli(Some("queue show")))
            .map_err(failed)?
        {
            Some(detail) => pretty(serde_json::json!({
                "message": serde_json::to_value(&detail.info).unwrap_or_default(),
                "raw": String::from_utf8_lossy(&detail.raw).replace('\r', "\n"),
            })),
            None => return Err(crate::queue::QueueError::NotFound(*id).into()),
        },
        QueueCommand::Retry(id) => {
            q.retry(*id, &crate::store::audit::Operator::cli(None))
                .map_err(failed)?;
            format!("message {id} released: it is sent again next")
        }
        QueueCommand::Skip(id, note) => {
            q.skip(*id, &crate::store::audit::Operator::cli(note.as_deref()))
                .map_err(failed)?;
            format!("message {id} skipped (kept in the store); the stream moves on")
        }
    })
}
