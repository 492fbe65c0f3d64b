//! The [`Provider`]: its settings (`[oidc]`), what it holds (key ring, clients, the
//! state store, the argon2 pool, the clock) and its construction. What it does lives
//! in the sibling modules, one per seam (`authorize`, `token`, `introspection`,
//! `logout`, `claims`, `discovery`); the state keys are listed in [`crate::oidc`].
//! The provider reads the time only from its [`SharedClock`].

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::clients::ClientRegistry;
use super::keys::KeyRing;
use crate::accounts::Account;
use crate::blocking::BlockingPool;
use crate::clock::SharedClock;
use crate::state::StateStore;

pub use super::error::{OidcError, RedirectError};

/// Settings from `[oidc]`.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// `iss`.
    pub issuer: String,
    /// Access-token lifetime.
    pub access_ttl: Duration,
    /// ID-token lifetime.
    pub id_ttl: Duration,
    /// Lifetime of one refresh token (each rotation issues a new one).
    pub refresh_ttl: Duration,
    /// Absolute lifetime of a token family, from the code; rotation never extends it.
    pub family_lifetime: Duration,
    /// Code lifetime.
    pub code_ttl: Duration,
}

impl OidcSettings {
    /// The token endpoint URL (an accepted client-assertion audience).
    pub fn token_endpoint(&self) -> String {
        format!("{}/oidc/token", self.issuer)
    }

    /// The longest any token of a family lives: how long a revocation is kept.
    pub(super) fn revocation_ttl(&self) -> Duration {
        self.family_lifetime + self.access_ttl + self.code_ttl
    }
}

/// The provider.
pub struct Provider {
    pub(super) settings: OidcSettings,
    pub(super) keys: KeyRing,
    pub(super) clients: ClientRegistry,
    pub(super) state: Arc<dyn StateStore>,
    /// Bounded pool for client-secret checks (argon2), shared with the CP forms.
    pub(super) argon2: BlockingPool,
    pub(super) clock: SharedClock,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Provider {
    /// Builds the provider.
    pub fn new(
        settings: OidcSettings,
        keys: KeyRing,
        clients: ClientRegistry,
        state: Arc<dyn StateStore>,
        argon2: BlockingPool,
        clock: SharedClock,
    ) -> Self {
        Self {
            settings,
            keys,
            clients,
            state,
            argon2,
            clock,
        }
    }

    /// Settings.
    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    /// The key ring (JWKS).
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// The clients.
    pub fn clients(&self) -> &ClientRegistry {
        &self.clients
    }

    /// The current time, from the provider's clock.
    pub(super) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

/// How the provider reads the account behind a session or a grant (the enablement
/// service, through the web layer). `Error` is the caller's own error, handed back
/// untouched where it reaches a page, as `invalid_grant` / `invalid_token` at the
/// token-style endpoints.
#[async_trait::async_trait]
pub trait AccountSource: Send + Sync {
    /// The caller's error.
    type Error: std::fmt::Display + Send;
    /// The account.
    async fn account(&self, id: Uuid) -> Result<Account, Self::Error>;
}

/// What a CP confirmation needs from the rest of the gateway for the person in front
/// of it: the CP check of the abilitazione (same counters and lock as the personal
/// area) and noting the confirmation in their browser session.
#[async_trait::async_trait]
pub trait CpConfirmation: AccountSource {
    /// Checks `cp` for `account`.
    async fn verify_cp(&self, account: &Account, cp: &str) -> Result<(), Self::Error>;
    /// Notes in the session that the CP was confirmed at `at`.
    async fn cp_confirmed(&self, at: DateTime<Utc>) -> Result<(), Self::Error>;
}
