//! Token families in the state store: the [`Grant`] behind a code or a refresh token,
//! the family marker written *with* each of them (reuse detection), the revocation
//! records (`revfam`, `revsid`, `revjti`), the clients a session gave tokens to, and
//! the names of every `polis:oidc:*` key (listed in [`crate::oidc`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::clients::Client;
use super::error::{OidcError, internal};
use super::provider::Provider;
use crate::identity::Scheme;
use crate::saml::Level;

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
    /// The scheme of the login; grants stored before schemes existed are SPID.
    #[serde(default)]
    pub scheme: Scheme,
    /// SPID login time.
    pub auth_time: DateTime<Utc>,
    /// CP confirmation time.
    pub cp_at: Option<DateTime<Utc>>,
    /// When the family ends whatever its rotations (its lifetime, capped by the
    /// session's absolute end). A grant stored before this field existed reads as the
    /// epoch: ended (invalid_grant), never endless.
    #[serde(default)]
    pub family_ends_at: DateTime<Utc>,
    /// When this code or refresh token expires (its state-store TTL too): checked
    /// against the clock, so the expiry holds whatever the store's own timer. A grant
    /// stored before this field existed has only the store's TTL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl Grant {
    /// Whether this code or refresh token has passed its own lifetime at `now`.
    pub(super) fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

/// The family marker written with a code or refresh token (`codefam`, `rtfam`): a use
/// that finds the grant gone learns which family to revoke, or that it already ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct FamilyMark {
    pub(super) family: String,
    pub(super) ends_at: DateTime<Utc>,
}

impl FamilyMark {
    pub(super) fn of(grant: &Grant) -> Result<Vec<u8>, OidcError> {
        serde_json::to_vec(&Self {
            family: grant.family.clone(),
            ends_at: grant.family_ends_at,
        })
        .map_err(internal)
    }
}

/// The state keys (one per command, each with a TTL; the table is in [`crate::oidc`]).
pub(super) mod key {
    fn hashed(prefix: &str, secret: &str) -> String {
        format!(
            "{prefix}{}",
            hex::encode(openssl::sha::sha256(secret.as_bytes()))
        )
    }

    /// `polis:oidc:authz:<id>`.
    pub(in crate::oidc) fn authz(id: &str) -> String {
        format!("polis:oidc:authz:{id}")
    }

    /// `polis:oidc:code:<sha256(code)>`.
    pub(in crate::oidc) fn code(code: &str) -> String {
        hashed("polis:oidc:code:", code)
    }

    /// `polis:oidc:codefam:<sha256(code)>`.
    pub(in crate::oidc) fn code_family(code: &str) -> String {
        hashed("polis:oidc:codefam:", code)
    }

    /// `polis:oidc:rt:<sha256(rt)>`.
    pub(in crate::oidc) fn refresh(rt: &str) -> String {
        hashed("polis:oidc:rt:", rt)
    }

    /// `polis:oidc:rtfam:<sha256(rt)>`.
    pub(in crate::oidc) fn refresh_family(rt: &str) -> String {
        hashed("polis:oidc:rtfam:", rt)
    }

    /// `polis:oidc:revfam:<family>`.
    pub(in crate::oidc) fn revoked_family(family: &str) -> String {
        format!("polis:oidc:revfam:{family}")
    }

    /// `polis:oidc:revjti:<jti>`.
    pub(in crate::oidc) fn revoked_jti(jti: &str) -> String {
        format!("polis:oidc:revjti:{jti}")
    }

    /// `polis:oidc:revsid:<sid>`.
    pub(in crate::oidc) fn revoked_sid(sid: &str) -> String {
        format!("polis:oidc:revsid:{sid}")
    }

    /// `polis:oidc:sidclients:<sid>`.
    pub(in crate::oidc) fn session_clients(sid: &str) -> String {
        format!("polis:oidc:sidclients:{sid}")
    }

    /// `polis:oidc:cjti:<client>:<sha256(jti)>`.
    pub(in crate::oidc) fn assertion_jti(client: &str, jti: &str) -> String {
        hashed(&format!("polis:oidc:cjti:{client}:"), jti)
    }
}

pub(super) fn family_ended() -> OidcError {
    OidcError::InvalidGrant("the token family has reached its absolute lifetime".into())
}

pub(super) fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Time from `now` until `end` (zero when it is past), plus one second so a key written
/// with it outlives the moment it guards.
pub(super) fn until(end: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (end - now).to_std().unwrap_or(Duration::ZERO) + Duration::from_secs(1)
}

impl Provider {
    /// Revokes a token family.
    pub async fn revoke_family(&self, family: &str) -> Result<(), OidcError> {
        self.state
            .put(
                &key::revoked_family(family),
                b"1",
                self.settings.revocation_ttl(),
            )
            .await?;
        Ok(())
    }

    /// Whether a token family was revoked.
    pub async fn family_revoked(&self, family: &str) -> Result<bool, OidcError> {
        Ok(self
            .state
            .get(&key::revoked_family(family))
            .await?
            .is_some())
    }

    pub(super) async fn session_revoked(&self, sid: &str) -> Result<bool, OidcError> {
        Ok(self.state.get(&key::revoked_sid(sid)).await?.is_some())
    }

    /// Whether the grant's family or its session was revoked, or the account's
    /// enablement since the login that started it.
    pub(super) async fn family_dead(&self, grant: &Grant) -> Result<bool, OidcError> {
        Ok(self.family_revoked(&grant.family).await?
            || self.session_revoked(&grant.sid).await?
            || self
                .account_revoked(grant.account_id, grant.auth_time)
                .await?)
    }

    /// Whether `account`'s enablement was revoked at or after the login at `auth_time`.
    pub(super) async fn account_revoked(
        &self,
        account: Uuid,
        auth_time: DateTime<Utc>,
    ) -> Result<bool, OidcError> {
        Ok(
            crate::state::account_revoked_at(self.state.as_ref(), account)
                .await?
                .is_some_and(|at| at >= auth_time),
        )
    }

    /// Notes that `client_id` got tokens in session `sid` (for back-channel logout).
    pub(super) async fn remember_client(
        &self,
        sid: &str,
        client_id: &str,
        ttl: Duration,
    ) -> Result<(), OidcError> {
        let key = key::session_clients(sid);
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
        let list: Vec<String> = match self.state.get(&key::session_clients(sid)).await? {
            Some(raw) => serde_json::from_slice(&raw).unwrap_or_default(),
            None => Vec::new(),
        };
        Ok(list.iter().filter_map(|id| self.clients.get(id)).collect())
    }
}
