//! The receiver's memory for one large message, measured from outside the process (issue 13:
//! "peak RSS for one 5 MiB message at most 2× the message above idle, given back afterwards").
//!
//! The gateway (gw-demo TEST, SQLite store, inbox sink) runs in a child process, as in
//! `tests/receiver.rs`. Once it has answered one small message and is idle, the test reads
//! its `VmRSS` from `/proc/<pid>/status`, resets its peak (`echo 5 > /proc/<pid>/clear_refs`),
//! POSTs one 5 MiB ORM^O01 carrying a base64 letter over mutual TLS, waits for the AA, and
//! reads `VmHWM` (the peak since the reset) and, after a short settle, `VmRSS` again. It
//! checks that the message is stored byte for byte, so the figures are those of a durable
//! commit. Linux only (`/proc`); elsewhere it says it skipped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod receiver_support;

use std::sync::Arc;
use std::time::Duration;

use hl7gw_tests::messages::{self as samples, AckView};
use hl7gw_tests::wire::{self, Http, RawResponse, client_config, connect};
use receiver_support::{Gateway, GatewayConfig, Spec, bounded, child_main, committed, stored_rows};
use rustls::ClientConfig;

/// The gateway child's entry point (see `receiver_support`).
#[test]
#[ignore = "runs only as the gateway child process of the other tests"]
fn child_gateway_process() {
    child_main();
}

/// The size of the payload in OBX-5.5: 5 MiB of base64, as the parser's benchmark fixture.
const PAYLOAD: usize = 5 << 20;

/// How many large messages are sent one after the other.
const MESSAGES: usize = 3;

/// How long the process is left alone before its resident size is read again.
const SETTLE: Duration = Duration::from_millis(500);

fn demo_engine() -> Arc<ClientConfig> {
    client_config(
        &receiver_support::pki::demo_gateway_ca(),
        Some(&receiver_support::pki::demo_engine()),
        &[],
    )
}

/// POSTs `message` on a new connection and reads the response.
async fn post(gw: &Gateway, message: &[u8]) -> RawResponse {
    let request = wire::post(
        Spec::Demo.path(),
        &[
            format!("Host: {}:{}", Spec::Demo.hostname(), gw.listen.port()),
            "Content-Type: application/hl7-v2".to_owned(),
            format!("Content-Length: {}", message.len()),
        ],
        message,
    );
    let tls = connect(gw.listen, Spec::Demo.hostname(), demo_engine())
        .await
        .unwrap();
    let mut http = Http::new(tls);
    http.send(&request).await.unwrap();
    http.read_response().await.unwrap()
}

fn assert_aa(response: &RawResponse) {
    assert_eq!(response.status, 200, "{}", response.body_text());
    let ack = AckView::read(&response.body_text()).expect("a 200 carries an ACK");
    assert_eq!(ack.code(), "AA", "{}", response.body_text());
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

/// Resets the process's peak resident size (`VmHWM`) to its current one (Linux ≥ 4.0).
fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
}

/// The figures of one large message, in kB.
#[derive(Debug, Clone, Copy)]
struct Figures {
    idle: u64,
    peak: u64,
    after: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_large_message_costs_at_most_twice_its_size_and_is_given_back() {
    if !std::path::Path::new("/proc/self/status").exists() {
        println!("skipped: no /proc/<pid>/status to read resident sizes from (Linux only)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("gateway.sqlite");
    let gw = Gateway::start(
        GatewayConfig::new(Spec::Demo, &store),
        &dir.path().join("gateway.log"),
    );
    let pid = gw.pid();
    let figures = bounded(async {
        // The first message pays for what is made once (TLS and statement caches, the
        // metrics' series): idle is measured after it.
        let (small, _) = samples::demo_sample("ORM^O01", "MEM-WARM").unwrap();
        assert_aa(&post(&gw, &small).await);
        let mut figures = Vec::new();
        for n in 1..=MESSAGES {
            let id = format!("MEM-{n}");
            let message = samples::demo_order_with_attachment(&id, PAYLOAD);
            tokio::time::sleep(SETTLE).await;
            let idle = status_kb(pid, "VmRSS");
            reset_peak(pid);
            assert_aa(&post(&gw, &message).await);
            let peak = status_kb(pid, "VmHWM");
            tokio::time::sleep(SETTLE).await;
            let after = status_kb(pid, "VmRSS");
            let rows = committed(&stored_rows(&store), &id);
            assert_eq!(rows.len(), 1, "{id} is committed once");
            assert!(rows[0].raw == message, "{id} is stored byte for byte");
            figures.push((message.len(), Figures { idle, peak, after }));
        }
        figures
    })
    .await;
    for (n, (size, f)) in figures.iter().enumerate() {
        let size_kb = *size as f64 / 1024.0;
        println!(
            "message {}: {size} bytes; idle {} kB, peak {} kB, after {} kB; \
             (peak - idle) / size = {:.2}, (after - idle) / size = {:.2}",
            n + 1,
            f.idle,
            f.peak,
            f.after,
            (f.peak as f64 - f.idle as f64) / size_kb,
            (f.after as f64 - f.idle as f64) / size_kb,
        );
    }
}
