//! `/oidc/authorize` and what follows it until the code: request validation (client,
//! exact redirect URI, scopes, PKCE S256, `acr_values`, `prompt`), parking the request
//! while the person logs in, the resume decisions (SPID login, abilitazione, CP
//! confirmation) and the single-use code with its family marker.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::claims::SCOPES;
use super::clients::Client;
use super::error::{OidcError, RedirectError, internal};
use super::grants::{FamilyMark, Grant, key, until};
use super::provider::{AccountSource, CpConfirmation, Provider};
use crate::accounts::{Account, EnablementState};
use crate::identity::Scheme;
use crate::saml::{Level, ids};

/// `acr_values` entry that asks the person to confirm with their Codice Personale.
pub const ACR_CP: &str = "urn:polis:acr:cp";

/// How long a parked authorization request waits for its login (state-store TTL, and
/// checked against the clock from `created_at`).
const AUTHZ_TTL: Duration = Duration::from_secs(600);

/// The longest `state` or `nonce` accepted.
const MAX_ECHOED: usize = 512;

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

impl AuthzRequest {
    fn redirect_error(&self, error: OidcError) -> RedirectError {
        RedirectError {
            redirect_uri: self.redirect_uri.clone(),
            error,
            state: self.state.clone(),
        }
    }
}

/// What the logged-in person's session brings to an authorization.
#[derive(Debug, Clone)]
pub struct SessionFacts {
    /// Session id (the `sid` claim).
    pub sid: String,
    /// The account the session belongs to.
    pub account_id: Uuid,
    /// Level of the SPID login.
    pub level: Level,
    /// The scheme of the login (the `idp_scheme` claim, the first `amr`).
    pub scheme: Scheme,
    /// When the SPID login happened.
    pub auth_time: DateTime<Utc>,
    /// When the CP was last confirmed in this session, if ever.
    pub cp_at: Option<DateTime<Utc>>,
    /// The session's absolute end: no token family outlives it.
    pub session_ends_at: DateTime<Utc>,
}

/// Why an authorization request was refused: as a page when the client or its
/// redirect URI cannot be trusted (nothing is redirected), else back to the client.
#[derive(Debug)]
pub enum AuthorizeFailure {
    /// Shown as a page.
    Page(OidcError),
    /// Reported to the client's redirect URI.
    Redirect(RedirectError),
}

/// Why resuming a parked authorization failed.
#[derive(Debug)]
pub enum ResumeError<E> {
    /// Shown as a page (unknown or expired request).
    Page(OidcError),
    /// Reported to the client's redirect URI.
    Redirect(RedirectError),
    /// The account could not be read.
    Account(E),
}

/// Why a CP confirmation did not go through.
#[derive(Debug)]
pub enum CpError<E> {
    /// Shown as a page (unknown or expired request).
    Page(OidcError),
    /// The account could not be read or the session not updated.
    Gateway(E),
    /// The CP check refused (wrong CP, locked…): the form is shown again.
    Refused {
        /// The client's display name.
        client: String,
        /// Why.
        error: E,
    },
}

/// What the CP confirmation page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpPrompt {
    /// The client's display name.
    pub client: String,
    /// The parked request's id.
    pub id: String,
}

/// Where the resume step of request `id` is.
pub fn resume_path(id: &str) -> String {
    format!("/oidc/authorize/resume?id={id}")
}

fn login_path(level: Level, next: &str) -> String {
    format!(
        "/login?level={}&next={}",
        level.number(),
        crate::saml::binding::encode_component(next)
    )
}

/// Whether the session needs a (new) SPID login for the request: a lower level, or a
/// login older than a request that forces a new one.
pub fn login_needed(req: &AuthzRequest, facts: &SessionFacts) -> bool {
    facts.level < req.level || (req.force_login && facts.auth_time < req.created_at)
}

/// Whether the request still needs the CP confirmed (after it arrived).
pub fn cp_needed(req: &AuthzRequest, facts: &SessionFacts) -> bool {
    req.cp && facts.cp_at.is_none_or(|t| t < req.created_at)
}

/// Whether the session satisfies the request as it is (level, fresh login, CP): the
/// only condition under which a code is issued.
pub fn session_satisfies(req: &AuthzRequest, facts: &SessionFacts) -> bool {
    !login_needed(req, facts) && !cp_needed(req, facts)
}

/// Whether `client` may get tokens for `account` (enabled, or the client allows
/// accounts still in their abilitazione).
pub(super) fn may_get_tokens(client: &Client, account: &Account) -> bool {
    account.enablement_state == EnablementState::Enabled || client.allow_in_enablement
}

/// The checks of an authorization request once its client and redirect URI are
/// trusted; each failure is reported to the client.
mod checks {
    use super::{ACR_CP, Client, Level, MAX_ECHOED, OidcError, SCOPES};

    pub(super) fn response(response_type: &str, mode: Option<&str>) -> Result<(), OidcError> {
        if response_type != "code" {
            return Err(OidcError::InvalidRequest(
                "response_type must be code".into(),
            ));
        }
        if mode.is_some_and(|m| m != "query") {
            return Err(OidcError::InvalidRequest(
                "only response_mode=query is supported".into(),
            ));
        }
        Ok(())
    }

    pub(super) fn scopes(client: &Client, scope: &str) -> Result<Vec<String>, OidcError> {
        let scopes: Vec<String> = scope.split_whitespace().map(str::to_owned).collect();
        if !scopes.iter().any(|s| s == "openid") {
            return Err(OidcError::InvalidScope("openid is required".into()));
        }
        if let Some(bad) = scopes
            .iter()
            .find(|s| !client.scopes.contains(s) || !SCOPES.contains(&s.as_str()))
        {
            return Err(OidcError::InvalidScope(format!(
                "scope {bad} is not allowed for this client"
            )));
        }
        Ok(scopes)
    }

    /// PKCE: a challenge with method `S256` is required (no `plain`).
    pub(super) fn challenge(
        challenge: Option<&String>,
        method: Option<&str>,
    ) -> Result<String, OidcError> {
        match (challenge, method) {
            (Some(c), Some("S256")) if (43..=128).contains(&c.len()) => Ok(c.clone()),
            (None, _) => Err(OidcError::InvalidRequest(
                "PKCE is required: code_challenge with code_challenge_method=S256".into(),
            )),
            _ => Err(OidcError::InvalidRequest(
                "code_challenge_method must be S256".into(),
            )),
        }
    }

    /// The level asked (the lowest of several: OIDC's `acr_values` are voluntary) and
    /// whether the CP is asked.
    pub(super) fn acr(acr_values: Option<&str>) -> (Option<Level>, bool) {
        let mut level = None;
        let mut cp = false;
        for value in acr_values.unwrap_or("").split_whitespace() {
            if value == ACR_CP {
                cp = true;
            } else if let Some(l) = Level::from_uri(value) {
                level = Some(level.map_or(l, |prev: Level| prev.min(l)));
            }
        }
        (level, cp)
    }

    /// Whether a new login is forced; `prompt=none` is refused.
    pub(super) fn prompt(prompt: Option<&str>) -> Result<bool, OidcError> {
        match prompt {
            None | Some("") => Ok(false),
            Some(prompt) => {
                let values: Vec<&str> = prompt.split_whitespace().collect();
                if values.contains(&"none") {
                    return Err(OidcError::InvalidRequest(
                        "prompt=none is not supported: a SPID login needs the person".into(),
                    ));
                }
                Ok(values.contains(&"login"))
            }
        }
    }

    pub(super) fn echoed(state: Option<&str>, nonce: Option<&str>) -> Result<(), OidcError> {
        if state.is_some_and(|s| s.len() > MAX_ECHOED)
            || nonce.is_some_and(|n| n.len() > MAX_ECHOED)
        {
            return Err(OidcError::InvalidRequest(
                "state and nonce are limited to 512 characters".into(),
            ));
        }
        Ok(())
    }
}

impl Provider {
    /// `/oidc/authorize`: validates the request and parks it; returns the resume path.
    pub async fn authorize(
        &self,
        p: &AuthorizeParams,
        default_level: Level,
    ) -> Result<String, AuthorizeFailure> {
        let req = self.validate_authorize(p, default_level)?;
        self.park(&req).await.map_err(AuthorizeFailure::Page)?;
        Ok(resume_path(&req.id))
    }

    /// Validates an authorization request (`created_at` = the clock's now).
    pub fn validate_authorize(
        &self,
        p: &AuthorizeParams,
        default_level: Level,
    ) -> Result<AuthzRequest, AuthorizeFailure> {
        let client = self.clients.get(&p.client_id).ok_or_else(|| {
            AuthorizeFailure::Page(OidcError::Untrusted("unknown client_id".into()))
        })?;
        if !client.redirect_uris.contains(&p.redirect_uri) {
            return Err(AuthorizeFailure::Page(OidcError::Untrusted(
                "redirect_uri is not registered for this client".into(),
            )));
        }
        let redirect = |error: OidcError| {
            AuthorizeFailure::Redirect(RedirectError {
                redirect_uri: p.redirect_uri.clone(),
                error,
                state: p.state.clone(),
            })
        };
        checks::response(&p.response_type, p.response_mode.as_deref()).map_err(redirect)?;
        let scopes = checks::scopes(client, &p.scope).map_err(redirect)?;
        let challenge = checks::challenge(
            p.code_challenge.as_ref(),
            p.code_challenge_method.as_deref(),
        )
        .map_err(redirect)?;
        let (level, cp) = checks::acr(p.acr_values.as_deref());
        let force_login = checks::prompt(p.prompt.as_deref()).map_err(redirect)?;
        checks::echoed(p.state.as_deref(), p.nonce.as_deref()).map_err(redirect)?;
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
            created_at: self.now(),
        })
    }

    /// Keeps an authorization request while the person logs in or confirms the CP.
    pub async fn park(&self, req: &AuthzRequest) -> Result<(), OidcError> {
        let value = serde_json::to_vec(req).map_err(internal)?;
        self.state
            .put(&key::authz(&req.id), &value, AUTHZ_TTL)
            .await?;
        Ok(())
    }

    /// A parked authorization request (unknown, malformed or older than its TTL by
    /// the clock: expired).
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
            .get(&key::authz(id))
            .await?
            .ok_or(OidcError::AuthzExpired)?;
        let req: AuthzRequest = serde_json::from_slice(&raw).map_err(internal)?;
        let ttl = chrono::Duration::from_std(AUTHZ_TTL).unwrap_or(chrono::Duration::zero());
        if req.created_at + ttl <= self.now() {
            return Err(OidcError::AuthzExpired);
        }
        Ok(req)
    }

    /// Forgets a parked request.
    pub async fn unpark(&self, id: &str) -> Result<(), OidcError> {
        self.state.delete(&key::authz(id)).await?;
        Ok(())
    }

    /// `/oidc/authorize/resume`: where the parked request `id` goes next for the
    /// person's session (`None`: no session): the SPID login, the abilitazione, the CP
    /// confirmation, or — once the session satisfies it — the client's redirect URI
    /// with a fresh code (the request is then forgotten).
    pub async fn resume<A: AccountSource>(
        &self,
        id: &str,
        facts: Option<&SessionFacts>,
        accounts: &A,
    ) -> Result<String, ResumeError<A::Error>> {
        let req = self.parked(id).await.map_err(ResumeError::Page)?;
        let here = resume_path(&req.id);
        let Some(facts) = facts.filter(|f| !login_needed(&req, f)) else {
            return Ok(login_path(req.level, &here));
        };
        let account = accounts
            .account(facts.account_id)
            .await
            .map_err(ResumeError::Account)?;
        // A removed client is refused by `issue_code` (back to the client).
        let allowed = account.enablement_state == EnablementState::Enabled
            || self
                .clients
                .get(&req.client_id)
                .is_some_and(|c| c.allow_in_enablement);
        if !allowed {
            return Ok("/abilitazione".to_owned());
        }
        if cp_needed(&req, facts) {
            return Ok(format!("/oidc/cp?id={}", req.id));
        }
        let url = self
            .issue_code(&req, &account, facts)
            .await
            .map_err(ResumeError::Redirect)?;
        // The code is out: a failure to forget the request only leaves it to expire.
        let _ = self.unpark(&req.id).await;
        Ok(url)
    }

    /// The CP confirmation page of parked request `id`.
    pub async fn cp_prompt(&self, id: &str) -> Result<CpPrompt, OidcError> {
        let req = self.parked(id).await?;
        Ok(CpPrompt {
            client: self.client_name(&req.client_id),
            id: req.id,
        })
    }

    /// `POST /oidc/cp`: checks the person's CP (the counters and lock of the personal
    /// area, through `gateway`), notes the confirmation time (the clock's now) in the
    /// session and returns the resume path.
    pub async fn confirm_cp<G: CpConfirmation>(
        &self,
        id: &str,
        account_id: Uuid,
        cp: &str,
        gateway: &G,
    ) -> Result<String, CpError<G::Error>> {
        let req = self.parked(id).await.map_err(CpError::Page)?;
        let account = gateway
            .account(account_id)
            .await
            .map_err(CpError::Gateway)?;
        if let Err(error) = gateway.verify_cp(&account, cp).await {
            return Err(CpError::Refused {
                client: self.client_name(&req.client_id),
                error,
            });
        }
        gateway
            .cp_confirmed(self.now())
            .await
            .map_err(CpError::Gateway)?;
        Ok(resume_path(&req.id))
    }

    fn client_name(&self, client_id: &str) -> String {
        self.clients
            .get(client_id)
            .map_or_else(|| client_id.to_owned(), |c| c.name.clone())
    }

    /// Issues the code for a satisfied request; returns the redirect URL.
    pub async fn issue_code(
        &self,
        req: &AuthzRequest,
        account: &Account,
        facts: &SessionFacts,
    ) -> Result<String, RedirectError> {
        let now = self.now();
        let client = self.clients.get(&req.client_id).ok_or_else(|| {
            req.redirect_error(OidcError::UnauthorizedClient("client removed".into()))
        })?;
        if !may_get_tokens(client, account) {
            return Err(req.redirect_error(OidcError::AccessDenied(
                "the account has not completed the Istanze OnLine enablement".into(),
            )));
        }
        if !session_satisfies(req, facts) {
            return Err(req.redirect_error(OidcError::AccessDenied(
                "the session does not satisfy the request".into(),
            )));
        }
        let grant = self.code_grant(req, client, account, facts, now);
        if grant.family_ends_at <= now {
            return Err(req.redirect_error(OidcError::AccessDenied(
                "the session has reached its absolute timeout".into(),
            )));
        }
        let code = ids::new_token(32);
        self.store_code(&code, &grant)
            .await
            .map_err(|e| req.redirect_error(e))?;
        self.remember_client(&facts.sid, &client.id, until(facts.session_ends_at, now))
            .await
            .map_err(|e| req.redirect_error(e))?;
        let mut url = reqwest::Url::parse(&req.redirect_uri)
            .map_err(|e| req.redirect_error(OidcError::Untrusted(e.to_string())))?;
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

    /// The grant behind a new code: a new family ending at its lifetime or the
    /// session's absolute end, whichever is first.
    fn code_grant(
        &self,
        req: &AuthzRequest,
        client: &Client,
        account: &Account,
        facts: &SessionFacts,
        now: DateTime<Utc>,
    ) -> Grant {
        let after =
            |d: Duration| now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        Grant {
            family: ids::new_token(16),
            client_id: client.id.clone(),
            redirect_uri: req.redirect_uri.clone(),
            scopes: req.scopes.clone(),
            nonce: req.nonce.clone(),
            code_challenge: Some(req.code_challenge.clone()),
            account_id: account.id,
            sid: facts.sid.clone(),
            level: facts.level,
            scheme: facts.scheme,
            auth_time: facts.auth_time,
            cp_at: if req.cp { facts.cp_at } else { None },
            family_ends_at: after(self.settings.family_lifetime).min(facts.session_ends_at),
            expires_at: Some(after(self.settings.code_ttl)),
        }
    }

    /// Stores a code: the family marker first, so any use of the code that finds the
    /// grant gone (taken by another use) finds the family to revoke.
    async fn store_code(&self, code: &str, grant: &Grant) -> Result<(), OidcError> {
        let value = serde_json::to_vec(grant).map_err(internal)?;
        self.state
            .put(
                &key::code_family(code),
                &FamilyMark::of(grant)?,
                self.settings.revocation_ttl(),
            )
            .await?;
        self.state
            .put(&key::code(code), &value, self.settings.code_ttl)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::oidc::testkit::{CHALLENGE, Fixed, REDIRECT, hours, kit};

    fn params(method: Option<&str>, challenge: Option<&str>) -> AuthorizeParams {
        AuthorizeParams {
            response_type: "code".into(),
            client_id: "rp".into(),
            redirect_uri: REDIRECT.into(),
            scope: "openid profile".into(),
            state: Some("st".into()),
            code_challenge: challenge.map(str::to_owned),
            code_challenge_method: method.map(str::to_owned),
            ..AuthorizeParams::default()
        }
    }

    fn redirected(r: Result<AuthzRequest, AuthorizeFailure>) -> String {
        match r {
            Err(AuthorizeFailure::Redirect(e)) => {
                assert_eq!(e.redirect_uri, REDIRECT);
                assert_eq!(e.state.as_deref(), Some("st"));
                e.error.to_string()
            }
            other => panic!("not a redirect: {other:?}"),
        }
    }

    #[test]
    fn pkce_s256_is_accepted_plain_or_missing_refused() {
        let k = kit(Duration::from_secs(3600));
        let req =
            k.p.validate_authorize(&params(Some("S256"), Some(CHALLENGE)), Level::L2)
                .unwrap();
        assert_eq!(req.code_challenge, CHALLENGE);
        assert_eq!(req.created_at, k.now());
        let plain =
            k.p.validate_authorize(&params(Some("plain"), Some(CHALLENGE)), Level::L2);
        assert!(redirected(plain).contains("must be S256"));
        let no_method =
            k.p.validate_authorize(&params(None, Some(CHALLENGE)), Level::L2);
        assert!(redirected(no_method).contains("must be S256"));
        let missing =
            k.p.validate_authorize(&params(Some("S256"), None), Level::L2);
        assert!(redirected(missing).contains("PKCE is required"));
        let short =
            k.p.validate_authorize(&params(Some("S256"), Some("abc")), Level::L2);
        assert!(redirected(short).contains("must be S256"));
    }

    #[test]
    fn an_unknown_client_or_redirect_uri_is_a_page_never_a_redirect() {
        let k = kit(Duration::from_secs(3600));
        let mut p = params(Some("S256"), Some(CHALLENGE));
        p.redirect_uri = "https://evil.example/cb".into();
        assert!(matches!(
            k.p.validate_authorize(&p, Level::L2),
            Err(AuthorizeFailure::Page(OidcError::Untrusted(_)))
        ));
        p.redirect_uri = REDIRECT.into();
        p.client_id = "nobody".into();
        assert!(matches!(
            k.p.validate_authorize(&p, Level::L2),
            Err(AuthorizeFailure::Page(OidcError::Untrusted(_)))
        ));
    }

    #[test]
    fn acr_values_prompt_and_scopes() {
        let k = kit(Duration::from_secs(3600));
        let mut p = params(Some("S256"), Some(CHALLENGE));
        p.acr_values = Some(format!("{} {} {ACR_CP}", Level::L3.uri(), Level::L2.uri()));
        p.prompt = Some("login".into());
        let req = k.p.validate_authorize(&p, Level::L1).unwrap();
        assert_eq!(
            (req.level, req.cp, req.force_login),
            (Level::L2, true, true)
        );
        p.acr_values = None;
        p.prompt = None;
        assert_eq!(
            k.p.validate_authorize(&p, Level::L1).unwrap().level,
            Level::L1
        );
        p.prompt = Some("none".into());
        assert!(redirected(k.p.validate_authorize(&p, Level::L1)).contains("prompt=none"));
        p.prompt = None;
        p.scope = "profile".into();
        assert!(redirected(k.p.validate_authorize(&p, Level::L1)).contains("openid"));
        p.scope = "openid admin".into();
        assert!(redirected(k.p.validate_authorize(&p, Level::L1)).contains("admin"));
    }

    #[test]
    fn the_session_satisfies_a_request_with_its_level_a_fresh_login_and_the_cp() {
        let k = kit(Duration::from_secs(3600));
        let mut req = k.request(&[]);
        let mut facts = k.facts(hours(8));
        assert!(session_satisfies(&req, &facts));
        req.level = Level::L3;
        assert!(login_needed(&req, &facts) && !session_satisfies(&req, &facts));
        req.level = Level::L2;
        req.force_login = true;
        facts.auth_time = req.created_at - chrono::Duration::seconds(1);
        assert!(login_needed(&req, &facts));
        facts.auth_time = req.created_at;
        assert!(!login_needed(&req, &facts));
        req.cp = true;
        assert!(cp_needed(&req, &facts));
        facts.cp_at = Some(req.created_at - chrono::Duration::seconds(1));
        assert!(cp_needed(&req, &facts), "a CP confirmed before the request");
        facts.cp_at = Some(req.created_at);
        assert!(!cp_needed(&req, &facts) && session_satisfies(&req, &facts));
    }

    #[tokio::test]
    async fn resume_goes_to_the_login_the_abilitazione_the_cp_then_the_code() {
        let k = kit(Duration::from_secs(3600));
        let mut req = k.request(&[]);
        req.cp = true;
        k.p.park(&req).await.unwrap();
        let next = k.p.resume(&req.id, None, &k.accounts).await.unwrap();
        assert!(next.starts_with("/login?level=2&next="), "{next}");
        let mut l1 = k.facts(hours(8));
        l1.level = Level::L1;
        let next = k.p.resume(&req.id, Some(&l1), &k.accounts).await.unwrap();
        assert!(next.starts_with("/login?level=2"), "{next}");
        let mut pending = k.accounts.0.clone();
        pending.enablement_state = EnablementState::NotEnabled;
        let facts = k.facts(hours(8));
        let next =
            k.p.resume(&req.id, Some(&facts), &Fixed(pending))
                .await
                .unwrap();
        assert_eq!(next, "/abilitazione");
        let next =
            k.p.resume(&req.id, Some(&facts), &k.accounts)
                .await
                .unwrap();
        assert_eq!(next, "/oidc/cp?id=authz");
        let confirmed = SessionFacts {
            cp_at: Some(k.now()),
            ..facts
        };
        let next =
            k.p.resume(&req.id, Some(&confirmed), &k.accounts)
                .await
                .unwrap();
        assert!(next.starts_with(&format!("{REDIRECT}?code=")), "{next}");
        assert!(
            next.ends_with("&state=st&iss=https%3A%2F%2Fgw.example"),
            "{next}"
        );
        // One code per request: the request is forgotten.
        assert!(matches!(
            k.p.resume(&req.id, Some(&confirmed), &k.accounts).await,
            Err(ResumeError::Page(OidcError::AuthzExpired))
        ));
    }

    #[tokio::test]
    async fn a_parked_request_expires_by_the_clock() {
        let k = kit(Duration::from_secs(3600));
        let req = k.request(&[]);
        k.p.park(&req).await.unwrap();
        k.clock.advance(chrono::Duration::seconds(599));
        assert_eq!(k.p.parked(&req.id).await.unwrap(), req);
        k.clock.advance(chrono::Duration::seconds(1));
        assert!(matches!(
            k.p.parked(&req.id).await,
            Err(OidcError::AuthzExpired)
        ));
        assert!(matches!(
            k.p.parked("../etc").await,
            Err(OidcError::AuthzExpired)
        ));
    }

    #[tokio::test]
    async fn no_code_for_an_unsatisfied_session_or_past_its_absolute_end() {
        let k = kit(Duration::from_secs(3600));
        let mut req = k.request(&[]);
        req.cp = true;
        let err =
            k.p.issue_code(&req, &k.accounts.0, &k.facts(hours(8)))
                .await
                .unwrap_err();
        assert!(matches!(err.error, OidcError::AccessDenied(_)), "{err:?}");
        let req = k.request(&[]);
        let err =
            k.p.issue_code(&req, &k.accounts.0, &k.facts(chrono::Duration::zero()))
                .await
                .unwrap_err();
        assert!(
            err.error.to_string().contains("absolute timeout"),
            "{err:?}"
        );
        let mut pending = k.accounts.0.clone();
        pending.enablement_state = EnablementState::NotEnabled;
        let err =
            k.p.issue_code(&req, &pending, &k.facts(hours(8)))
                .await
                .unwrap_err();
        assert!(err.error.to_string().contains("enablement"), "{err:?}");
    }

    /// A CP check that accepts one CP and records the confirmation time.
    struct Cp {
        account: Account,
        confirmed: std::sync::Mutex<Option<DateTime<Utc>>>,
    }

    #[async_trait::async_trait]
    impl AccountSource for Cp {
        type Error = String;
        async fn account(&self, _: Uuid) -> Result<Account, String> {
            Ok(self.account.clone())
        }
    }

    #[async_trait::async_trait]
    impl CpConfirmation for Cp {
        async fn verify_cp(&self, _: &Account, cp: &str) -> Result<(), String> {
            if cp == "Giusto2026" {
                Ok(())
            } else {
                Err("wrong".into())
            }
        }
        async fn cp_confirmed(&self, at: DateTime<Utc>) -> Result<(), String> {
            *self.confirmed.lock().unwrap() = Some(at);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_cp_confirmation_is_noted_at_the_clock_time_and_resumes() {
        let k = kit(Duration::from_secs(3600));
        let req = k.request(&[]);
        k.p.park(&req).await.unwrap();
        let cp = Cp {
            account: k.accounts.0.clone(),
            confirmed: std::sync::Mutex::new(None),
        };
        let id = k.accounts.0.id;
        match k.p.confirm_cp(&req.id, id, "sbagliato", &cp).await {
            Err(CpError::Refused { client, error }) => {
                assert_eq!((client.as_str(), error.as_str()), ("Servizio rp", "wrong"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(*cp.confirmed.lock().unwrap(), None);
        k.clock.advance(chrono::Duration::seconds(30));
        let next =
            k.p.confirm_cp(&req.id, id, "Giusto2026", &cp)
                .await
                .unwrap();
        assert_eq!(next, resume_path(&req.id));
        assert_eq!(*cp.confirmed.lock().unwrap(), Some(k.now()));
        assert!(matches!(
            k.p.confirm_cp("unknown", id, "Giusto2026", &cp).await,
            Err(CpError::Page(OidcError::AuthzExpired))
        ));
        let prompt = k.p.cp_prompt(&req.id).await.unwrap();
        assert_eq!(
            (prompt.client.as_str(), prompt.id.as_str()),
            ("Servizio rp", "authz")
        );
    }
}
