//! An environment's `store`: an SQLite file (the plain string form, the embedded default) or
//! a PostgreSQL database that several replicas of the gateway share. A password never goes
//! in the spec: it comes from an environment variable or a file at run time.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use hl7gw_runtime::config::{Duration, defaults};

/// Where an environment keeps its queue, audit trail and inbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum StoreSetting {
    /// The SQLite file, relative to the spec's folder: one gateway process on one host.
    Sqlite(String),
    /// A PostgreSQL database shared by the gateway's replicas.
    Server(ServerStore),
}

/// `store: { postgres: { ... } }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerStore {
    /// The PostgreSQL database.
    pub postgres: PostgresSetting,
}

/// The PostgreSQL database of an environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresSetting {
    /// Host name or IP address of the server.
    pub host: String,
    /// TCP port; 5432 when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The database: one per gateway environment.
    pub dbname: String,
    /// The role the gateway logs in as.
    pub user: String,
    /// The environment variable holding the password (at run time, on each replica).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// A file holding the password (e.g. a mounted secret), relative to the spec's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
    /// Refused: a password never goes in the spec (`env-store-password`); use
    /// `password_env` or `password_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// TLS to the server: the CA that issued its certificate (the host name is verified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<PostgresTlsSetting>,
    /// `disable`: plain TCP, only for a server on the gateway's own host (loopback);
    /// otherwise leave it out and give `tls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslmode: Option<SslMode>,
    /// The most connections one replica opens; 8 when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_size: Option<u32>,
    /// How long a replica's lease on an outbound stream lasts without renewal: the longest a
    /// stream waits for another replica after its leader dies.
    #[schemars(description = format!("How long a replica's lease on an outbound stream lasts without renewal: the longest a stream waits for another replica to take over after its leader dies. Default {}.", defaults::STREAM_LEASE))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Duration>,
}

/// `tls: { ca: ... }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresTlsSetting {
    /// The CA certificate(s) (PEM) the server's certificate must chain to, relative to the
    /// spec's folder.
    pub ca: String,
}

/// `sslmode`: only `disable` is written; TLS is the default and needs `tls.ca`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Plain TCP.
    Disable,
}

impl StoreSetting {
    /// What names the store uniquely, for "nothing shared between environments": the
    /// SQLite path, or `postgresql://host:port/dbname`.
    pub fn identity(&self, normalize_path: impl Fn(&str) -> String) -> String {
        match self {
            Self::Sqlite(path) => normalize_path(path),
            Self::Server(ServerStore { postgres: p }) => format!(
                "postgresql://{}:{}/{}",
                p.host.to_ascii_lowercase(),
                p.port.unwrap_or(defaults::POSTGRES_PORT),
                p.dbname
            ),
        }
    }

    /// As the go-live report shows it (no secrets: the spec holds none).
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite(path) => path.clone(),
            Self::Server(ServerStore { postgres: p }) => format!(
                "postgresql://{}@{}:{}/{}",
                p.user,
                p.host,
                p.port.unwrap_or(defaults::POSTGRES_PORT),
                p.dbname
            ),
        }
    }
}
