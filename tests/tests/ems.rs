//! The EMS-facing listeners with mutual TLS (`ems.tls`), across processes: a gateway in a
//! child process serves the inbox API, the intake API and the intake MLLP listener over TLS;
//! EMS with its client certificate is served on each, and a client without a certificate,
//! with a certificate of another CA, with one `ems.tls.client_crl` revokes, or with a subject
//! not in `ems.allowed_clients` is refused (and logged) on each, as is plain HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::PathBuf;

use hl7gw_runtime::hl7::AckCode;
use hl7gw_tests::child::{ChildProcess, ChildSpec, loopback_options, serve_test_gateway};
use hl7gw_tests::ems::{https, mllp_tls, mutual_tls, write_pki};
use hl7gw_tests::wire;
use serde_json::{Value, json};

const CHILD_ENV: &str = "HL7GW_E2E_EMS_GATEWAY";
const CHILD_TEST: &str = "child_ems_gateway";
const READY: &str = "HL7GW-EMS-READY ";

/// In the child: gw-demo's TEST environment with `ems.tls` pointing at the test's files.
#[test]
#[ignore = "the gateway child process of the tests below"]
fn child_ems_gateway() {
    hl7gw_tests::child::child_main(CHILD_ENV, "EMS gateway", |config| {
        hl7gw_runtime::app::init_logging();
        run_child(config)
    });
}

fn run_child(config: &str) -> Result<(), String> {
    let config: Value = serde_json::from_str(config).map_err(|e| e.to_string())?;
    let dir = PathBuf::from(config["dir"].as_str().ok_or("no dir")?);
    let mut spec = gw_demo::SPEC;
    let environment = spec.test.as_mut().ok_or("no TEST environment")?;
    environment.ems = mutual_tls(&dir);
    let options = loopback_options(dir.join("gateway.sqlite"), None);
    serve_test_gateway(&spec, &options, READY, |resolved| {
        json!({
            "inbox": resolved.inbox_listen.to_string(),
            "intake": resolved.send.as_ref().map(|s| s.intake_listen.to_string()),
            "mllp": resolved.send.as_ref().map(|s| s.mllp_listen.to_string()),
        })
    })
}

#[test]
fn ems_without_its_certificate_is_refused_on_the_inbox_intake_and_mllp_and_served_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let pki = write_pki(dir.path());
    let (child, ready) = ChildProcess::start(
        ChildSpec {
            what: "EMS gateway",
            test: CHILD_TEST,
            config: (CHILD_ENV, json!({ "dir": dir.path() }).to_string()),
            env: &[],
            ready: READY,
        },
        &dir.path().join("gateway.log"),
    );
    let addr = |key: &str| -> SocketAddr { ready[key].as_str().unwrap().parse().unwrap() };
    let (inbox, intake, mllp) = (addr("inbox"), addr("intake"), addr("mllp"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let http1: &[&[u8]] = &[b"http/1.1"];
    let as_ems = wire::client_config(&pki.ca_pem, Some(&pki.ems), http1);
    let refused = [
        (
            "no client certificate",
            wire::client_config(&pki.ca_pem, None, http1),
        ),
        (
            "a subject not allowed",
            wire::client_config(&pki.ca_pem, Some(&pki.stranger), http1),
        ),
        (
            "another CA",
            wire::client_config(&pki.ca_pem, Some(&pki.other_ca), http1),
        ),
        (
            "a revoked certificate",
            wire::client_config(&pki.ca_pem, Some(&pki.revoked), http1),
        ),
    ];
    runtime.block_on(async {
        // EMS with its certificate: served on all three.
        let listed = https(inbox, as_ems.clone(), "GET", "/inbox", b"")
            .await
            .unwrap();
        assert_eq!(listed.status, 200, "{}", listed.body_text());
        let message = hl7gw_tests::messages::oru("EMS-TLS-1");
        let queued = https(intake, as_ems.clone(), "POST", "/outbound", &message)
            .await
            .unwrap();
        assert_eq!(queued.status, 201, "{}", queued.body_text());
        let ack = mllp_tls(
            mllp,
            as_ems.clone(),
            &hl7gw_tests::messages::oru("EMS-TLS-2"),
        )
        .await
        .unwrap();
        assert_eq!(ack, AckCode::ApplicationAccept);

        // Anyone else: refused on all three, nothing queued.
        for (who, config) in &refused {
            let got = https(inbox, config.clone(), "GET", "/inbox", b"").await;
            assert!(got.is_err(), "inbox, {who}: {:?}", got.map(|r| r.status));
            let got = https(
                intake,
                config.clone(),
                "POST",
                "/outbound",
                &hl7gw_tests::messages::oru("EMS-TLS-X"),
            )
            .await;
            assert!(got.is_err(), "intake, {who}: {:?}", got.map(|r| r.status));
            let got = mllp_tls(
                mllp,
                config.clone(),
                &hl7gw_tests::messages::oru("EMS-TLS-Y"),
            )
            .await;
            assert!(got.is_err(), "MLLP, {who}: {got:?}");
        }
        // Plain HTTP to a TLS listener is no way around it.
        for target in [inbox, intake] {
            let plain = tokio::task::spawn_blocking(move || {
                wire::plain_request(target, "GET", "/inbox", &[], b"")
            })
            .await
            .unwrap();
            assert!(
                !matches!(&plain, Ok(r) if r.status == 200),
                "plain HTTP: {:?}",
                plain.map(|r| r.status)
            );
        }
        let status = https(intake, as_ems.clone(), "GET", "/outbound", b"")
            .await
            .unwrap();
        let status: Value = serde_json::from_str(&status.body_text()).unwrap();
        assert_eq!(
            status["depth"], 2,
            "only EMS's two messages were queued (nothing delivers them here): {status}"
        );
    });
    let log = child.log_text();
    for reason in ["no_client_cert", "subject", "unknown_ca", "revoked"] {
        assert!(
            log.lines().any(|l| l.contains("EMS connection refused")
                && l.contains(&format!("reason=\"{reason}\""))),
            "a refusal with reason {reason} is logged:\n{log}"
        );
    }
}
