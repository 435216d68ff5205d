//! Reads a spec: YAML 1.2 → a JSON value with the source span of every value and key →
//! schema check → the typed [`Spec`].
//!
//! The YAML is read event by event (saphyr-parser) rather than through a document model, so
//! that duplicate keys, anchors, aliases and tags are caught at their exact position instead
//! of being merged away, and so that no nesting depth can overflow the stack.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use saphyr_parser::{Event, Marker, Parser, ScalarStyle};
use serde_json::{Map, Number, Value};

use super::model::Spec;
use crate::diag::{Diagnostic, Pos, Span};
use crate::schema;

/// Nesting deeper than this is refused: no sensible spec comes close, and it bounds memory.
const MAX_DEPTH: usize = 64;

/// Where each value and key of a spec came from.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    /// The file name as given.
    pub file: String,
    /// The file's text.
    pub text: String,
    values: HashMap<String, Span>,
    keys: HashMap<String, Span>,
    /// Plain scalars that YAML read as a number, boolean or null: pointer → text as written.
    plain_non_strings: HashMap<String, String>,
}

impl SourceMap {
    /// The span of the value at `pointer`, or of its nearest ancestor that has one.
    pub fn value_span(&self, pointer: &str) -> Option<Span> {
        let mut p = pointer;
        loop {
            if let Some(span) = self.values.get(p) {
                return Some(*span);
            }
            let cut = p.rfind('/')?;
            p = &p[..cut];
        }
    }

    /// The span of the key that introduces `pointer`, falling back to the value's span.
    pub fn key_span(&self, pointer: &str) -> Option<Span> {
        self.keys
            .get(pointer)
            .copied()
            .or_else(|| self.value_span(pointer))
    }

    /// The keys directly inside the mapping at `pointer`, in source order.
    pub fn child_keys(&self, pointer: &str) -> Vec<(String, Span)> {
        let prefix = format!("{pointer}/");
        let mut keys: Vec<(String, Span)> = self
            .keys
            .iter()
            .filter_map(|(p, span)| {
                let rest = p.strip_prefix(&prefix)?;
                (!rest.contains('/')).then(|| (p.clone(), *span))
            })
            .collect();
        keys.sort_by_key(|(_, span)| span.start.byte);
        keys
    }

    /// When the value at `pointer` was written as a plain scalar that YAML read as a number,
    /// boolean or null, the text as written.
    pub fn plain_text(&self, pointer: &str) -> Option<&str> {
        self.plain_non_strings.get(pointer).map(String::as_str)
    }
}

/// A spec that loaded without errors, with its source map.
#[derive(Debug, Clone)]
pub struct LoadedSpec {
    /// The typed spec.
    pub spec: Spec,
    /// The JSON value it was read from.
    pub value: Value,
    /// Where each value came from.
    pub source: SourceMap,
    /// The spec file's path.
    pub path: PathBuf,
}

impl LoadedSpec {
    /// A path named in the spec (certificates, message files) resolved against the spec
    /// file's folder.
    pub fn resolve(&self, relative: &str) -> PathBuf {
        let base = self.path.parent().unwrap_or_else(|| Path::new("."));
        base.join(relative)
    }

    /// A diagnostic placed at the value behind `pointer`.
    pub fn at_value(&self, d: Diagnostic, pointer: &str) -> Diagnostic {
        d.at(
            &self.source.file,
            self.source.value_span(pointer),
            Some(pointer),
        )
    }

    /// A diagnostic placed at the key that introduces `pointer`.
    pub fn at_key(&self, d: Diagnostic, pointer: &str) -> Diagnostic {
        d.at(
            &self.source.file,
            self.source.key_span(pointer),
            Some(pointer),
        )
    }
}

/// Loads and schema-checks a spec file. `display` is the name used in diagnostics.
pub fn load_spec(path: &Path, display: &str) -> Result<LoadedSpec, Vec<Diagnostic>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![
            Diagnostic::error("spec-unreadable", format!("cannot read the spec: {e}"))
                .at(display, None, None),
        ]
    })?;
    load_spec_text(text, path, display)
}

/// Loads and schema-checks spec text (for tests and fuzzing). `path` resolves relative files.
pub fn load_spec_text(
    text: String,
    path: &Path,
    display: &str,
) -> Result<LoadedSpec, Vec<Diagnostic>> {
    let (value, source) = read_yaml(text, display)?;
    let mut problems = schema::check_value(&value, &source);
    if !problems.is_empty() {
        crate::diag::sort(&mut problems);
        return Err(problems);
    }
    match serde_path_to_error::deserialize::<_, Spec>(&value) {
        Ok(spec) => Ok(LoadedSpec {
            spec,
            value,
            source,
            path: path.to_path_buf(),
        }),
        Err(e) => {
            let pointer = to_pointer(e.path());
            // The schema accepted the shape; what remains are values that do not convert
            // (a duration too long to hold, for instance).
            let d = Diagnostic::error("schema-format", e.inner().to_string());
            Err(vec![d.at(
                display,
                source.value_span(&pointer),
                Some(&pointer),
            )])
        }
    }
}

/// serde_path_to_error's path as a JSON pointer.
fn to_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        out.push('/');
        match seg {
            Segment::Seq { index } => out.push_str(&index.to_string()),
            Segment::Map { key } => out.push_str(&escape_pointer(key)),
            Segment::Enum { variant } => out.push_str(&escape_pointer(variant)),
            Segment::Unknown => out.push('?'),
        }
    }
    out
}

/// Escapes one JSON pointer token (`~` → `~0`, `/` → `~1`).
pub fn escape_pointer(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Converts character markers to positions with byte offsets.
struct Positions {
    byte_of_char: Vec<usize>,
}

impl Positions {
    fn new(text: &str) -> Self {
        let mut byte_of_char: Vec<usize> = text.char_indices().map(|(b, _)| b).collect();
        byte_of_char.push(text.len());
        Self { byte_of_char }
    }

    fn pos(&self, m: &Marker) -> Pos {
        let last = self.byte_of_char.len().saturating_sub(1);
        Pos {
            line: m.line(),
            column: m.col() + 1,
            byte: self.byte_of_char[m.index().min(last)],
        }
    }

    fn span(&self, s: &saphyr_parser::Span) -> Span {
        Span {
            start: self.pos(&s.start),
            end: self.pos(&s.end),
        }
    }
}

enum Frame {
    Seq {
        pointer: String,
        start: Span,
        items: Vec<Value>,
    },
    Map {
        pointer: String,
        start: Span,
        map: Map<String, Value>,
        key: Option<(String, Span)>,
        seen: HashMap<String, Span>,
    },
}

/// YAML text → JSON value and source map, or the YAML-level errors.
fn read_yaml(text: String, file: &str) -> Result<(Value, SourceMap), Vec<Diagnostic>> {
    let positions = Positions::new(&text);
    if let Some(tab) = indentation_tab(&text) {
        let end = Pos {
            column: tab.column + 1,
            byte: tab.byte + 1,
            ..tab
        };
        return Err(vec![
            Diagnostic::error("yaml-syntax", "a tab in the indentation")
                .detail("YAML indents with spaces only; a tab here would change which mapping the line belongs to")
                .at(file, Some(Span { start: tab, end }), None),
        ]);
    }
    let mut source = SourceMap {
        file: file.to_string(),
        ..SourceMap::default()
    };
    let mut errors = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Value> = None;
    let mut documents = 0;
    let err = |code: &str, summary: String, detail: &str, span: Span| {
        Diagnostic::error(code, summary)
            .detail(detail)
            .at(file, Some(span), None)
    };

    for item in Parser::new_from_str(&text) {
        let (event, yaml_span) = match item {
            Ok(ev) => ev,
            Err(e) => {
                let pos = positions.pos(e.marker());
                if let Some(hint) = unquoted_flow_path(&text, pos) {
                    return Err(vec![err(
                        "yaml-syntax",
                        format!(
                            "the HL7 path `{}` inside `{{ … }}` must be quoted",
                            hint.path
                        ),
                        &format!(
                            "in a flow mapping YAML reads `[` and `]` as a list and `,` as the next entry, so an unquoted path with a filter breaks it; write {}: \"{}\" (the YAML parser says: {})",
                            hint.key,
                            hint.path,
                            e.info()
                        ),
                        hint.span,
                    )]);
                }
                let span = Span {
                    start: pos,
                    end: pos,
                };
                return Err(vec![err(
                    "yaml-syntax",
                    format!("YAML syntax error: {}", e.info()),
                    "fix the YAML at this position; indentation must use spaces",
                    span,
                )]);
            }
        };
        let span = positions.span(&yaml_span);
        // The pointer a new node gets from its parent, and whether it is a mapping key.
        let (pointer, is_key) = match stack.last() {
            None => (String::new(), false),
            Some(Frame::Seq { pointer, items, .. }) => {
                (format!("{pointer}/{}", items.len()), false)
            }
            Some(Frame::Map { pointer, key, .. }) => match key {
                None => (pointer.clone(), true),
                Some((k, _)) => (format!("{pointer}/{}", escape_pointer(k)), false),
            },
        };
        let complete: Option<Value> = match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing | Event::DocumentEnd => None,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    errors.push(err(
                        "yaml-multiple-documents",
                        "a second YAML document (`---`) in the spec".into(),
                        "a spec file holds exactly one document: one customer",
                        span,
                    ));
                    break;
                }
                None
            }
            Event::Alias(_) => {
                errors.push(err(
                    "yaml-alias",
                    "YAML aliases (*name) are not allowed in a spec".into(),
                    "write the value out in full: every value must be readable where it stands, and an alias would silently share it between TEST and PROD",
                    span,
                ));
                Some(Value::Null)
            }
            Event::Scalar(text, style, anchor, tag) => {
                if anchor > 0 {
                    errors.push(anchor_error(file, span));
                }
                let forced_string = match &tag {
                    None => false,
                    Some(t) if t.handle == "tag:yaml.org,2002:" && t.suffix == "str" => true,
                    Some(t) => {
                        errors.push(err(
                            "yaml-tag",
                            format!("YAML tag {}{} is not allowed in a spec", t.handle, t.suffix),
                            "write plain values; quote a value to make it text",
                            span,
                        ));
                        false
                    }
                };
                if is_key {
                    if let Some(Frame::Map { key, seen, .. }) = stack.last_mut() {
                        if let Some(first) = seen.get(text.as_ref()) {
                            errors.push(err(
                                "yaml-duplicate-key",
                                format!("duplicate key `{text}`"),
                                &format!(
                                    "`{text}` is already defined at line {}, column {}; YAML would silently keep only one of them",
                                    first.start.line, first.start.column
                                ),
                                span,
                            ));
                        } else {
                            seen.insert(text.to_string(), span);
                        }
                        let child = format!("{pointer}/{}", escape_pointer(&text));
                        source.keys.insert(child, span);
                        *key = Some((text.into_owned(), span));
                    }
                    None
                } else {
                    let value = if style == ScalarStyle::Plain && !forced_string {
                        resolve_plain(&text)
                    } else {
                        Value::String(text.to_string())
                    };
                    if !value.is_string() {
                        source
                            .plain_non_strings
                            .insert(pointer.clone(), text.to_string());
                    }
                    source.values.insert(pointer, span);
                    Some(value)
                }
            }
            Event::SequenceStart(anchor, ref tag) | Event::MappingStart(anchor, ref tag) => {
                if anchor > 0 {
                    errors.push(anchor_error(file, span));
                }
                if tag.is_some() {
                    errors.push(err(
                        "yaml-tag",
                        "YAML tags are not allowed in a spec".into(),
                        "remove the tag",
                        span,
                    ));
                }
                if is_key {
                    return Err(vec![err(
                        "yaml-complex-key",
                        "a list or mapping used as a key".into(),
                        "keys in a spec are plain names",
                        span,
                    )]);
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(vec![err(
                        "yaml-too-deep",
                        format!("nesting deeper than {MAX_DEPTH} levels"),
                        "a spec never needs this depth",
                        span,
                    )]);
                }
                let is_seq = matches!(event, Event::SequenceStart(..));
                stack.push(if is_seq {
                    Frame::Seq {
                        pointer,
                        start: span,
                        items: Vec::new(),
                    }
                } else {
                    Frame::Map {
                        pointer,
                        start: span,
                        map: Map::new(),
                        key: None,
                        seen: HashMap::new(),
                    }
                });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq {
                    pointer,
                    start,
                    items,
                }) => {
                    source.values.insert(pointer, join(start, span));
                    Some(Value::Array(items))
                }
                Some(Frame::Map {
                    pointer,
                    start,
                    map,
                    ..
                }) => {
                    source.values.insert(pointer, join(start, span));
                    Some(Value::Object(map))
                }
                None => None,
            },
        };
        if let Some(value) = complete {
            match stack.last_mut() {
                None => root = Some(value),
                Some(Frame::Seq { items, .. }) => items.push(value),
                Some(Frame::Map { map, key, .. }) => {
                    if let Some((k, _)) = key.take() {
                        map.insert(k, value);
                    }
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let Some(root) = root else {
        return Err(vec![
            Diagnostic::error("yaml-empty", "the spec is empty")
                .detail("start from specs/demo.yaml")
                .at(file, None, None),
        ]);
    };
    source.text = text;
    Ok((root, source))
}

/// The first tab in a line's leading white space, found before parsing because the parser
/// reads such lines in surprising ways (specs use no block scalars, where tabs could be
/// content).
fn indentation_tab(text: &str) -> Option<Pos> {
    let mut byte = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
        let rest = line[indent..].trim_end();
        if !rest.is_empty()
            && !rest.starts_with('#')
            && let Some(at) = line[..indent].find('\t')
        {
            return Some(Pos {
                line: index + 1,
                column: line[..at].chars().count() + 1,
                byte: byte + at,
            });
        }
        byte += line.len();
    }
    None
}

/// An unquoted HL7 path inside a flow mapping, where a YAML syntax error stands.
struct FlowPath {
    /// The key it is the value of (`from`).
    key: String,
    /// The path as written.
    path: String,
    span: Span,
}

/// When the syntax error at `at` falls inside an unquoted value of a flow mapping that looks
/// like an HL7 path with a filter (`{ from: PID-3[CX.5=NH].1 }`: YAML reads the `[` as a
/// list), that value: the fix is to quote it. Only the error's own line is read.
fn unquoted_flow_path(text: &str, at: Pos) -> Option<FlowPath> {
    let line_start = text[..at.byte.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let offset = at.byte.checked_sub(line_start)?;
    if offset >= line.len() || !line.is_char_boundary(offset) {
        return None;
    }
    // The value starts after the last space, `{` or `,` before the error.
    let start = line[..offset].rfind([' ', '{', ',']).map_or(0, |i| i + 1);
    let before = line[..start].trim_end();
    let key_end = before.strip_suffix(':')?;
    if !key_end.contains('{') {
        return None;
    }
    let key = key_end
        .rsplit(['{', ',', ' '])
        .next()
        .unwrap_or("")
        .trim_matches(['"', '\''])
        .to_owned();
    // The value ends at a `,`, `}` or space outside brackets.
    let mut depth = 0usize;
    let mut end = line.len();
    for (i, c) in line[start..].char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' | '}' | ' ' if depth == 0 => {
                end = start + i;
                break;
            }
            _ => {}
        }
    }
    let path = &line[start..end];
    let bytes = path.as_bytes();
    let looks_like_path = bytes.len() > 4
        && bytes[0].is_ascii_uppercase()
        && bytes[1..3]
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        && matches!(bytes[3], b'-' | b'[')
        && path.contains('[');
    if key.is_empty() || !looks_like_path {
        return None;
    }
    let pos = |byte_in_line: usize| Pos {
        line: at.line,
        column: line[..byte_in_line].chars().count() + 1,
        byte: line_start + byte_in_line,
    };
    Some(FlowPath {
        key,
        path: path.to_owned(),
        span: Span {
            start: pos(start),
            end: pos(end),
        },
    })
}

fn anchor_error(file: &str, span: Span) -> Diagnostic {
    Diagnostic::error("yaml-anchor", "YAML anchors (&name) are not allowed in a spec")
        .detail("write each value out in full; anchors and aliases would silently share values between places, e.g. between TEST and PROD")
        .at(file, Some(span), None)
}

fn join(start: Span, end: Span) -> Span {
    Span {
        start: start.start,
        end: if end.end.byte >= start.end.byte {
            end.end
        } else {
            start.end
        },
    }
}

/// Resolves a plain scalar by the YAML 1.2 core schema.
fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(i) = text.parse::<i64>() {
            return Value::Number(i.into());
        }
    }
    if let Some(oct) = text.strip_prefix("0o")
        && let Ok(i) = i64::from_str_radix(oct, 8)
    {
        return Value::Number(i.into());
    }
    if let Some(hex) = text.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return Value::Number(i.into());
    }
    let looks_float = {
        let body = unsigned;
        let mut seen_digit = false;
        let mut ok = !body.is_empty();
        let mut parts = body.splitn(2, ['e', 'E']);
        let mantissa = parts.next().unwrap_or("");
        let exponent = parts.next();
        let mut dots = 0;
        for b in mantissa.bytes() {
            match b {
                b'0'..=b'9' => seen_digit = true,
                b'.' => dots += 1,
                _ => ok = false,
            }
        }
        if let Some(exp) = exponent {
            let e = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            ok &= !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit());
        }
        ok && seen_digit && dots <= 1
    };
    if looks_float
        && let Ok(f) = text.parse::<f64>()
        && let Some(n) = Number::from_f64(f)
    {
        return Value::Number(n);
    }
    Value::String(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<(Value, SourceMap), Vec<Diagnostic>> {
        read_yaml(text.to_string(), "t.yaml")
    }

    #[test]
    fn resolves_scalars_by_the_core_schema() {
        let (v, src) =
            read("a: 2.4\nb: '2.4'\nc: yes\nd: ~\ne: 0x1F\nf: 2WW\ng: true\nh: 010\n").unwrap();
        assert_eq!(v["a"], serde_json::json!(2.4));
        assert_eq!(v["b"], "2.4");
        assert_eq!(v["c"], "yes");
        assert_eq!(v["d"], Value::Null);
        assert_eq!(v["e"], 31);
        assert_eq!(v["f"], "2WW");
        assert_eq!(v["g"], true);
        assert_eq!(v["h"], 10);
        assert_eq!(src.plain_text("/a"), Some("2.4"));
        assert_eq!(src.plain_text("/b"), None);
    }

    #[test]
    fn records_spans_of_keys_and_values() {
        let text = "top:\n  inner: [1, 2]\n  name: \"é x\"\n";
        let (_, src) = read(text).unwrap();
        let key = src.key_span("/top/inner").unwrap();
        assert_eq!((key.start.line, key.start.column), (2, 3));
        let item = src.value_span("/top/inner/1").unwrap();
        assert_eq!(
            (item.start.line, item.start.column, item.start.byte),
            (2, 14, 18)
        );
        let name = src.value_span("/top/name").unwrap();
        assert_eq!(&text[name.start.byte..name.end.byte], "\"é x\"");
        // A pointer with no span of its own falls back to its parent.
        assert_eq!(src.value_span("/top/inner/9"), src.value_span("/top/inner"));
    }

    #[test]
    fn rejects_duplicates_anchors_aliases_and_tags_where_they_stand() {
        let cases = [
            ("a: 1\nb: 2\na: 3\n", "yaml-duplicate-key", 3, 1),
            ("a: &x 1\nb: 2\n", "yaml-anchor", 1, 4),
            ("a: 1\nb: *x\n", "yaml-syntax", 2, 4),
            ("a: !custom 1\n", "yaml-tag", 1, 4),
            ("a: 1\n---\nb: 2\n", "yaml-multiple-documents", 2, 1),
            ("a: [1, 2\n", "yaml-syntax", 2, 1),
            ("a:\n\tb: 1\n", "yaml-syntax", 2, 1),
            ("a:\n  \t  b: 1\n", "yaml-syntax", 2, 3),
        ];
        for (text, code, line, column) in cases {
            let errs = read(text).unwrap_err();
            let e = &errs[0];
            assert_eq!(e.code, code, "{text:?}: {e:?}");
            let r = e.range.unwrap();
            assert_eq!(
                (r.start.line, r.start.column),
                (line, column),
                "{text:?}: {e:?}"
            );
        }
    }

    /// `{ from: PID-3[CX.5=NH].1 }` is a YAML syntax error (the `[` starts a list inside the
    /// flow mapping); the error names the path, covers it, and says to quote it.
    #[test]
    fn an_unquoted_path_with_a_filter_in_a_flow_mapping_says_to_quote_it() {
        let cases = [
            (
                "r:\n  nhs: { from: PID-3[CX.5=NH].1, type: string }\n",
                "from",
                "PID-3[CX.5=NH].1",
                (2, 16),
            ),
            (
                "r:\n  pdf: { type: base64, from: OBX[OBX-2=ED]-5.5 }\n",
                "from",
                "OBX[OBX-2=ED]-5.5",
                (2, 30),
            ),
        ];
        for (text, key, path, (line, column)) in cases {
            let errs = read(text).unwrap_err();
            let e = &errs[0];
            assert_eq!(e.code, "yaml-syntax", "{e:?}");
            assert_eq!(
                e.summary,
                format!("the HL7 path `{path}` inside `{{ … }}` must be quoted")
            );
            assert!(
                e.detail.contains(&format!("write {key}: \"{path}\"")),
                "{e:?}"
            );
            let r = e.range.unwrap();
            assert_eq!((r.start.line, r.start.column), (line, column), "{e:?}");
            assert_eq!(&text[r.start.byte..r.end.byte], path);
        }
        // Quoted, it loads; in a block mapping it needs no quotes.
        let (v, _) = read("r:\n  nhs: { from: \"PID-3[CX.5=NH].1\" }\n").unwrap();
        assert_eq!(v["r"]["nhs"]["from"], "PID-3[CX.5=NH].1");
        let (v, _) = read("r:\n  nhs:\n    from: PID-3[CX.5=NH].1\n").unwrap();
        assert_eq!(v["r"]["nhs"]["from"], "PID-3[CX.5=NH].1");
        // Another flow-mapping error keeps the parser's words.
        let errs = read("a: { b: [1, 2 }\n").unwrap_err();
        assert!(
            errs[0].summary.starts_with("YAML syntax error"),
            "{:?}",
            errs[0]
        );
    }

    /// A misspelt or partial key names the key meant, through the schema check.
    #[test]
    fn an_unknown_key_suggests_the_key_meant() {
        let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs/demo.yaml");
        let text = std::fs::read_to_string(&demo).unwrap();
        for (from, to, meant) in [
            ("\nhl7_version:", "\nversion:", "hl7_version"),
            ("\nhl7_version:", "\nHL7-Version:", "hl7_version"),
            ("max_len: 20", "max_length: 20", "max_len"),
            ("        issuer_ca:", "        issuer:", "issuer_ca"),
        ] {
            assert!(text.contains(from), "{from:?}");
            let errs = load_spec_text(text.replacen(from, to, 1), &demo, "demo.yaml").unwrap_err();
            let unknown = errs
                .iter()
                .find(|d| d.code == "schema-unknown-key")
                .unwrap_or_else(|| panic!("{to}: {errs:?}"));
            assert!(
                unknown
                    .detail
                    .starts_with(&format!("did you mean `{meant}`?")),
                "{to}: {unknown:?}"
            );
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let text = "[".repeat(10_000);
        let errs = read(&text).unwrap_err();
        assert!(errs[0].code == "yaml-too-deep" || errs[0].code == "yaml-syntax");
    }
}
