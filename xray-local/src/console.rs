//! The web console: one page and its script and style sheet, built into the binary and served
//! on the TCP address (`GET /`). The page reads the daemon's own X-Ray read API
//! ([`crate::api`]) and needs nothing beyond the daemon.
//!
//! Every console response carries a Content-Security-Policy that allows only the daemon's own
//! script, style and API (no inline script, no other origin), and the script puts every string
//! from a document on the page as text.

/// One asset: its content type and bytes.
pub(crate) struct Asset {
    pub(crate) content_type: &'static str,
    pub(crate) body: &'static [u8],
}

/// The policy every console response carries.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");
/// A small icon, so that the browser's request for one is answered.
const ICON: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\">\
     <circle cx=\"8\" cy=\"8\" r=\"7\" fill=\"#ff9900\"/></svg>";

/// The asset at `path`, if the console has one there.
pub(crate) fn asset(path: &str) -> Option<Asset> {
    let (content_type, body) = match path {
        "/" | "/index.html" => ("text/html; charset=utf-8", INDEX),
        "/console.js" => ("text/javascript; charset=utf-8", SCRIPT),
        "/console.css" => ("text/css; charset=utf-8", STYLE),
        "/favicon.ico" | "/favicon.svg" => ("image/svg+xml", ICON),
        _ => return None,
    };
    Some(Asset {
        content_type,
        body: body.as_bytes(),
    })
}
