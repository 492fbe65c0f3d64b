//! The provider's one error type ([`OidcError`], with the RFC 6749 `error` value each
//! maps to and a stable code) and [`RedirectError`], an error an authorization request
//! reports back to its (trusted) client.

use super::clients::ClientError;
use super::keys::KeyError;
use crate::state::StateError;

/// OAuth/OIDC errors, with the RFC 6749 error code they map to.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// `invalid_request`.
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// `invalid_client`.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// `invalid_grant`.
    #[error("invalid_grant: {0}")]
    InvalidGrant(String),
    /// `unauthorized_client`.
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(String),
    /// `unsupported_grant_type`.
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    /// `invalid_scope`.
    #[error("invalid_scope: {0}")]
    InvalidScope(String),
    /// `invalid_token` (bearer).
    #[error("invalid_token: {0}")]
    InvalidToken(String),
    /// `access_denied`: the account may not get tokens for this client.
    #[error("access_denied: {0}")]
    AccessDenied(String),
    /// The redirect_uri or client_id of an authorization request cannot be trusted:
    /// shown as a page, never redirected to.
    #[error("untrusted authorization request: {0}")]
    Untrusted(String),
    /// The pending authorization is unknown or expired.
    #[error("authorization request expired")]
    AuthzExpired,
    /// Signing failed.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The argon2 pool is saturated (client-secret checks): 503.
    #[error(transparent)]
    Busy(#[from] crate::blocking::PoolError),
    /// Serialization or task failure.
    #[error("internal: {0}")]
    Internal(String),
}

impl OidcError {
    /// The OAuth `error` value.
    pub fn oauth_code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) | Self::AuthzExpired => "invalid_request",
            Self::Client(_) => "invalid_client",
            Self::InvalidGrant(_) => "invalid_grant",
            Self::UnauthorizedClient(_) => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope(_) => "invalid_scope",
            Self::InvalidToken(_) => "invalid_token",
            Self::AccessDenied(_) => "access_denied",
            Self::Untrusted(_) => "invalid_request",
            Self::Busy(_) => "temporarily_unavailable",
            Self::Keys(_) | Self::State(_) | Self::Internal(_) => "server_error",
        }
    }

    /// A stable code for logs and pages.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "POLIS_OIDC_INVALID_REQUEST",
            Self::Client(e) => e.code(),
            Self::InvalidGrant(_) => "POLIS_OIDC_INVALID_GRANT",
            Self::UnauthorizedClient(_) => "POLIS_OIDC_UNAUTHORIZED_CLIENT",
            Self::UnsupportedGrantType => "POLIS_OIDC_UNSUPPORTED_GRANT",
            Self::InvalidScope(_) => "POLIS_OIDC_INVALID_SCOPE",
            Self::InvalidToken(_) => "POLIS_OIDC_INVALID_TOKEN",
            Self::AccessDenied(_) => "POLIS_OIDC_ACCESS_DENIED",
            Self::Untrusted(_) => "POLIS_OIDC_UNTRUSTED_REQUEST",
            Self::AuthzExpired => "POLIS_OIDC_AUTHZ_EXPIRED",
            Self::Keys(e) => e.code(),
            Self::State(StateError::Unavailable(_)) => "POLIS_STATE_UNAVAILABLE",
            Self::State(_) => "POLIS_STATE_ERROR",
            Self::Busy(e) => e.code(),
            Self::Internal(_) => "POLIS_INTERNAL",
        }
    }
}

/// Where an authorization error goes: to the client (a redirect) once the client and
/// redirect URI are trusted, to a page before.
#[derive(Debug)]
pub struct RedirectError {
    /// The trusted redirect URI.
    pub redirect_uri: String,
    /// The error.
    pub error: OidcError,
    /// The client's state.
    pub state: Option<String>,
}

pub(super) fn internal(e: impl std::fmt::Display) -> OidcError {
    OidcError::Internal(e.to_string())
}
