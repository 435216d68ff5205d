//! Instants as the store keeps them.
//!
//! In the API an instant is a [`time::OffsetDateTime`] in UTC, cut to microseconds (what the
//! store keeps, so a value read back equals the value written). On disk, in every backend,
//! it is UTC RFC 3339 text with exactly six fractional digits and a `Z`
//! (`2024-05-01T12:00:00.000000Z`): fixed width, so comparing the text compares the instants
//! (retention and the queue compare and sort on it), and files written before the `time`
//! crate was used read back unchanged. JSON output (inbox API, `queue` commands) uses the
//! same text.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

const FORMAT: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// `at` cut to whole microseconds, in UTC.
fn to_micros(at: OffsetDateTime) -> OffsetDateTime {
    let at = at.to_offset(UtcOffset::UTC);
    let micros = at.microsecond();
    at.replace_microsecond(micros).unwrap_or(at)
}

/// Now, in UTC, to the microsecond.
pub fn now() -> OffsetDateTime {
    to_micros(OffsetDateTime::now_utc())
}

/// A system time as the store keeps it; instants before 1970 clamp to the epoch (the store
/// never sees them: they come from the clock).
pub fn from_system(at: SystemTime) -> OffsetDateTime {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let at = OffsetDateTime::UNIX_EPOCH
        .checked_add(time::Duration::try_from(since).unwrap_or(time::Duration::ZERO))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    to_micros(at)
}

/// The stored text of an instant: `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub fn format(at: OffsetDateTime) -> String {
    // Formatting a complete UTC date-time with this description cannot fail for the years
    // the clock produces (0000-9999); an empty string would sort first and stand out.
    to_micros(at).format(FORMAT).unwrap_or_default()
}

/// [`format()`] of a system time; see [`from_system`].
pub fn format_rfc3339(at: SystemTime) -> String {
    format(from_system(at))
}

/// Reads [`format()`]'s text back; `None` for anything else.
pub fn parse(text: &str) -> Option<OffsetDateTime> {
    PrimitiveDateTime::parse(text, FORMAT)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

/// Serde for instants in the stored text format (`#[serde(serialize_with = ...)]`).
pub(crate) mod text {
    use serde::Serializer;
    use time::OffsetDateTime;

    /// One instant.
    pub(crate) fn serialize<S: Serializer>(at: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(*at))
    }

    /// An optional instant (`null` when absent).
    pub(crate) fn option<S: Serializer>(
        at: &Option<OffsetDateTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => s.serialize_some(&super::format(*at)),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let t = UNIX_EPOCH + Duration::from_micros((951_782_400 + 3_723) * 1_000_000 + 42);
        assert_eq!(format_rfc3339(t), "2000-02-29T01:02:03.000042Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_798_761_599);
        assert_eq!(format_rfc3339(t), "2026-12-31T23:59:59.000000Z");
        // Nanoseconds are cut, not rounded: the text never moves into the next microsecond.
        let t = UNIX_EPOCH + Duration::from_nanos(999_999_999);
        assert_eq!(format_rfc3339(t), "1970-01-01T00:00:00.999999Z");
        assert_eq!(
            format_rfc3339(UNIX_EPOCH - Duration::from_secs(1)),
            "1970-01-01T00:00:00.000000Z"
        );
    }

    #[test]
    fn times_read_back() {
        for t in [
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::from_micros(951_782_403_000_042),
            UNIX_EPOCH + Duration::from_secs(1_798_761_599),
        ] {
            let at = from_system(t);
            assert_eq!(parse(&format(at)), Some(at));
            assert_eq!(SystemTime::from(at), t);
        }
        let now = now();
        assert_eq!(parse(&format(now)), Some(now));
        assert_eq!(parse("2024-13-01T00:00:00.000000Z"), None);
        assert_eq!(parse("2024-05-01T12:00:00Z"), None);
        assert_eq!(parse("garbage"), None);
    }

    #[test]
    fn text_order_is_time_order() {
        let a = from_system(UNIX_EPOCH + Duration::from_micros(1_700_000_000_000_001));
        let b = a + time::Duration::microseconds(1);
        let c = b + time::Duration::days(400);
        assert!(format(a) < format(b) && format(b) < format(c));
    }
}
