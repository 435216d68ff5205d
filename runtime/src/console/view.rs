//! What the console shows, built from one [`ConsolePart`] per customer × environment: the
//! same structures feed the HTML templates and the JSON the page polls, so the first render
//! and every update agree. Metadata only: no message bytes, no record fields.

use serde::Serialize;
use time::OffsetDateTime;

use super::ConsolePart;
use crate::health::EXPIRY_WARNING_DAYS;
use crate::queue::{ListFilter, MessageInfo, StreamState, StreamStatus};
use crate::store::activity::{AckCounts, Activity, SLOTS};
use crate::store::audit::AuditEntry;
use crate::store::timestamp;

/// The height of a chart's drawing area, in SVG units.
const CHART_HEIGHT: u64 = 40;

/// How many messages the stream page lists (the newest; the stream's head is added when
/// older).
pub const STREAM_PAGE_MESSAGES: u32 = 200;

/// How many audit rows the stream page lists.
pub const STREAM_PAGE_AUDIT: u32 = 50;

/// The overview: every part.
#[derive(Debug, Serialize)]
pub struct Overview {
    /// When this was read (UTC, to the second).
    pub generated_at: String,
    /// One per customer × environment.
    pub parts: Vec<PartView>,
}

/// One bar of a chart, in SVG units (the chart is `SLOTS * 20` wide, 40 high).
#[derive(Debug, Serialize)]
pub struct Bar {
    /// Left edge.
    pub x: u64,
    /// Top edge.
    pub y: u64,
    /// Height.
    pub h: u64,
    /// CSS class: `received`, `sent`, `aa`, `ae`, `ar`.
    pub class: &'static str,
    /// Tooltip.
    pub title: String,
}

/// A certificate and the days it has left.
#[derive(Debug, Serialize)]
pub struct CertificateView {
    /// Which file and whose certificate.
    pub subject: String,
    /// Days until it expires (negative: expired).
    pub days: i64,
    /// Within the health check's warning window.
    pub warn: bool,
}

/// One customer × environment.
#[derive(Debug, Serialize)]
pub struct PartView {
    /// `code/env`, the part's address in links and the page's `data-part`.
    pub key: String,
    /// The customer code.
    pub customer_code: String,
    /// The customer's name.
    pub customer_name: String,
    /// `test` or `prod`.
    pub env: String,
    /// Messages received in the last hour.
    pub received: u64,
    /// Messages sent (delivered) in the last hour.
    pub sent: u64,
    /// ACKs answered in the last hour.
    pub answered: AckCounts,
    /// ACKs received in the last hour.
    pub responses: AckCounts,
    /// Received and sent, per ten minutes.
    pub traffic: Vec<Bar>,
    /// ACK codes answered and received.
    pub acks: Vec<Bar>,
    /// The fewest days any certificate has left.
    pub certificate_days: Option<i64>,
    /// Within the warning window.
    pub certificate_warn: bool,
    /// Every certificate, soonest first.
    pub certificates: Vec<CertificateView>,
    /// Every stream.
    pub streams: Vec<StreamView>,
    /// Connections open on the receiver now.
    pub open_connections: i64,
    /// What could not be read from the store, if anything.
    pub error: Option<String>,
}

/// One stream as the overview shows it.
#[derive(Debug, Serialize)]
pub struct StreamView {
    /// The destination.
    pub destination: String,
    /// Its page.
    pub href: String,
    /// `idle`, `sending`, `backing off`, `held`.
    pub state: &'static str,
    /// CSS class: `idle`, `sending`, `retrying`, `held`.
    pub state_class: &'static str,
    /// Why held or backing off (or stalled).
    pub reason: String,
    /// Since when (UTC, to the second).
    pub since: String,
    /// Pending messages.
    pub depth: u64,
    /// The oldest unacknowledged message's age (`3m 12s`).
    pub oldest_age: String,
    /// The latest ACK: code and time, or the latest delivery.
    pub last_ack: String,
}

/// The stream page.
#[derive(Debug, Serialize)]
pub struct StreamPage {
    /// The part's key, code, name and environment.
    pub key: String,
    /// The customer code.
    pub customer_code: String,
    /// The customer's name.
    pub customer_name: String,
    /// `test` or `prod`.
    pub env: String,
    /// The stream.
    pub stream: StreamView,
    /// Its messages, newest first.
    pub messages: Vec<MessageRow>,
    /// Its audit trail, newest first.
    pub audit: Vec<AuditRow>,
}

/// One message on the stream page: metadata only.
#[derive(Debug, Serialize)]
pub struct MessageRow {
    /// Queue id.
    pub id: i64,
    /// When queued.
    pub time: String,
    /// MSH-9.
    pub message_type: String,
    /// MSH-10.
    pub control_id: String,
    /// Its state.
    pub state: &'static str,
    /// Sends so far.
    pub attempts: u32,
    /// The latest response.
    pub last_response: String,
    /// Why held or skipped.
    pub note: String,
    /// Pending: retry and skip apply.
    pub pending: bool,
}

/// One audit row.
#[derive(Debug, Serialize)]
pub struct AuditRow {
    /// When.
    pub at: String,
    /// What.
    pub action: &'static str,
    /// Who.
    pub operator: String,
    /// From where.
    pub peer: String,
    /// Which message.
    pub message_id: i64,
    /// Its MSH-10.
    pub control_id: String,
    /// Why.
    pub reason: String,
}

/// UTC to the second: `2026-12-03 13:02:11`.
pub fn when(at: OffsetDateTime) -> String {
    let text = timestamp::format(at);
    text.get(..19).unwrap_or(&text).replace('T', " ")
}

/// `3m 12s`, `2h 5m`, `4d 1h`.
pub fn age(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

fn scaled(n: u64, max: u64) -> u64 {
    if max == 0 || n == 0 {
        return 0;
    }
    (n * (CHART_HEIGHT - 2) / max).max(1)
}

fn bar(x: u64, n: u64, max: u64, class: &'static str, title: String) -> Bar {
    let h = scaled(n, max);
    Bar {
        x,
        y: CHART_HEIGHT - h,
        h,
        class,
        title,
    }
}

fn traffic_bars(activity: &Activity) -> Vec<Bar> {
    let max = activity
        .slots
        .iter()
        .map(|s| s.received.max(s.sent))
        .max()
        .unwrap_or(0);
    let mut bars = Vec::with_capacity(SLOTS * 2);
    for (i, slot) in (0u64..).zip(&activity.slots) {
        let from = when(slot.start);
        let from = from.get(11..16).unwrap_or(&from).to_owned();
        bars.push(bar(
            i * 20 + 2,
            slot.received,
            max,
            "received",
            format!("{from}: {} received", slot.received),
        ));
        bars.push(bar(
            i * 20 + 10,
            slot.sent,
            max,
            "sent",
            format!("{from}: {} sent", slot.sent),
        ));
    }
    bars
}

fn ack_bars(answered: AckCounts, responses: AckCounts) -> Vec<Bar> {
    let counts = |a: AckCounts| [a.aa, a.ae, a.ar];
    let (answered, responses) = (counts(answered), counts(responses));
    let max = answered
        .iter()
        .chain(&responses)
        .copied()
        .max()
        .unwrap_or(0);
    let classes = ["aa", "ae", "ar"];
    let names = ["AA", "AE", "AR"];
    let mut bars = Vec::with_capacity(6);
    for (group, (counts, side)) in [(answered, "answered"), (responses, "received")]
        .into_iter()
        .enumerate()
    {
        for (i, n) in counts.into_iter().enumerate() {
            bars.push(bar(
                group as u64 * 64 + i as u64 * 18 + 4,
                n,
                max,
                classes[i],
                format!("{} {side}: {n}", names[i]),
            ));
        }
    }
    bars
}

/// A stream's row, as the overview and its page show it.
pub fn stream_view(key: &str, status: &StreamStatus) -> StreamView {
    let (state, state_class) = match status.state {
        StreamState::Idle => ("idle", "idle"),
        StreamState::Sending => ("sending", "sending"),
        StreamState::Retrying => ("backing off", "retrying"),
        StreamState::Held => ("held", "held"),
    };
    let mut reason = status.reason.clone().unwrap_or_default();
    let mut since = status.since;
    if let Some(stall) = &status.stalled {
        reason = format!("stalled: {}", stall.reason);
        since = since.or(Some(stall.since));
    }
    let last_ack = match (&status.last_response, status.last_delivered_at) {
        (Some(r), _) => format!(
            "{} {}",
            r.ack_code.map_or_else(
                || r.failure.map_or("accepted", |f| f.as_str()).to_owned(),
                |c| c.as_str().to_owned()
            ),
            when(r.at)
        ),
        (None, Some(at)) => format!("AA {}", when(at)),
        (None, None) => String::new(),
    };
    StreamView {
        destination: status.destination.clone(),
        href: format!("/console/{key}/{}", status.destination),
        state,
        state_class,
        reason,
        since: since.map(when).unwrap_or_default(),
        depth: status.depth,
        oldest_age: status
            .oldest_unacknowledged_age_secs
            .map(age)
            .unwrap_or_default(),
        last_ack,
    }
}

fn message_row(m: &MessageInfo) -> MessageRow {
    let note = match m.state.as_str() {
        "held" => m.held_reason.clone().unwrap_or_default(),
        "skipped" => m.skip_reason.clone().unwrap_or_default(),
        _ => String::new(),
    };
    MessageRow {
        id: m.id,
        time: when(m.enqueued_at),
        message_type: m.message_type.clone(),
        control_id: m.control_id.clone(),
        state: m.state.as_str(),
        attempts: m.attempts,
        last_response: m
            .last_response
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        note,
        pending: m.state.is_pending(),
    }
}

fn audit_row(e: &AuditEntry) -> AuditRow {
    AuditRow {
        at: when(e.at),
        action: e.action.as_str(),
        operator: e.operator.clone(),
        peer: e.peer.clone(),
        message_id: e.message_id,
        control_id: e.control_id.clone(),
        reason: e.reason.clone(),
    }
}

impl ConsolePart {
    /// `code/env`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.customer_code, self.env)
    }

    /// This part as the overview shows it. A store that cannot be read shows as the
    /// part's `error`; the page still renders.
    pub async fn view(&self, now: OffsetDateTime) -> PartView {
        let key = self.key();
        let mut errors = Vec::new();
        let activity = match self.store.activity().await {
            Ok(a) => Some(a),
            Err(e) => {
                errors.push(format!("last hour: {e}"));
                None
            }
        };
        let streams = match self.queue.status_all().await {
            Ok(all) => all.iter().map(|s| stream_view(&key, s)).collect(),
            Err(e) => {
                errors.push(format!("streams: {e}"));
                Vec::new()
            }
        };
        let mut certificates: Vec<CertificateView> = {
            let list = self
                .certificates
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            list.iter()
                .map(|c| {
                    let days = (c.not_after - now).whole_days();
                    CertificateView {
                        subject: c.subject.clone(),
                        days,
                        warn: days < EXPIRY_WARNING_DAYS,
                    }
                })
                .collect()
        };
        certificates.sort_by_key(|c| c.days);
        let certificate_days = certificates.first().map(|c| c.days);
        let (answered, responses) = activity
            .as_ref()
            .map_or_else(Default::default, |a| (a.answered, a.responses));
        PartView {
            customer_code: self.customer_code.clone(),
            customer_name: self.customer_name.clone(),
            env: self.env.clone(),
            received: activity.as_ref().map_or(0, |a| a.received),
            sent: activity.as_ref().map_or(0, |a| a.sent),
            answered,
            responses,
            traffic: activity.as_ref().map(traffic_bars).unwrap_or_default(),
            acks: ack_bars(answered, responses),
            certificate_days,
            certificate_warn: certificates.iter().any(|c| c.warn),
            certificates,
            streams,
            open_connections: self.metrics.open_connections(),
            error: (!errors.is_empty()).then(|| errors.join("; ")),
            key,
        }
    }

    /// The page of stream `destination`: `Ok(None)` when the store has no such stream.
    pub async fn stream_page(
        &self,
        destination: &str,
    ) -> Result<Option<StreamPage>, crate::queue::QueueError> {
        let destinations = self.store.queue_destinations().await?;
        if !destinations.iter().any(|d| d == destination) {
            return Ok(None);
        }
        let status = self.queue.status(destination).await?;
        let mut messages = self
            .queue
            .list(ListFilter {
                destination: Some(destination.to_owned()),
                limit: STREAM_PAGE_MESSAGES,
                newest_first: true,
                ..ListFilter::default()
            })
            .await?;
        // The head (the message holding or being sent) is always listed, at the end where
        // it belongs, however many newer messages wait behind it.
        if let Some(head) = &status.head {
            if !messages.iter().any(|m| m.id == head.id) {
                messages.push(head.clone());
            }
        }
        let audit = self
            .store
            .audit_list(Some(destination.to_owned()), STREAM_PAGE_AUDIT)
            .await?;
        let key = self.key();
        Ok(Some(StreamPage {
            stream: stream_view(&key, &status),
            messages: messages.iter().map(message_row).collect(),
            audit: audit.iter().map(audit_row).collect(),
            customer_code: self.customer_code.clone(),
            customer_name: self.customer_name.clone(),
            env: self.env.clone(),
            key,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_bars_read_well() {
        assert_eq!(age(42), "42s");
        assert_eq!(age(192), "3m 12s");
        assert_eq!(age(7500), "2h 5m");
        assert_eq!(age(90_000), "1d 1h");
        assert_eq!(scaled(0, 10), 0);
        assert_eq!(scaled(1, 1000), 1, "a non-zero count is visible");
        assert_eq!(scaled(10, 10), CHART_HEIGHT - 2);
        let bars = ack_bars(
            AckCounts {
                aa: 3,
                ae: 0,
                ar: 1,
            },
            AckCounts {
                aa: 0,
                ae: 0,
                ar: 2,
            },
        );
        assert_eq!(bars.len(), 6);
        assert_eq!(bars[0].h, CHART_HEIGHT - 2);
        assert_eq!(bars[1].h, 0);
        assert_eq!(bars[0].y + bars[0].h, CHART_HEIGHT);
    }
}
