//! Command-line entry point: argument parsing and the exit-code contract.
//!
//! Exit codes (docs/contracts.md): 0 ok, 1 the input has errors, 2 usage or I/O error.

mod ack;
mod certs;
mod generate;
mod input;
mod inspect;
mod schema;
mod send;
mod specs;
mod test;
mod validate;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Why a command failed, mapped to the exit-code contract.
#[derive(Debug)]
pub enum Failure {
    /// The input has errors (exit 1).
    Input(String),
    /// Usage or I/O error (exit 2).
    Usage(String),
    /// The command already reported what went wrong; exit with this code.
    Quiet(u8),
}

impl Failure {
    fn exit_code(&self) -> ExitCode {
        match self {
            Self::Input(_) => ExitCode::from(1),
            Self::Usage(_) => ExitCode::from(2),
            Self::Quiet(code) => ExitCode::from(*code),
        }
    }

    fn message(&self) -> Option<&str> {
        match self {
            Self::Input(m) | Self::Usage(m) => Some(m),
            Self::Quiet(_) => None,
        }
    }
}

/// hl7gw: validate customer integration specs, generate gateways, and work with HL7 v2.
#[derive(Debug, Parser)]
#[command(name = "hl7gw", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the structure of HL7 v2 messages (a message, a batch or a file).
    Inspect(inspect::InspectArgs),
    /// Write the acknowledgement for HL7 v2 messages.
    Ack(ack::AckArgs),
    /// Write the spec's JSON Schema (draft-07), as checked in at specs/schema.json.
    Schema(schema::SchemaArgs),
    /// Check customer specs and report every problem with its file, line and column.
    Validate(validate::ValidateArgs),
    /// Certificates for development and local tests.
    Certs(certs::CertsArgs),
    /// Generate one gateway crate per spec (`--check`: name the stale files, write nothing).
    Generate(generate::GenerateArgs),
    /// Run specs' tests through the runtime's mapping (no build needed).
    Test(test::TestArgs),
    /// Send HL7 messages to an endpoint one at a time, each only after the previous ACK (for
    /// testing a Trust's endpoint before go-live).
    Send(send::SendArgs),
}

/// Runs the CLI with the process arguments and returns the exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version (exit 0) and usage errors (exit 2) itself.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = match cli.command {
        Command::Inspect(args) => inspect::run(&args, &mut out),
        Command::Ack(args) => ack::run(&args, &mut out),
        Command::Schema(args) => schema::run(&args, &mut out),
        Command::Validate(args) => validate::run(&args, &mut out),
        Command::Certs(args) => certs::run(&args, &mut out),
        Command::Generate(args) => generate::run(&args, &mut out),
        Command::Test(args) => test::run(&args, &mut out),
        Command::Send(args) => send::run(&args, &mut out),
    };
    let flushed = out.flush();
    match (result, flushed) {
        (Ok(()), Ok(())) => ExitCode::SUCCESS,
        (Ok(()), Err(e)) => {
            eprintln!("error: writing output: {e}");
            ExitCode::from(2)
        }
        (Err(failure), _) => {
            if let Some(message) = failure.message() {
                eprintln!("error: {message}");
            }
            failure.exit_code()
        }
    }
}
