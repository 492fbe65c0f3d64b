//! Logout: a gateway session that ends revokes its tokens by `sid` and yields one
//! back-channel `logout+jwt` per client that asked for them; the RP-initiated logout
//! (`/oidc/logout`) decides whether a request may end the browser's session (only with
//! a valid `id_token_hint` naming it; otherwise the person confirms) and where the
//! browser returns (a registered `post_logout_redirect_uri`, else the home page).

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::error::OidcError;
use super::grants::key;
use super::keys::TokenType;
use super::provider::Provider;
use crate::saml::ids;

/// How long a back-channel logout token is valid.
const LOGOUT_TOKEN_SECONDS: i64 = 120;

/// The parameters of an RP-initiated logout (query or confirmation form).
#[derive(Debug, Clone, Default)]
pub struct LogoutParams {
    /// An ID token of ours naming the session (GET only).
    pub id_token_hint: Option<String>,
    /// The client (also read from the hint's `aud`).
    pub client_id: Option<String>,
    /// Where to return, if registered for the client.
    pub post_logout_redirect_uri: Option<String>,
    /// Echoed to the return URI.
    pub state: Option<String>,
}

/// What an RP-initiated logout does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogoutDecision {
    /// End the browser's session (if any) and go to `target`.
    End {
        /// The return target.
        target: String,
    },
    /// Ask the person first: a confirmation page that posts back.
    Confirm {
        /// The client's display name, when known.
        client: Option<String>,
        /// The client (from the hint or the request).
        client_id: Option<String>,
        /// The requested return URI (checked again on the POST).
        post_logout_redirect_uri: Option<String>,
        /// The client's state.
        state: Option<String>,
    },
}

impl Provider {
    /// A gateway session ended (logout, SLO): every token of it is revoked. Returns
    /// the back-channel logout tokens to deliver, one per client that asked for them
    /// (`(uri, token)`), issued at `now` (the time of the logout, from the caller).
    pub async fn end_session(
        &self,
        sid: &str,
        account_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, String)>, OidcError> {
        self.state
            .put(&key::revoked_sid(sid), b"1", self.settings.revocation_ttl())
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
                "exp": now.timestamp() + LOGOUT_TOKEN_SECONDS,
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
        self.state.delete(&key::session_clients(sid)).await?;
        Ok(out)
    }

    /// `GET /oidc/logout`: ends the session (`current_sid`, the browser's) only when
    /// the `id_token_hint` is a valid ID token of ours (`typ` `JWT`, key still live,
    /// issuer; it may be expired) whose `sid` is that session; without a session there
    /// is nothing to end. Otherwise the person is asked. An unregistered return URI is
    /// an error (a page).
    pub fn rp_logout(
        &self,
        q: &LogoutParams,
        current_sid: Option<&str>,
    ) -> Result<LogoutDecision, OidcError> {
        let hint: Option<Value> = q.id_token_hint.as_deref().and_then(|hint| {
            self.keys
                .verify_ignoring_expiry(hint, TokenType::Id, self.now(), &self.settings.issuer)
                .ok()
        });
        let claim = |name: &str| {
            hint.as_ref()
                .and_then(|h| h.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let client_id = claim("aud").or_else(|| q.client_id.clone());
        let target = self.logout_target(
            client_id.as_deref(),
            q.post_logout_redirect_uri.as_deref(),
            q.state.as_deref(),
        )?;
        let Some(current) = current_sid else {
            return Ok(LogoutDecision::End { target });
        };
        if claim("sid").is_some_and(|sid| sid == current) {
            return Ok(LogoutDecision::End { target });
        }
        Ok(LogoutDecision::Confirm {
            client: client_id
                .as_deref()
                .and_then(|c| self.clients.get(c))
                .map(|c| c.name.clone()),
            client_id,
            post_logout_redirect_uri: q.post_logout_redirect_uri.clone(),
            state: q.state.clone(),
        })
    }

    /// Where a logout returns: a `post_logout_redirect_uri` registered for `client_id`
    /// (with `state`), or the home page. An unregistered one is an error page.
    pub fn logout_target(
        &self,
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
        let registered = self
            .clients
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
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::time::Duration;

    use super::*;
    use crate::oidc::testkit::{BACKCHANNEL, POST_LOGOUT, SID, kit, payload, typ};

    fn params(hint: Option<&str>, uri: Option<&str>) -> LogoutParams {
        LogoutParams {
            id_token_hint: hint.map(str::to_owned),
            client_id: None,
            post_logout_redirect_uri: uri.map(str::to_owned),
            state: Some("s1".into()),
        }
    }

    #[tokio::test]
    async fn an_ended_session_revokes_its_tokens_and_yields_logout_tokens() {
        let k = kit(Duration::from_secs(3600));
        let tokens = k.tokens().await;
        let account = k.accounts.0.id;
        let out = k.p.end_session(SID, account, k.now()).await.unwrap();
        assert_eq!(out.len(), 1, "rp asked for back-channel logout");
        let (uri, token) = out.first().unwrap();
        assert_eq!(uri, BACKCHANNEL);
        assert_eq!(typ(token).as_deref(), Some("logout+jwt"));
        let claims = payload(token);
        assert_eq!(claims["sid"], SID);
        assert_eq!(claims["aud"], "rp");
        assert_eq!(claims["sub"], account.to_string());
        assert_eq!(claims["exp"], k.now().timestamp() + 120);
        assert!(claims["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
        assert!(k.p.check_access_token(&tokens.access_token).await.is_err());
        assert!(k.refresh(&tokens.refresh_token).await.is_err());
        // The session's clients are forgotten: a second end sends nothing.
        assert!(
            k.p.end_session(SID, account, k.now())
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn only_a_valid_id_token_naming_the_session_ends_it_unasked() {
        let k = kit(Duration::from_secs(3600));
        let tokens = k.tokens().await;
        let hint = Some(tokens.id_token.as_str());
        let back = format!("{POST_LOGOUT}?state=s1");
        let end = LogoutDecision::End {
            target: back.clone(),
        };
        let ask = |client: Option<&str>| LogoutDecision::Confirm {
            client: client.map(|_| "Servizio rp".to_owned()),
            client_id: client.map(str::to_owned),
            post_logout_redirect_uri: Some(POST_LOGOUT.into()),
            state: Some("s1".into()),
        };
        let q = params(hint, Some(POST_LOGOUT));
        assert_eq!(k.p.rp_logout(&q, Some(SID)).unwrap(), end);
        // Expired hints are fine (RP-Initiated Logout §2).
        k.clock.advance(chrono::Duration::hours(2));
        assert_eq!(k.p.rp_logout(&q, Some(SID)).unwrap(), end);
        // Another session's ID token, or no session at all.
        assert_eq!(k.p.rp_logout(&q, Some("sid-2")).unwrap(), ask(Some("rp")));
        assert_eq!(k.p.rp_logout(&q, None).unwrap(), end);
        // A token of another kind is no hint: without a client, the return URI cannot
        // be trusted either.
        let q = params(Some(&tokens.access_token), Some(POST_LOGOUT));
        assert!(matches!(
            k.p.rp_logout(&q, Some(SID)),
            Err(OidcError::Untrusted(_))
        ));
        let q = LogoutParams {
            client_id: Some("rp".into()),
            ..params(Some(&tokens.access_token), Some(POST_LOGOUT))
        };
        assert_eq!(k.p.rp_logout(&q, Some(SID)).unwrap(), ask(Some("rp")));
        let q = params(None, None);
        assert_eq!(
            k.p.rp_logout(&q, Some(SID)).unwrap(),
            LogoutDecision::Confirm {
                client: None,
                client_id: None,
                post_logout_redirect_uri: None,
                state: Some("s1".into()),
            }
        );
    }

    #[test]
    fn the_return_target_must_be_registered_for_the_client() {
        let k = kit(Duration::from_secs(3600));
        assert_eq!(k.p.logout_target(None, None, None).unwrap(), "/");
        assert_eq!(
            k.p.logout_target(Some("rp"), Some(POST_LOGOUT), None)
                .unwrap(),
            POST_LOGOUT
        );
        for (client, uri) in [
            (Some("rp"), "https://evil.example/bye"),
            (None, POST_LOGOUT),
            (Some("nobody"), POST_LOGOUT),
        ] {
            assert!(matches!(
                k.p.logout_target(client, Some(uri), None),
                Err(OidcError::Untrusted(_))
            ));
        }
    }
}
