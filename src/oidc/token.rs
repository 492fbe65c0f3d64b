//! `/oidc/token`: client authentication (secrets on the argon2 pool, client assertions
//! used once), the code exchange with PKCE S256, refresh rotation, and the tokens
//! themselves (an `at+jwt` access token, the ID token, an opaque refresh token).
//! Reuse detection is atomic: a code or refresh token is taken with GETDEL, and a use
//! that finds it gone finds its family marker and revokes the family.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::claims::id_token_claims;
use super::clients::{Client, ClientError, Presented};
use super::error::{OidcError, internal};
use super::grants::{FamilyMark, Grant, family_ended, key, secs, until};
use super::keys::{SigningAlg, TokenType};
use super::provider::{AccountSource, Provider};
use crate::accounts::{Account, EnablementState};
use crate::saml::ids;

/// The grant parameters of a `/oidc/token` request (client authentication apart).
#[derive(Debug, Clone, Default)]
pub struct TokenParams {
    /// `authorization_code` or `refresh_token`.
    pub grant_type: String,
    /// The code.
    pub code: Option<String>,
    /// The redirect URI the code was sent to.
    pub redirect_uri: Option<String>,
    /// The PKCE verifier.
    pub code_verifier: Option<String>,
    /// The refresh token.
    pub refresh_token: Option<String>,
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

fn required<'a>(value: Option<&'a String>, name: &str) -> Result<&'a str, OidcError> {
    value
        .map(String::as_str)
        .ok_or_else(|| OidcError::InvalidRequest(format!("{name} missing")))
}

impl Provider {
    /// `POST /oidc/token`: authenticates the client, then exchanges a code or rotates
    /// a refresh token.
    pub async fn token<A: AccountSource>(
        &self,
        presented: Presented,
        params: &TokenParams,
        accounts: &A,
    ) -> Result<TokenResponse, OidcError> {
        let client = self
            .authenticate_client(presented, &self.settings.token_endpoint())
            .await?;
        match params.grant_type.as_str() {
            "authorization_code" => {
                let code = required(params.code.as_ref(), "code")?;
                let redirect_uri = required(params.redirect_uri.as_ref(), "redirect_uri")?;
                let verifier = params.code_verifier.as_deref();
                self.exchange_code(&client, code, redirect_uri, verifier, accounts)
                    .await
            }
            "refresh_token" => {
                let rt = required(params.refresh_token.as_ref(), "refresh_token")?;
                self.refresh(&client, rt, accounts).await
            }
            _ => Err(OidcError::UnsupportedGrantType),
        }
    }

    /// Authenticates the client of a token-endpoint style request (`endpoint` is an
    /// accepted assertion audience, with the issuer) and records a client assertion's
    /// `jti`. The argon2 and signature checks run on the bounded pool.
    pub async fn authenticate_client(
        &self,
        presented: Presented,
        endpoint: &str,
    ) -> Result<Client, OidcError> {
        let now = self.now();
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
            let key = key::assertion_jti(&client.id, &info.jti);
            if !self.state.put_if_absent(&key, b"1", ttl).await? {
                return Err(ClientError::Unauthorized("client assertion replayed".into()).into());
            }
        }
        Ok(client)
    }

    /// Takes the grant under `grant_key` (GETDEL); one past its own expiry by the
    /// clock is as gone as one the store expired.
    async fn take_grant(&self, grant_key: &str) -> Result<Option<Grant>, OidcError> {
        let Some(raw) = self.state.take(grant_key).await? else {
            return Ok(None);
        };
        let grant: Grant = serde_json::from_slice(&raw).map_err(internal)?;
        Ok((!grant.expired(self.now())).then_some(grant))
    }

    /// The family marker under `mark_key`, if any.
    async fn family_mark(&self, mark_key: &str) -> Result<Option<FamilyMark>, OidcError> {
        match self.state.get(mark_key).await? {
            Some(raw) => Ok(Some(serde_json::from_slice(&raw).map_err(internal)?)),
            None => Ok(None),
        }
    }

    /// `grant_type=authorization_code`: single use; a second use revokes every token
    /// issued from the code. Of concurrent uses exactly one gets tokens (GETDEL) and
    /// every other one revokes them.
    pub async fn exchange_code<A: AccountSource>(
        &self,
        client: &Client,
        code: &str,
        redirect_uri: &str,
        verifier: Option<&str>,
        accounts: &A,
    ) -> Result<TokenResponse, OidcError> {
        let Some(grant) = self.take_grant(&key::code(code)).await? else {
            if let Some(mark) = self.family_mark(&key::code_family(code)).await? {
                self.revoke_family(&mark.family).await?;
                return Err(OidcError::InvalidGrant(
                    "code already used: the tokens issued from it are revoked".into(),
                ));
            }
            return Err(OidcError::InvalidGrant("unknown or expired code".into()));
        };
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
        let account = grant_account(accounts, &grant).await?;
        // No family check here: a fresh family can only have been revoked by a
        // concurrent use of this same code, which lost; the tokens issued now are dead.
        self.tokens(client, &grant, &account).await
    }

    /// `grant_type=refresh_token`: rotation; a reused token revokes its family. Of
    /// concurrent uses at most one gets tokens (GETDEL) and every other one revokes the
    /// family. The family's end never moves.
    pub async fn refresh<A: AccountSource>(
        &self,
        client: &Client,
        refresh_token: &str,
        accounts: &A,
    ) -> Result<TokenResponse, OidcError> {
        let Some(grant) = self.take_grant(&key::refresh(refresh_token)).await? else {
            if let Some(mark) = self
                .family_mark(&key::refresh_family(refresh_token))
                .await?
            {
                if mark.ends_at <= self.now() {
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
        if grant.client_id != client.id {
            self.revoke_family(&grant.family).await?;
            return Err(OidcError::InvalidGrant(
                "refresh token of another client".into(),
            ));
        }
        if self.family_revoked(&grant.family).await? {
            return Err(OidcError::InvalidGrant("the grant was revoked".into()));
        }
        let account = grant_account(accounts, &grant).await?;
        // A refreshed ID token does not re-assert the CP confirmation.
        let grant = Grant {
            cp_at: None,
            nonce: None,
            ..grant
        };
        self.tokens(client, &grant, &account).await
    }

    /// The tokens of a grant, issued now: none past the family's end.
    pub(super) async fn tokens(
        &self,
        client: &Client,
        grant: &Grant,
        account: &Account,
    ) -> Result<TokenResponse, OidcError> {
        let now = self.now();
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
        let access_token = self.access_token(client, grant, account, family_left, now)?;
        // `openid` is in every grant (authorize requires it): always an ID token.
        let id_claims = id_token_claims(self, client, grant, account, now);
        let id_token = self.keys.sign(&id_claims, client.id_token_alg)?;
        let refresh_token = self.store_refresh(grant, family_left, now).await?;
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: self.settings.access_ttl.as_secs(),
            id_token,
            refresh_token,
            scope: grant.scopes.join(" "),
        })
    }

    /// An `at+jwt` access token that does not outlive the family.
    fn access_token(
        &self,
        client: &Client,
        grant: &Grant,
        account: &Account,
        family_left: Duration,
        now: DateTime<Utc>,
    ) -> Result<String, OidcError> {
        let access = AccessClaims {
            iss: self.settings.issuer.clone(),
            sub: account.id.to_string(),
            aud: client.id.clone(),
            client_id: client.id.clone(),
            exp: now.timestamp() + secs(self.settings.access_ttl.min(family_left)),
            iat: now.timestamp(),
            jti: ids::new_token(16),
            scope: grant.scopes.join(" "),
            sid: grant.sid.clone(),
            fam: grant.family.clone(),
            acr: grant.level.uri().to_owned(),
            auth_time: grant.auth_time.timestamp(),
        };
        Ok(self
            .keys
            .sign_typed(&access, SigningAlg::EdDSA, TokenType::Access)?)
    }

    /// A new refresh token of the grant's family: the family marker first (reuse
    /// detection), then the token; neither outlives the family.
    async fn store_refresh(
        &self,
        grant: &Grant,
        family_left: Duration,
        now: DateTime<Utc>,
    ) -> Result<String, OidcError> {
        let refresh_token = ids::new_token(32);
        let ttl = self.settings.refresh_ttl.min(family_left);
        let value = serde_json::to_vec(&Grant {
            code_challenge: None,
            expires_at: Some(now + chrono::Duration::from_std(ttl).unwrap_or_default()),
            ..grant.clone()
        })
        .map_err(internal)?;
        self.state
            .put(
                &key::refresh_family(&refresh_token),
                &FamilyMark::of(grant)?,
                until(grant.family_ends_at, now),
            )
            .await?;
        self.state
            .put(&key::refresh(&refresh_token), &value, ttl)
            .await?;
        Ok(refresh_token)
    }

    /// Verifies an access token: `typ` `at+jwt`, signature, issuer, expiry, revocation
    /// (its `jti`, its family, its session).
    pub async fn check_access_token(&self, token: &str) -> Result<AccessClaims, OidcError> {
        let claims: AccessClaims = self
            .keys
            .verify(
                token,
                TokenType::Access,
                self.now(),
                &self.settings.issuer,
                None,
            )
            .map_err(|e| OidcError::InvalidToken(e.to_string()))?;
        let revoked = self
            .state
            .get(&key::revoked_jti(&claims.jti))
            .await?
            .is_some()
            || self.family_revoked(&claims.fam).await?
            || self.session_revoked(&claims.sid).await?;
        if revoked {
            return Err(OidcError::InvalidToken("token revoked".into()));
        }
        Ok(claims)
    }
}

/// The account of a grant; one the caller cannot read is `invalid_grant`.
async fn grant_account<A: AccountSource>(
    accounts: &A,
    grant: &Grant,
) -> Result<Account, OidcError> {
    accounts
        .account(grant.account_id)
        .await
        .map_err(|e| OidcError::InvalidGrant(format!("account: {e}")))
}
