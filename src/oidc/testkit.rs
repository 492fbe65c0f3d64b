//! Test fixtures for the provider's unit tests: a provider on the memory state store
//! with a [`ManualClock`] stopped at a fixed instant, three clients (`rp`; `rs`, a
//! resource server for `rp`; `other`) and an enabled account.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::authorize::{AuthzRequest, SessionFacts};
use super::clients::{Client, ClientConfig, ClientRegistry};
use super::keys::{KeyRing, SigningAlg, generate_pem};
use super::provider::{AccountSource, OidcSettings, Provider};
use super::token::TokenResponse;
use crate::accounts::{Account, EnablementState, FiscalCode};
use crate::blocking::{BlockingPool, PoolLimits};
use crate::clock::ManualClock;
use crate::saml::Level;
use crate::state::MemoryStore;

pub(super) const REDIRECT: &str = "https://rp.example/cb";
pub(super) const POST_LOGOUT: &str = "https://rp.example/bye";
pub(super) const BACKCHANNEL: &str = "https://rp.example/backchannel";
/// RFC 7636 appendix B.
pub(super) const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub(super) const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
pub(super) const SID: &str = "sid-1";

/// The instant the clock starts at.
pub(super) fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

pub(super) fn hours(h: i64) -> chrono::Duration {
    chrono::Duration::hours(h)
}

/// An account source that always answers with one account.
pub(super) struct Fixed(pub(super) Account);

#[async_trait::async_trait]
impl AccountSource for Fixed {
    type Error = String;

    async fn account(&self, _: Uuid) -> Result<Account, String> {
        Ok(self.0.clone())
    }
}

/// The provider under test and what it stands on.
pub(super) struct Kit {
    pub(super) state: Arc<MemoryStore>,
    pub(super) clock: Arc<ManualClock>,
    pub(super) p: Provider,
    pub(super) accounts: Fixed,
}

fn client(id: &str, introspect_for: &[&str], allow_in_enablement: bool) -> ClientConfig {
    ClientConfig {
        client_id: id.into(),
        name: Some(format!("Servizio {id}")),
        secret_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$x$y".into()),
        jwks_file: None,
        redirect_uris: vec![REDIRECT.into()],
        post_logout_redirect_uris: vec![POST_LOGOUT.into()],
        scopes: ["openid", "profile", "email", "istanze"]
            .into_iter()
            .map(str::to_owned)
            .collect(),
        backchannel_logout_uri: (id == "rp").then(|| BACKCHANNEL.to_owned()),
        allow_in_enablement,
        id_token_alg: SigningAlg::EdDSA,
        introspect_for: introspect_for.iter().map(|c| (*c).to_owned()).collect(),
    }
}

/// A provider whose families live `family_lifetime`, refresh tokens one hour (or the
/// family, if shorter), codes a minute.
pub(super) fn kit(family_lifetime: Duration) -> Kit {
    let state = Arc::new(MemoryStore::new());
    let clock = ManualClock::at(start());
    let keys = KeyRing::from_pems(&[(
        generate_pem(SigningAlg::EdDSA).unwrap(),
        SigningAlg::EdDSA,
        None,
    )])
    .unwrap();
    let clients = ClientRegistry::from_config(
        &[
            client("rp", &[], false),
            client("rs", &["rp"], true),
            client("other", &[], false),
        ],
        None,
    )
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
    let argon2 = BlockingPool::new(
        "argon2",
        PoolLimits {
            workers: 1,
            queue_wait: Duration::from_secs(5),
            deadline: Duration::from_secs(60),
        },
    );
    let p = Provider::new(
        settings,
        keys,
        clients,
        state.clone(),
        argon2,
        clock.clone(),
    );
    Kit {
        state,
        clock,
        p,
        accounts: Fixed(account),
    }
}

impl Kit {
    pub(super) fn now(&self) -> DateTime<Utc> {
        crate::clock::Clock::now(&*self.clock)
    }

    pub(super) fn client(&self, id: &str) -> Client {
        self.p.clients().get(id).unwrap().clone()
    }

    /// A satisfied request of `rp` (openid + `scopes`), arriving now.
    pub(super) fn request(&self, scopes: &[&str]) -> AuthzRequest {
        let mut all = vec!["openid".to_owned()];
        all.extend(scopes.iter().map(|s| (*s).to_owned()));
        AuthzRequest {
            id: "authz".into(),
            client_id: "rp".into(),
            redirect_uri: REDIRECT.into(),
            scopes: all,
            state: Some("st".into()),
            nonce: Some("n-1".into()),
            code_challenge: CHALLENGE.into(),
            level: Level::L2,
            cp: false,
            force_login: false,
            created_at: self.now(),
        }
    }

    /// An L2 session logged in now, ending `session_end` from now.
    pub(super) fn facts(&self, session_end: chrono::Duration) -> SessionFacts {
        SessionFacts {
            sid: SID.into(),
            account_id: self.accounts.0.id,
            level: Level::L2,
            scheme: crate::identity::Scheme::Spid,
            auth_time: self.now(),
            cp_at: None,
            session_ends_at: self.now() + session_end,
        }
    }

    /// A code for `req` in a session ending `session_end` from now.
    pub(super) async fn code_for(
        &self,
        req: &AuthzRequest,
        session_end: chrono::Duration,
    ) -> String {
        let url = self
            .p
            .issue_code(req, &self.accounts.0, &self.facts(session_end))
            .await
            .unwrap();
        code_of(&url)
    }

    /// A code of `rp` (openid only) in an 8-hour session.
    pub(super) async fn code(&self) -> String {
        self.code_for(&self.request(&[]), hours(8)).await
    }

    /// The tokens of a fresh code of `rp`.
    pub(super) async fn tokens(&self) -> TokenResponse {
        let c = self.code().await;
        self.exchange(&c).await.unwrap()
    }

    pub(super) async fn exchange(&self, code: &str) -> Result<TokenResponse, super::OidcError> {
        self.p
            .exchange_code(
                &self.client("rp"),
                code,
                REDIRECT,
                Some(VERIFIER),
                &self.accounts,
            )
            .await
    }

    pub(super) async fn refresh(&self, rt: &str) -> Result<TokenResponse, super::OidcError> {
        self.p.refresh(&self.client("rp"), rt, &self.accounts).await
    }
}

/// The `code` parameter of a redirect URL.
pub(super) fn code_of(url: &str) -> String {
    let url = reqwest::Url::parse(url).unwrap();
    url.query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

/// The claims of a JWT, unverified (tests read what the provider signed).
pub(super) fn payload(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

/// The header `typ` of a JWT.
pub(super) fn typ(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).unwrap().typ
}
