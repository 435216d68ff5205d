//! HL7 checks against the embedded dictionary (`crate::dict`): the versions exist, every
//! declared message type exists in it, every mapped path names a segment that can occur in
//! the messages using the record, a field and component that exist, and a datatype that
//! fits the field's type (a `date` from a CX field is an error).

use std::collections::{BTreeSet, HashMap};

use hl7gw_runtime::hl7::{Path, RepetitionSelector, SegmentSelector};

use super::mapping::{span_inside, split_message_type};
use crate::diag::Diagnostic;
use crate::dict::{self, VersionDict};
use crate::spec::loader::escape_pointer;
use crate::spec::{FieldType, LoadedSpec};

pub(super) fn check(spec: &LoadedSpec, out: &mut Vec<Diagnostic>) {
    let s = &spec.spec;
    for (i, version) in s.accept_versions.iter().enumerate() {
        if dict::version(version).is_none() {
            out.push(
                spec.at_value(
                    Diagnostic::error(
                        "hl7-version-unknown",
                        format!("HL7 version `{version}` in accept_versions is not known"),
                    )
                    .detail(format!("known versions: {}", dict::versions().join(", "))),
                    &format!("/accept_versions/{i}"),
                ),
            );
        }
    }
    let Some(vd) = dict::version(&s.hl7_version) else {
        out.push(
            spec.at_value(
                Diagnostic::error(
                    "hl7-version-unknown",
                    format!("HL7 version `{}` is not known", s.hl7_version),
                )
                .detail(format!("known versions: {}", dict::versions().join(", "))),
                "/hl7_version",
            ),
        );
        return;
    };
    for (direction, bindings) in [("inbound", &s.inbound), ("outbound", &s.outbound)] {
        for (message_type, binding) in bindings {
            let pointer = format!("/{direction}/{}", escape_pointer(message_type));
            let Some((code, trigger)) = split_message_type(message_type) else {
                continue;
            };
            if !vd.message_type_exists(code, trigger) {
                out.push(spec.at_key(
                    Diagnostic::error(
                        "hl7-message-type-unknown",
                        format!("{message_type} does not exist in HL7 v{}", vd.version()),
                    )
                    .detail("check the message code and trigger event against the customer's interface specification"),
                    &pointer,
                ));
                continue;
            }
            if let Some(merge) = &binding.merge
                && let Ok(path) = Path::parse(merge)
            {
                check_path(
                    spec,
                    vd,
                    &path,
                    None,
                    std::slice::from_ref(message_type),
                    &format!("{pointer}/merge"),
                    out,
                );
            }
        }
    }
    let users = record_users(spec);
    for (record_name, record) in &s.records {
        let messages: Vec<String> = users
            .get(record_name.as_str())
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default();
        for (field_name, field) in record {
            let Some(source) = &field.from else { continue };
            let field_pointer = format!(
                "/records/{}/{}",
                escape_pointer(record_name),
                escape_pointer(field_name)
            );
            let from_pointer = format!("{field_pointer}/from");
            let mut segments = Vec::new();
            for (index, text) in source.paths().iter().enumerate() {
                let Ok(path) = Path::parse(text) else {
                    continue;
                };
                let pointer = source.pointer(&from_pointer, index);
                check_path(spec, vd, &path, field.kind, &messages, &pointer, out);
                if field.kind == Some(FieldType::NhsNumber) {
                    check_identifier(spec, vd, &path, &pointer, out);
                }
                segments.push(path.segment.to_string());
            }
            if field.required {
                check_required_segments(spec, vd, &segments, &messages, &field_pointer, out);
            }
        }
    }
}

/// A required field must be readable in every message type bound to its record: a message
/// whose structure carries none of the field's segments would be answered AE 101 every
/// time. Reported at the field's name, naming the message type.
fn check_required_segments(
    spec: &LoadedSpec,
    vd: &VersionDict,
    segments: &[String],
    messages: &[String],
    pointer: &str,
    out: &mut Vec<Diagnostic>,
) {
    if segments.is_empty() || segments.iter().any(|s| s.starts_with('Z')) {
        return;
    }
    let structures: Vec<(&String, &str, bool)> = messages
        .iter()
        .filter_map(|message_type| {
            let (code, trigger) = split_message_type(message_type)?;
            let id = vd.structure_for(code, trigger)?;
            let structure = vd.structure(id)?;
            let carries = segments.iter().any(|s| structure.may_contain(s));
            Some((message_type, id, carries))
        })
        .collect();
    // When no message carries them, `hl7-segment-not-in-message` has said so already.
    if !structures.iter().any(|(_, _, carries)| *carries) {
        return;
    }
    let places = segments.join(" or ");
    for (message_type, id, _) in structures.iter().filter(|(_, _, carries)| !carries) {
        out.push(spec.at_key(
            Diagnostic::error(
                "hl7-required-segment-absent",
                format!(
                    "a required field read from {places} cannot be found in {message_type} ({id}): HL7 v{} has no {places} segment there",
                    vd.version()
                ),
            )
            .detail(format!(
                "every {message_type} would be answered AE 101: make the field optional, add a fallback path into a segment {message_type} carries (`from: [{}, …]`), or bind {message_type} to a record of its own",
                segments.first().map_or("", String::as_str)
            )),
            pointer,
        ));
    }
}

/// Datatypes an NHS number can be read from: an identifier (CX, or CK before v2.3) or text.
const IDENTIFIER_TYPES: &[&str] = &["CX", "CK", "ST"];

/// An `nhs_number` is read from an identifier field (PID-3, PID-2, …), never from a field
/// whose datatype says it holds something else.
fn check_identifier(
    spec: &LoadedSpec,
    vd: &VersionDict,
    path: &Path,
    pointer: &str,
    out: &mut Vec<Diagnostic>,
) {
    if path.segment.starts_with('Z') {
        return;
    }
    let Ok(datatype) = vd.component_datatype(&path.segment, path.field, None, None) else {
        return; // an unknown field is `hl7-path-unknown` already
    };
    if datatype == dict::VARIES || IDENTIFIER_TYPES.contains(&datatype) {
        return;
    }
    let text = path.to_string();
    out.push(
        Diagnostic::error(
            "hl7-nhs-number-not-identifier",
            format!(
                "`{text}` is read as an NHS number, but {}-{} is {datatype} in HL7 v{}, not an identifier",
                path.segment,
                path.field,
                vd.version()
            ),
        )
        .detail("NHS numbers travel in an identifier field (CX), e.g. `PID-3[CX.5=NH].1`, or PID-2 in v2.3 feeds")
        .at(
            &spec.source.file,
            span_inside(spec, pointer, 0, text.len()),
            Some(pointer),
        ),
    );
}

/// Record name → the message types that use it, directly or through nesting.
fn record_users(spec: &LoadedSpec) -> HashMap<&str, BTreeSet<String>> {
    let s = &spec.spec;
    let mut users: HashMap<&str, BTreeSet<String>> = HashMap::new();
    for bindings in [&s.inbound, &s.outbound] {
        for (message_type, binding) in bindings {
            let mut stack = vec![binding.record.as_str()];
            stack.extend(binding.cancel.as_deref());
            let mut seen = BTreeSet::new();
            while let Some(name) = stack.pop() {
                if !seen.insert(name) {
                    continue;
                }
                users.entry(name).or_default().insert(message_type.clone());
                if let Some(record) = s.records.get(name) {
                    stack.extend(record.values().filter_map(|f| f.record.as_deref()));
                }
            }
        }
    }
    users
}

/// The segment meant by an unknown id: the nearest one the record's messages carry, else the
/// nearest in the version.
fn nearest_segment<'v>(vd: &'v VersionDict, segment: &str, messages: &[String]) -> Option<&'v str> {
    let carried: BTreeSet<&str> = messages
        .iter()
        .filter_map(|m| split_message_type(m))
        .filter_map(|(code, trigger)| vd.structure(vd.structure_for(code, trigger)?))
        .flat_map(|st| st.segments.iter().map(String::as_str))
        .collect();
    crate::diag::closest(segment, carried)
        .or_else(|| crate::diag::closest(segment, vd.segment_ids()))
}

/// How to fix a path into a segment the record's message types never carry: the message
/// types of the spec that do carry it, to bind the record to instead.
fn segment_fix(spec: &LoadedSpec, vd: &VersionDict, segment: &str) -> String {
    let s = &spec.spec;
    let carriers: Vec<&str> = s
        .inbound
        .keys()
        .chain(s.outbound.keys())
        .filter(|m| {
            split_message_type(m)
                .and_then(|(code, trigger)| vd.structure_for(code, trigger))
                .and_then(|id| vd.structure(id))
                .is_some_and(|st| st.may_contain(segment))
        })
        .map(String::as_str)
        .collect();
    let bind = if carriers.is_empty() {
        format!(
            "bind the record to a message type whose structure has {segment} (none declared in this spec has it)"
        )
    } else {
        format!(
            "bind the record to a message type that carries {segment} ({} in this spec) instead",
            carriers.join(", ")
        )
    };
    format!(
        "the record is used by these message types, and a path into a segment they never carry can never find a value. To fix it, read the value from a segment these messages carry, or {bind}; if the Trust's engine adds {segment} to these messages outside the standard, agree a Z-segment with the Trust and map that"
    )
}

fn check_path(
    spec: &LoadedSpec,
    vd: &VersionDict,
    path: &Path,
    kind: Option<FieldType>,
    messages: &[String],
    pointer: &str,
    out: &mut Vec<Diagnostic>,
) {
    let version = vd.version();
    let text = path.to_string();
    let whole = |d: Diagnostic| {
        d.at(
            &spec.source.file,
            span_inside(spec, pointer, 0, text.len()),
            Some(pointer),
        )
    };
    let segment = &*path.segment;
    if segment.starts_with('Z') {
        // Z-segments are the customer's own; the dictionary cannot know them.
        return;
    }
    if vd.segment(segment).is_none() {
        let advice = "check the segment identifier; customer-specific segments start with Z";
        out.push(whole(
            Diagnostic::error(
                "hl7-path-unknown",
                format!("segment {segment} does not exist in HL7 v{version}"),
            )
            .detail(match nearest_segment(vd, segment, messages) {
                Some(near) => format!("did you mean {near}? {advice}"),
                None => advice.to_owned(),
            }),
        ));
        return;
    }
    let structures: Vec<(String, String)> = messages
        .iter()
        .filter_map(|m| {
            let (code, trigger) = split_message_type(m)?;
            Some((m.clone(), vd.structure_for(code, trigger)?.to_string()))
        })
        .collect();
    let known: Vec<&(String, String)> = structures
        .iter()
        .filter(|(_, id)| vd.structure(id).is_some())
        .collect();
    if !known.is_empty()
        && !known
            .iter()
            .any(|(_, id)| vd.structure(id).is_some_and(|st| st.may_contain(segment)))
    {
        let names: Vec<String> = known.iter().map(|(m, id)| format!("{m} ({id})")).collect();
        out.push(whole(
            Diagnostic::error(
                "hl7-segment-not-in-message",
                format!(
                    "segment {segment} does not occur in {} in HL7 v{version}",
                    names.join(", ")
                ),
            )
            .detail(segment_fix(spec, vd, segment)),
        ));
    }
    if let Some(SegmentSelector::Where(filter)) = &path.segment_selector
        && let Err(e) =
            vd.component_datatype(segment, filter.field, filter.component, filter.subcomponent)
    {
        out.push(whole(Diagnostic::error(
            "hl7-path-unknown",
            format!("segment filter of `{text}`: {e}"),
        )));
    }
    let field_type = match vd.component_datatype(segment, path.field, None, None) {
        Ok(t) => t,
        Err(e) => {
            out.push(whole(Diagnostic::error(
                "hl7-path-unknown",
                format!("`{text}`: {e}"),
            )));
            return;
        }
    };
    if let Some(RepetitionSelector::Where(filter)) = &path.repetition {
        if filter.datatype != field_type && field_type != dict::VARIES {
            out.push(whole(
                Diagnostic::error(
                    "hl7-filter-datatype",
                    format!(
                        "`{text}` filters on {}, but {segment}-{} is {field_type} in HL7 v{version}",
                        filter.datatype, path.field
                    ),
                )
                .detail(format!("write the filter as [{field_type}.N=value]")),
            ));
        } else if let Err(e) = vd.component_datatype(
            segment,
            path.field,
            Some(filter.component),
            filter.subcomponent,
        ) {
            out.push(whole(Diagnostic::error(
                "hl7-path-unknown",
                format!("filter of `{text}`: {e}"),
            )));
        }
    }
    let datatype =
        match vd.component_datatype(segment, path.field, path.component, path.subcomponent) {
            Ok(t) => t,
            Err(e) => {
                out.push(whole(Diagnostic::error(
                    "hl7-path-unknown",
                    format!("`{text}`: {e}"),
                )));
                return;
            }
        };
    // TS.1 holds the timestamp itself (ST in some versions' tables).
    let timestamp_value =
        field_type == "TS" && path.component == Some(1) && path.subcomponent.is_none();
    if let Some(kind) = kind
        && !(timestamp_value && matches!(kind, FieldType::Date | FieldType::Datetime))
    {
        check_type_fits(vd, &text, datatype, kind, whole, out);
    }
}

/// Datatypes that carry a date or a date and time.
const DATE_TYPES: &[&str] = &["DT", "DTM", "TS"];
/// Datatypes that carry a number.
const NUMBER_TYPES: &[&str] = &["NM", "SI"];

fn check_type_fits(
    vd: &VersionDict,
    text: &str,
    datatype: &str,
    kind: FieldType,
    whole: impl Fn(Diagnostic) -> Diagnostic,
    out: &mut Vec<Diagnostic>,
) {
    if datatype == dict::VARIES {
        return; // OBX-5: OBX-2 names the type at run time
    }
    let primitive = vd.datatype(datatype).is_none_or(|d| d.is_primitive());
    let fits = match kind {
        FieldType::Date | FieldType::Datetime => DATE_TYPES.contains(&datatype),
        FieldType::Number => NUMBER_TYPES.contains(&datatype) || primitive,
        _ => primitive,
    };
    if fits {
        if kind == FieldType::Number && !NUMBER_TYPES.contains(&datatype) {
            out.push(whole(
                Diagnostic::warning(
                    "hl7-type-loose",
                    format!("`{text}` is {datatype}, mapped as a number"),
                )
                .detail("every value must be numeric, or the message is answered AE 102"),
            ));
        }
        return;
    }
    let hint = match vd.datatype(datatype) {
        Some(d) if !d.is_primitive() => {
            let first = d
                .component(1)
                .map(|c| {
                    format!(
                        ", e.g. {text}.1 ({})",
                        c.name.to_lowercase().replace('_', " ")
                    )
                })
                .unwrap_or_default();
            format!(
                "{datatype} is a composite type: name the component that holds the value{first}"
            )
        }
        _ => format!(
            "a {} needs a field of type {}",
            kind.as_str(),
            match kind {
                FieldType::Date | FieldType::Datetime => DATE_TYPES.join(", "),
                _ => "a simple type such as ST, ID or IS".into(),
            }
        ),
    };
    out.push(whole(
        Diagnostic::error(
            "hl7-type-mismatch",
            format!(
                "`{text}` is {datatype} in HL7 v{}, which cannot be read as {}",
                vd.version(),
                kind.as_str()
            ),
        )
        .detail(hint),
    ));
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use time::{Date, Month};

    use crate::check::{CheckOptions, check_spec};
    use crate::spec::loader::load_spec_text;

    /// An unknown segment suggests the one meant, preferring those the record's messages carry.
    #[test]
    fn an_unknown_segment_suggests_the_one_meant() {
        let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs/demo.yaml");
        let text = std::fs::read_to_string(&demo).unwrap_or_default();
        for (from, to, meant) in [
            (
                "{ from: PID-7,",
                "{ from: PXD-7,",
                Some("did you mean PID?"),
            ),
            (
                "{ from: MRG-1.1,",
                "{ from: MGR-1.1,",
                Some("did you mean MRG?"),
            ),
            ("{ from: PID-7,", "{ from: QQQ-7,", None),
        ] {
            assert!(text.contains(from));
            let Ok(loaded) = load_spec_text(text.replacen(from, to, 1), &demo, "demo.yaml") else {
                unreachable!("{to} loads");
            };
            let today = Date::from_calendar_date(2026, Month::November, 27).unwrap_or(Date::MIN);
            let report = check_spec(&loaded, &CheckOptions { env: None, today });
            let Some(d) = report
                .diagnostics
                .iter()
                .find(|d| d.code == "hl7-path-unknown")
            else {
                unreachable!("{to}: {:?}", report.diagnostics);
            };
            match meant {
                Some(meant) => assert!(d.detail.starts_with(meant), "{to}: {}", d.detail),
                None => assert!(!d.detail.contains("did you mean"), "{to}: {}", d.detail),
            }
        }
    }

    /// A path into a segment the record's messages never carry says how to fix it, naming
    /// the spec's message types that do carry the segment.
    #[test]
    fn a_segment_absent_from_the_messages_says_how_to_fix_it() {
        let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs/demo.yaml");
        let text = std::fs::read_to_string(&demo).unwrap_or_default();
        let from = "prior_mrn:  { from: MRG-1.1,";
        assert!(text.contains(from));
        let loaded = load_spec_text(
            text.replacen(from, "prior_mrn:  { from: OBR-2.1,", 1),
            &demo,
            "demo.yaml",
        );
        let Ok(loaded) = loaded else {
            unreachable!("the changed demo spec loads: {loaded:?}");
        };
        let today = Date::from_calendar_date(2026, Month::November, 27).unwrap_or(Date::MIN);
        let report = check_spec(&loaded, &CheckOptions { env: None, today });
        let found: Vec<_> = report
            .diagnostics
            .iter()
            .filter(|d| d.code == "hl7-segment-not-in-message")
            .collect();
        assert_eq!(found.len(), 1, "{:?}", report.diagnostics);
        let d = found[0];
        assert_eq!(
            d.summary,
            "segment OBR does not occur in ADT^A40 (ADT_A39) in HL7 v2.4"
        );
        assert!(
            d.detail
                .contains("read the value from a segment these messages carry"),
            "{}",
            d.detail
        );
        assert!(
            d.detail.contains(
                "bind the record to a message type that carries OBR (ORM^O01, ORR^O02, ORU^R01 in this spec)"
            ),
            "{}",
            d.detail
        );
    }
}
