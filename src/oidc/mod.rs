//! OpenID Connect provider: downstream Istanze services trust the gateway's tokens,
//! never SAML.

/// Registered clients (from config) and their authentication.
pub mod clients;
/// Signing keys, JWKS, rotation.
pub mod keys;
/// Authorization requests, codes, tokens, revocation, logout propagation.
pub mod provider;
