//! Network checks: URLs are https, IP ranges parse, PROD is never open to the world, and
//! overlapping or sloppy ranges are pointed out.

use std::net::IpAddr;

use hl7gw_runtime::endpoint::Endpoint;
use ipnet::IpNet;

use super::CheckOptions;
use crate::diag::Diagnostic;
use crate::spec::{EnvName, LoadedSpec, SinkConfig};

pub(super) fn check(spec: &LoadedSpec, options: &CheckOptions, out: &mut Vec<Diagnostic>) {
    for (env, e) in spec.spec.environments.iter() {
        if options.env.is_some_and(|only| only != env) {
            continue;
        }
        let base = format!("/environments/{}", env.as_str());
        // The same constructors the gateway runs at start-up (`hl7gw_runtime::endpoint`), so
        // a URL that validates is a URL the gateway accepts.
        if let Some(send) = &e.send
            && let Err(why) = Endpoint::https(&send.url)
        {
            out.push(
                spec.at_value(
                    Diagnostic::error("net-url", format!("send URL `{}` {why}", send.url)).detail(
                        "HL7 travels to the customer's engine over HTTPS with mutual TLS only; authentication is by client certificate, never credentials in the URL",
                    ),
                    &format!("{base}/send/url"),
                ),
            );
        }
        if let Some(SinkConfig::Webhook { url }) = &e.sink
            && let Err(why) = Endpoint::http(url)
        {
            out.push(spec.at_value(
                Diagnostic::error("net-url", format!("webhook URL `{url}` {why}")).detail(
                    "the webhook is an internal service next to the gateway, reached over plain http://",
                ),
                &format!("{base}/sink/webhook/url"),
            ));
        }
        if let Some(receive) = &e.receive {
            check_ranges(
                spec,
                env,
                &receive.allowed_ips,
                &format!("{base}/receive/allowed_ips"),
                out,
            );
        }
    }
}

fn check_ranges(
    spec: &LoadedSpec,
    env: EnvName,
    ranges: &[String],
    base: &str,
    out: &mut Vec<Diagnostic>,
) {
    if ranges.is_empty() {
        out.push(spec.at_value(
            Diagnostic::error("net-no-ranges", "no allowed IP ranges")
                .detail("list the customer engine's agreed source ranges, e.g. 10.20.0.0/24; connections from elsewhere are closed before TLS"),
            base,
        ));
    }
    let mut parsed: Vec<(usize, IpNet)> = Vec::new();
    for (i, text) in ranges.iter().enumerate() {
        let pointer = format!("{base}/{i}");
        let net = match text.parse::<IpNet>() {
            Ok(n) => n,
            Err(_) => match text.parse::<IpAddr>() {
                Ok(addr) => IpNet::from(addr),
                Err(_) => {
                    out.push(spec.at_value(
                        Diagnostic::error("net-range", format!("`{text}` is not an IP range"))
                            .detail("write CIDR notation, e.g. 10.20.0.0/24 or 2001:db8::/48, or a single address"),
                        &pointer,
                    ));
                    continue;
                }
            },
        };
        if net.prefix_len() == 0 {
            let d = Diagnostic::error("net-open-range", format!("`{text}` allows every address"))
                .detail("PROD must only accept the customer's agreed ranges");
            if env == EnvName::Prod {
                out.push(spec.at_value(d, &pointer));
            } else {
                let mut w = d;
                w.severity = crate::diag::Severity::Warning;
                w.detail = "TEST open to every address: acceptable only on an isolated network; acknowledge it with a reason if intended".into();
                out.push(spec.at_value(w, &pointer));
            }
        }
        if net.trunc() != net {
            out.push(
                spec.at_value(
                    Diagnostic::warning(
                        "net-host-bits",
                        format!("`{text}` has host bits set; it means {}", net.trunc()),
                    )
                    .detail("write the network address so the range reads as what it allows"),
                    &pointer,
                ),
            );
        }
        for (j, other) in &parsed {
            if other.contains(&net.trunc()) || net.trunc().contains(other) {
                out.push(spec.at_value(
                    Diagnostic::warning(
                        "net-overlap",
                        format!("`{text}` overlaps `{}`", ranges[*j]),
                    )
                    .detail("overlapping ranges usually mean a typo or a range that is wider than agreed"),
                    &pointer,
                ));
            }
        }
        parsed.push((i, net.trunc()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The validator refuses exactly what the gateway refuses: an `https://` webhook
    /// validated before and was then refused at start-up.
    #[test]
    fn urls_are_decided_by_the_runtime() {
        assert!(Endpoint::https("https://tie.trust.nhs.uk:9443/hl7").is_ok());
        assert!(Endpoint::https("https://[2001:db8::1]:443/x").is_ok());
        for bad in [
            "http://tie/x",
            "https://:443/x",
            "https://h:99999/",
            "https://user:pw@h/",
        ] {
            assert!(Endpoint::https(bad).is_err(), "{bad}");
        }
        assert!(Endpoint::http("http://127.0.0.1:9000/records").is_ok());
        assert!(Endpoint::http("https://records.internal/").is_err());
    }
}
