//! Support for `tests/sender.rs` alone: the sending gateway in a child process, its intake
//! API and the operator's `queue` commands on its store. The Trust's engine the gateway sends
//! to (`hl7gw_tests::trust`) and the HL7 samples (`hl7gw_tests::messages`) are shared.
//!
//! # The gateway process
//!
//! As in `receiver_support`: the test binary re-executes itself
//! (`std::env::current_exe()`) with [`CHILD_ENV`] set to a JSON [`SenderConfig`] and a filter
//! selecting the ignored test `child_sender_process`, which calls [`child_main`]. The child
//! runs `hl7gw_runtime::app::serve` with gw-demo's TEST environment (receiver, intake API,
//! sequencer), the repository's `specs/` folder as the base directory (so the spec's
//! development certificates: `certs/test/client.crt` signed by the EMS CA, and
//! `certs/test/trust-ca.crt` as the only root for the Trust's server certificate), every
//! port on 127.0.0.1:0 and the test's store, and prints its bound addresses on one [`READY`]
//! line. It stops when its standard input closes or when the test kills it (`kill -9`).
//!
//! What the real `serve` command has no flag for is applied by editing a copy of the
//! generated `Environment`, as a spec with those values would: the send URL (the test's
//! Trust on an ephemeral port), the ACK timeout and the backoff (milliseconds, so retries
//! are quick), and the MLLP idle timeout (`limits.mllp_idle_timeout`, so a test sees an idle
//! connection closed in seconds).
//!
//! The test stops the child's sequencer from outside ([`Sender::stop_sequencer`]) by creating
//! a file next to the store, which the child watches: while it exists the child holds
//! `hl7gw_runtime::fault::stop_sequencer` (nothing an operator does stops a sequencer, see
//! that module).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hl7gw_runtime::GatewaySpec;
use hl7gw_runtime::app::{QueueCommand, RunOptions};
use hl7gw_runtime::config::{Duration as SpecDuration, Environment, SendConfig};
/// Bounded waits, shared with the other cross-process suites.
pub use hl7gw_tests::child::wait_until;
use hl7gw_tests::child::{ChildProcess, ChildSpec, loopback_options, serve_test_gateway};
use hl7gw_tests::postgres::ChildStore;
use serde_json::{Value, json};

/// Set in the child's environment: its [`SenderConfig`] as JSON.
pub const CHILD_ENV: &str = "HL7GW_E2E_SENDER";
/// The test function that runs [`child_main`].
pub const CHILD_TEST: &str = "child_sender_process";
/// Prefix of the child's one line announcing its addresses.
pub const READY: &str = "HL7GW-E2E-SENDER-READY ";

/// Every wait on a condition gives up after this.
pub const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// What the child serves.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// The SQLite store (queue included).
    pub store: PathBuf,
    /// The Trust's URL (`send.url`).
    pub url: String,
    /// `send.timeout_ms`.
    pub timeout_ms: u64,
    /// `send.backoff_first_ms`.
    pub backoff_first_ms: u64,
    /// `send.backoff_max_ms`.
    pub backoff_max_ms: u64,
    /// `limits.mllp_idle_timeout` in milliseconds; the spec's when `None`.
    pub mllp_idle_timeout_ms: Option<u64>,
    /// Replaces the SQLite store with this PostgreSQL database (replicas share one).
    pub postgres: Option<ChildStore>,
}

impl SenderConfig {
    /// Sends to `url`, 10 s ACK timeout, backoff 20 ms to 100 ms.
    pub fn new(store: impl Into<PathBuf>, url: impl Into<String>) -> Self {
        Self {
            store: store.into(),
            url: url.into(),
            timeout_ms: 10_000,
            backoff_first_ms: 20,
            backoff_max_ms: 100,
            mllp_idle_timeout_ms: None,
            postgres: None,
        }
    }

    fn to_json(&self) -> String {
        json!({
            "store": self.store,
            "url": self.url,
            "timeout_ms": self.timeout_ms,
            "backoff_first_ms": self.backoff_first_ms,
            "backoff_max_ms": self.backoff_max_ms,
            "mllp_idle_timeout_ms": self.mllp_idle_timeout_ms,
            "postgres": self.postgres.as_ref().map(ChildStore::to_json),
        })
        .to_string()
    }
}

// ---------------------------------------------------------------------------------------
// The child.

/// Runs the gateway when [`CHILD_ENV`] is set, then exits the process; returns at once
/// otherwise.
pub fn child_main() {
    hl7gw_tests::child::child_main(CHILD_ENV, "sender", |config| {
        hl7gw_runtime::app::init_logging();
        run_child(config)
    });
}

/// gw-demo's TEST environment with the send side pointed at `url` and sped up.
fn environment(config: &Value) -> Result<Environment, String> {
    let number = |key: &str| {
        config
            .get(key)
            .and_then(Value::as_u64)
            .ok_or(format!("no {key}"))
    };
    let url = config.get("url").and_then(Value::as_str).ok_or("no url")?;
    let mut environment = gw_demo::config::TEST;
    let base = environment.send.ok_or("gw-demo TEST sends nothing")?;
    environment.send = Some(SendConfig {
        url: url.to_owned().into(),
        timeout_ms: number("timeout_ms")?,
        backoff_first_ms: number("backoff_first_ms")?,
        backoff_max_ms: number("backoff_max_ms")?,
        ..base
    });
    if let Some(idle) = config.get("mllp_idle_timeout_ms").and_then(Value::as_u64) {
        environment.limits.mllp_idle_timeout = SpecDuration::from_millis(idle);
    }
    Ok(environment)
}

/// gw-demo's spec with `environment` as its TEST environment.
fn spec(environment: Environment) -> GatewaySpec {
    GatewaySpec {
        test: Some(environment),
        ..gw_demo::SPEC
    }
}

fn options(store: PathBuf) -> RunOptions {
    loopback_options(store, None)
}

fn run_child(config: &str) -> Result<(), String> {
    let config: Value = serde_json::from_str(config).map_err(|e| e.to_string())?;
    let mut environment = environment(&config)?;
    let store = config
        .get("store")
        .and_then(Value::as_str)
        .ok_or("no store")?;
    watch_sequencer_stop(stop_sequencer_file(Path::new(store)));
    let mut options = options(PathBuf::from(store));
    hl7gw_tests::postgres::use_child_store(config.get("postgres"), &mut environment, &mut options)?;
    let spec = spec(environment);
    serve_test_gateway(&spec, &options, READY, |resolved| {
        json!({
            "listen": resolved.listen.to_string(),
            "ops": resolved.ops_listen.to_string(),
            "intake": resolved.send.as_ref().map(|s| s.intake_listen.to_string()),
            "mllp": resolved.send.as_ref().map(|s| s.mllp_listen.to_string()),
        })
    })
}

/// The file whose existence stops the sequencer of the child serving `store`.
fn stop_sequencer_file(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".stop-sequencer");
    PathBuf::from(name)
}

/// In the child: holds the sequencer stopped while `file` exists, checked every 20 ms for as
/// long as the process runs.
fn watch_sequencer_stop(file: PathBuf) {
    std::thread::spawn(move || {
        let mut stopped = false;
        loop {
            let stop = file.exists();
            if stop != stopped {
                hl7gw_runtime::fault::stop_sequencer(stop);
                stopped = stop;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
}

// ---------------------------------------------------------------------------------------
// The parent's handle on a child.

/// A sending gateway in a child process; killed (SIGKILL) and reaped when dropped. If the
/// test is failing, the end of the child's log is printed.
pub struct Sender {
    process: ChildProcess,
    pub config: SenderConfig,
    /// The intake API (`POST /outbound`).
    pub intake: SocketAddr,
    /// The operations port (`/healthz`, `/metrics`).
    pub ops: SocketAddr,
    /// The intake MLLP listener.
    pub mllp: SocketAddr,
}

impl Sender {
    /// Starts a child and waits (bounded) until it listens. `log` receives its stderr.
    pub fn start(config: SenderConfig, log: &Path) -> Self {
        let spec = ChildSpec {
            what: "sender",
            test: CHILD_TEST,
            config: (CHILD_ENV, config.to_json()),
            env: &[("HL7GW_LOG", "debug")],
            ready: READY,
        };
        let (process, ready) = ChildProcess::start(spec, log);
        let addr = |key: &str| -> Option<SocketAddr> { ready[key].as_str()?.parse().ok() };
        let (Some(intake), Some(ops), Some(mllp)) = (addr("intake"), addr("ops"), addr("mllp"))
        else {
            panic!("the sender child announced no intake, ops or MLLP address: {ready}");
        };
        Self {
            process,
            config,
            intake,
            ops,
            mllp,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The value of gauge `name` on the operations port (`/metrics`).
    pub fn gauge(&self, name: &str) -> Option<i64> {
        let (status, body) = http(self.ops, "GET", "/metrics", b"");
        assert_eq!(status, 200, "{body}");
        body.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    /// `kill -9`, and waits for the process to be gone.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// Stops the child's sequencer (`true`: the running one ends and every restart ends at
    /// once) or lets the supervisor's next restart run (`false`).
    pub fn stop_sequencer(&self, stop: bool) {
        let file = stop_sequencer_file(&self.config.store);
        if stop {
            std::fs::write(&file, b"").unwrap();
        } else {
            std::fs::remove_file(&file).unwrap();
        }
    }

    /// `GET /healthz` on the operations port: the status and the JSON body.
    pub fn healthz(&self) -> (u16, Value) {
        let response =
            hl7gw_tests::wire::plain_request(self.ops, "GET", "/healthz", &[], b"").unwrap();
        let body = serde_json::from_str(&response.body_text())
            .unwrap_or_else(|e| panic!("/healthz answered {response:?}: {e}"));
        (response.status, body)
    }

    /// Waits (bounded) until `/healthz` answers `status`; its body.
    pub fn wait_healthz(&self, status: u16) -> Value {
        let deadline = Instant::now() + WAIT_LIMIT;
        loop {
            let (got, body) = self.healthz();
            if got == status {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "/healthz never answered {status}; last {got}: {body:#}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The child's whole log.
    pub fn log_text(&self) -> String {
        self.process.log_text()
    }

    /// The last `lines` lines of the child's log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// `POST /outbound` with an HL7 body: the status and the JSON answer.
    pub fn post(&self, message: &[u8]) -> (u16, Value) {
        let (status, body) = http(self.intake, "POST", "/outbound", message);
        let value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("intake answered {status} with non-JSON {body:?}: {e}"));
        (status, value)
    }

    /// Queues `message`, which must be new: its queue id.
    pub fn queue(&self, message: &[u8]) -> i64 {
        let (status, answer) = self.post(message);
        assert_eq!(status, 201, "the intake refused the message: {answer}");
        assert_eq!(answer["created"], true, "{answer}");
        answer["id"].as_i64().unwrap()
    }

    /// `GET /outbound`: the stream's status as the intake API reports it.
    pub fn intake_status(&self) -> Value {
        let (status, body) = http(self.intake, "GET", "/outbound", b"");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// The operator's `queue` command, run from the test process on the child's store.
    pub fn queue_command(&self, command: &QueueCommand) -> String {
        queue_command(&self.config, command)
    }

    /// `queue status`, parsed.
    pub fn status(&self) -> Value {
        serde_json::from_str(&self.queue_command(&QueueCommand::Status)).unwrap()
    }

    /// `queue list`, parsed: every message of the stream, oldest first.
    pub fn list(&self) -> Vec<Value> {
        let text = self.queue_command(&QueueCommand::List {
            after: 0,
            limit: 1000,
        });
        serde_json::from_str(&text).unwrap()
    }

    /// Waits (bounded) until `queue status` satisfies `want`; returns it.
    pub fn wait_status(&self, what: &str, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT_LIMIT;
        loop {
            let status = self.status();
            if want(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; queue status:\n{status:#}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `gw-demo queue …` for the store of `config`, as the generated binary runs it: what it
/// prints.
pub fn queue_command(config: &SenderConfig, command: &QueueCommand) -> String {
    let config: Value = serde_json::from_str(&config.to_json()).unwrap();
    let mut environment = environment(&config).unwrap();
    let store = config["store"].as_str().unwrap();
    let mut options = options(PathBuf::from(store));
    // On the child's database, when it has one.
    hl7gw_tests::postgres::use_child_store(config.get("postgres"), &mut environment, &mut options)
        .unwrap();
    hl7gw_runtime::app::queue_command(&environment, &options, command)
        .unwrap_or_else(|e| panic!("queue command {command:?} failed: {e}"))
}

/// One plain HTTP/1.1 request with an HL7 body on loopback, blocking and bounded: the status
/// and the body.
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let response = hl7gw_tests::wire::plain_request(
        addr,
        method,
        path,
        &["Content-Type: application/hl7-v2"],
        body,
    )
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    (response.status, response.body_text())
}
