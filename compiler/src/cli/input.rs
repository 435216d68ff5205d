//! Reading HL7 input for the CLI: a file or standard input, parsed as a batch so a file of
//! several messages works, with the parse options the user chose.

use std::io::Read;

use clap::Args;
use hl7gw_runtime::hl7::{Batch, Charset, LineEndings, ParseOptions, parse_batch};

use super::Failure;

/// Options shared by the commands that read HL7.
#[derive(Debug, Clone, Args)]
pub struct Hl7InputArgs {
    /// The message file, or `-` for standard input.
    #[arg(value_name = "FILE|-")]
    pub file: String,

    /// Accept only CR segment terminators, as on the wire. By default LF and CRLF are also
    /// accepted, since files on disk are often stored with them.
    #[arg(long)]
    pub strict: bool,

    /// Charset assumed when MSH-18 is empty: utf-8, latin1 or ascii.
    #[arg(long, value_name = "CHARSET", default_value = "utf-8", value_parser = parse_charset)]
    pub charset: Charset,
}

fn parse_charset(name: &str) -> Result<Charset, String> {
    Charset::from_mime_name(name)
        .ok_or_else(|| format!("unknown charset {name:?}: use utf-8, latin1 or ascii"))
}

impl Hl7InputArgs {
    /// The name to show in errors.
    pub fn display_name(&self) -> &str {
        if self.file == "-" {
            "<stdin>"
        } else {
            &self.file
        }
    }

    /// Reads the whole input.
    pub fn read(&self) -> Result<Vec<u8>, Failure> {
        let mut bytes = Vec::new();
        let result = if self.file == "-" {
            std::io::stdin().read_to_end(&mut bytes).map(|_| ())
        } else {
            std::fs::read(&self.file).map(|b| bytes = b)
        };
        result.map_err(|e| Failure::Usage(format!("{}: {e}", self.display_name())))?;
        Ok(bytes)
    }

    /// The parse options the flags select.
    pub fn options(&self) -> ParseOptions {
        ParseOptions {
            line_endings: if self.strict {
                LineEndings::Strict
            } else {
                LineEndings::Lenient
            },
            default_charset: self.charset,
        }
    }

    /// Parses the bytes as one or more messages; a fault is an input error on one line.
    pub fn parse<'a>(&self, bytes: &'a [u8]) -> Result<Batch<'a>, Failure> {
        parse_batch(bytes, &self.options())
            .map_err(|e| Failure::Input(format!("{}: {e}", self.display_name())))
    }
}
