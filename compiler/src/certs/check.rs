//! Checks on a spec's certificate files, worded for the integration engineer who has to fix
//! them: every message names the file and says what is wrong in plain words.
//!
//! What is checked (`check_bundle`): the files exist and parse; the key matches the
//! certificate; the chain verifies to the given CA for the given usage (server or client
//! authentication) on the given day, exactly as the gateway's TLS stack (rustls-webpki)
//! will; a server certificate names the receive hostname; not yet valid or expired is an
//! error and expiring within [`EXPIRY_WARNING_DAYS`] days a warning; RSA keys under
//! [`MIN_RSA_BITS`] bits are an error. A certificate file may hold a chain: the leaf first,
//! then intermediates; every certificate in it is checked.
//!
//! Finding codes are stable (tests, JSON output and docs rely on them):
//!
//! | code | severity | meaning |
//! |---|---|---|
//! | `cert-missing`, `key-missing`, `ca-missing` | error | the file does not exist |
//! | `cert-unreadable`, `key-unreadable`, `ca-unreadable` | error | the file cannot be read or is not what it should be |
//! | `key-mismatch` | error | the private key is not the certificate's |
//! | `key-unchecked` | warning | the key file carries no public key and it could not be derived |
//! | `chain-unverified` | error | the certificate does not verify to the CA |
//! | `hostname-mismatch` | error | the server certificate does not name the receive hostname |
//! | `not-yet-valid`, `expired` | error | outside the validity period on the day checked |
//! | `expiring-soon` | warning | expires within [`EXPIRY_WARNING_DAYS`] days |
//! | `rsa-too-small` | error | an RSA key under [`MIN_RSA_BITS`] bits |
//! | `ca-not-ca` | error | a CA file holds a certificate that is not a CA |
//! | `cert-is-ca` | error | the certificate file starts with a CA certificate, not the leaf |
//! | `wrong-usage` | error | the certificate's extended key usage excludes TLS server (or client) use |
//! | `crl-missing`, `crl-unreadable` | error | a CRL file does not exist, or holds no CRL that parses |
//! | `crl-expired` | error | a CRL's next update is past: the gateway refuses every certificate of its CA |
//! | `crl-not-signed` | error | a CRL is not signed by a CA of the CA file it belongs to |

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use time::{Date, OffsetDateTime, UtcOffset};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use super::CertError;
use super::keys::{PrivateKeyInfo, PublicKey, private_key_info};
use super::load::{read_certificates, read_private_key};

/// A certificate expiring within this many days (inclusive) is a warning.
pub const EXPIRY_WARNING_DAYS: i64 = hl7gw_runtime::health::EXPIRY_WARNING_DAYS;
/// RSA keys with fewer bits are an error.
pub const MIN_RSA_BITS: usize = 2048;

/// What the certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// TLS server authentication (the gateway's receive side, a Trust's endpoint).
    Server,
    /// TLS client authentication (the gateway's send side, a Trust's engine).
    Client,
}

impl Usage {
    fn noun(self) -> &'static str {
        match self {
            Usage::Server => "server",
            Usage::Client => "client",
        }
    }
}

/// One certificate, its key and the CA it should verify to.
#[derive(Debug, Clone)]
pub struct BundleToCheck<'a> {
    /// PEM certificate file: the leaf first, then any intermediates.
    pub cert: &'a Path,
    /// Its private key, when the spec names one.
    pub key: Option<&'a Path>,
    /// The CA the certificate must verify to. Note that in a spec the CA named next to a
    /// certificate is usually the *peer's* CA (`client_ca`, `server_ca`), which is checked
    /// with [`check_ca`], not this.
    pub ca: Option<&'a Path>,
    /// Server or client authentication.
    pub usage: Usage,
    /// The hostname a server certificate must name (checked only for [`Usage::Server`]).
    pub hostname: Option<&'a str>,
    /// The day to check validity on (UTC).
    pub today: Date,
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Blocks go-live.
    Error,
    /// Reported; may be acknowledged with a reason.
    Warning,
}

/// Which file of a bundle a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The certificate (chain) file.
    Cert,
    /// The private key file.
    Key,
    /// The CA file.
    Ca,
    /// The CRL file of a CA file.
    Crl,
}

/// One problem found in a certificate file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// Stable code, see the module documentation.
    pub code: &'static str,
    /// Which file of the bundle.
    pub which: Which,
    /// The file the finding is about (as given, so relative paths stay relative).
    pub path: PathBuf,
    /// A sentence naming the file and what is wrong.
    pub message: String,
}

struct Findings {
    list: Vec<Finding>,
}

impl Findings {
    fn push(
        &mut self,
        severity: Severity,
        code: &'static str,
        which: Which,
        path: &Path,
        message: String,
    ) {
        self.list.push(Finding {
            severity,
            code,
            which,
            path: path.to_owned(),
            message,
        });
    }
    fn error(&mut self, code: &'static str, which: Which, path: &Path, message: String) {
        self.push(Severity::Error, code, which, path, message);
    }
    fn warning(&mut self, code: &'static str, which: Which, path: &Path, message: String) {
        self.push(Severity::Warning, code, which, path, message);
    }
    fn has(&self, code: &str) -> bool {
        self.list.iter().any(|f| f.code == code)
    }
}

fn codes(which: Which) -> (&'static str, &'static str) {
    match which {
        Which::Cert => ("cert-missing", "cert-unreadable"),
        Which::Key => ("key-missing", "key-unreadable"),
        Which::Ca => ("ca-missing", "ca-unreadable"),
        Which::Crl => ("crl-missing", "crl-unreadable"),
    }
}

fn what(which: Which) -> &'static str {
    match which {
        Which::Cert => "certificate file",
        Which::Key => "private key file",
        Which::Ca => "CA certificate file",
        Which::Crl => "certificate revocation list (CRL) file",
    }
}

/// Turns a load error into a finding.
fn report_load_error(out: &mut Findings, which: Which, path: &Path, err: &CertError) {
    let (missing, unreadable) = codes(which);
    match err {
        CertError::Missing { .. } => out.error(
            missing,
            which,
            path,
            format!(
                "{} does not exist (the spec names it as a {})",
                path.display(),
                what(which)
            ),
        ),
        other => out.error(unreadable, which, path, other.to_string()),
    }
}

fn load_certs(
    out: &mut Findings,
    which: Which,
    path: &Path,
) -> Option<Vec<CertificateDer<'static>>> {
    read_certificates(path)
        .map_err(|e| report_load_error(out, which, path, &e))
        .ok()
}

/// A parsed certificate with the name used for it in messages.
struct Parsed<'a> {
    der: &'a CertificateDer<'static>,
    x509: X509Certificate<'a>,
    label: String,
}

fn first_cn(x509: &X509Certificate<'_>) -> Option<String> {
    x509.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
}

fn display_name(x509: &X509Certificate<'_>) -> String {
    first_cn(x509).unwrap_or_else(|| x509.subject().to_string())
}

/// Parses the certificates of one file and names each for messages: the file itself for a
/// lone certificate or a leaf, "intermediate certificate "X" in FILE" for the rest.
fn parse_all<'a>(
    certs: &'a [CertificateDer<'static>],
    which: Which,
    path: &Path,
) -> Vec<Parsed<'a>> {
    let total = certs.len();
    certs
        .iter()
        .enumerate()
        .filter_map(|(i, der)| {
            let (_, x509) = x509_parser::parse_x509_certificate(der).ok()?;
            let label = match (which, i, total) {
                (_, _, 1) | (Which::Cert, 0, _) => path.display().to_string(),
                (Which::Cert, _, _) => format!(
                    "intermediate certificate \"{}\" in {}",
                    display_name(&x509),
                    path.display()
                ),
                _ => format!(
                    "CA certificate \"{}\" in {}",
                    display_name(&x509),
                    path.display()
                ),
            };
            Some(Parsed { der, x509, label })
        })
        .collect()
}

fn utc_date(t: OffsetDateTime) -> Date {
    t.to_offset(UtcOffset::UTC).date()
}

fn days(n: i64) -> String {
    if n == 1 {
        "1 day".to_owned()
    } else {
        format!("{n} days")
    }
}

fn check_dates(out: &mut Findings, which: Which, path: &Path, c: &Parsed<'_>, today: Date) {
    let not_before = utc_date(c.x509.validity().not_before.to_datetime());
    let not_after = utc_date(c.x509.validity().not_after.to_datetime());
    let label = &c.label;
    if not_before > today {
        let n = (not_before - today).whole_days();
        out.error(
            "not-yet-valid",
            which,
            path,
            format!(
                "{label} is not valid until {not_before}, in {}; it will be refused before then (check the issue date, or the clock of the machine that made it)",
                days(n)
            ),
        );
    } else if not_after < today {
        let n = (today - not_after).whole_days();
        out.error(
            "expired",
            which,
            path,
            format!(
                "{label} expired on {not_after}, {} ago; a renewed certificate is needed",
                days(n)
            ),
        );
    } else {
        let n = (not_after - today).whole_days();
        if n == 0 {
            out.warning(
                "expiring-soon",
                which,
                path,
                format!("{label} expires today ({not_after}); renew it now"),
            );
        } else if n <= EXPIRY_WARNING_DAYS {
            out.warning(
                "expiring-soon",
                which,
                path,
                format!(
                    "{label} expires {not_after}, in {}; arrange its renewal",
                    days(n)
                ),
            );
        }
    }
}

fn public_key(x509: &X509Certificate<'_>) -> Option<PublicKey> {
    PublicKey::from_spki(x509.public_key())
}

fn check_rsa_size(out: &mut Findings, which: Which, path: &Path, c: &Parsed<'_>) {
    if let Some(bits) = public_key(&c.x509).and_then(|k| k.rsa_bits()) {
        if bits < MIN_RSA_BITS {
            out.error(
                "rsa-too-small",
                which,
                path,
                format!(
                    "{} has an RSA key of {bits} bits; at least {MIN_RSA_BITS} bits are required (TLS libraries refuse smaller keys), so a new certificate with a bigger key (or ECDSA P-256) is needed",
                    c.label
                ),
            );
        }
    }
}

/// The leaf must not be a CA and must allow the usage when it restricts usages.
fn check_leaf_role(out: &mut Findings, path: &Path, leaf: &Parsed<'_>, usage: Usage) {
    if leaf.x509.is_ca() {
        out.error(
            "cert-is-ca",
            Which::Cert,
            path,
            format!(
                "{} starts with a CA certificate (\"{}\"), not the {} certificate itself; put the {} certificate first, then any intermediates",
                path.display(),
                display_name(&leaf.x509),
                usage.noun(),
                usage.noun()
            ),
        );
    }
    if let Ok(Some(eku)) = leaf.x509.extended_key_usage() {
        let eku = eku.value;
        let allowed = eku.any
            || match usage {
                Usage::Server => eku.server_auth,
                Usage::Client => eku.client_auth,
            };
        if !allowed {
            let (purpose, oid) = match usage {
                Usage::Server => ("a TLS server", "serverAuth"),
                Usage::Client => ("a TLS client", "clientAuth"),
            };
            out.error(
                "wrong-usage",
                Which::Cert,
                path,
                format!(
                    "{} may not be used as {purpose}: its extended key usage does not include {oid}",
                    path.display()
                ),
            );
        }
    }
}

fn check_key_match(
    out: &mut Findings,
    cert_path: &Path,
    key_path: &Path,
    leaf: &Parsed<'_>,
    key: &PrivateKeyDer<'_>,
) {
    let Some(cert_key) = public_key(&leaf.x509) else {
        out.error(
            "cert-unreadable",
            Which::Cert,
            cert_path,
            format!("the public key in {} cannot be read", cert_path.display()),
        );
        return;
    };
    let mismatch = |out: &mut Findings, key_pub: Option<&PublicKey>| {
        let message = match key_pub {
            Some(k) if !k.same_family(&cert_key) => format!(
                "{} does not belong to {}: the key file holds {} but the certificate was issued for {}",
                key_path.display(),
                cert_path.display(),
                k.family(),
                cert_key.family()
            ),
            _ => format!(
                "{} does not belong to {}: the certificate was issued for another key (they are not a pair)",
                key_path.display(),
                cert_path.display()
            ),
        };
        out.error("key-mismatch", Which::Key, key_path, message);
    };
    match private_key_info(key) {
        PrivateKeyInfo::Public(k) => {
            if !k.same_key(&cert_key) {
                mismatch(out, Some(&k));
            }
        }
        PrivateKeyInfo::Unchecked => out.warning(
            "key-unchecked",
            Which::Key,
            key_path,
            format!(
                "could not check that {} belongs to {}: the key file does not carry its public key (rewrite it as PKCS#8, e.g. `openssl pkey -in KEY -out KEY.new`)",
                key_path.display(),
                cert_path.display()
            ),
        ),
        PrivateKeyInfo::Malformed => out.error(
            "key-unreadable",
            Which::Key,
            key_path,
            format!("{} is not a valid private key", key_path.display()),
        ),
    }
}

fn names_in(x509: &X509Certificate<'_>) -> (Vec<String>, Vec<String>) {
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    if let Ok(Some(san)) = x509.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns.push((*d).to_owned()),
                GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_from_bytes(bytes) {
                        ips.push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    (dns, ips)
}

fn ip_from_bytes(bytes: &[u8]) -> Option<std::net::IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        Some(std::net::IpAddr::from(v4))
    } else if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        Some(std::net::IpAddr::from(v6))
    } else {
        None
    }
}

fn check_hostname(out: &mut Findings, path: &Path, leaf: &Parsed<'_>, hostname: &str) {
    let name = match ServerName::try_from(hostname) {
        Ok(n) => n,
        Err(_) => {
            out.error(
                "hostname-mismatch",
                Which::Cert,
                path,
                format!(
                    "cannot check {} against the receive hostname \"{hostname}\": that is not a valid DNS name or IP address",
                    path.display()
                ),
            );
            return;
        }
    };
    let ok = webpki::EndEntityCert::try_from(leaf.der)
        .map(|ee| ee.verify_is_valid_for_subject_name(&name).is_ok())
        .unwrap_or(false);
    if !ok {
        let (dns, ips) = names_in(&leaf.x509);
        let listed: Vec<String> = dns.into_iter().chain(ips).collect();
        let has = if listed.is_empty() {
            "it names no host at all in its subject alternative names (the common name alone does not count)".to_owned()
        } else {
            format!("it names only {}", listed.join(", "))
        };
        out.error(
            "hostname-mismatch",
            Which::Cert,
            path,
            format!(
                "{} does not name the receive hostname {hostname}: {has}; clients connecting to https://{hostname}/ will refuse it",
                path.display()
            ),
        );
    }
}

fn unix_time(seconds: i64) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(seconds).unwrap_or(0)))
}

fn is_time_error(e: &webpki::Error) -> bool {
    matches!(
        e,
        webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. }
    )
}

fn check_chain(
    out: &mut Findings,
    b: &BundleToCheck<'_>,
    ca_path: &Path,
    leaf: &Parsed<'_>,
    intermediates: &[CertificateDer<'static>],
    cas: &[Parsed<'_>],
) {
    let cert_path = b.cert;
    let fail = |out: &mut Findings, why: String| {
        out.error(
            "chain-unverified",
            Which::Cert,
            cert_path,
            format!(
                "{} does not verify to the CA in {}: {why}",
                cert_path.display(),
                ca_path.display()
            ),
        );
    };
    let ee = match webpki::EndEntityCert::try_from(leaf.der) {
        Ok(ee) => ee,
        Err(e) => {
            fail(
                out,
                format!("its certificate cannot be used for TLS ({e:?})"),
            );
            return;
        }
    };
    let anchors: Vec<_> = cas
        .iter()
        .filter_map(|c| webpki::anchor_from_trusted_cert(c.der).ok())
        .collect();
    if anchors.is_empty() {
        fail(out, "that file holds no usable CA certificate".to_owned());
        return;
    }
    let usage = match b.usage {
        Usage::Server => webpki::KeyUsage::server_auth(),
        Usage::Client => webpki::KeyUsage::client_auth(),
    };
    let verify = |at: UnixTime| {
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            intermediates,
            at,
            usage,
            None,
            None,
        )
        .map(|_| ())
    };
    let noon = b.today.midnight().assume_utc().unix_timestamp() + 12 * 3600;
    let result = match verify(unix_time(noon)) {
        Err(e) if is_time_error(&e) => {
            // Dates are reported on their own; check the signatures at a moment inside the
            // certificate's validity so a wrong CA is still caught.
            let nb = leaf.x509.validity().not_before.timestamp();
            let na = leaf.x509.validity().not_after.timestamp();
            let mid = nb.saturating_add(na.saturating_sub(nb) / 2);
            match verify(unix_time(mid)) {
                Err(e) if is_time_error(&e) => Ok(()),
                other => other,
            }
        }
        other => other,
    };
    let Err(e) = result else {
        return;
    };
    let why = match e {
        webpki::Error::UnknownIssuer => {
            let issuer = leaf.x509.issuer().to_string();
            let issued_by_ca = cas
                .iter()
                .any(|c| c.x509.subject().as_raw() == leaf.x509.issuer().as_raw());
            if issued_by_ca {
                format!("it names \"{issuer}\" as its issuer, but the signatures do not check out (the CA may have been re-made with a new key)")
            } else if intermediates.is_empty() {
                format!("it was issued by \"{issuer}\", which is not that CA; if \"{issuer}\" is an intermediate CA, append its certificate to {} after the {} certificate", cert_path.display(), b.usage.noun())
            } else {
                format!("it was issued by \"{issuer}\", and neither that CA nor the intermediates in the file lead to it")
            }
        }
        webpki::Error::InvalidSignatureForPublicKey => {
            "a signature in the chain does not match the issuing CA's key (same name, different key: the CA was probably re-made)".to_owned()
        }
        webpki::Error::UnsupportedSignatureAlgorithmContext(_)
        | webpki::Error::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            "a certificate in the chain is signed with an algorithm the gateway does not accept (such as SHA-1, or an RSA key under 2048 bits)".to_owned()
        }
        webpki::Error::RequiredEkuNotFoundContext(_) => {
            if out.has("wrong-usage") {
                return;
            }
            format!(
                "a certificate in the chain is not allowed for TLS {} use (extended key usage)",
                b.usage.noun()
            )
        }
        webpki::Error::CaUsedAsEndEntity => {
            if out.has("cert-is-ca") {
                return;
            }
            format!("it is a CA certificate, not a {} certificate", b.usage.noun())
        }
        webpki::Error::EndEntityUsedAsCa => {
            "a certificate that issues another in the chain is not a CA".to_owned()
        }
        other => format!("verification failed ({other:?})"),
    };
    fail(out, why);
}

/// Checks one certificate bundle: see the module documentation for what is checked.
pub fn check_bundle(b: &BundleToCheck<'_>) -> Vec<Finding> {
    let mut out = Findings { list: Vec::new() };
    let certs = load_certs(&mut out, Which::Cert, b.cert);
    let key = b.key.and_then(|path| {
        read_private_key(path)
            .map_err(|e| report_load_error(&mut out, Which::Key, path, &e))
            .ok()
    });
    let cas =
        b.ca.and_then(|path| load_certs(&mut out, Which::Ca, path).map(|c| (path, c)));

    let parsed_cas = cas
        .as_ref()
        .map(|(path, c)| parse_all(c, Which::Ca, path))
        .unwrap_or_default();
    if let Some((ca_path, _)) = &cas {
        for c in &parsed_cas {
            check_ca_cert(&mut out, ca_path, c, b.today);
        }
    }

    if let Some(certs) = &certs {
        let parsed = parse_all(certs, Which::Cert, b.cert);
        for c in &parsed {
            check_dates(&mut out, Which::Cert, b.cert, c, b.today);
            check_rsa_size(&mut out, Which::Cert, b.cert, c);
        }
        if let Some(leaf) = parsed.first() {
            check_leaf_role(&mut out, b.cert, leaf, b.usage);
            if let (Some(key_path), Some(key)) = (b.key, &key) {
                check_key_match(&mut out, b.cert, key_path, leaf, key);
            }
            if let (Usage::Server, Some(hostname)) = (b.usage, b.hostname) {
                check_hostname(&mut out, b.cert, leaf, hostname);
            }
            if let Some((ca_path, _)) = &cas {
                let intermediates = certs.get(1..).unwrap_or_default();
                check_chain(&mut out, b, ca_path, leaf, intermediates, &parsed_cas);
            }
        }
    }
    out.list
}

fn check_ca_cert(out: &mut Findings, path: &Path, c: &Parsed<'_>, today: Date) {
    check_dates(out, Which::Ca, path, c, today);
    check_rsa_size(out, Which::Ca, path, c);
    if !c.x509.is_ca() {
        out.error(
            "ca-not-ca",
            Which::Ca,
            path,
            format!(
                "{} is not a CA certificate (it lacks basicConstraints CA:TRUE), so it cannot vouch for other certificates; the file should hold the certificate of the CA that issues the peer's certificates",
                c.label
            ),
        );
    }
}

/// Checks a CA file on its own (a `client_ca` or `server_ca`): it exists, parses, holds
/// only CA certificates, each valid on `today` and with a big enough RSA key.
pub fn check_ca(path: &Path, today: Date) -> Vec<Finding> {
    let mut out = Findings { list: Vec::new() };
    if let Some(certs) = load_certs(&mut out, Which::Ca, path) {
        for c in &parse_all(&certs, Which::Ca, path) {
            check_ca_cert(&mut out, path, c, today);
        }
    }
    out.list
}

/// Checks a CRL file (a `client_crl` or `server_crl`) against the CA file it belongs to:
/// it exists and holds PEM `X509 CRL` blocks that parse, each signed by a CA of `ca` (the
/// gateway refuses a file with any other) and not past its next update on `today` (the
/// gateway then refuses every certificate of that CA).
pub fn check_crl(crl: &Path, ca: &Path, today: Date) -> Vec<Finding> {
    let mut out = Findings { list: Vec::new() };
    let bytes = match std::fs::read(crl) {
        Ok(b) => b,
        Err(source) => {
            let err = if source.kind() == std::io::ErrorKind::NotFound {
                CertError::Missing {
                    path: crl.to_owned(),
                }
            } else {
                CertError::Read {
                    path: crl.to_owned(),
                    source,
                }
            };
            report_load_error(&mut out, Which::Crl, crl, &err);
            return out.list;
        }
    };
    let unreadable = |out: &mut Findings, why: String| {
        out.error(
            "crl-unreadable",
            Which::Crl,
            crl,
            format!("{} {why}", crl.display()),
        );
    };
    let ders: Vec<_> = match CertificateRevocationListDer::pem_slice_iter(&bytes).collect() {
        Ok(ders) => ders,
        Err(e) => {
            unreadable(&mut out, format!("is not a readable PEM file ({e})"));
            return out.list;
        }
    };
    if ders.is_empty() {
        unreadable(
            &mut out,
            "holds no certificate revocation list (expected a PEM file with -----BEGIN X509 CRL-----)"
                .to_owned(),
        );
        return out.list;
    }
    let cas = read_certificates(ca).unwrap_or_default();
    let cas: Vec<_> = cas
        .iter()
        .filter_map(|der| x509_parser::parse_x509_certificate(der).ok())
        .map(|(_, c)| c)
        .collect();
    let total = ders.len();
    for (i, der) in ders.iter().enumerate() {
        let label = if total == 1 {
            crl.display().to_string()
        } else {
            format!("CRL {} of {total} in {}", i + 1, crl.display())
        };
        let parsed = match x509_parser::parse_x509_crl(der) {
            Ok((_, parsed)) => parsed,
            Err(e) => {
                out.error(
                    "crl-unreadable",
                    Which::Crl,
                    crl,
                    format!("{label} is not a valid certificate revocation list ({e})"),
                );
                continue;
            }
        };
        let issuer = parsed.issuer().to_string();
        if let Some(next) = parsed.next_update() {
            let next = utc_date(next.to_datetime());
            if next < today {
                out.error(
                    "crl-expired",
                    Which::Crl,
                    crl,
                    format!(
                        "{label} (issuer \"{issuer}\") is out of date: its next update was {next}, {} ago; the gateway refuses every certificate of that CA until a fresh CRL is in place (fetch it from the CA, then `gw reload`)",
                        days((today - next).whole_days())
                    ),
                );
            }
        }
        if cas.is_empty() {
            continue;
        }
        let named = cas
            .iter()
            .filter(|c| c.subject().as_raw() == parsed.issuer().as_raw())
            .collect::<Vec<_>>();
        if !named
            .iter()
            .any(|c| parsed.verify_signature(c.public_key()).is_ok())
        {
            let why = if named.is_empty() {
                format!(
                    "it was issued by \"{issuer}\", which is not a CA in {}",
                    ca.display()
                )
            } else {
                format!(
                    "it names \"{issuer}\" as its issuer, but that CA's key in {} did not sign it (the CA may have been re-made)",
                    ca.display()
                )
            };
            out.error(
                "crl-not-signed",
                Which::Crl,
                crl,
                format!("{label} is not signed by the CA it belongs to: {why}; the gateway refuses the file"),
            );
        }
    }
    out.list
}

/// What the go-live report shows about a certificate file (its first certificate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// Subject, RFC 4514 style ("CN=demo-test.api.example-ems.cloud, O=…").
    pub subject: String,
    /// Issuer, RFC 4514 style.
    pub issuer: String,
    /// First day of validity (UTC).
    pub not_before: Date,
    /// Last day of validity (UTC).
    pub not_after: Date,
    /// Subject alternative names of type DNS.
    pub dns_names: Vec<String>,
    /// Subject alternative names of type IP address.
    pub ip_addresses: Vec<String>,
    /// "RSA 2048", "ECDSA P-256", "Ed25519", …
    pub key: String,
    /// SHA-256 of the DER certificate, uppercase hex pairs joined by colons (as
    /// `openssl x509 -fingerprint -sha256` prints it).
    pub sha256_fingerprint: String,
    /// How many certificates the file holds (leaf plus intermediates).
    pub chain_len: usize,
}

fn parse_der(der: &[u8]) -> Result<X509Certificate<'_>, CertError> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c)
        .map_err(|e| CertError::NotACertificate {
            message: e.to_string(),
        })
}

/// Summarises the first certificate of a file, for the go-live report.
pub fn summarize(path: &Path) -> Result<CertSummary, CertError> {
    let certs = read_certificates(path)?;
    let Some(first) = certs.first() else {
        return Err(CertError::Invalid {
            path: path.to_owned(),
            message: "holds no certificate".to_owned(),
        });
    };
    let x509 = parse_der(first).map_err(|e| CertError::Invalid {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let (dns_names, ip_addresses) = names_in(&x509);
    Ok(CertSummary {
        subject: x509.subject().to_string(),
        issuer: x509.issuer().to_string(),
        not_before: utc_date(x509.validity().not_before.to_datetime()),
        not_after: utc_date(x509.validity().not_after.to_datetime()),
        dns_names,
        ip_addresses,
        key: public_key(&x509).map_or_else(|| "unreadable key".to_owned(), |k| k.describe()),
        sha256_fingerprint: hl7gw_runtime::tls::fingerprint(first),
        chain_len: certs.len(),
    })
}

/// The names a certificate is known by, to match against allowed client subjects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectNames {
    /// The whole subject, RFC 4514 style ("CN=tie-test.demo.nhs.uk, O=…").
    pub subject: String,
    /// Every common name (CN) in the subject, in order (normally one).
    pub common_names: Vec<String>,
    /// Subject alternative names of type DNS.
    pub dns_names: Vec<String>,
}

/// CN and SAN DNS names of a DER certificate.
pub fn subject_names(cert_der: &[u8]) -> Result<SubjectNames, CertError> {
    let x509 = parse_der(cert_der)?;
    let common_names = x509
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect();
    let (dns_names, _) = names_in(&x509);
    Ok(SubjectNames {
        subject: x509.subject().to_string(),
        common_names,
        dns_names,
    })
}
