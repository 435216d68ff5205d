//! What to generate for a spec, decided once: every record with its Rust type name and typed
//! fields, every code list as an enum, the statics holding the HL7 paths, and the message
//! bindings with their structures. The emitters only turn this plan into tokens.

use hl7gw_runtime::hl7::{Path, SegmentSelector, parse_version};

use super::CodegenError;
use super::names::{Namer, RESERVED_TYPES, fn_base, static_base, variant_base};
use crate::dict;
use crate::spec::{FieldType, Spec, type_name};

/// The plan for one spec.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Records in spec order.
    pub records: Vec<RecordPlan>,
    /// Code enums: tables (spec order), then each record's maps (spec order).
    pub enums: Vec<CodeEnum>,
    /// The type names of the base64 attachment and of its media types, when a field has
    /// `type: base64`.
    pub attachment: Option<(String, String)>,
    /// Inbound message types.
    pub inbound: Vec<Inbound>,
    /// Outbound message types.
    pub outbound: Vec<Outbound>,
}

/// One record.
#[derive(Debug, Clone)]
pub struct RecordPlan {
    /// The spec name, `order_update`.
    pub name: String,
    /// The Rust type, `OrderUpdate`.
    pub type_name: String,
    /// Fields in spec order.
    pub fields: Vec<FieldPlan>,
    /// Whether an outbound message is built from it (directly or nested).
    pub written: bool,
}

/// One field of a record.
#[derive(Debug, Clone)]
pub struct FieldPlan {
    /// The spec name, also the Rust field name and JSON key.
    pub name: String,
    /// The local variable holding the value while the record is read.
    pub local: String,
    /// The HL7 path as written in the spec, and parsed (not for nested records).
    pub path: Option<(String, Path)>,
    /// The static holding the parsed path.
    pub path_static: Option<String>,
    /// The paths read when `path` holds no value, as written and parsed, in order.
    pub fallbacks: Vec<(String, Path)>,
    /// The static holding the parsed fallbacks, when there are any.
    pub fallbacks_static: Option<String>,
    /// The type.
    pub kind: Kind,
    /// Absent → error 101.
    pub required: bool,
    /// A list of every present value.
    pub repeated: bool,
    /// The fixed value (`value:`), written into every built message; such a field is not
    /// a member of the record.
    pub fixed: Option<String>,
}

/// A field's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `string` or `id`, with the longest accepted length.
    Text { max_len: Option<u32> },
    /// `date`.
    Date,
    /// `datetime`.
    DateTime,
    /// `nhs_number`.
    NhsNumber,
    /// `number`.
    Number,
    /// `code`: index into [`Plan::enums`].
    Code { enum_index: usize },
    /// `base64`: media type, largest decoded size, and whether the path is ED.5 (then
    /// ED.2–4 are written from the media type).
    Base64 {
        media: String,
        max_bytes: u64,
        ed_data: bool,
    },
    /// A nested record: index into [`Plan::records`].
    Nested { record_index: usize },
}

/// A code list as an enum.
#[derive(Debug, Clone)]
pub struct CodeEnum {
    /// The Rust type.
    pub type_name: String,
    /// What the JSON carries: the mapped value (a map) or the code (a table).
    pub from_map: bool,
    /// `the sex map` or `table procedure`, as errors name it.
    pub list_name: String,
    /// Where it comes from, for the doc comment: `patient.sex` or `procedure`.
    pub source: String,
    /// (code, meaning or mapped value, variant) in spec order.
    pub entries: Vec<(String, String, String)>,
}

/// One inbound message type.
#[derive(Debug, Clone)]
pub struct Inbound {
    /// `ORM^O01`.
    pub message_type: String,
    /// The record it maps to.
    pub record_index: usize,
    /// The record a cancellation (ORC-1 `CA`/`DC`) maps to instead, when the spec names one.
    pub cancel_index: Option<usize>,
}

/// One outbound message type.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// `ORU^R01`.
    pub message_type: String,
    /// The structure for MSH-9.3 (v2.3.1 and later), from the dictionary.
    pub structure: Option<String>,
    /// The record built from.
    pub record_index: usize,
    /// The method that builds it: `to_hl7`, or `to_hl7_oru_r01` when the record builds more
    /// than one message type.
    pub method: String,
    /// The `const` holding its `mapping::MessageShape`, `ORU_R01`.
    pub shape_const: String,
    /// Segments of its structure whose field 1 is a Set ID (SI), sorted.
    pub set_id_segments: Vec<String>,
    /// Whether its structure carries an MSA (MSA-1 defaults to `AA`).
    pub acknowledgement: bool,
}

/// Parameter names of the generated `read` that a local may not shadow.
const READ_PARAMS: &[&str] = &["message", "errors"];

impl Plan {
    /// Plans the crate for a spec the checks accepted.
    pub fn new(spec: &Spec) -> Result<Self, CodegenError> {
        let mut types = Namer::with_reserved(RESERVED_TYPES);
        let mut records = Vec::new();
        for name in spec.records.keys() {
            let type_name = type_name(name);
            if !types.take_exact(&type_name) {
                return Err(CodegenError::new(format!(
                    "record `{name}` becomes the Rust type `{type_name}`, which another record or the generated code already uses; rename the record"
                )));
            }
            records.push(RecordPlan {
                name: name.clone(),
                type_name,
                fields: Vec::new(),
                written: false,
            });
        }
        let needs_attachment = spec
            .records
            .values()
            .flat_map(|r| r.values())
            .any(|f| f.kind == Some(FieldType::Base64));
        let attachment =
            needs_attachment.then(|| (types.unique("Attachment", ""), types.unique("Media", "")));

        let mut enums = Vec::new();
        let mut table_enum = Vec::new();
        for (table, codes) in &spec.tables {
            table_enum.push((table.clone(), enums.len()));
            enums.push(CodeEnum {
                type_name: types.unique(&type_name(table), ""),
                from_map: false,
                list_name: format!("table {table}"),
                source: format!("table `{table}`"),
                entries: entries(codes.iter()),
            });
        }

        let dictionary = dict::version(&spec.hl7_version);
        let mut statics = Namer::default();
        for (record_index, (record_name, record)) in spec.records.iter().enumerate() {
            let mut locals = Namer::with_reserved(READ_PARAMS);
            let mut fields = Vec::new();
            for (field_name, field) in record {
                let at = || format!("records.{record_name}.{field_name}");
                let local = if READ_PARAMS.contains(&field_name.as_str()) {
                    locals.unique(&format!("{field_name}_value"), "_")
                } else {
                    locals.unique(field_name, "_")
                };
                if let Some(nested) = &field.record {
                    let Some(nested_index) = spec.records.get_index_of(nested) else {
                        return Err(CodegenError::new(format!("{}: no record `{nested}`", at())));
                    };
                    if field.repeated {
                        return Err(CodegenError::new(format!(
                            "{}: a repeated nested record cannot be generated yet; map the repeating values as repeated fields",
                            at()
                        )));
                    }
                    fields.push(FieldPlan {
                        name: field_name.clone(),
                        local,
                        path: None,
                        path_static: None,
                        fallbacks: Vec::new(),
                        fallbacks_static: None,
                        kind: Kind::Nested {
                            record_index: nested_index,
                        },
                        required: field.required,
                        repeated: false,
                        fixed: None,
                    });
                    continue;
                }
                let (Some(source), Some(field_type)) = (&field.from, field.kind) else {
                    return Err(CodegenError::new(format!(
                        "{}: a field needs `from` and `type`, or `record`",
                        at()
                    )));
                };
                let mut paths = Vec::new();
                for text in source.paths() {
                    let path = Path::parse(text)
                        .map_err(|e| CodegenError::new(format!("{}: {e}", at())))?;
                    paths.push((text.clone(), path));
                }
                if paths.is_empty() {
                    return Err(CodegenError::new(format!("{}: `from` names no path", at())));
                }
                let fallbacks = paths.split_off(1);
                let Some((from, path)) = paths.pop() else {
                    return Err(CodegenError::new(format!("{}: `from` names no path", at())));
                };
                let kind = match field_type {
                    FieldType::String | FieldType::Id => Kind::Text {
                        max_len: field.max_len,
                    },
                    FieldType::Date => Kind::Date,
                    FieldType::Datetime => Kind::DateTime,
                    FieldType::NhsNumber => Kind::NhsNumber,
                    FieldType::Number => Kind::Number,
                    FieldType::Code => match (&field.map, &field.table) {
                        (Some(map), None) => {
                            let base =
                                format!("{}{}", type_name(record_name), type_name(field_name));
                            let enum_index = enums.len();
                            enums.push(CodeEnum {
                                type_name: types.unique(&base, ""),
                                from_map: true,
                                list_name: format!("the {field_name} map"),
                                source: format!("`{record_name}.{field_name}`"),
                                entries: entries(map.iter()),
                            });
                            Kind::Code { enum_index }
                        }
                        (None, Some(table)) => {
                            let Some((_, enum_index)) =
                                table_enum.iter().find(|(name, _)| name == table)
                            else {
                                return Err(CodegenError::new(format!(
                                    "{}: no table `{table}`",
                                    at()
                                )));
                            };
                            Kind::Code {
                                enum_index: *enum_index,
                            }
                        }
                        _ => {
                            return Err(CodegenError::new(format!(
                                "{}: a code takes `map` or `table`",
                                at()
                            )));
                        }
                    },
                    FieldType::Base64 => {
                        let (Some(media), Some(max_bytes)) = (&field.media, field.max_bytes) else {
                            return Err(CodegenError::new(format!(
                                "{}: a base64 field needs `media` and `max_bytes`",
                                at()
                            )));
                        };
                        Kind::Base64 {
                            media: media.clone(),
                            max_bytes: max_bytes.bytes(),
                            ed_data: is_ed_data(dictionary, &path),
                        }
                    }
                };
                let base = static_base(&[record_name, field_name]);
                let path_static = statics.unique(&base, "_");
                let fallbacks_static =
                    (!fallbacks.is_empty()).then(|| statics.unique(&format!("{base}_ELSE"), "_"));
                fields.push(FieldPlan {
                    name: field_name.clone(),
                    local,
                    path_static: Some(path_static),
                    path: Some((from, path)),
                    fallbacks,
                    fallbacks_static,
                    kind,
                    required: field.required,
                    repeated: field.repeated,
                    fixed: field.value.clone(),
                });
            }
            if let Some(plan) = records.get_mut(record_index) {
                plan.fields = fields;
            }
        }

        let record_index = |name: &str, direction: &str, message_type: &str| {
            spec.records.get_index_of(name).ok_or_else(|| {
                CodegenError::new(format!("{direction}.{message_type}: no record `{name}`"))
            })
        };
        let mut inbound = Vec::new();
        for (message_type, binding) in &spec.inbound {
            inbound.push(Inbound {
                message_type: message_type.clone(),
                record_index: record_index(&binding.record, "inbound", message_type)?,
                cancel_index: match &binding.cancel {
                    Some(cancel) => Some(record_index(cancel, "inbound", message_type)?),
                    None => None,
                },
            });
        }
        let mut outbound = Vec::new();
        let modern = parse_version(&spec.hl7_version) >= (2, 3, 1);
        for (message_type, binding) in &spec.outbound {
            let index = record_index(&binding.record, "outbound", message_type)?;
            let structure = match (modern, dictionary, message_type.split_once('^')) {
                (true, Some(d), Some((code, trigger))) => {
                    d.structure_for(code, trigger).map(str::to_string)
                }
                _ => None,
            };
            let several = spec
                .outbound
                .values()
                .filter(|b| b.record == binding.record)
                .count()
                > 1;
            let method = if several {
                format!("to_hl7_{}", fn_base(message_type))
            } else {
                "to_hl7".to_string()
            };
            let (set_id_segments, acknowledgement) = shape_facts(dictionary, message_type);
            outbound.push(Outbound {
                message_type: message_type.clone(),
                structure,
                record_index: index,
                method,
                shape_const: statics.unique(&static_base(&[&fn_base(message_type)]), "_"),
                set_id_segments,
                acknowledgement,
            });
        }

        let mut plan = Self {
            records,
            enums,
            attachment,
            inbound,
            outbound,
        };
        plan.mark_written();
        Ok(plan)
    }

    /// Marks the records outbound messages are built from, nested ones included.
    fn mark_written(&mut self) {
        let mut stack: Vec<usize> = self.outbound.iter().map(|o| o.record_index).collect();
        while let Some(index) = stack.pop() {
            let Some(record) = self.records.get_mut(index) else {
                continue;
            };
            if record.written {
                continue;
            }
            record.written = true;
            for field in &record.fields {
                if let Kind::Nested { record_index } = field.kind {
                    stack.push(record_index);
                }
            }
        }
    }
}

/// What the dictionary says a message type carries besides its record: the segments of its
/// structure whose field 1 is a Set ID, and whether it has an MSA. Nothing for a type or
/// version the dictionary does not know (`validate` reports those).
fn shape_facts(dictionary: Option<&dict::VersionDict>, message_type: &str) -> (Vec<String>, bool) {
    let structure =
        dictionary
            .zip(message_type.split_once('^'))
            .and_then(|(d, (code, trigger))| {
                d.structure_for(code, trigger)
                    .and_then(|id| d.structure(id))
                    .map(|s| (d, s))
            });
    let Some((d, structure)) = structure else {
        return (Vec::new(), false);
    };
    let set_ids = structure
        .segments
        .iter()
        .filter(|id| {
            d.segment(id)
                .and_then(|s| s.field(1))
                .is_some_and(|f| f.datatype == "SI")
        })
        .cloned()
        .collect();
    let acknowledgement = structure.segments.iter().any(|s| s == "MSA");
    (set_ids, acknowledgement)
}

/// (code, meaning, variant) for a code list, variants unique within the enum.
fn entries<'a>(
    codes: impl Iterator<Item = (&'a String, &'a String)>,
) -> Vec<(String, String, String)> {
    let mut variants = Namer::default();
    codes
        .map(|(code, meaning)| {
            (
                code.clone(),
                meaning.clone(),
                variants.unique(&variant_base(code), ""),
            )
        })
        .collect()
}

/// Whether a path names component 5 (the data) of an ED field: a field the dictionary types
/// ED, or OBX-5 (`varies`) in a segment picked by OBX-2 = ED.
fn is_ed_data(dictionary: Option<&dict::VersionDict>, path: &Path) -> bool {
    if path.component != Some(5) || path.subcomponent.is_some() {
        return false;
    }
    let datatype = dictionary.and_then(|d| {
        d.component_datatype(&path.segment, path.field, None, None)
            .ok()
    });
    match datatype {
        Some("ED") => true,
        Some(dict::VARIES) | None => matches!(
            &path.segment_selector,
            Some(SegmentSelector::Where(filter))
                if filter.field == 2 && filter.component.is_none_or(|c| c == 1) && filter.value == "ED"
        ),
        Some(_) => false,
    }
}

impl RecordPlan {
    /// The fields that are members of the record (every field but the fixed values).
    pub fn members(&self) -> impl Iterator<Item = &FieldPlan> {
        self.fields.iter().filter(|f| f.fixed.is_none())
    }
}
