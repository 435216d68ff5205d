//! Where an environment keeps its store: an SQLite file, or a PostgreSQL database shared by
//! replicas. The password is never part of the configuration: it names where to read it at
//! run time (an environment variable or a file).

use super::Text;

/// The store of an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// An SQLite file, relative to the spec's folder.
    Sqlite(Text),
    /// A PostgreSQL database.
    Postgres(PostgresConfig),
}

/// How to reach the PostgreSQL database (paths relative to the spec's folder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// Host name or IP address.
    pub host: Text,
    /// TCP port.
    pub port: u16,
    /// The database.
    pub dbname: Text,
    /// The role.
    pub user: Text,
    /// Where the password is read at run time.
    pub password: PasswordSource,
    /// The CA file (PEM) the server's certificate must chain to; `None`: plain TCP
    /// (`sslmode: disable`).
    pub tls_ca: Option<Text>,
    /// The most connections one replica opens.
    pub pool_size: u32,
    /// How long a stream lease lasts without renewal, in milliseconds.
    pub lease_ms: u64,
}

/// Where the database password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// No password (a server that trusts the connection, e.g. by its client certificate).
    None,
    /// This environment variable.
    Env(Text),
    /// This file (trailing line breaks are ignored), relative to the spec's folder.
    File(Text),
}
