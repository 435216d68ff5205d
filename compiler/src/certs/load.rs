//! Reading certificate and key files (PEM, or a single DER object).

use std::path::Path;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::CertError;

fn read_file(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            CertError::Missing {
                path: path.to_owned(),
            }
        } else {
            CertError::Read {
                path: path.to_owned(),
                source,
            }
        }
    })
}

fn invalid(path: &Path, message: impl Into<String>) -> CertError {
    CertError::Invalid {
        path: path.to_owned(),
        message: message.into(),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Reads every certificate in a PEM file (leaf first, then intermediates, as servers send
/// them), or the one certificate of a DER file. Each one is checked to be a well-formed
/// X.509 certificate.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let bytes = read_file(path)?;
    let mut certs = Vec::new();
    for item in CertificateDer::pem_slice_iter(&bytes) {
        match item {
            Ok(cert) => certs.push(cert),
            Err(e) => {
                return Err(invalid(path, format!("is not a readable PEM file ({e})")));
            }
        }
    }
    if certs.is_empty() {
        if bytes.first() == Some(&0x30) {
            certs.push(CertificateDer::from(bytes));
        } else if contains(&bytes, b"PRIVATE KEY-----") {
            return Err(invalid(
                path,
                "holds a private key, not a certificate (expected -----BEGIN CERTIFICATE-----)",
            ));
        } else {
            return Err(invalid(
                path,
                "holds no certificate (expected a PEM file with -----BEGIN CERTIFICATE-----)",
            ));
        }
    }
    for (i, cert) in certs.iter().enumerate() {
        if let Err(e) = x509_parser::parse_x509_certificate(cert) {
            let which = if certs.len() == 1 {
                "the certificate".to_owned()
            } else {
                format!("certificate {} of {}", i + 1, certs.len())
            };
            return Err(invalid(
                path,
                format!("{which} is not a valid X.509 certificate ({e})"),
            ));
        }
    }
    Ok(certs)
}

/// Reads the private key of a PEM file (PKCS#8 `PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY` or
/// SEC1 `EC PRIVATE KEY`), or of a DER file.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    let bytes = read_file(path)?;
    // Before the PEM reader: an OpenSSL "traditional" encrypted key (`Proc-Type: 4,ENCRYPTED`)
    // has headers the reader cannot decode, and would be reported as an unreadable file.
    if contains(&bytes, b"ENCRYPTED PRIVATE KEY") || contains(&bytes, b"Proc-Type: 4,ENCRYPTED") {
        return Err(invalid(
            path,
            "is encrypted with a passphrase; the gateway needs the key unencrypted (protect it with file permissions, mode 0600)",
        ));
    }
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => {
            if contains(&bytes, b"BEGIN CERTIFICATE") {
                Err(invalid(
                    path,
                    "holds a certificate, not a private key (expected -----BEGIN PRIVATE KEY-----)",
                ))
            } else if bytes.first() == Some(&0x30) {
                PrivateKeyDer::try_from(bytes.as_slice())
                    .map(|k| k.clone_key())
                    .map_err(|e| invalid(path, format!("is not a private key ({e})")))
            } else {
                Err(invalid(
                    path,
                    "holds no private key (expected a PEM file with -----BEGIN PRIVATE KEY-----)",
                ))
            }
        }
        Err(e) => Err(invalid(path, format!("is not a readable PEM file ({e})"))),
    }
}
