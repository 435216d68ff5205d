//! A private PostgreSQL server for tests: a fresh cluster made with `initdb` in a temporary
//! folder, listening on loopback on a free port (and a Unix socket in that folder), stopped
//! and deleted when dropped, also when the test panics. No mock: the store's PostgreSQL
//! backend is tested against the real server.
//!
//! PostgreSQL refuses to run as root; CI runs as root, so as root the cluster belongs to the
//! `postgres` system user the Debian package creates and every server command runs through
//! `runuser -u postgres`. As any other user the commands run directly.
//!
//! Where PostgreSQL is not installed the test says it skipped (written past libtest's
//! capture, like the tmpfs guard), unless `HL7GW_REQUIRE_POSTGRES=1` (CI) makes that a
//! failure. The binaries are found through `HL7GW_POSTGRES_BIN`, then `pg_config --bindir`,
//! then the newest `/usr/lib/postgresql/*/bin`.
//!
//! Only tests link this; a server that will not start is reported, hence `panic`.
#![allow(clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Set to `1` to fail, not skip, when PostgreSQL is missing.
pub const REQUIRE: &str = "HL7GW_REQUIRE_POSTGRES";

/// Overrides where `initdb`, `pg_ctl` and `psql` are looked for.
pub const BIN: &str = "HL7GW_POSTGRES_BIN";

/// The superuser the cluster is made with, and its password (SCRAM, also on loopback, so the
/// tests exercise the password path the gateway uses).
pub const USER: &str = "hl7gw";
/// The superuser's password.
pub const PASSWORD: &str = "test-only-password";

/// How long starting or stopping the server may take.
const SERVER_WAIT: Duration = Duration::from_secs(60);

/// A running private cluster; stopped (immediately) and deleted when dropped.
pub struct TestPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
    /// `fsync` as PostgreSQL's default (on), for benchmarks; off otherwise.
    durable: bool,
}

impl TestPostgres {
    /// Makes and starts a cluster, or returns `None` after printing why `test` skips.
    /// Panics instead when [`REQUIRE`] is `1`, or when PostgreSQL is installed but the
    /// cluster cannot be made or started (that is a real failure).
    pub fn start(test: &str) -> Option<Self> {
        Self::start_with(test, false)
    }

    /// As [`TestPostgres::start`], but with `fsync` left on (PostgreSQL's default): for a
    /// benchmark, whose commits must be as durable as a production server's.
    pub fn start_durable(test: &str) -> Option<Self> {
        Self::start_with(test, true)
    }

    fn start_with(test: &str, durable: bool) -> Option<Self> {
        let Some(bin) = find_bin() else {
            return skipped(test);
        };
        let as_postgres = running_as_root();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, PASSWORD).expect("the password file");
        if as_postgres {
            // The server user needs the folder (data, socket, log) as its own.
            chown_to_postgres(dir.path());
        }
        let mut server = Self {
            dir,
            bin,
            port: 0,
            as_postgres,
            durable,
        };
        let data = server.data();
        server.run_checked(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                USER,
                "--auth=scram-sha-256",
                &format!("--pwfile={}", pwfile.display()),
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        // A free port can be taken by someone else between the probe and the start: try a
        // few.
        let mut last = String::new();
        for _ in 0..5 {
            server.port = free_port();
            match server.pg_ctl_start() {
                Ok(()) => return Some(server),
                Err(e) => last = e,
            }
        }
        panic!("{test}: the PostgreSQL test server did not start: {last}");
    }

    /// One server for the whole test binary, started by the first test that asks: each test
    /// then makes its own database ([`TestPostgres::create_database`]). A static is never
    /// dropped, so a small reaper process started with the server stops it and deletes its
    /// folder once this process is gone, however it ended (a panic, an abort, a kill).
    pub fn shared(test: &str) -> Option<&'static Self> {
        static SHARED: std::sync::OnceLock<Option<TestPostgres>> = std::sync::OnceLock::new();
        let shared = SHARED
            .get_or_init(|| {
                find_bin()?;
                let server = Self::start(test)?;
                server.start_reaper();
                Some(server)
            })
            .as_ref();
        // Every test that skips says so, not only the first.
        shared.or_else(|| skipped(test))
    }

    /// Starts `sh` waiting for this process to end, then stopping the server and removing
    /// its folder. It is meant to outlive this process (and is adopted by init then), so it
    /// is never waited for.
    #[allow(clippy::zombie_processes)]
    fn start_reaper(&self) {
        let pg_ctl = self.bin.join("pg_ctl").display().to_string();
        let stop = if self.as_postgres {
            format!("runuser -u postgres -- {pg_ctl}")
        } else {
            pg_ctl
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             {stop} -D '{data}' -m immediate -w -t 30 stop >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            data = self.data(),
            dir = self.dir.path().display(),
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the reaper of the shared PostgreSQL test server starts");
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The loopback address the server listens on.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// A libpq-style connection string for database `dbname` (password included: tests only).
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "host={} port={} user={USER} password={PASSWORD} dbname={dbname} sslmode=disable",
            self.host(),
            self.port
        )
    }

    /// Creates a new empty database and returns its name (`prefix` plus a counter, so one
    /// server can hold every test's database).
    pub fn create_database(&self, prefix: &str) -> String {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name: String = format!("{prefix}_{n}")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        name
    }

    /// Runs `sql` in `dbname` with `psql` and returns its unaligned, tuples-only output.
    pub fn psql(&self, dbname: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .args(["-h", self.host(), "-p", &self.port.to_string(), "-U", USER])
            .args(["-d", dbname])
            .env("PGPASSWORD", PASSWORD)
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Stops the server (fast shutdown: open connections are closed), e.g. to test the
    /// database going away. [`TestPostgres::restart`] brings it back on the same port.
    pub fn stop(&self) {
        let data = self.data();
        let out = self.run(
            "pg_ctl",
            &["-D", &data, "-m", "fast", "-w", "-t", "60", "stop"],
        );
        assert!(out.status.success(), "pg_ctl stop: {}", describe(&out));
    }

    /// Starts the stopped server again on the same port.
    pub fn restart(&self) {
        if let Err(e) = self.pg_ctl_start() {
            panic!("the PostgreSQL test server did not start again: {e}");
        }
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let data = self.data();
        let socket_dir = self.dir.path().display().to_string();
        let log = self.dir.path().join("server.log").display().to_string();
        // fsync off (unless durable): a test cluster is thrown away; the gateway's own
        // durability settings are not what these tests measure.
        let fsync = if self.durable { "" } else { "-c fsync=off " };
        let options = format!(
            "-p {} -k {socket_dir} -c listen_addresses=127.0.0.1 {fsync}-c max_connections=200",
            self.port
        );
        let waited = Instant::now();
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                &data,
                "-l",
                &log,
                "-o",
                &options,
                "-w",
                "-t",
                &SERVER_WAIT.as_secs().to_string(),
                "start",
            ],
        );
        if out.status.success() {
            return Ok(());
        }
        let log_text = std::fs::read_to_string(&log).unwrap_or_default();
        Err(format!(
            "{} after {:?}; server log:\n{log_text}",
            describe(&out),
            waited.elapsed()
        ))
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        let path = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()))
    }

    fn run_checked(&self, program: &str, args: &[&str]) {
        let out = self.run(program, args);
        assert!(out.status.success(), "{program}: {}", describe(&out));
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let data = self.data();
        // Immediate: nothing of a test cluster needs to be kept; bounded by pg_ctl's own wait.
        let _ = self.run(
            "pg_ctl",
            &["-D", &data, "-m", "immediate", "-w", "-t", "30", "stop"],
        );
    }
}

/// Says `test` skipped because PostgreSQL is missing, or panics when [`REQUIRE`] is `1`.
fn skipped<T>(test: &str) -> Option<T> {
    let why = "PostgreSQL (initdb, pg_ctl) is not installed";
    if std::env::var(REQUIRE).is_ok_and(|v| v == "1") {
        panic!("{test}: {why} and {REQUIRE}=1");
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: {why}; install the `postgresql` package or set {REQUIRE}=1 to require it"
    );
    None
}

fn describe(out: &Output) -> String {
    format!(
        "{} {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

fn find_bin() -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os(BIN).map(PathBuf::from) {
        return has_tools(&dir).then_some(dir);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_tools(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, dir)| has_tools(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn chown_to_postgres(dir: &Path) {
    let out = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(dir)
        .output()
        .expect("chown runs");
    assert!(
        out.status.success(),
        "chown postgres {}: {} (PostgreSQL refuses to run as root; the `postgres` user of the \
         Debian package runs the test server)",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A database of a test server as a gateway child process is told about it: JSON (the
/// child's configuration travels as JSON), read back by [`store_config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildStore {
    /// The server's address.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The database.
    pub dbname: String,
    /// A file holding [`PASSWORD`].
    pub password_file: PathBuf,
    /// The stream lease, in milliseconds.
    pub lease_ms: u64,
}

impl ChildStore {
    /// A new database on `server`, the password written to a file in `dir`, a lease of
    /// `lease_ms`.
    pub fn create(server: &TestPostgres, prefix: &str, dir: &Path, lease_ms: u64) -> Self {
        let password_file = dir.join(format!("{prefix}-db-password"));
        std::fs::write(&password_file, PASSWORD).expect("the password file");
        Self {
            host: server.host().to_owned(),
            port: server.port(),
            dbname: server.create_database(prefix),
            password_file,
            lease_ms,
        }
    }

    /// As the child's configuration carries it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "password_file": self.password_file,
            "lease_ms": self.lease_ms,
        })
    }

    /// A store handle on the same database, for the test itself.
    pub fn open(&self) -> hl7gw_runtime::store::Store {
        let mut options =
            hl7gw_runtime::store::PostgresOptions::new(&self.host, &self.dbname, USER);
        options.port = self.port;
        options.password = Some(PASSWORD.to_owned());
        hl7gw_runtime::store::Store::open_postgres(&options).expect("the test database opens")
    }
}

/// In the child: the environment's store for [`ChildStore::to_json`]'s JSON.
pub fn store_config(
    json: &serde_json::Value,
) -> Result<hl7gw_runtime::config::StoreConfig, String> {
    use hl7gw_runtime::config::{PasswordSource, PostgresConfig, StoreConfig};
    let text = |key: &str| {
        json.get(key)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or(format!("postgres.{key}"))
    };
    let number = |key: &str| {
        json.get(key)
            .and_then(serde_json::Value::as_u64)
            .ok_or(format!("postgres.{key}"))
    };
    Ok(StoreConfig::Postgres(PostgresConfig {
        host: text("host")?.into(),
        port: u16::try_from(number("port")?).map_err(|e| e.to_string())?,
        dbname: text("dbname")?.into(),
        user: USER.into(),
        password: PasswordSource::File(text("password_file")?.into()),
        tls_ca: None,
        pool_size: 8,
        lease_ms: number("lease_ms")?,
    }))
}

/// In the child: when the configuration names a database ([`ChildStore::to_json`]), serve
/// `environment` on it instead of the SQLite file `options.store` names, and put the
/// control socket in that file's folder (the test's), not the spec's.
pub fn use_child_store(
    json: Option<&serde_json::Value>,
    environment: &mut hl7gw_runtime::config::Environment,
    options: &mut hl7gw_runtime::app::RunOptions,
) -> Result<(), String> {
    let Some(json) = json.filter(|j| !j.is_null()) else {
        return Ok(());
    };
    environment.store = store_config(json)?;
    // `--store` would override the spec's database with an SQLite file.
    options.control_dir = options
        .store
        .take()
        .and_then(|file| file.parent().map(Path::to_path_buf));
    Ok(())
}
