//! SSO handlers. Each one extracts, calls the SSO service once, and maps the result.

use askama::Template;
use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use rand::seq::SliceRandom;
use serde::Deserialize;

use super::{AppError, AppState, RequestId};
use crate::saml::Level;
use crate::saml::request::Binding;
use crate::sso::{LoginSession, LoginStart};

/// Name of the gateway session cookie.
pub const SESSION_COOKIE: &str = "polis_session";

fn render(t: &impl Template, request_id: &str) -> Result<Html<String>, AppError> {
    t.render()
        .map(Html)
        .map_err(|e| AppError::internal(request_id, e.to_string()))
}

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
pub async fn ready(State(app): State<AppState>, RequestId(id): RequestId) -> Response {
    match app.sso.ready().await {
        Ok(()) => "ready".into_response(),
        Err(e) => AppError::from_sso(&id, e).into_response(),
    }
}

/// Query of `GET /login`.
#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    idp: Option<String>,
    level: Option<String>,
    binding: Option<String>,
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

#[derive(Template)]
#[template(path = "post_form.html")]
struct PostForm<'a> {
    action: &'a str,
    field: &'a str,
    value: &'a str,
    relay_state: &'a str,
}

/// Renders the auto-submitting form of the HTTP-POST binding.
pub fn post_form(
    action: &str,
    field: &str,
    value: &str,
    relay_state: &str,
    request_id: &str,
) -> Result<Html<String>, AppError> {
    render(
        &PostForm {
            action,
            field,
            value,
            relay_state,
        },
        request_id,
    )
}

/// `GET /login`: without `idp`, the "Entra con SPID" page; with it, the signed AuthnRequest
/// (302 for HTTP-Redirect, 200 auto-submitting form for HTTP-POST).
pub async fn login(
    State(app): State<AppState>,
    RequestId(id): RequestId,
    query: Result<Query<LoginQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AppError> {
    let Query(q) = query.map_err(|e| AppError::bad_request(&id, e.to_string()))?;
    let level = match q.level.as_deref() {
        None | Some("") => None,
        Some(l) => Some(
            l.parse::<u8>()
                .ok()
                .and_then(Level::from_number)
                .ok_or_else(|| AppError::bad_request(&id, "level must be 1, 2 or 3"))?,
        ),
    };
    let binding = match q.binding.as_deref() {
        None | Some("") => None,
        Some("redirect") => Some(Binding::Redirect),
        Some("post") => Some(Binding::Post),
        Some(_) => {
            return Err(AppError::bad_request(
                &id,
                "binding must be redirect or post",
            ));
        }
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
                    "/login?idp={}&level={}",
                    crate::saml::binding::encode_component(&i.descriptor.entity_id),
                    level.number()
                ),
                entity_id: i.descriptor.entity_id.clone(),
                name: i.display_name().to_owned(),
            })
            .collect();
        // AgID: the IdP list is shown in random order on every render.
        idps.shuffle(&mut rand::rng());
        return Ok(render(
            &LoginPage {
                idps,
                level: level.number(),
            },
            &id,
        )?
        .into_response());
    };
    let start = app
        .sso
        .start_login(&idp, level, binding, chrono::Utc::now())
        .await
        .map_err(|e| AppError::from_sso(&id, e))?;
    Ok(match start {
        // 302 exactly: spid-sp-test treats 303/307 as errors.
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
            post_form(&action, "SAMLRequest", &saml_request, &relay_state, &id)?,
        )
            .into_response(),
    })
}

/// Form posted to the ACS by the IdP.
#[derive(Debug, Deserialize)]
pub struct AcsForm {
    #[serde(rename = "SAMLResponse")]
    saml_response: String,
    #[serde(rename = "RelayState")]
    relay_state: Option<String>,
}

fn form_error(id: &str, e: FormRejection) -> AppError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::too_large(id)
    } else {
        AppError::bad_request(id, e.body_text())
    }
}

/// A browser-session cookie; the server-side record expires after `sso.session_ttl_seconds`.
fn session_cookie(token: String, secure: bool) -> Cookie<'static> {
    let mut c = Cookie::new(SESSION_COOKIE, token);
    c.set_http_only(true);
    c.set_secure(secure);
    c.set_same_site(SameSite::Lax);
    c.set_path("/");
    c
}

/// `POST /acs`: validates the Response; on success opens the session and sends the
/// person home (303 → 200 page); on failure an error page with a 4xx.
/// Never relies on cookies: the IdP's POST is cross-site.
pub async fn acs(
    State(app): State<AppState>,
    RequestId(id): RequestId,
    jar: CookieJar,
    form: Result<Form<AcsForm>, FormRejection>,
) -> Result<(CookieJar, Redirect), AppError> {
    let Form(form) = form.map_err(|e| form_error(&id, e))?;
    let (token, _session) = app
        .sso
        .consume_response(
            &form.saml_response,
            form.relay_state.as_deref(),
            &id,
            chrono::Utc::now(),
        )
        .await
        .map_err(|e| AppError::from_sso(&id, e))?;
    let cookie = session_cookie(token, app.secure_cookies);
    Ok((jar.add(cookie), Redirect::to("/")))
}

struct SessionView {
    display_name: String,
    level: u8,
    idp_name: String,
    rows: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    session: Option<SessionView>,
}

fn attribute_label(name: &str) -> &str {
    match name {
        "spidCode" => "Codice SPID",
        "name" => "Nome",
        "familyName" => "Cognome",
        "fiscalNumber" => "Codice fiscale",
        "dateOfBirth" => "Data di nascita",
        "placeOfBirth" => "Luogo di nascita",
        "countyOfBirth" => "Provincia di nascita",
        "gender" => "Sesso",
        "email" => "E-mail",
        "mobilePhone" => "Cellulare",
        "address" => "Indirizzo",
        "idCard" => "Documento di identità",
        "expirationDate" => "Scadenza identità",
        "digitalAddress" => "Domicilio digitale",
        other => other,
    }
}

fn view(app: &AppState, s: &LoginSession) -> SessionView {
    let display_name = match (s.attribute("name"), s.attribute("familyName")) {
        (Some(n), Some(f)) => format!("{n} {f}"),
        _ => s.fiscal_code().unwrap_or_else(|| "utente SPID".to_owned()),
    };
    let idp_name = app
        .sso
        .federation()
        .get(&s.idp_entity_id)
        .map(|i| i.display_name().to_owned())
        .unwrap_or_else(|| s.idp_entity_id.clone());
    let mut rows: Vec<(String, String)> = s
        .attributes
        .iter()
        .map(|(k, v)| (attribute_label(k).to_owned(), v.join(", ")))
        .collect();
    rows.sort();
    SessionView {
        display_name,
        level: s.level.number(),
        idp_name,
        rows,
    }
}

/// `GET /`: who is logged in, or the way to log in.
pub async fn home(
    State(app): State<AppState>,
    RequestId(id): RequestId,
    jar: CookieJar,
) -> Result<Response, AppError> {
    let session = match jar.get(SESSION_COOKIE) {
        Some(c) => app
            .sso
            .session(c.value())
            .await
            .map_err(|e| AppError::from_sso(&id, e))?,
        None => None,
    };
    let page = HomePage {
        session: session.as_ref().map(|s| view(&app, s)),
    };
    Ok(([(header::CACHE_CONTROL, "no-store")], render(&page, &id)?).into_response())
}

/// `POST /logout`: ends the gateway session locally.
pub async fn logout(
    State(app): State<AppState>,
    RequestId(id): RequestId,
    headers: HeaderMap,
    jar: CookieJar,
) -> Result<(CookieJar, Redirect), AppError> {
    // Same-origin form only: a cross-site POST cannot log people out.
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site")
    {
        return Err(AppError::bad_request(&id, "cross-site logout refused"));
    }
    if let Some(c) = jar.get(SESSION_COOKIE) {
        app.sso
            .end_session(c.value())
            .await
            .map_err(|e| AppError::from_sso(&id, e))?;
    }
    Ok((
        jar.remove(Cookie::build(SESSION_COOKIE).path("/")),
        Redirect::to("/"),
    ))
}
