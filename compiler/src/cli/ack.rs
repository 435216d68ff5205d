//! `hl7gw ack`: the acknowledgement a receiver would answer for each message of the input.
//! For testing peers and for checking how errors are laid out for a message's version.

use std::io::{IsTerminal, Write};
use std::time::SystemTime;

use clap::Args;
use hl7gw_runtime::config::Acknowledgement;
use hl7gw_runtime::hl7::{
    AckCode, AckError, AckRequest, Path, Severity, ack::error_code, build_ack, timestamp,
};

use super::Failure;
use super::input::Hl7InputArgs;

/// Arguments of `hl7gw ack`.
#[derive(Debug, Args)]
pub struct AckArgs {
    #[command(flatten)]
    input: Hl7InputArgs,

    /// MSA-1: AA, AE, AR, CA, CE or CR. Default: AA, or AE when errors are given (CA/CE with
    /// `--acknowledgement as_requested` for a message that fills MSH-15 or MSH-16).
    #[arg(long, value_parser = parse_code)]
    code: Option<AckCode>,

    /// The receiver's acknowledgement mode, as a spec's `acknowledgement`: application
    /// (AA/AE/AR whatever MSH-15/MSH-16 ask) or as_requested (CA/CE/CR in enhanced mode).
    #[arg(long, value_parser = parse_acknowledgement, default_value = "application")]
    acknowledgement: Acknowledgement,

    /// An error for the ERR segment: CODE[@LOCATION][:TEXT], e.g. `103@OBR-4:unknown
    /// procedure`. CODE is from HL7 table 0357. Repeatable.
    #[arg(long = "error", value_name = "CODE@LOCATION:TEXT", value_parser = parse_error)]
    errors: Vec<AckError>,

    /// MSH-10 of the ACK. Default: `ACK` plus the current UTC time and the message number.
    #[arg(long)]
    control_id: Option<String>,

    /// MSH-7 of the ACK. Default: now, in UTC.
    #[arg(long)]
    timestamp: Option<String>,

    /// Segment terminator to print: cr (the HL7 standard) or lf. Default: cr, or lf when
    /// standard output is a terminal (a CR alone would overwrite the line on screen).
    #[arg(long, value_parser = ["cr", "lf"])]
    line_ending: Option<String>,
}

fn parse_acknowledgement(text: &str) -> Result<Acknowledgement, String> {
    [Acknowledgement::Application, Acknowledgement::AsRequested]
        .into_iter()
        .find(|a| a.as_str() == text)
        .ok_or_else(|| format!("{text:?} is not one of application, as_requested"))
}

fn parse_code(text: &str) -> Result<AckCode, String> {
    AckCode::parse(&text.to_ascii_uppercase())
        .ok_or_else(|| format!("{text:?} is not one of AA, AE, AR, CA, CE, CR"))
}

/// Parses `CODE[@LOCATION][:TEXT]`.
fn parse_error(text: &str) -> Result<AckError, String> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let code: u16 = text[..digits]
        .parse()
        .ok()
        .filter(|c| *c <= 999)
        .ok_or_else(|| {
            format!("{text:?}: expected CODE[@LOCATION][:TEXT] with a numeric HL7 table 0357 code, e.g. 103@OBR-4:unknown procedure")
        })?;
    let rest = &text[digits..];
    let (location_text, message) = match rest.strip_prefix('@') {
        Some(after) => match after.split_once(':') {
            Some((loc, msg)) => (Some(loc), msg),
            None => (Some(after), ""),
        },
        None => match rest.strip_prefix(':') {
            Some(msg) => (None, msg),
            None if rest.is_empty() => (None, ""),
            None => {
                return Err(format!(
                    "{text:?}: after the code expected '@LOCATION' or ':TEXT'"
                ));
            }
        },
    };
    let location = match location_text {
        None => None,
        Some(loc) => {
            let path = Path::parse(loc).map_err(|e| e.to_string())?;
            if path.has_filter() {
                return Err(format!(
                    "location {loc:?}: an error location is an exact position, without filters"
                ));
            }
            Some(path.nominal_location())
        }
    };
    let message = if message.is_empty() {
        error_code::text(code).unwrap_or_default().to_string()
    } else {
        message.to_string()
    };
    Ok(AckError {
        code,
        severity: Severity::Error,
        location,
        message,
    })
}

/// Runs `ack`.
pub fn run(args: &AckArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let bytes = args.input.read()?;
    let batch = args.input.parse(&bytes)?;
    let now = timestamp::format_utc(SystemTime::now());
    let stamp = args.timestamp.clone().unwrap_or_else(|| now.clone());
    let lf = match args.line_ending.as_deref() {
        Some("lf") => true,
        Some(_) => false,
        None => std::io::stdout().is_terminal(),
    };
    for (index, message) in batch.messages.iter().enumerate() {
        let mode = args.acknowledgement.mode_for(message);
        let code = args.code.unwrap_or_else(|| {
            mode.code_for(if args.errors.is_empty() {
                AckCode::ApplicationAccept
            } else {
                AckCode::ApplicationError
            })
        });
        let control_id = match &args.control_id {
            Some(id) if batch.messages.len() == 1 => id.clone(),
            Some(id) => format!("{id}-{}", index + 1),
            None => format!("ACK{}{}", &now[..14], index + 1),
        };
        let request = AckRequest {
            code,
            control_id: &control_id,
            timestamp: &stamp,
            errors: &args.errors,
        };
        let mut ack = build_ack(message, &request).map_err(|e| {
            Failure::Input(format!(
                "{}: message {}: cannot build its ACK: {e}",
                args.input.display_name(),
                index + 1
            ))
        })?;
        if lf {
            for b in &mut ack {
                if *b == b'\r' {
                    *b = b'\n';
                }
            }
        }
        out.write_all(&ack)
            .map_err(|e| Failure::Usage(format!("writing output: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_argument_forms() {
        let e = parse_error("103@OBR-4:unknown procedure: XYZ").unwrap();
        assert_eq!(e.code, 103);
        assert_eq!(e.location.unwrap().to_string(), "OBR-4");
        assert_eq!(e.message, "unknown procedure: XYZ");
        let e = parse_error("207").unwrap();
        assert_eq!(e.message, "Application internal error");
        assert!(e.location.is_none());
        assert!(parse_error("x@PID-3").is_err());
        assert!(parse_error("101@PID-3[CX.5=NH]:x").is_err());
        assert!(parse_error("101PID").is_err());
    }
}
