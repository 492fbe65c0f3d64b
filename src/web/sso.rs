//! SSO handlers. Each one extracts, calls the SSO service once, and maps the result.

use askama::Template;
use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::{CookieJar, PrivateCookieJar};
use rand::seq::SliceRandom;
use serde::Deserialize;

use super::enablement::Empty;
use super::session::{
    MaybeAuthed, SessionForm, browser_matches, login_binding, removal_cookie, session_cookie,
};
use super::{AppError, AppState, RequestId, render};
use crate::accounts::EnablementState;
use crate::saml::Level;
use crate::saml::logout::LogoutOutcome;
use crate::saml::request::Binding;
use crate::session::ParkedLogin;
use crate::sso::{LoginStart, SloMessage};

/// `GET /metadata`: the signed SP metadata.
pub async fn metadata(State(app): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/samlmetadata+xml; charset=utf-8",
        )],
        app.metadata.as_str().to_owned(),
    )
        .into_response()
}

/// `GET /readyz`: 200 when the state store answers, 503 otherwise.
pub async fn ready(State(app): State<AppState>) -> Response {
    match app.sso.ready().await {
        Ok(()) => "ready".into_response(),
        Err(e) => AppError::from_sso(e).into_response(),
    }
}

/// Query of `GET /login`.
#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    idp: Option<String>,
    level: Option<String>,
    binding: Option<String>,
    /// Where to continue after the login: a local path (an OIDC authorization waiting).
    next: Option<String>,
}

/// A `next` target: a local path only (no scheme, no `//`, no backslash), so the
/// login cannot be turned into an open redirect.
pub fn local_path(next: &str) -> bool {
    next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && next.len() <= 512
        && !next.chars().any(char::is_control)
}

struct IdpLink {
    entity_id: String,
    name: String,
    href: String,
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    idps: Vec<IdpLink>,
    level: u8,
}

/// Sends a signed SAML message to the browser: 302 exactly for HTTP-Redirect
/// (spid-sp-test treats 303/307 as errors), an auto-submitting form for HTTP-POST with
/// `field` (`SAMLRequest` or `SAMLResponse`).
fn send_saml(start: LoginStart, field: &str) -> Result<Response, AppError> {
    Ok(match start {
        LoginStart::Redirect(url) => (
            StatusCode::FOUND,
            [
                (header::LOCATION, url),
                (header::CACHE_CONTROL, "no-store".to_owned()),
            ],
        )
            .into_response(),
        LoginStart::Post {
            action,
            saml_request,
            relay_state,
        } => (
            [(header::CACHE_CONTROL, "no-store")],
            crate::httpkit::post_form(&action, field, &saml_request, &relay_state)
                .map_err(|e| AppError::internal(e.to_string()))?,
        )
            .into_response(),
    })
}

/// `GET /login`: without `idp`, the "Entra con SPID" page; with it, the signed AuthnRequest
/// (302 for HTTP-Redirect, 200 auto-submitting form for HTTP-POST), bound to this
/// browser by the login-binding cookie (see [`super::session::login_binding`]).
pub async fn login(
    State(app): State<AppState>,
    jar: CookieJar,
    query: Result<Query<LoginQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AppError> {
    let Query(q) = query.map_err(|e| AppError::bad_request(e.to_string()))?;
    let level = match q.level.as_deref() {
        None | Some("") => None,
        Some(l) => Some(
            l.parse::<u8>()
                .ok()
                .and_then(Level::from_number)
                .ok_or_else(|| AppError::bad_request("level must be 1, 2 or 3"))?,
        ),
    };
    let binding = match q.binding.as_deref() {
        None | Some("") => None,
        Some("redirect") => Some(Binding::Redirect),
        Some("post") => Some(Binding::Post),
        Some(_) => {
            return Err(AppError::bad_request("binding must be redirect or post"));
        }
    };
    let next = match q.next.filter(|n| !n.is_empty()) {
        Some(n) if local_path(&n) => Some(n),
        Some(_) => return Err(AppError::bad_request("next must be a local path")),
        None => None,
    };
    let Some(idp) = q.idp.filter(|s| !s.is_empty()) else {
        let level = level.unwrap_or(app.sso.settings().default_level);
        let mut idps: Vec<IdpLink> = app
            .sso
            .federation()
            .list()
            .into_iter()
            .map(|i| IdpLink {
                href: format!(
                    "/login?idp={}&level={}{}",
                    crate::saml::binding::encode_component(&i.descriptor.entity_id),
                    level.number(),
                    next.as_deref().map_or_else(String::new, |n| format!(
                        "&next={}",
                        crate::saml::binding::encode_component(n)
                    ))
                ),
                entity_id: i.descriptor.entity_id.clone(),
                name: i.display_name().to_owned(),
            })
            .collect();
        // AgID: the IdP list is shown in random order on every render.
        idps.shuffle(&mut rand::rng());
        return Ok(render(&LoginPage {
            idps,
            level: level.number(),
        })?
        .into_response());
    };
    let (cookie, browser) = login_binding(&jar, app.secure_cookies);
    let start = app
        .sso
        .start_login(&idp, level, binding, next, browser, chrono::Utc::now())
        .await?;
    Ok((jar.add(cookie), send_saml(start, "SAMLRequest")?).into_response())
}

/// Form posted to the ACS by the IdP.
#[derive(Debug, Deserialize)]
pub struct AcsForm {
    #[serde(rename = "SAMLResponse")]
    saml_response: String,
    #[serde(rename = "RelayState")]
    relay_state: Option<String>,
}

fn form_error(e: FormRejection) -> AppError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::too_large()
    } else {
        AppError::bad_request(e.body_text())
    }
}

/// `POST /acs`: validates the Response and maps the person to their account, then
/// parks the verified login and sends the browser (303) to `/login/complete`, which
/// opens the session only in the browser that started the login. On failure an error
/// page with a 4xx, no account written and no cookie. Never reads or sets cookies: the
/// IdP's POST is cross-site, and whoever posts a Response is not yet known to be the
/// person who logged in.
pub async fn acs(
    State(app): State<AppState>,
    RequestId(id): RequestId,
    form: Result<Form<AcsForm>, FormRejection>,
) -> Result<Redirect, AppError> {
    let Form(form) = form.map_err(form_error)?;
    let now = chrono::Utc::now();
    let verified = app
        .sso
        .consume_response(&form.saml_response, form.relay_state.as_deref(), &id, now)
        .await?;
    let account = app.enablement.login(&verified.login, now).await?;
    // A waiting OIDC authorization decides itself what an account in enablement gets.
    let next = match verified.return_to.filter(|n| local_path(n)) {
        Some(n) => n,
        None if account.enablement_state == EnablementState::Enabled => "/".to_owned(),
        None => "/abilitazione".to_owned(),
    };
    let parked = ParkedLogin {
        login: verified.login,
        account_id: account.id,
        next,
        browser: verified.browser,
    };
    let token = app.sessions.park(&parked).await?;
    Ok(Redirect::to(&format!("/login/complete?t={token}")))
}

/// Query of `GET /login/complete`.
#[derive(Debug, Deserialize)]
pub struct CompleteQuery {
    t: Option<String>,
}

/// `GET /login/complete`: opens the session of a parked login, in the browser that
/// started it only (its login-binding cookie, sent by SameSite=Lax on this same-site
/// navigation). A browser without that cookie gets a page and nothing opens. A session
/// of another person already open in this browser is ended first (tokens revoked,
/// clients told).
pub async fn login_complete(
    State(app): State<AppState>,
    jar: PrivateCookieJar,
    plain: CookieJar,
    MaybeAuthed(authed): MaybeAuthed,
    Query(q): Query<CompleteQuery>,
) -> Result<Response, AppError> {
    let parked = match q.t.as_deref() {
        Some(t) => app.sessions.take_parked(t).await?,
        None => None,
    };
    let Some(parked) = parked else {
        return Err(AppError::login_not_pending());
    };
    if !browser_matches(&plain, &parked.browser, app.secure_cookies) {
        return Err(AppError::login_other_browser());
    }
    let now = chrono::Utc::now();
    if let Some(old) = authed
        && old.session.account_id != parked.account_id
    {
        super::oidc::close_session(&app, &old).await?;
    }
    let (token, _) = app
        .sessions
        .open(parked.login, parked.account_id, now)
        .await?;
    Ok((
        jar.add(session_cookie(token, app.secure_cookies)),
        Redirect::to(&parked.next),
    )
        .into_response())
}

/// `POST /logout`: ends the gateway session, revokes its OIDC tokens and tells the
/// clients by back-channel logout (CSRF-checked form).
pub async fn logout(
    State(app): State<AppState>,
    jar: PrivateCookieJar,
    f: SessionForm<Empty>,
) -> Result<Response, AppError> {
    super::oidc::close_session(&app, &f.authed).await?;
    let jar = jar.remove(removal_cookie());
    // Local session first (closed above), then SPID single logout at the IdP.
    let next = app
        .sso
        .start_logout(&f.authed.session.login, chrono::Utc::now())
        .await;
    Ok(match next {
        Ok(Some(start)) => (jar, send_saml(start, "SAMLRequest")?).into_response(),
        Ok(None) => (jar, Redirect::to("/")).into_response(),
        Err(e) => {
            // The session is closed anyway; the IdP was not reached.
            tracing::warn!(code = e.code(), error = %e, "SP-initiated SPID logout not sent");
            (jar, Redirect::to("/")).into_response()
        }
    })
}

#[derive(Template)]
#[template(path = "logged_out.html")]
struct LoggedOutPage {
    title: &'static str,
    message: &'static str,
    partial: bool,
}

/// Form posted to `/slo` (HTTP-POST binding).
#[derive(Debug, Deserialize)]
pub struct SloForm {
    #[serde(rename = "SAMLRequest")]
    saml_request: Option<String>,
    #[serde(rename = "SAMLResponse")]
    saml_response: Option<String>,
    #[serde(rename = "RelayState")]
    relay_state: Option<String>,
}

/// `GET /slo` (HTTP-Redirect): a LogoutResponse to our request, or an IdP-initiated
/// LogoutRequest. Signatures are verified over the raw query as received.
pub async fn slo_get(
    State(app): State<AppState>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Result<Response, AppError> {
    let raw = raw.unwrap_or_default();
    let names: Vec<String> = crate::saml::binding::parse_query(&raw)
        .map_err(|e| AppError::from_sso(e.into()))?
        .into_iter()
        .map(|p| p.name)
        .collect();
    let message = SloMessage::Redirect { raw_query: &raw };
    if names.iter().any(|n| n == "SAMLResponse") {
        logout_finished(&app, message).await
    } else if names.iter().any(|n| n == "SAMLRequest") {
        idp_logout(&app, message).await
    } else {
        Err(AppError::bad_request(
            "SAMLRequest or SAMLResponse required",
        ))
    }
}

/// `POST /slo` (HTTP-POST).
pub async fn slo_post(
    State(app): State<AppState>,
    form: Result<Form<SloForm>, FormRejection>,
) -> Result<Response, AppError> {
    let Form(form) = form.map_err(form_error)?;
    let relay_state = form.relay_state.as_deref();
    match (&form.saml_response, &form.saml_request) {
        (Some(value), None) => logout_finished(&app, SloMessage::Post { value, relay_state }).await,
        (None, Some(value)) => idp_logout(&app, SloMessage::Post { value, relay_state }).await,
        _ => Err(AppError::bad_request(
            "exactly one of SAMLRequest or SAMLResponse",
        )),
    }
}

async fn logout_finished(app: &AppState, message: SloMessage<'_>) -> Result<Response, AppError> {
    let outcome = app.sso.finish_logout(message, chrono::Utc::now()).await?;
    let page = match outcome {
        LogoutOutcome::Success => LoggedOutPage {
            title: "Sei uscito",
            message: "Sei uscito da Istanze OnLine e dalla sessione SPID.",
            partial: false,
        },
        LogoutOutcome::Partial => LoggedOutPage {
            title: "Uscita parziale",
            message: "Sei uscito da Istanze OnLine, ma il gestore di identità non ha potuto chiudere tutte le sessioni SPID: chiudi il browser per completare l'uscita.",
            partial: true,
        },
    };
    Ok(([(header::CACHE_CONTROL, "no-store")], render(&page)?).into_response())
}

/// IdP-initiated logout: ends the session of that login (tokens revoked, clients
/// told), then answers Success — also when no session existed (RT).
async fn idp_logout(app: &AppState, message: SloMessage<'_>) -> Result<Response, AppError> {
    let now = chrono::Utc::now();
    let request = app.sso.verify_idp_logout(message, now).await?;
    let token = app
        .sessions
        .token_for_login(&request.issuer, &request.name_id)
        .await?;
    if let Some(token) = token
        && let Some(session) = app.sessions.load(&token, now).await?
    {
        let authed = super::session::Authed { token, session };
        super::oidc::close_session(app, &authed).await?;
    }
    let answer = app.sso.logout_response(&request, now)?;
    send_saml(answer, "SAMLResponse")
}
