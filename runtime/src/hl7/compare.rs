//! Two messages compared field by field: what an outbound spec test checks between the
//! message a record builds and the message the spec says it must produce.

use super::message::{Message, ParseOptions, Segment};

/// Fields written anew for every send, never compared: MSH-7 (the time) and MSH-10 (the
/// control id).
pub const PER_SEND_FIELDS: &[(&str, usize)] = &[("MSH", 7), ("MSH", 10)];

/// The longest value quoted in a difference (a PDF in OBX-5 is cut).
const SHOWN: usize = 48;

/// Where `actual` differs from `expected`, one line per field (`OBX[2]-11: expected "F",
/// got ""`) or missing or extra segment, in segment order; [`PER_SEND_FIELDS`] are skipped.
/// Values compare as written (escaped), so both messages are assumed to use the same
/// delimiters; an absent field equals an empty one.
pub fn differences(expected: &Message<'_>, actual: &Message<'_>) -> Vec<String> {
    let mut out = Vec::new();
    let expected: Vec<Segment<'_>> = expected.segments().collect();
    let actual: Vec<Segment<'_>> = actual.segments().collect();
    for index in 0..expected.len().max(actual.len()) {
        match (expected.get(index), actual.get(index)) {
            (Some(e), Some(a)) if e.id() == a.id() => {
                let label = label(&expected, index);
                compare_fields(&label, e, a, &mut out);
            }
            (Some(e), Some(a)) => out.push(format!(
                "segment {}: expected {}, got {}",
                index + 1,
                e.id(),
                a.id()
            )),
            (Some(e), None) => out.push(format!(
                "segment {}: expected {}, got none",
                index + 1,
                e.id()
            )),
            (None, Some(a)) => out.push(format!("segment {}: unexpected {}", index + 1, a.id())),
            (None, None) => {}
        }
    }
    out
}

/// [`differences`] between two messages as bytes (line endings as the file has them); an
/// error when either does not parse.
pub fn differences_in_bytes(expected: &[u8], actual: &[u8]) -> Result<Vec<String>, String> {
    let lenient = ParseOptions::lenient();
    let expected = Message::parse_with(expected, &lenient)
        .map_err(|e| format!("the expected message does not parse: {e}"))?;
    let actual = Message::parse_with(actual, &lenient)
        .map_err(|e| format!("the built message does not parse: {e}"))?;
    Ok(differences(&expected, &actual))
}

/// `PID`, or `OBX[2]` for a later occurrence.
fn label(segments: &[Segment<'_>], index: usize) -> String {
    let Some(segment) = segments.get(index) else {
        return String::new();
    };
    let id = segment.id();
    let occurrence = segments
        .iter()
        .take(index + 1)
        .filter(|s| s.id() == id)
        .count();
    if occurrence == 1 {
        id.to_string()
    } else {
        format!("{id}[{occurrence}]")
    }
}

fn compare_fields(
    label: &str,
    expected: &Segment<'_>,
    actual: &Segment<'_>,
    out: &mut Vec<String>,
) {
    let count = expected.field_count().max(actual.field_count());
    for n in 1..=count {
        if PER_SEND_FIELDS.contains(&(expected.id(), n)) {
            continue;
        }
        let raw = |s: &Segment<'_>| s.field(n).map(|f| f.raw().to_vec()).unwrap_or_default();
        let (e, a) = (raw(expected), raw(actual));
        if e != a {
            out.push(format!(
                "{label}-{n}: expected {}, got {}",
                shown(&e),
                shown(&a)
            ));
        }
    }
}

fn shown(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    if text.chars().count() > SHOWN {
        let cut: String = text.chars().take(SHOWN).collect();
        format!("{cut:?}…")
    } else {
        format!("{text:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_differing_field_is_named_and_per_send_fields_are_not() {
        let expected = Message::parse(
            b"MSH|^~\\&|EMS|EMS|TIE|T|20260101||ORU^R01|A|T|2.4\rOBX|1|ED\rOBX|2|ED|PDF||x||||||F\r",
        )
        .unwrap();
        let same = Message::parse(
            b"MSH|^~\\&|EMS|EMS|TIE|T|20270202||ORU^R01|B|T|2.4\rOBX|1|ED|\rOBX|2|ED|PDF||x||||||F\r",
        )
        .unwrap();
        assert_eq!(differences(&expected, &same), Vec::<String>::new());
        let other = Message::parse(
            b"MSH|^~\\&|EMS|EMS|TIE|X|20270202||ORU^R01|B|T|2.4\rOBX|1|ED\rOBX|2|ED|PDF||x\rNTE|1\r",
        )
        .unwrap();
        assert_eq!(
            differences(&expected, &other),
            [
                "MSH-6: expected \"T\", got \"X\"",
                "OBX[2]-11: expected \"F\", got \"\"",
                "segment 4: unexpected NTE",
            ]
        );
    }
}
