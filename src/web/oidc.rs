//! OpenID Connect endpoints. Thin: parse, one provider call, JSON or a redirect.
//! Errors of the token-style endpoints are RFC 6749 JSON (`error`,
//! `error_description`) with `Cache-Control: no-store`; authorization errors go back to
//! the client once its redirect URI is trusted, and to an error page before.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use chrono::Utc;
use serde::Deserialize;
use uuid::Uuid;

use super::session::{Authed, MaybeAuthed, SessionForm};
use super::{AppError, AppState};
use crate::accounts::{Account, EnablementState};
use crate::enablement::EnablementService;
use crate::oidc::clients::Presented;
use crate::oidc::keys::TokenType;
use crate::oidc::provider::{
    AsyncAccount, AuthorizeParams, OidcError, Provider, RedirectError, SessionFacts,
};

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

fn oauth_error(e: &OidcError) -> Response {
    let status = match e {
        OidcError::Client(_) => StatusCode::UNAUTHORIZED,
        OidcError::InvalidToken(_) => StatusCode::UNAUTHORIZED,
        OidcError::State(crate::state::StateError::Unavailable(_)) | OidcError::Busy(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        OidcError::Keys(_) | OidcError::State(_) | OidcError::Internal(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        _ => StatusCode::BAD_REQUEST,
    };
    let mut resp = no_store_json(
        status,
        serde_json::json!({ "error": e.oauth_code(), "error_description": e.to_string() }),
    );
    if matches!(e, OidcError::Client(_)) {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"polis-gateway\""),
        );
    }
    if matches!(e, OidcError::InvalidToken(_)) {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
    }
    resp.extensions_mut().insert(super::error::ErrorInfo {
        code: e.code(),
        detail: e.to_string(),
    });
    resp
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

fn page_error(e: OidcError) -> Response {
    AppError::from_oidc(e).into_response()
}

/// `GET /.well-known/openid-configuration`.
pub async fn discovery(State(app): State<AppState>) -> Response {
    match provider(&app) {
        Ok(p) => Json(p.discovery()).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /oidc/jwks`.
pub async fn jwks(State(app): State<AppState>) -> Response {
    match provider(&app) {
        Ok(p) => (
            [(header::CACHE_CONTROL, "public, max-age=300")],
            Json(p.keys().jwks(Utc::now())),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /oidc/authorize`: validates, parks the request, continues at the resume step.
pub async fn authorize(
    State(app): State<AppState>,
    query: Result<Query<AuthorizeParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let p = or_return!(provider(&app));
    let Ok(Query(params)) = query else {
        return page_error(OidcError::Untrusted("malformed query".into()));
    };
    let req = match p.validate_authorize(&params, app.sso.settings().default_level, Utc::now()) {
        Ok(r) => r,
        Err(Ok(untrusted)) => return page_error(untrusted),
        Err(Err(redirect)) => return redirect_error(&p.settings().issuer, redirect),
    };
    if let Err(e) = p.park(&req).await {
        return page_error(e);
    }
    Redirect::to(&format!("/oidc/authorize/resume?id={}", req.id)).into_response()
}

/// Query of the resume step.
#[derive(Debug, Deserialize)]
pub struct ResumeQuery {
    id: String,
}

fn resume_path(id: &str) -> String {
    format!("/oidc/authorize/resume?id={id}")
}

fn login_path(level: crate::saml::Level, next: &str) -> String {
    format!(
        "/login?level={}&next={}",
        level.number(),
        crate::saml::binding::encode_component(next)
    )
}

/// `GET /oidc/authorize/resume`: log in (again) if needed, the abilitazione if the
/// client requires it, the CP if asked, then the code.
pub async fn resume(
    State(app): State<AppState>,
    MaybeAuthed(authed): MaybeAuthed,
    Query(q): Query<ResumeQuery>,
) -> Response {
    let p = or_return!(provider(&app));
    let req = match p.parked(&q.id).await {
        Ok(r) => r,
        Err(e) => return page_error(e),
    };
    let here = resume_path(&req.id);
    let Some(authed) = authed else {
        return Redirect::to(&login_path(req.level, &here)).into_response();
    };
    let s = &authed.session;
    let absolute = chrono::Duration::from_std(app.sessions.settings().absolute_timeout)
        .unwrap_or(chrono::Duration::zero());
    let facts = SessionFacts {
        sid: s.sid.clone(),
        level: s.login.level,
        auth_time: s.login.authenticated_at,
        cp_at: s.cp_at,
        session_ends_at: s.created_at + absolute,
    };
    if facts.level < req.level || (req.force_login && facts.auth_time < req.created_at) {
        return Redirect::to(&login_path(req.level, &here)).into_response();
    }
    let account = match app.enablement.account(s.account_id).await {
        Ok(a) => a,
        Err(e) => return AppError::from_enablement(e).into_response(),
    };
    let allow_in_enablement = p
        .clients()
        .get(&req.client_id)
        .is_some_and(|c| c.allow_in_enablement);
    if account.enablement_state != EnablementState::Enabled && !allow_in_enablement {
        return Redirect::to("/abilitazione").into_response();
    }
    if req.cp && facts.cp_at.is_none_or(|t| t < req.created_at) {
        return Redirect::to(&format!("/oidc/cp?id={}", req.id)).into_response();
    }
    match p.issue_code(&req, &account, &facts, Utc::now()).await {
        Ok(url) => {
            let _ = p.unpark(&req.id).await;
            Redirect::to(&url).into_response()
        }
        Err(e) => redirect_error(&p.settings().issuer, e),
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

fn cp_page(
    client: String,
    id: &str,
    csrf: &str,
    error: Option<(&'static str, String)>,
    status: StatusCode,
) -> Response {
    let page = CpConfirmPage {
        client,
        id: id.to_owned(),
        csrf: csrf.to_owned(),
        error,
    };
    match super::render(&page) {
        Ok(html) => (status, [(header::CACHE_CONTROL, "no-store")], html).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /oidc/cp?id=…`: the service asks the person to confirm with their CP.
pub async fn cp_get(
    State(app): State<AppState>,
    authed: Authed,
    Query(q): Query<ResumeQuery>,
) -> Response {
    let p = or_return!(provider(&app));
    let req = match p.parked(&q.id).await {
        Ok(r) => r,
        Err(e) => return page_error(e),
    };
    let client = p
        .clients()
        .get(&req.client_id)
        .map_or_else(|| req.client_id.clone(), |c| c.name.clone());
    cp_page(client, &req.id, &authed.session.csrf, None, StatusCode::OK)
}

/// The CP confirmation form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CpConfirmForm {
    id: String,
    cp: String,
}

/// `POST /oidc/cp`: checks the CP with the same counters and lock as elsewhere.
pub async fn cp_post(State(app): State<AppState>, f: SessionForm<CpConfirmForm>) -> Response {
    let p = or_return!(provider(&app));
    let req = match p.parked(&f.form.id).await {
        Ok(r) => r,
        Err(e) => return page_error(e),
    };
    let client = p
        .clients()
        .get(&req.client_id)
        .map_or_else(|| req.client_id.clone(), |c| c.name.clone());
    let account = match app.enablement.account(f.authed.session.account_id).await {
        Ok(a) => a,
        Err(e) => return AppError::from_enablement(e).into_response(),
    };
    match app.enablement.verify_cp(&account, &f.form.cp).await {
        Ok(()) => {
            let mut session = f.authed.session.clone();
            let now = Utc::now();
            session.cp_at = Some(now);
            if let Err(e) = app.sessions.save(&f.authed.token, &session, now).await {
                return AppError::from_state(e).into_response();
            }
            Redirect::to(&resume_path(&req.id)).into_response()
        }
        Err(e) => {
            let locked = matches!(e, crate::enablement::EnablementError::CpLocked);
            let (code, message) = match &e {
                crate::enablement::EnablementError::CpWrong { remaining } => (
                    e.code(),
                    format!("Il Codice Personale non è corretto. Tentativi rimasti: {remaining}."),
                ),
                crate::enablement::EnablementError::CpLocked => (
                    e.code(),
                    "Troppi tentativi errati: il Codice Personale è bloccato per qualche minuto."
                        .to_owned(),
                ),
                _ => return AppError::from_enablement(e).into_response(),
            };
            let mut resp = cp_page(
                client,
                &req.id,
                &f.authed.session.csrf,
                Some((code, message)),
                super::session::form_status(locked),
            );
            resp.extensions_mut().insert(super::error::ErrorInfo {
                code,
                detail: e.to_string(),
            });
            resp
        }
    }
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

/// Client credentials from the Basic header or the body (exactly one method).
fn presented(headers: &HeaderMap, form: &TokenForm) -> Result<Presented, OidcError> {
    let invalid = |why: &str| {
        OidcError::Client(crate::oidc::clients::ClientError::Unauthorized(
            why.to_owned(),
        ))
    };
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
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| invalid("malformed Basic credentials"))?;
        let text =
            String::from_utf8(decoded).map_err(|_| invalid("malformed Basic credentials"))?;
        let (id, secret) = text
            .split_once(':')
            .ok_or_else(|| invalid("malformed Basic credentials"))?;
        // RFC 6749 §2.3.1: both parts are form-urlencoded.
        let decode = |s: &str| {
            serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={s}"))
                .ok()
                .and_then(|v| v.into_iter().next().map(|(_, v)| v))
                .ok_or_else(|| invalid("malformed Basic credentials"))
        };
        return Ok(Presented::Secret {
            client_id: decode(id)?,
            secret: decode(secret)?,
        });
    }
    if let Some(secret) = &form.client_secret {
        let client_id = form
            .client_id
            .clone()
            .ok_or_else(|| invalid("client_id missing"))?;
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
    Err(invalid("client authentication required"))
}

struct Accounts(Arc<EnablementService>);

#[async_trait::async_trait]
impl AsyncAccount for Accounts {
    async fn account(&self, id: Uuid) -> Result<Account, OidcError> {
        self.0
            .account(id)
            .await
            .map_err(|e| OidcError::InvalidGrant(format!("account: {e}")))
    }
}

fn form_body(body: &[u8]) -> Result<TokenForm, OidcError> {
    serde_urlencoded::from_bytes(body)
        .map_err(|e| OidcError::InvalidRequest(format!("malformed form: {e}")))
}

/// `POST /oidc/token`.
pub async fn token(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let p = or_return!(provider(&app));
    let now = Utc::now();
    let result = async {
        let form = form_body(&body)?;
        let client = p
            .authenticate_client(
                presented(&headers, &form)?,
                &p.settings().token_endpoint(),
                now,
            )
            .await?;
        let accounts = Accounts(app.enablement.clone());
        match form.grant_type.as_str() {
            "authorization_code" => {
                let code = form
                    .code
                    .as_deref()
                    .ok_or_else(|| OidcError::InvalidRequest("code missing".into()))?;
                let redirect_uri = form
                    .redirect_uri
                    .as_deref()
                    .ok_or_else(|| OidcError::InvalidRequest("redirect_uri missing".into()))?;
                p.exchange_code(
                    &client,
                    code,
                    redirect_uri,
                    form.code_verifier.as_deref(),
                    accounts,
                    now,
                )
                .await
            }
            "refresh_token" => {
                let rt = form
                    .refresh_token
                    .as_deref()
                    .ok_or_else(|| OidcError::InvalidRequest("refresh_token missing".into()))?;
                p.refresh(&client, rt, accounts, now).await
            }
            _ => Err(OidcError::UnsupportedGrantType),
        }
    }
    .await;
    match result {
        Ok(tokens) => match serde_json::to_value(&tokens) {
            Ok(v) => no_store_json(StatusCode::OK, v),
            Err(e) => oauth_error(&OidcError::Internal(e.to_string())),
        },
        Err(e) => oauth_error(&e),
    }
}

/// `POST /oidc/introspect` (RFC 7662, client-authenticated).
pub async fn introspect(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let now = Utc::now();
    match token_request(&app, &headers, body, "introspect", now).await {
        Ok((p, client, token)) => {
            no_store_json(StatusCode::OK, p.introspect(&client, &token, now).await)
        }
        Err(resp) => resp,
    }
}

/// `POST /oidc/revoke` (RFC 7009, client-authenticated; 200 whatever the token).
pub async fn revoke(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let now = Utc::now();
    let (p, client, token) = match token_request(&app, &headers, body, "revoke", now).await {
        Ok(parts) => parts,
        Err(resp) => return resp,
    };
    match p.revoke(&client, &token, now).await {
        Ok(()) => no_store_json(StatusCode::OK, serde_json::json!({})),
        Err(e) => oauth_error(&e),
    }
}

/// The common part of `/oidc/introspect` and `/oidc/revoke`: the provider, the
/// authenticated client (the endpoint URL is an accepted assertion audience) and the
/// `token` parameter; an RFC 6749 error response otherwise.
async fn token_request(
    app: &AppState,
    headers: &HeaderMap,
    body: axum::body::Bytes,
    endpoint: &str,
    now: chrono::DateTime<Utc>,
) -> Result<(Arc<Provider>, crate::oidc::clients::Client, String), Response> {
    let p = provider(app).map_err(IntoResponse::into_response)?;
    let result = async {
        let form = form_body(&body)?;
        let url = format!("{}/oidc/{endpoint}", p.settings().issuer);
        let client = p
            .authenticate_client(presented(headers, &form)?, &url, now)
            .await?;
        let token = form
            .token
            .ok_or_else(|| OidcError::InvalidRequest("token missing".into()))?;
        Ok::<_, OidcError>((client, token))
    }
    .await;
    match result {
        Ok((client, token)) => Ok((p, client, token)),
        Err(e) => Err(oauth_error(&e)),
    }
}

/// `GET|POST /oidc/userinfo` with a Bearer access token.
pub async fn userinfo(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let p = or_return!(provider(&app));
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return oauth_error(&OidcError::InvalidToken("Bearer token required".into()));
    };
    let claims = match p.check_access_token(token.trim(), Utc::now()).await {
        Ok(c) => c,
        Err(e) => return oauth_error(&e),
    };
    let Ok(account_id) = Uuid::parse_str(&claims.sub) else {
        return oauth_error(&OidcError::InvalidToken("bad subject".into()));
    };
    let account = match app.enablement.account(account_id).await {
        Ok(a) => a,
        Err(_) => return oauth_error(&OidcError::InvalidToken("account gone".into())),
    };
    let scopes: Vec<String> = claims.scope.split_whitespace().map(str::to_owned).collect();
    no_store_json(StatusCode::OK, p.user_claims(&account, &scopes))
}

/// Ends the gateway session everywhere: the session record, its OIDC tokens (revoked
/// by `sid`), and the clients told by back-channel logout (delivered in the
/// background, one attempt each, logged).
pub async fn close_session(app: &AppState, authed: &Authed) -> Result<(), AppError> {
    Ok(app.logout.close(authed.session_ref()).await?)
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

/// Where a logout returns: a `post_logout_redirect_uri` registered for `client_id`
/// (with `state`), or the home page. An unregistered one is an error page.
fn logout_target(
    p: &Provider,
    client_id: Option<&str>,
    post_logout_redirect_uri: Option<&str>,
    state: Option<&str>,
) -> Result<String, OidcError> {
    let Some(uri) = post_logout_redirect_uri else {
        return Ok("/".to_owned());
    };
    let Some(cid) = client_id else {
        return Err(OidcError::Untrusted(
            "post_logout_redirect_uri needs id_token_hint or client_id".into(),
        ));
    };
    let registered = p
        .clients()
        .get(cid)
        .is_some_and(|c| c.post_logout_redirect_uris.iter().any(|u| u == uri));
    if !registered {
        return Err(OidcError::Untrusted(
            "post_logout_redirect_uri is not registered".into(),
        ));
    }
    let mut url = reqwest::Url::parse(uri).map_err(|e| OidcError::Untrusted(e.to_string()))?;
    if let Some(state) = state {
        url.query_pairs_mut().append_pair("state", state);
    }
    Ok(url.to_string())
}

/// Ends the session (if any), drops the cookie and goes to `target`.
async fn logged_out(
    app: &AppState,
    authed: Option<&Authed>,
    jar: axum_extra::extract::PrivateCookieJar,
    target: &str,
) -> Response {
    if let Some(a) = authed
        && let Err(e) = close_session(app, a).await
    {
        return e.into_response();
    }
    (
        jar.remove(super::session::removal_cookie()),
        Redirect::to(target),
    )
        .into_response()
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
    jar: axum_extra::extract::PrivateCookieJar,
    Query(q): Query<EndSessionParams>,
) -> Response {
    let p = or_return!(provider(&app));
    let hint: Option<serde_json::Value> = q.id_token_hint.as_deref().and_then(|hint| {
        p.keys()
            .verify_ignoring_expiry(hint, TokenType::Id, Utc::now(), &p.settings().issuer)
            .ok()
    });
    let claim = |name: &str| {
        hint.as_ref()
            .and_then(|h| h.get(name))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    let client_id = claim("aud").or(q.client_id.clone());
    let target = match logout_target(
        &p,
        client_id.as_deref(),
        q.post_logout_redirect_uri.as_deref(),
        q.state.as_deref(),
    ) {
        Ok(t) => t,
        Err(e) => return page_error(e),
    };
    let Some(authed) = authed else {
        // No session: nothing to end.
        return logged_out(&app, None, jar, &target).await;
    };
    if claim("sid").is_some_and(|sid| sid == authed.session.sid) {
        return logged_out(&app, Some(&authed), jar, &target).await;
    }
    let page = LogoutConfirmPage {
        client: client_id
            .as_deref()
            .and_then(|c| p.clients().get(c))
            .map(|c| c.name.clone()),
        csrf: authed.session.csrf.clone(),
        client_id,
        post_logout_redirect_uri: q.post_logout_redirect_uri.clone(),
        state: q.state.clone(),
    };
    match super::render(&page) {
        Ok(html) => (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")], html).into_response(),
        Err(e) => e.into_response(),
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
    jar: axum_extra::extract::PrivateCookieJar,
    f: SessionForm<EndSessionForm>,
) -> Response {
    let p = or_return!(provider(&app));
    let target = match logout_target(
        &p,
        f.form.client_id.as_deref(),
        f.form.post_logout_redirect_uri.as_deref(),
        f.form.state.as_deref(),
    ) {
        Ok(t) => t,
        Err(e) => return page_error(e),
    };
    logged_out(&app, Some(&f.authed), jar, &target).await
}
