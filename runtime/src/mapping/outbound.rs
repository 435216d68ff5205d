//! Starting and finishing an outbound message: the MSH every message EMS sends carries, and
//! what its type needs beyond the record's fields (set IDs, MSA-1, MSH-18).

use crate::config::{SendHeader, Text, TextList};
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

/// One outbound message type as the HL7 dictionary of the spec's version describes it:
/// what a message of the type carries besides its record's fields. The generator writes one
/// `const` per outbound type; the record's `build` and the intake's builder both use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageShape {
    /// `TYPE^TRIGGER`.
    pub message_type: Text,
    /// The message structure for MSH-9.3 (written from v2.3.1 on), e.g. `ORU_R01`.
    pub structure: Option<Text>,
    /// Segments of the structure whose field 1 is a Set ID (datatype SI): each occurrence
    /// the record leaves without one is numbered 1, 2, … in message order.
    pub set_id_segments: TextList,
    /// The structure carries an MSA (ORR, ORG, …): the MSA follows the MSH, and MSA-1 is
    /// `AA` unless the record writes it.
    pub acknowledgement: bool,
}

impl MessageShape {
    /// A shape with only a type: no structure, no set IDs, no MSA (tests and tools).
    pub const fn bare(message_type: &'static str) -> Self {
        Self {
            message_type: Text::Borrowed(message_type),
            structure: None,
            set_id_segments: TextList::Borrowed(&[]),
            acknowledgement: false,
        }
    }
}

/// The MSH-18 written when a built message is not plain ASCII: the text is UTF-8, and
/// `UNICODE UTF-8` is table 0211's name for it (from v2.5; engines read it in earlier
/// versions too, whose tables have no UTF-8 value). An ASCII message leaves MSH-18 empty,
/// the standard's default.
pub const UTF8_CHARSET: &str = "UNICODE UTF-8";

/// A message with its MSH filled in, and the empty MSA after it when the shape has one.
pub fn new_message(
    header: &OutboundHeader<'_>,
    shape: &MessageShape,
) -> Result<MessageBuilder, BuildError> {
    let encoding = Encoding::default();
    let mut message = MessageBuilder::new(encoding);
    let message_type = &*shape.message_type;
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
    msh.set(&encoding, 9, 1, 1, 1, code)?;
    msh.set(&encoding, 9, 1, 2, 1, trigger)?;
    if let Some(structure) = &shape.structure {
        msh.set(&encoding, 9, 1, 3, 1, structure)?;
    }
    if shape.acknowledgement {
        message.push_segment("MSA")?;
    }
    Ok(message)
}

/// Completes a message the record has written: MSA-1 `AA` when the shape has an MSA the
/// record left without a code, the set IDs the record left empty, and MSH-18 when the text
/// is not ASCII.
pub fn finish(message: &mut MessageBuilder, shape: &MessageShape) -> Result<(), BuildError> {
    let encoding = message.encoding();
    if shape.acknowledgement
        && let Some(msa) = message.segments_mut().find(|s| s.id() == "MSA")
        && msa.field_is_empty(1)
    {
        msa.set(&encoding, 1, 1, 1, 1, "AA")?;
    }
    for id in shape.set_id_segments.iter() {
        let mut occurrence = 0_usize;
        for segment in message.segments_mut().filter(|s| s.id() == id.as_ref()) {
            occurrence += 1;
            if segment.field_is_empty(1) {
                segment.set(&encoding, 1, 1, 1, 1, &occurrence.to_string())?;
            }
        }
    }
    if !message.to_bytes().is_ascii() {
        let msh = message.msh();
        msh.set(&encoding, 18, 1, 1, 1, UTF8_CHARSET)?;
    }
    Ok(())
}

/// The MSH of a message built by an outbound spec test: MSH-3 to MSH-6 from the
/// environment's send settings, its processing id and the spec's version; MSH-7 and MSH-10
/// are placeholders, since tests do not compare them.
pub fn test_header<'a>(
    send: &'a SendHeader,
    processing_id: &'a str,
    version: &'a str,
) -> OutboundHeader<'a> {
    OutboundHeader {
        sending_application: &send.sending_application,
        sending_facility: &send.sending_facility,
        receiving_application: &send.receiving_application,
        receiving_facility: &send.receiving_facility,
        timestamp: "20260101000000",
        control_id: "SPEC-TEST",
        processing_id,
        version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7::{Message, Path};

    const HEADER: OutboundHeader<'static> = OutboundHeader {
        sending_application: "EMS",
        sending_facility: "EMS",
        receiving_application: "TIE",
        receiving_facility: "TRUST",
        timestamp: "20260101120000",
        control_id: "1",
        processing_id: "T",
        version: "2.4",
    };

    const ORR: MessageShape = MessageShape {
        message_type: Text::Borrowed("ORR^O02"),
        structure: Some(Text::Borrowed("ORR_O02")),
        set_id_segments: TextList::Borrowed(&[Text::Borrowed("NTE"), Text::Borrowed("PID")]),
        acknowledgement: true,
    };

    fn built(write: &[(&str, &str)]) -> String {
        let mut message = new_message(&HEADER, &ORR).unwrap();
        for (path, text) in write {
            message.set(&Path::parse(path).unwrap(), text).unwrap();
        }
        finish(&mut message, &ORR).unwrap();
        String::from_utf8(message.to_bytes()).unwrap()
    }

    #[test]
    fn a_response_gets_its_msa_after_the_msh_and_aa_unless_the_record_says_otherwise() {
        let text = built(&[("PID-5.1", "SMITH"), ("MSA-2", "ORM-1")]);
        let lines: Vec<&str> = text.split('\r').collect();
        assert_eq!(lines[1], "MSA|AA|ORM-1", "{text}");
        assert!(lines[2].starts_with("PID|1|"), "{text}");
        let text = built(&[("MSA-1", "AR"), ("MSA-2", "ORM-1")]);
        assert!(text.contains("\rMSA|AR|ORM-1\r"), "{text}");
    }

    #[test]
    fn set_ids_number_the_occurrences_the_record_left_empty() {
        let text = built(&[
            ("NTE-3", "a"),
            ("NTE[2]-3", "b"),
            ("NTE[3]-1", "9"),
            ("NTE[3]-3", "c"),
        ]);
        assert!(text.contains("\rNTE|1||a\rNTE|2||b\rNTE|9||c\r"), "{text}");
    }

    #[test]
    fn msh_18_names_utf_8_only_for_text_that_is_not_ascii() {
        let ascii = built(&[("PID-5.1", "SMITH")]);
        assert_eq!(
            Message::parse(ascii.as_bytes()).unwrap().header_text(18, 1),
            ""
        );
        let utf8 = built(&[("PID-5.1", "BRONTË")]);
        assert_eq!(
            Message::parse(utf8.as_bytes()).unwrap().header_text(18, 1),
            UTF8_CHARSET
        );
    }
}
