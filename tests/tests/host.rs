//! The host (issue 14): one process serving two customers (gw-demo and gw-northwest, TEST)
//! on ONE receive port, each connection routed by its TLS server name.
//!
//! The host runs in a child process of this test binary (`hl7gw_runtime::host::serve`, as
//! `gw-host serve --env test` runs it), with each customer's store in a temporary folder and
//! certificates this test makes: for each customer its own CA, a server certificate for its
//! host name (`demo-test.api.example-ems.cloud`, `northwest-test.api.example-ems.cloud`) and
//! an engine's client certificate with the subject its spec allows. Each customer sends to
//! its own stand-in Trust engine ([`hl7gw_tests::trust::Trust`]) in this process.
//!
//! Covered: each name is answered with its customer's certificate and its customer's ACK;
//! an unknown name and no name are refused in the handshake (and counted); a `Host` that
//! disagrees with the server name gets 421; a flood of stalled handshakes at demo's name
//! takes demo's connection slots only; and with demo's outbound stream held (its Trust
//! answers AR), northwest still gets AA promptly and its outbound message delivered.
//!
//! The EMS-facing side is shared too: one inbox API and one intake API with the customer's
//! code as the first path segment, and one intake MLLP listener routing each message by its
//! MSH-6 to the customer whose receiving facility it is (an unknown one answered AR, queued
//! nowhere).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hl7gw_runtime::GatewaySpec;
use hl7gw_runtime::config::{EnvName, SendConfig, SinkConfig};
use hl7gw_runtime::host::{Customer, EmsListen, FrontLimits, HostOptions};
use hl7gw_tests::child::{ChildProcess, ChildSpec, loopback_options, on_stdin_closed, wait_until};
use hl7gw_tests::messages::{AckView, demo_sample, northwest_sample, oru, with_control_id};
use hl7gw_tests::pki::{Identity, ca, leaf};
use hl7gw_tests::trust::{Reply, Trust};
use hl7gw_tests::wire::{self, Http, RawResponse};
use rcgen::ExtendedKeyUsagePurpose;
use rustls::ClientConfig;
use serde_json::{Value, json};

const CHILD_ENV: &str = "HL7GW_E2E_HOST";
const CHILD_TEST: &str = "child_host_process";
const READY: &str = "HL7GW-E2E-HOST-READY ";

const DEMO_HOST: &str = "demo-test.api.example-ems.cloud";
const NORTHWEST_HOST: &str = "northwest-test.api.example-ems.cloud";

/// The host child's entry point: ignored in normal runs, selected by the parent.
#[test]
#[ignore = "runs only as the host child process of the other tests"]
fn child_host_process() {
    hl7gw_tests::child::child_main(CHILD_ENV, "host", |config| {
        hl7gw_runtime::app::init_logging();
        run_child(config)
    });
}

// ---------------------------------------------------------------------------------------
// The child.

/// A customer's TEST environment sending to `url` (quick backoff), its store and certificate
/// folder under `dir`.
fn customer(spec: &GatewaySpec, url: &str, dir: &Path, inbox_sink: bool) -> Customer {
    let mut spec = spec.clone();
    let environment = spec.environment_mut(EnvName::Test).as_mut().unwrap();
    let send = environment.send.clone().unwrap();
    environment.send = Some(SendConfig {
        url: url.to_owned().into(),
        timeout_ms: 10_000,
        backoff_first_ms: 20,
        backoff_max_ms: 100,
        ..send
    });
    if inbox_sink {
        // northwest's TEST sink is a webhook; the inbox keeps this test to one peer each.
        environment.sink = SinkConfig::Inbox;
    }
    Customer {
        spec,
        options: loopback_options(dir.join("store.sqlite"), Some(dir.join("certs"))),
    }
}

/// The host's TEST environment on loopback, its ports chosen by the system.
fn loopback_host() -> HostOptions {
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    HostOptions {
        env: EnvName::Test,
        listen: local,
        ops_listen: local,
        ops_exposure: hl7gw_runtime::server::Exposure::LoopbackOnly,
        front: FrontLimits::DEFAULT,
        ems: EmsListen {
            inbox: Some(local),
            intake: Some(local),
            mllp: Some(local),
        },
    }
}

fn run_child(config: &str) -> Result<(), String> {
    let config: Value = serde_json::from_str(config).map_err(|e| e.to_string())?;
    let text = |key: &str| {
        config[key]
            .as_str()
            .map(str::to_owned)
            .ok_or(key.to_owned())
    };
    let dir = PathBuf::from(text("dir")?);
    let customers = vec![
        customer(&gw_demo::SPEC, &text("demo_url")?, &dir.join("demo"), false),
        customer(
            &gw_northwest::SPEC,
            &text("northwest_url")?,
            &dir.join("northwest"),
            true,
        ),
    ];
    let host = loopback_host();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    on_stdin_closed(move || {
        let _ = stop.send(());
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime
        .block_on(hl7gw_runtime::host::serve(
            customers,
            &host,
            async move {
                let _ = stopped.await;
            },
            |ready| {
                let line = json!({
                    "listen": ready.listen.to_string(),
                    "ops": ready.ops_listen.to_string(),
                    "inbox": ready.inbox_listen.to_string(),
                    "intake": ready.intake_listen.to_string(),
                    "mllp": ready.mllp_listen.to_string(),
                });
                println!("{READY}{line}");
            },
        ))
        .map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------
// The parent.

/// One customer's certificates as this test makes them.
struct CustomerPki {
    /// The customer's CA (PEM): it issued the gateway's server certificate, the engine's
    /// client certificate and the Trust's server certificate.
    ca_pem: String,
    /// The gateway's server certificate for its host name.
    server: Identity,
    /// The Trust engine's client certificate.
    engine: Identity,
    /// The Trust's server TLS (its certificate for localhost from the customer's CA).
    trust_tls: Arc<rustls::ServerConfig>,
}

/// Makes `code`'s certificates and writes the files its spec names into `dir/certs`:
/// `files` = (server cert, server key, [CA files], gateway client cert, key) and the folder
/// of the spec's development client certificate (issued by the EMS CA the Trust trusts).
fn customer_pki(
    dir: &Path,
    code: &str,
    hostname: &str,
    engine_cn: &str,
    names: (&str, &str, &[&str], &str, &str),
    dev: &str,
) -> CustomerPki {
    let issuer = ca(&format!("{code} host test CA"));
    let ca_pem = issuer.pem();
    let server = leaf(
        &issuer,
        hostname,
        &[hostname],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let engine = leaf(&issuer, engine_cn, &[], ExtendedKeyUsagePurpose::ClientAuth);
    let trust_server = leaf(
        &issuer,
        "localhost",
        &["localhost"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let (cert, key, cas, client_cert, client_key) = names;
    std::fs::write(certs.join(cert), &server.cert_pem).unwrap();
    std::fs::write(certs.join(key), &server.key_pem).unwrap();
    for name in cas {
        std::fs::write(certs.join(name), &ca_pem).unwrap();
    }
    let dev = hl7gw_tests::specs().join(dev);
    for name in [client_cert, client_key] {
        std::fs::copy(dev.join(name), certs.join(name)).unwrap();
    }
    let ems_ca = std::fs::read(dev.join("trust/ems-ca.crt")).unwrap();
    let trust_tls = hl7gw_runtime::tls::server_config_from_pem(
        trust_server.cert_pem.as_bytes(),
        trust_server.key_pem.as_bytes(),
        &ems_ca,
    )
    .unwrap();
    CustomerPki {
        ca_pem,
        server,
        engine,
        trust_tls,
    }
}

/// Demo's certificates in `dir/certs`, as its TEST spec names them.
fn demo_pki(dir: &Path) -> CustomerPki {
    customer_pki(
        dir,
        "demo",
        DEMO_HOST,
        "tie-test.demo.nhs.uk",
        (
            "server.crt",
            "server.key",
            &["trust-ca.crt"],
            "client.crt",
            "client.key",
        ),
        "certs/test",
    )
}

/// Northwest's certificates in `dir/certs`, as its TEST spec names them.
fn northwest_pki(dir: &Path) -> CustomerPki {
    customer_pki(
        dir,
        "northwest",
        NORTHWEST_HOST,
        "ensemble-test.nwch.nhs.uk",
        (
            "gateway-server.crt",
            "gateway-server.key",
            &["tie-client-ca.crt", "tie-server-ca.crt"],
            "gateway-client.crt",
            "gateway-client.key",
        ),
        "certs/northwest/test",
    )
}

/// The host child and what it announced.
struct Host {
    process: ChildProcess,
    listen: SocketAddr,
    ops: SocketAddr,
    /// The shared inbox API (`/<code>/inbox…`).
    inbox: SocketAddr,
    /// The shared intake API (`/<code>/outbound…`).
    intake: SocketAddr,
    /// The shared intake MLLP listener.
    mllp: SocketAddr,
}

impl Host {
    fn start(dir: &Path, demo_url: &str, northwest_url: &str) -> Self {
        let config = json!({
            "dir": dir,
            "demo_url": demo_url,
            "northwest_url": northwest_url,
        });
        let (process, ready) = ChildProcess::start(
            ChildSpec {
                what: "host",
                test: CHILD_TEST,
                config: (CHILD_ENV, config.to_string()),
                env: &[("HL7GW_LOG", "debug")],
                ready: READY,
            },
            &dir.join("host.log"),
        );
        let addr = |key: &str| -> SocketAddr {
            ready[key]
                .as_str()
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("the host announced no {key}: {ready}"))
        };
        Self {
            listen: addr("listen"),
            ops: addr("ops"),
            inbox: addr("inbox"),
            intake: addr("intake"),
            mllp: addr("mllp"),
            process,
        }
    }

    /// `GET /metrics` on the host's operations port.
    fn metrics(&self) -> String {
        let response = wire::plain_request(self.ops, "GET", "/metrics", &[], b"").unwrap();
        assert_eq!(response.status, 200, "{}", response.body_text());
        response.body_text()
    }

    /// The value of the series `series` (name and labels, as rendered).
    fn series(&self, series: &str) -> Option<i64> {
        self.metrics()
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }
}

/// `method path` on one of the host's shared EMS APIs: the status and the JSON answer.
fn ems_call(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let response = wire::plain_request(
        addr,
        method,
        path,
        &["Content-Type: application/hl7-v2"],
        body,
    )
    .unwrap();
    let text = response.body_text();
    (
        response.status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} answered {text:?}: {e}")),
    )
}

/// `POST /<code>/outbound` with an HL7 body on the host's intake: the status and the answer.
fn queue(host: &Host, code: &str, message: &[u8]) -> (u16, Value) {
    ems_call(host.intake, "POST", &format!("/{code}/outbound"), message)
}

/// The MSH-10s of a customer's inbox on the host (`/<code>/inbox`), oldest first, and the
/// id of the first.
fn inbox_of(host: &Host, code: &str) -> (Vec<String>, Option<i64>) {
    let (status, answer) = ems_call(host.inbox, "GET", &format!("/{code}/inbox"), b"");
    assert_eq!(status, 200, "{answer}");
    let items = answer["items"].as_array().unwrap();
    (
        items
            .iter()
            .map(|i| i["control_id"].as_str().unwrap().to_owned())
            .collect(),
        items.first().and_then(|i| i["id"].as_i64()),
    )
}

/// One message over plain MLLP to the host's shared intake: the ACK's text (segments on
/// `\r`).
fn mllp_ack(addr: SocketAddr, message: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(wire::IO_LIMIT)).unwrap();
    tcp.write_all(&hl7gw_runtime::mllp::frame(message)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"\x1c\r") {
        let n = tcp.read(&mut buf).unwrap();
        assert!(n > 0, "closed without an ACK: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(hl7gw_runtime::mllp::strip_http_body(&got)).into_owned()
}

/// What one exchange with the host saw: the server certificate and the response.
struct Exchange {
    server_cert: Vec<u8>,
    response: RawResponse,
}

/// Connects to the host naming `server_name`, then POSTs `body` to `path` with `Host:
/// host_header`.
async fn exchange(
    addr: SocketAddr,
    server_name: &str,
    config: Arc<ClientConfig>,
    host_header: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<Exchange> {
    let stream = wire::connect(addr, server_name, config).await?;
    let server_cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|c| c.as_ref().to_vec())
        .unwrap_or_default();
    let mut http = Http::new(stream);
    http.send(&wire::post(
        path,
        &[
            format!("Host: {host_header}"),
            "Content-Type: application/hl7-v2".to_owned(),
            format!("Content-Length: {}", body.len()),
        ],
        body,
    ))
    .await?;
    Ok(Exchange {
        server_cert,
        response: http.read_response().await?,
    })
}

fn der_of(pem: &str) -> Vec<u8> {
    hl7gw_runtime::tls::certificates_from_pem("cert", pem.as_bytes()).unwrap()[0]
        .as_ref()
        .to_vec()
}

fn ack_of(response: &RawResponse) -> AckView {
    assert_eq!(response.status, 200, "{}", response.body_text());
    AckView::read(&response.body_text())
        .unwrap_or_else(|| panic!("not an ACK: {:?}", response.body_text()))
}

#[test]
fn one_port_routes_each_server_name_to_its_own_customer_and_keeps_them_apart() {
    let dir = tempfile::tempdir().unwrap();
    let demo = demo_pki(&dir.path().join("demo"));
    let northwest = northwest_pki(&dir.path().join("northwest"));
    let demo_trust = Trust::start(demo.trust_tls.clone());
    let northwest_trust = Trust::start(northwest.trust_tls.clone());
    let host = Host::start(
        dir.path(),
        &demo_trust.url_for("localhost"),
        &northwest_trust.url_for("localhost"),
    );
    let demo_engine = wire::client_config(&demo.ca_pem, Some(&demo.engine), &[b"http/1.1"]);
    let northwest_engine =
        wire::client_config(&northwest.ca_pem, Some(&northwest.engine), &[b"http/1.1"]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listen = host.listen;
    let (demo_message, _) = demo_sample("ADT^A28", "HOST-DEMO-1").unwrap();
    let (northwest_message, _) = northwest_sample("ADT^A28", "HOST-NW-1").unwrap();
    // Northwest's engine posts its ADT^A28 with this MSH-10.
    let northwest_posts = |control_id: &str| {
        runtime
            .block_on(exchange(
                listen,
                NORTHWEST_HOST,
                northwest_engine.clone(),
                NORTHWEST_HOST,
                "/northwest/hl7/v2",
                &with_control_id(&northwest_message, control_id),
            ))
            .unwrap()
    };
    // It answers AA within 5 s (`why` names what else is going on).
    let northwest_answers_promptly = |control_id: &str, why: &str| {
        let started = Instant::now();
        let got = northwest_posts(control_id);
        assert_eq!(ack_of(&got.response).code(), "AA");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "northwest's AA took {:?} {why}",
            started.elapsed()
        );
    };

    // Each name reaches its own customer: its certificate, its path, its ACK.
    let got = runtime
        .block_on(exchange(
            listen,
            DEMO_HOST,
            demo_engine.clone(),
            DEMO_HOST,
            "/hl7",
            &demo_message,
        ))
        .unwrap();
    assert_eq!(got.server_cert, der_of(&demo.server.cert_pem));
    let ack = ack_of(&got.response);
    assert_eq!(
        (ack.code(), ack.acknowledged()),
        ("AA", "HOST-DEMO-1"),
        "{ack:?}"
    );
    assert_eq!(
        (ack.field("MSH", 3), ack.field("MSH", 4)),
        ("EMS", "EMS-HOST")
    );
    assert_eq!(
        (ack.field("MSH", 5), ack.field("MSH", 6)),
        ("TIE", "DEMO-TRUST")
    );
    let got = northwest_posts("HOST-NW-1");
    assert_eq!(got.server_cert, der_of(&northwest.server.cert_pem));
    let ack = ack_of(&got.response);
    assert_eq!((ack.code(), ack.acknowledged()), ("AA", "HOST-NW-1"));
    assert_eq!(
        (ack.field("MSH", 3), ack.field("MSH", 4)),
        ("EMS", "NWCH-EMS")
    );
    assert_eq!((ack.field("MSH", 5), ack.field("MSH", 6)), ("PAS", "NWCH"));
    assert_eq!(
        ack.field("MSH", 12),
        "2.3",
        "northwest's ACK in its own version"
    );
    // Each customer's own subject allowlist applies after the handshake: demo's engine
    // certificate is not one northwest allows (and is from another CA).
    let crossed = runtime.block_on(exchange(
        listen,
        NORTHWEST_HOST,
        wire::client_config(&northwest.ca_pem, Some(&demo.engine), &[b"http/1.1"]),
        NORTHWEST_HOST,
        "/northwest/hl7/v2",
        &northwest_message,
    ));
    assert!(crossed.is_err(), "northwest served demo's engine");

    // An unknown name and no name are refused in the handshake, with an alert.
    for (name, what) in [
        ("nobody-test.api.example-ems.cloud", "an unknown name"),
        ("127.0.0.1", "no name (an IP address sends no SNI)"),
    ] {
        let refused = runtime.block_on(wire::connect(listen, name, demo_engine.clone()));
        let error = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            error.contains("AccessDenied"),
            "{what}: expected a handshake refused with access_denied, got {error:?}"
        );
    }
    assert_eq!(
        host.series("hl7gw_host_connections_refused_total{reason=\"unknown_name\"}"),
        Some(1)
    );
    assert_eq!(
        host.series("hl7gw_host_connections_refused_total{reason=\"missing_name\"}"),
        Some(1)
    );

    // The HTTP Host must agree with the server name: 421, not processed.
    let misdirected = runtime
        .block_on(exchange(
            listen,
            DEMO_HOST,
            demo_engine.clone(),
            NORTHWEST_HOST,
            "/hl7",
            &with_control_id(&demo_message, "HOST-DEMO-421"),
        ))
        .unwrap();
    assert_eq!(
        misdirected.response.status, 421,
        "{:?}",
        misdirected.response
    );
    let messages = |customer: &str| {
        host.series(&format!(
            "hl7gw_messages_total{{customer=\"{customer}\",type=\"ADT^A28\",ack=\"AA\"}}"
        ))
    };
    assert_eq!(messages("demo"), Some(1), "the 421 was not processed");
    assert_eq!(messages("northwest"), Some(1));

    // A flood at demo's name (stalled handshakes from one address, past demo's per-address
    // share) takes demo's slots only: northwest, reached from the same address, still
    // answers promptly.
    let per_ip = usize::try_from(gw_demo::config::TEST.limits.connections_per_ip).unwrap();
    let flood: Vec<std::net::TcpStream> = (0..per_ip + 8)
        .map(|_| {
            let mut tcp = std::net::TcpStream::connect(listen).unwrap();
            std::io::Write::write_all(&mut tcp, &wire::client_hello(DEMO_HOST)).unwrap();
            tcp
        })
        .collect();
    let demo_refused = "hl7gw_connections_rejected_total{customer=\"demo\",listener=\"receive\",reason=\"per_ip\"}";
    wait_until(
        "demo refusing the flood past its per-address share",
        || host.series(demo_refused).unwrap_or(0) >= 8,
        || host.metrics(),
    );
    northwest_answers_promptly("HOST-NW-FLOOD", "during demo's flood");
    assert_eq!(
        host.series("hl7gw_connections_rejected_total{customer=\"northwest\",listener=\"receive\",reason=\"per_ip\"}"),
        Some(0)
    );
    drop(flood);

    // Demo's outbound stream is held (its Trust answers AR, demo holds on AR) ...
    demo_trust.set_default(Reply::Ar("held by the host test"));
    for id in ["HOST-OUT-D1", "HOST-OUT-D2"] {
        let (status, answer) = queue(&host, "demo", &oru(id));
        assert_eq!(status, 201, "{answer}");
    }
    wait_until(
        "demo's held stream",
        || host.series("hl7gw_queue_held{customer=\"demo\"}") == Some(1),
        || {
            format!(
                "{:?}\n{}",
                demo_trust.arrival_ids(),
                host.process.log_tail(20)
            )
        },
    );
    // ... while northwest answers promptly and delivers its own outbound message.
    northwest_answers_promptly("HOST-NW-2", "while demo was held");
    let report = std::fs::read_to_string(
        hl7gw_tests::repo().join("examples/messages/northwest/oru_r01_pdf.hl7"),
    )
    .unwrap()
    .replace("\r\n", "\r")
    .replace('\n', "\r");
    // Over MLLP: the host routes it to northwest by its MSH-6 (NWCH, northwest's
    // `send.receiving_facility`).
    let report = with_control_id(report.as_bytes(), "HOST-OUT-NW1");
    let ack = mllp_ack(host.mllp, &report);
    assert!(ack.contains("\rMSA|AA|HOST-OUT-NW1"), "{ack:?}");
    wait_until(
        "northwest's outbound delivery",
        || {
            northwest_trust
                .committed()
                .contains(&"HOST-OUT-NW1".to_owned())
        },
        || {
            format!(
                "{:?}\n{}",
                northwest_trust.arrival_ids(),
                host.process.log_tail(20)
            )
        },
    );
    assert_eq!(
        demo_trust
            .arrival_ids()
            .iter()
            .filter(|id| *id == "HOST-OUT-D2")
            .count(),
        0,
        "demo's stream stays held behind its first message"
    );
    assert_eq!(
        host.series("hl7gw_queue_held{customer=\"northwest\"}"),
        Some(0)
    );

    // The host's console shows both customers on its one operations port: demo's stream
    // held with its Trust's reason, northwest's delivery counted once the gateway has
    // recorded it (just after its Trust committed it).
    let overview = || {
        let response =
            wire::plain_request(host.ops, "GET", "/console/status.json", &[], b"").unwrap();
        assert_eq!(response.status, 200, "{}", response.body_text());
        serde_json::from_str::<Value>(&response.body_text()).unwrap()
    };
    let part = |overview: &Value, key: &str| {
        overview["parts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["key"] == key)
            .unwrap_or_else(|| panic!("no {key} in the host console: {overview}"))
            .clone()
    };
    wait_until(
        "the host console counting northwest's delivery",
        || part(&overview(), "northwest/test")["sent"].as_u64() == Some(1),
        || overview().to_string(),
    );
    let overview = overview();
    let demo = part(&overview, "demo/test");
    assert!(
        demo["streams"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["state"] == "held"
                && s["reason"]
                    .as_str()
                    .unwrap()
                    .contains("held by the host test")),
        "{demo}"
    );
    let northwest = part(&overview, "northwest/test");
    assert!(
        northwest["streams"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] != "held"),
        "{northwest}"
    );
    let page = wire::plain_request(host.ops, "GET", "/console", &[], b"").unwrap();
    assert_eq!(page.status, 200);
    let html = page.body_text();
    assert!(
        html.contains("demo/test") && html.contains("northwest/test"),
        "{html}"
    );

    // The shared EMS side. Each customer's inbox under its code holds its own records only.
    let (demo_inbox, demo_first) = inbox_of(&host, "demo");
    assert_eq!(demo_inbox, ["HOST-DEMO-1"]);
    let (northwest_inbox, _) = inbox_of(&host, "northwest");
    assert_eq!(northwest_inbox, ["HOST-NW-1", "HOST-NW-FLOOD", "HOST-NW-2"]);
    let demo_first = demo_first.unwrap();
    let (status, answer) = ems_call(
        host.inbox,
        "POST",
        &format!("/demo/inbox/{demo_first}/ack"),
        b"",
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["id"], demo_first);
    let (status, _) = ems_call(host.inbox, "GET", "/demo/inbox", b"");
    assert_eq!(status, 200);
    assert_eq!(
        inbox_of(&host, "demo").0,
        Vec::<String>::new(),
        "acknowledged"
    );
    assert_eq!(inbox_of(&host, "northwest").0.len(), 3, "untouched");
    // A code no customer has is 404, naming the customers; so is an API a customer lacks.
    let (status, answer) = ems_call(host.inbox, "GET", "/nobody/inbox", b"");
    assert_eq!(status, 404, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(error.contains("demo, northwest"), "{error}");
    let (status, answer) = ems_call(host.inbox, "GET", "/inbox", b"");
    assert_eq!(status, 404, "a path without a customer: {answer}");
    // The intake's other routes, under the customer: demo's stream status shows it held.
    let (status, answer) = ems_call(host.intake, "GET", "/demo/outbound", b"");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["held"].as_bool(), Some(true), "{answer}");
    // An MLLP message for a facility no customer receives as: AR, queued nowhere.
    let depths = || {
        ["demo", "northwest"].map(|code| {
            let (status, answer) = ems_call(host.intake, "GET", &format!("/{code}/outbound"), b"");
            assert_eq!(status, 200, "{answer}");
            answer["depth"].as_u64().unwrap()
        })
    };
    let before = depths();
    assert_eq!(before, [2, 0], "demo's two held, northwest's delivered");
    let stray = String::from_utf8(oru("HOST-OUT-STRAY")).unwrap().replacen(
        "|DEMO-TRUST|",
        "|NOBODY-TRUST|",
        1,
    );
    let ack = mllp_ack(host.mllp, stray.as_bytes());
    assert!(ack.contains("\rMSA|AR|HOST-OUT-STRAY"), "{ack:?}");
    assert!(
        ack.contains("NOBODY-TRUST"),
        "the AR names the facility: {ack:?}"
    );
    assert_eq!(depths(), before, "the stray message was queued");
    // Over HTTP the path names the customer, and a message naming another customer's
    // facility is refused there, not queued for the wrong Trust.
    let (status, answer) = queue(&host, "demo", &report);
    assert_eq!(status, 422, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("customer northwest's receiving facility"),
        "{error}"
    );
    assert_eq!(depths(), before, "the misaddressed message was queued");
    // A web page learns nothing of the customers (and neither does a non-loopback Host).
    for host_line in [
        "Host: 127.0.0.1\r\nOrigin: http://attacker.example",
        "Host: attacker.example",
    ] {
        use std::io::{Read, Write};
        let mut tcp = std::net::TcpStream::connect(host.inbox).unwrap();
        tcp.set_read_timeout(Some(wire::IO_LIMIT)).unwrap();
        write!(
            tcp,
            "GET /nobody/inbox HTTP/1.1\r\n{host_line}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        tcp.read_to_end(&mut raw).unwrap();
        let response = wire::parse_complete(&raw).unwrap();
        assert_eq!(
            response.status,
            403,
            "{host_line}: {}",
            response.body_text()
        );
        assert!(!response.body_text().contains("northwest"), "{host_line}");
    }
}

/// `gw-host routes --env test`: each customer's host name, its paths on the shared EMS APIs
/// and the MSH-6 that routes its MLLP messages; an unknown environment is a usage error.
#[test]
fn routes_names_each_host_name_and_its_customers_ems_routes() {
    let specs = [gw_demo::SPEC, gw_northwest::SPEC];
    let mut out = Vec::new();
    let code =
        hl7gw_runtime::host::cli::run(&specs, ["gw-host", "routes", "--env", "test"], &mut out);
    assert_eq!(code, 0);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "demo-test.api.example-ems.cloud -> demo\n  \
         demo: inbox /demo/inbox, intake /demo/outbound, intake MLLP by MSH-6 DEMO-TRUST\n\
         northwest-test.api.example-ems.cloud -> northwest\n  \
         northwest: intake /northwest/outbound, intake MLLP by MSH-6 NWCH\n"
    );
    let mut out = Vec::new();
    let code =
        hl7gw_runtime::host::cli::run(&specs, ["gw-host", "routes", "--env", "staging"], &mut out);
    assert_eq!(code, 2);
}

/// Two customers whose options point at one store are refused before anything starts: they
/// would share dedup keys, the inbox and the outbound stream.
#[test]
fn two_customers_on_one_store_are_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let mut northwest = customer(
        &gw_northwest::SPEC,
        "https://127.0.0.1:9/",
        dir.path(),
        true,
    );
    let demo = customer(&gw_demo::SPEC, "https://127.0.0.1:9/", dir.path(), false);
    northwest.options.store = demo.options.store.clone();
    let error = refused_before_start(vec![demo, northwest]);
    assert!(
        error.contains("demo") && error.contains("northwest") && error.contains("store.sqlite"),
        "{error}"
    );
    assert!(
        !dir.path().join("store.sqlite").exists(),
        "nothing was opened: {error}"
    );
}

/// The host's EMS listeners are shared, so customers that cannot share them are refused
/// before anything starts: one `ems` by mutual TLS beside another's plain loopback, and two
/// customers sending as one receiving facility (MSH-6 routes the shared MLLP intake).
#[test]
fn customers_that_cannot_share_the_ems_listeners_are_refused_before_anything_starts() {
    use hl7gw_runtime::config::{EmsAccess, EmsTls};
    let dir = tempfile::tempdir().unwrap();
    let refused = |demo: Customer, northwest: Customer| refused_before_start(vec![demo, northwest]);
    let demo = || {
        customer(
            &gw_demo::SPEC,
            "https://127.0.0.1:9/",
            &dir.path().join("demo"),
            false,
        )
    };
    let northwest = || {
        customer(
            &gw_northwest::SPEC,
            "https://127.0.0.1:9/",
            &dir.path().join("northwest"),
            true,
        )
    };

    let mut by_tls = northwest();
    by_tls
        .spec
        .environment_mut(EnvName::Test)
        .as_mut()
        .unwrap()
        .ems = EmsAccess::MutualTls(EmsTls {
        address: "127.0.0.1".into(),
        cert: "ems.crt".into(),
        key: "ems.key".into(),
        client_ca: "ems-ca.crt".into(),
        client_crl: None,
        allowed_clients: vec!["CN=ems-test.example-ems.cloud".into()].into(),
    });
    let error = refused(demo(), by_tls);
    assert_eq!(
        error,
        "customers demo and northwest have different `ems` access (plain loopback and mutual TLS): \
         the host serves EMS through one set of listeners, so every customer's `ems` must be the same"
    );

    let mut same_facility = northwest();
    let environment = same_facility
        .spec
        .environment_mut(EnvName::Test)
        .as_mut()
        .unwrap();
    let send = environment.send.as_mut().unwrap();
    send.header.receiving_facility = "DEMO-TRUST^2.16.840.1.113883^ISO".into();
    let error = refused(demo(), same_facility);
    assert!(
        error.starts_with(
            "customers demo and northwest both send as receiving facility DEMO-TRUST "
        ),
        "{error}"
    );
    assert!(
        !dir.path().join("demo/store.sqlite").exists(),
        "nothing was opened: {error}"
    );
}

/// With `ems` by mutual TLS (the same for every customer, as EMS is one client), the host's
/// shared EMS listeners take EMS's client certificate and refuse others, and route as over
/// plain loopback: each customer's inbox under its code, MLLP over TLS by MSH-6.
#[test]
fn shared_ems_listeners_by_mutual_tls_admit_ems_only_and_route_each_customer() {
    use hl7gw_tests::ems::{https, mllp_tls, mutual_tls, write_pki};
    let dir = tempfile::tempdir().unwrap();
    let pki = write_pki(dir.path());
    let mut customers = Vec::new();
    /// Makes one customer's certificates in a folder.
    type MakePki = fn(&Path) -> CustomerPki;
    let pkis: [(&GatewaySpec, &str, MakePki, bool); 2] = [
        (&gw_demo::SPEC, "demo", demo_pki, false),
        (&gw_northwest::SPEC, "northwest", northwest_pki, true),
    ];
    for (spec, code, make_pki, inbox) in pkis {
        let folder = dir.path().join(code);
        make_pki(&folder);
        // Each customer's certificate folder holds its copy of EMS's material.
        for file in [
            "ems-server.crt",
            "ems-server.key",
            "ems-ca.crt",
            "ems-ca.crl",
        ] {
            std::fs::copy(dir.path().join(file), folder.join("certs").join(file)).unwrap();
        }
        let mut customer = customer(spec, "https://127.0.0.1:9/", &folder, inbox);
        customer
            .spec
            .environment_mut(EnvName::Test)
            .as_mut()
            .unwrap()
            .ems = mutual_tls(dir.path());
        customers.push(customer);
    }
    let host = InProcess::start(customers);
    let (runtime, inbox, mllp) = (
        &host.runtime,
        host.ready.inbox_listen,
        host.ready.mllp_listen,
    );
    let ems = wire::client_config(&pki.ca_pem, Some(&pki.ems), &[b"http/1.1"]);
    let stranger = wire::client_config(&pki.ca_pem, Some(&pki.stranger), &[b"http/1.1"]);
    let plain = wire::client_config(&pki.ca_pem, None, &[b"http/1.1"]);

    // EMS's certificate reaches each customer's inbox under its code.
    for code in ["demo", "northwest"] {
        let response = runtime
            .block_on(https(
                inbox,
                ems.clone(),
                "GET",
                &format!("/{code}/inbox"),
                b"",
            ))
            .unwrap();
        assert_eq!(response.status, 200, "{code}: {}", response.body_text());
    }
    // Another subject, or no certificate, gets no answer.
    for (config, what) in [
        (stranger, "a subject not allowed"),
        (plain, "no certificate"),
    ] {
        let got = runtime.block_on(https(inbox, config, "GET", "/demo/inbox", b""));
        assert!(
            got.is_err(),
            "{what} was served: {:?}",
            got.map(|r| r.status)
        );
    }
    // MLLP over TLS, routed by MSH-6 to northwest (NWCH), queued there.
    let report = std::fs::read_to_string(
        hl7gw_tests::repo().join("examples/messages/northwest/oru_r01_pdf.hl7"),
    )
    .unwrap()
    .replace("\r\n", "\r")
    .replace('\n', "\r");
    let report = with_control_id(report.as_bytes(), "HOST-TLS-NW1");
    let code = runtime
        .block_on(mllp_tls(mllp, ems.clone(), &report))
        .unwrap();
    assert_eq!(code, hl7gw_runtime::hl7::AckCode::ApplicationAccept);
    host.stop();
}

/// A customer whose gateway cannot start (here: its certificate files are missing) stops
/// alone: the host serves the others, refuses the customer's name in the handshake
/// (`reason="stopped"`), answers 503 on its EMS paths and AE to its MLLP messages, and
/// `/healthz` names it.
#[test]
fn a_customer_that_cannot_start_stops_alone() {
    let dir = tempfile::tempdir().unwrap();
    let northwest_dir = dir.path().join("northwest");
    let northwest = northwest_pki(&northwest_dir);
    // Demo's certificate folder is empty.
    let demo_dir = dir.path().join("demo");
    std::fs::create_dir_all(demo_dir.join("certs")).unwrap();
    let customers = vec![
        customer(&gw_demo::SPEC, "https://127.0.0.1:9/", &demo_dir, false),
        customer(
            &gw_northwest::SPEC,
            "https://127.0.0.1:9/",
            &northwest_dir,
            true,
        ),
    ];
    let host = InProcess::start(customers);
    let runtime = &host.runtime;
    let ready = &host.ready;
    let (listen, ops, inbox, mllp) = (
        ready.listen,
        ready.ops_listen,
        ready.inbox_listen,
        ready.mllp_listen,
    );
    let not_started = ready.not_started.clone();
    assert_eq!(not_started.len(), 1, "{not_started:?}");
    assert_eq!(not_started[0].0, "demo");
    assert!(not_started[0].1.contains("server.crt"), "{not_started:?}");

    // Northwest serves: its engine gets AA, its inbox answers.
    let engine = wire::client_config(&northwest.ca_pem, Some(&northwest.engine), &[b"http/1.1"]);
    let (message, _) = northwest_sample("ADT^A28", "HOST-ALONE-1").unwrap();
    let got = runtime
        .block_on(exchange(
            listen,
            NORTHWEST_HOST,
            engine.clone(),
            NORTHWEST_HOST,
            "/northwest/hl7/v2",
            &message,
        ))
        .unwrap();
    assert_eq!(ack_of(&got.response).code(), "AA");
    let (status, answer) = ems_call(inbox, "GET", "/northwest/inbox", b"");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["items"].as_array().unwrap().len(), 1, "{answer}");

    // Demo's name is refused in the handshake and counted as stopped.
    let refused = runtime.block_on(wire::connect(listen, DEMO_HOST, engine));
    let error = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains("AccessDenied"), "{error:?}");
    let metrics = wire::plain_request(ops, "GET", "/metrics", &[], b"")
        .unwrap()
        .body_text();
    assert!(
        metrics.contains("hl7gw_host_connections_refused_total{reason=\"stopped\"} 1"),
        "{metrics}"
    );
    // Its EMS paths answer 503 with why; its MLLP messages AE, queued nowhere.
    let (status, answer) = ems_call(inbox, "GET", "/demo/inbox", b"");
    assert_eq!(status, 503, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert_eq!(error, "customer demo's gateway is not running");
    let ack = mllp_ack(mllp, &oru("HOST-ALONE-D1"));
    assert!(ack.contains("\rMSA|AE|HOST-ALONE-D1"), "{ack:?}");
    // /healthz names it.
    let health = wire::plain_request(ops, "GET", "/healthz", &[], b"").unwrap();
    assert_eq!(health.status, 503, "{}", health.body_text());
    assert!(
        health.body_text().contains("demo: gateway"),
        "{}",
        health.body_text()
    );
    host.stop();
}

/// A host run in this test's process, for the tests that need no second process.
struct InProcess {
    runtime: tokio::runtime::Runtime,
    ready: hl7gw_runtime::host::HostReady,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), hl7gw_runtime::host::HostError>>,
}

impl InProcess {
    /// Starts the host's TEST environment of `customers` on loopback; panics with its error
    /// when it does not become ready within 30 s.
    fn start(customers: Vec<Customer>) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let task = runtime.spawn(async move {
            hl7gw_runtime::host::serve(
                customers,
                &loopback_host(),
                async move {
                    let _ = stopped.await;
                },
                move |ready| {
                    let _ = ready_tx.send(ready.clone());
                },
            )
            .await
        });
        let Ok(ready) = ready_rx.recv_timeout(Duration::from_secs(30)) else {
            panic!("the host did not start: {:?}", runtime.block_on(task));
        };
        Self {
            runtime,
            ready,
            stop,
            task,
        }
    }

    /// Stops the host and checks it ended without an error within 30 s.
    fn stop(self) {
        let _ = self.stop.send(());
        let task = self.task;
        let ended = self
            .runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(30), task).await })
            .expect("the host did not stop");
        ended.unwrap().unwrap();
    }
}

/// The host with each customer's store in its own PostgreSQL database (one private
/// server): each name's message is acknowledged and stored in its customer's database only,
/// each inbox on the shared EMS side reads its own; two customers on one database are
/// refused before anything starts.
#[test]
fn on_postgres_each_customer_keeps_its_own_database() {
    use hl7gw_tests::postgres::{ChildStore, TestPostgres, store_config};
    let Some(server) = TestPostgres::start("host on_postgres_each_customer_keeps_its_own_database")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let demo_pki = demo_pki(&dir.path().join("demo"));
    let northwest_pki = northwest_pki(&dir.path().join("northwest"));
    let on_database = |spec: &GatewaySpec, code: &str, inbox: bool, store: &ChildStore| {
        let folder = dir.path().join(code);
        let mut customer = customer(spec, "https://127.0.0.1:9/", &folder, inbox);
        customer
            .spec
            .environment_mut(EnvName::Test)
            .as_mut()
            .unwrap()
            .store = store_config(&store.to_json()).unwrap();
        customer.options.store = None;
        customer.options.control_dir = Some(folder);
        customer
    };
    // The password files beside each customer's certificates, where its options look.
    let demo_db = ChildStore::create(&server, "host_demo", &dir.path().join("demo/certs"), 5_000);
    let northwest_db = ChildStore::create(
        &server,
        "host_northwest",
        &dir.path().join("northwest/certs"),
        5_000,
    );

    // One database for both: refused before anything starts.
    let error = refused_before_start(vec![
        on_database(&gw_demo::SPEC, "demo", false, &demo_db),
        on_database(&gw_northwest::SPEC, "northwest", true, &demo_db),
    ]);
    assert!(error.contains(&demo_db.dbname), "{error}");

    let host = InProcess::start(vec![
        on_database(&gw_demo::SPEC, "demo", false, &demo_db),
        on_database(&gw_northwest::SPEC, "northwest", true, &northwest_db),
    ]);
    let (demo_message, _) = demo_sample("ADT^A28", "HOST-PG-DEMO").unwrap();
    let (northwest_message, _) = northwest_sample("ADT^A28", "HOST-PG-NW").unwrap();
    for (name, pki, path, message) in [
        (DEMO_HOST, &demo_pki, "/hl7", &demo_message),
        (
            NORTHWEST_HOST,
            &northwest_pki,
            "/northwest/hl7/v2",
            &northwest_message,
        ),
    ] {
        let engine = wire::client_config(&pki.ca_pem, Some(&pki.engine), &[b"http/1.1"]);
        let got = host
            .runtime
            .block_on(exchange(
                host.ready.listen,
                name,
                engine,
                name,
                path,
                message,
            ))
            .unwrap();
        assert_eq!(ack_of(&got.response).code(), "AA", "{name}");
    }
    let control_ids = |store: &ChildStore| {
        server
            .psql(
                &store.dbname,
                "SELECT string_agg(control_id, ',') FROM inbound_messages",
            )
            .trim()
            .to_owned()
    };
    assert_eq!(control_ids(&demo_db), "HOST-PG-DEMO");
    assert_eq!(control_ids(&northwest_db), "HOST-PG-NW");
    for (code, id) in [("demo", "HOST-PG-DEMO"), ("northwest", "HOST-PG-NW")] {
        let (status, answer) = ems_call(
            host.ready.inbox_listen,
            "GET",
            &format!("/{code}/inbox"),
            b"",
        );
        assert_eq!(status, 200, "{answer}");
        let ids: Vec<&str> = answer["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["control_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [id], "{code}");
    }
    host.stop();
}

/// The error of a host asked to serve `customers` that must refuse before it is ready (it
/// panics if the host becomes ready).
fn refused_before_start(customers: Vec<Customer>) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = runtime.block_on(hl7gw_runtime::host::serve(
        customers,
        &loopback_host(),
        std::future::pending(),
        |_| panic!("the host must not start"),
    ));
    result.unwrap_err().to_string()
}
