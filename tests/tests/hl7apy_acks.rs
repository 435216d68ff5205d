//! The ACKs the receiving gateway builds pass hl7apy's STRICT validation: every outcome the
//! eastbay gateway (HL7 v2.3, MSH-15/16 filled) answers (AA, AE 101/102, AR 200/202/203, AR
//! 205 for a reused key) in each version from 2.3 to 2.8, through `Gateway::process` with a
//! real store; and the ACKs it builds from a local engine's answer behind the MLLP sink (a
//! real MLLP peer on loopback that answers with its own MSH, LF line ends and an ERR). From v2.3.1 the ACK names its structure (`ACK^A28^ACK`), which strict
//! validators need; in v2.3 MSH-9 has two components and a third is refused.
//!
//! Needs python3 with hl7apy (`pip install hl7apy==1.3.5`); says it skipped without them,
//! unless `HL7GW_REQUIRE_HL7APY` is set (CI sets it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hl7gw_runtime::GatewaySpec;
use hl7gw_runtime::config::{EnvName, Environment, Text};
use hl7gw_runtime::gateway::Gateway;
use hl7gw_runtime::metrics::Metrics;
use hl7gw_runtime::mllp;
use hl7gw_runtime::server::{Hl7Request, Hl7Response};
use hl7gw_runtime::sink::{MllpSink, Sink};
use hl7gw_runtime::store::Store;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const VERSIONS: [&str; 8] = ["2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn hl7apy_available() -> bool {
    Command::new("python3")
        .args(["-c", "import hl7apy"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Each eastbay sample with MSH-12 set to `version` and a control id unique to it.
fn samples(version: &str) -> Vec<(String, Vec<u8>)> {
    let dir = repo().join("examples/messages/eastbay");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let text = text.replacen("|2.3|", &format!("|{version}|"), 1).replacen(
                "|EB-",
                &format!("|V{version}-EB-"),
                1,
            );
            (name, text.into_bytes())
        })
        .collect()
}

async fn answer(gateway: &Gateway, body: &[u8], n: usize) -> Vec<u8> {
    let response = gateway
        .process(Hl7Request {
            body: Bytes::copy_from_slice(body),
            charset: None,
            media_type: None,
            peer_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            peer_subject: "CN=rhapsody-test.eastbay.nhs.uk".into(),
            request_id: format!("req-{n}"),
        })
        .await;
    match response {
        Hl7Response::Ack(ack) => ack.body,
        other => panic!("no ACK: {other:?}"),
    }
}

/// A local engine on 127.0.0.1 answering each framed message with its own ACK: AE with an
/// ERR at PID-8, LF line ends. Sends every message it received to `received`.
async fn mllp_engine(received: mpsc::UnboundedSender<Vec<u8>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut deframer = mllp::Deframer::new(1 << 20);
            let Ok(Some(message)) = mllp::read_message(&mut stream, &mut deframer).await else {
                continue;
            };
            let text = String::from_utf8_lossy(&message).into_owned();
            let control_id = text.split('|').nth(9).unwrap_or_default().to_owned();
            let _ = received.send(message);
            let answer = format!(
                "MSH|^~\\&|ENGINE|LOCAL|RHAPSODY|EASTBAY|20260203091501||ACK|ENG-1|T|2.3\n\
                 MSA|AE|{control_id}|sex not known to the engine\n\
                 ERR|PID^1^8^103&Table value not found&HL70357\n"
            );
            let _ = mllp::write_message(&mut stream, answer.as_bytes()).await;
        }
    });
    addr
}

/// The gateway's ACKs for eastbay messages in each version, sent with CRLF line ends and
/// forwarded to a local engine that refuses them; checks the engine got CR line ends.
async fn mllp_acks(store: &Path) -> Vec<(String, Vec<u8>)> {
    let (tx, mut received) = mpsc::unbounded_channel();
    let engine = mllp_engine(tx).await;
    let (spec, environment) = accepting_every_version();
    let gateway = Gateway::new(
        Arc::new(spec),
        environment,
        Store::open(store).unwrap(),
        Sink::Mllp(MllpSink::new(engine.to_string(), Duration::from_secs(10))),
        Arc::new(Metrics::new()),
    );
    let mut out = Vec::new();
    for version in VERSIONS {
        let (_, a28) = samples(version)
            .into_iter()
            .find(|(n, _)| n == "adt_a28")
            .unwrap();
        let crlf = String::from_utf8(a28.clone())
            .unwrap()
            .replace('\r', "\r\n")
            .into_bytes();
        let ack = answer(&gateway, &crlf, out.len()).await;
        let forwarded = tokio::time::timeout(Duration::from_secs(10), received.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(forwarded, a28, "the engine gets CR segment ends");
        let text = String::from_utf8(ack.clone()).unwrap();
        assert!(
            text.starts_with("MSH|^~\\&|EMS|EMS-EASTBAY|RHAPSODY|EASTBAY|"),
            "{text:?}"
        );
        assert!(
            !text.contains("ENGINE") && !text.contains("ENG-1"),
            "{text:?}"
        );
        assert!(text.contains("MSA|AE|"), "{text:?}");
        assert!(text.contains("103"), "{text:?}");
        out.push((format!("{version}-mllp-engine-ae"), ack));
    }
    out
}

/// The eastbay spec accepting every version of [`VERSIONS`] in TEST, so each version gets
/// its AA and AE besides the AR of another.
fn accepting_every_version() -> (GatewaySpec, Environment) {
    let mut spec = gw_eastbay::SPEC;
    let environment = spec.environment_mut(EnvName::Test).as_mut().unwrap();
    environment.accept_versions = VERSIONS.iter().map(|v| Text::from(*v)).collect();
    let environment = environment.clone();
    (spec, environment)
}

/// Every ACK, as `(label, bytes)`.
async fn acks(store: &Path) -> Vec<(String, Vec<u8>)> {
    let (spec, environment) = accepting_every_version();
    let gateway = Gateway::new(
        Arc::new(spec),
        environment,
        Store::open(store).unwrap(),
        Sink::Inbox,
        Arc::new(Metrics::new()),
    );
    let mut out = Vec::new();
    for version in VERSIONS {
        for (name, body) in samples(version) {
            let ack = answer(&gateway, &body, out.len()).await;
            out.push((format!("{version}-{name}"), ack));
        }
        // The same key with other content: AR 205.
        let (_, a28) = samples(version)
            .into_iter()
            .find(|(n, _)| n == "adt_a28")
            .unwrap();
        let other = String::from_utf8(a28)
            .unwrap()
            .replace("HUSSAIN", "HUSSEIN")
            .into_bytes();
        let ack = answer(&gateway, &other, out.len()).await;
        assert!(String::from_utf8_lossy(&ack).contains("205"), "{ack:?}");
        out.push((format!("{version}-conflict"), ack));
    }
    out
}

#[tokio::test]
async fn every_ack_the_gateway_builds_passes_hl7apy_strict_validation() {
    if !hl7apy_available() {
        assert!(
            std::env::var_os("HL7GW_REQUIRE_HL7APY").is_none(),
            "HL7GW_REQUIRE_HL7APY is set but python3 cannot import hl7apy"
        );
        // Written past libtest's capture, so the skip shows in a passing run.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"SKIPPED: python3 with hl7apy is not installed (pip install hl7apy==1.3.5; set \
              HL7GW_REQUIRE_HL7APY to make this fail)\n",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut acks = acks(&dir.path().join("store.sqlite")).await;
    acks.extend(mllp_acks(&dir.path().join("mllp.sqlite")).await);
    let mut files = Vec::new();
    let mut codes = std::collections::BTreeSet::new();
    for (label, ack) in &acks {
        let text = String::from_utf8(ack.clone()).unwrap();
        assert!(
            text.ends_with('\r') && !text.contains('\n'),
            "{label}: {text:?}"
        );
        let msa = text.split('\r').find(|s| s.starts_with("MSA|")).unwrap();
        codes.insert(msa[4..6].to_owned());
        let msh9 = text.split('|').nth(8).unwrap();
        let version = text.split('|').nth(11).unwrap().split('\r').next().unwrap();
        if version == "2.3" {
            assert_eq!(msh9.split('^').count(), 2, "{label}: {msh9}");
        } else {
            assert!(msh9.ends_with("^ACK"), "{label}: {msh9}");
        }
        let path = dir.path().join(format!("{label}.hl7"));
        std::fs::write(&path, ack).unwrap();
        files.push(path);
    }
    assert_eq!(
        codes.into_iter().collect::<Vec<_>>(),
        ["AA", "AE", "AR"],
        "application ACKs only, whatever MSH-15/16 ask"
    );
    let out = Command::new("python3")
        .arg(repo().join("tests/hl7apy/validate_acks.py"))
        .args(&files)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "hl7apy refused ACKs:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        report.lines().filter(|l| l.starts_with("ok ")).count(),
        acks.len()
    );
}
