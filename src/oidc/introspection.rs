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
        metrics::counter!("polis_oidc_revocations_total").increment(1);
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::oidc::testkit::kit;

    #[tokio::test]
    async fn only_the_client_and_its_resource_servers_learn_about_a_token() {
        let k = kit(Duration::from_secs(3600));
        let tokens = k.tokens().await;
        let inactive = json!({ "active": false });
        let unknown = k.p.introspect(&k.client("rp"), "no-such-token").await;
        assert_eq!(unknown, inactive);
        for token in [&tokens.access_token, &tokens.refresh_token] {
            for client in ["rp", "rs"] {
                let info = k.p.introspect(&k.client(client), token).await;
                assert_eq!(info["active"], true, "{client}: {info}");
                assert_eq!(info["client_id"], "rp");
                assert_eq!(info["sid"], crate::oidc::testkit::SID);
            }
            // Another client gets exactly the answer for an unknown token.
            assert_eq!(k.p.introspect(&k.client("other"), token).await, unknown);
        }
        let info = k.p.introspect(&k.client("rp"), &tokens.refresh_token).await;
        assert_eq!(info["token_type"], "refresh_token");
        let info = k.p.introspect(&k.client("rp"), &tokens.access_token).await;
        assert_eq!(info["token_type"], "Bearer");
        // An ID token is not an access token.
        let info = k.p.introspect(&k.client("rp"), &tokens.id_token).await;
        assert_eq!(info, inactive);
    }

    #[tokio::test]
    async fn revocation_touches_only_the_clients_own_tokens() {
        let k = kit(Duration::from_secs(3600));
        let rp = k.client("rp");
        let tokens = k.tokens().await;
        k.p.revoke(&k.client("other"), &tokens.access_token)
            .await
            .unwrap();
        k.p.revoke(&k.client("other"), &tokens.refresh_token)
            .await
            .unwrap();
        assert_eq!(
            k.p.introspect(&rp, &tokens.access_token).await["active"],
            true
        );
        assert_eq!(
            k.p.introspect(&rp, &tokens.refresh_token).await["active"],
            true
        );
        // The access token alone.
        k.p.revoke(&rp, &tokens.access_token).await.unwrap();
        assert_eq!(
            k.p.introspect(&rp, &tokens.access_token).await["active"],
            false
        );
        assert_eq!(
            k.p.introspect(&rp, &tokens.refresh_token).await["active"],
            true
        );
        // The refresh token: its whole family.
        let next = k.refresh(&tokens.refresh_token).await.unwrap();
        k.p.revoke(&rp, &next.refresh_token).await.unwrap();
        assert_eq!(
            k.p.introspect(&rp, &next.refresh_token).await["active"],
            false
        );
        assert_eq!(
            k.p.introspect(&rp, &next.access_token).await["active"],
            false
        );
        assert!(k.refresh(&next.refresh_token).await.is_err());
    }
}
