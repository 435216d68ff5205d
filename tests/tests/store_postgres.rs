//! The generated gateway's command line on a PostgreSQL store (gw-demo's parts, its TEST
//! environment pointed at a private PostgreSQL server the test starts, the password read from
//! a file): `store migrate` copies the one-box SQLite store in, `queue status` shows which
//! replica leads the stream. Without PostgreSQL these say they skipped, unless
//! `HL7GW_REQUIRE_POSTGRES=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use hl7gw_runtime::app::DESTINATION;
use hl7gw_runtime::cli::run;
use hl7gw_runtime::config::{PasswordSource, PostgresConfig, StoreConfig};
use hl7gw_runtime::queue::Queue;
use hl7gw_runtime::spec::GatewaySpec;
use hl7gw_runtime::store::{PostgresOptions, Store};
use hl7gw_tests::postgres::{self as pg, TestPostgres};

fn gw(spec: &GatewaySpec, args: &[&str]) -> (u8, String) {
    let mut out = Vec::new();
    let mut argv = vec!["gw-demo"];
    argv.extend_from_slice(args);
    let code = run(spec, argv, &mut out);
    (code, String::from_utf8(out).unwrap())
}

/// gw-demo with its TEST store in database `dbname` of `server`, the password in a file in
/// `dir`.
fn demo_on_postgres(server: &TestPostgres, dbname: &str, dir: &Path) -> GatewaySpec {
    let password = dir.join("db-password");
    std::fs::write(&password, format!("{}\n", pg::PASSWORD)).unwrap();
    let mut spec = gw_demo::SPEC.clone();
    let test = spec.test.as_mut().expect("the demo has a TEST environment");
    test.store = StoreConfig::Postgres(PostgresConfig {
        host: server.host().into(),
        port: server.port(),
        dbname: dbname.to_owned().into(),
        user: pg::USER.into(),
        password: PasswordSource::File(password.display().to_string().into()),
        tls_ca: None,
        pool_size: 2,
        lease_ms: 10_000,
    });
    spec
}

fn message(control_id: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|EMS|EMS|TIE|TRUST|20260101120000||ORU^R01^ORU_R01|{control_id}|T|2.4\r\
         PID|1||9449305552^^^NHS^NH||SMITH^JOHN||19700101|F\r"
    )
    .into_bytes()
}

#[test]
fn store_migrate_copies_the_one_box_store_and_queue_status_shows_the_leader() {
    let Some(server) = TestPostgres::shared("store_migrate_cli") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let dbname = server.create_database("migrate_cli");
    let spec = demo_on_postgres(server, &dbname, dir.path());
    let spec_dir = dir.path().display().to_string();

    // The one-box store, with two queued messages.
    let file = dir.path().join("demo-test.sqlite");
    let sqlite = Store::open(&file).unwrap();
    Queue::new(sqlite.clone())
        .blocking()
        .enqueue_all(DESTINATION, &[message("C1"), message("C2")])
        .unwrap();
    drop(sqlite);

    // A mistyped path copies nothing (and creates no file).
    let missing = dir.path().join("nope.sqlite").display().to_string();
    let (code, _) = gw(
        &spec,
        &[
            "store",
            "migrate",
            "--env",
            "test",
            "--spec-dir",
            &spec_dir,
            "--from",
            &missing,
        ],
    );
    assert_eq!(code, 2);
    assert!(!Path::new(&missing).exists());

    let from = file.display().to_string();
    let args = [
        "store",
        "migrate",
        "--env",
        "test",
        "--spec-dir",
        &spec_dir,
        "--from",
        &from,
    ];
    let (code, out) = gw(&spec, &args);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("copied 0 inbound rows and 2 outbound messages"),
        "{out}"
    );
    // Again: the target is no longer empty.
    let (code, _) = gw(&spec, &args);
    assert_eq!(code, 2);

    // A replica takes the lease; `queue status` (another process) names it.
    let mut options = PostgresOptions::new(server.host(), &dbname, pg::USER);
    options.port = server.port();
    options.password = Some(pg::PASSWORD.to_owned());
    let replica = Store::open_postgres(&options).unwrap();
    let lease = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(replica.lease_acquire(DESTINATION, "host-a:42:cafe", Duration::from_secs(30)))
        .unwrap()
        .unwrap();
    let (code, out) = gw(
        &spec,
        &["queue", "status", "--env", "test", "--spec-dir", &spec_dir],
    );
    assert_eq!(code, 0, "{out}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["depth"], 2, "{out}");
    assert_eq!(status["leader"]["holder"], "host-a:42:cafe", "{out}");
    assert_eq!(status["leader"]["token"], lease.token, "{out}");
    assert!(status["leader"]["acquired_at"].is_string(), "{out}");
}

#[test]
fn store_migrate_needs_a_postgres_store_in_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.sqlite");
    drop(Store::open(&file).unwrap());
    let (code, _) = gw(
        &gw_demo::SPEC,
        &[
            "store",
            "migrate",
            "--env",
            "test",
            "--from",
            &file.display().to_string(),
        ],
    );
    assert_eq!(code, 2);
}
