//! The login use case, in its two requests:
//!
//! - at the ACS ([`LoginFlow::accept_response`]): the Response consumed by the SSO
//!   service (the verified login), mapped to its account by `EnablementService::login`,
//!   where the browser continues decided ([`next_after_login`]), and the verified login
//!   parked for its browser (`polis:park:<token>`, see `crate::session`). The IdP's
//!   POST is cross-site: nothing here reads or sets a cookie;
//! - at `/login/complete` ([`LoginFlow::open_in_browser`]): the parked login taken
//!   (one use), the session opened only if the browser's login-binding cookie hashes to
//!   what the pending request stored (constant-time compare), a session of another
//!   person already open in that browser closed first (see `super::logout`).
//!
//! The login-binding hash ([`binding_hash`]) is defined here so the web layer and this
//! check agree on it.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::logout::LogoutFlow;
use super::{FlowError, SessionRef};
use crate::accounts::EnablementState;
use crate::clock::SharedClock;
use crate::enablement::EnablementService;
use crate::session::{ParkedLogin, SessionStore};
use crate::sso::SsoService;

/// A `next` target: a local path only (no scheme, no `//`, no backslash, no control
/// characters, at most 512 bytes), so a login cannot be turned into an open redirect.
pub fn local_path(next: &str) -> bool {
    next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && next.len() <= 512
        && !next.chars().any(char::is_control)
}

/// Where the browser continues after a login: the local path the login was started
/// for (a waiting OIDC authorization decides itself what an account in enablement
/// gets), else home for an enabled account and the abilitazione for any other.
pub fn next_after_login(return_to: Option<String>, state: EnablementState) -> String {
    match return_to.filter(|n| local_path(n)) {
        Some(n) => n,
        None if state == EnablementState::Enabled => "/".to_owned(),
        None => "/abilitazione".to_owned(),
    }
}

/// The hash of a login-binding cookie value that the pending request stores.
pub fn binding_hash(value: &str) -> String {
    hex::encode(openssl::sha::sha256(
        format!("polis-login-binding\n{value}").as_bytes(),
    ))
}

/// Whether the presented binding cookie hashes to `expected` (constant-time compare;
/// no cookie, or an empty `expected` — a request stored before bindings existed —
/// never matches).
fn binding_matches(presented: Option<&str>, expected: &str) -> bool {
    let Some(value) = presented else {
        return false;
    };
    let presented = binding_hash(value);
    !expected.is_empty()
        && presented.len() == expected.len()
        && openssl::memcmp::eq(presented.as_bytes(), expected.as_bytes())
}

/// A session opened at `/login/complete`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The state-store token for the session cookie.
    pub token: String,
    /// Where the browser continues (a local path).
    pub next: String,
}

/// The login use case.
pub struct LoginFlow {
    sso: Arc<SsoService>,
    enablement: Arc<EnablementService>,
    sessions: Arc<SessionStore>,
    logout: Arc<LogoutFlow>,
    clock: SharedClock,
}

impl std::fmt::Debug for LoginFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginFlow").finish_non_exhaustive()
    }
}

impl LoginFlow {
    /// The flow over these services (`logout` closes the session a login replaces).
    pub fn new(
        sso: Arc<SsoService>,
        enablement: Arc<EnablementService>,
        sessions: Arc<SessionStore>,
        logout: Arc<LogoutFlow>,
        clock: SharedClock,
    ) -> Self {
        Self {
            sso,
            enablement,
            sessions,
            logout,
            clock,
        }
    }

    /// The ACS: validates the Response (every outcome in the transaction log), maps
    /// the person to their account, and parks the verified login for the browser that
    /// started it; returns the parked login's one-time key. On failure nothing is
    /// parked and no account written (a refused mapping writes nothing either).
    pub async fn accept_response(
        &self,
        saml_response: &str,
        relay_state: Option<&str>,
        http_request_id: &str,
    ) -> Result<String, FlowError> {
        let verified = self
            .sso
            .consume_response(saml_response, relay_state, http_request_id)
            .await?;
        let now = self.clock.now();
        let account = self.enablement.login(&verified.login, now).await?;
        let parked = ParkedLogin {
            login: verified.login,
            account_id: account.id,
            next: next_after_login(verified.return_to, account.enablement_state),
            browser: verified.browser,
            parked_at: now,
        };
        Ok(self.sessions.park(&parked).await?)
    }

    /// `/login/complete`: takes the parked login `parked_key` (one use, whatever
    /// happens) and opens its session if `binding_cookie` is the one of the browser
    /// that started the login. A `current` session of another account is closed
    /// everywhere first; one of the same account is left to expire.
    pub async fn open_in_browser(
        &self,
        parked_key: Option<&str>,
        binding_cookie: Option<&str>,
        current: Option<SessionRef<'_>>,
    ) -> Result<Opened, FlowError> {
        let step = BrowserStep {
            sessions: &self.sessions,
            logout: &self.logout,
            now: self.clock.now(),
        };
        step.open(parked_key, binding_cookie, current).await
    }
}

/// The `/login/complete` step, over the services it needs (apart from the ACS
/// step's, so it is tested on its own).
struct BrowserStep<'a> {
    sessions: &'a SessionStore,
    logout: &'a LogoutFlow,
    now: DateTime<Utc>,
}

impl BrowserStep<'_> {
    async fn open(
        &self,
        parked_key: Option<&str>,
        binding_cookie: Option<&str>,
        current: Option<SessionRef<'_>>,
    ) -> Result<Opened, FlowError> {
        let parked = match parked_key {
            Some(key) => self.sessions.take_parked(key, self.now).await?,
            None => None,
        };
        let parked = parked.ok_or(FlowError::LoginNotPending)?;
        if !binding_matches(binding_cookie, &parked.browser) {
            return Err(FlowError::OtherBrowser);
        }
        if let Some(old) = current
            && old.session.account_id != parked.account_id
        {
            self.logout.close(old).await?;
        }
        let (token, _) = self
            .sessions
            .open(parked.login, parked.account_id, self.now)
            .await?;
        Ok(Opened {
            token,
            next: parked.next,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use uuid::Uuid;

    use super::*;
    use crate::clock::Clock;
    use crate::flows::tests_support::{IDP, World, login, world};
    use crate::state::StateStore;

    const COOKIE: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const OTHER_COOKIE: &str = "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

    fn step(w: &World) -> BrowserStep<'_> {
        BrowserStep {
            sessions: &w.sessions,
            logout: &w.logout,
            now: w.clock.now(),
        }
    }

    /// Parks a login of `name_id` for `account`, started by the browser whose binding
    /// cookie hashes to `browser`.
    async fn park(w: &World, name_id: &str, account: Uuid, browser: &str) -> String {
        w.sessions
            .park(&ParkedLogin {
                login: login(name_id),
                account_id: account,
                next: "/abilitazione".into(),
                browser: browser.into(),
                parked_at: w.clock.now(),
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_session_opens_only_in_the_browser_that_started_the_login() {
        let w = world();
        let account = Uuid::new_v4();
        for presented in [Some(OTHER_COOKIE), None] {
            let key = park(&w, "_n", account, &binding_hash(COOKIE)).await;
            let refused = step(&w).open(Some(&key), presented, None).await;
            assert!(
                matches!(refused, Err(FlowError::OtherBrowser)),
                "{refused:?}"
            );
            // The parked login was used up by the refusal: the right browser cannot
            // take it afterwards either, and no session was opened.
            let again = step(&w).open(Some(&key), Some(COOKIE), None).await;
            assert!(
                matches!(again, Err(FlowError::LoginNotPending)),
                "{again:?}"
            );
            assert_eq!(w.sessions.token_for_login(IDP, "_n").await.unwrap(), None);
        }
        let key = park(&w, "_n", account, &binding_hash(COOKIE)).await;
        let opened = step(&w).open(Some(&key), Some(COOKIE), None).await.unwrap();
        assert_eq!(opened.next, "/abilitazione");
        let session = w
            .sessions
            .load(&opened.token, w.clock.now())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(session.account_id, account);
    }

    #[tokio::test]
    async fn a_request_without_a_stored_binding_opens_nothing() {
        let w = world();
        let key = park(&w, "_n", Uuid::new_v4(), "").await;
        let r = step(&w).open(Some(&key), Some(COOKIE), None).await;
        assert!(matches!(r, Err(FlowError::OtherBrowser)), "{r:?}");
    }

    #[tokio::test]
    async fn no_key_an_unknown_key_or_a_login_parked_too_long_ago_is_not_pending() {
        let w = world();
        for key in [None, Some("nope"), Some(&"x".repeat(43)[..])] {
            let r = step(&w).open(key, Some(COOKIE), None).await;
            assert!(matches!(r, Err(FlowError::LoginNotPending)), "{r:?}");
        }
        let key = park(&w, "_n", Uuid::new_v4(), &binding_hash(COOKIE)).await;
        // The memory store would still hold it: the clock decides.
        w.clock.advance(chrono::Duration::seconds(120));
        let r = step(&w).open(Some(&key), Some(COOKIE), None).await;
        assert!(matches!(r, Err(FlowError::LoginNotPending)), "{r:?}");
    }

    #[tokio::test]
    async fn a_session_of_another_person_in_this_browser_is_closed_first() {
        let w = world();
        let now = w.clock.now();
        let (mario_token, mario) = w
            .sessions
            .open(login("_mario"), Uuid::new_v4(), now)
            .await
            .unwrap();
        let giulia = Uuid::new_v4();
        let key = park(&w, "_giulia", giulia, &binding_hash(COOKIE)).await;
        let current = SessionRef {
            token: &mario_token,
            session: &mario,
        };
        let opened = step(&w)
            .open(Some(&key), Some(COOKIE), Some(current))
            .await
            .unwrap();
        assert!(w.sessions.load(&mario_token, now).await.unwrap().is_none());
        assert_eq!(
            w.sessions.token_for_login(IDP, "_mario").await.unwrap(),
            None,
            "Mario's IdP-logout index is gone with his session"
        );
        let session = w.sessions.load(&opened.token, now).await.unwrap().unwrap();
        assert_eq!(session.account_id, giulia);
    }

    #[tokio::test]
    async fn a_session_of_the_same_person_is_left_alone() {
        let w = world();
        let now = w.clock.now();
        let account = Uuid::new_v4();
        let (old_token, old) = w
            .sessions
            .open(login("_first"), account, now)
            .await
            .unwrap();
        let key = park(&w, "_second", account, &binding_hash(COOKIE)).await;
        let current = SessionRef {
            token: &old_token,
            session: &old,
        };
        let opened = step(&w)
            .open(Some(&key), Some(COOKIE), Some(current))
            .await
            .unwrap();
        assert_ne!(opened.token, old_token);
        assert!(w.sessions.load(&old_token, now).await.unwrap().is_some());
        assert!(
            w.state
                .get(&format!("polis:sess:{old_token}"))
                .await
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn next_is_the_local_path_asked_else_the_step_the_account_is_at() {
        let oidc = Some("/oidc/authorize/resume?t=abc".to_owned());
        assert_eq!(
            next_after_login(oidc.clone(), EnablementState::NotEnabled),
            "/oidc/authorize/resume?t=abc"
        );
        assert_eq!(next_after_login(None, EnablementState::Enabled), "/");
        assert_eq!(
            next_after_login(None, EnablementState::NotEnabled),
            "/abilitazione"
        );
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/a\\b",
            "/a\nb",
            "",
        ] {
            assert!(!local_path(bad), "{bad:?}");
            assert_eq!(
                next_after_login(Some(bad.to_owned()), EnablementState::Enabled),
                "/"
            );
        }
        assert!(!local_path(&format!("/{}", "a".repeat(512))));
    }

    #[test]
    fn the_binding_hash_is_domain_separated_and_compared_whole() {
        let expected = binding_hash(COOKIE);
        assert_eq!(expected.len(), 64);
        assert_ne!(
            expected,
            hex::encode(openssl::sha::sha256(COOKIE.as_bytes()))
        );
        assert!(binding_matches(Some(COOKIE), &expected));
        assert!(!binding_matches(Some(OTHER_COOKIE), &expected));
        assert!(!binding_matches(None, &expected));
        assert!(!binding_matches(Some(COOKIE), &expected[..63]));
        assert!(!binding_matches(Some(""), ""));
    }
}
