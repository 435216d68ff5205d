//! Spec tests without building the generated crate: each test's message goes through the
//! same runtime primitives (`hl7gw_runtime::mapping`) and the same inbound decision
//! (`hl7gw_runtime::inbound::evaluate`) as the generated gateway, driven by the spec's data
//! instead of generated code. The JSON contract of a mapped record is documented in
//! docs/spec.md; the generated crate produces the same.

mod dynamic;

use hl7gw_runtime::hl7::{Message, ParseError, ParseOptions};
use hl7gw_runtime::inbound::{InboundPolicy, Outcome, evaluate, location_matches, record_matches};
use serde::Serialize;

use crate::spec::{EnvName, LoadedSpec, SpecTest};

pub use dynamic::map_inbound;

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

/// Runs every spec test of a spec, in order, in the TEST environment.
pub fn run_spec_tests(loaded: &LoadedSpec) -> Vec<TestResult> {
    loaded
        .spec
        .tests
        .iter()
        .map(|test| run_one(loaded, test))
        .collect()
}

fn run_one(loaded: &LoadedSpec, test: &SpecTest) -> TestResult {
    let mut result = TestResult {
        name: test.name.clone(),
        message: test.message.clone(),
        outcome: None,
        failures: Vec::new(),
    };
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
