//! The one parser for the URLs a gateway sends to: the Trust engine's `https://` endpoint and
//! the webhook sink's internal `http://` service.
//!
//! The HTTPS client, the webhook sink and `hl7gw validate` all decide through
//! [`Endpoint::parse`], so a URL that validates is a URL the gateway accepts, and the
//! reasons a URL is refused read the same at go-live and at start-up.

use std::fmt;

use hyper::header::HeaderValue;
use hyper::http::uri::{Scheme, Uri};
use rustls_pki_types::ServerName;

/// Which scheme an endpoint must use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointKind {
    /// The Trust's engine: HL7 travels over HTTPS with mutual TLS only.
    Https,
    /// The webhook sink: an internal service next to the gateway, plain HTTP.
    Http,
}

impl EndpointKind {
    fn scheme(self) -> Scheme {
        match self {
            Self::Https => Scheme::HTTPS,
            Self::Http => Scheme::HTTP,
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Self::Https => 443,
            Self::Http => 80,
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Self::Https => "https://",
            Self::Http => "http://",
        }
    }
}

/// Why a URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// Not a URL at all.
    #[error("is not a URL: {0}")]
    Syntax(String),
    /// Another scheme than the one required.
    #[error("must start with {expected}")]
    Scheme {
        /// The scheme required, `https://` or `http://`.
        expected: &'static str,
    },
    /// No host between the scheme and the path.
    #[error("has no host")]
    NoHost,
    /// `user:password@` in the URL.
    #[error("must not carry credentials")]
    Credentials,
    /// Port 0 or not a number.
    #[error("port {0:?} is not a port number")]
    Port(String),
    /// A host TLS cannot verify a certificate for.
    #[error("the host {0:?} is not a DNS name or IP address")]
    ServerName(String),
}

/// A parsed endpoint: what a client needs to connect and to write the request line.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    kind: EndpointKind,
    url: String,
    host: String,
    port: u16,
    authority: HeaderValue,
    path: Uri,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Endpoint").field(&self.url).finish()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

impl Endpoint {
    /// Parses `scheme://host[:port][/path][?query]` for `kind`: the scheme must be the
    /// kind's, the host non-empty, the port (when given) 1 to 65535, and no credentials; an
    /// HTTPS host must be a name or address a certificate can be checked against.
    pub fn parse(url: &str, kind: EndpointKind) -> Result<Self, EndpointError> {
        let uri: Uri = url
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| EndpointError::Syntax(e.to_string()))?;
        if uri.scheme() != Some(&kind.scheme()) {
            return Err(EndpointError::Scheme {
                expected: kind.prefix(),
            });
        }
        let authority = uri.authority().ok_or(EndpointError::NoHost)?;
        if authority.as_str().contains('@') {
            return Err(EndpointError::Credentials);
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err(EndpointError::NoHost);
        }
        // What follows the host is `:PORT` or nothing. `http` drops a port that does not
        // fit in u16 (`h:99999` reads as no port at all): read the text ourselves.
        let port_text = authority
            .as_str()
            .get(authority.host().len()..)
            .and_then(|rest| rest.strip_prefix(':'));
        let port = match port_text {
            None => kind.default_port(),
            Some(text) => match text.parse::<u16>() {
                Ok(n) if n != 0 => n,
                _ => return Err(EndpointError::Port(text.to_owned())),
            },
        };
        if kind == EndpointKind::Https && ServerName::try_from(host.as_str()).is_err() {
            return Err(EndpointError::ServerName(host));
        }
        let authority_value = HeaderValue::from_str(authority.as_str())
            .map_err(|_| EndpointError::Syntax("the host is not a valid header value".into()))?;
        let path: Uri = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| EndpointError::Syntax(e.to_string()))?;
        Ok(Self {
            kind,
            url: url.to_owned(),
            host,
            port,
            authority: authority_value,
            path,
        })
    }

    /// The Trust engine's endpoint: `https://` only.
    pub fn https(url: &str) -> Result<Self, EndpointError> {
        Self::parse(url, EndpointKind::Https)
    }

    /// The webhook's internal service: `http://` only.
    pub fn http(url: &str) -> Result<Self, EndpointError> {
        Self::parse(url, EndpointKind::Http)
    }

    /// Which scheme.
    pub fn kind(&self) -> EndpointKind {
        self.kind
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The host without brackets (`::1`, not `[::1]`): what to connect to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, the scheme's default when the URL gives none.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `Host` header: the authority as written in the URL.
    pub fn authority(&self) -> &HeaderValue {
        &self.authority
    }

    /// The request target: path and query, `/` when the URL has none.
    pub fn path(&self) -> &Uri {
        &self.path
    }

    /// The name the server's certificate is checked against (TLS SNI).
    pub fn server_name(&self) -> Result<ServerName<'static>, EndpointError> {
        ServerName::try_from(self.host.clone())
            .map_err(|_| EndpointError::ServerName(self.host.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_endpoints() -> Result<(), EndpointError> {
        let e = Endpoint::https("https://tie.trust.nhs.uk:9443/hl7?x=1")?;
        assert_eq!((e.host(), e.port()), ("tie.trust.nhs.uk", 9443));
        assert_eq!(e.path().to_string(), "/hl7?x=1");
        assert_eq!(e.authority(), "tie.trust.nhs.uk:9443");
        let v6 = Endpoint::https("https://[2001:db8::1]/x")?;
        assert_eq!((v6.host(), v6.port()), ("2001:db8::1", 443));
        assert_eq!(Endpoint::https("https://h")?.path().to_string(), "/");
        Ok(())
    }

    #[test]
    fn refusals_name_the_reason() {
        let err = |url: &str, kind| Endpoint::parse(url, kind).err();
        assert_eq!(
            err("http://tie/x", EndpointKind::Https),
            Some(EndpointError::Scheme {
                expected: "https://"
            })
        );
        assert_eq!(
            err("https://tie/x", EndpointKind::Http),
            Some(EndpointError::Scheme {
                expected: "http://"
            })
        );
        assert_eq!(
            err("https://:443/x", EndpointKind::Https),
            Some(EndpointError::NoHost)
        );
        assert_eq!(
            err("https://h:99999/", EndpointKind::Https),
            Some(EndpointError::Port("99999".into()))
        );
        assert_eq!(
            err("https://h:0/", EndpointKind::Https),
            Some(EndpointError::Port("0".into()))
        );
        assert_eq!(
            err("https://user:pw@h/", EndpointKind::Https),
            Some(EndpointError::Credentials)
        );
        assert!(matches!(
            err("not a url", EndpointKind::Http),
            Some(EndpointError::Syntax(_))
        ));
        assert!(matches!(
            err("", EndpointKind::Https),
            Some(EndpointError::Syntax(_))
        ));
    }

    #[test]
    fn webhook_endpoints_default_to_port_80() -> Result<(), EndpointError> {
        let e = Endpoint::http("http://127.0.0.1/records")?;
        assert_eq!(
            (e.host(), e.port(), e.kind()),
            ("127.0.0.1", 80, EndpointKind::Http)
        );
        Ok(())
    }
}
