//! The spec loader's invariants, kept apart from [`crate::checks`] because the runtime's
//! regression test includes that file and cannot see the compiler crate.

/// A customer spec from arbitrary bytes: the loader returns a spec or diagnostics, every
/// diagnostic's range lies inside the text, and nothing panics. (Only the loader and schema
/// run: the semantic checks read files named by the spec.)
pub fn spec_loader(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let len = text.len();
    let result = hl7gw::spec::loader::load_spec_text(
        text.to_string(),
        std::path::Path::new("fuzz.yaml"),
        "fuzz.yaml",
    );
    if let Err(diagnostics) = result {
        assert!(!diagnostics.is_empty(), "an error without a diagnostic");
        for d in &diagnostics {
            if let Some(r) = d.range {
                assert!(r.start.byte <= len && r.end.byte <= len + 1, "range outside the text: {d:?}");
                assert!(r.start.line >= 1 && r.start.column >= 1, "{d:?}");
            }
        }
    }
}
