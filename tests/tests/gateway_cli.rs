//! The generated gateways' command line (`hl7gw_runtime::cli`), run in process with gw-demo's
//! generated parts: what an operator types and what comes back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use hl7gw_runtime::cli::run;

fn example(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/messages")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn gw(args: &[&str]) -> (u8, String) {
    let mut out = Vec::new();
    let mut argv = vec!["gw-demo"];
    argv.extend_from_slice(args);
    let code = run(&gw_demo::SPEC, argv, &mut out);
    (code, String::from_utf8(out).unwrap())
}

#[test]
fn map_decides_like_the_receiver() {
    let (code, out) = gw(&["map", "--env", "test", &example("adt_a28.hl7")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"ack\": \"AA\""), "{out}");
    assert!(out.contains("MSA|AA|A28-0001"), "{out}");
    let (code, out) = gw(&[
        "map",
        "--env",
        "test",
        &example("orm_o01_bad_procedure.hl7"),
    ]);
    assert_eq!(code, 1);
    assert!(out.contains("ERR|OBR^1^4^103"), "{out}");
    // A TEST message in PROD is rejected.
    let (code, out) = gw(&["map", "--env", "prod", &example("adt_a28.hl7")]);
    assert_eq!(code, 1);
    assert!(out.contains("\"ack\": \"AR\""), "{out}");
}

/// `map --outbound` reads what EMS hands the gateway through the outbound record's mapping;
/// without it the same message is not an inbound type and is rejected.
#[test]
fn map_outbound_reads_an_outbound_message_with_its_record() {
    // The sample ORU with the MRN the demo's patient record requires.
    let dir = tempfile::tempdir().unwrap();
    let sample = String::from_utf8(std::fs::read(example("oru_r01_pdf.hl7")).unwrap()).unwrap();
    let sample = if sample.contains("^MR") {
        sample
    } else {
        sample.replace("^^^NHS^NH|", "^^^NHS^NH~D123456^^^DEMO^MR|")
    };
    let oru = dir.path().join("oru_r01.hl7");
    std::fs::write(&oru, &sample).unwrap();
    let oru = oru.to_str().unwrap();
    let (code, out) = gw(&["map", "--env", "test", "--outbound", oru]);
    assert_eq!(code, 0, "{out}");
    let outcome = outcome_of(&out);
    assert_eq!(outcome["message_type"], "ORU^R01", "{out}");
    assert_eq!(outcome["errors"], serde_json::json!([]), "{out}");
    assert_eq!(outcome["record"]["placer_id"], "PLC-1001", "{out}");
    assert_eq!(outcome["record"]["procedure"], "COL", "{out}");
    assert_eq!(
        outcome["record"]["patient"]["nhs_number"], "9449305552",
        "{out}"
    );
    // Inbound rules refuse it: it is addressed to the Trust, and not an inbound type.
    let (code, out) = gw(&["map", "--env", "test", oru]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("\"record\": null"), "{out}");

    // A procedure the customer does not offer is an error at OBR-4, as the Trust would see it.
    let bad = dir.path().join("oru_bad_procedure.hl7");
    std::fs::write(&bad, sample.replace("COL^Colonoscopy", "XYZ^Unknown")).unwrap();
    let (code, out) = gw(&["map", "--env", "test", "--outbound", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let errors = &outcome_of(&out)["errors"];
    assert_eq!(
        (&errors[0]["code"], &errors[0]["location"]),
        (&serde_json::json!(103), &serde_json::json!("OBR-4.1")),
        "{out}"
    );
    // An inbound type is not an outbound one.
    let (code, out) = gw(&[
        "map",
        "--env",
        "test",
        "--outbound",
        &example("adt_a28.hl7"),
    ]);
    assert_eq!(code, 1, "{out}");
    let errors = &outcome_of(&out)["errors"];
    assert_eq!(
        (&errors[0]["code"], &errors[0]["location"]),
        (&serde_json::json!(200), &serde_json::json!("MSH-9")),
        "{out}"
    );
}

/// The outcome `map` prints as JSON before the ACK.
fn outcome_of(out: &str) -> serde_json::Value {
    let json_end = out.find("\nMSH|").unwrap();
    serde_json::from_str(&out[..json_end]).unwrap()
}

#[test]
fn check_config_and_queue_status() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir
        .path()
        .join("gateway.sqlite")
        .to_string_lossy()
        .into_owned();
    let (code, out) = gw(&["check", "--env", "test", "--store", &store]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ok: demo test") && out.contains("journal_mode: \"wal\""),
        "{out}"
    );
    assert!(
        out.contains("server CA"),
        "the sending side is checked too: {out}"
    );
    assert!(
        out.contains("EMS plain loopback, no authentication"),
        "how EMS connects is said: {out}"
    );
    let (code, out) = gw(&["config", "--env", "prod"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("specs/demo.yaml") && out.contains("processing_id: \"P\""),
        "{out}"
    );
    let (code, out) = gw(&["queue", "status", "--env", "test", "--store", &store]);
    assert_eq!(code, 0, "{out}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["depth"], 0);
    assert_eq!(status["held"], false);
    assert!(
        status.get("stalled").is_none(),
        "a store that takes writes stops nothing: {out}"
    );
    let (code, _) = gw(&["queue", "retry", "--env", "test", "--store", &store, "7"]);
    assert_eq!(code, 1, "no message 7 to retry");
}

/// The operations port has no TLS and no authentication: beyond loopback only when the
/// operator asks for it.
#[test]
fn the_operations_port_binds_beyond_loopback_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("gateway.sqlite");
    let store = store.to_string_lossy();
    let args = [
        "check",
        "--env",
        "test",
        "--store",
        &store,
        "--ops-listen",
        "0.0.0.0:0",
    ];
    let (code, out) = gw(&args);
    assert_eq!(code, 1, "refused without the flag: {out}");
    let mut allowed = args.to_vec();
    allowed.push("--ops-beyond-loopback");
    let (code, out) = gw(&allowed);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("operations 0.0.0.0:0"), "{out}");
    // The EMS listeners of plain loopback have no such flag: only ems.tls moves them.
    for flag in ["--inbox-listen", "--intake-listen", "--mllp-listen"] {
        let (code, out) = gw(&[
            "check",
            "--env",
            "test",
            "--store",
            &store,
            flag,
            "0.0.0.0:0",
        ]);
        assert_eq!(code, 1, "{flag} beyond loopback without ems.tls: {out}");
    }
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(gw(&["serve", "--env", "staging"]).0, 2);
    assert_eq!(gw(&["frobnicate"]).0, 2);
    // A prune forgets duplicate keys: no retention under a day, even for one run.
    assert_eq!(
        gw(&["serve", "--env", "test", "--retention-days", "0"]).0,
        2
    );
    assert_eq!(gw(&["map", "--env", "test", "/nonexistent.hl7"]).0, 2);
}

/// I/O failures are 2 (usage or I/O), not 1 (the input has errors): a port another process
/// holds, a certificate file that cannot be read.
#[test]
fn a_port_in_use_or_an_unreadable_file_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir
        .path()
        .join("gateway.sqlite")
        .to_string_lossy()
        .into_owned();
    // The certificates load and the store opens: only the port stands in the way.
    assert_eq!(gw(&["check", "--env", "test", "--store", &store]).0, 0);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, out) = gw(&[
        "serve", "--env", "test", "--store", &store, "--listen", &addr,
    ]);
    assert_eq!(code, 2, "serving on a port in use: {out}");
    let missing = dir.path().join("no-such-folder");
    let (code, out) = gw(&[
        "check",
        "--env",
        "test",
        "--store",
        &store,
        "--cert-dir",
        &missing.to_string_lossy(),
    ]);
    assert_eq!(code, 2, "certificates that cannot be read: {out}");
}

/// The demo TEST environment's certificates and keys copied into a folder of their own, for
/// `--cert-dir`: a test can break one without touching the repository's.
fn cert_dir_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let certs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../specs/certs/test");
    for name in [
        "server.crt",
        "server.key",
        "trust-ca.crt",
        "client.crt",
        "client.key",
    ] {
        std::fs::copy(certs.join(name), dir.path().join(name)).unwrap();
    }
    dir
}

/// `check` builds what `serve` builds, without binding: a key file that is not a key is
/// refused by `check` naming the file, with the exit code and the message of `serve`, which
/// refuses it before it binds anything.
#[test]
fn check_reports_a_broken_key_as_serve_would() {
    use hl7gw_tests::child::{loopback_options, serve_until};
    let certs = cert_dir_copy();
    let store = certs.path().join("gateway.sqlite");
    let options = loopback_options(store.clone(), Some(certs.path().to_path_buf()));
    let environment = gw_demo::SPEC.test.as_ref().unwrap();
    let (store, cert_dir) = (store.to_string_lossy(), certs.path().to_string_lossy());
    let args = |command| {
        [
            command,
            "--env",
            "test",
            "--store",
            &store,
            "--cert-dir",
            &cert_dir,
        ]
    };
    assert_eq!(gw(&args("check")).0, 0, "the copies load");

    for key in ["server.key", "client.key"] {
        let path = certs.path().join(key);
        let good = std::fs::read(&path).unwrap();
        std::fs::write(
            &path,
            b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        assert_eq!(gw(&args("check")).0, 1, "a broken {key} is an input error");
        assert_eq!(gw(&args("serve")).0, 1, "for serve too");
        let checked = match hl7gw_runtime::app::check(environment, &options) {
            Ok(_) => panic!("check accepted a broken {key}"),
            Err(e) => e.to_string(),
        };
        assert!(checked.contains(&path.display().to_string()), "{checked}");
        let served = serve_until(&gw_demo::SPEC, &options, async {}, |_| {
            panic!("serve bound its sockets with a broken {key}")
        });
        assert_eq!(served, Err(checked));
        std::fs::write(&path, good).unwrap();
    }
    assert_eq!(gw(&args("check")).0, 0, "good again");
}

/// What a hand-edited or stale configuration could hold that only `serve` used to build:
/// the receiver's IP ranges, the webhook URL and the send URL. `check` refuses each (exit 1),
/// saying which value.
#[test]
fn check_builds_the_receiver_settings_the_sink_and_the_https_client() {
    use hl7gw_runtime::config::{Environment, SinkConfig};
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("gateway.sqlite");
    let options = hl7gw_tests::child::loopback_options(store.clone(), None);
    let store = store.to_string_lossy().into_owned();
    let refused = |edit: &dyn Fn(&mut Environment), value: &str| {
        let mut spec = gw_demo::SPEC;
        edit(spec.test.as_mut().unwrap());
        let mut out = Vec::new();
        let argv = [
            "gw-demo",
            "check",
            "--env",
            "test",
            "--store",
            store.as_str(),
        ];
        assert_eq!(run(&spec, argv, &mut out), 1, "{value} is refused");
        match hl7gw_runtime::app::check(spec.test.as_ref().unwrap(), &options) {
            Ok(_) => panic!("check accepted {value}"),
            Err(e) => assert!(e.to_string().contains(value), "{e}"),
        }
    };
    assert_eq!(gw(&["check", "--env", "test", "--store", &store]).0, 0);
    refused(
        &|e| e.receive.as_mut().unwrap().allowed_ips = vec!["10.0.0.0/33".into()].into(),
        "10.0.0.0/33",
    );
    refused(
        &|e| {
            e.sink = SinkConfig::Webhook {
                url: "ftp://127.0.0.1/records".into(),
            }
        },
        "ftp://127.0.0.1/records",
    );
    refused(
        &|e| e.send.as_mut().unwrap().url = "http://localhost:9443/hl7/ems".into(),
        "http://localhost:9443/hl7/ems",
    );
}
