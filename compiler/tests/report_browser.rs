//! The go-live report in a real browser: `hl7gw validate --format html` writes the demo
//! spec's report, headless Chromium renders it, and the rendered DOM and a screenshot show
//! the sign-off checklist; a probe run in the laid-out page shows no word is broken across
//! lines and nothing sticks out sideways.
//!
//! Chromium comes from Debian (`apt-get install -y chromium`). Without it the browser test
//! prints "skipped: chromium not installed" and passes, unless `HL7GW_REQUIRE_BROWSER` is set
//! (CI sets it), in which case it fails. `HL7GW_CHROMIUM` names another binary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hl7gw_tests::browser::{self, Screenshot};

const WIDTH: u32 = 1280;
const HEIGHT: u32 = 2000;
/// The checklist heading's background (`--blue` in the report's CSS); nothing else on the
/// page is filled with it.
const CHECKLIST_BLUE: [u8; 3] = [0x00, 0x5e, 0xb8];
/// The header band (`--dark`).
const HEADER_DARK: [u8; 3] = [0x00, 0x30, 0x87];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("compiler/ has a parent")
        .to_path_buf()
}

fn hl7gw(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hl7gw"))
        .current_dir(repo_root())
        .args(args)
        .output()
        .expect("hl7gw runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Writes the demo spec's TEST report into `dir` as `hl7gw validate --format html` does.
fn write_demo_report(dir: &Path) -> PathBuf {
    let report = dir.join("demo-test.html");
    let out = hl7gw(&[
        "validate",
        "specs/demo.yaml",
        "--format",
        "html",
        "--env",
        "test",
        "--today",
        "2026-11-27",
        "-o",
        report.to_str().expect("UTF-8 temp path"),
    ]);
    assert!(
        out.status.success(),
        "validate failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout).trim(), report.display().to_string());
    report
}

#[test]
fn go_live_report_renders_in_chromium() {
    let Some(chromium) = browser::chromium_or_skip() else {
        return;
    };
    let work = tempfile::tempdir().expect("temp dir");
    let report = write_demo_report(work.path());
    let url = format!("file://{}", report.display());

    // The DOM as Chromium parsed and laid it out.
    let dom = browser::run(
        &chromium,
        work.path(),
        "dom",
        &["--dump-dom".to_owned()],
        &url,
    );
    for needle in [
        "id=\"checklist\"",
        "Sign-off checklist",
        "id=\"certificates\"",
        "id=\"cert-receive-server\"",
        "<span class=\"cert-expiry\">2036-11-24</span>",
        "<span class=\"endpoint-url\">https://demo-test.api.example-ems.cloud/hl7</span>",
        "<span class=\"endpoint-url\">https://localhost:9443/hl7/ems</span>",
        "id=\"allowed-clients\"",
        "CN=tie-test.demo.nhs.uk",
        "id=\"ip-ranges\"",
        "127.0.0.0/8",
        "id=\"message-types\"",
        "ORM^O01",
        "id=\"mapped-fields\"",
        "PID-3[CX.5=NH].1",
        "id=\"spec-tests\"",
        "an order maps to a ServiceRequest",
        "id=\"status\" class=\"ready\"",
        "id=\"signatures\"",
        "Trust representative",
    ] {
        assert!(dom.contains(needle), "rendered DOM lacks {needle:?}");
    }
    let items = dom.matches("class=\"check-item").count();
    assert!(
        items >= 15,
        "only {items} checklist items in the rendered DOM"
    );
    // Chromium serialises what it parsed: the table bodies it builds are there.
    assert!(dom.contains("</tbody>"));

    // The screenshot: the requested size, and the checklist visibly drawn.
    let shot = work.path().join("report.png");
    browser::run(
        &chromium,
        work.path(),
        "shot",
        &[
            format!("--screenshot={}", shot.display()),
            format!("--window-size={WIDTH},{HEIGHT}"),
        ],
        &url,
    );
    let image = Screenshot::read(&shot);
    assert_eq!(
        (image.width, image.height),
        (WIDTH, HEIGHT),
        "screenshot size"
    );
    let (blue, blue_box) = image.find(CHECKLIST_BLUE, 6);
    assert!(
        blue > 10_000,
        "checklist heading not drawn ({blue} pixels of its colour)"
    );
    let (x0, y0, x1, y1) = blue_box;
    assert!(x1 - x0 > 500, "checklist heading too narrow: {blue_box:?}");
    assert!(
        y1 - y0 < 80,
        "checklist heading colour spread over {blue_box:?}"
    );
    // The header band: rows filled with its colour, all above the checklist heading.
    let band_rows = image.wide_rows(HEADER_DARK, 6, 500);
    let above = band_rows.iter().filter(|&&y| y < y0).count();
    assert!(
        above > 50,
        "header band not drawn above the checklist ({above} rows)"
    );
    // The checklist's items: text and boxes below its heading.
    let dark = image.dark_pixels(y1, y1 + 600);
    assert!(
        dark > 5_000,
        "no checklist content under the heading ({dark} dark pixels)"
    );
}

/// Measures the laid-out page from inside: every word (a run of letters) outside the
/// fingerprints (`.mono`, hex meant to wrap anywhere) must sit on one line, and nothing may
/// stick out sideways. Its findings land on `<body>` as attributes, read from the dumped DOM.
const WORD_PROBE: &str = r#"<script>
(function () {
  var split = [], words = 0, node;
  var walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while ((node = walker.nextNode())) {
    if (node.parentElement.closest('.mono, script')) continue;
    var re = /\p{L}+/gu, m;
    while ((m = re.exec(node.data))) {
      words++;
      var range = document.createRange();
      range.setStart(node, m.index);
      range.setEnd(node, m.index + m[0].length);
      var tops = [], rects = range.getClientRects();
      for (var i = 0; i < rects.length; i++) {
        if (rects[i].width < 0.5) continue;
        var top = Math.round(rects[i].top);
        if (tops.every(function (t) { return Math.abs(t - top) > 2; })) tops.push(top);
      }
      if (tops.length > 1) split.push(m[0] + ' in "' + node.data.trim().slice(0, 60) + '"');
    }
  }
  var root = document.documentElement;
  document.body.setAttribute('data-words-checked', String(words));
  document.body.setAttribute('data-split-words', JSON.stringify(split));
  document.body.setAttribute('data-overflow', String(root.scrollWidth - root.clientWidth));
})();
</script>"#;

/// The value of `name="..."` in Chromium's DOM dump, unescaped.
fn dom_attribute(dom: &str, name: &str) -> String {
    let start = dom
        .find(&format!("{name}=\""))
        .unwrap_or_else(|| panic!("the probe did not run: no {name} in the DOM"))
        + name.len()
        + 2;
    let end = start + dom[start..].find('"').expect("attribute ends");
    dom[start..end]
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// No word of the report is broken across two lines ("require/d") at a desktop width or at
/// the width of an A4 page's printable area (186 mm, about 700 CSS pixels), and the page is
/// no wider than the window. The report itself runs no script (its Content-Security-Policy
/// forbids it), so the probe runs in a copy with that meta tag taken out.
#[test]
fn no_word_of_the_report_is_split_across_lines() {
    let Some(chromium) = browser::chromium_or_skip() else {
        return;
    };
    let work = tempfile::tempdir().expect("temp dir");
    let report = write_demo_report(work.path());
    let html = std::fs::read_to_string(&report).expect("report");
    let csp = html
        .find("<meta http-equiv=\"Content-Security-Policy\"")
        .expect("the report has its CSP meta tag");
    let csp_end = csp + html[csp..].find('>').expect("meta tag ends") + 1;
    let probed = format!("{}{}", &html[..csp], &html[csp_end..])
        .replace("</body>", &format!("{WORD_PROBE}</body>"));
    let copy = work.path().join("probed.html");
    std::fs::write(&copy, probed).expect("write probed copy");
    let url = format!("file://{}", copy.display());
    for width in [1280, 700] {
        let name = format!("words-{width}");
        let dom = browser::run(
            &chromium,
            work.path(),
            &name,
            &[
                "--dump-dom".to_owned(),
                format!("--window-size={width},2000"),
            ],
            &url,
        );
        let words: usize = dom_attribute(&dom, "data-words-checked")
            .parse()
            .expect("a count");
        assert!(words > 500, "at {width}px the probe saw only {words} words");
        let split = dom_attribute(&dom, "data-split-words");
        assert_eq!(
            split, "[]",
            "at {width}px these words are broken across lines"
        );
        let overflow = dom_attribute(&dom, "data-overflow");
        assert_eq!(
            overflow, "0",
            "at {width}px the page is {overflow}px wider than the window"
        );
    }
}

#[test]
fn html_writes_one_report_per_environment_into_a_folder() {
    let work = tempfile::tempdir().expect("temp dir");
    let dir = work.path().join("reports");
    let out = hl7gw(&[
        "validate",
        "specs/demo.yaml",
        "--format",
        "html",
        "--today",
        "2026-11-27",
        "-o",
        dir.to_str().expect("UTF-8 temp path"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let test = dir.join("demo-test.html");
    let prod = dir.join("demo-prod.html");
    assert_eq!(
        text(&out.stdout),
        format!("{}\n{}\n", test.display(), prod.display())
    );
    let test_html = std::fs::read_to_string(&test).expect("test report");
    let prod_html = std::fs::read_to_string(&prod).expect("prod report");
    assert!(test_html.contains("TEST environment"));
    assert!(prod_html.contains("PROD environment"));
    assert!(prod_html.contains("https://demo.api.example-ems.cloud/hl7"));

    // Same inputs, same bytes.
    let again = hl7gw(&[
        "validate",
        "specs/demo.yaml",
        "--format",
        "html",
        "--today",
        "2026-11-27",
        "-o",
        dir.to_str().expect("UTF-8 temp path"),
    ]);
    assert!(again.status.success());
    assert_eq!(
        std::fs::read_to_string(&test).expect("test report"),
        test_html
    );
}

#[test]
fn html_usage_errors() {
    let work = tempfile::tempdir().expect("temp dir");
    // -o is required.
    let out = hl7gw(&["validate", "specs/demo.yaml", "--format", "html"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("-o"));
    // One .html file cannot hold two environments.
    let file = work.path().join("one.html");
    let out = hl7gw(&[
        "validate",
        "specs/demo.yaml",
        "--format",
        "html",
        "-o",
        file.to_str().expect("UTF-8 temp path"),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(!file.exists());
    // Exactly one spec.
    let out = hl7gw(&[
        "validate",
        "specs/demo.yaml",
        "specs/demo.yaml",
        "--format",
        "html",
        "-o",
        work.path().to_str().expect("UTF-8 temp path"),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

/// The demo spec with `from` replaced by `to`, copied into `work` with its other files named
/// by absolute path; its TEST report is written there. The exit code and the report.
fn demo_copy_report(work: &Path, from: &str, to: &str) -> (Option<i32>, String) {
    let root = repo_root();
    let specs = root.join("specs");
    let spec_text = std::fs::read_to_string(specs.join("demo.yaml")).expect("demo spec");
    assert!(spec_text.contains(from), "the demo spec has no {from:?}");
    let spec_text = spec_text
        .replacen(from, to, 1)
        .replace("certs/", &format!("{}/certs/", specs.display()))
        .replace("../examples/", &format!("{}/examples/", root.display()));
    let spec = work.join("demo-copy.yaml");
    std::fs::write(&spec, spec_text).expect("write spec copy");
    let file = work.join("bad.html");
    let out = hl7gw(&[
        "validate",
        spec.to_str().expect("UTF-8 path"),
        "--format",
        "html",
        "--env",
        "test",
        "--today",
        "2026-11-27",
        "-o",
        file.to_str().expect("UTF-8 temp path"),
    ]);
    let html = std::fs::read_to_string(&file).unwrap_or_else(|_| {
        panic!("no report written: {}", text(&out.stderr));
    });
    (out.status.code(), html)
}

#[test]
fn html_report_with_errors_is_written_and_exits_1() {
    let work = tempfile::tempdir().expect("temp dir");
    // The TEST server certificate is missing.
    let (code, html) = demo_copy_report(
        work.path(),
        "cert: certs/test/server.crt",
        "cert: certs/test/absent-server.crt",
    );
    assert_eq!(code, Some(1));
    assert!(html.contains("NOT READY"));
    assert!(html.contains("cert-missing"));
}

/// The report runs the spec tests: one whose expectation the gateway does not meet makes
/// the report NOT READY and `validate` exit 1, though the spec itself has no error.
#[test]
fn html_report_with_a_failing_spec_test_exits_1() {
    let work = tempfile::tempdir().expect("temp dir");
    let (code, html) = demo_copy_report(
        work.path(),
        "expect: { ack: AE, error: { code: 103, location: OBR-4 } }",
        "expect: { ack: AA }",
    );
    assert_eq!(code, Some(1));
    assert!(html.contains("NOT READY"));
    assert!(html.contains("<span id=\"error-count\">0</span> errors"));
    assert!(html.contains("<span id=\"failed-test-count\">1</span> spec test failed"));
    assert!(html.contains(">failed<"));
}
