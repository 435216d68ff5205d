//! The console's responses: pages rendered through tera templates embedded in the binary
//! (autoescaping on, so every value from the store or the spec is escaped), its style and
//! script, JSON, and the security headers every one of them carries.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;

/// The console's templates: (name, text). The `.html` suffix turns autoescaping on.
const TEMPLATES: [(&str, &str); 3] = [
    ("base.html", include_str!("templates/base.html")),
    ("overview.html", include_str!("templates/overview.html")),
    ("stream.html", include_str!("templates/stream.html")),
];

/// The style sheet, served at `/console/assets/console.css`.
pub const CSS: &str = include_str!("assets/console.css");
/// The script, served at `/console/assets/console.js`.
pub const JS: &str = include_str!("assets/console.js");

/// Nothing is loaded from elsewhere, nothing inline runs, no site may frame the console and
/// no form posts anywhere (the script posts with `fetch`, same origin).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// The templates, parsed once.
pub struct Pages(tera::Tera);

impl Pages {
    /// Parses the embedded templates; an error is a bug in hl7gw.
    pub fn new() -> Result<Self, tera::Error> {
        let mut tera = tera::Tera::new();
        tera.autoescape_on([".html"]);
        tera.add_raw_templates(TEMPLATES)?;
        Ok(Self(tera))
    }

    /// Renders template `name` with `view` and the page's CSRF token.
    pub fn render(
        &self,
        name: &str,
        view: &impl Serialize,
        csrf: &str,
        generated_at: &str,
    ) -> Response<Full<Bytes>> {
        let rendered = tera::Context::from_serialize(view).and_then(|mut context| {
            context.insert("csrf", csrf);
            context.insert("generated_at", generated_at);
            self.0.render(name, &context)
        });
        match rendered {
            Ok(html) => respond(StatusCode::OK, "text/html; charset=utf-8", html.into()),
            Err(e) => {
                tracing::error!("console template {name}: {e}");
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("console template {name}: {e}\n"),
                )
            }
        }
    }
}

/// A response with the console's security headers.
pub fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// Plain text.
pub fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    respond(status, "text/plain; charset=utf-8", body.into())
}

/// JSON.
pub fn json(status: StatusCode, value: &impl Serialize) -> Response<Full<Bytes>> {
    match serde_json::to_vec(value) {
        Ok(body) => respond(status, "application/json", body.into()),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("console JSON: {e}\n"),
        ),
    }
}

/// `{"error": message}`.
pub fn error(status: StatusCode, message: impl std::fmt::Display) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({ "error": message.to_string() }))
}
