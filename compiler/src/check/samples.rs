//! Spec-test files: every referenced message file exists and parses as HL7, and every key a
//! test expects in the record is one the record has (a misspelt key would read as null and
//! a test expecting null would pass).

use hl7gw_runtime::hl7::{Message, ParseOptions, parse_batch};
use hl7gw_runtime::mapping::{CANCEL_KEY, is_cancellation};
use serde_json::{Map, Value};

use crate::diag::Diagnostic;
use crate::spec::loader::escape_pointer;
use crate::spec::{FieldType, LoadedSpec, SpecTest};

pub(super) fn check(spec: &LoadedSpec, out: &mut Vec<Diagnostic>) {
    let mut names = std::collections::HashMap::new();
    for (i, test) in spec.spec.tests.iter().enumerate() {
        let pointer = format!("/tests/{i}/message");
        if let Some(first) = names.insert(test.name.as_str(), i) {
            out.push(
                spec.at_value(
                    Diagnostic::error(
                        "test-duplicate-name",
                        format!("two tests are named `{}`", test.name),
                    )
                    .detail(format!(
                        "test names identify results; the other is test {}",
                        first + 1
                    )),
                    &format!("/tests/{i}/name"),
                ),
            );
        }
        let path = spec.resolve(&test.message);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                out.push(
                    spec.at_value(
                        Diagnostic::error(
                            "test-message-missing",
                            format!("cannot read `{}`: {e}", test.message),
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
                if let Some(message) = batch.messages.first() {
                    check_expected_keys(spec, i, test, message, out);
                }
            }
            Ok(batch) => out.push(spec.at_value(
                Diagnostic::error(
                    "test-message-count",
                    format!(
                        "`{}` holds {} messages; a spec test takes one",
                        test.message,
                        batch.messages.len()
                    ),
                ),
                &pointer,
            )),
            Err(e) => out.push(spec.at_value(
                Diagnostic::error(
                    "test-message-unparsable",
                    format!("`{}` is not a readable HL7 message: {e}", test.message),
                ),
                &pointer,
            )),
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
        match record.get(key) {
            None => {
                let fields: Vec<String> = record.keys().cloned().collect();
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
    let suggestion = crate::schema::closest(key, fields)
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
