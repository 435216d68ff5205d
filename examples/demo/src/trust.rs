//! The stand-in for the Trust's integration engine (TIE), built on the runtime.
//!
//! - [`Engine`]: the engine's sending side. It POSTs one HL7 message at a time to the
//!   gateway over mutual TLS, presenting the Trust engine's client certificate
//!   (`tie-client.crt`, issued by the Trust CA) and trusting only the EMS CA (`ems-ca.crt`)
//!   for the gateway's server certificate.
//! - [`Endpoint`]: the engine's receiving side, where the gateway delivers outbound messages
//!   (order updates, reports). An HTTPS receiver ([`hl7gw_runtime::server::Receiver`]) with
//!   the Trust endpoint's server certificate (`tie-server.crt`), admitting only the gateway's
//!   client certificate (issued by the EMS CA, subject checked), answering every HL7 message
//!   with an AA built by [`build_ack`]. Each message it receives is reported as a
//!   [`Received`]; a report's PDF (OBX-5.5 of the ED-typed OBX) is decoded and saved.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use hl7gw_runtime::hl7::timestamp::format_utc;
use hl7gw_runtime::hl7::{AckCode, AckRequest, Message, ParseOptions, Path as Hl7Path, build_ack};
use hl7gw_runtime::metrics::Metrics;
use hl7gw_runtime::server::{Ack, Handler, Hl7Request, Hl7Response, Receiver, Settings};
use tokio::sync::mpsc;

use crate::http;

/// Where a report's PDF travels: the fifth component of OBX-5 in the ED-typed OBX.
const PDF_PATH: &str = "OBX[OBX-2=ED]-5.5";

/// The engine's sending side: posts messages to the gateway.
pub struct Engine {
    gateway: SocketAddr,
    path: String,
    tls: Arc<rustls::ClientConfig>,
}

impl Engine {
    /// An engine posting to `https://localhost:<gateway port><path>` with the Trust engine's
    /// client certificate and key, trusting `ems_ca` for the gateway.
    pub fn new(
        gateway: SocketAddr,
        path: &str,
        cert: &Path,
        key: &Path,
        ems_ca: &Path,
    ) -> Result<Self, String> {
        let tls = hl7gw_runtime::client::client_config(cert, key, ems_ca)
            .map_err(|e| format!("the Trust engine's TLS: {e}"))?;
        Ok(Self {
            gateway,
            path: path.to_owned(),
            tls,
        })
    }

    /// POSTs one message and returns the gateway's answer.
    pub async fn send(&self, message: &[u8]) -> Result<http::Response, String> {
        http::tls(
            self.gateway,
            "localhost",
            self.tls.clone(),
            http::Call {
                method: "POST",
                path: &self.path,
                content_type: Some("application/hl7-v2"),
                body: message.to_vec(),
            },
        )
        .await
    }
}

/// One message the Trust endpoint received from the gateway.
#[derive(Debug, Clone)]
pub struct Received {
    /// `TYPE^TRIGGER`.
    pub message_type: String,
    /// MSH-10.
    pub control_id: String,
    /// The certificate subject the gateway presented.
    pub peer_subject: String,
    /// The decoded PDF of a report, or why it could not be read; `None` when the message
    /// carries no ED-typed OBX.
    pub pdf: Option<Result<Vec<u8>, String>>,
    /// Where the PDF was saved, or why it was not.
    pub saved: Option<Result<PathBuf, String>>,
    /// The ACK the endpoint answered with.
    pub ack: Vec<u8>,
}

/// The engine's receiving side, bound and ready to run.
pub struct Endpoint {
    receiver: Receiver<Answerer>,
    addr: SocketAddr,
    gateway_subject: String,
}

impl Endpoint {
    /// Binds the endpoint on `listen` (loopback), serving `path` with the Trust endpoint's
    /// certificate and key and admitting the gateway's client certificate `gateway_cert`,
    /// issued by `ems_ca`. Received PDFs are saved into `save_dir`.
    pub async fn bind(
        listen: SocketAddr,
        path: &str,
        files: &EndpointFiles<'_>,
        save_dir: PathBuf,
    ) -> Result<(Self, mpsc::UnboundedReceiver<Received>), String> {
        let tls = hl7gw_runtime::tls::server_config(files.cert, files.key, files.ems_ca)
            .map_err(|e| format!("the Trust endpoint's TLS: {e}"))?;
        let gateway_subject = common_name(files.gateway_cert)?;
        let mut settings = Settings::new(listen, path);
        settings.allowed_ips = vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST).into(),
            IpAddr::V6(Ipv6Addr::LOCALHOST).into(),
        ];
        settings.allowed_clients = vec![gateway_subject.clone()];
        settings.shutdown_timeout = Duration::from_secs(5);
        let (events, received) = mpsc::unbounded_channel();
        let answerer = Answerer {
            events,
            save_dir,
            acks: AtomicU64::new(0),
        };
        let receiver = Receiver::bind(settings, tls, answerer, Arc::new(Metrics::new()))
            .await
            .map_err(|e| format!("the Trust endpoint {e}"))?;
        let addr = receiver
            .local_addr()
            .map_err(|e| format!("the Trust endpoint's address: {e}"))?;
        Ok((
            Self {
                receiver,
                addr,
                gateway_subject,
            },
            received,
        ))
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The one client subject it admits (the gateway's client certificate).
    pub fn gateway_subject(&self) -> &str {
        &self.gateway_subject
    }

    /// Serves until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        if let Err(e) = self.receiver.run(shutdown).await {
            eprintln!("the Trust endpoint stopped: {e}");
        }
    }
}

/// The Trust endpoint's certificate files.
pub struct EndpointFiles<'a> {
    /// Its server certificate.
    pub cert: &'a Path,
    /// Its key.
    pub key: &'a Path,
    /// The CA issuing the gateway's client certificate.
    pub ems_ca: &'a Path,
    /// The gateway's client certificate, whose subject is the one admitted.
    pub gateway_cert: &'a Path,
}

/// `CN=…` of the first certificate in a PEM file.
fn common_name(cert: &Path) -> Result<String, String> {
    let pem = std::fs::read(cert).map_err(|e| format!("{}: {e}", cert.display()))?;
    let certs = hl7gw_runtime::tls::certificates_from_pem("gateway client certificate", &pem)
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    certs
        .first()
        .map(|der| hl7gw_runtime::tls::peer_subjects(der))
        .unwrap_or_default()
        .into_iter()
        .find(|s| s.starts_with("CN="))
        .ok_or_else(|| format!("{}: the certificate has no common name", cert.display()))
}

/// Answers every message with an AA and reports it.
struct Answerer {
    events: mpsc::UnboundedSender<Received>,
    save_dir: PathBuf,
    acks: AtomicU64,
}

impl Handler for Answerer {
    fn handle(&self, request: Hl7Request) -> impl Future<Output = Hl7Response> + Send {
        std::future::ready(self.answer(&request))
    }
}

impl Answerer {
    fn answer(&self, request: &Hl7Request) -> Hl7Response {
        let message = match Message::parse_with(&request.body, &ParseOptions::lenient()) {
            Ok(m) => m,
            Err(e) => return Hl7Response::NotHl7(format!("not HL7: {e}")),
        };
        let message_type = format!("{}^{}", message.message_code(), message.trigger_event());
        let control_id = message.control_id().into_owned();
        let n = self.acks.fetch_add(1, Ordering::Relaxed) + 1;
        let ack_id = format!("TIE-ACK-{n:04}");
        let stamp = format_utc(SystemTime::now());
        let ack = match build_ack(
            &message,
            &AckRequest {
                code: AckCode::ApplicationAccept,
                control_id: &ack_id,
                timestamp: &stamp,
                errors: &[],
            },
        ) {
            Ok(ack) => ack,
            Err(e) => return Hl7Response::Unavailable(format!("cannot build the ACK: {e}")),
        };
        let pdf = pdf_of(&message);
        let saved = match &pdf {
            Some(Ok(bytes)) => Some(self.save(&control_id, bytes)),
            _ => None,
        };
        let _ = self.events.send(Received {
            message_type: message_type.clone(),
            control_id,
            peer_subject: request.peer_subject.clone(),
            pdf,
            saved,
            ack: ack.clone(),
        });
        Hl7Response::Ack(Ack {
            body: ack,
            charset: message.charset(),
            message_type,
            code: AckCode::ApplicationAccept.as_str().to_owned(),
        })
    }

    /// Saves a PDF as `<control id>.pdf` (characters other than letters, digits, `-` and `_`
    /// replaced: the id comes from the message).
    fn save(&self, control_id: &str, pdf: &[u8]) -> Result<PathBuf, String> {
        let name: String = control_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = self.save_dir.join(format!("{name}.pdf"));
        std::fs::create_dir_all(&self.save_dir)
            .and_then(|()| std::fs::write(&path, pdf))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }
}

/// The PDF in OBX-5.5 of the ED-typed OBX, base64-decoded; `None` when there is no such OBX.
fn pdf_of(message: &Message<'_>) -> Option<Result<Vec<u8>, String>> {
    let path = Hl7Path::parse(PDF_PATH).ok()?;
    let hit = path.find_first(message)?;
    Some(decode_pdf(&hit.span))
}

fn decode_pdf(span: &hl7gw_runtime::hl7::Span<'_>) -> Result<Vec<u8>, String> {
    let text = span
        .text()
        .map_err(|e| format!("{PDF_PATH} does not decode: {e}"))?;
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| format!("{PDF_PATH} is not base64: {e}"))?;
    if !bytes.starts_with(b"%PDF-") {
        return Err(format!("{PDF_PATH} decodes to something that is not a PDF"));
    }
    Ok(bytes)
}
