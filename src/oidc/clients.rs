//! Registered OpenID Connect clients (from `[[oidc.clients]]`) and how they
//! authenticate at the token, introspection and revocation endpoints.
//!
//! - `client_secret_basic` / `client_secret_post`: the secret is compared with
//!   `secret_hash` from config, `hmac-sha256:<hex>` under the server key
//!   (`oidc.client_secret_key_file`; made by `polis-gateway oidc client-secret --key-file`),
//!   in constant time; the secret itself is never stored. An argon2id hash (the earlier
//!   format) is still accepted, with a warning at start, until the secret is rotated.
//! - `private_key_jwt` (RFC 7523): a JWT signed with a key of the client's JWKS
//!   (`jwks_file`; RSA, EC or Ed25519 public keys only), `iss` = `sub` = client_id, `aud`
//!   containing the token endpoint or the issuer, not expired, `jti` used once (the
//!   caller records it in the state store).
//!
//! A client assertion's header `typ`, when present, must be `JWT` or
//! `client-authentication+jwt` (draft-ietf-oauth-rfc7523bis): a JWT of another kind
//! (an access or logout token, a secevent) is never taken for a client assertion.
//!
//! Redirect URIs are compared exactly (no prefix, no wildcard).
//!
//! Introspection answers a client only about its own tokens, and about those of the
//! clients listed in its `introspect_for` (a resource server serving them).

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::keys::SigningAlg;

/// One `[[oidc.clients]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The client_id.
    pub client_id: String,
    /// A name for logs and pages.
    #[serde(default)]
    pub name: Option<String>,
    /// The client secret's `hmac-sha256:<hex>` under the server key, or (earlier
    /// format, until rotated) its argon2id PHC hash (`client_secret_basic` / `_post`).
    #[serde(default)]
    pub secret_hash: Option<String>,
    /// JWKS file with the client's public keys (`private_key_jwt`).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Exact redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Exact URIs allowed as `post_logout_redirect_uri`.
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// Scopes the client may ask (`openid` is always allowed).
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Back-Channel Logout 1.0 URI, if the client wants logout tokens.
    #[serde(default)]
    pub backchannel_logout_uri: Option<String>,
    /// Whether accounts still in enablement get tokens (default: only enabled ones).
    #[serde(default)]
    pub allow_in_enablement: bool,
    /// ID-token signing algorithm (EdDSA unless the client needs ES256).
    #[serde(default = "default_alg")]
    pub id_token_alg: SigningAlg,
    /// Other clients whose tokens this client may introspect (it is a resource server
    /// for them); by default only its own.
    #[serde(default)]
    pub introspect_for: Vec<String>,
}

fn default_alg() -> SigningAlg {
    SigningAlg::EdDSA
}

fn default_scopes() -> Vec<String> {
    ["openid", "profile", "email", "istanze"]
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// How a client proves who it is.
#[derive(Clone)]
pub enum ClientAuth {
    /// HMAC-SHA-256 of the shared secret under the server key (32 bytes).
    SecretMac(Vec<u8>),
    /// argon2id hash of the shared secret (the earlier format, accepted until rotated).
    SecretHash(String),
    /// Public keys for `private_key_jwt`.
    Jwks(JwkSet),
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SecretMac(_) => f.write_str("SecretMac(<redacted>)"),
            Self::SecretHash(_) => f.write_str("SecretHash(<redacted>)"),
            Self::Jwks(set) => write!(f, "Jwks({} keys)", set.keys.len()),
        }
    }
}

/// A registered client.
#[derive(Debug, Clone)]
pub struct Client {
    /// The client_id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// How it authenticates.
    pub auth: Vec<ClientAuth>,
    /// Exact redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Exact post-logout redirect URIs.
    pub post_logout_redirect_uris: Vec<String>,
    /// Allowed scopes.
    pub scopes: Vec<String>,
    /// Back-channel logout URI.
    pub backchannel_logout_uri: Option<String>,
    /// Tokens for accounts still in enablement.
    pub allow_in_enablement: bool,
    /// ID-token algorithm.
    pub id_token_alg: SigningAlg,
    /// Clients whose tokens this one may introspect besides its own.
    pub introspect_for: Vec<String>,
}

impl Client {
    /// Whether introspection tells this client about a token issued to `client_id`.
    pub fn may_introspect(&self, client_id: &str) -> bool {
        client_id == self.id || self.introspect_for.iter().any(|c| c == client_id)
    }
}

/// Why the client registry or a client authentication failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A configuration entry is unusable.
    #[error("oidc.clients[{index}]: {reason}")]
    Config {
        /// Position in the list.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// Unknown client, wrong secret, bad assertion (`invalid_client`).
    #[error("client authentication failed: {0}")]
    Unauthorized(String),
}

impl ClientError {
    /// A stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Config { .. } => "POLIS_OIDC_CLIENT_CONFIG",
            Self::Unauthorized(_) => "POLIS_OIDC_INVALID_CLIENT",
        }
    }
}

/// What a request presented to authenticate the client.
#[derive(Clone, PartialEq, Eq)]
pub enum Presented {
    /// `client_secret_basic` or `client_secret_post`.
    Secret {
        /// client_id.
        client_id: String,
        /// The secret.
        secret: String,
    },
    /// `private_key_jwt`.
    Assertion {
        /// client_id if also sent as a parameter.
        client_id: Option<String>,
        /// The signed JWT.
        assertion: String,
    },
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Secret { client_id, .. } => write!(f, "Secret({client_id})"),
            Self::Assertion { client_id, .. } => write!(f, "Assertion({client_id:?})"),
        }
    }
}

/// A verified client assertion: whose it is and the `jti` to record against replay.
#[derive(Debug, Clone)]
pub struct AssertionInfo {
    /// The `jti`.
    pub jti: String,
    /// Its expiry.
    pub expires_at: DateTime<Utc>,
}

/// The registered clients.
#[derive(Debug, Clone, Default)]
pub struct ClientRegistry {
    clients: BTreeMap<String, Client>,
    /// The key client-secret MACs are made under (`oidc.client_secret_key_file`).
    secret_key: Option<Vec<u8>>,
}

fn valid_uri(uri: &str) -> bool {
    (uri.starts_with("https://") || uri.starts_with("http://"))
        && !uri.contains('#')
        && !uri.contains(char::is_whitespace)
}

/// The ways `c` authenticates: a secret MAC (or an earlier argon2id hash) and/or a JWKS
/// file of public keys. `has_key`: a server key for MACs is configured.
fn client_auth(c: &ClientConfig, has_key: bool) -> Result<Vec<ClientAuth>, String> {
    let mut auth = Vec::new();
    if let Some(hash) = &c.secret_hash {
        if hash.starts_with(crate::secrets::CLIENT_SECRET_MAC_PREFIX) {
            let mac = crate::secrets::parse_client_secret_mac(hash)
                .ok_or("secret_hash: hmac-sha256: must be followed by 64 hex digits")?;
            if !has_key {
                return Err("an hmac-sha256 secret_hash needs oidc.client_secret_key_file".into());
            }
            auth.push(ClientAuth::SecretMac(mac));
        } else if hash.starts_with("$argon2id$") {
            tracing::warn!(
                client_id = %c.client_id,
                "argon2id client secret hash: accepted until rotated; make a new secret with `polis-gateway oidc client-secret --key-file <oidc.client_secret_key_file>` (each check costs tens of milliseconds)"
            );
            auth.push(ClientAuth::SecretHash(hash.clone()));
        } else {
            return Err(
                "secret_hash must be hmac-sha256:<hex> (polis-gateway oidc client-secret --key-file) or an earlier argon2id PHC string"
                    .into(),
            );
        }
    }
    if let Some(file) = &c.jwks_file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("jwks_file {}: {e}", file.display()))?;
        let set: JwkSet = serde_json::from_str(&text)
            .map_err(|e| format!("jwks_file {}: {e}", file.display()))?;
        if set.keys.is_empty() {
            return Err("jwks_file has no keys".into());
        }
        if set
            .keys
            .iter()
            .any(|key| matches!(key.algorithm, AlgorithmParameters::OctetKey(_)))
        {
            return Err("jwks_file must hold public keys only".into());
        }
        auth.push(ClientAuth::Jwks(set));
    }
    if auth.is_empty() {
        return Err("needs secret_hash or jwks_file".into());
    }
    Ok(auth)
}

/// One validated client from its config entry.
fn client_from_config(c: &ClientConfig, has_key: bool) -> Result<Client, String> {
    if c.client_id.is_empty() || c.client_id.len() > 128 {
        return Err("client_id must have 1 to 128 characters".into());
    }
    let auth = client_auth(c, has_key)?;
    if c.redirect_uris.is_empty() {
        return Err("at least one redirect_uri".into());
    }
    if let Some(uri) = c
        .redirect_uris
        .iter()
        .chain(&c.post_logout_redirect_uris)
        .chain(&c.backchannel_logout_uri)
        .find(|uri| !valid_uri(uri))
    {
        return Err(format!(
            "{uri:?} is not an absolute http(s) URI without fragment"
        ));
    }
    let mut scopes = c.scopes.clone();
    if !scopes.iter().any(|s| s == "openid") {
        scopes.push("openid".into());
    }
    Ok(Client {
        id: c.client_id.clone(),
        name: c.name.clone().unwrap_or_else(|| c.client_id.clone()),
        auth,
        redirect_uris: c.redirect_uris.clone(),
        post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
        scopes,
        backchannel_logout_uri: c.backchannel_logout_uri.clone(),
        allow_in_enablement: c.allow_in_enablement,
        id_token_alg: c.id_token_alg,
        introspect_for: c.introspect_for.clone(),
    })
}

impl ClientRegistry {
    /// Builds the registry; reads the JWKS files. `secret_key`: the server key of the
    /// client-secret MACs (`oidc.client_secret_key_file`), if configured.
    pub fn from_config(
        entries: &[ClientConfig],
        secret_key: Option<Vec<u8>>,
    ) -> Result<Self, ClientError> {
        let mut clients = BTreeMap::new();
        for (index, c) in entries.iter().enumerate() {
            let bad = |reason: String| ClientError::Config { index, reason };
            let client = client_from_config(c, secret_key.is_some()).map_err(bad)?;
            if clients.insert(c.client_id.clone(), client).is_some() {
                return Err(bad(format!("duplicate client_id {:?}", c.client_id)));
            }
        }
        for (index, c) in entries.iter().enumerate() {
            if let Some(unknown) = c
                .introspect_for
                .iter()
                .find(|id| !clients.contains_key(*id))
            {
                return Err(ClientError::Config {
                    index,
                    reason: format!("introspect_for names an unknown client {unknown:?}"),
                });
            }
        }
        Ok(Self {
            clients,
            secret_key,
        })
    }

    /// A client by id.
    pub fn get(&self, client_id: &str) -> Option<&Client> {
        self.clients.get(client_id)
    }

    /// Every client.
    pub fn all(&self) -> impl Iterator<Item = &Client> {
        self.clients.values()
    }

    /// Whether `presented` is a secret of a client whose secrets are checked by MAC only
    /// (no argon2, no signature): cheap enough for an async worker.
    pub fn checked_by_mac(&self, presented: &Presented) -> bool {
        let Presented::Secret { client_id, .. } = presented else {
            return false;
        };
        self.get(client_id).is_some_and(|c| {
            c.auth.iter().any(|a| matches!(a, ClientAuth::SecretMac(_)))
                && !c
                    .auth
                    .iter()
                    .any(|a| matches!(a, ClientAuth::SecretHash(_)))
        })
    }

    /// Authenticates a client. `audiences` are the values a client assertion's `aud`
    /// may carry (the endpoint URL and the issuer). For an assertion, the returned
    /// [`AssertionInfo`] must be recorded so the `jti` is never accepted twice.
    /// CPU-bound (argon2): call from a blocking task.
    pub fn authenticate(
        &self,
        presented: &Presented,
        audiences: &[&str],
        now: DateTime<Utc>,
    ) -> Result<(&Client, Option<AssertionInfo>), ClientError> {
        let fail = |why: &str| ClientError::Unauthorized(why.to_owned());
        match presented {
            Presented::Secret { client_id, secret } => {
                let client = self.get(client_id).ok_or_else(|| fail("unknown client"))?;
                let ok = client.auth.iter().any(|a| match a {
                    ClientAuth::SecretMac(mac) => self.secret_key.as_deref().is_some_and(|key| {
                        crate::secrets::verify_client_secret_mac(key, secret, mac)
                    }),
                    ClientAuth::SecretHash(hash) => crate::secrets::verify_secret(secret, hash),
                    ClientAuth::Jwks(_) => false,
                });
                if ok {
                    Ok((client, None))
                } else {
                    Err(fail("wrong client secret"))
                }
            }
            Presented::Assertion {
                client_id,
                assertion,
            } => {
                let (client, info) = self.verify_assertion(assertion, audiences, now)?;
                if client_id.as_deref().is_some_and(|id| id != client.id) {
                    return Err(fail("client_id does not match the assertion"));
                }
                Ok((client, Some(info)))
            }
        }
    }

    fn verify_assertion(
        &self,
        assertion: &str,
        audiences: &[&str],
        now: DateTime<Utc>,
    ) -> Result<(&Client, AssertionInfo), ClientError> {
        let fail = |why: String| ClientError::Unauthorized(why);
        let header = assertion_header(assertion)?;
        // Who claims to be signing: read `iss` before verifying to pick the key set,
        // then verify everything with that client's keys only.
        let unverified = unverified_claims(assertion)?;
        let issuer = unverified
            .get("iss")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| fail("assertion without iss".into()))?;
        let client = self
            .get(issuer)
            .ok_or_else(|| fail("unknown client".into()))?;
        let keys = client_keys(client, header.kid.as_deref());
        if keys.is_empty() {
            return Err(fail("no matching client key".into()));
        }
        let validation = assertion_validation(header.alg, audiences, &client.id);
        let mut last = String::from("no key verified the assertion");
        for jwk in keys {
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            match jsonwebtoken::decode::<serde_json::Value>(assertion, &key, &validation) {
                Ok(data) => return Ok((client, assertion_info(&data.claims, client, now)?)),
                Err(e) => last = e.to_string(),
            }
        }
        Err(fail(last))
    }
}

/// The header of a client assertion: a client-assertion `typ` (or none) and an
/// allowed asymmetric algorithm.
fn assertion_header(assertion: &str) -> Result<jsonwebtoken::Header, ClientError> {
    let fail = |why: String| ClientError::Unauthorized(why);
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|e| fail(format!("assertion header: {e}")))?;
    if let Some(typ) = &header.typ
        && !assertion_typ(typ)
    {
        return Err(fail(format!(
            "assertion typ {typ:?} is not a client assertion"
        )));
    }
    if !matches!(
        header.alg,
        Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
            | Algorithm::ES256
            | Algorithm::ES384
            | Algorithm::EdDSA
    ) {
        return Err(fail(format!(
            "assertion algorithm {:?} not allowed",
            header.alg
        )));
    }
    Ok(header)
}

/// The client's public keys an assertion may be signed with (the one named by `kid`).
fn client_keys<'a>(client: &'a Client, kid: Option<&str>) -> Vec<&'a jsonwebtoken::jwk::Jwk> {
    client
        .auth
        .iter()
        .filter_map(|a| match a {
            ClientAuth::Jwks(set) => Some(set),
            ClientAuth::SecretMac(_) | ClientAuth::SecretHash(_) => None,
        })
        .flat_map(|set| match kid {
            Some(kid) => set.find(kid).into_iter().collect::<Vec<_>>(),
            None => set.keys.iter().collect(),
        })
        .collect()
}

/// Signature, `aud`, `iss` and the required claims; the times are checked against
/// `now` afterwards, never the system clock.
fn assertion_validation(alg: Algorithm, audiences: &[&str], client_id: &str) -> Validation {
    let mut validation = Validation::new(alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.set_audience(audiences);
    validation.set_issuer(&[client_id]);
    validation.required_spec_claims = ["iss", "sub", "aud", "exp", "jti"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    validation
}

/// The verified assertion's `sub` (the client), `exp` (not past, at most 10 minutes
/// ahead) and `jti`.
fn assertion_info(
    claims: &serde_json::Value,
    client: &Client,
    now: DateTime<Utc>,
) -> Result<AssertionInfo, ClientError> {
    let fail = |why: &str| ClientError::Unauthorized(why.to_owned());
    if claims.get("sub").and_then(serde_json::Value::as_str) != Some(client.id.as_str()) {
        return Err(fail("assertion sub must be the client_id"));
    }
    let exp = claims
        .get("exp")
        .and_then(serde_json::Value::as_i64)
        .and_then(|e| DateTime::<Utc>::from_timestamp(e, 0))
        .ok_or_else(|| fail("assertion exp invalid"))?;
    if exp <= now {
        return Err(fail("assertion expired"));
    }
    if exp > now + chrono::Duration::minutes(10) {
        return Err(fail("assertion lives longer than 10 minutes"));
    }
    let jti = claims
        .get("jti")
        .and_then(serde_json::Value::as_str)
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or_else(|| fail("assertion jti invalid"))?
        .to_owned();
    Ok(AssertionInfo {
        jti,
        expires_at: exp,
    })
}

/// Whether a client assertion's header `typ` is one a client assertion may carry
/// (ignoring case and the `application/` prefix, RFC 7515 §4.1.9).
fn assertion_typ(typ: &str) -> bool {
    let lower = typ.to_ascii_lowercase();
    let bare = lower.strip_prefix("application/").unwrap_or(&lower);
    matches!(bare, "jwt" | "client-authentication+jwt")
}

/// The claims of a JWT without verifying it (only to find who signed it).
fn unverified_claims(token: &str) -> Result<serde_json::Value, ClientError> {
    use base64::Engine as _;
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| ClientError::Unauthorized("malformed assertion".into()))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| ClientError::Unauthorized("malformed assertion".into()))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| ClientError::Unauthorized("malformed assertion".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_client_assertion_types_are_accepted() {
        for ok in [
            "JWT",
            "jwt",
            "client-authentication+jwt",
            "application/client-authentication+JWT",
        ] {
            assert!(assertion_typ(ok), "{ok}");
        }
        for bad in ["at+jwt", "logout+jwt", "secevent+jwt", "", "application/"] {
            assert!(!assertion_typ(bad), "{bad}");
        }
    }

    fn entry(id: &str, secret_hash: &str) -> ClientConfig {
        ClientConfig {
            client_id: id.into(),
            name: None,
            secret_hash: Some(secret_hash.into()),
            jwks_file: None,
            redirect_uris: vec!["https://rp.example/cb".into()],
            post_logout_redirect_uris: Vec::new(),
            scopes: default_scopes(),
            backchannel_logout_uri: None,
            allow_in_enablement: false,
            id_token_alg: SigningAlg::EdDSA,
            introspect_for: Vec::new(),
        }
    }

    fn secret(id: &str, secret: &str) -> Presented {
        Presented::Secret {
            client_id: id.into(),
            secret: secret.into(),
        }
    }

    #[test]
    fn secrets_are_checked_by_mac_under_the_server_key_and_argon2_still_works() {
        let key = b"server key for client secrets, 32+ bytes".to_vec();
        let mac = crate::secrets::client_secret_mac(&key, "machine-secret").unwrap();
        let legacy = crate::secrets::hash_secret("old-secret").unwrap();
        let registry =
            ClientRegistry::from_config(&[entry("new", &mac), entry("old", &legacy)], Some(key))
                .unwrap();
        let now = Utc::now();
        assert!(
            registry
                .authenticate(&secret("new", "machine-secret"), &[], now)
                .is_ok()
        );
        assert!(
            registry
                .authenticate(&secret("new", "machine-secreT"), &[], now)
                .is_err()
        );
        assert!(
            registry
                .authenticate(&secret("old", "old-secret"), &[], now)
                .is_ok()
        );
        assert!(
            registry
                .authenticate(&secret("old", "machine-secret"), &[], now)
                .is_err()
        );
        assert!(registry.checked_by_mac(&secret("new", "x")));
        assert!(
            !registry.checked_by_mac(&secret("old", "x")),
            "argon2: on the pool"
        );
        assert!(!registry.checked_by_mac(&secret("unknown", "x")));

        // A MAC without the server key, a malformed one, an unknown format: refused at start.
        assert!(ClientRegistry::from_config(&[entry("new", &mac)], None).is_err());
        let short = &mac[..mac.len() - 2];
        for bad in [short, "hmac-sha256:xyz", "plain-secret", "$2b$12$abc"] {
            assert!(
                ClientRegistry::from_config(&[entry("c", bad)], Some(b"k".repeat(32))).is_err(),
                "{bad}"
            );
        }
    }
}
