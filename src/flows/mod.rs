//! The use cases that span services, so that a handler makes one call:
//!
//! - [`login`]: the ACS completion (consume the Response, map the login to its
//!   account, decide where the browser continues, park the verified login) and its
//!   completion in the browser that started it (take the parked login, check the
//!   login-binding cookie, end another person's session, open the new one);
//! - [`logout`]: closing a session everywhere (the session record, its OIDC tokens by
//!   `sid`, back-channel logout delivered from here with this module's own HTTP
//!   client), then the SPID single logout; the IdP-initiated logout.
//!
//! Reads the time from the clock port; knows no HTTP types (the `web` layer extracts
//! cookie values and maps [`FlowError`] to its pages).

pub mod login;
pub mod logout;

use crate::enablement::EnablementError;
use crate::oidc::provider::OidcError;
use crate::session::WebSession;
use crate::sso::SsoError;
use crate::state::StateError;

/// Errors of the cross-service use cases: the services' own, and the refusals of the
/// login completion.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The SSO service refused or failed.
    #[error(transparent)]
    Sso(#[from] SsoError),
    /// The account mapping refused or failed.
    #[error(transparent)]
    Enablement(#[from] EnablementError),
    /// The state store (sessions, parked logins) failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The OpenID Connect provider failed while ending a session's tokens.
    #[error(transparent)]
    Oidc(#[from] OidcError),
    /// No verified login waits under this key (expired, already used, never parked).
    #[error("no parked login for this key")]
    LoginNotPending,
    /// The verified login was started in another browser (login CSRF): nothing opened.
    #[error("login binding cookie missing or different")]
    OtherBrowser,
}

impl FlowError {
    /// Stable code for pages and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Sso(e) => e.code(),
            Self::Enablement(e) => e.code(),
            Self::State(StateError::Unavailable(_)) => "POLIS_STATE_UNAVAILABLE",
            Self::State(_) => "POLIS_STATE_ERROR",
            Self::Oidc(e) => e.code(),
            Self::LoginNotPending => "POLIS_LOGIN_NOT_PENDING",
            Self::OtherBrowser => "POLIS_LOGIN_OTHER_BROWSER",
        }
    }
}

/// A live session as the caller knows it: its state-store token and its record.
#[derive(Debug, Clone, Copy)]
pub struct SessionRef<'a> {
    /// The state-store token (from the cookie).
    pub token: &'a str,
    /// The session.
    pub session: &'a WebSession,
}

/// Services over a memory store and a stopped clock, for the flows' unit tests.
#[cfg(test)]
pub(crate) mod tests_support {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;
    use std::time::Duration;

    use chrono::{DateTime, Utc};

    use super::logout::LogoutFlow;
    use crate::blocking::{BlockingPool, PoolLimits};
    use crate::clock::ManualClock;
    use crate::federation::Federation;
    use crate::identity::LoginSession;
    use crate::saml::request::Binding;
    use crate::saml::{Comparison, Level, SigningKey};
    use crate::session::{SessionSettings, SessionStore};
    use crate::sso::{SsoPorts, SsoService, SsoSettings};
    use crate::state::{MemoryStore, StateStore};
    use crate::txlog::NullTxLog;

    pub(crate) const IDP: &str = "https://idp.example.it";

    /// What a flow test works with.
    pub(crate) struct World {
        pub(crate) state: Arc<MemoryStore>,
        pub(crate) clock: Arc<ManualClock>,
        pub(crate) sessions: Arc<SessionStore>,
        pub(crate) logout: Arc<LogoutFlow>,
    }

    pub(crate) fn t0() -> DateTime<Utc> {
        crate::saml::time::parse_instant("now", "2026-03-02T10:00:00Z").unwrap()
    }

    /// A verified login of `name_id` at [`IDP`].
    pub(crate) fn login(name_id: &str) -> LoginSession {
        LoginSession::sample(IDP, name_id, &[], t0())
    }

    fn sso(state: Arc<dyn StateStore>, clock: Arc<ManualClock>) -> SsoService {
        let g = crate::keygen::generate_idp_test_cert("sp", 30).unwrap();
        let settings = SsoSettings {
            entity_id: "https://sp.example.it".into(),
            acs_url: "https://sp.example.it/acs".into(),
            slo_url: "https://sp.example.it/slo".into(),
            default_level: Level::L2,
            default_binding: Binding::Redirect,
            comparison: Comparison::Minimum,
            attribute_index: 0,
            request_ttl: Duration::from_secs(600),
            clock_skew: Duration::from_secs(30),
            max_assertion_validity: Duration::from_secs(600),
            txlog_unverified_max_bytes: 1024,
            limits: crate::saml::xml::Limits::default(),
        };
        let pool = BlockingPool::new(
            "verify",
            PoolLimits {
                workers: 1,
                queue_wait: Duration::from_secs(5),
                deadline: Duration::from_secs(5),
            },
        );
        SsoService::new(
            settings,
            SigningKey::from_pem(&g.key_pem, &g.cert_pem).unwrap(),
            SsoPorts {
                federation: Arc::new(Federation::new(true, clock.clone())),
                state,
                txlog: Arc::new(NullTxLog),
                pool,
                clock,
            },
        )
    }

    /// Sessions (30 min idle, 8 h absolute) and the logout flow, no OIDC provider.
    pub(crate) fn world() -> World {
        let state = Arc::new(MemoryStore::new());
        let clock = ManualClock::at(t0());
        let sessions = Arc::new(SessionStore::new(
            state.clone(),
            SessionSettings {
                idle_timeout: Duration::from_secs(1800),
                absolute_timeout: Duration::from_secs(28800),
            },
        ));
        let sso = Arc::new(sso(state.clone(), clock.clone()));
        let logout = Arc::new(LogoutFlow::new(sso, sessions.clone(), None, clock.clone()).unwrap());
        World {
            state,
            clock,
            sessions,
            logout,
        }
    }
}
