//! HL7 test messages: the samples the engines send to the demo and northwest gateways, the
//! walkthrough's ORU^R01 the sender delivers, MSH-10 read and replaced, and the ACK read back
//! the way an engine reads it: split on the delimiters MSH declares, independently of the
//! gateway's own parser.
//!
//! Only tests link this; a repository sample that cannot be read ends the test, hence
//! `unwrap`.
#![allow(clippy::unwrap_used)]

/// What a stored record must hold: (`/json/pointer`, value).
pub type Expected = &'static [(&'static str, &'static str)];

/// One sample per inbound type of the demo spec (TEST, MSH-11 `T`), with this MSH-10, and
/// what its stored record must hold (`/json/pointer`, value).
pub fn demo_sample(message_type: &str, control_id: &str) -> Option<(Vec<u8>, Expected)> {
    const MSH: &str = "MSH|^~\\&|TIE|DEMO-TRUST|EMS|EMS-HOST|20261127090000||";
    const PID: &str = "PID|1||9449305552^^^NHS^NH~D123456^^^DEMO^MR||SMITH^JOHN^Q^^MR||19700101|M|||1 HIGH STREET^^LEEDS^^LS1 1AA^GBR\r";
    let text = match message_type {
        "ADT^A28" | "ADT^A31" => {
            let trigger = &message_type[4..];
            format!(
                "{MSH}ADT^{trigger}^ADT_A05|{control_id}|T|2.4\rEVN|{trigger}|20261127090000\r{PID}PV1|1|N\r"
            )
        }
        "ADT^A40" => format!(
            "{MSH}ADT^A40^ADT_A39|{control_id}|T|2.4\rEVN|A40|20261127090000\r{PID}MRG|D999999^^^DEMO^MR\r"
        ),
        "ORM^O01" => demo_order(control_id, "COL", "SMITH", "T"),
        _ => return None,
    };
    let expect: Expected = match message_type {
        "ADT^A28" | "ADT^A31" => &[
            ("/nhs_number", "9449305552"),
            ("/mrn", "D123456"),
            ("/family", "SMITH"),
            ("/sex", "male"),
        ],
        "ADT^A40" => &[
            ("/patient/nhs_number", "9449305552"),
            ("/prior_mrn", "D999999"),
        ],
        _ => &[
            ("/patient/nhs_number", "9449305552"),
            ("/placer_id", "PLC-1001"),
            ("/procedure", "COL"),
            ("/requester", "C1234"),
        ],
    };
    Some((text.into_bytes(), expect))
}

/// A demo ORM^O01 with this control id, procedure code, family name and processing id.
pub fn demo_order(control_id: &str, procedure: &str, family: &str, processing_id: &str) -> String {
    format!(
        "MSH|^~\\&|TIE|DEMO-TRUST|EMS|EMS-HOST|20261127090500||ORM^O01^ORM_O01|{control_id}|{processing_id}|2.4\r\
PID|1||9449305552^^^NHS^NH~D123456^^^DEMO^MR||{family}^JOHN||19700101|M\r\
ORC|NW|PLC-1001|||||^^^^^R||20261127090500|||C1234^JONES^ANNA\r\
OBR|1|PLC-1001||{procedure}^Procedure^LOCAL|||20261127090500\r\
NTE|1||Change in bowel habit \\T\\ weight loss\r"
    )
}

/// A demo SIU^S12: a type the demo spec does not declare.
pub fn demo_schedule(control_id: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|TIE|DEMO-TRUST|EMS|EMS-HOST|20261127091000||SIU^S12^SIU_S12|{control_id}|T|2.4\r\
SCH|1|1\r\
PID|1||9449305552^^^NHS^NH||SMITH^JOHN||19700101|M\r"
    )
    .into_bytes()
}

/// One sample per inbound type of the northwest spec (HL7 2.3) and the stored record's
/// expected values.
pub fn northwest_sample(message_type: &str, control_id: &str) -> Option<(Vec<u8>, Expected)> {
    const PID: &str = "PID|1||9449305552^^^NHS^NH~RX10001^^^NWCH^PI||OKAFOR^ADAEZE^CHIOMA^^MRS||19850312|F|||14 MARKET STREET^^BOLTON^GREATER MANCHESTER^BL1 1AA^GBR^H||01204 555123~07700 900123|||||||||N\rPD1|||DEANE MEDICAL CENTRE^^P82001|G3426500^PATEL^RAVI^^^DR\r";
    let msh = |t: &str| {
        format!(
            "MSH|^~\\&|PAS|NWCH|EMS|NWCH-EMS|20261127093000||ADT^{t}|{control_id}|T|2.3\rEVN|{t}|20261127093000\r"
        )
    };
    let text = match message_type {
        "ADT^A28" => format!("{}{PID}PV1|1|N\r", msh("A28")),
        "ADT^A31" => format!("{}{PID}PV1|1|N\r", msh("A31")),
        "ADT^A40" => format!("{}{PID}MRG|RX10077^^^NWCH^PI\rPV1|1|N\r", msh("A40")),
        _ => return None,
    };
    let expect: Expected = match message_type {
        "ADT^A40" => &[
            ("/surviving/nhs_number", "9449305552"),
            ("/previous_id", "RX10077"),
        ],
        _ => &[("/nhs_number", "9449305552"), ("/surname", "OKAFOR")],
    };
    Some((text.into_bytes(), expect))
}

/// Replaces MSH-10 of a message with `control_id` (the engines number their messages).
pub fn with_control_id(message: &[u8], control_id: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(message);
    let (msh, rest) = text.split_once('\r').unwrap_or((&text, ""));
    let mut fields: Vec<&str> = msh.split('|').collect();
    fields[9] = control_id;
    format!("{}\r{rest}", fields.join("|")).into_bytes()
}

/// The walkthrough's ORU^R01 with a PDF report (`examples/messages/oru_r01_pdf.hl7`, MSH-11
/// `T`), with MSH-10 set to `control_id`.
pub fn oru(control_id: &str) -> Vec<u8> {
    let text =
        std::fs::read_to_string(crate::repo().join("examples/messages/oru_r01_pdf.hl7")).unwrap();
    let text = text.replace("\r\n", "\r").replace('\n', "\r");
    assert_eq!(
        text.split('\r')
            .next()
            .and_then(|msh| msh.split('|').nth(10)),
        Some("T"),
        "the sample is a TEST message"
    );
    with_control_id(text.as_bytes(), control_id)
}

/// The control ids `PREFIX-001` … for `range`.
pub fn ids(prefix: &str, range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    range.map(|n| format!("{prefix}-{n:03}")).collect()
}

/// MSH-10 of an HL7 message (fields split on `|`; MSH-1 is the separator itself).
pub fn control_id_of(message: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(message).ok()?;
    let msh = text.split(['\r', '\n']).next()?;
    if !msh.starts_with("MSH") {
        return None;
    }
    msh.split('|').nth(9).map(str::to_owned)
}

/// An ACK as an engine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckView {
    /// Segments, each split on the field separator (MSH: `MSH`, `^~\&`, MSH-3, …).
    pub segments: Vec<Vec<String>>,
}

impl AckView {
    /// Splits an ER7 text (CR, LF or CRLF between segments; MLLP framing tolerated).
    pub fn read(text: &str) -> Option<Self> {
        let text = text
            .trim_start_matches('\u{b}')
            .trim_end_matches(['\u{1c}', '\r', '\n']);
        if !text.starts_with("MSH") || text.len() < 8 {
            return None;
        }
        let separator = text[3..].chars().next()?;
        let segments = text
            .split(['\r', '\n'])
            .filter(|s| !s.is_empty())
            .map(|s| {
                let mut fields: Vec<String> = s.split(separator).map(str::to_owned).collect();
                if fields[0] == "MSH" {
                    // MSH-1 is the separator itself: keep the numbering of the standard.
                    fields.insert(1, separator.to_string());
                }
                fields
            })
            .collect();
        Some(Self { segments })
    }

    /// Field `n` (from 1) of the first segment `id`; empty when absent.
    pub fn field(&self, id: &str, n: usize) -> &str {
        self.segments
            .iter()
            .find(|s| s[0] == id)
            .and_then(|s| s.get(n))
            .map_or("", String::as_str)
    }

    /// Whether a segment `id` is present.
    pub fn has(&self, id: &str) -> bool {
        self.segments.iter().any(|s| s[0] == id)
    }

    /// MSA-1.
    pub fn code(&self) -> &str {
        self.field("MSA", 1)
    }

    /// MSA-2: the acknowledged MSH-10.
    pub fn acknowledged(&self) -> &str {
        self.field("MSA", 2)
    }

    /// Every ERR segment, rejoined with `|`.
    pub fn errors(&self) -> Vec<String> {
        self.segments
            .iter()
            .filter(|s| s[0] == "ERR")
            .map(|s| s.join("|"))
            .collect()
    }
}

/// `len` bytes of base64 text (rounded down to a multiple of 4, no padding): a fixed
/// pseudo-random sequence of the alphabet, standing in for an encoded PDF.
pub fn base64_text(len: usize) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut state: u32 = 0x9E37_79B9;
    (0..len / 4 * 4)
        .map(|_| {
            // xorshift32: cheap, deterministic, not compressible by run length.
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            char::from(ALPHABET[(state >> 26) as usize])
        })
        .collect()
}

/// A demo ORM^O01 (accepted, mapped and stored by gw-demo TEST) carrying a referral letter
/// as `payload_len` bytes of base64 in an OBX ED segment (OBX-5.5), like the 5 MiB PDF
/// report of the parser's benchmark.
pub fn demo_order_with_attachment(control_id: &str, payload_len: usize) -> Vec<u8> {
    let mut message = demo_order(control_id, "COL", "SMITH", "T");
    message.push_str(&format!(
        "OBX|1|ED|LETTER^Referral letter^LOCAL||^application^pdf^Base64^{}||||||F\r",
        base64_text(payload_len)
    ));
    message.into_bytes()
}

/// [`oru`] with its PDF (OBX-5.5) replaced by `payload_len` bytes of base64.
pub fn oru_with_pdf(control_id: &str, payload_len: usize) -> Vec<u8> {
    let text = String::from_utf8(oru(control_id)).unwrap();
    let (head, rest) = text.split_once("^Base64^").unwrap();
    let tail = &rest[rest.find('|').unwrap()..];
    format!("{head}^Base64^{}{tail}", base64_text(payload_len)).into_bytes()
}
