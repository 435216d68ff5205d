//! The customer spec: one YAML file per customer (an NHS Trust). These types are the single
//! source of truth: the loader reads YAML into them, `hl7gw schema` writes their JSON Schema
//! (doc comments become descriptions; a key the spec may leave out has its description
//! written with the runtime's default, so the value is stated once), and the checks and code
//! generator walk them.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// The vocabulary the spec shares with the gateway's configuration is the runtime's own: one
// definition, and the runtime's defaults (`hl7gw_runtime::config::defaults`).
// The schema's descriptions of keys a spec may leave out print the runtime's defaults.
use hl7gw_runtime::config::defaults;
pub use hl7gw_runtime::config::{
    Acknowledgement, Backoff, ByteSize, Duration, EnvName, FailurePolicy, Limits, ProcessingId,
    RequestContentType, ResponseContentType, SinkConfig,
};

/// A customer integration spec: the HL7 v2 messages one customer exchanges with EMS, how
/// their fields map to typed records, and the TEST and PROD endpoints and certificates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "hl7gw customer spec")]
pub struct Spec {
    /// Who the customer is.
    pub customer: Customer,
    /// The EMS domain, e.g. `example-ems.cloud`: the endpoints are named
    /// `CODE-test.api.DOMAIN` (TEST) and `CODE.api.DOMAIN` (PROD).
    pub domain: String,
    /// The HL7 v2 version the customer's engine sends (MSH-12), quoted: "2.4", "2.5.1".
    pub hl7_version: String,
    /// Further MSH-12 versions the receiver accepts beside `hl7_version`, quoted, e.g.
    /// ["2.3.1"]; a message in any other version is rejected with AR 203.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accept_versions: Vec<String>,
    /// Which ACK codes the receiver answers with, for every environment that does not
    /// choose its own; [`defaults::ACKNOWLEDGEMENT`] when left out.
    #[schemars(description = format!(
        "Which ACK codes the receiver answers with, for every environment that does not choose\n\
         its own. Default `{}`: always AA/AE/AR, after the commit, whatever MSH-15/MSH-16 ask;\n\
         `as_requested` answers CA/CE/CR to a message that fills MSH-15 or MSH-16.",
        defaults::ACKNOWLEDGEMENT.as_str()
    ))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledgement: Option<Acknowledgement>,
    /// The messaging model the customer bought.
    pub model: MessagingModel,
    /// The TEST and PROD environments. Both are required and share nothing.
    pub environments: Environments,
    /// Code tables from the customer's EMS configuration: table name → code → meaning.
    /// A mapped value not in its table is an error (HL7 error 103), never a guess.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    #[schemars(with = "IndexMap<String, IndexMap<String, String>>")]
    pub tables: IndexMap<Name, IndexMap<String, String>>,
    /// Typed records: record name → field name → mapping.
    pub records: IndexMap<Name, Record>,
    /// Messages the customer's engine sends to EMS: `TYPE^TRIGGER` → binding.
    #[serde(default)]
    pub inbound: IndexMap<MessageType, MessageBinding>,
    /// Messages EMS sends to the customer's engine: `TYPE^TRIGGER` → binding.
    #[serde(default)]
    pub outbound: IndexMap<MessageType, MessageBinding>,
    /// Spec tests, run by `hl7gw test` and compiled into the generated crate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tests: Vec<SpecTest>,
    /// Outbound spec tests: a record and the message it must build into, run by `hl7gw
    /// test` and compiled into the generated crate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbound_tests: Vec<OutboundTest>,
    /// Warnings accepted for the spec as a whole (those not about one environment, such as
    /// `hl7-type-loose`): warning code → the reason, recorded in the go-live report.
    /// Environment warnings are acknowledged under their environment.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub acknowledge: IndexMap<String, String>,
}

/// A snake_case name that becomes a Rust identifier (records, fields, tables).
pub type Name = String;

/// An HL7 message type and trigger event, `ADT^A28`.
pub type MessageType = String;

/// The customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    /// Short lower-case code used in host names, crate names and file names, e.g. `demo`.
    #[schemars(regex(pattern = r"^[a-z][a-z0-9-]{1,30}$"))]
    pub code: String,
    /// The customer's full name, e.g. `Demo NHS Foundation Trust`.
    pub name: String,
}

/// The messaging models EMS sells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessagingModel {
    /// ADT^A28, A31, A40 in; ORU^R01 with a PDF report out.
    Basic,
    /// SIU in; creates a ServiceRequest.
    Scheduling,
    /// REF in; creates a ServiceRequest.
    Referral,
    /// ORM or OMG in; ORR (before v2.5) or ORG (from v2.5) and ORU out (vetting and
    /// booking); creates a ServiceRequest.
    Orders,
}

impl MessagingModel {
    /// The spelling used in specs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Basic => "basic",
            Self::Scheduling => "scheduling",
            Self::Referral => "referral",
            Self::Orders => "orders",
        }
    }

    /// True for the models whose inbound messages create a ServiceRequest.
    pub fn creates_service_request(self) -> bool {
        !matches!(self, Self::Basic)
    }
}

/// The two environments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Environments {
    /// TEST: the customer's test engine, processing id T.
    pub test: Option<Environment>,
    /// PROD: the live engine, processing id P.
    pub prod: Option<Environment>,
}

impl Environments {
    /// The environments that are present, with their names.
    pub fn iter(&self) -> impl Iterator<Item = (EnvName, &Environment)> {
        [(EnvName::Test, &self.test), (EnvName::Prod, &self.prod)]
            .into_iter()
            .filter_map(|(n, e)| e.as_ref().map(|e| (n, e)))
    }

    /// One environment by name.
    pub fn get(&self, name: EnvName) -> Option<&Environment> {
        match name {
            EnvName::Test => self.test.as_ref(),
            EnvName::Prod => self.prod.as_ref(),
        }
    }
}

/// One environment: what it receives, what it sends, where it stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// MSH-11 expected on every message in this environment (T for TEST, P for PROD); a
    /// message with another value is rejected with AR.
    pub processing_id: ProcessingId,
    /// The receiving side: the customer's engine POSTs HL7 to the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive: Option<ReceiveSide>,
    /// The sending side: the gateway POSTs HL7 to the customer's engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<SendSide>,
    /// Where this environment's queue, audit trail and inbox live: an SQLite file (relative
    /// to the spec's folder) or `postgres: { ... }`, a database the gateway's replicas share.
    pub store: super::StoreSetting,
    /// How long the store keeps inbound rows and delivered or skipped outbound messages;
    /// [`defaults::RETENTION`] when left out.
    #[schemars(description = format!("How long the store keeps inbound rows (never records EMS has not taken) and delivered or skipped outbound messages (never pending or held ones). Default {}.", defaults::RETENTION))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Duration>,
    /// Where accepted inbound records go ([`defaults::SINK`] when left out).
    #[schemars(description = format!("Where accepted inbound records go. Default: the {} (EMS pulls them).", defaults::SINK.kind()))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<SinkConfig>,
    /// Which ACK codes this environment's receiver answers with; the spec's
    /// `acknowledgement` when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledgement: Option<Acknowledgement>,
    /// Connections, TLS handshakes, body memory and MLLP connections the gateway may take;
    /// each key defaults (`hl7gw_runtime::config::defaults`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// How EMS reaches the inbox API, the intake API and the intake MLLP listener: mutual
    /// TLS with EMS's client certificate (`tls`, `allowed_clients`), or the explicit
    /// `plain_loopback: true` (flagged by the go-live report). Required when the environment
    /// runs any of them (`env-ems-missing`): no spec is left without authentication by omission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ems: Option<EmsSide>,
    /// Warnings accepted for this environment: warning code → the reason, recorded in the
    /// go-live report. Only warnings can be acknowledged, never errors.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub acknowledge: IndexMap<String, String>,
}

/// The EMS-facing listeners (the inbox API, the intake API, the intake MLLP listener): give
/// either `tls` with `allowed_clients` (mutual TLS; any address) or `plain_loopback: true`
/// (plain HTTP and MLLP on 127.0.0.1 without authentication: the demo and local development).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmsSide {
    /// `true`: no authentication, loopback only; any process on the gateway's host can read
    /// and acknowledge records and queue messages. The go-live report flags it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plain_loopback: Option<bool>,
    /// The IP address the three listeners bind with `tls` (their ports are the receive port
    /// + 2, + 3, + 4), e.g. `0.0.0.0` or the EMS-facing interface's. Default `127.0.0.1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The host name EMS connects to, e.g. `demo-test.ems-gateway.example-ems.cloud`; when
    /// given, `validate` checks that the `tls.cert` names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The server certificate and key EMS connects to, and the CA that signs EMS's client
    /// certificates (with its CRL when named); reloaded with the others by `gw reload`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTls>,
    /// EMS's client certificate subjects allowed after the handshake, e.g.
    /// `CN=ems-test.example-ems.cloud` or `DNS:ems-test.example-ems.cloud`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_clients: Vec<String>,
}

impl EmsSide {
    /// The address the listeners bind with mutual TLS; `None` without `tls` or when
    /// `address` is not an IP address (`validate` reports it).
    pub fn tls_address(&self) -> Option<std::net::IpAddr> {
        self.tls.as_ref()?;
        self.address
            .as_deref()
            .unwrap_or(EMS_DEFAULT_ADDRESS)
            .parse()
            .ok()
    }
}

/// Where the EMS-facing listeners bind with `ems.tls` and no `ems.address`.
pub const EMS_DEFAULT_ADDRESS: &str = "127.0.0.1";

/// The receiving endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiveSide {
    /// Local address and port to listen on, e.g. `0.0.0.0:443` or `127.0.0.1:8443`.
    pub listen: String,
    /// URL path the engine POSTs to, e.g. `/hl7`.
    pub path: String,
    /// The public host name, e.g. `demo-test.api.example-ems.cloud`; the server certificate
    /// must name it.
    pub hostname: String,
    /// Server certificate, key, and the CA that signs the customer's client certificates.
    pub tls: ServerTls,
    /// Client certificate subjects allowed after the handshake, e.g. `CN=tie-test.demo.nhs.uk`
    /// or `DNS:tie-test.demo.nhs.uk`.
    pub allowed_clients: Vec<String>,
    /// IP ranges (CIDR) allowed to connect; others are closed before the TLS handshake.
    pub allowed_ips: Vec<String>,
    /// Largest request body accepted (413 above it); [`defaults::MAX_BODY`] when left out.
    #[schemars(description = format!("Largest request body accepted (413 above it). Default {}.", defaults::MAX_BODY))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body: Option<ByteSize>,
    /// MSH-5 expected on inbound messages, when the customer fills it in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiving_application: Option<String>,
    /// MSH-6 expected on inbound messages, when the customer fills it in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiving_facility: Option<String>,
    /// The ACK's Content-Type; [`defaults::RESPONSE_CONTENT_TYPE`] when left out: the
    /// request's own type, so Mirth's `text/plain` gets `text/plain` (an `application/hl7-v2`
    /// answer would be base64-encoded by Mirth's HTTP Sender). Fix it only when the
    /// customer's engine needs one type.
    #[schemars(description = format!(
        "The ACK's Content-Type. Default `{}`: the request's own type, so Mirth's\n\
         `text/plain` gets `text/plain` (an `application/hl7-v2` answer would be base64-encoded\n\
         by Mirth's HTTP Sender). Fix it only when the customer's engine needs one type.",
        defaults::RESPONSE_CONTENT_TYPE.as_str()
    ))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_content_type: Option<ResponseContentType>,
    /// How the request's Content-Type is read; [`defaults::REQUEST_CONTENT_TYPE`] when left
    /// out.
    #[schemars(description = format!(
        "How the request's Content-Type is read. Default `{}`: a body that is an HL7 message\n\
         is processed whatever its Content-Type (some adapters send `text/html` or `text/xml`),\n\
         and 415 is kept for a body that is not HL7 either. `strict`: 415 for any type but the\n\
         HL7 ones and `text/plain`.",
        defaults::REQUEST_CONTENT_TYPE.as_str()
    ))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_content_type: Option<RequestContentType>,
    /// Offer HTTP/2 (ALPN `h2`); [`defaults::HTTP2`] when left out.
    #[schemars(description = format!(
        "Offer HTTP/2 (ALPN `h2`). Default {}: HTTP/1.1 only, because the gateway cannot send\n\
         `100 Continue` over HTTP/2, and a client that negotiates h2 and waits for it (JDK\n\
         HttpClient with expectContinue) never gets its ACK. Enable it only for engines that\n\
         need HTTP/2 and do not wait for a 100.",
        defaults::HTTP2
    ))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2: Option<bool>,
}

/// The receiver's TLS material (PEM files, paths relative to the spec file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    /// Server certificate chain (leaf first).
    pub cert: String,
    /// Server private key.
    pub key: String,
    /// CA certificate(s) that sign the customer engine's client certificates.
    pub client_ca: String,
    /// Certificate revocation lists of the CA(s) in `client_ca`: one PEM file of `X509 CRL`
    /// blocks, one per CA. A client certificate they revoke fails the TLS handshake.
    /// Reloaded with the certificates on SIGHUP or `gw-<code> reload`; `validate` reports a
    /// CRL that does not parse, is out of date (next update past) or is not signed by a CA of
    /// `client_ca`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_crl: Option<String>,
    /// The CA that issued `cert` (the one the customer's engine trusts), when known:
    /// `validate` then checks that the chain in `cert` verifies to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ca: Option<String>,
}

/// The sending endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendSide {
    /// The customer engine's HTTPS URL, e.g. `https://tie-test.demo.nhs.uk:9443/hl7/ems`.
    pub url: String,
    /// Client certificate, key, and the CA that signs the engine's server certificate.
    pub tls: ClientTls,
    /// How long to wait for the ACK of one message; [`defaults::SEND_TIMEOUT`] when left out.
    #[schemars(description = format!("How long to wait for the ACK of one message. Default {}.", defaults::SEND_TIMEOUT))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Delay between retries: doubles from `first` up to `max`, with jitter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    /// After a connection failure; [`defaults::ON_CONNECT_ERROR`] when left out.
    #[schemars(description = format!("After a connection failure. Default `{}`.", defaults::ON_CONNECT_ERROR))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_connect_error: Option<FailurePolicy>,
    /// After no ACK within `timeout`; [`defaults::ON_TIMEOUT`] when left out.
    #[schemars(description = format!("After no ACK within `timeout`. Default `{}`.", defaults::ON_TIMEOUT))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_timeout: Option<FailurePolicy>,
    /// After an HTTP 5xx; [`defaults::ON_5XX`] when left out.
    #[schemars(description = format!("After an HTTP 5xx. Default `{}`.", defaults::ON_5XX))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_5xx: Option<FailurePolicy>,
    /// After an HTTP 4xx (the body was not processed as HL7); [`defaults::ON_4XX`] when
    /// left out.
    #[schemars(description = format!("After an HTTP 4xx (the body was not processed as HL7). Default `{}`.", defaults::ON_4XX))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_4xx: Option<FailurePolicy>,
    /// After an unreadable ACK, or an MSA-2 that does not match the sent MSH-10;
    /// [`defaults::ON_BAD_ACK`] when left out.
    #[schemars(description = format!("After an unreadable ACK, or an MSA-2 that does not match the sent MSH-10. Default\n`{}`.", defaults::ON_BAD_ACK))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_bad_ack: Option<FailurePolicy>,
    /// After AE or CE; [`defaults::ON_AE`] when left out.
    #[schemars(description = format!("After AE or CE. Default `{}` (an operator decides).", defaults::ON_AE))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_ae: Option<FailurePolicy>,
    /// After AR or CR; [`defaults::ON_AR`] when left out.
    #[schemars(description = format!("After AR or CR. Default `{}`.", defaults::ON_AR))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_ar: Option<FailurePolicy>,
    /// MSH-3 of the messages built from records; [`defaults::SENDING_APPLICATION`] when
    /// left out.
    #[schemars(description = format!("MSH-3 of the messages built from records. Default `{}`.", defaults::SENDING_APPLICATION))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sending_application: Option<String>,
    /// MSH-4 of the messages built from records; [`defaults::SENDING_FACILITY`] when left
    /// out.
    #[schemars(description = format!("MSH-4 of the messages built from records. Default `{}`.", defaults::SENDING_FACILITY))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sending_facility: Option<String>,
    /// MSH-5 of the messages built from records: the Trust's engine, as it names itself.
    /// Empty when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiving_application: Option<String>,
    /// MSH-6 of the messages built from records: the Trust, as its engine names it. Empty
    /// when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiving_facility: Option<String>,
}

/// The sender's TLS material (PEM files, paths relative to the spec file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    /// Client certificate chain presented to the customer's engine.
    pub cert: String,
    /// Client private key.
    pub key: String,
    /// CA certificate(s) that sign the engine's server certificate. Never a disabled check.
    pub server_ca: String,
    /// Certificate revocation lists of the CA(s) in `server_ca`: one PEM file of `X509 CRL`
    /// blocks, one per CA. An engine certificate they revoke fails the TLS handshake.
    /// Reloaded with the certificates on SIGHUP or `gw-<code> reload`; `validate` reports a
    /// CRL that does not parse, is out of date (next update past) or is not signed by a CA of
    /// `server_ca`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_crl: Option<String>,
    /// The CA that issued `cert` (the one the customer's engine trusts), when known:
    /// `validate` then checks that the chain in `cert` verifies to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ca: Option<String>,
}

/// A typed record: field name → mapping.
pub type Record = IndexMap<Name, FieldSpec>;

/// One field of a record: either mapped from an HL7 path (`from` and `type`) or a nested
/// record (`record`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// HL7 path, 1-based: `PID-5.1`, `PID-3[CX.5=NH].1`, `OBX[OBX-2=ED]-5.5`; or a list of
    /// paths read in order, the first that holds a value winning: `[TQ1-9, ORC-7.6]`.
    /// Errors name the first; an outbound message is written at the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<FieldSource>,
    /// A nested record, by name, instead of `from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<Name>,
    /// The field's type (with `from`).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<FieldType>,
    /// A message without this value is answered AE with HL7 error 101.
    #[serde(default, skip_serializing_if = "is_false")]
    pub required: bool,
    /// Every repetition (or segment occurrence) becomes a list entry.
    #[serde(default, skip_serializing_if = "is_false")]
    pub repeated: bool,
    /// Longest accepted value in characters (string and id), at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_len: Option<u32>,
    /// For `type: code`: HL7 code → EMS value. A code not in the map is error 103.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<IndexMap<String, String>>,
    /// For `type: code`: the name of a table in `tables`. A code not in it is error 103.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<Name>,
    /// For `type: base64`: the media type of the decoded bytes, e.g. `application/pdf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<String>,
    /// For `type: base64`: the largest decoded size accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<ByteSize>,
    /// A fixed value, as HL7 text, written at `from` in every message built from the record
    /// (OBX-11 `F`, CX.4 `NHS`); never read, and not a member of the record's JSON. It must
    /// be valid for `type` (a code of its `map` or `table`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Where a field is read from: one HL7 path, or several tried in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum FieldSource {
    /// One path.
    One(String),
    /// Paths tried in order; the first that holds a value is read.
    FirstOf(#[schemars(length(min = 1))] Vec<String>),
}

impl FieldSource {
    /// Every path, in the order they are tried.
    pub fn paths(&self) -> &[String] {
        match self {
            Self::One(path) => std::slice::from_ref(path),
            Self::FirstOf(paths) => paths,
        }
    }

    /// The first path: where errors point and outbound values are written.
    pub fn first(&self) -> Option<&str> {
        self.paths().first().map(String::as_str)
    }

    /// The JSON pointer of path `index` under the field's `from` pointer.
    pub fn pointer(&self, from_pointer: &str, index: usize) -> String {
        match self {
            Self::One(_) => from_pointer.to_string(),
            Self::FirstOf(_) => format!("{from_pointer}/{index}"),
        }
    }

    /// The paths as written: `TQ1-9` or `TQ1-9, else ORC-7.6`.
    pub fn describe(&self) -> String {
        self.paths().join(", else ")
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Field types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// Text.
    String,
    /// A coded identifier kept as written (HL7 ID/IS).
    Id,
    /// A date, `YYYY[MM[DD]]`.
    Date,
    /// A date and time with HL7's precisions and an optional UTC offset.
    Datetime,
    /// A code checked against `map` or `table`.
    Code,
    /// An NHS number: 10 digits with a modulus-11 check digit.
    NhsNumber,
    /// A decimal number.
    Number,
    /// Base64 data (e.g. a PDF in an ED field), decoded with a size limit.
    Base64,
}

impl FieldType {
    /// The spelling used in specs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Id => "id",
            Self::Date => "date",
            Self::Datetime => "datetime",
            Self::Code => "code",
            Self::NhsNumber => "nhs_number",
            Self::Number => "number",
            Self::Base64 => "base64",
        }
    }
}

/// How a message type is handled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageBinding {
    /// The record the message maps to (inbound) or is built from (outbound).
    pub record: Name,
    /// For merges (ADT^A40): the path of the prior identifier, e.g. `MRG-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<String>,
    /// For inbound orders (ORM, OMG): the record a cancellation or discontinuation (ORC-1
    /// `CA` or `DC`) maps to instead, holding only the order's and the patient's identity;
    /// the mapped JSON is then `{"cancel": {...}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel: Option<Name>,
}

/// A spec test: a message file and what the gateway must answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpecTest {
    /// What the test shows, e.g. `A28 maps the NHS number`.
    pub name: String,
    /// The HL7 message file, relative to the spec file.
    pub message: String,
    /// The expected outcome.
    pub expect: Expectation,
}

/// An outbound spec test: a record, as EMS hands it to the intake, and the HL7 message it
/// must build into in the TEST environment, compared field by field (MSH-7 and MSH-10,
/// written per send, are not compared). The built message must also have every field and
/// segment the HL7 dictionary requires for the spec's version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutboundTest {
    /// What the test shows, e.g. `a report builds the ORU the Trust reads`.
    pub name: String,
    /// The outbound message type to build, `ORU^R01`.
    pub build: MessageType,
    /// The record as JSON (the shape `POST /outbound/TYPE^TRIGGER` takes).
    pub record: serde_json::Map<String, serde_json::Value>,
    /// The HL7 file the record must build into, relative to the spec file.
    pub message: String,
}

/// Expected outcome of a spec test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// The ACK code: AA, AE or AR (CA, CE, CR in enhanced mode).
    pub ack: AckCodeName,
    /// Expected record values: field name → value (nested records by their field name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<serde_json::Map<String, serde_json::Value>>,
    /// The expected error, for AE and AR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ExpectedError>,
}

/// MSA-1 codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum AckCodeName {
    /// Application accept.
    AA,
    /// Application error.
    AE,
    /// Application reject.
    AR,
    /// Commit accept.
    CA,
    /// Commit error.
    CE,
    /// Commit reject.
    CR,
}

/// An expected ERR.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectedError {
    /// HL7 table 0357 code: 101 required field missing, 102 data type error, 103 table
    /// value not found, 200 unsupported message type, 207 application error.
    pub code: u16,
    /// Where, as a path: `PID-3`, `OBR-4`.
    pub location: String,
}
