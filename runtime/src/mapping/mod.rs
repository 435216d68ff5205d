//! Mapping primitives: the one place where an HL7 value becomes a typed record field.
//!
//! Generated gateways call these with constants; the compiler's spec-test runner calls the
//! same functions from the spec's data, so both always agree. Every failure is a
//! [`MappingError`] that knows its HL7 location and its HL7 table 0357 code (101 required
//! field missing, 102 data type error, 103 table value not found), so a receiver can answer
//! with an exact ERR segment.
//!
//! The value of a hit is the text of its first subcomponent, unless the path goes deeper:
//! `PID-7` on `19700101^D` reads `19700101`. An empty value and the null `""` both count as
//! absent.

mod attachment;
mod cancel;
mod code_list;
mod convert;
mod json;
mod outbound;
mod record;
mod values;

pub use attachment::{Attachment, MediaTypes};
pub use cancel::{CANCEL_CONTROLS, CANCEL_KEY, cancel_json, is_cancellation, map_order_to_json};
pub use code_list::{CodeError, CodeList};
pub use convert::{base64, code, date, datetime, field_text, nhs_number, number, text, value_text};
pub use json::{JsonError, OutboundError, record_from_json, record_to_json, unsupported_type};
pub use outbound::{MessageShape, OutboundHeader, UTF8_CHARSET, finish, new_message, test_header};
pub use record::{
    DataRule, Field, MappedValue, OutboundRecord, Record, build_from_json, map_to_json, nested,
    write_ed_media,
};
pub use values::{HlDate, HlDateTime, HlNumber, NhsNumber, ValueError};

use std::fmt;

use crate::hl7::{AckError, Hit, Location, Message, Path, Severity, ack::error_code};

/// Why a value could not be mapped, before its location is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// HL7 table 0357 code.
    pub code: u16,
    /// What was wrong, for a person; never the patient's data.
    pub message: String,
}

impl Problem {
    /// A data type error (102).
    pub fn data_type(message: impl Into<String>) -> Self {
        Self {
            code: error_code::DATA_TYPE_ERROR,
            message: message.into(),
        }
    }

    /// A value not in its table or map (103).
    pub fn not_in_table(message: impl Into<String>) -> Self {
        Self {
            code: error_code::TABLE_VALUE_NOT_FOUND,
            message: message.into(),
        }
    }
}

/// One field that could not be mapped, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MappingError {
    /// HL7 table 0357 code: 101, 102 or 103.
    pub code: u16,
    /// Where in the message, as a path (`PID-3[2].1`).
    #[serde(serialize_with = "location_text")]
    pub location: Location,
    /// The record field, dotted for nested records (`patient.nhs_number`).
    pub field: String,
    /// What was wrong; never the patient's data.
    pub message: String,
}

fn location_text<S: serde::Serializer>(l: &Location, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(l)
}

impl fmt::Display for MappingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at {}: {} ({})",
            self.field, self.location, self.message, self.code
        )
    }
}

impl MappingError {
    /// The ERR entry a receiver answers with.
    pub fn to_ack_error(&self) -> AckError {
        AckError {
            code: self.code,
            severity: Severity::Error,
            location: Some(self.location.clone()),
            message: format!("{}: {}", self.field, self.message),
        }
    }
}

/// Collects every mapping error of a message, so the ACK lists all of them at once.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Errors {
    list: Vec<MappingError>,
    prefix: Vec<String>,
}

impl Errors {
    /// No errors yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps a nested record: errors inside get `name.` in front of their field.
    pub fn nested<T>(&mut self, name: &str, map: impl FnOnce(&mut Self) -> T) -> T {
        self.prefix.push(name.to_string());
        let value = map(self);
        self.prefix.pop();
        value
    }

    fn field_name(&self, field: &str) -> String {
        let mut name = self.prefix.join(".");
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(field);
        name
    }

    /// Records an error.
    pub fn push(&mut self, code: u16, location: Location, field: &str, message: String) {
        let field = self.field_name(field);
        self.list.push(MappingError {
            code,
            location,
            field,
            message,
        });
    }

    /// True when nothing failed.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The errors, in the order found.
    pub fn into_vec(self) -> Vec<MappingError> {
        self.list
    }

    /// `Ok(value)` when nothing failed, else every error.
    pub fn finish<T>(self, value: impl FnOnce() -> Option<T>) -> Result<T, Vec<MappingError>> {
        if !self.list.is_empty() {
            return Err(self.list);
        }
        value().ok_or_else(|| {
            vec![MappingError {
                code: error_code::APPLICATION_INTERNAL_ERROR,
                location: Location {
                    segment: "MSH".into(),
                    occurrence: 1,
                    field: 9,
                    repetition: 1,
                    component: None,
                    subcomponent: None,
                },
                field: String::new(),
                message: "a required value was missing without an error being recorded".into(),
            }]
        })
    }
}

/// How one field is read: its name (for errors), path, the places tried when the path holds
/// nothing, and whether it is required.
#[derive(Debug, Clone, Copy)]
pub struct FieldRule<'r> {
    /// The record field's name.
    pub name: &'r str,
    /// Where the value is; errors name this place.
    pub path: &'r Path,
    /// Where else it may be, tried in order when `path` holds no value (EPR builds differ:
    /// priority in TQ1-9, else ORC-7.6).
    pub fallbacks: &'r [Path],
    /// Absent from every place → error 101.
    pub required: bool,
}

impl FieldRule<'_> {
    /// The present values of the first place that holds any: `path`, then each fallback.
    fn hits<'a>(&self, message: &Message<'a>) -> Vec<Hit<'a>> {
        std::iter::once(self.path)
            .chain(self.fallbacks)
            .map(|path| present(message, path))
            .find(|hits| !hits.is_empty())
            .unwrap_or_default()
    }

    /// Records error 101 at the first place, naming the others too.
    fn missing(&self, errors: &mut Errors) {
        let mut places = self.path.to_string();
        for fallback in self.fallbacks {
            places.push_str(" or ");
            places.push_str(&fallback.to_string());
        }
        errors.push(
            error_code::REQUIRED_FIELD_MISSING,
            self.path.nominal_location(),
            self.name,
            format!("required value missing at {places}"),
        );
    }
}

/// The present (non-empty, non-null) values a path selects, in message order.
pub fn present<'a>(message: &Message<'a>, path: &Path) -> Vec<Hit<'a>> {
    path.find_all(message)
        .into_iter()
        .filter(|hit| {
            let value = value_text_raw(hit);
            !value.is_empty() && value != b"\"\""
        })
        .collect()
}

/// The raw bytes of a hit's value: its first subcomponent unless the path went deeper.
fn value_text_raw<'a>(hit: &Hit<'a>) -> &'a [u8] {
    let enc = hit.span.encoding().delimiters;
    let raw = hit.span.raw();
    let stops: &[u8] = match (hit.location.component, hit.location.subcomponent) {
        (_, Some(_)) => &[],
        (Some(_), None) => &[enc.subcomponent],
        (None, None) => &[enc.repetition, enc.component, enc.subcomponent],
    };
    let end = raw
        .iter()
        .position(|b| stops.contains(b))
        .unwrap_or(raw.len());
    &raw[..end]
}

/// Reads a single-valued field: the first present value (of the first place holding one),
/// converted. Absent and required → 101 at the field's first place; a conversion failure →
/// its code, at the value's location.
pub fn single<'a, T>(
    message: &Message<'a>,
    rule: FieldRule<'_>,
    errors: &mut Errors,
    convert: impl Fn(&Hit<'a>) -> Result<T, Problem>,
) -> Option<T> {
    let hits = rule.hits(message);
    let Some(hit) = hits.first() else {
        if rule.required {
            rule.missing(errors);
        }
        return None;
    };
    match convert(hit) {
        Ok(value) => Some(value),
        Err(problem) => {
            errors.push(
                problem.code,
                hit.location.clone(),
                rule.name,
                problem.message,
            );
            None
        }
    }
}

/// Reads a repeating field: every present value (each repetition and segment occurrence) of
/// the first place holding any, converted. None present and required → 101.
pub fn repeated<'a, T>(
    message: &Message<'a>,
    rule: FieldRule<'_>,
    errors: &mut Errors,
    convert: impl Fn(&Hit<'a>) -> Result<T, Problem>,
) -> Vec<T> {
    let hits = rule.hits(message);
    if hits.is_empty() && rule.required {
        rule.missing(errors);
    }
    let mut values = Vec::with_capacity(hits.len());
    for hit in &hits {
        match convert(hit) {
            Ok(v) => values.push(v),
            Err(problem) => errors.push(
                problem.code,
                hit.location.clone(),
                rule.name,
                problem.message,
            ),
        }
    }
    values
}
