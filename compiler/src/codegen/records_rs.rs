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
    let any_statics = plan
        .records
        .iter()
        .any(|r| r.fields.iter().any(|f| f.path_static.is_some()));
    let any_runtime = !plan.records.is_empty() || !plan.enums.is_empty();
    if any_statics {
        items.push(quote! { use std::sync::LazyLock; });
    }
    if any_runtime {
        items.push(quote! { use hl7gw_runtime::{hl7, mapping}; });
    }
    if let Some(name) = &plan.attachment {
        items.push(attachment(name));
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
    if plan.writes_dates {
        items.push(quote! {
            /// The HL7 text of a date: `YYYY[MM[DD]]`, to the precision held.
            fn date_text(date: &mapping::HlDate) -> String {
                let mut text = format!("{:04}", date.year);
                if let Some(month) = date.month {
                    text.push_str(&format!("{month:02}"));
                    if let Some(day) = date.day {
                        text.push_str(&format!("{day:02}"));
                    }
                }
                text
            }
        });
    }
    if plan.writes_datetimes {
        items.push(quote! {
            /// The HL7 text of a date and time: `YYYY[MM[DD[HH[MM[SS[.S…]]]]]][+/-ZZZZ]`, to
            /// the precision held.
            fn datetime_text(value: &mapping::HlDateTime) -> String {
                let mut text = date_text(&value.date);
                if let Some(hour) = value.hour {
                    text.push_str(&format!("{hour:02}"));
                    if let Some(minute) = value.minute {
                        text.push_str(&format!("{minute:02}"));
                        if let Some(second) = value.second {
                            text.push_str(&format!("{second:02}"));
                            if let Some(fraction) = &value.fraction {
                                text.push('.');
                                text.push_str(fraction);
                            }
                        }
                    }
                }
                if let Some(offset) = value.offset_minutes {
                    let sign = if offset < 0 { '-' } else { '+' };
                    let minutes = offset.unsigned_abs();
                    text.push_str(&format!("{sign}{:02}{:02}", minutes / 60, minutes % 60));
                }
                text
            }
        });
    }
    let docs = inner_doc(&format!(
        "The typed records of {} (`{}`).\n\n\
         One struct per record, with typed fields; one enum per code map and table. `from_hl7`\n\
         maps an inbound message through the runtime's mapping primitives and reports every\n\
         error at once; `to_hl7` builds an outbound message. Serialized with serde, a record is\n\
         the JSON object the spec tests and `hl7gw test` compare.",
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

fn attachment(name: &str) -> TokenStream {
    let name = ident(name);
    quote! {
        /// Decoded base64 data with the media type the spec names. As JSON:
        /// `{"media_type": …, "data": <standard base64 with padding>}`.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct #name {
            /// The media type, e.g. `application/pdf`.
            pub media_type: &'static str,
            /// The decoded bytes.
            pub data: Vec<u8>,
        }

        impl #name {
            /// The data as standard base64 with padding.
            pub fn base64(&self) -> String {
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &self.data)
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
        Kind::Date => quote! { &date_text(#reference) },
        Kind::DateTime => quote! { &datetime_text(#reference) },
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
                static #static_name: LazyLock<hl7::Path> = LazyLock::new(|| #literal);
            });
        }
    }
    let field_defs = record.fields.iter().map(|field| {
        let d = doc(&field_doc(field));
        let n = ident(&field.name);
        let t = field_type(plan, field);
        quote! { #d pub #n: #t }
    });
    let struct_doc = doc(&format!(
        "The `{}` record. As JSON: an object with these fields, in this order.",
        record.name
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
        #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
