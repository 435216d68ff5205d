//! Spec tests: every referenced message file exists and parses as HL7, and the expected ACK
//! code is one the TEST environment's acknowledgement mode can answer.

use hl7gw_runtime::config::{Acknowledgement, defaults};
use hl7gw_runtime::hl7::{ParseOptions, parse_batch};

use crate::diag::Diagnostic;
use crate::spec::{AckCodeName, LoadedSpec};

pub(super) fn check(spec: &LoadedSpec, out: &mut Vec<Diagnostic>) {
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
            Ok(batch) if batch.messages.len() == 1 => {}
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
