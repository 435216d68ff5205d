//! `src/config.rs`: the spec's environments as `'static` runtime configuration, with the
//! spec's defaults filled in, plus the spec's identity (path, hash) and message types.

use proc_macro2::{Literal, TokenStream};
use quote::quote;

use super::tokens::{doc, inner_doc, render_file};
use super::{CodegenError, Context};
use crate::spec::units::FailurePolicy;
use crate::spec::{EnvName, Environment, ProcessingId, ReceiveSide, SendSide, Sink};

/// `max_body` when the spec gives none: 20 MiB.
pub const DEFAULT_MAX_BODY: u64 = 20 << 20;
/// `timeout` when the spec gives none: 30 s.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// `backoff.first` when the spec gives none: 1 s.
pub const DEFAULT_BACKOFF_FIRST_MS: u64 = 1_000;
/// `backoff.max` when the spec gives none: 5 min.
pub const DEFAULT_BACKOFF_MAX_MS: u64 = 300_000;

/// Renders `src/config.rs`.
pub fn render(ctx: &Context<'_>) -> Result<String, CodegenError> {
    let spec = ctx.spec;
    let mut uses = vec![quote! { EnvName }, quote! { Environment }];
    let envs: Vec<_> = spec.environments.iter().collect();
    if envs.iter().any(|(_, e)| e.send.is_some()) {
        uses.push(quote! { FailurePolicy });
    }
    if envs.iter().any(|(_, e)| e.receive.is_some()) {
        uses.push(quote! { ReceiveConfig });
    }
    if envs.iter().any(|(_, e)| e.send.is_some()) {
        uses.push(quote! { SendConfig });
    }
    uses.push(quote! { SinkConfig });
    let consts = envs.iter().map(|(name, env)| env_const(*name, env));
    let arms = [EnvName::Test, EnvName::Prod].map(|name| {
        let variant = env_variant(name);
        if spec.environments.get(name).is_some() {
            let c = const_ident(name);
            quote! { EnvName::#variant => Some(&#c) }
        } else {
            quote! { EnvName::#variant => None }
        }
    });
    let spec_path = &ctx.spec_path;
    let sha = &ctx.sha256;
    let code = &spec.customer.code;
    let customer = &spec.customer.name;
    let domain = &spec.domain;
    let version = &spec.hl7_version;
    let model = spec.model.as_str();
    let inbound = spec.inbound.keys();
    let outbound = spec.outbound.keys();
    let docs = inner_doc(&format!(
        "The configuration of {customer}'s gateway, from `{spec_path}`: one [`Environment`]\n\
         per spec environment, with the spec's defaults filled in. Certificate, key and store\n\
         paths are relative to the spec's folder."
    ));
    let tokens = quote! {
        #docs

        use hl7gw_runtime::config::{#(#uses),*};

        /// The spec this crate was generated from, relative to the repository.
        pub const SPEC_PATH: &str = #spec_path;
        /// SHA-256 of the spec file's bytes when this crate was generated.
        pub const SPEC_SHA256: &str = #sha;
        /// The customer's code.
        pub const CUSTOMER_CODE: &str = #code;
        /// The customer's name.
        pub const CUSTOMER_NAME: &str = #customer;
        /// The EMS domain the endpoints are named under.
        pub const DOMAIN: &str = #domain;
        /// The HL7 version the customer's engine sends (MSH-12).
        pub const HL7_VERSION: &str = #version;
        /// The messaging model.
        pub const MODEL: &str = #model;
        /// Message types the customer's engine sends to EMS, `TYPE^TRIGGER`.
        pub const INBOUND: &[&str] = &[#(#inbound),*];
        /// Message types EMS sends to the customer's engine, `TYPE^TRIGGER`.
        pub const OUTBOUND: &[&str] = &[#(#outbound),*];

        #(#consts)*

        /// An environment by name, when the spec describes it.
        pub fn environment(name: EnvName) -> Option<&'static Environment> {
            match name {
                #(#arms,)*
            }
        }
    };
    render_file(&ctx.header(), tokens, "config.rs")
}

fn env_variant(name: EnvName) -> proc_macro2::Ident {
    super::names::ident(match name {
        EnvName::Test => "Test",
        EnvName::Prod => "Prod",
    })
}

fn const_ident(name: EnvName) -> proc_macro2::Ident {
    super::names::ident(match name {
        EnvName::Test => "TEST",
        EnvName::Prod => "PROD",
    })
}

fn opt_str(value: Option<&String>) -> TokenStream {
    match value {
        Some(v) => quote! { Some(#v) },
        None => quote! { None },
    }
}

fn u64_lit(n: u64) -> Literal {
    Literal::u64_unsuffixed(n)
}

fn env_const(name: EnvName, env: &Environment) -> TokenStream {
    let c = const_ident(name);
    let variant = env_variant(name);
    let processing_id = match env.processing_id {
        ProcessingId::P => "P",
        ProcessingId::T => "T",
        ProcessingId::D => "D",
    };
    let receive = match &env.receive {
        Some(r) => {
            let r = receive(r);
            quote! { Some(#r) }
        }
        None => quote! { None },
    };
    let send = match &env.send {
        Some(s) => {
            let s = send(s);
            quote! { Some(#s) }
        }
        None => quote! { None },
    };
    let store = &env.store;
    let sink = match &env.sink {
        None | Some(Sink::Inbox {}) => quote! { SinkConfig::Inbox },
        Some(Sink::Webhook { url }) => quote! { SinkConfig::Webhook { url: #url } },
        Some(Sink::Mllp { addr }) => quote! { SinkConfig::Mllp { addr: #addr } },
    };
    let d = doc(&format!(
        "The `{}` environment (MSH-11 `{processing_id}`).",
        name.as_str()
    ));
    quote! {
        #d
        pub const #c: Environment = Environment {
            name: EnvName::#variant,
            processing_id: #processing_id,
            receive: #receive,
            send: #send,
            store: #store,
            sink: #sink,
        };
    }
}

fn receive(r: &ReceiveSide) -> TokenStream {
    let (listen, path, hostname) = (&r.listen, &r.path, &r.hostname);
    let (cert, key, client_ca) = (&r.tls.cert, &r.tls.key, &r.tls.client_ca);
    let clients = &r.allowed_clients;
    let ips = &r.allowed_ips;
    let max_body = u64_lit(r.max_body.map_or(DEFAULT_MAX_BODY, |b| b.bytes()));
    let app = opt_str(r.receiving_application.as_ref());
    let facility = opt_str(r.receiving_facility.as_ref());
    let content_type = match r.response_content_type.and_then(|c| c.media_type()) {
        Some(name) => quote! { Some(#name) },
        None => quote! { None },
    };
    quote! {
        ReceiveConfig {
            listen: #listen,
            path: #path,
            hostname: #hostname,
            cert: #cert,
            key: #key,
            client_ca: #client_ca,
            allowed_clients: &[#(#clients),*],
            allowed_ips: &[#(#ips),*],
            max_body: #max_body,
            receiving_application: #app,
            receiving_facility: #facility,
            response_content_type: #content_type,
        }
    }
}

fn policy(p: Option<FailurePolicy>, default: FailurePolicy) -> TokenStream {
    match p.unwrap_or(default) {
        FailurePolicy::Retry => quote! { FailurePolicy::Retry },
        FailurePolicy::RetryThenHold(n) => {
            let n = Literal::u32_unsuffixed(n);
            quote! { FailurePolicy::RetryThenHold(#n) }
        }
        FailurePolicy::Hold => quote! { FailurePolicy::Hold },
        FailurePolicy::Skip => quote! { FailurePolicy::Skip },
    }
}

fn send(s: &SendSide) -> TokenStream {
    use FailurePolicy::{Hold, Retry};
    let url = &s.url;
    let (cert, key, server_ca) = (&s.tls.cert, &s.tls.key, &s.tls.server_ca);
    let timeout = u64_lit(s.timeout.map_or(DEFAULT_TIMEOUT_MS, |d| d.as_millis()));
    let first = u64_lit(
        s.backoff
            .as_ref()
            .map_or(DEFAULT_BACKOFF_FIRST_MS, |b| b.first.as_millis()),
    );
    let max = u64_lit(
        s.backoff
            .as_ref()
            .map_or(DEFAULT_BACKOFF_MAX_MS, |b| b.max.as_millis()),
    );
    let on_connect_error = policy(s.on_connect_error, Retry);
    let on_timeout = policy(s.on_timeout, Retry);
    let on_5xx = policy(s.on_5xx, Retry);
    let on_4xx = policy(s.on_4xx, Hold);
    let on_bad_ack = policy(s.on_bad_ack, Retry);
    let on_ae = policy(s.on_ae, Hold);
    let on_ar = policy(s.on_ar, Hold);
    quote! {
        SendConfig {
            url: #url,
            cert: #cert,
            key: #key,
            server_ca: #server_ca,
            timeout_ms: #timeout,
            backoff_first_ms: #first,
            backoff_max_ms: #max,
            on_connect_error: #on_connect_error,
            on_timeout: #on_timeout,
            on_5xx: #on_5xx,
            on_4xx: #on_4xx,
            on_bad_ack: #on_bad_ack,
            on_ae: #on_ae,
            on_ar: #on_ar,
        }
    }
}
