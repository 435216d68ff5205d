//! Environment checks: TEST and PROD both present and separate, processing ids, host-name
//! convention, that each direction the spec uses has its endpoint, and that the time and
//! size limits can work.

use std::collections::HashMap;
use std::net::SocketAddr;

use hl7gw_runtime::config::{ByteSize, Duration};
use hl7gw_runtime::listeners::{self, Listener, Sides};

use super::CheckOptions;
use crate::diag::Diagnostic;
use crate::spec::{EnvName, Environment, LoadedSpec, SinkConfig};

/// A retry delay beyond this is a warning: the stream would sit still for over a day
/// between attempts while every later message waits behind the failed one.
pub const LONGEST_SENSIBLE_BACKOFF: Duration = Duration::from_secs(86_400);

/// A `retention` below this is an error: a committed message's MSH-10 is forgotten when its
/// row is pruned, so a sender's retry (minutes to hours later) would be applied twice.
pub const SHORTEST_SAFE_RETENTION: Duration = Duration::from_secs(86_400);

/// A `retention` beyond this (ten years) is a warning: the store keeps patient data that long
/// and never shrinks.
pub const LONGEST_SENSIBLE_RETENTION: Duration = Duration::from_secs(3650 * 86_400);

/// A `max_body` beyond this is a warning: the receiver holds a whole body in memory, and
/// an HL7 message with a PDF report is a few MiB.
pub const LARGEST_SENSIBLE_BODY: ByteSize = ByteSize::from_bytes(1 << 30);

pub(super) fn check(spec: &LoadedSpec, _options: &CheckOptions, out: &mut Vec<Diagnostic>) {
    let s = &spec.spec;
    for (name, present) in [
        ("test", s.environments.test.is_some()),
        ("prod", s.environments.prod.is_some()),
    ] {
        if !present {
            out.push(
                spec.at_key(
                    Diagnostic::error(
                        "env-missing",
                        format!("the `{name}` environment is missing"),
                    )
                    .detail(
                        "every customer has separate TEST and PROD environments; describe both",
                    ),
                    "/environments",
                ),
            );
        }
    }
    for (env, e) in s.environments.iter() {
        let base = format!("/environments/{}", env.as_str());
        let expected = env.processing_id();
        if e.processing_id != expected {
            out.push(spec.at_value(
                Diagnostic::error(
                    "env-processing-id",
                    format!(
                        "{} expects processing id {:?}, not {:?}",
                        env.as_str().to_uppercase(),
                        expected,
                        e.processing_id
                    ),
                )
                .detail("MSH-11 tells TEST traffic (T) from PROD traffic (P); a T message reaching PROD, or the reverse, must be rejected"),
                &format!("{base}/processing_id"),
            ));
        }
        check_directions(spec, env, e, &base, out);
        check_limits(spec, e, &base, out);
        check_retention(spec, e, &base, out);
        match &e.ems {
            Some(ems) => check_ems(spec, ems, &format!("{base}/ems"), out),
            None => check_ems_chosen(spec, env, e, &base, out),
        }
        if let Some(send) = &e.send {
            check_send_header(spec, send, &format!("{base}/send"), out);
        }
        if let Some(r) = &e.receive {
            let host = format!(
                "{}{}.api.{}",
                s.customer.code,
                match env {
                    EnvName::Test => "-test",
                    EnvName::Prod => "",
                },
                s.domain
            );
            if !r.hostname.eq_ignore_ascii_case(&host) {
                out.push(spec.at_value(
                    Diagnostic::warning(
                        "env-hostname-pattern",
                        format!("host name `{}` does not follow the convention `{host}`", r.hostname),
                    )
                    .detail(format!(
                        "endpoints are named CODE-test.api.DOMAIN and CODE.api.DOMAIN; if this one differs on purpose, acknowledge it: environments.{}.acknowledge: {{ env-hostname-pattern: \"the reason\" }}",
                        env.as_str()
                    )),
                    &format!("{base}/receive/hostname"),
                ));
            }
            if r.listen.parse::<SocketAddr>().is_err() {
                out.push(
                    spec.at_value(
                        Diagnostic::error(
                            "env-listen",
                            format!("`{}` is not an address and port", r.listen),
                        )
                        .detail(
                            "write IP:PORT, e.g. 0.0.0.0:443 or 127.0.0.1:8443 ([::]:443 for IPv6)",
                        ),
                        &format!("{base}/receive/listen"),
                    ),
                );
            }
            if !r.path.starts_with('/') {
                out.push(spec.at_value(
                    Diagnostic::error("env-path", format!("path `{}` must start with /", r.path)),
                    &format!("{base}/receive/path"),
                ));
            }
            if r.allowed_clients.is_empty() {
                out.push(spec.at_value(
                    Diagnostic::error("env-no-clients", "no allowed client subjects")
                        .detail("name the customer engine's certificate subject, e.g. CN=tie.trust.nhs.uk; a certificate from the client CA alone is not enough"),
                    &format!("{base}/receive/allowed_clients"),
                ));
            }
        }
    }
    check_nothing_shared(spec, out);
    check_listeners(spec, out);
}

/// Limits that cannot work: no time to wait for an ACK, a first retry delay above the
/// largest, no body at all; and ones that work only on paper: retry delays of days, bodies
/// of gigabytes.
fn check_limits(spec: &LoadedSpec, e: &Environment, base: &str, out: &mut Vec<Diagnostic>) {
    if let Some(s) = &e.send {
        if s.timeout.is_some_and(|t| t.as_millis() == 0) {
            out.push(spec.at_value(
                Diagnostic::error("env-timeout-zero", "the ACK timeout is zero")
                    .detail("every message would time out before its ACK could arrive; give the customer's engine time to commit and answer, e.g. 30s (the default when `timeout` is left out)"),
                &format!("{base}/send/timeout"),
            ));
        }
        if let Some(b) = &s.backoff {
            if b.first > b.max {
                out.push(spec.at_value(
                    Diagnostic::error(
                        "env-backoff-order",
                        format!("backoff.first ({}) is above backoff.max ({})", b.first, b.max),
                    )
                    .detail("retries wait `first`, then double up to `max`; make `first` the shorter, e.g. { first: 1s, max: 5m }"),
                    &format!("{base}/send/backoff/first"),
                ));
            } else if b.max > LONGEST_SENSIBLE_BACKOFF {
                out.push(spec.at_value(
                    Diagnostic::warning(
                        "env-backoff-long",
                        format!("backoff.max ({}) is over a day", b.max),
                    )
                    .detail("messages are delivered in order, so every later message waits behind a failing one for this long between attempts; a few minutes is usual (default 5m)"),
                    &format!("{base}/send/backoff/max"),
                ));
            }
        }
    }
    if let Some(r) = &e.receive {
        let pointer = format!("{base}/receive/max_body");
        match r.max_body {
            Some(size) if size.bytes() == 0 => out.push(spec.at_value(
                Diagnostic::error("env-max-body-zero", "max_body is zero")
                    .detail("every message would be refused with 413; leave `max_body` out for the default (20MiB) or give the largest message expected, PDF included"),
                &pointer,
            )),
            Some(size) if size > LARGEST_SENSIBLE_BODY => out.push(spec.at_value(
                Diagnostic::warning(
                    "env-max-body-large",
                    format!("max_body ({size}) is over {LARGEST_SENSIBLE_BODY}"),
                )
                .detail("the gateway holds each request body in memory, so a few such requests at once can exhaust it; an HL7 message with a PDF report is a few MiB (default 20MiB)"),
                &pointer,
            )),
            _ => {}
        }
    }
}

/// A retention that prunes too early (duplicates applied twice, zero: everything at once) or
/// effectively never.
fn check_retention(spec: &LoadedSpec, e: &Environment, base: &str, out: &mut Vec<Diagnostic>) {
    let Some(retention) = e.retention else {
        return;
    };
    let pointer = format!("{base}/retention");
    let found = if retention.as_millis() == 0 {
        Diagnostic::error("env-retention-zero", "retention is zero")
            .detail("every row would be pruned within the hour, the duplicate keys with them; leave `retention` out for the default (90d)")
    } else if retention < SHORTEST_SAFE_RETENTION {
        Diagnostic::error(
            "env-retention-short",
            format!("retention ({retention}) is under {SHORTEST_SAFE_RETENTION}"),
        )
        .detail("a pruned message's MSH-10 is forgotten, so a sender's retry after that is applied twice, and a delivered message's record is gone before anyone could look; keep days, e.g. 30d (default 90d)")
    } else if retention > LONGEST_SENSIBLE_RETENTION {
        Diagnostic::warning(
            "env-retention-long",
            format!("retention ({retention}) is over {LONGEST_SENSIBLE_RETENTION}"),
        )
        .detail("the store keeps patient data that long and only grows; keep what the data protection agreement asks (default 90d), or acknowledge it if meant")
    } else {
        return;
    };
    out.push(spec.at_value(found, &pointer));
}

/// An environment with EMS-facing listeners says how EMS reaches them: plain loopback
/// without authentication is a choice the spec names, never what it gets by leaving `ems` out.
fn check_ems_chosen(
    spec: &LoadedSpec,
    env: EnvName,
    e: &Environment,
    base: &str,
    out: &mut Vec<Diagnostic>,
) {
    let listeners = ems_listeners(e);
    if listeners.is_empty() {
        return;
    }
    out.push(spec.at_key(
        Diagnostic::error(
            "env-ems-missing",
            format!(
                "{} has no `ems`: say how EMS reaches its {}",
                env.as_str().to_uppercase(),
                listeners.join(", ")
            ),
        )
        .detail("for production, mutual TLS with EMS's client certificate: `ems: { tls: { cert: …, key: …, client_ca: … }, allowed_clients: [\"CN=…\"] }`; for the demo and local development, `ems: { plain_loopback: true }` (no authentication, 127.0.0.1 only, flagged by the go-live report)"),
        base,
    ));
}

/// The EMS-facing listeners an environment runs, as `listeners::plan` plans them: the inbox
/// API with the inbox sink (records arrive only with a `receive` side), the intake API and
/// its MLLP listener with a `send` side.
fn ems_listeners(e: &Environment) -> Vec<&'static str> {
    let mut listeners = Vec::new();
    if e.receive.is_some() && matches!(e.sink, None | Some(SinkConfig::Inbox)) {
        listeners.push("inbox API");
    }
    if e.send.is_some() {
        listeners.extend(["intake API", "intake MLLP listener"]);
    }
    listeners
}

/// `ems:` is one of the two choices, whole: `tls` with `allowed_clients` (and an IP
/// `address`), or `plain_loopback: true` alone.
fn check_ems(spec: &LoadedSpec, ems: &crate::spec::EmsSide, base: &str, out: &mut Vec<Diagnostic>) {
    let plain = ems.plain_loopback == Some(true);
    let mut fault = |pointer: &str, summary: &str, detail: &str| {
        out.push(spec.at_key(
            Diagnostic::error("env-ems", summary.to_owned()).detail(detail.to_owned()),
            &format!("{base}{pointer}"),
        ));
    };
    match (&ems.tls, plain) {
        (Some(_), true) => fault(
            "/plain_loopback",
            "`ems` gives both `tls` and `plain_loopback: true`",
            "choose one: mutual TLS with EMS's client certificate (`tls`, `allowed_clients`), or plain loopback without authentication",
        ),
        (None, false) => fault(
            "",
            "`ems` gives neither `tls` nor `plain_loopback: true`",
            "give `tls` (cert, key, client_ca) and `allowed_clients` so EMS authenticates with its client certificate, or say `plain_loopback: true` for the demo and local development",
        ),
        (Some(_), false) if ems.allowed_clients.is_empty() => fault(
            "/tls",
            "`ems.tls` without `allowed_clients`",
            "name EMS's client certificate subjects, e.g. `CN=ems-test.example-ems.cloud`; an empty list would refuse every EMS connection",
        ),
        (None, true)
            if !ems.allowed_clients.is_empty()
                || ems.address.is_some()
                || ems.hostname.is_some() =>
        {
            fault(
                "/plain_loopback",
                "`address`, `allowed_clients` and `hostname` mean nothing with `plain_loopback: true`",
                "plain loopback binds 127.0.0.1 and admits every local process; remove them, or give `tls` instead of `plain_loopback`",
            )
        }
        _ => {}
    }
    if let Some(address) = &ems.address
        && address.parse::<std::net::IpAddr>().is_err()
    {
        out.push(spec.at_value(
            Diagnostic::error("env-ems", format!("ems.address {address:?} is not an IP address"))
                .detail("give the IP address the inbox, intake and MLLP listeners bind, e.g. 0.0.0.0 or 10.0.0.5; their ports follow the receive port"),
            &format!("{base}/address"),
        ));
    }
}

/// Inbound types need a receiver and outbound types a sender, in every environment.
fn check_directions(
    spec: &LoadedSpec,
    env: EnvName,
    e: &Environment,
    base: &str,
    out: &mut Vec<Diagnostic>,
) {
    let s = &spec.spec;
    if !s.inbound.is_empty() && e.receive.is_none() {
        out.push(spec.at_key(
            Diagnostic::error(
                "env-no-receive",
                format!(
                    "{} has no `receive` side but the spec declares inbound messages",
                    env.as_str().to_uppercase()
                ),
            ),
            base,
        ));
    }
    if !s.outbound.is_empty() && e.send.is_none() {
        out.push(spec.at_key(
            Diagnostic::error(
                "env-no-send",
                format!(
                    "{} has no `send` side but the spec declares outbound messages",
                    env.as_str().to_uppercase()
                ),
            ),
            base,
        ));
    }
}

/// Every socket each environment will bind, planned by the runtime itself
/// (`hl7gw_runtime::listeners::plan`): a receive port whose derived ports do not fit, or a
/// TEST socket that a PROD socket would collide with on one host, is found here rather than
/// as "address in use" when the second gateway starts.
fn check_listeners(spec: &LoadedSpec, out: &mut Vec<Diagnostic>) {
    let mut planned: Vec<(EnvName, Vec<Listener>)> = Vec::new();
    for (env, e) in spec.spec.environments.iter() {
        let Some(r) = &e.receive else { continue };
        let Ok(receive) = r.listen.parse::<SocketAddr>() else {
            continue; // env-listen already says why
        };
        let sides = Sides {
            inbox: matches!(e.sink, None | Some(SinkConfig::Inbox)),
            send: e.send.is_some(),
            ems_ip: e.ems.as_ref().and_then(crate::spec::EmsSide::tls_address),
        };
        let pointer = format!("/environments/{}/receive/listen", env.as_str());
        match listeners::plan(receive, sides) {
            Ok(own) => planned.push((env, own)),
            Err(why) => out.push(spec.at_value(
                Diagnostic::error("env-port-range", why.to_string()).detail(
                    "the operations, inbox, intake and MLLP ports are the receive port + 1 to + 4 on 127.0.0.1",
                ),
                &pointer,
            )),
        }
    }
    for (i, (env, own)) in planned.iter().enumerate() {
        for (earlier, theirs) in &planned[..i] {
            // The same receive address in both is `env-shared` already: one finding, not two.
            if own.first().map(|l| l.addr) == theirs.first().map(|l| l.addr) {
                continue;
            }
            let clash = own.iter().find_map(|a| {
                theirs
                    .iter()
                    .find(|b| listeners::collide(a.addr, b.addr))
                    .map(|b| (a, b))
            });
            if let Some((a, b)) = clash {
                out.push(spec.at_value(
                    Diagnostic::error(
                        "env-port-collision",
                        format!(
                            "{}'s {} port {} collides with {}'s {} port {}",
                            env.as_str().to_uppercase(),
                            a.role,
                            a.addr,
                            earlier.as_str().to_uppercase(),
                            b.role,
                            b.addr
                        ),
                    )
                    .detail("TEST and PROD may run on one host: give their receive ports at least 5 apart (each environment also binds receive port + 1 to + 4 on 127.0.0.1)"),
                    &format!("/environments/{}/receive/listen", env.as_str()),
                ));
            }
        }
    }
}

/// No certificate, key, endpoint, store or listen address may serve both environments.
fn check_nothing_shared(spec: &LoadedSpec, out: &mut Vec<Diagnostic>) {
    let mut seen: HashMap<(String, String), String> = HashMap::new();
    for (env, e) in spec.spec.environments.iter() {
        let base = format!("/environments/{}", env.as_str());
        let mut items: Vec<(&str, String, String)> = vec![(
            "store",
            e.store.identity(normalize_path),
            format!("{base}/store"),
        )];
        if let Some(r) = &e.receive {
            items.extend([
                (
                    "listen address",
                    r.listen.clone(),
                    format!("{base}/receive/listen"),
                ),
                (
                    "host name",
                    r.hostname.to_ascii_lowercase(),
                    format!("{base}/receive/hostname"),
                ),
                (
                    "certificate",
                    normalize_path(&r.tls.cert),
                    format!("{base}/receive/tls/cert"),
                ),
                (
                    "key",
                    normalize_path(&r.tls.key),
                    format!("{base}/receive/tls/key"),
                ),
                (
                    "CA",
                    normalize_path(&r.tls.client_ca),
                    format!("{base}/receive/tls/client_ca"),
                ),
            ]);
        }
        if let Some(sd) = &e.send {
            items.extend([
                (
                    "endpoint URL",
                    sd.url.to_ascii_lowercase(),
                    format!("{base}/send/url"),
                ),
                (
                    "certificate",
                    normalize_path(&sd.tls.cert),
                    format!("{base}/send/tls/cert"),
                ),
                (
                    "key",
                    normalize_path(&sd.tls.key),
                    format!("{base}/send/tls/key"),
                ),
                (
                    "CA",
                    normalize_path(&sd.tls.server_ca),
                    format!("{base}/send/tls/server_ca"),
                ),
            ]);
        }
        let mut own: HashMap<(String, String), ()> = HashMap::new();
        for (kind, value, pointer) in items {
            let class = match kind {
                "certificate" | "key" | "CA" => "file",
                other => other,
            };
            let key = (class.to_string(), value.clone());
            if own.insert(key.clone(), ()).is_some() {
                continue; // the same file twice inside one environment is allowed (e.g. one CA)
            }
            if let Some(first) = seen.get(&key) {
                out.push(spec.at_value(
                    Diagnostic::error(
                        "env-shared",
                        format!("TEST and PROD share the {kind} `{value}`"),
                    )
                    .detail(format!(
                        "PROD and TEST must share nothing, so a test message can never reach the live system; the other use is at {first}"
                    )),
                    &pointer,
                ));
            } else {
                seen.insert(key, pointer_to_dotted(&pointer));
            }
        }
    }
}

fn normalize_path(p: &str) -> String {
    p.trim_start_matches("./").to_string()
}

fn pointer_to_dotted(p: &str) -> String {
    p.trim_start_matches('/').replace('/', ".")
}

/// MSH-3 to MSH-6 of built messages (`send.sending_application`, …): text an HL7 field can
/// carry as it is, so a Trust's engine routes on exactly what the spec says.
fn check_send_header(
    spec: &LoadedSpec,
    send: &crate::spec::SendSide,
    base: &str,
    out: &mut Vec<Diagnostic>,
) {
    for (key, field, value) in [
        ("sending_application", "MSH-3", &send.sending_application),
        ("sending_facility", "MSH-4", &send.sending_facility),
        (
            "receiving_application",
            "MSH-5",
            &send.receiving_application,
        ),
        ("receiving_facility", "MSH-6", &send.receiving_facility),
    ] {
        let Some(value) = value else { continue };
        let why = if value.trim().is_empty() {
            Some("is empty; leave the key out for the default".to_string())
        } else if let Some(c) = value
            .chars()
            .find(|c| "|^~\\&".contains(*c) || c.is_control())
        {
            Some(format!(
                "holds {c:?}, an HL7 delimiter or control character, which the field cannot carry as written"
            ))
        } else if value.chars().count() > MAX_HEADER_NAME {
            Some(format!(
                "is longer than {MAX_HEADER_NAME} characters (HD.1, the namespace id, is at most {MAX_HEADER_NAME} in v2.3 to v2.5)"
            ))
        } else {
            None
        };
        if let Some(why) = why {
            out.push(spec.at_value(
                Diagnostic::error("send-header-invalid", format!("`{key}` ({field}) {why}"))
                    .detail("write the name the Trust's engine expects, e.g. `EMS` or the Trust's ODS code"),
                &format!("{base}/{key}"),
            ));
        }
    }
}

/// The longest application or facility name (HD.1 is IS of 20 characters up to v2.5).
const MAX_HEADER_NAME: usize = 20;

#[cfg(test)]
mod tests {
    use super::*;

    /// An environment from its spec text (JSON, as YAML would give it): TEST receiving with
    /// `sink`, and sending when `send`.
    fn environment(sink: serde_json::Value, send: bool) -> Environment {
        let mut e = serde_json::json!({
            "processing_id": "T",
            "store": "var/x.sqlite",
            "receive": {
                "listen": "127.0.0.1:8443",
                "path": "/hl7",
                "hostname": "x-test.api.example-ems.cloud",
                "tls": { "cert": "c", "key": "k", "client_ca": "ca" },
                "allowed_clients": ["CN=tie"],
                "allowed_ips": ["127.0.0.0/8"]
            },
            "sink": sink
        });
        if send {
            e["send"] = serde_json::json!({
                "url": "https://tie.example.nhs.uk/hl7",
                "tls": { "cert": "c", "key": "k", "server_ca": "ca" }
            });
        }
        serde_json::from_value(e).unwrap()
    }

    /// `ems` is demanded exactly where the gateway runs an EMS-facing listener: the inbox
    /// API with the inbox sink, the intake and its MLLP listener with a `send` side; a
    /// receiving environment that hands records to a webhook or an MLLP engine has none.
    #[test]
    fn ems_is_required_only_with_an_ems_facing_listener() {
        let inbox = serde_json::json!({ "inbox": {} });
        let webhook = serde_json::json!({ "webhook": { "url": "http://127.0.0.1:9000/r" } });
        let mllp = serde_json::json!({ "mllp": { "addr": "127.0.0.1:2575" } });
        assert_eq!(ems_listeners(&environment(inbox, false)), ["inbox API"]);
        // No `sink`: the inbox, by default.
        let default = environment(serde_json::Value::Null, false);
        assert_eq!(
            (&default.sink, ems_listeners(&default)),
            (&None, vec!["inbox API"])
        );
        assert!(ems_listeners(&environment(webhook.clone(), false)).is_empty());
        assert!(ems_listeners(&environment(mllp, false)).is_empty());
        assert_eq!(
            ems_listeners(&environment(webhook, true)),
            ["intake API", "intake MLLP listener"]
        );
    }
}
