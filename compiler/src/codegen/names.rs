//! Rust names for spec names: types for records, tables and code maps, variants for codes,
//! statics for paths, functions for tests. Every choice is deterministic (spec order) and
//! collision-free (a taken name gets a number).

use std::collections::BTreeSet;

use proc_macro2::{Ident, Span};

/// Rust keywords (strict, reserved and edition 2024), which no generated identifier may be.
const KEYWORDS: &[&str] = &[
    "as", "async", "await", "box", "break", "const", "continue", "crate", "dyn", "else", "enum",
    "extern", "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod",
    "move", "mut", "pub", "ref", "return", "self", "static", "struct", "super", "trait", "true",
    "try", "type", "unsafe", "use", "where", "while", "yield", "abstract", "become", "do", "final",
    "macro", "override", "priv", "typeof", "unsized", "virtual", "Self", "union",
];

/// Type names the generated code uses unqualified; a record or enum may not take them.
pub const RESERVED_TYPES: &[&str] = &[
    "Self",
    "String",
    "Vec",
    "Option",
    "Result",
    "Some",
    "None",
    "Ok",
    "Err",
    "Box",
    "Copy",
    "Clone",
    "Debug",
    "PartialEq",
    "Eq",
    "Hash",
    "Default",
    "Iterator",
    "Fn",
    "FnOnce",
];

/// An identifier token.
pub fn ident(name: &str) -> Ident {
    Ident::new(name, Span::call_site())
}

/// Whether `name` is a Rust keyword.
pub fn is_keyword(name: &str) -> bool {
    KEYWORDS.contains(&name)
}

/// Hands out names, never the same one twice.
#[derive(Debug, Default, Clone)]
pub struct Namer {
    taken: BTreeSet<String>,
}

impl Namer {
    /// A namer with `reserved` already taken.
    pub fn with_reserved(reserved: &[&str]) -> Self {
        Self {
            taken: reserved.iter().map(|s| (*s).to_string()).collect(),
        }
    }

    /// Takes `name` exactly; false when it was taken already.
    pub fn take_exact(&mut self, name: &str) -> bool {
        self.taken.insert(name.to_string())
    }

    /// `base`, or `base2`, `base3`… (with `sep` between) if taken.
    pub fn unique(&mut self, base: &str, sep: &str) -> String {
        if self.taken.insert(base.to_string()) {
            return base.to_string();
        }
        let mut n = 2usize;
        loop {
            let candidate = format!("{base}{sep}{n}");
            if self.taken.insert(candidate.clone()) {
                return candidate;
            }
            n += 1;
        }
    }
}

/// An UpperCamelCase identifier for a code: alphanumeric runs, each capitalised with the rest
/// lower-cased (`OGD` → `Ogd`, `two-week` → `TwoWeek`, `C1234` → `C1234`); `Code` in front
/// when that is empty or starts with a digit (`2WW` → `Code2ww`); non-ASCII letters dropped.
pub fn variant_base(code: &str) -> String {
    let mut out = String::new();
    for run in code.split(|c: char| !c.is_ascii_alphanumeric()) {
        let mut chars = run.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            out.extend(chars.map(|c| c.to_ascii_lowercase()));
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "Code");
    }
    if is_keyword(&out) {
        out.push('_');
    }
    out
}

/// A snake_case function name for a test name: ASCII letters and digits lower-cased, every
/// other run one `_`; `test_` in front when empty, starting with a digit or a keyword.
pub fn fn_base(text: &str) -> String {
    let mut out = String::new();
    let mut gap = false;
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            if gap && !out.is_empty() {
                out.push('_');
            }
            gap = false;
            out.push(c.to_ascii_lowercase());
        } else {
            gap = true;
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) || is_keyword(&out) {
        out.insert_str(0, "test_");
    }
    out.trim_end_matches('_').to_string()
}

/// SCREAMING_SNAKE_CASE for a static: `patient`, `nhs_number` → `PATIENT_NHS_NUMBER`.
pub fn static_base(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| p.to_ascii_uppercase())
        .collect::<Vec<_>>()
        .join("_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_are_identifiers() {
        assert_eq!(variant_base("M"), "M");
        assert_eq!(variant_base("OGD"), "Ogd");
        assert_eq!(variant_base("2WW"), "Code2ww");
        assert_eq!(variant_base("C1234"), "C1234");
        assert_eq!(variant_base("two-week wait"), "TwoWeekWait");
        assert_eq!(variant_base(""), "Code");
        assert_eq!(variant_base("é"), "Code");
        assert_eq!(variant_base("self"), "Self_");
    }

    #[test]
    fn names_never_collide() {
        let mut n = Namer::with_reserved(&["String"]);
        assert_eq!(n.unique("String", ""), "String2");
        assert_eq!(n.unique("Ab", ""), "Ab");
        assert_eq!(n.unique("Ab", ""), "Ab2");
        assert_eq!(n.unique("Ab2", ""), "Ab22");
    }

    #[test]
    fn test_names_become_functions() {
        assert_eq!(
            fn_base("an order maps to a ServiceRequest"),
            "an_order_maps_to_a_servicerequest"
        );
        assert_eq!(fn_base("A28: NHS number (PID-3)"), "a28_nhs_number_pid_3");
        assert_eq!(fn_base("404"), "test_404");
        assert_eq!(fn_base("--"), "test");
        assert_eq!(fn_base("loop"), "test_loop");
    }
}
