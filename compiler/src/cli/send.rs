//! `hl7gw send URL FILE…`: the gateway's sender, by hand, for engineers testing a Trust's
//! endpoint before go-live.
//!
//! Every file is read and parsed before anything is sent (a file that is not HL7 stops the
//! command with nothing on the wire). The messages then go out in order through the
//! runtime's [`HttpsClient`]: one message in flight, the next only after the previous one's
//! ACK, each message once (no retries). For each message one line
//! `TYPE^TRIGGER CONTROL-ID -> STATUS CODE`, then what the answer said (MSA-3, ERR texts, or
//! what went wrong), indented.
//!
//! The first message not accepted stops the run (unless `--keep-going`). Exit codes follow
//! the CLI contract:
//!
//! - **0**: every message answered AA (or CA) with MSA-2 equal to its MSH-10.
//! - **1**: the endpoint answered, but not with acceptance: AE/AR/CE/CR, HTTP 4xx/5xx or
//!   another non-2xx status, a body that is not an ACK, an MSA-2 for another message. Also a
//!   FILE that is not HL7.
//! - **2**: usage and I/O errors: a plain `http://` URL, an unreadable FILE or PEM, and no
//!   answer at all: the endpoint unreachable, the TLS handshake refused either way, the
//!   timeout passed. With `--keep-going`, 2 wins over 1.
//!
//! Only file paths and the endpoint's answers are printed; never a key, never a message.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use hl7gw_runtime::client::{
    DEFAULT_MEDIA_TYPE, FailureClass, HttpsClient, Outcome, Outgoing, client_config,
};
use hl7gw_runtime::hl7::{Charset, Message, ParseOptions, parse_batch};

use super::Failure;

/// Arguments of `hl7gw send`.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 every message accepted (AA/CA); 1 a message answered but \
not accepted (AE/AR/CE/CR, HTTP 4xx/5xx, no usable ACK, MSA-2 for another message) or a FILE \
that is not HL7; 2 usage or I/O error: an http:// URL, an unreadable file or certificate, or \
no answer (endpoint unreachable, TLS handshake failed, timeout)."
)]
pub struct SendArgs {
    /// The endpoint: https://HOST[:PORT]/PATH.
    #[arg(value_name = "URL")]
    url: String,

    /// Message files, sent in the order given; each may hold one message, several, a batch
    /// or a file (FHS/BHS). LF and CRLF terminators are accepted; messages go out with CR.
    #[arg(value_name = "FILE", required = true)]
    files: Vec<PathBuf>,

    /// Our client certificate chain (PEM), presented to the endpoint.
    #[arg(long, value_name = "PEM")]
    cert: PathBuf,

    /// The client certificate's private key (PEM). Read, never printed.
    #[arg(long, value_name = "PEM")]
    key: PathBuf,

    /// The CA(s) that issued the endpoint's server certificate (PEM): the only roots trusted.
    /// The URL's host must be named in that certificate.
    #[arg(long, value_name = "PEM")]
    ca: PathBuf,

    /// Time allowed for each message: connect, TLS handshake, request and the whole ACK
    /// (e.g. 500ms, 30s, 2m).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_timeout)]
    timeout: Duration,

    /// The request's media type; `; charset=` the message's MSH-18 charset is appended. Some
    /// engines want text/plain.
    #[arg(long, value_name = "TYPE", default_value = DEFAULT_MEDIA_TYPE)]
    content_type: String,

    /// Send every message even after one is not accepted (by default the run stops there).
    #[arg(long)]
    keep_going: bool,

    /// Parse the files, check the certificates load, and list what would be sent; send
    /// nothing.
    #[arg(long)]
    dry_run: bool,
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let duration = text
        .parse::<hl7gw_runtime::config::Duration>()
        .map_err(|e| e.to_string())?
        .to_std();
    if duration.is_zero() {
        return Err("the timeout must be longer than 0".to_owned());
    }
    Ok(duration)
}

/// One message to send, with where it came from.
struct Item {
    /// `ADT^A28`.
    label: String,
    control_id: String,
    charset: Charset,
    /// The canonical bytes: segments ended by CR.
    bytes: Vec<u8>,
    file: String,
    /// 1-based position in its file.
    index: usize,
    segments: usize,
}

impl Item {
    fn id(&self) -> &str {
        if self.control_id.is_empty() {
            "(no MSH-10)"
        } else {
            &self.control_id
        }
    }
}

/// Runs `send`.
pub fn run(args: &SendArgs, out: &mut dyn Write) -> Result<(), Failure> {
    check_scheme(&args.url)?;
    let items = read_messages(&args.files)?;
    let tls = client_config(&args.cert, &args.key, &args.ca)
        .map_err(|e| Failure::Usage(format!("TLS: {e}")))?;
    let mut client = HttpsClient::new(&args.url, tls, args.timeout)
        .and_then(|client| client.with_media_type(&args.content_type))
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let io = |e: std::io::Error| Failure::Usage(format!("writing output: {e}"));

    if args.dry_run {
        for item in &items {
            writeln!(
                out,
                "{} {} ({} message {}: {} segments, {} bytes)",
                item.label,
                item.id(),
                item.file,
                item.index,
                item.segments,
                item.bytes.len()
            )
            .map_err(io)?;
        }
        writeln!(
            out,
            "{}; nothing sent (--dry-run)",
            plural(items.len(), "message")
        )
        .map_err(io)?;
        return Ok(());
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Usage(format!("cannot start the async runtime: {e}")))?;

    let total = items.len();
    let mut accepted = 0usize;
    let mut answered_not_accepted = 0usize;
    let mut unanswered = 0usize;
    let mut first_failure: Option<String> = None;
    let mut sent = 0usize;
    for (position, item) in items.iter().enumerate() {
        let outgoing = Outgoing {
            raw: &item.bytes,
            control_id: &item.control_id,
            charset: item.charset,
        };
        // One message in flight: the next is built only once this one's outcome is in.
        let outcome = runtime.block_on(client.send(&outgoing));
        sent += 1;
        print_outcome(item, &outcome, client.last_ack(), out).map_err(io)?;
        // Show each answer as it arrives: the next message may take up to the timeout.
        out.flush().map_err(io)?;
        let Some(class) = outcome.failure else {
            accepted += 1;
            continue;
        };
        if answered(class) {
            answered_not_accepted += 1;
        } else {
            unanswered += 1;
        }
        if first_failure.is_none() {
            first_failure = Some(format!(
                "message {} ({} {}, {} message {}) {}",
                position + 1,
                item.label,
                item.id(),
                item.file,
                item.index,
                reason(&outcome)
            ));
        }
        if !args.keep_going {
            break;
        }
    }

    let not_sent = total.saturating_sub(sent);
    let mut summary = format!("{} sent: {accepted} accepted", plural(sent, "message"));
    if answered_not_accepted > 0 {
        summary.push_str(&format!(", {answered_not_accepted} not accepted"));
    }
    if unanswered > 0 {
        summary.push_str(&format!(", {unanswered} without an answer"));
    }
    if not_sent > 0 {
        summary.push_str(&format!("; {not_sent} not sent"));
    }
    writeln!(out, "{summary}").map_err(io)?;

    let Some(first) = first_failure else {
        return Ok(());
    };
    let message = if not_sent > 0 {
        format!(
            "{first}; stopped with {} not sent (--keep-going sends the rest)",
            plural(not_sent, "message")
        )
    } else {
        format!(
            "{} of {} not accepted; the first, {first}",
            answered_not_accepted + unanswered,
            plural(total, "message")
        )
    };
    if unanswered > 0 {
        Err(Failure::Usage(message))
    } else {
        Err(Failure::Input(message))
    }
}

/// A plain `http://` URL is refused before anything else; the client checks the rest.
fn check_scheme(url: &str) -> Result<(), Failure> {
    let lower = url.trim().to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Ok(());
    }
    if lower.starts_with("http://") {
        return Err(Failure::Usage(format!(
            "{url}: HL7 travels over HTTPS with mutual TLS only: use an https:// URL"
        )));
    }
    Err(Failure::Usage(format!(
        "{url:?} is not an https:// URL (expected https://HOST[:PORT]/PATH)"
    )))
}

/// Reads and parses every file; nothing is sent unless all of them are HL7.
fn read_messages(files: &[PathBuf]) -> Result<Vec<Item>, Failure> {
    let options = ParseOptions::lenient();
    let mut items = Vec::new();
    for path in files {
        let name = path.to_string_lossy().into_owned();
        let bytes = std::fs::read(path).map_err(|e| Failure::Usage(format!("{name}: {e}")))?;
        let batch = parse_batch(&bytes, &options)
            .map_err(|e| Failure::Input(format!("{name}: {e}; nothing was sent")))?;
        if batch.messages.is_empty() {
            return Err(Failure::Input(format!(
                "{name}: no HL7 message in the file; nothing was sent"
            )));
        }
        for (index, message) in batch.messages.iter().enumerate() {
            let code = message.message_code();
            let trigger = message.trigger_event();
            let label = match (code.is_empty(), trigger.is_empty()) {
                (true, _) => "(no MSH-9)".to_owned(),
                (false, true) => code.into_owned(),
                (false, false) => format!("{code}^{trigger}"),
            };
            items.push(Item {
                label,
                control_id: message.control_id().into_owned(),
                charset: message.charset(),
                bytes: message.to_bytes(),
                file: name.clone(),
                index: index + 1,
                segments: message.segment_count(),
            });
        }
    }
    Ok(items)
}

/// True when the endpoint answered (exit 1 if not accepted); false when no answer came
/// (exit 2).
fn answered(class: FailureClass) -> bool {
    !matches!(class, FailureClass::Connect | FailureClass::Timeout)
}

/// `ADT^A28 A28-0001 -> 200 AA`, then, indented, the ACK one segment a line (MSA-3 and ERR
/// included) and what was wrong with it, or what went wrong when there was no ACK.
fn print_outcome(
    item: &Item,
    outcome: &Outcome,
    ack: Option<&[u8]>,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let mut answer: Vec<String> = Vec::new();
    if let Some(status) = outcome.http_status {
        answer.push(status.to_string());
    }
    if let Some(code) = outcome.ack_code {
        answer.push(code.to_string());
    }
    match outcome.failure {
        // AE/AR show as their code; every other class by name.
        Some(FailureClass::AckError | FailureClass::AckReject) | None => {}
        Some(class) => answer.push(format!("[{class}]")),
    }
    writeln!(out, "{} {} -> {}", item.label, item.id(), answer.join(" "))?;
    let shown = match ack {
        Some(body) => print_ack(body, out)?,
        None => false,
    };
    // An ACK on screen says MSA-3 and ERR itself; otherwise say what went wrong.
    let said_by_ack = shown
        && matches!(
            outcome.failure,
            None | Some(FailureClass::AckError | FailureClass::AckReject)
        );
    if !said_by_ack && !outcome.detail.is_empty() {
        writeln!(out, "    {}", for_the_command_line(&outcome.detail))?;
    }
    Ok(())
}

/// The ACK's segments, one a line, indented; false when the body is not HL7 (nothing is
/// printed: an error page could echo the message).
fn print_ack(body: &[u8], out: &mut dyn Write) -> std::io::Result<bool> {
    let Ok(ack) = Message::parse_with(strip_mllp(body), &ParseOptions::lenient()) else {
        return Ok(false);
    };
    for segment in ack.segments() {
        let text: String = String::from_utf8_lossy(segment.raw())
            .chars()
            .map(|c| if c.is_control() { '\u{fffd}' } else { c })
            .collect();
        writeln!(out, "    {text}")?;
    }
    Ok(true)
}

/// The message inside MLLP framing bytes, if the engine framed its answer.
fn strip_mllp(body: &[u8]) -> &[u8] {
    let body = body.strip_prefix(&[0x0B]).unwrap_or(body);
    let body = body.strip_suffix(&[0x1C, 0x0D]).unwrap_or(body);
    body.strip_suffix(&[0x1C]).unwrap_or(body)
}

/// The client words TLS failures for a gateway configured by a spec; here the server CA
/// comes from `--ca`.
fn for_the_command_line(detail: &str) -> String {
    detail.replace("the server CA the spec names", "the --ca certificate(s)")
}

/// Why a message was not accepted, for the closing error line.
fn reason(outcome: &Outcome) -> String {
    let detail = if outcome.detail.is_empty() {
        String::new()
    } else {
        format!(": {}", for_the_command_line(&outcome.detail))
    };
    match (outcome.failure, outcome.ack_code, outcome.http_status) {
        (Some(FailureClass::AckError | FailureClass::AckReject), Some(code), _) => {
            format!("was answered {code}{detail}")
        }
        (Some(FailureClass::Http4xx | FailureClass::Http5xx), _, Some(status)) => {
            format!("was answered HTTP {status}{detail}")
        }
        (Some(FailureClass::BadAck), _, _) => format!("got no usable ACK{detail}"),
        (Some(FailureClass::Timeout), _, _) => format!("timed out{detail}"),
        (Some(FailureClass::Connect), _, _) => format!("got no answer{detail}"),
        _ => format!("was not accepted ({outcome})"),
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_and_schemes() {
        assert_eq!(parse_timeout("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_timeout("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_timeout("0s").is_err());
        assert!(parse_timeout("30").is_err());
        assert!(check_scheme("https://tie.example/hl7").is_ok());
        assert!(check_scheme("HTTPS://tie.example/hl7").is_ok());
        let Err(Failure::Usage(m)) = check_scheme("http://tie.example/hl7") else {
            panic!("http accepted");
        };
        assert!(m.contains("HTTPS with mutual TLS only"), "{m}");
        assert!(matches!(
            check_scheme("tie.example/hl7"),
            Err(Failure::Usage(_))
        ));
    }
}
