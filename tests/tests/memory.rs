//! The receiver's memory for one large message, measured from outside the process (issue 13:
//! "peak RSS for one 5 MiB message at most 2× the message above idle, given back afterwards").
//!
//! The gateway (gw-demo TEST, SQLite store, inbox sink) runs in a child process, as in
//! `tests/receiver.rs`. Once it has answered one small message and is idle, the test reads
//! its `VmRSS` from `/proc/<pid>/status`, resets its peak (`echo 5 > /proc/<pid>/clear_refs`),
//! POSTs one 5 MiB message over mutual TLS, waits for the ACK, and reads `VmHWM` (the peak
//! since the reset) and, after a short settle, `VmRSS` again. It checks that the message is
//! stored byte for byte, so the figures are those of a durable commit. Then the same around
//! EMS fetching one of them from the inbox API. Every figure is printed. Linux only
//! (`/proc`); elsewhere it says it skipped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod receiver_support;

use std::time::Duration;

use hl7gw_tests::messages::{self as samples, AckView};
use hl7gw_tests::postgres::{ChildStore, TestPostgres};
use hl7gw_tests::wire::{self, RawResponse};
use receiver_support::{
    Gateway, GatewayConfig, Spec, StoredRow, bounded, child_main, plain_get, post_to_demo,
    stored_rows, stored_rows_postgres,
};

/// The gateway child's entry point (see `receiver_support`).
#[test]
#[ignore = "runs only as the gateway child process of the other tests"]
fn child_gateway_process() {
    child_main();
}

/// The size of the payload in OBX-5.5: 5 MiB of base64, as the parser's benchmark fixture.
const PAYLOAD: usize = 5 << 20;

/// How long the process is left alone before its resident size is read again.
const SETTLE: Duration = Duration::from_millis(500);

/// What the peak may exceed twice the message by, in kB: the connection's TLS records and
/// HTTP buffers and the allocator's rounding, which do not grow with the message. (SQLite's
/// page cache, at most its default 2000 KiB, fills on the first large message; it fits in
/// the twice without this.)
const PEAK_ALLOWANCE_KB: u64 = 1024;

/// How far above the idle size the process may stay once a message is answered, in kB:
/// SQLite's page cache, filled once up to `PRAGMA cache_size` (2000 KiB by default) and
/// kept, and allocator slack. Everything the message itself took is given back.
const AFTER_ALLOWANCE_KB: u64 = 3 * 1024;

/// MSA-1 of a 200's ACK.
fn ack_code(response: &RawResponse) -> String {
    assert_eq!(response.status, 200, "{}", response.body_text());
    let ack = AckView::read(&response.body_text()).expect("a 200 carries an ACK");
    ack.code().to_owned()
}

/// One line of `/proc/<pid>/status`, in kB.
fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status:\n{status}"))
}

/// Resets the process's peak resident size (`VmHWM`) to its current one (Linux 4.0 and
/// later). Where that is refused the peak is the process's whole life's, which can only
/// make the figure larger: said, and measured anyway.
fn reset_peak(pid: u32) {
    if let Err(e) = std::fs::write(format!("/proc/{pid}/clear_refs"), "5") {
        println!("note: cannot reset the peak ({e}): VmHWM is the peak since the start");
    }
}

/// One large message's figures.
struct Measured {
    what: &'static str,
    control_id: String,
    bytes: usize,
    ack: String,
    idle_kb: u64,
    peak_kb: u64,
    after_kb: u64,
}

impl Measured {
    /// Peak − idle at most `times` × the message + [`PEAK_ALLOWANCE_KB`], and back within
    /// [`AFTER_ALLOWANCE_KB`] of `first_idle` afterwards.
    fn check(&self, times: u64, first_idle: u64) {
        let size_kb = self.bytes as u64 / 1024;
        assert!(
            self.peak_kb.saturating_sub(self.idle_kb) <= times * size_kb + PEAK_ALLOWANCE_KB,
            "the peak is over {times}× the message (+{PEAK_ALLOWANCE_KB} kB): {}",
            self.show()
        );
        assert!(
            self.after_kb <= first_idle + AFTER_ALLOWANCE_KB,
            "not given back (first idle {first_idle} kB, allowed +{AFTER_ALLOWANCE_KB} kB): {}",
            self.show()
        );
    }

    fn show(&self) -> String {
        let kb = self.bytes as f64 / 1024.0;
        format!(
            "{} {} ({} bytes, {}): idle {} kB, peak {} kB, after {} kB; \
             (peak - idle) / size = {:.2}, (after - idle) / size = {:.2}",
            self.what,
            self.control_id,
            self.bytes,
            self.ack,
            self.idle_kb,
            self.peak_kb,
            self.after_kb,
            (self.peak_kb as f64 - self.idle_kb as f64) / kb,
            (self.after_kb as f64 - self.idle_kb as f64) / kb,
        )
    }
}

/// Sends one message and reads the resident sizes around it; checks it is stored once,
/// byte for byte (committed, or kept as an audit row when refused).
async fn measure(
    gw: &Gateway,
    stored: &dyn Fn() -> Vec<StoredRow>,
    what: &'static str,
    id: String,
    message: Vec<u8>,
) -> Measured {
    tokio::time::sleep(SETTLE).await;
    let pid = gw.pid();
    let idle_kb = status_kb(pid, "VmRSS");
    reset_peak(pid);
    let ack = ack_code(&post_to_demo(gw, &message).await);
    let peak_kb = status_kb(pid, "VmHWM");
    tokio::time::sleep(SETTLE).await;
    let after_kb = status_kb(pid, "VmRSS");
    let rows: Vec<_> = stored()
        .into_iter()
        .filter(|row| row.control_id == id)
        .collect();
    assert_eq!(rows.len(), 1, "{id} is stored once");
    assert!(rows[0].raw == message, "{id} is stored byte for byte");
    Measured {
        what,
        control_id: id,
        bytes: message.len(),
        ack,
        idle_kb,
        peak_kb,
        after_kb,
    }
}

/// Three accepted 5 MiB orders, then a 5 MiB ORU^R01 with a PDF (the message; not an
/// inbound type of the demo, so refused AR and kept as an audit row, through the same store
/// path). Each: peak − idle ≤ 2 × its size + [`PEAK_ALLOWANCE_KB`], and once answered the
/// process is back within [`AFTER_ALLOWANCE_KB`] of the first idle size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_large_message_costs_at_most_twice_its_size_and_is_given_back() {
    if !proc_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("gateway.sqlite");
    let gw = Gateway::start(
        GatewayConfig::new(Spec::Demo, &store),
        &dir.path().join("gateway.log"),
    );
    let measured = large_messages(&gw, &|| stored_rows(&store)).await;
    let first_idle = measured[0].idle_kb;
    for m in &measured {
        m.check(2, first_idle);
    }
    // EMS reading the first one back from the inbox: the record with the message in base64.
    let fetched = inbox_fetch(&gw, &measured[0]);
    // Not the target: the store hands the message over as a `Vec` (1×) and the
    // base64 JSON is written beside it (1.33×). Bounded so the base64 text is never held a
    // second time (3.64× when it was).
    fetched.check(3, first_idle);
}

/// The same messages with the store on PostgreSQL (a private server, `hl7gw_tests::postgres`).
/// Three times, not two: tokio-postgres copies a bound value into its encoding buffer and
/// again into its connection's write buffer (BENCHMARKS.md). Given back all the same: the
/// store closes a connection that carried a message of 1 MiB or more, which would otherwise
/// keep both buffers for its life.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_one_large_message_costs_at_most_three_times_its_size_and_is_given_back() {
    if !proc_available() {
        return;
    }
    let Some(server) = TestPostgres::shared("memory_on_postgresql") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = ChildStore::create(server, "memory", dir.path(), 10_000);
    let mut config = GatewayConfig::new(Spec::Demo, dir.path().join("unused.sqlite"));
    config.postgres = Some(store.clone());
    let gw = Gateway::start(config, &dir.path().join("gateway.log"));
    let measured = large_messages(&gw, &|| stored_rows_postgres(server, &store.dbname)).await;
    let first_idle = measured[0].idle_kb;
    for m in &measured {
        m.check(3, first_idle);
    }
}

fn proc_available() -> bool {
    let here = std::path::Path::new("/proc/self/status").exists();
    if !here {
        println!("skipped: no /proc/<pid>/status to read resident sizes from (Linux only)");
    }
    here
}

/// Warms the gateway up with one small order, then measures three 5 MiB orders (AA) and one
/// 5 MiB ORU^R01 (AR), printing each.
async fn large_messages(gw: &Gateway, stored: &dyn Fn() -> Vec<StoredRow>) -> Vec<Measured> {
    let measured = bounded(async {
        // The first message pays for what is made once (TLS and statement caches, the
        // metrics' series): idle is measured after it.
        let (small, _) = samples::demo_sample("ORM^O01", "MEM-WARM").unwrap();
        assert_eq!(ack_code(&post_to_demo(gw, &small).await), "AA");
        let mut measured = Vec::new();
        for n in 1..=3 {
            let id = format!("MEM-{n}");
            let message = samples::demo_order_with_attachment(&id, PAYLOAD);
            measured.push(measure(gw, stored, "ORM^O01 with a letter", id, message).await);
        }
        let id = "MEM-ORU".to_owned();
        let message = samples::oru_with_pdf(&id, PAYLOAD);
        measured.push(measure(gw, stored, "ORU^R01 with a PDF", id, message).await);
        measured
    })
    .await;
    for m in &measured {
        println!("{}", m.show());
        let expected = if m.what.starts_with("ORU") {
            "AR"
        } else {
            "AA"
        };
        assert_eq!(m.ack, expected, "{}", m.show());
    }
    measured
}

/// `GET /inbox/<id>` of `message` on the inbox API, measured as a message is.
fn inbox_fetch(gw: &Gateway, message: &Measured) -> Measured {
    let inbox = gw.inbox.expect("the demo's inbox API");
    let items: serde_json::Value = serde_json::from_str(&plain_get(inbox, "/inbox").1).unwrap();
    let id = items["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["control_id"] == message.control_id.as_str())
        .map(|item| item["id"].as_i64().unwrap())
        .expect("the message in the inbox");
    std::thread::sleep(SETTLE);
    let pid = gw.pid();
    let idle_kb = status_kb(pid, "VmRSS");
    reset_peak(pid);
    let response = wire::plain_request(inbox, "GET", &format!("/inbox/{id}"), &[], b"").unwrap();
    let peak_kb = status_kb(pid, "VmHWM");
    std::thread::sleep(SETTLE);
    let after_kb = status_kb(pid, "VmRSS");
    assert_eq!(response.status, 200, "{}", response.body_text());
    let fetched = Measured {
        what: "inbox fetch of",
        control_id: message.control_id.clone(),
        bytes: message.bytes,
        ack: format!("{} bytes of JSON", response.body.len()),
        idle_kb,
        peak_kb,
        after_kb,
    };
    println!("{}", fetched.show());
    fetched
}
