//! One value describes a generated gateway: [`GatewaySpec`]. A generated crate holds only
//! this data (its customer, spec, environments and message bindings) and the records; the
//! runtime does the work with it: the receiver's decision ([`GatewaySpec::process`],
//! [`GatewaySpec::evaluate`]), the command line ([`crate::cli::main`]), the gateway
//! ([`crate::app::serve`]) and the intake's builder ([`GatewaySpec::build_outbound`]).
//!
//! A binding ties a message type (`ADT^A28`) to functions over the generated records; the
//! message type is looked up here, once, instead of in a `match` in every generated crate.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use crate::config::{EnvName, Environment, SendHeader, Text};
use crate::hl7::{Message, ParseError, ParseOptions};
use crate::inbound::{InboundPolicy, Outcome, evaluate};
use crate::mapping::{self, MappingError, MessageShape, OutboundHeader};

/// A message → its record as JSON, or every mapping error.
pub type MapFn = fn(&Message<'_>) -> Result<serde_json::Value, Vec<MappingError>>;

/// A record as JSON → a message of the shape given, after the MSH in the header, checked to
/// read back as sent (generated crates point this at [`mapping::build_from_json`] for their
/// record).
pub type BuildFn = fn(
    &MessageShape,
    &serde_json::Value,
    &OutboundHeader<'_>,
) -> Result<Vec<u8>, mapping::OutboundError>;

/// An inbound message type and how its record is read.
#[derive(Debug, Clone)]
pub struct InboundBinding {
    /// `TYPE^TRIGGER`.
    pub message_type: Text,
    /// The message → its record as JSON.
    pub map: MapFn,
}

/// An outbound message type: how the Trust reads it and how it is built from JSON.
#[derive(Debug, Clone)]
pub struct OutboundBinding {
    /// The type (`TYPE^TRIGGER`), its structure, and what it carries besides the record.
    pub shape: MessageShape,
    /// A message of this type → its record as JSON, as the receiving end reads it.
    pub map: MapFn,
    /// The record as JSON → the message.
    pub build: BuildFn,
}

/// Why an outbound message could not be built from its record as JSON.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// The spec does not declare the type outbound.
    #[error("message type {message_type} is not declared outbound; declared: {}", list_or_none(.declared))]
    Undeclared {
        /// The type asked for.
        message_type: String,
        /// The declared outbound types.
        declared: Vec<String>,
    },
    /// The JSON does not read as the record (`patient.nhs_number: …`), the record does not
    /// fit the message, or the built message does not read back as the record sent.
    #[error(transparent)]
    Record(#[from] mapping::OutboundError),
}

fn list_or_none(types: &[String]) -> String {
    if types.is_empty() {
        String::from("none")
    } else {
        types.join(", ")
    }
}

/// A generated gateway: what its spec decides. Generated crates write it as a `const`
/// (every text and list borrowed); tests clone it and change an environment.
#[derive(Debug, Clone)]
pub struct GatewaySpec {
    /// The package, `gw-<code>`: the binary's name.
    pub package: Text,
    /// The customer's code.
    pub customer_code: Text,
    /// The customer's name.
    pub customer_name: Text,
    /// The spec, relative to the workspace root.
    pub spec_path: Text,
    /// SHA-256 of the spec's bytes when the crate was generated.
    pub spec_sha256: Text,
    /// The HL7 version the customer's engine speaks (MSH-12).
    pub hl7_version: Text,
    /// The messaging model.
    pub model: Text,
    /// The EMS domain the endpoints are named under.
    pub domain: Text,
    /// The workspace root as the crate was built (`CARGO_MANIFEST_DIR/../..`): the spec's
    /// folder is found from it unless the operator names another.
    pub workspace_root: Text,
    /// The TEST environment, when the spec describes it.
    pub test: Option<Environment>,
    /// The PROD environment, when the spec describes it.
    pub prod: Option<Environment>,
    /// Inbound types, in spec order.
    pub inbound: Cow<'static, [InboundBinding]>,
    /// Outbound types, in spec order.
    pub outbound: Cow<'static, [OutboundBinding]>,
}

impl GatewaySpec {
    /// An environment by name, when the spec describes it.
    pub fn environment(&self, name: EnvName) -> Option<&Environment> {
        match name {
            EnvName::Test => self.test.as_ref(),
            EnvName::Prod => self.prod.as_ref(),
        }
    }

    /// The environment slot by name, to replace it (tests point a side elsewhere).
    pub fn environment_mut(&mut self, name: EnvName) -> &mut Option<Environment> {
        match name {
            EnvName::Test => &mut self.test,
            EnvName::Prod => &mut self.prod,
        }
    }

    /// Inbound types, `TYPE^TRIGGER`, in spec order.
    pub fn inbound_types(&self) -> Vec<&str> {
        self.inbound.iter().map(|b| &*b.message_type).collect()
    }

    /// Outbound types, `TYPE^TRIGGER`, in spec order.
    pub fn outbound_types(&self) -> Vec<&str> {
        self.outbound
            .iter()
            .map(|b| &*b.shape.message_type)
            .collect()
    }

    /// The spec's folder, as seen from the crate's sources.
    pub fn spec_dir(&self) -> PathBuf {
        let spec = Path::new(&*self.workspace_root).join(&*self.spec_path);
        spec.parent().map(Path::to_path_buf).unwrap_or_default()
    }

    /// What the receiver of an environment accepts; an environment the spec does not
    /// describe accepts nothing.
    pub fn inbound_policy(&self, env: EnvName) -> InboundPolicy<'_> {
        match self.environment(env) {
            Some(environment) => self.policy_for(environment),
            None => InboundPolicy::nothing(env),
        }
    }

    /// What a receiver running `environment` (this spec's or one derived from it) accepts.
    pub fn policy_for<'a>(&'a self, environment: &'a Environment) -> InboundPolicy<'a> {
        InboundPolicy::for_environment(self.inbound_types(), environment)
    }

    /// Maps an inbound message of a declared type to its record, as JSON; or every mapping
    /// error (an undeclared type is one, at MSH-9).
    pub fn map_inbound(
        &self,
        message_type: &str,
        message: &Message<'_>,
    ) -> Result<serde_json::Value, Vec<MappingError>> {
        match self.inbound.iter().find(|b| b.message_type == message_type) {
            Some(binding) => (binding.map)(message),
            None => Err(vec![mapping::unsupported_type(message_type)]),
        }
    }

    /// Maps a message of a declared outbound type to its record, as JSON: what the receiving
    /// end reads from a message this gateway sends; or every mapping error.
    pub fn map_outbound(
        &self,
        message_type: &str,
        message: &Message<'_>,
    ) -> Result<serde_json::Value, Vec<MappingError>> {
        match self
            .outbound
            .iter()
            .find(|b| b.shape.message_type == message_type)
        {
            Some(binding) => (binding.map)(message),
            None => Err(vec![mapping::unsupported_type(message_type)]),
        }
    }

    /// Builds a message of a declared outbound type from its record as JSON (the shape the
    /// record serializes to), after the MSH in `header`: the intake's builder. The record is
    /// read strictly (a key not in the record, a value of the wrong type or form, or a code
    /// not in its list is an error naming the field) and the built message must map back
    /// to the same record under the spec's rules, or the error names the field that does
    /// not. An undeclared type is an error listing the declared ones.
    pub fn build_outbound(
        &self,
        message_type: &str,
        record: &serde_json::Value,
        header: &OutboundHeader<'_>,
    ) -> Result<Vec<u8>, OutboundError> {
        match self
            .outbound
            .iter()
            .find(|b| b.shape.message_type == message_type)
        {
            Some(binding) => Ok((binding.build)(&binding.shape, record, header)?),
            None => Err(OutboundError::Undeclared {
                message_type: message_type.to_string(),
                declared: self
                    .outbound_types()
                    .into_iter()
                    .map(str::to_string)
                    .collect(),
            }),
        }
    }

    /// An outbound spec test: builds `record` as `message_type` with the MSH the
    /// environment's send settings give ([`mapping::test_header`]) and lists where the built
    /// message differs from `expected`, field by field (MSH-7 and MSH-10, written per send,
    /// are not compared). An error when the record does not build.
    pub fn outbound_test(
        &self,
        env: EnvName,
        message_type: &str,
        record: &serde_json::Value,
        expected: &[u8],
    ) -> Result<Vec<String>, String> {
        let environment = self
            .environment(env)
            .ok_or_else(|| format!("the spec has no {} environment", env.as_str()))?;
        let send = environment
            .send
            .as_ref()
            .map_or(SendHeader::DEFAULT, |s| s.header.clone());
        let header = mapping::test_header(&send, &environment.processing_id, &self.hl7_version);
        let built = self
            .build_outbound(message_type, record, &header)
            .map_err(|e| format!("the record does not build: {e}"))?;
        crate::hl7::compare::differences_in_bytes(expected, &built)
    }

    /// Decides about one parsed message in an environment: AR for the wrong environment,
    /// receiver or type, AE with every mapping error, AA (CA/CE/CR in enhanced mode) with
    /// the record.
    pub fn evaluate(&self, message: &Message<'_>, env: EnvName) -> Outcome {
        evaluate(
            message,
            &self.inbound_policy(env),
            |message_type, message| self.map_inbound(message_type, message),
        )
    }

    /// Reads a message of a declared outbound type (EMS → the Trust) the way the receiving
    /// end will: the same checks as [`GatewaySpec::evaluate`] (environment, declared type,
    /// mapping errors), but against the outbound types and the outbound record's mapping.
    /// MSH-5/MSH-6 are the Trust's, so the receive side's expectations do not apply.
    /// `gw-<code> map --outbound` decides with it.
    pub fn evaluate_outbound(&self, message: &Message<'_>, env: EnvName) -> Outcome {
        let policy = match self.environment(env) {
            Some(environment) => InboundPolicy {
                receiving_application: None,
                receiving_facility: None,
                ..InboundPolicy::for_environment(self.outbound_types(), environment)
            },
            None => InboundPolicy::nothing(env),
        };
        evaluate(message, &policy, |message_type, message| {
            self.map_outbound(message_type, message)
        })
    }

    /// Parses a message (LF and CRLF accepted) and decides about it.
    pub fn process(&self, bytes: &[u8], env: EnvName) -> Result<Outcome, ParseError> {
        let message = Message::parse_with(bytes, &ParseOptions::lenient())?;
        Ok(self.evaluate(&message, env))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Acknowledgement, SinkConfig};
    use crate::hl7::AckCode;

    const ADT: &[u8] =
        b"MSH|^~\\&|TIE|TRUST|EMS|EMS|20260101120000||ADT^A28|A-1|T|2.4\rPID|1||123\r";

    /// A spec with one inbound type mapped to `{"ok": true}`, TEST only, built owned.
    fn spec() -> GatewaySpec {
        GatewaySpec {
            package: "gw-x".into(),
            customer_code: "x".into(),
            customer_name: "X".into(),
            spec_path: "specs/x.yaml".into(),
            spec_sha256: "00".into(),
            hl7_version: "2.4".into(),
            model: "basic".into(),
            domain: "example".into(),
            workspace_root: ".".into(),
            test: Some(Environment {
                name: EnvName::Test,
                processing_id: "T".into(),
                receive: None,
                send: None,
                store: crate::config::StoreConfig::Sqlite(String::from("x.sqlite").into()),
                sink: SinkConfig::Inbox,
                acknowledgement: Acknowledgement::Application,
                accept_versions: Cow::Borrowed(&[]),
                limits: crate::config::Limits::DEFAULT,
                retention_ms: crate::config::defaults::RETENTION.as_millis(),
                ems: crate::config::EmsAccess::PlainLoopback,
            }),
            prod: None,
            inbound: vec![InboundBinding {
                message_type: "ADT^A28".into(),
                map: |_| Ok(serde_json::json!({"ok": true})),
            }]
            .into(),
            outbound: Cow::Borrowed(&[]),
        }
    }

    #[test]
    fn the_spec_decides_with_its_bindings_and_environments() {
        let spec = spec();
        let outcome = spec.process(ADT, EnvName::Test).unwrap();
        assert_eq!(outcome.ack, AckCode::ApplicationAccept, "{outcome:?}");
        assert_eq!(outcome.record, Some(serde_json::json!({"ok": true})));
        // No PROD environment: nothing is accepted there, and the TEST message is refused
        // for its processing id first.
        let outcome = spec.process(ADT, EnvName::Prod).unwrap();
        assert_eq!(outcome.ack, AckCode::ApplicationReject);
        assert_eq!(outcome.errors[0].location.as_deref(), Some("MSH-11"));
    }

    #[test]
    fn undeclared_types_are_errors_naming_the_declared_ones() {
        let spec = spec();
        let message = Message::parse(ADT).unwrap();
        let errors = spec.map_outbound("ADT^A28", &message).unwrap_err();
        assert_eq!(
            errors[0].code,
            crate::hl7::ack::error_code::UNSUPPORTED_MESSAGE_TYPE
        );
        let header = OutboundHeader {
            sending_application: "EMS",
            sending_facility: "X",
            receiving_application: "",
            receiving_facility: "",
            timestamp: "20260101120000",
            control_id: "1",
            processing_id: "T",
            version: "2.4",
        };
        let error = spec
            .build_outbound("ORU^R01", &serde_json::json!({}), &header)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "message type ORU^R01 is not declared outbound; declared: none"
        );
    }
}
