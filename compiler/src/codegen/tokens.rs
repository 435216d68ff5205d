//! Token helpers: doc comments, HL7 path literals, JSON literals, and the final pretty print.

use hl7gw_runtime::hl7::{Path, RepetitionSelector, SegmentSelector};
use proc_macro2::{Literal, TokenStream};
use quote::quote;

use super::CodegenError;

/// `#[doc = " line"]` for each line of `text` (`///` once printed).
pub fn doc(text: &str) -> TokenStream {
    let lines = text.lines().map(|line| {
        let line = if line.is_empty() {
            String::new()
        } else {
            format!(" {line}")
        };
        quote! { #[doc = #line] }
    });
    quote! { #(#lines)* }
}

/// `#![doc = " line"]` for each line of `text` (`//!` once printed).
pub fn inner_doc(text: &str) -> TokenStream {
    let lines = text.lines().map(|line| {
        let line = if line.is_empty() {
            String::new()
        } else {
            format!(" {line}")
        };
        quote! { #![doc = #line] }
    });
    quote! { #(#lines)* }
}

/// An unsuffixed integer literal.
pub fn usize_lit(n: usize) -> Literal {
    Literal::usize_unsuffixed(n)
}

fn opt_usize(n: Option<usize>) -> TokenStream {
    match n {
        Some(n) => {
            let n = usize_lit(n);
            quote! { Some(#n) }
        }
        None => quote! { None },
    }
}

/// A constant expression equal to `path`, built with the runtime's `const` constructors
/// (`hl7::Path::new("PID", 7).component(1)`), so a generated path is a `static` that
/// allocates nothing and is never parsed at run time.
pub fn path_literal(path: &Path) -> TokenStream {
    let segment = &*path.segment;
    let field = usize_lit(path.field);
    let segment_selector = path
        .segment_selector
        .as_ref()
        .map(|selector| match selector {
            SegmentSelector::Occurrence(n) => {
                let n = usize_lit(*n);
                quote! { hl7::SegmentSelector::Occurrence(#n) }
            }
            SegmentSelector::Where(filter) => {
                let field = usize_lit(filter.field);
                let component = opt_usize(filter.component);
                let subcomponent = opt_usize(filter.subcomponent);
                let value = &*filter.value;
                quote! { hl7::SegmentSelector::matching(#field, #component, #subcomponent, #value) }
            }
        });
    let repetition = path.repetition.as_ref().map(|selector| match selector {
        RepetitionSelector::Index(n) => {
            let n = usize_lit(*n);
            quote! { hl7::RepetitionSelector::Index(#n) }
        }
        RepetitionSelector::Where(filter) => {
            let datatype = &*filter.datatype;
            let component = usize_lit(filter.component);
            let subcomponent = opt_usize(filter.subcomponent);
            let value = &*filter.value;
            quote! { hl7::RepetitionSelector::matching(#datatype, #component, #subcomponent, #value) }
        }
    });
    let base = match (segment_selector, repetition) {
        (None, None) => quote! { hl7::Path::new(#segment, #field) },
        (Some(s), None) => quote! { hl7::Path::in_segment(#segment, #s, #field) },
        (None, Some(r)) => quote! { hl7::Path::in_repetition(#segment, #field, #r) },
        (Some(s), Some(r)) => {
            quote! { hl7::Path::selected(#segment, Some(#s), #field, Some(#r)) }
        }
    };
    let component = path.component.map(|c| {
        let c = usize_lit(c);
        quote! { .component(#c) }
    });
    let subcomponent = path.subcomponent.map(|s| {
        let s = usize_lit(s);
        quote! { .subcomponent(#s) }
    });
    quote! { #base #component #subcomponent }
}

/// Pretty-prints a file's tokens with prettyplease, after `header` (comment lines). Items are
/// printed one by one and separated by a blank line (consecutive `use` items stay together),
/// which prettyplease alone does not do.
pub fn render_file(header: &str, tokens: TokenStream, what: &str) -> Result<String, CodegenError> {
    let mut file: syn::File = syn::parse2(tokens)
        .map_err(|e| CodegenError::new(format!("generated {what} does not parse: {e}")))?;
    let items = std::mem::take(&mut file.items);
    let mut out = String::from(header);
    out.push_str(&prettyplease::unparse(&file));
    let has_inner_attrs = out.len() > header.len();
    let mut previous_was_use: Option<bool> = None;
    file.attrs.clear();
    for item in items {
        let is_use = matches!(item, syn::Item::Use(_));
        let blank = match previous_was_use {
            None => has_inner_attrs,
            Some(previous) => !(previous && is_use),
        };
        if blank {
            out.push('\n');
        }
        previous_was_use = Some(is_use);
        file.items = vec![item];
        out.push_str(&prettyplease::unparse(&file));
    }
    Ok(out)
}

/// A raw string literal (`r#"…"#`) holding `text`, with enough `#` to be unambiguous.
pub fn raw_string(text: &str) -> Result<TokenStream, CodegenError> {
    let mut hashes = String::from("#");
    while text.contains(&format!("\"{hashes}")) {
        hashes.push('#');
    }
    format!("r{hashes}\"{text}\"{hashes}")
        .parse()
        .map_err(|e| CodegenError::new(format!("a raw string literal does not lex: {e}")))
}
