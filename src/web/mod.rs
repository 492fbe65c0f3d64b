//! The HTTP edge: the only module that knows HTTP. Handlers extract, make one
//! service call and map the result; errors become [`AppError`] pages; a middleware
//! logs them; every response carries security headers and an `x-request-id`.

/// The value of a `Result` whose error is already a response (an [`AppError`], a
/// redirect), or an early return of that response.
macro_rules! or_return {
    ($result:expr) => {
        match $result {
            Ok(value) => value,
            Err(response) => return axum::response::IntoResponse::into_response(response),
        }
    };
}

/// The abilitazione pages, the home page, the personal area, the demo outbox.
pub mod enablement;
/// The single `AppError` and its pages.
pub mod error;
/// OpenID Connect endpoints.
pub mod oidc;
/// Per-client-IP request rates on the costly endpoints.
pub mod ratelimit;
/// The HTTP listener: header-read timeout, connection cap, graceful shutdown.
pub mod server;
/// Session extractors: encrypted cookie, live session, CSRF-checked forms.
pub mod session;
/// SSO handlers: login, ACS, metadata, logout.
pub mod sso;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRef, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::request_id::PropagateRequestIdLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

pub use error::AppError;
use error::ErrorInfo;

use crate::enablement::EnablementService;
use crate::mail::outbox::OutboxMailer;
use crate::session::SessionStore;
use crate::sso::SsoService;

/// Shared application state handed to handlers.
#[derive(Clone)]
pub struct AppState {
    /// The SSO service.
    pub sso: Arc<SsoService>,
    /// Accounts and the abilitazione.
    pub enablement: Arc<EnablementService>,
    /// Browser sessions.
    pub sessions: Arc<SessionStore>,
    /// Signed SP metadata, built once at start.
    pub metadata: Arc<String>,
    /// Whether cookies get the `Secure` flag (public URL is https).
    pub secure_cookies: bool,
    /// Encrypts and authenticates the session cookie.
    pub cookie_key: axum_extra::extract::cookie::Key,
    /// The demo outbox page's source (demo environment with the outbox transport only).
    pub outbox: Option<Arc<OutboxMailer>>,
    /// The OpenID Connect provider, when `[oidc]` is configured.
    pub oidc: Option<Arc<crate::oidc::provider::Provider>>,
    /// Outbound HTTP (back-channel logout).
    pub http: reqwest::Client,
}

impl FromRef<AppState> for axum_extra::extract::cookie::Key {
    fn from_ref(app: &AppState) -> Self {
        app.cookie_key.clone()
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("secure_cookies", &self.secure_cookies)
            .finish_non_exhaustive()
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request id set by the middleware, for error pages and logs.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .headers
                .get(&REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned(),
        ))
    }
}

/// Renders a page; a template failure becomes the 500 page.
pub(crate) fn render(
    t: &impl askama::Template,
    request_id: &str,
) -> Result<axum::response::Html<String>, AppError> {
    t.render()
        .map(axum::response::Html)
        .map_err(|e| AppError::internal(request_id, e.to_string()))
}

/// Static assets compiled into the binary (no CDN).
pub async fn static_asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    let (body, ty) = match name.as_str() {
        "polis.css" => (
            include_str!("../../static/polis.css"),
            "text/css; charset=utf-8",
        ),
        "autosubmit.js" => (
            include_str!("../../static/autosubmit.js"),
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

/// Every request gets a request id minted here (a UUID); a client's own
/// `x-request-id` moves to [`ClientRequestId`] for the logs.
async fn mint_request_id(mut req: Request<Body>, next: Next) -> Response {
    if let Some(v) = req.headers_mut().remove(&REQUEST_ID) {
        let client = sanitize_client_request_id(&v);
        req.extensions_mut().insert(ClientRequestId(client));
    }
    let id = uuid::Uuid::new_v4().to_string();
    if let Ok(v) = HeaderValue::from_str(&id) {
        req.headers_mut().insert(REQUEST_ID, v);
    }
    next.run(req).await
}

/// Logs every error response once, with its code, detail and request id.
async fn log_errors(req: Request<Body>, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let client_request_id = req
        .extensions()
        .get::<ClientRequestId>()
        .map(|c| c.0.clone())
        .unwrap_or_default();
    let resp = next.run(req).await;
    if let Some(info) = resp.extensions().get::<ErrorInfo>() {
        let status = resp.status().as_u16();
        if status >= 500 {
            tracing::error!(%method, %path, status, code = info.code, detail = %info.detail, request_id, client_request_id, "request failed");
        } else {
            tracing::warn!(%method, %path, status, code = info.code, detail = %info.detail, request_id, client_request_id, "request refused");
        }
    }
    resp
}

/// The hard upper bound on one request, body included (`limits.request_timeout_seconds`
/// sets a shorter one on the gateway's routes).
const MAX_REQUEST_TIME: std::time::Duration = std::time::Duration::from_secs(30);

/// Adds the security headers, the request id and error logging to a router.
pub fn harden(router: Router) -> Router {
    let csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
               frame-ancestors 'none'; base-uri 'none'; object-src 'none'";
    router
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            MAX_REQUEST_TIME,
        ))
        .layer(middleware::from_fn(log_errors))
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

/// Bounds applied by the gateway's router.
#[derive(Debug, Clone)]
pub struct RouterLimits {
    /// Largest body on `/acs` and `/slo`.
    pub max_body: usize,
    /// A whole request, body included, must be handled within this time (else 408).
    pub request_timeout: std::time::Duration,
    /// Per-client-IP rates.
    pub rates: Arc<ratelimit::RateLimits>,
}

/// The gateway's router.
pub fn router(state: AppState, limits: RouterLimits) -> Router {
    let max_body = limits.max_body;
    let routes = Router::new()
        .route("/", get(enablement::home))
        .route("/login", get(sso::login))
        .route("/login/complete", get(sso::login_complete))
        .route(
            "/acs",
            post(sso::acs).layer(DefaultBodyLimit::max(max_body)),
        )
        .route("/logout", post(sso::logout))
        .route(
            "/slo",
            get(sso::slo_get)
                .post(sso::slo_post)
                .layer(DefaultBodyLimit::max(max_body)),
        )
        .route("/abilitazione", get(enablement::resume))
        .route(
            "/abilitazione/richiesta",
            get(enablement::request_get).post(enablement::request_post),
        )
        .route(
            "/abilitazione/domanda",
            get(enablement::recovery_get).post(enablement::recovery_post),
        )
        .route(
            "/abilitazione/riepilogo",
            get(enablement::review_get).post(enablement::review_post),
        )
        .route(
            "/abilitazione/adesione",
            get(enablement::adesione_get).post(enablement::adesione_post),
        )
        .route(
            "/abilitazione/modulo-adesione.pdf",
            get(enablement::modulo_adesione),
        )
        .route(
            "/abilitazione/modulo-delega.pdf",
            get(enablement::modulo_delega),
        )
        .route("/abilitazione/inviata", get(enablement::sent))
        .route(
            "/abilitazione/cambio-cp",
            get(enablement::change_temp_get).post(enablement::change_temp_post),
        )
        .route("/abilitazione/reinvio", post(enablement::resend))
        .route("/abilitazione/completata", get(enablement::completed))
        .route("/area-riservata", get(enablement::area_get))
        .route("/area-riservata/dati", post(enablement::area_post))
        .route(
            "/area-riservata/cambio-cp",
            get(enablement::change_cp_get).post(enablement::change_cp_post),
        )
        .route(
            "/area-riservata/recupero-cp",
            get(enablement::recover_get).post(enablement::recover_post),
        )
        .route("/.well-known/openid-configuration", get(oidc::discovery))
        .route("/oidc/jwks", get(oidc::jwks))
        .route("/oidc/authorize", get(oidc::authorize))
        .route("/oidc/authorize/resume", get(oidc::resume))
        .route("/oidc/cp", get(oidc::cp_get).post(oidc::cp_post))
        .route("/oidc/token", post(oidc::token))
        .route("/oidc/introspect", post(oidc::introspect))
        .route("/oidc/revoke", post(oidc::revoke))
        .route("/oidc/userinfo", get(oidc::userinfo).post(oidc::userinfo))
        .route(
            "/oidc/logout",
            get(oidc::end_session).post(oidc::end_session_confirmed),
        )
        .route("/demo/posta", get(enablement::outbox))
        .route("/demo/posta/{file}", get(enablement::outbox_message))
        .route("/metadata", get(sso::metadata))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(sso::ready))
        .route("/static/{name}", get(static_asset))
        .fallback(|RequestId(id): RequestId| async move { AppError::not_found(&id) })
        .with_state(state)
        .layer(middleware::from_fn_with_state(
            limits.rates.clone(),
            ratelimit::limit,
        ))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ));
    harden(routes)
}
