//! `/oidc/introspect` (RFC 7662) and `/oidc/revoke` (RFC 7009), both
//! client-authenticated. Introspection answers a client only about tokens issued to it
//! or to the clients in its `introspect_for`; any other token is `{"active": false}`,
//! the answer for an unknown one. Revocation touches only the client's own tokens and
//! answers the same whatever the token.

use std::time::Duration;

use serde_json::{Value, json};

use super::clients::{Client, Presented};
use super::error::OidcError;
use super::grants::{Grant, key};
use super::keys::TokenType;
use super::provider::Provider;
use super::token::AccessClaims;

fn required_token(token: Option<String>) -> Result<String, OidcError> {
    token.ok_or_else(|| OidcError::InvalidRequest("token missing".into()))
}

impl Provider {
    fn endpoint(&self, name: &str) -> String {
        format!("{}/oidc/{name}", self.settings.issuer)
    }

    /// `POST /oidc/introspect`: authenticates the client, then introspects `token`.
    pub async fn introspection(
        &self,
        presented: Presented,
        token: Option<String>,
    ) -> Result<Value, OidcError> {
        let client = self
            .authenticate_client(presented, &self.endpoint("introspect"))
            .await?;
        let token = required_token(token)?;
        Ok(self.introspect(&client, &token).await)
    }

    /// `POST /oidc/revoke`: authenticates the client, then revokes `token` if it is
    /// the client's.
    pub async fn revocation(
        &self,
        presented: Presented,
        token: Option<String>,
    ) -> Result<(), OidcError> {
        let client = self
            .authenticate_client(presented, &self.endpoint("revoke"))
            .await?;
        let token = required_token(token)?;
        self.revoke(&client, &token).await
    }

    /// A live refresh token's grant (by the clock too), if `token` is one.
    async fn live_refresh_grant(&self, token: &str) -> Option<Grant> {
        let raw = self.state.get(&key::refresh(token)).await.ok()??;
        let grant: Grant = serde_json::from_slice(&raw).ok()?;
        (!grant.expired(self.now())).then_some(grant)
    }

    /// RFC 7662: what an authenticated client may learn about a token. Only about
    /// tokens issued to `client` itself or to a client it is a resource server for
    /// (`introspect_for`); any other token is `active: false`, exactly like an unknown
    /// one, so nothing tells them apart.
    pub async fn introspect(&self, client: &Client, token: &str) -> Value {
        if let Ok(c) = self.check_access_token(token).await
            && client.may_introspect(&c.client_id)
        {
            return access_info(&c);
        }
        if let Some(grant) = self.live_refresh_grant(token).await
            && client.may_introspect(&grant.client_id)
            && grant.family_ends_at > self.now()
            && matches!(self.family_dead(&grant).await, Ok(false))
        {
            return json!({
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
        json!({ "active": false })
    }

    /// RFC 7009: revokes a token of `client` (others' tokens are left alone, and the
    /// answer is the same, so nothing leaks).
    pub async fn revoke(&self, client: &Client, token: &str) -> Result<(), OidcError> {
        if let Some(grant) = self.live_refresh_grant(token).await {
            if grant.client_id == client.id {
                self.revoke_family(&grant.family).await?;
                self.state.delete(&key::refresh(token)).await?;
            }
            return Ok(());
        }
        let now = self.now();
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
                .put(&key::revoked_jti(&claims.jti), b"1", left)
                .await?;
        }
        Ok(())
    }
}

/// The introspection answer for a live access token.
fn access_info(c: &AccessClaims) -> Value {
    json!({
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
    })
}
