//! Conversions from one HL7 value to a typed value. Each returns a [`Problem`] with the
//! HL7 error code when the value does not fit; none echoes the patient's data.

use base64::Engine;

use super::values::{HlDate, HlDateTime, HlNumber, NhsNumber};
use super::{Problem, value_text_raw};
use crate::hl7::{Hit, escape};

/// The decoded text of a hit's value (first subcomponent unless the path went deeper).
pub fn value_text(hit: &Hit<'_>) -> Result<String, Problem> {
    let raw = value_text_raw(hit);
    let enc = hit.span.encoding();
    escape::decode(raw, &enc.delimiters, enc.charset)
        .map(|d| d.text.into_owned())
        .map_err(|e| Problem::data_type(format!("the value cannot be decoded: {e}")))
}

/// The decoded text of the whole hit (all its components), for `string` fields that name a
/// whole primitive field.
pub fn field_text(hit: &Hit<'_>) -> Result<String, Problem> {
    value_text(hit)
}

/// Text, at most `max_len` characters.
pub fn text(hit: &Hit<'_>, max_len: Option<usize>) -> Result<String, Problem> {
    let value = value_text(hit)?;
    if let Some(max) = max_len {
        let len = value.chars().count();
        if len > max {
            return Err(Problem::data_type(format!(
                "the value has {len} characters; at most {max} are accepted"
            )));
        }
    }
    Ok(value)
}

/// A date (`YYYY[MM[DD]]`); a date and time is cut to its date.
pub fn date(hit: &Hit<'_>) -> Result<HlDate, Problem> {
    let value = value_text(hit)?;
    let cut = value
        .find(['+', '-', '.'])
        .map_or(value.as_str(), |at| &value[..at]);
    let date_part = &cut[..cut.len().min(8)];
    HlDate::parse(date_part).map_err(|why| Problem::data_type(format!("not a date: {why}")))
}

/// A date and time with its precision and offset.
pub fn datetime(hit: &Hit<'_>) -> Result<HlDateTime, Problem> {
    let value = value_text(hit)?;
    HlDateTime::parse(&value).map_err(|why| Problem::data_type(format!("not a date/time: {why}")))
}

/// The index of the value in `codes` (a map's keys or a table's codes, compared exactly);
/// a value not listed is error 103 naming the code (codes are not patient data).
pub fn code(hit: &Hit<'_>, codes: &[&str], list_name: &str) -> Result<usize, Problem> {
    let value = value_text(hit)?;
    codes
        .iter()
        .position(|c| *c == value)
        .ok_or_else(|| Problem::not_in_table(format!("code {value:?} is not in {list_name}")))
}

/// An NHS number with a valid check digit.
pub fn nhs_number(hit: &Hit<'_>) -> Result<NhsNumber, Problem> {
    let value = value_text(hit)?;
    NhsNumber::parse(&value).map_err(|e| Problem::data_type(e.to_string()))
}

/// A decimal number.
pub fn number(hit: &Hit<'_>) -> Result<HlNumber, Problem> {
    let value = value_text(hit)?;
    HlNumber::parse(&value).map_err(|e| Problem::data_type(e.to_string()))
}

/// Base64 data, decoded, at most `max_bytes` after decoding. The size is checked before
/// decoding so an oversized value costs no memory.
pub fn base64(hit: &Hit<'_>, max_bytes: u64) -> Result<Vec<u8>, Problem> {
    let raw = value_text_raw(hit);
    let estimated = (raw.len() as u64 / 4) * 3;
    if estimated > max_bytes.saturating_add(3) {
        return Err(Problem::data_type(format!(
            "the data decodes to about {estimated} bytes; at most {max_bytes} are accepted"
        )));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .map_err(|e| Problem::data_type(format!("not valid base64: {e}")))?;
    if bytes.len() as u64 > max_bytes {
        return Err(Problem::data_type(format!(
            "the data decodes to {} bytes; at most {max_bytes} are accepted",
            bytes.len()
        )));
    }
    Ok(bytes)
}
