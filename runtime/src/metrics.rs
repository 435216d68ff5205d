//! The gateway's metrics, rendered in the Prometheus text format (version 0.0.4) by the
//! operations port's `GET /metrics`.
//!
//! A small registry of its own (atomics and a few locked maps) rather than a metrics crate:
//! the set of series is fixed and small, and the text format is simple. Labelled counters cap
//! their number of series ([`MAX_SERIES`]); values past the cap are counted under `other`, so
//! a sender cannot grow the registry without bound with invented message types.
//!
//! Receiving side:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `hl7gw_messages_total` | counter | `type` (`ADT^A28`, or `undeclared` for any type the spec does not declare inbound), `ack` (`AA`, `AE`, …) |
//! | `hl7gw_http_responses_total` | counter | `status` |
//! | `hl7gw_requests_cancelled_total` | counter | `stage` (see [`cancelled`]) |
//! | `hl7gw_unexpected_content_type_total` | counter | `media_type` (see [`unexpected_media_label`]) |
//! | `hl7gw_request_seconds` | histogram ([`LATENCY_BUCKETS`]) | |
//! | `hl7gw_tls_failures_total` | counter | `listener` (see [`Role::label`]), `reason` (see [`TlsFailure`](crate::tls::TlsFailure)) |
//! | `hl7gw_connections_rejected_total` | counter | `listener`, `reason` (see [`reject`]) |
//! | `hl7gw_connections_accepted_total` | counter | |
//! | `hl7gw_connections_open` | gauge | |
//! | `hl7gw_store_errors_total` | counter | |
//! | `hl7gw_store_commit_group_size` | histogram ([`GROUP_SIZE_BUCKETS`](crate::store::GROUP_SIZE_BUCKETS)) | messages per inbound commit transaction (group commit); `_count` is the number of transactions |
//! | `hl7gw_duplicate_conflicts_total` | counter | |
//!
//! Sending side (present, at zero, also in a gateway that does not send):
//!
//! | metric | type | what |
//! |---|---|---|
//! | `hl7gw_send_seconds` | histogram ([`LATENCY_BUCKETS`]) | from sending a message to its accepting ACK |
//! | `hl7gw_queue_depth` | gauge | messages queued, in flight or held |
//! | `hl7gw_queue_oldest_unacked_milliseconds` | gauge | age of the oldest message without an ACK |
//! | `hl7gw_queue_held` | gauge | 1 while the stream is held for an operator |
//! | `hl7gw_queue_stalled` | gauge | 1 while the stream cannot progress (the store refuses its writes): `queue status` and `GET /outbound` say why |
//!
//! The queue gauges are refreshed from the queue's status every 5 s by the gateway
//! ([`Metrics::set_queue`]).
//!
//! The two connection counters carry the listener they concern: `receive` (the Trust's
//! HTTPS), and the EMS-facing `inbox`, `intake` and `intake_mllp` ([`crate::ems`]), which go
//! through the same admission and TLS accept path (`crate::accept`).
//!
//! Nothing here ever holds message content: only types, codes, statuses and durations.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::listeners::Role;

/// Most label combinations one labelled counter keeps; later ones count as `other`.
pub const MAX_SERIES: usize = 256;

/// Upper bounds (seconds) of the request latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Reasons a connection is closed before any HTTP, for
/// `hl7gw_connections_rejected_total{reason}`.
pub mod reject {
    /// The peer's IP is outside the allowlist (closed before TLS).
    pub const IP: &str = "ip";
    /// The client certificate names no allowed subject (closed after the handshake).
    pub const SUBJECT: &str = "subject";
    /// Too many open connections.
    pub const CAPACITY: &str = "capacity";
    /// Too many open connections from this address.
    pub const PER_IP: &str = "per_ip";
    /// Too many connections in the TLS handshake.
    pub const HANDSHAKES: &str = "handshakes";
}

/// When a request was cancelled by its client (an HTTP/2 RST_STREAM, or the connection
/// closed), for `hl7gw_requests_cancelled_total{stage}`.
pub mod cancelled {
    /// While its body was arriving: nothing was processed.
    pub const BODY: &str = "body";
    /// While the message was being processed: processing goes on to its end (a retry is
    /// answered from the store), only the answer is lost.
    pub const PROCESSING: &str = "processing";
}

/// Media types counted by name in `hl7gw_unexpected_content_type_total` (the ones adapters
/// are known to send); any other is counted as `other`, so a sender cannot grow the label
/// set.
pub const UNEXPECTED_MEDIA_TYPES: [&str; 6] = [
    "text/html",
    "text/xml",
    "application/xml",
    "application/octet-stream",
    "application/json",
    "application/x-www-form-urlencoded",
];

/// The `media_type` label for a request's media type that is not an HL7 one: itself when
/// listed in [`UNEXPECTED_MEDIA_TYPES`] (compared ignoring case), else `other`.
pub fn unexpected_media_label(essence: &str) -> &'static str {
    UNEXPECTED_MEDIA_TYPES
        .into_iter()
        .find(|known| known.eq_ignore_ascii_case(essence.trim()))
        .unwrap_or("other")
}

/// A counter with labels.
#[derive(Debug, Default)]
struct Labelled {
    series: Mutex<BTreeMap<Vec<String>, u64>>,
}

impl Labelled {
    fn inc(&self, labels: &[&str]) {
        let mut series = self
            .series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
        if let Some(n) = series.get_mut(&key) {
            *n += 1;
            return;
        }
        let key = if series.len() >= MAX_SERIES {
            vec!["other".to_owned(); labels.len()]
        } else {
            key
        };
        *series.entry(key).or_insert(0) += 1;
    }

    fn get(&self, labels: &[&str]) -> u64 {
        let series = self
            .series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        series
            .iter()
            .find(|(k, _)| k.iter().map(String::as_str).eq(labels.iter().copied()))
            .map_or(0, |(_, n)| *n)
    }

    fn ensure(&self, labels: &[&str]) {
        let mut series = self
            .series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
        series.entry(key).or_insert(0);
    }

    fn render(&self, out: &mut String, name: &str, help: &str, label_names: &[&str]) {
        header(out, name, help, "counter");
        let series = self
            .series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (values, n) in series.iter() {
            out.push_str(name);
            out.push('{');
            for (i, (label, value)) in label_names.iter().zip(values).enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{label}=\"{}\"", escape_label(value));
            }
            let _ = writeln!(out, "}} {n}");
        }
    }
}

#[derive(Debug)]
struct Histogram {
    /// Cumulative counts are computed at render time; these are per bucket.
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    fn observe(&self, value: Duration) {
        let secs = value.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b)
            && let Some(bucket) = self.buckets.get(i)
        {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        header(out, name, help, "histogram");
        let mut cumulative = 0u64;
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        // Microseconds to seconds: precision loss only past 2^53 µs (285 years).
        #[allow(clippy::cast_precision_loss)]
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The registry. Share it as `Arc<Metrics>` between the receiver, the processing and the
/// operations port.
#[derive(Debug, Default)]
pub struct Metrics {
    messages: Labelled,
    responses: Labelled,
    cancelled: Labelled,
    unexpected_content_types: Labelled,
    tls_failures: Labelled,
    rejected: Labelled,
    latency: Histogram,
    store_errors: AtomicU64,
    duplicate_conflicts: AtomicU64,
    accepted: AtomicU64,
    open: AtomicI64,
    /// Outbound: messages waiting (queued, in flight or held).
    queue_depth: AtomicI64,
    /// Outbound: age of the oldest unacknowledged message, in milliseconds.
    oldest_unacked_ms: AtomicI64,
    /// Outbound: 1 while the stream is held for an operator.
    stream_held: AtomicI64,
    stream_stalled: AtomicI64,
    /// Outbound: 1 while this replica holds the stream's lease and delivers it.
    stream_leader: AtomicI64,
    /// Outbound: time from sending a message to its ACK.
    send_latency: Histogram,
    /// The store's inbound commit groups, once the gateway attached its store.
    commit_groups: std::sync::OnceLock<std::sync::Arc<crate::store::GroupStats>>,
}

impl Metrics {
    /// An empty registry, with the TLS failure and rejection reasons present at zero (so
    /// that alert rules see the series before the first failure).
    pub fn new() -> Self {
        let m = Self::default();
        for listener in Role::GUARDED {
            for reason in crate::tls::TlsFailure::ALL {
                m.tls_failures.ensure(&[listener.label(), reason.as_str()]);
            }
            for reason in [
                reject::IP,
                reject::SUBJECT,
                reject::CAPACITY,
                reject::PER_IP,
                reject::HANDSHAKES,
            ] {
                // The EMS-facing listeners have no IP allowlist.
                if reason != reject::IP || listener == Role::Receive {
                    m.rejected.ensure(&[listener.label(), reason]);
                }
            }
        }
        for stage in [cancelled::BODY, cancelled::PROCESSING] {
            m.cancelled.ensure(&[stage]);
        }
        m
    }

    /// One message answered with an ACK: its type (`ADT^A28`) and the ACK code (`AA`).
    pub fn message(&self, message_type: &str, ack: &str) {
        self.messages.inc(&[message_type, ack]);
    }

    /// One HTTP response.
    pub fn http_response(&self, status: u16) {
        self.responses.inc(&[&status.to_string()]);
    }

    /// One request cancelled by its client, at a stage of [`cancelled`]; no response was
    /// sent.
    pub fn request_cancelled(&self, stage: &'static str) {
        self.cancelled.inc(&[stage]);
    }

    /// One HL7 body read under a media type that is not an HL7 one (the label from
    /// [`unexpected_media_label`]).
    pub fn unexpected_content_type(&self, label: &'static str) {
        self.unexpected_content_types.inc(&[label]);
    }

    /// Requests counted as cancelled at this stage.
    pub fn cancelled_count(&self, stage: &str) -> u64 {
        self.cancelled.get(&[stage])
    }

    /// HL7 bodies counted under this unexpected media type label.
    pub fn unexpected_content_type_count(&self, label: &str) -> u64 {
        self.unexpected_content_types.get(&[label])
    }

    /// How long one request took, from its headers to its response.
    pub fn request_latency(&self, elapsed: Duration) {
        self.latency.observe(elapsed);
    }

    /// One failed TLS handshake on `listener`.
    pub fn tls_failure(&self, listener: Role, reason: crate::tls::TlsFailure) {
        self.tls_failures.inc(&[listener.label(), reason.as_str()]);
    }

    /// One connection to `listener` closed before HTTP or MLLP (reasons in [`reject`]).
    pub fn connection_rejected(&self, listener: Role, reason: &str) {
        self.rejected.inc(&[listener.label(), reason]);
    }

    /// One store failure (the processing reports these).
    pub fn store_error(&self) {
        self.store_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// One message refused because its key was committed for other content (AR 205).
    pub fn duplicate_conflict(&self) {
        self.duplicate_conflicts.fetch_add(1, Ordering::Relaxed);
    }

    /// Messages refused for a key committed with other content.
    pub fn duplicate_conflicts_count(&self) -> u64 {
        self.duplicate_conflicts.load(Ordering::Relaxed)
    }

    /// One TCP connection accepted (before the IP check).
    pub fn connection_accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection began to be served (after the IP check).
    pub fn connection_opened(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    /// A served connection ended.
    pub fn connection_closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Messages counted with this type and ACK code.
    pub fn messages_count(&self, message_type: &str, ack: &str) -> u64 {
        self.messages.get(&[message_type, ack])
    }

    /// Responses counted with this status.
    pub fn responses_count(&self, status: u16) -> u64 {
        self.responses.get(&[&status.to_string()])
    }

    /// TLS failures counted on `listener` for this reason.
    pub fn tls_failures_count(&self, listener: Role, reason: crate::tls::TlsFailure) -> u64 {
        self.tls_failures.get(&[listener.label(), reason.as_str()])
    }

    /// Rejected connections to `listener` counted for this reason.
    pub fn rejected_count(&self, listener: Role, reason: &str) -> u64 {
        self.rejected.get(&[listener.label(), reason])
    }

    /// Store errors counted.
    pub fn store_errors_count(&self) -> u64 {
        self.store_errors.load(Ordering::Relaxed)
    }

    /// Requests observed by the latency histogram.
    pub fn requests_count(&self) -> u64 {
        self.latency.count.load(Ordering::Relaxed)
    }

    /// Connections being served now.
    pub fn open_connections(&self) -> i64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Outbound queue gauges, refreshed by the gateway from the queue's status.
    pub fn set_queue(&self, depth: u64, oldest_unacked: Option<Duration>, held: bool) {
        self.queue_depth
            .store(i64::try_from(depth).unwrap_or(i64::MAX), Ordering::Relaxed);
        let ms = oldest_unacked.map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        self.oldest_unacked_ms.store(ms, Ordering::Relaxed);
        self.stream_held.store(i64::from(held), Ordering::Relaxed);
    }

    /// Whether the outbound stream cannot progress now (see `queue::StreamStatus::stalled`).
    pub fn set_queue_stalled(&self, stalled: bool) {
        self.stream_stalled
            .store(i64::from(stalled), Ordering::Relaxed);
    }

    /// Whether this replica leads the outbound stream (holds its lease).
    pub fn set_queue_leader(&self, leading: bool) {
        self.stream_leader
            .store(i64::from(leading), Ordering::Relaxed);
    }

    /// One outbound message's send-to-ACK time.
    pub fn send_latency(&self, elapsed: Duration) {
        self.send_latency.observe(elapsed);
    }

    /// Reports the store's inbound commit groups as `hl7gw_store_commit_group_size` (the
    /// first store attached stays).
    pub fn watch_commit_groups(&self, stats: std::sync::Arc<crate::store::GroupStats>) {
        let _ = self.commit_groups.set(stats);
    }

    fn render_commit_groups(&self, out: &mut String) {
        let name = "hl7gw_store_commit_group_size";
        header(
            out,
            name,
            "Inbound messages per commit transaction (group commit).",
            "histogram",
        );
        let (buckets, groups, messages) = match self.commit_groups.get() {
            Some(stats) => (stats.buckets(), stats.groups(), stats.messages()),
            None => (Default::default(), 0, 0),
        };
        let mut cumulative = 0u64;
        for (bound, count) in crate::store::GROUP_SIZE_BUCKETS.iter().zip(buckets) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {groups}");
        let _ = writeln!(out, "{name}_sum {messages}");
        let _ = writeln!(out, "{name}_count {groups}");
    }

    /// Everything, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        self.messages.render(
            &mut out,
            "hl7gw_messages_total",
            "HL7 messages answered with an ACK, by message type and ACK code.",
            &["type", "ack"],
        );
        self.responses.render(
            &mut out,
            "hl7gw_http_responses_total",
            "HTTP responses by status code.",
            &["status"],
        );
        self.cancelled.render(
            &mut out,
            "hl7gw_requests_cancelled_total",
            "Requests the client cancelled (HTTP/2 RST_STREAM, connection closed) before their response, by stage.",
            &["stage"],
        );
        self.unexpected_content_types.render(
            &mut out,
            "hl7gw_unexpected_content_type_total",
            "HL7 messages received under a Content-Type that is not an HL7 one, by media type.",
            &["media_type"],
        );
        self.latency.render(
            &mut out,
            "hl7gw_request_seconds",
            "Time from a request's headers to its response.",
        );
        self.send_latency.render(
            &mut out,
            "hl7gw_send_seconds",
            "Outbound: time from sending a message to its ACK.",
        );
        for (name, help, value) in [
            (
                "hl7gw_queue_depth",
                "Outbound messages waiting: queued, in flight or held.",
                self.queue_depth.load(Ordering::Relaxed),
            ),
            (
                "hl7gw_queue_oldest_unacked_milliseconds",
                "Age of the oldest outbound message without an ACK.",
                self.oldest_unacked_ms.load(Ordering::Relaxed),
            ),
            (
                "hl7gw_queue_held",
                "1 while the outbound stream is held for an operator.",
                self.stream_held.load(Ordering::Relaxed),
            ),
            (
                "hl7gw_queue_stalled",
                "1 while the outbound stream cannot progress (the store refuses its writes).",
                self.stream_stalled.load(Ordering::Relaxed),
            ),
            (
                "hl7gw_queue_leader",
                "1 while this replica holds the outbound stream's lease and delivers it.",
                self.stream_leader.load(Ordering::Relaxed),
            ),
        ] {
            header(&mut out, name, help, "gauge");
            let _ = writeln!(out, "{name} {value}");
        }
        self.tls_failures.render(
            &mut out,
            "hl7gw_tls_failures_total",
            "Failed TLS handshakes by listener and reason.",
            &["listener", "reason"],
        );
        self.rejected.render(
            &mut out,
            "hl7gw_connections_rejected_total",
            "Connections closed before HTTP or MLLP, by listener and reason: IP not allowed, client subject not allowed, capacity, per-address share, handshake budget.",
            &["listener", "reason"],
        );
        header(
            &mut out,
            "hl7gw_connections_accepted_total",
            "TCP connections accepted, before any check.",
            "counter",
        );
        let _ = writeln!(
            out,
            "hl7gw_connections_accepted_total {}",
            self.accepted.load(Ordering::Relaxed)
        );
        header(
            &mut out,
            "hl7gw_connections_open",
            "Connections being served.",
            "gauge",
        );
        let _ = writeln!(
            out,
            "hl7gw_connections_open {}",
            self.open.load(Ordering::Relaxed)
        );
        header(
            &mut out,
            "hl7gw_store_errors_total",
            "Failures of the message store.",
            "counter",
        );
        let _ = writeln!(
            out,
            "hl7gw_store_errors_total {}",
            self.store_errors.load(Ordering::Relaxed)
        );
        self.render_commit_groups(&mut out);
        header(
            &mut out,
            "hl7gw_duplicate_conflicts_total",
            "Messages refused (AR 205) because their key was committed for other content.",
            "counter",
        );
        let _ = writeln!(
            out,
            "hl7gw_duplicate_conflicts_total {}",
            self.duplicate_conflicts_count()
        );
        out
    }
}

/// Several registries in one Prometheus text, each series with a leading constant label
/// (`customer="demo"`): the host's `/metrics` ([`crate::host`]). Each family keeps one
/// `# HELP` and `# TYPE` and its series stay together, as the text format requires.
pub fn render_labelled(label: &str, parts: &[(&str, &Metrics)]) -> String {
    let mut families: Vec<(String, Vec<String>)> = Vec::new();
    for (value, metrics) in parts {
        let constant = format!("{label}=\"{}\"", escape_label(value));
        let mut current: Option<usize> = None;
        for line in metrics.render().lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or(rest);
                let found = families
                    .iter()
                    .position(|(header, _)| header_name(header) == Some(name));
                current = Some(found.unwrap_or_else(|| {
                    families.push((line.to_owned(), Vec::new()));
                    families.len() - 1
                }));
                continue;
            }
            let Some(family) = current.and_then(|i| families.get_mut(i)) else {
                continue;
            };
            if line.starts_with("# TYPE ") {
                if family.1.is_empty() && !family.0.contains("\n# TYPE ") {
                    family.0.push('\n');
                    family.0.push_str(line);
                }
                continue;
            }
            family.1.push(with_constant_label(line, &constant));
        }
    }
    let mut out = String::new();
    for (header, lines) in families {
        out.push_str(&header);
        out.push('\n');
        for line in lines {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// The metric name of a family's `# HELP name …` header.
fn header_name(header: &str) -> Option<&str> {
    header.strip_prefix("# HELP ")?.split(' ').next()
}

/// `name{a="b"} 1` → `name{constant,a="b"} 1`; `name 1` → `name{constant} 1`.
fn with_constant_label(line: &str, constant: &str) -> String {
    match line.find(['{', ' ']) {
        Some(i) if line[i..].starts_with("{}") => {
            format!("{}{{{constant}}}{}", &line[..i], &line[i + 2..])
        }
        Some(i) if line[i..].starts_with('{') => {
            format!("{}{{{constant},{}", &line[..i], &line[i + 1..])
        }
        Some(i) => format!("{}{{{constant}}}{}", &line[..i], &line[i..]),
        None => line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::TlsFailure;

    #[test]
    fn outbound_queue_gauges_and_send_latency_render() {
        let m = Metrics::new();
        m.set_queue(7, Some(Duration::from_millis(1500)), true);
        m.send_latency(Duration::from_millis(3));
        let text = m.render();
        assert!(text.contains("hl7gw_queue_depth 7\n"), "{text}");
        assert!(
            text.contains("hl7gw_queue_oldest_unacked_milliseconds 1500\n"),
            "{text}"
        );
        assert!(text.contains("hl7gw_queue_held 1\n"), "{text}");
        assert!(text.contains("hl7gw_send_seconds_count 1\n"), "{text}");
        m.set_queue_stalled(true);
        assert!(m.render().contains("hl7gw_queue_stalled 1\n"));
        m.set_queue(0, None, false);
        m.set_queue_stalled(false);
        let text = m.render();
        assert!(text.contains("hl7gw_queue_depth 0\n") && text.contains("hl7gw_queue_held 0\n"));
    }

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new();
        m.message("ADT^A28", "AA");
        m.message("ADT^A28", "AA");
        m.message("ORM^O01", "AE");
        m.http_response(200);
        m.tls_failure(Role::Receive, TlsFailure::UnknownCa);
        m.tls_failure(Role::IntakeMllp, TlsFailure::NoClientCert);
        m.connection_rejected(Role::Receive, reject::IP);
        m.store_error();
        m.request_latency(Duration::from_millis(30));
        m.request_latency(Duration::from_secs(500));
        let text = m.render();
        assert!(text.contains("hl7gw_messages_total{type=\"ADT^A28\",ack=\"AA\"} 2\n"));
        assert!(text.contains("hl7gw_messages_total{type=\"ORM^O01\",ack=\"AE\"} 1\n"));
        assert!(text.contains("hl7gw_http_responses_total{status=\"200\"} 1\n"));
        assert!(
            text.contains(
                "hl7gw_tls_failures_total{listener=\"receive\",reason=\"unknown_ca\"} 1\n"
            )
        );
        assert!(text.contains(
            "hl7gw_tls_failures_total{listener=\"intake_mllp\",reason=\"no_client_cert\"} 1\n"
        ));
        assert!(
            text.contains("hl7gw_tls_failures_total{listener=\"inbox\",reason=\"expired\"} 0\n")
        );
        assert!(
            text.contains(
                "hl7gw_connections_rejected_total{listener=\"receive\",reason=\"ip\"} 1\n"
            )
        );
        assert!(text.contains(
            "hl7gw_connections_rejected_total{listener=\"intake\",reason=\"per_ip\"} 0\n"
        ));
        assert!(
            !text.contains("hl7gw_connections_rejected_total{listener=\"inbox\",reason=\"ip\"}"),
            "no IP allowlist on the EMS side"
        );
        assert!(text.contains("hl7gw_store_errors_total 1\n"));
        assert!(text.contains("hl7gw_request_seconds_bucket{le=\"0.025\"} 0\n"));
        assert!(text.contains("hl7gw_request_seconds_bucket{le=\"0.05\"} 1\n"));
        assert!(text.contains("hl7gw_request_seconds_bucket{le=\"120\"} 1\n"));
        assert!(text.contains("hl7gw_request_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("hl7gw_request_seconds_count 2\n"));
        assert!(text.contains("hl7gw_request_seconds_sum 500.03\n"));
        assert!(text.contains("# TYPE hl7gw_request_seconds histogram\n"));
        assert_eq!(m.messages_count("ADT^A28", "AA"), 2);
        // Every line is a comment or `name{labels} value`.
        for line in text.lines() {
            assert!(
                line.starts_with("# ") || line.starts_with("hl7gw_"),
                "{line}"
            );
        }
    }

    #[test]
    fn cancellations_and_unexpected_content_types_have_bounded_labels() {
        let m = Metrics::new();
        let text = m.render();
        assert!(text.contains("hl7gw_requests_cancelled_total{stage=\"body\"} 0\n"));
        assert!(text.contains("hl7gw_requests_cancelled_total{stage=\"processing\"} 0\n"));
        m.request_cancelled(cancelled::BODY);
        assert_eq!(m.cancelled_count(cancelled::BODY), 1);
        assert_eq!(unexpected_media_label("Text/HTML"), "text/html");
        assert_eq!(unexpected_media_label(" text/xml "), "text/xml");
        assert_eq!(unexpected_media_label(&"x".repeat(100_000)), "other");
        assert_eq!(unexpected_media_label("image/png"), "other");
        m.unexpected_content_type(unexpected_media_label("text/html"));
        m.unexpected_content_type(unexpected_media_label("image/png"));
        let text = m.render();
        assert!(text.contains("hl7gw_unexpected_content_type_total{media_type=\"text/html\"} 1\n"));
        assert!(text.contains("hl7gw_unexpected_content_type_total{media_type=\"other\"} 1\n"));
    }

    #[test]
    fn labels_are_escaped_and_capped() {
        let m = Metrics::new();
        m.message("A\"B\\C\nD", "AA");
        assert!(m.render().contains("type=\"A\\\"B\\\\C\\nD\",ack=\"AA\""));
        for i in 0..(MAX_SERIES + 10) {
            m.message(&format!("T{i}"), "AA");
        }
        assert!(m.messages_count("other", "other") >= 10);
    }

    #[test]
    fn several_registries_render_with_a_customer_label_and_one_header_per_family() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.message("ADT^A28", "AA");
        b.set_queue(3, None, true);
        let text = render_labelled("customer", &[("demo", &a), ("northwest", &b)]);
        assert_eq!(
            text.matches("# TYPE hl7gw_queue_depth gauge\n").count(),
            1,
            "{text}"
        );
        assert_eq!(text.matches("# HELP hl7gw_messages_total ").count(), 1);
        assert!(
            text.contains(
                "hl7gw_messages_total{customer=\"demo\",type=\"ADT^A28\",ack=\"AA\"} 1\n"
            )
        );
        assert!(text.contains("hl7gw_queue_depth{customer=\"demo\"} 0\nhl7gw_queue_depth{customer=\"northwest\"} 3\n"), "{text}");
        assert!(
            text.contains("hl7gw_request_seconds_bucket{customer=\"northwest\",le=\"+Inf\"} 0\n")
        );
        assert!(
            !text
                .lines()
                .any(|l| !l.starts_with('#') && !l.contains("customer=")),
            "{text}"
        );
    }
}
