//! Browser sessions after a SPID login.
//!
//! The cookie carries only a random 256-bit token, and the web layer encrypts and
//! authenticates the cookie itself (axum-extra `PrivateCookieJar`, AES-256-GCM), so a
//! cookie cannot be forged, read or moved to another token. The session data lives in
//! the state store under `polis:sess:<token>`, shared by every replica:
//!
//! - **idle timeout**: every use rewrites the record with a TTL of
//!   `idle_timeout`, so an unused session disappears by itself; a record read later
//!   than `idle_timeout` after its last use (by the clock) is refused and deleted too;
//! - **absolute timeout**: a session older than `absolute_timeout` (counted from the
//!   SPID login) is refused and deleted whatever its use;
//! - **CSRF**: each session has its own synchronizer token, rendered into every form
//!   and compared in constant time on every POST.
//!
//! Also the verified logins parked between the ACS and `/login/complete`
//! (`polis:park:<token>`, [`PARKED_TTL`], taken once and checked against the clock).
//!
//! Knows nothing of HTTP; `now` is passed in (by the services that hold the clock).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::identity::LoginSession;
use crate::saml::ids;
use crate::state::{StateError, StateStore};

/// Length of a session token as produced by [`ids::new_token`]`(32)`.
const TOKEN_LEN: usize = 43;

/// A browser session: who logged in, which account, its CSRF token and its age.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebSession {
    /// The verified SPID login that opened the session.
    pub login: LoginSession,
    /// The POLIS account the login was mapped to.
    pub account_id: Uuid,
    /// Synchronizer CSRF token for the forms of this session.
    pub csrf: String,
    /// The session id told to OpenID Connect clients (`sid`); never the cookie token.
    pub sid: String,
    /// When the person last confirmed their Codice Personale in this session.
    #[serde(default)]
    pub cp_at: Option<DateTime<Utc>>,
    /// When the session was opened (the absolute timeout counts from here).
    pub created_at: DateTime<Utc>,
    /// Last use.
    pub last_seen_at: DateTime<Utc>,
}

impl WebSession {
    /// Whether `presented` is this session's CSRF token (constant-time compare).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        presented.len() == self.csrf.len()
            && openssl::memcmp::eq(presented.as_bytes(), self.csrf.as_bytes())
    }
}

/// How long a verified login waits for its browser at `/login/complete`.
pub const PARKED_TTL: Duration = Duration::from_secs(120);

/// A verified login, mapped to its account, waiting for the browser that started it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParkedLogin {
    /// The verified identity.
    pub login: LoginSession,
    /// The POLIS account it was mapped to.
    pub account_id: Uuid,
    /// Where the browser continues once the session is open (a local path).
    pub next: String,
    /// Hex SHA-256 of the binding cookie of the browser that started the login.
    pub browser: String,
    /// When it was parked (it waits at most [`PARKED_TTL`]).
    pub parked_at: DateTime<Utc>,
}

fn parked_key(token: &str) -> String {
    format!("polis:park:{token}")
}

/// Session lifetimes.
#[derive(Debug, Clone, Copy)]
pub struct SessionSettings {
    /// A session unused this long ends.
    pub idle_timeout: Duration,
    /// A session ends this long after it was opened.
    pub absolute_timeout: Duration,
}

/// Opens, reads and ends sessions in the state store.
pub struct SessionStore {
    state: std::sync::Arc<dyn StateStore>,
    settings: SessionSettings,
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn key(token: &str) -> String {
    format!("polis:sess:{token}")
}

/// Who a session belonged to, kept after the session record: told apart from a cookie
/// that never had one, an expired session gets «La sessione è scaduta», and what its
/// owner typed in a form can be given back to that owner only. Keyed by the token's
/// hash; deleted by a logout.
fn owner_key(token: &str) -> String {
    format!(
        "polis:sessowner:{}",
        hex::encode(openssl::sha::sha256(token.as_bytes()))
    )
}

fn draft_key(account_id: Uuid, form: &str) -> String {
    format!("polis:draft:{account_id}:{form}")
}

/// How long what was typed in a form whose session had expired waits for its owner's
/// next login.
pub const DRAFT_TTL: Duration = Duration::from_secs(3600);
/// At most this many fields of at most [`DRAFT_FIELD_MAX`] characters are kept.
pub const DRAFT_FIELDS_MAX: usize = 24;
/// Longest kept field value, in characters.
pub const DRAFT_FIELD_MAX: usize = 200;

fn login_key(idp_entity_id: &str, name_id: &str) -> String {
    format!(
        "polis:sesslogin:{}",
        hex::encode(openssl::sha::sha256(
            format!("{idp_entity_id}\n{}", name_id.trim()).as_bytes()
        ))
    )
}

fn valid_token(token: &str) -> bool {
    token.len() == TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl SessionStore {
    /// A store over `state`.
    pub fn new(state: std::sync::Arc<dyn StateStore>, settings: SessionSettings) -> Self {
        Self { state, settings }
    }

    /// The lifetimes.
    pub fn settings(&self) -> SessionSettings {
        self.settings
    }

    /// Opens a session for a verified login mapped to `account_id`; returns the token
    /// for the cookie.
    pub async fn open(
        &self,
        login: LoginSession,
        account_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<(String, WebSession), StateError> {
        let token = ids::new_token(32);
        let session = WebSession {
            login,
            account_id,
            csrf: ids::new_token(32),
            sid: ids::new_token(16),
            cp_at: None,
            created_at: now,
            last_seen_at: now,
        };
        self.write(&token, &session, now).await?;
        // Its owner, for as long as the session could have lived.
        self.state
            .put(
                &owner_key(&token),
                account_id.to_string().as_bytes(),
                self.settings.absolute_timeout,
            )
            .await?;
        // Index for IdP-initiated logout: the transient NameID names this session.
        self.state
            .put(
                &login_key(&session.login.idp_entity_id, &session.login.name_id),
                token.as_bytes(),
                self.settings.absolute_timeout,
            )
            .await?;
        Ok((token, session))
    }

    /// The session token opened by the login with this IdP and NameID, if still known.
    pub async fn token_for_login(
        &self,
        idp_entity_id: &str,
        name_id: &str,
    ) -> Result<Option<String>, StateError> {
        Ok(self
            .state
            .get(&login_key(idp_entity_id, name_id))
            .await?
            .and_then(|raw| String::from_utf8(raw).ok())
            .filter(|t| valid_token(t)))
    }

    /// The live session for `token`, its idle timer restarted; `None` when unknown,
    /// idle too long (the record expired) or past the absolute timeout (deleted).
    pub async fn load(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<WebSession>, StateError> {
        if !valid_token(token) {
            return Ok(None);
        }
        let Some(raw) = self.state.get(&key(token)).await? else {
            return Ok(None);
        };
        let Ok(mut session) = serde_json::from_slice::<WebSession>(&raw) else {
            // A record this version cannot read: end it rather than guess.
            self.state.delete(&key(token)).await?;
            return Ok(None);
        };
        if self.remaining(&session, now).is_none()
            || self.idle_too_long(&session, now)
            || self.revoked_since_opened(&session).await?
        {
            self.state.delete(&key(token)).await?;
            return Ok(None);
        }
        session.last_seen_at = now;
        self.write(token, &session, now).await?;
        Ok(Some(session))
    }

    /// Whether the account's enablement was revoked (help desk, inactivity campaign)
    /// at or after the login that opened this session.
    async fn revoked_since_opened(&self, session: &WebSession) -> Result<bool, StateError> {
        Ok(
            crate::state::account_revoked_at(self.state.as_ref(), session.account_id)
                .await?
                .is_some_and(|at| at >= session.created_at),
        )
    }

    /// Writes a changed session back (the CP confirmation time).
    pub async fn save(
        &self,
        token: &str,
        session: &WebSession,
        now: DateTime<Utc>,
    ) -> Result<(), StateError> {
        if valid_token(token) {
            self.write(token, session, now).await?;
        }
        Ok(())
    }

    /// Ends a session (no error if it is already gone).
    pub async fn end(&self, token: &str) -> Result<(), StateError> {
        if valid_token(token) {
            self.state.delete(&owner_key(token)).await?;
        }
        if valid_token(token)
            && let Some(raw) = self.state.take(&key(token)).await?
            && let Ok(session) = serde_json::from_slice::<WebSession>(&raw)
        {
            self.state
                .delete(&login_key(
                    &session.login.idp_entity_id,
                    &session.login.name_id,
                ))
                .await?;
        }
        Ok(())
    }

    /// The account whose session `token` was, when that session expired (idle or
    /// absolute timeout) rather than ended by a logout; `None` otherwise.
    pub async fn expired_owner(&self, token: &str) -> Result<Option<Uuid>, StateError> {
        if !valid_token(token) || self.state.get(&key(token)).await?.is_some() {
            return Ok(None);
        }
        Ok(self
            .state
            .get(&owner_key(token))
            .await?
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|id| Uuid::parse_str(&id).ok()))
    }

    /// Keeps `fields` (name → value, bounded by [`DRAFT_FIELDS_MAX`] and
    /// [`DRAFT_FIELD_MAX`]) of form `form` for `account_id`'s next login
    /// ([`DRAFT_TTL`]). The caller passes only fields that are no secret.
    pub async fn keep_draft(
        &self,
        account_id: Uuid,
        form: &str,
        fields: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), StateError> {
        let bounded: std::collections::BTreeMap<&String, String> = fields
            .iter()
            .take(DRAFT_FIELDS_MAX)
            .map(|(k, v)| (k, v.chars().take(DRAFT_FIELD_MAX).collect()))
            .collect();
        let value = serde_json::to_vec(&bounded).map_err(|e| StateError::Backend(e.to_string()))?;
        self.state
            .put(&draft_key(account_id, form), &value, DRAFT_TTL)
            .await
    }

    /// Takes (one use) what was kept of form `form` for `account_id`.
    pub async fn take_draft(
        &self,
        account_id: Uuid,
        form: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, String>>, StateError> {
        Ok(self
            .state
            .take(&draft_key(account_id, form))
            .await?
            .and_then(|raw| serde_json::from_slice(&raw).ok()))
    }

    /// Parks a verified login until the browser that started it comes to
    /// `/login/complete` (one-time key, [`PARKED_TTL`]); returns the key.
    pub async fn park(&self, parked: &ParkedLogin) -> Result<String, StateError> {
        let token = ids::new_token(32);
        let value = serde_json::to_vec(parked).map_err(|e| StateError::Backend(e.to_string()))?;
        self.state
            .put(&parked_key(&token), &value, PARKED_TTL)
            .await?;
        Ok(token)
    }

    /// Takes a parked login (GETDEL: one use, whatever the outcome); `None` when
    /// unknown, unreadable or parked [`PARKED_TTL`] or longer before `now`.
    pub async fn take_parked(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<ParkedLogin>, StateError> {
        if !valid_token(token) {
            return Ok(None);
        }
        let parked = self
            .state
            .take(&parked_key(token))
            .await?
            .and_then(|raw| serde_json::from_slice::<ParkedLogin>(&raw).ok());
        Ok(parked.filter(|p| {
            (now - p.parked_at)
                .to_std()
                .is_ok_and(|waited| waited < PARKED_TTL)
        }))
    }

    /// Whether the session went unused for `idle_timeout` or longer before `now`.
    fn idle_too_long(&self, session: &WebSession, now: DateTime<Utc>) -> bool {
        (now - session.last_seen_at)
            .to_std()
            .is_ok_and(|idle| idle >= self.settings.idle_timeout)
    }

    /// Time left before the absolute timeout, if any.
    fn remaining(&self, session: &WebSession, now: DateTime<Utc>) -> Option<Duration> {
        let age = (now - session.created_at)
            .to_std()
            .unwrap_or(Duration::ZERO);
        self.settings
            .absolute_timeout
            .checked_sub(age)
            .filter(|left| !left.is_zero())
    }

    async fn write(
        &self,
        token: &str,
        session: &WebSession,
        now: DateTime<Utc>,
    ) -> Result<(), StateError> {
        let Some(left) = self.remaining(session, now) else {
            return Ok(());
        };
        let ttl = left.min(self.settings.idle_timeout);
        let value = serde_json::to_vec(session).map_err(|e| StateError::Backend(e.to_string()))?;
        self.state.put(&key(token), &value, ttl).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;

    use super::*;
    use crate::state::MemoryStore;

    fn login(now: DateTime<Utc>) -> LoginSession {
        LoginSession::sample("https://idp.example", "_n", &[], now)
    }

    /// A fixed instant: these tests move time by hand.
    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-03-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn store(idle: u64, absolute: u64) -> (Arc<MemoryStore>, SessionStore) {
        let state = Arc::new(MemoryStore::new());
        let sessions = SessionStore::new(
            state.clone(),
            SessionSettings {
                idle_timeout: Duration::from_secs(idle),
                absolute_timeout: Duration::from_secs(absolute),
            },
        );
        (state, sessions)
    }

    #[tokio::test]
    async fn open_load_end() {
        let now = t0();
        let (_, sessions) = store(600, 3600);
        let id = Uuid::new_v4();
        let (token, opened) = sessions.open(login(now), id, now).await.unwrap();
        assert_eq!(token.len(), TOKEN_LEN);
        assert_ne!(opened.csrf, token);
        let later = now + chrono::Duration::seconds(30);
        let loaded = sessions.load(&token, later).await.unwrap().unwrap();
        assert_eq!(loaded.account_id, id);
        assert_eq!(loaded.last_seen_at, later);
        assert!(loaded.csrf_matches(&opened.csrf));
        assert!(!loaded.csrf_matches("x"));
        assert!(!loaded.csrf_matches(&token));
        sessions.end(&token).await.unwrap();
        assert!(sessions.load(&token, later).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_expired_session_names_its_owner_and_a_logout_does_not() {
        let now = t0();
        let (_, sessions) = store(600, 3600);
        let id = Uuid::new_v4();
        let (token, _) = sessions.open(login(now), id, now).await.unwrap();
        assert_eq!(sessions.expired_owner(&token).await.unwrap(), None, "live");
        let late = now + chrono::Duration::seconds(601);
        assert!(sessions.load(&token, late).await.unwrap().is_none());
        assert_eq!(sessions.expired_owner(&token).await.unwrap(), Some(id));
        assert_eq!(sessions.expired_owner("short").await.unwrap(), None);

        let (ended, _) = sessions.open(login(now), id, now).await.unwrap();
        sessions.end(&ended).await.unwrap();
        assert_eq!(
            sessions.expired_owner(&ended).await.unwrap(),
            None,
            "logged out"
        );
    }

    #[tokio::test]
    async fn a_draft_is_kept_bounded_for_its_owner_and_taken_once() {
        let (_, sessions) = store(600, 3600);
        let (owner, other) = (Uuid::new_v4(), Uuid::new_v4());
        let mut fields: std::collections::BTreeMap<String, String> = (0..30)
            .map(|i| (format!("f{i:02}"), "v".to_owned()))
            .collect();
        fields.insert("a".to_owned(), "x".repeat(500));
        sessions
            .keep_draft(owner, "richiesta", &fields)
            .await
            .unwrap();
        assert_eq!(sessions.take_draft(other, "richiesta").await.unwrap(), None);
        assert_eq!(sessions.take_draft(owner, "dati").await.unwrap(), None);
        let kept = sessions
            .take_draft(owner, "richiesta")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(kept.len(), DRAFT_FIELDS_MAX);
        assert_eq!(kept["a"].chars().count(), DRAFT_FIELD_MAX);
        assert_eq!(
            sessions.take_draft(owner, "richiesta").await.unwrap(),
            None,
            "once"
        );
    }

    #[tokio::test]
    async fn absolute_timeout_ends_an_active_session() {
        let now = t0();
        let (state, sessions) = store(600, 3600);
        let (token, _) = sessions
            .open(login(now), Uuid::new_v4(), now)
            .await
            .unwrap();
        let late = now + chrono::Duration::seconds(3600);
        assert!(sessions.load(&token, late).await.unwrap().is_none());
        assert!(state.get(&key(&token)).await.unwrap().is_none(), "deleted");
    }

    #[tokio::test]
    async fn malformed_tokens_and_records_are_no_session() {
        let now = t0();
        let (state, sessions) = store(600, 3600);
        assert!(sessions.load("short", now).await.unwrap().is_none());
        let token = "a".repeat(TOKEN_LEN);
        state
            .put(&key(&token), b"not json", Duration::from_secs(60))
            .await
            .unwrap();
        assert!(sessions.load(&token, now).await.unwrap().is_none());
        assert!(state.get(&key(&token)).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_session_idle_too_long_by_the_clock_is_ended_though_its_record_lives() {
        let now = t0();
        // The state store keeps the record (its TTL has not run out in real time).
        let (state, sessions) = store(600, 3600);
        let (token, _) = sessions
            .open(login(now), Uuid::new_v4(), now)
            .await
            .unwrap();
        let used = now + chrono::Duration::seconds(599);
        assert!(sessions.load(&token, used).await.unwrap().is_some());
        // Idle counts from the last use.
        let idle = used + chrono::Duration::seconds(600);
        assert!(sessions.load(&token, idle).await.unwrap().is_none());
        assert!(state.get(&key(&token)).await.unwrap().is_none(), "deleted");
    }

    fn parked(now: DateTime<Utc>) -> ParkedLogin {
        ParkedLogin {
            login: login(now),
            account_id: Uuid::new_v4(),
            next: "/".into(),
            browser: "b".into(),
            parked_at: now,
        }
    }

    #[tokio::test]
    async fn a_parked_login_is_taken_once_and_not_after_its_ttl() {
        let now = t0();
        let (_, sessions) = store(600, 3600);
        let p = parked(now);
        let token = sessions.park(&p).await.unwrap();
        let soon = now + chrono::Duration::seconds(119);
        assert_eq!(sessions.take_parked(&token, soon).await.unwrap(), Some(p));
        assert_eq!(sessions.take_parked(&token, soon).await.unwrap(), None);
        let token = sessions.park(&parked(now)).await.unwrap();
        let late = now + chrono::Duration::seconds(120);
        assert_eq!(sessions.take_parked(&token, late).await.unwrap(), None);
    }
}
