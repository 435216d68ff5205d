//! Development certificates for `hl7gw certs dev SPEC`: every certificate and key the spec
//! names, plus the Trust side's, so a whole exchange can be tried on one machine.
//!
//! Per environment:
//!
//! - an **EMS CA** ("hl7gw dev EMS CA (CODE ENV)") signing the gateway's server certificate
//!   (SAN: the receive hostname, `localhost` and `127.0.0.1`, so loopback tests work) and the
//!   gateway's client certificate;
//! - a **Trust CA** ("hl7gw dev Trust CA (CODE ENV)"), written where the spec names the
//!   receive side's `client_ca` and the send side's `server_ca` (the same CA to both when they
//!   are different paths), signing the Trust engine's client certificate (CN: the first
//!   allowed client subject's CN) and the Trust endpoint's server certificate (SAN: the send
//!   URL's host, `localhost` and `127.0.0.1`);
//! - an empty **CRL** of the Trust CA where the spec names `client_crl` or `server_crl`,
//!   current until the certificates expire;
//! - in the environment's peer directory, what the Trust side needs: `trust-ca.key`,
//!   `ems-ca.crt` (so the Trust side trusts the gateway), `tie-client.crt`/`.key` and
//!   `tie-server.crt`/`.key`.
//!
//! Keys are ECDSA P-256 (fast to make, accepted everywhere), PKCS#8 PEM, written with mode
//! 0600. Certificates are valid from yesterday for the number of days asked
//! ([`DEV_VALIDITY_DAYS`] by default).
//! The EMS CA's key is not kept: re-run with `--force` to make a fresh set. Nothing is
//! written when any target exists, unless `force`.

use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Date, OffsetDateTime};

use super::CertError;

/// Dev certificates expire this many days after the day they are made, unless asked otherwise.
pub const DEV_VALIDITY_DAYS: i64 = 365;

const ORGANIZATION: &str = "hl7gw development (not for production)";

/// The receive side (Trust engine → gateway) of one environment, as the spec names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivePlan {
    /// The gateway's server certificate.
    pub server_cert: PathBuf,
    /// Its key.
    pub server_key: PathBuf,
    /// The CA the Trust engine's client certificate is checked against.
    pub client_ca: PathBuf,
    /// Where the spec names that CA's CRL (`client_crl`), if it does: an empty one is made.
    pub client_crl: Option<PathBuf>,
    /// The receive hostname the server certificate must name.
    pub hostname: String,
    /// CN of the Trust engine's client certificate: the first allowed client subject's CN,
    /// e.g. `tie-test.demo.nhs.uk`.
    pub trust_client_cn: String,
}

/// The send side (gateway → Trust endpoint) of one environment, as the spec names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendPlan {
    /// The gateway's client certificate.
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
    /// The CA the Trust endpoint's server certificate is checked against.
    pub server_ca: PathBuf,
    /// Where the spec names that CA's CRL (`server_crl`), if it does: an empty one is made.
    pub server_crl: Option<PathBuf>,
    /// The host of the send URL, named by the Trust endpoint's server certificate.
    pub trust_server_host: String,
}

/// The EMS-facing listeners (EMS → gateway, mutual TLS) of one environment, as the spec
/// names them (`ems.tls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmsPlan {
    /// The gateway's server certificate for EMS.
    pub server_cert: PathBuf,
    /// Its key.
    pub server_key: PathBuf,
    /// The CA EMS's client certificate is checked against.
    pub client_ca: PathBuf,
    /// Where the spec names that CA's CRL (`client_crl`), if it does: an empty one is made.
    pub client_crl: Option<PathBuf>,
    /// The host name EMS connects to (`ems.hostname`), when the spec names one.
    pub hostname: Option<String>,
    /// CN of EMS's client certificate: the first allowed subject's name.
    pub ems_client_cn: String,
    /// Where EMS's client certificate and key go, e.g. `certs/test/ems/`.
    pub client_dir: PathBuf,
}

/// What to make for one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvCertPlan {
    /// Environment name, e.g. `test`.
    pub env: String,
    /// Customer code, e.g. `demo`.
    pub customer_code: String,
    /// The receive side's files, when the environment receives.
    pub receive: Option<ReceivePlan>,
    /// The send side's files, when the environment sends.
    pub send: Option<SendPlan>,
    /// The EMS listeners' files, when EMS authenticates with mutual TLS.
    pub ems: Option<EmsPlan>,
    /// Where the Trust-side files go, e.g. `certs/test/trust/`.
    pub peer_dir: PathBuf,
}

/// One file `make_dev_certs` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    /// Where.
    pub path: PathBuf,
    /// What it is, e.g. "gateway server certificate (demo test)".
    pub description: String,
    /// A private key, written with mode 0600.
    pub private_key: bool,
}

/// A file to be written.
struct Output {
    path: PathBuf,
    contents: String,
    private_key: bool,
    description: String,
}

fn generate_error(what: &str, e: impl std::fmt::Display) -> CertError {
    CertError::Generate {
        what: what.to_owned(),
        message: e.to_string(),
    }
}

/// A validity period.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Validity {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From yesterday to `days` days from `today`, midnight UTC.
    pub(crate) fn dev(today: Date, days: i64) -> Result<Self, CertError> {
        let start = today.checked_sub(time::Duration::days(1));
        let end = today.checked_add(time::Duration::days(days.max(1)));
        match (start, end) {
            (Some(s), Some(e)) => Ok(Validity {
                not_before: s.midnight().assume_utc(),
                not_after: e.midnight().assume_utc(),
            }),
            _ => Err(generate_error(
                "certificate validity",
                format!("{today} is too close to the end of the calendar"),
            )),
        }
    }
}

/// A CA: its parameters (the issuer's name), key and certificate.
pub(crate) struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pub cert: Certificate,
}

impl Ca {
    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    pub(crate) fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// An empty CRL of this CA (PEM) whose next update is the end of `validity`.
    pub(crate) fn empty_crl_pem(&self, validity: Validity) -> Result<String, CertError> {
        let params = rcgen::CertificateRevocationListParams {
            this_update: validity.not_before,
            next_update: validity.not_after,
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        params
            .signed_by(&self.issuer())
            .and_then(|crl| crl.pem())
            .map_err(|e| generate_error("CRL", e))
    }
}

fn new_key(what: &str) -> Result<KeyPair, CertError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| generate_error(what, e))
}

fn distinguished_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn
}

/// A self-signed CA that may issue end-entity certificates only.
pub(crate) fn make_ca(name: &str, validity: Validity) -> Result<Ca, CertError> {
    make_self_signed_ca(name, validity, BasicConstraints::Constrained(0))
}

/// A self-signed CA that may also issue intermediate CAs (tests use it for chains).
#[cfg(test)]
pub(crate) fn make_root_ca(name: &str, validity: Validity) -> Result<Ca, CertError> {
    make_self_signed_ca(name, validity, BasicConstraints::Unconstrained)
}

fn make_self_signed_ca(
    name: &str,
    validity: Validity,
    constraints: BasicConstraints,
) -> Result<Ca, CertError> {
    let what = format!("CA \"{name}\"");
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(name);
    params.is_ca = IsCa::Ca(constraints);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    let key = new_key(&what)?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| generate_error(&what, e))?;
    Ok(Ca { params, key, cert })
}

/// An intermediate CA signed by `parent` (tests use it for chains).
#[cfg(test)]
pub(crate) fn make_intermediate(
    parent: &Ca,
    name: &str,
    validity: Validity,
) -> Result<Ca, CertError> {
    let what = format!("CA \"{name}\"");
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.use_authority_key_identifier_extension = true;
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    let key = new_key(&what)?;
    let cert = params
        .signed_by(&key, &parent.issuer())
        .map_err(|e| generate_error(&what, e))?;
    Ok(Ca { params, key, cert })
}

/// Whether `name` can go in a DNS subject alternative name.
fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn is_ip(name: &str) -> bool {
    name.parse::<std::net::IpAddr>().is_ok()
}

/// An end-entity certificate and its new key, signed by `ca`. `names` go into the subject
/// alternative names (IP addresses as IP names); names that are neither a DNS name nor an
/// IP address are left out of the SAN (they still appear as the CN when first).
pub(crate) fn make_leaf(
    ca: &Ca,
    cn: &str,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
    validity: Validity,
) -> Result<(Certificate, KeyPair), CertError> {
    let what = format!("certificate \"{cn}\"");
    let mut sans: Vec<String> = Vec::new();
    for name in names {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if (is_ip(&name) || is_dns_name(&name)) && !sans.contains(&name) {
            sans.push(name);
        }
    }
    let mut params = CertificateParams::new(sans).map_err(|e| generate_error(&what, e))?;
    params.distinguished_name = distinguished_name(cn);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    let key = new_key(&what)?;
    let cert = params
        .signed_by(&key, &ca.issuer())
        .map_err(|e| generate_error(&what, e))?;
    Ok((cert, key))
}

/// Everything one environment needs, in memory.
fn plan_outputs(plan: &EnvCertPlan, validity: Validity) -> Result<Vec<Output>, CertError> {
    let mut out = Vec::new();
    if plan.receive.is_none() && plan.send.is_none() {
        return Ok(out);
    }
    let code = &plan.customer_code;
    let env = &plan.env;
    let tag = format!("{code} {env}");
    let ems_ca = make_ca(&format!("hl7gw dev EMS CA ({tag})"), validity)?;
    let trust_ca = make_ca(&format!("hl7gw dev Trust CA ({tag})"), validity)?;
    let mut push = |path: PathBuf, contents: String, private_key: bool, description: String| {
        out.push(Output {
            path,
            contents,
            private_key,
            description,
        });
    };
    let peer = |name: &str| plan.peer_dir.join(name);
    // One CRL for the Trust CA, written wherever the spec names one (the same text at both
    // paths, so one path named twice is written once).
    let wants_crl = plan
        .receive
        .as_ref()
        .is_some_and(|r| r.client_crl.is_some())
        || plan.send.as_ref().is_some_and(|s| s.server_crl.is_some());
    let trust_crl = if wants_crl {
        Some(trust_ca.empty_crl_pem(validity)?)
    } else {
        None
    };

    if let Some(r) = &plan.receive {
        let (cert, key) = make_leaf(
            &ems_ca,
            &r.hostname,
            &[r.hostname.as_str(), "localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
            validity,
        )?;
        push(
            r.server_cert.clone(),
            cert.pem(),
            false,
            format!("gateway server certificate for {} ({tag})", r.hostname),
        );
        push(
            r.server_key.clone(),
            key.serialize_pem(),
            true,
            format!("gateway server key ({tag})"),
        );
        push(
            r.client_ca.clone(),
            trust_ca.cert.pem(),
            false,
            format!("Trust CA certificate, accepted for client certificates ({tag})"),
        );
        if let (Some(path), Some(crl)) = (&r.client_crl, &trust_crl) {
            push(
                path.clone(),
                crl.clone(),
                false,
                format!("Trust CA revocation list, empty ({tag})"),
            );
        }
        let (cert, key) = make_leaf(
            &trust_ca,
            &r.trust_client_cn,
            &[r.trust_client_cn.as_str()],
            ExtendedKeyUsagePurpose::ClientAuth,
            validity,
        )?;
        push(
            peer("tie-client.crt"),
            cert.pem(),
            false,
            format!(
                "Trust engine client certificate, CN={} ({tag})",
                r.trust_client_cn
            ),
        );
        push(
            peer("tie-client.key"),
            key.serialize_pem(),
            true,
            format!("Trust engine client key ({tag})"),
        );
    }

    if let Some(s) = &plan.send {
        let (cert, key) = make_leaf(
            &ems_ca,
            &format!("hl7gw dev gateway client ({tag})"),
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
            validity,
        )?;
        push(
            s.client_cert.clone(),
            cert.pem(),
            false,
            format!("gateway client certificate ({tag})"),
        );
        push(
            s.client_key.clone(),
            key.serialize_pem(),
            true,
            format!("gateway client key ({tag})"),
        );
        push(
            s.server_ca.clone(),
            trust_ca.cert.pem(),
            false,
            format!("Trust CA certificate, accepted for the Trust's server ({tag})"),
        );
        if let (Some(path), Some(crl)) = (&s.server_crl, &trust_crl) {
            push(
                path.clone(),
                crl.clone(),
                false,
                format!("Trust CA revocation list, empty ({tag})"),
            );
        }
        let (cert, key) = make_leaf(
            &trust_ca,
            &s.trust_server_host,
            &[s.trust_server_host.as_str(), "localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
            validity,
        )?;
        push(
            peer("tie-server.crt"),
            cert.pem(),
            false,
            format!(
                "Trust endpoint server certificate for {} ({tag})",
                s.trust_server_host
            ),
        );
        push(
            peer("tie-server.key"),
            key.serialize_pem(),
            true,
            format!("Trust endpoint server key ({tag})"),
        );
    }

    if let Some(m) = &plan.ems {
        // EMS's own CA issues both the gateway's certificate for EMS and EMS's client
        // certificate, as it issues the gateway's other certificates.
        let host = m.hostname.as_deref().unwrap_or("localhost");
        let (cert, key) = make_leaf(
            &ems_ca,
            host,
            &[host, "localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
            validity,
        )?;
        push(
            m.server_cert.clone(),
            cert.pem(),
            false,
            format!("gateway server certificate for EMS, {host} ({tag})"),
        );
        push(
            m.server_key.clone(),
            key.serialize_pem(),
            true,
            format!("gateway server key for EMS ({tag})"),
        );
        push(
            m.client_ca.clone(),
            ems_ca.cert.pem(),
            false,
            format!("EMS CA certificate, accepted for EMS's client certificates ({tag})"),
        );
        if let Some(path) = &m.client_crl {
            push(
                path.clone(),
                ems_ca.empty_crl_pem(validity)?,
                false,
                format!("EMS CA revocation list, empty ({tag})"),
            );
        }
        let (cert, key) = make_leaf(
            &ems_ca,
            &m.ems_client_cn,
            &[m.ems_client_cn.as_str()],
            ExtendedKeyUsagePurpose::ClientAuth,
            validity,
        )?;
        push(
            m.client_dir.join("ems-client.crt"),
            cert.pem(),
            false,
            format!("EMS client certificate, CN={} ({tag})", m.ems_client_cn),
        );
        push(
            m.client_dir.join("ems-client.key"),
            key.serialize_pem(),
            true,
            format!("EMS client key ({tag})"),
        );
    }

    push(
        peer("trust-ca.key"),
        trust_ca.key_pem(),
        true,
        format!("Trust CA key ({tag})"),
    );
    push(
        peer("ems-ca.crt"),
        ems_ca.cert.pem(),
        false,
        format!("EMS CA certificate, for the Trust side to trust the gateway ({tag})"),
    );
    Ok(out)
}

/// Drops exact duplicates (the same CA named as `client_ca` and `server_ca`); two different
/// contents for one path is an error.
fn dedupe(outputs: Vec<Output>) -> Result<Vec<Output>, CertError> {
    let mut kept: Vec<Output> = Vec::with_capacity(outputs.len());
    for o in outputs {
        match kept.iter().find(|k| k.path == o.path) {
            Some(k) if k.contents == o.contents => {}
            Some(k) => {
                return Err(CertError::Conflict {
                    path: o.path,
                    first: k.description.clone(),
                    second: o.description,
                });
            }
            None => kept.push(o),
        }
    }
    Ok(kept)
}

fn write_file(path: &Path, contents: &[u8], private_key: bool) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private_key {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    if private_key {
        // A key replaced with --force keeps the old file's mode unless set again; do it
        // before the secret is written.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = private_key;
    file.write_all(contents)?;
    file.sync_all()
}

/// Makes every certificate and key the plans name (see the module documentation).
///
/// All certificates are generated first; then, unless `force`, if any target exists the
/// call fails with [`CertError::WouldOverwrite`] listing them all and writes nothing.
/// Parent directories are created. Certificates are valid from the day before `today` for
/// `days` days ([`DEV_VALIDITY_DAYS`] is the usual choice).
pub fn make_dev_certs(
    plans: &[EnvCertPlan],
    force: bool,
    today: Date,
    days: i64,
) -> Result<Vec<WrittenFile>, CertError> {
    let validity = Validity::dev(today, days)?;
    let mut outputs = Vec::new();
    for plan in plans {
        outputs.extend(plan_outputs(plan, validity)?);
    }
    let outputs = dedupe(outputs)?;

    if !force {
        let existing: Vec<PathBuf> = outputs
            .iter()
            .filter(|o| std::fs::symlink_metadata(&o.path).is_ok())
            .map(|o| o.path.clone())
            .collect();
        if !existing.is_empty() {
            return Err(CertError::WouldOverwrite { paths: existing });
        }
    }

    let mut written = Vec::with_capacity(outputs.len());
    for o in outputs {
        if let Some(parent) = o.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| CertError::Write {
                path: parent.to_owned(),
                source,
            })?;
        }
        write_file(&o.path, o.contents.as_bytes(), o.private_key).map_err(|source| {
            CertError::Write {
                path: o.path.clone(),
                source,
            }
        })?;
        written.push(WrittenFile {
            path: o.path,
            description: o.description,
            private_key: o.private_key,
        });
    }
    Ok(written)
}
