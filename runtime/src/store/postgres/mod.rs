//! The PostgreSQL backend: one database shared by every replica of a gateway. All of its SQL
//! is in this module and its children (schema, inbound and inbox rows, the outbound queue,
//! stream leases); nothing outside it sees `tokio-postgres`, except the [`StoreError`]
//! variants that carry its errors.
//!
//! # Crates
//!
//! `tokio-postgres` (the maintained async client; the protocol, no ORM), pooled by
//! `deadpool-postgres` (a maintained pool that recycles a connection after checking it is
//! still open), with TLS through `tokio-postgres-rustls` on the workspace's rustls with the
//! ring provider chosen explicitly (no aws-lc-rs: two providers in one process panic).
//! sqlx was not chosen: its macros and migrator add a second way to write schema and queries
//! that the SQLite backend does not share, and its TLS features pulled a second provider.
//!
//! # Where the driver runs
//!
//! The backend owns a small private tokio runtime (two worker threads) on which every
//! operation and every connection's I/O task runs. An async caller spawns the operation there
//! and awaits its result ([`Postgres::run`]), so it never blocks the caller's runtime; a
//! blocking caller (CLI code, [`BlockingStore`](super::BlockingStore)) spawns it the same way
//! and waits on a channel ([`Postgres::block`]), which works from any thread, inside a
//! runtime's blocking pool or outside any runtime. Connections therefore never belong to a
//! caller's runtime that may end before the store does (a test's runtime, a CLI command's).
//!
//! # One call, one transaction
//!
//! Each operation is one transaction. Writes that SQLite serialises with its single writer
//! lock are serialised here with transaction-scoped advisory locks: inbound commits take one
//! lock (so row ids become visible in id order and an inbox cursor never skips a row that
//! commits late), enqueues one lock per destination (so a stream's ids are committed in
//! order and an `Idempotency-Key` or MSH-10 is checked and inserted atomically), and queue
//! transitions lock the message row (`FOR UPDATE`). A committed inbound key is unique by a
//! partial unique index; the insert is `ON CONFLICT DO NOTHING` and a lost race re-reads the
//! winner's ACK, so two replicas committing one key both answer the same ACK.
//!
//! Instants are stored as the same fixed-width UTC text as in SQLite
//! ([`timestamp`](super::timestamp)), in columns with the `C` collation, so text order is
//! time order whatever the database's locale; a lease's times are the database's own clock
//! (`timestamptz`), so replicas with skewed clocks agree on who leads.

pub(crate) mod audit;
pub(crate) mod claim;
pub(crate) mod import;
pub(crate) mod inbound;
pub(crate) mod inbox;
pub(crate) mod lease;
pub(crate) mod queue;
pub mod schema;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use time::OffsetDateTime;
use tokio_postgres::Row;

use super::{Pruned, StoreError, timestamp};
use crate::dedup::DedupKey;

/// How the backend reaches PostgreSQL. The password is resolved by the caller (from an
/// environment variable or a file, never the spec) before it gets here.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    /// Host name or IP address.
    pub host: String,
    /// TCP port (5432 by default).
    pub port: u16,
    /// The database.
    pub dbname: String,
    /// The role to log in as.
    pub user: String,
    /// Its password, when the server asks for one.
    pub password: Option<String>,
    /// TLS to the server.
    pub tls: PostgresTls,
    /// The most connections this process opens.
    pub pool_size: usize,
    /// How long connecting (and waiting for a free pooled connection) may take.
    pub connect_timeout: Duration,
    /// How long the server lets one of this process's transactions sit idle before it ends
    /// the session (`idle_in_transaction_session_timeout`): a replica paused or cut off in
    /// the middle of a transaction would otherwise hold its row locks (the stream's lease
    /// row, a message's row) and keep the other replicas from taking over. The stream's lease
    /// by default.
    pub idle_in_transaction_timeout: Duration,
}

impl std::fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field(
                "idle_in_transaction_timeout",
                &self.idle_in_transaction_timeout,
            )
            .finish()
    }
}

impl PostgresOptions {
    /// Options with the defaults: port 5432, no password, plain TCP (set [`PostgresTls`] for
    /// a server on another host), 8 connections, 10 s timeout.
    pub fn new(host: &str, dbname: &str, user: &str) -> Self {
        Self {
            host: host.to_owned(),
            port: 5432,
            dbname: dbname.to_owned(),
            user: user.to_owned(),
            password: None,
            tls: PostgresTls::Disable,
            pool_size: 8,
            connect_timeout: Duration::from_secs(10),
            idle_in_transaction_timeout: crate::config::defaults::STREAM_LEASE.to_std(),
        }
    }

    /// The options an environment's `store.postgres` gives, the password read now from the
    /// environment variable or file it names; `file` resolves a path of the configuration
    /// (the password file, the TLS CA) against the spec's folder.
    pub fn from_config(
        config: &crate::config::PostgresConfig,
        file: impl Fn(&str) -> PathBuf,
    ) -> Result<Self, StoreError> {
        use crate::config::PasswordSource;
        let mut options = Self::new(&config.host, &config.dbname, &config.user);
        options.port = config.port;
        options.pool_size = usize::try_from(config.pool_size).unwrap_or(usize::MAX);
        options.idle_in_transaction_timeout = Duration::from_millis(config.lease_ms);
        let bad = |reason: String| StoreError::PostgresConfig {
            path: options.label(),
            reason,
        };
        options.password = match &config.password {
            PasswordSource::None => None,
            PasswordSource::Env(name) => match std::env::var(&**name) {
                Ok(password) => Some(password),
                Err(e) => {
                    return Err(bad(format!(
                        "store.postgres.password_env: environment variable {name}: {e}"
                    )));
                }
            },
            PasswordSource::File(path) => {
                let path = file(path);
                match std::fs::read_to_string(&path) {
                    Ok(text) => Some(text.trim_end_matches(['\r', '\n']).to_owned()),
                    Err(e) => {
                        return Err(bad(format!(
                            "store.postgres.password_file {}: {e}",
                            path.display()
                        )));
                    }
                }
            }
        };
        options.tls = match &config.tls_ca {
            Some(ca) => PostgresTls::VerifyFull { ca: file(ca) },
            None => PostgresTls::Disable,
        };
        Ok(options)
    }

    /// `postgresql://user@host:port/dbname`: how the store is named in logs and errors (no
    /// password).
    pub fn label(&self) -> PathBuf {
        PathBuf::from(format!(
            "postgresql://{}@{}:{}/{}",
            self.user, self.host, self.port, self.dbname
        ))
    }
}

/// TLS to the database server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostgresTls {
    /// Plain TCP: only for a server on the same host or a private test cluster.
    Disable,
    /// TLS required; the server's certificate must chain to a CA in this PEM file and name
    /// the host (rustls always verifies both: libpq's `verify-full`).
    VerifyFull {
        /// The CA certificate(s), PEM.
        ca: PathBuf,
    },
}

/// An open PostgreSQL store: a connection pool and the runtime it runs on.
pub(crate) struct Postgres {
    pool: Pool,
    /// Inbound commits waiting to be written (group commit).
    committer: Arc<inbound::Committer>,
    /// Connections holding delivery claims ([`claim`]): a pool of their own, so claims never
    /// take the connections their holders commit through.
    claims: Pool,
    /// How long a delivery claim waits for another replica's.
    claim_wait: Duration,
    label: PathBuf,
    /// `Some` until dropped; see the `Drop` impl.
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Dropping a runtime blocks until its tasks end, which panics inside an async
        // context (the last `Store` clone may go in one); nothing here needs waiting for:
        // open transactions are rolled back by the server when their connection closes.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Postgres {
    /// Connects, checks the database is an hl7gw store (or empty) and applies pending
    /// migrations. Blocking: call it at startup or inside `spawn_blocking`.
    pub(crate) fn open(options: &PostgresOptions) -> Result<Self, StoreError> {
        let label = options.label();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("hl7gw-postgres")
            .enable_all()
            .build()
            .map_err(|source| StoreError::Io {
                path: label.clone(),
                source,
            })?;
        let handle = runtime.handle().clone();
        let (pool, claims) = {
            let _entered = runtime.enter();
            (pool(options, &label)?, pool(options, &label)?)
        };
        let db = Self {
            pool,
            committer: Arc::default(),
            claims,
            claim_wait: options.connect_timeout,
            label,
            runtime: Some(runtime),
            handle,
        };
        db.block(schema::migrate(db.pool(), db.label.clone()))?;
        Ok(db)
    }

    /// What the store is called in logs and errors (`postgresql://user@host:port/db`).
    pub(crate) fn path(&self) -> &Path {
        &self.label
    }

    /// The pool, for an operation to take into its future.
    pub(crate) fn pool(&self) -> Pool {
        self.pool.clone()
    }

    /// The inbound group committer, for a commit to take into its future.
    pub(crate) fn committer(&self) -> Arc<inbound::Committer> {
        Arc::clone(&self.committer)
    }

    /// How large the inbound commit groups were.
    pub(crate) fn group_stats(&self) -> Arc<super::GroupStats> {
        self.committer.stats()
    }

    /// Takes the delivery claim on `key` (see [`claim`]).
    pub(crate) async fn claim(&self, key: DedupKey) -> Result<claim::Claim, StoreError> {
        let handle = self.handle.clone();
        self.run(claim::claim(
            self.claims.clone(),
            key,
            self.claim_wait,
            handle,
        ))
        .await
    }

    /// Runs `operation` on the backend's runtime and awaits it from any runtime.
    pub(crate) async fn run<T, E>(
        &self,
        operation: impl Future<Output = Result<T, E>> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.handle
            .spawn(operation)
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Runs `operation` on the backend's runtime and waits for it on this thread: never
    /// call it from an async task (it would block a worker), call [`Postgres::run`] there.
    pub(crate) fn block<T, E>(
        &self,
        operation: impl Future<Output = Result<T, E>> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(operation.await);
        });
        rx.recv().map_err(|_| {
            StoreError::Task("the PostgreSQL operation ended without an answer".into())
        })?
    }
}

/// The pool: connections made lazily, checked for being open when handed out again.
fn pool(options: &PostgresOptions, label: &Path) -> Result<Pool, StoreError> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&options.host)
        .port(options.port)
        .dbname(&options.dbname)
        .user(&options.user)
        .application_name("hl7gw")
        .connect_timeout(options.connect_timeout)
        // A dead server or a cut network is noticed by the kernel within a minute, not hours:
        // keepalives while the connection is quiet, and a bound on unacknowledged data while
        // a query is in flight (keepalives are not sent then), so a half-open connection
        // fails the call instead of stalling a lease renewal or a commit for many minutes.
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .keepalives_interval(Duration::from_secs(10))
        .keepalives_retries(3)
        .tcp_user_timeout(Duration::from_secs(30))
        // The server's side of the same: a replica that dies without a FIN (power, a cut
        // network) holds its session, and with it any delivery claim (a session advisory
        // lock, `claim.rs`), until the server's keepalives give up: about 25 s with these
        // settings instead of the kernel's default two hours.
        .options(format!(
            "-c idle_in_transaction_session_timeout={} -c tcp_keepalives_idle=10 \
             -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3",
            options.idle_in_transaction_timeout.as_millis().max(1)
        ));
    if let Some(password) = &options.password {
        config.password(password);
    }
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match &options.tls {
        PostgresTls::Disable => {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            Manager::from_config(config, tokio_postgres::NoTls, manager_config)
        }
        PostgresTls::VerifyFull { ca } => {
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(client_tls(ca, label)?);
            Manager::from_config(config, tls, manager_config)
        }
    };
    Pool::builder(manager)
        .max_size(options.pool_size.max(1))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(options.connect_timeout))
        .create_timeout(Some(options.connect_timeout))
        .recycle_timeout(Some(options.connect_timeout))
        .build()
        .map_err(|e| StoreError::PostgresConfig {
            path: label.to_path_buf(),
            reason: e.to_string(),
        })
}

/// rustls with the ring provider, trusting only the CAs in `ca`.
fn client_tls(ca: &Path, label: &Path) -> Result<rustls::ClientConfig, StoreError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let bad = |reason: String| StoreError::PostgresConfig {
        path: label.to_path_buf(),
        reason: format!("tls.ca {}: {reason}", ca.display()),
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca).map_err(|e| bad(e.to_string()))?;
    for cert in certs {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in the file".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A text column read with `parse`; a value it refuses (or NULL) is [`StoreError::BadValue`].
fn parsed<T>(
    row: &Row,
    column: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, StoreError> {
    parsed_opt(row, column, parse)?.ok_or_else(|| StoreError::BadValue {
        column: column.to_owned(),
        value: "NULL".to_owned(),
    })
}

/// A nullable text column read with `parse`.
fn parsed_opt<T>(
    row: &Row,
    column: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<Option<T>, StoreError> {
    let Some(text) = row.try_get::<_, Option<String>>(column)? else {
        return Ok(None);
    };
    match parse(&text) {
        Some(value) => Ok(Some(value)),
        None => Err(StoreError::BadValue {
            column: column.to_owned(),
            value: text,
        }),
    }
}

/// A timestamp column (see [`timestamp::format`]).
fn instant(row: &Row, column: &str) -> Result<OffsetDateTime, StoreError> {
    parsed(row, column, timestamp::parse)
}

/// A nullable timestamp column.
fn instant_opt(row: &Row, column: &str) -> Result<Option<OffsetDateTime>, StoreError> {
    parsed_opt(row, column, timestamp::parse)
}

/// The stored text of a record's JSON, read back.
fn parse_record(json: Option<String>) -> Result<Option<serde_json::Value>, StoreError> {
    Ok(match json {
        Some(text) => Some(serde_json::from_str(&text)?),
        None => None,
    })
}

/// The advisory lock keys of this backend: the two-key form `(APPLICATION_ID, n)`, which
/// never meets the one-key form used per destination.
mod locks {
    /// Schema migrations: two replicas starting together migrate once.
    pub(super) const MIGRATE: i32 = 1;
    /// Inbound commits: ids become visible in id order.
    pub(super) const INBOUND: i32 = 2;
    /// The first key of delivery claims, `(DELIVERY, hashtext(key))` (see [`super::claim`]):
    /// "hl7d", apart from the `(APPLICATION_ID, n)` locks above.
    pub(super) const DELIVERY: i32 = 0x686c_3764;
}

/// Rewrites the health row in its own transaction: an error means the database does not
/// take writes now.
pub(crate) async fn check_writable(pool: Pool) -> Result<(), StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "INSERT INTO health (id, checked_at) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
        )
        .await?;
    client
        .execute(&stmt, &[&timestamp::format(timestamp::now())])
        .await?;
    Ok(())
}

/// Deletes in batches of 1000 rows, one transaction each, so a large prune never holds
/// row locks long. `sql` deletes at most 1000 rows given the cutoff as `$1`.
async fn delete_in_batches(pool: &Pool, sql: &str, cutoff: &str) -> Result<usize, StoreError> {
    let mut total = 0;
    loop {
        let client = pool.get().await?;
        let stmt = client.prepare_cached(sql).await?;
        let deleted = usize::try_from(client.execute(&stmt, &[&cutoff]).await?).unwrap_or(0);
        total += deleted;
        if deleted < 1000 {
            return Ok(total);
        }
    }
}

/// Deletes what is older than `cutoff` (see [`BlockingStore::prune_before`](super::BlockingStore::prune_before)).
pub(crate) async fn prune_before(pool: Pool, cutoff: SystemTime) -> Result<Pruned, StoreError> {
    Ok(Pruned {
        inbound: inbound::prune_before(&pool, cutoff).await?,
        outbound: queue::prune_finished(&pool, timestamp::from_system(cutoff)).await?,
    })
}
