//! `tests/outbound.rs` (only for a spec with outbound types): per outbound message type, a
//! representative record written by the generator from the plan, as JSON, must read into the
//! record type, serialize back to the same JSON, and build through the crate's `SPEC` (`build_outbound`) into a
//! message that maps back to the same record; likewise a record of its required fields only.
//!
//! The JSON text is written here by hand, field by field in spec order, so that it does not
//! depend on how `serde_json` orders map keys in the compiler's build.

use base64::Engine;
use proc_macro2::TokenStream;
use quote::quote;

use super::names::{Namer, fn_base, ident};
use super::plan::{Kind, Plan, RecordPlan};
use super::tokens::{doc, inner_doc, raw_string, render_file};
use super::{CodegenError, Context};

/// Renders `tests/outbound.rs`, or nothing when the spec sends nothing.
pub fn render(ctx: &Context<'_>, plan: &Plan) -> Result<Option<String>, CodegenError> {
    if plan.outbound.is_empty() {
        return Ok(None);
    }
    let lib = ident(&ctx.lib_name);
    let version = &ctx.spec.hl7_version;
    let mut names = Namer::default();
    let mut tests: Vec<TokenStream> = Vec::new();
    for out in &plan.outbound {
        let Some(record) = plan.records.get(out.record_index) else {
            continue;
        };
        let type_name = ident(&record.type_name);
        let message_type = &out.message_type;
        let base = fn_base(message_type);
        for (full, suffix, what) in [
            (true, "every_field", "every field set"),
            (
                false,
                "required_fields",
                "only the required fields, the others left out",
            ),
        ] {
            let name = ident(&names.unique(&format!("{base}_record_with_{suffix}"), "_"));
            let json = raw_string(&record_json(plan, record, full, 0))?;
            let d = doc(&format!(
                "`{message_type}` built from the `{}` record with {what}:\nJSON → record → JSON{}, and \
                 `SPEC.build_outbound` builds a message that\nmaps back to the record.",
                record.name,
                if full { " unchanged" } else { " → record" }
            ));
            tests.push(quote! {
                #d
                #[test]
                fn #name() {
                    round_trip(#message_type, #json, records::#type_name::from_hl7, #full);
                }
            });
        }
    }
    for test in &ctx.spec.outbound_tests {
        let name = ident(&names.unique(&fn_base(&test.name), "_"));
        let d = doc(&format!(
            "{}\n\nThe `{}` record builds into `{}`, field by field but MSH-7 and MSH-10.",
            test.name, test.build, test.message
        ));
        let file = format!("/../../{}", ctx.repo_path(&test.message));
        let text = serde_json::to_string(&test.record).map_err(|e| {
            CodegenError::new(format!("outbound test {:?}: the record: {e}", test.name))
        })?;
        let json = raw_string(&text)?;
        let message_type = &test.build;
        tests.push(quote! {
            #d
            #[test]
            fn #name() {
                let path = concat!(env!("CARGO_MANIFEST_DIR"), #file);
                let expected = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
                let record: serde_json::Value = serde_json::from_str(#json).expect("the record is JSON");
                let differences = #lib::SPEC
                    .outbound_test(hl7gw_runtime::config::EnvName::Test, #message_type, &record, &expected)
                    .unwrap_or_else(|e| panic!("{e}"));
                assert!(differences.is_empty(), "{}", differences.join("\n"));
            }
        });
    }
    let mut undeclared = String::from("ZZZ^Z99");
    while plan.outbound.iter().any(|o| o.message_type == undeclared) {
        undeclared.push('9');
    }
    let expected = format!("message type {undeclared} is not declared outbound");
    let docs = inner_doc(&format!(
        "Outbound records of `{}` as JSON: for each outbound message type, a\n\
         representative record (every field set, then the required fields only) reads from\n\
         JSON, serializes back, and builds through `SPEC.build_outbound` into a message that\n\
         maps back to it. The records are written by the generator from the spec's types.\n\n\
         Then the spec's outbound tests: each record builds into its expected message.",
        ctx.spec_path
    ));
    let tokens = quote! {
        #![cfg_attr(rustfmt, rustfmt::skip)]
        #docs

        #![allow(clippy::expect_used, clippy::panic)]

        use #lib::records;
        use hl7gw_runtime::hl7::Message;
        use hl7gw_runtime::mapping::{MappingError, OutboundHeader};

        /// The MSH of the built messages.
        const HEADER: OutboundHeader<'static> = OutboundHeader {
            sending_application: "EMS",
            sending_facility: "EMS-HOST",
            receiving_application: "TIE",
            receiving_facility: "TRUST",
            timestamp: "20260101120000",
            control_id: "OUT-1",
            processing_id: "T",
            version: #version,
        };

        /// The checks of one record: `json` reads into `T`; serialized back it is `json` again
        /// (`exact`) or reads back into the same record; built into `message_type` it maps back
        /// to the same record.
        fn round_trip<T>(
            message_type: &str,
            json: &str,
            read: fn(&Message<'_>) -> Result<T, Vec<MappingError>>,
            exact: bool,
        )
        where
            T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
        {
            let json: serde_json::Value = serde_json::from_str(json).expect("the record is JSON");
            let record: T = serde_json::from_value(json.clone()).unwrap_or_else(|e| panic!("{e}"));
            let again = serde_json::to_value(&record).expect("the record serializes");
            if exact {
                assert_eq!(again, json, "JSON → record → JSON");
            }
            let back: T = serde_json::from_value(again).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(back, record, "record → JSON → record");
            let bytes = #lib::SPEC.build_outbound(message_type, &json, &HEADER)
                .unwrap_or_else(|e| panic!("{message_type}: {e}"));
            let built = Message::parse(&bytes).unwrap_or_else(|e| panic!("{e}"));
            let mapped = read(&built);
            assert_eq!(mapped, Ok(record), "JSON → HL7 → record");
        }

        #(#tests)*

        /// A type the spec does not send is refused, naming the declared ones.
        #[test]
        fn an_undeclared_type_is_refused() {
            let error = #lib::SPEC.build_outbound(#undeclared, &serde_json::json!({}), &HEADER)
                .expect_err("an undeclared type builds nothing")
                .to_string();
            assert!(error.starts_with(#expected), "{error}");
        }
    };
    render_file(&ctx.header(), tokens, "outbound.rs").map(Some)
}

/// The representative record as JSON text: every field (`full`) or the required ones, nested
/// records as objects, keys in spec order. `depth` stops a record nesting itself.
fn record_json(plan: &Plan, record: &RecordPlan, full: bool, depth: usize) -> String {
    let mut members = Vec::new();
    for field in record.members() {
        let value = match field.kind {
            Kind::Nested { record_index } => match plan.records.get(record_index) {
                Some(nested) if depth < 8 => record_json(plan, nested, full, depth + 1),
                _ => continue,
            },
            _ if !full && !field.required => continue,
            _ if field.repeated => {
                let values: Vec<String> = (0..2).map(|i| value_json(plan, field, i)).collect();
                format!("[{}]", values.join(","))
            }
            _ => value_json(plan, field, 0),
        };
        members.push(format!("{}:{value}", json_string(&field.name)));
    }
    format!("{{{}}}", members.join(","))
}

/// The `index`th representative value of a field, as JSON text in the form it serializes to.
fn value_json(plan: &Plan, field: &super::plan::FieldPlan, index: usize) -> String {
    let pick = |values: &[&str]| -> String {
        json_string(values.get(index).or(values.first()).copied().unwrap_or(""))
    };
    match &field.kind {
        Kind::Text { max_len } => {
            let text = if index == 0 {
                field.name.clone()
            } else {
                format!("{} {}", field.name, index + 1)
            };
            let cut: String = match max_len {
                Some(max) => text.chars().take(*max as usize).collect(),
                None => text,
            };
            json_string(&cut)
        }
        Kind::Date => pick(&["1970-01-31", "1970-02"]),
        Kind::DateTime => pick(&["2026-01-01T12:05:30.25+01:00", "2026-01-02T08:00"]),
        Kind::NhsNumber => pick(&["9449305552", "9449310475"]),
        Kind::Number => pick(&["12.50", "-3"]),
        Kind::Code { enum_index } => {
            let values: Vec<&str> = plan
                .enums
                .get(*enum_index)
                .map(|e| {
                    e.entries
                        .iter()
                        .map(|(code, meaning, _)| {
                            if e.from_map {
                                meaning.as_str()
                            } else {
                                code.as_str()
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            pick(&values)
        }
        Kind::Base64 {
            media, max_bytes, ..
        } => {
            let bytes = format!("{} data {}", field.name, index + 1);
            let cut = bytes
                .as_bytes()
                .get(
                    ..usize::try_from(*max_bytes)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len()),
                )
                .unwrap_or_default();
            let data = base64::engine::general_purpose::STANDARD.encode(cut);
            format!(
                "{{\"media_type\":{},\"data\":{}}}",
                json_string(media),
                json_string(&data)
            )
        }
        Kind::Nested { .. } => String::from("null"),
    }
}

/// A JSON string literal.
fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| String::from("\"\""))
}
