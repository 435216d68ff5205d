//! `tests/spec_tests.rs`: one `#[test]` per spec test, run against the generated crate in the
//! TEST environment.

use proc_macro2::Literal;
use quote::quote;

use super::names::{Namer, fn_base, ident};
use super::tokens::{doc, inner_doc, raw_string, render_file};
use super::{CodegenError, Context};
use crate::spec::AckCodeName;

/// Renders `tests/spec_tests.rs`.
pub fn render(ctx: &Context<'_>) -> Result<String, CodegenError> {
    let spec = ctx.spec;
    let lib = ident(&ctx.lib_name);
    let mut names = Namer::default();
    let mut tests = Vec::new();
    for test in &spec.tests {
        let name = ident(&names.unique(&fn_base(&test.name), "_"));
        let d = doc(&format!(
            "{}\n\n`{}`, expecting {:?}.",
            test.name, test.message, test.expect.ack
        ));
        let file = format!("/../../{}", ctx.repo_path(&test.message));
        let ack = match test.expect.ack {
            AckCodeName::AA => "AA",
            AckCodeName::AE => "AE",
            AckCodeName::AR => "AR",
            AckCodeName::CA => "CA",
            AckCodeName::CE => "CE",
            AckCodeName::CR => "CR",
        };
        let record_check = match &test.expect.record {
            Some(expected) => {
                let text = serde_json::to_string(expected).map_err(|e| {
                    CodegenError::new(format!("test {:?}: the expected record: {e}", test.name))
                })?;
                let json = raw_string(&text)?;
                quote! {
                    let expected: serde_json::Value = serde_json::from_str(#json)
                        .expect("the expected record is JSON");
                    let expected = expected.as_object().expect("the expected record is an object");
                    let record = outcome.record.clone().unwrap_or_default();
                    let matched = record_matches(expected, &record);
                    assert_eq!(matched, Ok(()), "{outcome:#?}");
                }
            }
            None => quote! {},
        };
        let error_check = test.expect.error.as_ref().map(|expected| {
            let code = Literal::u16_unsuffixed(expected.code);
            let location = &expected.location;
            let message = format!(
                "expected error {} at {}: {{outcome:#?}}",
                expected.code,
                location.replace('{', "{{").replace('}', "}}")
            );
            quote! {
                let found = outcome.errors.iter().any(|error| {
                    error.code == #code
                        && error
                            .location
                            .as_deref()
                            .is_some_and(|at| location_matches(#location, at))
                });
                assert!(found, #message);
            }
        });
        tests.push(quote! {
            #d
            #[test]
            fn #name() {
                let path = concat!(env!("CARGO_MANIFEST_DIR"), #file);
                let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
                let outcome = #lib::SPEC.process(&bytes, EnvName::Test)
                    .unwrap_or_else(|e| panic!("{path}: {e}"));
                assert_eq!(outcome.ack.as_str(), #ack, "{outcome:#?}");
                #record_check
                #error_check
            }
        });
    }
    let any_record = spec.tests.iter().any(|t| t.expect.record.is_some());
    let any_error = spec.tests.iter().any(|t| t.expect.error.is_some());
    let mut uses = Vec::new();
    if !tests.is_empty() {
        uses.push(quote! { use hl7gw_runtime::config::EnvName; });
    }
    match (any_record, any_error) {
        (true, true) => {
            uses.push(quote! { use hl7gw_runtime::inbound::{location_matches, record_matches}; })
        }
        (true, false) => uses.push(quote! { use hl7gw_runtime::inbound::record_matches; }),
        (false, true) => uses.push(quote! { use hl7gw_runtime::inbound::location_matches; }),
        (false, false) => {}
    }
    let docs = inner_doc(&format!(
        "The spec tests of `{}`, run against this crate in the TEST environment: the ACK code,\n\
         the expected record values and the expected error of each. Message files are read\n\
         relative to the repository.",
        ctx.spec_path
    ));
    let tokens = quote! {
        #![cfg_attr(rustfmt, rustfmt::skip)]
        #docs

        #(#uses)*

        #(#tests)*
    };
    render_file(&ctx.header(), tokens, "spec_tests.rs")
}
