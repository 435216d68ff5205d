//! Certificates made at test time with rcgen, and the spec's development certificates.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

use super::specs;
use super::wire::Identity;

/// A certificate authority made for one test.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// Whether a leaf is valid now or expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    Current,
    /// Valid from 2020 to 2021.
    Expired,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2099, 1, 1);
        Self {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn leaf(
        &self,
        cn: &str,
        sans: &[&str],
        usage: ExtendedKeyUsagePurpose,
        validity: Validity,
    ) -> Identity {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = match validity {
            Validity::Current => rcgen::date_time_ymd(2099, 1, 1),
            Validity::Expired => rcgen::date_time_ymd(2021, 1, 1),
        };
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A client certificate `CN=cn` (and the same DNS name).
    pub fn client(&self, cn: &str, validity: Validity) -> Identity {
        self.leaf(cn, &[cn], ExtendedKeyUsagePurpose::ClientAuth, validity)
    }

    /// A server certificate for these names.
    pub fn server(&self, names: &[&str]) -> Identity {
        let cn = names.first().copied().unwrap_or("localhost");
        self.leaf(
            cn,
            names,
            ExtendedKeyUsagePurpose::ServerAuth,
            Validity::Current,
        )
    }
}

/// A gateway PKI for `--cert-dir`: one CA issuing the demo gateway's server certificate
/// (for its TEST hostname, localhost and 127.0.0.1) and trusted for client certificates,
/// written under the file names the demo spec uses (`server.crt`, `server.key`,
/// `trust-ca.crt`).
pub struct CertDir {
    pub ca: Ca,
}

impl CertDir {
    pub fn write(dir: &Path, hostname: &str) -> Self {
        let ca = Ca::new("hl7gw e2e test CA");
        let server = ca.server(&[hostname, "localhost", "127.0.0.1"]);
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("server.crt"), &server.cert_pem).unwrap();
        std::fs::write(dir.join("server.key"), &server.key_pem).unwrap();
        std::fs::write(dir.join("trust-ca.crt"), ca.pem()).unwrap();
        Self { ca }
    }
}

/// The demo Trust's engine identity from the spec's development certificates
/// (`CN=tie-test.demo.nhs.uk`, issued by the CA the TEST gateway trusts).
pub fn demo_engine() -> Identity {
    let dir = specs().join("certs/test/trust");
    Identity::from_files(&dir.join("tie-client.crt"), &dir.join("tie-client.key"))
}

/// The CA the demo Trust's engine trusts for the gateway's server certificate.
pub fn demo_gateway_ca() -> String {
    std::fs::read_to_string(specs().join("certs/test/trust/ems-ca.crt")).unwrap()
}

/// The northwest Trust's engine (`CN=ensemble-test.nwch.nhs.uk`).
pub fn northwest_engine() -> Identity {
    let dir = specs().join("certs/northwest/test/trust");
    Identity::from_files(&dir.join("tie-client.crt"), &dir.join("tie-client.key"))
}

/// The CA the northwest engine trusts for the gateway.
pub fn northwest_gateway_ca() -> String {
    std::fs::read_to_string(specs().join("certs/northwest/test/trust/ems-ca.crt")).unwrap()
}
