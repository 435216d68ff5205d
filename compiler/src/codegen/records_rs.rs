//! `src/records.rs`: data and trait impls only. A struct per record with a `static`
//! `mapping::Field` per field and `mapping::Record` (and `OutboundRecord`) impls that read or
//! write each field with one call; an enum per code list with its `mapping::CodeList`
//! entries; the spec's media types for the runtime's `mapping::Attachment`.

use proc_macro2::{Literal, TokenStream};
use quote::quote;

use super::names::ident;
use super::plan::{CodeEnum, FieldPlan, Kind, Outbound, Plan, RecordPlan};
use super::tokens::{doc, inner_doc, path_literal, render_file};
use super::{CodegenError, Context};

/// Renders `src/records.rs`.
pub fn render(ctx: &Context<'_>, plan: &Plan) -> Result<String, CodegenError> {
    let mut items = Vec::new();
    let any_runtime = !plan.records.is_empty() || !plan.enums.is_empty();
    if any_runtime {
        items.push(quote! { use hl7gw_runtime::{hl7, mapping}; });
    }
    if let Some((name, media)) = &plan.attachment {
        items.push(attachment(name, media, &media_types(plan)));
    }
    let table_count = plan.enums.iter().filter(|e| !e.from_map).count();
    for code_enum in plan.enums.iter().take(table_count) {
        items.push(enum_item(code_enum));
    }
    for out in &plan.outbound {
        items.push(shape_item(out));
    }
    for record in &plan.records {
        items.push(record_item(plan, record));
        for field in &record.fields {
            if let Kind::Code { enum_index } = field.kind
                && let Some(code_enum) = plan.enums.get(enum_index)
                && code_enum.from_map
            {
                items.push(enum_item(code_enum));
            }
        }
    }
    let docs = inner_doc(&format!(
        "The typed records of {} (`{}`).\n\n\
         One struct per record, with typed fields; one enum per code map and table; the runtime\n\
         does the work through their `mapping::Record` and `mapping::CodeList` impls. `from_hl7`\n\
         maps an inbound message and reports every error at once; `to_hl7` builds an outbound\n\
         message. Serialized with serde, a record is the JSON object the spec tests and\n\
         `hl7gw test` compare. It deserializes back from that JSON, which is how\n\
         the intake reads a record EMS sends (`GatewaySpec::build_outbound`): unknown keys are refused, and dates,\n\
         NHS numbers, numbers and codes are checked as when read from HL7.",
        ctx.spec.customer.name, ctx.spec_path
    ));
    render_file(
        &ctx.header(),
        quote! {
            #docs
            #(#items)*
        },
        "records.rs",
    )
}

/// The `const` describing one outbound message type: what the dictionary says it carries
/// besides its record (structure, set IDs, MSA).
fn shape_item(out: &Outbound) -> TokenStream {
    let name = ident(&out.shape_const);
    let message_type = &out.message_type;
    let structure = match &out.structure {
        Some(s) => quote! { Some(std::borrow::Cow::Borrowed(#s)) },
        None => quote! { None },
    };
    let set_ids = &out.set_id_segments;
    let acknowledgement = out.acknowledgement;
    let mut what = Vec::new();
    if !set_ids.is_empty() {
        what.push(format!("set IDs numbered in {}", set_ids.join(", ")));
    }
    if acknowledgement {
        what.push("an MSA after the MSH, MSA-1 `AA` unless the record writes it".to_string());
    }
    let d = doc(&format!(
        "The `{message_type}` message as the HL7 dictionary describes it{}.",
        if what.is_empty() {
            String::new()
        } else {
            format!(": {}", what.join("; "))
        }
    ));
    quote! {
        #d
        pub const #name: mapping::MessageShape = mapping::MessageShape {
            message_type: std::borrow::Cow::Borrowed(#message_type),
            structure: #structure,
            set_id_segments: std::borrow::Cow::Borrowed(&[#(std::borrow::Cow::Borrowed(#set_ids)),*]),
            acknowledgement: #acknowledgement,
        };
    }
}

/// The media types of the spec's base64 fields, each once, in spec order.
fn media_types(plan: &Plan) -> Vec<String> {
    let mut media = Vec::new();
    for field in plan.records.iter().flat_map(|r| &r.fields) {
        if let Kind::Base64 { media: m, .. } = &field.kind
            && !media.contains(m)
        {
            media.push(m.clone());
        }
    }
    media
}

fn attachment(name: &str, media_name: &str, media: &[String]) -> TokenStream {
    let name = ident(name);
    let media_name = ident(media_name);
    let alias_doc = doc(&format!(
        "Decoded base64 data with one of [`{media_name}`]'s types; as JSON\n\
         `{{\"media_type\": …, \"data\": <standard base64 with padding>}}`."
    ));
    quote! {
        /// The media types of the spec's base64 fields.
        pub struct #media_name;

        impl mapping::MediaTypes for #media_name {
            const MEDIA_TYPES: &'static [&'static str] = &[#(#media),*];
        }

        #alias_doc
        pub type #name = mapping::Attachment<#media_name>;
    }
}

fn enum_item(e: &CodeEnum) -> TokenStream {
    let name = ident(&e.type_name);
    let heading = if e.from_map {
        format!(
            "The codes of {}: each HL7 code and the EMS value it maps to.\n\nAs JSON: the EMS value.",
            e.source
        )
    } else {
        format!(
            "The codes of {}: each code and its meaning in the customer's configuration.\n\nAs JSON: the code.",
            e.source
        )
    };
    let type_doc = doc(&heading);
    let variants: Vec<_> = e.entries.iter().map(|(_, _, v)| ident(v)).collect();
    let variant_docs = e.entries.iter().map(|(code, meaning, _)| {
        if e.from_map {
            doc(&format!("`{code}` → `{meaning}`."))
        } else {
            doc(&format!("`{code}`: {meaning}."))
        }
    });
    let codes: Vec<_> = e.entries.iter().map(|(c, _, _)| c.as_str()).collect();
    let meanings: Vec<_> = e.entries.iter().map(|(_, m, _)| m.as_str()).collect();
    let list = &e.list_name;
    let mapped = e.from_map;
    quote! {
        #type_doc
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[derive(serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "&'static str")]
        pub enum #name {
            #(#variant_docs #variants,)*
        }

        impl mapping::CodeList for #name {
            const LIST: &'static str = #list;
            const MAPPED: bool = #mapped;
            const ENTRIES: &'static [(Self, &'static str, &'static str)] = &[#((Self::#variants, #codes, #meanings)),*];
        }

        impl TryFrom<String> for #name {
            type Error = mapping::CodeError;
            fn try_from(text: String) -> Result<Self, Self::Error> {
                mapping::CodeList::from_json(&text)
            }
        }

        impl From<#name> for &'static str {
            fn from(value: #name) -> Self {
                mapping::CodeList::json(value)
            }
        }
    }
}

/// The Rust type of a value of the field (before `Option`/`Vec`).
fn value_type(plan: &Plan, kind: &Kind) -> TokenStream {
    match kind {
        Kind::Text { .. } => quote! { String },
        Kind::Date => quote! { mapping::HlDate },
        Kind::DateTime => quote! { mapping::HlDateTime },
        Kind::NhsNumber => quote! { mapping::NhsNumber },
        Kind::Number => quote! { mapping::HlNumber },
        Kind::Code { enum_index } => {
            let name = plan
                .enums
                .get(*enum_index)
                .map_or("String", |e| e.type_name.as_str());
            let name = ident(name);
            quote! { #name }
        }
        Kind::Base64 { .. } => {
            let name = ident(
                plan.attachment
                    .as_ref()
                    .map_or("Attachment", |(a, _)| a.as_str()),
            );
            quote! { #name }
        }
        Kind::Nested { record_index } => {
            let name = plan
                .records
                .get(*record_index)
                .map_or("String", |r| r.type_name.as_str());
            let name = ident(name);
            quote! { #name }
        }
    }
}

fn field_type(plan: &Plan, field: &FieldPlan) -> TokenStream {
    let inner = value_type(plan, &field.kind);
    if matches!(field.kind, Kind::Nested { .. }) {
        inner
    } else if field.repeated {
        quote! { Vec<#inner> }
    } else if field.required {
        inner
    } else {
        quote! { Option<#inner> }
    }
}

fn field_doc(field: &FieldPlan) -> String {
    let Some((first, _)) = &field.path else {
        return "The nested record.".into();
    };
    let from: String = std::iter::once(first.as_str())
        .chain(field.fallbacks.iter().map(|(t, _)| t.as_str()))
        .collect::<Vec<_>>()
        .join("`, else `");
    let kind = match &field.kind {
        Kind::Text { max_len: Some(n) } => format!("text, at most {n} characters"),
        Kind::Text { max_len: None } => "text".into(),
        Kind::Date => "a date".into(),
        Kind::DateTime => "a date and time".into(),
        Kind::NhsNumber => "an NHS number".into(),
        Kind::Number => "a number".into(),
        Kind::Code { .. } => "a code".into(),
        Kind::Base64 {
            media, max_bytes, ..
        } => format!("base64 `{media}`, at most {max_bytes} bytes decoded"),
        Kind::Nested { .. } => "a record".into(),
    };
    let presence = match (field.required, field.repeated) {
        (true, true) => "; every value, at least one required",
        (false, true) => "; every value",
        (true, false) => "; required",
        (false, false) => "; optional",
    };
    format!("From `{from}`: {kind}{presence}.")
}

/// The `static` a field is read and written through: name, path, fallbacks, presence and
/// limits.
fn field_static(field: &FieldPlan, path: &TokenStream) -> TokenStream {
    let name = &field.name;
    let base = if field.required {
        quote! { mapping::Field::required(#name, #path) }
    } else {
        quote! { mapping::Field::optional(#name, #path) }
    };
    let fallbacks = field.fallbacks_static.as_ref().map(|name| {
        let name = ident(name);
        quote! { .or_from(&#name) }
    });
    let limit = match &field.kind {
        Kind::Text { max_len: Some(n) } => {
            let n = Literal::u32_unsuffixed(*n);
            quote! { .max_chars(#n) }
        }
        Kind::Base64 {
            media,
            max_bytes,
            ed_data,
        } => {
            let max = Literal::u64_unsuffixed(*max_bytes);
            quote! { .data(#max, #media, #ed_data) }
        }
        _ => quote! {},
    };
    quote! { #base #fallbacks #limit }
}

fn record_item(plan: &Plan, record: &RecordPlan) -> TokenStream {
    let name = ident(&record.type_name);
    let mut statics = Vec::new();
    for field in &record.fields {
        if let (Some(fallbacks_static), false) =
            (&field.fallbacks_static, field.fallbacks.is_empty())
        {
            let static_name = ident(fallbacks_static);
            let count = Literal::usize_unsuffixed(field.fallbacks.len());
            let paths = field.fallbacks.iter().map(|(_, path)| path_literal(path));
            let written: Vec<&str> = field.fallbacks.iter().map(|(t, _)| t.as_str()).collect();
            let d = doc(&format!(
                "`{}`: where `{}.{}` is read when its path holds no value, in order.",
                written.join("`, `"),
                record.name,
                field.name
            ));
            statics.push(quote! {
                #d
                static #static_name: [hl7::Path; #count] = [#(#paths),*];
            });
        }
        if let (Some((from, path)), Some(static_name)) = (&field.path, &field.path_static) {
            let static_name = ident(static_name);
            let value = field_static(field, &path_literal(path));
            let d = match &field.fixed {
                Some(fixed) => doc(&format!(
                    "`{from}`: `{}.{}`, always `{fixed}` in built messages.",
                    record.name, field.name
                )),
                None => doc(&format!("`{from}`: `{}.{}`.", record.name, field.name)),
            };
            statics.push(quote! {
                #d
                static #static_name: mapping::Field = #value;
            });
        }
    }
    let field_defs = record.members().map(|field| {
        let d = doc(&field_doc(field));
        let n = ident(&field.name);
        let t = field_type(plan, field);
        let default = (field.repeated && !field.required).then(|| quote! { #[serde(default)] });
        quote! { #d #default pub #n: #t }
    });
    let struct_doc = doc(&format!(
        "The `{}` record. As JSON: an object with these fields, in this order. Read from\n\
         JSON, a key not listed is an error and an optional field may be absent or null{}.",
        record.name,
        if record.members().any(|f| f.repeated && !f.required) {
            ", an\noptional repeated field absent"
        } else {
            ""
        }
    ));

    let reads = record.members().map(read_stmt);
    let inits = record.members().map(|field| {
        let n = ident(&field.name);
        let local = ident(&field.local);
        let unwrap =
            matches!(field.kind, Kind::Nested { .. }) || (field.required && !field.repeated);
        match (unwrap, field.local == field.name) {
            (true, _) => quote! { #n: #local? },
            (false, true) => quote! { #n },
            (false, false) => quote! { #n: #local },
        }
    });
    let unused_read = record
        .members()
        .next()
        .is_none()
        .then(|| quote! { let _ = (message, errors); });

    let mut methods = vec![quote! {
        /// Maps a message to this record, or returns every error found (HL7 codes 101, 102,
        /// 103, each with its location).
        pub fn from_hl7(message: &hl7::Message<'_>) -> Result<Self, Vec<mapping::MappingError>> {
            mapping::Record::from_hl7(message)
        }
    }];
    let mut outbound_impl = quote! {};
    if record.written {
        let writes: Vec<_> = record.fields.iter().map(write_stmt).collect();
        let unused_write = record
            .fields
            .is_empty()
            .then(|| quote! { let _ = message; });
        outbound_impl = quote! {
            impl mapping::OutboundRecord for #name {
                fn write(&self, message: &mut hl7::MessageBuilder) -> Result<(), hl7::BuildError> {
                    #unused_write
                    #(#writes)*
                    Ok(())
                }
            }
        };
        for out in plan.outbound.iter().filter(|o| {
            plan.records
                .get(o.record_index)
                .is_some_and(|r| r.name == record.name)
        }) {
            let method = ident(&out.method);
            let message_type = &out.message_type;
            let shape = ident(&out.shape_const);
            let structure_doc = match &out.structure {
                Some(s) => format!(" (structure `{s}`)"),
                None => String::new(),
            };
            let d = doc(&format!(
                "Builds the `{message_type}` message{structure_doc} from this record, after the MSH in `header`."
            ));
            methods.push(quote! {
                #d
                pub fn #method(&self, header: &mapping::OutboundHeader<'_>) -> Result<Vec<u8>, hl7::BuildError> {
                    mapping::OutboundRecord::build(self, header, &#shape)
                }
            });
        }
    }

    quote! {
        #(#statics)*

        #struct_doc
        #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct #name {
            #(#field_defs,)*
        }

        impl #name {
            #(#methods)*
        }

        impl mapping::Record for #name {
            fn read(message: &hl7::Message<'_>, errors: &mut mapping::Errors) -> Option<Self> {
                #unused_read
                #(#reads)*
                Some(Self { #(#inits),* })
            }
        }

        #outbound_impl
    }
}

/// One call per field: a nested record, or its `static` read as one value or every value.
fn read_stmt(field: &FieldPlan) -> TokenStream {
    let local = ident(&field.local);
    let name = &field.name;
    if let Kind::Nested { .. } = field.kind {
        return quote! { let #local = mapping::nested(#name, message, errors); };
    }
    let Some(static_name) = &field.path_static else {
        return quote! {};
    };
    let static_name = ident(static_name);
    if field.repeated {
        quote! { let #local = #static_name.repeated(message, errors); }
    } else {
        quote! { let #local = #static_name.single(message, errors); }
    }
}

/// One call per field: a nested record writes itself; a value is written through its
/// `static`; a fixed value is written as declared.
fn write_stmt(field: &FieldPlan) -> TokenStream {
    let n = ident(&field.name);
    if let (Some(fixed), Some(static_name)) = (&field.fixed, &field.path_static) {
        let static_name = ident(static_name);
        return quote! { #static_name.write_fixed(message, #fixed)?; };
    }
    if matches!(field.kind, Kind::Nested { .. }) {
        return quote! { mapping::OutboundRecord::write(&self.#n, message)?; };
    }
    let Some(static_name) = &field.path_static else {
        return quote! {};
    };
    let static_name = ident(static_name);
    if field.repeated {
        quote! { #static_name.write_each(message, &self.#n)?; }
    } else if field.required {
        quote! { #static_name.write(message, &self.#n)?; }
    } else {
        quote! { #static_name.write_optional(message, self.#n.as_ref())?; }
    }
}
