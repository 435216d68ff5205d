//! Spec-test files: every referenced message file exists and parses as HL7, for inbound
//! (`tests`) and outbound (`outbound_tests`) tests alike; an outbound test builds a type the
//! spec declares outbound; an inbound test's expected ACK code is one the TEST environment's
//! acknowledgement mode can answer; and every key a test expects in a record is one the
//! record has (a misspelt key would read as null and a test expecting null would pass).

use hl7gw_runtime::config::{Acknowledgement, defaults};
use hl7gw_runtime::hl7::{Message, ParseOptions, parse_batch};
use hl7gw_runtime::mapping::{CANCEL_KEY, is_cancellation};
use serde_json::{Map, Value};

use crate::diag::Diagnostic;
use crate::spec::loader::escape_pointer;
use crate::spec::{AckCodeName, FieldType, LoadedSpec, SpecTest};

pub(super) fn check(spec: &LoadedSpec, out: &mut Vec<Diagnostic>) {
    let inbound = spec
        .spec
        .tests
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("/tests/{i}"), &t.name, &t.message, Some(t)));
    let outbound = spec
        .spec
        .outbound_tests
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("/outbound_tests/{i}"), &t.name, &t.message, None));
    let mut names = std::collections::HashMap::new();
    // Spec tests run in TEST (`hl7gw test`, the generated crate's tests).
    let mode = spec
        .spec
        .environments
        .test
        .as_ref()
        .and_then(|e| e.acknowledgement)
        .or(spec.spec.acknowledgement)
        .unwrap_or(defaults::ACKNOWLEDGEMENT);
    for (i, test) in spec.spec.tests.iter().enumerate() {
        let commit_code = matches!(
            test.expect.ack,
            AckCodeName::CA | AckCodeName::CE | AckCodeName::CR
        );
        if commit_code && mode == Acknowledgement::Application {
            out.push(
                spec.at_value(
                    Diagnostic::error(
                        "test-ack-mode",
                        format!(
                            "`{:?}` is never answered in TEST: its acknowledgement mode is `application`",
                            test.expect.ack
                        ),
                    )
                    .detail(
                        "the gateway answers AA/AE/AR whatever MSH-15/MSH-16 ask; expect the \
                         application code, or set `acknowledgement: as_requested` for an engine \
                         that wants commit ACKs",
                    ),
                    &format!("/tests/{i}/expect/ack"),
                ),
            );
        }
    }
    for (i, test) in spec.spec.outbound_tests.iter().enumerate() {
        if let Some(binding) = spec.spec.outbound.get(&test.build) {
            check_record_keys(
                spec,
                &binding.record,
                &test.record,
                &format!("/outbound_tests/{i}/record"),
                out,
            );
        } else {
            let declared: Vec<&str> = spec.spec.outbound.keys().map(String::as_str).collect();
            out.push(
                spec.at_value(
                    Diagnostic::error(
                        "test-build-undeclared",
                        format!("`{}` is not declared outbound", test.build),
                    )
                    .detail(format!(
                        "an outbound test builds one of the spec's outbound types: {}",
                        if declared.is_empty() {
                            "none".to_string()
                        } else {
                            declared.join(", ")
                        }
                    )),
                    &format!("/outbound_tests/{i}/build"),
                ),
            );
        }
    }
    for (i, (base, name, message, inbound_test)) in inbound.chain(outbound).enumerate() {
        let pointer = format!("{base}/message");
        if let Some(first) = names.insert(name.as_str(), i) {
            out.push(
                spec.at_value(
                    Diagnostic::error(
                        "test-duplicate-name",
                        format!("two tests are named `{name}`"),
                    )
                    .detail(format!(
                        "test names identify results; the other is test {}",
                        first + 1
                    )),
                    &format!("{base}/name"),
                ),
            );
        }
        let path = spec.resolve(message);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                out.push(
                    spec.at_value(
                        Diagnostic::error(
                            "test-message-missing",
                            format!("cannot read `{message}`: {e}"),
                        )
                        .detail(format!(
                            "paths are relative to the spec file; looked at {}",
                            path.display()
                        )),
                        &pointer,
                    ),
                );
                continue;
            }
        };
        match parse_batch(&bytes, &ParseOptions::lenient()) {
            Ok(batch) if batch.messages.len() == 1 => {
                // Inbound tests come first, so `i` is the test's index in `tests`.
                if let (Some(test), Some(message)) = (inbound_test, batch.messages.first()) {
                    check_expected_keys(spec, i, test, message, out);
                }
            }
            Ok(batch) => out.push(spec.at_value(
                Diagnostic::error(
                    "test-message-count",
                    format!(
                        "`{message}` holds {} messages; a spec test takes one",
                        batch.messages.len()
                    ),
                ),
                &pointer,
            )),
            Err(e) => out.push(spec.at_value(
                Diagnostic::error(
                    "test-message-unparsable",
                    format!("`{message}` is not a readable HL7 message: {e}"),
                ),
                &pointer,
            )),
        }
    }
}

/// Every key of an outbound test's record names a member of the record (nested records
/// checked inside); a fixed `value:` field is not a member. Reported at the key.
fn check_record_keys(
    spec: &LoadedSpec,
    record: &str,
    json: &serde_json::Map<String, serde_json::Value>,
    pointer: &str,
    out: &mut Vec<Diagnostic>,
) {
    let Some(fields) = spec.spec.records.get(record) else {
        return;
    };
    for (key, value) in json {
        let at = format!("{pointer}/{}", escape_pointer(key));
        match fields.get(key) {
            Some(field) if field.value.is_none() => {
                if let (Some(nested), serde_json::Value::Object(inner)) = (&field.record, value) {
                    check_record_keys(spec, nested, inner, &at, out);
                }
            }
            _ => {
                let members: Vec<&str> = fields
                    .iter()
                    .filter(|(_, f)| f.value.is_none())
                    .map(|(name, _)| name.as_str())
                    .collect();
                out.push(
                    spec.at_key(
                        Diagnostic::error(
                            "test-record-unknown-key",
                            format!("record `{record}` has no field `{key}`"),
                        )
                        .detail(format!("its fields: {}", members.join(", "))),
                        &at,
                    ),
                );
            }
        }
    }
}

/// Each key of `expect.record` names a field of the record the test's message maps to
/// (nested records by their field, a cancellation's record under `cancel`).
fn check_expected_keys(
    spec: &LoadedSpec,
    index: usize,
    test: &SpecTest,
    message: &Message<'_>,
    out: &mut Vec<Diagnostic>,
) {
    let Some(expected) = &test.expect.record else {
        return;
    };
    let message_type = format!("{}^{}", message.message_code(), message.trigger_event());
    let Some(binding) = spec.spec.inbound.get(&message_type) else {
        return; // an undeclared type maps no record; the test's ACK says what it gets
    };
    let pointer = format!("/tests/{index}/expect/record");
    match binding
        .cancel
        .as_deref()
        .filter(|_| is_cancellation(message))
    {
        Some(cancel) => {
            for (key, value) in expected {
                let at = format!("{pointer}/{}", escape_pointer(key));
                if key == CANCEL_KEY {
                    check_keys(spec, cancel, value, &at, out);
                } else {
                    out.push(unknown_key(
                        spec,
                        key,
                        &format!("the cancellation ({message_type}, ORC-1 CA or DC)"),
                        &[CANCEL_KEY.to_string()],
                        &at,
                    ));
                }
            }
        }
        None => check_object(spec, &binding.record, expected, &pointer, out),
    }
}

fn check_keys(
    spec: &LoadedSpec,
    record: &str,
    value: &Value,
    pointer: &str,
    out: &mut Vec<Diagnostic>,
) {
    if let Value::Object(object) = value {
        check_object(spec, record, object, pointer, out);
    }
}

fn check_object(
    spec: &LoadedSpec,
    record_name: &str,
    expected: &Map<String, Value>,
    pointer: &str,
    out: &mut Vec<Diagnostic>,
) {
    let Some(record) = spec.spec.records.get(record_name) else {
        return; // `record-unknown` already
    };
    for (key, value) in expected {
        let at = format!("{pointer}/{}", escape_pointer(key));
        // A fixed `value:` field is written into built messages only: never in a mapped record.
        match record.get(key).filter(|field| field.value.is_none()) {
            None => {
                let fields: Vec<String> = record
                    .iter()
                    .filter(|(_, field)| field.value.is_none())
                    .map(|(name, _)| name.clone())
                    .collect();
                out.push(unknown_key(
                    spec,
                    key,
                    &format!("record `{record_name}`"),
                    &fields,
                    &at,
                ));
            }
            Some(field) => {
                if let Some(nested) = &field.record {
                    check_keys(spec, nested, value, &at, out);
                } else if value.is_object() && field.kind != Some(FieldType::Base64) {
                    out.push(spec.at_value(
                        Diagnostic::error(
                            "test-expect-shape",
                            format!("`{key}` is a value of record `{record_name}`, not a nested record"),
                        )
                        .detail("expect its value as text (or a list for a repeated field)"),
                        &at,
                    ));
                }
            }
        }
    }
}

fn unknown_key(
    spec: &LoadedSpec,
    key: &str,
    what: &str,
    fields: &[String],
    pointer: &str,
) -> Diagnostic {
    let suggestion = crate::diag::closest(key, fields.iter().map(String::as_str))
        .map(|best| format!("did you mean `{best}`? "))
        .unwrap_or_default();
    spec.at_key(
        Diagnostic::error(
            "test-expect-unknown-key",
            format!("`{key}` is not a field of {what}"),
        )
        .detail(format!(
            "{suggestion}a key the record does not have reads as null, so the test could pass on a misspelling; fields: {}",
            fields.join(", ")
        )),
        pointer,
    )
}
