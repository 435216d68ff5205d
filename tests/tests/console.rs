//! The operations console across processes (issue 14): gw-demo's TEST gateway runs in a
//! child process (as in `tests/sender.rs`) sending to the stand-in Trust, which answers one
//! message AR so the gateway holds the stream. Headless Chromium loads the console from the
//! gateway's operations port and shows the held stream with its reason; POSTs without the
//! page's CSRF token, from a foreign `Origin`, marked cross-site, naming the console by a DNS
//! name (rebinding) or without a reason are refused and change nothing; a retry POSTed by
//! curl with the token taken from the page releases the message, the Trust gets it and the
//! stream page's audit trail names the operator; opening the message shows its bytes and is
//! recorded too. A screenshot at 1280 px is checked not to be blank.
//!
//! Chromium and curl are skipped when missing unless `HL7GW_REQUIRE_BROWSER` /
//! `HL7GW_REQUIRE_CURL` are set (CI). `HL7GW_CONSOLE_SCREENSHOT=path` also saves the
//! overview's screenshot there (how `docs/console.png` was made).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod sender_support;

use std::net::SocketAddr;
use std::process::Command;

use hl7gw_tests::browser::{self, Screenshot};
use hl7gw_tests::messages::{ids, oru};
use hl7gw_tests::trust::{self, Reply, Trust};
use sender_support::{Sender, SenderConfig, child_main, http, wait_until};
use serde_json::Value;

/// The gateway child's entry point (see `sender_support`): ignored in normal runs, selected
/// with `--ignored --exact` by the parent, which sets the configuration.
#[test]
#[ignore = "runs only as the sending gateway child process of the other tests"]
fn child_sender_process() {
    child_main();
}

const WIDTH: u32 = 1280;
const HEIGHT: u32 = 480;
/// The held state's badge (`--held` in console.css).
const HELD_RED: [u8; 3] = [0xc0, 0x39, 0x2b];
/// The top bar (`#1b2430`).
const TOP_BAR: [u8; 3] = [0x1b, 0x24, 0x30];

/// What curl got: the status and the body.
fn curl_post(ops: SocketAddr, path: &str, headers: &[String], body: &str) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "20",
        "-X",
        "POST",
        "-w",
        "\n%{http_code}",
    ]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let output = cmd
        .args(["--data-binary", body])
        .arg(format!("http://{ops}{path}"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let code = code.trim().parse().unwrap_or_else(|_| {
        panic!(
            "curl printed no status: {text}; {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (code, body.to_owned())
}

/// The value of `<meta name="csrf-token" content="…">` in a page.
fn csrf_token(dom: &str) -> String {
    let marker = r#"name="csrf-token" content=""#;
    let start = dom.find(marker).expect("the page carries its CSRF token") + marker.len();
    dom[start..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn the_console_shows_a_held_stream_and_a_retry_from_it_releases_the_message() {
    let Some(chromium) = browser::chromium_or_skip() else {
        return;
    };
    if !hl7gw_tests::curl_available() {
        return;
    }
    let trust = Trust::start(trust::dev_tls());
    let control_ids = ids("CONSOLE", 1..=3);
    let c = &control_ids;
    trust.script(&c[1], &[Reply::Ar("message type not supported here")]);
    let dir = tempfile::tempdir().unwrap();
    let config = SenderConfig::new(dir.path().join("store.sqlite"), trust.url());
    let sender = Sender::start(config, &dir.path().join("sender.log"));
    let queue_ids: Vec<i64> = control_ids
        .iter()
        .map(|id| sender.queue(&oru(id)))
        .collect();
    let held = sender.wait_status("a held stream", |s| s["state"] == "held");
    let ops = sender.ops;
    let work = dir.path();
    // The DOM as Chromium parsed, laid out and scripted it.
    let dump =
        |name: &str, url: &str| browser::run(&chromium, work, name, &["--dump-dom".into()], url);

    // The overview, as Chromium renders it from the running gateway.
    let overview_url = format!("http://{ops}/console");
    let dom = dump("overview", &overview_url);
    for needle in [
        "Demo NHS Foundation Trust",
        r#"data-part="demo/test""#,
        r#"<span class="state held">held</span>"#,
        "on_ar: hold",
        "message type not supported here",
        r#"href="/console/demo/test/engine""#,
    ] {
        assert!(
            dom.contains(needle),
            "the overview lacks {needle:?}:\n{dom}"
        );
    }
    // Since when: the held status's own time, to the second.
    let since = held["since"].as_str().unwrap().replace('T', " ");
    assert!(
        dom.contains(&since[..19]),
        "the overview lacks since {since}:\n{dom}"
    );
    let token = csrf_token(&dom);
    assert_eq!(token.len(), 64, "{token}");

    // The stream page: the messages' metadata, newest first, and no patient data.
    let stream_url = format!("http://{ops}/console/demo/test/engine");
    let page = dump("stream", &stream_url);
    let positions: Vec<usize> = c.iter().map(|id| page.find(id.as_str()).unwrap()).collect();
    assert!(
        positions[2] < positions[1] && positions[1] < positions[0],
        "newest first: {page}"
    );
    assert!(page.contains(r#"data-action="retry""#), "{page}");
    let patient = String::from_utf8_lossy(&oru(&c[1])).into_owned();
    let pid = patient
        .split('\r')
        .find(|s| s.starts_with("PID"))
        .unwrap()
        .to_owned();
    assert!(
        !page.contains(&pid),
        "the stream page shows no patient data"
    );

    // Refused: no token, a foreign Origin, a cross-site fetch, no reason. Nothing changes.
    let retry_path = format!("/console/demo/test/messages/{}/retry", queue_ids[1]);
    let json = "Content-Type: application/json".to_owned();
    let with_token = format!("X-CSRF-Token: {token}");
    let body = r#"{"operator":"Ann Operator","reason":"Trust fixed its interface"}"#;
    let refused = [
        (vec![json.clone()], body, 403),
        (
            vec![
                json.clone(),
                with_token.clone(),
                "Origin: http://evil.example".into(),
            ],
            body,
            403,
        ),
        (
            vec![
                json.clone(),
                with_token.clone(),
                "Sec-Fetch-Site: cross-site".into(),
            ],
            body,
            403,
        ),
        (vec![json.clone(), "X-CSRF-Token: 00".into()], body, 403),
        // A DNS name pointed at the console (rebinding): refused, token or not.
        (
            vec![
                json.clone(),
                with_token.clone(),
                "Host: evil.example".into(),
            ],
            body,
            403,
        ),
        (
            vec![json.clone(), with_token.clone()],
            r#"{"operator":"Ann Operator","reason":" "}"#,
            400,
        ),
    ];
    for (headers, body, want) in &refused {
        let (status, answer) = curl_post(ops, &retry_path, headers, body);
        assert_eq!(status, *want, "{headers:?}: {answer}");
    }
    // GET never changes state.
    let (status, _) = http(ops, "GET", &retry_path, b"");
    assert_ne!(status, 200);
    let still = sender.status();
    assert_eq!(still["state"], "held", "{still:#}");
    assert_eq!(trust.committed(), vec![c[0].clone()]);
    assert!(sender.list()[1]["released_at"].is_null());

    // The screenshot at 1280 px: drawn, not blank, the held badge visible.
    let shot = work.join("console.png");
    browser::run(
        &chromium,
        work,
        "shot",
        &[
            format!("--screenshot={}", shot.display()),
            format!("--window-size={WIDTH},{HEIGHT}"),
        ],
        &overview_url,
    );
    let image = Screenshot::read(&shot);
    assert_eq!((image.width, image.height), (WIDTH, HEIGHT));
    assert!(
        image.colours() > 50,
        "a blank page: {} colours",
        image.colours()
    );
    assert!(image.count(TOP_BAR, 4) > 10_000, "the top bar is not drawn");
    assert!(
        image.count(HELD_RED, 8) > 100,
        "the held badge is not drawn"
    );
    if let Some(keep) = std::env::var_os("HL7GW_CONSOLE_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }

    // The retry, with the page's token: released, delivered, the stream moves on.
    let (status, answer) = curl_post(ops, &retry_path, &[json, with_token], body);
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["message"]["control_id"], c[1].as_str(), "{answer:#}");
    wait_until(
        "3 messages committed by the Trust",
        || trust.committed().len() >= 3,
        || trust.describe(),
    );
    let idle = sender.wait_status("an idle stream", |s| s["state"] == "idle");
    assert_eq!(idle["delivered"], 3, "{idle:#}");
    assert_eq!(trust.committed(), control_ids);

    // Opening a message shows its bytes and is recorded; a delivered message is not retried.
    let open_path = format!("/console/demo/test/messages/{}/open", queue_ids[1]);
    let headers = [
        "Content-Type: application/json".to_owned(),
        format!("X-CSRF-Token: {token}"),
    ];
    let opened = r#"{"operator":"Bob Operator","reason":"Trust asked what was sent"}"#;
    let (status, answer) = curl_post(ops, &open_path, &headers, opened);
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert!(answer["raw"].as_str().unwrap().contains(&pid), "{answer:#}");
    let (status, answer) = curl_post(ops, &retry_path, &headers, body);
    assert_eq!(status, 409, "{answer}");

    // The audit trail on the stream page: who, from where, why.
    let page = dump("audit", &stream_url);
    let trail = &page[page.find("Audit trail").expect("an audit section")..];
    for needle in [
        "retry",
        "Ann Operator",
        "127.0.0.1:",
        "Trust fixed its interface",
        c[1].as_str(),
    ] {
        assert!(
            trail.contains(needle),
            "the audit trail lacks {needle:?}:\n{trail}"
        );
    }
    assert_eq!(
        trail.matches("<td>retry</td>").count(),
        1,
        "one retry recorded: {trail}"
    );
    let (open_at, retry_at) = (trail.find("<td>open</td>"), trail.find("<td>retry</td>"));
    assert!(
        open_at.is_some() && trail.contains("Bob Operator"),
        "{trail}"
    );
    assert!(open_at < retry_at, "newest first: {trail}");
}
