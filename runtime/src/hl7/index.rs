//! The delimiter index of a parsed message: where every field, repetition, component and
//! subcomponent separator of its long segments is, built once on the first path lookup and
//! kept with the message.
//!
//! Without it a lookup splits its way down from the start of the segment, so finding where
//! OBX-5.5 ends means reading the whole value, however long (a 5 MiB document is read three
//! times). With it a lookup counts separators in a table instead of reading bytes. Short
//! segments are not indexed: splitting a few hundred bytes costs less than building and
//! reading a table for them. [`Message::parse`](super::Message::parse) does not build it:
//! parsing and visiting every value cost the same with or without it, and a message that
//! is never looked up never pays.

use super::message::Segment;
use super::span::{Span, find_byte};

/// Positions (input offsets) of the separators in each segment's fields area, in order; the
/// encoding characters of MSH-2 are not separators and are left out.
#[derive(Debug, Clone, Default)]
pub(crate) struct DelimiterIndex {
    positions: Vec<u32>,
    /// `positions[start..end]` belong to segment `i` when `segments[i]` is `Some((start,
    /// end))`; `None` for a segment too short to index.
    segments: Vec<Option<(u32, u32)>>,
}

/// Segments shorter than this are split by reading their bytes.
const INDEXED_SEGMENT: usize = 2048;

/// Bytes tested together before looking at them one by one: a block without a separator (a
/// run of base64, a long text) is passed over in one vectorised test.
const BLOCK: usize = 32;

impl DelimiterIndex {
    /// Indexes the segments; `None` when the input is too large for 32-bit offsets (more
    /// than 4 GiB), and lookups then split as the views do.
    pub(crate) fn build<'a>(segments: impl Iterator<Item = Segment<'a>>) -> Option<Self> {
        let mut index = Self::default();
        for segment in segments {
            let Some((area, offset)) = segment
                .field_area()
                .filter(|_| segment.raw().len() >= INDEXED_SEGMENT)
            else {
                index.segments.push(None);
                continue;
            };
            let start = u32::try_from(index.positions.len()).ok()?;
            let d = segment.encoding().delimiters;
            let is_separator = |b: u8| {
                b == d.field || b == d.repetition || b == d.component || b == d.subcomponent
            };
            let mut base = offset;
            for block in area.chunks(BLOCK) {
                if block.iter().fold(false, |any, &b| any | is_separator(b)) {
                    for (i, &b) in block.iter().enumerate() {
                        if is_separator(b) {
                            index.positions.push(u32::try_from(base + i).ok()?);
                        }
                    }
                }
                base += block.len();
            }
            let end = u32::try_from(index.positions.len()).ok()?;
            index.segments.push(Some((start, end)));
        }
        Some(index)
    }

    /// The separators of segment `i`, when it is indexed.
    fn of_segment(&self, i: usize) -> Option<&[u32]> {
        let (start, end) = self.segments.get(i).copied().flatten()?;
        self.positions.get(start as usize..end as usize)
    }

    /// Field `n` (from 1, MSH-1 the field separator) of segment `i`, as a node to look
    /// inside. Without an index for the segment the node splits by reading bytes, as the
    /// views do.
    pub(crate) fn field<'m, 'a>(
        this: Option<&'m Self>,
        i: usize,
        segment: &Segment<'a>,
        n: usize,
    ) -> Option<Node<'m, 'a>> {
        if segment.is_msh() && n <= 2 {
            // MSH-1 and MSH-2 hold the delimiters themselves: never split.
            let field = segment.field(n)?;
            return Some(Node {
                span: *field,
                inner: None,
                level: 1,
            });
        }
        let (area, offset) = segment.field_area()?;
        let k = if segment.is_msh() { n - 2 } else { n };
        let area_node = Node {
            span: Span::new(area, offset, segment.encoding()),
            inner: this.and_then(|index| index.of_segment(i)),
            level: 0,
        };
        area_node.nth(k)
    }
}

/// A value (field, repetition, component or subcomponent) with the separators inside it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Node<'m, 'a> {
    span: Span<'a>,
    /// Separator positions strictly inside `span`; `None` without an index.
    inner: Option<&'m [u32]>,
    /// The separator that splits this value into its children: 0 field (for a fields
    /// area), 1 repetition, 2 component, 3 subcomponent, 4 none (a subcomponent).
    level: u8,
}

impl<'m, 'a> Node<'m, 'a> {
    /// The value's span.
    pub(crate) fn span(&self) -> Span<'a> {
        self.span
    }

    fn separator(&self) -> Option<u8> {
        if self.span.is_atomic() {
            return None;
        }
        let d = self.span.encoding().delimiters;
        match self.level {
            0 => Some(d.field),
            1 => Some(d.repetition),
            2 => Some(d.component),
            3 => Some(d.subcomponent),
            _ => None,
        }
    }

    /// The children in order (at least one), as the views' iterators yield them.
    #[inline]
    pub(crate) fn children(&self) -> Children<'m, 'a> {
        Children {
            parent: *self,
            start: Some(self.span.offset()),
            next_inner: 0,
        }
    }

    /// Child `n`, counted from 1.
    #[inline]
    pub(crate) fn nth(&self, n: usize) -> Option<Self> {
        self.children().nth(n.checked_sub(1)?)
    }
}

/// Iterator over a node's children: the pieces between its separators.
pub(crate) struct Children<'m, 'a> {
    parent: Node<'m, 'a>,
    /// Input offset where the next child starts; `None` once the last was yielded.
    start: Option<usize>,
    /// Index into the parent's separators of the first one not yet passed.
    next_inner: usize,
}

impl<'m, 'a> Iterator for Children<'m, 'a> {
    type Item = Node<'m, 'a>;

    #[inline]
    fn next(&mut self) -> Option<Node<'m, 'a>> {
        let start = self.start?;
        let parent = &self.parent;
        let span = parent.span;
        let raw = span.raw();
        let from = start - span.offset();
        let rest = raw.get(from..).unwrap_or_default();
        let level = parent.level + 1;
        let Some(separator) = parent.separator() else {
            // Never split (MSH-1, MSH-2, or below the subcomponent): one child, itself.
            self.start = None;
            return Some(Node { level, ..*parent });
        };
        // (length of this child, separators inside it) and how far the index was read.
        let (len, inner) = match parent.inner {
            Some(all) => {
                let ahead = all.get(self.next_inner..).unwrap_or_default();
                let boundary = ahead
                    .iter()
                    .position(|&p| raw.get(p as usize - span.offset()) == Some(&separator));
                self.next_inner += boundary.map_or(ahead.len(), |k| k + 1);
                match boundary.and_then(|k| Some((ahead.get(k)?, ahead.get(..k)?))) {
                    Some((&at, inside)) => (Some(at as usize - start), Some(inside)),
                    None => (None, Some(ahead)),
                }
            }
            None => (find_byte(separator, rest), None),
        };
        let piece = match len {
            Some(len) => {
                self.start = Some(start + len + 1);
                rest.get(..len).unwrap_or_default()
            }
            None => {
                self.start = None;
                rest
            }
        };
        Some(Node {
            span: Span::new(piece, start, span.encoding()),
            inner,
            level,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7::{Message, ParseOptions};

    /// (raw, offset) of every piece below a node, depth first.
    fn via_nodes(node: Node<'_, '_>, depth: usize, out: &mut Vec<(Vec<u8>, usize)>) {
        out.push((node.span().raw().to_vec(), node.span().offset()));
        if depth < 3 {
            for child in node.children() {
                via_nodes(child, depth + 1, out);
            }
        }
    }

    /// The same through the public views.
    fn via_views(field: crate::hl7::Field<'_>, out: &mut Vec<(Vec<u8>, usize)>) {
        let mut push = |span: &Span<'_>| out.push((span.raw().to_vec(), span.offset()));
        push(&field);
        for repetition in field.repetitions() {
            push(&repetition);
            for component in repetition.components() {
                push(&component);
                for sub in component.subcomponents() {
                    push(&sub);
                }
            }
        }
    }

    const MESSAGES: [&[u8]; 4] = [
        b"MSH|^~\\&|APP|FAC|||20240101||ADT^A01^ADT_A01|1|P|2.5.1|||||UNICODE UTF-8\rPID|1||123^^^H^MR~456^^^N^NH||Doe&Van^John^^^Dr||19700101|M|||1 St\\F\\A^^Town\rNTE|||a\\S\\b&c~d^e&f&&~||\rZZZ\rOBX|1|ED|X^^L||A^application^pdf^Base64^QUJD|",
        b"MSH#$%*!@#APP#FAC#####ORU$R01#2#P#2.7\rOBX#1#ST#A$B!C*D%E##v$w!x*y%z##",
        b"MSH|^~\\&|A||||||ORU^R01|9|P|2.4\rOBX|1\rOBX|2|NM||^^^^~~~&&&|||",
        b"MSH|^~\\&|A||||||ADT^A04|9|P|2.3\nEVN|A04\nPID|||||\n",
    ];

    /// A message whose OBX is long enough to be indexed by `build` itself, with separators
    /// of every level at varied distances (across block edges) and a long plain run.
    fn long_message() -> Vec<u8> {
        let mut raw = b"MSH|^~\\&|A||||||ORU^R01|9|P|2.5\rOBX|1|ED|".to_vec();
        for i in 0..600 {
            raw.extend_from_slice(b"ab".repeat(i % 7).as_slice());
            raw.push(b"|^~&"[i % 4]);
        }
        raw.extend_from_slice(&b"QUJD".repeat(1000));
        raw.extend_from_slice(b"^x&y~z|\rNTE|1\r");
        raw
    }

    #[test]
    fn nodes_split_exactly_as_the_views_with_and_without_the_index() {
        let long = long_message();
        for raw in MESSAGES.into_iter().chain([long.as_slice()]) {
            let message = match Message::parse_with(raw, &ParseOptions::lenient()) {
                Ok(m) => m,
                Err(e) => panic!("{}: {e}", String::from_utf8_lossy(raw)),
            };
            let mut index = DelimiterIndex::build(message.segments()).unwrap();
            // Index every segment here, short ones included, to test the table on them.
            if index.positions.is_empty() {
                index = DelimiterIndex::default();
                for segment in message.segments() {
                    let start = index.positions.len() as u32;
                    if let Some((area, offset)) = segment.field_area() {
                        let d = segment.encoding().delimiters;
                        for (i, &b) in area.iter().enumerate() {
                            if [d.field, d.repetition, d.component, d.subcomponent].contains(&b) {
                                index.positions.push((offset + i) as u32);
                            }
                        }
                    }
                    index
                        .segments
                        .push(Some((start, index.positions.len() as u32)));
                }
            }
            for (i, segment) in message.segments().enumerate() {
                for n in 1..=segment.field_count() + 2 {
                    let mut expected = Vec::new();
                    if let Some(field) = segment.field(n) {
                        via_views(field, &mut expected);
                    }
                    for with_index in [Some(&index), None] {
                        let mut got = Vec::new();
                        if let Some(node) = DelimiterIndex::field(with_index, i, &segment, n) {
                            via_nodes(node, 0, &mut got);
                        }
                        assert_eq!(
                            got,
                            expected,
                            "{} field {n}, index {}",
                            segment.id(),
                            with_index.is_some()
                        );
                    }
                }
            }
        }
    }
}
