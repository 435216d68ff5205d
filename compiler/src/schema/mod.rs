//! The spec's JSON Schema (draft-07, which editors' yaml-language-server reads), generated
//! from the Rust model, and the schema check that turns its violations into diagnostics at
//! the offending key or value.

use std::sync::LazyLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use serde_json::Value;

use crate::diag::Diagnostic;
use crate::spec::SourceMap;
use crate::spec::loader::escape_pointer;
use crate::spec::model::Spec;

/// The schema as JSON.
pub fn schema_value() -> Value {
    let generator = schemars::generate::SchemaSettings::draft07().into_generator();
    let mut schema = generator.into_root_schema_for::<Spec>().to_value();
    drop_null_alternatives(&mut schema);
    schema
}

/// Optional keys are simply not required: their `null` alternative is removed, so a mistake
/// inside an optional section is reported at the mistake rather than as "matches none of
/// anyOf", and writing `key: ~` is an error instead of a silent "absent".
fn drop_null_alternatives(node: &mut Value) {
    match node {
        Value::Object(map) => {
            let replacement = match map.get("anyOf").and_then(Value::as_array) {
                Some(branches) if branches.len() == 2 => {
                    let is_null = |b: &Value| b.get("type").and_then(Value::as_str) == Some("null");
                    match (is_null(&branches[0]), is_null(&branches[1])) {
                        (true, false) => Some(branches[1].clone()),
                        (false, true) => Some(branches[0].clone()),
                        _ => None,
                    }
                }
                _ => None,
            };
            if let Some(Value::Object(inner)) = replacement {
                map.remove("anyOf");
                for (k, v) in inner {
                    map.entry(k).or_insert(v);
                }
            }
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t.as_str() != Some("null"));
                if types.len() == 1 {
                    let only = types.remove(0);
                    map.insert("type".into(), only);
                }
            }
            for v in map.values_mut() {
                drop_null_alternatives(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(drop_null_alternatives),
        _ => {}
    }
}

/// The schema as written to `specs/schema.json`: pretty JSON ending with a newline.
pub fn schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&schema_value()).unwrap_or_default();
    text.push('\n');
    text
}

static VALIDATOR: LazyLock<Result<jsonschema::Validator, String>> =
    LazyLock::new(|| jsonschema::draft7::new(&schema_value()).map_err(|e| e.to_string()));

/// Checks a loaded YAML value against the schema. Every violation becomes a diagnostic at
/// the key or value it concerns.
pub fn check_value(value: &Value, source: &SourceMap) -> Vec<Diagnostic> {
    let validator = match &*VALIDATOR {
        Ok(v) => v,
        Err(e) => {
            return vec![
                Diagnostic::error(
                    "schema-internal",
                    format!("the built-in schema does not compile: {e}"),
                )
                .at(&source.file, None, None),
            ];
        }
    };
    let schema = schema_value();
    validator
        .iter_errors(value)
        .map(|e| describe(&e, &schema, source))
        .collect()
}

fn describe(e: &jsonschema::ValidationError<'_>, schema: &Value, source: &SourceMap) -> Diagnostic {
    let pointer = e.instance_path().to_string();
    let file = source.file.as_str();
    let at_value = |d: Diagnostic| d.at(file, source.value_span(&pointer), Some(&pointer));
    match e.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let key = unexpected.first().cloned().unwrap_or_default();
            let child = format!("{pointer}/{}", escape_pointer(&key));
            let allowed = allowed_keys(schema, e.schema_path().as_str());
            let mut detail = String::new();
            if let Some(best) = crate::diag::closest(&key, allowed.iter().map(String::as_str)) {
                detail.push_str(&format!("did you mean `{best}`? "));
            }
            if !allowed.is_empty() {
                detail.push_str(&format!("allowed here: {}", allowed.join(", ")));
            }
            Diagnostic::error("schema-unknown-key", format!("unknown key `{key}`"))
                .detail(detail)
                .at(file, source.key_span(&child), Some(&child))
        }
        ValidationErrorKind::FalseSchema => {
            // `inbox: { x: 1 }`: a mapping that takes no keys at all. The validator may place
            // the error at the mapping rather than at its key, so name its first key.
            let child = source
                .child_keys(&pointer)
                .into_iter()
                .next()
                .map(|(p, _)| p)
                .unwrap_or_else(|| pointer.clone());
            let key = child
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .replace("~1", "/")
                .replace("~0", "~");
            Diagnostic::error("schema-unknown-key", format!("unknown key `{key}`"))
                .detail("this mapping takes no keys")
                .at(file, source.key_span(&child), Some(&child))
        }
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or_default().to_string();
            let where_ = if pointer.is_empty() {
                "at the top level".to_string()
            } else {
                format!("in `{}`", pointer.trim_start_matches('/').replace('/', "."))
            };
            Diagnostic::error("schema-required", format!("missing key `{name}` {where_}"))
                .detail(property_description(
                    schema,
                    e.schema_path().as_str(),
                    &name,
                ))
                .at(file, source.key_span(&pointer), Some(&pointer))
        }
        ValidationErrorKind::Type { kind } => {
            let expected = match kind {
                TypeKind::Single(t) => t.to_string(),
                TypeKind::Multiple(ts) => ts
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(" or "),
            };
            let found = type_name(e.instance());
            let mut d = Diagnostic::error(
                "schema-type",
                format!("expected {}, found {found}", article(&expected)),
            );
            if let Some(plain) = source.plain_text(&pointer)
                && expected.contains("string")
            {
                d = d.detail(format!(
                    "YAML reads the unquoted `{plain}` as {found}; quote it: \"{plain}\"{}",
                    if pointer == "/hl7_version" || pointer.starts_with("/accept_versions/") {
                        " (unquoted, 2.10 would even become 2.1)"
                    } else {
                        ""
                    }
                ));
            }
            at_value(d)
        }
        ValidationErrorKind::Enum { options } => {
            let allowed: Vec<String> = options
                .as_array()
                .map(|a| a.iter().map(plain).collect())
                .unwrap_or_default();
            at_value(
                Diagnostic::error(
                    "schema-enum",
                    format!("`{}` is not allowed here", plain(e.instance())),
                )
                .detail(format!("use one of: {}", allowed.join(", "))),
            )
        }
        ValidationErrorKind::Pattern { pattern } => {
            let description = schema_description_at(schema, e.schema_path().as_str());
            at_value(
                Diagnostic::error(
                    "schema-format",
                    format!("`{}` is not in the expected form", plain(e.instance())),
                )
                .detail(if description.is_empty() {
                    format!("it must match {pattern}")
                } else {
                    description
                }),
            )
        }
        ValidationErrorKind::OneOfNotValid { context }
            if let Some(inner) = chosen_branch(e, context, schema) =>
        {
            // `sink: { webhook: { url, typo } }`: the object names its form, so report what is
            // wrong inside that form, at its place.
            describe(inner, schema, source)
        }
        ValidationErrorKind::AnyOf { context }
            if let Some(inner) = same_type_branch(e, context, schema) =>
        {
            // `store: { postgres: { typo } }`: of a text-or-mapping choice the mapping was
            // meant, so report what is wrong inside it, at its place.
            describe(inner, schema, source)
        }
        ValidationErrorKind::OneOfMultipleValid { .. }
        | ValidationErrorKind::OneOfNotValid { .. } => {
            let choices = one_of_choices(schema, e.schema_path().as_str());
            let summary = match e.instance().as_ref() {
                Value::String(s) => format!("`{s}` is not allowed here"),
                Value::Object(_) => "expected exactly one of the forms below".to_string(),
                other => format!("{} is not allowed here", type_name(other)),
            };
            let detail = if choices.is_empty() {
                schema_description_at(schema, e.schema_path().as_str())
            } else {
                format!("use one of: {}", choices.join("; "))
            };
            at_value(Diagnostic::error("schema-choice", summary).detail(detail))
        }
        _ => at_value(Diagnostic::error("schema-invalid", e.to_string())),
    }
}

fn article(noun: &str) -> String {
    match noun.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {noun}"),
        _ => format!("a {noun}"),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Follows a schema path (`/properties/a/$ref/…`) through `$ref`s to the subschema it names.
fn resolve<'s>(schema: &'s Value, path: &str) -> Option<&'s Value> {
    let mut node = schema;
    for token in path.split('/').filter(|t| !t.is_empty()) {
        if token == "$ref" {
            let target = node.get("$ref")?.as_str()?.strip_prefix('#')?;
            node = schema.pointer(target)?;
            continue;
        }
        let token = token.replace("~1", "/").replace("~0", "~");
        node = match node {
            Value::Object(map) => map.get(&token)?,
            Value::Array(items) => items.get(token.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    // A node that is only a reference stands for its target.
    while let Some(target) = node.get("$ref").and_then(Value::as_str) {
        node = schema.pointer(target.strip_prefix('#')?)?;
    }
    Some(node)
}

/// For an object that names one of a `oneOf`'s single-key forms, the first error inside
/// that form.
fn chosen_branch<'e>(
    e: &jsonschema::ValidationError<'_>,
    context: &'e [Vec<jsonschema::ValidationError<'static>>],
    schema: &Value,
) -> Option<&'e jsonschema::ValidationError<'static>> {
    let object = e.instance().as_ref().as_object()?;
    let branches = resolve(schema, e.schema_path().as_str())?.as_array()?;
    let index = branches.iter().position(|b| {
        b.get("required")
            .and_then(Value::as_array)
            .and_then(|r| r.first())
            .and_then(Value::as_str)
            .is_some_and(|key| object.contains_key(key))
    })?;
    context.get(index)?.first()
}

/// For a value that only one of an `anyOf`'s branches could take by its JSON type (a
/// mapping where the other branch is text), the first error inside that branch.
fn same_type_branch<'e>(
    e: &jsonschema::ValidationError<'_>,
    context: &'e [Vec<jsonschema::ValidationError<'static>>],
    schema: &Value,
) -> Option<&'e jsonschema::ValidationError<'static>> {
    let wanted = match e.instance().as_ref() {
        Value::Object(_) => "object",
        Value::String(_) => "string",
        _ => return None,
    };
    let branches = resolve(schema, e.schema_path().as_str())?.as_array()?;
    // The branch's JSON type, through a `$ref` or a one-element `allOf` (how schemars
    // writes a described reference).
    let typed = |b: &Value| {
        let mut node = b;
        for _ in 0..4 {
            if let Some(t) = node.get("type").and_then(Value::as_str) {
                return Some(t.to_owned());
            }
            node = match (node.get("$ref"), node.get("allOf")) {
                (Some(target), _) => schema.pointer(target.as_str()?.strip_prefix('#')?)?,
                (None, Some(Value::Array(all))) if all.len() == 1 => all.first()?,
                _ => return None,
            };
        }
        None
    };
    let matching: Vec<usize> = branches
        .iter()
        .enumerate()
        .filter(|(_, b)| typed(b).as_deref() == Some(wanted))
        .map(|(i, _)| i)
        .collect();
    match matching.as_slice() {
        [index] => context.get(*index)?.first(),
        _ => None,
    }
}

/// The alternatives of a `oneOf`: constants (`basic: ADT^A28, …`) or single-key objects
/// (`inbox`, `webhook`), each with its description.
fn one_of_choices(schema: &Value, schema_path: &str) -> Vec<String> {
    let Some(branches) = resolve(schema, schema_path).and_then(Value::as_array) else {
        return Vec::new();
    };
    branches
        .iter()
        .filter_map(|b| {
            let name = b
                .get("const")
                .and_then(Value::as_str)
                .or_else(|| {
                    b.get("enum")
                        .and_then(Value::as_array)
                        .and_then(|e| e.first())
                        .and_then(Value::as_str)
                })
                .or_else(|| {
                    b.get("required")
                        .and_then(Value::as_array)
                        .and_then(|r| r.first())
                        .and_then(Value::as_str)
                })?;
            let description = b.get("description").and_then(Value::as_str).unwrap_or("");
            Some(if description.is_empty() {
                format!("`{name}`")
            } else {
                format!("`{name}` ({})", description.trim_end_matches('.'))
            })
        })
        .collect()
}

/// The keys allowed by the object schema that raised an `additionalProperties` error.
fn allowed_keys(schema: &Value, schema_path: &str) -> Vec<String> {
    let object_path = schema_path
        .strip_suffix("/additionalProperties")
        .unwrap_or(schema_path);
    resolve(schema, object_path)
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

fn property_description(schema: &Value, schema_path: &str, name: &str) -> String {
    let object_path = schema_path.strip_suffix("/required").unwrap_or(schema_path);
    resolve(schema, object_path)
        .and_then(|s| s.get("properties"))
        .and_then(|p| p.get(name))
        .map(|p| description_of(schema, p))
        .unwrap_or_default()
}

fn schema_description_at(schema: &Value, schema_path: &str) -> String {
    let parent = schema_path
        .rsplit_once('/')
        .map(|(p, _)| p)
        .unwrap_or(schema_path);
    resolve(schema, parent)
        .map(|s| description_of(schema, s))
        .unwrap_or_default()
}

fn description_of(schema: &Value, node: &Value) -> String {
    let mut node = node;
    if let Some(d) = node.get("description").and_then(Value::as_str) {
        return d.to_string();
    }
    while let Some(target) = node.get("$ref").and_then(Value::as_str) {
        match target.strip_prefix('#').and_then(|t| schema.pointer(t)) {
            Some(n) => node = n,
            None => break,
        }
        if let Some(d) = node.get("description").and_then(Value::as_str) {
            return d.to_string();
        }
    }
    String::new()
}
