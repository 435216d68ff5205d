//! Parsing benchmarks against a baseline measured in the same run: the `hl7-parser` crate.
//!
//! ```text
//! cargo bench -p hl7gw-runtime --bench parse
//! ```
//!
//! Inputs (generated in `fixtures/`): a small ADT^A28, a 40-segment ORU^R01 and an ORU^R01
//! whose OBX-5.5 carries a 5 MiB base64 PDF. Groups, each with both parsers on the same bytes:
//!
//! - `parse`: bytes to a message value (ours is a lazy view; hl7-parser builds the full tree);
//! - `parse_visit`: parse, then walk every field, repetition, component and subcomponent,
//!   so the lazy splitting we skip in `parse` is paid for;
//! - `parse_lookup`: parse, then one filtered path lookup (what a route does per message);
//! - `lookup_filtered` / `lookup_indexed`: one lookup on an already parsed message;
//! - `mix`: the three inputs one after the other in one iteration.
//!
//! Before measuring, the binary checks that both parsers read every segment, that both
//! lookups select the same bytes, and that our lookup of the 5 MiB payload returns a slice
//! of the input buffer (no copy). After criterion has run, it reads the estimates it just
//! wrote (`target/criterion/<group>/<parser>/<input>/new/estimates.json`, only files
//! written by this run) and prints MB/s, messages/s and the ratio hl7-parser time / our
//! time for every pair.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fixtures;

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use criterion::{BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput};
use fixtures::{BaselineFilter, Fixture};
use hl7_parser::query::LocationQuery;
use hl7gw_runtime::hl7::{Message, Path};

const OURS: &str = "hl7gw";
const BASELINE: &str = "hl7-parser";
/// Inputs at least this large are sampled flat with fewer samples, to keep the run short.
const LARGE: usize = 1 << 20;

/// A fixture with everything the benchmarks need prepared outside the timed loops.
struct Input {
    fx: Fixture,
    filtered: Path,
    indexed: Path,
    query: LocationQuery,
}

impl Input {
    fn bytes(&self) -> &[u8] {
        &self.fx.bytes
    }

    /// hl7-parser takes `&str`: the UTF-8 check is done here, once, outside its timed
    /// loops (ours validates the charset inside `Message::parse`), in the baseline's favour.
    fn text(&self) -> &str {
        std::str::from_utf8(&self.fx.bytes).unwrap()
    }

    fn large(&self) -> bool {
        self.fx.bytes.len() >= LARGE
    }
}

// ----------------------------------------------------------------------------- operations

fn parse_ours(bytes: &[u8]) -> Message<'_> {
    Message::parse(bytes).unwrap()
}

fn parse_baseline(text: &str) -> hl7_parser::Message<'_> {
    hl7_parser::Message::parse(text).unwrap()
}

/// Subcomponents seen and their total length.
fn visit_ours(message: &Message<'_>) -> (usize, usize) {
    let (mut count, mut len) = (0, 0);
    for segment in message.segments() {
        for field in segment.fields() {
            for repetition in field.repetitions() {
                for component in repetition.components() {
                    for sub in component.subcomponents() {
                        count += 1;
                        len += sub.raw().len();
                    }
                }
            }
        }
    }
    (count, len)
}

fn visit_baseline(message: &hl7_parser::Message<'_>) -> (usize, usize) {
    let (mut count, mut len) = (0, 0);
    for segment in message.segments() {
        for field in segment.fields() {
            for repeat in field.repeats() {
                for component in repeat.components() {
                    for sub in component.subcomponents() {
                        count += 1;
                        len += sub.raw_value().len();
                    }
                }
            }
        }
    }
    (count, len)
}

fn lookup_ours<'a>(message: &Message<'a>, path: &Path) -> Option<&'a [u8]> {
    path.find_first(message).map(|hit| hit.span.raw())
}

fn lookup_baseline<'m>(
    message: &'m hl7_parser::Message<'m>,
    filter: &BaselineFilter,
) -> Option<&'m str> {
    match *filter {
        BaselineFilter::Repetition {
            segment,
            field,
            component,
            equals,
            then_component,
        } => message
            .segment(segment)?
            .field(field)?
            .repeats()
            .find(|r| r.component(component).map(|c| c.raw_value()) == Some(equals))?
            .component(then_component)
            .map(|c| c.raw_value()),
        BaselineFilter::Segment {
            segment,
            field,
            component,
            equals,
            then_field,
            then_component,
        } => {
            let found = message.segments().filter(|s| s.name == segment).find(|s| {
                let Some(f) = s.field(field) else {
                    return false;
                };
                let value = match component {
                    None => Some(f.raw_value()),
                    Some(c) => f
                        .repeat(1)
                        .and_then(|r| r.component(c))
                        .map(|c| c.raw_value()),
                };
                value == Some(equals)
            })?;
            let f = found.field(then_field)?;
            match then_component {
                None => Some(f.raw_value()),
                Some(c) => f.repeat(1)?.component(c).map(|c| c.raw_value()),
            }
        }
    }
}

fn query_baseline<'m>(
    message: &'m hl7_parser::Message<'m>,
    query: LocationQuery,
) -> Option<&'m str> {
    message.query(query).map(|r| r.raw_value())
}

// ----------------------------------------------------------------------------- checks

/// Runs every operation once and checks that both parsers agree, and that the 5 MiB payload
/// our lookup returns lies inside the input buffer.
fn check(inputs: &[Input]) {
    for input in inputs {
        let name = input.fx.name;
        let ours = parse_ours(input.bytes());
        let theirs = parse_baseline(input.text());
        assert_eq!(
            ours.segment_count(),
            input.fx.segments,
            "{name}: our segments"
        );
        assert_eq!(
            theirs.segments().count(),
            input.fx.segments,
            "{name}: hl7-parser segments"
        );

        let (our_subs, our_len) = visit_ours(&ours);
        let (their_subs, their_len) = visit_baseline(&theirs);
        println!(
            "check {name}: {} bytes, {} segments; subcomponents visited: hl7gw {our_subs} ({our_len} bytes), hl7-parser {their_subs} ({their_len} bytes)",
            input.bytes().len(),
            input.fx.segments,
        );

        let filtered = lookup_ours(&ours, &input.filtered).expect("our filtered lookup");
        assert_eq!(
            filtered, input.fx.filtered_expect,
            "{name}: our filtered lookup"
        );
        let their_filtered =
            lookup_baseline(&theirs, &input.fx.baseline_filter).expect("baseline filtered lookup");
        assert_eq!(
            their_filtered.as_bytes(),
            input.fx.filtered_expect,
            "{name}: baseline filter"
        );

        let indexed = lookup_ours(&ours, &input.indexed).expect("our indexed lookup");
        assert_eq!(
            indexed, input.fx.indexed_expect,
            "{name}: our indexed lookup"
        );
        let their_indexed =
            query_baseline(&theirs, input.query.clone()).expect("baseline indexed query");
        assert_eq!(
            their_indexed.as_bytes(),
            input.fx.indexed_expect,
            "{name}: baseline query"
        );

        // Zero copy: the value is a slice of the caller's buffer, not a copy of it.
        let buffer = input.bytes().as_ptr_range();
        let value = filtered.as_ptr_range();
        assert!(
            buffer.start <= value.start && value.end <= buffer.end,
            "{name}: {} returned bytes outside the input buffer",
            input.fx.filtered_path
        );
        if filtered.len() >= fixtures::PDF_BASE64_LEN {
            println!(
                "zero-copy {name}: {} -> {} bytes at input offset {}: the slice lies inside the input buffer (no copy)",
                input.fx.filtered_path,
                filtered.len(),
                value.start as usize - buffer.start as usize,
            );
        }
    }
}

// ----------------------------------------------------------------------------- benchmarks

/// Applies the sampling for one input: flat and fewer samples for the 5 MiB message.
fn configure<M: criterion::measurement::Measurement>(
    group: &mut criterion::BenchmarkGroup<'_, M>,
    input: &Input,
    throughput: bool,
) {
    if input.large() {
        group.sampling_mode(SamplingMode::Flat).sample_size(10);
    } else {
        group.sampling_mode(SamplingMode::Auto).sample_size(40);
    }
    if throughput {
        group.throughput(Throughput::Bytes(input.bytes().len() as u64));
    }
}

fn bench_parse(c: &mut Criterion, inputs: &[Input]) {
    let mut group = c.benchmark_group("parse");
    for input in inputs {
        configure(&mut group, input, true);
        let name = input.fx.name;
        group.bench_with_input(BenchmarkId::new(OURS, name), input, |b, i| {
            b.iter(|| parse_ours(black_box(i.bytes())))
        });
        group.bench_with_input(BenchmarkId::new(BASELINE, name), input, |b, i| {
            b.iter(|| parse_baseline(black_box(i.text())))
        });
    }
    group.finish();
}

fn bench_parse_visit(c: &mut Criterion, inputs: &[Input]) {
    let mut group = c.benchmark_group("parse_visit");
    for input in inputs {
        configure(&mut group, input, true);
        let name = input.fx.name;
        group.bench_with_input(BenchmarkId::new(OURS, name), input, |b, i| {
            b.iter(|| visit_ours(&parse_ours(black_box(i.bytes()))))
        });
        group.bench_with_input(BenchmarkId::new(BASELINE, name), input, |b, i| {
            b.iter(|| visit_baseline(&parse_baseline(black_box(i.text()))))
        });
    }
    group.finish();
}

fn bench_parse_lookup(c: &mut Criterion, inputs: &[Input]) {
    let mut group = c.benchmark_group("parse_lookup");
    for input in inputs {
        configure(&mut group, input, true);
        let name = input.fx.name;
        group.bench_with_input(BenchmarkId::new(OURS, name), input, |b, i| {
            b.iter(|| {
                let message = parse_ours(black_box(i.bytes()));
                lookup_ours(&message, &i.filtered).map(<[u8]>::len)
            })
        });
        group.bench_with_input(BenchmarkId::new(BASELINE, name), input, |b, i| {
            b.iter(|| {
                let message = parse_baseline(black_box(i.text()));
                lookup_baseline(&message, &i.fx.baseline_filter).map(str::len)
            })
        });
    }
    group.finish();
}

fn bench_lookup(c: &mut Criterion, inputs: &[Input]) {
    let mut group = c.benchmark_group("lookup_filtered");
    for input in inputs {
        configure(&mut group, input, false);
        group.sampling_mode(SamplingMode::Auto);
        let name = input.fx.name;
        let ours = parse_ours(input.bytes());
        group.bench_function(BenchmarkId::new(OURS, name), |b| {
            b.iter(|| lookup_ours(black_box(&ours), &input.filtered))
        });
        let theirs = parse_baseline(input.text());
        group.bench_function(BenchmarkId::new(BASELINE, name), |b| {
            b.iter(|| lookup_baseline(black_box(&theirs), &input.fx.baseline_filter))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("lookup_indexed");
    for input in inputs {
        configure(&mut group, input, false);
        group.sampling_mode(SamplingMode::Auto);
        let name = input.fx.name;
        let ours = parse_ours(input.bytes());
        group.bench_function(BenchmarkId::new(OURS, name), |b| {
            b.iter(|| lookup_ours(black_box(&ours), &input.indexed))
        });
        let theirs = parse_baseline(input.text());
        // `query` takes the query by value: clone it outside the timed routine.
        group.bench_function(BenchmarkId::new(BASELINE, name), |b| {
            b.iter_batched(
                || input.query.clone(),
                |query| query_baseline(black_box(&theirs), query),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn bench_mix(c: &mut Criterion, inputs: &[Input]) {
    let total: usize = inputs.iter().map(|i| i.bytes().len()).sum();
    let mut group = c.benchmark_group("mix");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .throughput(Throughput::Bytes(total as u64));
    group.bench_function(BenchmarkId::new(OURS, "parse"), |b| {
        b.iter(|| {
            for i in inputs {
                black_box(parse_ours(black_box(i.bytes())));
            }
        })
    });
    group.bench_function(BenchmarkId::new(BASELINE, "parse"), |b| {
        b.iter(|| {
            for i in inputs {
                black_box(parse_baseline(black_box(i.text())));
            }
        })
    });
    group.bench_function(BenchmarkId::new(OURS, "parse_visit"), |b| {
        b.iter(|| {
            for i in inputs {
                black_box(visit_ours(&parse_ours(black_box(i.bytes()))));
            }
        })
    });
    group.bench_function(BenchmarkId::new(BASELINE, "parse_visit"), |b| {
        b.iter(|| {
            for i in inputs {
                black_box(visit_baseline(&parse_baseline(black_box(i.text()))));
            }
        })
    });
    group.finish();
}

// ----------------------------------------------------------------------------- summary

/// Where criterion writes its reports (the same rules it applies itself).
fn criterion_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    // The bench binary lives in <target>/<profile>/deps/.
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.join("criterion")))
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

/// Nanoseconds per iteration from this run's estimates (criterion's typical value: the slope
/// when it fitted one, else the mean). `None` when the benchmark did not run in this process.
fn estimate(started: SystemTime, group: &str, function: &str, input: &str) -> Option<f64> {
    let file = criterion_home()
        .join(group)
        .join(function)
        .join(input)
        .join("new")
        .join("estimates.json");
    let modified = std::fs::metadata(&file).ok()?.modified().ok()?;
    if modified < started {
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).ok()?).ok()?;
    json["slope"]["point_estimate"]
        .as_f64()
        .or_else(|| json["mean"]["point_estimate"].as_f64())
}

fn format_time(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn format_rate(per_second: f64) -> String {
    if per_second >= 1e6 {
        format!("{:.2} M", per_second / 1e6)
    } else if per_second >= 1e3 {
        format!("{:.1} k", per_second / 1e3)
    } else {
        format!("{per_second:.1}")
    }
}

/// `**30.2×**` when we are faster; `**1/15.5** (hl7gw slower)` when hl7-parser is.
fn format_ratio(ratio: f64) -> String {
    if ratio >= 1.0 {
        format!("**{ratio:.1}×**")
    } else {
        format!("**1/{:.1}** (hl7gw slower)", 1.0 / ratio)
    }
}

struct Row {
    group: &'static str,
    input: String,
    bytes: usize,
    messages: usize,
}

/// The 1-minute load average (Linux), printed beside the figures: the ratios hold under
/// load because both parsers share it, the absolute figures do not.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string())
}

fn summary(started: SystemTime, load_before: &str, inputs: &[Input]) {
    let mut rows = Vec::new();
    for group in [
        "parse",
        "parse_visit",
        "parse_lookup",
        "lookup_filtered",
        "lookup_indexed",
    ] {
        for input in inputs {
            rows.push(Row {
                group,
                input: input.fx.name.to_string(),
                bytes: input.bytes().len(),
                messages: 1,
            });
        }
    }
    let total: usize = inputs.iter().map(|i| i.bytes().len()).sum();
    for kind in ["parse", "parse_visit"] {
        rows.push(Row {
            group: "mix",
            input: kind.to_string(),
            bytes: total,
            messages: inputs.len(),
        });
    }

    let mut lines = Vec::new();
    for row in &rows {
        let (Some(ours), Some(theirs)) = (
            estimate(started, row.group, OURS, &row.input),
            estimate(started, row.group, BASELINE, &row.input),
        ) else {
            continue;
        };
        let is_lookup = row.group.starts_with("lookup");
        let mb_s = |ns: f64| {
            if is_lookup {
                "-".to_string()
            } else {
                format!("{:.1}", row.bytes as f64 / ns * 1e3)
            }
        };
        let msg_s = |ns: f64| format_rate(row.messages as f64 / ns * 1e9);
        lines.push(format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.group,
            row.input,
            row.bytes,
            format_time(ours),
            mb_s(ours),
            msg_s(ours),
            format_time(theirs),
            mb_s(theirs),
            msg_s(theirs),
            format_ratio(theirs / ours),
        ));
    }
    if lines.is_empty() {
        println!("\nratio summary: no estimates written by this run (filtered, --test or --list)");
        return;
    }
    println!(
        "\nload average (1 min): {load_before} before the run, {} after",
        load_average()
    );
    println!(
        "\nRatios from this run (hl7-parser time / hl7gw time; MB = 10^6 bytes; msg/s = messages, or lookups, per second):\n"
    );
    println!(
        "| group | input | bytes | hl7gw time | hl7gw MB/s | hl7gw msg/s | hl7-parser time | hl7-parser MB/s | hl7-parser msg/s | ratio |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for line in lines {
        println!("{line}");
    }
    if let (Some(ours), Some(theirs)) = (
        estimate(started, "mix", OURS, "parse"),
        estimate(started, "mix", BASELINE, "parse"),
    ) {
        let ratio = theirs / ours;
        println!(
            "\nmix/parse: {ratio:.1}× hl7-parser's throughput (target 10×: {})",
            if ratio >= 10.0 { "met" } else { "NOT met" }
        );
    }
}

fn main() {
    let started = SystemTime::now();
    let load_before = load_average();
    let inputs: Vec<Input> = fixtures::all()
        .into_iter()
        .map(|fx| Input {
            filtered: Path::parse(fx.filtered_path).unwrap(),
            indexed: Path::parse(fx.indexed_path).unwrap(),
            query: LocationQuery::parse(fx.baseline_query).unwrap(),
            fx,
        })
        .collect();
    check(&inputs);

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(700))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    bench_parse(&mut c, &inputs);
    bench_parse_visit(&mut c, &inputs);
    bench_parse_lookup(&mut c, &inputs);
    bench_lookup(&mut c, &inputs);
    bench_mix(&mut c, &inputs);
    c.final_summary();
    summary(started, &load_before, &inputs);
}
