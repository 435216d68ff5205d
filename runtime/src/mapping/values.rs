//! Typed values read from HL7: dates and times with their precision, NHS numbers with their
//! check digit, and decimal numbers kept as written.

use std::fmt;

use serde::{Serialize, Serializer};

/// A date with HL7's precision: year, year-month, or full date (HL7 DT, or the date part of
/// a DTM/TS). Rendered as ISO 8601: `1970`, `1970-01`, `1970-01-31`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HlDate {
    /// Year.
    pub year: u16,
    /// Month 1–12, when sent.
    pub month: Option<u8>,
    /// Day of the month, when sent.
    pub day: Option<u8>,
}

/// A date and time with HL7's precisions and an optional UTC offset (HL7 DTM/TS).
/// Rendered as ISO 8601 to the precision sent: `2026-01-01T12:05`, `…T12:05:30.25+01:00`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HlDateTime {
    /// The date part.
    pub date: HlDate,
    /// Hour 0–23, when sent.
    pub hour: Option<u8>,
    /// Minute, when sent.
    pub minute: Option<u8>,
    /// Second, when sent.
    pub second: Option<u8>,
    /// Fraction of a second as the digits sent (1–4 digits), when sent.
    pub fraction: Option<String>,
    /// Offset from UTC in minutes, when sent (`+0100` → 60).
    pub offset_minutes: Option<i16>,
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
            if leap { 29 } else { 28 }
        }
    }
}

fn digits(text: &str, range: std::ops::Range<usize>) -> Option<u16> {
    let part = text.get(range)?;
    if part.bytes().all(|b| b.is_ascii_digit()) {
        part.parse().ok()
    } else {
        None
    }
}

impl HlDate {
    /// Parses `YYYY`, `YYYYMM` or `YYYYMMDD`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if !matches!(text.len(), 4 | 6 | 8) {
            return Err(format!(
                "a date is YYYY, YYYYMM or YYYYMMDD; this value has {} characters",
                text.len()
            ));
        }
        let year = digits(text, 0..4).ok_or("the year is not 4 digits")?;
        let month = match text.len() {
            4 => None,
            _ => {
                let m = digits(text, 4..6).ok_or("the month is not 2 digits")?;
                let m = u8::try_from(m).ok().filter(|m| (1..=12).contains(m));
                Some(m.ok_or("the month is not 01 to 12")?)
            }
        };
        let day = match (text.len(), month) {
            (8, Some(m)) => {
                let d = digits(text, 6..8).ok_or("the day is not 2 digits")?;
                let d = u8::try_from(d)
                    .ok()
                    .filter(|d| *d >= 1 && *d <= days_in_month(year, m));
                Some(d.ok_or("the day does not exist in that month")?)
            }
            _ => None,
        };
        Ok(Self { year, month, day })
    }
}

impl fmt::Display for HlDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}", self.year)?;
        if let Some(m) = self.month {
            write!(f, "-{m:02}")?;
        }
        if let Some(d) = self.day {
            write!(f, "-{d:02}")?;
        }
        Ok(())
    }
}

impl HlDateTime {
    /// Parses `YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (body, offset) = match text.find(['+', '-']) {
            Some(at) => (&text[..at], Some(&text[at..])),
            None => (text, None),
        };
        let (main, fraction) = match body.split_once('.') {
            Some((m, f)) => (m, Some(f)),
            None => (body, None),
        };
        if !matches!(main.len(), 4 | 6 | 8 | 10 | 12 | 14) {
            return Err(
                "a date/time is YYYY[MM[DD[HH[MM[SS[.SSSS]]]]]] with an optional +/-ZZZZ offset"
                    .into(),
            );
        }
        let date = HlDate::parse(&main[..main.len().min(8)])?;
        let part =
            |range: std::ops::Range<usize>, max: u16, what: &str| -> Result<Option<u8>, String> {
                if main.len() < range.end {
                    return Ok(None);
                }
                let v = digits(main, range).ok_or(format!("the {what} is not 2 digits"))?;
                if v > max {
                    return Err(format!("the {what} is out of range"));
                }
                Ok(u8::try_from(v).ok())
            };
        let hour = part(8..10, 23, "hour")?;
        let minute = part(10..12, 59, "minute")?;
        let second = part(12..14, 59, "second")?;
        let fraction = match fraction {
            None => None,
            Some(f)
                if main.len() == 14
                    && (1..=4).contains(&f.len())
                    && f.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Some(f.to_string())
            }
            Some(_) => {
                return Err("a fraction of a second needs full seconds and 1 to 4 digits".into());
            }
        };
        let offset_minutes = match offset {
            None => None,
            Some(o) => {
                let sign: i16 = if o.starts_with('-') { -1 } else { 1 };
                let hh = digits(o, 1..3).filter(|h| *h <= 14);
                let mm = digits(o, 3..5).filter(|m| *m <= 59);
                match (hh, mm, o.len()) {
                    (Some(h), Some(m), 5) => {
                        let total = i16::try_from(h * 60 + m).unwrap_or(0);
                        Some(sign * total)
                    }
                    _ => return Err("the UTC offset is not +HHMM or -HHMM".into()),
                }
            }
        };
        Ok(Self {
            date,
            hour,
            minute,
            second,
            fraction,
            offset_minutes,
        })
    }
}

impl fmt::Display for HlDateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.date)?;
        if let Some(h) = self.hour {
            write!(f, "T{h:02}")?;
            write!(f, ":{:02}", self.minute.unwrap_or(0))?;
            if let Some(s) = self.second {
                write!(f, ":{s:02}")?;
                if let Some(frac) = &self.fraction {
                    write!(f, ".{frac}")?;
                }
            }
        }
        if let Some(o) = self.offset_minutes {
            let sign = if o < 0 { '-' } else { '+' };
            write!(f, "{sign}{:02}:{:02}", o.abs() / 60, o.abs() % 60)?;
        }
        Ok(())
    }
}

/// A valid NHS number: 10 digits whose last is the modulus-11 check digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NhsNumber(String);

impl NhsNumber {
    /// Accepts `9449305552` or the printed form `944 930 5552`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let digits: String = match text.len() {
            10 => text.to_string(),
            12 if text.as_bytes()[3] == b' ' && text.as_bytes()[7] == b' ' => text.replace(' ', ""),
            _ => return Err("an NHS number is 10 digits".into()),
        };
        if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err("an NHS number is 10 digits".into());
        }
        let d: Vec<u32> = digits.bytes().map(|b| u32::from(b - b'0')).collect();
        let sum: u32 = d[..9].iter().zip((2..=10).rev()).map(|(x, w)| x * w).sum();
        let check = match 11 - sum % 11 {
            11 => 0,
            10 => return Err("not a valid NHS number (no check digit can make it valid)".into()),
            c => c,
        };
        if check != d[9] {
            return Err(
                "not a valid NHS number (the modulus-11 check digit does not match)".into(),
            );
        }
        Ok(Self(digits))
    }

    /// The 10 digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A decimal number kept exactly as sent (HL7 NM: optional sign, digits, optional point).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HlNumber(String);

impl HlNumber {
    /// Parses an HL7 NM value.
    pub fn parse(text: &str) -> Result<Self, String> {
        let body = text.strip_prefix(['+', '-']).unwrap_or(text);
        let mut dots = 0;
        let mut digit = false;
        for b in body.bytes() {
            match b {
                b'0'..=b'9' => digit = true,
                b'.' => dots += 1,
                _ => {
                    return Err("a number is digits with an optional sign and decimal point".into());
                }
            }
        }
        if !digit || dots > 1 {
            return Err("a number is digits with an optional sign and decimal point".into());
        }
        Ok(Self(text.to_string()))
    }

    /// The number as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// As a floating-point value (may round).
    pub fn to_f64(&self) -> f64 {
        self.0.parse().unwrap_or(f64::NAN)
    }
}

impl fmt::Display for HlNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! serialize_as_text {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    )*};
}
serialize_as_text!(HlDate, HlDateTime, NhsNumber, HlNumber);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_keep_their_precision() {
        assert_eq!(HlDate::parse("1970").unwrap().to_string(), "1970");
        assert_eq!(HlDate::parse("197001").unwrap().to_string(), "1970-01");
        assert_eq!(HlDate::parse("20000229").unwrap().to_string(), "2000-02-29");
        for bad in ["19000229", "19701301", "1970010", "196203520", "abcd", ""] {
            assert!(HlDate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn datetimes_keep_precision_and_offset() {
        let cases = [
            ("2026010112", "2026-01-01T12:00"),
            ("202601011205", "2026-01-01T12:05"),
            ("20260101120530.25+0100", "2026-01-01T12:05:30.25+01:00"),
            ("20260101-0330", "2026-01-01-03:30"),
            ("20260101", "2026-01-01"),
        ];
        for (text, iso) in cases {
            assert_eq!(HlDateTime::parse(text).unwrap().to_string(), iso, "{text}");
        }
        for bad in [
            "202601011",
            "20260101246000",
            "20260101120000+1",
            "2026010112.5",
            "20260101120000.12345",
        ] {
            assert!(HlDateTime::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nhs_numbers_need_their_check_digit() {
        assert_eq!(
            NhsNumber::parse("9449305552").unwrap().as_str(),
            "9449305552"
        );
        assert_eq!(
            NhsNumber::parse("944 930 5552").unwrap().as_str(),
            "9449305552"
        );
        assert!(NhsNumber::parse("9449305553").is_err());
        assert!(NhsNumber::parse("94493055").is_err());
        assert!(NhsNumber::parse("944-930-5552").is_err());
        assert!(NhsNumber::parse("0123456789").is_ok());
    }

    #[test]
    fn numbers_are_kept_as_sent() {
        assert_eq!(HlNumber::parse("-12.50").unwrap().as_str(), "-12.50");
        for bad in ["", "1.2.3", "1e5", "+", "."] {
            assert!(HlNumber::parse(bad).is_err(), "{bad}");
        }
    }
}
