//! Parsing benchmarks against baselines measured in the same run: the `hl7-parser`,
//! `hl7-v2` and `rust-hl7` crates (every HL7 v2 parser on crates.io that builds here).
//!
//! ```text
//! cargo bench -p hl7gw-runtime --bench parse
//! ```
//!
//! Inputs: the synthetic messages of `fixtures/` (ADT^A28, a 40-segment ADT^A01, a
//! 40-segment ORU^R01, the same ORU with LF terminators and with a UTF-8 byte-order mark, and
//! an ORU^R01 whose OBX-5.5 carries a 5 MiB base64 PDF), and the valid single messages of
//! the shared corpus (`../shared/corpus/hl7`, or `HL7GW_CORPUS`; skipped with a message
//! when absent). Groups, each with every parser that reads the input:
//!
//! - `parse`: bytes to a message value;
//! - `parse_visit`: parse, then walk every field, repetition, component and subcomponent;
//! - `parse_lookup`: parse, then one filtered path lookup (what a route does per message);
//! - `lookup_filtered` / `lookup_indexed`: one lookup on an already parsed message
//!   (against hl7-parser's prebuilt tree only: the other crates have no comparable query);
//! - `mix`: every small message (synthetic and corpus) once per iteration, so each message
//!   weighs the same whatever its size; the 5 MiB message is reported on its own.
//!
//! Before measuring, the binary checks that every parser reads every segment, that the
//! lookups select the same bytes, and that our lookup of the 5 MiB payload returns a slice
//! of the input buffer (no copy). It then times parse + visit of each corpus message on its
//! own (best of several batches) and prints each message's ratio and their geometric mean.
//! After criterion has run, it reads the estimates it just wrote
//! (`target/criterion/<group>/<parser>/<input>/new/estimates.json`, only files written by
//! this run) and prints GB/s, messages/s and the ratio baseline time / our time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fixtures;

use std::collections::BTreeSet;
use std::hint::black_box;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use criterion::{BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput};
use fixtures::{BaselineFilter, Fixture};
use hl7_parser::query::LocationQuery;
use hl7gw_runtime::hl7::{Message, ParseOptions, Path, with_cr_segments};

const OURS: &str = "hl7gw";
/// Inputs at least this large are sampled flat with fewer samples, to keep the run short.
const LARGE: usize = 1 << 20;

/// The crates we compare against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Baseline {
    /// `hl7-parser` 0.3 (default features off): a full tree of slices.
    Hl7Parser,
    /// `hl7-v2` 0.0.1: segments split into field slices; lower levels split on demand.
    Hl7V2,
    /// `rust-hl7` 0.5: a full tree of vectors of slices.
    RustHl7,
}

impl Baseline {
    const ALL: [Self; 3] = [Self::Hl7Parser, Self::Hl7V2, Self::RustHl7];

    fn name(self) -> &'static str {
        match self {
            Self::Hl7Parser => "hl7-parser",
            Self::Hl7V2 => "hl7-v2",
            Self::RustHl7 => "rust-hl7",
        }
    }

    /// Parses and visits every value: subcomponents seen and their total length.
    fn parse_visit(self, input: &Prepared) -> (usize, usize) {
        let (mut count, mut len) = (0, 0);
        let mut add = |raw: &str| {
            count += 1;
            len += raw.len();
        };
        match self {
            Self::Hl7Parser => {
                let message = hl7_parser::Message::parse(input.text()).unwrap();
                for segment in message.segments() {
                    for field in segment.fields() {
                        for repeat in field.repeats() {
                            for component in repeat.components() {
                                for sub in component.subcomponents() {
                                    add(sub.raw_value());
                                }
                            }
                        }
                    }
                }
            }
            Self::Hl7V2 => {
                let message = hl7_v2::Hl7Message::parse(&input.bytes).unwrap();
                let e = &message.encoding;
                let (rep, comp, sub) = (
                    char::from(e.repetition_sep),
                    char::from(e.component_sep),
                    char::from(e.sub_component_sep),
                );
                // hl7-v2 lists segments by name only: one pass per distinct name (found
                // outside the timed loop), a few 3-byte comparisons per segment.
                for name in &input.segment_names {
                    for segment in message.segments(name) {
                        for field in segment.raw_fields() {
                            for r in field.split(rep) {
                                for c in r.split(comp) {
                                    for s in c.split(sub) {
                                        add(s);
                                    }
                                }
                            }
                        }
                    }
                }
            }
            Self::RustHl7 => {
                let message = rusthl7::message::Message::try_from(input.text()).unwrap();
                for segment in &message.segments {
                    for field in &segment.fields {
                        for repeat in &field.subcomponents {
                            for component in repeat {
                                for s in component {
                                    add(s);
                                }
                            }
                        }
                    }
                }
            }
        }
        (count, len)
    }

    /// Parses only; the message is returned to the caller's `black_box`.
    fn parse(self, input: &Prepared) -> usize {
        match self {
            Self::Hl7Parser => {
                black_box(hl7_parser::Message::parse(input.text()).unwrap());
                1
            }
            Self::Hl7V2 => {
                black_box(hl7_v2::Hl7Message::parse(&input.bytes).unwrap());
                1
            }
            Self::RustHl7 => black_box(rusthl7::message::Message::try_from(input.text()).unwrap())
                .segments
                .len(),
        }
    }

    /// Segments this crate reads in the input (`None` when it fails or panics on it).
    /// rust-hl7 turns the final CR into an empty last segment, which is not counted.
    fn segments(self, input: &Prepared) -> Option<usize> {
        let text = std::str::from_utf8(&input.bytes).ok()?;
        catch_unwind(AssertUnwindSafe(|| match self {
            Self::Hl7Parser => hl7_parser::Message::parse(text)
                .ok()
                .map(|m| m.segments().count()),
            Self::Hl7V2 => hl7_v2::Hl7Message::parse(&input.bytes).ok().map(|m| {
                input
                    .segment_names
                    .iter()
                    .map(|n| m.segments(n).count())
                    .sum()
            }),
            Self::RustHl7 => rusthl7::message::Message::try_from(text)
                .ok()
                .map(|m| m.segments.iter().filter(|s| !s.source.is_empty()).count()),
        }))
        .ok()
        .flatten()
    }
}

/// One message with what every parser needs prepared outside the timed loops.
struct Prepared {
    name: String,
    bytes: Vec<u8>,
    options: ParseOptions,
    segments: usize,
    /// Distinct segment identifiers (hl7-v2 can list segments by name only).
    segment_names: Vec<String>,
    /// The baselines that read every segment of this input.
    readers: Vec<Baseline>,
}

impl Prepared {
    fn new(name: String, bytes: Vec<u8>, options: ParseOptions) -> Option<Self> {
        let message = Message::parse_with(&bytes, &options).ok()?;
        let segments = message.segment_count();
        let segment_names: BTreeSet<String> =
            message.segments().map(|s| s.id().to_string()).collect();
        let mut prepared = Self {
            name,
            bytes,
            options,
            segments,
            segment_names: segment_names.into_iter().collect(),
            readers: Vec::new(),
        };
        prepared.readers = Baseline::ALL
            .into_iter()
            .filter(|b| b.segments(&prepared) == Some(segments))
            .collect();
        Some(prepared)
    }

    /// hl7-parser and rust-hl7 take `&str`: the UTF-8 check is done here, outside their
    /// timed loops (ours and hl7-v2 validate inside), in their favour.
    fn text(&self) -> &str {
        std::str::from_utf8(&self.bytes).unwrap_or_default()
    }

    fn large(&self) -> bool {
        self.bytes.len() >= LARGE
    }

    fn reads(&self, baseline: Baseline) -> bool {
        self.readers.contains(&baseline)
    }
}

/// A synthetic fixture with its lookups prepared.
struct Input {
    fx: Fixture,
    prepared: Prepared,
    filtered: Path,
    indexed: Path,
    query: LocationQuery,
}

// ----------------------------------------------------------------------------- operations

fn parse_ours(input: &Prepared) -> Message<'_> {
    Message::parse_with(&input.bytes, &input.options).unwrap()
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

fn parse_visit_ours(input: &Prepared) -> (usize, usize) {
    visit_ours(&parse_ours(input))
}

fn lookup_ours<'a>(message: &Message<'a>, path: &Path) -> Option<&'a [u8]> {
    path.find_value(message).map(|span| span.raw())
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

/// Runs every operation once and checks that the parsers agree, and that the 5 MiB payload
/// our lookup returns lies inside the input buffer.
fn check(inputs: &[Input]) {
    for input in inputs {
        let name = input.fx.name;
        let p = &input.prepared;
        assert_eq!(p.segments, input.fx.segments, "{name}: our segments");
        let (our_subs, our_len) = parse_visit_ours(p);
        let mut seen = format!("hl7gw {our_subs} ({our_len} bytes)");
        for baseline in Baseline::ALL {
            if p.reads(baseline) {
                let (subs, len) = baseline.parse_visit(p);
                seen += &format!(", {} {subs} ({len} bytes)", baseline.name());
            } else {
                seen += &format!(", {} does not read it (skipped)", baseline.name());
            }
        }
        println!(
            "check {name}: {} bytes, {} segments; subcomponents visited: {seen}",
            p.bytes.len(),
            p.segments
        );
        assert!(
            p.reads(Baseline::Hl7Parser) || input.fx.lenient || p.bytes.starts_with(b"\xEF"),
            "{name}: hl7-parser must read the CR inputs"
        );

        let ours = parse_ours(p);
        let filtered = lookup_ours(&ours, &input.filtered).expect("our filtered lookup");
        assert_eq!(
            filtered, input.fx.filtered_expect,
            "{name}: our filtered lookup"
        );
        let indexed = lookup_ours(&ours, &input.indexed).expect("our indexed lookup");
        assert_eq!(
            indexed, input.fx.indexed_expect,
            "{name}: our indexed lookup"
        );
        if p.reads(Baseline::Hl7Parser) {
            let theirs = hl7_parser::Message::parse(p.text()).unwrap();
            let their_filtered = lookup_baseline(&theirs, &input.fx.baseline_filter)
                .expect("baseline filtered lookup");
            assert_eq!(
                their_filtered.as_bytes(),
                input.fx.filtered_expect,
                "{name}: baseline filter"
            );
            let their_indexed =
                query_baseline(&theirs, input.query.clone()).expect("baseline indexed query");
            assert_eq!(
                their_indexed.as_bytes(),
                input.fx.indexed_expect,
                "{name}: baseline query"
            );
        }

        // Zero copy: the value is a slice of the caller's buffer, not a copy of it.
        let buffer = p.bytes.as_ptr_range();
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

// ----------------------------------------------------------------------------- corpus

/// Where the shared corpus of real messages is (`HL7GW_CORPUS` overrides).
fn corpus_dir() -> PathBuf {
    std::env::var_os("HL7GW_CORPUS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/hl7"),
        PathBuf::from,
    )
}

/// The corpus's valid single messages, with CR terminators and no byte-order mark (the LF
/// and BOM inputs above measure those), so that every parser can be given the same bytes.
/// Files our parser rejects (malformed samples, batches) are left out, and said so.
fn corpus() -> Vec<Prepared> {
    let dir = corpus_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        println!(
            "corpus: {} not found: real messages skipped (set HL7GW_CORPUS to a folder of .hl7 files)",
            dir.display()
        );
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "hl7"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    let mut rejected = 0;
    for file in files {
        let Ok(raw) = std::fs::read(&file) else {
            continue;
        };
        let body = raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&raw);
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        match Prepared::new(name, with_cr_segments(body), ParseOptions::default()) {
            Some(p) => out.push(p),
            None => rejected += 1,
        }
    }
    println!(
        "corpus: {} valid single messages from {} ({rejected} files left out: malformed, batches or files our parser rejects)",
        out.len(),
        dir.display()
    );
    out
}

/// Best time per call of `f`, in ns: batches of about 2 ms, the fastest of seven.
fn best_ns(mut f: impl FnMut()) -> f64 {
    let mut iterations = 1u32;
    loop {
        let start = Instant::now();
        for _ in 0..iterations {
            f();
        }
        if start.elapsed() >= Duration::from_millis(2) || iterations >= 1 << 24 {
            break;
        }
        iterations *= 2;
    }
    (0..7)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                f();
            }
            start.elapsed().as_nanos() as f64 / f64::from(iterations)
        })
        .fold(f64::INFINITY, f64::min)
}

/// Parse + visit of each message on its own, each baseline against ours, and the geometric
/// mean of the ratios: every message weighs the same, whatever its size.
fn per_message(messages: &[&Prepared], quick: bool) {
    if messages.is_empty() {
        return;
    }
    if quick {
        for m in messages {
            black_box(parse_visit_ours(m));
            for b in Baseline::ALL.into_iter().filter(|b| m.reads(*b)) {
                black_box(b.parse_visit(m));
            }
        }
        println!("per-message timings: skipped (--test or --list)");
        return;
    }
    println!(
        "\nParse + visit, each message on its own (best of 7 batches of ~2 ms; ratio = baseline time / hl7gw time):\n"
    );
    let mut header = "| message | bytes | segments | hl7gw | hl7gw GB/s |".to_string();
    let mut rule = "|---|---:|---:|---:|---:|".to_string();
    for b in Baseline::ALL {
        header += &format!(" {} | ratio |", b.name());
        rule += "---:|---:|";
    }
    println!("{header}\n{rule}");
    let mut logs = vec![Vec::new(); Baseline::ALL.len()];
    let mut ours_total = 0.0;
    let mut bytes_total = 0usize;
    for m in messages {
        let ours = best_ns(|| {
            black_box(parse_visit_ours(black_box(m)));
        });
        ours_total += ours;
        bytes_total += m.bytes.len();
        let mut line = format!(
            "| {} | {} | {} | {} | {:.2} |",
            m.name,
            m.bytes.len(),
            m.segments,
            format_time(ours),
            m.bytes.len() as f64 / ours
        );
        for (i, b) in Baseline::ALL.into_iter().enumerate() {
            if m.reads(b) {
                let theirs = best_ns(|| {
                    black_box(b.parse_visit(black_box(m)));
                });
                logs[i].push((theirs / ours).ln());
                line += &format!(" {} | {:.2}× |", format_time(theirs), theirs / ours);
            } else {
                line += " - | does not read it |";
            }
        }
        println!("{line}");
    }
    println!(
        "\nhl7gw over these {} messages: {:.2} GB/s ({} per message on average)",
        messages.len(),
        bytes_total as f64 / ours_total,
        format_time(ours_total / messages.len() as f64)
    );
    for (i, b) in Baseline::ALL.into_iter().enumerate() {
        let l = &logs[i];
        if !l.is_empty() {
            let geo = (l.iter().sum::<f64>() / l.len() as f64).exp();
            let min = l.iter().copied().fold(f64::INFINITY, f64::min).exp();
            println!(
                "per-message ratio against {}: geometric mean {geo:.2}× over {} messages (lowest {min:.2}×)",
                b.name(),
                l.len()
            );
        }
    }
}

// ----------------------------------------------------------------------------- benchmarks

/// Applies the sampling for one input: flat and fewer samples for the 5 MiB message.
fn configure<M: criterion::measurement::Measurement>(
    group: &mut criterion::BenchmarkGroup<'_, M>,
    input: &Prepared,
    throughput: bool,
) {
    if input.large() {
        group.sampling_mode(SamplingMode::Flat).sample_size(10);
    } else {
        group.sampling_mode(SamplingMode::Auto).sample_size(30);
    }
    if throughput {
        group.throughput(Throughput::Bytes(input.bytes.len() as u64));
    }
}

fn bench_parse(c: &mut Criterion, inputs: &[Input], visit: bool) {
    let mut group = c.benchmark_group(if visit { "parse_visit" } else { "parse" });
    for input in inputs {
        let p = &input.prepared;
        configure(&mut group, p, true);
        let name = input.fx.name;
        group.bench_with_input(BenchmarkId::new(OURS, name), p, |b, p| {
            if visit {
                b.iter(|| parse_visit_ours(black_box(p)))
            } else {
                b.iter(|| parse_ours(black_box(p)).segment_count())
            }
        });
        for baseline in Baseline::ALL.into_iter().filter(|b| p.reads(*b)) {
            group.bench_with_input(BenchmarkId::new(baseline.name(), name), p, |b, p| {
                if visit {
                    b.iter(|| baseline.parse_visit(black_box(p)))
                } else {
                    b.iter(|| baseline.parse(black_box(p)))
                }
            });
        }
    }
    group.finish();
}

fn bench_parse_lookup(c: &mut Criterion, inputs: &[Input]) {
    let mut group = c.benchmark_group("parse_lookup");
    for input in inputs {
        let p = &input.prepared;
        configure(&mut group, p, true);
        let name = input.fx.name;
        group.bench_with_input(BenchmarkId::new(OURS, name), input, |b, i| {
            b.iter(|| {
                let message = parse_ours(black_box(&i.prepared));
                lookup_ours(&message, &i.filtered).map(<[u8]>::len)
            })
        });
        if p.reads(Baseline::Hl7Parser) {
            group.bench_with_input(
                BenchmarkId::new(Baseline::Hl7Parser.name(), name),
                input,
                |b, i| {
                    b.iter(|| {
                        let message = hl7_parser::Message::parse(black_box(i.prepared.text()));
                        lookup_baseline(&message.unwrap(), &i.fx.baseline_filter).map(str::len)
                    })
                },
            );
        }
    }
    group.finish();
}

fn bench_lookup(c: &mut Criterion, inputs: &[Input]) {
    for (group_name, indexed) in [("lookup_filtered", false), ("lookup_indexed", true)] {
        let mut group = c.benchmark_group(group_name);
        for input in inputs
            .iter()
            .filter(|i| i.prepared.reads(Baseline::Hl7Parser))
        {
            let p = &input.prepared;
            configure(&mut group, p, false);
            group.sampling_mode(SamplingMode::Auto);
            let name = input.fx.name;
            let ours = parse_ours(p);
            let path = if indexed {
                &input.indexed
            } else {
                &input.filtered
            };
            group.bench_function(BenchmarkId::new(OURS, name), |b| {
                b.iter(|| lookup_ours(black_box(&ours), path))
            });
            let theirs = hl7_parser::Message::parse(p.text()).unwrap();
            group.bench_function(BenchmarkId::new(Baseline::Hl7Parser.name(), name), |b| {
                if indexed {
                    // `query` takes the query by value: clone it outside the timed routine.
                    b.iter_batched(
                        || input.query.clone(),
                        |query| query_baseline(black_box(&theirs), query),
                        BatchSize::SmallInput,
                    )
                } else {
                    b.iter(|| lookup_baseline(black_box(&theirs), &input.fx.baseline_filter))
                }
            });
        }
        group.finish();
    }
}

/// Every small message once per iteration, for the parsers that read all of them.
fn bench_mix(c: &mut Criterion, mix: &[&Prepared]) {
    let total: usize = mix.iter().map(|m| m.bytes.len()).sum();
    let mut group = c.benchmark_group("mix");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .throughput(Throughput::Bytes(total as u64));
    for (kind, visit) in [("parse", false), ("parse_visit", true)] {
        group.bench_function(BenchmarkId::new(OURS, kind), |b| {
            b.iter(|| {
                for m in mix {
                    if visit {
                        black_box(parse_visit_ours(black_box(m)));
                    } else {
                        black_box(parse_ours(black_box(m)).segment_count());
                    }
                }
            })
        });
        for baseline in Baseline::ALL {
            if !mix.iter().all(|m| m.reads(baseline)) {
                println!(
                    "mix: {} does not read every message; not measured",
                    baseline.name()
                );
                continue;
            }
            group.bench_function(BenchmarkId::new(baseline.name(), kind), |b| {
                b.iter(|| {
                    for m in mix {
                        if visit {
                            black_box(baseline.parse_visit(black_box(m)));
                        } else {
                            black_box(baseline.parse(black_box(m)));
                        }
                    }
                })
            });
        }
    }
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

/// The 1-minute load average (Linux), printed beside the figures: the ratios hold under
/// load because both parsers share it, the absolute figures do not.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string())
}

/// `**30.2×**` when we are faster; `**1/15.5** (hl7gw slower)` when the baseline is.
fn format_ratio(ratio: f64) -> String {
    if ratio >= 1.0 {
        format!("**{ratio:.2}×**")
    } else {
        format!("**1/{:.2}** (hl7gw slower)", 1.0 / ratio)
    }
}

struct Row {
    group: &'static str,
    input: String,
    bytes: usize,
    messages: usize,
}

fn summary(started: SystemTime, load_before: &str, inputs: &[Input], mix: &[&Prepared]) {
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
                bytes: input.prepared.bytes.len(),
                messages: 1,
            });
        }
    }
    let total: usize = mix.iter().map(|m| m.bytes.len()).sum();
    for kind in ["parse", "parse_visit"] {
        rows.push(Row {
            group: "mix",
            input: kind.to_string(),
            bytes: total,
            messages: mix.len(),
        });
    }

    let mut lines = Vec::new();
    for row in &rows {
        let Some(ours) = estimate(started, row.group, OURS, &row.input) else {
            continue;
        };
        let is_lookup = row.group.starts_with("lookup");
        let rate = |ns: f64| {
            if is_lookup {
                "-".to_string()
            } else {
                format!("{:.2}", row.bytes as f64 / ns)
            }
        };
        let mut line = format!(
            "| {} | {} | {} | {} | {} | {} |",
            row.group,
            row.input,
            row.bytes,
            format_time(ours),
            rate(ours),
            format_rate(row.messages as f64 / ours * 1e9),
        );
        for baseline in Baseline::ALL {
            match estimate(started, row.group, baseline.name(), &row.input) {
                Some(theirs) => {
                    line += &format!(
                        " {} | {} |",
                        format_time(theirs),
                        format_ratio(theirs / ours)
                    )
                }
                None => line += " - | - |",
            }
        }
        lines.push(line);
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
        "\nRatios from this run (baseline time / hl7gw time, above 1 = hl7gw faster; GB/s = 10^9 bytes per second; msg/s = messages, or lookups, per second; mix = {} small messages, each once):\n",
        mix.len()
    );
    let mut header =
        "| group | input | bytes | hl7gw time | hl7gw GB/s | hl7gw msg/s |".to_string();
    let mut rule = "|---|---|---:|---:|---:|---:|".to_string();
    for b in Baseline::ALL {
        header += &format!(" {} | ratio |", b.name());
        rule += "---:|---:|";
    }
    println!("{header}\n{rule}");
    for line in lines {
        println!("{line}");
    }
}

fn main() {
    let started = SystemTime::now();
    let load_before = load_average();
    let quick = std::env::args().any(|a| a == "--test" || a == "--list");
    let inputs: Vec<Input> = fixtures::all()
        .into_iter()
        .map(|fx| {
            let options = if fx.lenient {
                ParseOptions::lenient()
            } else {
                ParseOptions::default()
            };
            Input {
                prepared: Prepared::new(fx.name.to_string(), fx.bytes.clone(), options)
                    .expect("our parser reads every fixture"),
                filtered: Path::parse(fx.filtered_path).unwrap(),
                indexed: Path::parse(fx.indexed_path).unwrap(),
                query: LocationQuery::parse(fx.baseline_query).unwrap(),
                fx,
            }
        })
        .collect();
    check(&inputs);
    let corpus = corpus();
    // The mix: the small synthetic CR messages and the corpus, each once.
    let mix: Vec<&Prepared> = inputs
        .iter()
        .map(|i| &i.prepared)
        .filter(|p| {
            !p.large()
                && !p
                    .options
                    .line_endings
                    .eq(&ParseOptions::lenient().line_endings)
                && !p.bytes.starts_with(b"\xEF")
        })
        .chain(corpus.iter())
        .collect();
    per_message(&mix, quick);

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    bench_parse(&mut c, &inputs, false);
    bench_parse(&mut c, &inputs, true);
    bench_parse_lookup(&mut c, &inputs);
    bench_lookup(&mut c, &inputs);
    bench_mix(&mut c, &mix);
    c.final_summary();
    summary(started, &load_before, &inputs, &mix);
}
