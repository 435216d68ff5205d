//! Throwaway certificates for tests and benchmarks, made with rcgen (ring): one CA per test
//! and leaves it issues. Kept here once so every suite makes them the same way.
//!
//! Only tests and benchmarks link this; a certificate that cannot be made ends the test, hence
//! `expect`.
#![allow(clippy::expect_used)]

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

/// A certificate and its private key, in PEM.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
}

impl Identity {
    /// A certificate and key already on disk, such as a spec's development certificates.
    pub fn from_files(cert: &Path, key: &Path) -> std::io::Result<Self> {
        Ok(Self {
            cert_pem: std::fs::read_to_string(cert)?,
            key_pem: std::fs::read_to_string(key)?,
        })
    }
}

/// Whether a leaf is valid now or long expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// Valid from 2020 to 2099.
    Current,
    /// Valid from 2020 to 2021.
    Expired,
}

/// A self-signed CA named `name`, valid from 2020 to 2099, that may issue leaves only.
pub fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2099, 1, 1);
    let key = KeyPair::generate().expect("key generation");
    CertifiedIssuer::self_signed(params, key).expect("self-signed CA")
}

/// A current leaf for `cn` with the DNS names or IP addresses `sans`, for `usage`.
pub fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    cn: &str,
    sans: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> Identity {
    leaf_with_validity(issuer, cn, sans, usage, Validity::Current)
}

/// A leaf as [`leaf`] makes it, current or expired.
pub fn leaf_with_validity(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    cn: &str,
    sans: &[&str],
    usage: ExtendedKeyUsagePurpose,
    validity: Validity,
) -> Identity {
    let names: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
    let mut params = CertificateParams::new(names).expect("subject alternative names");
    params.distinguished_name = common_name(cn);
    params.extended_key_usages = vec![usage];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = match validity {
        Validity::Current => rcgen::date_time_ymd(2099, 1, 1),
        Validity::Expired => rcgen::date_time_ymd(2021, 1, 1),
    };
    let key = KeyPair::generate().expect("key generation");
    let cert = params
        .signed_by(&key, issuer)
        .expect("leaf signed by the CA");
    Identity {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn common_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}
