//! Cross-site request protection for the console's state-changing requests.
//!
//! The operations listener has no authentication, so a page on another site that the
//! operator's browser visits must not be able to make it retry, skip or open a message. A
//! POST is accepted only when all of these hold:
//!
//! - it carries the per-process token ([`CsrfToken`], 32 random bytes from ring, embedded in
//!   the console's pages) in the `X-CSRF-Token` header: another site cannot read the page, so
//!   it cannot know the token;
//! - `Sec-Fetch-Site`, when the browser sends it, is `same-origin` (or `none`: typed by the
//!   user);
//! - `Origin`, when sent, is this listener's own (`http://` and the request's `Host`).
//!
//! Clients that are not browsers (curl) send neither header and need the token only. GET
//! never changes state.
//!
//! Every console request, GET included, must also name the listener by address: its `Host`
//! is an IP address or `localhost` ([`check_host`]). A site whose DNS name is made to
//! resolve to the console's address (DNS rebinding) would otherwise be "same-origin" with
//! it, read the token and act.

use hyper::HeaderMap;
use hyper::header;
use ring::rand::{SecureRandom, SystemRandom};

/// The header a state-changing request carries the token in.
pub const TOKEN_HEADER: &str = "x-csrf-token";

/// The per-process token.
#[derive(Clone)]
pub struct CsrfToken(String);

impl std::fmt::Debug for CsrfToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfToken(..)")
    }
}

/// Why a state-changing request was refused (403).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrfRefusal {
    /// No token, or another one.
    #[error("missing or wrong X-CSRF-Token: reload the console page")]
    Token,
    /// The browser says the request comes from another site.
    #[error("Sec-Fetch-Site {0:?}: cross-site requests are refused")]
    FetchSite(String),
    /// The `Host` is a DNS name other than `localhost` (or missing).
    #[error("Host {0:?}: reach the console by IP address or localhost")]
    Host(String),
    /// The `Origin` is not this listener's.
    #[error("Origin {origin:?} is not this console's ({expected:?})")]
    Origin {
        /// What the request said.
        origin: String,
        /// `http://` and the request's `Host`.
        expected: String,
    },
}

impl CsrfToken {
    /// A new random token (64 hex digits).
    pub fn generate() -> Result<Self, ring::error::Unspecified> {
        let mut bytes = [0u8; 32];
        SystemRandom::new().fill(&mut bytes)?;
        Ok(Self(bytes.iter().map(|b| format!("{b:02x}")).collect()))
    }

    /// The token, to embed in a page.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Checks a state-changing request's headers.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), CsrfRefusal> {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        if let Some(site) = text("sec-fetch-site") {
            if site != "same-origin" && site != "none" {
                return Err(CsrfRefusal::FetchSite(site.to_owned()));
            }
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
            let expected = format!("http://{}", text(header::HOST.as_str()).unwrap_or(""));
            if origin != expected {
                return Err(CsrfRefusal::Origin { origin, expected });
            }
        }
        match headers.get(TOKEN_HEADER) {
            Some(given) if equal(given.as_bytes(), self.0.as_bytes()) => Ok(()),
            _ => Err(CsrfRefusal::Token),
        }
    }
}

/// Refuses a request whose `Host` is not an IP address or `localhost` (with or without a
/// port): see the module docs.
pub fn check_host(headers: &HeaderMap) -> Result<(), CsrfRefusal> {
    let host = headers
        .get(header::HOST)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let name = match host.strip_prefix('[') {
        // [v6]:port
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host
            .rsplit_once(':')
            .map_or(host.as_str(), |(name, _)| name),
    };
    if name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok() {
        Ok(())
    } else {
        Err(CsrfRefusal::Host(host))
    }
}

/// Compares in time independent of where the first difference is.
fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn the_host_must_be_an_address_or_localhost() {
        for ok in [
            "127.0.0.1:9444",
            "localhost:9444",
            "[::1]:9444",
            "10.1.2.3",
            "LOCALHOST",
        ] {
            assert_eq!(check_host(&headers(&[("host", ok)])), Ok(()), "{ok}");
        }
        for refused in [
            "evil.example:9444",
            "evil.example",
            "127.0.0.1.evil.example:80",
        ] {
            assert!(
                check_host(&headers(&[("host", refused)])).is_err(),
                "{refused}"
            );
        }
        assert!(check_host(&HeaderMap::new()).is_err());
    }

    #[test]
    fn the_token_origin_and_fetch_site_are_checked() {
        let token = CsrfToken::generate().unwrap();
        assert_eq!(token.as_str().len(), 64);
        assert_ne!(token.as_str(), CsrfToken::generate().unwrap().as_str());
        let t = token.as_str().to_owned();
        let host = ("host", "127.0.0.1:9444");
        assert!(token.check(&headers(&[host, (TOKEN_HEADER, &t)])).is_ok());
        assert!(
            token
                .check(&headers(&[
                    host,
                    (TOKEN_HEADER, &t),
                    ("origin", "http://127.0.0.1:9444"),
                    ("sec-fetch-site", "same-origin"),
                ]))
                .is_ok()
        );
        assert_eq!(token.check(&headers(&[host])), Err(CsrfRefusal::Token));
        assert_eq!(
            token.check(&headers(&[host, (TOKEN_HEADER, &t[1..])])),
            Err(CsrfRefusal::Token)
        );
        assert!(matches!(
            token.check(&headers(&[
                host,
                (TOKEN_HEADER, &t),
                ("origin", "http://evil.example")
            ])),
            Err(CsrfRefusal::Origin { .. })
        ));
        assert!(matches!(
            token.check(&headers(&[
                host,
                (TOKEN_HEADER, &t),
                ("sec-fetch-site", "cross-site")
            ])),
            Err(CsrfRefusal::FetchSite(_))
        ));
    }
}
