//! HL7 timestamps (DTM) for headers the runtime writes, such as an ACK's MSH-7.
//!
//! Written from the system clock in UTC with an explicit `+0000` offset, so a reader never
//! has to guess the sender's time zone.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

const DTM: &[BorrowedFormatItem<'static>] =
    format_description!("[year][month][day][hour][minute][second]+0000");

/// `YYYYMMDDHHMMSS+0000` for the given instant (instants before 1970 clamp to the epoch).
pub fn format_utc(at: SystemTime) -> String {
    let secs = at
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let at = i64::try_from(secs)
        .ok()
        .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    // A complete UTC date-time always formats; the years the clock gives have four digits.
    at.format(DTM).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_utc(UNIX_EPOCH), "19700101000000+0000");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3_723); // 2000-02-29 01:02:03
        assert_eq!(format_utc(t), "20000229010203+0000");
        let t = UNIX_EPOCH + Duration::from_secs(1_798_761_599); // 2026-12-31 23:59:59
        assert_eq!(format_utc(t), "20261231235959+0000");
    }
}
