//! `src/records.rs`: a struct per record, an enum per code list, the attachment type, and per
//! record `from_hl7`/`read` (inbound) and `write`/`to_hl7` (outbound), all calling the
//! runtime's mapping primitives with constants.

use proc_macro2::{Literal, TokenStream};
use quote::quote;

use super::names::ident;
use super::plan::{CodeEnum, FieldPlan, Kind, Plan, RecordPlan};
use super::tokens::{doc, inner_doc, path_literal, render_file, usize_lit};
use super::{CodegenError, Context};
use hl7gw_runtime::hl7::{RepetitionSelector, SegmentSelector};

/// Renders `src/records.rs`.
pub fn render(ctx: &Context<'_>, plan: &Plan) -> Result<String, CodegenError> {
    let mut items = Vec::new();
    let any_runtime = !plan.records.is_empty() || !plan.enums.is_empty();
    if any_runtime {
        items.push(quote! { use hl7gw_runtime::{hl7, mapping}; });
    }
    if let Some(name) = &plan.attachment {
        items.push(attachment(name, &media_types(plan)));
    }
    let table_count = plan.enums.iter().filter(|e| !e.from_map).count();
    for code_enum in plan.enums.iter().take(table_count) {
        items.push(enum_item(code_enum));
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
         One struct per record, with typed fields; one enum per code map and table. `from_hl7`\n\
         maps an inbound message through the runtime's mapping primitives and reports every\n\
         error at once; `to_hl7` builds an outbound message. Serialized with serde, a record is\n\
         the JSON object the spec tests and `hl7gw test` compare. It deserializes back from that\n\
         JSON, which is how `outbound_from_json` reads a record EMS sends: unknown keys are\n\
         refused, and dates, NHS numbers, numbers and codes are checked as when read from HL7.",
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

fn attachment(name: &str, media: &[String]) -> TokenStream {
    let name = ident(name);
    let count = usize_lit(media.len());
    let unknown = match media {
        [one] => format!("the media type is not {one}"),
        _ => format!("the media type is not one of {}", media.join(", ")),
    };
    let struct_name = name.to_string();
    quote! {
        /// Decoded base64 data with the media type the spec names. As JSON:
        /// `{"media_type": …, "data": <standard base64 with padding>}`; read from JSON, the
        /// media type must be one the spec names and the data standard base64.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct #name {
            /// The media type, e.g. `application/pdf`.
            pub media_type: &'static str,
            /// The decoded bytes.
            pub data: Vec<u8>,
        }

        impl #name {
            /// The media types of the spec's base64 fields.
            pub const MEDIA_TYPES: [&'static str; #count] = [#(#media),*];

            /// The data as standard base64 with padding.
            pub fn base64(&self) -> String {
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &self.data)
            }
        }

        impl<'de> serde::Deserialize<'de> for #name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                /// The JSON form.
                #[derive(serde::Deserialize)]
                #[serde(deny_unknown_fields, rename = #struct_name)]
                struct Json<'a> {
                    #[serde(borrow)]
                    media_type: std::borrow::Cow<'a, str>,
                    #[serde(borrow)]
                    data: std::borrow::Cow<'a, str>,
                }
                let json = <Json<'de> as serde::Deserialize>::deserialize(deserializer)?;
                let media_type = Self::MEDIA_TYPES
                    .into_iter()
                    .find(|media| *media == json.media_type)
                    .ok_or_else(|| serde::de::Error::custom(#unknown))?;
                let data = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, json.data.as_bytes())
                    .map_err(|e| serde::de::Error::custom(format!("the data is not standard base64: {e}")))?;
                Ok(Self { media_type, data })
            }
        }

        impl serde::Serialize for #name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeStruct;
                let mut state = serializer.serialize_struct("Attachment", 2)?;
                state.serialize_field("media_type", self.media_type)?;
                state.serialize_field("data", &self.base64())?;
                state.end()
            }
        }
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
    let count = usize_lit(e.entries.len());
    let list = &e.list_name;
    let (meaning_fn, meaning_doc) = if e.from_map {
        (ident("value"), doc("The EMS value the code maps to."))
    } else {
        (
            ident("meaning"),
            doc("The code's meaning in the customer's table."),
        )
    };
    let serialized = if e.from_map {
        quote! { self.value() }
    } else {
        quote! { self.code() }
    };
    let json_values = if e.from_map { &meanings } else { &codes };
    let what = if e.from_map {
        "a value of"
    } else {
        "a code of"
    };
    let unknown = format!(
        "{{text:?}} is not {}",
        format!("{what} {list}; expected one of: {}", json_values.join(", "))
            .replace('{', "{{")
            .replace('}', "}}")
    );
    let deserialize_doc = if e.from_map {
        "Reads the EMS value; when codes share a value, the first code in spec order."
    } else {
        "Reads the code."
    };
    let deserialize_doc = doc(deserialize_doc);
    let serialized_of_value = if e.from_map {
        quote! { value.value() }
    } else {
        quote! { value.code() }
    };
    quote! {
        #type_doc
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum #name {
            #(#variant_docs #variants,)*
        }

        impl #name {
            /// Every value, in spec order.
            pub const ALL: [Self; #count] = [#(Self::#variants),*];
            /// The HL7 codes, in the order of [`Self::ALL`].
            pub const CODES: &'static [&'static str] = &[#(#codes),*];
            /// The code list, as errors name it.
            pub const LIST: &'static str = #list;

            /// The HL7 code.
            pub fn code(self) -> &'static str {
                match self {
                    #(Self::#variants => #codes,)*
                }
            }

            #meaning_doc
            pub fn #meaning_fn(self) -> &'static str {
                match self {
                    #(Self::#variants => #meanings,)*
                }
            }

            /// The value of an HL7 code, if the list has it.
            pub fn from_code(code: &str) -> Option<Self> {
                Self::ALL.into_iter().find(|value| value.code() == code)
            }

            /// Reads a code from a message value; a code not listed is error 103.
            pub fn read(hit: &hl7::Hit<'_>) -> Result<Self, mapping::Problem> {
                let index = mapping::code(hit, Self::CODES, Self::LIST)?;
                Self::ALL.get(index).copied().ok_or_else(|| {
                    mapping::Problem::not_in_table(format!("code number {index} is not in {}", Self::LIST))
                })
            }
        }

        impl serde::Serialize for #name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(#serialized)
            }
        }

        impl<'de> serde::Deserialize<'de> for #name {
            #deserialize_doc
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(deserializer)?;
                Self::ALL
                    .into_iter()
                    .find(|value| #serialized_of_value == text)
                    .ok_or_else(|| serde::de::Error::custom(format!(#unknown)))
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
            let name = ident(plan.attachment.as_deref().unwrap_or("Attachment"));
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
    let Some((from, _)) = &field.path else {
        return "The nested record.".into();
    };
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

/// The converter passed to `single`/`repeated`.
fn converter(plan: &Plan, kind: &Kind) -> TokenStream {
    match kind {
        Kind::Text { max_len } => {
            let max = match max_len {
                Some(n) => {
                    let n = Literal::u32_unsuffixed(*n);
                    quote! { Some(#n) }
                }
                None => quote! { None },
            };
            quote! { |hit| mapping::text(hit, #max) }
        }
        Kind::Date => quote! { mapping::date },
        Kind::DateTime => quote! { mapping::datetime },
        Kind::NhsNumber => quote! { mapping::nhs_number },
        Kind::Number => quote! { mapping::number },
        Kind::Code { .. } => {
            let name = value_type(plan, kind);
            quote! { #name::read }
        }
        Kind::Base64 {
            media, max_bytes, ..
        } => {
            let name = value_type(plan, kind);
            let max = Literal::u64_unsuffixed(*max_bytes);
            quote! {
                |hit| mapping::base64(hit, #max).map(|data| #name { media_type: #media, data })
            }
        }
        Kind::Nested { .. } => quote! {},
    }
}

/// The HL7 text of a value: `value` is `self.field` (`place`) or a reference binding.
fn text_expr(kind: &Kind, value: &TokenStream, place: bool) -> TokenStream {
    let reference = if place {
        quote! { &#value }
    } else {
        quote! { #value }
    };
    match kind {
        Kind::Text { .. } => reference,
        Kind::Date | Kind::DateTime => quote! { &#value.to_hl7() },
        Kind::NhsNumber | Kind::Number => quote! { #value.as_str() },
        Kind::Code { .. } => quote! { #value.code() },
        Kind::Base64 { .. } => quote! { &#value.base64() },
        Kind::Nested { .. } => quote! {},
    }
}

fn record_item(plan: &Plan, record: &RecordPlan) -> TokenStream {
    let name = ident(&record.type_name);
    let mut statics = Vec::new();
    for field in &record.fields {
        if let (Some((from, path)), Some(static_name)) = (&field.path, &field.path_static) {
            let static_name = ident(static_name);
            let literal = path_literal(path);
            let d = doc(&format!("`{from}`: `{}.{}`.", record.name, field.name));
            statics.push(quote! {
                #d
                static #static_name: hl7::Path = #literal;
            });
        }
    }
    let field_defs = record.fields.iter().map(|field| {
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
        if record.fields.iter().any(|f| f.repeated && !f.required) {
            ", an\noptional repeated field absent"
        } else {
            ""
        }
    ));

    let reads = record.fields.iter().map(|field| read_stmt(plan, field));
    let inits = record.fields.iter().map(|field| {
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
        .fields
        .is_empty()
        .then(|| quote! { let _ = (message, errors); });

    let mut methods = vec![quote! {
        /// Maps a message to this record, or returns every error found (HL7 codes 101, 102,
        /// 103, each with its location).
        pub fn from_hl7(message: &hl7::Message<'_>) -> Result<Self, Vec<mapping::MappingError>> {
            let mut errors = mapping::Errors::new();
            let record = Self::read(message, &mut errors);
            errors.finish(|| record)
        }

        /// Reads the fields in spec order, recording what fails in `errors`; `None` when a
        /// required value could not be read.
        pub fn read(message: &hl7::Message<'_>, errors: &mut mapping::Errors) -> Option<Self> {
            #unused_read
            #(#reads)*
            Some(Self { #(#inits),* })
        }
    }];
    if record.written {
        let writes: Vec<_> = record.fields.iter().map(write_stmts).collect();
        let unused_write = record
            .fields
            .is_empty()
            .then(|| quote! { let _ = message; });
        methods.push(quote! {
            /// Writes the fields into an outbound message, nested records included.
            pub fn write(&self, message: &mut hl7::MessageBuilder) -> Result<(), hl7::BuildError> {
                #unused_write
                #(#writes)*
                Ok(())
            }
        });
        for out in plan.outbound.iter().filter(|o| {
            plan.records
                .get(o.record_index)
                .is_some_and(|r| r.name == record.name)
        }) {
            let method = ident(&out.method);
            let message_type = &out.message_type;
            let (structure, structure_doc) = match &out.structure {
                Some(s) => (quote! { Some(#s) }, format!(" (structure `{s}`)")),
                None => (quote! { None }, String::new()),
            };
            let d = doc(&format!(
                "Builds the `{message_type}` message{structure_doc} from this record, after the MSH in `header`."
            ));
            methods.push(quote! {
                #d
                pub fn #method(&self, header: &mapping::OutboundHeader<'_>) -> Result<Vec<u8>, hl7::BuildError> {
                    let mut message = mapping::new_message(header, #message_type, #structure)?;
                    self.write(&mut message)?;
                    Ok(message.to_bytes())
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
    }
}

fn read_stmt(plan: &Plan, field: &FieldPlan) -> TokenStream {
    let local = ident(&field.local);
    let name = &field.name;
    if let Kind::Nested { record_index } = field.kind {
        let nested = ident(
            plan.records
                .get(record_index)
                .map_or("Self", |r| r.type_name.as_str()),
        );
        return quote! {
            let #local = errors.nested(#name, |errors| #nested::read(message, errors));
        };
    }
    let Some(static_name) = &field.path_static else {
        return quote! {};
    };
    let static_name = ident(static_name);
    let required = field.required;
    let convert = converter(plan, &field.kind);
    let primitive = if field.repeated {
        quote! { mapping::repeated }
    } else {
        quote! { mapping::single }
    };
    quote! {
        let #local = #primitive(
            message,
            mapping::FieldRule { name: #name, path: &#static_name, required: #required },
            errors,
            #convert,
        );
    }
}

fn write_stmts(field: &FieldPlan) -> TokenStream {
    let n = ident(&field.name);
    if matches!(field.kind, Kind::Nested { .. }) {
        return quote! { self.#n.write(message)?; };
    }
    let (Some((_, path)), Some(static_name)) = (&field.path, &field.path_static) else {
        return quote! {};
    };
    let static_name = ident(static_name);
    let value = quote! { value };
    let ed = |target: TokenStream| -> TokenStream {
        let Kind::Base64 {
            media,
            ed_data: true,
            ..
        } = &field.kind
        else {
            return quote! {};
        };
        let (main, sub) = media.split_once('/').unwrap_or((media.as_str(), ""));
        quote! {
            for (component, text) in [(2, #main), (3, #sub), (4, "Base64")] {
                message.set(&hl7::Path { component: Some(component), ..#target.clone() }, text)?;
            }
        }
    };
    if field.repeated {
        let text = text_expr(&field.kind, &value, false);
        let vary = match (&path.repetition, &path.segment_selector) {
            (None, _) => {
                Some(quote! { repetition: Some(hl7::RepetitionSelector::Index(index + 1)) })
            }
            (Some(RepetitionSelector::Index(_) | RepetitionSelector::Where(_)), None) => {
                Some(quote! { segment_selector: Some(hl7::SegmentSelector::Occurrence(index + 1)) })
            }
            (Some(_), Some(SegmentSelector::Occurrence(_) | SegmentSelector::Where(_))) => None,
        };
        return match vary {
            Some(vary) => {
                let extra = ed(quote! { path });
                quote! {
                    for (index, value) in self.#n.iter().enumerate() {
                        let path = hl7::Path { #vary, ..#static_name.clone() };
                        message.set(&path, #text)?;
                        #extra
                    }
                }
            }
            None => {
                let extra = ed(quote! { #static_name });
                quote! {
                    for value in &self.#n {
                        message.set(&#static_name, #text)?;
                        #extra
                    }
                }
            }
        };
    }
    let extra = ed(quote! { #static_name });
    if field.required {
        let text = text_expr(&field.kind, &quote! { self.#n }, true);
        quote! {
            message.set(&#static_name, #text)?;
            #extra
        }
    } else {
        let text = text_expr(&field.kind, &value, false);
        quote! {
            if let Some(value) = &self.#n {
                message.set(&#static_name, #text)?;
                #extra
            }
        }
    }
}
