//! The Italian *codice fiscale* of a natural person (DM 23/12/1976), validated.
//!
//! Layout of the 16 characters (1-based positions):
//!
//! | positions | meaning | characters |
//! |---|---|---|
//! | 1–3 | surname | letters |
//! | 4–6 | given name | letters |
//! | 7–8 | year of birth (two digits) | digits\* |
//! | 9 | month of birth | one of `ABCDEHLMPRST` (January … December) |
//! | 10–11 | day of birth, +40 for women | digits\* (01–31 or 41–71) |
//! | 12 | place code: letter | letter (`Z` for foreign states) |
//! | 13–15 | place code: number | digits\* |
//! | 16 | check character | letter |
//!
//! \* **Omocodia**: when two people would get the same code, the Agenzia delle Entrate
//! replaces digits with letters (`0`–`9` → `LMNPQRSTUV`), starting from the right. Any of
//! the seven digit positions (7, 8, 10, 11, 13, 14, 15) may therefore hold one of those
//! letters; the date and place rules apply after the letters are turned back into digits.
//! The check character is computed over the code as written (letters included).
//!
//! Validation trims the input and uppercases it; errors name the field that is wrong
//! with an Italian message for the form ([`FiscalCodeError::message_it`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Length of a codice fiscale of a natural person.
pub const FISCAL_CODE_LEN: usize = 16;

/// The month letters, January (`A`) to December (`T`).
const MONTH_LETTERS: &[u8; 12] = b"ABCDEHLMPRST";
/// The letters that replace the digits 0–9 in an omocodic code.
const OMOCODIA_LETTERS: &[u8; 10] = b"LMNPQRSTUV";
/// 0-based positions of the digits that omocodia may replace with letters.
const DIGIT_POSITIONS: [usize; 7] = [6, 7, 9, 10, 12, 13, 14];
/// Values of `0`–`9` and then `A`–`Z` in the odd (1st, 3rd, …) positions.
const ODD_VALUES: [u32; 26] = [
    1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23,
];

/// A valid codice fiscale: 16 uppercase ASCII characters, format and check character
/// verified. Construct it with [`FromStr`] or [`TryFrom<&str>`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FiscalCode(String);

/// The birth data encoded in a codice fiscale, after de-omocodia.
///
/// Only a hint: the century is not encoded, and the code may have been assigned with a
/// different date by mistake. Used for consistency checks against SPID attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BirthDateHint {
    /// Last two digits of the year of birth (0–99).
    pub year_two_digits: u8,
    /// Month of birth (1–12).
    pub month: u8,
    /// Day of birth (1–31), with the +40 of women already removed.
    pub day: u8,
    /// Whether the day carried the +40 that marks a woman.
    pub female: bool,
}

/// Why a string is not a valid codice fiscale. Each variant names one field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FiscalCodeError {
    /// Nothing but whitespace.
    #[error("empty fiscal code")]
    Empty,
    /// Not 16 characters after trimming (the number found).
    #[error("fiscal code has {0} characters, expected 16")]
    Length(usize),
    /// A character that is not an ASCII letter or digit (1-based position).
    #[error("invalid character at position {0}")]
    InvalidCharacter(usize),
    /// Positions 1–6 (surname and name) must be letters (1-based position).
    #[error("surname/name part must be letters (position {0})")]
    NameLetters(usize),
    /// Positions 7–8 must be digits or omocodia letters.
    #[error("invalid year of birth")]
    Year,
    /// Position 9 is not one of `ABCDEHLMPRST`.
    #[error("invalid month of birth")]
    Month,
    /// Positions 10–11 are not a day 1–31 or 41–71 that exists in the month.
    #[error("invalid day of birth")]
    Day,
    /// Positions 12–15 are not a letter followed by three digits (or omocodia letters).
    #[error("invalid place-of-birth code")]
    PlaceCode,
    /// Position 16 is not the check character computed over positions 1–15.
    #[error("wrong check character")]
    CheckCharacter,
}

impl FiscalCodeError {
    /// The message shown next to the form field, in Italian.
    pub fn message_it(&self) -> &'static str {
        match self {
            Self::Empty => "Il codice fiscale è obbligatorio",
            Self::Length(_) => "Il codice fiscale deve essere di 16 caratteri",
            Self::InvalidCharacter(_) => "Il codice fiscale può contenere solo lettere e cifre",
            Self::NameLetters(_) => {
                "I primi sei caratteri del codice fiscale (cognome e nome) devono essere lettere"
            }
            Self::Year => "Anno di nascita non valido",
            Self::Month => "Mese di nascita non valido",
            Self::Day => "Giorno di nascita non valido",
            Self::PlaceCode => "Codice del comune o dello stato estero di nascita non valido",
            Self::CheckCharacter => "Carattere di controllo errato",
        }
    }

    /// A stable code for logs and tests.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Empty => "CF_EMPTY",
            Self::Length(_) => "CF_LENGTH",
            Self::InvalidCharacter(_) => "CF_CHARACTER",
            Self::NameLetters(_) => "CF_NAME",
            Self::Year => "CF_YEAR",
            Self::Month => "CF_MONTH",
            Self::Day => "CF_DAY",
            Self::PlaceCode => "CF_PLACE",
            Self::CheckCharacter => "CF_CHECK",
        }
    }
}

impl FiscalCode {
    /// Validates `input` (trimmed, uppercased) as a codice fiscale.
    pub fn parse(input: &str) -> Result<Self, FiscalCodeError> {
        let code = input.trim().to_ascii_uppercase();
        validate(code.as_bytes())?;
        Ok(Self(code))
    }

    /// The code: 16 uppercase ASCII characters.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The date of birth and sex encoded in the code (see [`BirthDateHint`]).
    pub fn birth_date_hint(&self) -> BirthDateHint {
        // The code was validated at construction, so every field decodes; the fallback
        // values are unreachable and only keep this function free of panics.
        let bytes = self.0.as_bytes();
        let year = two_digits(bytes, 6).unwrap_or(0);
        let month = bytes
            .get(8)
            .and_then(|letter| month_number(*letter))
            .unwrap_or(1);
        let raw_day = two_digits(bytes, 9).unwrap_or(1);
        let female = raw_day > 40;
        BirthDateHint {
            year_two_digits: year,
            month,
            day: if female { raw_day - 40 } else { raw_day },
            female,
        }
    }
}

impl FiscalCode {
    /// The cadastral (Belfiore) code of the place of birth encoded in positions 12–15,
    /// after de-omocodia: an Italian municipality (`F205` Milano) or, with `Z`, a
    /// foreign state (`Z404` Stati Uniti).
    pub fn birth_place_code(&self) -> String {
        let bytes = self.0.as_bytes();
        let mut code = String::with_capacity(4);
        // Validated at construction: the letter and three digit positions decode.
        if let Some(letter) = bytes.get(11) {
            code.push(char::from(*letter));
        }
        for i in 12..15 {
            if let Some(d) = bytes.get(i).and_then(|c| digit_value(*c)) {
                code.push(char::from(b'0' + d));
            }
        }
        code
    }

    /// `"F"` or `"M"`, as the code encodes it (+40 on the day of birth for women).
    pub fn sex(&self) -> &'static str {
        if self.birth_date_hint().female {
            "F"
        } else {
            "M"
        }
    }
}

impl FromStr for FiscalCode {
    type Err = FiscalCodeError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Self::parse(input)
    }
}

impl TryFrom<&str> for FiscalCode {
    type Error = FiscalCodeError;

    fn try_from(input: &str) -> Result<Self, Self::Error> {
        Self::parse(input)
    }
}

impl TryFrom<String> for FiscalCode {
    type Error = FiscalCodeError;

    fn try_from(input: String) -> Result<Self, Self::Error> {
        Self::parse(&input)
    }
}

impl From<FiscalCode> for String {
    fn from(code: FiscalCode) -> Self {
        code.0
    }
}

impl AsRef<str> for FiscalCode {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FiscalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for FiscalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FiscalCode({})", self.0)
    }
}

/// Checks an uppercased, trimmed code; field errors come before the check character.
fn validate(code: &[u8]) -> Result<(), FiscalCodeError> {
    if code.is_empty() {
        return Err(FiscalCodeError::Empty);
    }
    // Count characters, not bytes, so "È" counts once in the length message.
    let chars = String::from_utf8_lossy(code).chars().count();
    if chars != FISCAL_CODE_LEN {
        return Err(FiscalCodeError::Length(chars));
    }
    if let Some(position) = code.iter().position(|c| !c.is_ascii_alphanumeric()) {
        return Err(FiscalCodeError::InvalidCharacter(position + 1));
    }
    if let Some(position) = code.iter().take(6).position(|c| !c.is_ascii_uppercase()) {
        return Err(FiscalCodeError::NameLetters(position + 1));
    }
    let year = two_digits(code, 6);
    if year.is_none() {
        return Err(FiscalCodeError::Year);
    }
    let month = code
        .get(8)
        .and_then(|letter| month_number(*letter))
        .ok_or(FiscalCodeError::Month)?;
    let day = two_digits(code, 9).ok_or(FiscalCodeError::Day)?;
    let day = match day {
        1..=31 => day,
        41..=71 => day - 40,
        _ => return Err(FiscalCodeError::Day),
    };
    if day > days_in_month(month) {
        return Err(FiscalCodeError::Day);
    }
    let place_letter = code.get(11).is_some_and(u8::is_ascii_uppercase);
    let place_digits = [12, 13, 14]
        .iter()
        .all(|&i| code.get(i).and_then(|c| digit_value(*c)).is_some());
    if !place_letter || !place_digits {
        return Err(FiscalCodeError::PlaceCode);
    }
    let (body, check) = code.split_at(FISCAL_CODE_LEN - 1);
    match (check_character(body), check.first()) {
        (Some(expected), Some(found)) if expected == *found => Ok(()),
        _ => Err(FiscalCodeError::CheckCharacter),
    }
}

/// The check character of the first 15 characters (uppercase letters and digits).
pub(crate) fn check_character(body: &[u8]) -> Option<u8> {
    let mut sum = 0u32;
    for (i, &c) in body.iter().enumerate() {
        let index = match c {
            b'0'..=b'9' => usize::from(c - b'0'),
            b'A'..=b'Z' => usize::from(c - b'A'),
            _ => return None,
        };
        sum += if i % 2 == 0 {
            // 1st, 3rd, … (1-based odd) positions.
            *ODD_VALUES.get(index)?
        } else {
            u32::try_from(index).ok()?
        };
    }
    let rest = u8::try_from(sum % 26).ok()?;
    Some(b'A' + rest)
}

/// The digit at a digit position, undoing omocodia (`L` → 0 … `V` → 9).
fn digit_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        _ => OMOCODIA_LETTERS
            .iter()
            .position(|&letter| letter == c)
            .and_then(|p| u8::try_from(p).ok()),
    }
}

/// The two-digit number at `start` and `start + 1` (both digit positions).
fn two_digits(code: &[u8], start: usize) -> Option<u8> {
    debug_assert!(DIGIT_POSITIONS.contains(&start));
    let tens = digit_value(*code.get(start)?)?;
    let units = digit_value(*code.get(start + 1)?)?;
    Some(tens * 10 + units)
}

/// 1–12 for a month letter.
fn month_number(letter: u8) -> Option<u8> {
    MONTH_LETTERS
        .iter()
        .position(|&m| m == letter)
        .and_then(|p| u8::try_from(p + 1).ok())
}

/// The longest the month can be; February allows 29 (the century is not encoded).
fn days_in_month(month: u8) -> u8 {
    match month {
        2 => 29,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn birth_place_and_sex_are_decoded_with_omocodia() {
        let code = FiscalCode::parse("BNCGLI85M52F205H").unwrap();
        assert_eq!(code.birth_place_code(), "F205");
        assert_eq!(code.sex(), "F");
        let man = FiscalCode::parse("RSSMRA80A01H501U").unwrap();
        assert_eq!((man.birth_place_code().as_str(), man.sex()), ("H501", "M"));
        // H501 with every place digit replaced (5→R, 0→L, 1→M).
        let body = b"RSSMRA80A01HRLM";
        let check = check_character(body).unwrap();
        let omocodic = format!("{}{}", String::from_utf8_lossy(body), char::from(check));
        let omocodic = FiscalCode::parse(&omocodic).unwrap();
        assert_eq!(omocodic.birth_place_code(), "H501");
    }

    /// Valid codes: real-format ones used across the tests, omocodic variants (check
    /// characters recomputed), women (+40) and lowercase or padded input.
    const VALID: &[&str] = &[
        "RSSMRA80A01H501U",
        "BNCGLI85M52F205H",
        "VRDLCU72T10L219N",
        "ESPSFO90E41A662F",
        "FRRGPP68C15G273Z",
        // Omocodia: the last digit (1 → M), then more digits, right to left.
        "RSSMRA80A01H50MM",
        "RSSMRA80A01H5LMX",
        "RSSMRA80A01HRLMS",
        "RSSMRA80A0MH501M",
        "RSSMRAU0A01H501R",
        "RSSMRAULALMHRLMD",
        "BNCGLI85M52F2LRN",
        // Day limits: 29 February, 31 April is not (see INVALID), 71 = 31 for women.
        "RSSMRA80B29H501Q",
        "RSSMRA80A41H501Y",
        "DMCNCC90A01H501I",
        // Trimmed and uppercased.
        "  rssmra80a01h501u ",
    ];

    #[test]
    fn valid_codes_parse() {
        for input in VALID {
            let code = FiscalCode::parse(input).unwrap_or_else(|e| panic!("{input}: {e:?}"));
            assert_eq!(code.as_str(), input.trim().to_ascii_uppercase());
            assert_eq!(code.to_string(), code.as_str());
        }
    }

    #[test]
    fn invalid_codes_name_the_field() {
        use FiscalCodeError as E;
        let cases: &[(&str, E)] = &[
            ("", E::Empty),
            ("   ", E::Empty),
            ("RSSMRA80A01H501", E::Length(15)),
            ("RSSMRA80A01H501UX", E::Length(17)),
            // 16 characters (17 bytes): the length counts characters.
            ("RSSMRA80A01H50ÈU", E::InvalidCharacter(15)),
            ("RSSMRA80A01H50-U", E::InvalidCharacter(15)),
            ("RSSMR180A01H501V", E::NameLetters(6)),
            ("RSSMRAA0A01H501C", E::Year),
            ("RSSMRA80F01H501G", E::Month),
            ("RSSMRA80A00H501V", E::Day),
            ("RSSMRA80A32H501C", E::Day),
            ("RSSMRA80A72H501G", E::Day),
            ("RSSMRA80B30H501X", E::Day),
            ("RSSMRA80D31H501D", E::Day),
            ("RSSMRA80A0ZH501R", E::Day),
            ("RSSMRA80A011501O", E::PlaceCode),
            ("RSSMRA80A01HZ01E", E::PlaceCode),
            ("RSSMRA80A01H501A", E::CheckCharacter),
            ("RSSMRA80A01H5011", E::CheckCharacter),
            // An omocodic code with the check character of the plain one.
            ("RSSMRA80A01H50MU", E::CheckCharacter),
        ];
        for (input, expected) in cases {
            let got = FiscalCode::parse(input);
            assert_eq!(got, Err(expected.clone()), "{input}");
            assert!(!expected.message_it().is_empty());
        }
    }

    #[test]
    fn messages_are_the_documented_ones() {
        assert_eq!(
            FiscalCodeError::Length(3).message_it(),
            "Il codice fiscale deve essere di 16 caratteri"
        );
        assert_eq!(
            FiscalCodeError::CheckCharacter.message_it(),
            "Carattere di controllo errato"
        );
        assert_eq!(
            FiscalCodeError::Month.message_it(),
            "Mese di nascita non valido"
        );
        assert_eq!(
            FiscalCodeError::Day.message_it(),
            "Giorno di nascita non valido"
        );
    }

    #[test]
    fn birth_date_hint_undoes_omocodia_and_the_female_offset() {
        let man = FiscalCode::parse("RSSMRA80A01H501U").unwrap();
        assert_eq!(
            man.birth_date_hint(),
            BirthDateHint {
                year_two_digits: 80,
                month: 1,
                day: 1,
                female: false
            }
        );
        let woman = FiscalCode::parse("BNCGLI85M52F205H").unwrap();
        assert_eq!(
            woman.birth_date_hint(),
            BirthDateHint {
                year_two_digits: 85,
                month: 8,
                day: 12,
                female: true
            }
        );
        let omocode = FiscalCode::parse("RSSMRAULALMHRLMD").unwrap();
        assert_eq!(omocode.birth_date_hint(), man.birth_date_hint());
    }

    #[test]
    fn serde_round_trip_validates() {
        let code = FiscalCode::parse("VRDLCU72T10L219N").unwrap();
        let json = serde_json::to_string(&code).unwrap();
        assert_eq!(json, "\"VRDLCU72T10L219N\"");
        assert_eq!(serde_json::from_str::<FiscalCode>(&json).unwrap(), code);
        assert!(serde_json::from_str::<FiscalCode>("\"VRDLCU72T10L219A\"").is_err());
    }

    #[test]
    fn check_character_matches_the_table() {
        assert_eq!(check_character(b"RSSMRA80A01H501"), Some(b'U'));
        assert_eq!(check_character(b"RSSMRA80A01H50M"), Some(b'M'));
        assert_eq!(check_character(b"rss"), None);
    }
}
