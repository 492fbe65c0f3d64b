//! OpenID Connect endpoints. Thin: each handler extracts (query, form, client
//! credentials, the session), makes one provider call and maps the result: JSON, a
//! redirect or a page. Errors of the token-style endpoints are RFC 6749 JSON
//! (`error`, `error_description`) with `Cache-Control: no-store`; authorization errors
//! go back to the client once its redirect URI is trusted, and to an error page before.
//! The adapters at the end give the provider the accounts, the CP check and the
//! session it must not import.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::PrivateCookieJar;
use base64::Engine as _;
use chrono::Utc;
use serde::Deserialize;
use uuid::Uuid;

use super::session::{Authed, MaybeAuthed, SessionForm};
use super::{AppError, AppState};
use crate::accounts::Account;
use crate::enablement::EnablementError;
use crate::oidc::authorize::{
    AuthorizeFailure, AuthorizeParams, CpError, ResumeError, SessionFacts,
};
use crate::oidc::clients::{ClientError, Presented};
use crate::oidc::logout::{LogoutDecision, LogoutParams};
use crate::oidc::provider::{AccountSource, CpConfirmation, OidcError, Provider, RedirectError};
use crate::oidc::token::TokenParams;
use crate::state::StateError;

fn provider(app: &AppState) -> Result<Arc<Provider>, AppError> {
    app.oidc.clone().ok_or_else(AppError::not_found)
}

/// JSON with `Cache-Control: no-store` (tokens, introspection).
fn no_store_json(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        Json(body),
    )
        .into_response()
}

fn oauth_status(e: &OidcError) -> StatusCode {
    match e {
        OidcError::Client(_) | OidcError::InvalidToken(_) => StatusCode::UNAUTHORIZED,
        OidcError::State(StateError::Unavailable(_)) | OidcError::Busy(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        OidcError::Keys(_) | OidcError::State(_) | OidcError::Internal(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        _ => StatusCode::BAD_REQUEST,
    }
}

fn oauth_error(e: &OidcError) -> Response {
    let mut resp = no_store_json(
        oauth_status(e),
        serde_json::json!({ "error": e.oauth_code(), "error_description": e.to_string() }),
    );
    let challenge = match e {
        OidcError::Client(_) => Some("Basic realm=\"polis-gateway\""),
        OidcError::InvalidToken(_) => Some("Bearer error=\"invalid_token\""),
        _ => None,
    };
    if let Some(challenge) = challenge {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static(challenge),
        );
    }
    resp.extensions_mut().insert(super::error::ErrorInfo {
        code: e.code(),
        detail: e.to_string(),
    });
    resp
}

/// An RFC 6749 JSON answer: the value, or the error.
fn oauth_json(result: Result<serde_json::Value, OidcError>) -> Response {
    match result {
        Ok(v) => no_store_json(StatusCode::OK, v),
        Err(e) => oauth_error(&e),
    }
}

fn redirect_error(app_issuer: &str, e: RedirectError) -> Response {
    let Ok(mut url) = reqwest::Url::parse(&e.redirect_uri) else {
        return oauth_error(&e.error);
    };
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("error", e.error.oauth_code());
        q.append_pair("error_description", &e.error.to_string());
        if let Some(state) = &e.state {
            q.append_pair("state", state);
        }
        q.append_pair("iss", app_issuer);
    }
    let mut resp = Redirect::to(url.as_str()).into_response();
    resp.extensions_mut().insert(super::error::ErrorInfo {
        code: e.error.code(),
        detail: e.error.to_string(),
    });
    resp
}

/// A page with `Cache-Control: no-store`.
fn no_store_page(status: StatusCode, page: &impl askama::Template) -> Result<Response, AppError> {
    let html = super::render(page)?;
    Ok((status, [(header::CACHE_CONTROL, "no-store")], html).into_response())
}

/// `GET /.well-known/openid-configuration`.
pub async fn discovery(State(app): State<AppState>) -> Result<Response, AppError> {
    Ok(Json(provider(&app)?.discovery()).into_response())
}

/// `GET /oidc/jwks`.
pub async fn jwks(State(app): State<AppState>) -> Result<Response, AppError> {
    let p = provider(&app)?;
    Ok((
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(p.jwks()),
    )
        .into_response())
}

/// `GET /oidc/authorize`: validates, parks the request, continues at the resume step.
pub async fn authorize(
    State(app): State<AppState>,
    query: Result<Query<AuthorizeParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AppError> {
    let p = provider(&app)?;
    let Ok(Query(params)) = query else {
        return Err(OidcError::Untrusted("malformed query".into()).into());
    };
    match p.authorize(&params, app.sso.settings().default_level).await {
        Ok(resume) => Ok(Redirect::to(&resume).into_response()),
        Err(AuthorizeFailure::Page(e)) => Err(e.into()),
        Err(AuthorizeFailure::Redirect(e)) => Ok(redirect_error(&p.settings().issuer, e)),
    }
}

/// Query of the resume step and the CP page.
#[derive(Debug, Deserialize)]
pub struct ResumeQuery {
    id: String,
}

/// What the browser's session brings to an authorization.
fn session_facts(app: &AppState, authed: &Authed) -> SessionFacts {
    let s = &authed.session;
    let absolute = chrono::Duration::from_std(app.sessions.settings().absolute_timeout)
        .unwrap_or(chrono::Duration::zero());
    SessionFacts {
        sid: s.sid.clone(),
        account_id: s.account_id,
        level: s.login.level,
        scheme: s.login.scheme,
        auth_time: s.login.authenticated_at,
        cp_at: s.cp_at,
        session_ends_at: s.created_at + absolute,
    }
}

/// `GET /oidc/authorize/resume`: log in (again) if needed, the abilitazione if the
/// client requires it, the CP if asked, then the code.
pub async fn resume(
    State(app): State<AppState>,
    MaybeAuthed(authed): MaybeAuthed,
    Query(q): Query<ResumeQuery>,
) -> Result<Response, AppError> {
    let p = provider(&app)?;
    let facts = authed.as_ref().map(|a| session_facts(&app, a));
    let accounts = Accounts(&app);
    match p.resume(&q.id, facts.as_ref(), &accounts).await {
        Ok(next) => Ok(Redirect::to(&next).into_response()),
        Err(ResumeError::Page(e)) => Err(e.into()),
        Err(ResumeError::Account(e)) => Err(e.into()),
        Err(ResumeError::Redirect(e)) => Ok(redirect_error(&p.settings().issuer, e)),
    }
}

#[derive(askama::Template)]
#[template(path = "cp_confirm.html")]
struct CpConfirmPage {
    client: String,
    id: String,
    csrf: String,
    error: Option<(&'static str, String)>,
}

/// `GET /oidc/cp?id=…`: the service asks the person to confirm with their CP.
pub async fn cp_get(
    State(app): State<AppState>,
    authed: Authed,
    Query(q): Query<ResumeQuery>,
) -> Result<Response, AppError> {
    let prompt = provider(&app)?.cp_prompt(&q.id).await?;
    let page = CpConfirmPage {
        client: prompt.client,
        id: prompt.id,
        csrf: authed.session.csrf,
        error: None,
    };
    no_store_page(StatusCode::OK, &page)
}

/// The CP confirmation form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CpConfirmForm {
    id: String,
    cp: String,
}

/// `POST /oidc/cp`: checks the CP with the same counters and lock as elsewhere.
pub async fn cp_post(
    State(app): State<AppState>,
    f: SessionForm<CpConfirmForm>,
) -> Result<Response, AppError> {
    let p = provider(&app)?;
    let gateway = CpGateway {
        app: &app,
        authed: &f.authed,
    };
    let account_id = f.authed.session.account_id;
    match p
        .confirm_cp(&f.form.id, account_id, &f.form.cp, &gateway)
        .await
    {
        Ok(resume) => Ok(Redirect::to(&resume).into_response()),
        Err(CpError::Page(e)) => Err(e.into()),
        Err(CpError::Gateway(e)) => Err(e.into()),
        Err(CpError::Refused { client, error }) => {
            let Edge::Enablement(e) = error else {
                return Err(error.into());
            };
            cp_refused(client, &f.form.id, &f.authed.session.csrf, e)
        }
    }
}

/// The CP form again after a wrong CP or with the lock; any other failure is a page.
fn cp_refused(
    client: String,
    id: &str,
    csrf: &str,
    e: EnablementError,
) -> Result<Response, AppError> {
    let message = match &e {
        EnablementError::CpWrong { remaining } => {
            format!("Il Codice Personale non è corretto. Tentativi rimasti: {remaining}.")
        }
        EnablementError::CpLocked => {
            "Troppi tentativi errati: il Codice Personale è bloccato per qualche minuto.".to_owned()
        }
        _ => return Err(e.into()),
    };
    let locked = matches!(e, EnablementError::CpLocked);
    let page = CpConfirmPage {
        client,
        id: id.to_owned(),
        csrf: csrf.to_owned(),
        error: Some((e.code(), message)),
    };
    let mut resp = no_store_page(super::session::form_status(locked), &page)?;
    resp.extensions_mut().insert(super::error::ErrorInfo {
        code: e.code(),
        detail: e.to_string(),
    });
    Ok(resp)
}

/// The token-style request body (client authentication fields included).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TokenForm {
    grant_type: String,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    token: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_assertion_type: Option<String>,
    client_assertion: Option<String>,
}

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn invalid_client(why: &str) -> OidcError {
    OidcError::Client(ClientError::Unauthorized(why.to_owned()))
}

/// `Authorization: Basic` credentials (RFC 6749 §2.3.1: both parts form-urlencoded).
fn basic_credentials(b64: &str) -> Result<Presented, OidcError> {
    let malformed = || invalid_client("malformed Basic credentials");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| malformed())?;
    let text = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = text.split_once(':').ok_or_else(malformed)?;
    let decode = |s: &str| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={s}"))
            .ok()
            .and_then(|v| v.into_iter().next().map(|(_, v)| v))
            .ok_or_else(malformed)
    };
    Ok(Presented::Secret {
        client_id: decode(id)?,
        secret: decode(secret)?,
    })
}

/// Client credentials from the Basic header or the body (exactly one method).
fn presented(headers: &HeaderMap, form: &TokenForm) -> Result<Presented, OidcError> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "));
    let methods = usize::from(basic.is_some())
        + usize::from(form.client_secret.is_some())
        + usize::from(form.client_assertion.is_some());
    if methods > 1 {
        return Err(OidcError::InvalidRequest(
            "use exactly one client authentication method".into(),
        ));
    }
    if let Some(b64) = basic {
        return basic_credentials(b64);
    }
    if let Some(secret) = &form.client_secret {
        let client_id = form
            .client_id
            .clone()
            .ok_or_else(|| invalid_client("client_id missing"))?;
        return Ok(Presented::Secret {
            client_id,
            secret: secret.clone(),
        });
    }
    if let Some(assertion) = &form.client_assertion {
        if form.client_assertion_type.as_deref() != Some(JWT_BEARER) {
            return Err(OidcError::InvalidRequest(
                "client_assertion_type must be jwt-bearer".into(),
            ));
        }
        return Ok(Presented::Assertion {
            client_id: form.client_id.clone(),
            assertion: assertion.clone(),
        });
    }
    Err(invalid_client("client authentication required"))
}

/// The body of a token-style request and the client credentials it presents.
fn token_request(headers: &HeaderMap, body: &[u8]) -> Result<(TokenForm, Presented), OidcError> {
    let form: TokenForm = serde_urlencoded::from_bytes(body)
        .map_err(|e| OidcError::InvalidRequest(format!("malformed form: {e}")))?;
    let presented = presented(headers, &form)?;
    Ok((form, presented))
}

/// `POST /oidc/token`.
pub async fn token(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, AppError> {
    let p = provider(&app)?;
    let result = async {
        let (form, presented) = token_request(&headers, &body)?;
        let params = TokenParams {
            grant_type: form.grant_type,
            code: form.code,
            redirect_uri: form.redirect_uri,
            code_verifier: form.code_verifier,
            refresh_token: form.refresh_token,
        };
        let tokens = p.token(presented, &params, &Accounts(&app)).await?;
        serde_json::to_value(&tokens).map_err(|e| OidcError::Internal(e.to_string()))
    }
    .await;
    Ok(oauth_json(result))
}

/// `POST /oidc/introspect` (RFC 7662, client-authenticated).
pub async fn introspect(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, AppError> {
    let p = provider(&app)?;
    let result = async {
        let (form, presented) = token_request(&headers, &body)?;
        p.introspection(presented, form.token).await
    }
    .await;
    Ok(oauth_json(result))
}

/// `POST /oidc/revoke` (RFC 7009, client-authenticated; 200 whatever the token).
pub async fn revoke(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, AppError> {
    let p = provider(&app)?;
    let result = async {
        let (form, presented) = token_request(&headers, &body)?;
        p.revocation(presented, form.token).await?;
        Ok(serde_json::json!({}))
    }
    .await;
    Ok(oauth_json(result))
}

/// `GET|POST /oidc/userinfo` with a Bearer access token.
pub async fn userinfo(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let p = provider(&app)?;
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return Ok(oauth_error(&OidcError::InvalidToken(
            "Bearer token required".into(),
        )));
    };
    Ok(oauth_json(p.userinfo(token.trim(), &Accounts(&app)).await))
}

/// Query/form of the RP-initiated logout.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EndSessionParams {
    id_token_hint: Option<String>,
    client_id: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
}

/// Ends the session (if any) like «Esci» — tokens revoked, clients told, the SAML
/// LogoutRequest sent to the login's IdP, which returns the browser to `target` —
/// and drops the cookie. Without a session, or when the IdP cannot be told, straight
/// to `target`.
async fn logged_out(
    app: &AppState,
    authed: Option<&Authed>,
    jar: PrivateCookieJar,
    target: &str,
) -> Result<Response, AppError> {
    let next = match authed {
        Some(a) => app.logout.logout(a.session_ref(), Some(target)).await?,
        None => None,
    };
    let jar = jar.remove(super::session::removal_cookie());
    Ok(match next {
        Some(start) => (jar, super::sso::send_saml(start, "SAMLRequest")?).into_response(),
        None => (jar, Redirect::to(target)).into_response(),
    })
}

#[derive(askama::Template)]
#[template(path = "logout_confirm.html")]
struct LogoutConfirmPage {
    client: Option<String>,
    csrf: String,
    client_id: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
}

/// `GET /oidc/logout` (RP-initiated logout). With a valid `id_token_hint` — an ID
/// token of ours (`typ` `JWT`, key still live, issuer; it may be expired) naming the
/// browser's current session by `sid` — it ends the gateway session and its tokens,
/// then returns to a registered `post_logout_redirect_uri` or the home page. Without
/// one a link from anywhere must not end the session: the person gets a confirmation
/// page whose button POSTs back with the session's CSRF token.
pub async fn end_session(
    State(app): State<AppState>,
    MaybeAuthed(authed): MaybeAuthed,
    jar: PrivateCookieJar,
    Query(q): Query<EndSessionParams>,
) -> Result<Response, AppError> {
    let params = LogoutParams {
        id_token_hint: q.id_token_hint,
        client_id: q.client_id,
        post_logout_redirect_uri: q.post_logout_redirect_uri,
        state: q.state,
    };
    let current_sid = authed.as_ref().map(|a| a.session.sid.as_str());
    match provider(&app)?.rp_logout(&params, current_sid)? {
        LogoutDecision::End { target } => logged_out(&app, authed.as_ref(), jar, &target).await,
        LogoutDecision::Confirm {
            client,
            client_id,
            post_logout_redirect_uri,
            state,
        } => {
            // `Confirm` is only decided for a live session.
            let Some(authed) = authed else {
                return Err(AppError::internal("logout confirmation without a session"));
            };
            let page = LogoutConfirmPage {
                client,
                csrf: authed.session.csrf,
                client_id,
                post_logout_redirect_uri,
                state,
            };
            no_store_page(StatusCode::OK, &page)
        }
    }
}

/// The confirmation form of `/oidc/logout`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EndSessionForm {
    client_id: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
}

/// `POST /oidc/logout`: the confirmed logout (live session and its CSRF token, else
/// 403 and nothing ends); the return target is checked again.
pub async fn end_session_confirmed(
    State(app): State<AppState>,
    jar: PrivateCookieJar,
    f: SessionForm<EndSessionForm>,
) -> Result<Response, AppError> {
    let target = provider(&app)?.logout_target(
        f.form.client_id.as_deref(),
        f.form.post_logout_redirect_uri.as_deref(),
        f.form.state.as_deref(),
    )?;
    logged_out(&app, Some(&f.authed), jar, &target).await
}

// ---------------------------------------------------------------------------------------
// What the provider reads through ports: accounts (the enablement service), the CP
// check and the browser session.
// ---------------------------------------------------------------------------------------

/// The accounts, through the enablement service.
struct Accounts<'a>(&'a AppState);

#[async_trait::async_trait]
impl AccountSource for Accounts<'_> {
    type Error = EnablementError;

    async fn account(&self, id: Uuid) -> Result<Account, EnablementError> {
        self.0.enablement.account(id).await
    }
}

/// A failure of the gateway services behind [`CpGateway`].
#[derive(Debug, thiserror::Error)]
enum Edge {
    #[error(transparent)]
    Enablement(#[from] EnablementError),
    #[error(transparent)]
    State(#[from] StateError),
}

impl From<Edge> for AppError {
    fn from(e: Edge) -> Self {
        match e {
            Edge::Enablement(e) => e.into(),
            Edge::State(e) => e.into(),
        }
    }
}

/// The CP confirmation of the person behind `authed`: the account and CP check of the
/// enablement service, the confirmation time saved in their session.
struct CpGateway<'a> {
    app: &'a AppState,
    authed: &'a Authed,
}

#[async_trait::async_trait]
impl AccountSource for CpGateway<'_> {
    type Error = Edge;

    async fn account(&self, id: Uuid) -> Result<Account, Edge> {
        Ok(self.app.enablement.account(id).await?)
    }
}

#[async_trait::async_trait]
impl CpConfirmation for CpGateway<'_> {
    async fn verify_cp(&self, account: &Account, cp: &str) -> Result<(), Edge> {
        Ok(self.app.enablement.verify_cp(account, cp).await?)
    }

    async fn cp_confirmed(&self, at: chrono::DateTime<Utc>) -> Result<(), Edge> {
        let mut session = self.authed.session.clone();
        session.cp_at = Some(at);
        Ok(self
            .app
            .sessions
            .save(&self.authed.token, &session, at)
            .await?)
    }
}
