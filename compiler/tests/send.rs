//! `hl7gw send` against a receiver started in this process on 127.0.0.1 with certificates
//! from a throwaway CA: order, one message at a time, stopping at the first message not
//! accepted, `--keep-going`, TLS and usage failures, and the exit-code contract.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hl7gw_runtime::hl7::{
    AckCode, AckError, AckRequest, Message, ParseOptions, Severity, build_ack,
};
use hl7gw_runtime::metrics::Metrics;
use hl7gw_runtime::server::{Ack, Handler, Hl7Request, Hl7Response, MediaType, Receiver, Settings};
use hl7gw_tests::pki::{ca, leaf};
use rcgen::ExtendedKeyUsagePurpose;
use tokio::sync::oneshot;

/// The longest any one `hl7gw send` run may take.
const RUN_LIMIT: Duration = Duration::from_secs(60);

const CLIENT_CN: &str = "send-test.example";

// ---------------------------------------------------------------------------------------------
// Certificates

/// One CA for both sides, plus an unrelated CA, written as PEM files into a temporary
/// directory that also holds the message files.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let root = ca("hl7gw send test CA");
        let other = ca("some other CA");
        let server = leaf(
            &root,
            "localhost",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let client = leaf(
            &root,
            CLIENT_CN,
            &[CLIENT_CN],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let pki = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        for (name, text) in [
            ("ca.crt", root.pem()),
            ("other-ca.crt", other.pem()),
            ("server.crt", server.cert_pem),
            ("server.key", server.key_pem),
            ("client.crt", client.cert_pem),
            ("client.key", client.key_pem),
        ] {
            std::fs::write(pki.path(name), text).unwrap();
        }
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }

    /// Writes a file next to the certificates and returns its path.
    fn file(&self, name: &str, bytes: &[u8]) -> String {
        std::fs::write(self.path(name), bytes).unwrap();
        self.arg(name)
    }
}

// ---------------------------------------------------------------------------------------------
// The receiving endpoint

/// Answers AA, or AE for the control IDs in `refuse`, and records what arrived.
#[derive(Clone, Default)]
struct Engine {
    refuse: Arc<HashSet<String>>,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
    media_types: Arc<Mutex<Vec<Option<MediaType>>>>,
}

impl Handler for Engine {
    async fn handle(&self, request: Hl7Request) -> Hl7Response {
        self.seen.lock().unwrap().push(request.body.to_vec());
        self.media_types.lock().unwrap().push(request.media_type);
        let options = ParseOptions {
            default_charset: request.charset.unwrap_or_default(),
            ..ParseOptions::lenient()
        };
        let message = match Message::parse_with(&request.body, &options) {
            Ok(message) => message,
            Err(e) => return Hl7Response::NotHl7(e.to_string()),
        };
        let control_id = message.control_id().into_owned();
        let refused = self.refuse.contains(&control_id);
        let errors = if refused {
            vec![AckError {
                code: 207,
                severity: Severity::Error,
                location: None,
                message: "the test engine refuses this one".into(),
            }]
        } else {
            Vec::new()
        };
        let code = if refused {
            AckCode::ApplicationError
        } else {
            AckCode::ApplicationAccept
        };
        let ack_id = format!("ACK-{control_id}");
        let request = AckRequest {
            code,
            control_id: &ack_id,
            timestamp: "20260101120000",
            errors: &errors,
        };
        match build_ack(&message, &request) {
            Ok(body) => Hl7Response::Ack(Ack {
                body,
                charset: message.charset(),
                message_type: format!("{}^{}", message.message_code(), message.trigger_event()),
                code: code.to_string(),
            }),
            Err(e) => Hl7Response::NotHl7(e.to_string()),
        }
    }
}

/// A receiver on 127.0.0.1 with its own tokio runtime; stops when dropped.
struct Endpoint {
    engine: Engine,
    port: u16,
    stop: Option<oneshot::Sender<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Endpoint {
    fn start(pki: &Pki, refuse: &[&str]) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let engine = Engine {
            refuse: Arc::new(refuse.iter().map(|s| (*s).to_owned()).collect()),
            seen: Arc::default(),
            media_types: Arc::default(),
        };
        let mut settings = Settings::new("127.0.0.1:0".parse().unwrap(), "/hl7");
        settings.allowed_ips = vec!["127.0.0.0/8".parse().unwrap()];
        settings.allowed_clients = vec![format!("CN={CLIENT_CN}")];
        settings.header_timeout = Duration::from_secs(5);
        settings.body_timeout = Duration::from_secs(5);
        settings.handshake_timeout = Duration::from_secs(5);
        settings.shutdown_timeout = Duration::from_secs(2);
        let tls = hl7gw_runtime::tls::server_config(
            &pki.path("server.crt"),
            &pki.path("server.key"),
            &pki.path("ca.crt"),
        )
        .unwrap();
        let receiver = runtime
            .block_on(Receiver::bind(
                settings,
                tls,
                engine.clone(),
                Arc::new(Metrics::new()),
            ))
            .unwrap();
        let port = receiver.local_addr().unwrap().port();
        let (stop, stopped) = oneshot::channel::<()>();
        runtime.spawn(receiver.run(async move {
            let _ = stopped.await;
        }));
        Self {
            engine,
            port,
            stop: Some(stop),
            runtime: Some(runtime),
        }
    }

    fn url(&self) -> String {
        format!("https://localhost:{}/hl7", self.port)
    }

    /// The MSH-10 of every message that arrived, in arrival order.
    fn arrivals(&self) -> Vec<String> {
        self.engine
            .seen
            .lock()
            .unwrap()
            .iter()
            .map(|body| {
                Message::parse_with(body, &ParseOptions::lenient())
                    .unwrap()
                    .control_id()
                    .into_owned()
            })
            .collect()
    }

    fn media_types(&self) -> Vec<Option<MediaType>> {
        self.engine.media_types.lock().unwrap().clone()
    }

    fn bodies(&self) -> Vec<Vec<u8>> {
        self.engine.seen.lock().unwrap().clone()
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Running the command

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The `TYPE^TRIGGER ID -> …` lines, in order.
    fn result_lines(&self) -> Vec<&str> {
        self.stdout.lines().filter(|l| l.contains(" -> ")).collect()
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `hl7gw ARGS…`, killed if it takes longer than [`RUN_LIMIT`].
fn hl7gw(args: &[String]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hl7gw"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    // The outputs are a few hundred bytes: they fit in the pipes while we wait.
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "hl7gw {args:?} ran longer than {RUN_LIMIT:?}\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    Run {
        code: status.code(),
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

/// `send URL FILES… --cert … --key … --ca CA EXTRA…`.
fn send(pki: &Pki, url: &str, files: &[String], ca: &str, extra: &[&str]) -> Run {
    let mut args = vec!["send".to_owned(), url.to_owned()];
    args.extend(files.iter().cloned());
    for (flag, file) in [
        ("--cert", "client.crt"),
        ("--key", "client.key"),
        ("--ca", ca),
    ] {
        args.push(flag.to_owned());
        args.push(pki.arg(file));
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    hl7gw(&args)
}

fn message(n: usize, terminator: &str) -> String {
    [
        format!("MSH|^~\\&|EMS|GW|TIE|TRUST|20260101120000||ADT^A28^ADT_A05|A28-000{n}|T|2.4"),
        "EVN|A28|20260101120000".to_owned(),
        format!("PID|1||1000{n}^^^TRUST^MR||SMITH^JOHN||19700101|M"),
    ]
    .iter()
    .map(|segment| format!("{segment}{terminator}"))
    .collect()
}

/// Messages 1 and 2 in one file written with LF (as files on disk often are), message 3 in
/// another with CR.
fn three_messages(pki: &Pki) -> Vec<String> {
    let first = format!("{}{}", message(1, "\n"), message(2, "\n"));
    vec![
        pki.file("first.hl7", first.as_bytes()),
        pki.file("second.hl7", message(3, "\r").as_bytes()),
    ]
}

const IDS: [&str; 3] = ["A28-0001", "A28-0002", "A28-0003"];

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn three_accepted_messages_are_sent_in_order_and_printed() {
    let pki = Pki::new();
    let endpoint = Endpoint::start(&pki, &[]);
    let run = send(&pki, &endpoint.url(), &three_messages(&pki), "ca.crt", &[]);
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(
        run.result_lines(),
        [
            "ADT^A28 A28-0001 -> 200 AA",
            "ADT^A28 A28-0002 -> 200 AA",
            "ADT^A28 A28-0003 -> 200 AA",
        ],
        "{run}"
    );
    assert!(run.stdout.contains("3 messages sent: 3 accepted"), "{run}");
    assert_eq!(endpoint.arrivals(), IDS);
    // Sent in canonical form: segments ended by CR, whatever the file used.
    for body in endpoint.bodies() {
        assert!(
            !body.contains(&b'\n'),
            "{:?}",
            String::from_utf8_lossy(&body)
        );
        assert!(body.ends_with(b"\r"));
    }
    assert!(!run.stdout.contains("PRIVATE KEY") && !run.stderr.contains("PRIVATE KEY"));
    assert_eq!(endpoint.media_types(), [Some(MediaType::Hl7V2); 3]);
}

#[test]
fn content_type_is_sent_as_given() {
    let pki = Pki::new();
    let endpoint = Endpoint::start(&pki, &[]);
    let run = send(
        &pki,
        &endpoint.url(),
        &three_messages(&pki),
        "ca.crt",
        &["--content-type", "text/plain"],
    );
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(endpoint.media_types(), [Some(MediaType::TextPlain); 3]);
    let run = send(
        &pki,
        &endpoint.url(),
        &three_messages(&pki),
        "ca.crt",
        &["--content-type", "text/plain; charset=x"],
    );
    assert_eq!(run.code, Some(2), "{run}");
    assert_eq!(endpoint.arrivals().len(), 3);
}

#[test]
fn an_ae_stops_the_run_and_the_next_message_is_not_sent() {
    let pki = Pki::new();
    let endpoint = Endpoint::start(&pki, &["A28-0002"]);
    let run = send(&pki, &endpoint.url(), &three_messages(&pki), "ca.crt", &[]);
    assert_eq!(run.code, Some(1), "{run}");
    assert_eq!(
        run.result_lines(),
        ["ADT^A28 A28-0001 -> 200 AA", "ADT^A28 A28-0002 -> 200 AE"],
        "{run}"
    );
    // The ACK's error text is shown under its line.
    assert!(
        run.stdout.contains("the test engine refuses this one"),
        "{run}"
    );
    // The ACK itself, one segment a line, under its message's line.
    let lines: Vec<&str> = run.stdout.lines().collect();
    let at = lines.iter().position(|l| l.ends_with("-> 200 AE")).unwrap();
    assert!(
        lines[at + 1].starts_with("    MSH|^~\\&|TIE|TRUST|EMS|GW|"),
        "{run}"
    );
    assert!(lines[at + 2].starts_with("    MSA|AE|A28-0002"), "{run}");
    assert!(lines.iter().any(|l| l.starts_with("    ERR|")), "{run}");
    assert!(run.stderr.contains("A28-0002"), "{run}");
    assert!(run.stderr.contains("answered AE"), "{run}");
    assert!(run.stderr.contains("1 message not sent"), "{run}");
    assert_eq!(endpoint.arrivals(), IDS[..2]);
}

#[test]
fn keep_going_sends_every_message_and_still_exits_1() {
    let pki = Pki::new();
    let endpoint = Endpoint::start(&pki, &["A28-0002"]);
    let run = send(
        &pki,
        &endpoint.url(),
        &three_messages(&pki),
        "ca.crt",
        &["--keep-going"],
    );
    assert_eq!(run.code, Some(1), "{run}");
    assert_eq!(
        run.result_lines(),
        [
            "ADT^A28 A28-0001 -> 200 AA",
            "ADT^A28 A28-0002 -> 200 AE",
            "ADT^A28 A28-0003 -> 200 AA",
        ],
        "{run}"
    );
    assert!(
        run.stdout
            .contains("3 messages sent: 2 accepted, 1 not accepted"),
        "{run}"
    );
    assert!(
        run.stderr
            .contains("1 of 3 messages not accepted; the first, message 2"),
        "{run}"
    );
    assert_eq!(endpoint.arrivals(), IDS);
}

#[test]
fn a_server_certificate_from_another_ca_is_a_tls_failure_with_exit_2() {
    let pki = Pki::new();
    let endpoint = Endpoint::start(&pki, &[]);
    let run = send(
        &pki,
        &endpoint.url(),
        &three_messages(&pki),
        "other-ca.crt",
        &["--timeout", "10s"],
    );
    assert_eq!(run.code, Some(2), "{run}");
    assert!(run.stderr.contains("TLS handshake"), "{run}");
    assert!(run.stderr.contains("UnknownIssuer"), "{run}");
    assert!(run.stderr.contains("not issued by the --ca"), "{run}");
    assert_eq!(
        run.result_lines(),
        ["ADT^A28 A28-0001 -> [connect_error]"],
        "{run}"
    );
    assert!(endpoint.arrivals().is_empty());
}

#[test]
fn an_unreachable_endpoint_is_an_io_error() {
    let pki = Pki::new();
    // A port that was just free: nothing listens there now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("https://127.0.0.1:{port}/hl7");
    let run = send(
        &pki,
        &url,
        &three_messages(&pki),
        "ca.crt",
        &["--timeout", "5s"],
    );
    assert_eq!(run.code, Some(2), "{run}");
    assert!(run.stderr.contains("cannot connect"), "{run}");
}

#[test]
fn a_plain_http_url_is_a_usage_error() {
    let pki = Pki::new();
    let endpoint = Endpoint::start(&pki, &[]);
    let url = format!("http://localhost:{}/hl7", endpoint.port);
    let run = send(&pki, &url, &three_messages(&pki), "ca.crt", &[]);
    assert_eq!(run.code, Some(2), "{run}");
    assert!(
        run.stderr
            .contains("HL7 travels over HTTPS with mutual TLS only"),
        "{run}"
    );
    assert!(endpoint.arrivals().is_empty());
}

#[test]
fn a_file_that_is_not_hl7_stops_everything_before_sending() {
    let pki = Pki::new();
    let endpoint = Endpoint::start(&pki, &[]);
    let mut files = three_messages(&pki);
    files.push(pki.file(
        "notes.txt",
        b"these are not the messages you are looking for\n",
    ));
    let run = send(&pki, &endpoint.url(), &files, "ca.crt", &[]);
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stderr.contains("notes.txt"), "{run}");
    assert!(run.stderr.contains("nothing was sent"), "{run}");
    assert!(run.result_lines().is_empty(), "{run}");
    assert!(endpoint.arrivals().is_empty());
}

#[test]
fn dry_run_lists_without_sending() {
    let pki = Pki::new();
    let endpoint = Endpoint::start(&pki, &[]);
    let run = send(
        &pki,
        &endpoint.url(),
        &three_messages(&pki),
        "ca.crt",
        &["--dry-run"],
    );
    assert_eq!(run.code, Some(0), "{run}");
    let listed: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("ADT^A28 "))
        .collect();
    assert_eq!(listed.len(), 3, "{run}");
    for (line, id) in listed.iter().zip(IDS) {
        assert!(line.starts_with(&format!("ADT^A28 {id} (")), "{run}");
    }
    assert!(run.stdout.contains("nothing sent (--dry-run)"), "{run}");
    assert!(endpoint.arrivals().is_empty());
}

#[test]
fn a_missing_key_file_is_an_io_error_naming_the_path_only() {
    let pki = Pki::new();
    let files = three_messages(&pki);
    let mut args = vec![
        "send".to_owned(),
        "https://localhost:1/hl7".to_owned(),
        files[0].clone(),
    ];
    for (flag, path) in [
        ("--cert", pki.arg("client.crt")),
        ("--key", pki.arg("missing.key")),
        ("--ca", pki.arg("ca.crt")),
    ] {
        args.push(flag.to_owned());
        args.push(path);
    }
    let run = hl7gw(&args);
    assert_eq!(run.code, Some(2), "{run}");
    assert!(run.stderr.contains("missing.key"), "{run}");
}
