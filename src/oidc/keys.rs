//! The OpenID Connect signing keys: the key ring, the JWKS, rotation.
//!
//! Rotation, with no token refused at any moment:
//! 1. `polis-gateway keys rotate` writes a new key file (`generate_pem`).
//! 2. The config lists the new file first (no `not_after`: the current signer) and the old
//!    one with `not_after` = now + the longest token lifetime (verify-only, still in the JWKS).
//! 3. Restart, or a rolling deploy: every replica signs with the new key, accepts both.
//! 4. After `not_after` remove the old entry (until then it is already unpublished and refused).
//!
//! The `kid` is the RFC 7638 JWK thumbprint (SHA-256, base64url without padding) of the
//! public key: it is the same on every replica and after every restart, needs no config,
//! and cannot point at two different keys.
//!
//! A further entry of an algorithm without `not_after` (after the first one, the current
//! signer) is verify-only and published with no end: that is how a next key is pre-published.
//!
//! Verification never trusts the token header beyond choosing the key by `kid`: the header
//! `alg` must equal that key's algorithm, and the claim times are checked against the `now`
//! given by the caller, never against the system clock.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Private};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Errors of the signing keys and of token signing and verification.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file could not be read.
    #[error("cannot read the key file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key is not a usable private key for its configured algorithm.
    #[error("bad signing key ({what}): {reason}")]
    BadKey {
        /// The file, or the entry's position.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No current (signing) key for an algorithm.
    #[error("no current {0} signing key (an entry without not_after)")]
    NoCurrentKey(SigningAlg),
    /// The same key is listed twice.
    #[error("the key {0} is listed twice")]
    DuplicateKey(String),
    /// Signing failed.
    #[error("cannot sign the token: {0}")]
    Sign(String),
    /// The token's `kid` is missing, not in the ring, or its key is past `not_after`.
    #[error("the token's signing key is unknown or retired")]
    UnknownKid,
    /// The token's `exp` is not after `now`.
    #[error("the token has expired")]
    Expired,
    /// The token is malformed, its signature is wrong, or a claim does not fit.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// A new key could not be generated.
    #[error("cannot generate a key: {0}")]
    Generate(String),
}

impl KeyError {
    /// The stable code shown to users and in logs.
    pub fn code(&self) -> &'static str {
        match self {
            KeyError::Read { .. } => "POLIS_OIDC_KEY_READ",
            KeyError::BadKey { .. } => "POLIS_OIDC_KEY_BAD_KEY",
            KeyError::NoCurrentKey(_) => "POLIS_OIDC_KEY_NO_CURRENT_KEY",
            KeyError::DuplicateKey(_) => "POLIS_OIDC_KEY_DUPLICATE",
            KeyError::Sign(_) => "POLIS_OIDC_KEY_SIGN",
            KeyError::UnknownKid => "POLIS_OIDC_KEY_UNKNOWN_KID",
            KeyError::Expired => "POLIS_OIDC_KEY_EXPIRED",
            KeyError::Invalid(_) => "POLIS_OIDC_KEY_INVALID_TOKEN",
            KeyError::Generate(_) => "POLIS_OIDC_KEY_GENERATE",
        }
    }
}

/// The kinds of JWT the gateway signs, told apart by the header `typ`: every
/// verification names the kind it expects, and a token of another kind is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    /// An ID token (`JWT`), also when it comes back as `id_token_hint`.
    Id,
    /// An access token (`at+jwt`, RFC 9068).
    Access,
    /// A back-channel logout token (`logout+jwt`).
    Logout,
}

impl TokenType {
    /// The header `typ` this kind is signed with.
    pub fn typ(self) -> &'static str {
        match self {
            Self::Id => "JWT",
            Self::Access => "at+jwt",
            Self::Logout => "logout+jwt",
        }
    }

    /// Whether a received header `typ` names this kind: compared ignoring case, with
    /// the optional `application/` prefix (RFC 7515 §4.1.9).
    pub fn matches(self, typ: &str) -> bool {
        let bare = match typ.get(..12) {
            Some(prefix) if prefix.eq_ignore_ascii_case("application/") => typ.get(12..),
            _ => Some(typ),
        };
        bare.is_some_and(|t| t.eq_ignore_ascii_case(self.typ()))
    }
}

/// A token signing algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigningAlg {
    /// Ed25519 (RFC 8037); the default and required one.
    #[serde(rename = "EdDSA")]
    EdDSA,
    /// ECDSA on P-256 with SHA-256, for clients that lack EdDSA.
    #[serde(rename = "ES256")]
    ES256,
}

impl SigningAlg {
    /// The JOSE name: `EdDSA` or `ES256`.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::EdDSA => "EdDSA",
            SigningAlg::ES256 => "ES256",
        }
    }

    /// The jsonwebtoken algorithm.
    pub fn algorithm(self) -> Algorithm {
        Algorithm::from(self)
    }
}

impl From<SigningAlg> for Algorithm {
    fn from(alg: SigningAlg) -> Self {
        match alg {
            SigningAlg::EdDSA => Algorithm::EdDSA,
            SigningAlg::ES256 => Algorithm::ES256,
        }
    }
}

impl fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One configured signing key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The PEM private key file (PKCS#8 `PRIVATE KEY`, or `EC PRIVATE KEY` for P-256).
    pub file: PathBuf,
    /// The algorithm the key signs with.
    pub alg: SigningAlg,
    /// For a retired key: keep publishing and accepting it until then. Absent for the
    /// current key.
    #[serde(default)]
    pub not_after: Option<DateTime<Utc>>,
}

/// One key of the ring: the private key, its public JWK and `kid`.
#[derive(Debug, Clone)]
pub struct SigningKeyEntry {
    kid: String,
    alg: SigningAlg,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: Jwk,
    not_after: Option<DateTime<Utc>>,
}

impl SigningKeyEntry {
    /// Parses a PEM private key and checks it fits `alg`.
    fn from_pem(
        pem: &[u8],
        alg: SigningAlg,
        not_after: Option<DateTime<Utc>>,
        what: &str,
    ) -> Result<Self, KeyError> {
        let bad = |reason: String| KeyError::BadKey {
            what: what.to_owned(),
            reason,
        };
        let pkey = PKey::private_key_from_pem(pem)
            .map_err(|e| bad(format!("not a PEM private key: {e}")))?;
        match alg {
            SigningAlg::EdDSA => {
                if pkey.id() != Id::ED25519 {
                    return Err(bad("EdDSA needs an Ed25519 key".to_owned()));
                }
            }
            SigningAlg::ES256 => {
                let curve = pkey.ec_key().ok().and_then(|ec| ec.group().curve_name());
                if curve != Some(Nid::X9_62_PRIME256V1) {
                    return Err(bad("ES256 needs a P-256 EC key".to_owned()));
                }
            }
        }
        // Normalised to PKCS#8 DER: jsonwebtoken does not read SEC1 `EC PRIVATE KEY`.
        let der = pkey
            .private_key_to_pkcs8()
            .map_err(|e| bad(format!("cannot encode as PKCS#8: {e}")))?;
        let encoding = match alg {
            SigningAlg::EdDSA => EncodingKey::from_ed_der(&der),
            SigningAlg::ES256 => EncodingKey::from_ec_der(&der),
        };
        let mut jwk = Jwk::from_encoding_key(&encoding, alg.algorithm())
            .map_err(|e| bad(format!("cannot derive the public key: {e}")))?;
        let kid = jwk_thumbprint(&jwk)?;
        jwk.common = CommonParameters {
            public_key_use: Some(PublicKeyUse::Signature),
            key_algorithm: Some(KeyAlgorithm::from(alg.algorithm())),
            key_id: Some(kid.clone()),
            ..CommonParameters::default()
        };
        let decoding = DecodingKey::from_jwk(&jwk)
            .map_err(|e| bad(format!("cannot build the verification key: {e}")))?;
        Ok(SigningKeyEntry {
            kid,
            alg,
            encoding,
            decoding,
            jwk,
            not_after,
        })
    }

    /// The key id: the RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm this key signs and verifies with.
    pub fn alg(&self) -> SigningAlg {
        self.alg
    }

    /// The private key, for signing.
    pub fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }

    /// The public key, for verification.
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }

    /// The public JWK with `kid`, `alg` and `use` = `sig`.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// For a previous key: published and accepted until then.
    pub fn not_after(&self) -> Option<DateTime<Utc>> {
        self.not_after
    }

    /// Whether the key is published and accepted at `now`.
    fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.not_after.is_none_or(|t| t > now)
    }
}

/// The signing keys: one current signer per algorithm, previous keys verify-only.
#[derive(Debug, Clone)]
pub struct KeyRing {
    entries: Vec<SigningKeyEntry>,
}

/// One in-memory key for [`KeyRing::from_pems`]: PEM bytes, algorithm, `not_after`.
pub type PemEntry = (Vec<u8>, SigningAlg, Option<DateTime<Utc>>);

impl KeyRing {
    /// Reads the configured key files.
    ///
    /// The first entry per algorithm without `not_after` is the current signer for that
    /// algorithm; entries with `not_after` are previous keys: verify-only and in the JWKS
    /// until `not_after`. A current EdDSA key is required; a key listed twice is refused.
    pub fn load(keys: &[KeyConfig]) -> Result<Self, KeyError> {
        let mut entries = Vec::with_capacity(keys.len());
        for key in keys {
            let pem = std::fs::read(&key.file).map_err(|source| KeyError::Read {
                path: key.file.clone(),
                source,
            })?;
            entries.push(SigningKeyEntry::from_pem(
                &pem,
                key.alg,
                key.not_after,
                &display_path(&key.file),
            )?);
        }
        Self::from_entries(entries)
    }

    /// The same as [`KeyRing::load`], from PEM bytes in memory.
    pub fn from_pems(entries: &[PemEntry]) -> Result<Self, KeyError> {
        let mut parsed = Vec::with_capacity(entries.len());
        for (index, (pem, alg, not_after)) in entries.iter().enumerate() {
            parsed.push(SigningKeyEntry::from_pem(
                pem,
                *alg,
                *not_after,
                &format!("key entry {}", index + 1),
            )?);
        }
        Self::from_entries(parsed)
    }

    fn from_entries(entries: Vec<SigningKeyEntry>) -> Result<Self, KeyError> {
        let mut seen = HashSet::new();
        for entry in &entries {
            if !seen.insert(entry.kid.as_str()) {
                return Err(KeyError::DuplicateKey(entry.kid.clone()));
            }
        }
        let ring = KeyRing { entries };
        if ring.current(SigningAlg::EdDSA).is_none() {
            return Err(KeyError::NoCurrentKey(SigningAlg::EdDSA));
        }
        Ok(ring)
    }

    /// Every key of the ring, in configuration order.
    pub fn entries(&self) -> &[SigningKeyEntry] {
        &self.entries
    }

    fn current(&self, alg: SigningAlg) -> Option<&SigningKeyEntry> {
        self.entries
            .iter()
            .find(|e| e.alg == alg && e.not_after.is_none())
    }

    /// The `kid` of the current signer for `alg`, if any.
    pub fn current_kid(&self, alg: SigningAlg) -> Option<&str> {
        self.current(alg).map(|e| e.kid.as_str())
    }

    /// Signs an ID token (`typ` = `JWT`) with the current key of `alg`.
    pub fn sign<T: Serialize>(&self, claims: &T, alg: SigningAlg) -> Result<String, KeyError> {
        self.sign_typed(claims, alg, TokenType::Id)
    }

    /// Signs `claims` with the current key of `alg` and the header `typ` of `kind`
    /// (`logout+jwt` for back-channel logout tokens, `at+jwt` for access tokens, RFC 9068).
    pub fn sign_typed<T: Serialize>(
        &self,
        claims: &T,
        alg: SigningAlg,
        kind: TokenType,
    ) -> Result<String, KeyError> {
        let key = self.current(alg).ok_or(KeyError::NoCurrentKey(alg))?;
        let mut header = Header::new(alg.algorithm());
        header.typ = Some(kind.typ().to_owned());
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding)
            .map_err(|e| KeyError::Sign(e.to_string()))
    }

    /// Verifies a token of `kind` signed by a key of the ring and returns its claims.
    ///
    /// The header `typ` must be the one of `kind` (so a token of one kind is never taken
    /// for another: RFC 8725 §3.11). The header's `kid` must name a key of the ring that
    /// is live at `now`, and its `alg` must be that key's algorithm. `exp` is required and
    /// must be after `now` (no leeway); `nbf`, when present, must not be after `now`;
    /// `iss` must equal `issuer`; with `audience`, `aud` must be it or an array containing it.
    pub fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        kind: TokenType,
        now: DateTime<Utc>,
        issuer: &str,
        audience: Option<&str>,
    ) -> Result<T, KeyError> {
        self.verify_with(token, kind, now, issuer, audience, Expiry::Enforced)
    }

    /// Like [`verify`](Self::verify) but accepting an expired token: for an
    /// `id_token_hint` (RP-Initiated Logout §2 allows expired ones). The key must still
    /// be live at `now`, and `typ`, signature, algorithm and issuer are checked as usual.
    pub fn verify_ignoring_expiry<T: DeserializeOwned>(
        &self,
        token: &str,
        kind: TokenType,
        now: DateTime<Utc>,
        issuer: &str,
    ) -> Result<T, KeyError> {
        self.verify_with(token, kind, now, issuer, None, Expiry::Ignored)
    }

    fn verify_with<T: DeserializeOwned>(
        &self,
        token: &str,
        kind: TokenType,
        now: DateTime<Utc>,
        issuer: &str,
        audience: Option<&str>,
        expiry: Expiry,
    ) -> Result<T, KeyError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| KeyError::Invalid(format!("header: {e}")))?;
        if header.crit.is_some() {
            return Err(KeyError::Invalid("unsupported crit header".to_owned()));
        }
        let kid = header.kid.as_deref().ok_or(KeyError::UnknownKid)?;
        let key = self
            .entries
            .iter()
            .find(|e| e.kid == kid && e.is_live(now))
            .ok_or(KeyError::UnknownKid)?;
        if header.alg != key.alg.algorithm() {
            return Err(KeyError::Invalid(
                "the header alg is not the key's algorithm".to_owned(),
            ));
        }
        if !header.typ.as_deref().is_some_and(|t| kind.matches(t)) {
            return Err(KeyError::Invalid(format!(
                "typ {:?} is not {}",
                header.typ,
                kind.typ()
            )));
        }
        // Signature only: the claims are checked below against `now`, never the system clock.
        let mut validation = Validation::new(key.alg.algorithm());
        validation.required_spec_claims = HashSet::new();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<Value>(token, &key.decoding, &validation)
            .map_err(|e| KeyError::Invalid(e.to_string()))?;
        let claims = data.claims;
        check_claims(&claims, now, issuer, audience, expiry)?;
        serde_json::from_value(claims).map_err(|e| KeyError::Invalid(format!("claims: {e}")))
    }

    /// The public keys to publish at `now`: every current key and every previous key
    /// whose `not_after` is after `now`, each with `kid`, `alg` and `use` = `sig`.
    pub fn jwks(&self, now: DateTime<Utc>) -> JwkSet {
        JwkSet {
            keys: self
                .entries
                .iter()
                .filter(|e| e.is_live(now))
                .map(|e| e.jwk.clone())
                .collect(),
        }
    }
}

fn display_path(path: &Path) -> String {
    path.display().to_string()
}

/// Whether [`check_claims`] enforces `exp` (`nbf` always is).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expiry {
    Enforced,
    Ignored,
}

fn check_claims(
    claims: &Value,
    now: DateTime<Utc>,
    issuer: &str,
    audience: Option<&str>,
    expiry: Expiry,
) -> Result<(), KeyError> {
    if !claims.is_object() {
        return Err(KeyError::Invalid("the claims are not an object".to_owned()));
    }
    let now = now.timestamp();
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(|| KeyError::Invalid("missing or non-integer exp".to_owned()))?;
    if expiry == Expiry::Enforced && now >= exp {
        return Err(KeyError::Expired);
    }
    if let Some(nbf) = claims.get("nbf") {
        let nbf = nbf
            .as_i64()
            .ok_or_else(|| KeyError::Invalid("non-integer nbf".to_owned()))?;
        if now < nbf {
            return Err(KeyError::Invalid("the token is not valid yet".to_owned()));
        }
    }
    if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
        return Err(KeyError::Invalid("wrong issuer".to_owned()));
    }
    if let Some(audience) = audience {
        let ok = match claims.get("aud") {
            Some(Value::String(aud)) => aud == audience,
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(audience)),
            _ => false,
        };
        if !ok {
            return Err(KeyError::Invalid("wrong audience".to_owned()));
        }
    }
    Ok(())
}

/// The RFC 7638 JWK thumbprint (SHA-256, base64url without padding) of a public key:
/// the required members in lexicographic order, no whitespace
/// (OKP: `crv`, `kty`, `x`; EC: `crv`, `kty`, `x`, `y`).
pub fn jwk_thumbprint(jwk: &Jwk) -> Result<String, KeyError> {
    let text = |v: &str| Value::String(v.to_owned()).to_string();
    let curve = |c: &jsonwebtoken::jwk::EllipticCurve| {
        serde_json::to_string(c).map_err(|e| KeyError::BadKey {
            what: "jwk".to_owned(),
            reason: e.to_string(),
        })
    };
    let members = match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(p) => format!(
            r#"{{"crv":{},"kty":"OKP","x":{}}}"#,
            curve(&p.curve)?,
            text(&p.x)
        ),
        AlgorithmParameters::EllipticCurve(p) => format!(
            r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#,
            curve(&p.curve)?,
            text(&p.x),
            text(&p.y)
        ),
        _ => {
            return Err(KeyError::BadKey {
                what: "jwk".to_owned(),
                reason: "only OKP and EC keys have a thumbprint here".to_owned(),
            });
        }
    };
    Ok(URL_SAFE_NO_PAD.encode(openssl::sha::sha256(members.as_bytes())))
}

/// A new private key for `alg` as a PKCS#8 PEM (`PRIVATE KEY`), for
/// `polis-gateway keys generate` and `keys rotate`.
pub fn generate_pem(alg: SigningAlg) -> Result<Vec<u8>, KeyError> {
    let generate = || -> Result<PKey<Private>, openssl::error::ErrorStack> {
        match alg {
            SigningAlg::EdDSA => PKey::generate_ed25519(),
            SigningAlg::ES256 => {
                let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
                PKey::from_ec_key(EcKey::generate(&group)?)
            }
        }
    };
    generate()
        .and_then(|key| key.private_key_to_pem_pkcs8())
        .map_err(|e| KeyError::Generate(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use jsonwebtoken::jwk::{EllipticCurve, OctetKeyPairParameters, OctetKeyPairType};
    use serde_json::json;

    const ISS: &str = "https://gateway.example";

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
    }

    fn claims(exp: DateTime<Utc>) -> Value {
        json!({
            "iss": ISS,
            "sub": "RSSMRA80A01H501U",
            "aud": "client-1",
            "iat": now().timestamp(),
            "exp": exp.timestamp(),
        })
    }

    type PemRef<'a> = (&'a [u8], SigningAlg, Option<DateTime<Utc>>);

    fn ring(entries: &[PemRef<'_>]) -> KeyRing {
        let entries: Vec<PemEntry> = entries
            .iter()
            .map(|(pem, alg, na)| (pem.to_vec(), *alg, *na))
            .collect();
        KeyRing::from_pems(&entries).unwrap()
    }

    fn both() -> (Vec<u8>, Vec<u8>, KeyRing) {
        let ed = generate_pem(SigningAlg::EdDSA).unwrap();
        let ec = generate_pem(SigningAlg::ES256).unwrap();
        let r = ring(&[
            (&ed, SigningAlg::EdDSA, None),
            (&ec, SigningAlg::ES256, None),
        ]);
        (ed, ec, r)
    }

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[test]
    fn generated_pems_are_pkcs8() {
        for alg in [SigningAlg::EdDSA, SigningAlg::ES256] {
            let pem = String::from_utf8(generate_pem(alg).unwrap()).unwrap();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
        }
    }

    #[test]
    fn load_from_files_both_algs() {
        let dir = tempfile::tempdir().unwrap();
        let ed_path = dir.path().join("ed.pem");
        let ec_path = dir.path().join("ec.pem");
        std::fs::write(&ed_path, generate_pem(SigningAlg::EdDSA).unwrap()).unwrap();
        std::fs::write(&ec_path, generate_pem(SigningAlg::ES256).unwrap()).unwrap();
        let cfg = [
            KeyConfig {
                file: ed_path,
                alg: SigningAlg::EdDSA,
                not_after: None,
            },
            KeyConfig {
                file: ec_path,
                alg: SigningAlg::ES256,
                not_after: None,
            },
        ];
        let r = KeyRing::load(&cfg).unwrap();
        assert_eq!(r.entries().len(), 2);
        let ed = r.current_kid(SigningAlg::EdDSA).unwrap();
        let ec = r.current_kid(SigningAlg::ES256).unwrap();
        assert_eq!(ed.len(), 43);
        assert_eq!(ec.len(), 43);
        assert_ne!(ed, ec);
        // Stable across loads (restarts, replicas).
        assert_eq!(
            KeyRing::load(&cfg).unwrap().current_kid(SigningAlg::EdDSA),
            Some(ed)
        );

        let missing = [KeyConfig {
            file: dir.path().join("missing.pem"),
            alg: SigningAlg::EdDSA,
            not_after: None,
        }];
        let err = KeyRing::load(&missing).unwrap_err();
        assert_eq!(err.code(), "POLIS_OIDC_KEY_READ");
    }

    #[test]
    fn key_config_deserializes_and_refuses_unknown_fields() {
        let cfg: KeyConfig = serde_json::from_value(json!({
            "file": "/etc/polis/oidc-ed.pem",
            "alg": "EdDSA",
            "not_after": "2026-04-01T00:00:00Z",
        }))
        .unwrap();
        assert_eq!(cfg.alg, SigningAlg::EdDSA);
        assert_eq!(
            cfg.not_after,
            Some(Utc.with_ymd_and_hms(2026, 4, 1, 0, 0, 0).unwrap())
        );
        let cfg: KeyConfig =
            serde_json::from_value(json!({"file": "k.pem", "alg": "ES256"})).unwrap();
        assert_eq!(cfg.alg, SigningAlg::ES256);
        assert_eq!(cfg.not_after, None);
        assert!(
            serde_json::from_value::<KeyConfig>(
                json!({"file": "k.pem", "alg": "EdDSA", "kid": "x"})
            )
            .is_err()
        );
        assert!(
            serde_json::from_value::<KeyConfig>(json!({"file": "k.pem", "alg": "RS256"})).is_err()
        );
    }

    #[test]
    fn sec1_ec_private_key_is_accepted() {
        let ec =
            EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap();
        let sec1 = ec.private_key_to_pem().unwrap();
        assert!(String::from_utf8_lossy(&sec1).starts_with("-----BEGIN EC PRIVATE KEY-----"));
        let pkcs8 = PKey::from_ec_key(ec)
            .unwrap()
            .private_key_to_pem_pkcs8()
            .unwrap();
        let ed = generate_pem(SigningAlg::EdDSA).unwrap();
        let a = ring(&[
            (&ed, SigningAlg::EdDSA, None),
            (&sec1, SigningAlg::ES256, None),
        ]);
        let b = ring(&[
            (&ed, SigningAlg::EdDSA, None),
            (&pkcs8, SigningAlg::ES256, None),
        ]);
        assert_eq!(
            a.current_kid(SigningAlg::ES256),
            b.current_kid(SigningAlg::ES256)
        );
        let token = a
            .sign(&claims(now() + Duration::minutes(5)), SigningAlg::ES256)
            .unwrap();
        let _: Value = b
            .verify(&token, TokenType::Id, now(), ISS, Some("client-1"))
            .unwrap();
    }

    #[test]
    fn wrong_key_type_for_alg_is_refused() {
        let ed = generate_pem(SigningAlg::EdDSA).unwrap();
        let ec = generate_pem(SigningAlg::ES256).unwrap();
        let err = KeyRing::from_pems(&[(ec.clone(), SigningAlg::EdDSA, None)]).unwrap_err();
        assert_eq!(err.code(), "POLIS_OIDC_KEY_BAD_KEY");
        let err = KeyRing::from_pems(&[
            (ed.clone(), SigningAlg::EdDSA, None),
            (ed, SigningAlg::ES256, None),
        ])
        .unwrap_err();
        assert_eq!(err.code(), "POLIS_OIDC_KEY_BAD_KEY");
        let err =
            KeyRing::from_pems(&[(b"not a pem".to_vec(), SigningAlg::EdDSA, None)]).unwrap_err();
        assert_eq!(err.code(), "POLIS_OIDC_KEY_BAD_KEY");
    }

    #[test]
    fn round_trip_both_algs_with_kid_in_header() {
        let (_, _, r) = both();
        for (alg, jwt_alg) in [
            (SigningAlg::EdDSA, Algorithm::EdDSA),
            (SigningAlg::ES256, Algorithm::ES256),
        ] {
            let token = r.sign(&claims(now() + Duration::minutes(5)), alg).unwrap();
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(header.alg, jwt_alg);
            assert_eq!(header.typ.as_deref(), Some("JWT"));
            assert_eq!(header.kid.as_deref(), r.current_kid(alg));
            let got: Value = r
                .verify(&token, TokenType::Id, now(), ISS, Some("client-1"))
                .unwrap();
            assert_eq!(got["sub"], "RSSMRA80A01H501U");
            // Without an audience to check.
            let _: Value = r.verify(&token, TokenType::Id, now(), ISS, None).unwrap();
        }
    }

    #[test]
    fn sign_typed_sets_typ() {
        let (_, _, r) = both();
        let token = r
            .sign_typed(
                &claims(now() + Duration::minutes(2)),
                SigningAlg::EdDSA,
                TokenType::Logout,
            )
            .unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("logout+jwt"));
        let _: Value = r
            .verify(&token, TokenType::Logout, now(), ISS, Some("client-1"))
            .unwrap();
        // A token of one kind is never taken for another.
        for other in [TokenType::Id, TokenType::Access] {
            let err = r
                .verify::<Value>(&token, other, now(), ISS, Some("client-1"))
                .unwrap_err();
            assert!(matches!(err, KeyError::Invalid(_)), "{err:?}");
            assert!(
                r.verify_ignoring_expiry::<Value>(&token, other, now(), ISS)
                    .is_err()
            );
        }
    }

    #[test]
    fn typ_is_compared_ignoring_case_and_the_application_prefix() {
        assert!(TokenType::Access.matches("at+jwt"));
        assert!(TokenType::Access.matches("AT+JWT"));
        assert!(TokenType::Access.matches("application/at+jwt"));
        assert!(TokenType::Id.matches("JWT"));
        assert!(TokenType::Id.matches("jwt"));
        for (kind, typ) in [
            (TokenType::Access, "JWT"),
            (TokenType::Access, "at+jwt "),
            (TokenType::Access, "application/"),
            (TokenType::Id, "at+jwt"),
            (TokenType::Id, "logout+jwt"),
            (TokenType::Id, ""),
            (TokenType::Logout, "secevent+jwt"),
        ] {
            assert!(!kind.matches(typ), "{kind:?} {typ:?}");
        }
    }

    #[test]
    fn audience_in_an_array() {
        let (_, _, r) = both();
        let mut c = claims(now() + Duration::minutes(5));
        c["aud"] = json!(["client-0", "client-1"]);
        let token = r.sign(&c, SigningAlg::EdDSA).unwrap();
        let _: Value = r
            .verify(&token, TokenType::Id, now(), ISS, Some("client-1"))
            .unwrap();
        let err = r
            .verify::<Value>(&token, TokenType::Id, now(), ISS, Some("client-2"))
            .unwrap_err();
        assert!(matches!(err, KeyError::Invalid(_)), "{err:?}");
    }

    #[test]
    fn refuses_wrong_issuer_and_audience() {
        let (_, _, r) = both();
        let token = r
            .sign(&claims(now() + Duration::minutes(5)), SigningAlg::EdDSA)
            .unwrap();
        let err = r
            .verify::<Value>(
                &token,
                TokenType::Id,
                now(),
                "https://other.example",
                Some("client-1"),
            )
            .unwrap_err();
        assert!(matches!(err, KeyError::Invalid(_)), "{err:?}");
        let err = r
            .verify::<Value>(&token, TokenType::Id, now(), ISS, Some("client-2"))
            .unwrap_err();
        assert!(matches!(err, KeyError::Invalid(_)), "{err:?}");
        assert_eq!(err.code(), "POLIS_OIDC_KEY_INVALID_TOKEN");
    }

    #[test]
    fn refuses_expired_with_no_leeway() {
        let (_, _, r) = both();
        let exp = now() + Duration::minutes(5);
        let token = r.sign(&claims(exp), SigningAlg::ES256).unwrap();
        let _: Value = r
            .verify(&token, TokenType::Id, exp - Duration::seconds(1), ISS, None)
            .unwrap();
        let err = r
            .verify::<Value>(&token, TokenType::Id, exp, ISS, None)
            .unwrap_err();
        assert!(matches!(err, KeyError::Expired), "{err:?}");
        let err = r
            .verify::<Value>(&token, TokenType::Id, exp + Duration::seconds(1), ISS, None)
            .unwrap_err();
        assert_eq!(err.code(), "POLIS_OIDC_KEY_EXPIRED");
        // A token far in the past by the system clock still verifies at its own `now`.
        let old = Utc.with_ymd_and_hms(2001, 1, 1, 0, 0, 0).unwrap();
        let token = r
            .sign(&claims(old + Duration::minutes(5)), SigningAlg::EdDSA)
            .unwrap();
        let _: Value = r.verify(&token, TokenType::Id, old, ISS, None).unwrap();
    }

    #[test]
    fn an_expired_hint_verifies_but_only_with_a_live_key_and_the_issuer() {
        let a = generate_pem(SigningAlg::EdDSA).unwrap();
        let b = generate_pem(SigningAlg::EdDSA).unwrap();
        let exp = now() + Duration::minutes(5);
        let token = ring(&[(&a, SigningAlg::EdDSA, None)])
            .sign(&claims(exp), SigningAlg::EdDSA)
            .unwrap();
        let not_after = now() + Duration::hours(1);
        let rotated = ring(&[
            (&b, SigningAlg::EdDSA, None),
            (&a, SigningAlg::EdDSA, Some(not_after)),
        ]);
        let later = exp + Duration::minutes(10);
        assert!(matches!(
            rotated.verify::<Value>(&token, TokenType::Id, later, ISS, None),
            Err(KeyError::Expired)
        ));
        let _: Value = rotated
            .verify_ignoring_expiry(&token, TokenType::Id, later, ISS)
            .unwrap();
        assert!(
            rotated
                .verify_ignoring_expiry::<Value>(
                    &token,
                    TokenType::Id,
                    later,
                    "https://other.example"
                )
                .is_err()
        );
        // Past the old key's not_after the hint is refused like any token.
        let err = rotated
            .verify_ignoring_expiry::<Value>(&token, TokenType::Id, not_after, ISS)
            .unwrap_err();
        assert!(matches!(err, KeyError::UnknownKid), "{err:?}");
    }

    #[test]
    fn refuses_missing_exp_and_future_nbf() {
        let (_, _, r) = both();
        let mut c = claims(now());
        c.as_object_mut().unwrap().remove("exp");
        let token = r.sign(&c, SigningAlg::EdDSA).unwrap();
        let err = r
            .verify::<Value>(&token, TokenType::Id, now(), ISS, None)
            .unwrap_err();
        assert!(matches!(err, KeyError::Invalid(_)), "{err:?}");

        let mut c = claims(now() + Duration::minutes(5));
        c["nbf"] = json!((now() + Duration::minutes(1)).timestamp());
        let token = r.sign(&c, SigningAlg::EdDSA).unwrap();
        let err = r
            .verify::<Value>(&token, TokenType::Id, now(), ISS, None)
            .unwrap_err();
        assert!(matches!(err, KeyError::Invalid(_)), "{err:?}");
        let _: Value = r
            .verify(
                &token,
                TokenType::Id,
                now() + Duration::minutes(1),
                ISS,
                None,
            )
            .unwrap();
    }

    #[test]
    fn refuses_key_not_in_ring() {
        let (_, _, r) = both();
        let (_, _, other) = both();
        for alg in [SigningAlg::EdDSA, SigningAlg::ES256] {
            let token = other
                .sign(&claims(now() + Duration::minutes(5)), alg)
                .unwrap();
            let err = r
                .verify::<Value>(&token, TokenType::Id, now(), ISS, None)
                .unwrap_err();
            assert!(matches!(err, KeyError::UnknownKid), "{err:?}");
        }
    }

    #[test]
    fn refuses_forged_kid_with_another_key() {
        // A foreign key signing under our kid: the signature check fails.
        let (_, _, r) = both();
        let (_, _, other) = both();
        let kid = r.current_kid(SigningAlg::EdDSA).unwrap();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_owned());
        let foreign = other.current(SigningAlg::EdDSA).unwrap();
        let token = jsonwebtoken::encode(
            &header,
            &claims(now() + Duration::minutes(5)),
            foreign.encoding_key(),
        )
        .unwrap();
        let err = r
            .verify::<Value>(&token, TokenType::Id, now(), ISS, None)
            .unwrap_err();
        assert!(matches!(err, KeyError::Invalid(_)), "{err:?}");
    }

    #[test]
    fn refuses_swapped_header_alg() {
        let (_, _, r) = both();
        let ed_kid = r.current_kid(SigningAlg::EdDSA).unwrap();
        let es_key = r.current(SigningAlg::ES256).unwrap();
        // Header says ES256 with the EdDSA kid, signed by the ring's own ES256 key.
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(ed_kid.to_owned());
        let token = jsonwebtoken::encode(
            &header,
            &claims(now() + Duration::minutes(5)),
            es_key.encoding_key(),
        )
        .unwrap();
        let err = r
            .verify::<Value>(&token, TokenType::Id, now(), ISS, None)
            .unwrap_err();
        assert!(matches!(err, KeyError::Invalid(_)), "{err:?}");

        // Hand-crafted: a real EdDSA token whose header is rewritten to ES256 (and "none").
        let token = r
            .sign(&claims(now() + Duration::minutes(5)), SigningAlg::EdDSA)
            .unwrap();
        let mut parts = token.split('.');
        let (_, payload, sig) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        for alg in ["ES256", "HS256", "none"] {
            let forged_header = b64(&json!({"alg": alg, "kid": ed_kid, "typ": "JWT"}));
            let forged = format!("{forged_header}.{payload}.{sig}");
            let err = r
                .verify::<Value>(&forged, TokenType::Id, now(), ISS, None)
                .unwrap_err();
            assert!(matches!(err, KeyError::Invalid(_)), "{alg}: {err:?}");
        }
    }

    #[test]
    fn refuses_missing_kid_and_crit() {
        let (_, _, r) = both();
        let token = r
            .sign(&claims(now() + Duration::minutes(5)), SigningAlg::EdDSA)
            .unwrap();
        let mut parts = token.split('.');
        let (_, payload, sig) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let no_kid = format!("{}.{payload}.{sig}", b64(&json!({"alg": "EdDSA"})));
        let err = r
            .verify::<Value>(&no_kid, TokenType::Id, now(), ISS, None)
            .unwrap_err();
        assert!(matches!(err, KeyError::UnknownKid), "{err:?}");
        let kid = r.current_kid(SigningAlg::EdDSA).unwrap();
        let crit = b64(&json!({"alg": "EdDSA", "kid": kid, "crit": ["exp"], "exp": 1}));
        let err = r
            .verify::<Value>(
                &format!("{crit}.{payload}.{sig}"),
                TokenType::Id,
                now(),
                ISS,
                None,
            )
            .unwrap_err();
        assert!(matches!(err, KeyError::Invalid(_)), "{err:?}");
        let err = r
            .verify::<Value>("garbage", TokenType::Id, now(), ISS, None)
            .unwrap_err();
        assert!(matches!(err, KeyError::Invalid(_)), "{err:?}");
    }

    #[test]
    fn rotation_previous_key_until_not_after() {
        let a = generate_pem(SigningAlg::EdDSA).unwrap();
        let b = generate_pem(SigningAlg::EdDSA).unwrap();
        let ring_a = ring(&[(&a, SigningAlg::EdDSA, None)]);
        let kid_a = ring_a.current_kid(SigningAlg::EdDSA).unwrap().to_owned();
        let exp = now() + Duration::minutes(10);
        let old_token = ring_a.sign(&claims(exp), SigningAlg::EdDSA).unwrap();

        let not_after = now() + Duration::hours(1);
        let ring_b = ring(&[
            (&b, SigningAlg::EdDSA, None),
            (&a, SigningAlg::EdDSA, Some(not_after)),
        ]);
        let kid_b = ring_b.current_kid(SigningAlg::EdDSA).unwrap().to_owned();
        assert_ne!(kid_a, kid_b);
        assert_eq!(ring_b.current_kid(SigningAlg::ES256), None);

        // The old token still verifies; new tokens are signed by B.
        let _: Value = ring_b
            .verify(&old_token, TokenType::Id, now(), ISS, None)
            .unwrap();
        let new_token = ring_b.sign(&claims(exp), SigningAlg::EdDSA).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&new_token)
                .unwrap()
                .kid
                .as_deref(),
            Some(kid_b.as_str())
        );

        // JWKS: both during rotation, only B after not_after.
        let kids = |at| -> Vec<String> {
            ring_b
                .jwks(at)
                .keys
                .iter()
                .map(|k| k.common.key_id.clone().unwrap())
                .collect()
        };
        assert_eq!(kids(now()), vec![kid_b.clone(), kid_a.clone()]);
        assert_eq!(kids(not_after), vec![kid_b.clone()]);
        assert_eq!(kids(not_after + Duration::days(1)), vec![kid_b]);

        // A token by A presented after not_after is refused even if its exp is later.
        let late_token = ring_a
            .sign(&claims(not_after + Duration::hours(1)), SigningAlg::EdDSA)
            .unwrap();
        let _: Value = ring_b
            .verify(&late_token, TokenType::Id, now(), ISS, None)
            .unwrap();
        let err = ring_b
            .verify::<Value>(&late_token, TokenType::Id, not_after, ISS, None)
            .unwrap_err();
        assert!(matches!(err, KeyError::UnknownKid), "{err:?}");
        assert_eq!(err.code(), "POLIS_OIDC_KEY_UNKNOWN_KID");
    }

    #[test]
    fn jwks_members() {
        let (_, _, r) = both();
        let set = serde_json::to_value(r.jwks(now())).unwrap();
        let keys = set["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2);
        let ed = &keys[0];
        assert_eq!(ed["kty"], "OKP");
        assert_eq!(ed["crv"], "Ed25519");
        assert_eq!(ed["alg"], "EdDSA");
        assert_eq!(ed["use"], "sig");
        assert_eq!(ed["kid"], r.current_kid(SigningAlg::EdDSA).unwrap());
        assert!(ed.get("d").is_none());
        let ec = &keys[1];
        assert_eq!(ec["kty"], "EC");
        assert_eq!(ec["crv"], "P-256");
        assert_eq!(ec["alg"], "ES256");
        assert_eq!(ec["use"], "sig");
        assert_eq!(ec["kid"], r.current_kid(SigningAlg::ES256).unwrap());
        assert!(ec.get("d").is_none());
        // The published JWK verifies what the ring signs.
        let token = r
            .sign(&claims(now() + Duration::minutes(5)), SigningAlg::ES256)
            .unwrap();
        let jwk: Jwk = serde_json::from_value(ec.clone()).unwrap();
        let mut v = Validation::new(Algorithm::ES256);
        v.validate_exp = false;
        v.validate_aud = false;
        jsonwebtoken::decode::<Value>(&token, &DecodingKey::from_jwk(&jwk).unwrap(), &v).unwrap();
        // kid = the thumbprint of the published key.
        assert_eq!(jwk_thumbprint(&jwk).unwrap(), ec["kid"].as_str().unwrap());
    }

    #[test]
    fn thumbprint_rfc8037_vector() {
        let jwk = Jwk {
            common: CommonParameters::default(),
            algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".to_owned(),
            }),
        };
        assert_eq!(
            jwk_thumbprint(&jwk).unwrap(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn thumbprint_matches_jsonwebtoken_for_ec() {
        let (_, _, r) = both();
        let ec = r.current(SigningAlg::ES256).unwrap();
        assert_eq!(
            ec.jwk()
                .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
                .unwrap(),
            ec.kid()
        );
    }

    #[test]
    fn no_current_eddsa_key_refused() {
        let ed = generate_pem(SigningAlg::EdDSA).unwrap();
        let ec = generate_pem(SigningAlg::ES256).unwrap();
        let err = KeyRing::from_pems(&[(ec, SigningAlg::ES256, None)]).unwrap_err();
        assert!(
            matches!(err, KeyError::NoCurrentKey(SigningAlg::EdDSA)),
            "{err:?}"
        );
        assert_eq!(err.code(), "POLIS_OIDC_KEY_NO_CURRENT_KEY");
        // Only a previous EdDSA key is not enough.
        let err = KeyRing::from_pems(&[(ed, SigningAlg::EdDSA, Some(now()))]).unwrap_err();
        assert!(
            matches!(err, KeyError::NoCurrentKey(SigningAlg::EdDSA)),
            "{err:?}"
        );
        assert!(KeyRing::from_pems(&[]).is_err());
    }

    #[test]
    fn no_current_es256_key_cannot_sign() {
        let ed = generate_pem(SigningAlg::EdDSA).unwrap();
        let r = ring(&[(&ed, SigningAlg::EdDSA, None)]);
        let err = r
            .sign(&claims(now() + Duration::minutes(5)), SigningAlg::ES256)
            .unwrap_err();
        assert!(
            matches!(err, KeyError::NoCurrentKey(SigningAlg::ES256)),
            "{err:?}"
        );
    }

    #[test]
    fn duplicate_key_refused() {
        let ed = generate_pem(SigningAlg::EdDSA).unwrap();
        let err = KeyRing::from_pems(&[
            (ed.clone(), SigningAlg::EdDSA, None),
            (ed, SigningAlg::EdDSA, Some(now())),
        ])
        .unwrap_err();
        assert!(matches!(err, KeyError::DuplicateKey(_)), "{err:?}");
        assert_eq!(err.code(), "POLIS_OIDC_KEY_DUPLICATE");
    }

    #[test]
    fn prepublished_next_key_verifies_but_does_not_sign() {
        let a = generate_pem(SigningAlg::EdDSA).unwrap();
        let next = generate_pem(SigningAlg::EdDSA).unwrap();
        let r = ring(&[
            (&a, SigningAlg::EdDSA, None),
            (&next, SigningAlg::EdDSA, None),
        ]);
        let ring_next = ring(&[(&next, SigningAlg::EdDSA, None)]);
        assert_eq!(
            r.current_kid(SigningAlg::EdDSA),
            r.entries()[0].kid().into()
        );
        assert_eq!(r.jwks(now()).keys.len(), 2);
        let token = ring_next
            .sign(&claims(now() + Duration::minutes(5)), SigningAlg::EdDSA)
            .unwrap();
        let _: Value = r.verify(&token, TokenType::Id, now(), ISS, None).unwrap();
    }

    #[test]
    fn alg_names() {
        assert_eq!(SigningAlg::EdDSA.as_str(), "EdDSA");
        assert_eq!(SigningAlg::ES256.to_string(), "ES256");
        assert_eq!(Algorithm::from(SigningAlg::ES256), Algorithm::ES256);
        assert_eq!(serde_json::to_value(SigningAlg::EdDSA).unwrap(), "EdDSA");
    }
}
