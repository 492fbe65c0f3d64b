//! Message identifiers: `_` followed by 128 random bits in hex (an NCName, as
//! xs:ID requires; SPID rule A2). samael's default ID carries only 32 bits.

use rand::RngCore;

/// A fresh `_`-prefixed identifier with 128 bits of randomness.
pub fn new_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    format!("_{}", hex::encode(bytes))
}

/// A fresh opaque token of `[A-Za-z0-9_-]` (base64url, no padding) carrying `bytes` random bytes.
/// Used for RelayState (≤ 80 bytes, never intelligible, SPID rule A20) and session ids.
pub fn new_token(bytes: usize) -> String {
    use base64::Engine;
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_ncnames_with_128_bits() {
        let a = new_id();
        let b = new_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 33);
        assert!(a.starts_with('_'));
        assert!(a[1..].bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn tokens_are_url_safe() {
        let t = new_token(16);
        assert_eq!(t.len(), 22);
        assert!(
            t.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }
}
