//! Building an outbound message from a record as JSON, driven by the spec's plan: the same
//! runtime primitives in the same order as the generated `to_hl7` (each value read with the
//! runtime's JSON form and written as its HL7 text through `mapping::Field`, then
//! `mapping::finish`), so `hl7gw test` checks an outbound test without building the crate.

use hl7gw_runtime::config::{Text, TextList};
use hl7gw_runtime::hl7::MessageBuilder;
use hl7gw_runtime::mapping::{
    self, Field, HlDate, HlDateTime, HlNumber, MappedValue, MessageShape, NhsNumber, OutboundHeader,
};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::codegen::plan::{FieldPlan, Kind, Outbound, Plan, RecordPlan};

/// The shape the generated crate holds for an outbound type.
pub fn shape(out: &Outbound) -> MessageShape {
    MessageShape {
        message_type: Text::Owned(out.message_type.clone()),
        structure: out.structure.clone().map(Text::Owned),
        set_id_segments: TextList::Owned(
            out.set_id_segments
                .iter()
                .cloned()
                .map(Text::Owned)
                .collect(),
        ),
        acknowledgement: out.acknowledgement,
    }
}

/// Builds `message_type` from `record` after the MSH in `header`; an error names the field.
pub fn build(
    plan: &Plan,
    message_type: &str,
    record: &Map<String, Value>,
    header: &OutboundHeader<'_>,
) -> Result<Vec<u8>, String> {
    let out = plan
        .outbound
        .iter()
        .find(|o| o.message_type == message_type)
        .ok_or_else(|| format!("{message_type} is not declared outbound"))?;
    let record_plan = plan
        .records
        .get(out.record_index)
        .ok_or_else(|| format!("{message_type}: no record"))?;
    let shape = shape(out);
    let mut message = mapping::new_message(header, &shape).map_err(|e| format!("the MSH: {e}"))?;
    write_record(plan, record_plan, record, &mut message, "")?;
    mapping::finish(&mut message, &shape).map_err(|e| e.to_string())?;
    Ok(message.to_bytes())
}

fn write_record(
    plan: &Plan,
    record: &RecordPlan,
    json: &Map<String, Value>,
    message: &mut MessageBuilder,
    prefix: &str,
) -> Result<(), String> {
    let dotted = |name: &str| format!("{prefix}{name}");
    if let Some(unknown) = json
        .keys()
        .find(|k| !record.members().any(|f| &f.name == *k))
    {
        return Err(format!(
            "{}: not a field of `{}`",
            dotted(unknown),
            record.name
        ));
    }
    for field in &record.fields {
        let at = dotted(&field.name);
        if let Kind::Nested { record_index } = field.kind {
            let nested = plan
                .records
                .get(record_index)
                .ok_or_else(|| format!("{at}: no record"))?;
            let empty = Map::new();
            let value = match json.get(&field.name) {
                Some(Value::Object(object)) => object,
                None | Some(Value::Null) => &empty,
                Some(_) => return Err(format!("{at}: expected an object")),
            };
            write_record(plan, nested, value, message, &format!("{at}."))?;
            continue;
        }
        let Some((_, path)) = &field.path else {
            continue;
        };
        let rule = Field::optional("", path.clone());
        if let Some(fixed) = &field.fixed {
            rule.write_fixed(message, fixed)
                .map_err(|e| format!("{at}: {e}"))?;
            continue;
        }
        let texts: Vec<String> = match json.get(&field.name) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(values)) if field.repeated => values
                .iter()
                .map(|v| hl7_text(plan, field, v).map_err(|e| format!("{at}: {e}")))
                .collect::<Result<_, _>>()?,
            Some(value) if !field.repeated => {
                vec![hl7_text(plan, field, value).map_err(|e| format!("{at}: {e}"))?]
            }
            Some(_) => return Err(format!("{at}: expected a list")),
        };
        if field.repeated {
            rule.write_each(message, &texts)
        } else {
            rule.write_optional(message, texts.first())
        }
        .map_err(|e| format!("{at}: {e}"))?;
        if let Kind::Base64 {
            media,
            ed_data: true,
            ..
        } = &field.kind
            && !texts.is_empty()
        {
            mapping::write_ed_media(message, path, media).map_err(|e| format!("{at}: {e}"))?;
        }
    }
    Ok(())
}

/// A value in its JSON form → its HL7 text, read with the runtime's types.
fn hl7_text(plan: &Plan, field: &FieldPlan, value: &Value) -> Result<String, String> {
    fn via<T: DeserializeOwned + MappedValue>(value: &Value) -> Result<String, String> {
        let typed: T = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
        Ok(typed.hl7_text().into_owned())
    }
    match &field.kind {
        Kind::Text { .. } => via::<String>(value),
        Kind::Date => via::<HlDate>(value),
        Kind::DateTime => via::<HlDateTime>(value),
        Kind::NhsNumber => via::<NhsNumber>(value),
        Kind::Number => via::<HlNumber>(value),
        Kind::Code { enum_index } => {
            let list = plan
                .enums
                .get(*enum_index)
                .ok_or_else(|| String::from("no code list"))?;
            let text = value.as_str().ok_or("expected a string")?;
            list.entries
                .iter()
                .find(|(code, meaning, _)| {
                    if list.from_map {
                        meaning == text
                    } else {
                        code == text
                    }
                })
                .map(|(code, _, _)| code.clone())
                .ok_or_else(|| format!("{text:?} is not a value of {}", list.list_name))
        }
        Kind::Base64 { media, .. } => {
            let given = value
                .get("media_type")
                .and_then(Value::as_str)
                .ok_or("expected {\"media_type\", \"data\"}")?;
            if given != media {
                return Err(format!("media type {given:?}; the spec names {media:?}"));
            }
            let data = value.get("data").and_then(Value::as_str).ok_or("no data")?;
            Ok(data.to_string())
        }
        Kind::Nested { .. } => Err("a nested record".into()),
    }
}
