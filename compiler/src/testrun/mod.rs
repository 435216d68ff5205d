//! Spec tests without building the generated crate: each test's message goes through the
//! same runtime primitives (`hl7gw_runtime::mapping`) and the same inbound decision
//! (`hl7gw_runtime::inbound::evaluate`) as the generated gateway, driven by the spec's data
//! instead of generated code. The JSON contract of a mapped record is documented in
//! docs/spec.md; the generated crate produces the same.

mod build;
mod dynamic;

use hl7gw_runtime::hl7::{Message, ParseError, ParseOptions};
use hl7gw_runtime::inbound::{InboundPolicy, Outcome, evaluate, location_matches, record_matches};
use serde::Serialize;

use crate::spec::{EnvName, LoadedSpec, OutboundTest, SpecTest};

pub use dynamic::map_inbound;

/// Builds an outbound message of a declared type from its record as JSON, after the MSH in
/// `header`, from the spec's data, as the generated crate's `SPEC.build_outbound` builds it
/// (before its read-back check); an error names the field.
pub fn build_outbound(
    spec: &crate::spec::Spec,
    message_type: &str,
    record: &serde_json::Map<String, serde_json::Value>,
    header: &hl7gw_runtime::mapping::OutboundHeader<'_>,
) -> Result<Vec<u8>, String> {
    let plan = crate::codegen::plan::Plan::new(spec).map_err(|e| e.to_string())?;
    build::build(&plan, message_type, record, header)
}

/// The result of one spec test.
#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    /// The test's name.
    pub name: String,
    /// The message file, as written in the spec.
    pub message: String,
    /// What the gateway decided (absent when the message did not parse).
    pub outcome: Option<Outcome>,
    /// Why the test failed; empty when it passed.
    pub failures: Vec<String>,
}

impl TestResult {
    /// A test not run yet: no outcome, no failures.
    fn new(name: &str, message: &str) -> Self {
        Self {
            name: name.to_string(),
            message: message.to_string(),
            outcome: None,
            failures: Vec::new(),
        }
    }

    /// True when every expectation held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Why a message could not be decided about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    /// The spec does not describe the environment.
    #[error("the spec has no {0} environment")]
    NoEnvironment(&'static str),
    /// The message does not parse.
    #[error("{0}")]
    Parse(#[from] ParseError),
}

/// Runs one message through the spec's inbound handling in an environment: the
/// environment as the generated crate holds it, and the runtime's policy and decision.
pub fn process(loaded: &LoadedSpec, env: EnvName, bytes: &[u8]) -> Result<Outcome, ProcessError> {
    let spec = &loaded.spec;
    let environment = spec
        .environments
        .get(env)
        .map(|e| crate::codegen::runtime_environment(spec, env, e))
        .ok_or(ProcessError::NoEnvironment(env.as_str()))?;
    let message = Message::parse_with(bytes, &ParseOptions::lenient())?;
    let declared: Vec<&str> = spec.inbound.keys().map(String::as_str).collect();
    let policy = InboundPolicy::for_environment(declared, &environment);
    Ok(evaluate(&message, &policy, |message_type, message| {
        map_inbound(spec, message_type, message)
    }))
}

/// Runs every spec test of a spec, in order, in the TEST environment: the inbound tests,
/// then the outbound ones.
pub fn run_spec_tests(loaded: &LoadedSpec) -> Vec<TestResult> {
    let inbound = loaded.spec.tests.iter().map(|test| run_one(loaded, test));
    let outbound = loaded
        .spec
        .outbound_tests
        .iter()
        .map(|test| run_outbound(loaded, test));
    inbound.chain(outbound).collect()
}

/// One outbound test: the record builds (as the generated crate builds it) into the
/// expected message, field by field but MSH-7 and MSH-10; the message maps back to the
/// record; and it has every field and segment the dictionary requires for the version.
fn run_outbound(loaded: &LoadedSpec, test: &OutboundTest) -> TestResult {
    let mut result = TestResult::new(&test.name, &test.message);
    result.failures = outbound_failures(loaded, test).unwrap_or_else(|why| vec![why]);
    result
}

fn outbound_failures(loaded: &LoadedSpec, test: &OutboundTest) -> Result<Vec<String>, String> {
    let spec = &loaded.spec;
    let environment = spec
        .environments
        .get(EnvName::Test)
        .map(|e| crate::codegen::runtime_environment(spec, EnvName::Test, e))
        .ok_or("the spec has no test environment")?;
    let send = environment
        .send
        .as_ref()
        .map_or(hl7gw_runtime::config::SendHeader::DEFAULT, |s| {
            s.header.clone()
        });
    let header =
        hl7gw_runtime::mapping::test_header(&send, &environment.processing_id, &spec.hl7_version);
    let built = build_outbound(spec, &test.build, &test.record, &header)
        .map_err(|e| format!("the record does not build: {e}"))?;
    let path = loaded.resolve(&test.message);
    let expected =
        std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut failures = hl7gw_runtime::hl7::compare::differences_in_bytes(&expected, &built)?;
    let message = Message::parse_with(&built, &ParseOptions::lenient())
        .map_err(|e| format!("the built message does not parse: {e}"))?;
    let record = spec
        .outbound
        .get(&test.build)
        .map(|b| b.record.clone())
        .unwrap_or_default();
    match dynamic::map_named(spec, &record, &message) {
        Ok(back) => {
            if let Err(diff) = record_matches(&test.record, &back) {
                failures.push(format!(
                    "the built message maps back to another record: {diff}"
                ));
            }
        }
        Err(errors) => failures.extend(
            errors
                .iter()
                .map(|e| format!("the built message does not map back: {e}")),
        ),
    }
    if let Some(dictionary) = crate::dict::version(&spec.hl7_version) {
        failures.extend(
            dictionary
                .missing_required(&message)
                .into_iter()
                .map(|m| format!("v{} requires it: {m}", spec.hl7_version)),
        );
    }
    Ok(failures)
}

fn run_one(loaded: &LoadedSpec, test: &SpecTest) -> TestResult {
    let mut result = TestResult::new(&test.name, &test.message);
    let path = loaded.resolve(&test.message);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            result
                .failures
                .push(format!("cannot read {}: {e}", path.display()));
            return result;
        }
    };
    let outcome = match process(loaded, EnvName::Test, &bytes) {
        Ok(o) => o,
        Err(e) => {
            result
                .failures
                .push(format!("the message does not parse: {e}"));
            return result;
        }
    };
    result.failures = check_expectations(test, &outcome);
    result.outcome = Some(outcome);
    result
}

/// Compares an outcome with a test's expectations; returns what differs.
pub fn check_expectations(test: &SpecTest, outcome: &Outcome) -> Vec<String> {
    let mut failures = Vec::new();
    let want_ack = format!("{:?}", test.expect.ack);
    if outcome.ack.as_str() != want_ack {
        let errors: Vec<String> = outcome
            .errors
            .iter()
            .map(|e| {
                format!(
                    "{} at {}: {}",
                    e.code,
                    e.location.as_deref().unwrap_or("?"),
                    e.message
                )
            })
            .collect();
        failures.push(format!(
            "expected ACK {want_ack}, got {}{}",
            outcome.ack.as_str(),
            if errors.is_empty() {
                String::new()
            } else {
                format!(" ({})", errors.join("; "))
            }
        ));
    }
    if let Some(expected) = &test.expect.record {
        match &outcome.record {
            None => failures.push("expected a mapped record, got none".into()),
            Some(record) => {
                if let Err(diff) = record_matches(expected, record) {
                    failures.push(format!("record differs: {diff}"));
                }
            }
        }
    }
    if let Some(expected) = &test.expect.error {
        let found = outcome.errors.iter().any(|e| {
            e.code == expected.code
                && e.location
                    .as_deref()
                    .is_some_and(|l| location_matches(&expected.location, l))
        });
        if !found {
            let got: Vec<String> = outcome
                .errors
                .iter()
                .map(|e| format!("{} at {}", e.code, e.location.as_deref().unwrap_or("?")))
                .collect();
            failures.push(format!(
                "expected error {} at {}, got {}",
                expected.code,
                expected.location,
                if got.is_empty() {
                    "no error".into()
                } else {
                    got.join(", ")
                }
            ));
        }
    }
    failures
}
