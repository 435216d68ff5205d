//! How long the harness-free benchmarks (`tests/benches/`) run, from their command line, and
//! the store's timestamps they measure between.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Microseconds since the Unix epoch of a store timestamp (`YYYY-MM-DDTHH:MM:SS.ffffffZ`,
/// RFC 3339); `None` when it is not one.
pub fn unix_micros(text: &str) -> Option<i64> {
    let at = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000).ok()
}

/// The run a benchmark was started for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `cargo test --all-targets`: a smoke run.
    Test,
    /// `--quick` or `HL7GW_BENCH_QUICK=1`.
    Quick,
    /// `cargo bench`.
    Full,
}

impl Mode {
    /// From the process's arguments (cargo passes `--bench` under `cargo bench`) and
    /// `HL7GW_BENCH_QUICK`.
    pub fn from_args() -> Self {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let quick_env = std::env::var("HL7GW_BENCH_QUICK").ok();
        Self::from(&args, quick_env.as_deref())
    }

    fn from(args: &[String], quick_env: Option<&str>) -> Self {
        let quick = args.iter().any(|a| a == "--quick")
            || quick_env.is_some_and(|v| !v.is_empty() && v != "0");
        if quick {
            Self::Quick
        } else if args.iter().any(|a| a == "--bench") {
            Self::Full
        } else {
            Self::Test
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Mode, unix_micros};

    #[test]
    fn store_timestamps_read_as_microseconds() {
        assert_eq!(unix_micros("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            unix_micros("2026-11-27T09:30:00.000123Z"),
            Some(1_795_771_800_000_123)
        );
        assert_eq!(
            unix_micros("2026-11-27T09:30:00.5Z"),
            Some(1_795_771_800_500_000)
        );
        assert_eq!(unix_micros("yesterday"), None);
    }

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn the_command_line_picks_the_mode() {
        assert_eq!(Mode::from(&args(&[]), None), Mode::Test);
        assert_eq!(Mode::from(&args(&["--bench"]), None), Mode::Full);
        assert_eq!(
            Mode::from(&args(&["--bench", "--quick"]), None),
            Mode::Quick
        );
        assert_eq!(Mode::from(&args(&["--bench"]), Some("1")), Mode::Quick);
        assert_eq!(Mode::from(&args(&["--bench"]), Some("0")), Mode::Full);
        assert_eq!(Mode::from(&args(&["--bench"]), Some("")), Mode::Full);
    }
}
