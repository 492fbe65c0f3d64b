//! The SSO service: the SPID side of a login and of a logout, on the pure `saml` core,
//! the federation, the state store and the transaction log. Knows nothing of HTTP (the
//! `web` module maps its results) and reads the time from its [`Clock`](crate::clock::Clock).
//!
//! - [`login`]: the AuthnRequest (start a login), the pending requests, consuming the
//!   IdP's Response (validation, the replay cache, the transaction log record);
//! - [`logout`]: SPID single logout, SP-initiated (our LogoutRequest and the IdP's
//!   LogoutResponse) and IdP-initiated (its LogoutRequest, once, and our answer).
//!
//! This module holds the service, its settings and its errors. Ending the local
//! session and telling OIDC clients is `crate::flows::logout`'s part; the browser
//! session opened after a login lives in `crate::session`.
//!
//! State keys (one key per command, so Redis Cluster works):
//! - `polis:req:<AuthnRequest ID>`: the pending request (`sp.request_ttl_seconds`, also
//!   checked against the clock from its IssueInstant), read for validation and taken
//!   once ([`StateStore::take_stamped`]) when the Response is accepted (or the IdP
//!   verifiably refused); a stamped entry ([`StateStore::put_stamped`]): one that the
//!   state store reloaded after a restart or a failover is refused
//!   ([`SsoError::StaleRequest`]), since the store may have forgotten that it was
//!   consumed (and the replay cache entry with it);
//! - `polis:aid:<hex sha256(IdP, Assertion ID)>`: replay cache, SET NX until the
//!   SubjectConfirmationData NotOnOrAfter (plus skew);
//! - `polis:slo:<LogoutRequest ID>`: our pending LogoutRequest;
//! - `polis:sloin:<hex sha256(IdP, LogoutRequest ID)>`: IdP-initiated LogoutRequests
//!   already accepted.

pub mod health;
pub mod login;
pub mod logout;

use std::sync::Arc;
use std::time::Duration;

use crate::blocking::{BlockingPool, PoolError};
use crate::clock::SharedClock;
use crate::federation::Federation;
use crate::identity::LoginSession;
use crate::saml::request::Binding;
use crate::saml::xml::Limits;
use crate::saml::{Comparison, IdpProfile, Level, SamlError, SigningKey};
use crate::state::{StateError, StateStore};
use crate::txlog::TxLog;

/// Errors of the SSO service.
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    /// A protocol check failed.
    #[error(transparent)]
    Saml(#[from] SamlError),
    /// The `idp` asked for is not a trusted IdP.
    #[error("unknown identity provider")]
    UnknownIdp,
    /// Bad parameters on a login link or form.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The Response answers no outstanding request: unknown, expired or already used.
    #[error("no outstanding request for this response (expired, already used or never issued)")]
    UnknownRequest,
    /// RelayState differs from the one sent with the request.
    #[error("RelayState does not match the request")]
    RelayStateMismatch,
    /// The Assertion was already consumed.
    #[error("assertion already used")]
    Replay,
    /// The pending request predates a restart or failover of the state store (which may
    /// have lost or rewound its state): the login must start again.
    #[error("the login started before the state store lost or reloaded its state")]
    StaleRequest,
    /// The state store cannot be reached.
    #[error(transparent)]
    State(#[from] StateError),
    /// The verification pool is saturated (or a job overran its deadline).
    #[error(transparent)]
    Busy(#[from] PoolError),
    /// An internal failure (task join, serialization).
    #[error("internal error: {0}")]
    Internal(String),
}

impl SsoError {
    /// Stable code for pages, logs and the transaction log.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Saml(e) => e.code(),
            Self::UnknownIdp => "POLIS_UNKNOWN_IDP",
            Self::BadRequest(_) => "POLIS_BAD_REQUEST",
            Self::UnknownRequest => "SAML_UNKNOWN_REQUEST",
            Self::RelayStateMismatch => "SAML_RELAY_STATE",
            Self::Replay => "SAML_REPLAY",
            Self::StaleRequest => "POLIS_LOGIN_STALE",
            Self::State(StateError::Unavailable(_)) => "POLIS_STATE_UNAVAILABLE",
            Self::State(_) => "POLIS_STATE_ERROR",
            Self::Busy(e) => e.code(),
            Self::Internal(_) => "POLIS_INTERNAL",
        }
    }
}

/// Settings of the SSO service, derived from configuration.
#[derive(Debug, Clone)]
pub struct SsoSettings {
    /// Our entityID.
    pub entity_id: String,
    /// Our ACS URL.
    pub acs_url: String,
    /// Our single-logout URL.
    pub slo_url: String,
    /// Level when the link does not say.
    pub default_level: Level,
    /// Binding when the link does not say.
    pub default_binding: Binding,
    /// RequestedAuthnContext Comparison.
    pub comparison: Comparison,
    /// AttributeConsumingServiceIndex.
    pub attribute_index: u16,
    /// Pending-request lifetime.
    pub request_ttl: Duration,
    /// Clock skew tolerated.
    pub clock_skew: Duration,
    /// Furthest ahead an IdP may put an Assertion's NotOnOrAfter (caps the replay TTL).
    pub max_assertion_validity: Duration,
    /// Bytes of a rejected (unverified) Response kept in the transaction log.
    pub txlog_unverified_max_bytes: usize,
    /// Bounds for inbound messages.
    pub limits: Limits,
}

/// How the browser is sent to the IdP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginStart {
    /// HTTP-Redirect: the full signed URL.
    Redirect(String),
    /// HTTP-POST: an auto-submitting form.
    Post {
        /// IdP SSO URL.
        action: String,
        /// Base64 signed AuthnRequest.
        saml_request: String,
        /// Opaque RelayState.
        relay_state: String,
    },
}

/// A SAML logout message as received on `/slo`.
#[derive(Debug, Clone, Copy)]
pub enum SloMessage<'a> {
    /// HTTP-Redirect: the raw query string, exactly as received.
    Redirect {
        /// The raw query.
        raw_query: &'a str,
    },
    /// HTTP-POST: the base64 value and RelayState.
    Post {
        /// `SAMLRequest` or `SAMLResponse`.
        value: &'a str,
        /// RelayState.
        relay_state: Option<&'a str>,
    },
}

/// A Response that passed every check, with what the pending request remembered.
#[derive(Debug, Clone)]
pub struct VerifiedLogin {
    /// The verified identity.
    pub login: LoginSession,
    /// Where the browser continues (a local path), if the login was started for one.
    pub return_to: Option<String>,
    /// Hex SHA-256 of the binding cookie of the browser that started the login.
    pub browser: String,
}

/// A service-provider identity toward one federation: the entityID our requests carry
/// (Issuer, NameQualifier, the Audience we expect back) and the key that signs them.
#[derive(Debug, Clone)]
pub struct SpIdentity {
    /// The entityID.
    pub entity_id: String,
    /// Signs the requests (and the metadata of that federation).
    pub key: SigningKey,
}

/// The SSO service.
pub struct SsoService {
    settings: SsoSettings,
    key: SigningKey,
    /// The CIE SP identity (`[cie]` with its own entityID/key); `None`: CIE IdPs see the
    /// SPID one.
    cie: Option<SpIdentity>,
    federation: Arc<Federation>,
    state: Arc<dyn StateStore>,
    txlog: Arc<dyn TxLog>,
    pool: BlockingPool,
    clock: SharedClock,
    /// Each IdP's share of failures on its side over a sliding window.
    health: health::IdpHealth,
}

impl std::fmt::Debug for SsoService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoService")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The SSO service's collaborators, for [`SsoService::new`].
pub struct SsoPorts {
    /// Trusted IdPs.
    pub federation: Arc<Federation>,
    /// Pending requests, replay caches.
    pub state: Arc<dyn StateStore>,
    /// The SPID transaction register.
    pub txlog: Arc<dyn TxLog>,
    /// Where parsing and signature checks run.
    pub pool: BlockingPool,
    /// Where the time comes from.
    pub clock: SharedClock,
}

/// A `std` duration as a chrono one (settings are far below the overflow).
fn chrono_duration(d: Duration) -> Result<chrono::Duration, SsoError> {
    chrono::Duration::from_std(d).map_err(|e| SsoError::Internal(e.to_string()))
}

impl SsoService {
    /// Builds the service.
    pub fn new(settings: SsoSettings, key: SigningKey, ports: SsoPorts) -> Self {
        Self {
            settings,
            key,
            cie: None,
            federation: ports.federation,
            state: ports.state,
            txlog: ports.txlog,
            pool: ports.pool,
            clock: ports.clock,
            health: health::IdpHealth::default(),
        }
    }

    /// Whether `idp`'s Responses are failing on its side now (the login page shows a
    /// notice beside it).
    pub fn idp_degraded(&self, idp: &str) -> bool {
        self.health.is_degraded(idp, self.now())
    }

    /// Requests to CIE-profile IdPs carry `cie`'s entityID and are signed with its key;
    /// their Responses must name it as Audience.
    #[must_use]
    pub fn with_cie_identity(mut self, cie: SpIdentity) -> Self {
        self.cie = Some(cie);
        self
    }

    /// The entityID and key we present to an IdP of `profile`.
    fn identity(&self, profile: IdpProfile) -> (&str, &SigningKey) {
        match (profile, &self.cie) {
            (IdpProfile::Cie, Some(cie)) => (&cie.entity_id, &cie.key),
            _ => (&self.settings.entity_id, &self.key),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &SsoSettings {
        &self.settings
    }

    /// The federation.
    pub fn federation(&self) -> &Federation {
        &self.federation
    }

    /// Health of the state store.
    pub async fn ready(&self) -> Result<(), SsoError> {
        Ok(self.state.ping().await?)
    }

    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }
}
