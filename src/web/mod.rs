//! The HTTP edge: the only module that knows HTTP. Handlers extract, make one
//! service call and map the result; errors become [`AppError`] pages; a middleware
//! logs them; every response carries security headers and an `x-request-id`.

/// The abilitazione pages, the home page, the personal area, the demo outbox.
pub mod enablement;
/// The single `AppError` and its pages.
pub mod error;
/// The help-desk console (`/assistenza`).
pub mod helpdesk;
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
use axum::extract::{DefaultBodyLimit, FromRef, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::timeout::TimeoutLayer;

pub use error::AppError;
use error::ErrorInfo;

use crate::httpkit::ClientRequestId;

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
    /// The help-desk console (`/assistenza`, routed only when `[helpdesk]` lists
    /// someone) and the interventions the personal area lists.
    pub helpdesk: Arc<crate::helpdesk::HelpdeskService>,
    /// Browser sessions.
    pub sessions: Arc<SessionStore>,
    /// Signed SP metadata, built once at start.
    pub metadata: Arc<String>,
    /// Signed CIE SP metadata (`/metadata/cie`), when `[cie]` is enabled.
    pub cie_metadata: Option<Arc<String>>,
    /// Whether cookies get the `Secure` flag (public URL is https).
    pub secure_cookies: bool,
    /// Encrypts and authenticates the session cookie.
    pub cookie_key: axum_extra::extract::cookie::Key,
    /// The demo outbox page's source (demo environment with the outbox transport only).
    pub outbox: Option<Arc<OutboxMailer>>,
    /// The OpenID Connect provider, when `[oidc]` is configured.
    pub oidc: Option<Arc<crate::oidc::provider::Provider>>,
    /// The login use case (ACS completion, `/login/complete`).
    pub login: Arc<crate::flows::login::LoginFlow>,
    /// Closing sessions everywhere; «Esci» and the IdP-initiated logout.
    pub logout: Arc<crate::flows::logout::LogoutFlow>,
    /// Admission control: new logins wait while the gateway is saturated.
    pub admission: Arc<crate::admission::Admission>,
    /// Where the time comes from.
    pub clock: crate::clock::SharedClock,
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

pub use crate::httpkit::RequestId;

/// Renders a page; a template failure becomes the 500 page.
pub(crate) fn render(t: &impl askama::Template) -> Result<axum::response::Html<String>, AppError> {
    t.render()
        .map(axum::response::Html)
        .map_err(|e| AppError::internal(e.to_string()))
}

/// Finishes every error page with this request's id and logs it once, with its code
/// and detail (the [`ErrorInfo`] an [`AppError`] leaves on its response).
async fn error_pages(req: Request<Body>, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let request_id = RequestId::of(req.extensions());
    let client_request_id = req
        .extensions()
        .get::<ClientRequestId>()
        .map(|c| c.0.clone())
        .unwrap_or_default();
    let mut resp = next.run(req).await;
    if resp.status() == axum::http::StatusCode::REQUEST_TIMEOUT
        && resp.extensions().get::<ErrorInfo>().is_none()
    {
        resp = AppError::timeout().into_response();
    }
    if resp.status() == axum::http::StatusCode::METHOD_NOT_ALLOWED
        && resp.extensions().get::<ErrorInfo>().is_none()
    {
        // axum's own 405 (a route without this method) has no body: our page, same Allow.
        let allow = resp.headers().get(axum::http::header::ALLOW).cloned();
        resp = AppError::method_not_allowed().into_response();
        if let Some(allow) = allow {
            resp.headers_mut().insert(axum::http::header::ALLOW, allow);
        }
    }
    error::finish_page(&mut resp, &request_id);
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

/// Adds the security headers, the request id, error pages and their logging to a router.
pub fn harden(router: Router) -> Router {
    crate::httpkit::harden_with(router, |r| r.layer(middleware::from_fn(error_pages)))
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

/// The router of the internal metrics listener: `GET /metrics` in the Prometheus text
/// format (0.0.4), every other path 404. Never merged into the public router.
pub fn metrics_router(metrics: Arc<crate::telemetry::Metrics>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    metrics.render(),
                )
            }
        }),
    )
}

/// The gateway's router.
pub fn router(state: AppState, limits: RouterLimits) -> Router {
    let helpdesk = state.helpdesk.enabled();
    let routes = Router::new()
        .merge(sso_routes(limits.max_body))
        .merge(enablement_routes())
        .merge(helpdesk_routes(helpdesk))
        .merge(oidc_routes())
        .route("/demo/posta", get(enablement::outbox))
        .route("/demo/posta/{file}", get(enablement::outbox_message))
        .route("/demo/posta/{file}/eml", get(enablement::outbox_raw))
        .route(
            "/demo/posta/{file}/allegati/{number}",
            get(enablement::outbox_attachment),
        )
        .route("/favicon.ico", get(crate::httpkit::favicon))
        .route("/metadata", get(sso::metadata))
        .route("/metadata/cie", get(sso::cie_metadata))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(sso::ready))
        .route("/static/{*path}", get(crate::httpkit::static_asset))
        .fallback(|| async { AppError::not_found() })
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

/// Home, login, ACS, logout and SLO (the SAML endpoints with the body cap).
fn sso_routes(max_body: usize) -> Router<AppState> {
    Router::new()
        .route("/", get(enablement::home))
        .route("/login", get(sso::login))
        .route("/login/complete", get(sso::login_complete))
        .route(
            "/acs",
            post(sso::acs).layer(DefaultBodyLimit::max(max_body)),
        )
        .route("/logout", post(sso::logout))
        .route("/uscito", get(sso::logged_out))
        .route("/condizioni-di-utilizzo", get(enablement::conditions))
        .route("/informativa-privacy", get(enablement::privacy))
        .route(
            "/slo",
            get(sso::slo_get)
                .post(sso::slo_post)
                .layer(DefaultBodyLimit::max(max_body)),
        )
}

/// The abilitazione steps and the personal area.
fn enablement_routes() -> Router<AppState> {
    Router::new()
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
}

/// The help-desk console, when `[helpdesk]` lists someone (else every path is 404).
fn helpdesk_routes(enabled: bool) -> Router<AppState> {
    if !enabled {
        return Router::new();
    }
    Router::new()
        .route("/assistenza", get(helpdesk::search_get))
        .route("/assistenza/cerca", post(helpdesk::search_post))
        .route("/assistenza/account/{id}", get(helpdesk::account_get))
        .route("/assistenza/account/{id}/intervento", post(helpdesk::act))
}

/// The OpenID Connect provider's endpoints.
fn oidc_routes() -> Router<AppState> {
    Router::new()
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
}
