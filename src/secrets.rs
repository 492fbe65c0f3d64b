//! Hashing of low-entropy secrets: the CP a person chooses, the recovery answer and the
//! OpenID Connect client secrets. argon2id PHC strings (m = 19456 KiB, t = 2, p = 1, the
//! OWASP baseline, random 16-byte salt); verification reads the parameters from the PHC
//! string and refuses any other algorithm. CPU- and memory-heavy: callers run it on the
//! bounded argon2 pool ([`crate::blocking::BlockingPool`]), never on an async worker.

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

#[cfg(test)]
mod tests {
    use super::*;

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
