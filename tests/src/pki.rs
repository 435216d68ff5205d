//! Throwaway certificates for tests and benchmarks, made with rcgen (ring): one CA per test
//! and leaves it issues. Kept here once so every suite makes them the same way.
//!
//! Only tests and benchmarks link this; a certificate that cannot be made ends the test, hence
//! `expect`.
#![allow(clippy::expect_used)]

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevocationReason, RevokedCertParams, SerialNumber,
};

/// A certificate and its private key, in PEM.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// Its private key (PEM).
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
    /// Valid from 2020 until ten days from now: inside every expiry warning window.
    ExpiringSoon,
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
        Validity::ExpiringSoon => time::OffsetDateTime::now_utc() + time::Duration::days(10),
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

/// A CRL of `issuer` (PEM) revoking `revoked`, issued an hour ago and current for a week.
pub fn crl(issuer: &CertifiedIssuer<'static, KeyPair>, revoked: &[&Identity]) -> String {
    let now = time::OffsetDateTime::now_utc();
    let params = CertificateRevocationListParams {
        this_update: now - time::Duration::hours(1),
        next_update: now + time::Duration::days(7),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|id| RevokedCertParams {
                serial_number: serial(id),
                revocation_time: now - time::Duration::minutes(30),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    params
        .signed_by(issuer)
        .and_then(|crl| crl.pem())
        .expect("CRL signed by the CA")
}

/// The serial number of an identity's certificate.
fn serial(identity: &Identity) -> SerialNumber {
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(identity.cert_pem.as_bytes()).expect("a PEM certificate");
    let cert = pem.parse_x509().expect("an X.509 certificate");
    SerialNumber::from_slice(cert.raw_serial())
}

fn common_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}
