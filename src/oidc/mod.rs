//! OpenID Connect provider: downstream Istanze services trust the gateway's tokens,
//! never SAML. No HTTP types (`web::oidc` is the edge); the time comes from the
//! provider's clock.
//!
//! One module per seam: [`authorize`] (request validation, parking, resume decisions,
//! codes), [`token`] (client authentication, code exchange, refresh rotation),
//! [`introspection`] (introspection and revocation), [`logout`] (logout tokens, the
//! RP-initiated logout), [`claims`] (account → claims, scopes), [`discovery`]; the
//! [`provider::Provider`] they all extend, its [`grants`] (token families in the state
//! store), [`clients`] and [`keys`].
//!
//! Everything that must be shared by replicas or consumed once lives in the state
//! store (one key per command, each with a TTL):
//!
//! | key | what | TTL |
//! |---|---|---|
//! | `polis:oidc:authz:<id>` | an authorization request waiting for a login or the CP | 10 min (also checked against the clock) |
//! | `polis:oidc:code:<sha256(code)>` | the grant behind a code, taken once (GETDEL) | `code_ttl` (also checked against the clock) |
//! | `polis:oidc:codefam:<sha256(code)>` | the code's family, written *with* the code: a use that finds the code gone revokes it | revocation TTL |
//! | `polis:oidc:rt:<sha256(rt)>` | a refresh token's grant, taken once on rotation (GETDEL) | refresh TTL, capped by the family's end (also checked against the clock) |
//! | `polis:oidc:rtfam:<sha256(rt)>` | the refresh token's family, written *with* the token: reuse revokes it | until the family's end |
//! | `polis:oidc:revfam:<family>` | a revoked token family (code → tokens → rotations) | revocation TTL |
//! | `polis:oidc:revjti:<jti>` | a revoked access token | until it expires |
//! | `polis:oidc:revsid:<sid>` | a gateway session that ended: its tokens are dead | revocation TTL |
//! | `polis:oidc:sidclients:<sid>` | clients that got tokens in a session (back-channel logout) | until the session's absolute end |
//! | `polis:oidc:cjti:<client>:<sha256(jti)>` | a client assertion already used | until it expires |
//!
//! The revocation TTL is the longest any token of a family can live: the family
//! lifetime plus the access-token and code lifetimes. Where a TTL bounds a lifetime
//! (a parked request, a code, a refresh token) the stored value carries its time too
//! and the provider checks it against its clock.
//!
//! **Families end.** A family (a code and every token rotated from it) ends at a fixed
//! time set when the code is issued: `refresh_family_lifetime` later, or the session's
//! absolute end if that comes first. Rotation never moves it; an access token never
//! outlives it.
//!
//! **Reuse detection is atomic.** The grant is taken with GETDEL, so of any number of
//! concurrent uses exactly one gets it; the family marker was written before the code
//! or token was handed out, so every other use finds it and revokes the family.
//!
//! Access tokens are JWTs (`typ` `at+jwt`, RFC 9068) carrying `sid` and `fam`, so a
//! resource server can verify them offline and introspection can tell if their
//! session or family was revoked. Every token the provider verifies is checked for its
//! `typ` ([`keys::TokenType`]). Refresh tokens are opaque.

pub mod authorize;
pub mod claims;
/// Registered clients (from config) and their authentication.
pub mod clients;
pub mod discovery;
mod error;
pub mod grants;
pub mod introspection;
/// Signing keys, JWKS, rotation.
pub mod keys;
pub mod logout;
pub mod provider;
pub mod token;

#[cfg(test)]
mod testkit;

pub use error::{OidcError, RedirectError};
