//! What the tokens and `/oidc/userinfo` say about the person: the scopes the provider
//! knows, an account's claims per scope (`profile` → names, birthdate,
//! preferred_username; `email`; `istanze` → fiscal_number, username,
//! enablement_state), and the authentication claims of an ID token (acr = level
//! obtained, amr `spid` plus `cp`, auth_time, sid).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::clients::Client;
use super::error::OidcError;
use super::grants::{Grant, secs};
use super::provider::{AccountSource, Provider};
use crate::accounts::Account;

/// Scopes the provider knows.
pub const SCOPES: [&str; 4] = ["openid", "profile", "email", "istanze"];
/// `amr` value of a SPID login.
pub const AMR_SPID: &str = "spid";
/// `amr` value of a Codice Personale confirmation.
pub const AMR_CP: &str = "cp";

/// The identity claims of an account for the granted scopes (`sub` always).
pub fn account_claims(account: &Account, scopes: &[String]) -> Map<String, Value> {
    let has = |s: &str| scopes.iter().any(|x| x == s);
    let mut map = Map::new();
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

/// The claims of an ID token for `client` from `grant`, issued at `now`.
pub(super) fn id_token_claims(
    p: &Provider,
    client: &Client,
    grant: &Grant,
    account: &Account,
    now: DateTime<Utc>,
) -> Map<String, Value> {
    let mut claims = account_claims(account, &grant.scopes);
    let mut put = |k: &str, v: Value| {
        claims.insert(k.to_owned(), v);
    };
    put("iss", p.settings.issuer.clone().into());
    put("aud", client.id.clone().into());
    put("azp", client.id.clone().into());
    put("exp", (now.timestamp() + secs(p.settings.id_ttl)).into());
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
    claims
}

impl Provider {
    /// The identity claims of an account for the granted scopes.
    pub fn user_claims(&self, account: &Account, scopes: &[String]) -> Value {
        Value::Object(account_claims(account, scopes))
    }

    /// `/oidc/userinfo`: the claims the access token's scopes allow, for its account.
    pub async fn userinfo<A: AccountSource>(
        &self,
        access_token: &str,
        accounts: &A,
    ) -> Result<Value, OidcError> {
        let claims = self.check_access_token(access_token).await?;
        let account_id = Uuid::parse_str(&claims.sub)
            .map_err(|_| OidcError::InvalidToken("bad subject".into()))?;
        let account = accounts
            .account(account_id)
            .await
            .map_err(|_| OidcError::InvalidToken("account gone".into()))?;
        let scopes: Vec<String> = claims.scope.split_whitespace().map(str::to_owned).collect();
        Ok(self.user_claims(&account, &scopes))
    }
}
