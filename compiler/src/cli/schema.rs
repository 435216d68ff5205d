//! `hl7gw schema`: writes the spec's JSON Schema (draft-07), as checked in at
//! `specs/schema.json`.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::Failure;

/// Arguments of `hl7gw schema`.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Write to this file instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
}

/// Runs `schema`.
pub fn run(args: &SchemaArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let text = crate::schema::schema_text();
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| Failure::Usage(format!("{}: {e}", path.display()))),
        None => out
            .write_all(text.as_bytes())
            .map_err(|e| Failure::Usage(format!("writing output: {e}"))),
    }
}
