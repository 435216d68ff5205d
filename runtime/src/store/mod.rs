//! The gateway's durable store: one SQLite file per gateway and environment, or one
//! PostgreSQL database its replicas share.
//!
//! # The boundary
//!
//! [`Store`] is the one interface the receiver (duplicates and commits), the inbox API, the
//! outbound [queue](crate::queue) and retention use; none of them sees SQL. Behind it is a
//! backend: SQLite (`store/sqlite/`, which holds all of its SQL: schema, inbound and inbox
//! rows, the queue), the embedded default, or PostgreSQL (`store/postgres/`, the same
//! operations with the same rules for several replicas; [`Store::open_postgres`]; how it
//! keeps them under concurrency is in its module docs). Stream leadership between replicas
//! is [`lease`](Store::lease_acquire): see `store/lease.rs`. The records, rows, states and errors the
//! callers see are backend-neutral and live outside it ([`InboundRecord`], [`InboxItem`],
//! [`crate::queue::MessageInfo`], ...); instants are [`time::OffsetDateTime`] (or
//! `SystemTime` on input), never text.
//!
//! The boundary is drawn at whole operations, not at SQL statements or connections, because
//! that is what a server database (PostgreSQL, next) needs to do the same job well:
//!
//! - **Async.** Every operation is an `async` method on [`Store`]. SQLite's run on tokio's
//!   blocking pool; PostgreSQL's (tokio-postgres) run on the backend's own runtime and are
//!   awaited. [`BlockingStore`] offers the same operations to code outside the runtime.
//! - **One call, one transaction.** Each operation is one transaction in the backend: an
//!   inbound commit checks the duplicate key and inserts together; recording a delivery
//!   reads the message's state, applies the pure [transition](crate::queue::apply) and
//!   writes it together. That is where a server backend checks a fencing token (the
//!   sequencer's lease on its stream) in the same transaction that records the delivery,
//!   and where it can batch several commits into one round trip (group commit) without
//!   the callers knowing.
//! - **Decisions stay above it.** Which ACK a message gets, what a failure policy does,
//!   whether an operator may retry: decided by the receiver, the sequencer and
//!   [`crate::queue::apply`], so a second backend only stores and loads.
//!
//! Adding a backend is a new variant of the private `Backend` enum and a module beside
//! `sqlite`; the callers do not change.
//!
//! # Durability (SQLite)
//!
//! Every connection runs in WAL mode with `synchronous=FULL`, so a transaction's commit has
//! reached the disk (the WAL is fsynced) before the call that made it returns. That is what
//! lets the receiver answer AA only after [`Store::commit_inbound`] returned `Ok`: a crash or
//! power cut after the ACK left can no longer lose the message. [`Store::open`] refuses a
//! file that cannot be put in WAL mode (some network file systems) instead of silently
//! running with weaker guarantees, and [`Store::pragmas`] reports what is in force.
//!
//! Writers take the lock up front (`BEGIN IMMEDIATE`) and wait up to the busy timeout
//! (5 s by default) for another process holding it, for example `sqlite3` on the same file.
//!
//! # Blocking and async
//!
//! rusqlite is blocking. The SQLite backend owns one connection behind a mutex; the `async`
//! methods run the blocking call on tokio's blocking pool with
//! [`tokio::task::spawn_blocking`], so an fsync never stalls the reactor.
//! [`Store::blocking`] gives the same operations as plain blocking calls for threads outside
//! the runtime (CLI subcommands, tests). SQLite allows one writer at a time anyway, so one
//! connection costs nothing in write throughput; reads are short indexed lookups.
//!
//! # Schema and versions
//!
//! The schema is a list of numbered migrations ([`schema::MIGRATIONS`]); table
//! `schema_migrations` records which were applied and when. Opening applies the missing ones
//! in one transaction, and refuses a file written by a newer gateway (a version this build
//! does not know). New tables (the outbound queue of issue 6) are new migrations
//! appended to the list, never edits of old ones. `PRAGMA application_id` marks the file as
//! an hl7gw store, so pointing the gateway at some other SQLite database fails at open.
//!
//! Table `inbound_messages` is the audit trail and the inbox, one row per message the
//! gateway answered with an ACK:
//!
//! | column | meaning |
//! |---|---|
//! | `id` | `INTEGER PRIMARY KEY AUTOINCREMENT`: ids only grow and are never reused after a prune, so an inbox cursor never skips a row |
//! | `received_at`, `committed_at` | UTC RFC 3339 with microseconds, fixed width (`2024-05-01T12:00:00.000000Z`), so text order is time order |
//! | `peer_ip`, `peer_subject` | the TCP peer and its client certificate's subject |
//! | `sending_application`, `sending_facility`, `control_id` | MSH-3, MSH-4, MSH-10: the [duplicate key](crate::dedup::DedupKey) |
//! | `message_type` | MSH-9 as `ADT^A28` |
//! | `raw` | the exact bytes received |
//! | `record_json` | the mapped record, when mapping succeeded |
//! | `ack`, `ack_code` | the ACK answered, byte for byte, and its MSA-1 |
//! | `status` | `committed` (AA/CA), `error` (AE/CE), `rejected` (AR/CR) |
//! | `sink` | who took delivery: `inbox`, `webhook`, `mllp` |
//! | `inbox_acknowledged_at` | when EMS acknowledged an inbox row |
//!
//! A partial unique index on the key `WHERE status = 'committed'` makes a committed message
//! unique; `error` and `rejected` rows are audit rows only, so a corrected message sent again
//! with the same MSH-10 is processed, not answered with the old AE.
//!
//! # Retention
//!
//! [`Store::prune`] deletes inbound rows received before a cutoff, except committed inbox
//! rows EMS has not acknowledged (a record nobody has taken is never lost to retention), and
//! outbound messages delivered or skipped before it, never pending ones (queued, in flight,
//! held). Once a committed row is pruned its key is forgotten, so keep retention well beyond
//! any sender's retry window (days, not minutes; the spec's `retention`, 90 days by default).
//!
//! # What stays on disk
//!
//! - `secure_delete` is on: a deleted row's bytes are overwritten with zeros in the page
//!   that held it, and a prune ends with a checkpoint that truncates the WAL, so pruned
//!   patient data is not left readable in free pages or old WAL frames.
//! - The file, its `-wal` and `-shm` are 0600: created so, and tightened at open when found
//!   readable by group or others (logged), or refused with
//!   [`StoreError::LoosePermissions`] when they cannot be.
//! - The WAL is bounded: a commit that leaves it over 1 MiB checkpoints it
//!   (`wal_autocheckpoint`), and a reset WAL is truncated back to 1 MiB
//!   (`journal_size_limit`). When the disk is full a commit fails (the receiver answers
//!   503, the intake 503; nothing is acknowledged) and rolls back; once space returns the
//!   next commit succeeds, with no restart.

pub mod activity;
pub mod audit;
mod claim;
mod group;
mod inbound;
mod inbox;
mod lease;
pub(crate) mod outbound;
mod postgres;
mod sqlite;
pub mod timestamp;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;

pub use claim::DeliveryClaim;
pub use group::{GROUP_SIZE_BUCKETS, GroupStats, MAX_GROUP};
pub use inbound::{CommitResult, InboundRecord, InboundRow, InboundStatus, StoredAck};
pub use inbox::{InboxEntry, InboxItem, MAX_LIST as INBOX_MAX_LIST};
pub use lease::{Fence, LeaseInfo, holder_id};
pub use postgres::import::Copied;
pub use postgres::schema as postgres_schema;
pub use postgres::{PostgresOptions, PostgresTls};
pub use sqlite::schema;
pub use timestamp::format_rfc3339;

use crate::dedup::DedupKey;
use postgres::Postgres;
use sqlite::Sqlite;

/// `PRAGMA application_id` of an hl7gw store: "hl7g" in ASCII.
pub const APPLICATION_ID: i32 = 0x686c_3767;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store's directory could not be created or the file could not be created.
    #[error("store {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file (or its `-wal`/`-shm`) is readable by group or others and could not be
    /// tightened to 0600.
    #[error(
        "store {path}: permissions {mode:04o} let group or others read patient data, and they \
         could not be set to 0600 ({source}); run `chmod 600` on it as its owner, or run the \
         gateway as the file's owner"
    )]
    LoosePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// Why `chmod` failed.
        source: std::io::Error,
    },
    /// SQLite could not open the file.
    #[error("store {path}: cannot open: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The file system did not accept WAL mode.
    #[error("store {path}: journal mode is {mode:?}, WAL is required")]
    NotWal {
        /// The database file.
        path: PathBuf,
        /// What SQLite reported instead of `wal`.
        mode: String,
    },
    /// The file belongs to another application.
    #[error("store {path}: not an hl7gw store (application_id {found:#x})")]
    ForeignDatabase {
        /// The database file.
        path: PathBuf,
        /// The `application_id` found.
        found: i32,
    },
    /// The file was migrated by a newer gateway.
    #[error(
        "store {path}: schema version {found} is newer than this gateway knows ({supported}); \
         run the newer gateway or restore a backup"
    )]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// The version in the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// A committed row needs a non-empty MSH-10: with an empty key, every later message
    /// without one would be answered with this one's ACK.
    #[error("a committed message needs a non-empty MSH-10 (message control ID)")]
    MissingControlId,
    /// The transaction that held this message and others arriving with it (group commit)
    /// did not commit: nothing of it was written.
    #[error("store: the commit of a group of {size} messages failed: {reason}")]
    GroupCommit {
        /// How many messages the group held.
        size: usize,
        /// Why the transaction failed.
        reason: String,
    },
    /// A query failed (SQLite backend).
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A query failed or the connection broke (PostgreSQL backend).
    #[error("store: PostgreSQL: {}", postgres_error_text(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// No connection to PostgreSQL could be had in time (server down, pool exhausted).
    #[error("store: PostgreSQL connection: {0}")]
    Pool(String),
    /// The PostgreSQL settings cannot be used (a TLS CA file that does not load, ...).
    #[error("store {path}: {reason}")]
    PostgresConfig {
        /// The database, as `postgresql://user@host:port/dbname`.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The database holds something other than an hl7gw store.
    #[error("store {path}: not an hl7gw store: {reason}")]
    NotAStore {
        /// The database.
        path: PathBuf,
        /// What was found.
        reason: String,
    },
    /// `store migrate` cannot copy: the target is not an empty PostgreSQL store, or the
    /// copy stopped.
    #[error("store migrate: {0}")]
    Migrate(String),
    /// A stored value is not one the store writes (the database was edited by hand).
    #[error("store: unexpected stored value {value:?} in column {column}")]
    BadValue {
        /// The column.
        column: String,
        /// The value found.
        value: String,
    },
    /// A stored record is not JSON (the file was edited by hand) or a record could not be
    /// written as JSON.
    #[error("store: record JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The blocking task running a store call was cancelled or panicked.
    #[error("store: background task failed: {0}")]
    Task(String),
    /// Another replica is still delivering this key to the sink (see [`DeliveryClaim`]).
    #[error("store: another replica is still delivering {key} (waited {waited:?})")]
    ClaimTimeout {
        /// The message's key.
        key: String,
        /// How long this replica waited.
        waited: Duration,
    },
}

/// tokio-postgres's own text of a server error is only "db error": say what the server said
/// (and its SQLSTATE), or what broke underneath.
fn postgres_error_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    match std::error::Error::source(e) {
        Some(source) => format!("{e}: {source}"),
        None => e.to_string(),
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => Self::Postgres(e),
            other => Self::Pool(other.to_string()),
        }
    }
}

/// What one prune deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Inbound rows (the audit trail and acknowledged inbox records).
    pub inbound: usize,
    /// Outbound messages delivered or skipped.
    pub outbound: usize,
}

/// Options for [`Store::open_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// How long a writer waits for another connection's lock before failing.
    pub busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// The pragmas in force, as SQLite reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pragmas {
    /// `journal_mode`: `wal`.
    pub journal_mode: String,
    /// `synchronous`: 2 is FULL.
    pub synchronous: i64,
    /// `busy_timeout` in milliseconds.
    pub busy_timeout_ms: i64,
    /// `foreign_keys`: 1 when enforced.
    pub foreign_keys: i64,
    /// `secure_delete`: 1 when deleted content is overwritten with zeros.
    pub secure_delete: i64,
    /// `journal_size_limit` in bytes: the WAL is truncated to this after a checkpoint.
    pub journal_size_limit: i64,
    /// `wal_autocheckpoint` in pages.
    pub wal_autocheckpoint: i64,
    /// The newest applied migration.
    pub schema_version: i64,
}

/// The store. Cheap to clone: clones share one backend (for SQLite, one connection).
#[derive(Clone)]
pub struct Store {
    inner: Arc<BlockingStore>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path())
            .finish_non_exhaustive()
    }
}

/// The store's operations as blocking calls; see [`Store::blocking`].
pub struct BlockingStore {
    backend: Backend,
}

/// The backends. Each variant holds an open store; every operation dispatches here.
enum Backend {
    /// The embedded default.
    Sqlite(Sqlite),
    /// A server shared by replicas.
    Postgres(Postgres),
}

impl Store {
    /// Opens (creating it and its directory when missing) the SQLite store at `path`, sets
    /// the pragmas and applies pending migrations. Blocking: call it at startup, or inside
    /// `spawn_blocking`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, &StoreOptions::default())
    }

    /// [`Store::open`] with options.
    pub fn open_with(path: impl AsRef<Path>, options: &StoreOptions) -> Result<Self, StoreError> {
        let db = Sqlite::open(path.as_ref(), options)?;
        Ok(Self {
            inner: Arc::new(BlockingStore {
                backend: Backend::Sqlite(db),
            }),
        })
    }

    /// Connects to the PostgreSQL database `options` names, checks it is an hl7gw store (or
    /// empty) and applies pending migrations. Blocking: call it at startup, or inside
    /// `spawn_blocking`.
    pub fn open_postgres(options: &PostgresOptions) -> Result<Self, StoreError> {
        let db = Postgres::open(options)?;
        Ok(Self {
            inner: Arc::new(BlockingStore {
                backend: Backend::Postgres(db),
            }),
        })
    }

    /// The database file (SQLite), or `postgresql://user@host:port/dbname`.
    pub fn path(&self) -> &Path {
        self.inner.path()
    }

    /// Copies the SQLite store `source` into this PostgreSQL store, which must be empty
    /// (`store migrate`): every inbound row and outbound message with its id, in one
    /// transaction. Blocking; run it with every gateway of the environment stopped.
    pub fn import_sqlite(&self, source: &Store) -> Result<Copied, StoreError> {
        match (&self.inner.backend, &source.inner.backend) {
            (Backend::Postgres(target), Backend::Sqlite(source)) => target.import_sqlite(source),
            _ => Err(StoreError::Migrate(
                "copies an SQLite store into a PostgreSQL store only".into(),
            )),
        }
    }

    /// Whether this store is shared by replicas (PostgreSQL): stream leases are real.
    pub fn is_shared(&self) -> bool {
        matches!(self.inner.backend, Backend::Postgres(_))
    }

    /// The blocking operations, for code outside the async runtime.
    pub fn blocking(&self) -> &BlockingStore {
        &self.inner
    }

    /// Runs one operation of the SQLite backend for an async caller: SQLite blocks, so its
    /// calls run on tokio's blocking pool and an fsync never stalls the reactor. (PostgreSQL
    /// operations are awaited on the backend's own runtime instead: [`Postgres::run`].)
    pub(super) async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&BlockingStore) -> Result<T, E> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// The pragmas in force (SQLite; PostgreSQL has none, see [`BlockingStore::pragmas`]).
    pub async fn pragmas(&self) -> Result<Pragmas, StoreError> {
        self.run(|s| s.pragmas()).await
    }

    /// Writes one tiny row and commits it: `Ok` when the store takes writes now (the health
    /// check's question; a full disk, a lock held elsewhere or an unreachable database
    /// answers `Err`).
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(_) => self.run(|s| s.check_writable()).await,
            Backend::Postgres(pg) => pg.run(postgres::check_writable(pg.pool())).await,
        }
    }

    /// The stored ACK of the committed message with this key, if any.
    pub async fn find_duplicate(&self, key: &DedupKey) -> Result<Option<StoredAck>, StoreError> {
        let key = key.clone();
        match &self.inner.backend {
            Backend::Sqlite(_) => self.run(move |s| s.find_duplicate(&key)).await,
            Backend::Postgres(pg) => {
                pg.run(postgres::inbound::find_duplicate(pg.pool(), key))
                    .await
            }
        }
    }

    /// Writes one inbound message and its ACK in one transaction, durable (fsynced) before
    /// this returns. See [`BlockingStore::commit_inbound`].
    pub async fn commit_inbound(&self, record: InboundRecord) -> Result<CommitResult, StoreError> {
        self.commit_inbound_keeping(record)
            .await
            .map(|(result, _)| result)
    }

    /// [`commit_inbound`](Self::commit_inbound), handing the record back: what the caller keeps
    /// of a message whose key another writer won, without copying the message beforehand.
    pub async fn commit_inbound_keeping(
        &self,
        record: InboundRecord,
    ) -> Result<(CommitResult, InboundRecord), StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(db) => {
                // Only the caller handed the lead starts a writer on the blocking pool; the
                // others wait without holding a thread (see `group`).
                let (ticket, lead) = db.enqueue_inbound(record);
                if let Some(lead) = lead {
                    let inner = Arc::clone(&self.inner);
                    tokio::task::spawn_blocking(move || {
                        if let Backend::Sqlite(db) = &inner.backend {
                            db.write_groups(lead);
                        }
                    });
                }
                ticket.wait().await
            }
            Backend::Postgres(pg) => {
                pg.run(postgres::inbound::commit_inbound(
                    pg.pool(),
                    pg.committer(),
                    record,
                ))
                .await
            }
        }
    }

    /// How large the inbound commit groups were; see [`BlockingStore::commit_group_stats`].
    pub fn commit_group_stats(&self) -> Arc<GroupStats> {
        self.inner.commit_group_stats()
    }

    /// One row of the audit trail.
    pub async fn inbound(&self, id: i64) -> Result<Option<InboundRow>, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(_) => self.run(move |s| s.inbound(id)).await,
            Backend::Postgres(pg) => pg.run(postgres::inbound::inbound(pg.pool(), id)).await,
        }
    }

    /// Prunes what is older than `older_than`; see [`BlockingStore::prune_before`].
    pub async fn prune(&self, older_than: Duration) -> Result<Pruned, StoreError> {
        let cutoff = SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(UNIX_EPOCH);
        match &self.inner.backend {
            Backend::Sqlite(_) => self.run(move |s| s.prune_before(cutoff)).await,
            Backend::Postgres(pg) => pg.run(postgres::prune_before(pg.pool(), cutoff)).await,
        }
    }

    /// The retention task: prunes what is older than `retention` now and then every `every`,
    /// until `shutdown` completes. A failed prune is logged and tried again next time.
    pub async fn run_retention(
        &self,
        retention: Duration,
        every: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut ticks = tokio::time::interval(every.max(Duration::from_millis(10)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => match self.prune(retention).await {
                    Ok(Pruned { inbound: 0, outbound: 0 }) => {}
                    Ok(p) => tracing::info!(
                        inbound = p.inbound,
                        outbound = p.outbound,
                        "store retention: pruned old rows"
                    ),
                    Err(e) => tracing::error!("store retention: {e}"),
                },
                () = &mut shutdown => return,
            }
        }
    }

    /// Committed inbox rows after the cursor `after` (an id), oldest first, at most `limit`;
    /// rows EMS acknowledged are left out unless `include_acknowledged`.
    pub async fn inbox_list(
        &self,
        after: i64,
        limit: u32,
        include_acknowledged: bool,
    ) -> Result<Vec<InboxItem>, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(_) => {
                self.run(move |s| s.inbox_list(after, limit, include_acknowledged))
                    .await
            }
            Backend::Postgres(pg) => {
                pg.run(postgres::inbox::inbox_list(
                    pg.pool(),
                    after,
                    limit,
                    include_acknowledged,
                ))
                .await
            }
        }
    }

    /// One inbox row with its raw message.
    pub async fn inbox_get(&self, id: i64) -> Result<Option<InboxEntry>, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(_) => self.run(move |s| s.inbox_get(id)).await,
            Backend::Postgres(pg) => pg.run(postgres::inbox::inbox_get(pg.pool(), id)).await,
        }
    }

    /// Marks an inbox row as taken by EMS; idempotent. Returns when it was first
    /// acknowledged, or `None` when there is no such inbox row.
    pub async fn inbox_ack(&self, id: i64) -> Result<Option<OffsetDateTime>, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(_) => self.run(move |s| s.inbox_ack(id)).await,
            Backend::Postgres(pg) => pg.run(postgres::inbox::inbox_ack(pg.pool(), id)).await,
        }
    }

    /// How many committed inbox rows EMS has not acknowledged.
    pub async fn inbox_pending(&self) -> Result<u64, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(_) => self.run(|s| s.inbox_pending()).await,
            Backend::Postgres(pg) => pg.run(postgres::inbox::inbox_pending(pg.pool())).await,
        }
    }
}

impl BlockingStore {
    /// The database file (SQLite), or `postgresql://user@host:port/dbname`.
    pub fn path(&self) -> &Path {
        match &self.backend {
            Backend::Sqlite(db) => db.path(),
            Backend::Postgres(db) => db.path(),
        }
    }

    /// The pragmas in force. PostgreSQL has no pragmas: its durability is the server's
    /// (`synchronous_commit`, replication), so this reports `journal_mode` `postgresql`, the
    /// schema version, and zeros.
    pub fn pragmas(&self) -> Result<Pragmas, StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => db.pragmas(),
            Backend::Postgres(pg) => Ok(Pragmas {
                journal_mode: "postgresql".to_owned(),
                synchronous: 0,
                busy_timeout_ms: 0,
                foreign_keys: 0,
                secure_delete: 0,
                journal_size_limit: 0,
                wal_autocheckpoint: 0,
                schema_version: pg.block(postgres::schema::current_version(pg.pool()))?,
            }),
        }
    }

    /// Writes one tiny row and commits it; see [`Store::check_writable`].
    pub fn check_writable(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => db.check_writable(),
            Backend::Postgres(pg) => pg.block(postgres::check_writable(pg.pool())),
        }
    }

    /// The stored ACK of the committed message with this key, if any.
    pub fn find_duplicate(&self, key: &DedupKey) -> Result<Option<StoredAck>, StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => db.find_duplicate(key),
            Backend::Postgres(pg) => {
                pg.block(postgres::inbound::find_duplicate(pg.pool(), key.clone()))
            }
        }
    }

    /// Writes one message and its ACK in one transaction; the row is durable (on disk) when
    /// this returns `Ok`. Only then may the receiver answer the ACK.
    ///
    /// A committed record (AA/CA) whose key is already committed writes nothing and returns
    /// [`CommitResult::Duplicate`] with the original ACK. Error and rejected records are
    /// always written, as audit rows. A committed record with an empty MSH-10 is refused.
    ///
    /// Commits that arrive together share one transaction (group commit): see
    /// [`Store::commit_group_stats`].
    ///
    /// Blocking, like every call of [`BlockingStore`]: call it from a thread that may block
    /// (a CLI command, `spawn_blocking`), never from a runtime's worker thread, where waiting
    /// for the group's answer panics; async callers use [`Store::commit_inbound`].
    pub fn commit_inbound(&self, record: &InboundRecord) -> Result<CommitResult, StoreError> {
        self.commit_inbound_keeping(record.clone())
            .map(|(result, _)| result)
    }

    /// [`commit_inbound`](Self::commit_inbound), handing the record back.
    pub fn commit_inbound_keeping(
        &self,
        record: InboundRecord,
    ) -> Result<(CommitResult, InboundRecord), StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => db.commit_inbound(record),
            Backend::Postgres(pg) => pg.block(postgres::inbound::commit_inbound(
                pg.pool(),
                pg.committer(),
                record,
            )),
        }
    }

    /// How many transactions the inbound commits took so far and how many messages each
    /// held (group commit), for every clone of this store: the
    /// `hl7gw_store_commit_group_size` metric.
    pub fn commit_group_stats(&self) -> Arc<GroupStats> {
        match &self.backend {
            Backend::Sqlite(db) => db.group_stats(),
            Backend::Postgres(pg) => pg.group_stats(),
        }
    }

    /// One row of the audit trail.
    pub fn inbound(&self, id: i64) -> Result<Option<InboundRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => db.inbound(id),
            Backend::Postgres(pg) => pg.block(postgres::inbound::inbound(pg.pool(), id)),
        }
    }

    /// Prunes what is older than `older_than`; see [`BlockingStore::prune_before`].
    pub fn prune(&self, older_than: Duration) -> Result<Pruned, StoreError> {
        let cutoff = SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(UNIX_EPOCH);
        self.prune_before(cutoff)
    }

    /// Deletes inbound rows received before `cutoff`, except committed inbox rows EMS has
    /// not acknowledged, and outbound messages delivered or skipped before it, never pending
    /// ones (queued, in flight, held). Deletes in batches of 1000 rows, one transaction
    /// each, so a large prune never holds the write lock long enough to delay a commit.
    /// With SQLite it then checkpoints: deleted content is zeroed in the file
    /// (`secure_delete`) and the WAL that still held it is truncated.
    pub fn prune_before(&self, cutoff: SystemTime) -> Result<Pruned, StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => {
                let pruned = Pruned {
                    inbound: db.prune_before(cutoff)?,
                    outbound: db.queue_prune_finished(timestamp::from_system(cutoff))?,
                };
                // The rows are gone either way; a checkpoint that cannot finish now (another
                // process reading, a full disk) is done by the next one.
                match db.checkpoint() {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(
                        store = %db.path().display(),
                        "store retention: the WAL could not be checkpointed entirely (another \
                         process is reading the store); the next checkpoint completes it"
                    ),
                    Err(e) => tracing::warn!(
                        store = %db.path().display(),
                        "store retention: checkpoint after the prune failed: {e}"
                    ),
                }
                Ok(pruned)
            }
            Backend::Postgres(pg) => pg.block(postgres::prune_before(pg.pool(), cutoff)),
        }
    }

    /// Copies the WAL into the database file and truncates it; false when a reader in
    /// another process kept it from being reset entirely. PostgreSQL checkpoints on its
    /// own: always true.
    pub fn checkpoint(&self) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => db.checkpoint(),
            Backend::Postgres(_) => Ok(true),
        }
    }

    /// Committed inbox rows with an id above `after`, oldest first, at most `limit` (capped
    /// at [`INBOX_MAX_LIST`]); rows EMS acknowledged are left out unless
    /// `include_acknowledged`.
    pub fn inbox_list(
        &self,
        after: i64,
        limit: u32,
        include_acknowledged: bool,
    ) -> Result<Vec<InboxItem>, StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => db.inbox_list(after, limit, include_acknowledged),
            Backend::Postgres(pg) => pg.block(postgres::inbox::inbox_list(
                pg.pool(),
                after,
                limit,
                include_acknowledged,
            )),
        }
    }

    /// One committed inbox row, acknowledged or not, with its raw message.
    pub fn inbox_get(&self, id: i64) -> Result<Option<InboxEntry>, StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => db.inbox_get(id),
            Backend::Postgres(pg) => pg.block(postgres::inbox::inbox_get(pg.pool(), id)),
        }
    }

    /// Marks a committed inbox row as taken by EMS. Idempotent: acknowledging again keeps
    /// the first time, which is returned. `None` when there is no such inbox row.
    pub fn inbox_ack(&self, id: i64) -> Result<Option<OffsetDateTime>, StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => db.inbox_ack(id),
            Backend::Postgres(pg) => pg.block(postgres::inbox::inbox_ack(pg.pool(), id)),
        }
    }

    /// How many committed inbox rows EMS has not acknowledged.
    pub fn inbox_pending(&self) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => db.inbox_pending(),
            Backend::Postgres(pg) => pg.block(postgres::inbox::inbox_pending(pg.pool())),
        }
    }
}
