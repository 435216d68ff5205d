//! Names that become Rust identifiers in the generated gateway: every table, record and field
//! name is snake_case and not a Rust keyword; the Rust types that records, tables and code
//! maps become are neither names the generated code already uses nor each other's; the
//! variants the codes of one table or map become are distinct.
//!
//! The generator decides these names (`codegen::names`, `spec::type_name`); this check calls
//! the same functions, so `validate` reports at its line:column what `generate` would refuse
//! (a record named `result` or `match`) or rename behind the author's back (a second
//! `PatientSex` type becoming `PatientSex2`, a code's variant `U2`).

use std::collections::HashMap;

use crate::codegen::names::{RESERVED_TYPES, is_keyword, variant_base};
use crate::diag::Diagnostic;
use crate::spec::loader::escape_pointer;
use crate::spec::{FieldType, LoadedSpec, type_name};

pub(super) fn check(spec: &LoadedSpec, out: &mut Vec<Diagnostic>) {
    let s = &spec.spec;
    for name in s.tables.keys() {
        check_name(spec, "table", name, &table_pointer(name), out);
    }
    for (record, fields) in &s.records {
        check_name(spec, "record", record, &record_pointer(record), out);
        for field in fields.keys() {
            check_name(spec, "field", field, &field_pointer(record, field), out);
        }
    }
    check_types(spec, out);
    check_variants(spec, out);
}

fn table_pointer(table: &str) -> String {
    format!("/tables/{}", escape_pointer(table))
}

fn record_pointer(record: &str) -> String {
    format!("/records/{}", escape_pointer(record))
}

fn field_pointer(record: &str, field: &str) -> String {
    format!("{}/{}", record_pointer(record), escape_pointer(field))
}

fn is_snake_case(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.ends_with('_')
        && !name.contains("__")
}

fn check_name(spec: &LoadedSpec, kind: &str, name: &str, pointer: &str, out: &mut Vec<Diagnostic>) {
    if !is_snake_case(name) {
        out.push(spec.at_key(
            Diagnostic::error("name-invalid", format!("{kind} name `{name}` is not snake_case"))
                .detail("names become Rust identifiers in the generated gateway: lower-case letters, digits and single underscores, starting with a letter, e.g. birth_date"),
            pointer,
        ));
    } else if is_keyword(name) {
        out.push(
            spec.at_key(
                Diagnostic::error(
                    "name-reserved",
                    format!("{kind} name `{name}` is a Rust keyword"),
                )
                .detail("pick another name, e.g. add a word: `order_type` instead of `type`"),
                pointer,
            ),
        );
    }
}

/// One Rust type the generated crate declares for the spec, in the generator's order.
struct TypeUse {
    /// The Rust type name.
    rust: String,
    /// The spec name it comes from: a record or table name, or `record.field` for a map.
    name: String,
    /// Where it is declared in the spec.
    pointer: String,
    kind: TypeKind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TypeKind {
    /// Must have its exact name: `generate` refuses the spec otherwise.
    Record,
    /// Renamed with a number by `generate` when the name is taken.
    Table,
    /// Likewise.
    Map,
}

impl TypeUse {
    /// "record `report`", "table `priority`", "the code map of `patient.sex`".
    fn what(&self) -> String {
        match self.kind {
            TypeKind::Record => format!("record `{}`", self.name),
            TypeKind::Table => format!("table `{}`", self.name),
            TypeKind::Map => format!("the code map of `{}`", self.name),
        }
    }
}

/// The types in the order the generator hands them out: records, then tables, then each
/// record's code maps (spec order throughout).
fn type_uses(spec: &LoadedSpec) -> Vec<TypeUse> {
    let s = &spec.spec;
    let records = s.records.keys().map(|record| TypeUse {
        rust: type_name(record),
        name: record.clone(),
        pointer: record_pointer(record),
        kind: TypeKind::Record,
    });
    let tables = s.tables.keys().map(|table| TypeUse {
        rust: type_name(table),
        name: table.clone(),
        pointer: table_pointer(table),
        kind: TypeKind::Table,
    });
    let maps = s.records.iter().flat_map(|(record, fields)| {
        fields
            .iter()
            .filter(|(_, f)| f.kind == Some(FieldType::Code) && f.map.is_some())
            .map(move |(field, _)| TypeUse {
                rust: format!("{}{}", type_name(record), type_name(field)),
                name: format!("{record}.{field}"),
                pointer: field_pointer(record, field),
                kind: TypeKind::Map,
            })
    });
    records.chain(tables).chain(maps).collect()
}

fn check_types(spec: &LoadedSpec, out: &mut Vec<Diagnostic>) {
    // The attachment type is declared when a field carries base64, after the records and
    // before tables and maps.
    let has_attachment = spec
        .spec
        .records
        .values()
        .flat_map(|r| r.values())
        .any(|f| f.kind == Some(FieldType::Base64));
    let mut taken: HashMap<String, TypeUse> = HashMap::new();
    for t in type_uses(spec) {
        let is_record = t.kind == TypeKind::Record;
        if RESERVED_TYPES.contains(&t.rust.as_str())
            || (!is_record && has_attachment && t.rust == "Attachment")
        {
            let consequence = if is_record {
                "`hl7gw generate` refuses it; rename the record, adding a word (e.g. `lab_result` for `result`)".to_owned()
            } else {
                format!(
                    "`hl7gw generate` would call it `{}2` instead; rename the {}",
                    t.rust,
                    if t.kind == TypeKind::Table {
                        "table"
                    } else {
                        "field"
                    }
                )
            };
            out.push(
                spec.at_key(
                    Diagnostic::error(
                        "name-reserved-type",
                        format!(
                            "{} becomes the Rust type `{}`, a name the generated code already uses",
                            t.what(),
                            t.rust
                        ),
                    )
                    .detail(consequence),
                    &t.pointer,
                ),
            );
            continue;
        }
        match taken.get(&t.rust) {
            Some(first) if is_record => out.push(spec.at_key(
                Diagnostic::error(
                    "name-duplicate",
                    format!(
                        "records `{}` and `{}` both become the Rust type `{}`",
                        first.name, t.name, t.rust
                    ),
                ),
                &t.pointer,
            )),
            Some(first) => out.push(
                spec.at_key(
                    Diagnostic::error(
                        "name-type-collision",
                        format!(
                            "{} becomes the Rust type `{}`, which {} already takes",
                            t.what(),
                            t.rust,
                            first.what()
                        ),
                    )
                    .detail(format!(
                        "`hl7gw generate` would call it `{}2` instead; rename one of them",
                        t.rust
                    )),
                    &t.pointer,
                ),
            ),
            None => {
                taken.insert(t.rust.clone(), t);
            }
        }
    }
}

/// Two codes of one table or map that become the same enum variant: the second would be
/// renamed with a number (`U2`). The codes come from the Trust and cannot always be changed,
/// so this is a warning the spec can acknowledge.
fn check_variants(spec: &LoadedSpec, out: &mut Vec<Diagnostic>) {
    let s = &spec.spec;
    let lists = s
        .tables
        .iter()
        .map(|(table, codes)| (format!("table `{table}`"), table_pointer(table), codes))
        .chain(s.records.iter().flat_map(|(record, fields)| {
            fields.iter().filter_map(move |(field, f)| {
                let map = f.map.as_ref()?;
                Some((
                    format!("the `{record}.{field}` map"),
                    format!("{}/map", field_pointer(record, field)),
                    map,
                ))
            })
        }));
    for (list, pointer, codes) in lists {
        let mut seen: HashMap<String, &str> = HashMap::new();
        for code in codes.keys() {
            let variant = variant_base(code);
            if let Some(first) = seen.get(&variant) {
                out.push(spec.at_key(
                    Diagnostic::warning(
                        "name-variant-collision",
                        format!(
                            "codes `{first}` and `{code}` of {list} both become the Rust variant `{variant}`"
                        ),
                    )
                    .detail(format!(
                        "`hl7gw generate` names the second one `{variant}2`, which code written against the generated crate must then use; if both codes are right, acknowledge this warning with the reason"
                    )),
                    &format!("{pointer}/{}", escape_pointer(code)),
                ));
            } else {
                seen.insert(variant, code);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::codegen::generate;
    use crate::spec::load_spec;

    fn broken(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/specs/broken")
            .join(name)
    }

    fn name_codes(name: &str) -> (LoadedSpec, Vec<String>) {
        let loaded = match load_spec(&broken(name), name) {
            Ok(loaded) => loaded,
            Err(d) => panic!("{name}: {d:#?}"),
        };
        let mut found = Vec::new();
        check(&loaded, &mut found);
        let codes = found.into_iter().map(|d| d.code).collect();
        (loaded, codes)
    }

    /// What `validate` says about a name is what `generate` does with it: refused, or renamed
    /// with a number.
    #[test]
    fn validate_reports_what_generate_refuses_or_renames() {
        let (loaded, codes) = name_codes("name-reserved-type.yaml");
        assert_eq!(codes, ["name-reserved-type"]);
        let err = generate(&loaded, "x.yaml", "00")
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains("`Result`")),
            "{err:?}"
        );

        for (spec, code, renamed) in [
            (
                "name-reserved-type-table.yaml",
                "name-reserved-type",
                "pub enum Option2 {",
            ),
            (
                "name-type-collision.yaml",
                "name-type-collision",
                "pub enum PatientSex2 {",
            ),
            (
                "name-type-collision-table.yaml",
                "name-type-collision",
                "pub enum Patient2 {",
            ),
            (
                "name-variant-collision.yaml",
                "name-variant-collision",
                "    U2,",
            ),
        ] {
            let (loaded, codes) = name_codes(spec);
            assert_eq!(codes, [code], "{spec}");
            let generated = match generate(&loaded, "x.yaml", "00") {
                Ok(generated) => generated,
                Err(e) => panic!("{spec}: {e}"),
            };
            let records = generated
                .files
                .get("src/records.rs")
                .map_or("", String::as_str);
            assert!(
                records.contains(renamed),
                "{spec}: no `{renamed}` in {records}"
            );
        }
    }

    #[test]
    fn keywords_are_the_generators_keywords() {
        for (spec, code) in [
            ("name-reserved.yaml", "name-reserved"),
            ("name-reserved-record.yaml", "name-reserved"),
            ("name-duplicate.yaml", "name-duplicate"),
        ] {
            assert_eq!(name_codes(spec).1, [code], "{spec}");
        }
    }
}
