//! The Codice Personale (CP): the temporary CP sent by e-mail, the rules for the CP the
//! person chooses, the hashing of CPs and of the recovery answer, and the CP history.
//!
//! ## Temporary CP: HMAC-SHA256
//!
//! The temporary CP is [`TEMP_CP_LEN`] characters drawn uniformly (CSPRNG, no modulo
//! bias) from [`TEMP_CP_ALPHABET`], which leaves out the look-alikes `I`, `L`, `O`, `0`
//! and `1`: about 59 bits of entropy. It is short-lived and high-entropy, so a slow
//! password hash buys nothing: a keyed MAC ([`CpKey::mac`]) is enough and cheap, and a
//! database leak without the key (kept in a file, [`CpKey::from_file`]) reveals nothing.
//! What people type is normalized first ([`normalize_temp_cp`]: trimmed, uppercased,
//! spaces and `-` dropped), so `abcd-efgh 2345` matches `ABCDEFGH2345`. Comparison is
//! constant-time ([`CpKey::verify`]).
//!
//! ## Chosen CP and recovery answer: argon2id
//!
//! A CP chosen by a person, and the answer to the recovery question, are low-entropy
//! secrets: they are stored as argon2id PHC strings ([`crate::secrets::hash_secret`]: m = 19456 KiB,
//! t = 2, p = 1, the OWASP baseline, random 16-byte salt), so a leaked hash is expensive
//! to brute-force. The chosen CP is case-sensitive and hashed as typed. The recovery
//! answer is normalized first ([`normalize_answer`]) so that the person can type it a bit
//! differently next time.
//!
//! ## Rules for the chosen CP ([`check_new_cp`], shown as [`CP_RULES_IT`])
//!
//! - from [`MIN_CP_LEN`] to [`MAX_CP_LEN`] characters;
//! - at least one letter and at least one digit;
//! - no whitespace or control characters;
//! - typed the same way twice;
//! - not the temporary CP (compared as a temporary CP is: normalized);
//! - not containing the username, the given name or the family name (each only if it
//!   has at least 3 letters or digits) or the codice fiscale: case-insensitive, accents
//!   and punctuation ignored (`D'Amico` is found in `damico2024`);
//! - not one of the earlier CPs (the service passes the current hash and the
//!   [`HISTORY_LEN`] kept by [`push_history`]).

use std::fmt;
use std::path::Path;

use openssl::sha::{Sha256, sha256};
use rand::seq::IndexedRandom;

use crate::accounts::fold_char;
use crate::secrets::{SecretError, hash_secret, verify_secret};

/// The characters of a temporary CP: uppercase letters and digits without the look-alikes
/// `I`, `L`, `O`, `0`, `1`.
pub const TEMP_CP_ALPHABET: &str = "ABCDEFGHJKMNPQRSTUVWXYZ23456789";

/// Length of a temporary CP.
pub const TEMP_CP_LEN: usize = 12;

/// Shortest chosen CP.
pub const MIN_CP_LEN: usize = 8;

/// Longest chosen CP.
pub const MAX_CP_LEN: usize = 64;

/// How many earlier CP hashes [`push_history`] keeps.
pub const HISTORY_LEN: usize = 5;

/// Smallest accepted HMAC key, in bytes.
const MIN_KEY_LEN: usize = 32;

/// Shortest name (letters and digits, after folding) that the personal-data rule looks for.
const MIN_PERSONAL_LEN: usize = 3;

/// Errors of the CP key and of hashing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CpError {
    /// The HMAC key is shorter than 32 bytes.
    #[error("the CP key must be at least 32 bytes")]
    WeakKey,
    /// The key file could not be read (path and I/O message).
    #[error("cannot read the CP key file {0}")]
    KeyFile(String),
    /// Hashing failed.
    #[error("CP hashing failed: {0}")]
    Hash(String),
    /// The recovery answer is empty once normalized.
    #[error("the recovery answer is empty")]
    EmptyAnswer,
}

impl CpError {
    /// The stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::WeakKey => "POLIS_CP_KEY_WEAK",
            Self::KeyFile(_) => "POLIS_CP_KEY_FILE",
            Self::Hash(_) => "POLIS_CP_HASH",
            Self::EmptyAnswer => "POLIS_RECOVERY_EMPTY",
        }
    }
}

impl From<SecretError> for CpError {
    fn from(e: SecretError) -> Self {
        Self::Hash(e.to_string())
    }
}

/// A new temporary CP: [`TEMP_CP_LEN`] characters drawn uniformly from
/// [`TEMP_CP_ALPHABET`] with the thread-local CSPRNG.
pub fn generate_temp_cp() -> String {
    let alphabet = TEMP_CP_ALPHABET.as_bytes();
    let mut rng = rand::rng();
    (0..TEMP_CP_LEN)
        .filter_map(|_| alphabet.choose(&mut rng))
        .map(|byte| char::from(*byte))
        .collect()
}

/// A temporary CP as people type it, made comparable: trimmed, uppercased, spaces and
/// `-` dropped.
pub fn normalize_temp_cp(input: &str) -> String {
    input
        .trim()
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_uppercase)
        .collect()
}

/// The HMAC-SHA256 key for temporary CPs. `Debug` never prints it.
///
/// HMAC (RFC 2104) over `openssl::sha::Sha256`, whose API cannot fail, so
/// [`mac`](Self::mac) returns a plain `String`; the tests check it against OpenSSL's own
/// HMAC and the RFC 4231 vectors.
#[derive(Clone)]
pub struct CpKey {
    /// The key block XOR `0x36`.
    inner_pad: [u8; HMAC_BLOCK],
    /// The key block XOR `0x5c`.
    outer_pad: [u8; HMAC_BLOCK],
}

/// SHA-256 block size.
const HMAC_BLOCK: usize = 64;

impl fmt::Debug for CpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CpKey").field("key", &"<redacted>").finish()
    }
}

impl CpKey {
    /// A key from raw bytes: at least 32 of them, else [`CpError::WeakKey`].
    pub fn from_bytes(secret: &[u8]) -> Result<Self, CpError> {
        if secret.len() < MIN_KEY_LEN {
            return Err(CpError::WeakKey);
        }
        Ok(Self::hmac_key(secret))
    }

    /// The HMAC key schedule, any length (keys longer than a block are hashed first).
    fn hmac_key(secret: &[u8]) -> Self {
        let mut block = [0u8; HMAC_BLOCK];
        let hashed;
        let key = if secret.len() > HMAC_BLOCK {
            hashed = sha256(secret);
            hashed.as_slice()
        } else {
            secret
        };
        for (slot, byte) in block.iter_mut().zip(key) {
            *slot = *byte;
        }
        Self {
            inner_pad: block.map(|b| b ^ 0x36),
            outer_pad: block.map(|b| b ^ 0x5c),
        }
    }

    /// A key from a file: its content with surrounding whitespace trimmed, at least 32
    /// bytes. Unreadable file: [`CpError::KeyFile`] with the path and the I/O message.
    pub fn from_file(path: &Path) -> Result<Self, CpError> {
        let content = std::fs::read(path)
            .map_err(|e| CpError::KeyFile(format!("{}: {e}", path.display())))?;
        Self::from_bytes(content.trim_ascii())
    }

    /// HMAC-SHA256 of raw bytes.
    fn mac_raw(&self, message: &[u8]) -> [u8; 32] {
        let mut inner = Sha256::new();
        inner.update(&self.inner_pad);
        inner.update(message);
        let inner = inner.finish();
        let mut outer = Sha256::new();
        outer.update(&self.outer_pad);
        outer.update(&inner);
        outer.finish()
    }

    /// Lowercase hex HMAC-SHA256 of [`normalize_temp_cp`]`(temp_cp)`: what is stored.
    pub fn mac(&self, temp_cp: &str) -> String {
        hex::encode(self.mac_raw(normalize_temp_cp(temp_cp).as_bytes()))
    }

    /// Whether `temp_cp` (as typed) matches the stored `mac_hex` (hex, any case),
    /// compared in constant time. `false` for malformed hex or a length mismatch.
    pub fn verify(&self, temp_cp: &str, mac_hex: &str) -> bool {
        let Ok(expected) = hex::decode(mac_hex) else {
            return false;
        };
        let actual = self.mac_raw(normalize_temp_cp(temp_cp).as_bytes());
        expected.len() == actual.len() && openssl::memcmp::eq(&expected, &actual)
    }
}

/// A rule of [`check_new_cp`] that a new CP breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CpRule {
    /// Fewer than [`MIN_CP_LEN`] characters.
    TooShort,
    /// More than [`MAX_CP_LEN`] characters.
    TooLong,
    /// No letter.
    NeedsLetter,
    /// No digit.
    NeedsDigit,
    /// Whitespace or a control character.
    ForbiddenCharacter,
    /// The repeated CP differs.
    Mismatch,
    /// Equal to the temporary CP.
    SameAsTemporary,
    /// Contains the username, the given or family name (≥ 3 characters) or the codice
    /// fiscale.
    ContainsPersonalData,
    /// Equal to one of the earlier CPs.
    Reused,
}

impl CpRule {
    /// Every rule, in the order [`check_new_cp`] reports them.
    pub const ALL: [CpRule; 9] = [
        Self::TooShort,
        Self::TooLong,
        Self::NeedsLetter,
        Self::NeedsDigit,
        Self::ForbiddenCharacter,
        Self::Mismatch,
        Self::SameAsTemporary,
        Self::ContainsPersonalData,
        Self::Reused,
    ];

    /// The Italian message shown next to the field.
    pub fn message_it(&self) -> &'static str {
        match self {
            Self::TooShort => "Il Codice Personale deve avere almeno 8 caratteri.",
            Self::TooLong => "Il Codice Personale può avere al massimo 64 caratteri.",
            Self::NeedsLetter => "Il Codice Personale deve contenere almeno una lettera.",
            Self::NeedsDigit => "Il Codice Personale deve contenere almeno una cifra.",
            Self::ForbiddenCharacter => {
                "Il Codice Personale non può contenere spazi o caratteri di controllo."
            }
            Self::Mismatch => "I due Codici Personali inseriti non coincidono.",
            Self::SameAsTemporary => {
                "Il nuovo Codice Personale deve essere diverso da quello temporaneo."
            }
            Self::ContainsPersonalData => {
                "Il Codice Personale non può contenere il nome utente, il nome, il cognome \
                 o il codice fiscale."
            }
            Self::Reused => {
                "Il Codice Personale deve essere diverso da quelli usati in precedenza."
            }
        }
    }
}

/// The rules for a new CP as written on the pages (one bullet each).
pub const CP_RULES_IT: &[&str] = &[
    "Deve avere da 8 a 64 caratteri.",
    "Deve contenere almeno una lettera e almeno una cifra.",
    "Non può contenere spazi.",
    "Le lettere maiuscole e minuscole sono considerate diverse.",
    "Deve essere diverso dal Codice Personale temporaneo ricevuto per e-mail.",
    "Non può contenere il nome utente, il nome, il cognome o il codice fiscale.",
    "Deve essere diverso dagli ultimi Codici Personali usati.",
];

/// What [`check_new_cp`] compares a new CP with.
#[derive(Clone, Copy)]
pub struct CpContext<'a> {
    /// The temporary CP being replaced, as the person typed it, if any.
    pub temp_cp: Option<&'a str>,
    /// The POLIS username.
    pub username: &'a str,
    /// Nome.
    pub given_name: &'a str,
    /// Cognome.
    pub family_name: &'a str,
    /// Codice fiscale.
    pub fiscal_code: &'a str,
    /// argon2id PHC strings of the earlier CPs (the current one and the history).
    pub previous_hashes: &'a [String],
}

/// Lowercase, accents folded, only letters and digits kept.
fn fold_alphanumeric(text: &str) -> String {
    let mut folded = String::with_capacity(text.len());
    for c in text.chars().flat_map(char::to_lowercase) {
        match fold_char(c) {
            Some(ascii) => folded.push_str(ascii),
            None if c.is_alphanumeric() => folded.push(c),
            None => {}
        }
    }
    folded
}

fn contains_personal_data(new_cp: &str, ctx: &CpContext<'_>) -> bool {
    let cp = fold_alphanumeric(new_cp);
    [
        ctx.username,
        ctx.given_name,
        ctx.family_name,
        ctx.fiscal_code,
    ]
    .into_iter()
    .map(fold_alphanumeric)
    .any(|part| part.chars().count() >= MIN_PERSONAL_LEN && cp.contains(&part))
}

/// Checks a new CP (and its repetition) against every rule; `Err` lists all the broken
/// rules in [`CpRule::ALL`] order. Costs one argon2id verification per earlier hash.
pub fn check_new_cp(new_cp: &str, repeat: &str, ctx: &CpContext<'_>) -> Result<(), Vec<CpRule>> {
    let mut broken = Vec::new();
    let len = new_cp.chars().count();
    if len < MIN_CP_LEN {
        broken.push(CpRule::TooShort);
    }
    if len > MAX_CP_LEN {
        broken.push(CpRule::TooLong);
    }
    if !new_cp.chars().any(char::is_alphabetic) {
        broken.push(CpRule::NeedsLetter);
    }
    if !new_cp.chars().any(|c| c.is_ascii_digit()) {
        broken.push(CpRule::NeedsDigit);
    }
    if new_cp.chars().any(|c| c.is_whitespace() || c.is_control()) {
        broken.push(CpRule::ForbiddenCharacter);
    }
    if new_cp != repeat {
        broken.push(CpRule::Mismatch);
    }
    if let Some(temp_cp) = ctx.temp_cp {
        let normalized = normalize_temp_cp(new_cp);
        if !normalized.is_empty() && normalized == normalize_temp_cp(temp_cp) {
            broken.push(CpRule::SameAsTemporary);
        }
    }
    if contains_personal_data(new_cp, ctx) {
        broken.push(CpRule::ContainsPersonalData);
    }
    if !new_cp.is_empty()
        && ctx
            .previous_hashes
            .iter()
            .any(|phc| verify_secret(new_cp, phc))
    {
        broken.push(CpRule::Reused);
    }
    if broken.is_empty() {
        Ok(())
    } else {
        Err(broken)
    }
}

/// A recovery answer made comparable: lowercased, accents folded (`ì` → `i`),
/// punctuation and symbols (apostrophes, dots, hyphens, …) **removed** without leaving a
/// space, and whitespace trimmed and collapsed to single spaces.
/// `"  D'Amico-Rossì "` → `"damicorossi"`, `"Via  Roma, 1"` → `"via roma 1"`.
pub fn normalize_answer(answer: &str) -> String {
    let mut kept = String::with_capacity(answer.len());
    for c in answer.chars().flat_map(char::to_lowercase) {
        match fold_char(c) {
            Some(ascii) => kept.push_str(ascii),
            None if c.is_alphanumeric() => kept.push(c),
            None if c.is_whitespace() => kept.push(' '),
            None => {}
        }
    }
    kept.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The argon2id PHC string of [`normalize_answer`]`(answer)`;
/// [`CpError::EmptyAnswer`] if nothing is left after normalizing.
pub fn hash_answer(answer: &str) -> Result<String, CpError> {
    let normalized = normalize_answer(answer);
    if normalized.is_empty() {
        return Err(CpError::EmptyAnswer);
    }
    Ok(hash_secret(&normalized)?)
}

/// Whether `answer` (as typed) matches the stored hash of the recovery answer.
pub fn verify_answer(answer: &str, phc: &str) -> bool {
    let normalized = normalize_answer(answer);
    !normalized.is_empty() && verify_secret(&normalized, phc)
}

/// Puts the hash of the CP being replaced first in `history` and keeps the
/// [`HISTORY_LEN`] newest.
pub fn push_history(history: &mut Vec<String>, old_hash: String) {
    history.insert(0, old_hash);
    history.truncate(HISTORY_LEN);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::io::Write;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn temp_cps_use_the_alphabet_and_are_distinct() {
        let mut seen = HashSet::new();
        for _ in 0..200 {
            let cp = generate_temp_cp();
            assert_eq!(cp.chars().count(), TEMP_CP_LEN);
            assert!(cp.chars().all(|c| TEMP_CP_ALPHABET.contains(c)), "{cp}");
            assert!(seen.insert(cp));
        }
        for excluded in ['I', 'L', 'O', '0', '1'] {
            assert!(!TEMP_CP_ALPHABET.contains(excluded));
        }
        assert_eq!(TEMP_CP_ALPHABET.len(), 31);
    }

    #[test]
    fn temp_cps_cover_the_alphabet() {
        let all: String = (0..100).map(|_| generate_temp_cp()).collect();
        for c in TEMP_CP_ALPHABET.chars() {
            assert!(all.contains(c), "{c} never drawn in 1200 characters");
        }
    }

    #[test]
    fn normalize_temp_cp_table() {
        for (input, expected) in [
            ("ABCD2345EFGH", "ABCD2345EFGH"),
            ("  abcd-2345-efgh\n", "ABCD2345EFGH"),
            ("abcd 2345 efgh", "ABCD2345EFGH"),
            ("Ab-Cd\t23", "ABCD23"),
            ("", ""),
        ] {
            assert_eq!(normalize_temp_cp(input), expected, "{input:?}");
        }
    }

    #[test]
    fn mac_verify_round_trip() {
        let key = CpKey::from_bytes(KEY).unwrap();
        let cp = generate_temp_cp();
        let mac = key.mac(&cp);
        assert_eq!(mac.len(), 64);
        assert!(
            mac.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert!(key.verify(&cp, &mac));
        assert!(key.verify(&format!(" {} ", cp.to_lowercase()), &mac));
        assert!(key.verify(&cp, &mac.to_uppercase()));
        // Deterministic.
        assert_eq!(key.mac(&cp), mac);
    }

    #[test]
    fn mac_refuses_wrong_cp_other_key_tampered_and_short() {
        let key = CpKey::from_bytes(KEY).unwrap();
        let mac = key.mac("ABCD2345EFGH");
        assert!(!key.verify("ABCD2345EFGJ", &mac));
        let other = CpKey::from_bytes(b"fedcba9876543210fedcba9876543210").unwrap();
        assert!(!other.verify("ABCD2345EFGH", &mac));
        // Tampered: one hex digit changed.
        let mut tampered: Vec<char> = mac.chars().collect();
        tampered[10] = if tampered[10] == '0' { '1' } else { '0' };
        let tampered: String = tampered.into_iter().collect();
        assert!(!key.verify("ABCD2345EFGH", &tampered));
        // Not hex.
        let not_hex = format!("zz{}", &mac[2..]);
        assert!(!key.verify("ABCD2345EFGH", &not_hex));
        // Length mismatch.
        assert!(!key.verify("ABCD2345EFGH", &mac[..62]));
        assert!(!key.verify("ABCD2345EFGH", &format!("{mac}00")));
        assert!(!key.verify("ABCD2345EFGH", ""));
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2: a short key (below our minimum, so through the key schedule).
        let key = CpKey::hmac_key(b"Jefe");
        assert_eq!(
            hex::encode(key.mac_raw(b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block is hashed first.
        let key = CpKey::hmac_key(&[0xaa; 131]);
        assert_eq!(
            hex::encode(key.mac_raw(b"Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn hmac_matches_openssl() {
        use openssl::hash::MessageDigest;
        use openssl::pkey::PKey;
        use openssl::sign::Signer;

        for key_len in [32, 63, 64, 65, 100] {
            let secret: Vec<u8> = (0..key_len).map(|i| (i * 7 + 3) as u8).collect();
            let key = CpKey::from_bytes(&secret).unwrap();
            let pkey = PKey::hmac(&secret).unwrap();
            for _ in 0..5 {
                let cp = generate_temp_cp();
                let mut signer = Signer::new(MessageDigest::sha256(), &pkey).unwrap();
                signer.update(cp.as_bytes()).unwrap();
                assert_eq!(key.mac(&cp), hex::encode(signer.sign_to_vec().unwrap()));
            }
        }
    }

    #[test]
    fn short_keys_are_refused() {
        assert_eq!(CpKey::from_bytes(&KEY[..31]).unwrap_err(), CpError::WeakKey);
        assert_eq!(CpKey::from_bytes(b"").unwrap_err(), CpError::WeakKey);
        assert!(CpKey::from_bytes(KEY).is_ok());
    }

    #[test]
    fn key_from_file_is_trimmed() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"  0123456789abcdef0123456789abcdef\n")
            .unwrap();
        file.flush().unwrap();
        let from_file = CpKey::from_file(file.path()).unwrap();
        let from_bytes = CpKey::from_bytes(KEY).unwrap();
        assert_eq!(
            from_file.mac("ABCD2345EFGH"),
            from_bytes.mac("ABCD2345EFGH")
        );

        let mut short = tempfile::NamedTempFile::new().unwrap();
        short.write_all(b"too short          \n").unwrap();
        short.flush().unwrap();
        assert_eq!(
            CpKey::from_file(short.path()).unwrap_err(),
            CpError::WeakKey
        );

        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.key");
        let err = CpKey::from_file(&missing).unwrap_err();
        assert_eq!(err.code(), "POLIS_CP_KEY_FILE");
        let CpError::KeyFile(message) = err else {
            panic!("not KeyFile");
        };
        assert!(message.contains("missing.key"), "{message}");
    }

    #[test]
    fn debug_redacts_the_key() {
        let key = CpKey::from_bytes(KEY).unwrap();
        let debug = format!("{key:?}");
        assert!(debug.contains("<redacted>"));
        assert!(!debug.contains("0123456789abcdef"));
    }

    fn ctx<'a>(previous: &'a [String]) -> CpContext<'a> {
        CpContext {
            temp_cp: Some("ABCD2345EFGH"),
            username: "mario.rossi",
            given_name: "Mario",
            family_name: "Rossi",
            fiscal_code: "RSSMRA80A01H501U",
            previous_hashes: previous,
        }
    }

    fn check(new_cp: &str) -> Result<(), Vec<CpRule>> {
        check_new_cp(new_cp, new_cp, &ctx(&[]))
    }

    #[test]
    fn a_valid_cp_is_accepted() {
        assert_eq!(check("Tigre!Blu42"), Ok(()));
        assert_eq!(check("àèìòù12345"), Ok(()));
        let no_temp = CpContext {
            temp_cp: None,
            ..ctx(&[])
        };
        assert_eq!(
            check_new_cp("ABCD2345EFGH", "ABCD2345EFGH", &no_temp),
            Ok(())
        );
    }

    #[test]
    fn each_rule_alone() {
        let too_long = format!("a1{}", "x".repeat(63));
        let cases: Vec<(&str, &str, CpRule)> = vec![
            ("Ab1!xyz", "Ab1!xyz", CpRule::TooShort),
            (&too_long, &too_long, CpRule::TooLong),
            ("12345678!", "12345678!", CpRule::NeedsLetter),
            ("Tigre!Blu", "Tigre!Blu", CpRule::NeedsDigit),
            ("Tigre Blu42", "Tigre Blu42", CpRule::ForbiddenCharacter),
            ("Tigre\tBlu42", "Tigre\tBlu42", CpRule::ForbiddenCharacter),
            (
                "Tigre\u{7}Blu42",
                "Tigre\u{7}Blu42",
                CpRule::ForbiddenCharacter,
            ),
            ("Tigre!Blu42", "Tigre!Blu43", CpRule::Mismatch),
            ("abcd-2345-efgh", "abcd-2345-efgh", CpRule::SameAsTemporary),
            ("ABCD2345EFGH", "ABCD2345EFGH", CpRule::SameAsTemporary),
            ("Rossi2024!", "Rossi2024!", CpRule::ContainsPersonalData),
            ("xMARIO99x", "xMARIO99x", CpRule::ContainsPersonalData),
            ("Mario.Rossi1", "Mario.Rossi1", CpRule::ContainsPersonalData),
            (
                "rssmra80a01h501u",
                "rssmra80a01h501u",
                CpRule::ContainsPersonalData,
            ),
        ];
        for (new_cp, repeat, rule) in cases {
            assert_eq!(
                check_new_cp(new_cp, repeat, &ctx(&[])),
                Err(vec![rule]),
                "{new_cp:?}"
            );
        }
        assert_eq!(check(&"a1".repeat(32)), Ok(()), "64 characters is fine");
    }

    #[test]
    fn personal_data_short_names_and_accents() {
        let short = CpContext {
            given_name: "Li",
            family_name: "D'Amìco",
            username: "li.damico",
            ..ctx(&[])
        };
        // "li" has fewer than 3 characters: not looked for.
        assert_eq!(
            check_new_cp("Tigre!Blu42li", "Tigre!Blu42li", &short),
            Ok(())
        );
        assert_eq!(
            check_new_cp("damico2024!", "damico2024!", &short),
            Err(vec![CpRule::ContainsPersonalData])
        );
        assert_eq!(
            check_new_cp("DAMÌCO2024!", "DAMÌCO2024!", &short),
            Err(vec![CpRule::ContainsPersonalData])
        );
    }

    #[test]
    fn reused_is_detected_against_history() {
        let history = vec![
            hash_secret("Vecchio!Cp1").unwrap(),
            hash_secret("Tigre!Blu42").unwrap(),
        ];
        assert_eq!(
            check_new_cp("Tigre!Blu42", "Tigre!Blu42", &ctx(&history)),
            Err(vec![CpRule::Reused])
        );
        assert_eq!(
            check_new_cp("Tigre!Blu43", "Tigre!Blu43", &ctx(&history)),
            Ok(())
        );
        // Case-sensitive: a different case is a different CP.
        assert_eq!(
            check_new_cp("tigre!blu42", "tigre!blu42", &ctx(&history)),
            Ok(())
        );
    }

    #[test]
    fn all_broken_rules_in_stable_order() {
        assert_eq!(
            check_new_cp("", "x", &ctx(&[])),
            Err(vec![
                CpRule::TooShort,
                CpRule::NeedsLetter,
                CpRule::NeedsDigit,
                CpRule::Mismatch,
            ])
        );
        assert_eq!(
            check_new_cp("ros si", "ros si", &ctx(&[])),
            Err(vec![
                CpRule::TooShort,
                CpRule::NeedsDigit,
                CpRule::ForbiddenCharacter,
                CpRule::ContainsPersonalData,
            ])
        );
    }

    #[test]
    fn messages_are_italian_and_distinct() {
        let messages: HashSet<&str> = CpRule::ALL.iter().map(CpRule::message_it).collect();
        assert_eq!(messages.len(), CpRule::ALL.len());
        assert_eq!(
            CpRule::TooShort.message_it(),
            "Il Codice Personale deve avere almeno 8 caratteri."
        );
        assert!(
            CpRule::TooShort
                .message_it()
                .contains(&MIN_CP_LEN.to_string())
        );
        assert!(
            CpRule::TooLong
                .message_it()
                .contains(&MAX_CP_LEN.to_string())
        );
        assert!(CP_RULES_IT.iter().any(|r| r.contains("da 8 a 64")));
        assert!(CP_RULES_IT.iter().all(|r| r.ends_with('.')));
    }

    #[test]
    fn answer_normalization_table() {
        for (input, expected) in [
            ("  D'Amico-Rossì ", "damicorossi"),
            ("Niccolò", "niccolo"),
            ("NICCOLO", "niccolo"),
            ("Via  Roma,\t1", "via roma 1"),
            ("  fido  ", "fido"),
            ("Sant’Angelo", "santangelo"),
            ("A.B.C.", "abc"),
            ("Straße", "strasse"),
            ("e\u{301}", "e"),
            ("  .-' ", ""),
        ] {
            assert_eq!(normalize_answer(input), expected, "{input:?}");
        }
    }

    #[test]
    fn answers_verify_when_typed_differently() {
        let phc = hash_answer("D'Amico-Rossì").unwrap();
        // A space where the hyphen was is a different answer.
        assert!(!verify_answer("  damico rossi", &phc));
        assert!(verify_answer("  DAMICO-ROSSI ", &phc));
        assert!(verify_answer("d'amicorossi", &phc));
        assert!(!verify_answer("bianchi", &phc));
        assert!(!verify_answer("", &phc));
        assert_eq!(hash_answer(" .' ").unwrap_err(), CpError::EmptyAnswer);
    }

    #[test]
    fn history_keeps_five_newest_first() {
        let mut history = Vec::new();
        for n in 1..=7 {
            push_history(&mut history, format!("h{n}"));
        }
        assert_eq!(history, vec!["h7", "h6", "h5", "h4", "h3"]);
        assert_eq!(history.len(), HISTORY_LEN);
    }

    #[test]
    fn error_codes() {
        assert_eq!(CpError::WeakKey.code(), "POLIS_CP_KEY_WEAK");
        assert_eq!(CpError::KeyFile(String::new()).code(), "POLIS_CP_KEY_FILE");
        assert_eq!(CpError::Hash(String::new()).code(), "POLIS_CP_HASH");
        assert_eq!(CpError::EmptyAnswer.code(), "POLIS_RECOVERY_EMPTY");
    }
}
