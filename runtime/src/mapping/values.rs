//! Typed values read from HL7: dates and times with their precision, NHS numbers with their
//! check digit, and decimal numbers kept as written.
//!
//! As JSON each is a string: dates and times in ISO 8601 (`1970-01-31`,
//! `2026-01-01T12:05:30.25+01:00`), NHS numbers as 10 digits, numbers as sent. Each
//! deserializes from the string it serializes to, checked as when read from HL7.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};
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

/// Why a text is not a value of its type. The texts name the expected form and never echo
/// the value (it may be patient data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// An HL7 date of another length.
    #[error("a date is YYYY, YYYYMM or YYYYMMDD; this value has {0} characters")]
    DateLength(usize),
    /// A year that is not 4 digits.
    #[error("the year is not 4 digits")]
    YearDigits,
    /// A month that is not 2 digits.
    #[error("the month is not 2 digits")]
    MonthDigits,
    /// A month outside 01–12.
    #[error("the month is not 01 to 12")]
    MonthRange,
    /// A day that is not 2 digits.
    #[error("the day is not 2 digits")]
    DayDigits,
    /// A day the month does not have.
    #[error("the day does not exist in that month")]
    NoSuchDay,
    /// Not an ISO 8601 date.
    #[error("a date is YYYY, YYYY-MM or YYYY-MM-DD")]
    IsoDateForm,
    /// Not an HL7 date/time.
    #[error("a date/time is YYYY[MM[DD[HH[MM[SS[.SSSS]]]]]] with an optional +/-ZZZZ offset")]
    DateTimeForm,
    /// An hour, minute or second that is not 2 digits.
    #[error("the {0} is not 2 digits")]
    TimeDigits(&'static str),
    /// An hour, minute or second out of range.
    #[error("the {0} is out of range")]
    TimeRange(&'static str),
    /// A fraction without full seconds, or of another length.
    #[error("a fraction of a second needs full seconds and 1 to 4 digits")]
    Fraction,
    /// A UTC offset not `+HHMM`/`-HHMM` (at most 14 hours).
    #[error("the UTC offset is not +HHMM or -HHMM")]
    Offset,
    /// Not an ISO 8601 date and time.
    #[error(
        "a date and time is YYYY-MM-DD[Thh:mm[:ss[.s…]]] or a shorter date, with an optional +hh:mm, -hh:mm or Z offset"
    )]
    IsoDateTimeForm,
    /// A time after a date without its day.
    #[error("a time needs a full date before it (YYYY-MM-DDThh:mm)")]
    TimeWithoutDay,
    /// Not 10 digits.
    #[error("an NHS number is 10 digits")]
    NhsDigits,
    /// Digits no check digit can make valid.
    #[error("not a valid NHS number (no check digit can make it valid)")]
    NhsNoCheckDigit,
    /// The wrong check digit.
    #[error("not a valid NHS number (the modulus-11 check digit does not match)")]
    NhsCheckDigit,
    /// Not an HL7 NM.
    #[error("a number is digits with an optional sign and decimal point")]
    Number,
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
    /// Parses `YYYY`, `YYYYMM` or `YYYYMMDD`; the calendar (months, leap years) is the `time`
    /// crate's.
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        if !matches!(text.len(), 4 | 6 | 8) {
            return Err(ValueError::DateLength(text.len()));
        }
        let year = digits(text, 0..4).ok_or(ValueError::YearDigits)?;
        let month = match text.len() {
            4 => None,
            _ => {
                let m = digits(text, 4..6).ok_or(ValueError::MonthDigits)?;
                let m = u8::try_from(m).map_err(|_| ValueError::MonthRange)?;
                Some(time::Month::try_from(m).map_err(|_| ValueError::MonthRange)?)
            }
        };
        let day = match (text.len(), month) {
            (8, Some(m)) => {
                let d = digits(text, 6..8).ok_or(ValueError::DayDigits)?;
                let d = u8::try_from(d).map_err(|_| ValueError::NoSuchDay)?;
                time::Date::from_calendar_date(i32::from(year), m, d)
                    .map_err(|_| ValueError::NoSuchDay)?;
                Some(d)
            }
            _ => None,
        };
        Ok(Self {
            year,
            month: month.map(u8::from),
            day,
        })
    }

    /// Parses the ISO 8601 forms [`Display`](fmt::Display) writes: `YYYY`, `YYYY-MM` or
    /// `YYYY-MM-DD`.
    pub fn parse_iso(text: &str) -> Result<Self, ValueError> {
        let parts: Vec<&str> = text.split('-').collect();
        let lengths: Vec<usize> = parts.iter().map(|p| p.len()).collect();
        if !matches!(lengths.as_slice(), [4] | [4, 2] | [4, 2, 2])
            || !parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(ValueError::IsoDateForm);
        }
        Self::parse(&parts.concat())
    }

    /// The calendar date, when the day is known.
    pub fn to_date(&self) -> Option<time::Date> {
        let month = time::Month::try_from(self.month?).ok()?;
        time::Date::from_calendar_date(i32::from(self.year), month, self.day?).ok()
    }

    /// The HL7 text (DT): `YYYY[MM[DD]]`, to the precision held.
    pub fn to_hl7(&self) -> String {
        let mut text = format!("{:04}", self.year);
        if let Some(month) = self.month {
            text.push_str(&format!("{month:02}"));
            if let Some(day) = self.day {
                text.push_str(&format!("{day:02}"));
            }
        }
        text
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
    /// Parses `YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]`; the clock and the offset are
    /// checked with the `time` crate's `Time` and `UtcOffset`.
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        let (body, offset) = match text.find(['+', '-']) {
            Some(at) => (&text[..at], Some(&text[at..])),
            None => (text, None),
        };
        let (main, fraction) = match body.split_once('.') {
            Some((m, f)) => (m, Some(f)),
            None => (body, None),
        };
        if !matches!(main.len(), 4 | 6 | 8 | 10 | 12 | 14) {
            return Err(ValueError::DateTimeForm);
        }
        let date = HlDate::parse(&main[..main.len().min(8)])?;
        let part = |range: std::ops::Range<usize>, what: &'static str| {
            if main.len() < range.end {
                return Ok(None);
            }
            let v = digits(main, range).ok_or(ValueError::TimeDigits(what))?;
            u8::try_from(v)
                .map(Some)
                .map_err(|_| ValueError::TimeRange(what))
        };
        let hour = part(8..10, "hour")?;
        let minute = part(10..12, "minute")?;
        let second = part(12..14, "second")?;
        // Each unit in range, as `time` sees a clock: the hour alone, then with its minute, ...
        let check = |what: &'static str, h: u8, m: u8, s: u8| {
            time::Time::from_hms(h, m, s)
                .map(|_| ())
                .map_err(|_| ValueError::TimeRange(what))
        };
        if let Some(h) = hour {
            check("hour", h, 0, 0)?;
        }
        if let Some(m) = minute {
            check("minute", 0, m, 0)?;
        }
        if let Some(s) = second {
            check("second", 0, 0, s)?;
        }
        let fraction = match fraction {
            None => None,
            Some(f)
                if main.len() == 14
                    && (1..=4).contains(&f.len())
                    && f.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Some(f.to_string())
            }
            Some(_) => return Err(ValueError::Fraction),
        };
        let offset_minutes = match offset {
            None => None,
            Some(o) => Some(parse_offset(o)?),
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

    /// The UTC offset, when one was sent.
    pub fn utc_offset(&self) -> Option<time::UtcOffset> {
        let minutes = i32::from(self.offset_minutes?);
        time::UtcOffset::from_whole_seconds(minutes * 60).ok()
    }

    /// Parses the ISO 8601 forms [`Display`](fmt::Display) writes: a date as
    /// [`HlDate::parse_iso`] reads it, optionally `Thh`, `Thh:mm`, `Thh:mm:ss` or
    /// `Thh:mm:ss.s` (1–4 digits) after a full date, and optionally a UTC offset `+hh:mm`,
    /// `-hh:mm` or `Z` (read as `+00:00`). An hour written alone as `T12:00` reads back with
    /// its minutes: the same time, one precision finer.
    pub fn parse_iso(text: &str) -> Result<Self, ValueError> {
        const FORM: ValueError = ValueError::IsoDateTimeForm;
        let bytes = text.as_bytes();
        let (main, offset) = if let Some(main) = text.strip_suffix('Z') {
            (main, Some(String::from("+0000")))
        } else if bytes.len() >= 6
            && matches!(bytes.get(bytes.len() - 6), Some(b'+' | b'-'))
            && bytes.get(bytes.len() - 3) == Some(&b':')
        {
            let (main, offset) = text.split_at(bytes.len() - 6);
            let (hours, minutes) = offset.split_at(3);
            let minutes = minutes.get(1..).unwrap_or_default();
            if !hours
                .bytes()
                .skip(1)
                .chain(minutes.bytes())
                .all(|b| b.is_ascii_digit())
            {
                return Err(FORM);
            }
            (main, Some(format!("{hours}{minutes}")))
        } else {
            (text, None)
        };
        let (date, time) = match main.split_once('T') {
            Some((date, time)) => (date, Some(time)),
            None => (main, None),
        };
        let date = HlDate::parse_iso(date)?;
        let mut hl7 = date.to_hl7();
        if let Some(time) = time {
            if date.day.is_none() {
                return Err(ValueError::TimeWithoutDay);
            }
            let (clock, fraction) = match time.split_once('.') {
                Some((clock, fraction)) => (clock, Some(fraction)),
                None => (time, None),
            };
            let parts: Vec<&str> = clock.split(':').collect();
            if !parts
                .iter()
                .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()))
                || parts.len() > 3
                || (fraction.is_some() && parts.len() != 3)
            {
                return Err(FORM);
            }
            hl7.push_str(&parts.concat());
            if let Some(fraction) = fraction {
                if !fraction.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(FORM);
                }
                hl7.push('.');
                hl7.push_str(fraction);
            }
        }
        if let Some(offset) = offset {
            hl7.push_str(&offset);
        }
        Self::parse(&hl7)
    }

    /// The HL7 text (DTM/TS): `YYYY[MM[DD[HH[MM[SS[.S…]]]]]][+/-ZZZZ]`, to the precision
    /// held.
    pub fn to_hl7(&self) -> String {
        let mut text = self.date.to_hl7();
        if let Some(hour) = self.hour {
            text.push_str(&format!("{hour:02}"));
            if let Some(minute) = self.minute {
                text.push_str(&format!("{minute:02}"));
                if let Some(second) = self.second {
                    text.push_str(&format!("{second:02}"));
                    if let Some(fraction) = &self.fraction {
                        text.push('.');
                        text.push_str(fraction);
                    }
                }
            }
        }
        if let Some(offset) = self.offset_minutes {
            let sign = if offset < 0 { '-' } else { '+' };
            let minutes = offset.unsigned_abs();
            text.push_str(&format!("{sign}{:02}{:02}", minutes / 60, minutes % 60));
        }
        text
    }
}

/// `+HHMM` or `-HHMM`, at most 14 hours (the widest offset in use), in minutes.
fn parse_offset(text: &str) -> Result<i16, ValueError> {
    let negative = text.starts_with('-');
    let hours = digits(text, 1..3).filter(|h| *h <= 14);
    let minutes = digits(text, 3..5);
    let (Some(h), Some(m), 5) = (hours, minutes, text.len()) else {
        return Err(ValueError::Offset);
    };
    let (h, m) = (
        i8::try_from(h).map_err(|_| ValueError::Offset)?,
        i8::try_from(m).map_err(|_| ValueError::Offset)?,
    );
    let (h, m) = if negative { (-h, -m) } else { (h, m) };
    let offset = time::UtcOffset::from_hms(h, m, 0).map_err(|_| ValueError::Offset)?;
    Ok(offset.whole_minutes())
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
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        let digits: String = match text.len() {
            10 => text.to_string(),
            12 if text.as_bytes()[3] == b' ' && text.as_bytes()[7] == b' ' => text.replace(' ', ""),
            _ => return Err(ValueError::NhsDigits),
        };
        if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ValueError::NhsDigits);
        }
        let d: Vec<u32> = digits.bytes().map(|b| u32::from(b - b'0')).collect();
        let sum: u32 = d[..9].iter().zip((2..=10).rev()).map(|(x, w)| x * w).sum();
        let check = match 11 - sum % 11 {
            11 => 0,
            10 => return Err(ValueError::NhsNoCheckDigit),
            c => c,
        };
        if check != d[9] {
            return Err(ValueError::NhsCheckDigit);
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
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        let body = text.strip_prefix(['+', '-']).unwrap_or(text);
        let mut dots = 0;
        let mut digit = false;
        for b in body.bytes() {
            match b {
                b'0'..=b'9' => digit = true,
                b'.' => dots += 1,
                _ => {
                    return Err(ValueError::Number);
                }
            }
        }
        if !digit || dots > 1 {
            return Err(ValueError::Number);
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

/// Reads a JSON string with `parse`; anything else is an error naming what was expected.
struct TextVisitor<T> {
    expecting: &'static str,
    parse: fn(&str) -> Result<T, ValueError>,
}

impl<T> Visitor<'_> for TextVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        (self.parse)(text).map_err(E::custom)
    }
}

macro_rules! deserialize_from_text {
    ($($t:ty => $expecting:literal, $parse:path;)*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str(TextVisitor { expecting: $expecting, parse: $parse })
            }
        }
    )*};
}
deserialize_from_text! {
    HlDate => "an ISO 8601 date as a string (YYYY, YYYY-MM or YYYY-MM-DD)", HlDate::parse_iso;
    HlDateTime => "an ISO 8601 date and time as a string (YYYY-MM-DDThh:mm:ss+hh:mm)", HlDateTime::parse_iso;
    NhsNumber => "an NHS number as a string of 10 digits", NhsNumber::parse;
    HlNumber => "a number as a string (HL7 NM: optional sign, digits, optional point)", HlNumber::parse;
}

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
    fn iso_dates_read_back_what_display_writes() {
        for hl7 in ["1970", "197001", "19700131", "20000229"] {
            let date = HlDate::parse(hl7).unwrap();
            assert_eq!(HlDate::parse_iso(&date.to_string()).unwrap(), date, "{hl7}");
            assert_eq!(date.to_hl7(), hl7);
        }
        for bad in [
            "",
            "70",
            "1970-1",
            "1970-01-1",
            "19700131",
            "1970/01/31",
            "1970-13",
            "1900-02-29",
            "1970-01-31T",
            "+970-01",
            "1970-0a",
            "1970-01-31-",
        ] {
            assert!(HlDate::parse_iso(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn iso_datetimes_read_back_what_display_writes() {
        for hl7 in [
            "2026",
            "202601",
            "20260101",
            "202601011205",
            "20260101120530",
            "20260101120530.25+0100",
            "20260101120530.1234-0330",
            "20260101-0330",
            "2026+0100",
            "202601+0000",
            "202601011205+1400",
        ] {
            let value = HlDateTime::parse(hl7).unwrap();
            let iso = value.to_string();
            assert_eq!(
                HlDateTime::parse_iso(&iso).unwrap(),
                value,
                "{hl7} as {iso}"
            );
            assert_eq!(value.to_hl7(), hl7, "{hl7}");
        }
        // An hour alone is written with its minutes and reads back one precision finer.
        let hour = HlDateTime::parse("2026010112").unwrap();
        assert_eq!(hour.to_hl7(), "2026010112");
        let back = HlDateTime::parse_iso(&hour.to_string()).unwrap();
        assert_eq!(back.to_hl7(), "202601011200");
        assert_eq!(
            HlDateTime::parse_iso("2026-01-01T12").unwrap().to_hl7(),
            "2026010112"
        );
        assert_eq!(
            HlDateTime::parse_iso("2026-01-01T12:05:30Z")
                .unwrap()
                .to_hl7(),
            "20260101120530+0000"
        );
        for bad in [
            "",
            "2026-01-01T",
            "2026-01T12:00",
            "2026-01-01T24:00",
            "2026-01-01T12:60",
            "2026-01-01T12:05.5",
            "2026-01-01T12:05:30.12345",
            "2026-01-01T12:05:30.",
            "2026-01-01T1:05",
            "2026-01-01T12:05:30:00",
            "2026-01-01 12:05",
            "2026-01-01T12:05+1:000",
            "2026-01-01T12:05+01:0a",
            "2026-01-01T12:05+15:00",
            "2026-01-01T12:05+0100",
            "20260101120530",
            "2026-01-01T12:05ZZ",
            "2026-01-01T12:05:30.2a",
            "2026-01-01T\u{e9}2:05",
        ] {
            assert!(HlDateTime::parse_iso(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_deserialize_from_the_json_they_serialize_to() {
        fn round_trip<T>(value: &T)
        where
            T: Serialize + for<'de> Deserialize<'de> + PartialEq + fmt::Debug,
        {
            let json = serde_json::to_value(value).unwrap();
            assert_eq!(&serde_json::from_value::<T>(json).unwrap(), value);
        }
        round_trip(&HlDate::parse("19700131").unwrap());
        round_trip(&HlDate::parse("1970").unwrap());
        round_trip(&HlDateTime::parse("20260101120530.25+0100").unwrap());
        round_trip(&NhsNumber::parse("9449305552").unwrap());
        round_trip(&HlNumber::parse("-12.50").unwrap());
        let date: HlDate = serde_json::from_str("\"1970-01\"").unwrap();
        assert_eq!(date.to_hl7(), "197001");

        let error = |json: &str, what: &str| -> String {
            let result = match what {
                "date" => serde_json::from_str::<HlDate>(json).map(|_| ()),
                "datetime" => serde_json::from_str::<HlDateTime>(json).map(|_| ()),
                "nhs" => serde_json::from_str::<NhsNumber>(json).map(|_| ()),
                _ => serde_json::from_str::<HlNumber>(json).map(|_| ()),
            };
            result.unwrap_err().to_string()
        };
        assert!(error("\"9449305553\"", "nhs").contains("check digit"));
        assert!(error("9449305552", "nhs").contains("expected an NHS number as a string"));
        assert!(error("\"19700131\"", "date").contains("YYYY-MM-DD"));
        assert!(error("\"2026-01-01T25:00\"", "datetime").contains("hour"));
        assert!(error("12.5", "number").contains("expected a number as a string"));
        assert!(error("\"1e5\"", "number").contains("digits"));
        assert!(error("null", "date").contains("expected an ISO 8601 date"));
    }

    #[test]
    fn calendar_values_for_other_code() {
        let date = HlDate::parse("20000229").unwrap().to_date().unwrap();
        assert_eq!(
            (date.year(), u8::from(date.month()), date.day()),
            (2000, 2, 29)
        );
        assert_eq!(HlDate::parse("200002").unwrap().to_date(), None);
        let offset = HlDateTime::parse("20260101-0330")
            .unwrap()
            .utc_offset()
            .unwrap();
        assert_eq!(offset.whole_minutes(), -210);
        assert_eq!(HlDateTime::parse("2026010112").unwrap().utc_offset(), None);
        assert_eq!(
            HlDate::parse("19000229").unwrap_err().to_string(),
            "the day does not exist in that month"
        );
    }

    #[test]
    fn numbers_are_kept_as_sent() {
        assert_eq!(HlNumber::parse("-12.50").unwrap().as_str(), "-12.50");
        for bad in ["", "1.2.3", "1e5", "+", "."] {
            assert!(HlNumber::parse(bad).is_err(), "{bad}");
        }
    }
}
