//! `src/config.rs`: the spec's environments as runtime configuration (`const` values the
//! crate's [`GatewaySpec`](hl7gw_runtime::GatewaySpec) holds), with the spec's defaults
//! filled in.
//!
//! A spec environment becomes a runtime [`config::Environment`] here, once
//! ([`runtime_environment`]): the generated constants are that value written out, and
//! `hl7gw test` decides with the same value, so both read the spec's defaults from one place.

use std::borrow::Cow;

use hl7gw_runtime::config::{self, FailurePolicy, Text, defaults};
use proc_macro2::{Literal, TokenStream};
use quote::quote;

use super::tokens::{doc, inner_doc, render_file};
use super::{CodegenError, Context};
use crate::spec::{Acknowledgement, EnvName, Environment, ReceiveSide, SendSide, Spec};

/// Renders `src/config.rs`.
pub fn render(ctx: &Context<'_>) -> Result<String, CodegenError> {
    let spec = ctx.spec;
    let envs: Vec<config::Environment> = spec
        .environments
        .iter()
        .map(|(name, env)| runtime_environment(spec, name, env))
        .collect();
    let mut uses = vec![
        quote! { Acknowledgement },
        quote! { ByteSize },
        quote! { Duration },
        quote! { EnvName },
        quote! { Environment },
    ];
    if envs.iter().any(|e| e.send.is_some()) {
        uses.push(quote! { FailurePolicies });
        uses.push(quote! { FailurePolicy });
    }
    uses.push(quote! { EmsAccess });
    if envs
        .iter()
        .any(|e| matches!(e.ems, config::EmsAccess::MutualTls(_)))
    {
        uses.push(quote! { EmsTls });
    }
    uses.push(quote! { Limits });
    if envs.iter().any(|e| e.receive.is_some()) {
        uses.push(quote! { ReceiveConfig });
        uses.push(quote! { RequestContentType });
    }
    if envs.iter().any(|e| e.send.is_some()) {
        uses.push(quote! { SendConfig });
        uses.push(quote! { SendHeader });
    }
    uses.push(quote! { SinkConfig });
    uses.push(quote! { StoreConfig });
    if envs
        .iter()
        .any(|e| matches!(e.store, config::StoreConfig::Postgres(_)))
    {
        uses.push(quote! { PasswordSource });
        uses.push(quote! { PostgresConfig });
    }
    let consts = envs.iter().map(env_const);
    let customer = &spec.customer.name;
    let spec_path = &ctx.spec_path;
    let docs = inner_doc(&format!(
        "The configuration of {customer}'s gateway, from `{spec_path}`: one [`Environment`]\n\
         per spec environment, with the spec's defaults filled in. Certificate, key and store\n\
         paths are relative to the spec's folder."
    ));
    let tokens = quote! {
        #docs

        use std::borrow::Cow;

        use hl7gw_runtime::config::{#(#uses),*};

        #(#consts)*
    };
    render_file(&ctx.header(), tokens, "config.rs")
}

/// The runtime configuration of a spec environment, the defaults of
/// [`hl7gw_runtime::config::defaults`] filled in; the spec gives the settings an environment
/// inherits (`acknowledgement`) and the accepted versions.
pub fn runtime_environment(spec: &Spec, name: EnvName, env: &Environment) -> config::Environment {
    let versions: Vec<String> = std::iter::once(&spec.hl7_version)
        .chain(&spec.accept_versions)
        .cloned()
        .collect();
    config::Environment {
        name,
        processing_id: Cow::Borrowed(env.processing_id.as_str()),
        receive: env.receive.as_ref().map(receive),
        send: env.send.as_ref().map(send),
        store: store(&env.store),
        retention_ms: env.retention.unwrap_or(defaults::RETENTION).as_millis(),
        sink: env.sink.clone().unwrap_or(defaults::SINK),
        acknowledgement: env
            .acknowledgement
            .or(spec.acknowledgement)
            .unwrap_or(defaults::ACKNOWLEDGEMENT),
        accept_versions: texts(&versions),
        limits: env.limits.unwrap_or_default(),
        ems: ems(env.ems.as_ref()),
    }
}

/// The store, the defaults of `store.postgres` filled in; `validate` has refused an inline
/// password and a missing TLS setting.
fn store(s: &crate::spec::StoreSetting) -> config::StoreConfig {
    use crate::spec::{ServerStore, StoreSetting};
    match s {
        StoreSetting::Sqlite(path) => config::StoreConfig::Sqlite(text(path)),
        StoreSetting::Server(ServerStore { postgres: p }) => {
            config::StoreConfig::Postgres(config::PostgresConfig {
                host: text(&p.host),
                port: p.port.unwrap_or(defaults::POSTGRES_PORT),
                dbname: text(&p.dbname),
                user: text(&p.user),
                password: match (&p.password_env, &p.password_file) {
                    (Some(name), _) => config::PasswordSource::Env(text(name)),
                    (None, Some(file)) => config::PasswordSource::File(text(file)),
                    (None, None) => config::PasswordSource::None,
                },
                tls_ca: p.tls.as_ref().map(|t| text(&t.ca)),
                pool_size: p.pool_size.unwrap_or(defaults::POSTGRES_POOL_SIZE),
                lease_ms: p.lease.unwrap_or(defaults::STREAM_LEASE).as_millis(),
            })
        }
    }
}

/// Mutual TLS when the spec gives `ems.tls`; plain loopback otherwise (`validate` refuses an
/// `ems:` that is neither).
fn ems(e: Option<&crate::spec::EmsSide>) -> config::EmsAccess {
    match e {
        Some(e @ crate::spec::EmsSide { tls: Some(tls), .. }) => {
            config::EmsAccess::MutualTls(config::EmsTls {
                address: text(
                    e.address
                        .as_deref()
                        .unwrap_or(crate::spec::EMS_DEFAULT_ADDRESS),
                ),
                cert: text(&tls.cert),
                key: text(&tls.key),
                client_ca: text(&tls.client_ca),
                client_crl: tls.client_crl.as_deref().map(text),
                allowed_clients: texts(&e.allowed_clients),
            })
        }
        _ => config::EmsAccess::PlainLoopback,
    }
}

fn text(value: &str) -> Text {
    Cow::Owned(value.to_string())
}

fn texts(values: &[String]) -> config::TextList {
    Cow::Owned(values.iter().map(|v| text(v)).collect())
}

fn receive(r: &ReceiveSide) -> config::ReceiveConfig {
    config::ReceiveConfig {
        listen: text(&r.listen),
        path: text(&r.path),
        hostname: text(&r.hostname),
        cert: text(&r.tls.cert),
        key: text(&r.tls.key),
        client_ca: text(&r.tls.client_ca),
        client_crl: r.tls.client_crl.as_deref().map(text),
        allowed_clients: texts(&r.allowed_clients),
        allowed_ips: texts(&r.allowed_ips),
        max_body: r.max_body.unwrap_or(defaults::MAX_BODY).bytes(),
        receiving_application: r.receiving_application.as_deref().map(text),
        receiving_facility: r.receiving_facility.as_deref().map(text),
        response_content_type: r
            .response_content_type
            .unwrap_or(defaults::RESPONSE_CONTENT_TYPE)
            .media_type()
            .map(|media| text(media.as_str())),
        request_content_type: r
            .request_content_type
            .unwrap_or(defaults::REQUEST_CONTENT_TYPE),
        http2: r.http2.unwrap_or(defaults::HTTP2),
    }
}

fn send(s: &SendSide) -> config::SendConfig {
    let backoff = s.backoff.unwrap_or_default();
    config::SendConfig {
        url: text(&s.url),
        cert: text(&s.tls.cert),
        key: text(&s.tls.key),
        server_ca: text(&s.tls.server_ca),
        server_crl: s.tls.server_crl.as_deref().map(text),
        timeout_ms: s.timeout.unwrap_or(defaults::SEND_TIMEOUT).as_millis(),
        backoff_first_ms: backoff.first.as_millis(),
        backoff_max_ms: backoff.max.as_millis(),
        on_failure: config::FailurePolicies {
            on_connect_error: s.on_connect_error.unwrap_or(defaults::ON_CONNECT_ERROR),
            on_timeout: s.on_timeout.unwrap_or(defaults::ON_TIMEOUT),
            on_5xx: s.on_5xx.unwrap_or(defaults::ON_5XX),
            on_4xx: s.on_4xx.unwrap_or(defaults::ON_4XX),
            on_bad_ack: s.on_bad_ack.unwrap_or(defaults::ON_BAD_ACK),
            on_ae: s.on_ae.unwrap_or(defaults::ON_AE),
            on_ar: s.on_ar.unwrap_or(defaults::ON_AR),
        },
        header: config::SendHeader {
            sending_application: text(
                s.sending_application
                    .as_deref()
                    .unwrap_or(defaults::SENDING_APPLICATION),
            ),
            sending_facility: text(
                s.sending_facility
                    .as_deref()
                    .unwrap_or(defaults::SENDING_FACILITY),
            ),
            receiving_application: text(s.receiving_application.as_deref().unwrap_or("")),
            receiving_facility: text(s.receiving_facility.as_deref().unwrap_or("")),
        },
    }
}

// The runtime configuration written out as `const` Rust: every text borrowed.

/// The constant's name for an environment: `TEST`, `PROD`.
pub fn const_ident(name: config::EnvName) -> proc_macro2::Ident {
    super::names::ident(match name {
        config::EnvName::Test => "TEST",
        config::EnvName::Prod => "PROD",
    })
}

fn text_tokens(value: &str) -> TokenStream {
    quote! { Cow::Borrowed(#value) }
}

fn opt_text(value: Option<&Text>) -> TokenStream {
    match value {
        Some(v) => {
            let v = text_tokens(v);
            quote! { Some(#v) }
        }
        None => quote! { None },
    }
}

fn list_tokens(values: &[Text]) -> TokenStream {
    let values = values.iter().map(|v| text_tokens(v));
    quote! { Cow::Borrowed(&[#(#values),*]) }
}

fn u64_lit(n: u64) -> Literal {
    Literal::u64_unsuffixed(n)
}

fn env_const(env: &config::Environment) -> TokenStream {
    let c = const_ident(env.name);
    let variant = super::names::ident(match env.name {
        config::EnvName::Test => "Test",
        config::EnvName::Prod => "Prod",
    });
    let processing_id = text_tokens(&env.processing_id);
    let receive = match &env.receive {
        Some(r) => {
            let r = receive_tokens(r);
            quote! { Some(#r) }
        }
        None => quote! { None },
    };
    let send = match &env.send {
        Some(s) => {
            let s = send_tokens(s);
            quote! { Some(#s) }
        }
        None => quote! { None },
    };
    let store = store_tokens(&env.store);
    let retention_ms = u64_lit(env.retention_ms);
    let sink = match &env.sink {
        config::SinkConfig::Inbox => quote! { SinkConfig::Inbox },
        config::SinkConfig::Webhook { url } => {
            let url = text_tokens(url);
            quote! { SinkConfig::Webhook { url: #url } }
        }
        config::SinkConfig::Mllp { addr } => {
            let addr = text_tokens(addr);
            quote! { SinkConfig::Mllp { addr: #addr } }
        }
    };
    let acknowledgement = match env.acknowledgement {
        Acknowledgement::Application => quote! { Acknowledgement::Application },
        Acknowledgement::AsRequested => quote! { Acknowledgement::AsRequested },
    };
    let versions = list_tokens(&env.accept_versions);
    let limits = limits_tokens(&env.limits);
    let ems = ems_tokens(&env.ems);
    let d = doc(&format!(
        "The `{}` environment (MSH-11 `{}`).",
        env.name.as_str(),
        env.processing_id
    ));
    quote! {
        #d
        pub const #c: Environment = Environment {
            name: EnvName::#variant,
            processing_id: #processing_id,
            receive: #receive,
            send: #send,
            store: #store,
            retention_ms: #retention_ms,
            sink: #sink,
            acknowledgement: #acknowledgement,
            accept_versions: #versions,
            limits: #limits,
            ems: #ems,
        };
    }
}

fn store_tokens(s: &config::StoreConfig) -> TokenStream {
    match s {
        config::StoreConfig::Sqlite(path) => {
            let path = text_tokens(path);
            quote! { StoreConfig::Sqlite(#path) }
        }
        config::StoreConfig::Postgres(p) => {
            let [host, dbname, user] = [&p.host, &p.dbname, &p.user].map(|v| text_tokens(v));
            let port = Literal::u16_unsuffixed(p.port);
            let password = match &p.password {
                config::PasswordSource::None => quote! { PasswordSource::None },
                config::PasswordSource::Env(name) => {
                    let name = text_tokens(name);
                    quote! { PasswordSource::Env(#name) }
                }
                config::PasswordSource::File(file) => {
                    let file = text_tokens(file);
                    quote! { PasswordSource::File(#file) }
                }
            };
            let tls_ca = opt_text(p.tls_ca.as_ref());
            let pool_size = Literal::u32_unsuffixed(p.pool_size);
            let lease_ms = u64_lit(p.lease_ms);
            quote! {
                StoreConfig::Postgres(PostgresConfig {
                    host: #host,
                    port: #port,
                    dbname: #dbname,
                    user: #user,
                    password: #password,
                    tls_ca: #tls_ca,
                    pool_size: #pool_size,
                    lease_ms: #lease_ms,
                })
            }
        }
    }
}

fn ems_tokens(e: &config::EmsAccess) -> TokenStream {
    match e {
        config::EmsAccess::PlainLoopback => quote! { EmsAccess::PlainLoopback },
        config::EmsAccess::MutualTls(t) => {
            let [address, cert, key, client_ca] =
                [&t.address, &t.cert, &t.key, &t.client_ca].map(|v| text_tokens(v));
            let client_crl = opt_text(t.client_crl.as_ref());
            let clients = list_tokens(&t.allowed_clients);
            quote! {
                EmsAccess::MutualTls(EmsTls {
                    address: #address,
                    cert: #cert,
                    key: #key,
                    client_ca: #client_ca,
                    client_crl: #client_crl,
                    allowed_clients: #clients,
                })
            }
        }
    }
}

fn limits_tokens(l: &config::Limits) -> TokenStream {
    let count = |n: u32| Literal::u32_unsuffixed(n);
    let [connections, per_ip, handshakes, mllp_connections] = [
        l.connections,
        l.connections_per_ip,
        l.handshakes,
        l.mllp_connections,
    ]
    .map(count);
    let body_memory = u64_lit(l.body_memory.bytes());
    let mllp_idle = u64_lit(l.mllp_idle_timeout.as_millis());
    quote! {
        Limits {
            connections: #connections,
            connections_per_ip: #per_ip,
            handshakes: #handshakes,
            body_memory: ByteSize::from_bytes(#body_memory),
            mllp_connections: #mllp_connections,
            mllp_idle_timeout: Duration::from_millis(#mllp_idle),
        }
    }
}

fn receive_tokens(r: &config::ReceiveConfig) -> TokenStream {
    let [listen, path, hostname, cert, key, client_ca] = [
        &r.listen,
        &r.path,
        &r.hostname,
        &r.cert,
        &r.key,
        &r.client_ca,
    ]
    .map(|t| text_tokens(t));
    let client_crl = opt_text(r.client_crl.as_ref());
    let clients = list_tokens(&r.allowed_clients);
    let ips = list_tokens(&r.allowed_ips);
    let max_body = u64_lit(r.max_body);
    let app = opt_text(r.receiving_application.as_ref());
    let facility = opt_text(r.receiving_facility.as_ref());
    let content_type = opt_text(r.response_content_type.as_ref());
    let request_content_type = match r.request_content_type {
        config::RequestContentType::Lenient => quote! { RequestContentType::Lenient },
        config::RequestContentType::Strict => quote! { RequestContentType::Strict },
    };
    let http2 = r.http2;
    quote! {
        ReceiveConfig {
            listen: #listen,
            path: #path,
            hostname: #hostname,
            cert: #cert,
            key: #key,
            client_ca: #client_ca,
            client_crl: #client_crl,
            allowed_clients: #clients,
            allowed_ips: #ips,
            max_body: #max_body,
            receiving_application: #app,
            receiving_facility: #facility,
            response_content_type: #content_type,
            request_content_type: #request_content_type,
            http2: #http2,
        }
    }
}

fn policy_tokens(p: FailurePolicy) -> TokenStream {
    match p {
        FailurePolicy::Retry => quote! { FailurePolicy::Retry },
        FailurePolicy::RetryThenHold(n) => {
            let n = Literal::u32_unsuffixed(n);
            quote! { FailurePolicy::RetryThenHold(#n) }
        }
        FailurePolicy::Hold => quote! { FailurePolicy::Hold },
        FailurePolicy::Skip => quote! { FailurePolicy::Skip },
    }
}

fn send_tokens(s: &config::SendConfig) -> TokenStream {
    let [url, cert, key, server_ca] =
        [&s.url, &s.cert, &s.key, &s.server_ca].map(|t| text_tokens(t));
    let h = &s.header;
    let [
        sending_application,
        sending_facility,
        receiving_application,
        receiving_facility,
    ] = [
        &h.sending_application,
        &h.sending_facility,
        &h.receiving_application,
        &h.receiving_facility,
    ]
    .map(|t| text_tokens(t));
    let server_crl = opt_text(s.server_crl.as_ref());
    let timeout = u64_lit(s.timeout_ms);
    let first = u64_lit(s.backoff_first_ms);
    let max = u64_lit(s.backoff_max_ms);
    let [
        on_connect_error,
        on_timeout,
        on_5xx,
        on_4xx,
        on_bad_ack,
        on_ae,
        on_ar,
    ] = [
        s.on_failure.on_connect_error,
        s.on_failure.on_timeout,
        s.on_failure.on_5xx,
        s.on_failure.on_4xx,
        s.on_failure.on_bad_ack,
        s.on_failure.on_ae,
        s.on_failure.on_ar,
    ]
    .map(policy_tokens);
    quote! {
        SendConfig {
            url: #url,
            cert: #cert,
            key: #key,
            server_ca: #server_ca,
            server_crl: #server_crl,
            timeout_ms: #timeout,
            backoff_first_ms: #first,
            backoff_max_ms: #max,
            on_failure: FailurePolicies {
                on_connect_error: #on_connect_error,
                on_timeout: #on_timeout,
                on_5xx: #on_5xx,
                on_4xx: #on_4xx,
                on_bad_ack: #on_bad_ack,
                on_ae: #on_ae,
                on_ar: #on_ar,
            },
            header: SendHeader {
                sending_application: #sending_application,
                sending_facility: #sending_facility,
                receiving_application: #receiving_application,
                receiving_facility: #receiving_facility,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use crate::spec::{PostgresSetting, PostgresTlsSetting, ServerStore, StoreSetting};

    fn setting() -> PostgresSetting {
        PostgresSetting {
            host: "db.internal".into(),
            port: None,
            dbname: "gw_prod".into(),
            user: "gw".into(),
            password_env: Some("HL7GW_DB_PASSWORD".into()),
            password_file: None,
            password: None,
            tls: Some(PostgresTlsSetting {
                ca: "certs/prod/db-ca.crt".into(),
            }),
            sslmode: None,
            pool_size: None,
            lease: None,
        }
    }

    #[test]
    fn a_postgres_store_gets_its_defaults_and_its_password_source_only() {
        let config::StoreConfig::Postgres(p) = store(&StoreSetting::Server(ServerStore {
            postgres: setting(),
        })) else {
            panic!("a PostgreSQL store");
        };
        assert_eq!(p.port, defaults::POSTGRES_PORT);
        assert_eq!(p.pool_size, defaults::POSTGRES_POOL_SIZE);
        assert_eq!(p.lease_ms, defaults::STREAM_LEASE.as_millis());
        assert_eq!(
            p.password,
            config::PasswordSource::Env("HL7GW_DB_PASSWORD".into())
        );
        assert_eq!(p.tls_ca.as_deref(), Some("certs/prod/db-ca.crt"));
        let code = store_tokens(&config::StoreConfig::Postgres(p)).to_string();
        assert!(code.contains("StoreConfig :: Postgres"), "{code}");
        assert!(
            code.contains("PasswordSource :: Env (Cow :: Borrowed (\"HL7GW_DB_PASSWORD\"))"),
            "{code}"
        );
        let sqlite = store_tokens(&store(&StoreSetting::Sqlite("var/x.sqlite".into()))).to_string();
        assert_eq!(
            sqlite,
            "StoreConfig :: Sqlite (Cow :: Borrowed (\"var/x.sqlite\"))"
        );
    }
}
