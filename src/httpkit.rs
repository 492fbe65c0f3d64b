//! HTTP pieces the gateway's web layer and the mock IdP share: request ids (minted by
//! the server, kept as a request extension; a client's own `x-request-id` is only
//! logged), the security headers and time limit every router gets, the
//! auto-submitting form of the SAML HTTP-POST binding, and the static assets compiled
//! into the binary. Knows no service of the gateway.

use askama::Template;
use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use tower_http::request_id::PropagateRequestIdLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

/// The request-id header on every response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The hard upper bound on one request, body included (`limits.request_timeout_seconds`
/// sets a shorter one on the gateway's routes).
pub const MAX_REQUEST_TIME: std::time::Duration = std::time::Duration::from_secs(30);

/// The request id the middleware minted for this request (a request extension;
/// also the extractor handlers and middleware read it with).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl RequestId {
    /// The id of a request that went through [`harden`], `-` for one that did not.
    pub fn of(parts_extensions: &axum::http::Extensions) -> String {
        parts_extensions
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_else(|| "-".to_owned())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(Self::of(&parts.extensions)))
    }
}

/// The `x-request-id` a client sent, sanitized: logged beside ours, never used as ours.
#[derive(Debug, Clone)]
pub struct ClientRequestId(pub String);

/// At most this many characters of a client's request id are logged.
const CLIENT_REQUEST_ID_MAX: usize = 64;

/// Keeps `[A-Za-z0-9._:-]` of a client's request id, at most 64 characters.
fn sanitize_client_request_id(v: &HeaderValue) -> String {
    v.as_bytes()
        .iter()
        .filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
        .take(CLIENT_REQUEST_ID_MAX)
        .map(|b| char::from(*b))
        .collect()
}

/// Every request gets a request id minted here (a UUID), as the [`RequestId`]
/// extension and the `x-request-id` header (which [`PropagateRequestIdLayer`] copies to
/// the response); a client's own `x-request-id` moves to [`ClientRequestId`].
async fn mint_request_id(mut req: Request<Body>, next: Next) -> Response {
    if let Some(v) = req.headers_mut().remove(&REQUEST_ID) {
        let client = sanitize_client_request_id(&v);
        req.extensions_mut().insert(ClientRequestId(client));
    }
    let id = uuid::Uuid::new_v4().to_string();
    if let Ok(v) = HeaderValue::from_str(&id) {
        req.headers_mut().insert(REQUEST_ID, v);
    }
    req.extensions_mut().insert(RequestId(id));
    next.run(req).await
}

/// Adds the time limit, request ids, security headers and request tracing to a router.
pub fn harden(router: Router) -> Router {
    harden_with(router, |r| r)
}

/// [`harden`], with `around_timeout` adding layers between the time limit and the
/// request id (so they see the 408 of a request that ran out of time, and the id).
pub fn harden_with(router: Router, around_timeout: impl FnOnce(Router) -> Router) -> Router {
    let csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
               frame-ancestors 'none'; base-uri 'none'; object-src 'none'";
    around_timeout(router.layer(TimeoutLayer::with_status_code(
        axum::http::StatusCode::REQUEST_TIMEOUT,
        MAX_REQUEST_TIME,
    )))
    .layer(PropagateRequestIdLayer::new(REQUEST_ID))
    .layer(middleware::from_fn(mint_request_id))
    .layer(SetResponseHeaderLayer::if_not_present(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    ))
    .layer(SetResponseHeaderLayer::if_not_present(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    ))
    .layer(SetResponseHeaderLayer::if_not_present(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ))
    .layer(SetResponseHeaderLayer::if_not_present(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("DENY"),
    ))
    .layer(tower_http::trace::TraceLayer::new_for_http())
}

#[derive(Template)]
#[template(path = "post_form.html")]
struct PostForm<'a> {
    action: &'a str,
    field: &'a str,
    value: &'a str,
    relay_state: &'a str,
}

/// The auto-submitting form of the HTTP-POST binding: posts `field` = `value` (and a
/// non-empty `RelayState`) to `action`.
pub fn post_form(
    action: &str,
    field: &str,
    value: &str,
    relay_state: &str,
) -> Result<Html<String>, askama::Error> {
    PostForm {
        action,
        field,
        value,
        relay_state,
    }
    .render()
    .map(Html)
}

/// Where the vendored Bootstrap Italia lives under `/static/` (its version in the path,
/// so a new version is a new URL and the long cache is safe).
pub const BOOTSTRAP_ITALIA: &str = "vendor/bootstrap-italia/2.18.3";

/// How long a browser may keep an asset: a year for versioned vendor files, an hour
/// for ours (their URL does not change with their content).
const CACHE_VENDOR: &str = "public, max-age=31536000, immutable";
const CACHE_OURS: &str = "public, max-age=3600";

/// One file compiled into the binary.
struct Asset {
    path: &'static str,
    body: &'static [u8],
    content_type: &'static str,
    cache: &'static str,
}

macro_rules! asset {
    ($path:literal, $ty:expr, $cache:expr) => {
        Asset {
            path: $path,
            body: include_bytes!(concat!("../static/", $path)),
            content_type: $ty,
            cache: $cache,
        }
    };
}

const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";
const WOFF2: &str = "font/woff2";
const ICO: &str = "image/x-icon";

/// The allowlist: the only files `/static/…` serves, by exact path (no file system
/// access at run time, so no traversal).
static ASSETS: &[Asset] = &[
    asset!("polis.css", CSS, CACHE_OURS),
    asset!("favicon.svg", SVG, CACHE_OURS),
    asset!("favicon.ico", ICO, CACHE_OURS),
    asset!(
        "autosubmit.js",
        "text/javascript; charset=utf-8",
        CACHE_OURS
    ),
    asset!(
        "vendor/bootstrap-italia/2.18.3/css/bootstrap-italia.min.css",
        CSS,
        CACHE_VENDOR
    ),
    asset!(
        "vendor/bootstrap-italia/2.18.3/fonts/Titillium_Web/titillium-web-v10-latin-ext_latin-300.woff2",
        WOFF2,
        CACHE_VENDOR
    ),
    asset!(
        "vendor/bootstrap-italia/2.18.3/fonts/Titillium_Web/titillium-web-v10-latin-ext_latin-regular.woff2",
        WOFF2,
        CACHE_VENDOR
    ),
    asset!(
        "vendor/bootstrap-italia/2.18.3/fonts/Titillium_Web/titillium-web-v10-latin-ext_latin-italic.woff2",
        WOFF2,
        CACHE_VENDOR
    ),
    asset!(
        "vendor/bootstrap-italia/2.18.3/fonts/Titillium_Web/titillium-web-v10-latin-ext_latin-600.woff2",
        WOFF2,
        CACHE_VENDOR
    ),
    asset!(
        "vendor/bootstrap-italia/2.18.3/fonts/Titillium_Web/titillium-web-v10-latin-ext_latin-700.woff2",
        WOFF2,
        CACHE_VENDOR
    ),
    asset!(
        "vendor/spid-sp-access-button/img/spid-ico-circle-bb.svg",
        SVG,
        CACHE_OURS
    ),
    asset!(
        "vendor/spid-sp-access-button/img/spid-idp-arubaid.svg",
        SVG,
        CACHE_OURS
    ),
    asset!(
        "vendor/spid-sp-access-button/img/spid-idp-etnaid.svg",
        SVG,
        CACHE_OURS
    ),
    asset!(
        "vendor/spid-sp-access-button/img/spid-idp-infocamereid.svg",
        SVG,
        CACHE_OURS
    ),
    asset!(
        "vendor/spid-sp-access-button/img/spid-idp-infocertid.svg",
        SVG,
        CACHE_OURS
    ),
    asset!(
        "vendor/spid-sp-access-button/img/spid-idp-intesaid.svg",
        SVG,
        CACHE_OURS
    ),
    asset!(
        "vendor/spid-sp-access-button/img/spid-idp-intesigroupspid.svg",
        SVG,
        CACHE_OURS
    ),
    asset!(
        "vendor/spid-sp-access-button/img/spid-idp-lepidaid.svg",
        SVG,
        CACHE_OURS
    ),
    asset!(
        "vendor/spid-sp-access-button/img/spid-idp-namirialid.svg",
        SVG,
        CACHE_OURS
    ),
    asset!(
        "vendor/spid-sp-access-button/img/spid-idp-posteid.svg",
        SVG,
        CACHE_OURS
    ),
    asset!(
        "vendor/spid-sp-access-button/img/spid-idp-sielteid.svg",
        SVG,
        CACHE_OURS
    ),
    asset!(
        "vendor/spid-sp-access-button/img/spid-idp-spiditalia.svg",
        SVG,
        CACHE_OURS
    ),
    asset!(
        "vendor/spid-sp-access-button/img/spid-idp-teamsystemid.svg",
        SVG,
        CACHE_OURS
    ),
    asset!(
        "vendor/spid-sp-access-button/img/spid-idp-timid.svg",
        SVG,
        CACHE_OURS
    ),
    asset!("vendor/cie-graphics/entra_con_cie.svg", SVG, CACHE_OURS),
    asset!(
        "vendor/eidas-button/ficep-it-eidas-ybw.svg",
        SVG,
        CACHE_OURS
    ),
];

/// The asset at `path` (relative to `/static/`), if it is on the allowlist.
fn find_asset(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// `GET /static/{*path}`: a file of the allowlist, compiled into the binary (no CDN),
/// with its content type and cache lifetime; anything else 404.
pub async fn static_asset(axum::extract::Path(path): axum::extract::Path<String>) -> Response {
    let Some(a) = find_asset(&path) else {
        return axum::http::StatusCode::NOT_FOUND.into_response();
    };
    (
        [
            (header::CONTENT_TYPE, a.content_type),
            (header::CACHE_CONTROL, a.cache),
        ],
        a.body,
    )
        .into_response()
}

/// `GET /favicon.ico`: the icon browsers ask for by default (`static/favicon.ico`),
/// with the headers of the other static assets.
pub async fn favicon() -> Response {
    static_asset(axum::extract::Path("favicon.ico".to_owned())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_unique_path_and_a_known_type() {
        let mut seen = std::collections::HashSet::new();
        for a in ASSETS {
            assert!(seen.insert(a.path), "duplicate {}", a.path);
            let ext = a.path.rsplit('.').next().unwrap_or("");
            let want = match ext {
                "css" => CSS,
                "svg" => SVG,
                "woff2" => WOFF2,
                "ico" => ICO,
                "js" => "text/javascript; charset=utf-8",
                other => panic!("unexpected extension {other}"),
            };
            assert_eq!(a.content_type, want, "{}", a.path);
            assert!(!a.body.is_empty(), "{}", a.path);
            let versioned = a.path.starts_with(BOOTSTRAP_ITALIA);
            assert_eq!(a.cache == CACHE_VENDOR, versioned, "{}", a.path);
        }
    }

    #[test]
    fn only_exact_allowlisted_paths_are_found() {
        assert!(find_asset("polis.css").is_some());
        assert!(find_asset("vendor/cie-graphics/entra_con_cie.svg").is_some());
        for bad in [
            "",
            "../Cargo.toml",
            "vendor/../polis.css",
            "/polis.css",
            "polis.css/",
            "POLIS.CSS",
            "vendor/bootstrap-italia/2.18.3/LICENSE",
            "vendor",
        ] {
            assert!(find_asset(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn fonts_are_served_as_binary_woff2() {
        let a = find_asset(&format!(
            "{BOOTSTRAP_ITALIA}/fonts/Titillium_Web/titillium-web-v10-latin-ext_latin-regular.woff2"
        ))
        .expect("the regular font is on the allowlist");
        assert_eq!(a.body.get(..4), Some(&b"wOF2"[..]));
        assert_eq!(a.content_type, WOFF2);
    }
}
