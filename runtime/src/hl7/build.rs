//! Writing messages: an owned tree of segments whose leaves are stored already escaped, so
//! a value set as text can never break the structure, and a message copied from a parsed one
//! serializes back to exactly the same bytes.

use super::charset::CharsetError;
use super::escape;
use super::message::{Encoding, Message, Segment};
use super::path::{Path, RepetitionSelector, SegmentSelector};
use super::span::Field;

/// Why a message could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// A segment identifier that is not three upper-case letters or digits.
    #[error("segment identifier {0:?} must be three upper-case letters or digits")]
    SegmentId(String),
    /// MSH-1 and MSH-2 are written from the builder's delimiters.
    #[error("MSH-1 and MSH-2 come from the delimiters and cannot be set")]
    HeaderDelimiters,
    /// An index of 0 (HL7 counts from 1).
    #[error("{0} numbers count from 1")]
    ZeroIndex(&'static str),
    /// Text the message's charset cannot carry.
    #[error("{0}")]
    Charset(#[from] CharsetError),
}

/// A field: repetitions of components of subcomponents, each leaf escaped bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldValue {
    repetitions: Vec<Vec<Vec<Vec<u8>>>>,
}

impl FieldValue {
    fn from_field(field: &Field<'_>) -> Self {
        let repetitions = field
            .repetitions()
            .map(|r| {
                r.components()
                    .map(|c| c.subcomponents().map(|s| s.raw().to_vec()).collect())
                    .collect()
            })
            .collect();
        Self { repetitions }
    }

    fn leaf_mut(&mut self, repetition: usize, component: usize, sub: usize) -> &mut Vec<u8> {
        fn grow<T: Default>(v: &mut Vec<T>, index: usize) -> &mut T {
            if v.len() <= index {
                v.resize_with(index + 1, T::default);
            }
            &mut v[index]
        }
        let r = grow(&mut self.repetitions, repetition);
        let c = grow(r, component);
        grow(c, sub)
    }

    fn write(&self, out: &mut Vec<u8>, encoding: &Encoding) {
        let d = &encoding.delimiters;
        for (ri, r) in self.repetitions.iter().enumerate() {
            if ri > 0 {
                out.push(d.repetition);
            }
            for (ci, c) in r.iter().enumerate() {
                if ci > 0 {
                    out.push(d.component);
                }
                for (si, s) in c.iter().enumerate() {
                    if si > 0 {
                        out.push(d.subcomponent);
                    }
                    out.extend_from_slice(s);
                }
            }
        }
    }
}

/// One segment under construction. Field `n` is `fields[n - 1]`; for MSH the first two are
/// placeholders written from the delimiters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentBuilder {
    id: String,
    fields: Vec<FieldValue>,
}

impl SegmentBuilder {
    fn new(id: &str) -> Result<Self, BuildError> {
        let b = id.as_bytes();
        let ok = b.len() == 3
            && b[0].is_ascii_uppercase()
            && b[1..]
                .iter()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        if !ok {
            return Err(BuildError::SegmentId(id.to_string()));
        }
        let fields = if id == "MSH" {
            vec![FieldValue::default(), FieldValue::default()]
        } else {
            Vec::new()
        };
        Ok(Self {
            id: id.to_string(),
            fields,
        })
    }

    /// The identifier.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn field_mut(&mut self, n: usize) -> Result<&mut FieldValue, BuildError> {
        if n == 0 {
            return Err(BuildError::ZeroIndex("field"));
        }
        if self.id == "MSH" && n <= 2 {
            return Err(BuildError::HeaderDelimiters);
        }
        if self.fields.len() < n {
            self.fields.resize_with(n, FieldValue::default);
        }
        Ok(&mut self.fields[n - 1])
    }

    /// Whether field `n` holds nothing (absent, or every leaf empty).
    pub fn field_is_empty(&self, n: usize) -> bool {
        n.checked_sub(1)
            .and_then(|i| self.fields.get(i))
            .is_none_or(|f| f.repetitions.iter().flatten().flatten().all(Vec::is_empty))
    }

    /// Sets one leaf value from text, escaping it. All numbers count from 1.
    pub fn set(
        &mut self,
        encoding: &Encoding,
        field: usize,
        repetition: usize,
        component: usize,
        subcomponent: usize,
        text: &str,
    ) -> Result<&mut Self, BuildError> {
        let escaped = escape::encode(text, &encoding.delimiters, encoding.charset)?;
        let (r, c, s) = (
            repetition
                .checked_sub(1)
                .ok_or(BuildError::ZeroIndex("repetition"))?,
            component
                .checked_sub(1)
                .ok_or(BuildError::ZeroIndex("component"))?,
            subcomponent
                .checked_sub(1)
                .ok_or(BuildError::ZeroIndex("subcomponent"))?,
        );
        *self.field_mut(field)?.leaf_mut(r, c, s) = escaped;
        Ok(self)
    }

    /// Copies a parsed field as it was written (same delimiters assumed).
    pub fn copy_field(&mut self, n: usize, field: &Field<'_>) -> Result<&mut Self, BuildError> {
        *self.field_mut(n)? = FieldValue::from_field(field);
        Ok(self)
    }

    fn write(&self, out: &mut Vec<u8>, encoding: &Encoding) {
        out.extend_from_slice(self.id.as_bytes());
        let d = &encoding.delimiters;
        let skip = if self.id == "MSH" {
            out.push(d.field);
            out.extend_from_slice(d.encoding_characters().as_bytes());
            2
        } else {
            0
        };
        for field in self.fields.iter().skip(skip) {
            out.push(d.field);
            field.write(out, encoding);
        }
    }
}

/// A message under construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageBuilder {
    encoding: Encoding,
    segments: Vec<SegmentBuilder>,
}

impl MessageBuilder {
    /// A message holding only an MSH with MSH-1 and MSH-2 from `encoding`.
    pub fn new(encoding: Encoding) -> Self {
        Self {
            encoding,
            segments: vec![SegmentBuilder {
                id: "MSH".into(),
                fields: vec![FieldValue::default(), FieldValue::default()],
            }],
        }
    }

    /// A copy of a parsed message, leaf for leaf.
    pub fn from_message(message: &Message<'_>) -> Self {
        let segments = message.segments().map(|s| copy_segment(&s)).collect();
        Self {
            encoding: message.encoding(),
            segments,
        }
    }

    /// The delimiters and charset values are written in.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// The MSH segment.
    pub fn msh(&mut self) -> &mut SegmentBuilder {
        &mut self.segments[0]
    }

    /// Every segment, MSH first, for filling.
    pub fn segments_mut(&mut self) -> impl Iterator<Item = &mut SegmentBuilder> {
        self.segments.iter_mut()
    }

    /// Appends a segment and returns it for filling.
    pub fn push_segment(&mut self, id: &str) -> Result<&mut SegmentBuilder, BuildError> {
        let segment = SegmentBuilder::new(id)?;
        self.segments.push(segment);
        let last = self.segments.len() - 1;
        Ok(&mut self.segments[last])
    }

    /// Sets a value by path. A segment occurrence that does not exist yet is appended;
    /// missing fields, repetitions and components are added empty. A segment filter
    /// (`OBX[OBX-2=ED]`) picks the first segment whose field holds the value, or appends one
    /// and writes the value into it; a repetition filter (`PID-3[CX.5=NH]`) does the same
    /// with repetitions.
    pub fn set(&mut self, path: &Path, text: &str) -> Result<&mut Self, BuildError> {
        let encoding = self.encoding;
        let index = self.segment_index(path)?;
        let segment = &mut self.segments[index];
        let repetition = match &path.repetition {
            None => 1,
            Some(RepetitionSelector::Index(n)) => *n,
            Some(RepetitionSelector::Where(filter)) => {
                let wanted = escape::encode(&filter.value, &encoding.delimiters, encoding.charset)?;
                let sub = filter.subcomponent.unwrap_or(1);
                let field = segment.field_mut(path.field)?;
                let found = field.repetitions.iter().position(|r| {
                    r.get(filter.component - 1)
                        .and_then(|c| c.get(sub - 1))
                        .is_some_and(|leaf| *leaf == wanted)
                });
                match found {
                    Some(i) => i + 1,
                    None => {
                        let empty_first = field
                            .repetitions
                            .iter()
                            .all(|r| r.iter().flatten().all(Vec::is_empty));
                        let n = if empty_first {
                            1
                        } else {
                            field.repetitions.len() + 1
                        };
                        segment.set(
                            &encoding,
                            path.field,
                            n,
                            filter.component,
                            sub,
                            &filter.value,
                        )?;
                        n
                    }
                }
            }
        };
        segment.set(
            &encoding,
            path.field,
            repetition,
            path.component.unwrap_or(1),
            path.subcomponent.unwrap_or(1),
            text,
        )?;
        Ok(self)
    }

    /// The index of the segment a path writes to, appending segments as needed.
    fn segment_index(&mut self, path: &Path) -> Result<usize, BuildError> {
        let encoding = self.encoding;
        let positions: Vec<usize> = self
            .segments
            .iter()
            .enumerate()
            .filter(|(_, s)| s.id == path.segment)
            .map(|(i, _)| i)
            .collect();
        match &path.segment_selector {
            None | Some(SegmentSelector::Occurrence(_)) => {
                let occurrence = match &path.segment_selector {
                    Some(SegmentSelector::Occurrence(n)) => *n,
                    _ => 1,
                };
                if occurrence == 0 {
                    return Err(BuildError::ZeroIndex("segment occurrence"));
                }
                let mut positions = positions;
                while positions.len() < occurrence {
                    self.push_segment(&path.segment)?;
                    positions.push(self.segments.len() - 1);
                }
                Ok(positions[occurrence - 1])
            }
            Some(SegmentSelector::Where(filter)) => {
                let wanted = escape::encode(&filter.value, &encoding.delimiters, encoding.charset)?;
                let (c, s) = (
                    filter.component.unwrap_or(1),
                    filter.subcomponent.unwrap_or(1),
                );
                let found = positions.iter().copied().find(|&i| {
                    self.segments[i]
                        .fields
                        .get(filter.field - 1)
                        .and_then(|f| f.repetitions.first())
                        .and_then(|r| r.get(c - 1))
                        .and_then(|comp| comp.get(s - 1))
                        .is_some_and(|leaf| *leaf == wanted)
                });
                if let Some(i) = found {
                    return Ok(i);
                }
                self.push_segment(&path.segment)?;
                let i = self.segments.len() - 1;
                self.segments[i].set(&encoding, filter.field, 1, c, s, &filter.value)?;
                Ok(i)
            }
        }
    }

    /// The message bytes, every segment ended by CR.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 * self.segments.len());
        for segment in &self.segments {
            segment.write(&mut out, &self.encoding);
            out.push(b'\r');
        }
        out
    }
}

fn copy_segment(segment: &Segment<'_>) -> SegmentBuilder {
    SegmentBuilder {
        id: segment.id().to_string(),
        fields: segment
            .fields()
            .map(|f| FieldValue::from_field(&f))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7::Delimiters;

    #[test]
    fn builds_escaped_values_by_path() {
        let mut b = MessageBuilder::new(Encoding::default());
        for (path, value) in [
            ("MSH-9.1", "ADT"),
            ("MSH-9.2", "A28"),
            ("MSH-12", "2.4"),
            ("PID-5.1", "O'NEIL|SMITH^JR"),
            ("PID-3[2].5", "NH"),
            ("OBX[2]-5", "line1\nline2"),
        ] {
            b.set(&Path::parse(path).unwrap(), value).unwrap();
        }
        let bytes = b.to_bytes();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            "MSH|^~\\&|||||||ADT^A28|||2.4\r\
             PID|||~^^^^NH||O'NEIL\\F\\SMITH\\S\\JR\r\
             OBX\rOBX|||||line1\\X0A\\line2\r"
        );
        let parsed = Message::parse(&bytes).unwrap();
        let name = Path::parse("PID-5.1").unwrap().find_first(&parsed).unwrap();
        assert_eq!(name.span.text().unwrap(), "O'NEIL|SMITH^JR");
    }

    #[test]
    fn refuses_what_would_corrupt_the_message() {
        let mut b = MessageBuilder::new(Encoding::default());
        assert_eq!(
            b.set(&Path::parse("MSH-2").unwrap(), "x").unwrap_err(),
            BuildError::HeaderDelimiters
        );
        assert!(b.push_segment("pid").is_err());
        let ascii = Encoding {
            delimiters: Delimiters::default(),
            charset: crate::hl7::Charset::Ascii,
        };
        let mut b = MessageBuilder::new(ascii);
        assert!(b.set(&Path::parse("PID-5").unwrap(), "Zoë").is_err());
    }

    #[test]
    fn filtered_paths_find_or_create_their_target() {
        let mut b = MessageBuilder::new(Encoding::default());
        let p = |t: &str| Path::parse(t).unwrap();
        b.set(&p("PID-3[CX.5=MR].1"), "D123").unwrap();
        b.set(&p("PID-3[CX.5=NH].1"), "9449305552").unwrap();
        b.set(&p("PID-3[CX.5=NH].4"), "NHS").unwrap();
        b.set(&p("OBX[OBX-2=TX]-5"), "text").unwrap();
        b.set(&p("OBX[OBX-2=ED]-5.5"), "JVBER").unwrap();
        b.set(&p("OBX[OBX-2=ED]-5.2"), "application").unwrap();
        let text = String::from_utf8(b.to_bytes()).unwrap();
        assert!(
            text.contains("PID|||D123^^^^MR~9449305552^^^NHS^NH\r"),
            "{text}"
        );
        assert!(
            text.contains("OBX||TX|||text\rOBX||ED|||^application^^^JVBER\r"),
            "{text}"
        );
    }

    #[test]
    fn copies_keep_every_byte() {
        let input = b"MSH|^~\\&|A|B|||x||ADT^A01|1|P|2.3|||\rPID|||a~b^c&d\\T\\||\"\"|\rZZ1\r";
        let msg = Message::parse(input).unwrap();
        assert_eq!(MessageBuilder::from_message(&msg).to_bytes(), input);
    }
}
