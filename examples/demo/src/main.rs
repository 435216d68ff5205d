//! `hl7gw-demo`: the whole exchange of the demo customer on one machine, in one process.
//!
//! 1. Makes fresh development certificates for `specs/demo.yaml`'s TEST environment in the
//!    working folder (default `target/demo/`), planned as `hl7gw certs dev` plans them.
//! 2. Starts the Trust stand-in's endpoint (`trust.rs`) on 127.0.0.1:9443, where the gateway
//!    delivers outbound messages.
//! 3. Starts the demo customer's TEST gateway (`gw-demo`, on `hl7gw_runtime::app::serve`) on
//!    127.0.0.1:8443 with those certificates and a fresh embedded store.
//! 4. Plays the Trust's engine: posts the sample ADT^A28, ADT^A31 (enhanced mode), ADT^A40,
//!    ORM^O01 and an ORM^O01 with a procedure the customer does not offer, each after the
//!    previous ACK, and prints each exchange.
//! 5. Plays EMS: builds the ORU^R01 for the order (a typed `Report` with a PDF), queues it
//!    through the intake API, waits until the Trust's endpoint has it, and reads the inbox.
//! 6. Prints a summary and exits 0 when everything went as expected, 1 otherwise (2 when the
//!    demo could not be set up). `--keep-running` keeps everything up until Ctrl-C.
//!
//! Logs are off unless `HL7GW_LOG` is set (`info`, `debug`, …).

mod certs;
mod ems;
mod http;
mod trust;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use hl7gw_runtime::GatewaySpec;
use hl7gw_runtime::app::{Resolved, RunOptions};
use hl7gw_runtime::config::{EnvName, Environment};
use hl7gw_runtime::hl7::{Message, ParseOptions, read_ack};
use tokio::sync::{mpsc, watch};

/// The demo: the demo customer's gateway, the Trust's engine and EMS, on loopback.
#[derive(Debug, Parser)]
#[command(name = "hl7gw-demo", version, about, long_about = None)]
struct Cli {
    /// The working folder: certificates, the gateway's store, the PDFs the Trust received
    /// [default: target/demo in the repository].
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// The gateway's HL7 port on 127.0.0.1; 0 picks a free one. Its operations, inbox,
    /// intake and MLLP ports follow (+1 … +4) [default: the spec's, 8443].
    #[arg(long)]
    port: Option<u16>,
    /// The Trust stand-in's port on 127.0.0.1, where the gateway sends; 0 picks a free one
    /// [default: the spec's send URL port, 9443].
    #[arg(long)]
    trust_port: Option<u16>,
    /// Keep the gateway's store from the previous run (by default it starts empty).
    #[arg(long)]
    keep_store: bool,
    /// After the exchanges, keep the gateway and the Trust stand-in running until Ctrl-C.
    #[arg(long)]
    keep_running: bool,
}

/// The sample messages the Trust's engine sends, in order, with the ACK each must get.
const INBOUND: [Sample; 5] = [
    Sample {
        file: "adt_a28.hl7",
        bytes: include_bytes!("../../messages/adt_a28.hl7"),
        what: "register the patient",
        expect: "AA",
    },
    Sample {
        file: "adt_a31_enhanced.hl7",
        bytes: include_bytes!("../../messages/adt_a31_enhanced.hl7"),
        what: "update the patient, MSH-15/16 filled (still the application ACK)",
        expect: "AA",
    },
    Sample {
        file: "adt_a40.hl7",
        bytes: include_bytes!("../../messages/adt_a40.hl7"),
        what: "merge a duplicate MRN into the patient",
        expect: "AA",
    },
    Sample {
        file: "orm_o01.hl7",
        bytes: include_bytes!("../../messages/orm_o01.hl7"),
        what: "order a colonoscopy",
        expect: "AA",
    },
    Sample {
        file: "orm_o01_bad_procedure.hl7",
        bytes: include_bytes!("../../messages/orm_o01_bad_procedure.hl7"),
        what: "order a procedure the customer does not offer (the error path)",
        expect: "AE",
    },
];

/// The order the report is about.
const ORDER: &[u8] = include_bytes!("../../messages/orm_o01.hl7");

/// How long the report may take from the intake to the Trust's endpoint.
const DELIVERY_WAIT: Duration = Duration::from_secs(30);

/// How long the gateway may take to start, and to stop.
const START_WAIT: Duration = Duration::from_secs(30);
const STOP_WAIT: Duration = Duration::from_secs(15);

struct Sample {
    file: &'static str,
    bytes: &'static [u8],
    what: &'static str,
    expect: &'static str,
}

/// Why the demo could not run at all (exit 2).
struct SetupError(String);

impl<T: Into<String>> From<T> for SetupError {
    fn from(message: T) -> Self {
        Self(message.into())
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if std::env::var_os("HL7GW_LOG").is_some() {
        hl7gw_runtime::app::init_logging();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(run(&cli));
    runtime.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(problems) if problems.is_empty() => ExitCode::SUCCESS,
        Ok(problems) => {
            println!();
            println!(
                "demo FAILED: {} thing(s) did not go as expected:",
                problems.len()
            );
            for p in &problems {
                println!("  ✗ {p}");
            }
            ExitCode::from(1)
        }
        Err(SetupError(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

/// The repository root, as seen from this crate's sources.
fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::canonicalize(&root).unwrap_or(root)
}

/// A path as short as it reads well: relative to the current folder when inside it.
fn shown(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

/// `https://HOST:PORT/PATH` → (host, port, path).
fn split_url(url: &str) -> Option<(String, u16, String)> {
    let uri: hyper::Uri = url.parse().ok()?;
    let host = uri.host()?.to_owned();
    let port = uri.port_u16().unwrap_or(443);
    Some((host, port, uri.path().to_owned()))
}

/// Everything running: how to reach it and how to stop it.
struct Running {
    resolved: Resolved,
    hl7_path: String,
    send_url: String,
    stop: watch::Sender<bool>,
    gateway: tokio::task::JoinHandle<Result<(), hl7gw_runtime::app::AppError>>,
    endpoint: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(self) -> Result<(), String> {
        let _ = self.stop.send(true);
        let gateway = tokio::time::timeout(STOP_WAIT, self.gateway).await;
        let _ = tokio::time::timeout(STOP_WAIT, self.endpoint).await;
        match gateway {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(format!("the gateway stopped with an error: {e}")),
            Ok(Err(e)) => Err(format!("the gateway task failed: {e}")),
            Err(_) => Err(format!(
                "the gateway did not stop within {} s",
                STOP_WAIT.as_secs()
            )),
        }
    }
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn run(cli: &Cli) -> Result<Vec<String>, SetupError> {
    let environment = gw_demo::SPEC
        .test
        .ok_or("the demo spec has no TEST environment")?;
    let receive = environment
        .receive
        .as_ref()
        .ok_or("the demo's TEST environment receives nothing")?;
    let send = environment
        .send
        .as_ref()
        .ok_or("the demo's TEST environment sends nothing")?;
    let spec_listen: SocketAddr = receive.listen.parse().map_err(|_| {
        format!(
            "the spec's listen address {:?} is not IP:PORT",
            receive.listen
        )
    })?;
    let (send_host, spec_send_port, send_path) =
        split_url(&send.url).ok_or_else(|| format!("the spec's send URL {:?}", send.url))?;

    let work = cli
        .work_dir
        .clone()
        .unwrap_or_else(|| repo_root().join("target").join("demo"));
    std::fs::create_dir_all(&work)
        .map_err(|e| format!("cannot create the working folder {}: {e}", work.display()))?;
    let work = std::fs::canonicalize(&work).unwrap_or(work);

    println!(
        "hl7gw demo: {} ({}), {} environment, all on loopback",
        gw_demo::SPEC.customer_name,
        gw_demo::SPEC.customer_code,
        EnvName::Test.as_str().to_uppercase()
    );
    println!();

    // 1. Certificates.
    let files = certs::make(&work)?;
    println!(
        "  certificates  {}/  ({} fresh files: EMS and Trust CAs, the gateway's server and client",
        shown(&work),
        files.written
    );
    println!("                certificates, and in trust/ the Trust engine's and endpoint's)");

    // 2. The store: the demo runs on an SQLite file in its work folder.
    let spec_store = match &environment.store {
        hl7gw_runtime::config::StoreConfig::Sqlite(path) => Path::new(&**path),
        hl7gw_runtime::config::StoreConfig::Postgres(_) => Path::new("demo-test.sqlite"),
    };
    let store = work.join(
        spec_store
            .file_name()
            .unwrap_or_else(|| "demo-test.sqlite".as_ref()),
    );
    if !cli.keep_store {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut name = store.clone().into_os_string();
            name.push(suffix);
            match std::fs::remove_file(&name) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(format!(
                        "cannot remove the old store {}: {e}",
                        Path::new(&name).display()
                    )
                    .into());
                }
            }
        }
    }

    let received_dir = work.join("trust").join("received");
    if !cli.keep_store {
        match std::fs::remove_dir_all(&received_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(format!("cannot empty {}: {e}", received_dir.display()).into());
            }
        }
    }

    // 3. The Trust's endpoint first, so the gateway's first delivery finds it.
    let (endpoint, mut received) = trust::Endpoint::bind(
        loopback(cli.trust_port.unwrap_or(spec_send_port)),
        &send_path,
        &trust::EndpointFiles {
            cert: &files.tie_server_cert,
            key: &files.tie_server_key,
            ems_ca: &files.ems_ca,
            gateway_cert: &files.gateway_client_cert,
        },
        received_dir,
    )
    .await
    .map_err(|e| with_port_hint(e, "--trust-port"))?;
    let send_url = format!("https://{send_host}:{}{send_path}", endpoint.addr().port());
    let gateway_subject = endpoint.gateway_subject().to_owned();

    // 4. The gateway, with the send URL pointing at the endpoint's actual port.
    let spec = GatewaySpec {
        test: Some(with_send_url(environment.clone(), &send_url)),
        ..gw_demo::SPEC
    };
    let options = RunOptions {
        base_dir: work.clone(),
        listen: Some(loopback(cli.port.unwrap_or(spec_listen.port()))),
        cert_dir: Some(work.clone()),
        store: Some(store.clone()),
        control_dir: None,
        ops_listen: None,
        ops_exposure: hl7gw_runtime::server::Exposure::LoopbackOnly,
        inbox_listen: None,
        intake_listen: None,
        mllp_listen: None,
        retention: None,
    };
    let (stop, stop_rx) = watch::channel(false);
    let endpoint_task = tokio::spawn(endpoint.run(stopped(stop_rx.clone())));
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Resolved>();
    let gateway_stop = stopped(stop_rx.clone());
    let mut gateway = tokio::spawn(async move {
        hl7gw_runtime::app::serve(&spec, EnvName::Test, &options, gateway_stop, move |r| {
            let _ = ready_tx.send(r.clone());
        })
        .await
    });
    let resolved = tokio::select! {
        ready = ready_rx => match ready {
            Ok(resolved) => resolved,
            Err(_) => {
                let _ = stop.send(true);
                let why = match tokio::time::timeout(STOP_WAIT, &mut gateway).await {
                    Ok(Ok(Err(e))) => e.to_string(),
                    Ok(Ok(Ok(()))) => "it stopped at once".to_owned(),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "it did not answer".to_owned(),
                };
                let _ = tokio::time::timeout(STOP_WAIT, endpoint_task).await;
                return Err(with_port_hint(format!("the gateway did not start: {why}"), "--port").into());
            }
        },
        () = tokio::time::sleep(START_WAIT) => {
            let _ = stop.send(true);
            return Err(format!("the gateway did not start within {} s", START_WAIT.as_secs()).into());
        }
    };
    let running = Running {
        resolved,
        hl7_path: receive.path.to_string(),
        send_url,
        stop,
        gateway,
        endpoint: endpoint_task,
    };
    let Some(intake) = running.resolved.send.as_ref().map(|s| s.intake_listen) else {
        let _ = running.stop().await;
        return Err("the gateway runs no intake API".into());
    };
    print_setup(&running, &store, cli.keep_store, &gateway_subject);

    let mut problems = Vec::new();
    let mut codes = Vec::new();
    let accepted = trust_sends(&running, &files, &mut problems, &mut codes).await;
    let delivered = ems_reports(&running, intake, &mut received, &mut problems).await;
    let inbox = ems_inbox(&running, &accepted, &mut problems).await;
    summary(&problems, &codes, delivered.as_ref(), inbox);

    if cli.keep_running {
        keep_running(&running, &files, intake, received).await;
    }
    if let Err(e) = running.stop().await {
        problems.push(e);
    }
    Ok(problems)
}

/// The environment with its send URL replaced.
fn with_send_url(mut environment: Environment, url: &str) -> Environment {
    if let Some(send) = &mut environment.send {
        send.url = url.to_owned().into();
    }
    environment
}

fn with_port_hint(message: String, option: &str) -> String {
    if message.contains("in use") {
        format!(
            "{message}\n  (is another demo or gateway running? {option} chooses another port; 0 picks a free one)"
        )
    } else {
        message
    }
}

fn print_setup(running: &Running, store: &Path, kept: bool, gateway_subject: &str) {
    let r = &running.resolved;
    println!(
        "  gateway       https://localhost:{}{}  (HL7 over HTTPS, mutual TLS)",
        r.listen.port(),
        running.hl7_path
    );
    println!(
        "                store {}{}",
        shown(store),
        if kept {
            " (kept from before)"
        } else {
            " (fresh)"
        }
    );
    println!(
        "                inbox API http://{}/inbox, operations http://{}/healthz",
        r.inbox_listen, r.ops_listen
    );
    if let Some(send) = &r.send {
        println!(
            "                intake API http://{}/outbound, sends to {}",
            send.intake_listen, running.send_url
        );
    }
    println!(
        "  Trust engine  a stand-in: posts with its client certificate; its endpoint {}",
        running.send_url
    );
    println!("                admits only the gateway's client certificate, {gateway_subject}");
}

fn heading(text: &str) {
    println!();
    println!(
        "── {text} {}",
        "─".repeat(78usize.saturating_sub(text.chars().count() + 4))
    );
    println!();
}

/// Segments of an HL7 message, one per line, indented.
fn print_segments(bytes: &[u8], indent: &str) {
    for segment in bytes
        .split(|b| *b == b'\r' || *b == b'\n')
        .filter(|s| !s.is_empty())
    {
        println!("{indent}{}", String::from_utf8_lossy(segment));
    }
}

/// The Trust's engine sends the samples in order, each after the previous ACK. Returns the
/// control ids the gateway accepted.
async fn trust_sends(
    running: &Running,
    files: &certs::CertFiles,
    problems: &mut Vec<String>,
    codes: &mut Vec<String>,
) -> Vec<String> {
    heading("Trust engine → gateway: the samples, each after the previous ACK");
    let mut accepted = Vec::new();
    let engine = match trust::Engine::new(
        running.resolved.listen,
        &running.hl7_path,
        &files.tie_client_cert,
        &files.tie_client_key,
        &files.ems_ca,
    ) {
        Ok(engine) => engine,
        Err(e) => {
            problems.push(e);
            return accepted;
        }
    };
    for (n, sample) in INBOUND.iter().enumerate() {
        let (message_type, control_id) =
            match Message::parse_with(sample.bytes, &ParseOptions::lenient()) {
                Ok(m) => (
                    format!("{}^{}", m.message_code(), m.trigger_event()),
                    m.control_id().into_owned(),
                ),
                Err(_) => ("?".to_owned(), "?".to_owned()),
            };
        println!(
            "[{}/{}] {message_type} {control_id}: {}  ({})",
            n + 1,
            INBOUND.len(),
            sample.what,
            sample.file
        );
        let response = match engine.send(sample.bytes).await {
            Ok(r) => r,
            Err(e) => {
                println!("      ✗ {e}");
                problems.push(format!("{message_type} {control_id}: {e}"));
                codes.push("-".to_owned());
                continue;
            }
        };
        let ack = Message::parse_with(&response.body, &ParseOptions::lenient())
            .ok()
            .and_then(|m| read_ack(&m).ok());
        let code = ack.as_ref().map_or("none", |a| a.code.as_str());
        codes.push(code.to_owned());
        let as_expected = response.status == 200 && code == sample.expect;
        println!(
            "      → HTTP {}, ACK {code}  {}",
            response.status,
            if as_expected {
                "✓".to_owned()
            } else {
                format!("✗ expected {}", sample.expect)
            }
        );
        if ack.is_some() {
            print_segments(&response.body, "          ");
        } else {
            println!(
                "          {}",
                String::from_utf8_lossy(&response.body).trim()
            );
        }
        if !as_expected {
            problems.push(format!(
                "{message_type} {control_id}: HTTP {} and ACK {code}, expected 200 and {}",
                response.status, sample.expect
            ));
        } else if code == "AA" || code == "CA" {
            accepted.push(control_id.clone());
        }
        if let Some(ack) = &ack
            && ack.control_id != control_id
        {
            problems.push(format!(
                "{message_type} {control_id}: the ACK acknowledges {:?}",
                ack.control_id
            ));
        }
        println!();
    }
    accepted
}

/// What the Trust's endpoint got.
struct Delivered {
    pdf_bytes: Option<usize>,
}

/// EMS builds the report for the order, queues it, and the gateway delivers it.
async fn ems_reports(
    running: &Running,
    intake: SocketAddr,
    received: &mut mpsc::UnboundedReceiver<trust::Received>,
    problems: &mut Vec<String>,
) -> Option<Delivered> {
    heading("EMS → gateway → Trust engine: the report for the order");
    let report = match ems::report_for(ORDER) {
        Ok(r) => r,
        Err(e) => {
            problems.push(format!("EMS: {e}"));
            return None;
        }
    };
    println!(
        "EMS writes the {} report for order {} as ORU^R01 {} (a typed Report, PDF {} bytes)",
        report.procedure,
        report.placer_id,
        report.control_id,
        ems::REPORT_PDF.len()
    );
    let queued = match ems::queue(intake, &report.message).await {
        Ok(q) => q,
        Err(e) => {
            println!("      ✗ {e}");
            problems.push(format!("EMS could not queue the report: {e}"));
            return None;
        }
    };
    println!(
        "      → POST http://{intake}/outbound: HTTP {}, queue id {}",
        queued.status, queued.id
    );
    println!(
        "      the gateway delivers it to {} (waiting up to {} s)",
        running.send_url,
        DELIVERY_WAIT.as_secs()
    );
    println!();
    let deadline = tokio::time::Instant::now() + DELIVERY_WAIT;
    let got = loop {
        match tokio::time::timeout_at(deadline, received.recv()).await {
            Ok(Some(r)) if r.control_id == report.control_id => break Some(r),
            Ok(Some(other)) => print_received(&other),
            Ok(None) | Err(_) => break None,
        }
    };
    let Some(got) = got else {
        let state = ems::queue_state(intake, queued.id).await.ok();
        let why = state
            .as_ref()
            .and_then(|s| s.get("last_response"))
            .map(|r| format!("; last response: {r}"))
            .unwrap_or_default();
        problems.push(format!(
            "the Trust's endpoint did not receive {} within {} s{why}",
            report.control_id,
            DELIVERY_WAIT.as_secs()
        ));
        return None;
    };
    print_received(&got);
    let pdf_bytes = match &got.pdf {
        Some(Ok(pdf)) if pdf.as_slice() == ems::REPORT_PDF => Some(pdf.len()),
        Some(Ok(pdf)) => {
            problems.push(format!(
                "the PDF arrived changed: {} bytes, {} sent",
                pdf.len(),
                ems::REPORT_PDF.len()
            ));
            Some(pdf.len())
        }
        Some(Err(e)) => {
            problems.push(format!("the report's PDF: {e}"));
            None
        }
        None => {
            problems.push("the report arrived without its PDF".to_owned());
            None
        }
    };
    // The sequencer records the ACK right after the response: give it a moment.
    let mut state = None;
    for _ in 0..50 {
        state = ems::queue_state(intake, queued.id).await.ok();
        if state
            .as_ref()
            .and_then(|s| s.get("state"))
            .and_then(serde_json::Value::as_str)
            == Some("delivered")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let field = |key: &str| {
        state
            .as_ref()
            .and_then(|s| s.get(key))
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    };
    let queue_state = field("state");
    let ack_code = field("last_response")
        .get("ack_code")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("none")
        .to_owned();
    println!(
        "queue id {}: {} with {ack_code}, after {} attempt(s)",
        queued.id,
        queue_state.as_str().unwrap_or("unknown"),
        field("attempts")
    );
    if queue_state.as_str() != Some("delivered") || ack_code != "AA" {
        problems.push(format!(
            "queue id {}: {queue_state} with {ack_code}, expected delivered with AA",
            queued.id
        ));
    }
    Some(Delivered { pdf_bytes })
}

fn print_received(r: &trust::Received) {
    println!(
        "Trust endpoint received {} {} from {}",
        r.message_type, r.control_id, r.peer_subject
    );
    match &r.pdf {
        Some(Ok(pdf)) => {
            let saved = match &r.saved {
                Some(Ok(path)) => format!(", saved as {}", shown(path)),
                Some(Err(e)) => format!(" (not saved: {e})"),
                None => String::new(),
            };
            println!("      PDF {} bytes (OBX-5.5, base64){saved}", pdf.len());
        }
        Some(Err(e)) => println!("      ✗ PDF: {e}"),
        None => {}
    }
    let code = Message::parse_with(&r.ack, &ParseOptions::lenient())
        .ok()
        .and_then(|m| read_ack(&m).ok())
        .map_or("?", |a| a.code.as_str());
    println!("      ← answered {code}");
    print_segments(&r.ack, "          ");
    println!();
}

/// EMS reads its inbox: the records the gateway committed.
async fn ems_inbox(running: &Running, accepted: &[String], problems: &mut Vec<String>) -> usize {
    heading("EMS inbox: the records the gateway committed, for EMS to pull");
    let addr = running.resolved.inbox_listen;
    let records = match ems::inbox(addr).await {
        Ok(r) => r,
        Err(e) => {
            problems.push(format!("EMS could not read its inbox: {e}"));
            return 0;
        }
    };
    println!(
        "GET http://{addr}/inbox: {} record(s) EMS can pull",
        records.len()
    );
    for r in &records {
        println!("      #{:<3} {} {}", r.id, r.message_type, r.control_id);
    }
    for id in accepted {
        if !records.iter().any(|r| &r.control_id == id) {
            problems.push(format!("the accepted message {id} is not in the inbox"));
        }
    }
    records.len()
}

fn summary(problems: &[String], codes: &[String], delivered: Option<&Delivered>, inbox: usize) {
    heading("Summary");
    let expected: Vec<&str> = INBOUND.iter().map(|s| s.expect).collect();
    let mark = |ok: bool| if ok { "✓" } else { "✗" };
    println!(
        "  {} {} messages in, ACKs {} (expected {})",
        mark(
            codes
                .iter()
                .map(String::as_str)
                .eq(expected.iter().copied())
        ),
        INBOUND.len(),
        codes.join(" "),
        expected.join(" ")
    );
    match delivered {
        Some(d) => println!(
            "  {} ORU^R01 out: delivered to the Trust with AA, PDF {} bytes",
            mark(problems.is_empty()),
            d.pdf_bytes
                .map_or_else(|| "missing".to_owned(), |n| n.to_string())
        ),
        None => println!("  ✗ ORU^R01 out: not delivered"),
    }
    println!(
        "  {} {inbox} record(s) in the inbox for EMS",
        mark(inbox > 0)
    );
    println!();
    if problems.is_empty() {
        println!("demo complete: every exchange went as expected.");
    }
}

/// Until Ctrl-C: prints what the Trust's endpoint receives and how to try things.
async fn keep_running(
    running: &Running,
    files: &certs::CertFiles,
    intake: SocketAddr,
    mut received: mpsc::UnboundedReceiver<trust::Received>,
) {
    let r = &running.resolved;
    let root = repo_root();
    let messages = shown(&root.join("examples").join("messages"));
    println!();
    println!("Running until Ctrl-C. From another terminal, try:");
    println!();
    println!("  # the Trust's engine sends an ADT^A28 (its dev client certificate, mutual TLS)");
    println!(
        "  curl -s --cert {} --key {} --cacert {} \\",
        shown(&files.tie_client_cert),
        shown(&files.tie_client_key),
        shown(&files.ems_ca)
    );
    println!(
        "       -H 'Content-Type: application/hl7-v2' --data-binary @{messages}/adt_a28.hl7 \\"
    );
    println!(
        "       https://localhost:{}{} | tr '\\r' '\\n'",
        r.listen.port(),
        running.hl7_path
    );
    println!();
    println!("  # EMS pulls the records");
    println!("  curl -s http://{}/inbox", r.inbox_listen);
    println!();
    println!("  # EMS sends a report: the gateway delivers it to the Trust stand-in");
    println!(
        "  curl -s -H 'Content-Type: application/hl7-v2' --data-binary @{messages}/oru_r01_pdf.hl7 http://{intake}/outbound"
    );
    println!();
    let printer = tokio::spawn(async move {
        while let Some(r) = received.recv().await {
            print_received(&r);
        }
    });
    hl7gw_runtime::app::termination().await;
    println!();
    println!("stopping…");
    printer.abort();
}
