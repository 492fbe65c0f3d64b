//! Hashing of secrets.
//!
//! - What people choose (the CP, the recovery answer): argon2id PHC strings (m = 19456 KiB,
//!   t = 2, p = 1, the OWASP baseline, random 16-byte salt); verification reads the
//!   parameters from the PHC string and refuses any other algorithm. CPU- and
//!   memory-heavy: callers run it on the bounded argon2 pool
//!   ([`crate::blocking::BlockingPool`]), never on an async worker.
//! - OpenID Connect client secrets are machine secrets of 256 random bits (`polis-gateway
//!   oidc client-secret`): nothing to guess, so no memory-hard hash. They are stored as
//!   `hmac-sha256:<hex>`, an HMAC-SHA-256 under a server key (`oidc.client_secret_key_file`),
//!   and compared in constant time: microseconds instead of argon2's tens of
//!   milliseconds on every token request. A leaked config is useless without the key.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Hashing failed (the argon2 library's message).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("secret hashing failed: {0}")]
pub struct SecretError(pub String);

/// Bytes of random salt per argon2id hash.
const SALT_LEN: usize = 16;

/// argon2id memory cost in KiB (OWASP: 19 MiB).
const ARGON2_M_COST: u32 = 19_456;
/// argon2id iterations.
const ARGON2_T_COST: u32 = 2;
/// argon2id parallelism.
const ARGON2_P_COST: u32 = 1;

fn argon2id() -> Result<Argon2<'static>, SecretError> {
    let params = Params::new(ARGON2_M_COST, ARGON2_T_COST, ARGON2_P_COST, None)
        .map_err(|e| SecretError(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// The argon2id PHC string of `secret` (m = 19456 KiB, t = 2, p = 1, random salt).
pub fn hash_secret(secret: &str) -> Result<String, SecretError> {
    let salt_bytes: [u8; SALT_LEN] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| SecretError(e.to_string()))?;
    let hash = argon2id()?
        .hash_password(secret.as_bytes(), &salt)
        .map_err(|e| SecretError(e.to_string()))?;
    Ok(hash.to_string())
}

/// Whether `secret` matches the argon2id PHC string `phc` (parameters read from it).
/// `false` for a malformed PHC string or another algorithm.
pub fn verify_secret(secret: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    if parsed.algorithm != argon2::ARGON2ID_IDENT {
        return false;
    }
    Argon2::default()
        .verify_password(secret.as_bytes(), &parsed)
        .is_ok()
}

/// How a client-secret MAC starts in config.
pub const CLIENT_SECRET_MAC_PREFIX: &str = "hmac-sha256:";

fn hmac_sha256(key: &[u8], data: &[u8]) -> Result<Vec<u8>, SecretError> {
    let e = |e: openssl::error::ErrorStack| SecretError(e.to_string());
    let pkey = openssl::pkey::PKey::hmac(key).map_err(e)?;
    let mut signer =
        openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &pkey).map_err(e)?;
    signer.update(data).map_err(e)?;
    signer.sign_to_vec().map_err(e)
}

/// `hmac-sha256:<hex>` of a client secret under the server key.
pub fn client_secret_mac(key: &[u8], secret: &str) -> Result<String, SecretError> {
    Ok(format!(
        "{CLIENT_SECRET_MAC_PREFIX}{}",
        hex::encode(hmac_sha256(key, secret.as_bytes())?)
    ))
}

/// The 32 MAC bytes of a stored `hmac-sha256:<64 hex>`; `None` if malformed.
pub fn parse_client_secret_mac(stored: &str) -> Option<Vec<u8>> {
    let digits = stored.strip_prefix(CLIENT_SECRET_MAC_PREFIX)?;
    let bytes = hex::decode(digits).ok()?;
    (bytes.len() == 32).then_some(bytes)
}

/// Whether `secret`'s MAC under `key` is `mac` (constant-time comparison).
pub fn verify_client_secret_mac(key: &[u8], secret: &str, mac: &[u8]) -> bool {
    match hmac_sha256(key, secret.as_bytes()) {
        Ok(computed) => computed.len() == mac.len() && openssl::memcmp::eq(&computed, mac),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_secret_macs_verify_under_their_key_only() {
        let key = b"a server key of at least thirty-two bytes!";
        let stored = client_secret_mac(key, "s3cret-of-256-bits").unwrap();
        assert!(
            stored.starts_with("hmac-sha256:") && stored.len() == 12 + 64,
            "{stored}"
        );
        let mac = parse_client_secret_mac(&stored).unwrap();
        assert!(verify_client_secret_mac(key, "s3cret-of-256-bits", &mac));
        assert!(!verify_client_secret_mac(key, "s3cret-of-256-bitz", &mac));
        assert!(!verify_client_secret_mac(
            b"another key, also long enough....",
            "s3cret-of-256-bits",
            &mac
        ));
        assert!(!verify_client_secret_mac(
            key,
            "s3cret-of-256-bits",
            &mac[..31]
        ));
        for bad in [
            "",
            "hmac-sha256:",
            "hmac-sha256:zz",
            "sha256:00",
            &stored[..stored.len() - 2],
        ] {
            assert_eq!(parse_client_secret_mac(bad), None, "{bad}");
        }
    }

    #[test]
    fn hash_verify_round_trip() {
        let phc = hash_secret("Tigre!Blu42").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_secret("Tigre!Blu42", &phc));
        assert!(!verify_secret("Tigre!Blu43", &phc));
        assert!(!verify_secret("tigre!blu42", &phc));
        // Salted: two hashes differ, both verify.
        let again = hash_secret("Tigre!Blu42").unwrap();
        assert_ne!(phc, again);
        assert!(verify_secret("Tigre!Blu42", &again));
    }

    #[test]
    fn malformed_phc_is_false() {
        for phc in [
            "",
            "not a hash",
            "$argon2id$v=19$m=19456,t=2,p=1$",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$!!!",
            "$2b$12$abcdefghijklmnopqrstuv",
        ] {
            assert!(!verify_secret("Tigre!Blu42", phc), "{phc:?}");
        }
        // Another argon2 variant with a valid shape is refused too.
        let phc = hash_secret("Tigre!Blu42").unwrap();
        let argon2i = phc.replacen("$argon2id$", "$argon2i$", 1);
        assert!(!verify_secret("Tigre!Blu42", &argon2i));
    }
}
