//! Mapping driven by the spec's data: the same runtime primitives, in the same order, as
//! the generated `from_hl7`, producing the same JSON.

use base64::Engine;
use hl7gw_runtime::hl7::{Hit, Message, Path};
use hl7gw_runtime::mapping::{self, Errors, FieldRule, MappingError, Problem, repeated, single};
use serde_json::{Map, Value, json};

use crate::spec::{FieldSpec, FieldType, Spec};

/// Maps a message of an inbound type to its record's JSON, or every mapping error; a
/// cancellation of a binding with a cancel record to `{"cancel": {...}}`, as the generated
/// `mapping::map_order_to_json` does.
pub fn map_inbound(
    spec: &Spec,
    message_type: &str,
    message: &Message<'_>,
) -> Result<Value, Vec<MappingError>> {
    let binding = spec.inbound.get(message_type);
    let cancel = binding
        .and_then(|b| b.cancel.as_deref())
        .filter(|_| mapping::is_cancellation(message));
    match cancel {
        Some(cancel) => map_named(spec, cancel, message).map(mapping::cancel_json),
        None => {
            let record = binding.map(|b| b.record.as_str()).unwrap_or_default();
            map_named(spec, record, message)
        }
    }
}

/// Maps a message to a record by name, as the receiving end of an outbound message reads it.
pub fn map_named(
    spec: &Spec,
    record: &str,
    message: &Message<'_>,
) -> Result<Value, Vec<MappingError>> {
    let mut errors = Errors::new();
    let value = map_record(spec, record, message, &mut errors);
    errors.finish(|| Some(value))
}

fn map_record(spec: &Spec, name: &str, message: &Message<'_>, errors: &mut Errors) -> Value {
    let mut object = Map::new();
    let Some(record) = spec.records.get(name) else {
        return Value::Object(object);
    };
    for (field_name, field) in record.iter().filter(|(_, f)| f.value.is_none()) {
        let value = if let Some(nested) = &field.record {
            errors.nested(field_name, |e| map_record(spec, nested, message, e))
        } else {
            map_field(spec, field_name, field, message, errors)
        };
        object.insert(field_name.clone(), value);
    }
    Value::Object(object)
}

fn map_field(
    spec: &Spec,
    name: &str,
    field: &FieldSpec,
    message: &Message<'_>,
    errors: &mut Errors,
) -> Value {
    // A spec that validated always has parsable paths here.
    let paths: Vec<Path> = field
        .from
        .iter()
        .flat_map(|source| source.paths())
        .filter_map(|p| Path::parse(p).ok())
        .collect();
    let Some((path, fallbacks)) = paths.split_first() else {
        return Value::Null;
    };
    let rule = FieldRule {
        name,
        path,
        fallbacks,
        required: field.required,
    };
    let convert = |hit: &Hit<'_>| convert(spec, name, field, hit);
    if field.repeated {
        Value::Array(repeated(message, rule, errors, convert))
    } else {
        single(message, rule, errors, convert).unwrap_or(Value::Null)
    }
}

fn convert(spec: &Spec, name: &str, field: &FieldSpec, hit: &Hit<'_>) -> Result<Value, Problem> {
    let text = |s: String| Ok(Value::String(s));
    match field.kind {
        None | Some(FieldType::String) | Some(FieldType::Id) => {
            text(mapping::text(hit, field.max_len.map(|m| m as usize))?)
        }
        Some(FieldType::Date) => text(mapping::date(hit)?.to_string()),
        Some(FieldType::Datetime) => text(mapping::datetime(hit)?.to_string()),
        Some(FieldType::NhsNumber) => text(mapping::nhs_number(hit)?.to_string()),
        Some(FieldType::Number) => text(mapping::number(hit)?.to_string()),
        Some(FieldType::Code) => {
            if let Some(map) = &field.map {
                let codes: Vec<&str> = map.keys().map(String::as_str).collect();
                let index = mapping::code(hit, &codes, &format!("the {name} map"))?;
                text(
                    map.get_index(index)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default(),
                )
            } else {
                let table_name = field.table.as_deref().unwrap_or_default();
                let codes: Vec<&str> = spec
                    .tables
                    .get(table_name)
                    .map(|t| t.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                let index = mapping::code(hit, &codes, &format!("table {table_name}"))?;
                text(codes.get(index).map(|c| c.to_string()).unwrap_or_default())
            }
        }
        Some(FieldType::Base64) => {
            let max = field.max_bytes.map_or(u64::MAX, |b| b.bytes());
            let bytes = mapping::base64(hit, max)?;
            Ok(json!({
                "media_type": field.media.clone().unwrap_or_default(),
                "data": base64::engine::general_purpose::STANDARD.encode(bytes),
            }))
        }
    }
}
