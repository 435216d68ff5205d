//! Headless Chromium for the suites that check what a person sees (the go-live report, the
//! operations console):
//! find it or say the test skipped, run it on a URL with a bound, read its screenshot.
//!
//! Chromium comes from Debian (`apt-get install -y chromium`). Without it a browser test
//! prints "skipped: chromium not installed" and passes, unless `HL7GW_REQUIRE_BROWSER` is set
//! (CI sets it), in which case it fails. `HL7GW_CHROMIUM` names another binary.

// Test support: a browser that cannot run fails the test that asked for it.
#![allow(clippy::expect_used, clippy::panic)]

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Set in CI: a missing Chromium fails the test instead of skipping it.
pub const REQUIRE: &str = "HL7GW_REQUIRE_BROWSER";

/// Longest one Chromium run may take before it is killed.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Chromium from `HL7GW_CHROMIUM`, or `chromium` / `chromium-browser` on the PATH; `None`
/// after printing that the test skipped (a panic instead when [`REQUIRE`] is set).
pub fn chromium_or_skip() -> Option<PathBuf> {
    let found = std::env::var_os("HL7GW_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| {
            let path = std::env::var_os("PATH")?;
            std::env::split_paths(&path)
                .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
                .find(|p| p.is_file())
        });
    if found.is_none() {
        assert!(
            std::env::var_os(REQUIRE).is_none(),
            "{REQUIRE} is set but chromium is not installed (Debian: apt-get install -y \
             chromium; or set HL7GW_CHROMIUM)"
        );
        println!("skipped: chromium not installed");
    }
    found
}

/// Runs Chromium headless on `url` with `extra` arguments (its profile and output files in
/// `work`, named after `name`), in its own process group, killed with its helpers after
/// [`TIMEOUT`]; returns what it printed on stdout. Panics, with its stderr, when it fails.
pub fn run(chromium: &Path, work: &Path, name: &str, extra: &[String], url: &str) -> String {
    let stdout = work.join(format!("{name}.stdout"));
    let stderr = work.join(format!("{name}.stderr"));
    let file =
        |path: &Path| File::create(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut cmd = Command::new(chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!(
        "--user-data-dir={}",
        work.join(format!("profile-{name}")).display()
    ))
    .args(extra)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(file(&stdout))
    .stderr(file(&stderr));
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("chromium does not start: {e}"));
    let started = Instant::now();
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if started.elapsed() > TIMEOUT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Chromium's helper processes share its process group: end them too, by group id.
    #[cfg(unix)]
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let errors = || std::fs::read_to_string(&stderr).unwrap_or_default();
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "chromium ({name}) did not finish within {TIMEOUT:?}; stderr:\n{}",
            errors()
        );
    };
    assert!(
        status.success(),
        "chromium ({name}) failed with {status}; stderr:\n{}",
        errors()
    );
    std::fs::read_to_string(&stdout).unwrap_or_default()
}

/// A PNG screenshot as RGB pixels.
pub struct Screenshot {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height` RGB triples, row by row.
    pub pixels: Vec<[u8; 3]>,
}

impl Screenshot {
    /// Reads a PNG Chromium wrote.
    pub fn read(path: &Path) -> Self {
        let file = BufReader::new(
            File::open(path).unwrap_or_else(|e| panic!("screenshot {}: {e}", path.display())),
        );
        let mut decoder = png::Decoder::new(file);
        decoder.set_transformations(png::Transformations::normalize_to_color8());
        let mut reader = decoder.read_info().expect("the screenshot is a PNG");
        let mut data = vec![0; reader.output_buffer_size().expect("buffer size")];
        let info = reader.next_frame(&mut data).expect("the PNG decodes");
        let channels = match info.color_type {
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
            other => panic!("unexpected PNG colour type {other:?}"),
        };
        data.truncate(info.buffer_size());
        Self {
            width: info.width,
            height: info.height,
            pixels: data
                .chunks_exact(channels)
                .map(|p| [p[0], p[1], p[2]])
                .collect(),
        }
    }

    /// The pixel at (`x`, `y`).
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        self.pixels[y as usize * self.width as usize + x as usize]
    }

    /// Pixels within `tolerance` of `colour`.
    pub fn count(&self, colour: [u8; 3], tolerance: u8) -> usize {
        self.find(colour, tolerance).0
    }

    /// Pixels within `tolerance` of `colour`: how many and their bounding box
    /// (x0, y0, x1, y1).
    pub fn find(&self, colour: [u8; 3], tolerance: u8) -> (usize, (u32, u32, u32, u32)) {
        let mut count = 0;
        let mut bbox = (u32::MAX, u32::MAX, 0, 0);
        for y in 0..self.height {
            for x in 0..self.width {
                if near(self.pixel(x, y), colour, tolerance) {
                    count += 1;
                    bbox = (bbox.0.min(x), bbox.1.min(y), bbox.2.max(x), bbox.3.max(y));
                }
            }
        }
        (count, bbox)
    }

    /// Rows holding at least `min` pixels within `tolerance` of `colour`.
    pub fn wide_rows(&self, colour: [u8; 3], tolerance: u8, min: usize) -> Vec<u32> {
        (0..self.height)
            .filter(|&y| {
                (0..self.width)
                    .filter(|&x| near(self.pixel(x, y), colour, tolerance))
                    .count()
                    >= min
            })
            .collect()
    }

    /// Dark (text-like) pixels in rows `y0..y1`.
    pub fn dark_pixels(&self, y0: u32, y1: u32) -> usize {
        (y0..y1.min(self.height))
            .flat_map(|y| (0..self.width).map(move |x| (x, y)))
            .filter(|&(x, y)| {
                let [r, g, b] = self.pixel(x, y);
                u32::from(r) + u32::from(g) + u32::from(b) < 3 * 110
            })
            .count()
    }

    /// How many different colours the picture has (a blank page has one or two).
    pub fn colours(&self) -> usize {
        let mut seen: Vec<[u8; 3]> = self.pixels.clone();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    }
}

/// Whether `p` is within `tolerance` of `colour` in every channel.
fn near(p: [u8; 3], colour: [u8; 3], tolerance: u8) -> bool {
    p.iter()
        .zip(colour)
        .all(|(a, b)| a.abs_diff(b) <= tolerance)
}
