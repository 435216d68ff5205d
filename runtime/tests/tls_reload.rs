//! Revocation and rotation over real TLS on 127.0.0.1: a client certificate a CRL revokes
//! fails the handshake, the sender refuses a revoked server certificate, and the receiver's
//! certificate is rotated (SIGHUP, `gw reload`'s control socket, or a direct reload) while a
//! client keeps sending, with no request failing and a bad new file leaving the old one served.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use hl7gw_runtime::listeners::Role;
use hl7gw_runtime::reload::{ClientTls, ServerTls, TlsFiles, TlsReloader, fingerprint};
use hl7gw_runtime::tls::TlsFailure;
use hl7gw_tests::pki::{Identity, ca, crl, leaf};
use hl7gw_tests::wire::{Http, tls_over};
use rcgen::{CertifiedIssuer, ExtendedKeyUsagePurpose, KeyPair};
use rustls::ClientConfig;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use support::{CLIENT_CN, MESSAGE, TestServer, bounded};
use tokio::net::TcpStream;

const H1: &[&[u8]] = &[b"http/1.1"];

type Issuer = CertifiedIssuer<'static, KeyPair>;

fn server_leaf(issuer: &Issuer) -> Identity {
    leaf(
        issuer,
        "localhost",
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    )
}

fn client_leaf(issuer: &Issuer) -> Identity {
    leaf(
        issuer,
        CLIENT_CN,
        &[CLIENT_CN],
        ExtendedKeyUsagePurpose::ClientAuth,
    )
}

fn der(identity: &Identity) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(identity.cert_pem.as_bytes()).unwrap()
}

/// The receiver's files in a temporary folder.
struct Files {
    dir: tempfile::TempDir,
    ca_pem: String,
}

impl Files {
    fn new(root: &Issuer, server: &Identity, crl: Option<&str>) -> Self {
        let files = Self {
            dir: tempfile::tempdir().unwrap(),
            ca_pem: root.pem(),
        };
        files.write_identity(server);
        std::fs::write(files.path("ca.crt"), &files.ca_pem).unwrap();
        if let Some(crl) = crl {
            std::fs::write(files.path("ca.crl"), crl).unwrap();
        }
        files
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write_identity(&self, id: &Identity) {
        std::fs::write(self.path("own.crt"), &id.cert_pem).unwrap();
        std::fs::write(self.path("own.key"), &id.key_pem).unwrap();
    }

    fn tls_files(&self, with_crl: bool) -> TlsFiles {
        TlsFiles {
            cert: self.path("own.crt"),
            key: self.path("own.key"),
            peer_ca: self.path("ca.crt"),
            peer_crl: with_crl.then(|| self.path("ca.crl")),
        }
    }

    fn client(&self, identity: &Identity) -> Arc<ClientConfig> {
        hl7gw_tests::wire::client_config(&self.ca_pem, Some(identity), H1)
    }
}

async fn connect(
    server: &TestServer,
    config: Arc<ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(server.addr).await?;
    tls_over(tcp, "localhost", config).await
}

/// One request on `c`: the status line.
async fn post(
    server: &TestServer,
    c: &mut Http<tokio_rustls::client::TlsStream<TcpStream>>,
) -> String {
    c.send(&server.hapi(MESSAGE)).await.unwrap();
    c.read_response().await.unwrap().status_line
}

fn served(stream: &tokio_rustls::client::TlsStream<TcpStream>) -> String {
    let (_, session) = stream.get_ref();
    let certs = session.peer_certificates().unwrap();
    fingerprint(&certs[0])
}

/// A handshake that must fail (at once, or at the first read when TLS 1.3 reports the
/// client certificate's refusal after the client has finished).
async fn assert_refused(server: &TestServer, config: Arc<ClientConfig>) {
    let Ok(tls) = connect(server, config).await else {
        return;
    };
    let mut c = Http::new(tls);
    let _ = c.send(&server.hapi(MESSAGE)).await;
    if let Ok(r) = c.read_response().await {
        panic!("a refused client got {}", r.status_line);
    }
}

#[tokio::test]
async fn a_revoked_client_certificate_fails_the_handshake_and_others_pass() {
    bounded(async {
        let root = ca("hl7gw CRL test CA");
        let good = client_leaf(&root);
        let revoked = client_leaf(&root);
        let files = Files::new(&root, &server_leaf(&root), Some(&crl(&root, &[&revoked])));
        let tls = ServerTls::load(files.tls_files(true)).unwrap();
        let server = TestServer::start_with_tls(tls.config().unwrap(), |_| {}).await;

        let mut c = Http::new(connect(&server, files.client(&good)).await.unwrap());
        assert_eq!(post(&server, &mut c).await, "HTTP/1.1 200 OK");
        assert_refused(&server, files.client(&revoked)).await;
        server
            .wait_for("a revoked failure", |m| {
                m.tls_failures_count(Role::Receive, TlsFailure::Revoked) == 1
            })
            .await;
        assert_eq!(server.handler.seen().len(), 1);
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_crl_loaded_by_a_reload_revokes_new_handshakes_only() {
    bounded(async {
        let root = ca("hl7gw CRL reload CA");
        let good = client_leaf(&root);
        let later = client_leaf(&root);
        let files = Files::new(&root, &server_leaf(&root), Some(&crl(&root, &[])));
        let tls = ServerTls::load(files.tls_files(true)).unwrap();
        let reloader = TlsReloader::new(Some(tls.clone()), None);
        let server = TestServer::start_with_tls(tls.config().unwrap(), |_| {}).await;

        let mut open = Http::new(connect(&server, files.client(&later)).await.unwrap());
        assert_eq!(post(&server, &mut open).await, "HTTP/1.1 200 OK");
        std::fs::write(files.path("ca.crl"), crl(&root, &[&later])).unwrap();
        reloader.reload().unwrap();
        assert_refused(&server, files.client(&later)).await;
        // The connection made before the reload is not cut.
        assert_eq!(post(&server, &mut open).await, "HTTP/1.1 200 OK");
        let mut c = Http::new(connect(&server, files.client(&good)).await.unwrap());
        assert_eq!(post(&server, &mut c).await, "HTTP/1.1 200 OK");

        // A CRL signed by another CA does not verify: refused, the previous CRL stays.
        let other = ca("some other CA");
        std::fs::write(files.path("ca.crl"), crl(&other, &[])).unwrap();
        let refused = reloader.reload().unwrap_err();
        assert_eq!(refused.path, files.path("ca.crl"));
        assert_refused(&server, files.client(&later)).await;
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn the_sender_refuses_a_revoked_server_certificate() {
    bounded(async {
        let root = ca("hl7gw server CRL CA");
        let server_id = server_leaf(&root);
        let receiver = Files::new(&root, &server_id, None);
        let tls = ServerTls::load(receiver.tls_files(false)).unwrap();
        let server = TestServer::start_with_tls(tls.config().unwrap(), |_| {}).await;

        // The sender: client certificate, the server CA and its CRL.
        let sender = Files::new(&root, &client_leaf(&root), Some(&crl(&root, &[])));
        let client = ClientTls::load(sender.tls_files(true)).unwrap();
        let reloader = TlsReloader::new(None, Some(client.clone()));
        let config = client.config().unwrap();
        let mut c = Http::new(connect(&server, config.clone()).await.unwrap());
        assert_eq!(post(&server, &mut c).await, "HTTP/1.1 200 OK");

        std::fs::write(sender.path("ca.crl"), crl(&root, &[&server_id])).unwrap();
        reloader.reload().unwrap();
        let refused = connect(&server, config).await.unwrap_err();
        let tls_error = refused
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
            .cloned();
        assert_eq!(
            tls_error,
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked
            ))
        );
        server.stop().await.unwrap();
    })
    .await;
}

#[test]
fn bad_files_are_refused_naming_the_file() {
    let root = ca("hl7gw bad files CA");
    let files = Files::new(&root, &server_leaf(&root), Some("not a CRL\n"));
    let error = ServerTls::load(files.tls_files(true)).unwrap_err();
    assert_eq!(error.path, files.path("ca.crl"));
    assert!(error.to_string().contains("ca.crl"), "{error}");

    let other = server_leaf(&root);
    std::fs::write(files.path("own.key"), &other.key_pem).unwrap();
    let error = ServerTls::load(files.tls_files(false)).unwrap_err();
    assert_eq!(error.path, files.path("own.key"));
    assert!(error.to_string().contains("own.crt"), "{error}");
}

/// What the client under load saw.
#[derive(Default)]
struct Load {
    requests: AtomicUsize,
    failures: std::sync::Mutex<Vec<String>>,
    /// Fingerprints of fresh handshakes, with whether the rotation had finished before each
    /// one started.
    fresh: std::sync::Mutex<Vec<(bool, String)>>,
    kept: std::sync::Mutex<Vec<String>>,
}

/// Sends until `stop`: each round one request on a new connection (a new handshake) and one
/// on a connection opened before the rotation.
async fn keep_sending(
    server: Arc<TestServer>,
    config: Arc<ClientConfig>,
    rotated: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    load: Arc<Load>,
) {
    let fail = |what: String| load.failures.lock().unwrap().push(what);
    let kept = connect(&server, config.clone()).await.unwrap();
    load.kept.lock().unwrap().push(served(&kept));
    let mut kept = Http::new(kept);
    while !stop.load(Ordering::SeqCst) {
        let after = rotated.load(Ordering::SeqCst);
        match connect(&server, config.clone()).await {
            Ok(tls) => {
                load.fresh.lock().unwrap().push((after, served(&tls)));
                let mut c = Http::new(tls);
                match c.send(&server.hapi(MESSAGE)).await {
                    Ok(()) => match c.read_response().await {
                        Ok(r) if r.status_line == "HTTP/1.1 200 OK" => {}
                        Ok(r) => fail(r.status_line),
                        Err(e) => fail(format!("fresh read: {e}")),
                    },
                    Err(e) => fail(format!("fresh send: {e}")),
                }
            }
            Err(e) => fail(format!("handshake: {e}")),
        }
        match kept.send(&server.hapi(MESSAGE)).await {
            Ok(()) => match kept.read_response().await {
                Ok(r) if r.status_line == "HTTP/1.1 200 OK" => {}
                Ok(r) => fail(r.status_line),
                Err(e) => fail(format!("kept read: {e}")),
            },
            Err(e) => fail(format!("kept send: {e}")),
        }
        load.kept.lock().unwrap().push(served(&kept.stream));
        load.requests.fetch_add(2, Ordering::SeqCst);
    }
}

async fn wait_for_requests(load: &Load, at_least: usize) {
    for _ in 0..1000 {
        if load.requests.load(Ordering::SeqCst) >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the client under load stalled");
}

/// How a test asks for the reload.
#[derive(Clone, Copy)]
enum Trigger {
    /// `gw reload`: the control socket, which answers with the outcome.
    ControlSocket,
    /// SIGHUP to this process; the outcome is only logged.
    Hangup,
}

async fn rotate_under_load(trigger: Trigger) {
    let root = ca("hl7gw rotation CA");
    let first = server_leaf(&root);
    let second = server_leaf(&root);
    let client = client_leaf(&root);
    let files = Files::new(&root, &first, None);
    let tls = ServerTls::load(files.tls_files(false)).unwrap();
    let reloader = TlsReloader::new(Some(tls.clone()), None);
    let store = files.path("gateway.sqlite");
    let (stop_control, control_stopped) = tokio::sync::oneshot::channel::<()>();
    let control = tokio::spawn(hl7gw_runtime::control::serve(
        reloader.clone(),
        store.clone(),
        async move {
            let _ = control_stopped.await;
        },
    ));
    wait_for_socket(&store).await;
    let server = Arc::new(TestServer::start_with_tls(tls.config().unwrap(), |_| {}).await);
    let (rotated, stop, load) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
        Arc::new(Load::default()),
    );
    let sender = tokio::spawn(keep_sending(
        server.clone(),
        files.client(&client),
        rotated.clone(),
        stop.clone(),
        load.clone(),
    ));
    wait_for_requests(&load, 10).await;

    files.write_identity(&second);
    let expected = fingerprint(&der(&second));
    match trigger {
        Trigger::ControlSocket => {
            let summary = ask(&store).await.unwrap();
            assert!(summary.contains(&expected), "{summary}");
        }
        Trigger::Hangup => hangup(&tls, &expected).await,
    }
    rotated.store(true, Ordering::SeqCst);
    assert_eq!(tls.fingerprint(), expected);
    let done = load.requests.load(Ordering::SeqCst);
    wait_for_requests(&load, done + 10).await;

    // A broken certificate, then a key that is not the certificate's: both refused, naming
    // the file; the second certificate stays served.
    std::fs::write(
        files.path("own.crt"),
        "-----BEGIN CERTIFICATE-----\nbroken\n",
    )
    .unwrap();
    let broken = reload_error(trigger, &reloader, &store).await;
    assert!(
        broken.contains(&files.path("own.crt").display().to_string()),
        "{broken}"
    );
    std::fs::write(files.path("own.crt"), &first.cert_pem).unwrap();
    let mismatch = reload_error(trigger, &reloader, &store).await;
    assert!(
        mismatch.contains(&files.path("own.key").display().to_string()),
        "{mismatch}"
    );
    let done = load.requests.load(Ordering::SeqCst);
    wait_for_requests(&load, done + 10).await;

    stop.store(true, Ordering::SeqCst);
    sender.await.unwrap();
    let failures = load.failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "requests failed: {failures:?}");
    let (a, b) = (fingerprint(&der(&first)), fingerprint(&der(&second)));
    let fresh = load.fresh.lock().unwrap().clone();
    assert!(
        fresh.iter().all(|(after, fp)| !after || *fp == b),
        "first {}, second {}, handshakes {:?}",
        &a[..5],
        &b[..5],
        fresh
            .iter()
            .map(|(after, fp)| format!("{after}:{}", &fp[..5]))
            .collect::<Vec<_>>()
    );
    assert!(fresh.iter().any(|(_, fp)| *fp == a));
    assert!(fresh.iter().filter(|(_, fp)| *fp == b).count() >= 10);
    // The connection opened before the rotation kept its certificate and was never cut.
    assert!(load.kept.lock().unwrap().iter().all(|fp| *fp == a));
    let _ = stop_control.send(());
    control.await.unwrap();
    assert!(!hl7gw_runtime::control::socket_path(&store).exists());
    Arc::into_inner(server).unwrap().stop().await.unwrap();
}

async fn wait_for_socket(store: &Path) {
    let socket = hl7gw_runtime::control::socket_path(store);
    for _ in 0..500 {
        if socket.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no control socket at {}", socket.display());
}

/// `gw reload`'s request, from a blocking thread as the command line makes it.
async fn ask(store: &Path) -> Result<String, String> {
    let store = store.to_owned();
    tokio::task::spawn_blocking(move || hl7gw_runtime::control::request_reload(&store))
        .await
        .unwrap()
        .map_err(|e| e.to_string())
}

/// SIGHUP to this process (the control task listens for it), then waits until the receiver
/// serves `expected`.
async fn hangup(tls: &ServerTls, expected: &str) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for _ in 0..500 {
        if tls.fingerprint() == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("SIGHUP did not rotate the certificate");
}

/// A reload that must be refused: the control socket's answer, or (after SIGHUP, whose
/// outcome only the log shows) the same reload made directly.
async fn reload_error(trigger: Trigger, reloader: &TlsReloader, store: &Path) -> String {
    match trigger {
        Trigger::ControlSocket => ask(store).await.unwrap_err(),
        Trigger::Hangup => reloader.reload().unwrap_err().to_string(),
    }
}

/// One test for both triggers, one after the other: SIGHUP reaches every control task of
/// this process, so the two must not overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_served_under_load_without_a_failed_request() {
    bounded(rotate_under_load(Trigger::ControlSocket)).await;
    bounded(rotate_under_load(Trigger::Hangup)).await;
}

/// `gw reload` covers the EMS listeners' certificate too: the reloader swaps it with the
/// other sides, names it `ems:` in its summary, and a bad new file leaves it as it was.
#[test]
fn the_ems_certificate_reloads_with_the_others() {
    let root = ca("hl7gw EMS reload test CA");
    let first = server_leaf(&root);
    let files = Files::new(&root, &first, None);
    let ems = ServerTls::load(files.tls_files(false)).unwrap();
    let reloader = TlsReloader::new(None, None).with_ems(Some(ems.clone()));
    assert_eq!(ems.fingerprint(), fingerprint(&der(&first)));

    let second = server_leaf(&root);
    files.write_identity(&second);
    let summary = reloader.reload().unwrap();
    assert!(summary.starts_with("ems: server certificate"), "{summary}");
    assert!(summary.contains(&fingerprint(&der(&second))), "{summary}");
    assert_eq!(ems.fingerprint(), fingerprint(&der(&second)));

    std::fs::write(files.path("own.key"), "not a key").unwrap();
    let refused = reloader.reload().unwrap_err();
    assert_eq!(refused.path, files.path("own.key"));
    assert_eq!(
        ems.fingerprint(),
        fingerprint(&der(&second)),
        "the old one stays"
    );
}
