//! Session extractors: the encrypted cookie, the live session behind it, and the CSRF
//! check every state-changing form goes through.
//!
//! - [`Authed`]: a request with a live session. Without one a page request is sent to
//!   `/` (303) and anything else gets the 401 page; a cookie whose session expired gets
//!   «La sessione è scaduta» (401, the cookie dropped), and a form posted with it keeps
//!   what was typed (no secrets) for its owner's next login
//!   (`SessionStore::keep_draft`, given back by the form's page).
//! - [`SessionForm`]: a form POST with a live session whose `csrf` field matches the
//!   session's token (403 `POLIS_CSRF` otherwise, before the form is even parsed), so a
//!   handler cannot forget the check.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, SameSite};
use axum_extra::extract::{CookieJar, PrivateCookieJar};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{AppError, AppState};
use crate::flows::SessionRef;
use crate::session::WebSession;

/// Name of the gateway session cookie.
pub const SESSION_COOKIE: &str = "polis_session";

/// Largest form body accepted by [`SessionForm`].
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The session cookie for a token: encrypted by the jar, HttpOnly, SameSite=Lax,
/// Secure on https; no Max-Age (the server-side record decides the lifetime).
pub fn session_cookie(token: String, secure: bool) -> Cookie<'static> {
    let mut c = Cookie::new(SESSION_COOKIE, token);
    c.set_http_only(true);
    c.set_secure(secure);
    c.set_same_site(SameSite::Lax);
    c.set_path("/");
    c
}

/// The login-binding cookie: a random value the browser gets at `/login`; its hash
/// travels with the pending request, and `/login/complete` opens the session only for
/// the browser that holds it. `__Host-` prefixed (so Secure, Path=/, no Domain) on https.
const BINDING_COOKIE_SECURE: &str = "__Host-polis_login";
/// The same cookie over plain http (demo, tests), where `__Host-` cannot be used.
const BINDING_COOKIE_PLAIN: &str = "polis_login";

fn binding_name(secure: bool) -> &'static str {
    if secure {
        BINDING_COOKIE_SECURE
    } else {
        BINDING_COOKIE_PLAIN
    }
}

fn valid_binding(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// This browser's binding cookie (kept if it has a well-formed one, else a new random
/// one) and its hash for the pending request.
pub fn login_binding(jar: &CookieJar, secure: bool) -> (Cookie<'static>, String) {
    let value = jar
        .get(binding_name(secure))
        .map(|c| c.value().to_owned())
        .filter(|v| valid_binding(v))
        .unwrap_or_else(|| crate::saml::ids::new_token(32));
    let hash = crate::flows::login::binding_hash(&value);
    let mut c = Cookie::new(binding_name(secure), value);
    c.set_http_only(true);
    c.set_secure(secure);
    c.set_same_site(SameSite::Lax);
    c.set_path("/");
    // No Max-Age: it lives as long as the browser session, like the session cookie.
    (c, hash)
}

/// The value of this browser's binding cookie, if it has one (checked against the
/// pending request's hash by `crate::flows::login`).
pub fn binding_cookie(jar: &CookieJar, secure: bool) -> Option<String> {
    jar.get(binding_name(secure)).map(|c| c.value().to_owned())
}

/// The cookie that removes the session cookie.
pub fn removal_cookie() -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE).path("/").build()
}

/// A request with a live session.
#[derive(Debug, Clone)]
pub struct Authed {
    /// The state-store token (decrypted from the cookie).
    pub token: String,
    /// The session.
    pub session: WebSession,
}

impl Authed {
    /// The session as the services take it.
    pub fn session_ref(&self) -> SessionRef<'_> {
        SessionRef {
            token: &self.token,
            session: &self.session,
        }
    }

    /// The session of a request, if any (no rejection).
    pub async fn optional(parts: &mut Parts, app: &AppState) -> Result<Option<Self>, AppError> {
        Ok(match lookup(parts, app).await? {
            Lookup::Live(authed) => Some(*authed),
            Lookup::Expired { .. } | Lookup::Nothing => None,
        })
    }
}

/// What the cookie of a request leads to.
enum Lookup {
    /// A live session.
    Live(Box<Authed>),
    /// A session that expired; `owner` is its account.
    Expired { owner: uuid::Uuid },
    /// No cookie, or one that never had (or no longer has any trace of) a session.
    Nothing,
}

async fn lookup(parts: &mut Parts, app: &AppState) -> Result<Lookup, AppError> {
    let jar: PrivateCookieJar = match PrivateCookieJar::from_request_parts(parts, app).await {
        Ok(jar) => jar,
        Err(never) => match never {},
    };
    let Some(cookie) = jar.get(SESSION_COOKIE) else {
        return Ok(Lookup::Nothing);
    };
    let token = cookie.value().to_owned();
    if let Some(session) = app.sessions.load(&token, app.clock.now()).await? {
        return Ok(Lookup::Live(Box::new(Authed { token, session })));
    }
    Ok(match app.sessions.expired_owner(&token).await? {
        Some(owner) => Lookup::Expired { owner },
        None => Lookup::Nothing,
    })
}

/// «La sessione è scaduta», with the cookie dropped.
async fn expired(parts: &mut Parts, app: &AppState, kept: bool) -> Response {
    let jar: PrivateCookieJar = match PrivateCookieJar::from_request_parts(parts, app).await {
        Ok(jar) => jar,
        Err(never) => match never {},
    };
    (
        jar.remove(removal_cookie()),
        AppError::session_expired(kept),
    )
        .into_response()
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        match lookup(parts, app).await {
            Ok(Lookup::Live(authed)) => Ok(*authed),
            Ok(Lookup::Expired { .. }) => Err(expired(parts, app, false).await),
            Ok(Lookup::Nothing) if parts.method == Method::GET || parts.method == Method::HEAD => {
                Err(Redirect::to("/").into_response())
            }
            Ok(Lookup::Nothing) => Err(AppError::session_required().into_response()),
            Err(e) => Err(e.into_response()),
        }
    }
}

/// The session, if any, without rejecting anonymous requests.
#[derive(Debug, Clone)]
pub struct MaybeAuthed(pub Option<Authed>);

impl FromRequestParts<AppState> for MaybeAuthed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        Authed::optional(parts, app)
            .await
            .map(MaybeAuthed)
            .map_err(IntoResponse::into_response)
    }
}

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

/// A form POST from the session's own pages: live session, matching CSRF token,
/// then the form `T` (unknown fields ignored, missing ones defaulted by `T`).
#[derive(Debug)]
pub struct SessionForm<T> {
    /// The session.
    pub authed: Authed,
    /// The form.
    pub form: T,
}

impl<T: DeserializeOwned + Send> FromRequest<AppState> for SessionForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, app: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let authed = match lookup(&mut parts, app).await {
            Ok(Lookup::Live(a)) => *a,
            Ok(Lookup::Expired { owner }) => {
                let kept = keep_typed(app, owner, parts.uri.path(), body).await;
                return Err(expired(&mut parts, app, kept).await);
            }
            Ok(Lookup::Nothing) => return Err(AppError::session_required().into_response()),
            Err(e) => return Err(e.into_response()),
        };
        let req = Request::from_parts(parts, body);
        let bytes = axum::body::to_bytes(req.into_body(), MAX_FORM_BYTES)
            .await
            .map_err(|_| AppError::too_large().into_response())?;
        check_csrf(&bytes, &authed.session).map_err(IntoResponse::into_response)?;
        let form = serde_urlencoded::from_bytes::<T>(&bytes)
            .map_err(|e| AppError::bad_request(e.to_string()).into_response())?;
        Ok(Self { authed, form })
    }
}

/// A form posted after its session expired: the fields of that form that are no secret
/// (`super::enablement::draft_fields`), kept for the session's owner. Whether anything
/// was kept; a failure keeps nothing and is logged.
async fn keep_typed(app: &AppState, owner: uuid::Uuid, path: &str, body: axum::body::Body) -> bool {
    let Some((form, allowed)) = super::enablement::draft_fields(path) else {
        return false;
    };
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
        return false;
    };
    let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes) else {
        return false;
    };
    let fields: std::collections::BTreeMap<String, String> = pairs
        .into_iter()
        .filter(|(name, value)| allowed.contains(&name.as_str()) && !value.trim().is_empty())
        .collect();
    if fields.is_empty() {
        return false;
    }
    match app.sessions.keep_draft(owner, form, &fields).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "the fields of an expired session's form were not kept");
            false
        }
    }
}

fn check_csrf(body: &Bytes, session: &WebSession) -> Result<(), AppError> {
    let presented = serde_urlencoded::from_bytes::<CsrfField>(body)
        .map(|f| f.csrf)
        .unwrap_or_default();
    if session.csrf_matches(&presented) {
        Ok(())
    } else {
        Err(AppError::csrf())
    }
}

/// The status of a refused form re-rendered with its errors.
pub fn form_status(locked: bool) -> StatusCode {
    if locked {
        StatusCode::TOO_MANY_REQUESTS
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    }
}
