//! SSO handlers: metadata, the login page and start, the ACS, `/login/complete`,
//! «Esci» and `/slo`. Each one extracts, makes one service call (the SSO service, or
//! the login and logout use cases of `crate::flows`) and maps the result; errors go
//! into `AppError` with `?`.

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
    Authed, MaybeAuthed, SessionForm, binding_cookie, login_binding, removal_cookie, session_cookie,
};
use super::{AppError, AppState, RequestId, render};
use crate::flows::FlowError;
pub use crate::flows::login::local_path;
use crate::saml::logout::LogoutOutcome;
use crate::saml::request::Binding;
use crate::saml::{IdpProfile, Level};
use crate::sso::{LoginStart, SloMessage, SsoError};
use crate::state::StateError;

/// `GET /metadata`: the signed SP metadata.
pub async fn metadata(State(app): State<AppState>) -> Response {
    metadata_response(&app.metadata)
}

/// `GET /metadata/cie`: the signed CIE SP metadata; 404 unless `[cie]` is enabled.
pub async fn cie_metadata(State(app): State<AppState>) -> Result<Response, AppError> {
    let md = app.cie_metadata.as_ref().ok_or_else(AppError::not_found)?;
    Ok(metadata_response(md))
}

fn metadata_response(xml: &str) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/samlmetadata+xml; charset=utf-8",
        )],
        xml.to_owned(),
    )
        .into_response()
}

/// `GET /readyz`: 200 when the state store and the account database answer, 503
/// otherwise (`/healthz` stays a liveness check).
pub async fn ready(State(app): State<AppState>) -> Result<&'static str, AppError> {
    app.sso.ready().await?;
    app.enablement.ready().await?;
    Ok("ready")
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

/// What `GET /login` asks, its values checked.
struct LoginAsk {
    idp: Option<String>,
    level: Option<Level>,
    binding: Option<Binding>,
    next: Option<String>,
}

impl TryFrom<LoginQuery> for LoginAsk {
    type Error = AppError;

    fn try_from(q: LoginQuery) -> Result<Self, AppError> {
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
            Some(_) => return Err(AppError::bad_request("binding must be redirect or post")),
        };
        let next = match q.next.filter(|n| !n.is_empty()) {
            Some(n) if local_path(&n) => Some(n),
            Some(_) => return Err(AppError::bad_request("next must be a local path")),
            None => None,
        };
        Ok(Self {
            idp: q.idp.filter(|s| !s.is_empty()),
            level,
            binding,
            next,
        })
    }
}

/// Which button of the login page an IdP belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoginGroup {
    /// «Entra con SPID»: one entry per IdP.
    Spid,
    /// «Entra con CIE»: the CIE-profile IdP.
    Cie,
    /// «Login with eIDAS»: the FICEP-profile IdP (the Italian eIDAS node).
    Eidas,
}

/// The button an IdP goes under: its profile (a CIE IdP under «Entra con CIE», FICEP
/// under «Login with eIDAS», every SPID IdP in the «Entra con SPID» list).
fn login_group(idp: &crate::federation::Idp) -> LoginGroup {
    match idp.profile {
        IdpProfile::Spid => LoginGroup::Spid,
        IdpProfile::Cie => LoginGroup::Cie,
        IdpProfile::Ficep => LoginGroup::Eidas,
    }
}

/// The IdP logos that ship with AgID's SPID button (static/vendor/spid-sp-access-button),
/// by entityID; an IdP not listed shows its name.
const SPID_LOGOS: &[(&str, &str)] = &[
    ("https://loginspid.aruba.it", "arubaid"),
    ("https://id.eht.eu", "etnaid"),
    ("https://loginspid.infocamere.it", "infocamereid"),
    ("https://identity.infocert.it", "infocertid"),
    ("https://spid.intesa.it", "intesaid"),
    ("https://idp.intesigroup.com", "intesigroupspid"),
    ("https://id.lepida.it/idp/shibboleth", "lepidaid"),
    ("https://idp.namirialtsp.com/idp", "namirialid"),
    ("https://posteid.poste.it", "posteid"),
    ("https://identity.sieltecloud.it", "sielteid"),
    ("https://spid.register.it", "spiditalia"),
    ("https://spid.teamsystem.com/idp", "teamsystemid"),
    (
        "https://login.id.tim.it/affwebservices/public/saml2sso",
        "timid",
    ),
];

fn spid_logo(entity_id: &str) -> Option<String> {
    SPID_LOGOS
        .iter()
        .find(|(id, _)| *id == entity_id)
        .map(|(_, name)| format!("/static/vendor/spid-sp-access-button/img/spid-idp-{name}.svg"))
}

struct IdpLink {
    entity_id: String,
    name: String,
    href: String,
    /// The official logo, when AgID's button ships one for this IdP.
    logo: Option<String>,
    /// Its Responses are failing on its side now: a notice beside it.
    degraded: bool,
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    /// The SPID IdPs, in random order.
    idps: Vec<IdpLink>,
    /// The CIE IdP, when one is trusted.
    cie: Option<IdpLink>,
    /// The FICEP (eIDAS) IdP, when one is trusted.
    eidas: Option<IdpLink>,
    level: u8,
}

impl LoginPage {
    /// The trusted IdPs, each linking to `/login` with the level (and `next`) asked,
    /// under its button; the SPID ones in random order on every render (AgID).
    fn new(app: &AppState, level: Level, next: Option<&str>) -> Self {
        let next = next.map_or_else(String::new, |n| {
            format!("&next={}", crate::saml::binding::encode_component(n))
        });
        let mut page = Self {
            idps: Vec::new(),
            cie: None,
            eidas: None,
            level: level.number(),
        };
        for i in app.sso.federation().list() {
            let entity_id = i.descriptor.entity_id.clone();
            let link = IdpLink {
                href: format!(
                    "/login?idp={}&level={}{next}",
                    crate::saml::binding::encode_component(&entity_id),
                    level.number(),
                ),
                logo: spid_logo(&entity_id),
                name: i.display_name().to_owned(),
                degraded: app.sso.idp_degraded(&entity_id),
                entity_id,
            };
            match login_group(&i) {
                LoginGroup::Spid => page.idps.push(link),
                LoginGroup::Cie => page.cie = page.cie.take().or(Some(link)),
                LoginGroup::Eidas => page.eidas = page.eidas.take().or(Some(link)),
            }
        }
        page.idps.shuffle(&mut rand::rng());
        page
    }
}

/// Sends a signed SAML message to the browser: 302 exactly for HTTP-Redirect
/// (spid-sp-test treats 303/307 as errors), an auto-submitting form for HTTP-POST with
/// `field` (`SAMLRequest` or `SAMLResponse`).
pub(super) fn send_saml(start: LoginStart, field: &str) -> Result<Response, AppError> {
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
    let ask = LoginAsk::try_from(q)?;
    let Some(idp) = ask.idp else {
        let level = ask.level.unwrap_or(app.sso.settings().default_level);
        let page = LoginPage::new(&app, level, ask.next.as_deref());
        return Ok(render(&page)?.into_response());
    };
    // A new login: it waits while the gateway is saturated (those under way go on).
    app.admission
        .admit_new_login()
        .map_err(AppError::saturated)?;
    let _in_flight = app.admission.enter();
    let (cookie, browser) = login_binding(&jar, app.secure_cookies);
    let start = app
        .sso
        .start_login(&idp, ask.level, ask.binding, ask.next, browser)
        .await
        .map_err(|e| match e {
            SsoError::State(StateError::Full(_)) => {
                AppError::saturated(app.admission.refuse("pending_cap"))
            }
            e => e.into(),
        })?;
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
    // Under way (its pending request exists): counted, never refused by admission.
    let _in_flight = app.admission.enter();
    let parked = app
        .login
        .accept_response(&form.saml_response, form.relay_state.as_deref(), &id)
        .await?;
    Ok(Redirect::to(&format!("/login/complete?t={parked}")))
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
    let binding = binding_cookie(&plain, app.secure_cookies);
    let opened = app
        .login
        .open_in_browser(
            q.t.as_deref(),
            binding.as_deref(),
            authed.as_ref().map(Authed::session_ref),
        )
        .await?;
    Ok((
        jar.add(session_cookie(opened.token, app.secure_cookies)),
        Redirect::to(&opened.next),
    )
        .into_response())
}

/// `POST /logout`: ends the gateway session, revokes its OIDC tokens and tells the
/// clients by back-channel logout (CSRF-checked form), then sends the browser to the
/// IdP's single logout (or home when there is none).
pub async fn logout(
    State(app): State<AppState>,
    jar: PrivateCookieJar,
    f: SessionForm<Empty>,
) -> Result<Response, AppError> {
    let next = app.logout.logout(f.authed.session_ref(), None).await?;
    let jar = jar.remove(removal_cookie());
    Ok(match next {
        Some(start) => (jar, send_saml(start, "SAMLRequest")?).into_response(),
        None => (jar, Redirect::to("/")).into_response(),
    })
}

#[derive(Template)]
#[template(path = "logged_out.html")]
struct LoggedOutPage {
    title: &'static str,
    message: &'static str,
    partial: bool,
}

/// `GET /slo` (HTTP-Redirect): a LogoutResponse to our request, or an IdP-initiated
/// LogoutRequest. Signatures are verified over the raw query as received.
pub async fn slo_get(
    State(app): State<AppState>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Result<Response, AppError> {
    let raw = raw.unwrap_or_default();
    let names: Vec<String> = crate::saml::binding::parse_query(&raw)
        .map_err(crate::sso::SsoError::from)?
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
    form: Result<Form<crate::saml::binding::PostedMessage>, FormRejection>,
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
    let done = app.sso.finish_logout(message).await?;
    // Post/Redirect/Get: the LogoutResponse is consumed once, so a reload of its URL
    // would be a replay (403); the page has its own address and can be reloaded.
    // A logout an OpenID Connect client asked for returns to it; a partial one stays
    // here, where the person is told to close the browser.
    Ok(Redirect::to(match (done.outcome, done.after.as_deref()) {
        (LogoutOutcome::Success, Some(after)) => after,
        (LogoutOutcome::Success, None) => "/uscito",
        (LogoutOutcome::Partial, _) => "/uscito?parziale=1",
    })
    .into_response())
}

/// What `/uscito` reads from its query.
#[derive(Debug, Default, Deserialize)]
pub struct LoggedOutQuery {
    #[serde(default)]
    parziale: Option<String>,
}

/// `GET /uscito`: the page after a single logout (no session needed, reloadable).
pub async fn logged_out(Query(q): Query<LoggedOutQuery>) -> Result<Response, AppError> {
    let page = if q.parziale.is_some() {
        LoggedOutPage {
            title: "Uscita parziale",
            message: "Sei uscito da Istanze OnLine, ma il gestore di identità non ha potuto chiudere tutte le sessioni SPID: chiudi il browser per completare l'uscita.",
            partial: true,
        }
    } else {
        LoggedOutPage {
            title: "Sei uscito",
            message: "Sei uscito da Istanze OnLine e dalla sessione SPID.",
            partial: false,
        }
    };
    Ok(([(header::CACHE_CONTROL, "no-store")], render(&page)?).into_response())
}

/// IdP-initiated logout: ends the session of that login (tokens revoked, clients
/// told), then answers Success — also when no session existed (RT).
async fn idp_logout(app: &AppState, message: SloMessage<'_>) -> Result<Response, AppError> {
    let answer = app.logout.idp_logout(message).await?;
    send_saml(answer, "SAMLResponse")
}

impl From<FlowError> for AppError {
    fn from(e: FlowError) -> Self {
        match e {
            FlowError::Sso(e) => e.into(),
            FlowError::Enablement(e) => e.into(),
            FlowError::State(e) => e.into(),
            FlowError::Oidc(e) => e.into(),
            FlowError::LoginNotPending => Self::login_not_pending(),
            FlowError::OtherBrowser => Self::login_other_browser(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_spid_idps_have_a_vendored_logo_and_others_none() {
        assert_eq!(
            spid_logo("https://posteid.poste.it").as_deref(),
            Some("/static/vendor/spid-sp-access-button/img/spid-idp-posteid.svg")
        );
        assert_eq!(spid_logo("http://localhost:8090"), None);
        // Every logo the table names is one the static allowlist serves.
        for (id, _) in SPID_LOGOS {
            let url = spid_logo(id).unwrap_or_default();
            let path = url.trim_start_matches("/static/");
            assert!(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("static")
                    .join(path)
                    .is_file(),
                "{url}"
            );
        }
    }
}
