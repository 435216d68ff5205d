//! EMS's side of a test gateway whose EMS-facing listeners use mutual TLS (`ems.tls`): the
//! certificates (EMS's CA, the gateway's EMS-facing server certificate, EMS's client
//! certificate and the clients that must be refused), the `ems:` block pointing at them, and
//! EMS's two ways in: HTTPS (inbox and intake APIs) and MLLP over TLS.
//!
//! Only tests link this; a certificate that cannot be written fails the test, hence `expect`.
#![allow(clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use hl7gw_runtime::config::{EmsAccess, EmsTls};
use hl7gw_runtime::hl7::{AckCode, Message};
use hl7gw_runtime::mllp::{Deframer, frame, read_message};
use rcgen::ExtendedKeyUsagePurpose;
use rustls::ClientConfig;
use tokio::io::AsyncWriteExt;

use crate::pki::{self, Identity};
use crate::wire::{self, Http, RawResponse};

/// The subject EMS's client certificate carries, and [`mutual_tls`] allows.
pub const EMS_SUBJECT: &str = "ems-test.example-ems.cloud";

/// The certificates of one test, written by [`write_pki`].
pub struct Pki {
    /// EMS's CA (the client CA of the EMS-facing listeners; it also issued the server's).
    pub ca_pem: String,
    /// EMS, allowed.
    pub ems: Identity,
    /// EMS's CA, a subject not allowed.
    pub stranger: Identity,
    /// EMS's subject from another CA.
    pub other_ca: Identity,
    /// EMS's subject, revoked by the CRL.
    pub revoked: Identity,
}

/// Writes into `dir` the files [`mutual_tls`] names: `ems-server.crt`, `ems-server.key`,
/// `ems-ca.crt` and `ems-ca.crl` (revoking [`Pki::revoked`]).
pub fn write_pki(dir: &Path) -> Pki {
    let ca = pki::ca("EMS Test CA");
    let server = pki::leaf(
        &ca,
        "localhost",
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let client =
        |issuer, cn: &str| pki::leaf(issuer, cn, &[cn], ExtendedKeyUsagePurpose::ClientAuth);
    let ems = client(&ca, EMS_SUBJECT);
    let stranger = client(&ca, "someone-else.example-ems.cloud");
    let other = pki::ca("Another CA");
    let other_ca = client(&other, EMS_SUBJECT);
    // EMS's own subject, but a certificate its CA has revoked.
    let revoked = client(&ca, EMS_SUBJECT);
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text).expect("write a test certificate");
    };
    write("ems-ca.crl", &pki::crl(&ca, &[&revoked]));
    write("ems-server.crt", &server.cert_pem);
    write("ems-server.key", &server.key_pem);
    write("ems-ca.crt", &ca.pem());
    Pki {
        ca_pem: ca.pem(),
        ems,
        stranger,
        other_ca,
        revoked,
    }
}

/// `ems:` with mutual TLS on 127.0.0.1, on the files [`write_pki`] wrote into `dir`,
/// allowing [`EMS_SUBJECT`].
pub fn mutual_tls(dir: &Path) -> EmsAccess {
    let file = |name: &str| dir.join(name).to_string_lossy().into_owned().into();
    EmsAccess::MutualTls(EmsTls {
        address: "127.0.0.1".into(),
        cert: file("ems-server.crt"),
        key: file("ems-server.key"),
        client_ca: file("ems-ca.crt"),
        client_crl: Some(file("ems-ca.crl")),
        allowed_clients: vec![format!("CN={EMS_SUBJECT}").into()].into(),
    })
}

/// One HTTP/1.1 request over TLS with `config`'s client certificate (or none): the
/// response, or the error that stopped it (a refused handshake, a connection closed without
/// an answer).
pub async fn https(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<RawResponse> {
    let tls = wire::connect(addr, "localhost", config).await?;
    let mut client = Http::new(tls);
    let headers = vec![
        // Not a loopback name: with mutual TLS the Host check of plain loopback is off.
        "Host: ems-gateway.example-ems.cloud".to_owned(),
        format!("Content-Length: {}", body.len()),
        "Connection: close".to_owned(),
    ];
    client
        .send(&wire::request(method, path, &headers, body))
        .await?;
    client.read_response().await
}

/// One framed message over MLLP over TLS with `config`'s client certificate (or none): the
/// ACK code, or the error that stopped it.
pub async fn mllp_tls(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    message: &[u8],
) -> std::io::Result<AckCode> {
    let mut tls = wire::connect(addr, "localhost", config).await?;
    mllp_exchange(&mut tls, message).await
}

/// Sends one framed message on an open MLLP stream and reads its ACK: the ACK code, or the
/// error that stopped it (bounded by [`wire::IO_LIMIT`]).
pub async fn mllp_exchange<S>(stream: &mut S, message: &[u8]) -> std::io::Result<AckCode>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream.write_all(&frame(message)).await?;
    stream.flush().await?;
    let mut deframer = Deframer::new(1 << 20);
    let read = tokio::time::timeout(wire::IO_LIMIT, read_message(stream, &mut deframer));
    let ack = read
        .await
        .map_err(|_| std::io::Error::other("no ACK in time"))?
        .map_err(std::io::Error::other)?
        .ok_or_else(|| std::io::Error::other("closed without an ACK"))?;
    let message = Message::parse(&ack).map_err(|e| std::io::Error::other(e.to_string()))?;
    let receipt =
        hl7gw_runtime::hl7::read_ack(&message).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(receipt.code)
}
