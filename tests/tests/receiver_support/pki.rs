//! Certificates made at test time with rcgen, and the spec's development certificates.

use std::path::Path;

use hl7gw_tests::pki::{ca, leaf_with_validity};
use rcgen::{CertifiedIssuer, ExtendedKeyUsagePurpose, KeyPair};

use hl7gw_tests::pki::Identity;
use hl7gw_tests::specs;

pub use hl7gw_tests::pki::Validity;

/// A certificate authority made for one test.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        Self { issuer: ca(name) }
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
        leaf_with_validity(&self.issuer, cn, sans, usage, validity)
    }

    /// A client certificate `CN=cn` (and the same DNS name).
    pub fn client(&self, cn: &str, validity: Validity) -> Identity {
        self.leaf(cn, &[cn], ExtendedKeyUsagePurpose::ClientAuth, validity)
    }

    /// A CRL of this CA revoking `revoked`, current for a week.
    pub fn crl(&self, revoked: &[&Identity]) -> String {
        hl7gw_tests::pki::crl(&self.issuer, revoked)
    }

    /// A server certificate for these names.
    pub fn server(&self, names: &[&str]) -> Identity {
        self.server_valid(names, Validity::Current)
    }

    /// A server certificate for these names, valid as `validity` says.
    pub fn server_valid(&self, names: &[&str], validity: Validity) -> Identity {
        let cn = names.first().copied().unwrap_or("localhost");
        self.leaf(cn, names, ExtendedKeyUsagePurpose::ServerAuth, validity)
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
    Identity::from_files(&dir.join("tie-client.crt"), &dir.join("tie-client.key")).unwrap()
}

/// The CA the demo Trust's engine trusts for the gateway's server certificate.
pub fn demo_gateway_ca() -> String {
    std::fs::read_to_string(specs().join("certs/test/trust/ems-ca.crt")).unwrap()
}

/// The northwest Trust's engine (`CN=ensemble-test.nwch.nhs.uk`).
pub fn northwest_engine() -> Identity {
    let dir = specs().join("certs/northwest/test/trust");
    Identity::from_files(&dir.join("tie-client.crt"), &dir.join("tie-client.key")).unwrap()
}

/// The eastbay Trust's engine (`CN=rhapsody-test.eastbay.nhs.uk`).
pub fn eastbay_engine() -> Identity {
    let dir = specs().join("certs/eastbay/test/trust");
    Identity::from_files(&dir.join("tie-client.crt"), &dir.join("tie-client.key")).unwrap()
}

/// The CA the eastbay engine trusts for the gateway.
pub fn eastbay_gateway_ca() -> String {
    std::fs::read_to_string(specs().join("certs/eastbay/test/trust/ems-ca.crt")).unwrap()
}

/// The CA the northwest engine trusts for the gateway.
pub fn northwest_gateway_ca() -> String {
    std::fs::read_to_string(specs().join("certs/northwest/test/trust/ems-ca.crt")).unwrap()
}
