//! Paths that address a part of a message, 1-based everywhere:
//!
//! ```text
//! PID-3            field 3 of the first PID
//! PID-3[2]         its second repetition
//! PID-3.1          component 1 (of the first repetition)
//! PID-3.1.2        subcomponent 2 of that component
//! OBX[2]-5         field 5 of the second OBX
//! PID-3[CX.5=NH].1 component 1 of the repetition whose 5th component is NH
//! OBX[OBX-2=ED]-5.5  component 5 of field 5 of the OBX whose field 2 is ED
//! ```
//!
//! Filter values may be quoted (`[CX.5="a]b"]`, with `\"` and `\\`). Paths parse, print back
//! to the same text and evaluate against a [`Message`].
//!
//! The text parts of a path are `Cow<'static, str>`, so generated code writes its paths as
//! `static` values with the `const` constructors ([`Path::new`], [`Path::selected`],
//! [`SegmentFilter::new`], [`RepetitionFilter::new`]) and nothing is allocated; a parsed path
//! owns its text.

use std::borrow::Cow;
use std::fmt;

use super::charset::Charset;
use super::index::{DelimiterIndex, Node};
use super::message::Message;
use super::span::Span;

/// Upper bound for any index in a path: HL7 has no segment with this many fields, and it keeps
/// a typo such as `PID-33333333` from being taken literally.
const MAX_INDEX: usize = 99_999;

/// A parsed path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Path {
    /// Segment identifier, e.g. `PID`.
    pub segment: Cow<'static, str>,
    /// Which occurrence(s) of the segment.
    pub segment_selector: Option<SegmentSelector>,
    /// Field number (MSH-1 is the field separator).
    pub field: usize,
    /// Which repetition(s) of the field.
    pub repetition: Option<RepetitionSelector>,
    /// Component number, when the path goes below the field.
    pub component: Option<usize>,
    /// Subcomponent number, when the path goes below the component.
    pub subcomponent: Option<usize>,
}

/// Picks segment occurrences.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SegmentSelector {
    /// The n-th occurrence, from 1.
    Occurrence(usize),
    /// Occurrences whose field (component, subcomponent) equals a value.
    Where(SegmentFilter),
}

/// `OBX-2=ED` inside `OBX[…]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SegmentFilter {
    /// Field number within the same segment.
    pub field: usize,
    /// Optional component.
    pub component: Option<usize>,
    /// Optional subcomponent.
    pub subcomponent: Option<usize>,
    /// The value to match, decoded text compared exactly.
    pub value: Cow<'static, str>,
}

/// Picks repetitions of a field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RepetitionSelector {
    /// The n-th repetition, from 1.
    Index(usize),
    /// Repetitions whose component equals a value.
    Where(RepetitionFilter),
}

/// `CX.5=NH` inside `PID-3[…]`: the datatype name documents the component and lets the
/// compiler check it against the dictionary; evaluation uses the numbers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepetitionFilter {
    /// The field's datatype, e.g. `CX`.
    pub datatype: Cow<'static, str>,
    /// Component number.
    pub component: usize,
    /// Optional subcomponent number.
    pub subcomponent: Option<usize>,
    /// The value to match.
    pub value: Cow<'static, str>,
}

/// A malformed path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("path {path:?}, character {position}: {message}")]
pub struct PathError {
    /// The path text.
    pub path: String,
    /// 1-based character position of the fault.
    pub position: usize,
    /// What was expected.
    pub message: String,
}

/// Where a hit was found: enough to build an HL7 ERR-2 (ERL) location.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    /// Segment identifier.
    pub segment: String,
    /// Occurrence of that segment in the message, from 1.
    pub occurrence: usize,
    /// Field number.
    pub field: usize,
    /// Repetition number, from 1.
    pub repetition: usize,
    /// Component number, when the hit is a component or below.
    pub component: Option<usize>,
    /// Subcomponent number, when the hit is a subcomponent.
    pub subcomponent: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.segment)?;
        if self.occurrence != 1 {
            write!(f, "[{}]", self.occurrence)?;
        }
        write!(f, "-{}", self.field)?;
        if self.repetition != 1 {
            write!(f, "[{}]", self.repetition)?;
        }
        if let Some(c) = self.component {
            write!(f, ".{c}")?;
        }
        if let Some(s) = self.subcomponent {
            write!(f, ".{s}")?;
        }
        Ok(())
    }
}

/// One value a path selected.
#[derive(Debug, Clone)]
pub struct Hit<'a> {
    /// Where it is.
    pub location: Location,
    /// The value (at the level the path addresses).
    pub span: Span<'a>,
}

impl SegmentFilter {
    /// `SEG-field[.component[.subcomponent]]=value`, without allocating.
    pub const fn new(
        field: usize,
        component: Option<usize>,
        subcomponent: Option<usize>,
        value: &'static str,
    ) -> Self {
        Self {
            field,
            component,
            subcomponent,
            value: Cow::Borrowed(value),
        }
    }
}

impl RepetitionFilter {
    /// `DT.component[.subcomponent]=value`, without allocating.
    pub const fn new(
        datatype: &'static str,
        component: usize,
        subcomponent: Option<usize>,
        value: &'static str,
    ) -> Self {
        Self {
            datatype: Cow::Borrowed(datatype),
            component,
            subcomponent,
            value: Cow::Borrowed(value),
        }
    }
}

impl SegmentSelector {
    /// `[SEG-field[.component[.subcomponent]]=value]`, without allocating.
    pub const fn matching(
        field: usize,
        component: Option<usize>,
        subcomponent: Option<usize>,
        value: &'static str,
    ) -> Self {
        Self::Where(SegmentFilter::new(field, component, subcomponent, value))
    }
}

impl RepetitionSelector {
    /// `[DT.component[.subcomponent]=value]`, without allocating.
    pub const fn matching(
        datatype: &'static str,
        component: usize,
        subcomponent: Option<usize>,
        value: &'static str,
    ) -> Self {
        Self::Where(RepetitionFilter::new(
            datatype,
            component,
            subcomponent,
            value,
        ))
    }
}

impl Path {
    /// `SEG-field`, without allocating: `Path::new("PID", 7)` is `PID-7`.
    pub const fn new(segment: &'static str, field: usize) -> Self {
        Self::selected(segment, None, field, None)
    }

    /// `SEG[selector]-field`, without allocating: `OBX[OBX-2=ED]-5`.
    pub const fn in_segment(
        segment: &'static str,
        selector: SegmentSelector,
        field: usize,
    ) -> Self {
        Self::selected(segment, Some(selector), field, None)
    }

    /// `SEG-field[selector]`, without allocating: `PID-3[CX.5=NH]`.
    pub const fn in_repetition(
        segment: &'static str,
        field: usize,
        selector: RepetitionSelector,
    ) -> Self {
        Self::selected(segment, None, field, Some(selector))
    }

    /// A path with both selectors (or none), without allocating: `OBX[2]-5[CE.1=X]`.
    pub const fn selected(
        segment: &'static str,
        segment_selector: Option<SegmentSelector>,
        field: usize,
        repetition: Option<RepetitionSelector>,
    ) -> Self {
        Self {
            segment: Cow::Borrowed(segment),
            segment_selector,
            field,
            repetition,
            component: None,
            subcomponent: None,
        }
    }

    /// The same path one level down, at `component`.
    #[must_use]
    pub const fn component(mut self, component: usize) -> Self {
        self.component = Some(component);
        self
    }

    /// The same path at `subcomponent` of its component.
    #[must_use]
    pub const fn subcomponent(mut self, subcomponent: usize) -> Self {
        self.subcomponent = Some(subcomponent);
        self
    }

    /// Parses a path.
    pub fn parse(text: &str) -> Result<Self, PathError> {
        let mut p = Parser {
            text,
            bytes: text.as_bytes(),
            pos: 0,
        };
        let path = p.path()?;
        if p.pos != p.bytes.len() {
            return Err(p.error("unexpected text after the path"));
        }
        Ok(path)
    }

    /// The location this path names when it has no filters and no missing indexes are
    /// assumed (first occurrence, first repetition): used to report a missing value.
    pub fn nominal_location(&self) -> Location {
        Location {
            segment: self.segment.to_string(),
            occurrence: match self.segment_selector {
                Some(SegmentSelector::Occurrence(n)) => n,
                _ => 1,
            },
            field: self.field,
            repetition: match self.repetition {
                Some(RepetitionSelector::Index(n)) => n,
                _ => 1,
            },
            component: self.component,
            subcomponent: self.subcomponent,
        }
    }

    /// True when the path uses a filter in either selector.
    pub fn has_filter(&self) -> bool {
        matches!(self.segment_selector, Some(SegmentSelector::Where(_)))
            || matches!(self.repetition, Some(RepetitionSelector::Where(_)))
    }

    /// Every value the path selects, in message order. Without an explicit index, every
    /// occurrence and every repetition is considered.
    pub fn find_all<'a>(&self, message: &Message<'a>) -> Vec<Hit<'a>> {
        let mut hits = Vec::new();
        self.walk(message, |hit| {
            hits.push(hit);
            true
        });
        hits
    }

    /// The first value the path selects (HL7's convention when no index is given).
    pub fn find_first<'a>(&self, message: &Message<'a>) -> Option<Hit<'a>> {
        let mut first = None;
        self.walk(message, |hit| {
            first = Some(hit);
            false
        });
        first
    }

    /// The first value the path selects, without its [`Location`]: what a lookup that only
    /// reads the value needs (no allocation).
    pub fn find_value<'a>(&self, message: &Message<'a>) -> Option<Span<'a>> {
        let mut first = None;
        self.walk_spans(message, |_, _, span| {
            first = Some(span);
            false
        });
        first
    }

    /// Calls `visit` for each hit until it returns false.
    fn walk<'a>(&self, message: &Message<'a>, mut visit: impl FnMut(Hit<'a>) -> bool) {
        self.walk_spans(message, |occurrence, repetition, span| {
            visit(Hit {
                location: self.location(occurrence, repetition),
                span,
            })
        });
    }

    /// Calls `visit` with (segment occurrence, repetition number, value) for each hit until
    /// it returns false; the location is built only by callers that want it. Values are
    /// found through the message's delimiter index (built by the first lookup), so a lookup
    /// counts separators instead of reading the values it passes over.
    fn walk_spans<'a>(
        &self,
        message: &Message<'a>,
        mut visit: impl FnMut(usize, usize, Span<'a>) -> bool,
    ) {
        let index = message.index();
        let mut occurrence = 0;
        let id = self.segment.as_bytes();
        for (i, segment) in message.segments().enumerate() {
            // Compared as bytes: identifiers were checked to be ASCII at parse time.
            if segment.raw().get(..3) != Some(id) {
                continue;
            }
            occurrence += 1;
            let wanted = match &self.segment_selector {
                None => true,
                Some(SegmentSelector::Occurrence(n)) => *n == occurrence,
                Some(SegmentSelector::Where(filter)) => segment_matches(
                    DelimiterIndex::field(index, i, &segment, filter.field),
                    filter,
                ),
            };
            if !wanted {
                continue;
            }
            if let Some(field) = DelimiterIndex::field(index, i, &segment, self.field)
                && !self.walk_field(field, occurrence, &mut visit)
            {
                return;
            }
            if matches!(self.segment_selector, Some(SegmentSelector::Occurrence(_))) {
                return;
            }
        }
    }

    fn walk_field<'a>(
        &self,
        field: Node<'_, 'a>,
        occurrence: usize,
        visit: &mut impl FnMut(usize, usize, Span<'a>) -> bool,
    ) -> bool {
        for (index, repetition) in field.children().enumerate() {
            let number = index + 1;
            let wanted = match &self.repetition {
                None => true,
                Some(RepetitionSelector::Index(n)) => *n == number,
                Some(RepetitionSelector::Where(filter)) => repetition_matches(repetition, filter),
            };
            if !wanted {
                continue;
            }
            // A path that names the field itself (no repetition, component or subcomponent)
            // selects the whole field once, not each repetition.
            if self.repetition.is_none() && self.component.is_none() {
                return visit(occurrence, 1, field.span());
            }
            if let Some(span) = self.below_repetition(repetition)
                && !visit(occurrence, number, span)
            {
                return false;
            }
        }
        true
    }

    fn below_repetition<'a>(&self, repetition: Node<'_, 'a>) -> Option<Span<'a>> {
        let Some(c) = self.component else {
            return Some(repetition.span());
        };
        let component = repetition.nth(c)?;
        match self.subcomponent {
            None => Some(component.span()),
            Some(s) => component.nth(s).map(|sub| sub.span()),
        }
    }

    fn location(&self, occurrence: usize, repetition: usize) -> Location {
        Location {
            segment: self.segment.to_string(),
            occurrence,
            field: self.field,
            repetition,
            component: self.component,
            subcomponent: self.subcomponent,
        }
    }
}

/// True when the span's decoded text is `value`. Without an escape character the decoded
/// text is the bytes themselves whenever they are UTF-8 or ASCII (every supported charset
/// reads ASCII as itself), so the bytes are compared without decoding.
fn text_equals(span: Option<Span<'_>>, value: &str) -> bool {
    let Some(span) = span else {
        return false;
    };
    let encoding = span.encoding();
    let raw = span.raw();
    let plain = !raw.contains(&encoding.delimiters.escape)
        && (encoding.charset == Charset::Utf8 || value.is_ascii());
    if plain {
        return raw == value.as_bytes();
    }
    span.text().is_ok_and(|text| text == value)
}

fn segment_matches(field: Option<Node<'_, '_>>, filter: &SegmentFilter) -> bool {
    let Some(field) = field else {
        return false;
    };
    // A segment filter compares the first repetition, as HL7 tools read a field by default.
    let Some(repetition) = field.nth(1) else {
        return false;
    };
    let span = match (filter.component, filter.subcomponent) {
        (None, _) => Some(field.span()),
        (Some(c), None) => repetition.nth(c).map(|c| c.span()),
        (Some(c), Some(s)) => repetition.nth(c).and_then(|c| c.nth(s)).map(|s| s.span()),
    };
    text_equals(span, &filter.value)
}

fn repetition_matches(repetition: Node<'_, '_>, filter: &RepetitionFilter) -> bool {
    let component = repetition.nth(filter.component);
    let span = match filter.subcomponent {
        None => component.map(|c| c.span()),
        Some(s) => component.and_then(|c| c.nth(s)).map(|s| s.span()),
    };
    text_equals(span, &filter.value)
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.segment)?;
        match &self.segment_selector {
            None => {}
            Some(SegmentSelector::Occurrence(n)) => write!(f, "[{n}]")?,
            Some(SegmentSelector::Where(w)) => {
                write!(f, "[{}-{}", self.segment, w.field)?;
                write_tail(f, w.component, w.subcomponent)?;
                write!(f, "={}]", QuotedValue(&w.value))?;
            }
        }
        write!(f, "-{}", self.field)?;
        match &self.repetition {
            None => {}
            Some(RepetitionSelector::Index(n)) => write!(f, "[{n}]")?,
            Some(RepetitionSelector::Where(w)) => {
                write!(f, "[{}.{}", w.datatype, w.component)?;
                write_tail(f, w.subcomponent, None)?;
                write!(f, "={}]", QuotedValue(&w.value))?;
            }
        }
        write_tail(f, self.component, self.subcomponent)
    }
}

fn write_tail(f: &mut fmt::Formatter<'_>, a: Option<usize>, b: Option<usize>) -> fmt::Result {
    if let Some(a) = a {
        write!(f, ".{a}")?;
        if let Some(b) = b {
            write!(f, ".{b}")?;
        }
    }
    Ok(())
}

/// A filter value, quoted when printing it bare would not parse back to the same value.
struct QuotedValue<'v>(&'v str);

impl fmt::Display for QuotedValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        let bare_ok =
            !v.is_empty() && !v.starts_with('"') && !v.contains([']', '[', '\\']) && v.trim() == v;
        if bare_ok {
            return f.write_str(v);
        }
        f.write_str("\"")?;
        for c in v.chars() {
            if c == '"' || c == '\\' {
                f.write_str("\\")?;
            }
            write!(f, "{c}")?;
        }
        f.write_str("\"")
    }
}

struct Parser<'t> {
    text: &'t str,
    bytes: &'t [u8],
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, message: &str) -> PathError {
        PathError {
            path: self.text.to_string(),
            position: self.text[..self.pos.min(self.text.len())].chars().count() + 1,
            message: message.to_string(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, b: u8, what: &str) -> Result<(), PathError> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(self.error(what))
        }
    }

    fn segment_id(&mut self) -> Result<Cow<'static, str>, PathError> {
        let id = self.bytes.get(self.pos..self.pos + 3);
        match id {
            Some(id)
                if id[0].is_ascii_uppercase()
                    && id[1..]
                        .iter()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) =>
            {
                self.pos += 3;
                Ok(Cow::Owned(String::from_utf8_lossy(id).into_owned()))
            }
            _ => Err(self.error(
                "expected a segment identifier: three upper-case letters or digits, e.g. PID",
            )),
        }
    }

    fn number(&mut self, what: &str) -> Result<usize, PathError> {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        let digits = &self.text[start..self.pos];
        if digits.is_empty() {
            return Err(self.error(&format!("expected {what} (a number from 1)")));
        }
        match digits.parse::<usize>() {
            Ok(n) if (1..=MAX_INDEX).contains(&n) => Ok(n),
            _ => {
                self.pos = start;
                Err(self.error(&format!(
                    "{what} must be from 1 to {MAX_INDEX} (paths count from 1)"
                )))
            }
        }
    }

    /// `.C` and `.C.S` after a field or filter target.
    fn tail(&mut self) -> Result<(Option<usize>, Option<usize>), PathError> {
        if !self.eat(b'.') {
            return Ok((None, None));
        }
        let c = self.number("a component number")?;
        if !self.eat(b'.') {
            return Ok((Some(c), None));
        }
        let s = self.number("a subcomponent number")?;
        Ok((Some(c), Some(s)))
    }

    fn value(&mut self) -> Result<Cow<'static, str>, PathError> {
        if self.eat(b'"') {
            let mut out = String::new();
            loop {
                let rest = &self.text[self.pos..];
                let mut chars = rest.chars();
                match chars.next() {
                    None => return Err(self.error("unterminated quoted value")),
                    Some('"') => {
                        self.pos += 1;
                        return Ok(Cow::Owned(out));
                    }
                    Some('\\') => {
                        match chars.next() {
                            Some(c @ ('"' | '\\')) => out.push(c),
                            _ => {
                                return Err(
                                    self.error("inside quotes only \\\" and \\\\ are escapes")
                                );
                            }
                        }
                        self.pos += 2;
                    }
                    Some(c) => {
                        out.push(c);
                        self.pos += c.len_utf8();
                    }
                }
            }
        }
        let start = self.pos;
        while self.peek().is_some_and(|b| b != b']') {
            self.pos += 1;
        }
        let value = &self.text[start..self.pos];
        if value.is_empty() {
            return Err(self.error("expected a value after '=' (quote an empty value: \"\")"));
        }
        Ok(Cow::Owned(value.to_string()))
    }

    fn path(&mut self) -> Result<Path, PathError> {
        let segment = self.segment_id()?;
        let segment_selector = if self.eat(b'[') {
            let selector = if self.peek().is_some_and(|b| b.is_ascii_digit()) {
                SegmentSelector::Occurrence(self.number("a segment occurrence")?)
            } else {
                let at = self.pos;
                let target = self.segment_id()?;
                if target != segment {
                    self.pos = at;
                    return Err(self.error(&format!(
                        "a segment filter names a field of the same segment: {segment}-N=value"
                    )));
                }
                self.expect(b'-', "expected '-' and a field number in the filter")?;
                let field = self.number("a field number")?;
                let (component, subcomponent) = self.tail()?;
                self.expect(b'=', "expected '=' and the value to match")?;
                let value = self.value()?;
                SegmentSelector::Where(SegmentFilter {
                    field,
                    component,
                    subcomponent,
                    value,
                })
            };
            self.expect(b']', "expected ']'")?;
            Some(selector)
        } else {
            None
        };
        self.expect(b'-', "expected '-' and a field number, e.g. PID-3")?;
        let field = self.number("a field number")?;
        let repetition = if self.eat(b'[') {
            let selector = if self.peek().is_some_and(|b| b.is_ascii_digit()) {
                RepetitionSelector::Index(self.number("a repetition number")?)
            } else {
                let start = self.pos;
                while self
                    .peek()
                    .is_some_and(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
                {
                    self.pos += 1;
                }
                let datatype: Cow<'static, str> =
                    Cow::Owned(self.text[start..self.pos].to_string());
                if datatype.is_empty() || !datatype.as_bytes()[0].is_ascii_uppercase() {
                    self.pos = start;
                    return Err(
                        self.error("expected a repetition number or a filter such as CX.5=NH")
                    );
                }
                self.expect(b'.', "expected '.' and a component number, e.g. CX.5")?;
                let component = self.number("a component number")?;
                let subcomponent = if self.eat(b'.') {
                    Some(self.number("a subcomponent number")?)
                } else {
                    None
                };
                self.expect(b'=', "expected '=' and the value to match")?;
                let value = self.value()?;
                RepetitionSelector::Where(RepetitionFilter {
                    datatype,
                    component,
                    subcomponent,
                    value,
                })
            };
            self.expect(b']', "expected ']'")?;
            Some(selector)
        } else {
            None
        };
        let (component, subcomponent) = self.tail()?;
        Ok(Path {
            segment,
            segment_selector,
            field,
            repetition,
            component,
            subcomponent,
        })
    }
}

impl std::str::FromStr for Path {
    type Err = PathError;
    fn from_str(s: &str) -> Result<Self, PathError> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7::ParseOptions;

    const MSG: &[u8] = b"MSH|^~\\&|APP|FAC|EMS|EMS|20240101||ORU^R01^ORU_R01|42|P|2.5\r\
PID|1||123^^^HOSP^MR~9449305552^^^NHS^NH||SMITH^JOHN&J\r\
OBX|1|TX|||first\r\
OBX|2|ED|||^application^pdf^Base64^JVBERi0=\r";

    fn first(path: &str) -> Option<String> {
        let msg = Message::parse_with(MSG, &ParseOptions::default()).unwrap();
        Path::parse(path)
            .unwrap()
            .find_first(&msg)
            .map(|h| h.span.text().unwrap().into_owned())
    }

    #[test]
    fn evaluates_every_form() {
        assert_eq!(
            first("PID-3").as_deref(),
            Some("123^^^HOSP^MR~9449305552^^^NHS^NH")
        );
        assert_eq!(first("PID-3[2]").as_deref(), Some("9449305552^^^NHS^NH"));
        assert_eq!(first("PID-3.1").as_deref(), Some("123"));
        assert_eq!(first("PID-5.2.2").as_deref(), Some("J"));
        assert_eq!(first("OBX[2]-2").as_deref(), Some("ED"));
        assert_eq!(first("PID-3[CX.5=NH].1").as_deref(), Some("9449305552"));
        assert_eq!(first("OBX[OBX-2=ED]-5.5").as_deref(), Some("JVBERi0="));
        assert_eq!(first("MSH-1").as_deref(), Some("|"));
        assert_eq!(first("MSH-2").as_deref(), Some("^~\\&"));
        assert_eq!(first("MSH-9.3").as_deref(), Some("ORU_R01"));
        assert_eq!(first("PID-3[CX.5=XX].1"), None);
        assert_eq!(first("PID-40"), None);
        assert_eq!(first("ZZZ-1"), None);
    }

    #[test]
    fn find_all_walks_occurrences_and_repetitions() {
        let msg = Message::parse(MSG).unwrap();
        let hits = Path::parse("PID-3.1").unwrap().find_all(&msg);
        let values: Vec<_> = hits.iter().map(|h| h.span.text().unwrap()).collect();
        assert_eq!(values, ["123", "9449305552"]);
        assert_eq!(hits[1].location.to_string(), "PID-3[2].1");
        let obx = Path::parse("OBX-2").unwrap().find_all(&msg);
        assert_eq!(obx.len(), 2);
        assert_eq!(obx[1].location.occurrence, 2);
    }

    #[test]
    fn prints_what_it_parsed() {
        for text in [
            "PID-3",
            "PID-3[2]",
            "PID-3.1",
            "PID-3.1.2",
            "OBX[2]-5",
            "PID-3[CX.5=NH].1",
            "OBX[OBX-2=ED]-5.5",
            "OBX[OBX-3.1=\"a]b\"]-5",
            "PID-3[CX.4.1=\"\"]",
        ] {
            let path = Path::parse(text).unwrap();
            assert_eq!(path.to_string(), text);
            assert_eq!(Path::parse(&path.to_string()).unwrap(), path);
        }
    }

    #[test]
    fn const_paths_equal_the_parsed_text() {
        static NH: Path =
            Path::in_repetition("PID", 3, RepetitionSelector::matching("CX", 5, None, "NH"))
                .component(1);
        static BOTH: Path = Path::selected(
            "OBX",
            Some(SegmentSelector::Occurrence(2)),
            5,
            Some(RepetitionSelector::Where(RepetitionFilter::new(
                "CE",
                1,
                Some(2),
                "a]b",
            ))),
        );
        static ED: Path =
            Path::in_segment("OBX", SegmentSelector::matching(2, None, None, "ED"), 5).component(5);
        static FILTER: Path = Path::in_segment(
            "OBX",
            SegmentSelector::Where(SegmentFilter::new(3, Some(1), None, "x")),
            5,
        );
        static NAME: Path = Path::new("PID", 5).component(1).subcomponent(2);
        for (path, text) in [
            (&NH, "PID-3[CX.5=NH].1"),
            (&ED, "OBX[OBX-2=ED]-5.5"),
            (&BOTH, "OBX[2]-5[CE.1.2=\"a]b\"]"),
            (&FILTER, "OBX[OBX-3.1=x]-5"),
            (&NAME, "PID-5.1.2"),
        ] {
            assert_eq!(*path, Path::parse(text).unwrap());
            assert_eq!(path.to_string(), text);
        }
    }

    #[test]
    fn malformed_paths_name_the_character() {
        let cases = [
            ("pid-3", 1),
            ("PID3", 4),
            ("PID-0", 5),
            ("PID-3.", 7),
            ("PID-3[", 7),
            ("PID-3[CX5=NH]", 10),
            ("PID-3[CX.5=NH", 14),
            ("OBX[PID-2=ED]-5", 5),
            ("PID-3 ", 6),
            ("PID-3[CX.5=]", 12),
        ];
        for (text, position) in cases {
            let err = Path::parse(text).unwrap_err();
            assert_eq!(err.position, position, "{text}: {err}");
        }
    }
}
