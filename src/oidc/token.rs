//! `/oidc/token`: client authentication (secrets on the argon2 pool, client assertions
//! used once), the code exchange with PKCE S256, refresh rotation, and the tokens
//! themselves (an `at+jwt` access token, the ID token, an opaque refresh token).
//! Reuse detection is atomic: a code or refresh token is taken with GETDEL, and a use
//! that finds it gone finds its family marker and revokes the family.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::authorize::may_get_tokens;
use super::claims::id_token_claims;
use super::clients::{Client, ClientError, Presented};
use super::error::{OidcError, internal};
use super::grants::{FamilyMark, Grant, family_ended, key, secs, until};
use super::keys::{SigningAlg, TokenType};
use super::provider::{AccountSource, Provider};
use crate::accounts::Account;
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
        let result = self.token_for_client(presented, params, accounts).await;
        let grant: &'static str = match params.grant_type.as_str() {
            "authorization_code" => "authorization_code",
            "refresh_token" => "refresh_token",
            _ => "other",
        };
        let outcome = match &result {
            Ok(_) => "issued",
            Err(e) => e.code(),
        };
        metrics::counter!("polis_oidc_tokens_total", "grant" => grant, "outcome" => outcome)
            .increment(1);
        result
    }

    async fn token_for_client<A: AccountSource>(
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
    /// `jti`. A secret checked by its MAC (microseconds) is checked here; the argon2
    /// (earlier secret hashes) and signature checks run on the bounded pool.
    pub async fn authenticate_client(
        &self,
        presented: Presented,
        endpoint: &str,
    ) -> Result<Client, OidcError> {
        let now = self.now();
        let clients = self.clients.clone();
        let audiences = [endpoint.to_owned(), self.settings.issuer.clone()];
        let cheap = self.clients.checked_by_mac(&presented);
        let check = move || {
            let aud: Vec<&str> = audiences.iter().map(String::as_str).collect();
            clients
                .authenticate(&presented, &aud, now)
                .map(|(c, a)| (c.clone(), a))
        };
        let (client, assertion) = if cheap {
            check()?
        } else {
            self.argon2.run(check).await??
        };
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
        if !may_get_tokens(client, account) {
            return Err(OidcError::AccessDenied(
                "the account has not completed the enablement".into(),
            ));
        }
        if self.session_revoked(&grant.sid).await?
            || self
                .account_revoked(grant.account_id, grant.auth_time)
                .await?
        {
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
            || self.session_revoked(&claims.sid).await?
            || self.access_account_revoked(&claims).await?;
        if revoked {
            return Err(OidcError::InvalidToken("token revoked".into()));
        }
        Ok(claims)
    }
}

impl Provider {
    /// Whether the enablement of the access token's account was revoked at or after
    /// the login behind it (a `sub` that is not an account id reads as revoked).
    async fn access_account_revoked(&self, claims: &AccessClaims) -> Result<bool, OidcError> {
        let (Ok(account), Some(auth_time)) = (
            Uuid::parse_str(&claims.sub),
            DateTime::<Utc>::from_timestamp(claims.auth_time, 0),
        ) else {
            return Ok(true);
        };
        self.account_revoked(account, auth_time).await
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use uuid::Uuid;

    use super::*;
    use crate::oidc::testkit::{REDIRECT, VERIFIER, hours, kit, payload, typ};
    use crate::saml::Level;

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
        // `plain`: the verifier itself as the challenge.
        assert!(!pkce_matches(VERIFIER, VERIFIER));
    }

    #[tokio::test]
    async fn a_wrong_or_missing_verifier_is_refused() {
        let k = kit(Duration::from_secs(3600));
        let rp = k.client("rp");
        for verifier in [
            Some("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj"),
            Some(VERIFIER.get(..42).unwrap()),
            None,
        ] {
            let c = k.code().await;
            let err =
                k.p.exchange_code(&rp, &c, REDIRECT, verifier, &k.accounts)
                    .await
                    .unwrap_err();
            assert!(
                err.to_string().contains("PKCE verification failed"),
                "{err}"
            );
        }
        let c = k.code().await;
        let err =
            k.p.exchange_code(
                &rp,
                &c,
                "https://rp.example/other",
                Some(VERIFIER),
                &k.accounts,
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("redirect_uri differs"), "{err}");
        let c = k.code().await;
        assert!(k.exchange(&c).await.is_ok());
    }

    #[tokio::test]
    async fn a_code_used_twice_revokes_its_family() {
        let k = kit(Duration::from_secs(3600));
        let c = k.code().await;
        let tokens = k.exchange(&c).await.unwrap();
        let fam = payload(&tokens.access_token)["fam"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(k.p.check_access_token(&tokens.access_token).await.is_ok());
        assert!(!k.p.family_revoked(&fam).await.unwrap());
        let err = k.exchange(&c).await.unwrap_err();
        assert!(err.to_string().contains("already used"), "{err}");
        assert!(k.p.family_revoked(&fam).await.unwrap());
        assert!(k.p.check_access_token(&tokens.access_token).await.is_err());
        let err = k.refresh(&tokens.refresh_token).await.unwrap_err();
        assert!(err.to_string().contains("revoked"), "{err}");
    }

    #[tokio::test]
    async fn a_code_of_another_client_is_refused_and_revoked() {
        let k = kit(Duration::from_secs(3600));
        let c = k.code().await;
        let err =
            k.p.exchange_code(
                &k.client("other"),
                &c,
                REDIRECT,
                Some(VERIFIER),
                &k.accounts,
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("another client"), "{err}");
        assert!(k.exchange(&c).await.is_err());
    }

    #[tokio::test]
    async fn a_code_expires_by_the_clock() {
        let k = kit(Duration::from_secs(3600));
        let c = k.code().await;
        k.clock.advance(chrono::Duration::seconds(60));
        let err = k.exchange(&c).await.unwrap_err();
        assert!(matches!(err, OidcError::InvalidGrant(_)), "{err}");
        let c = k.code().await;
        k.clock.advance(chrono::Duration::seconds(59));
        assert!(k.exchange(&c).await.is_ok());
    }

    #[tokio::test]
    async fn a_reused_refresh_token_revokes_its_family() {
        let k = kit(Duration::from_secs(3600));
        let first = k.tokens().await;
        let second = k.refresh(&first.refresh_token).await.unwrap();
        assert_ne!(second.refresh_token, first.refresh_token);
        assert!(k.p.check_access_token(&second.access_token).await.is_ok());
        let err = k.refresh(&first.refresh_token).await.unwrap_err();
        assert!(err.to_string().contains("reused"), "{err}");
        let fam = payload(&second.access_token)["fam"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(k.p.family_revoked(&fam).await.unwrap());
        assert!(k.p.check_access_token(&first.access_token).await.is_err());
        assert!(k.p.check_access_token(&second.access_token).await.is_err());
        let err = k.refresh(&second.refresh_token).await.unwrap_err();
        assert!(err.to_string().contains("revoked"), "{err}");
    }

    #[tokio::test]
    async fn a_refresh_token_expires_by_the_clock() {
        let k = kit(Duration::from_secs(8 * 3600));
        let tokens = k.tokens().await;
        k.clock.advance(chrono::Duration::seconds(3599));
        let next = k.refresh(&tokens.refresh_token).await.unwrap();
        k.clock.advance(chrono::Duration::seconds(3600));
        assert!(k.refresh(&next.refresh_token).await.is_err());
    }

    /// The moment a non-atomic detection misses: another use has just taken the grant
    /// (GETDEL) and has written nothing yet. A use arriving then must still see the
    /// reuse and revoke the family.
    #[tokio::test]
    async fn a_use_racing_the_winner_between_its_take_and_its_answer_revokes_the_family() {
        use crate::state::StateStore as _;
        let k = kit(Duration::from_secs(3600));
        let rp = k.client("rp");
        let c = k.code().await;
        // The winner takes the code…
        let taken = k.state.take(&key::code(&c)).await.unwrap();
        let grant: Grant = serde_json::from_slice(&taken.unwrap()).unwrap();
        // …and before it writes anything, another use:
        let err = k.exchange(&c).await.unwrap_err();
        assert!(err.to_string().contains("already used"), "{err}");
        assert!(k.p.family_revoked(&grant.family).await.unwrap());
        // The winner's answer is issued and dead.
        let tokens = k.p.tokens(&rp, &grant, &k.accounts.0).await.unwrap();
        assert!(k.p.check_access_token(&tokens.access_token).await.is_err());

        // The same for a refresh token.
        let tokens = k.tokens().await;
        assert!(k.p.check_access_token(&tokens.access_token).await.is_ok());
        let taken = k
            .state
            .take(&key::refresh(&tokens.refresh_token))
            .await
            .unwrap();
        assert!(taken.is_some());
        let err = k.refresh(&tokens.refresh_token).await.unwrap_err();
        assert!(err.to_string().contains("reused"), "{err}");
        assert!(k.p.check_access_token(&tokens.access_token).await.is_err());
    }

    #[test]
    fn a_grant_without_a_family_end_has_ended() {
        let grant: Grant = serde_json::from_value(serde_json::json!({
            "family": "f", "client_id": "rp", "redirect_uri": REDIRECT, "scopes": ["openid"],
            "nonce": null, "code_challenge": null, "account_id": Uuid::nil(), "sid": "s",
            "level": Level::L2, "auth_time": crate::oidc::testkit::start(), "cp_at": null,
        }))
        .unwrap();
        assert!(grant.family_ends_at < crate::oidc::testkit::start());
        assert_eq!(grant.expires_at, None);
    }

    /// Rotates every 7 minutes until 5 s before `end` (each rotation keeps the end and
    /// caps the access token by it), then checks the refresh 5 s before the end
    /// succeeds and the one at the end is refused.
    async fn rotate_to_the_end(k: &crate::oidc::testkit::Kit, end: DateTime<Utc>) {
        let mut tokens = k.tokens().await;
        let step = chrono::Duration::minutes(7);
        let last = end - chrono::Duration::seconds(5);
        let mut rotations = 0;
        while k.now() < last {
            let by = step.min(last - k.now());
            k.clock.advance(by);
            tokens = k
                .refresh(&tokens.refresh_token)
                .await
                .unwrap_or_else(|e| panic!("at {}: {e}", k.now()));
            rotations += 1;
            let claims = k.p.check_access_token(&tokens.access_token).await.unwrap();
            assert!(claims.exp <= end.timestamp(), "{claims:?}");
            let info = k.p.introspect(&k.client("rp"), &tokens.refresh_token).await;
            assert_eq!(info["exp"], end.timestamp(), "{info}");
        }
        assert!(rotations > 5, "{rotations}");
        k.clock.advance(chrono::Duration::seconds(5));
        let err = k.refresh(&tokens.refresh_token).await.unwrap_err();
        assert!(err.to_string().contains("absolute lifetime"), "{err}");
        let info = k.p.introspect(&k.client("rp"), &tokens.refresh_token).await;
        assert_eq!(info, serde_json::json!({"active": false}));
    }

    #[tokio::test]
    async fn a_family_ends_at_its_lifetime_whatever_its_rotations() {
        let k = kit(Duration::from_secs(3600));
        // The session would last 8 hours.
        let end = k.now() + hours(1);
        rotate_to_the_end(&k, end).await;
    }

    #[tokio::test]
    async fn a_family_ends_with_the_session_absolute_end_if_that_is_first() {
        let k = kit(Duration::from_secs(8 * 3600));
        let end = k.now() + hours(1);
        let req = k.request(&[]);
        let c = k.code_for(&req, hours(1)).await;
        // A family from a session ending in an hour dies then, lifetime or not.
        let mut tokens = k.exchange(&c).await.unwrap();
        k.clock.advance(chrono::Duration::minutes(59));
        tokens = k.refresh(&tokens.refresh_token).await.unwrap();
        let claims = k.p.check_access_token(&tokens.access_token).await.unwrap();
        assert_eq!(claims.exp, end.timestamp(), "capped by the family's end");
        k.clock.advance(chrono::Duration::minutes(1));
        let err = k.refresh(&tokens.refresh_token).await.unwrap_err();
        assert!(err.to_string().contains("absolute lifetime"), "{err}");
    }

    #[tokio::test]
    async fn only_at_jwt_tokens_are_access_tokens() {
        let k = kit(Duration::from_secs(3600));
        let tokens = k.tokens().await;
        assert_eq!(typ(&tokens.access_token).as_deref(), Some("at+jwt"));
        assert_eq!(typ(&tokens.id_token).as_deref(), Some("JWT"));
        let claims = k.p.check_access_token(&tokens.access_token).await.unwrap();
        // The same claims signed by our key as an ID token or a logout token.
        let as_id = k.p.keys.sign(&claims, SigningAlg::EdDSA).unwrap();
        let as_logout =
            k.p.keys
                .sign_typed(&claims, SigningAlg::EdDSA, TokenType::Logout)
                .unwrap();
        for token in [&tokens.id_token, &as_id, &as_logout] {
            let err = k.p.check_access_token(token).await.unwrap_err();
            assert!(matches!(err, OidcError::InvalidToken(_)), "{err}");
            assert!(err.to_string().contains("typ"), "{err}");
        }
        // And an access token expires by the clock.
        k.clock.advance(chrono::Duration::seconds(300));
        assert!(k.p.check_access_token(&tokens.access_token).await.is_err());
    }
}
