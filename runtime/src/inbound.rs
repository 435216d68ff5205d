//! What a receiver decides about one inbound message, before and after mapping: the checks
//! that lead to AR (wrong environment, version, receiver or type), the mapping errors that
//! lead to AE, and AA otherwise; CA/CE/CR only when the environment's acknowledgement is
//! `as_requested` and the message asks for enhanced mode.
//!
//! Generated gateways and the compiler's spec-test runner both decide through
//! [`evaluate`], with their own mapping function, so they answer every message the same.

use serde::Serialize;

use crate::config::{Acknowledgement, EnvName, Environment};
use crate::hl7::ack::error_code;
use crate::hl7::{AckCode, AckError, Location, Message, Severity};
use crate::mapping::MappingError;

/// What the receiving side accepts.
#[derive(Debug, Clone)]
pub struct InboundPolicy<'p> {
    /// Message types declared inbound, `TYPE^TRIGGER`.
    pub declared: Vec<&'p str>,
    /// The MSH-11 processing id this environment accepts (`T` or `P`).
    pub processing_id: &'p str,
    /// MSH-5 expected, when the spec names it.
    pub receiving_application: Option<&'p str>,
    /// MSH-6 expected, when the spec names it.
    pub receiving_facility: Option<&'p str>,
    /// MSH-12 versions accepted; empty accepts any.
    pub versions: Vec<&'p str>,
    /// Which ACK codes to answer with.
    pub acknowledgement: Acknowledgement,
}

impl<'p> InboundPolicy<'p> {
    /// What the receiver of `environment` accepts: the `declared` inbound types, the
    /// environment's processing id, and MSH-5/MSH-6 when the spec names them. The one place
    /// a policy is made from a configuration: the gateway, `gw-<code> map`, the generated
    /// spec tests and `hl7gw test` all come here.
    pub fn for_environment(declared: Vec<&'p str>, environment: &'p Environment) -> Self {
        let receive = environment.receive.as_ref();
        Self {
            declared,
            processing_id: &environment.processing_id,
            receiving_application: receive.and_then(|r| r.receiving_application.as_deref()),
            receiving_facility: receive.and_then(|r| r.receiving_facility.as_deref()),
            versions: environment.accept_versions.iter().map(|v| &**v).collect(),
            acknowledgement: environment.acknowledgement,
        }
    }

    /// Whether `message_type` (`TYPE^TRIGGER`) is declared inbound.
    pub fn declares(&self, message_type: &str) -> bool {
        self.declared.contains(&message_type)
    }

    /// The type as metrics and logs may carry it: the declared type itself, or
    /// [`UNDECLARED`] for anything else, so a sender's text never becomes a label.
    pub fn metric_label<'t>(&self, message_type: &'t str) -> &'t str {
        if self.declares(message_type) {
            message_type
        } else {
            UNDECLARED
        }
    }

    /// An environment the spec does not describe: nothing is accepted, and a message is
    /// rejected for its processing id first (`T` or `P` by the environment's name).
    pub fn nothing(name: EnvName) -> Self {
        Self {
            declared: Vec::new(),
            processing_id: name.processing_id().as_str(),
            receiving_application: None,
            receiving_facility: None,
            versions: Vec::new(),
            acknowledgement: Acknowledgement::default(),
        }
    }
}

/// The metric label of every message type the spec does not declare inbound.
pub const UNDECLARED: &str = "undeclared";

/// The longest text of a sender's value (an undeclared MSH-9) that the store, a log line or
/// an ACK text carries.
pub const SHOWN_CHARS: usize = 40;

/// The longest MSH-10 accepted: beyond it the message is refused (AR 102 at MSH-10) before
/// its key reaches the store or the logs. 199 is HL7's largest length for MSH-10 (v2.7+).
pub const MAX_CONTROL_ID_CHARS: usize = 199;

/// `text` cut to [`SHOWN_CHARS`] characters, with `…` when cut.
pub fn shown(text: &str) -> String {
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// One error as reported in the outcome (and the ACK's ERR).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutcomeError {
    /// HL7 table 0357 code.
    pub code: u16,
    /// Where, as a path (`PID-3[2].1`), when known.
    pub location: Option<String>,
    /// What was wrong.
    pub message: String,
}

/// The decision about one message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// MSA-1, serialised as its two-letter code.
    #[serde(serialize_with = "ack_as_code")]
    pub ack: AckCode,
    /// `TYPE^TRIGGER` from MSH-9.
    pub message_type: String,
    /// Errors for the ACK's ERR segments.
    pub errors: Vec<OutcomeError>,
    /// The mapped record, as JSON, when mapping succeeded.
    pub record: Option<serde_json::Value>,
}

impl Outcome {
    /// The errors as ACK errors (with locations parsed back), for building the ACK.
    pub fn ack_errors(&self) -> Vec<AckError> {
        self.errors
            .iter()
            .map(|e| AckError {
                code: e.code,
                severity: Severity::Error,
                location: e
                    .location
                    .as_deref()
                    .and_then(|l| crate::hl7::Path::parse(l).ok())
                    .map(|p| p.nominal_location()),
                message: e.message.clone(),
            })
            .collect()
    }

    /// The ACK code.
    pub fn ack_code(&self) -> AckCode {
        self.ack
    }
}

fn ack_as_code<S: serde::Serializer>(code: &AckCode, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(code.as_str())
}

fn header_location(field: usize) -> Location {
    Location {
        segment: "MSH".into(),
        occurrence: 1,
        field,
        repetition: 1,
        component: None,
        subcomponent: None,
    }
}

/// Decides about one parsed message. `map` turns the message into the record for its type,
/// or returns every mapping error; it runs only when the message passed the AR checks.
pub fn evaluate(
    message: &Message<'_>,
    policy: &InboundPolicy<'_>,
    map: impl FnOnce(&str, &Message<'_>) -> Result<serde_json::Value, Vec<MappingError>>,
) -> Outcome {
    let mode = policy.acknowledgement.mode_for(message);
    let message_type = format!("{}^{}", message.message_code(), message.trigger_event());
    let message_type = if policy.declares(&message_type) {
        message_type
    } else {
        shown(&message_type)
    };
    let reject = |code: u16, field: usize, text: String| Outcome {
        ack: mode.code_for(AckCode::ApplicationReject),
        message_type: message_type.clone(),
        errors: vec![OutcomeError {
            code,
            location: Some(header_location(field).to_string()),
            message: text,
        }],
        record: None,
    };
    let processing_id = message.processing_id();
    if processing_id != policy.processing_id {
        return reject(
            error_code::UNSUPPORTED_PROCESSING_ID,
            11,
            format!(
                "processing id {:?} is not accepted here; this environment takes {:?}",
                shown(&processing_id),
                policy.processing_id
            ),
        );
    }
    let version = message.header_text(12, 1);
    if !policy.versions.is_empty() && !policy.versions.contains(&version.trim()) {
        return reject(
            error_code::UNSUPPORTED_VERSION_ID,
            12,
            format!(
                "HL7 version {:?} is not accepted here; accepted: {}",
                shown(&version),
                policy.versions.join(", ")
            ),
        );
    }
    for (field, expected, what) in [
        (5, policy.receiving_application, "receiving application"),
        (6, policy.receiving_facility, "receiving facility"),
    ] {
        if let Some(expected) = expected {
            let got = message.header_text(field, 1);
            if got != expected {
                return reject(
                    error_code::APPLICATION_INTERNAL_ERROR,
                    field,
                    format!(
                        "{what} {:?} is not this gateway ({expected:?})",
                        shown(&got)
                    ),
                );
            }
        }
    }
    if !policy.declares(&message_type) {
        let code_known = policy
            .declared
            .iter()
            .any(|d| d.split('^').next() == Some(&*message.message_code()));
        return reject(
            if code_known {
                error_code::UNSUPPORTED_EVENT_CODE
            } else {
                error_code::UNSUPPORTED_MESSAGE_TYPE
            },
            9,
            format!(
                "message type {message_type} is not accepted; accepted: {}",
                policy.declared.join(", ")
            ),
        );
    }
    match map(&message_type, message) {
        Ok(record) => Outcome {
            ack: mode.code_for(AckCode::ApplicationAccept),
            message_type,
            errors: Vec::new(),
            record: Some(record),
        },
        Err(errors) => Outcome {
            ack: mode.code_for(AckCode::ApplicationError),
            message_type,
            errors: errors.iter().map(outcome_error).collect(),
            record: None,
        },
    }
}

fn outcome_error(e: &MappingError) -> OutcomeError {
    OutcomeError {
        code: e.code,
        location: Some(e.location.to_string()),
        message: format!("{}: {}", e.field, e.message),
    }
}

/// The same shape for errors reported elsewhere (the intake's 422).
impl From<&MappingError> for OutcomeError {
    fn from(e: &MappingError) -> Self {
        outcome_error(e)
    }
}

/// Whether an expected error location (`PID-3`, `OBR-4.1`: no filters) names the actual one
/// (`PID-3[1].1`): same segment, occurrence and field, and every level the expectation gives
/// is equal. Spec tests use it so `PID-3` matches an error inside PID-3.
pub fn location_matches(expected: &str, actual: &str) -> bool {
    let (Ok(e), Ok(a)) = (
        crate::hl7::Path::parse(expected),
        crate::hl7::Path::parse(actual),
    ) else {
        return false;
    };
    let (e, a) = (e.nominal_location(), a.nominal_location());
    let rep_given = expected.contains('[') && !expected.starts_with(&format!("{}[", e.segment));
    e.segment == a.segment
        && e.occurrence == a.occurrence
        && e.field == a.field
        && (!rep_given || e.repetition == a.repetition)
        && e.component.is_none_or(|c| Some(c) == a.component)
        && e.subcomponent.is_none_or(|s| Some(s) == a.subcomponent)
}

/// The first expected value a mapped record does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: expected {expected}, got {got}")]
pub struct RecordMismatch {
    /// The dotted key (`patient.nhs_number`).
    pub key: String,
    /// The value the test expects.
    pub expected: Box<serde_json::Value>,
    /// The value mapped (`null` when absent).
    pub got: Box<serde_json::Value>,
}

/// Compares a mapped record with a spec test's expected values: every expected key must be
/// present and equal; a JSON string also matches a number or boolean with the same text.
/// Returns the first difference.
pub fn record_matches(
    expected: &serde_json::Map<String, serde_json::Value>,
    actual: &serde_json::Value,
) -> Result<(), RecordMismatch> {
    for (key, want) in expected {
        let got = actual.get(key).unwrap_or(&serde_json::Value::Null);
        let same = match (want, got) {
            (serde_json::Value::Object(w), g @ serde_json::Value::Object(_)) => {
                record_matches(w, g).map_err(|e| RecordMismatch {
                    key: format!("{key}.{}", e.key),
                    ..e
                })?;
                true
            }
            (serde_json::Value::String(w), serde_json::Value::String(g)) => w == g,
            (w, serde_json::Value::String(g)) => {
                let w_text = w.to_string();
                g.as_str() == w_text.as_str()
            }
            (w, g) => w == g,
        };
        if !same {
            return Err(RecordMismatch {
                key: key.clone(),
                expected: Box::new(want.clone()),
                got: Box::new(got.clone()),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_locations_match_more_precise_ones() {
        assert!(location_matches("PID-3", "PID-3.1"));
        assert!(location_matches("PID-3", "PID-3[2].1"));
        assert!(location_matches("OBR-4.1", "OBR-4.1"));
        assert!(!location_matches("OBR-4.2", "OBR-4.1"));
        assert!(!location_matches("PID-3", "PID-4"));
        assert!(!location_matches("OBX[2]-5", "OBX-5"));
        assert!(location_matches("PID-3[2]", "PID-3[2].1"));
        assert!(!location_matches("PID-3[2]", "PID-3.1"));
    }

    fn policy(acknowledgement: Acknowledgement) -> InboundPolicy<'static> {
        InboundPolicy {
            declared: vec!["ADT^A28"],
            processing_id: "T",
            receiving_application: None,
            receiving_facility: None,
            versions: vec!["2.3", "2.3.1"],
            acknowledgement,
        }
    }

    fn decide(acknowledgement: Acknowledgement, msh9: &str, version: &str) -> Outcome {
        let raw =
            format!("MSH|^~\\&|TIE|RX1|EMS|EMS|20240101||{msh9}|C1|T|{version}|||AL|NE\rPID|1\r");
        let message = Message::parse(raw.as_bytes()).unwrap();
        evaluate(&message, &policy(acknowledgement), |_, _| {
            Ok(serde_json::json!({}))
        })
    }

    #[test]
    fn application_mode_answers_aa_whatever_msh_15_16_ask() {
        let outcome = decide(Acknowledgement::Application, "ADT^A28", "2.3");
        assert_eq!(outcome.ack, AckCode::ApplicationAccept);
        let outcome = decide(Acknowledgement::AsRequested, "ADT^A28", "2.3");
        assert_eq!(outcome.ack, AckCode::CommitAccept);
        let outcome = decide(Acknowledgement::AsRequested, "ADT^A28", "2.5");
        assert_eq!(outcome.ack, AckCode::CommitReject);
    }

    #[test]
    fn a_version_not_accepted_is_rejected_203_at_msh_12() {
        assert_eq!(
            decide(Acknowledgement::Application, "ADT^A28", "2.3.1").ack,
            AckCode::ApplicationAccept
        );
        let outcome = decide(Acknowledgement::Application, "ADT^A28", "2.5.1");
        assert_eq!(outcome.ack, AckCode::ApplicationReject);
        assert_eq!(outcome.errors[0].code, 203);
        assert_eq!(outcome.errors[0].location.as_deref(), Some("MSH-12"));
        assert!(outcome.errors[0].message.contains("2.3, 2.3.1"));
    }

    #[test]
    fn an_undeclared_type_is_shown_cut_and_labelled_undeclared() {
        let long = format!("ADT^{}", "X".repeat(100_000));
        let outcome = decide(Acknowledgement::Application, &long, "2.3");
        assert_eq!(outcome.ack, AckCode::ApplicationReject);
        assert_eq!(outcome.errors[0].code, 201);
        assert!(outcome.message_type.chars().count() <= SHOWN_CHARS + 1);
        assert!(outcome.errors[0].message.len() < 200);
        let policy = policy(Acknowledgement::Application);
        assert_eq!(policy.metric_label(&long), UNDECLARED);
        assert_eq!(policy.metric_label("ADT^A28"), "ADT^A28");
    }

    #[test]
    fn records_match_on_the_expected_keys() {
        let actual = serde_json::json!({"a": "1", "b": {"c": "x"}, "d": null});
        let ok = serde_json::json!({"a": 1, "b": {"c": "x"}});
        assert!(record_matches(ok.as_object().unwrap(), &actual).is_ok());
        let bad = serde_json::json!({"b": {"c": "y"}});
        assert_eq!(
            record_matches(bad.as_object().unwrap(), &actual)
                .unwrap_err()
                .to_string(),
            "b.c: expected \"y\", got \"x\""
        );
    }
}
