//! The sender's TLS: the rustls *client* configuration (the receiver's is [`crate::tls`]).
//!
//! - ring provider, TLS 1.3 and 1.2 ([`crate::tls::provider`], [`crate::tls::PROTOCOL_VERSIONS`]).
//! - **Roots: the spec's `server_ca` only.** No system roots, no platform verifier: the
//!   Trust's engine must present a chain to the CA the spec names.
//! - **Hostname verification on**: rustls' `WebPkiServerVerifier` checks the URL's host
//!   (a DNS name or an IP address) against the certificate's subject alternative names.
//!   There is no switch to turn it, or the chain check, off.
//! - **Client certificate**: the spec's `cert` chain and `key`, presented when the engine
//!   asks (mutual TLS).
//! - ALPN `http/1.1` only: the sender speaks HTTP/1.1 with keep-alive.

use std::path::Path;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};

use crate::tls::{
    PROTOCOL_VERSIONS, TlsError, certificates_from_pem, private_key_from_pem, provider,
};

/// ALPN protocols the sender offers.
pub const CLIENT_ALPN: &[&[u8]] = &[b"http/1.1"];

/// The sender's TLS configuration from PEM files: its certificate chain, its key, and the
/// CA(s) that issue the engine's server certificate.
pub fn client_config(
    cert_pem_path: &Path,
    key_pem_path: &Path,
    server_ca_pem_path: &Path,
) -> Result<Arc<ClientConfig>, TlsError> {
    let read = |what: &'static str, path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            what,
            path: path.to_owned(),
            source,
        })
    };
    client_config_from_pem(
        &read("client certificate", cert_pem_path)?,
        &read("client key", key_pem_path)?,
        &read("server CA", server_ca_pem_path)?,
    )
}

/// [`client_config`] from PEM texts.
pub fn client_config_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    server_ca_pem: &[u8],
) -> Result<Arc<ClientConfig>, TlsError> {
    let chain = certificates_from_pem("client certificate", cert_pem)?;
    let key = private_key_from_pem("client key", key_pem)?;
    let mut roots = RootCertStore::empty();
    for ca in certificates_from_pem("server CA", server_ca_pem)? {
        roots.add(ca).map_err(|e| TlsError::Pem {
            what: "server CA",
            message: e.to_string(),
        })?;
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = CLIENT_ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_pem_is_an_error_not_a_panic() {
        assert!(matches!(
            client_config_from_pem(b"", b"", b""),
            Err(TlsError::NoCertificate { .. })
        ));
        assert!(
            client_config(Path::new("/nonexistent/a"), Path::new("b"), Path::new("c")).is_err()
        );
    }
}
