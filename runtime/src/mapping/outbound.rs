//! Starting an outbound message: the MSH every message EMS sends carries.

use crate::hl7::{BuildError, Encoding, MessageBuilder};

/// What goes in an outbound MSH besides the delimiters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundHeader<'h> {
    /// MSH-3.
    pub sending_application: &'h str,
    /// MSH-4.
    pub sending_facility: &'h str,
    /// MSH-5.
    pub receiving_application: &'h str,
    /// MSH-6.
    pub receiving_facility: &'h str,
    /// MSH-7, an HL7 timestamp.
    pub timestamp: &'h str,
    /// MSH-10, unique per message; a resend keeps it.
    pub control_id: &'h str,
    /// MSH-11, `T` or `P`.
    pub processing_id: &'h str,
    /// MSH-12.
    pub version: &'h str,
}

/// A message with its MSH filled in: `message_type` is `TYPE^TRIGGER`, `structure` the
/// message structure for MSH-9.3 (written from v2.3.1 on). The text is UTF-8; MSH-18 says so
/// (`UNICODE UTF-8`) from v2.5, the first version whose table 0211 has that value. Before
/// v2.5 MSH-18 stays empty and the transport's `charset=UTF-8` carries it.
pub fn new_message(
    header: &OutboundHeader<'_>,
    message_type: &str,
    structure: Option<&str>,
) -> Result<MessageBuilder, BuildError> {
    let encoding = Encoding::default();
    let mut message = MessageBuilder::new(encoding);
    let (code, trigger) = message_type.split_once('^').unwrap_or((message_type, ""));
    let msh = message.msh();
    for (field, value) in [
        (3, header.sending_application),
        (4, header.sending_facility),
        (5, header.receiving_application),
        (6, header.receiving_facility),
        (7, header.timestamp),
        (10, header.control_id),
        (11, header.processing_id),
        (12, header.version),
    ] {
        msh.set(&encoding, field, 1, 1, 1, value)?;
    }
    if crate::hl7::parse_version(header.version) >= (2, 5, 0) {
        msh.set(&encoding, 18, 1, 1, 1, "UNICODE UTF-8")?;
    }
    msh.set(&encoding, 9, 1, 1, 1, code)?;
    msh.set(&encoding, 9, 1, 2, 1, trigger)?;
    if let Some(structure) = structure {
        msh.set(&encoding, 9, 1, 3, 1, structure)?;
    }
    Ok(message)
}
