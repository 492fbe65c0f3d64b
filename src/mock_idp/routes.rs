//! The mock IdP's HTTP side: its router, the SSO endpoints (Redirect and POST) that
//! verify the SP's AuthnRequest and show the login page, the login form that posts the
//! signed Response back, `/slo` on both bindings, and the metadata.

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{MockFederation, MockIdp, Pending, SpLogoutRequest, SpLogoutResponse, TestUser};
use crate::saml::idp::{
    AttributeValue, ReceivedAuthnRequest, ResponseSpec, ResponseStatus, SpInfo, build_response,
    decode_redirect_request, peek_issuer, verify_post_request, verify_redirect_request,
};
use crate::saml::logout::LogoutOutcome;
use crate::saml::{IdpProfile, Level, SamlError, SpidErrorCode, binding};

fn fail(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (status, format!("mock IdP: {msg}\n")).into_response()
}

fn saml_fail(e: SamlError) -> Response {
    let status = if e == SamlError::TooLarge {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::BAD_REQUEST
    };
    fail(status, format!("{} ({})", e, e.code()))
}

#[derive(Template)]
#[template(path = "mock_login.html")]
struct LoginPage<'a> {
    idp_name: &'static str,
    scheme: &'static str,
    sp_entity_id: &'a str,
    requested_level: u8,
    token: &'a str,
    users: &'a [TestUser],
    levels: [u8; 3],
    error_codes: &'a [(u8, &'a str)],
}

/// The header title of its pages.
fn name_of(profile: IdpProfile) -> &'static str {
    match profile {
        IdpProfile::Spid => "Mock SPID IdP",
        IdpProfile::Cie => "Mock CIE IdP",
        IdpProfile::Ficep => "Mock FICEP eIDAS node",
    }
}

fn login_page(
    idp: &MockIdp,
    request: ReceivedAuthnRequest,
    relay_state: Option<String>,
) -> Response {
    // The CIE manual: ForceAuthn is «sempre» true.
    if idp.profile == IdpProfile::Cie && !request.force_authn {
        return fail(
            StatusCode::BAD_REQUEST,
            "a CIE AuthnRequest must carry ForceAuthn=\"true\"",
        );
    }
    let sp_entity_id = request.issuer.clone();
    let level = request.level.number();
    let token = idp.remember(request, relay_state);
    let page = LoginPage {
        idp_name: name_of(idp.profile),
        scheme: match idp.profile {
            IdpProfile::Spid => "SPID",
            IdpProfile::Cie => "CIE",
            IdpProfile::Ficep => "eIDAS",
        },
        sp_entity_id: &sp_entity_id,
        requested_level: level,
        token: &token,
        users: idp.users(),
        levels: [1, 2, 3],
        error_codes: idp.error_codes(),
    };
    match page.render() {
        Ok(html) => ([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response(),
        Err(e) => fail(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn sso_redirect(State(idp): State<Arc<MockIdp>>, RawQuery(q): RawQuery) -> Response {
    let q = q.unwrap_or_default();
    let idp2 = idp.clone();
    let result = tokio::task::spawn_blocking(move || {
        let (xml, relay) = decode_redirect_request(&q, idp2.limits)?;
        let issuer = peek_issuer(&xml, idp2.limits)?;
        let sp = idp2
            .sp(&issuer)
            .ok_or_else(|| SamlError::Mismatch(format!("unknown SP {issuer}")))?;
        let req = verify_redirect_request(&q, &sp.certs, idp2.limits)?;
        Ok::<_, SamlError>((req, relay))
    })
    .await;
    match result {
        Ok(Ok((req, relay))) => login_page(&idp, req, relay),
        Ok(Err(e)) => saml_fail(e),
        Err(e) => fail(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

#[derive(Deserialize)]
struct SsoPost {
    #[serde(rename = "SAMLRequest")]
    saml_request: String,
    #[serde(rename = "RelayState")]
    relay_state: Option<String>,
}

async fn sso_post(
    State(idp): State<Arc<MockIdp>>,
    form: Result<Form<SsoPost>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return fail(StatusCode::BAD_REQUEST, "SAMLRequest missing");
    };
    let relay = form.relay_state.clone();
    let idp2 = idp.clone();
    let result = tokio::task::spawn_blocking(move || {
        let xml = binding::decode_post(&form.saml_request, idp2.limits.max_bytes)?;
        let issuer = peek_issuer(&xml, idp2.limits)?;
        let sp = idp2
            .sp(&issuer)
            .ok_or_else(|| SamlError::Mismatch(format!("unknown SP {issuer}")))?;
        verify_post_request(&xml, &sp.certs, idp2.limits)
    })
    .await;
    match result {
        Ok(Ok(req)) => login_page(&idp, req, relay),
        Ok(Err(e)) => saml_fail(e),
        Err(e) => fail(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// The login form of the mock IdP.
#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
    user: String,
    level: u8,
    outcome: String,
}

async fn do_login(
    State(idp): State<Arc<MockIdp>>,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return fail(StatusCode::BAD_REQUEST, "incomplete login form");
    };
    let Some(pending) = idp.take(&form.token) else {
        return fail(
            StatusCode::BAD_REQUEST,
            "unknown or expired login; start again from the service",
        );
    };
    let Some(sp) = idp.sp(&pending.request.issuer) else {
        return fail(StatusCode::BAD_REQUEST, "unknown SP");
    };
    let Some(acs_url) = sp.acs_url(pending.request.acs_index).map(str::to_owned) else {
        return fail(
            StatusCode::BAD_REQUEST,
            "the AssertionConsumerServiceIndex is not in the SP metadata",
        );
    };
    let status = match response_status(&idp, &form, &sp, &pending) {
        Ok(status) => status,
        Err(refused) => return fail(StatusCode::BAD_REQUEST, refused),
    };
    let idp2 = idp.clone();
    let irt = pending.request.id.clone();
    let sp_id = sp.entity_id.clone();
    let acs = acs_url.clone();
    let built = tokio::task::spawn_blocking(move || {
        build_response(
            &ResponseSpec {
                idp_entity_id: &idp2.entity_id,
                sp_entity_id: &sp_id,
                acs_url: &acs,
                in_response_to: &irt,
                status,
                now: idp2.clock.now(),
                sign_response: true,
                profile: idp2.profile,
            },
            &idp2.key,
        )
    })
    .await;
    let xml = match built {
        Ok(Ok(xml)) => xml,
        Ok(Err(e)) => return fail(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => return fail(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    match crate::httpkit::post_form(
        &acs_url,
        "SAMLResponse",
        &binding::encode_post(&xml),
        pending.relay_state.as_deref().unwrap_or_default(),
    ) {
        Ok(html) => ([(header::CACHE_CONTROL, "no-store")], html).into_response(),
        Err(e) => fail(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// The Response status the login form asks for: the chosen test user's attributes at the
/// chosen level (what the SP's AttributeConsumingService requests), or a SPID anomaly;
/// else why the form is refused.
fn response_status(
    idp: &MockIdp,
    form: &LoginForm,
    sp: &SpInfo,
    pending: &Pending,
) -> Result<ResponseStatus, &'static str> {
    if form.outcome == "success" {
        let Some(user) = idp.users().iter().find(|u| u.id() == form.user) else {
            return Err("unknown test user");
        };
        let Some(level) = Level::from_number(form.level) else {
            return Err("level must be 1, 2 or 3");
        };
        let requested = sp
            .attributes(pending.request.attribute_index)
            .unwrap_or_default();
        let attributes = requested
            .iter()
            .filter_map(|name| {
                user.attribute_from(idp.profile, name)
                    .map(|value| AttributeValue {
                        name: name.clone(),
                        value,
                    })
            })
            .collect();
        Ok(ResponseStatus::Success { level, attributes })
    } else {
        match form.outcome.parse::<u8>() {
            Ok(code) if idp.error_codes().iter().any(|(c, _)| *c == code) => {
                Ok(ResponseStatus::Error(SpidErrorCode(code)))
            }
            _ => Err("unknown outcome"),
        }
    }
}

#[derive(Template)]
#[template(path = "mock_logout.html")]
struct LogoutPage<'a> {
    idp_name: &'static str,
    /// CIE's *Simple Logout*: the IdP session ended, nothing answered.
    simple: bool,
    partial: bool,
    slo_url: &'a str,
}

/// The page after a logout at the IdP.
fn logout_page(idp: &MockIdp, simple: bool, partial: bool) -> Response {
    let slo_url = idp.slo_url();
    let page = LogoutPage {
        idp_name: name_of(idp.profile),
        simple,
        partial,
        slo_url: &slo_url,
    };
    match page.render() {
        Ok(html) => ([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response(),
        Err(e) => fail(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// What `/slo` received, owned so that it can move into `spawn_blocking`.
enum SloMessage {
    Request(SloInput),
    Response(SloInput),
}

/// What `/slo` does with it.
enum SloAnswer {
    /// Send the SP this signed LogoutResponse URL.
    Redirect(String),
    /// The SP's LogoutResponse verified.
    Verified(LogoutOutcome),
}

enum SloInput {
    Redirect(String),
    Post {
        value: String,
        relay_state: Option<String>,
    },
}

async fn handle_slo(idp: Arc<MockIdp>, msg: SloMessage) -> Response {
    let idp2 = idp.clone();
    let now = idp.clock.now();
    let result = tokio::task::spawn_blocking(move || match msg {
        SloMessage::Request(input) => {
            let request = match &input {
                SloInput::Redirect(q) => SpLogoutRequest::Redirect { raw_query: q },
                SloInput::Post { value, relay_state } => SpLogoutRequest::Post {
                    saml_request: value,
                    relay_state: relay_state.as_deref(),
                },
            };
            idp2.answer_sp_logout(request, now).map(SloAnswer::Redirect)
        }
        SloMessage::Response(input) => {
            let response = match &input {
                SloInput::Redirect(q) => SpLogoutResponse::Redirect { raw_query: q },
                SloInput::Post { value, relay_state } => SpLogoutResponse::Post {
                    saml_response: value,
                    relay_state: relay_state.as_deref(),
                },
            };
            idp2.verify_logout_response_from_sp(response, now)
                .map(SloAnswer::Verified)
        }
    })
    .await;
    match result {
        // The LogoutResponse to the SP, always by HTTP-Redirect (like AgID's validator).
        Ok(Ok(SloAnswer::Redirect(location))) => (
            StatusCode::FOUND,
            [
                (header::LOCATION, location),
                (header::CACHE_CONTROL, "no-store".to_owned()),
            ],
        )
            .into_response(),
        Ok(Ok(SloAnswer::Verified(outcome))) => {
            logout_page(&idp, false, outcome == LogoutOutcome::Partial)
        }
        Ok(Err(e)) => saml_fail(e),
        Err(e) => fail(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn slo_redirect(State(idp): State<Arc<MockIdp>>, RawQuery(q): RawQuery) -> Response {
    // CIE (manual, «Logout»): a plain GET ends the IdP session and shows «Logout
    // effettuato con successo»; a LogoutRequest is accepted and never answered.
    if idp.profile == IdpProfile::Cie {
        return logout_page(&idp, true, false);
    }
    let q = q.unwrap_or_default();
    let names: Vec<String> = match binding::parse_query(&q) {
        Ok(params) => params.into_iter().map(|p| p.name).collect(),
        Err(e) => return saml_fail(e),
    };
    let has = |n: &str| names.iter().any(|x| x == n);
    match (has("SAMLRequest"), has("SAMLResponse")) {
        (true, false) => handle_slo(idp, SloMessage::Request(SloInput::Redirect(q))).await,
        (false, true) => handle_slo(idp, SloMessage::Response(SloInput::Redirect(q))).await,
        _ => fail(
            StatusCode::BAD_REQUEST,
            "exactly one of SAMLRequest and SAMLResponse is required",
        ),
    }
}

async fn slo_post(
    State(idp): State<Arc<MockIdp>>,
    form: Result<Form<binding::PostedMessage>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return fail(StatusCode::BAD_REQUEST, "invalid logout form");
    };
    let relay_state = form.relay_state;
    match (form.saml_request, form.saml_response) {
        (Some(value), None) => {
            handle_slo(
                idp,
                SloMessage::Request(SloInput::Post { value, relay_state }),
            )
            .await
        }
        (None, Some(value)) => {
            handle_slo(
                idp,
                SloMessage::Response(SloInput::Post { value, relay_state }),
            )
            .await
        }
        _ => fail(
            StatusCode::BAD_REQUEST,
            "exactly one of SAMLRequest and SAMLResponse is required",
        ),
    }
}

async fn metadata(State(idp): State<Arc<MockIdp>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/samlmetadata+xml; charset=utf-8",
        )],
        idp.metadata.clone(),
    )
        .into_response()
}

/// The mock IdP's router: `/metadata`, `/sso` (GET Redirect, POST), `/login`, `/slo`
/// (GET Redirect, POST).
pub fn router(idp: Arc<MockIdp>) -> Router {
    crate::httpkit::harden(routes(idp))
}

/// The three IdPs of a [`MockFederation`] on one listener: SPID at `/`, CIE under
/// `/cie`, FICEP under `/ficep`.
pub fn federation_router(f: &MockFederation) -> Router {
    let all = routes(f.spid.clone())
        .nest("/cie", routes(f.cie.clone()))
        .nest("/ficep", routes(f.ficep.clone()));
    crate::httpkit::harden(all)
}

fn routes(idp: Arc<MockIdp>) -> Router {
    Router::new()
        .route("/metadata", get(metadata))
        .route("/sso", get(sso_redirect).post(sso_post))
        .route("/login", post(do_login))
        .route("/slo", get(slo_redirect).post(slo_post))
        .route("/healthz", get(|| async { "ok" }))
        .route("/static/{*path}", get(crate::httpkit::static_asset))
        .route("/favicon.ico", get(crate::httpkit::favicon))
        .with_state(idp)
}
