//! Spec-test files: every referenced message file exists and parses as HL7.

use hl7gw_runtime::hl7::{ParseOptions, parse_batch};

use crate::diag::Diagnostic;
use crate::spec::LoadedSpec;

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
