//! The provider: authorization requests, codes, tokens, refresh rotation, revocation,
//! introspection, logout propagation. No HTTP types; `now` is passed in.
//!
//! Everything that must be shared by replicas or consumed once lives in the state
//! store (one key per command, each with a TTL):
//!
//! | key | what | TTL |
//! |---|---|---|
//! | `polis:oidc:authz:<id>` | an authorization request waiting for a login or the CP | 10 min |
//! | `polis:oidc:code:<sha256(code)>` | the grant behind a code, taken once (GETDEL) | `code_ttl` |
//! | `polis:oidc:codefam:<sha256(code)>` | the code's family, written *with* the code: a use that finds the code gone revokes it | revocation TTL |
//! | `polis:oidc:rt:<sha256(rt)>` | a refresh token's grant, taken once on rotation (GETDEL) | refresh TTL, capped by the family's end |
//! | `polis:oidc:rtfam:<sha256(rt)>` | the refresh token's family, written *with* the token: reuse revokes it | until the family's end |
//! | `polis:oidc:revfam:<family>` | a revoked token family (code → tokens → rotations) | revocation TTL |
//! | `polis:oidc:revjti:<jti>` | a revoked access token | until it expires |
//! | `polis:oidc:revsid:<sid>` | a gateway session that ended: its tokens are dead | revocation TTL |
//! | `polis:oidc:sidclients:<sid>` | clients that got tokens in a session (back-channel logout) | until the session's absolute end |
//! | `polis:oidc:cjti:<client>:<jti>` | a client assertion already used | until it expires |
//!
//! The revocation TTL is the longest any token of a family can live: the family
//! lifetime plus the access-token and code lifetimes.
//!
//! **Families end.** A family (a code and every token rotated from it) ends at a fixed
//! time set when the code is issued: `refresh_family_lifetime` later, or the session's
//! absolute end if that comes first. Rotation never moves it; an access token never
//! outlives it.
//!
//! **Reuse detection is atomic.** The grant is taken with GETDEL, so of any number of
//! concurrent uses exactly one gets it; the family marker was written before the code
//! or token was handed out, so every other use finds it and revokes the family.
//!
//! Access tokens are JWTs (`typ` `at+jwt`, RFC 9068) carrying `sid` and `fam`, so a
//! resource server can verify them offline and introspection can tell if their
//! session or family was revoked. Every token the provider verifies is checked for its
//! `typ` ([`TokenType`]). Refresh tokens are opaque.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::clients::{Client, ClientError, ClientRegistry, Presented};
use super::keys::{KeyError, KeyRing, SigningAlg, TokenType};
use crate::accounts::{Account, EnablementState};
use crate::saml::{Level, ids};
use crate::state::{StateError, StateStore};

/// `acr_values` entry that asks the person to confirm with their Codice Personale.
pub const ACR_CP: &str = "urn:polis:acr:cp";
/// `amr` value of a SPID login.
pub const AMR_SPID: &str = "spid";
/// `amr` value of a Codice Personale confirmation.
pub const AMR_CP: &str = "cp";
/// Scopes the provider knows.
pub const SCOPES: [&str; 4] = ["openid", "profile", "email", "istanze"];

const AUTHZ_TTL: Duration = Duration::from_secs(600);

/// OAuth/OIDC errors, with the RFC 6749 error code they map to.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// `invalid_request`.
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// `invalid_client`.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// `invalid_grant`.
    #[error("invalid_grant: {0}")]
    InvalidGrant(String),
    /// `unauthorized_client`.
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(String),
    /// `unsupported_grant_type`.
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    /// `invalid_scope`.
    #[error("invalid_scope: {0}")]
    InvalidScope(String),
    /// `invalid_token` (bearer).
    #[error("invalid_token: {0}")]
    InvalidToken(String),
    /// `access_denied`: the account may not get tokens for this client.
    #[error("access_denied: {0}")]
    AccessDenied(String),
    /// The redirect_uri or client_id of an authorization request cannot be trusted:
    /// shown as a page, never redirected to.
    #[error("untrusted authorization request: {0}")]
    Untrusted(String),
    /// The pending authorization is unknown or expired.
    #[error("authorization request expired")]
    AuthzExpired,
    /// Signing failed.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The argon2 pool is saturated (client-secret checks): 503.
    #[error(transparent)]
    Busy(#[from] crate::blocking::PoolError),
    /// Serialization or task failure.
    #[error("internal: {0}")]
    Internal(String),
}

impl OidcError {
    /// The OAuth `error` value.
    pub fn oauth_code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) | Self::AuthzExpired => "invalid_request",
            Self::Client(_) => "invalid_client",
            Self::InvalidGrant(_) => "invalid_grant",
            Self::UnauthorizedClient(_) => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope(_) => "invalid_scope",
            Self::InvalidToken(_) => "invalid_token",
            Self::AccessDenied(_) => "access_denied",
            Self::Untrusted(_) => "invalid_request",
            Self::Busy(_) => "temporarily_unavailable",
            Self::Keys(_) | Self::State(_) | Self::Internal(_) => "server_error",
        }
    }

    /// A stable code for logs and pages.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "POLIS_OIDC_INVALID_REQUEST",
            Self::Client(e) => e.code(),
            Self::InvalidGrant(_) => "POLIS_OIDC_INVALID_GRANT",
            Self::UnauthorizedClient(_) => "POLIS_OIDC_UNAUTHORIZED_CLIENT",
            Self::UnsupportedGrantType => "POLIS_OIDC_UNSUPPORTED_GRANT",
            Self::InvalidScope(_) => "POLIS_OIDC_INVALID_SCOPE",
            Self::InvalidToken(_) => "POLIS_OIDC_INVALID_TOKEN",
            Self::AccessDenied(_) => "POLIS_OIDC_ACCESS_DENIED",
            Self::Untrusted(_) => "POLIS_OIDC_UNTRUSTED_REQUEST",
            Self::AuthzExpired => "POLIS_OIDC_AUTHZ_EXPIRED",
            Self::Keys(e) => e.code(),
            Self::State(StateError::Unavailable(_)) => "POLIS_STATE_UNAVAILABLE",
            Self::State(_) => "POLIS_STATE_ERROR",
            Self::Busy(e) => e.code(),
            Self::Internal(_) => "POLIS_INTERNAL",
        }
    }
}

/// Settings from `[oidc]`.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// `iss`.
    pub issuer: String,
    /// Access-token lifetime.
    pub access_ttl: Duration,
    /// ID-token lifetime.
    pub id_ttl: Duration,
    /// Lifetime of one refresh token (each rotation issues a new one).
    pub refresh_ttl: Duration,
    /// Absolute lifetime of a token family, from the code; rotation never extends it.
    pub family_lifetime: Duration,
    /// Code lifetime.
    pub code_ttl: Duration,
}

impl OidcSettings {
    /// The token endpoint URL (an accepted client-assertion audience).
    pub fn token_endpoint(&self) -> String {
        format!("{}/oidc/token", self.issuer)
    }

    /// The longest any token of a family lives: how long a revocation is kept.
    fn revocation_ttl(&self) -> Duration {
        self.family_lifetime + self.access_ttl + self.code_ttl
    }
}

/// The query of `/oidc/authorize` as received.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AuthorizeParams {
    /// Must be `code`.
    pub response_type: String,
    /// The client.
    pub client_id: String,
    /// Exact registered redirect URI.
    pub redirect_uri: String,
    /// Space-separated scopes, `openid` required.
    pub scope: String,
    /// Opaque client state, echoed.
    pub state: Option<String>,
    /// Echoed in the ID token.
    pub nonce: Option<String>,
    /// PKCE challenge (required).
    pub code_challenge: Option<String>,
    /// Must be `S256`.
    pub code_challenge_method: Option<String>,
    /// SPID level URIs and/or [`ACR_CP`].
    pub acr_values: Option<String>,
    /// `login` forces a new SPID login.
    pub prompt: Option<String>,
    /// `query` only (the default).
    pub response_mode: Option<String>,
}

/// A validated authorization request, kept while the person logs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthzRequest {
    /// Its id (in the resume URL).
    pub id: String,
    /// The client.
    pub client_id: String,
    /// The redirect URI.
    pub redirect_uri: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Client state.
    pub state: Option<String>,
    /// Nonce.
    pub nonce: Option<String>,
    /// PKCE S256 challenge.
    pub code_challenge: String,
    /// SPID level asked.
    pub level: Level,
    /// Whether the CP must be confirmed.
    pub cp: bool,
    /// Whether a new SPID login is required.
    pub force_login: bool,
    /// When it arrived (a forced login must be newer).
    pub created_at: DateTime<Utc>,
}

/// Where an authorization error goes: to the client (a redirect) once the client and
/// redirect URI are trusted, to a page before.
#[derive(Debug)]
pub struct RedirectError {
    /// The trusted redirect URI.
    pub redirect_uri: String,
    /// The error.
    pub error: OidcError,
    /// The client's state.
    pub state: Option<String>,
}

/// What the logged-in person's session brings to an authorization.
#[derive(Debug, Clone)]
pub struct SessionFacts {
    /// Session id (the `sid` claim).
    pub sid: String,
    /// Level of the SPID login.
    pub level: Level,
    /// When the SPID login happened.
    pub auth_time: DateTime<Utc>,
    /// When the CP was last confirmed in this session for this request, if any.
    pub cp_at: Option<DateTime<Utc>>,
    /// The session's absolute end: no token family outlives it.
    pub session_ends_at: DateTime<Utc>,
}

/// The grant behind a code or a refresh token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The token family (code → tokens → rotations).
    pub family: String,
    /// The client.
    pub client_id: String,
    /// Redirect URI the code was sent to.
    pub redirect_uri: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Nonce for the ID token.
    pub nonce: Option<String>,
    /// PKCE challenge (codes only).
    pub code_challenge: Option<String>,
    /// The account.
    pub account_id: Uuid,
    /// The gateway session.
    pub sid: String,
    /// SPID level obtained.
    pub level: Level,
    /// SPID login time.
    pub auth_time: DateTime<Utc>,
    /// CP confirmation time.
    pub cp_at: Option<DateTime<Utc>>,
    /// When the family ends whatever its rotations (its lifetime, capped by the
    /// session's absolute end). A grant stored before this field existed reads as the
    /// epoch: ended (invalid_grant), never endless.
    #[serde(default)]
    pub family_ends_at: DateTime<Utc>,
}

/// The family marker written with a code or refresh token (`codefam`, `rtfam`): a use
/// that finds the grant gone learns which family to revoke, or that it already ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FamilyMark {
    family: String,
    ends_at: DateTime<Utc>,
}

impl FamilyMark {
    fn of(grant: &Grant) -> Result<Vec<u8>, OidcError> {
        serde_json::to_vec(&Self {
            family: grant.family.clone(),
            ends_at: grant.family_ends_at,
        })
        .map_err(internal)
    }
}

/// Tokens returned by `/oidc/token`.
#[derive(Debug, Clone, Serialize)]
pub struct TokenResponse {
    /// The access token (JWT).
    pub access_token: String,
    /// `Bearer`.
    pub token_type: &'static str,
    /// Seconds.
    pub expires_in: u64,
    /// The ID token.
    pub id_token: String,
    /// The new refresh token.
    pub refresh_token: String,
    /// Granted scopes.
    pub scope: String,
}

/// Access-token claims.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// The account id.
    pub sub: String,
    /// The client.
    pub aud: String,
    /// The client.
    pub client_id: String,
    /// Expiry.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Token id.
    pub jti: String,
    /// Scopes.
    pub scope: String,
    /// Gateway session.
    pub sid: String,
    /// Token family.
    pub fam: String,
    /// SPID level URI.
    pub acr: String,
    /// SPID login time.
    pub auth_time: i64,
}

/// The provider.
pub struct Provider {
    settings: OidcSettings,
    keys: KeyRing,
    clients: ClientRegistry,
    state: std::sync::Arc<dyn StateStore>,
    /// Bounded pool for client-secret checks (argon2), shared with the CP forms.
    argon2: crate::blocking::BlockingPool,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn hash_key(prefix: &str, secret: &str) -> String {
    format!(
        "{prefix}{}",
        hex::encode(openssl::sha::sha256(secret.as_bytes()))
    )
}

fn family_ended() -> OidcError {
    OidcError::InvalidGrant("the token family has reached its absolute lifetime".into())
}

fn internal(e: impl std::fmt::Display) -> OidcError {
    OidcError::Internal(e.to_string())
}

/// `BASE64URL(SHA256(verifier)) == challenge` (RFC 7636 S256), constant-time.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    use base64::Engine as _;
    let valid_verifier = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if !valid_verifier {
        return false;
    }
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(openssl::sha::sha256(verifier.as_bytes()));
    computed.len() == challenge.len()
        && openssl::memcmp::eq(computed.as_bytes(), challenge.as_bytes())
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Time from `now` until `end` (zero when it is past), plus one second so a key written
/// with it outlives the moment it guards.
fn until(end: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (end - now).to_std().unwrap_or(Duration::ZERO) + Duration::from_secs(1)
}

impl Provider {
    /// Builds the provider.
    pub fn new(
        settings: OidcSettings,
        keys: KeyRing,
        clients: ClientRegistry,
        state: std::sync::Arc<dyn StateStore>,
        argon2: crate::blocking::BlockingPool,
    ) -> Self {
        Self {
            settings,
            keys,
            clients,
            state,
            argon2,
        }
    }

    /// Settings.
    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    /// The key ring (JWKS).
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// The clients.
    pub fn clients(&self) -> &ClientRegistry {
        &self.clients
    }

    /// Validates an authorization request. `Err(Ok(page error))` when the client or
    /// redirect URI cannot be trusted (nothing is redirected), `Err(Err(redirect))`
    /// for errors reported to the client.
    pub fn validate_authorize(
        &self,
        p: &AuthorizeParams,
        default_level: Level,
        now: DateTime<Utc>,
    ) -> Result<AuthzRequest, Result<OidcError, RedirectError>> {
        let client = self
            .clients
            .get(&p.client_id)
            .ok_or_else(|| Ok(OidcError::Untrusted("unknown client_id".into())))?;
        if !client.redirect_uris.contains(&p.redirect_uri) {
            return Err(Ok(OidcError::Untrusted(
                "redirect_uri is not registered for this client".into(),
            )));
        }
        let redirect = |error: OidcError| {
            Err(Err(RedirectError {
                redirect_uri: p.redirect_uri.clone(),
                error,
                state: p.state.clone(),
            }))
        };
        if p.response_type != "code" {
            return redirect(OidcError::InvalidRequest(
                "response_type must be code".into(),
            ));
        }
        if p.response_mode.as_deref().is_some_and(|m| m != "query") {
            return redirect(OidcError::InvalidRequest(
                "only response_mode=query is supported".into(),
            ));
        }
        let scopes: Vec<String> = p.scope.split_whitespace().map(str::to_owned).collect();
        if !scopes.iter().any(|s| s == "openid") {
            return redirect(OidcError::InvalidScope("openid is required".into()));
        }
        if let Some(bad) = scopes
            .iter()
            .find(|s| !client.scopes.contains(s) || !SCOPES.contains(&s.as_str()))
        {
            return redirect(OidcError::InvalidScope(format!(
                "scope {bad} is not allowed for this client"
            )));
        }
        let challenge = match (&p.code_challenge, p.code_challenge_method.as_deref()) {
            (Some(c), Some("S256")) if (43..=128).contains(&c.len()) => c.clone(),
            (None, _) => {
                return redirect(OidcError::InvalidRequest(
                    "PKCE is required: code_challenge with code_challenge_method=S256".into(),
                ));
            }
            _ => {
                return redirect(OidcError::InvalidRequest(
                    "code_challenge_method must be S256".into(),
                ));
            }
        };
        let mut level = None;
        let mut cp = false;
        for value in p.acr_values.as_deref().unwrap_or("").split_whitespace() {
            if value == ACR_CP {
                cp = true;
            } else if let Some(l) = Level::from_uri(value) {
                // Several levels: the lowest satisfies the request (OIDC: voluntary).
                level = Some(level.map_or(l, |prev: Level| prev.min(l)));
            }
        }
        let force_login = match p.prompt.as_deref() {
            None | Some("") => false,
            Some(prompt) => {
                let values: Vec<&str> = prompt.split_whitespace().collect();
                if values.contains(&"none") {
                    return redirect(OidcError::InvalidRequest(
                        "prompt=none is not supported: a SPID login needs the person".into(),
                    ));
                }
                values.contains(&"login")
            }
        };
        if p.state.as_ref().is_some_and(|s| s.len() > 512)
            || p.nonce.as_ref().is_some_and(|n| n.len() > 512)
        {
            return redirect(OidcError::InvalidRequest(
                "state and nonce are limited to 512 characters".into(),
            ));
        }
        Ok(AuthzRequest {
            id: ids::new_token(24),
            client_id: client.id.clone(),
            redirect_uri: p.redirect_uri.clone(),
            scopes,
            state: p.state.clone(),
            nonce: p.nonce.clone(),
            code_challenge: challenge,
            level: level.unwrap_or(default_level),
            cp,
            force_login,
            created_at: now,
        })
    }

    /// Keeps an authorization request while the person logs in or confirms the CP.
    pub async fn park(&self, req: &AuthzRequest) -> Result<(), OidcError> {
        let value = serde_json::to_vec(req).map_err(internal)?;
        self.state
            .put(&format!("polis:oidc:authz:{}", req.id), &value, AUTHZ_TTL)
            .await?;
        Ok(())
    }

    /// A parked authorization request.
    pub async fn parked(&self, id: &str) -> Result<AuthzRequest, OidcError> {
        if id.len() > 64
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(OidcError::AuthzExpired);
        }
        let raw = self
            .state
            .get(&format!("polis:oidc:authz:{id}"))
            .await?
            .ok_or(OidcError::AuthzExpired)?;
        serde_json::from_slice(&raw).map_err(internal)
    }

    /// Forgets a parked request.
    pub async fn unpark(&self, id: &str) -> Result<(), OidcError> {
        self.state.delete(&format!("polis:oidc:authz:{id}")).await?;
        Ok(())
    }

    /// Whether the session satisfies the request as it is (level, fresh login, CP).
    pub fn session_satisfies(req: &AuthzRequest, facts: &SessionFacts) -> bool {
        facts.level >= req.level
            && (!req.force_login || facts.auth_time >= req.created_at)
            && (!req.cp || facts.cp_at.is_some_and(|t| t >= req.created_at))
    }

    /// Issues the code for a satisfied request; returns the redirect URL.
    pub async fn issue_code(
        &self,
        req: &AuthzRequest,
        account: &Account,
        facts: &SessionFacts,
        now: DateTime<Utc>,
    ) -> Result<String, RedirectError> {
        let redirect_err = |error: OidcError| RedirectError {
            redirect_uri: req.redirect_uri.clone(),
            error,
            state: req.state.clone(),
        };
        let client = self
            .clients
            .get(&req.client_id)
            .ok_or_else(|| redirect_err(OidcError::UnauthorizedClient("client removed".into())))?;
        if account.enablement_state != EnablementState::Enabled && !client.allow_in_enablement {
            return Err(redirect_err(OidcError::AccessDenied(
                "the account has not completed the Istanze OnLine enablement".into(),
            )));
        }
        let code = ids::new_token(32);
        let family_end = now
            + chrono::Duration::from_std(self.settings.family_lifetime)
                .unwrap_or(chrono::Duration::MAX);
        let grant = Grant {
            family: ids::new_token(16),
            client_id: client.id.clone(),
            redirect_uri: req.redirect_uri.clone(),
            scopes: req.scopes.clone(),
            nonce: req.nonce.clone(),
            code_challenge: Some(req.code_challenge.clone()),
            account_id: account.id,
            sid: facts.sid.clone(),
            level: facts.level,
            auth_time: facts.auth_time,
            cp_at: if req.cp { facts.cp_at } else { None },
            family_ends_at: family_end.min(facts.session_ends_at),
        };
        if grant.family_ends_at <= now {
            return Err(redirect_err(OidcError::AccessDenied(
                "the session has reached its absolute timeout".into(),
            )));
        }
        let value = serde_json::to_vec(&grant).map_err(|e| redirect_err(internal(e)))?;
        // The family marker first: any use of the code that finds the grant gone
        // (taken by another use) finds the family to revoke.
        self.state
            .put(
                &hash_key("polis:oidc:codefam:", &code),
                &FamilyMark::of(&grant).map_err(redirect_err)?,
                self.settings.revocation_ttl(),
            )
            .await
            .map_err(|e| redirect_err(e.into()))?;
        self.state
            .put(
                &hash_key("polis:oidc:code:", &code),
                &value,
                self.settings.code_ttl,
            )
            .await
            .map_err(|e| redirect_err(e.into()))?;
        self.remember_client(&facts.sid, &client.id, until(facts.session_ends_at, now))
            .await
            .map_err(redirect_err)?;
        let mut url = reqwest::Url::parse(&req.redirect_uri)
            .map_err(|e| redirect_err(OidcError::Untrusted(e.to_string())))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("code", &code);
            if let Some(state) = &req.state {
                q.append_pair("state", state);
            }
            q.append_pair("iss", &self.settings.issuer);
        }
        Ok(url.to_string())
    }

    async fn remember_client(
        &self,
        sid: &str,
        client_id: &str,
        ttl: Duration,
    ) -> Result<(), OidcError> {
        let key = format!("polis:oidc:sidclients:{sid}");
        let mut list: Vec<String> = match self.state.get(&key).await? {
            Some(raw) => serde_json::from_slice(&raw).unwrap_or_default(),
            None => Vec::new(),
        };
        if !list.iter().any(|c| c == client_id) {
            list.push(client_id.to_owned());
            let value = serde_json::to_vec(&list).map_err(internal)?;
            self.state.put(&key, &value, ttl).await?;
        }
        Ok(())
    }

    /// The clients that got tokens in a session.
    pub async fn session_clients(&self, sid: &str) -> Result<Vec<&Client>, OidcError> {
        let list: Vec<String> = match self
            .state
            .get(&format!("polis:oidc:sidclients:{sid}"))
            .await?
        {
            Some(raw) => serde_json::from_slice(&raw).unwrap_or_default(),
            None => Vec::new(),
        };
        Ok(list.iter().filter_map(|id| self.clients.get(id)).collect())
    }

    /// Authenticates the client of a token-endpoint style request (and records a
    /// client assertion's `jti`). CPU-bound parts run on a blocking thread.
    pub async fn authenticate_client(
        &self,
        presented: Presented,
        endpoint: &str,
        now: DateTime<Utc>,
    ) -> Result<Client, OidcError> {
        let clients = self.clients.clone();
        let audiences = [endpoint.to_owned(), self.settings.issuer.clone()];
        let (client, assertion) = self
            .argon2
            .run(move || {
                let aud: Vec<&str> = audiences.iter().map(String::as_str).collect();
                clients
                    .authenticate(&presented, &aud, now)
                    .map(|(c, a)| (c.clone(), a))
            })
            .await??;
        if let Some(info) = assertion {
            let ttl = (info.expires_at - now)
                .to_std()
                .unwrap_or(Duration::from_secs(1))
                + Duration::from_secs(1);
            let key = hash_key(&format!("polis:oidc:cjti:{}:", client.id), &info.jti);
            if !self.state.put_if_absent(&key, b"1", ttl).await? {
                return Err(ClientError::Unauthorized("client assertion replayed".into()).into());
            }
        }
        Ok(client)
    }

    /// `grant_type=authorization_code`: single use; a second use revokes every token
    /// issued from the code. Of concurrent uses exactly one gets tokens (GETDEL) and
    /// every other one revokes them.
    pub async fn exchange_code(
        &self,
        client: &Client,
        code: &str,
        redirect_uri: &str,
        verifier: Option<&str>,
        account_of: impl AsyncAccount,
        now: DateTime<Utc>,
    ) -> Result<TokenResponse, OidcError> {
        let code_key = hash_key("polis:oidc:code:", code);
        let family_key = hash_key("polis:oidc:codefam:", code);
        let Some(raw) = self.state.take(&code_key).await? else {
            if let Some(raw) = self.state.get(&family_key).await? {
                let mark: FamilyMark = serde_json::from_slice(&raw).map_err(internal)?;
                self.revoke_family(&mark.family).await?;
                return Err(OidcError::InvalidGrant(
                    "code already used: the tokens issued from it are revoked".into(),
                ));
            }
            return Err(OidcError::InvalidGrant("unknown or expired code".into()));
        };
        let grant: Grant = serde_json::from_slice(&raw).map_err(internal)?;
        if grant.client_id != client.id {
            self.revoke_family(&grant.family).await?;
            return Err(OidcError::InvalidGrant(
                "code issued to another client".into(),
            ));
        }
        if grant.redirect_uri != redirect_uri {
            return Err(OidcError::InvalidGrant("redirect_uri differs".into()));
        }
        let challenge = grant.code_challenge.as_deref().unwrap_or_default();
        if !verifier.is_some_and(|v| pkce_matches(v, challenge)) {
            return Err(OidcError::InvalidGrant("PKCE verification failed".into()));
        }
        let account = account_of.account(grant.account_id).await?;
        // No family check here: a fresh family can only have been revoked by a
        // concurrent use of this same code, which lost; the tokens issued now are dead.
        self.tokens(client, &grant, &account, now).await
    }

    /// `grant_type=refresh_token`: rotation; a reused token revokes its family. Of
    /// concurrent uses at most one gets tokens (GETDEL) and every other one revokes the
    /// family. The family's end never moves.
    pub async fn refresh(
        &self,
        client: &Client,
        refresh_token: &str,
        account_of: impl AsyncAccount,
        now: DateTime<Utc>,
    ) -> Result<TokenResponse, OidcError> {
        let key = hash_key("polis:oidc:rt:", refresh_token);
        let family_key = hash_key("polis:oidc:rtfam:", refresh_token);
        let Some(raw) = self.state.take(&key).await? else {
            if let Some(raw) = self.state.get(&family_key).await? {
                let mark: FamilyMark = serde_json::from_slice(&raw).map_err(internal)?;
                if mark.ends_at <= now {
                    return Err(family_ended());
                }
                self.revoke_family(&mark.family).await?;
                return Err(OidcError::InvalidGrant(
                    "refresh token reused: the whole family is revoked".into(),
                ));
            }
            return Err(OidcError::InvalidGrant(
                "unknown or expired refresh token".into(),
            ));
        };
        let grant: Grant = serde_json::from_slice(&raw).map_err(internal)?;
        if grant.client_id != client.id {
            self.revoke_family(&grant.family).await?;
            return Err(OidcError::InvalidGrant(
                "refresh token of another client".into(),
            ));
        }
        if self.family_revoked(&grant.family).await? {
            return Err(OidcError::InvalidGrant("the grant was revoked".into()));
        }
        let account = account_of.account(grant.account_id).await?;
        // A refreshed ID token does not re-assert the CP confirmation.
        let grant = Grant {
            cp_at: None,
            nonce: None,
            ..grant
        };
        self.tokens(client, &grant, &account, now).await
    }

    async fn family_revoked(&self, family: &str) -> Result<bool, OidcError> {
        Ok(self
            .state
            .get(&format!("polis:oidc:revfam:{family}"))
            .await?
            .is_some())
    }

    async fn session_revoked(&self, sid: &str) -> Result<bool, OidcError> {
        Ok(self
            .state
            .get(&format!("polis:oidc:revsid:{sid}"))
            .await?
            .is_some())
    }

    async fn family_dead(&self, grant: &Grant) -> Result<bool, OidcError> {
        Ok(self.family_revoked(&grant.family).await? || self.session_revoked(&grant.sid).await?)
    }

    async fn tokens(
        &self,
        client: &Client,
        grant: &Grant,
        account: &Account,
        now: DateTime<Utc>,
    ) -> Result<TokenResponse, OidcError> {
        if account.enablement_state != EnablementState::Enabled && !client.allow_in_enablement {
            return Err(OidcError::AccessDenied(
                "the account has not completed the enablement".into(),
            ));
        }
        if self.session_revoked(&grant.sid).await? {
            return Err(OidcError::InvalidGrant("the grant was revoked".into()));
        }
        // Whole seconds left in the family (token times are whole seconds).
        let family_left = (grant.family_ends_at - now).num_seconds();
        if family_left < 1 {
            return Err(family_ended());
        }
        let family_left = Duration::from_secs(u64::try_from(family_left).unwrap_or(0));
        let scope = grant.scopes.join(" ");
        let access = AccessClaims {
            iss: self.settings.issuer.clone(),
            sub: account.id.to_string(),
            aud: client.id.clone(),
            client_id: client.id.clone(),
            exp: now.timestamp() + secs(self.settings.access_ttl.min(family_left)),
            iat: now.timestamp(),
            jti: ids::new_token(16),
            scope: scope.clone(),
            sid: grant.sid.clone(),
            fam: grant.family.clone(),
            acr: grant.level.uri().to_owned(),
            auth_time: grant.auth_time.timestamp(),
        };
        let access_token = self
            .keys
            .sign_typed(&access, SigningAlg::EdDSA, TokenType::Access)?;
        // `openid` is in every grant (authorize requires it): always an ID token.
        let mut claims = self.claims_map(account, &grant.scopes);
        let mut put = |k: &str, v: serde_json::Value| {
            claims.insert(k.to_owned(), v);
        };
        put("iss", self.settings.issuer.clone().into());
        put("aud", client.id.clone().into());
        put("azp", client.id.clone().into());
        put("exp", (now.timestamp() + secs(self.settings.id_ttl)).into());
        put("iat", now.timestamp().into());
        put(
            "auth_time",
            grant.cp_at.unwrap_or(grant.auth_time).timestamp().into(),
        );
        put("spid_auth_time", grant.auth_time.timestamp().into());
        put("acr", grant.level.uri().into());
        let amr = if grant.cp_at.is_some() {
            vec![AMR_SPID, AMR_CP]
        } else {
            vec![AMR_SPID]
        };
        put("amr", amr.into());
        put("sid", grant.sid.clone().into());
        if let Some(nonce) = &grant.nonce {
            put("nonce", nonce.clone().into());
        }
        if let Some(cp_at) = grant.cp_at {
            put("cp_time", cp_at.timestamp().into());
        }
        let id_token = self.keys.sign(&claims, client.id_token_alg)?;
        let refresh_token = ids::new_token(32);
        let value = serde_json::to_vec(&Grant {
            code_challenge: None,
            ..grant.clone()
        })
        .map_err(internal)?;
        // The family marker first (reuse detection), then the token; neither outlives
        // the family.
        self.state
            .put(
                &hash_key("polis:oidc:rtfam:", &refresh_token),
                &FamilyMark::of(grant)?,
                until(grant.family_ends_at, now),
            )
            .await?;
        self.state
            .put(
                &hash_key("polis:oidc:rt:", &refresh_token),
                &value,
                self.settings.refresh_ttl.min(family_left),
            )
            .await?;
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: self.settings.access_ttl.as_secs(),
            id_token,
            refresh_token,
            scope,
        })
    }

    /// The identity claims of an account for the granted scopes (also `/userinfo`).
    pub fn user_claims(&self, account: &Account, scopes: &[String]) -> serde_json::Value {
        serde_json::Value::Object(self.claims_map(account, scopes))
    }

    fn claims_map(
        &self,
        account: &Account,
        scopes: &[String],
    ) -> serde_json::Map<String, serde_json::Value> {
        let has = |s: &str| scopes.iter().any(|x| x == s);
        let mut map = serde_json::Map::new();
        map.insert("sub".into(), account.id.to_string().into());
        if has("profile") {
            map.insert("given_name".into(), account.given_name.clone().into());
            map.insert("family_name".into(), account.family_name.clone().into());
            map.insert(
                "name".into(),
                format!("{} {}", account.given_name, account.family_name).into(),
            );
            if let Some(d) = account.birth_date {
                map.insert("birthdate".into(), d.to_string().into());
            }
            map.insert("preferred_username".into(), account.username.clone().into());
        }
        if has("email")
            && let Some(e) = &account.email
        {
            map.insert("email".into(), e.clone().into());
            // SPID-vouched or confirmed by the person during enablement.
            map.insert("email_verified".into(), false.into());
        }
        if has("istanze") {
            map.insert(
                "fiscal_number".into(),
                account.fiscal_code.as_str().to_owned().into(),
            );
            map.insert("username".into(), account.username.clone().into());
            map.insert(
                "enablement_state".into(),
                account.enablement_state.as_str().into(),
            );
        }
        map
    }

    /// Verifies an access token: `typ` `at+jwt`, signature, issuer, expiry, revocation.
    pub async fn check_access_token(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<AccessClaims, OidcError> {
        let claims: AccessClaims = self
            .keys
            .verify(token, TokenType::Access, now, &self.settings.issuer, None)
            .map_err(|e| OidcError::InvalidToken(e.to_string()))?;
        let revoked = self
            .state
            .get(&format!("polis:oidc:revjti:{}", claims.jti))
            .await?
            .is_some()
            || self
                .state
                .get(&format!("polis:oidc:revfam:{}", claims.fam))
                .await?
                .is_some()
            || self
                .state
                .get(&format!("polis:oidc:revsid:{}", claims.sid))
                .await?
                .is_some();
        if revoked {
            return Err(OidcError::InvalidToken("token revoked".into()));
        }
        Ok(claims)
    }

    /// RFC 7662: what an authenticated client may learn about a token. Only about
    /// tokens issued to `client` itself or to a client it is a resource server for
    /// (`introspect_for`); any other token is `active: false`, exactly like an unknown
    /// one, so nothing tells them apart.
    pub async fn introspect(
        &self,
        client: &Client,
        token: &str,
        now: DateTime<Utc>,
    ) -> serde_json::Value {
        if let Ok(c) = self.check_access_token(token, now).await
            && client.may_introspect(&c.client_id)
        {
            return serde_json::json!({
                "active": true,
                "token_type": "Bearer",
                "iss": c.iss,
                "sub": c.sub,
                "aud": c.aud,
                "client_id": c.client_id,
                "scope": c.scope,
                "exp": c.exp,
                "iat": c.iat,
                "jti": c.jti,
                "sid": c.sid,
                "acr": c.acr,
                "auth_time": c.auth_time,
            });
        }
        if let Ok(Some(raw)) = self.state.get(&hash_key("polis:oidc:rt:", token)).await
            && let Ok(grant) = serde_json::from_slice::<Grant>(&raw)
            && client.may_introspect(&grant.client_id)
            && grant.family_ends_at > now
            && matches!(self.family_dead(&grant).await, Ok(false))
        {
            return serde_json::json!({
                "active": true,
                "token_type": "refresh_token",
                "iss": self.settings.issuer,
                "sub": grant.account_id.to_string(),
                "client_id": grant.client_id,
                "scope": grant.scopes.join(" "),
                "sid": grant.sid,
                "exp": grant.family_ends_at.timestamp(),
            });
        }
        serde_json::json!({ "active": false })
    }

    /// RFC 7009: revokes a token of `client` (others' tokens are left alone, and the
    /// answer is the same, so nothing leaks).
    pub async fn revoke(
        &self,
        client: &Client,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<(), OidcError> {
        if let Ok(Some(raw)) = self.state.get(&hash_key("polis:oidc:rt:", token)).await
            && let Ok(grant) = serde_json::from_slice::<Grant>(&raw)
        {
            if grant.client_id == client.id {
                self.revoke_family(&grant.family).await?;
                self.state
                    .delete(&hash_key("polis:oidc:rt:", token))
                    .await?;
            }
            return Ok(());
        }
        if let Ok(claims) = self.keys.verify::<AccessClaims>(
            token,
            TokenType::Access,
            now,
            &self.settings.issuer,
            None,
        ) && claims.client_id == client.id
        {
            let left =
                Duration::from_secs(u64::try_from(claims.exp - now.timestamp()).unwrap_or(0))
                    + Duration::from_secs(1);
            self.state
                .put(&format!("polis:oidc:revjti:{}", claims.jti), b"1", left)
                .await?;
        }
        Ok(())
    }

    /// Revokes a token family.
    pub async fn revoke_family(&self, family: &str) -> Result<(), OidcError> {
        self.state
            .put(
                &format!("polis:oidc:revfam:{family}"),
                b"1",
                self.settings.revocation_ttl(),
            )
            .await?;
        Ok(())
    }

    /// A gateway session ended (logout, SLO): every token of it is revoked. Returns
    /// the back-channel logout tokens to deliver, one per client that asked for them.
    pub async fn end_session(
        &self,
        sid: &str,
        account_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, String)>, OidcError> {
        self.state
            .put(
                &format!("polis:oidc:revsid:{sid}"),
                b"1",
                self.settings.revocation_ttl(),
            )
            .await?;
        let mut out = Vec::new();
        for client in self.session_clients(sid).await? {
            let Some(uri) = &client.backchannel_logout_uri else {
                continue;
            };
            let claims = serde_json::json!({
                "iss": self.settings.issuer,
                "aud": client.id,
                "iat": now.timestamp(),
                "exp": now.timestamp() + 120,
                "jti": ids::new_token(16),
                "sub": account_id.to_string(),
                "sid": sid,
                "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
            });
            let token = self
                .keys
                .sign_typed(&claims, client.id_token_alg, TokenType::Logout)?;
            out.push((uri.clone(), token));
        }
        self.state
            .delete(&format!("polis:oidc:sidclients:{sid}"))
            .await?;
        Ok(out)
    }

    /// The discovery document.
    pub fn discovery(&self) -> serde_json::Value {
        let iss = &self.settings.issuer;
        let mut acr: Vec<&str> = [Level::L1, Level::L2, Level::L3]
            .into_iter()
            .map(Level::uri)
            .collect();
        acr.push(ACR_CP);
        serde_json::json!({
            "issuer": iss,
            "authorization_endpoint": format!("{iss}/oidc/authorize"),
            "token_endpoint": format!("{iss}/oidc/token"),
            "userinfo_endpoint": format!("{iss}/oidc/userinfo"),
            "jwks_uri": format!("{iss}/oidc/jwks"),
            "introspection_endpoint": format!("{iss}/oidc/introspect"),
            "revocation_endpoint": format!("{iss}/oidc/revoke"),
            "end_session_endpoint": format!("{iss}/oidc/logout"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["EdDSA", "ES256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": SCOPES,
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "sid", "azp", "given_name", "family_name", "name", "birthdate", "preferred_username", "email", "email_verified", "fiscal_number", "username", "enablement_state", "cp_time", "spid_auth_time"],
            "acr_values_supported": acr,
            "prompt_values_supported": ["login"],
            "claims_parameter_supported": false,
            "request_parameter_supported": false,
            "request_uri_parameter_supported": false,
            "authorization_response_iss_parameter_supported": true,
            "backchannel_logout_supported": true,
            "backchannel_logout_session_supported": true,
        })
    }
}

/// How the provider reads an account (the enablement service in the app).
#[async_trait::async_trait]
pub trait AsyncAccount: Send + Sync {
    /// The account, or `invalid_grant` if it is gone.
    async fn account(&self, id: Uuid) -> Result<Account, OidcError>;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::Arc;

    use super::*;
    use crate::accounts::FiscalCode;
    use crate::oidc::clients::ClientConfig;
    use crate::state::MemoryStore;

    #[test]
    fn pkce_s256_matches_rfc7636_appendix_b() {
        assert!(pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_matches(
            "short",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
    }

    const REDIRECT: &str = "https://rp.example/cb";
    /// RFC 7636 appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    struct Enabled(Account);

    #[async_trait::async_trait]
    impl AsyncAccount for &Enabled {
        async fn account(&self, _: Uuid) -> Result<Account, OidcError> {
            Ok(self.0.clone())
        }
    }

    fn setup(family_lifetime: Duration) -> (Arc<MemoryStore>, Provider, Enabled) {
        let state = Arc::new(MemoryStore::new());
        let keys = KeyRing::from_pems(&[(
            super::super::keys::generate_pem(SigningAlg::EdDSA).unwrap(),
            SigningAlg::EdDSA,
            None,
        )])
        .unwrap();
        let clients = ClientRegistry::from_config(&[ClientConfig {
            client_id: "rp".into(),
            name: None,
            secret_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$x$y".into()),
            jwks_file: None,
            redirect_uris: vec![REDIRECT.into()],
            post_logout_redirect_uris: vec![],
            scopes: vec!["openid".into()],
            backchannel_logout_uri: None,
            allow_in_enablement: false,
            id_token_alg: SigningAlg::EdDSA,
            introspect_for: vec![],
        }])
        .unwrap();
        let settings = OidcSettings {
            issuer: "https://gw.example".into(),
            access_ttl: Duration::from_secs(300),
            id_ttl: Duration::from_secs(300),
            refresh_ttl: Duration::from_secs(3600),
            family_lifetime,
            code_ttl: Duration::from_secs(60),
        };
        let mut account =
            crate::accounts::tests_support::sample(FiscalCode::parse("RSSMRA80A01H501U").unwrap());
        account.enablement_state = EnablementState::Enabled;
        let provider = Provider::new(
            settings,
            keys,
            clients,
            state.clone(),
            crate::blocking::BlockingPool::new(
                "argon2",
                crate::blocking::PoolLimits {
                    workers: 2,
                    queue_wait: Duration::from_secs(5),
                    deadline: Duration::from_secs(60),
                },
            ),
        );
        (state, provider, Enabled(account))
    }

    async fn code(
        p: &Provider,
        account: &Account,
        now: DateTime<Utc>,
        session_end: DateTime<Utc>,
    ) -> String {
        let req = AuthzRequest {
            id: "authz".into(),
            client_id: "rp".into(),
            redirect_uri: REDIRECT.into(),
            scopes: vec!["openid".into()],
            state: None,
            nonce: None,
            code_challenge: CHALLENGE.into(),
            level: Level::L2,
            cp: false,
            force_login: false,
            created_at: now,
        };
        let facts = SessionFacts {
            sid: "sid-1".into(),
            level: Level::L2,
            auth_time: now,
            cp_at: None,
            session_ends_at: session_end,
        };
        let url = p.issue_code(&req, account, &facts, now).await.unwrap();
        let url = reqwest::Url::parse(&url).unwrap();
        url.query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .unwrap()
    }

    /// The moment a non-atomic detection misses: another use has just taken the grant
    /// (GETDEL) and has written nothing yet. A use arriving then must still see the
    /// reuse and revoke the family.
    #[tokio::test]
    async fn a_use_racing_the_winner_between_its_take_and_its_answer_revokes_the_family() {
        let now = Utc::now();
        let (state, p, account) = setup(Duration::from_secs(3600));
        let client = p.clients().get("rp").unwrap().clone();
        let c = code(&p, &account.0, now, now + chrono::Duration::hours(8)).await;
        // The winner takes the code…
        let taken = state.take(&hash_key("polis:oidc:code:", &c)).await.unwrap();
        let grant: Grant = serde_json::from_slice(&taken.unwrap()).unwrap();
        // …and before it writes anything, another use:
        let err = p
            .exchange_code(&client, &c, REDIRECT, Some(VERIFIER), &account, now)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("already used"), "{err}");
        assert!(p.family_revoked(&grant.family).await.unwrap());
        // The winner's answer is issued and dead.
        let tokens = p.tokens(&client, &grant, &account.0, now).await.unwrap();
        assert!(
            p.check_access_token(&tokens.access_token, now)
                .await
                .is_err()
        );

        // The same for a refresh token.
        let c = code(&p, &account.0, now, now + chrono::Duration::hours(8)).await;
        let tokens = p
            .exchange_code(&client, &c, REDIRECT, Some(VERIFIER), &account, now)
            .await
            .unwrap();
        assert!(
            p.check_access_token(&tokens.access_token, now)
                .await
                .is_ok()
        );
        let taken = state
            .take(&hash_key("polis:oidc:rt:", &tokens.refresh_token))
            .await
            .unwrap();
        assert!(taken.is_some());
        let err = p
            .refresh(&client, &tokens.refresh_token, &account, now)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("reused"), "{err}");
        assert!(
            p.check_access_token(&tokens.access_token, now)
                .await
                .is_err()
        );
    }

    #[test]
    fn a_grant_without_a_family_end_has_ended() {
        let grant: Grant = serde_json::from_value(serde_json::json!({
            "family": "f", "client_id": "rp", "redirect_uri": REDIRECT, "scopes": ["openid"],
            "nonce": null, "code_challenge": null, "account_id": Uuid::nil(), "sid": "s",
            "level": Level::L2, "auth_time": Utc::now(), "cp_at": null,
        }))
        .unwrap();
        assert!(grant.family_ends_at < Utc::now());
    }

    #[tokio::test]
    async fn a_family_ends_at_its_lifetime_or_the_session_end_whichever_is_first() {
        let now = Utc::now();
        let hour = chrono::Duration::hours(1);
        for (lifetime, session_end, end) in [
            (3600, now + hour * 8, now + hour),
            (8 * 3600, now + hour, now + hour),
        ] {
            let (_, p, account) = setup(Duration::from_secs(lifetime));
            let client = p.clients().get("rp").unwrap().clone();
            let c = code(&p, &account.0, now, session_end).await;
            let mut tokens = p
                .exchange_code(&client, &c, REDIRECT, Some(VERIFIER), &account, now)
                .await
                .unwrap();
            // Rotations until one second before the end never move it.
            let mut t = now;
            while t + chrono::Duration::seconds(1) < end {
                tokens = p
                    .refresh(&client, &tokens.refresh_token, &account, t)
                    .await
                    .unwrap_or_else(|e| panic!("at {t}: {e}"));
                let claims = p.check_access_token(&tokens.access_token, t).await.unwrap();
                assert!(claims.exp <= end.timestamp(), "{claims:?}");
                t += chrono::Duration::minutes(7);
            }
            let err = p
                .refresh(&client, &tokens.refresh_token, &account, end)
                .await
                .unwrap_err();
            assert!(err.to_string().contains("absolute lifetime"), "{err}");
        }
    }
}
