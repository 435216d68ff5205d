//! What the console charts for the last hour: messages received and sent, and the ACK codes
//! answered and received, in ten-minute bars. Read from the store (not the metrics, which
//! count since the process started), so it is true across restarts and across replicas.
//!
//! One indexed query per call: inbound rows by `received_at` (migration 1's index),
//! deliveries by `delivered_at` and responses by `last_response_at` (migration 6's indexes),
//! grouped by the first 15 characters of the fixed-width time text, which is its ten-minute
//! slot (`2026-12-03T13:2`). A response is counted at its message's latest response: a
//! message refused with AR and later accepted shows as AA.

use serde::Serialize;
use time::OffsetDateTime;

use super::{Backend, BlockingStore, Store, StoreError, postgres, timestamp};

/// How many ten-minute bars [`Activity`] has: the current slot and the five before it.
pub const SLOTS: usize = 6;

/// Characters of the stored time text that name its ten-minute slot.
pub(crate) const SLOT_PREFIX: usize = 15;

/// ACK codes, enhanced-mode codes folded into the original ones (CA as AA, ...).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AckCounts {
    /// AA and CA.
    pub aa: u64,
    /// AE and CE.
    pub ae: u64,
    /// AR and CR.
    pub ar: u64,
}

impl AckCounts {
    fn add(&mut self, code: &str, n: u64) {
        match code.as_bytes().get(1) {
            Some(b'A') => self.aa += n,
            Some(b'E') => self.ae += n,
            Some(b'R') => self.ar += n,
            _ => {}
        }
    }

    fn merge(&mut self, other: &Self) {
        self.aa += other.aa;
        self.ae += other.ae;
        self.ar += other.ar;
    }
}

/// One ten-minute bar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Slot {
    /// Its start.
    #[serde(serialize_with = "timestamp::text::serialize")]
    pub start: OffsetDateTime,
    /// Messages received (every inbound row: committed, error and rejected).
    pub received: u64,
    /// Outbound messages delivered.
    pub sent: u64,
    /// The ACKs this gateway answered.
    pub answered: AckCounts,
    /// The ACKs the engine answered to outbound messages (each message's latest).
    pub responses: AckCounts,
}

/// The last hour, oldest bar first, and its totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Activity {
    /// [`SLOTS`] bars.
    pub slots: Vec<Slot>,
    /// Messages received over all bars.
    pub received: u64,
    /// Messages sent over all bars.
    pub sent: u64,
    /// ACKs answered over all bars.
    pub answered: AckCounts,
    /// ACKs received over all bars.
    pub responses: AckCounts,
}

/// One grouped row of the query: `in` (received, with the ACK answered), `sent` or `resp`
/// (a response's ACK code), the slot's prefix, a code, the count.
pub(crate) type ActivityRow = (String, String, String, i64);

/// The query both backends run, with the slot cutoff as parameter 1 (`?1` / `$1`).
pub(crate) fn query(placeholder: &str) -> String {
    let p = placeholder;
    format!(
        "SELECT 'in', substr(received_at, 1, {SLOT_PREFIX}), ack_code, COUNT(*)
           FROM inbound_messages WHERE received_at >= {p} GROUP BY 2, 3
         UNION ALL
         SELECT 'sent', substr(delivered_at, 1, {SLOT_PREFIX}), '', COUNT(*)
           FROM outbound_messages WHERE delivered_at >= {p} GROUP BY 2
         UNION ALL
         SELECT 'resp', substr(last_response_at, 1, {SLOT_PREFIX}), last_ack_code, COUNT(*)
           FROM outbound_messages
           WHERE last_response_at >= {p} AND last_ack_code IS NOT NULL GROUP BY 2, 3"
    )
}

/// The start of the ten-minute slot holding `at`.
fn slot_start(at: OffsetDateTime) -> OffsetDateTime {
    let minute = at.minute() - at.minute() % 10;
    at.replace_nanosecond(0)
        .and_then(|t| t.replace_second(0))
        .and_then(|t| t.replace_minute(minute))
        .unwrap_or(at)
}

/// The first slot's start for the bars ending with the one holding `now`.
pub(crate) fn cutoff(now: OffsetDateTime) -> OffsetDateTime {
    slot_start(now) - time::Duration::minutes(10 * (SLOTS as i64 - 1))
}

/// Builds the bars from the query's rows.
pub(crate) fn from_rows(now: OffsetDateTime, rows: Vec<ActivityRow>) -> Activity {
    let first = cutoff(now);
    let mut slots: Vec<Slot> = (0..SLOTS)
        .map(|i| Slot {
            start: first + time::Duration::minutes(10 * i as i64),
            received: 0,
            sent: 0,
            answered: AckCounts::default(),
            responses: AckCounts::default(),
        })
        .collect();
    let prefixes: Vec<String> = slots
        .iter()
        .map(|s| {
            timestamp::format(s.start)
                .chars()
                .take(SLOT_PREFIX)
                .collect()
        })
        .collect();
    for (kind, prefix, code, count) in rows {
        let n = u64::try_from(count).unwrap_or(0);
        let Some(slot) = prefixes
            .iter()
            .position(|p| *p == prefix)
            .and_then(|i| slots.get_mut(i))
        else {
            continue;
        };
        match kind.as_str() {
            "in" => {
                slot.received += n;
                slot.answered.add(&code, n);
            }
            "sent" => slot.sent += n,
            "resp" => slot.responses.add(&code, n),
            _ => {}
        }
    }
    let mut activity = Activity {
        received: slots.iter().map(|s| s.received).sum(),
        sent: slots.iter().map(|s| s.sent).sum(),
        answered: AckCounts::default(),
        responses: AckCounts::default(),
        slots,
    };
    for slot in &activity.slots {
        activity.answered.merge(&slot.answered);
        activity.responses.merge(&slot.responses);
    }
    activity
}

impl Store {
    /// The last hour's activity ([`SLOTS`] ten-minute bars up to now).
    pub async fn activity(&self) -> Result<Activity, StoreError> {
        let now = timestamp::now();
        let since = timestamp::format(cutoff(now));
        let rows = match &self.inner.backend {
            Backend::Sqlite(_) => self.run(move |s| s.activity_rows(&since)).await?,
            Backend::Postgres(pg) => pg.run(postgres::audit::activity(pg.pool(), since)).await?,
        };
        Ok(from_rows(now, rows))
    }
}

impl BlockingStore {
    fn activity_rows(&self, since: &str) -> Result<Vec<ActivityRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => db.activity_rows(since),
            Backend::Postgres(pg) => {
                pg.block(postgres::audit::activity(pg.pool(), since.to_owned()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_fall_into_their_ten_minute_bars_and_codes_fold() {
        let now = timestamp::parse("2026-12-03T13:27:05.000000Z").unwrap();
        assert_eq!(
            timestamp::format(cutoff(now)),
            "2026-12-03T12:30:00.000000Z"
        );
        let row = |k: &str, p: &str, c: &str, n: i64| (k.into(), p.into(), c.into(), n);
        let activity = from_rows(
            now,
            vec![
                row("in", "2026-12-03T13:2", "AA", 3),
                row("in", "2026-12-03T13:2", "CR", 1),
                row("in", "2026-12-03T12:3", "AE", 2),
                row("sent", "2026-12-03T13:0", "", 4),
                row("resp", "2026-12-03T13:0", "AR", 1),
                // Before the first bar: not counted.
                row("in", "2026-12-03T12:2", "AA", 9),
            ],
        );
        assert_eq!(activity.slots.len(), SLOTS);
        assert_eq!((activity.received, activity.sent), (6, 4));
        assert_eq!(
            activity.answered,
            AckCounts {
                aa: 3,
                ae: 2,
                ar: 1
            }
        );
        assert_eq!(activity.responses.ar, 1);
        assert_eq!(activity.slots[5].received, 4);
        assert_eq!(activity.slots[0].received, 2);
        assert_eq!(activity.slots[3].sent, 4);
    }
}
