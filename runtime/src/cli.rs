//! The command line every generated gateway runs
//! (`gw-<code> serve|check|reload|queue|store|map|config`).
//! It lives here, once, so a fix reaches every customer's gateway without regenerating;
//! the generated `main.rs` only hands over its crate's [`GatewaySpec`].
//!
//! Exit codes: 0 ok, 1 the input has errors (or a message answered AE/AR by `map`), 2 usage
//! or I/O error: a port already in use, a file that cannot be read, the store
//! ([`AppError::is_io`] decides for the gateway's own errors).

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::app::{AppError, QueueCommand, RunOptions};
use crate::config::{EnvName, Environment};
use crate::hl7::timestamp::format_utc;
use crate::hl7::{AckRequest, Message, ParseOptions, build_ack};
use crate::spec::GatewaySpec;

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the environment's gateway until Ctrl-C or SIGTERM: receive HL7 over HTTPS with
    /// mutual TLS and, when the spec sends, take outbound messages from EMS and deliver them
    /// to the Trust's engine one at a time.
    Serve(RunArgs),
    /// Load the certificates and open the store without serving.
    Check(RunArgs),
    /// Make the running gateway of this environment reload its certificates, keys and CRLs
    /// (as SIGHUP does) and print what it now serves. New handshakes use the new files;
    /// open connections are not cut. Exit 1 when the gateway refused a file (it keeps the
    /// previous ones), 2 when no gateway answers.
    Reload(RunArgs),
    /// Show and operate the outbound queue: why a stream is held, retry, skip.
    Queue {
        #[command(subcommand)]
        action: QueueAction,
    },
    /// The store: `migrate --from FILE` copies an SQLite store into the environment's
    /// PostgreSQL database.
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Decide about one HL7 message as the receiver would: print the outcome as JSON, then
    /// the ACK (one segment per line).
    Map {
        /// The environment whose rules apply: test or prod.
        #[arg(long, value_parser = parse_env)]
        env: EnvName,
        /// Read an outbound message (EMS → the Trust) through its outbound record's mapping,
        /// as the Trust's engine will read it, instead of applying the inbound rules.
        #[arg(long)]
        outbound: bool,
        /// The message file.
        file: PathBuf,
    },
    /// Print an environment's configuration.
    Config {
        /// test or prod.
        #[arg(long, value_parser = parse_env)]
        env: EnvName,
    },
}

/// Store operations.
#[derive(Debug, Subcommand)]
enum StoreAction {
    /// Copy an SQLite store (what a one-box gateway used) into the environment's PostgreSQL
    /// database, which must be empty: every inbound row and outbound message with its id,
    /// in one transaction. Stop every gateway of the environment first.
    Migrate {
        #[command(flatten)]
        run: RunArgs,
        /// The SQLite store file to copy.
        #[arg(long)]
        from: PathBuf,
    },
}

/// Queue operations.
#[derive(Debug, Subcommand)]
enum QueueAction {
    /// Depth, whether the stream is held, why and since when, the last response.
    Status(RunArgs),
    /// Messages after a cursor, oldest first.
    List {
        #[command(flatten)]
        run: RunArgs,
        /// Ids above this.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// One message with its bytes.
    Show {
        #[command(flatten)]
        run: RunArgs,
        /// The queue id.
        id: i64,
    },
    /// Release a held message: it is sent again next.
    Retry {
        #[command(flatten)]
        run: RunArgs,
        /// The queue id.
        id: i64,
    },
    /// Skip a message (it is kept, never deleted) and let the stream move on.
    Skip {
        #[command(flatten)]
        run: RunArgs,
        /// The queue id.
        id: i64,
        /// Why, recorded with the message.
        #[arg(long)]
        note: Option<String>,
    },
}

/// The environment and the operator's overrides.
#[derive(Debug, Args)]
struct RunArgs {
    /// test or prod.
    #[arg(long, value_parser = parse_env)]
    env: EnvName,
    /// Listen on this IP:PORT instead of the spec's address.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Look every certificate and key up by file name in this folder.
    #[arg(long)]
    cert_dir: Option<PathBuf>,
    /// The folder the spec's relative paths resolve against (default: the spec's folder).
    #[arg(long)]
    spec_dir: Option<PathBuf>,
    /// Use this SQLite store instead of the spec's.
    #[arg(long)]
    store: Option<PathBuf>,
    /// With a PostgreSQL store: the folder of the control socket `reload` talks to
    /// (`<dbname>.postgres.control`; default: the spec's folder).
    #[arg(long)]
    control_dir: Option<PathBuf>,
    /// Operations port for /healthz and /metrics (default: 127.0.0.1, receive port + 1).
    #[arg(long)]
    ops_listen: Option<std::net::SocketAddr>,
    /// Let the operations port bind beyond loopback (it has no TLS and no authentication:
    /// use a management network); a warning is logged.
    #[arg(long)]
    ops_beyond_loopback: bool,
    /// Inbox API port (default: 127.0.0.1, receive port + 2).
    #[arg(long)]
    inbox_listen: Option<std::net::SocketAddr>,
    /// Intake API port for outbound messages from EMS (default: 127.0.0.1, receive port + 3).
    #[arg(long)]
    intake_listen: Option<std::net::SocketAddr>,
    /// Intake MLLP port (default: 127.0.0.1, receive port + 4).
    #[arg(long)]
    mllp_listen: Option<std::net::SocketAddr>,
    /// Prune what is older than this many days instead of the spec's `retention`: inbound
    /// rows (records EMS has not taken are kept) and delivered or skipped outbound messages.
    /// From 1 to 36500: a prune forgets duplicate keys, so never less than a day.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=36_500))]
    retention_days: Option<u64>,
}

/// An environment name on the command line that is neither `test` nor `prod`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0:?}: use test or prod")]
pub(crate) struct UnknownEnv(String);

/// `--env`: test or prod (the host's command line reads it the same way).
pub(crate) fn parse_env(text: &str) -> Result<EnvName, UnknownEnv> {
    EnvName::parse(text).ok_or_else(|| UnknownEnv(text.to_string()))
}

/// Why a command failed: 1 the input has errors, 2 usage or I/O.
enum Failure {
    Input(String),
    Usage(String),
}

impl From<AppError> for Failure {
    fn from(e: AppError) -> Self {
        if e.is_io() {
            Self::Usage(e.to_string())
        } else {
            Self::Input(e.to_string())
        }
    }
}

/// Runs the command line of a generated gateway with the process's arguments.
pub fn main(spec: GatewaySpec) -> ExitCode {
    let mut out = std::io::stdout().lock();
    ExitCode::from(run(&spec, std::env::args_os(), &mut out))
}

/// Runs the command line with these arguments (the first is the program name), writing
/// results to `out` and errors to standard error; returns the exit code.
pub fn run(
    generated: &GatewaySpec,
    args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
    out: &mut dyn Write,
) -> u8 {
    let command = Cli::command()
        .name(generated.package.to_string())
        .about(format!(
            "The HL7 gateway of {}, generated by hl7gw.",
            generated.customer_name
        ))
        .version(env!("CARGO_PKG_VERSION"));
    let cli = match command
        .try_get_matches_from(args)
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let result = match &cli.command {
        Command::Serve(args) => serve(generated, args),
        Command::Check(args) => check(generated, args, out),
        Command::Reload(args) => reload(generated, args, out),
        Command::Queue { action } => queue(generated, action, out),
        Command::Store {
            action: StoreAction::Migrate { run, from },
        } => store_migrate(generated, run, from, out),
        Command::Map {
            env,
            outbound,
            file,
        } => map(generated, *env, *outbound, file, out),
        Command::Config { env } => config(generated, *env, out),
    };
    let flushed = out.flush();
    match (result, flushed) {
        (Ok(code), Ok(())) => code,
        (Ok(_), Err(e)) => {
            eprintln!("error: writing output: {e}");
            2
        }
        (Err(Failure::Input(message)), _) => {
            eprintln!("error: {message}");
            1
        }
        (Err(Failure::Usage(message)), _) => {
            eprintln!("error: {message}");
            2
        }
    }
}

fn write(out: &mut dyn Write, text: &str) -> Result<(), Failure> {
    out.write_all(text.as_bytes())
        .map_err(|e| Failure::Usage(format!("writing output: {e}")))
}

fn environment(generated: &GatewaySpec, env: EnvName) -> Result<&Environment, Failure> {
    Ok(crate::app::environment(generated, env)?)
}

/// The overrides for one run.
fn options(generated: &GatewaySpec, args: &RunArgs) -> RunOptions {
    RunOptions {
        base_dir: args
            .spec_dir
            .clone()
            .unwrap_or_else(|| generated.spec_dir()),
        listen: args.listen,
        cert_dir: args.cert_dir.clone(),
        store: args.store.clone(),
        control_dir: args.control_dir.clone(),
        ops_listen: args.ops_listen,
        ops_exposure: if args.ops_beyond_loopback {
            crate::server::Exposure::BeyondLoopback
        } else {
            crate::server::Exposure::LoopbackOnly
        },
        inbox_listen: args.inbox_listen,
        intake_listen: args.intake_listen,
        mllp_listen: args.mllp_listen,
        retention: args
            .retention_days
            .map(|days| Duration::from_secs(days.saturating_mul(86_400))),
    }
}

fn serve(generated: &GatewaySpec, args: &RunArgs) -> Result<u8, Failure> {
    environment(generated, args.env)?;
    crate::app::serve_blocking(generated, args.env, &options(generated, args))?;
    Ok(0)
}

fn check(generated: &GatewaySpec, args: &RunArgs, out: &mut dyn Write) -> Result<u8, Failure> {
    let environment = environment(generated, args.env)?;
    let report = crate::app::check(environment, &options(generated, args))?;
    let r = &report.resolved;
    let mut text = format!(
        "ok: {} {}\n  listen {}\n  certificate {}\n  key {}\n  client CA {}\n  store {} ({})\n  operations {}\n",
        generated.customer_code,
        args.env.as_str(),
        r.listen,
        r.cert.display(),
        r.key.display(),
        r.client_ca.display(),
        r.store.display(),
        report.store_pragmas,
        r.ops_listen,
    );
    if let Some(crl) = &r.client_crl {
        text.push_str(&format!("  client CRL {}\n", crl.display()));
    }
    if let Some(send) = &r.send {
        if let Some(crl) = &send.server_crl {
            text.push_str(&format!("  server CRL {}\n", crl.display()));
        }
        text.push_str(&format!(
            "  send certificate {}\n  send key {}\n  server CA {}\n  intake {} (MLLP {})\n",
            send.cert.display(),
            send.key.display(),
            send.server_ca.display(),
            send.intake_listen,
            send.mllp_listen,
        ));
    }
    match &r.ems {
        Some(ems) => {
            text.push_str(&format!(
                "  EMS certificate {}\n  EMS key {}\n  EMS client CA {}\n  EMS clients {}\n",
                ems.files.cert.display(),
                ems.files.key.display(),
                ems.files.peer_ca.display(),
                ems.allowed_clients.join(", "),
            ));
            if let Some(crl) = &ems.files.peer_crl {
                text.push_str(&format!("  EMS client CRL {}\n", crl.display()));
            }
        }
        None => text.push_str("  EMS plain loopback, no authentication\n"),
    }
    write(out, &text)?;
    Ok(0)
}

fn reload(generated: &GatewaySpec, args: &RunArgs, out: &mut dyn Write) -> Result<u8, Failure> {
    let environment = environment(generated, args.env)?;
    let resolved = crate::app::resolve(environment, &options(generated, args))?;
    let served = crate::control::request_reload(&resolved.store).map_err(AppError::from)?;
    write(out, &format!("reloaded\n{served}\n"))?;
    Ok(0)
}

fn store_migrate(
    generated: &GatewaySpec,
    run: &RunArgs,
    from: &Path,
    out: &mut dyn Write,
) -> Result<u8, Failure> {
    let environment = environment(generated, run.env)?;
    let text = crate::app::store_migrate(environment, &options(generated, run), from)?;
    write(out, &format!("{text}\n"))?;
    Ok(0)
}

fn queue(
    generated: &GatewaySpec,
    action: &QueueAction,
    out: &mut dyn Write,
) -> Result<u8, Failure> {
    let (run, command) = match action {
        QueueAction::Status(run) => (run, QueueCommand::Status),
        QueueAction::List { run, after, limit } => (
            run,
            QueueCommand::List {
                after: *after,
                limit: *limit,
            },
        ),
        QueueAction::Show { run, id } => (run, QueueCommand::Show(*id)),
        QueueAction::Retry { run, id } => (run, QueueCommand::Retry(*id)),
        QueueAction::Skip { run, id, note } => (run, QueueCommand::Skip(*id, note.clone())),
    };
    let environment = environment(generated, run.env)?;
    let text = crate::app::queue_command(environment, &options(generated, run), &command)?;
    write(out, &format!("{text}\n"))?;
    Ok(0)
}

/// `map`: 0 when the message is accepted, 1 when it is answered AE or AR. With `outbound`,
/// the message is read as one EMS hands the gateway for the Trust.
fn map(
    generated: &GatewaySpec,
    env: EnvName,
    outbound: bool,
    file: &Path,
    out: &mut dyn Write,
) -> Result<u8, Failure> {
    environment(generated, env)?;
    let bytes =
        std::fs::read(file).map_err(|e| Failure::Usage(format!("{}: {e}", file.display())))?;
    let message = Message::parse_with(&bytes, &ParseOptions::lenient())
        .map_err(|e| Failure::Input(format!("{}: not an HL7 message: {e}", file.display())))?;
    let outcome = if outbound {
        generated.evaluate_outbound(&message, env)
    } else {
        generated.evaluate(&message, env)
    };
    let json = serde_json::to_string_pretty(&outcome)
        .map_err(|e| Failure::Usage(format!("writing JSON: {e}")))?;
    let errors = outcome.ack_errors();
    let timestamp = format_utc(SystemTime::now());
    let control_id = format!("ACK{}", message.control_id());
    let ack = build_ack(
        &message,
        &AckRequest {
            code: outcome.ack_code(),
            control_id: &control_id,
            timestamp: &timestamp,
            errors: &errors,
        },
    )
    .map_err(|e| Failure::Input(format!("the ACK cannot be built: {e}")))?;
    let ack = String::from_utf8_lossy(&ack).replace('\r', "\n");
    write(out, &format!("{json}\n{ack}"))?;
    Ok(if outcome.ack_code().is_accept() { 0 } else { 1 })
}

/// `config`: the environment as the gateway will run it.
fn config(generated: &GatewaySpec, env: EnvName, out: &mut dyn Write) -> Result<u8, Failure> {
    let environment = environment(generated, env)?;
    write(
        out,
        &format!(
            "spec: {} (sha256 {})\ninbound: {}\noutbound: {}\n{environment:#?}\n",
            generated.spec_path,
            generated.spec_sha256,
            generated.inbound_types().join(", "),
            generated.outbound_types().join(", "),
        ),
    )?;
    Ok(0)
}
