//! Records as JSON, shared by every generated gateway: JSON in for outbound records (read
//! strictly, then checked to read back from the built message as sent), JSON out for mapped
//! records, and the error for a type a gateway does not map.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::MappingError;
use crate::hl7::ack::error_code;
use crate::hl7::{BuildError, Location, Message, ParseError, ParseOptions};

/// A record's JSON that does not read as the record: the text names the field
/// (`patient.nhs_number: …`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(#[from] serde_path_to_error::Error<serde_json::Error>);

/// Why an outbound record as JSON did not become a message.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// The JSON does not read as the record.
    #[error(transparent)]
    Json(#[from] JsonError),
    /// The builder refused a value.
    #[error("the message cannot be built: {0}")]
    Build(BuildError),
    /// The built message does not parse (a builder fault).
    #[error("the built message does not parse: {0}")]
    NotParsed(ParseError),
    /// The built message does not map back: every mapping error, as `field: why`.
    #[error("{}", .0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
    Mapping(Vec<MappingError>),
    /// The built message maps back to another record: the first field that differs.
    #[error(
        "{0}: the message does not carry the value as sent (HL7 cannot send an empty text, and two fields at one place overwrite each other)"
    )]
    Differs(String),
}

/// A record from its JSON; the error names the field (`patient.nhs_number: …`).
pub fn record_from_json<T: DeserializeOwned>(record: &serde_json::Value) -> Result<T, JsonError> {
    Ok(serde_path_to_error::deserialize(record)?)
}

/// A record as JSON; a record that does not serialize is an application error (207).
pub fn record_to_json<T: Serialize>(record: &T) -> Result<serde_json::Value, Vec<MappingError>> {
    serde_json::to_value(record).map_err(|e| {
        vec![MappingError {
            code: error_code::APPLICATION_INTERNAL_ERROR,
            location: message_type_location(),
            field: String::new(),
            message: format!("the record does not serialize: {e}"),
        }]
    })
}

/// The error for a message type a gateway does not map (200 at MSH-9).
pub fn unsupported_type(message_type: &str) -> MappingError {
    MappingError {
        code: error_code::UNSUPPORTED_MESSAGE_TYPE,
        location: message_type_location(),
        field: String::new(),
        message: format!("message type {message_type} is not mapped by this gateway"),
    }
}

fn message_type_location() -> Location {
    Location {
        segment: String::from("MSH"),
        occurrence: 1,
        field: 9,
        repetition: 1,
        component: None,
        subcomponent: None,
    }
}

/// The built message, once it reads back as the record it was built from: every mapping
/// error (`field: why`), or the first field that reads back otherwise. This applies the
/// spec's lengths, sizes and required fields to outbound records without restating them.
pub(super) fn read_back<T: PartialEq + Serialize>(
    record: &T,
    bytes: Vec<u8>,
    read: fn(&Message<'_>) -> Result<T, Vec<MappingError>>,
) -> Result<Vec<u8>, OutboundError> {
    let back = {
        let message = Message::parse_with(&bytes, &ParseOptions::lenient())
            .map_err(OutboundError::NotParsed)?;
        read(&message).map_err(OutboundError::Mapping)?
    };
    if back == *record {
        return Ok(bytes);
    }
    let sent = serde_json::to_value(record).unwrap_or_default();
    let read = serde_json::to_value(&back).unwrap_or_default();
    let field = first_difference(&sent, &read, "").unwrap_or_else(|| String::from("the record"));
    Err(OutboundError::Differs(field))
}

/// The dotted path of the first value that differs, in field order.
fn first_difference(
    sent: &serde_json::Value,
    read: &serde_json::Value,
    path: &str,
) -> Option<String> {
    let at = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match (sent, read) {
        (serde_json::Value::Object(sent), serde_json::Value::Object(read)) => {
            sent.iter().find_map(|(key, value)| {
                first_difference(
                    value,
                    read.get(key).unwrap_or(&serde_json::Value::Null),
                    &at(key),
                )
            })
        }
        (serde_json::Value::Array(sent), serde_json::Value::Array(read))
            if sent.len() == read.len() =>
        {
            sent.iter()
                .zip(read)
                .enumerate()
                .find_map(|(index, (sent, read))| {
                    first_difference(sent, read, &format!("{path}[{index}]"))
                })
        }
        _ if sent == read => None,
        _ => Some(path.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_difference_is_named_by_its_path() {
        let sent = serde_json::json!({"a": "1", "b": {"c": ["x", "y"]}});
        let read = serde_json::json!({"a": "1", "b": {"c": ["x", "z"]}});
        assert_eq!(
            first_difference(&sent, &read, "").as_deref(),
            Some("b.c[1]")
        );
        assert_eq!(first_difference(&sent, &sent, ""), None);
    }
}
