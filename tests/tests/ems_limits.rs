//! The EMS-facing listeners are bounded as the receiver is, across processes: a gateway in a
//! child process serves the inbox API, the intake API and the intake MLLP listener with
//! mutual TLS (`ems.tls`), and
//!
//! - 300 idle raw TCP connections from 127.0.0.2 to each of them fill only that address's
//!   share (`limits.connections_per_ip`; the rest are closed and counted), while EMS at
//!   127.0.0.1 with its certificate is served on all three;
//! - idle connections without a certificate never take an MLLP slot
//!   (`limits.mllp_connections`): those go to authenticated clients only.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hl7gw_runtime::config::defaults;
use hl7gw_runtime::hl7::AckCode;
use hl7gw_tests::child::{ChildProcess, ChildSpec, loopback_options, serve_test_gateway};
use hl7gw_tests::ems::{Pki, https, mllp_exchange, mllp_tls, mutual_tls, write_pki};
use hl7gw_tests::messages::oru;
use hl7gw_tests::wire;
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};

const CHILD_ENV: &str = "HL7GW_E2E_EMS_LIMITS_GATEWAY";
const CHILD_TEST: &str = "child_ems_limits_gateway";
const READY: &str = "HL7GW-EMS-LIMITS-READY ";

/// Where the floods come from; EMS itself connects from 127.0.0.1.
const FLOOD: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// In the child: gw-demo's TEST environment with `ems.tls` pointing at the test's files and
/// the test's `limits`.
#[test]
#[ignore = "the gateway child process of the tests below"]
fn child_ems_limits_gateway() {
    hl7gw_tests::child::child_main(CHILD_ENV, "EMS limits gateway", |config| {
        hl7gw_runtime::app::init_logging();
        let config: Value = serde_json::from_str(config).map_err(|e| e.to_string())?;
        let dir = PathBuf::from(config["dir"].as_str().ok_or("no dir")?);
        let mut spec = gw_demo::SPEC;
        let environment = spec.test.as_mut().ok_or("no TEST environment")?;
        environment.ems = mutual_tls(&dir);
        environment.limits =
            serde_json::from_value(config["limits"].clone()).map_err(|e| e.to_string())?;
        let options = loopback_options(dir.join("gateway.sqlite"), None);
        serve_test_gateway(&spec, &options, READY, |resolved| {
            json!({
                "ops": resolved.ops_listen.to_string(),
                "inbox": resolved.inbox_listen.to_string(),
                "intake": resolved.send.as_ref().map(|s| s.intake_listen.to_string()),
                "mllp": resolved.send.as_ref().map(|s| s.mllp_listen.to_string()),
            })
        })
    });
}

/// A gateway with these `limits:` and EMS's certificates.
struct Case {
    child: ChildProcess,
    pki: Pki,
    ops: SocketAddr,
    inbox: SocketAddr,
    intake: SocketAddr,
    mllp: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Case {
    fn start(limits: Value) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = write_pki(dir.path());
        let (child, ready) = ChildProcess::start(
            ChildSpec {
                what: "EMS limits gateway",
                test: CHILD_TEST,
                config: (
                    CHILD_ENV,
                    json!({ "dir": dir.path(), "limits": limits }).to_string(),
                ),
                env: &[],
                ready: READY,
            },
            &dir.path().join("gateway.log"),
        );
        let addr = |key: &str| -> SocketAddr { ready[key].as_str().unwrap().parse().unwrap() };
        Self {
            ops: addr("ops"),
            inbox: addr("inbox"),
            intake: addr("intake"),
            mllp: addr("mllp"),
            child,
            pki,
            _dir: dir,
        }
    }

    fn as_ems(&self) -> std::sync::Arc<rustls::ClientConfig> {
        wire::client_config(&self.pki.ca_pem, Some(&self.pki.ems), &[b"http/1.1"])
    }

    /// The value of the metric line `series` (`name{labels}`), 0 when absent.
    async fn metric(&self, series: &str) -> u64 {
        let ops = self.ops;
        let text = tokio::task::spawn_blocking(move || {
            wire::plain_request(ops, "GET", "/metrics", &[], b"")
        })
        .await
        .unwrap()
        .unwrap()
        .body_text();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0)
    }

    /// Waits (bounded) until `series` reaches `value`.
    async fn wait_for_metric(&self, series: &str, value: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.metric(series).await;
            if got == value {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{series} stayed at {got}, not {value}; log:\n{}",
                self.child.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `count` raw TCP connections from `from` to `to` that never send a byte.
async fn idle_connections(from: IpAddr, to: SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut open = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(from, 0)).unwrap();
        let connect = tokio::time::timeout(wire::IO_LIMIT, socket.connect(to));
        open.push(connect.await.unwrap().unwrap());
    }
    open
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn idle_connections_from_one_address_leave_every_ems_listener_to_ems() {
    let case = Case::start(json!({}));
    let share = u64::from(defaults::CONNECTIONS_PER_IP);
    runtime().block_on(async {
        let doors = [
            ("inbox", case.inbox),
            ("intake", case.intake),
            ("intake_mllp", case.mllp),
        ];
        let mut idle = Vec::new();
        for (listener, addr) in doors {
            idle.push(idle_connections(FLOOD, addr, 300).await);
            // The address's share waits in the handshake; the others are closed at once.
            let per_ip = format!(
                "hl7gw_connections_rejected_total{{listener=\"{listener}\",reason=\"per_ip\"}}"
            );
            case.wait_for_metric(&per_ip, 300 - share).await;
        }

        // EMS at another address is served on all three while the flood holds its share.
        let as_ems = case.as_ems();
        let listed = https(case.inbox, as_ems.clone(), "GET", "/inbox", b"")
            .await
            .unwrap();
        assert_eq!(listed.status, 200, "{}", listed.body_text());
        let queued = https(
            case.intake,
            as_ems.clone(),
            "POST",
            "/outbound",
            &oru("LIMITS-1"),
        )
        .await
        .unwrap();
        assert_eq!(queued.status, 201, "{}", queued.body_text());
        let ack = mllp_tls(case.mllp, as_ems.clone(), &oru("LIMITS-2"))
            .await
            .unwrap();
        assert_eq!(ack, AckCode::ApplicationAccept);

        // The flood's share was still held (no handshake timed out yet), and nothing else
        // was refused.
        for (listener, _) in doors {
            let series = |name: &str, reason: &str| {
                format!("{name}{{listener=\"{listener}\",reason=\"{reason}\"}}")
            };
            let timeouts = series("hl7gw_tls_failures_total", "timeout");
            assert_eq!(case.metric(&timeouts).await, 0, "{timeouts}");
            for reason in ["capacity", "handshakes", "subject"] {
                let refused = series("hl7gw_connections_rejected_total", reason);
                assert_eq!(case.metric(&refused).await, 0, "{refused}");
            }
        }
        drop(idle);
    });
}

#[test]
fn idle_connections_without_a_certificate_never_take_the_mllp_slots() {
    // Two MLLP sessions at once; a flood of unauthenticated connections from two addresses,
    // each within its share and the handshake budget.
    let case = Case::start(json!({ "mllp_connections": 2 }));
    runtime().block_on(async {
        let mut flood = idle_connections(FLOOD, case.mllp, 20).await;
        let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
        flood.extend(idle_connections(other, case.mllp, 20).await);
        // One more from the flood's address that tries TLS without a certificate: once it
        // is counted, every idle connection before it has been accepted too.
        let no_cert = wire::client_config(&case.pki.ca_pem, None, &[]);
        let refused = async {
            let tcp = TcpSocket::new_v4()?;
            tcp.bind(SocketAddr::new(FLOOD, 0))?;
            let tcp = tcp.connect(case.mllp).await?;
            let mut tls = wire::tls_over(tcp, "localhost", no_cert).await?;
            mllp_exchange(&mut tls, &oru("LIMITS-X")).await
        };
        assert!(refused.await.is_err(), "no certificate, no ACK");
        case.wait_for_metric(
            "hl7gw_tls_failures_total{listener=\"intake_mllp\",reason=\"no_client_cert\"}",
            1,
        )
        .await;

        // EMS holds both MLLP slots, and a third session is closed.
        let as_ems = case.as_ems();
        let mut sessions = Vec::new();
        for n in 0..2 {
            let mut tls = wire::connect(case.mllp, "localhost", as_ems.clone())
                .await
                .unwrap();
            let ack = mllp_exchange(&mut tls, &oru(&format!("LIMITS-SLOT-{n}"))).await;
            assert_eq!(ack.unwrap(), AckCode::ApplicationAccept, "session {n}");
            sessions.push(tls);
        }
        let third = mllp_tls(case.mllp, as_ems.clone(), &oru("LIMITS-THIRD")).await;
        assert!(
            third.is_err(),
            "a third session past mllp_connections: {third:?}"
        );

        // A session that ends gives its slot back.
        drop(sessions.pop());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match mllp_tls(case.mllp, as_ems.clone(), &oru("LIMITS-AGAIN")).await {
                Ok(ack) => {
                    assert_eq!(ack, AckCode::ApplicationAccept);
                    break;
                }
                Err(e) => assert!(Instant::now() < deadline, "slot never given back: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(flood);
    });
}
