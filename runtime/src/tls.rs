//! TLS for the receiver: the rustls server configuration, the client certificate's names, and
//! TLS failures sorted by reason for the metrics.
//!
//! Choices, and why:
//!
//! - **rustls 0.23 with the ring provider, passed explicitly** ([`provider`]). Default
//!   features are off everywhere in the workspace: with a second provider (aws-lc-rs) in the
//!   same build, rustls cannot pick one and panics at the first handshake.
//! - **TLS 1.3 and 1.2 only** ([`PROTOCOL_VERSIONS`]); rustls implements nothing older, so a
//!   TLS 1.1 ClientHello gets a `protocol_version` alert.
//! - **Client certificates required** and verified against the environment's client CA
//!   (rustls' `WebPkiClientVerifier`): chain, validity dates, key usage. A client without an
//!   accepted certificate fails the handshake.
//! - **The allowed subjects are checked after the handshake** (by the server, with
//!   [`peer_subjects`] and [`matching_subject`]): a certificate from the client CA alone is
//!   not enough, it must also name one of the environment's `allowed_clients`.
//! - **ALPN `http/1.1` only, unless the spec enables HTTP/2** ([`alpn_protocols`], applied by
//!   the receiver from its settings): then `h2` first, HTTP/2 when the client offers it.
//!   hyper's HTTP/2 server cannot send `100 Continue` (hyperium/hyper#2743), so a client that
//!   negotiates `h2` and waits for the 100 before its body (JDK HttpClient with
//!   `expectContinue(true)`) never gets an ACK; offered only `http/1.1`, it speaks HTTP/1.1,
//!   where hyper sends the 100. Clients that send no ALPN at all (the Java engines) get
//!   HTTP/1.1 either way.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, RootCertStore, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

/// The protocol versions the receiver accepts, most preferred first.
pub const PROTOCOL_VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// ALPN protocols offered with HTTP/2 enabled, most preferred first.
pub const ALPN_WITH_HTTP2: &[&[u8]] = &[b"h2", b"http/1.1"];

/// ALPN protocols offered by default: HTTP/1.1 only (see the module docs).
pub const ALPN_HTTP1: &[&[u8]] = &[b"http/1.1"];

/// The ALPN protocols to offer, most preferred first.
pub fn alpn_protocols(http2: bool) -> Vec<Vec<u8>> {
    let offered = if http2 { ALPN_WITH_HTTP2 } else { ALPN_HTTP1 };
    offered.iter().map(|p| p.to_vec()).collect()
}

/// A copy of `config` offering the ALPN protocols of [`alpn_protocols`].
pub fn with_alpn(config: &Arc<ServerConfig>, http2: bool) -> Arc<ServerConfig> {
    let mut config = ServerConfig::clone(config);
    config.alpn_protocols = alpn_protocols(http2);
    Arc::new(config)
}

/// The one crypto provider this workspace uses: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What went wrong building a TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// What the file should hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// PEM that could not be decoded.
    #[error("{what}: {message}")]
    Pem {
        /// What the PEM should hold.
        what: &'static str,
        /// What was wrong.
        message: String,
    },
    /// PEM that holds no certificate.
    #[error("{what}: no certificate found (expected a PEM `BEGIN CERTIFICATE` block)")]
    NoCertificate {
        /// What the PEM should hold.
        what: &'static str,
    },
    /// The client CA could not be used to verify clients.
    #[error("client CA: {0}")]
    ClientCa(String),
    /// rustls refused the configuration (for instance a key that does not match the
    /// certificate).
    #[error("server TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// A certificate, key or CRL file's bytes; the error names its role and path.
pub(crate) fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// Every item of type `T` in a PEM text, in order (other blocks are skipped).
fn pem_items<T: PemObject>(what: &'static str, pem: &[u8]) -> Result<Vec<T>, TlsError> {
    T::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            message: e.to_string(),
        })
}

/// Every certificate in a PEM text, in order.
pub fn certificates_from_pem(
    what: &'static str,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = pem_items(what, pem)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { what });
    }
    Ok(certs)
}

/// Every certificate revocation list in a PEM text (`BEGIN X509 CRL` blocks), in order; at
/// least one. The verifier parses them (see [`crate::reload`]).
pub fn crls_from_pem(
    what: &'static str,
    pem: &[u8],
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let crls = pem_items(what, pem)?;
    if crls.is_empty() {
        return Err(TlsError::Pem {
            what,
            message: "no certificate revocation list found (expected a PEM `BEGIN X509 CRL` block)"
                .to_owned(),
        });
    }
    Ok(crls)
}

/// The private key in a PEM text (PKCS#8, PKCS#1 or SEC1).
pub fn private_key_from_pem(
    what: &'static str,
    pem: &[u8],
) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::Pem {
        what,
        message: e.to_string(),
    })
}

/// The receiver's TLS configuration from PEM files: the server certificate chain, its key,
/// and the CA(s) that issue client certificates.
pub fn server_config(
    cert_pem_path: &Path,
    key_pem_path: &Path,
    client_ca_pem_path: &Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_from_pem(
        &read("server certificate", cert_pem_path)?,
        &read("server key", key_pem_path)?,
        &read("client CA", client_ca_pem_path)?,
    )
}

/// [`server_config`] from PEM texts.
pub fn server_config_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: &[u8],
) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates_from_pem("server certificate", cert_pem)?;
    let key = private_key_from_pem("server key", key_pem)?;
    let mut roots = RootCertStore::empty();
    for ca in certificates_from_pem("client CA", client_ca_pem)? {
        roots
            .add(ca)
            .map_err(|e| TlsError::ClientCa(e.to_string()))?;
    }
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError::ClientCa(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(PROTOCOL_VERSIONS)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = alpn_protocols(false);
    Ok(Arc::new(config))
}

/// SHA-256 of a DER certificate, uppercase hex pairs joined by colons (as `openssl x509
/// -fingerprint -sha256` prints it): how logs, `gw reload` and the go-live report name a
/// certificate.
pub fn fingerprint(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The names a certificate is known by, for matching against allowed clients: `CN=…` for
/// every common name of the subject, then `DNS:…` for every DNS subject alternative name.
/// Empty when the certificate cannot be parsed (it was verified, so that does not happen).
pub fn peer_subjects(cert_der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert_der) else {
        return Vec::new();
    };
    let mut out: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .map(|cn| format!("CN={cn}"))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                out.push(format!("DNS:{dns}"));
            }
        }
    }
    out
}

/// The first entry of `allowed` that one of the peer's names matches.
///
/// An allowed entry is `CN=value` (the common name, compared exactly) or `DNS:name` (a DNS
/// subject alternative name, compared ignoring ASCII case, as DNS does). The `CN=` and
/// `DNS:` prefixes themselves are case-insensitive. Any other form matches nothing: a typo
/// in the spec locks the client out rather than letting everyone in. An empty list matches
/// nothing.
pub fn matching_subject<'a, S: AsRef<str>>(
    peer_subjects: &[String],
    allowed: &'a [S],
) -> Option<&'a str> {
    allowed.iter().map(AsRef::as_ref).find(|entry| {
        let entry = entry.trim();
        if let Some(cn) = strip_prefix_ignore_case(entry, "CN=") {
            peer_subjects
                .iter()
                .filter_map(|p| p.strip_prefix("CN="))
                .any(|p| p == cn)
        } else if let Some(dns) = strip_prefix_ignore_case(entry, "DNS:") {
            peer_subjects
                .iter()
                .filter_map(|p| p.strip_prefix("DNS:"))
                .any(|p| p.eq_ignore_ascii_case(dns))
        } else {
            false
        }
    })
}

/// Whether one of the peer's names is allowed (see [`matching_subject`]).
pub fn subject_allowed<S: AsRef<str>>(peer_subjects: &[String], allowed: &[S]) -> bool {
    matching_subject(peer_subjects, allowed).is_some()
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        text.get(prefix.len()..)
    } else {
        None
    }
}

/// Why a TLS handshake failed, as counted in `hl7gw_tls_failures_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsFailure {
    /// The client sent no certificate.
    NoClientCert,
    /// The client certificate was not issued by the client CA.
    UnknownCa,
    /// The client certificate has expired or is not valid yet.
    Expired,
    /// The client certificate is listed in the CRL of its CA (`client_crl`).
    Revoked,
    /// The client certificate was refused for another reason (wrong key usage, bad
    /// signature, unreadable, revocation status unknown).
    BadCert,
    /// The client spoke something else: an old TLS version, no common cipher suite, plain
    /// HTTP, garbage.
    Protocol,
    /// The client aborted the handshake with an alert (often: it does not trust the server
    /// certificate).
    ClientAlert,
    /// The handshake did not finish in time.
    Timeout,
    /// The connection failed or closed during the handshake.
    Io,
    /// Anything else.
    Other,
}

impl TlsFailure {
    /// Every reason, for pre-registering metrics.
    pub const ALL: [TlsFailure; 10] = [
        Self::NoClientCert,
        Self::UnknownCa,
        Self::Expired,
        Self::Revoked,
        Self::BadCert,
        Self::Protocol,
        Self::ClientAlert,
        Self::Timeout,
        Self::Io,
        Self::Other,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoClientCert => "no_client_cert",
            Self::UnknownCa => "unknown_ca",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::BadCert => "bad_cert",
            Self::Protocol => "protocol",
            Self::ClientAlert => "client_alert",
            Self::Timeout => "timeout",
            Self::Io => "io",
            Self::Other => "other",
        }
    }

    /// Sorts a handshake error from tokio-rustls (an `io::Error`, wrapping a
    /// `rustls::Error` when TLS itself failed).
    pub fn classify(error: &io::Error) -> Self {
        match error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(tls) => Self::from_rustls(tls),
            None if error.kind() == io::ErrorKind::TimedOut => Self::Timeout,
            None => Self::Io,
        }
    }

    /// Sorts a rustls error.
    pub fn from_rustls(error: &rustls::Error) -> Self {
        use rustls::Error as E;
        match error {
            E::NoCertificatesPresented => Self::NoClientCert,
            E::InvalidCertificate(cert) => match cert {
                CertificateError::UnknownIssuer => Self::UnknownCa,
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. } => Self::Expired,
                CertificateError::Revoked => Self::Revoked,
                _ => Self::BadCert,
            },
            E::InappropriateMessage { .. }
            | E::InappropriateHandshakeMessage { .. }
            | E::InvalidMessage(_)
            | E::PeerIncompatible(_)
            | E::PeerMisbehaved(_)
            | E::PeerSentOversizedRecord
            | E::NoApplicationProtocol
            | E::DecryptError => Self::Protocol,
            E::AlertReceived(_) => Self::ClientAlert,
            _ => Self::Other,
        }
    }
}

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn subjects_match_by_cn_exactly_and_dns_ignoring_case() {
        let peer = names(&["CN=tie-test.demo.nhs.uk", "DNS:TIE.demo.nhs.uk"]);
        assert!(subject_allowed(&peer, &["CN=tie-test.demo.nhs.uk"]));
        assert!(subject_allowed(&peer, &["cn=tie-test.demo.nhs.uk"]));
        assert!(!subject_allowed(&peer, &["CN=TIE-TEST.demo.nhs.uk"]));
        assert!(subject_allowed(&peer, &["DNS:tie.demo.nhs.uk"]));
        assert!(subject_allowed(&peer, &["dns:tie.DEMO.nhs.uk"]));
        assert!(!subject_allowed(&peer, &["DNS:tie-test.demo.nhs.uk"]));
        assert!(!subject_allowed(&peer, &["tie-test.demo.nhs.uk"]));
        assert!(!subject_allowed(&peer, &["CN=tie-test"]));
        assert!(!subject_allowed::<&str>(&peer, &[]));
        assert_eq!(
            matching_subject(&peer, &["CN=other", "DNS:tie.demo.nhs.uk"]),
            Some("DNS:tie.demo.nhs.uk")
        );
    }

    #[test]
    fn rustls_errors_are_sorted() {
        use rustls::Error as E;
        assert_eq!(
            TlsFailure::from_rustls(&E::NoCertificatesPresented),
            TlsFailure::NoClientCert
        );
        assert_eq!(
            TlsFailure::from_rustls(&E::InvalidCertificate(CertificateError::UnknownIssuer)),
            TlsFailure::UnknownCa
        );
        assert_eq!(
            TlsFailure::from_rustls(&E::InvalidCertificate(CertificateError::Expired)),
            TlsFailure::Expired
        );
        assert_eq!(
            TlsFailure::from_rustls(&E::InvalidCertificate(CertificateError::Revoked)),
            TlsFailure::Revoked
        );
        let wrapped = io::Error::new(io::ErrorKind::InvalidData, E::NoCertificatesPresented);
        assert_eq!(TlsFailure::classify(&wrapped), TlsFailure::NoClientCert);
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert_eq!(TlsFailure::classify(&eof), TlsFailure::Io);
    }

    #[test]
    fn bad_pem_is_an_error_not_a_panic() {
        assert!(matches!(
            server_config_from_pem(b"", b"", b""),
            Err(TlsError::NoCertificate { .. })
        ));
        assert!(
            certificates_from_pem(
                "x",
                b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"
            )
            .is_err()
        );
        assert!(peer_subjects(b"not a certificate").is_empty());
    }
}
