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

/// Static assets compiled into the binary (no CDN).
pub async fn static_asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    let (body, ty) = match name.as_str() {
        "polis.css" => (
            include_str!("../static/polis.css"),
            "text/css; charset=utf-8",
        ),
        "autosubmit.js" => (
            include_str!("../static/autosubmit.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return axum::http::StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, ty),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}
