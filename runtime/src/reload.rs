//! Certificates, keys and CRLs reloaded without a restart.
//!
//! The gateway builds each rustls configuration once, around a [`ServerTls`] (the receiver:
//! its certificate, and the verifier of the Trust's client certificates; likewise the EMS
//! listeners, [`crate::ems`], with EMS's CA) or a [`ClientTls`]
//! (the sender: its client certificate, and the verifier of the Trust's server certificate).
//! Both are certificate resolvers and peer verifiers whose contents can be swapped: every
//! handshake reads what is current, so after [`TlsReloader::reload`] new handshakes use the
//! new files, while connections already established keep the certificate they were made with
//! (nothing is cut).
//!
//! A reload reads and checks *every* file of every side first and swaps only when all of them
//! load: a bad file (unreadable, not PEM, a key that is not the certificate's, a CRL that does
//! not parse) is refused with an error naming it, and the running configuration stays as it
//! was. It is triggered by SIGHUP and by `gw-<code> reload` ([`crate::control`]).
//!
//! Resumed TLS sessions skip the certificate checks, so neither side resumes sessions: every
//! new connection is verified against the CRLs and served the certificate current then.
//!
//! Revocation: when the spec names a CRL file for the peer's CA, the peer's (end-entity)
//! certificate is checked against it. The file must hold a CRL for every CA of the CA file
//! (a certificate whose issuer has no CRL is refused: its status is unknown), every CRL must
//! be signed by a CA of the CA file (else the file is refused), and a CRL past
//! its next update makes the verifier refuse every certificate of that CA until a fresh CRL
//! is loaded (fail closed, as RFC 5280 reads): `hl7gw validate` reports an out-of-date CRL,
//! or one another CA signed, ahead of time, and a warning is logged when a loaded CRL is
//! already out of date.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{
    ClientHello, NoServerSessionStorage, ResolvesServerCert, WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};
use tracing::{error, info, warn};

pub use crate::tls::fingerprint;
use crate::tls::{
    PROTOCOL_VERSIONS, TlsError, alpn_protocols, certificates_from_pem, crls_from_pem,
    private_key_from_pem, provider,
};

/// The files of one side: our certificate and key, the peer's CA and, optionally, its CRLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Our certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// Our private key (PEM).
    pub key: PathBuf,
    /// The CA(s) that issue the peer's certificate (PEM).
    pub peer_ca: PathBuf,
    /// CRLs of the peer's CA(s) (PEM `X509 CRL` blocks), when the spec names them.
    pub peer_crl: Option<PathBuf>,
}

/// A file that could not be loaded, named.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// What was wrong with it.
    #[source]
    pub source: TlsError,
}

/// What one side's files hold, read and checked, ready to install.
#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    roots: Arc<RootCertStore>,
    crls: Vec<CertificateRevocationListDer<'static>>,
}

/// Which side's words to use in messages.
#[derive(Debug, Clone, Copy)]
enum Side {
    Server,
    Client,
}

impl Side {
    fn names(self) -> [&'static str; 4] {
        match self {
            Side::Server => [
                "server certificate",
                "server key",
                "client CA",
                "client CRL",
            ],
            Side::Client => [
                "client certificate",
                "client key",
                "server CA",
                "server CRL",
            ],
        }
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, FileError> {
    crate::tls::read(what, path).map_err(|source| FileError {
        path: path.to_owned(),
        source,
    })
}

fn at<T>(path: &Path, result: Result<T, TlsError>) -> Result<T, FileError> {
    result.map_err(|source| FileError {
        path: path.to_owned(),
        source,
    })
}

/// Reads and checks one side's files.
fn load(files: &TlsFiles, side: Side) -> Result<Loaded, FileError> {
    let [cert_what, key_what, ca_what, crl_what] = side.names();
    let chain = at(
        &files.cert,
        certificates_from_pem(cert_what, &read(cert_what, &files.cert)?),
    )?;
    let key = at(
        &files.key,
        private_key_from_pem(key_what, &read(key_what, &files.key)?),
    )?;
    let key = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| FileError {
        path: files.key.clone(),
        source: TlsError::Pem {
            what: key_what,
            message: format!(
                "cannot be used with {} ({e}); is it the key of that certificate?",
                files.cert.display()
            ),
        },
    })?;
    let cas = at(
        &files.peer_ca,
        certificates_from_pem(ca_what, &read(ca_what, &files.peer_ca)?),
    )?;
    let mut roots = RootCertStore::empty();
    for ca in &cas {
        roots.add(ca.clone()).map_err(|e| FileError {
            path: files.peer_ca.clone(),
            source: TlsError::Pem {
                what: ca_what,
                message: e.to_string(),
            },
        })?;
    }
    let crls = match &files.peer_crl {
        Some(path) => {
            let crls = at(path, crls_from_pem(crl_what, &read(crl_what, path)?))?;
            signed_by_a_ca(&crls, &cas).map_err(|message| FileError {
                path: path.clone(),
                source: TlsError::Pem {
                    what: crl_what,
                    message: format!("{message} in {}", files.peer_ca.display()),
                },
            })?;
            warn_if_out_of_date(path, &crls);
            crls
        }
        None => Vec::new(),
    };
    Ok(Loaded {
        key: Arc::new(key),
        roots: Arc::new(roots),
        crls,
    })
}

/// Every CRL must be signed by one of the CAs: the verifier would ignore a CRL of another CA
/// and then refuse every certificate whose revocation status it cannot learn.
fn signed_by_a_ca(
    crls: &[CertificateRevocationListDer<'static>],
    cas: &[CertificateDer<'static>],
) -> Result<(), String> {
    let cas: Vec<_> = cas
        .iter()
        .filter_map(|der| x509_parser::parse_x509_certificate(der).ok())
        .map(|(_, ca)| ca)
        .collect();
    for (i, crl) in crls.iter().enumerate() {
        let n = i + 1;
        let (_, parsed) = x509_parser::parse_x509_crl(crl)
            .map_err(|e| format!("CRL {n} is not a valid certificate revocation list ({e})"))?;
        let signed = cas.iter().any(|ca| {
            ca.subject().as_raw() == parsed.issuer().as_raw()
                && parsed.verify_signature(ca.public_key()).is_ok()
        });
        if !signed {
            return Err(format!(
                "CRL {n} (issuer \"{}\") is not signed by a CA",
                parsed.issuer()
            ));
        }
    }
    Ok(())
}

/// Logs a CRL whose next update is already past: the verifier refuses every certificate of
/// its CA until a fresh one is loaded.
fn warn_if_out_of_date(path: &Path, crls: &[CertificateRevocationListDer<'static>]) {
    for crl in crls {
        let Ok((_, parsed)) = x509_parser::parse_x509_crl(crl) else {
            continue;
        };
        if let Some(next) = parsed.next_update()
            && next.timestamp() < time::OffsetDateTime::now_utc().unix_timestamp()
        {
            warn!(
                file = %path.display(),
                issuer = %parsed.issuer(),
                next_update = %next,
                "CRL is out of date: every certificate of this CA is refused until a fresh CRL is loaded (gw reload)"
            );
        }
    }
}

/// The verifier builder's error, placed at the CRL file when there is one (it is the CRL
/// that does not parse), else at the CA file.
fn verifier_error(files: &TlsFiles, side: Side, message: String) -> FileError {
    let [_, _, ca_what, crl_what] = side.names();
    let (path, what) = match &files.peer_crl {
        Some(crl) => (crl.clone(), crl_what),
        None => (files.peer_ca.clone(), ca_what),
    };
    FileError {
        path,
        source: TlsError::Pem { what, message },
    }
}

fn read_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

fn leaf_fingerprint(key: &CertifiedKey) -> String {
    key.cert
        .first()
        .map_or_else(String::new, |c| fingerprint(c))
}

/// The handshake signature checks of a verifier trait, handed to the current verifier
/// (`self.verifier()`): the same three methods in `ClientCertVerifier` and
/// `ServerCertVerifier`.
macro_rules! delegate_signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.verifier().verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.verifier().verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.verifier().supported_verify_schemes()
        }
    };
}

/// The receiver's certificate and client verifier, swappable (see the module docs).
#[derive(Debug)]
pub struct ServerTls {
    files: TlsFiles,
    current: RwLock<ServerMaterial>,
}

#[derive(Debug)]
struct ServerMaterial {
    key: Arc<CertifiedKey>,
    verifier: Arc<dyn ClientCertVerifier>,
    /// The client CA's subjects, sent as hints in the certificate request. rustls borrows
    /// them from the verifier for the whole handshake, so each distinct list is kept for the
    /// life of the process: one small list per reload that changes the client CA.
    hints: &'static [DistinguishedName],
}

impl ServerTls {
    /// Loads the files; an error names the file that is wrong.
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, FileError> {
        let material = Self::prepare(&files, &[])?;
        Ok(Arc::new(Self {
            files,
            current: RwLock::new(material),
        }))
    }

    fn prepare(
        files: &TlsFiles,
        hints: &'static [DistinguishedName],
    ) -> Result<ServerMaterial, FileError> {
        let loaded = load(files, Side::Server)?;
        let subjects = loaded.roots.subjects();
        // Without CRLs the revocation settings have no effect (rustls' documentation).
        let verifier = WebPkiClientVerifier::builder_with_provider(loaded.roots, provider())
            .with_crls(loaded.crls)
            .only_check_end_entity_revocation()
            .enforce_revocation_expiration()
            .build()
            .map_err(|e| verifier_error(files, Side::Server, e.to_string()))?;
        let same = subjects.len() == hints.len()
            && subjects
                .iter()
                .zip(hints)
                .all(|(a, b)| a.as_ref() == b.as_ref());
        let hints = if same { hints } else { static_hints(subjects) };
        Ok(ServerMaterial {
            key: loaded.key,
            verifier,
            hints,
        })
    }

    /// The rustls configuration built on this (ALPN from [`alpn_protocols`], HTTP/1.1 only;
    /// the receiver sets its own).
    pub fn config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(PROTOCOL_VERSIONS)?
            .with_client_cert_verifier(self.clone())
            .with_cert_resolver(self.clone());
        // No session resumption: a resumed session skips the certificate checks, so a client
        // revoked by a reloaded CRL (or a session begun before a rotation, handed a ticket
        // while the reload ran) could resume. A full handshake costs a millisecond or so.
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        config.alpn_protocols = alpn_protocols(false);
        Ok(Arc::new(config))
    }

    /// The files this reads.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// SHA-256 fingerprint of the server certificate new handshakes get.
    pub fn fingerprint(&self) -> String {
        leaf_fingerprint(&read_lock(&self.current).key)
    }

    fn verifier(&self) -> Arc<dyn ClientCertVerifier> {
        read_lock(&self.current).verifier.clone()
    }
}

impl ResolvesServerCert for ServerTls {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(read_lock(&self.current).key.clone())
    }
}

impl ClientCertVerifier for ServerTls {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        read_lock(&self.current).hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verifier()
            .verify_client_cert(end_entity, intermediates, now)
    }

    delegate_signature_checks!();
}

/// The client-CA hint list as rustls keeps it (`'static`): leaked once per distinct list and
/// reused after, so reloads that alternate CA files (SIGHUP is outside input) leak nothing
/// more than the lists there are.
fn static_hints(subjects: Vec<DistinguishedName>) -> &'static [DistinguishedName] {
    static KNOWN: std::sync::Mutex<Vec<&'static [DistinguishedName]>> =
        std::sync::Mutex::new(Vec::new());
    let mut known = KNOWN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let same = |list: &[DistinguishedName]| {
        list.len() == subjects.len()
            && list
                .iter()
                .zip(&subjects)
                .all(|(a, b)| a.as_ref() == b.as_ref())
    };
    if let Some(found) = known.iter().copied().find(|list| same(list)) {
        return found;
    }
    let leaked: &'static [DistinguishedName] = Box::leak(subjects.into_boxed_slice());
    known.push(leaked);
    leaked
}

/// The sender's client certificate and server verifier, swappable (see the module docs).
#[derive(Debug)]
pub struct ClientTls {
    files: TlsFiles,
    current: RwLock<ClientMaterial>,
}

#[derive(Debug)]
struct ClientMaterial {
    key: Arc<CertifiedKey>,
    verifier: Arc<WebPkiServerVerifier>,
}

impl ClientTls {
    /// Loads the files; an error names the file that is wrong.
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, FileError> {
        let material = Self::prepare(&files)?;
        Ok(Arc::new(Self {
            files,
            current: RwLock::new(material),
        }))
    }

    fn prepare(files: &TlsFiles) -> Result<ClientMaterial, FileError> {
        let loaded = load(files, Side::Client)?;
        let verifier = WebPkiServerVerifier::builder_with_provider(loaded.roots, provider())
            .with_crls(loaded.crls)
            .only_check_end_entity_revocation()
            .enforce_revocation_expiration()
            .build()
            .map_err(|e| verifier_error(files, Side::Client, e.to_string()))?;
        Ok(ClientMaterial {
            key: loaded.key,
            verifier,
        })
    }

    /// The rustls configuration built on this, with ALPN `http/1.1`
    /// ([`crate::client::CLIENT_ALPN`]).
    pub fn config(self: &Arc<Self>) -> Result<Arc<ClientConfig>, TlsError> {
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(PROTOCOL_VERSIONS)?
            .dangerous()
            .with_custom_certificate_verifier(self.clone())
            .with_client_cert_resolver(self.clone());
        config.alpn_protocols = crate::client::CLIENT_ALPN
            .iter()
            .map(|p| p.to_vec())
            .collect();
        // A resumed session skips the server certificate's checks, so a CRL loaded later
        // would not apply to it; the sender keeps its connection open anyway.
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Arc::new(config))
    }

    /// The files this reads.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// SHA-256 fingerprint of the client certificate new handshakes present.
    pub fn fingerprint(&self) -> String {
        leaf_fingerprint(&read_lock(&self.current).key)
    }

    fn verifier(&self) -> Arc<WebPkiServerVerifier> {
        read_lock(&self.current).verifier.clone()
    }
}

impl ResolvesClientCert for ClientTls {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(read_lock(&self.current).key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl ServerCertVerifier for ClientTls {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verifier().verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    delegate_signature_checks!();
}

/// Reloads every side of a running gateway at once.
#[derive(Debug, Clone, Default)]
pub struct TlsReloader {
    server: Option<Arc<ServerTls>>,
    client: Option<Arc<ClientTls>>,
    ems: Option<Arc<ServerTls>>,
    after: Option<AfterReload>,
}

/// What else must learn of a successful reload (the health check's expiry dates).
#[derive(Clone)]
struct AfterReload(Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for AfterReload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AfterReload")
    }
}

impl TlsReloader {
    /// Reloads `server` (the receiver) and `client` (the sender), those present.
    pub fn new(server: Option<Arc<ServerTls>>, client: Option<Arc<ClientTls>>) -> Self {
        Self {
            server,
            client,
            ems: None,
            after: None,
        }
    }

    /// Runs `after` once every successful reload has swapped the files in.
    pub fn after_reload(mut self, after: impl Fn() + Send + Sync + 'static) -> Self {
        self.after = Some(AfterReload(Arc::new(after)));
        self
    }

    /// Reloads the EMS-facing listeners' TLS ([`crate::ems`]) too, with the other sides.
    pub fn with_ems(mut self, ems: Option<Arc<ServerTls>>) -> Self {
        self.ems = ems;
        self
    }

    /// Reads every file again and, when all of them load, makes them current for new
    /// handshakes. On an error nothing changes. Returns what is now served, one line per side.
    pub fn reload(&self) -> Result<String, FileError> {
        let server = match &self.server {
            Some(s) => {
                let hints = read_lock(&s.current).hints;
                Some((s, ServerTls::prepare(&s.files, hints)?))
            }
            None => None,
        };
        let client = match &self.client {
            Some(c) => Some((c, ClientTls::prepare(&c.files)?)),
            None => None,
        };
        let ems = match &self.ems {
            Some(s) => {
                let hints = read_lock(&s.current).hints;
                Some((s, ServerTls::prepare(&s.files, hints)?))
            }
            None => None,
        };
        let mut lines = Vec::new();
        if let Some((s, material)) = server {
            *write_lock(&s.current) = material;
            lines.push(format!(
                "receive: server certificate {} (SHA-256 {})",
                s.files.cert.display(),
                s.fingerprint()
            ));
        }
        if let Some((c, material)) = client {
            *write_lock(&c.current) = material;
            lines.push(format!(
                "send: client certificate {} (SHA-256 {})",
                c.files.cert.display(),
                c.fingerprint()
            ));
        }
        if let Some((s, material)) = ems {
            *write_lock(&s.current) = material;
            lines.push(format!(
                "ems: server certificate {} (SHA-256 {})",
                s.files.cert.display(),
                s.fingerprint()
            ));
        }
        if let Some(after) = &self.after {
            (after.0)();
        }
        Ok(lines.join("\n"))
    }

    /// [`reload`](Self::reload), logged: what is served now, or the refused file and that the
    /// previous configuration stays.
    pub fn reload_logged(&self, trigger: &str) -> Result<String, FileError> {
        let result = self.reload();
        match &result {
            Ok(summary) => info!(
                trigger,
                "certificates reloaded: {}",
                summary.replace('\n', "; ")
            ),
            Err(e) => error!(
                trigger,
                file = %e.path.display(),
                "certificate reload refused, the previous certificates, keys and CRLs stay in use: {e}"
            ),
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Alternating between two CA lists leaks each once: the second time is the same slice.
    #[test]
    fn a_hint_list_seen_before_is_reused() {
        let list = |name: &[u8]| vec![DistinguishedName::from(name.to_vec())];
        let a = static_hints(list(b"ca-a"));
        let b = static_hints(list(b"ca-b"));
        assert!(!std::ptr::eq(a, b));
        assert!(std::ptr::eq(a, static_hints(list(b"ca-a"))));
        assert!(std::ptr::eq(b, static_hints(list(b"ca-b"))));
    }
}
