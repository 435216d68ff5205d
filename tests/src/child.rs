//! A gateway in a child process of the test binary, for tests that must kill it (`kill -9`)
//! or run it beside a real peer. The test binary re-executes itself
//! (`std::env::current_exe()`) selecting one ignored test, which calls [`child_main`]; the
//! child prints one ready line with its addresses, writes its log to a file, and stops when
//! its standard input closes.
//!
//! Only tests link this; a child that cannot start fails the test, hence `expect` and `panic`.
#![allow(clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use hl7gw_runtime::GatewaySpec;
use hl7gw_runtime::app::{Resolved, RunOptions};
use hl7gw_runtime::config::EnvName;

/// How long a child may take to announce that it listens.
const START_LIMIT: Duration = Duration::from_secs(30);

/// What to start: the ignored test to run, the variable carrying its configuration, and the
/// prefix of the line announcing that it is ready.
pub struct ChildSpec<'a> {
    /// Names the child in panics and log dumps (`gateway`, `sender`).
    pub what: &'static str,
    /// The ignored test function that calls [`child_main`].
    pub test: &'a str,
    /// The environment variable, and its value, that [`child_main`] reads.
    pub config: (&'a str, String),
    /// More environment for the child.
    pub env: &'a [(&'a str, &'a str)],
    /// The prefix of the child's ready line; the rest of that line is JSON.
    pub ready: &'a str,
}

/// A running child; killed (SIGKILL) and reaped when dropped. If the test is failing, the end
/// of the child's log is printed.
pub struct ChildProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    what: &'static str,
    log: PathBuf,
}

impl ChildProcess {
    /// Starts the child with its stderr appended to `log` and waits (bounded) for its ready
    /// line: the handle and that line's JSON.
    pub fn start(spec: ChildSpec<'_>, log: &Path) -> (Self, serde_json::Value) {
        let exe = std::env::current_exe().expect("the test binary's path");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("the child's log file");
        let mut child = Command::new(exe)
            .args([spec.test, "--exact", "--ignored", "--nocapture"])
            .env(spec.config.0, &spec.config.1)
            .envs(spec.env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("spawning the child");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("the child's piped stdout");
        let (tx, rx) = mpsc::channel::<String>();
        let prefix = spec.ready.to_owned();
        std::thread::spawn(move || {
            // Hands over the ready line, then keeps draining so the child never blocks.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix(&prefix) {
                    let _ = tx.send(rest.to_owned());
                }
            }
        });
        let process = Self {
            child,
            stdin,
            what: spec.what,
            log: log.to_path_buf(),
        };
        let ready = match rx.recv_timeout(START_LIMIT) {
            Ok(line) => line,
            Err(e) => panic!(
                "the {} child did not start ({e}); its log:\n{}",
                process.what,
                process.log_tail(60)
            ),
        };
        let ready = serde_json::from_str(&ready)
            .unwrap_or_else(|e| panic!("the {} child's ready line {ready:?}: {e}", spec.what));
        (process, ready)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`, and waits for the process to be gone.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The child's whole log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of the child's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        drop(self.stdin.take());
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "--- {} child {} log (last lines) ---\n{}\n---",
                self.what,
                self.log.display(),
                self.log_tail(40)
            );
        }
    }
}

/// In the child: runs `run` with the configuration from `config_env` and exits the process
/// (0, or 3 with the error on stderr). Returns at once in a normal test run, where the
/// variable is not set.
pub fn child_main(config_env: &str, what: &str, run: impl FnOnce(&str) -> Result<(), String>) {
    let Ok(config) = std::env::var(config_env) else {
        return;
    };
    let code = match run(&config) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("child {what}: {e}");
            3
        }
    };
    std::process::exit(code);
}

/// In the child: calls `then` once the parent closes our standard input (or dies).
pub fn on_stdin_closed(then: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        then();
    });
}

/// The options a test gateway runs with: the repository's `specs/` folder as the base
/// directory (so the specs' development certificates), `store`, and every port on
/// 127.0.0.1 with a port the system picks.
pub fn loopback_options(store: PathBuf, cert_dir: Option<PathBuf>) -> RunOptions {
    let local = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    RunOptions {
        base_dir: crate::specs(),
        listen: local,
        cert_dir,
        store: Some(store),
        control_dir: None,
        ops_listen: local,
        ops_exposure: hl7gw_runtime::server::Exposure::LoopbackOnly,
        inbox_listen: local,
        intake_listen: local,
        mllp_listen: local,
        retention: None,
    }
}

/// In the child: serves `spec`'s TEST environment with `options` until the parent closes our
/// standard input, announcing the bound addresses on one line: `ready` then the JSON
/// `announce` makes of them.
pub fn serve_test_gateway(
    spec: &GatewaySpec,
    options: &RunOptions,
    ready: &str,
    announce: impl FnOnce(&Resolved) -> serde_json::Value + Send,
) -> Result<(), String> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    on_stdin_closed(move || {
        let _ = stop.send(());
    });
    serve_until(
        spec,
        options,
        async move {
            let _ = stopped.await;
        },
        move |resolved| {
            let line = announce(resolved);
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{ready}{line}");
            let _ = out.flush();
        },
    )
}

/// Serves `spec`'s TEST environment with `options` on a runtime of its own (two workers)
/// until `shutdown` completes; `ready` gets the bound addresses. Blocks: run it on a thread
/// of its own when the test goes on meanwhile.
pub fn serve_until(
    spec: &GatewaySpec,
    options: &RunOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(&Resolved) + Send,
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime
        .block_on(hl7gw_runtime::app::serve(
            spec,
            EnvName::Test,
            options,
            shutdown,
            ready,
        ))
        .map_err(|e| e.to_string())
}

/// How long [`wait_until`] waits.
pub const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// Waits (bounded by [`WAIT_LIMIT`]) until `done()` holds, describing the state with
/// `show()` on time-out.
pub fn wait_until(what: &str, done: impl Fn() -> bool, show: impl Fn() -> String) {
    let deadline = std::time::Instant::now() + WAIT_LIMIT;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}; {}",
            show()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
