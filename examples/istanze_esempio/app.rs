//! «Istanze di esempio»: a downstream Istanze service that trusts the gateway through
//! OpenID Connect, with the standard `openidconnect` client crate and nothing of SAML.
//!
//! - `GET /`: not logged in, «Accedi con Istanze OnLine»; logged in, the ID token claims,
//!   «Conferma con il Codice Personale» and «Esci».
//! - `GET /login`: discovery, PKCE S256, `state`, `nonce`; 303 to the gateway.
//! - `GET /callback`: the code is exchanged with `client_secret_basic`, the ID token is
//!   verified (signature with the gateway JWKS, EdDSA or ES256, `iss`, `aud`, `exp`,
//!   `nonce`); the session is kept here, in memory, under a random cookie.
//! - `POST /confirm`: a new authorization with `acr_values=urn:polis:acr:cp`; back at
//!   `/callback`, the token must carry `amr` with `cp` for the same person and an
//!   `auth_time` after the request, else the confirmation is refused; `GET /confermata`.
//! - `POST /logout`: drops the local session, then RP-initiated logout at the gateway.
//! - `POST /backchannel-logout`: Back-Channel Logout 1.0 (§2.6 checks), ends every local
//!   session with that `sid` (or, without `sid`, that `sub`).
//! - `GET /status`: JSON with the live sessions' `sid`s and the back-channel counters
//!   (a demo aid; the integration test reads it).
//!
//! `router` is all there is: `main.rs` is only the CLI, and the integration test
//! (`tests/integration/example_app.rs`) includes this file and serves it on a loopback
//! port.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use askama::Template;
use axum::extract::{Form, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreRevocableToken, CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AccessTokenHash, AdditionalClaims, AuthenticationContextClass, AuthorizationCode, Client,
    ClientId, ClientSecret, CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IdToken, IdTokenClaims, IdTokenFields, IssuerUrl, LogoutRequest, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, PostLogoutRedirectUrl,
    ProviderMetadataWithLogout, RedirectUrl, Scope, StandardErrorResponse, StandardTokenResponse,
    TokenResponse,
};
use serde::{Deserialize, Serialize};

/// The `acr_values` value that asks the gateway for the Codice Personale.
pub const ACR_CP: &str = "urn:polis:acr:cp";
/// The `amr` value the gateway adds once the CP was given.
pub const AMR_CP: &str = "cp";
/// The Back-Channel Logout 1.0 event.
const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// The session cookie (server-side record; the value is only a random key).
pub const COOKIE: &str = "istanze_esempio";
/// The `state` of an RP-initiated logout under way: the home page says «Sei uscito»
/// when the gateway returns with the same value.
const LOGOUT_COOKIE: &str = "istanze_esempio_uscita";
/// Scopes asked of the gateway.
const SCOPES: [&str; 3] = ["profile", "email", "istanze"];
/// A login or confirmation must come back within this.
const PENDING_TTL: Duration = Duration::from_secs(600);
/// Local sessions end after this, whatever the gateway says.
const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// The discovery document (and JWKS) is fetched again after this.
const DISCOVERY_TTL: Duration = Duration::from_secs(300);
/// Clock difference tolerated with the gateway, seconds.
const SKEW_SECONDS: i64 = 60;
/// A logout token older than this is refused (Back-Channel Logout §2.6 step 6: `iat`).
const LOGOUT_TOKEN_MAX_AGE_SECONDS: i64 = 300;

/// What the example needs to know.
#[derive(Debug, Clone)]
pub struct ExampleConfig {
    /// The gateway's issuer URL, e.g. `http://localhost:8080` (discovery is
    /// `<gateway>/.well-known/openid-configuration`).
    pub gateway: String,
    /// This service's base URL as browsers reach it, e.g. `http://localhost:8081`:
    /// redirect URI `<public_url>/callback`, post-logout `<public_url>/`.
    pub public_url: String,
    /// The client_id registered at the gateway.
    pub client_id: String,
    /// Its client secret.
    pub client_secret: String,
}

/// The gateway's own ID token claims, besides the standard ones.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PolisClaims {
    /// Gateway session id (Back-Channel Logout matches on it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Codice fiscale (scope `istanze`; absent for an eIDAS user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fiscal_number: Option<String>,
    /// The eIDAS PersonIdentifier (scope `istanze`, eIDAS users).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eidas_person_identifier: Option<String>,
    /// The scheme of the login: `spid`, `cie` or `eidas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_scheme: Option<String>,
    /// POLIS username (scope `istanze`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Enablement state (scope `istanze`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enablement_state: Option<String>,
    /// When the CP was given (with `amr` `cp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cp_time: Option<i64>,
    /// When the SPID login happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spid_auth_time: Option<i64>,
}
impl AdditionalClaims for PolisClaims {}

type PolisIdToken = IdToken<
    PolisClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type PolisIdTokenClaims = IdTokenClaims<PolisClaims, CoreGenderClaim>;
type PolisTokenResponse = StandardTokenResponse<
    IdTokenFields<
        PolisClaims,
        EmptyExtraTokenFields,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    >,
    CoreTokenType,
>;
/// `CoreClient` with [`PolisClaims`], as built from the discovery document.
type PolisClient = Client<
    PolisClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    PolisTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The only signature algorithms accepted from the gateway (never `none` or HMAC).
fn allowed_algs() -> Vec<CoreJwsSigningAlgorithm> {
    vec![
        CoreJwsSigningAlgorithm::EdDsa,
        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    ]
}

/// Why a login is under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Login,
    Confirm,
}

/// An authorization request sent to the gateway, waiting for `/callback` (by `state`).
struct Pending {
    /// The browser (cookie) that started it: the callback must come back to it.
    browser: String,
    verifier: PkceCodeVerifier,
    nonce: Nonce,
    purpose: Purpose,
    created: Instant,
    created_unix: i64,
}

/// A confirmation with the CP.
#[derive(Debug, Clone)]
struct Confirmation {
    amr: Vec<String>,
    auth_time: i64,
    cp_time: Option<i64>,
}

/// A logged-in browser.
struct Session {
    /// The raw ID token of the login (`id_token_hint` at logout).
    id_token: String,
    /// The verified claims, for the page.
    claims: serde_json::Map<String, serde_json::Value>,
    sub: String,
    sid: Option<String>,
    /// The per-session token of this service's own forms.
    csrf: String,
    confirmation: Option<Confirmation>,
    created: Instant,
}

/// Everything kept in memory.
#[derive(Default)]
struct Store {
    /// Pending authorizations by `state`.
    pending: HashMap<String, Pending>,
    /// Sessions by cookie value.
    sessions: HashMap<String, Session>,
    /// `jti`s of accepted logout tokens (replay), with their `exp`.
    seen_jti: HashMap<String, i64>,
    backchannel_accepted: u64,
    backchannel_refused: u64,
    backchannel_sessions_ended: u64,
}

impl Store {
    fn prune(&mut self, now: Instant, now_unix: i64) {
        self.pending
            .retain(|_, p| now.duration_since(p.created) < PENDING_TTL);
        self.sessions
            .retain(|_, s| now.duration_since(s.created) < SESSION_TTL);
        self.seen_jti
            .retain(|_, exp| *exp + SKEW_SECONDS > now_unix);
    }
}

/// The discovered gateway: metadata (with its JWKS) and when it was fetched.
struct Discovered {
    metadata: ProviderMetadataWithLogout,
    fetched: Instant,
}

struct Inner {
    cfg: ExampleConfig,
    http: reqwest::Client,
    store: Mutex<Store>,
    discovered: tokio::sync::Mutex<Option<Arc<Discovered>>>,
}

#[derive(Clone)]
struct AppState(Arc<Inner>);

impl AppState {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.0.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The app. Nothing is fetched here: discovery happens at the first login, so the
/// service can start before the gateway.
pub async fn router(cfg: ExampleConfig) -> Router {
    // No redirects: the client library must see the gateway's answers as they are.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new());
    let state = AppState(Arc::new(Inner {
        cfg: ExampleConfig {
            gateway: cfg.gateway.trim_end_matches('/').to_owned(),
            public_url: cfg.public_url.trim_end_matches('/').to_owned(),
            ..cfg
        },
        http,
        store: Mutex::new(Store::default()),
        discovered: tokio::sync::Mutex::new(None),
    }));
    Router::new()
        .route("/", get(home))
        .route("/login", get(login))
        .route("/callback", get(callback))
        .route("/confirm", post(confirm))
        .route("/confermata", get(confirmed))
        .route("/logout", post(logout))
        .route("/backchannel-logout", post(backchannel_logout))
        .route("/status", get(status))
        .with_state(state)
}

// ---------------------------------------------------------------------------------------
// HTTP for the client library (the gateway's reqwest with native-tls)
// ---------------------------------------------------------------------------------------

/// A failed HTTP exchange with the gateway.
#[derive(Debug)]
pub struct HttpError(String);

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for HttpError {}

/// `openidconnect`'s HTTP request, sent with reqwest.
async fn send(
    http: reqwest::Client,
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, HttpError> {
    let (parts, body) = request.into_parts();
    let response = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(|e| HttpError(e.to_string()))?;
    let mut builder = openidconnect::http::Response::builder().status(response.status());
    if let Some(headers) = builder.headers_mut() {
        headers.extend(response.headers().clone());
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| HttpError(e.to_string()))?;
    builder
        .body(body.to_vec())
        .map_err(|e| HttpError(e.to_string()))
}

impl AppState {
    fn cfg(&self) -> &ExampleConfig {
        &self.0.cfg
    }

    /// The gateway's discovery document and JWKS (cached for [`DISCOVERY_TTL`];
    /// `fresh` fetches them again, e.g. for an unknown `kid`).
    async fn discover(&self, fresh: bool) -> Result<Arc<Discovered>, String> {
        let mut cached = self.0.discovered.lock().await;
        if let Some(d) = cached.as_ref()
            && !fresh
            && d.fetched.elapsed() < DISCOVERY_TTL
        {
            return Ok(d.clone());
        }
        let issuer = IssuerUrl::new(self.cfg().gateway.clone()).map_err(|e| e.to_string())?;
        let http = self.0.http.clone();
        let call = move |req| send(http.clone(), req);
        let metadata = ProviderMetadataWithLogout::discover_async(issuer, &call)
            .await
            .map_err(|e| format!("discovery at {}: {e}", self.cfg().gateway))?;
        let d = Arc::new(Discovered {
            metadata,
            fetched: Instant::now(),
        });
        *cached = Some(d.clone());
        Ok(d)
    }

    fn client(&self, d: &Discovered) -> Result<PolisClient, String> {
        let redirect = RedirectUrl::new(format!("{}/callback", self.cfg().public_url))
            .map_err(|e| e.to_string())?;
        Ok(PolisClient::from_provider_metadata(
            d.metadata.clone(),
            ClientId::new(self.cfg().client_id.clone()),
            Some(ClientSecret::new(self.cfg().client_secret.clone())),
        )
        .set_redirect_uri(redirect))
    }

    fn secure_cookies(&self) -> bool {
        self.cfg().public_url.starts_with("https://")
    }

    fn cookie(&self, value: String) -> Cookie<'static> {
        self.named_cookie(COOKIE, value)
    }

    fn named_cookie(&self, name: &'static str, value: String) -> Cookie<'static> {
        Cookie::build((name, value))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(self.secure_cookies())
            .build()
    }
}

fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

// ---------------------------------------------------------------------------------------
// Pages
// ---------------------------------------------------------------------------------------

struct ClaimRow {
    name: String,
    value: String,
}

#[derive(Template)]
#[template(path = "../examples/istanze_esempio/templates/home.html")]
struct HomePage {
    logged_in: bool,
    /// Back from the gateway's logout («Sei uscito»).
    logged_out: bool,
    name: String,
    /// "SPID", "CIE" or "eIDAS": how the person logged in (the `idp_scheme` claim).
    scheme: String,
    rows: Vec<ClaimRow>,
    csrf: String,
}

#[derive(Template)]
#[template(path = "../examples/istanze_esempio/templates/confirmed.html")]
struct ConfirmedPage {
    name: String,
    amr: String,
    auth_time: String,
    cp_time: String,
}

#[derive(Template)]
#[template(path = "../examples/istanze_esempio/templates/message.html")]
struct MessagePage {
    title: String,
    message: String,
}

fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn message(status: StatusCode, title: &str, message: impl Into<String>) -> Response {
    render(
        status,
        &MessagePage {
            title: title.to_owned(),
            message: message.into(),
        },
    )
}

/// A claim value as shown in the table (times also as UTC dates).
fn show_value(name: &str, value: &serde_json::Value) -> String {
    let text = match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    };
    let is_time = matches!(
        name,
        "iat" | "exp" | "auth_time" | "cp_time" | "spid_auth_time"
    );
    match value.as_i64() {
        Some(t) if is_time => format!("{text} ({})", show_time(t)),
        _ => text,
    }
}

fn show_time(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0).map_or_else(
        || t.to_string(),
        |d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

fn display_name(claims: &serde_json::Map<String, serde_json::Value>) -> String {
    claims
        .get("name")
        .and_then(|v| v.as_str())
        .or_else(|| claims.get("preferred_username").and_then(|v| v.as_str()))
        .unwrap_or("utente")
        .to_owned()
}

/// The scheme of the login as people read it, from the `idp_scheme` claim.
fn scheme_label(claims: &serde_json::Map<String, serde_json::Value>) -> String {
    match claims.get("idp_scheme").and_then(|v| v.as_str()) {
        Some("spid") => "SPID".to_owned(),
        Some("cie") => "CIE".to_owned(),
        Some("eidas") => "eIDAS".to_owned(),
        Some(other) => other.to_owned(),
        None => "sconosciuto".to_owned(),
    }
}

/// `GET /`.
/// Query of the home page: the `state` the gateway returns after a logout.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct HomeQuery {
    state: Option<String>,
}

async fn home(State(app): State<AppState>, jar: CookieJar, Query(q): Query<HomeQuery>) -> Response {
    // Back from the logout this browser started: the state matches its cookie.
    let logged_out = matches!(
        (jar.get(LOGOUT_COOKIE), q.state.as_deref()),
        (Some(c), Some(s)) if !s.is_empty() && c.value() == s
    );
    let jar = if logged_out {
        jar.remove(Cookie::build(LOGOUT_COOKIE).path("/").build())
    } else {
        jar
    };
    let mut page = {
        let mut store = app.store();
        store.prune(Instant::now(), now_unix());
        match jar.get(COOKIE).and_then(|c| store.sessions.get(c.value())) {
            Some(s) => HomePage {
                logged_in: true,
                logged_out: false,
                name: display_name(&s.claims),
                scheme: scheme_label(&s.claims),
                rows: s
                    .claims
                    .iter()
                    .map(|(k, v)| ClaimRow {
                        name: k.clone(),
                        value: show_value(k, v),
                    })
                    .collect(),
                csrf: s.csrf.clone(),
            },
            None => HomePage {
                logged_in: false,
                logged_out: false,
                name: String::new(),
                scheme: String::new(),
                rows: Vec::new(),
                csrf: String::new(),
            },
        }
    };
    page.logged_out = logged_out && !page.logged_in;
    (jar, render(StatusCode::OK, &page)).into_response()
}

/// `GET /login`.
async fn login(State(app): State<AppState>, jar: CookieJar) -> Response {
    start(app, jar, Purpose::Login).await
}

/// Form of this service's own POSTs.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CsrfForm {
    csrf: String,
}

/// `POST /confirm`: ask the gateway for the CP.
async fn confirm(
    State(app): State<AppState>,
    jar: CookieJar,
    Form(form): Form<CsrfForm>,
) -> Response {
    let ok = {
        let store = app.store();
        jar.get(COOKIE)
            .and_then(|c| store.sessions.get(c.value()))
            .is_some_and(|s| !form.csrf.is_empty() && s.csrf == form.csrf)
    };
    if !ok {
        return message(
            StatusCode::FORBIDDEN,
            "Richiesta non valida",
            "La sessione è scaduta o il modulo non è valido: accedi di nuovo.",
        );
    }
    start(app, jar, Purpose::Confirm).await
}

/// Sends the browser to the gateway's authorization endpoint.
async fn start(app: AppState, jar: CookieJar, purpose: Purpose) -> Response {
    let d = match app.discover(false).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "gateway discovery failed");
            return message(
                StatusCode::BAD_GATEWAY,
                "Istanze OnLine non raggiungibile",
                "Il servizio di accesso non risponde. Riprova tra poco.",
            );
        }
    };
    let client = match app.client(&d) {
        Ok(c) => c,
        Err(e) => return message(StatusCode::INTERNAL_SERVER_ERROR, "Errore", e),
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge);
    for scope in SCOPES {
        request = request.add_scope(Scope::new(scope.to_owned()));
    }
    if purpose == Purpose::Confirm {
        request =
            request.add_auth_context_value(AuthenticationContextClass::new(ACR_CP.to_owned()));
    }
    let (url, state, nonce) = request.url();
    // The browser key: the session cookie when there is one, else a new random one.
    let browser = jar
        .get(COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(random_token);
    {
        let mut store = app.store();
        store.prune(Instant::now(), now_unix());
        store.pending.insert(
            state.secret().clone(),
            Pending {
                browser: browser.clone(),
                verifier,
                nonce,
                purpose,
                created: Instant::now(),
                created_unix: now_unix(),
            },
        );
    }
    (jar.add(app.cookie(browser)), Redirect::to(url.as_str())).into_response()
}

/// Query of `/callback`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /callback`.
async fn callback(
    State(app): State<AppState>,
    jar: CookieJar,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let browser = jar.get(COOKIE).map(|c| c.value().to_owned());
    // The pending request is single-use and must belong to this browser.
    let pending = {
        let mut store = app.store();
        let found = q.state.as_deref().and_then(|s| store.pending.remove(s));
        match found {
            Some(p) if Some(&p.browser) == browser.as_ref() => Some(p),
            _ => None,
        }
    };
    let Some(pending) = pending else {
        return message(
            StatusCode::BAD_REQUEST,
            "Accesso non valido",
            "La risposta di Istanze OnLine non corrisponde a una richiesta di questo browser.",
        );
    };
    if pending.created.elapsed() >= PENDING_TTL {
        return message(
            StatusCode::BAD_REQUEST,
            "Accesso scaduto",
            "È passato troppo tempo: riprova.",
        );
    }
    // RFC 9207: the gateway names itself in the response.
    if let Some(iss) = &q.iss
        && iss.trim_end_matches('/') != app.cfg().gateway
    {
        return message(
            StatusCode::BAD_REQUEST,
            "Accesso non valido",
            "La risposta proviene da un emittente inatteso.",
        );
    }
    if let Some(error) = &q.error {
        let detail = q.error_description.clone().unwrap_or_default();
        tracing::info!(%error, %detail, "the gateway refused the authorization");
        let (title, text) = if pending.purpose == Purpose::Confirm {
            (
                "Conferma non riuscita",
                "La conferma con il Codice Personale non è stata completata.",
            )
        } else {
            (
                "Accesso non riuscito",
                "Istanze OnLine non ha concesso l'accesso.",
            )
        };
        return message(StatusCode::BAD_REQUEST, title, format!("{text} ({error})"));
    }
    let Some(code) = q.code else {
        return message(
            StatusCode::BAD_REQUEST,
            "Accesso non valido",
            "Codice mancante.",
        );
    };
    let verified = match app.redeem(code, &pending).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "code exchange or ID token verification failed");
            return message(
                StatusCode::BAD_REQUEST,
                "Accesso non valido",
                format!("Il token di Istanze OnLine non è valido: {e}"),
            );
        }
    };
    match pending.purpose {
        Purpose::Login => {
            // A new cookie value at login: no fixation of a pre-login key.
            let key = random_token();
            let mut store = app.store();
            if let Some(old) = &browser {
                store.sessions.remove(old);
            }
            store.sessions.insert(
                key.clone(),
                Session {
                    id_token: verified.raw,
                    sub: verified.claims.subject().to_string(),
                    sid: verified.claims.additional_claims().sid.clone(),
                    claims: verified.table,
                    csrf: random_token(),
                    confirmation: None,
                    created: Instant::now(),
                },
            );
            drop(store);
            (jar.add(app.cookie(key)), Redirect::to("/")).into_response()
        }
        Purpose::Confirm => app.record_confirmation(browser.as_deref(), &pending, &verified),
    }
}

/// A verified ID token.
struct Verified {
    raw: String,
    claims: PolisIdTokenClaims,
    table: serde_json::Map<String, serde_json::Value>,
}

impl AppState {
    /// Code → tokens (`client_secret_basic`, PKCE verifier) → verified ID token.
    async fn redeem(&self, code: String, pending: &Pending) -> Result<Verified, String> {
        let d = self.discover(false).await?;
        let client = self.client(&d)?;
        let http = self.0.http.clone();
        let call = move |req| send(http.clone(), req);
        let verifier = PkceCodeVerifier::new(pending.verifier.secret().clone());
        let tokens = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| e.to_string())?
            .set_pkce_verifier(verifier)
            .request_async(&call)
            .await
            .map_err(|e| match e {
                openidconnect::RequestTokenError::ServerResponse(r) => format!(
                    "token endpoint: {} {}",
                    r.error(),
                    r.error_description().cloned().unwrap_or_default()
                ),
                other => format!("token endpoint: {other}"),
            })?;
        let id_token: &PolisIdToken = tokens
            .id_token()
            .ok_or_else(|| "no id_token in the token response".to_owned())?;
        let claims = match self.verify_id_token(&client, id_token, &pending.nonce) {
            Ok(c) => c,
            Err(first) => {
                // Perhaps a new signing key: fetch the JWKS again, once.
                let d = self.discover(true).await?;
                let client = self.client(&d)?;
                self.verify_id_token(&client, id_token, &pending.nonce)
                    .map_err(|again| format!("{again} (before the JWKS refresh: {first})"))?
            }
        };
        // `at_hash`, when present, binds the access token to the ID token.
        if let Some(expected) = claims.access_token_hash() {
            let verifier = client.id_token_verifier().set_allowed_algs(allowed_algs());
            let alg = id_token.signing_alg().map_err(|e| e.to_string())?;
            let key = id_token.signing_key(&verifier).map_err(|e| e.to_string())?;
            let actual = AccessTokenHash::from_token(tokens.access_token(), alg, key)
                .map_err(|e| e.to_string())?;
            if actual != *expected {
                return Err("at_hash does not match the access token".to_owned());
            }
        }
        let table = match serde_json::to_value(&claims) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        Ok(Verified {
            raw: id_token.to_string(),
            claims,
            table,
        })
    }

    fn verify_id_token(
        &self,
        client: &PolisClient,
        id_token: &PolisIdToken,
        nonce: &Nonce,
    ) -> Result<PolisIdTokenClaims, String> {
        let verifier = client.id_token_verifier().set_allowed_algs(allowed_algs());
        id_token
            .claims(&verifier, nonce)
            .cloned()
            .map_err(|e| e.to_string())
    }

    /// The token of a confirmation: `amr` must include `cp`, for the person of the
    /// session, given after the request was sent.
    fn record_confirmation(
        &self,
        browser: Option<&str>,
        pending: &Pending,
        verified: &Verified,
    ) -> Response {
        let amr: Vec<String> = verified
            .claims
            .auth_method_refs()
            .map(|v| v.iter().map(|a| a.to_string()).collect())
            .unwrap_or_default();
        let auth_time = verified.claims.auth_time().map(|t| t.timestamp());
        let mut store = self.store();
        let Some(session) = browser.and_then(|b| store.sessions.get_mut(b)) else {
            return message(
                StatusCode::FORBIDDEN,
                "Conferma rifiutata",
                "La sessione è scaduta: accedi di nuovo.",
            );
        };
        if session.sub != verified.claims.subject().as_str() {
            return message(
                StatusCode::FORBIDDEN,
                "Conferma rifiutata",
                "La conferma è stata data da un'altra persona.",
            );
        }
        if !amr.iter().any(|a| a == AMR_CP) {
            tracing::warn!(?amr, "confirmation without the CP refused");
            return message(
                StatusCode::FORBIDDEN,
                "Conferma rifiutata",
                format!(
                    "Il token non attesta il Codice Personale (amr: {}).",
                    amr.join(", ")
                ),
            );
        }
        let Some(auth_time) = auth_time.filter(|t| *t + SKEW_SECONDS >= pending.created_unix)
        else {
            return message(
                StatusCode::FORBIDDEN,
                "Conferma rifiutata",
                "Il Codice Personale non è stato dato per questa richiesta (auth_time).",
            );
        };
        session.confirmation = Some(Confirmation {
            amr,
            auth_time,
            cp_time: verified.claims.additional_claims().cp_time,
        });
        Redirect::to("/confermata").into_response()
    }
}

/// `GET /confermata`: the last confirmation of this session.
async fn confirmed(State(app): State<AppState>, jar: CookieJar) -> Response {
    let page = {
        let store = app.store();
        jar.get(COOKIE)
            .and_then(|c| store.sessions.get(c.value()))
            .and_then(|s| {
                s.confirmation.as_ref().map(|c| ConfirmedPage {
                    name: display_name(&s.claims),
                    amr: c.amr.join(", "),
                    auth_time: format!("{} ({})", c.auth_time, show_time(c.auth_time)),
                    cp_time: c
                        .cp_time
                        .map_or_else(String::new, |t| format!("{t} ({})", show_time(t))),
                })
            })
    };
    match page {
        Some(p) => render(StatusCode::OK, &p),
        None => Redirect::to("/").into_response(),
    }
}

/// `POST /logout`: the local session first, then the gateway (RP-initiated logout).
async fn logout(
    State(app): State<AppState>,
    jar: CookieJar,
    Form(form): Form<CsrfForm>,
) -> Response {
    let session = {
        let mut store = app.store();
        let key = jar.get(COOKIE).map(|c| c.value().to_owned());
        match key.as_deref().and_then(|k| store.sessions.get(k)) {
            Some(s) if !form.csrf.is_empty() && s.csrf == form.csrf => {
                key.and_then(|k| store.sessions.remove(&k))
            }
            Some(_) => {
                return message(
                    StatusCode::FORBIDDEN,
                    "Richiesta non valida",
                    "Il modulo non è valido.",
                );
            }
            None => None,
        }
    };
    let jar = jar.remove(Cookie::build(COOKIE).path("/").build());
    let Some(session) = session else {
        return (jar, Redirect::to("/")).into_response();
    };
    let state = random_token();
    let target = async {
        let d = app.discover(false).await.ok()?;
        let end = d
            .metadata
            .additional_metadata()
            .end_session_endpoint
            .clone()?;
        let hint: PolisIdToken = session.id_token.parse().ok()?;
        let back = PostLogoutRedirectUrl::new(format!("{}/", app.cfg().public_url)).ok()?;
        Some(
            LogoutRequest::from(end)
                .set_id_token_hint(&hint)
                .set_client_id(ClientId::new(app.cfg().client_id.clone()))
                .set_post_logout_redirect_uri(back)
                .set_state(CsrfToken::new(state.clone()))
                .http_get_url(),
        )
    }
    .await;
    let Some(to) = target else {
        return (jar, Redirect::to("/")).into_response();
    };
    let jar = jar.add(app.named_cookie(LOGOUT_COOKIE, state));
    (jar, Redirect::to(to.as_str())).into_response()
}

// ---------------------------------------------------------------------------------------
// Back-Channel Logout 1.0
// ---------------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LogoutForm {
    logout_token: String,
}

#[derive(Debug, Deserialize)]
struct LogoutClaims {
    iat: i64,
    jti: String,
    sub: Option<String>,
    sid: Option<String>,
    events: serde_json::Map<String, serde_json::Value>,
    nonce: Option<serde_json::Value>,
}

/// `POST /backchannel-logout`.
async fn backchannel_logout(
    State(app): State<AppState>,
    body: Result<Form<LogoutForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let answer =
        |status: StatusCode| (status, [(header::CACHE_CONTROL, "no-store")]).into_response();
    let token = match body {
        Ok(Form(f)) if !f.logout_token.is_empty() => f.logout_token,
        _ => {
            app.store().backchannel_refused += 1;
            return answer(StatusCode::BAD_REQUEST);
        }
    };
    let claims = match app.verify_logout_token(&token).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "back-channel logout token refused");
            app.store().backchannel_refused += 1;
            return answer(StatusCode::BAD_REQUEST);
        }
    };
    let mut store = app.store();
    let now = now_unix();
    store.prune(Instant::now(), now);
    if store.seen_jti.contains_key(&claims.jti) {
        tracing::warn!(jti = %claims.jti, "back-channel logout token replayed");
        store.backchannel_refused += 1;
        return answer(StatusCode::BAD_REQUEST);
    }
    store
        .seen_jti
        .insert(claims.jti.clone(), now + LOGOUT_TOKEN_MAX_AGE_SECONDS);
    let before = store.sessions.len();
    store
        .sessions
        .retain(|_, s| match (&claims.sid, &claims.sub) {
            // With a sid: that gateway session only (and it must be the same person).
            (Some(sid), sub) => {
                !(s.sid.as_deref() == Some(sid.as_str())
                    && sub.as_ref().is_none_or(|sub| *sub == s.sub))
            }
            // Only a sub: every session of that person.
            (None, Some(sub)) => s.sub != *sub,
            (None, None) => true,
        });
    let ended = before - store.sessions.len();
    store.backchannel_accepted += 1;
    store.backchannel_sessions_ended += ended as u64;
    tracing::info!(sid = ?claims.sid, ended, "back-channel logout");
    answer(StatusCode::OK)
}

impl AppState {
    /// Back-Channel Logout 1.0 §2.6: JWS with the gateway's keys (EdDSA or ES256),
    /// `typ` `logout+jwt`, `iss`, `aud` = our client_id, `iat` recent, `exp`, `jti`, the
    /// backchannel-logout event, `sid` and/or `sub`, no `nonce`.
    async fn verify_logout_token(&self, token: &str) -> Result<LogoutClaims, String> {
        use jsonwebtoken::{Algorithm, DecodingKey, Validation};
        let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
        let typ = header
            .typ
            .as_deref()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if typ != "logout+jwt" && typ != "application/logout+jwt" {
            return Err(format!("typ {:?} is not logout+jwt", header.typ));
        }
        if !matches!(header.alg, Algorithm::EdDSA | Algorithm::ES256) {
            return Err(format!("algorithm {:?} not accepted", header.alg));
        }
        let kid = header.kid.ok_or("no kid")?;
        let mut jwk = None;
        for fresh in [false, true] {
            let d = self.discover(fresh).await?;
            let set: jsonwebtoken::jwk::JwkSet = serde_json::to_value(d.metadata.jwks())
                .and_then(serde_json::from_value)
                .map_err(|e| format!("JWKS: {e}"))?;
            if let Some(k) = set.find(&kid) {
                jwk = Some(k.clone());
                break;
            }
        }
        let jwk = jwk.ok_or_else(|| format!("no key {kid} in the gateway JWKS"))?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[self.cfg().gateway.as_str()]);
        validation.set_audience(&[self.cfg().client_id.as_str()]);
        validation.set_required_spec_claims(&["iss", "aud", "exp"]);
        validation.leeway = SKEW_SECONDS.unsigned_abs();
        let claims = jsonwebtoken::decode::<LogoutClaims>(token, &key, &validation)
            .map_err(|e| e.to_string())?
            .claims;
        let now = now_unix();
        if claims.iat > now + SKEW_SECONDS || claims.iat < now - LOGOUT_TOKEN_MAX_AGE_SECONDS {
            return Err(format!("iat {} is not recent", claims.iat));
        }
        if !claims
            .events
            .get(BACKCHANNEL_EVENT)
            .is_some_and(serde_json::Value::is_object)
        {
            return Err("events lacks the backchannel-logout member".to_owned());
        }
        if claims.nonce.is_some() {
            return Err("a logout token must not carry a nonce".to_owned());
        }
        if claims.sid.is_none() && claims.sub.is_none() {
            return Err("neither sid nor sub".to_owned());
        }
        if claims.jti.is_empty() {
            return Err("empty jti".to_owned());
        }
        Ok(claims)
    }
}

/// `GET /status`: the live sessions' gateway `sid`s and the back-channel counters.
async fn status(State(app): State<AppState>) -> Response {
    let mut store = app.store();
    store.prune(Instant::now(), now_unix());
    let mut sids: Vec<String> = store
        .sessions
        .values()
        .filter_map(|s| s.sid.clone())
        .collect();
    sids.sort();
    let body = serde_json::json!({
        "sessions": store.sessions.len(),
        "sids": sids,
        "backchannel_logouts_accepted": store.backchannel_accepted,
        "backchannel_logouts_refused": store.backchannel_refused,
        "backchannel_sessions_ended": store.backchannel_sessions_ended,
    });
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}
