//! What the tokens and `/oidc/userinfo` say about the person: the scopes the provider
//! knows, an account's claims per scope (`profile` → names, birthdate,
//! preferred_username; `email`; `istanze` → fiscal_number when the account has a
//! codice fiscale, eidas_person_identifier when it has an eIDAS identity, username,
//! enablement_state), and the authentication claims of an ID token (acr = level
//! obtained, idp_scheme = `spid`/`cie`/`eidas` of the login, amr that scheme plus `cp`,
//! auth_time, sid).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::clients::Client;
use super::error::OidcError;
use super::grants::{Grant, secs};
use super::provider::{AccountSource, Provider};
use crate::accounts::Account;
#[cfg(doc)]
use crate::identity::Scheme;

/// Scopes the provider knows.
pub const SCOPES: [&str; 4] = ["openid", "profile", "email", "istanze"];
/// `amr` value of a SPID login (CIE and eIDAS logins give `cie` and `eidas`:
/// [`Scheme::as_str`]).
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
        if let Some(fiscal_code) = account.fiscal_code_str() {
            map.insert("fiscal_number".into(), fiscal_code.to_owned().into());
        }
        if let Some(identifier) = account.eidas_identifier() {
            map.insert(
                "eidas_person_identifier".into(),
                identifier.to_owned().into(),
            );
        }
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
    put("idp_scheme", grant.scheme.as_str().into());
    let amr = if grant.cp_at.is_some() {
        vec![grant.scheme.as_str(), AMR_CP]
    } else {
        vec![grant.scheme.as_str()]
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::oidc::testkit::{kit, payload};
    use crate::saml::Level;

    fn keys(map: &Map<String, Value>) -> Vec<&str> {
        let mut keys: Vec<&str> = map.keys().map(String::as_str).collect();
        keys.sort_unstable();
        keys
    }

    fn scopes(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn each_scope_adds_its_claims_and_only_those() {
        let k = kit(Duration::from_secs(3600));
        let mut account = k.accounts.0.clone();
        account.birth_date = chrono::NaiveDate::from_ymd_opt(1980, 1, 1);
        account.email = Some("mario@example.it".into());
        let sub = account.id.to_string();

        let openid = account_claims(&account, &scopes(&["openid"]));
        assert_eq!(Value::Object(openid), json!({ "sub": sub }));

        let profile = account_claims(&account, &scopes(&["openid", "profile"]));
        assert_eq!(
            Value::Object(profile),
            json!({
                "sub": sub, "given_name": "Mario", "family_name": "Rossi",
                "name": "Mario Rossi", "birthdate": "1980-01-01",
                "preferred_username": "mario.rossi",
            })
        );

        let email = account_claims(&account, &scopes(&["openid", "email"]));
        assert_eq!(
            Value::Object(email),
            json!({ "sub": sub, "email": "mario@example.it", "email_verified": false })
        );
        account.email = None;
        let no_email = account_claims(&account, &scopes(&["openid", "email"]));
        assert_eq!(keys(&no_email), ["sub"]);

        let istanze = account_claims(&account, &scopes(&["openid", "istanze"]));
        assert_eq!(
            Value::Object(istanze),
            json!({
                "sub": sub, "fiscal_number": "RSSMRA80A01H501U",
                "username": "mario.rossi", "enablement_state": "enabled",
            })
        );
    }

    #[test]
    fn the_id_token_says_how_and_when_the_person_authenticated() {
        let k = kit(Duration::from_secs(3600));
        let rp = k.client("rp");
        let now = k.now();
        let login = now - chrono::Duration::minutes(10);
        let mut grant = crate::oidc::grants::Grant {
            family: "f".into(),
            client_id: "rp".into(),
            redirect_uri: crate::oidc::testkit::REDIRECT.into(),
            scopes: scopes(&["openid"]),
            nonce: Some("n-1".into()),
            code_challenge: None,
            account_id: k.accounts.0.id,
            sid: "sid-9".into(),
            level: Level::L3,
            scheme: crate::identity::Scheme::Spid,
            auth_time: login,
            cp_at: None,
            family_ends_at: now + chrono::Duration::hours(1),
            expires_at: None,
        };
        let c = id_token_claims(&k.p, &rp, &grant, &k.accounts.0, now);
        assert_eq!(c["acr"], Level::L3.uri());
        assert_eq!(c["amr"], json!(["spid"]));
        assert_eq!(c["auth_time"], login.timestamp());
        assert_eq!(c["spid_auth_time"], login.timestamp());
        assert_eq!(c["sid"], "sid-9");
        assert_eq!(c["nonce"], "n-1");
        assert_eq!(
            (c["aud"].clone(), c["azp"].clone()),
            (json!("rp"), json!("rp"))
        );
        assert_eq!(c["iat"], now.timestamp());
        assert_eq!(c["exp"], now.timestamp() + 300);
        assert!(c.get("cp_time").is_none());
        // With the CP confirmed: amr gains `cp`, auth_time is the confirmation.
        let cp_at = now - chrono::Duration::minutes(1);
        grant.cp_at = Some(cp_at);
        grant.nonce = None;
        let c = id_token_claims(&k.p, &rp, &grant, &k.accounts.0, now);
        assert_eq!(c["amr"], json!(["spid", "cp"]));
        assert_eq!(c["auth_time"], cp_at.timestamp());
        assert_eq!(c["cp_time"], cp_at.timestamp());
        assert_eq!(c["spid_auth_time"], login.timestamp());
        assert!(c.get("nonce").is_none());
        assert_eq!(c["idp_scheme"], "spid");
        // A CIE or eIDAS login: its scheme in idp_scheme and amr.
        for scheme in [crate::identity::Scheme::Cie, crate::identity::Scheme::Eidas] {
            grant.scheme = scheme;
            let c = id_token_claims(&k.p, &rp, &grant, &k.accounts.0, now);
            assert_eq!(c["idp_scheme"], scheme.as_str());
            assert_eq!(c["amr"], json!([scheme.as_str(), "cp"]));
        }
    }

    #[test]
    fn identifiers_follow_the_account() {
        use crate::accounts::{LinkedIdentity, NewAccount};
        use crate::identity::Scheme;
        let istanze = scopes(&["istanze"]);
        let mut account = NewAccount::without_fiscal_code("Lucía", "García").into_account(
            Uuid::new_v4(),
            "lucia.garcia".into(),
            Utc::now(),
        );
        account.identities.push(LinkedIdentity {
            scheme: Scheme::Eidas,
            subject: "ES/IT/02635542Y".into(),
            linked_at: Utc::now(),
            last_login_at: None,
        });
        let c = account_claims(&account, &istanze);
        assert!(c.get("fiscal_number").is_none(), "{c:?}");
        assert_eq!(c["eidas_person_identifier"], "ES/IT/02635542Y");
        let fc = crate::accounts::FiscalCode::parse("RSSMRA80A01H501U").unwrap();
        let spid = crate::accounts::tests_support::sample(fc);
        let c = account_claims(&spid, &istanze);
        assert_eq!(c["fiscal_number"], "RSSMRA80A01H501U");
        assert!(c.get("eidas_person_identifier").is_none(), "{c:?}");
    }

    #[tokio::test]
    async fn tokens_and_userinfo_carry_the_scopes_claims() {
        let k = kit(Duration::from_secs(3600));
        let req = k.request(&["istanze"]);
        let c = k.code_for(&req, chrono::Duration::hours(8)).await;
        let tokens = k.exchange(&c).await.unwrap();
        assert_eq!(tokens.scope, "openid istanze");
        let id = payload(&tokens.id_token);
        assert_eq!(id["fiscal_number"], "RSSMRA80A01H501U");
        assert_eq!(id["nonce"], "n-1");
        assert!(id.get("given_name").is_none());
        let info =
            k.p.userinfo(&tokens.access_token, &k.accounts)
                .await
                .unwrap();
        assert_eq!(info["fiscal_number"], "RSSMRA80A01H501U");
        assert_eq!(info["sub"], k.accounts.0.id.to_string());
        assert!(
            info.get("acr").is_none(),
            "userinfo has no authentication claims"
        );
        // The refreshed ID token keeps the claims but not the nonce.
        let again = k.refresh(&tokens.refresh_token).await.unwrap();
        let id = payload(&again.id_token);
        assert_eq!(id["fiscal_number"], "RSSMRA80A01H501U");
        assert!(id.get("nonce").is_none());
    }
}
