//! Tests of the certificate checks against certificates made by `certs::dev`.

use std::path::{Path, PathBuf};

use rcgen::ExtendedKeyUsagePurpose;
use time::{Date, Duration, Month};

use super::dev::{Validity, make_ca, make_intermediate, make_leaf, make_root_ca};
use super::*;

fn today() -> Date {
    Date::from_calendar_date(2026, Month::March, 14).unwrap()
}

fn plans(root: &Path) -> Vec<EnvCertPlan> {
    let test = root.join("certs/test");
    let prod = root.join("certs/prod");
    vec![
        EnvCertPlan {
            env: "test".into(),
            customer_code: "demo".into(),
            receive: Some(ReceivePlan {
                server_cert: test.join("server.crt"),
                server_key: test.join("server.key"),
                client_ca: test.join("trust-client-ca.crt"),
                client_crl: Some(test.join("trust-client-ca.crl")),
                hostname: "demo-test.api.example-ems.cloud".into(),
                trust_client_cn: "tie-test.demo.nhs.uk".into(),
            }),
            send: Some(SendPlan {
                client_cert: test.join("client.crt"),
                client_key: test.join("client.key"),
                server_ca: test.join("trust-server-ca.crt"),
                server_crl: None,
                trust_server_host: "tie-test.demo.nhs.uk".into(),
            }),
            ems: None,
            peer_dir: test.join("trust"),
        },
        EnvCertPlan {
            env: "prod".into(),
            customer_code: "demo".into(),
            receive: Some(ReceivePlan {
                server_cert: prod.join("server.crt"),
                server_key: prod.join("server.key"),
                client_ca: prod.join("trust-ca.crt"),
                client_crl: Some(prod.join("trust-ca.crl")),
                hostname: "demo.api.example-ems.cloud".into(),
                trust_client_cn: "tie.demo.nhs.uk".into(),
            }),
            send: Some(SendPlan {
                client_cert: prod.join("client.crt"),
                client_key: prod.join("client.key"),
                // the same path as client_ca: written once
                server_ca: prod.join("trust-ca.crt"),
                // the same CRL path too: written once
                server_crl: Some(prod.join("trust-ca.crl")),
                trust_server_host: "tie.demo.nhs.uk".into(),
            }),
            ems: None,
            peer_dir: prod.join("trust"),
        },
    ]
}

fn bundle<'a>(
    cert: &'a Path,
    key: Option<&'a Path>,
    ca: Option<&'a Path>,
    usage: Usage,
    hostname: Option<&'a str>,
) -> BundleToCheck<'a> {
    BundleToCheck {
        cert,
        key,
        ca,
        usage,
        hostname,
        today: today(),
    }
}

fn codes(findings: &[Finding]) -> Vec<&'static str> {
    findings.iter().map(|f| f.code).collect()
}

fn assert_clean(findings: &[Finding]) {
    assert!(findings.is_empty(), "unexpected findings: {findings:#?}");
}

/// Makes the dev set in a tempdir.
fn dev_set() -> (tempfile::TempDir, Vec<EnvCertPlan>, Vec<WrittenFile>) {
    let dir = tempfile::tempdir().unwrap();
    let plans = plans(dir.path());
    let written = make_dev_certs(&plans, false, today(), DEV_VALIDITY_DAYS).unwrap();
    (dir, plans, written)
}

#[test]
fn dev_set_passes_every_check() {
    let (_dir, plans, written) = dev_set();
    // test: 4 gateway files + 2 CA copies + 1 CRL + 6 peer files; prod: the CA and its CRL
    // once each.
    assert_eq!(written.len(), 13 + 12, "{written:#?}");
    for plan in &plans {
        let r = plan.receive.as_ref().unwrap();
        let s = plan.send.as_ref().unwrap();
        // The empty CRL of the Trust CA, where the spec names one.
        for (crl, ca) in [(&r.client_crl, &r.client_ca), (&s.server_crl, &s.server_ca)] {
            if let Some(crl) = crl {
                assert_clean(&check_crl(crl, ca, today()));
            }
        }
        let ems_ca = plan.peer_dir.join("ems-ca.crt");
        // The gateway's server certificate, as the Trust's engine sees it.
        for host in [r.hostname.as_str(), "localhost", "127.0.0.1"] {
            assert_clean(&check_bundle(&bundle(
                &r.server_cert,
                Some(&r.server_key),
                Some(&ems_ca),
                Usage::Server,
                Some(host),
            )));
        }
        // The gateway's client certificate, as the Trust's endpoint sees it.
        assert_clean(&check_bundle(&bundle(
            &s.client_cert,
            Some(&s.client_key),
            Some(&ems_ca),
            Usage::Client,
            None,
        )));
        // The Trust engine's client certificate verifies against client_ca for client use.
        assert_clean(&check_bundle(&bundle(
            &plan.peer_dir.join("tie-client.crt"),
            Some(&plan.peer_dir.join("tie-client.key")),
            Some(&r.client_ca),
            Usage::Client,
            None,
        )));
        // The Trust endpoint's server certificate verifies against server_ca.
        for host in [s.trust_server_host.as_str(), "localhost", "127.0.0.1"] {
            assert_clean(&check_bundle(&bundle(
                &plan.peer_dir.join("tie-server.crt"),
                Some(&plan.peer_dir.join("tie-server.key")),
                Some(&s.server_ca),
                Usage::Server,
                Some(host),
            )));
        }
        for ca in [&r.client_ca, &s.server_ca, &ems_ca] {
            assert_clean(&check_ca(ca, today()));
        }
        // One Trust CA per environment, written to both names.
        assert_eq!(
            std::fs::read(&r.client_ca).unwrap(),
            std::fs::read(&s.server_ca).unwrap()
        );
        // The Trust CA key is the client_ca's key (the only finding: it is a CA).
        let ca_pair = check_bundle(&bundle(
            &r.client_ca,
            Some(&plan.peer_dir.join("trust-ca.key")),
            None,
            Usage::Client,
            None,
        ));
        assert_eq!(codes(&ca_pair), ["cert-is-ca"]);

        let names =
            subject_names(&read_certificates(&plan.peer_dir.join("tie-client.crt")).unwrap()[0])
                .unwrap();
        assert_eq!(names.common_names, [r.trust_client_cn.as_str()]);
        assert_eq!(names.dns_names, [r.trust_client_cn.as_str()]);

        let summary = summarize(&r.server_cert).unwrap();
        assert_eq!(
            summary.dns_names,
            [r.hostname.clone(), "localhost".to_owned()]
        );
        assert_eq!(summary.ip_addresses, ["127.0.0.1"]);
        assert_eq!(summary.key, "ECDSA P-256");
        assert_eq!(summary.not_before, today() - Duration::days(1));
        assert_eq!(
            summary.not_after,
            today() + Duration::days(DEV_VALIDITY_DAYS)
        );
        assert_eq!(summary.chain_len, 1);
        assert!(summary.subject.contains(&format!("CN={}", r.hostname)));
        assert!(
            summary
                .issuer
                .contains(&format!("hl7gw dev EMS CA (demo {})", plan.env))
        );
        assert_eq!(summary.sha256_fingerprint.len(), 32 * 3 - 1);
    }
    let ca = summarize(&plans[0].receive.as_ref().unwrap().client_ca).unwrap();
    assert!(
        ca.subject.contains("CN=hl7gw dev Trust CA (demo test)"),
        "{}",
        ca.subject
    );
}

#[cfg(unix)]
#[test]
fn keys_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, _plans, written) = dev_set();
    let mut keys = 0;
    for f in &written {
        let mode = std::fs::metadata(&f.path).unwrap().permissions().mode() & 0o777;
        let is_key = f.path.extension().is_some_and(|e| e == "key");
        assert_eq!(f.private_key, is_key, "{f:?}");
        if is_key {
            keys += 1;
            assert_eq!(mode, 0o600, "{}", f.path.display());
        } else {
            assert_eq!(mode & 0o077 & !0o044, 0, "{}", f.path.display());
        }
    }
    assert_eq!(keys, 2 * 5);
}

#[cfg(unix)]
#[test]
fn force_replaces_and_keeps_keys_private() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, plans, written) = dev_set();
    let key = &plans[0].receive.as_ref().unwrap().server_key;
    std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let before = std::fs::read(key).unwrap();
    let again = make_dev_certs(&plans, true, today(), DEV_VALIDITY_DAYS).unwrap();
    assert_eq!(again.len(), written.len());
    assert_ne!(std::fs::read(key).unwrap(), before);
    let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn second_run_without_force_refuses_and_writes_nothing() {
    let (_dir, plans, written) = dev_set();
    let snapshot: Vec<(PathBuf, Vec<u8>)> = written
        .iter()
        .map(|f| (f.path.clone(), std::fs::read(&f.path).unwrap()))
        .collect();
    // Remove one file: the run must still refuse, and not recreate it.
    let removed = plans[1].peer_dir.join("tie-server.crt");
    std::fs::remove_file(&removed).unwrap();
    let err = make_dev_certs(&plans, false, today(), DEV_VALIDITY_DAYS).unwrap_err();
    match &err {
        CertError::WouldOverwrite { paths } => {
            assert_eq!(paths.len(), written.len() - 1);
            assert!(!paths.contains(&removed));
        }
        other => panic!("expected WouldOverwrite, got {other:?}"),
    }
    assert!(err.to_string().contains("--force"), "{err}");
    assert!(!removed.exists());
    for (path, bytes) in snapshot.iter().filter(|(p, _)| *p != removed) {
        assert_eq!(&std::fs::read(path).unwrap(), bytes, "{}", path.display());
    }
}

#[test]
fn one_path_for_two_different_files_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut plans = plans(dir.path());
    plans[1].receive.as_mut().unwrap().server_cert =
        plans[0].receive.as_ref().unwrap().server_cert.clone();
    let err = make_dev_certs(&plans, false, today(), DEV_VALIDITY_DAYS).unwrap_err();
    assert!(matches!(err, CertError::Conflict { .. }), "{err:?}");
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}

#[test]
fn wrong_hostname() {
    let (_dir, plans, _) = dev_set();
    let r = plans[0].receive.as_ref().unwrap();
    let f = check_bundle(&bundle(
        &r.server_cert,
        Some(&r.server_key),
        None,
        Usage::Server,
        Some("demo.api.example-ems.cloud"),
    ));
    assert_eq!(codes(&f), ["hostname-mismatch"]);
    assert_eq!(f[0].which, Which::Cert);
    assert!(
        f[0].message
            .contains("demo-test.api.example-ems.cloud, localhost, 127.0.0.1"),
        "{}",
        f[0].message
    );
    // Hostnames are not checked on client certificates.
    let s = plans[0].send.as_ref().unwrap();
    assert_clean(&check_bundle(&bundle(
        &s.client_cert,
        None,
        None,
        Usage::Client,
        Some("elsewhere.example"),
    )));
}

#[test]
fn key_from_another_certificate() {
    let (_dir, plans, _) = dev_set();
    let r = plans[0].receive.as_ref().unwrap();
    let s = plans[0].send.as_ref().unwrap();
    let f = check_bundle(&bundle(
        &r.server_cert,
        Some(&s.client_key),
        None,
        Usage::Server,
        None,
    ));
    assert_eq!(codes(&f), ["key-mismatch"]);
    assert_eq!(f[0].which, Which::Key);
    assert!(f[0].message.contains("client.key"), "{}", f[0].message);
    assert!(f[0].message.contains("server.crt"), "{}", f[0].message);
}

#[test]
fn signed_by_another_ca() {
    let (_dir, plans, _) = dev_set();
    let r = plans[0].receive.as_ref().unwrap();
    // The gateway's server certificate is signed by the EMS CA, not the Trust CA.
    let f = check_bundle(&bundle(
        &r.server_cert,
        Some(&r.server_key),
        Some(&r.client_ca),
        Usage::Server,
        Some(&r.hostname),
    ));
    assert_eq!(codes(&f), ["chain-unverified"]);
    assert!(
        f[0].message.contains("hl7gw dev EMS CA (demo test)"),
        "{}",
        f[0].message
    );
    // And test's certificate against prod's EMS CA: same kind of name, another CA.
    let f = check_bundle(&bundle(
        &r.server_cert,
        None,
        Some(&plans[1].peer_dir.join("ems-ca.crt")),
        Usage::Server,
        None,
    ));
    assert_eq!(codes(&f), ["chain-unverified"]);
}

/// Writes a CA and a leaf it signed, with the leaf valid `from`..`to` days from today.
fn ca_and_leaf(
    dir: &Path,
    usage: ExtendedKeyUsagePurpose,
    from: i64,
    to: i64,
) -> (PathBuf, PathBuf, PathBuf) {
    let ca_validity = Validity {
        not_before: (today() - Duration::days(1000)).midnight().assume_utc(),
        not_after: (today() + Duration::days(1000)).midnight().assume_utc(),
    };
    let ca = make_ca("test CA", ca_validity).unwrap();
    let leaf_validity = Validity {
        not_before: (today() + Duration::days(from)).midnight().assume_utc(),
        not_after: (today() + Duration::days(to)).midnight().assume_utc(),
    };
    let (cert, key) =
        make_leaf(&ca, "leaf.example", &["leaf.example"], usage, leaf_validity).unwrap();
    let ca_path = dir.join("ca.crt");
    let cert_path = dir.join("leaf.crt");
    let key_path = dir.join("leaf.key");
    std::fs::write(&ca_path, ca.cert.pem()).unwrap();
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (ca_path, cert_path, key_path)
}

#[test]
fn expired() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = ca_and_leaf(dir.path(), ExtendedKeyUsagePurpose::ServerAuth, -400, -35);
    let f = check_bundle(&bundle(
        &cert,
        Some(&key),
        Some(&ca),
        Usage::Server,
        Some("leaf.example"),
    ));
    assert_eq!(codes(&f), ["expired"]);
    assert_eq!(f[0].severity, Severity::Error);
    let expected = format!(
        "{} expired on {}, 35 days ago",
        cert.display(),
        today() - Duration::days(35)
    );
    assert!(f[0].message.starts_with(&expected), "{}", f[0].message);
}

#[test]
fn expired_and_signed_by_another_ca_reports_both() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, _) = ca_and_leaf(dir.path(), ExtendedKeyUsagePurpose::ServerAuth, -400, -35);
    let other = tempfile::tempdir().unwrap();
    let (other_ca, _, _) = ca_and_leaf(other.path(), ExtendedKeyUsagePurpose::ServerAuth, -1, 100);
    let f = check_bundle(&bundle(&cert, None, Some(&other_ca), Usage::Server, None));
    assert_eq!(codes(&f), ["expired", "chain-unverified"]);
}

#[test]
fn expiring_in_ten_days_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = ca_and_leaf(dir.path(), ExtendedKeyUsagePurpose::ServerAuth, -300, 10);
    let f = check_bundle(&bundle(
        &cert,
        Some(&key),
        Some(&ca),
        Usage::Server,
        Some("leaf.example"),
    ));
    assert_eq!(codes(&f), ["expiring-soon"]);
    assert_eq!(f[0].severity, Severity::Warning);
    let expected = format!(
        "{} expires {}, in 10 days",
        cert.display(),
        today() + Duration::days(10)
    );
    assert!(f[0].message.starts_with(&expected), "{}", f[0].message);

    // 31 days is fine, 30 is not.
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, _) = ca_and_leaf(dir.path(), ExtendedKeyUsagePurpose::ServerAuth, -300, 31);
    assert_clean(&check_bundle(&bundle(
        &cert,
        None,
        None,
        Usage::Server,
        None,
    )));
    let (_, cert, _) = ca_and_leaf(dir.path(), ExtendedKeyUsagePurpose::ServerAuth, -300, 30);
    assert_eq!(
        codes(&check_bundle(&bundle(
            &cert,
            None,
            None,
            Usage::Server,
            None
        ))),
        ["expiring-soon"]
    );
}

#[test]
fn not_yet_valid() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = ca_and_leaf(dir.path(), ExtendedKeyUsagePurpose::ClientAuth, 3, 300);
    let f = check_bundle(&bundle(&cert, Some(&key), Some(&ca), Usage::Client, None));
    assert_eq!(codes(&f), ["not-yet-valid"]);
    assert!(f[0].message.contains("in 3 days"), "{}", f[0].message);
}

#[test]
fn client_certificate_used_as_server() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = ca_and_leaf(dir.path(), ExtendedKeyUsagePurpose::ClientAuth, -1, 300);
    let f = check_bundle(&bundle(
        &cert,
        Some(&key),
        Some(&ca),
        Usage::Server,
        Some("leaf.example"),
    ));
    assert_eq!(codes(&f), ["wrong-usage"]);
}

#[test]
fn ca_in_place_of_the_leaf_and_leaf_in_place_of_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, _) = ca_and_leaf(dir.path(), ExtendedKeyUsagePurpose::ServerAuth, -1, 300);
    let f = check_bundle(&bundle(&ca, None, Some(&ca), Usage::Server, None));
    assert_eq!(codes(&f), ["cert-is-ca"]);
    let f = check_ca(&cert, today());
    assert_eq!(codes(&f), ["ca-not-ca"]);
    assert_eq!(f[0].which, Which::Ca);
    // A leaf given as the CA of a bundle.
    let f = check_bundle(&bundle(&cert, None, Some(&cert), Usage::Server, None));
    assert!(codes(&f).contains(&"ca-not-ca"), "{f:#?}");
}

#[test]
fn chain_with_intermediate() {
    let dir = tempfile::tempdir().unwrap();
    let validity = Validity::dev(today(), DEV_VALIDITY_DAYS).unwrap();
    let root = make_root_ca("test root", validity).unwrap();
    let inter = make_intermediate(&root, "test intermediate", validity).unwrap();
    let (leaf, key) = make_leaf(
        &inter,
        "leaf.example",
        &["leaf.example"],
        ExtendedKeyUsagePurpose::ServerAuth,
        validity,
    )
    .unwrap();
    let root_path = dir.path().join("root.crt");
    let full = dir.path().join("full.crt");
    let bare = dir.path().join("bare.crt");
    let key_path = dir.path().join("leaf.key");
    std::fs::write(&root_path, root.cert.pem()).unwrap();
    std::fs::write(&full, format!("{}{}", leaf.pem(), inter.cert.pem())).unwrap();
    std::fs::write(&bare, leaf.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();

    assert_clean(&check_bundle(&bundle(
        &full,
        Some(&key_path),
        Some(&root_path),
        Usage::Server,
        Some("leaf.example"),
    )));
    assert_eq!(summarize(&full).unwrap().chain_len, 2);
    let f = check_bundle(&bundle(
        &bare,
        Some(&key_path),
        Some(&root_path),
        Usage::Server,
        Some("leaf.example"),
    ));
    assert_eq!(codes(&f), ["chain-unverified"]);
    assert!(
        f[0].message.contains("append its certificate"),
        "{}",
        f[0].message
    );
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/certs")
        .join(name)
}

#[test]
fn rsa_1024_is_too_small() {
    let cert = fixture("rsa1024.crt");
    let key = fixture("rsa1024.key");
    let summary = summarize(&cert).unwrap();
    assert_eq!(summary.key, "RSA 1024");
    // As `openssl x509 -noout -fingerprint -sha256` prints it.
    assert_eq!(
        summary.sha256_fingerprint,
        "76:CA:7B:29:52:3A:6A:F4:2D:75:21:A4:8A:51:68:07:9D:1B:A6:C9:42:CB:86:F2:C3:0D:3B:42:0F:CA:73:E4"
    );
    assert_eq!(summary.subject, "CN=rsa1024.test.invalid");
    let day = summary.not_before + Duration::days(1);
    let f = check_bundle(&BundleToCheck {
        cert: &cert,
        key: Some(&key),
        ca: None,
        usage: Usage::Server,
        hostname: Some("rsa1024.test.invalid"),
        today: day,
    });
    // The PKCS#1 key is read without a crypto library and matches.
    assert_eq!(codes(&f), ["rsa-too-small"]);
    assert!(f[0].message.contains("1024 bits"), "{}", f[0].message);

    // An EC key with an RSA certificate.
    let (_dir, plans, _) = dev_set();
    let f = check_bundle(&BundleToCheck {
        cert: &cert,
        key: Some(&plans[0].receive.as_ref().unwrap().server_key),
        ca: None,
        usage: Usage::Server,
        hostname: None,
        today: day,
    });
    assert_eq!(codes(&f), ["rsa-too-small", "key-mismatch"]);
    assert!(f[1].message.contains("an ECDSA key"), "{}", f[1].message);
    assert!(f[1].message.contains("an RSA key"), "{}", f[1].message);
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let body: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        body.join("\n")
    )
}

#[test]
fn sec1_ec_keys_are_understood() {
    let (dir, plans, _) = dev_set();
    let r = plans[0].receive.as_ref().unwrap();
    let PrivateKeyDerOwned::Pkcs8(pkcs8) = own(read_private_key(&r.server_key).unwrap()) else {
        panic!("dev keys are PKCS#8");
    };
    let sec1 = pkcs8_inner_key(&pkcs8);
    let sec1_path = dir.path().join("server-sec1.key");
    std::fs::write(&sec1_path, pem("EC PRIVATE KEY", &sec1)).unwrap();
    assert_clean(&check_bundle(&bundle(
        &r.server_cert,
        Some(&sec1_path),
        None,
        Usage::Server,
        None,
    )));
    let s = plans[0].send.as_ref().unwrap();
    let f = check_bundle(&bundle(
        &s.client_cert,
        Some(&sec1_path),
        None,
        Usage::Client,
        None,
    ));
    assert_eq!(codes(&f), ["key-mismatch"]);
}

/// The privateKey OCTET STRING of a PKCS#8 key: for an EC key, its SEC1 `ECPrivateKey`.
fn pkcs8_inner_key(der: &[u8]) -> Vec<u8> {
    use x509_parser::asn1_rs::{FromDer, Integer, OctetString, Sequence};
    use x509_parser::x509::AlgorithmIdentifier;
    let (_, seq) = Sequence::from_der(der).unwrap();
    let (rest, _version) = Integer::from_der(&seq.content).unwrap();
    let (rest, _algorithm) = AlgorithmIdentifier::from_der(rest).unwrap();
    let (_, inner) = OctetString::from_der(rest).unwrap();
    inner.as_ref().to_vec()
}

enum PrivateKeyDerOwned {
    Pkcs8(Vec<u8>),
    Other,
}

fn own(key: rustls_pki_types::PrivateKeyDer<'_>) -> PrivateKeyDerOwned {
    match key {
        rustls_pki_types::PrivateKeyDer::Pkcs8(k) => {
            PrivateKeyDerOwned::Pkcs8(k.secret_pkcs8_der().to_vec())
        }
        _ => PrivateKeyDerOwned::Other,
    }
}

#[test]
fn missing_and_unreadable_files() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = dir.path().join("nope.crt");
    let f = check_bundle(&bundle(
        &nowhere,
        Some(&dir.path().join("nope.key")),
        Some(&dir.path().join("nope-ca.crt")),
        Usage::Server,
        Some("x.example"),
    ));
    assert_eq!(codes(&f), ["cert-missing", "key-missing", "ca-missing"]);
    assert!(
        f[0].message.contains("nope.crt does not exist"),
        "{}",
        f[0].message
    );

    let garbage = dir.path().join("garbage.crt");
    std::fs::write(&garbage, "hello\n").unwrap();
    let (_, cert, _) = ca_and_leaf(dir.path(), ExtendedKeyUsagePurpose::ServerAuth, -1, 300);
    // A certificate where the key should be, a key where the certificate should be.
    let key_path = dir.path().join("leaf.key");
    let f = check_bundle(&bundle(&garbage, Some(&cert), None, Usage::Server, None));
    assert_eq!(codes(&f), ["cert-unreadable", "key-unreadable"]);
    assert!(
        f[1].message.contains("not a private key"),
        "{}",
        f[1].message
    );
    let f = check_bundle(&bundle(&key_path, None, None, Usage::Server, None));
    assert_eq!(codes(&f), ["cert-unreadable"]);
    assert!(
        f[0].message.contains("holds a private key"),
        "{}",
        f[0].message
    );
    assert_eq!(codes(&check_ca(&garbage, today())), ["ca-unreadable"]);
    assert!(summarize(&garbage).is_err());

    // Truncated PEM.
    let truncated = dir.path().join("truncated.crt");
    let text = std::fs::read_to_string(&cert).unwrap();
    std::fs::write(&truncated, &text[..text.len() / 2]).unwrap();
    assert_eq!(
        codes(&check_bundle(&bundle(
            &truncated,
            None,
            None,
            Usage::Server,
            None
        ))),
        ["cert-unreadable"]
    );
    // Corrupt DER inside valid PEM.
    let corrupt = dir.path().join("corrupt.crt");
    std::fs::write(
        &corrupt,
        pem("CERTIFICATE", &[0x30, 0x03, 0x02, 0x01, 0x00]),
    )
    .unwrap();
    assert_eq!(
        codes(&check_bundle(&bundle(
            &corrupt,
            None,
            None,
            Usage::Server,
            None
        ))),
        ["cert-unreadable"]
    );
    assert!(subject_names(&[0x30, 0x00]).is_err());
}

// Key formats, against the real files of tests/data/certs (see its README for how each was
// made): every format the loader accepts is matched to its certificate, and the ones it must
// refuse are refused with a message that says why.

/// Checks a fixture certificate and key as a server bundle for the certificate's own host,
/// on the day after the certificate starts.
fn check_fixture(cert: &str, key: &str) -> Vec<Finding> {
    let cert = fixture(cert);
    let key = fixture(key);
    let summary = summarize(&cert).unwrap();
    let host = summary.dns_names[0].clone();
    check_bundle(&BundleToCheck {
        cert: &cert,
        key: Some(&key),
        ca: None,
        usage: Usage::Server,
        hostname: Some(&host),
        today: summary.not_before + Duration::days(1),
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Format {
    Pkcs8,
    Pkcs1,
    Sec1,
}

fn format_of(key: &str) -> Format {
    match read_private_key(&fixture(key)).unwrap() {
        rustls_pki_types::PrivateKeyDer::Pkcs8(_) => Format::Pkcs8,
        rustls_pki_types::PrivateKeyDer::Pkcs1(_) => Format::Pkcs1,
        rustls_pki_types::PrivateKeyDer::Sec1(_) => Format::Sec1,
        other => panic!("{key}: unexpected key format {other:?}"),
    }
}

#[test]
fn every_key_format_the_loader_accepts_matches_its_certificate() {
    let cases = [
        (
            "rsa2048.crt",
            "rsa2048.pkcs8.key",
            Format::Pkcs8,
            "RSA 2048",
        ),
        (
            "rsa2048.crt",
            "rsa2048.pkcs1.key",
            Format::Pkcs1,
            "RSA 2048",
        ),
        ("p256.crt", "p256.pkcs8.key", Format::Pkcs8, "ECDSA P-256"),
        ("p256.crt", "p256.pkcs8.der", Format::Pkcs8, "ECDSA P-256"),
        ("p256.crt", "p256.sec1.key", Format::Sec1, "ECDSA P-256"),
        ("p256.crt", "p256.sec1.der", Format::Sec1, "ECDSA P-256"),
        ("p256.crt.der", "p256.sec1.key", Format::Sec1, "ECDSA P-256"),
        ("ed25519.crt", "ed25519.pkcs8.key", Format::Pkcs8, "Ed25519"),
    ];
    for (cert, key, format, described) in cases {
        assert_eq!(format_of(key), format, "{key}");
        assert_eq!(summarize(&fixture(cert)).unwrap().key, described, "{cert}");
        let findings = check_fixture(cert, key);
        assert!(
            findings.is_empty(),
            "{cert} with {key}: unexpected findings {findings:#?}"
        );
    }
    // The DER certificate is the PEM one.
    assert_eq!(
        read_certificates(&fixture("p256.crt.der")).unwrap(),
        read_certificates(&fixture("p256.crt")).unwrap()
    );
}

#[test]
fn the_wrong_key_is_a_mismatch_in_every_format() {
    // Another key of the same type.
    let f = check_fixture("p256.crt", "p256.other.key");
    assert_eq!(codes(&f), ["key-mismatch"]);
    assert!(f[0].message.contains("not a pair"), "{}", f[0].message);
    // Another type of key, whichever way round and in whichever format.
    for (cert, key, has, wants) in [
        ("rsa2048.crt", "p256.sec1.key", "an ECDSA key", "an RSA key"),
        (
            "p256.crt",
            "rsa2048.pkcs1.key",
            "an RSA key",
            "an ECDSA key",
        ),
        (
            "p256.crt",
            "ed25519.pkcs8.key",
            "an Ed25519 key",
            "an ECDSA key",
        ),
        (
            "ed25519.crt",
            "p256.pkcs8.der",
            "an ECDSA key",
            "an Ed25519 key",
        ),
        ("rsa2048.crt", "rsa1024.key", "", ""),
    ] {
        let f = check_fixture(cert, key);
        assert_eq!(codes(&f), ["key-mismatch"], "{cert} with {key}");
        let expected =
            format!("the key file holds {has} but the certificate was issued for {wants}");
        if has.is_empty() {
            assert!(f[0].message.contains("not a pair"), "{}", f[0].message);
        } else {
            assert!(f[0].message.contains(&expected), "{}", f[0].message);
        }
    }
}

#[test]
fn encrypted_keys_are_refused_with_a_clear_message() {
    for key in ["p256.encrypted.key", "p256.sec1-encrypted.key"] {
        let err = read_private_key(&fixture(key)).unwrap_err();
        assert!(
            err.to_string().contains("is encrypted with a passphrase"),
            "{key}: {err}"
        );
        let f = check_fixture("p256.crt", key);
        assert_eq!(codes(&f), ["key-unreadable"], "{key}");
        assert!(f[0].message.contains("unencrypted"), "{}", f[0].message);
    }
}

#[test]
fn a_key_written_without_its_public_point_cannot_be_checked() {
    assert_eq!(format_of("p256.sec1-no-public.der"), Format::Sec1);
    let f = check_fixture("p256.crt", "p256.sec1-no-public.der");
    assert_eq!(codes(&f), ["key-unchecked"]);
    assert_eq!(f[0].severity, Severity::Warning);
    assert!(f[0].message.contains("openssl pkey"), "{}", f[0].message);
}

#[test]
fn certificates_and_keys_in_each_others_place_are_refused() {
    let err = read_private_key(&fixture("p256.crt")).unwrap_err();
    assert!(err.to_string().contains("holds a certificate"), "{err}");
    let err = read_certificates(&fixture("p256.sec1.key")).unwrap_err();
    assert!(err.to_string().contains("holds a private key"), "{err}");
    // A DER key where the certificate belongs: DER, but not a certificate.
    let err = read_certificates(&fixture("p256.pkcs8.der")).unwrap_err();
    assert!(
        err.to_string().contains("not a valid X.509 certificate"),
        "{err}"
    );
    // A DER certificate where the key belongs.
    assert!(read_private_key(&fixture("p256.crt.der")).is_err());
}

#[test]
fn crls_are_checked_against_their_ca_and_the_date() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_path, _, _) = ca_and_leaf(dir.path(), ExtendedKeyUsagePurpose::ClientAuth, -1, 300);
    let ca = make_ca("test CA", Validity::dev(today(), 1000).unwrap()).unwrap();
    std::fs::write(&ca_path, ca.cert.pem()).unwrap();
    let at = |from: i64, to: i64| Validity {
        not_before: (today() + Duration::days(from)).midnight().assume_utc(),
        not_after: (today() + Duration::days(to)).midnight().assume_utc(),
    };
    let crl = dir.path().join("ca.crl");

    std::fs::write(&crl, ca.empty_crl_pem(at(-1, 7)).unwrap()).unwrap();
    assert_clean(&check_crl(&crl, &ca_path, today()));

    std::fs::write(&crl, ca.empty_crl_pem(at(-30, -2)).unwrap()).unwrap();
    let f = check_crl(&crl, &ca_path, today());
    assert_eq!(codes(&f), ["crl-expired"]);
    assert_eq!(f[0].which, Which::Crl);
    assert!(f[0].message.contains("2 days ago"), "{}", f[0].message);

    // Another CA's CRL, and one with the same name but another key.
    let other = make_ca("other CA", Validity::dev(today(), 1000).unwrap()).unwrap();
    std::fs::write(&crl, other.empty_crl_pem(at(-1, 7)).unwrap()).unwrap();
    let f = check_crl(&crl, &ca_path, today());
    assert_eq!(codes(&f), ["crl-not-signed"]);
    assert!(f[0].message.contains("not a CA in"), "{}", f[0].message);
    let remade = make_ca("test CA", Validity::dev(today(), 1000).unwrap()).unwrap();
    std::fs::write(&crl, remade.empty_crl_pem(at(-1, 7)).unwrap()).unwrap();
    let f = check_crl(&crl, &ca_path, today());
    assert_eq!(codes(&f), ["crl-not-signed"]);
    assert!(f[0].message.contains("did not sign it"), "{}", f[0].message);

    std::fs::write(
        &crl,
        "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
    )
    .unwrap();
    assert_eq!(
        codes(&check_crl(&crl, &ca_path, today())),
        ["crl-unreadable"]
    );
    std::fs::write(&crl, ca.cert.pem()).unwrap();
    assert_eq!(
        codes(&check_crl(&crl, &ca_path, today())),
        ["crl-unreadable"]
    );
    let missing = dir.path().join("nope.crl");
    assert_eq!(
        codes(&check_crl(&missing, &ca_path, today())),
        ["crl-missing"]
    );
}
