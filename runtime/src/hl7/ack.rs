//! Acknowledgements: building the ACK a receiver answers with, and reading one back as a
//! sender.
//!
//! Original mode answers AA/AE/AR; enhanced mode (the inbound MSH-15 or MSH-16 is filled)
//! answers CA/CE/CR for the commit. Which of the two a receiver answers in is its spec's
//! choice (`config::Acknowledgement::mode_for`), not only the message's. From v2.3.1 the ACK's
//! MSH-9 names its structure (`ACK^A28^ACK`), as strict validators require. Errors go in an
//! ERR segment laid out for the message's version: from v2.5 one ERR per error with ERR-2
//! location, ERR-3 code from HL7 table 0357, ERR-4 severity and ERR-8 text; before v2.5 ERR-1
//! repetitions plus MSA-3 text.

use std::fmt;

use super::build::{BuildError, MessageBuilder};
use super::message::Message;
use super::path::Location;

/// MSA-1, HL7 table 0008.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckCode {
    /// AA: application accept (committed).
    ApplicationAccept,
    /// AE: application error.
    ApplicationError,
    /// AR: application reject.
    ApplicationReject,
    /// CA: commit accept (enhanced mode).
    CommitAccept,
    /// CE: commit error (enhanced mode).
    CommitError,
    /// CR: commit reject (enhanced mode).
    CommitReject,
}

impl AckCode {
    /// The two-letter code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApplicationAccept => "AA",
            Self::ApplicationError => "AE",
            Self::ApplicationReject => "AR",
            Self::CommitAccept => "CA",
            Self::CommitError => "CE",
            Self::CommitReject => "CR",
        }
    }

    /// Reads a two-letter code.
    pub fn parse(code: &str) -> Option<Self> {
        Some(match code {
            "AA" => Self::ApplicationAccept,
            "AE" => Self::ApplicationError,
            "AR" => Self::ApplicationReject,
            "CA" => Self::CommitAccept,
            "CE" => Self::CommitError,
            "CR" => Self::CommitReject,
            _ => return None,
        })
    }

    /// AA or CA.
    pub fn is_accept(self) -> bool {
        matches!(self, Self::ApplicationAccept | Self::CommitAccept)
    }

    /// AE or CE.
    pub fn is_error(self) -> bool {
        matches!(self, Self::ApplicationError | Self::CommitError)
    }

    /// AR or CR.
    pub fn is_reject(self) -> bool {
        matches!(self, Self::ApplicationReject | Self::CommitReject)
    }

    /// CA, CE or CR.
    pub fn is_enhanced(self) -> bool {
        matches!(
            self,
            Self::CommitAccept | Self::CommitError | Self::CommitReject
        )
    }

    /// The same outcome in the given mode (AA ↔ CA, AE ↔ CE, AR ↔ CR).
    pub fn in_mode(self, enhanced: bool) -> Self {
        let outcome = if self.is_accept() {
            0
        } else if self.is_error() {
            1
        } else {
            2
        };
        match (enhanced, outcome) {
            (false, 0) => Self::ApplicationAccept,
            (false, 1) => Self::ApplicationError,
            (false, _) => Self::ApplicationReject,
            (true, 0) => Self::CommitAccept,
            (true, 1) => Self::CommitError,
            (true, _) => Self::CommitReject,
        }
    }
}

impl fmt::Display for AckCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// MSH-15 / MSH-16 values, HL7 table 0155.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCondition {
    /// AL: always.
    Always,
    /// NE: never.
    Never,
    /// ER: only on error or reject.
    ErrorOnly,
    /// SU: only on success.
    SuccessOnly,
    /// Empty or an unknown value.
    Unspecified,
}

impl AckCondition {
    fn from_code(code: &str) -> Self {
        match code {
            "AL" => Self::Always,
            "NE" => Self::Never,
            "ER" => Self::ErrorOnly,
            "SU" => Self::SuccessOnly,
            _ => Self::Unspecified,
        }
    }
}

/// Which acknowledgement protocol the sender asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// MSH-15 and MSH-16 empty: one AA/AE/AR application ACK.
    Original,
    /// MSH-15 or MSH-16 filled: CA/CE/CR commit ACK, application ACK per MSH-16.
    Enhanced {
        /// MSH-15, accept acknowledgement type.
        accept: AckCondition,
        /// MSH-16, application acknowledgement type.
        application: AckCondition,
    },
}

impl AckMode {
    /// The mode an inbound message asks for.
    pub fn of(message: &Message<'_>) -> Self {
        let accept = message.header_text(15, 1);
        let application = message.header_text(16, 1);
        if accept.is_empty() && application.is_empty() {
            Self::Original
        } else {
            Self::Enhanced {
                accept: AckCondition::from_code(&accept),
                application: AckCondition::from_code(&application),
            }
        }
    }

    /// True for enhanced mode.
    pub fn is_enhanced(self) -> bool {
        matches!(self, Self::Enhanced { .. })
    }

    /// The code for an outcome in this mode: `AA` becomes `CA` in enhanced mode, and so on.
    pub fn code_for(self, outcome: AckCode) -> AckCode {
        outcome.in_mode(self.is_enhanced())
    }
}

/// HL7 table 0357 (message error condition codes) with their standard text.
pub mod error_code {
    /// 0: message accepted.
    pub const MESSAGE_ACCEPTED: u16 = 0;
    /// 100: segment sequence error.
    pub const SEGMENT_SEQUENCE_ERROR: u16 = 100;
    /// 101: required field missing.
    pub const REQUIRED_FIELD_MISSING: u16 = 101;
    /// 102: data type error.
    pub const DATA_TYPE_ERROR: u16 = 102;
    /// 103: table value not found.
    pub const TABLE_VALUE_NOT_FOUND: u16 = 103;
    /// 104: value too long (v2.7+).
    pub const VALUE_TOO_LONG: u16 = 104;
    /// 200: unsupported message type.
    pub const UNSUPPORTED_MESSAGE_TYPE: u16 = 200;
    /// 201: unsupported event code.
    pub const UNSUPPORTED_EVENT_CODE: u16 = 201;
    /// 202: unsupported processing ID.
    pub const UNSUPPORTED_PROCESSING_ID: u16 = 202;
    /// 203: unsupported version ID.
    pub const UNSUPPORTED_VERSION_ID: u16 = 203;
    /// 204: unknown key identifier.
    pub const UNKNOWN_KEY_IDENTIFIER: u16 = 204;
    /// 205: duplicate key identifier.
    pub const DUPLICATE_KEY_IDENTIFIER: u16 = 205;
    /// 206: application record locked.
    pub const APPLICATION_RECORD_LOCKED: u16 = 206;
    /// 207: application internal error.
    pub const APPLICATION_INTERNAL_ERROR: u16 = 207;

    /// The table's text for a code, or `None` for a code not in the table.
    pub fn text(code: u16) -> Option<&'static str> {
        Some(match code {
            0 => "Message accepted",
            100 => "Segment sequence error",
            101 => "Required field missing",
            102 => "Data type error",
            103 => "Table value not found",
            104 => "Value too long",
            200 => "Unsupported message type",
            201 => "Unsupported event code",
            202 => "Unsupported processing id",
            203 => "Unsupported version id",
            204 => "Unknown key identifier",
            205 => "Duplicate key identifier",
            206 => "Application record locked",
            207 => "Application internal error",
            _ => return None,
        })
    }
}

/// ERR-4 severity, HL7 table 0516.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// E
    Error,
    /// W
    Warning,
    /// I
    Information,
}

impl Severity {
    /// The one-letter code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "E",
            Self::Warning => "W",
            Self::Information => "I",
        }
    }

    fn parse(code: &str) -> Option<Self> {
        match code {
            "E" => Some(Self::Error),
            "W" => Some(Self::Warning),
            "I" => Some(Self::Information),
            _ => None,
        }
    }
}

/// One error to report in an ACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckError {
    /// Code from HL7 table 0357.
    pub code: u16,
    /// Severity.
    pub severity: Severity,
    /// Where in the inbound message, when known.
    pub location: Option<Location>,
    /// Text for a person (ERR-8, or MSA-3 before v2.5). Never patient data.
    pub message: String,
}

/// What to put in an ACK besides what is copied from the inbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckRequest<'r> {
    /// MSA-1.
    pub code: AckCode,
    /// MSH-10 of the ACK itself.
    pub control_id: &'r str,
    /// MSH-7, an HL7 timestamp such as `20240101120000+0000`.
    pub timestamp: &'r str,
    /// Errors for ERR segments.
    pub errors: &'r [AckError],
}

/// Builds the ACK for `inbound`: sender and receiver swapped, MSH-11/12/18 echoed, MSH-9.3
/// `ACK` from v2.3.1, MSA-2 the inbound MSH-10, errors laid out for the inbound version.
pub fn build_ack(inbound: &Message<'_>, request: &AckRequest<'_>) -> Result<Vec<u8>, BuildError> {
    let encoding = inbound.encoding();
    let msh_in = inbound.msh();
    let mut ack = MessageBuilder::new(encoding);
    let modern = inbound.version_number() >= (2, 5, 0);
    let names_structure = inbound.version_number() >= (2, 3, 1);
    {
        let msh = ack.msh();
        for (to, from) in [(3, 5), (4, 6), (5, 3), (6, 4), (11, 11), (12, 12), (18, 18)] {
            if let Some(field) = msh_in.field(from).filter(|f| !f.is_empty()) {
                msh.copy_field(to, &field)?;
            }
        }
        msh.set(&encoding, 7, 1, 1, 1, request.timestamp)?;
        msh.set(&encoding, 9, 1, 1, 1, "ACK")?;
        let trigger = inbound.trigger_event();
        if !trigger.is_empty() {
            msh.set(&encoding, 9, 1, 2, 1, &trigger)?;
        }
        if names_structure {
            msh.set(&encoding, 9, 1, 3, 1, "ACK")?;
        }
        msh.set(&encoding, 10, 1, 1, 1, request.control_id)?;
    }
    let msa = ack.push_segment("MSA")?;
    msa.set(&encoding, 1, 1, 1, 1, request.code.as_str())?;
    if let Some(control) = msh_in.field(10) {
        msa.copy_field(2, &control)?;
    }
    if modern {
        for error in request.errors {
            let err = ack.push_segment("ERR")?;
            if let Some(loc) = &error.location {
                err.set(&encoding, 2, 1, 1, 1, &loc.segment)?;
                err.set(&encoding, 2, 1, 2, 1, &loc.occurrence.to_string())?;
                err.set(&encoding, 2, 1, 3, 1, &loc.field.to_string())?;
                err.set(&encoding, 2, 1, 4, 1, &loc.repetition.to_string())?;
                if let Some(c) = loc.component {
                    err.set(&encoding, 2, 1, 5, 1, &c.to_string())?;
                }
                if let Some(s) = loc.subcomponent {
                    err.set(&encoding, 2, 1, 6, 1, &s.to_string())?;
                }
            }
            err.set(&encoding, 3, 1, 1, 1, &error.code.to_string())?;
            err.set(
                &encoding,
                3,
                1,
                2,
                1,
                error_code::text(error.code).unwrap_or(""),
            )?;
            err.set(&encoding, 3, 1, 3, 1, "HL70357")?;
            err.set(&encoding, 4, 1, 1, 1, error.severity.as_str())?;
            if !error.message.is_empty() {
                err.set(&encoding, 8, 1, 1, 1, &error.message)?;
            }
        }
    } else if !request.errors.is_empty() {
        let text: Vec<&str> = request.errors.iter().map(|e| e.message.as_str()).collect();
        msa.set(&encoding, 3, 1, 1, 1, &text.join("; "))?;
        let err = ack.push_segment("ERR")?;
        for (i, error) in request.errors.iter().enumerate() {
            let rep = i + 1;
            if let Some(loc) = &error.location {
                err.set(&encoding, 1, rep, 1, 1, &loc.segment)?;
                err.set(&encoding, 1, rep, 2, 1, &loc.occurrence.to_string())?;
                err.set(&encoding, 1, rep, 3, 1, &loc.field.to_string())?;
            }
            err.set(&encoding, 1, rep, 4, 1, &error.code.to_string())?;
            err.set(
                &encoding,
                1,
                rep,
                4,
                2,
                error_code::text(error.code).unwrap_or(""),
            )?;
            err.set(&encoding, 1, rep, 4, 3, "HL70357")?;
        }
    }
    Ok(ack.to_bytes())
}

/// An error as an ACK reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedError {
    /// The table 0357 code, when it was a number.
    pub code: Option<u16>,
    /// The code's text as sent.
    pub code_text: String,
    /// ERR-4, when present (v2.5+).
    pub severity: Option<Severity>,
    /// The location as sent, rendered as a path (`PID-3`), when present.
    pub location: Option<Location>,
    /// ERR-8 (v2.5+), else empty.
    pub message: String,
}

/// An ACK as a sender reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckReceipt {
    /// MSA-1.
    pub code: AckCode,
    /// MSA-2: must equal the MSH-10 that was sent.
    pub control_id: String,
    /// MSA-3 (deprecated from v2.5 but still sent by many engines).
    pub text: String,
    /// Errors from ERR segments, in either layout.
    pub errors: Vec<ReportedError>,
}

/// Why a response could not be read as an ACK.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckReadError {
    /// No MSA segment.
    #[error("the response has no MSA segment")]
    NoMsa,
    /// MSA-1 holds something other than AA/AE/AR/CA/CE/CR.
    #[error("MSA-1 {0:?} is not an acknowledgement code (AA, AE, AR, CA, CE, CR)")]
    UnknownCode(String),
}

/// Reads MSA and ERR from a parsed response.
pub fn read_ack(message: &Message<'_>) -> Result<AckReceipt, AckReadError> {
    let msa = message
        .segments_named("MSA")
        .next()
        .ok_or(AckReadError::NoMsa)?;
    let text_of = |field: usize, component: usize| -> String {
        msa.field(field)
            .and_then(|f| f.repetition(1))
            .and_then(|r| r.component(component))
            .and_then(|c| c.text().ok())
            .map(|t| t.into_owned())
            .unwrap_or_default()
    };
    let code_text = text_of(1, 1);
    let code = AckCode::parse(code_text.trim()).ok_or(AckReadError::UnknownCode(code_text))?;
    let mut errors = Vec::new();
    for err in message.segments_named("ERR") {
        let comp = |field: usize, rep: usize, component: usize, sub: usize| -> String {
            err.field(field)
                .and_then(|f| f.repetition(rep))
                .and_then(|r| r.component(component))
                .and_then(|c| c.subcomponent(sub))
                .and_then(|s| s.text().ok())
                .map(|t| t.into_owned())
                .unwrap_or_default()
        };
        let has_erl_layout = err.field(3).is_some_and(|f| !f.is_empty());
        if has_erl_layout {
            let number = |n: usize| comp(2, 1, n, 1).parse::<usize>().ok();
            let segment = comp(2, 1, 1, 1);
            let location = (!segment.is_empty()).then(|| Location {
                segment,
                occurrence: number(2).unwrap_or(1),
                field: number(3).unwrap_or(0),
                repetition: number(4).unwrap_or(1),
                component: number(5),
                subcomponent: number(6),
            });
            errors.push(ReportedError {
                code: comp(3, 1, 1, 1).parse().ok(),
                code_text: comp(3, 1, 2, 1),
                severity: Severity::parse(&comp(4, 1, 1, 1)),
                location,
                message: comp(8, 1, 1, 1),
            });
        } else if let Some(eld) = err.field(1) {
            for (i, rep) in eld.repetitions().enumerate() {
                if rep.is_empty() {
                    continue;
                }
                let segment = comp(1, i + 1, 1, 1);
                let location = (!segment.is_empty()).then(|| Location {
                    segment,
                    occurrence: comp(1, i + 1, 2, 1).parse().unwrap_or(1),
                    field: comp(1, i + 1, 3, 1).parse().unwrap_or(0),
                    repetition: 1,
                    component: None,
                    subcomponent: None,
                });
                errors.push(ReportedError {
                    code: comp(1, i + 1, 4, 1).parse().ok(),
                    code_text: comp(1, i + 1, 4, 2),
                    severity: None,
                    location,
                    message: String::new(),
                });
            }
        }
    }
    Ok(AckReceipt {
        code,
        control_id: text_of(2, 1),
        text: text_of(3, 1),
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7::Path;

    fn inbound(version: &str, extra: &str) -> Vec<u8> {
        format!(
            "MSH|^~\\&|TIE|TRUST|EMS|HOST|20240101120000||ORM^O01^ORM_O01|MSG42|T|{version}{extra}\rPID|1\r"
        )
        .into_bytes()
    }

    fn error() -> AckError {
        let path = Path::parse("OBR-4").unwrap();
        AckError {
            code: error_code::TABLE_VALUE_NOT_FOUND,
            severity: Severity::Error,
            location: Some(path.nominal_location()),
            message: "procedure XYZ is not in table procedure".into(),
        }
    }

    #[test]
    fn v25_ack_swaps_parties_and_uses_err_2_3_4_8() {
        let raw = inbound("2.5.1", "|||AL|NE||UNICODE UTF-8");
        let msg = Message::parse(&raw).unwrap();
        assert!(AckMode::of(&msg).is_enhanced());
        let errors = [error()];
        let req = AckRequest {
            code: AckCode::ApplicationError,
            control_id: "ACK1",
            timestamp: "20240101120001",
            errors: &errors,
        };
        let ack = String::from_utf8(build_ack(&msg, &req).unwrap()).unwrap();
        assert_eq!(
            ack,
            "MSH|^~\\&|EMS|HOST|TIE|TRUST|20240101120001||ACK^O01^ACK|ACK1|T|2.5.1||||||UNICODE UTF-8\r\
             MSA|AE|MSG42\r\
             ERR||OBR^1^4^1|103^Table value not found^HL70357|E||||procedure XYZ is not in table procedure\r"
        );
        let parsed = Message::parse(ack.as_bytes()).unwrap();
        let receipt = read_ack(&parsed).unwrap();
        assert_eq!(receipt.code, AckCode::ApplicationError);
        assert_eq!(receipt.control_id, "MSG42");
        assert_eq!(receipt.errors[0].code, Some(103));
        assert_eq!(
            receipt.errors[0].location.as_ref().unwrap().to_string(),
            "OBR-4"
        );
        assert_eq!(receipt.errors[0].severity, Some(Severity::Error));
    }

    #[test]
    fn pre_v25_ack_uses_err_1_and_msa_3() {
        let raw = inbound("2.4", "");
        let msg = Message::parse(&raw).unwrap();
        assert_eq!(AckMode::of(&msg), AckMode::Original);
        let errors = [error()];
        let req = AckRequest {
            code: AckCode::ApplicationError,
            control_id: "ACK1",
            timestamp: "20240101120001",
            errors: &errors,
        };
        let ack = String::from_utf8(build_ack(&msg, &req).unwrap()).unwrap();
        assert_eq!(
            ack,
            "MSH|^~\\&|EMS|HOST|TIE|TRUST|20240101120001||ACK^O01^ACK|ACK1|T|2.4\r\
             MSA|AE|MSG42|procedure XYZ is not in table procedure\r\
             ERR|OBR^1^4^103&Table value not found&HL70357\r"
        );
        let receipt = read_ack(&Message::parse(ack.as_bytes()).unwrap()).unwrap();
        assert_eq!(receipt.text, "procedure XYZ is not in table procedure");
        assert_eq!(receipt.errors[0].code, Some(103));
        assert_eq!(receipt.errors[0].location.as_ref().unwrap().field, 4);
    }

    #[test]
    fn msh_9_3_names_the_structure_from_v231_only() {
        let req = AckRequest {
            code: AckCode::ApplicationAccept,
            control_id: "ACK1",
            timestamp: "20240101120001",
            errors: &[],
        };
        for (version, msh9) in [
            ("2.3", "ACK^O01|"),
            ("2.3.1", "ACK^O01^ACK|"),
            ("2.4", "ACK^O01^ACK|"),
        ] {
            let raw = inbound(version, "");
            let ack = build_ack(&Message::parse(&raw).unwrap(), &req).unwrap();
            let ack = String::from_utf8(ack).unwrap();
            assert!(ack.contains(msh9), "{version}: {ack}");
        }
    }

    #[test]
    fn reading_rejects_what_is_not_an_ack() {
        let raw = inbound("2.4", "");
        let msg = Message::parse(&raw).unwrap();
        assert_eq!(read_ack(&msg), Err(AckReadError::NoMsa));
        let bad = b"MSH|^~\\&|A|B|C|D|1||ACK|1|P|2.4\rMSA|OK|1\r";
        let msg = Message::parse(bad).unwrap();
        assert!(matches!(read_ack(&msg), Err(AckReadError::UnknownCode(_))));
    }

    #[test]
    fn modes_map_codes() {
        assert_eq!(
            AckCode::ApplicationReject.in_mode(true),
            AckCode::CommitReject
        );
        assert_eq!(
            AckCode::CommitAccept.in_mode(false),
            AckCode::ApplicationAccept
        );
    }
}
