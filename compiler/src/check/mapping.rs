//! Mapping checks that need no HL7 dictionary: record references, field options that belong
//! together, paths that parse, message bindings, the messaging model's required message
//! types, and the ServiceRequest minimum dataset. Names are checked in [`super::names`].

use std::collections::HashSet;

use hl7gw_runtime::hl7::Path;

use crate::diag::{Diagnostic, Span};
use crate::spec::loader::escape_pointer;
use indexmap::IndexMap;

use crate::spec::{
    Direction, FieldSpec, FieldType, LoadedSpec, MessageBinding, MessagingModel, Record, Spec,
};

pub(super) fn check(spec: &LoadedSpec, out: &mut Vec<Diagnostic>) {
    for (table, codes) in &spec.spec.tables {
        if codes.contains_key("") {
            out.push(empty_code(
                spec,
                &format!("/tables/{}/", escape_pointer(table)),
            ));
        }
    }
    for (record_name, record) in &spec.spec.records {
        for (field_name, field) in record {
            let pointer = format!(
                "/records/{}/{}",
                escape_pointer(record_name),
                escape_pointer(field_name)
            );
            check_field(spec, field, &pointer, out);
        }
    }
    check_cycles(spec, out);
    check_bindings(spec, out);
    check_model(spec, out);
    check_service_request(spec, out);
}

fn check_field(spec: &LoadedSpec, f: &FieldSpec, pointer: &str, out: &mut Vec<Diagnostic>) {
    let s = &spec.spec;
    let err = |code: &str, summary: String, detail: &str, at: &str| {
        spec.at_key(Diagnostic::error(code, summary).detail(detail), at)
    };
    match (&f.from, &f.record) {
        (Some(_), Some(_)) => out.push(err(
            "field-from-and-record",
            "a field takes either `from` (an HL7 path) or `record` (a nested record), not both".into(),
            "keep one",
            pointer,
        )),
        (None, None) => out.push(err(
            "field-no-source",
            "the field has neither `from` nor `record`".into(),
            "map it from an HL7 path (`from: PID-5.1`, with a `type`) or nest a record (`record: patient`)",
            pointer,
        )),
        (None, Some(record)) => {
            if !s.records.contains_key(record) {
                out.push(spec.at_value(
                    Diagnostic::error("record-unknown", format!("no record named `{record}`"))
                        .detail(known("records", s.records.keys())),
                    &format!("{pointer}/record"),
                ));
            }
            if f.repeated {
                out.push(err(
                    "field-repeated-record",
                    "a nested record cannot be `repeated` (yet)".into(),
                    "map the repeating values as repeated fields of their own, e.g. `codes: { from: OBX-3.1, type: string, repeated: true }`",
                    &format!("{pointer}/repeated"),
                ));
            }
            if f.kind.is_some() {
                out.push(err(
                    "field-type-with-record",
                    "a nested record has no `type`".into(),
                    "remove `type`; the nested record's fields carry their own types",
                    &format!("{pointer}/type"),
                ));
            }
        }
        (Some(source), None) => {
            let from_pointer = format!("{pointer}/from");
            for (index, path) in source.paths().iter().enumerate() {
                check_path(spec, path, &source.pointer(&from_pointer, index), out);
            }
            if f.kind.is_none() {
                out.push(err(
                    "field-no-type",
                    "a mapped field needs a `type`".into(),
                    "one of: string, id, date, datetime, code, nhs_number, number, base64",
                    pointer,
                ));
            }
        }
    }
    let kind = f.kind;
    let is = |t: FieldType| kind == Some(t);
    if is(FieldType::Code) {
        match (&f.map, &f.table) {
            (Some(_), Some(_)) => out.push(err(
                "code-map-and-table",
                "a code takes either `map` or `table`, not both".into(),
                "keep one",
                pointer,
            )),
            (None, None) => out.push(err(
                "code-no-values",
                "a code needs `map` (HL7 code → EMS value) or `table` (a name from `tables`)".into(),
                "a value not in the map or table is answered with error 103, so the accepted values must be listed",
                pointer,
            )),
            (Some(map), None) if map.is_empty() => out.push(err(
                "code-no-values",
                "the code map is empty".into(),
                "list the accepted codes",
                &format!("{pointer}/map"),
            )),
            (Some(map), None) if map.contains_key("") => {
                out.push(empty_code(spec, &format!("{pointer}/map/")));
            }
            (None, Some(table)) if !s.tables.contains_key(table) => out.push(spec.at_value(
                Diagnostic::error("table-unknown", format!("no table named `{table}`"))
                    .detail(known("tables", s.tables.keys())),
                &format!("{pointer}/table"),
            )),
            _ => {}
        }
    } else {
        for (key, present) in [("map", f.map.is_some()), ("table", f.table.is_some())] {
            if present {
                out.push(err(
                    "option-needs-code",
                    format!("`{key}` applies only to `type: code`"),
                    "set `type: code`, or remove it",
                    &format!("{pointer}/{key}"),
                ));
            }
        }
    }
    // `max_len: 0` is refused by the schema (minimum 1) before these checks run.
    if f.max_len.is_some() && !(is(FieldType::String) || is(FieldType::Id)) {
        out.push(err(
            "option-wrong-type",
            "`max_len` applies only to string and id fields".into(),
            "remove it",
            &format!("{pointer}/max_len"),
        ));
    }
    check_fixed_value(spec, f, pointer, out);
    if is(FieldType::Base64) {
        if f.media.is_none() {
            out.push(err(
                "base64-no-media",
                "a base64 field needs `media`, e.g. application/pdf".into(),
                "EMS stores the decoded bytes with this media type",
                pointer,
            ));
        }
        if f.max_bytes.is_none() {
            out.push(err(
                "base64-no-limit",
                "a base64 field needs `max_bytes`, e.g. 20MiB".into(),
                "without a limit one message could exhaust the gateway's memory",
                pointer,
            ));
        }
    } else {
        for (key, present) in [
            ("media", f.media.is_some()),
            ("max_bytes", f.max_bytes.is_some()),
        ] {
            if present {
                out.push(err(
                    "option-wrong-type",
                    format!("`{key}` applies only to `type: base64`"),
                    "remove it",
                    &format!("{pointer}/{key}"),
                ));
            }
        }
    }
}

/// A fixed `value:`: only on a mapped field, neither required nor repeated (it is written,
/// never read), and valid for the field's type, map or table, as the runtime would read it.
fn check_fixed_value(spec: &LoadedSpec, f: &FieldSpec, pointer: &str, out: &mut Vec<Diagnostic>) {
    let Some(value) = &f.value else {
        return;
    };
    let at = format!("{pointer}/value");
    if f.record.is_some() {
        out.push(
            spec.at_key(
                Diagnostic::error("value-with-record", "a nested record has no fixed `value`")
                    .detail("put the fixed value on a field of the nested record"),
                &at,
            ),
        );
        return;
    }
    for (key, present) in [("required", f.required), ("repeated", f.repeated)] {
        if present {
            out.push(spec.at_key(
                Diagnostic::error(
                    "value-with-option",
                    format!("a field with a fixed `value` cannot be `{key}`"),
                )
                .detail("a fixed value is written into every built message and never read; remove the option"),
                &format!("{pointer}/{key}"),
            ));
        }
    }
    if let Some(why) = fixed_value_problem(&spec.spec.tables, f, value) {
        out.push(spec.at_value(
            Diagnostic::error("value-invalid", format!("fixed value {value:?}: {why}"))
                .detail("write the value as HL7 text of the field's type; a code must be one of its map's or table's codes"),
            &at,
        ));
    }
}

/// Why a fixed value does not fit its field, read with the runtime's value parsers.
fn fixed_value_problem(
    tables: &indexmap::IndexMap<String, indexmap::IndexMap<String, String>>,
    f: &FieldSpec,
    value: &str,
) -> Option<String> {
    use hl7gw_runtime::mapping::{HlDate, HlDateTime, HlNumber, NhsNumber};
    if value.is_empty() {
        return Some("an empty value writes nothing".into());
    }
    let parsed = |r: Result<(), hl7gw_runtime::mapping::ValueError>| r.err().map(|e| e.to_string());
    match f.kind? {
        FieldType::String | FieldType::Id => f
            .max_len
            .filter(|max| value.chars().count() > *max as usize)
            .map(|max| format!("longer than `max_len: {max}`")),
        FieldType::Date => parsed(HlDate::parse(value).map(drop)),
        FieldType::Datetime => parsed(HlDateTime::parse(value).map(drop)),
        FieldType::NhsNumber => parsed(NhsNumber::parse(value).map(drop)),
        FieldType::Number => parsed(HlNumber::parse(value).map(drop)),
        FieldType::Code => {
            let codes: Vec<&String> = match (&f.map, &f.table) {
                (Some(map), _) => map.keys().collect(),
                (None, Some(table)) => tables.get(table)?.keys().collect(),
                (None, None) => return None,
            };
            (!codes.iter().any(|c| *c == value)).then(|| {
                let list: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
                format!("not a code of the field's list ({})", list.join(", "))
            })
        }
        FieldType::Base64 => Some("a base64 field cannot have a fixed value".into()),
    }
}

/// An empty code (`"": …`) in a table or map: HL7 reads an empty value as absent, so the
/// code could never match.
fn empty_code(spec: &LoadedSpec, pointer: &str) -> Diagnostic {
    spec.at_key(
        Diagnostic::error("code-empty", "an empty code can never be sent")
            .detail("an empty HL7 value counts as absent (a required field answers 101), so it never matches a code; remove the entry"),
        pointer,
    )
}

/// The span of character `at` (0-based) inside a string value, allowing for its quote.
pub(super) fn span_inside(spec: &LoadedSpec, pointer: &str, at: usize, len: usize) -> Option<Span> {
    let span = spec.source.value_span(pointer)?;
    let quoted = matches!(
        spec.source.text.as_bytes().get(span.start.byte),
        Some(b'"' | b'\'')
    );
    let shift = at + usize::from(quoted);
    let mut start = span.start;
    start.byte += shift;
    start.column += shift;
    let mut end = start;
    end.byte += len.max(1);
    end.column += len.max(1);
    Some(Span { start, end })
}

/// Parses a path; a malformed one is reported at the offending character.
pub(super) fn check_path(
    spec: &LoadedSpec,
    text: &str,
    pointer: &str,
    out: &mut Vec<Diagnostic>,
) -> Option<Path> {
    match Path::parse(text) {
        Ok(path) => Some(path),
        Err(e) => {
            let at = e.position.saturating_sub(1);
            let d = Diagnostic::error("path-syntax", format!("HL7 path `{text}`: {}", e.message))
                .detail("paths are 1-based: PID-3, PID-3[2], PID-5.1, PID-3[CX.5=NH].1, OBX[OBX-2=ED]-5.5")
                .at(
                    &spec.source.file,
                    span_inside(spec, pointer, at, 1),
                    Some(pointer),
                );
            out.push(d);
            None
        }
    }
}

fn known<'a>(what: &str, names: impl Iterator<Item = &'a String>) -> String {
    let list: Vec<&str> = names.map(String::as_str).collect();
    if list.is_empty() {
        format!("the spec defines no {what}")
    } else {
        format!("{what} defined: {}", list.join(", "))
    }
}

/// A record that contains itself (directly or through others) cannot be built.
fn check_cycles(spec: &LoadedSpec, out: &mut Vec<Diagnostic>) {
    let records = &spec.spec.records;
    for start in records.keys() {
        let mut stack = vec![(start.as_str(), vec![start.as_str()])];
        let mut seen = HashSet::new();
        while let Some((name, chain)) = stack.pop() {
            let Some(record) = records.get(name) else {
                continue;
            };
            for nested in record.values().filter_map(|f| f.record.as_deref()) {
                if nested == start {
                    let mut cycle = chain.clone();
                    cycle.push(nested);
                    out.push(spec.at_key(
                        Diagnostic::error(
                            "record-cycle",
                            format!("record `{start}` contains itself: {}", cycle.join(" → ")),
                        ),
                        &format!("/records/{}", escape_pointer(start)),
                    ));
                    stack.clear();
                    break;
                }
                if seen.insert(nested) {
                    let mut next = chain.clone();
                    next.push(nested);
                    stack.push((nested, next));
                }
            }
        }
    }
}

fn check_bindings(spec: &LoadedSpec, out: &mut Vec<Diagnostic>) {
    let s = &spec.spec;
    for (direction, bindings) in [("inbound", &s.inbound), ("outbound", &s.outbound)] {
        for (message_type, binding) in bindings {
            let pointer = format!("/{direction}/{}", escape_pointer(message_type));
            if split_message_type(message_type).is_none() {
                out.push(
                    spec.at_key(
                        Diagnostic::error(
                            "message-type-syntax",
                            format!("`{message_type}` is not TYPE^TRIGGER"),
                        )
                        .detail(
                            "write the message code and trigger event, e.g. ADT^A28 or ORU^R01",
                        ),
                        &pointer,
                    ),
                );
            }
            if !s.records.contains_key(&binding.record) {
                out.push(
                    spec.at_value(
                        Diagnostic::error(
                            "record-unknown",
                            format!("no record named `{}`", binding.record),
                        )
                        .detail(known("records", s.records.keys())),
                        &format!("{pointer}/record"),
                    ),
                );
            }
            if let Some(merge) = &binding.merge {
                check_path(spec, merge, &format!("{pointer}/merge"), out);
            }
            if let Some(cancel) = &binding.cancel {
                check_cancel(
                    spec,
                    direction,
                    message_type,
                    binding,
                    cancel,
                    &pointer,
                    out,
                );
            }
        }
    }
}

/// Message codes whose ORC-1 can cancel an order, so a binding may name a cancel record.
const CANCELLABLE: &[&str] = &["ORM", "OMG"];

/// A binding's `cancel` record: inbound ORM or OMG only, an existing record other than the
/// order's own, holding the order's identity (`placer_id`) and the patient's (a nested
/// `patient` with `nhs_number` or `mrn`), each required.
fn check_cancel(
    spec: &LoadedSpec,
    direction: &str,
    message_type: &str,
    binding: &MessageBinding,
    cancel: &str,
    pointer: &str,
    out: &mut Vec<Diagnostic>,
) {
    let s = &spec.spec;
    let at = format!("{pointer}/cancel");
    let code = split_message_type(message_type).map(|(code, _)| code);
    if direction != "inbound" || !code.is_some_and(|c| CANCELLABLE.contains(&c)) {
        out.push(spec.at_key(
            Diagnostic::error(
                "cancel-not-order",
                format!("`cancel` applies to inbound ORM and OMG orders, not {direction} {message_type}"),
            )
            .detail("a cancellation is an order message whose ORC-1 is CA or DC; remove `cancel` here"),
            &at,
        ));
        return;
    }
    let Some(record) = s.records.get(cancel) else {
        out.push(
            spec.at_value(
                Diagnostic::error("record-unknown", format!("no record named `{cancel}`"))
                    .detail(known("records", s.records.keys())),
                &at,
            ),
        );
        return;
    };
    if cancel == binding.record {
        out.push(spec.at_value(
            Diagnostic::error(
                "cancel-same-record",
                format!("the cancel record is the order record `{cancel}` itself"),
            )
            .detail("a cancellation carries only the order's and the patient's identity: give it a record of its own, e.g. `order_cancel` with `placer_id` and `patient`"),
            &at,
        ));
        return;
    }
    let required = |record: &Record, name: &str| {
        record
            .get(name)
            .is_some_and(|f| f.required && f.from.is_some())
    };
    let patient = record
        .get("patient")
        .and_then(|f| f.record.as_ref())
        .and_then(|name| s.records.get(name));
    let mut missing = Vec::new();
    if !required(record, "placer_id") {
        missing.push("`placer_id` (the order's identity, required)");
    }
    if !patient.is_some_and(|p| required(p, "nhs_number") || required(p, "mrn")) {
        missing.push("`patient` (a nested record with a required `nhs_number` or `mrn`)");
    }
    if !missing.is_empty() {
        out.push(spec.at_value(
            Diagnostic::error(
                "cancel-identity",
                format!("cancel record `{cancel}` lacks {}", missing.join(" and ")),
            )
            .detail("a cancellation identifies an existing order: map the placer order number and the patient's identifiers"),
            &at,
        ));
    }
}

/// `ADT^A28` → (`ADT`, `A28`).
pub(super) fn split_message_type(text: &str) -> Option<(&str, &str)> {
    let (code, trigger) = text.split_once('^')?;
    let ok = |s: &str| {
        s.len() == 3
            && s.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    };
    (ok(code) && ok(trigger)).then_some((code, trigger))
}

/// The model's required message types (in the spec's version) are declared, and every
/// declared type is one the model covers (a warning otherwise: the customer did not buy it).
fn check_model(spec: &LoadedSpec, out: &mut Vec<Diagnostic>) {
    let s = &spec.spec;
    for requirement in s.model.requirements(&s.hl7_version) {
        let direction = requirement.direction.as_str();
        let declared = declared(s, requirement.direction);
        if !requirement
            .alternatives
            .iter()
            .any(|t| declared.contains_key(*t))
        {
            out.push(
                spec.at_value(
                    Diagnostic::error(
                        "model-missing-message",
                        format!(
                            "the {} model needs {} {direction} in HL7 v{}",
                            s.model.as_str(),
                            requirement.alternatives.join(" or "),
                            s.hl7_version
                        ),
                    )
                    .detail(format!(
                        "declare it under `{direction}:` with the record it maps to"
                    )),
                    "/model",
                ),
            );
        }
    }
    for direction in [Direction::Inbound, Direction::Outbound] {
        for message_type in declared(s, direction).keys() {
            if split_message_type(message_type).is_some()
                && !s.model.covers(direction, message_type)
            {
                out.push(
                    spec.at_key(
                        Diagnostic::warning(
                            "model-extra-message",
                            format!(
                                "{message_type} {} is beyond the {} model",
                                direction.as_str(),
                                s.model.as_str()
                            ),
                        )
                        .detail("the customer did not buy it (docs/spec.md, messaging models): remove it, change `model`, or acknowledge it with the reason"),
                        &format!("/{}/{}", direction.as_str(), escape_pointer(message_type)),
                    ),
                );
            }
        }
    }
}

fn declared(s: &Spec, direction: Direction) -> &IndexMap<String, MessageBinding> {
    match direction {
        Direction::Inbound => &s.inbound,
        Direction::Outbound => &s.outbound,
    }
}

/// The ServiceRequest minimum dataset (docs/spec.md): field name, accepted types, whether it
/// must come from a table, and what it is.
const SERVICE_REQUEST: &[(&str, &[FieldType], bool, &str)] = &[
    (
        "placer_id",
        &[FieldType::String, FieldType::Id],
        false,
        "the placer order or referral number",
    ),
    (
        "procedure",
        &[FieldType::Code],
        true,
        "the requested procedure, from the procedure table",
    ),
    (
        "priority",
        &[FieldType::Code],
        true,
        "the priority, from the priority table",
    ),
    (
        "requester",
        &[FieldType::Code],
        true,
        "the requesting clinician, from the clinician table",
    ),
    (
        "requested",
        &[FieldType::Datetime],
        false,
        "the request date and time",
    ),
];

const PATIENT: &[(&str, &[FieldType], &str)] = &[
    ("nhs_number", &[FieldType::NhsNumber], "the NHS number"),
    ("mrn", &[FieldType::String, FieldType::Id], "the local MRN"),
    ("family", &[FieldType::String], "the family name"),
    ("birth_date", &[FieldType::Date], "the birth date"),
    ("sex", &[FieldType::Code], "the administrative sex"),
];

/// Inbound message codes that create the ServiceRequest in each model.
fn service_request_codes(model: MessagingModel) -> &'static [&'static str] {
    match model {
        MessagingModel::Basic => &[],
        MessagingModel::Scheduling => &["SIU"],
        MessagingModel::Referral => &["REF"],
        MessagingModel::Orders => &["ORM", "OMG"],
    }
}

fn check_service_request(spec: &LoadedSpec, out: &mut Vec<Diagnostic>) {
    let s = &spec.spec;
    let codes = service_request_codes(s.model);
    for (message_type, binding) in &s.inbound {
        let Some((code, _)) = split_message_type(message_type) else {
            continue;
        };
        if !codes.contains(&code) {
            continue;
        }
        let Some(record) = s.records.get(&binding.record) else {
            continue;
        };
        let pointer = format!("/records/{}", escape_pointer(&binding.record));
        let mut wanted: Vec<(&str, &[FieldType], bool, &str)> = SERVICE_REQUEST.to_vec();
        if s.model == MessagingModel::Referral {
            wanted.push((
                "reason",
                &[FieldType::String, FieldType::Code],
                false,
                "the reason for referral",
            ));
        }
        let context = format!("{message_type} creates a ServiceRequest");
        for (name, types, needs_table, what) in wanted {
            require_field(
                spec,
                record,
                &pointer,
                name,
                types,
                needs_table,
                what,
                &context,
                out,
            );
        }
        match record.get("patient").and_then(|f| f.record.as_ref()) {
            None => out.push(spec.at_key(
                Diagnostic::error(
                    "service-request-missing",
                    format!("{context}: record `{}` has no `patient` (a nested patient record)", binding.record),
                )
                .detail("add `patient: { record: patient }`; the minimum dataset is listed in docs/spec.md"),
                &pointer,
            )),
            Some(patient_name) => {
                if let Some(patient) = s.records.get(patient_name) {
                    let patient_pointer = format!("/records/{}", escape_pointer(patient_name));
                    for (name, types, what) in PATIENT {
                        require_field(
                            spec, patient, &patient_pointer, name, types, false, what, &context, out,
                        );
                    }
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn require_field(
    spec: &LoadedSpec,
    record: &Record,
    pointer: &str,
    name: &str,
    types: &[FieldType],
    needs_table: bool,
    what: &str,
    context: &str,
    out: &mut Vec<Diagnostic>,
) {
    let type_list: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
    let Some(field) = record.get(name) else {
        out.push(spec.at_key(
            Diagnostic::error(
                "service-request-missing",
                format!("{context}: missing `{name}` ({what})"),
            )
            .detail(format!(
                "the ServiceRequest minimum dataset (docs/spec.md) needs `{name}`: type {}{}, required: true",
                type_list.join(" or "),
                if needs_table { ", with a table" } else { "" }
            )),
            pointer,
        ));
        return;
    };
    let field_pointer = format!("{pointer}/{}", escape_pointer(name));
    if let Some(kind) = field.kind
        && !types.contains(&kind)
    {
        out.push(spec.at_value(
            Diagnostic::error(
                "service-request-type",
                format!(
                    "{context}: `{name}` must be {}, not {}",
                    type_list.join(" or "),
                    kind.as_str()
                ),
            ),
            &format!("{field_pointer}/type"),
        ));
    }
    if !field.required {
        out.push(spec.at_key(
            Diagnostic::error(
                "service-request-optional",
                format!("{context}: `{name}` must be `required: true`"),
            )
            .detail("a ServiceRequest without its minimum dataset cannot be created; the message must be answered AE 101 instead"),
            &field_pointer,
        ));
    }
    if needs_table && field.table.is_none() {
        out.push(spec.at_key(
            Diagnostic::error(
                "service-request-table",
                format!("{context}: `{name}` must be checked against one of the customer's tables"),
            )
            .detail("use `table: NAME` with a table under `tables:`, so a value outside the customer's code list is an error, not a guess"),
            &field_pointer,
        ));
    }
}
