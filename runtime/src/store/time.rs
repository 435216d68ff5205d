//! Timestamps as the store writes them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::hl7::timestamp::civil_from_days;

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC, RFC 3339, always microseconds): fixed width, so
/// comparing the text compares the instants. Instants before 1970 clamp to the epoch.
pub fn format_rfc3339(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        since.subsec_micros()
    )
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
    }
}
