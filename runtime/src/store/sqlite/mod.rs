//! The SQLite backend: one file per gateway and environment, WAL, `synchronous=FULL`. All
//! of the store's SQL is in this module and its children (schema, inbound and inbox rows,
//! the outbound queue); nothing outside it sees `rusqlite`, except the
//! [`StoreError`] variants that carry SQLite's errors.
//!
//! rusqlite is blocking: every call here runs under one connection mutex, on the caller's
//! thread; [`Store`](super::Store) runs them on tokio's blocking pool for async callers.
//! SQLite allows one writer at a time anyway, so one connection costs nothing in write
//! throughput; reads are short indexed lookups.

mod audit;
mod inbound;
mod inbox;
mod permissions;
mod queue;
pub mod schema;

use std::path::{Path, PathBuf};

use parking_lot::{Mutex, MutexGuard};
use rusqlite::{Connection, OptionalExtension};
use time::OffsetDateTime;

use super::group::{GroupQueue, GroupStats};
use super::{Pragmas, StoreError, StoreOptions, timestamp};

/// An open SQLite store.
pub(crate) struct Sqlite {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// Inbound commits waiting for the connection (group commit).
    groups: GroupQueue,
}

impl Sqlite {
    /// Opens (creating it and its directory when missing) the file, sets the pragmas and
    /// applies pending migrations.
    pub(crate) fn open(path: &Path, options: &StoreOptions) -> Result<Self, StoreError> {
        let path = path.to_path_buf();
        permissions::tighten(&path)?;
        create_file(&path)?;
        let mut conn = Connection::open(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        configure(&conn, &path, options)?;
        schema::migrate(&mut conn, &path)?;
        Ok(Self {
            path,
            conn: Mutex::new(conn),
            groups: GroupQueue::default(),
        })
    }

    /// The database file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// How large the inbound commit groups were.
    pub(crate) fn group_stats(&self) -> std::sync::Arc<GroupStats> {
        self.groups.stats()
    }

    /// The connection. A panic while it is held leaves it usable (the lock does not poison):
    /// every transaction here is a scoped `rusqlite::Transaction`, which rolls back when
    /// dropped during the unwind. The lock is parking_lot's, so that the group writer can
    /// hand it over fairly between groups (`inbound.rs`, `write_groups`).
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock()
    }

    /// The pragmas in force.
    pub(crate) fn pragmas(&self) -> Result<Pragmas, StoreError> {
        let conn = self.conn();
        Ok(Pragmas {
            journal_mode: conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?,
            synchronous: conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?,
            busy_timeout_ms: conn.query_row("PRAGMA busy_timeout", [], |r| r.get(0))?,
            foreign_keys: conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?,
            secure_delete: conn.query_row("PRAGMA secure_delete", [], |r| r.get(0))?,
            journal_size_limit: conn.query_row("PRAGMA journal_size_limit", [], |r| r.get(0))?,
            wal_autocheckpoint: conn.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))?,
            schema_version: schema::current_version(&conn)?,
        })
    }
}

impl Sqlite {
    /// Rewrites the health row in its own transaction, committed (fsynced) like any other
    /// write: an error means the store does not take writes now.
    pub(crate) fn check_writable(&self) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO health (id, checked_at) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
            [timestamp::format(timestamp::now())],
        )?;
        Ok(())
    }
}

/// Creates the directory and, on Unix, the file itself with mode 0600 (it holds patient
/// data; SQLite gives its `-wal` and `-shm` files the database file's permissions).
fn create_file(path: &Path) -> Result<(), StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map(drop).map_err(io)
}

fn configure(conn: &Connection, path: &Path, options: &StoreOptions) -> Result<(), StoreError> {
    conn.busy_timeout(options.busy_timeout)?;
    // Every statement of the store is prepared once and kept: more than rusqlite's default
    // of 16, so a commit never re-parses its statements because the queue's evicted them.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::NotWal {
            path: path.to_path_buf(),
            mode,
        });
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;
         PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}; PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES};"
    ))?;
    Ok(())
}

/// How many prepared statements the connection keeps (the store has about 40).
const STATEMENT_CACHE: usize = 64;

/// `PRAGMA journal_size_limit`: after a checkpoint resets the WAL, SQLite truncates it to
/// this many bytes. Without a limit the WAL keeps the largest size it ever reached, so a
/// burst (or a disk that filled up) would hold that space for good.
pub(crate) const JOURNAL_SIZE_LIMIT: i64 = 1 << 20;

/// `PRAGMA wal_autocheckpoint`: a commit that leaves the WAL longer than this many pages
/// (256 pages of 4 KiB: 1 MiB) copies it into the database file, so the WAL stays small and
/// needs no more free space than that to keep accepting writes.
pub(crate) const WAL_AUTOCHECKPOINT_PAGES: i64 = 256;

impl Sqlite {
    /// Copies the whole WAL into the database file and truncates it to zero bytes, so rows
    /// just deleted (zeroed by `secure_delete`) leave no copy in the WAL and the space it held
    /// is given back. A reader in another process (the `queue` command) can keep the WAL
    /// from being reset; that is not an error: the next checkpoint does it.
    /// Returns false when the WAL could not be reset entirely.
    pub(crate) fn checkpoint(&self) -> Result<bool, StoreError> {
        let conn = self.conn();
        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        Ok(busy == 0)
    }
}

/// A stored text that should be one of a few values, or a timestamp, and is not (the file
/// was edited by hand).
#[derive(Debug, thiserror::Error)]
#[error("unexpected stored value {0:?}")]
struct BadValue(String);

/// The conversion error for column `idx` holding `text`.
fn bad_value(idx: usize, text: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        idx,
        rusqlite::types::Type::Text,
        Box::new(BadValue(text)),
    )
}

/// A text column of a fixed set of values, read with `parse`.
fn parsed<T>(
    idx: usize,
    text: String,
    parse: impl FnOnce(&str) -> Option<T>,
) -> rusqlite::Result<T> {
    parse(&text).ok_or_else(|| bad_value(idx, text))
}

/// A timestamp column (see [`timestamp::format`]).
fn instant(r: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<OffsetDateTime> {
    parsed(idx, r.get(idx)?, timestamp::parse)
}

/// A nullable timestamp column.
fn instant_opt(r: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Option<OffsetDateTime>> {
    match r.get::<_, Option<String>>(idx)? {
        None => Ok(None),
        Some(text) => parsed(idx, text, timestamp::parse).map(Some),
    }
}

/// The stored text of a record's JSON, read back.
fn parse_record(json: Option<String>) -> Result<Option<serde_json::Value>, StoreError> {
    Ok(match json {
        Some(text) => Some(serde_json::from_str(&text)?),
        None => None,
    })
}

/// Deletes in batches of 1000 rows, one `BEGIN IMMEDIATE` transaction each, so a large
/// prune never holds the write lock long enough to delay a commit. `sql` deletes at most
/// 1000 rows given the cutoff as `?1`. Returns how many rows went.
fn delete_in_batches(store: &Sqlite, sql: &str, cutoff: &str) -> Result<usize, rusqlite::Error> {
    let mut total = 0;
    loop {
        let deleted = {
            let mut conn = store.conn();
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let n = tx.execute(sql, [cutoff])?;
            tx.commit()?;
            n
        };
        total += deleted;
        if deleted < 1000 {
            return Ok(total);
        }
    }
}

impl Sqlite {
    /// Up to `limit` rows of `table` with an id above `after`, in id order, each as the
    /// values of `columns` (for `store migrate`, which copies a store into PostgreSQL).
    pub(crate) fn export_rows(
        &self,
        table: &str,
        columns: &[&str],
        after: i64,
        limit: usize,
    ) -> Result<Vec<Vec<rusqlite::types::Value>>, StoreError> {
        let conn = self.conn();
        // The table and column names are the store's own constants, never input.
        let sql = format!(
            "SELECT {} FROM {table} WHERE id > ?1 ORDER BY id LIMIT ?2",
            columns.join(", ")
        );
        let mut stmt = conn.prepare(&sql)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(rusqlite::params![after, limit], |r| {
            (0..columns.len())
                .map(|i| r.get::<_, rusqlite::types::Value>(i))
                .collect::<Result<Vec<_>, _>>()
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The highest id `table` ever handed out (`AUTOINCREMENT` keeps it after a prune), so a
    /// copy can go on from there and never reuse one.
    pub(crate) fn last_id(&self, table: &str) -> Result<i64, StoreError> {
        let conn = self.conn();
        let seq: Option<i64> = conn
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = ?1",
                [table],
                |r| r.get(0),
            )
            .optional()?;
        let max: Option<i64> =
            conn.query_row(&format!("SELECT MAX(id) FROM {table}"), [], |r| r.get(0))?;
        Ok(seq.unwrap_or(0).max(max.unwrap_or(0)))
    }
}
