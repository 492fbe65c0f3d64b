//! The enablement and personal-area forms: what the browser posts, validated into
//! account data with one Italian message per field. Pure: `today` is passed in.
//!
//! Every field is trimmed and capped ([`MAX_FIELD`] characters); a form with any
//! error changes nothing and is shown again with the values typed and the messages
//! next to their fields.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use serde::Deserialize;

use crate::accounts::{Account, Domicile, IdDocument, Phones};
use crate::identity::LoginSession;

/// Longest accepted value of any field, in characters.
pub const MAX_FIELD: usize = 200;

/// The identity documents accepted in the enablement request.
pub const DOCUMENT_KINDS: [&str; 4] = [
    "Carta d'identità",
    "Carta d'identità elettronica",
    "Passaporto",
    "Patente di guida",
];

/// The choices of «Sesso / Sex»: the value stored (as SPID sends `gender`) and the
/// label shown.
pub const SEX_CHOICES: [(&str, &str); 2] = [("F", "Femmina / Female"), ("M", "Maschio / Male")];

/// The recovery question proposed by default.
pub const DEFAULT_QUESTION: &str = "Cognome da nubile della madre";

/// Field name → Italian message, for the fields that failed.
pub type FieldErrors = BTreeMap<&'static str, String>;

/// The contact part of the enablement request and of the personal area, as posted.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ContactForm {
    /// E-mail.
    pub email: String,
    /// Cellulare.
    pub mobile: String,
    /// Telefono fisso.
    pub landline: String,
    /// Indirizzo (via e numero civico).
    pub street: String,
    /// CAP.
    pub postal_code: String,
    /// Comune.
    pub municipality: String,
    /// Provincia (sigla).
    pub province: String,
    /// Nazione.
    pub nation: String,
}

/// The enablement request as posted: contacts and the identity document.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct RequestForm {
    /// The contact fields.
    #[serde(flatten)]
    pub contact: ContactForm,
    /// Tipo di documento (one of [`DOCUMENT_KINDS`]).
    pub doc_kind: String,
    /// Numero del documento.
    pub doc_number: String,
    /// Rilasciato da.
    pub doc_issuer: String,
    /// Data di rilascio, `YYYY-MM-DD`.
    pub doc_issued_on: String,
    /// Data di scadenza, `YYYY-MM-DD`.
    pub doc_expires_on: String,
    /// Data di nascita, `YYYY-MM-DD`: only read when [`Asked::birth_date`].
    pub birth_date: String,
    /// Luogo di nascita: only read when [`Asked::birth_place`].
    pub birth_place: String,
    /// Sesso (`F`/`M`): only read when [`Asked::sex`].
    pub sex: String,
}

/// The personal data the POLIS account needs that the login did not vouch for, asked
/// in the enablement request. SPID and CIE vouch for all of it (the codice fiscale
/// encodes the place of birth and the sex); an eIDAS login vouches for names, the
/// date of birth and the identifier, and the rest only with the full attribute set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Asked {
    /// Data di nascita.
    pub birth_date: bool,
    /// Luogo di nascita.
    pub birth_place: bool,
    /// Sesso.
    pub sex: bool,
}

impl Asked {
    /// What `login` did not carry and the form must ask.
    pub fn for_login(login: &LoginSession) -> Self {
        let missing = |name: &str| login.attribute(name).is_none_or(|v| v.trim().is_empty());
        // A codice fiscale (SPID, CIE) encodes the place of birth and the sex.
        let has_code =
            login.scheme != crate::identity::Scheme::Eidas && login.fiscal_code().is_some();
        Self {
            birth_date: missing("dateOfBirth"),
            birth_place: missing("placeOfBirth") && !has_code,
            sex: missing("gender") && !has_code,
        }
    }

    /// Nothing to ask.
    pub fn none(self) -> bool {
        !(self.birth_date || self.birth_place || self.sex)
    }
}

/// The personal data typed in the request (only what was [`Asked`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersonalData {
    /// Data di nascita.
    pub birth_date: Option<NaiveDate>,
    /// Luogo di nascita.
    pub birth_place: Option<String>,
    /// Sesso, `F` or `M`.
    pub sex: Option<String>,
}

impl PersonalData {
    /// Writes what was typed into an account; leaves the rest as the login gave it.
    pub fn apply_to(&self, account: &mut Account) {
        if let Some(d) = self.birth_date {
            account.birth_date = Some(d);
        }
        if let Some(p) = &self.birth_place {
            account.birth_place = Some(p.clone());
        }
        if let Some(s) = &self.sex {
            account.sex = Some(s.clone());
        }
    }
}

/// The recovery question as posted.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct RecoveryForm {
    /// The question.
    pub question: String,
    /// The answer.
    pub answer: String,
    /// The answer again.
    pub answer_repeat: String,
}

/// Validated contact data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactData {
    /// E-mail (lowercased domain kept as typed otherwise).
    pub email: String,
    /// Phones (at least one).
    pub phones: Phones,
    /// Domicile.
    pub domicile: Domicile,
}

impl ContactData {
    /// Writes the data into an account.
    pub fn apply_to(&self, account: &mut Account) {
        account.email = Some(self.email.clone());
        account.phones = self.phones.clone();
        account.domicile = Some(self.domicile.clone());
    }
}

/// Validated enablement request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestData {
    /// Contacts.
    pub contact: ContactData,
    /// Identity document.
    pub id_document: IdDocument,
    /// The personal data that was asked.
    pub personal: PersonalData,
}

/// Validated recovery question and the plain answer (to be hashed by the caller).
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryData {
    /// The question.
    pub question: String,
    /// The answer as typed.
    pub answer: String,
}

impl std::fmt::Debug for RecoveryData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecoveryData")
            .field("question", &self.question)
            .field("answer", &"<redacted>")
            .finish()
    }
}

fn clean(value: &str) -> String {
    value.trim().chars().take(MAX_FIELD + 1).collect()
}

struct Check {
    errors: FieldErrors,
}

impl Check {
    fn text(&mut self, field: &'static str, value: &str, label: &str) -> String {
        let v = clean(value);
        if v.is_empty() {
            self.errors
                .insert(field, format!("{label}: campo obbligatorio."));
        } else if v.chars().count() > MAX_FIELD {
            self.errors
                .insert(field, format!("{label}: al massimo {MAX_FIELD} caratteri."));
        } else if v.chars().any(char::is_control) {
            self.errors
                .insert(field, format!("{label}: contiene caratteri non ammessi."));
        }
        v
    }

    fn date(&mut self, field: &'static str, value: &str, label: &str) -> Option<NaiveDate> {
        let v = clean(value);
        if v.is_empty() {
            self.errors
                .insert(field, format!("{label}: campo obbligatorio."));
            return None;
        }
        match NaiveDate::parse_from_str(&v, "%Y-%m-%d") {
            Ok(d) => Some(d),
            Err(_) => {
                self.errors.insert(
                    field,
                    format!("{label}: indica una data valida (aaaa-mm-gg)."),
                );
                None
            }
        }
    }

    fn phone(&mut self, field: &'static str, value: &str, label: &str) -> Option<String> {
        let v = clean(value);
        if v.is_empty() {
            return None;
        }
        let compact: String = v
            .chars()
            .filter(|c| !matches!(c, ' ' | '.' | '-' | '/' | '(' | ')'))
            .collect();
        let digits = compact.strip_prefix('+').unwrap_or(&compact);
        if (6..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
            Some(compact)
        } else {
            self.errors.insert(
                field,
                format!("{label}: indica un numero di telefono valido (da 6 a 15 cifre, eventualmente con il prefisso +)."),
            );
            None
        }
    }
}

fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && email.len() <= 254
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && !email.contains(char::is_whitespace)
        && !domain.contains('@')
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '.' || c == '-')
        && !local.contains(['<', '>', '"', ',', ';', '(', ')', '[', ']', '\\'])
}

fn is_italy(nation: &str) -> bool {
    matches!(nation.to_lowercase().as_str(), "italia" | "italy" | "it")
}

fn check_contact(check: &mut Check, form: &ContactForm) -> Option<ContactData> {
    let email = check.text("email", &form.email, "E-mail");
    if !check.errors.contains_key("email") && !valid_email(&email) {
        check.errors.insert(
            "email",
            "E-mail: indica un indirizzo valido (es. nome@esempio.it).".to_owned(),
        );
    }
    let mobile = check.phone("mobile", &form.mobile, "Cellulare");
    let landline = check.phone("landline", &form.landline, "Telefono fisso");
    if clean(&form.mobile).is_empty() && clean(&form.landline).is_empty() {
        check.errors.insert(
            "mobile",
            "Indica almeno un numero di telefono (cellulare o fisso).".to_owned(),
        );
    }
    let street = check.text("street", &form.street, "Indirizzo");
    let municipality = check.text("municipality", &form.municipality, "Comune");
    let nation = {
        let n = clean(&form.nation);
        if n.is_empty() {
            "Italia".to_owned()
        } else {
            check.text("nation", &n, "Nazione")
        }
    };
    let postal_code = check.text("postal_code", &form.postal_code, "CAP");
    let province = clean(&form.province).to_uppercase();
    if is_italy(&nation) {
        let five_digits = postal_code.len() == 5 && postal_code.bytes().all(|b| b.is_ascii_digit());
        if !five_digits && !check.errors.contains_key("postal_code") {
            check
                .errors
                .insert("postal_code", "CAP: cinque cifre.".to_owned());
        }
        if !(province.len() == 2 && province.bytes().all(|b| b.is_ascii_uppercase())) {
            check.errors.insert(
                "province",
                "Provincia: la sigla di due lettere (es. RM).".to_owned(),
            );
        }
    } else if province.chars().count() > 40 {
        check
            .errors
            .insert("province", "Provincia: al massimo 40 caratteri.".to_owned());
    }
    if !check.errors.is_empty() {
        return None;
    }
    Some(ContactData {
        email,
        phones: Phones { mobile, landline },
        domicile: Domicile {
            street,
            postal_code,
            municipality,
            province,
            nation,
        },
    })
}

impl ContactForm {
    /// Validates the contact data.
    pub fn validate(&self) -> Result<ContactData, FieldErrors> {
        let mut check = Check {
            errors: FieldErrors::new(),
        };
        check_contact(&mut check, self).ok_or(check.errors)
    }

    /// The form filled with what the account holds.
    pub fn from_account(account: &Account) -> Self {
        let d = account.domicile.as_ref();
        let get = |f: fn(&Domicile) -> &String| d.map(f).cloned().unwrap_or_default();
        Self {
            email: account.email.clone().unwrap_or_default(),
            mobile: account.phones.mobile.clone().unwrap_or_default(),
            landline: account.phones.landline.clone().unwrap_or_default(),
            street: get(|d| &d.street),
            postal_code: get(|d| &d.postal_code),
            municipality: get(|d| &d.municipality),
            province: get(|d| &d.province),
            nation: d.map_or_else(|| "Italia".to_owned(), |d| d.nation.clone()),
        }
    }
}

fn check_personal(
    check: &mut Check,
    form: &RequestForm,
    asked: Asked,
    today: NaiveDate,
) -> PersonalData {
    let mut data = PersonalData::default();
    if asked.birth_date {
        let date = check.date(
            "birth_date",
            &form.birth_date,
            "Data di nascita / Date of birth",
        );
        match date {
            Some(d) if d > today || d.year() < 1900 => {
                check.errors.insert(
                    "birth_date",
                    "Data di nascita / Date of birth: indica una data valida (aaaa-mm-gg)."
                        .to_owned(),
                );
            }
            _ => data.birth_date = date,
        }
    }
    if asked.birth_place {
        let place = check.text(
            "birth_place",
            &form.birth_place,
            "Luogo di nascita / Place of birth",
        );
        data.birth_place = Some(place);
    }
    if asked.sex {
        let sex = clean(&form.sex).to_uppercase();
        if SEX_CHOICES.iter().any(|(value, _)| *value == sex) {
            data.sex = Some(sex);
        } else {
            check.errors.insert(
                "sex",
                "Sesso / Sex: scegli una voce dell'elenco (choose one).".to_owned(),
            );
        }
    }
    data
}

impl RequestForm {
    /// Validates the whole request, with the personal data `asked`; the document must
    /// be valid on `today`.
    pub fn validate(&self, today: NaiveDate, asked: Asked) -> Result<RequestData, FieldErrors> {
        let mut check = Check {
            errors: FieldErrors::new(),
        };
        let contact = check_contact(&mut check, &self.contact);
        let personal = check_personal(&mut check, self, asked, today);
        let kind = clean(&self.doc_kind);
        if !DOCUMENT_KINDS.contains(&kind.as_str()) {
            check.errors.insert(
                "doc_kind",
                "Tipo di documento: scegli una voce dell'elenco.".to_owned(),
            );
        }
        let number = check.text("doc_number", &self.doc_number, "Numero del documento");
        if !check.errors.contains_key("doc_number")
            && (!(4..=20).contains(&number.len())
                || !number.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            check.errors.insert(
                "doc_number",
                "Numero del documento: da 4 a 20 lettere o cifre, senza spazi.".to_owned(),
            );
        }
        let issuer = check.text("doc_issuer", &self.doc_issuer, "Rilasciato da");
        let issued = check.date("doc_issued_on", &self.doc_issued_on, "Data di rilascio");
        let expires = check.date("doc_expires_on", &self.doc_expires_on, "Data di scadenza");
        if let Some(i) = issued
            && i > today
        {
            check.errors.insert(
                "doc_issued_on",
                "Data di rilascio: non può essere nel futuro.".to_owned(),
            );
        }
        if let Some(e) = expires
            && e < today
        {
            check.errors.insert(
                "doc_expires_on",
                "Il documento è scaduto: indica un documento in corso di validità.".to_owned(),
            );
        }
        if let (Some(i), Some(e)) = (issued, expires)
            && e <= i
        {
            check.errors.insert(
                "doc_expires_on",
                "Data di scadenza: deve seguire la data di rilascio.".to_owned(),
            );
        }
        match (contact, issued, expires) {
            (Some(contact), Some(issued_on), Some(expires_on)) if check.errors.is_empty() => {
                Ok(RequestData {
                    contact,
                    id_document: IdDocument {
                        kind,
                        number: number.to_uppercase(),
                        issuer,
                        issued_on,
                        expires_on,
                    },
                    personal,
                })
            }
            _ => Err(check.errors),
        }
    }

    /// The form prefilled from the account, completed by what the SPID login carried
    /// (`email`, `mobilePhone`, `address`, `idCard`) where the account has nothing.
    pub fn prefill(account: &Account, login: Option<&LoginSession>) -> Self {
        let mut form = Self {
            contact: ContactForm::from_account(account),
            ..Self::default()
        };
        if let Some(doc) = &account.id_document {
            form.doc_kind = doc.kind.clone();
            form.doc_number = doc.number.clone();
            form.doc_issuer = doc.issuer.clone();
            form.doc_issued_on = doc.issued_on.to_string();
            form.doc_expires_on = doc.expires_on.to_string();
        }
        form.birth_date = account
            .birth_date
            .map(|d| d.to_string())
            .unwrap_or_default();
        form.birth_place = account.birth_place.clone().unwrap_or_default();
        form.sex = account.sex.clone().unwrap_or_default();
        let Some(login) = login else {
            return form;
        };
        let attr = |name: &str| login.attribute(name).map(str::trim).map(str::to_owned);
        if form.contact.email.is_empty() {
            form.contact.email = attr("email").unwrap_or_default();
        }
        if form.contact.mobile.is_empty() {
            form.contact.mobile = attr("mobilePhone").unwrap_or_default();
        }
        if form.contact.street.is_empty() {
            form.contact.street = attr("address").unwrap_or_default();
        }
        if account.id_document.is_none()
            && let Some(card) = attr("idCard")
            && let Some(doc) = parse_id_card(&card)
        {
            form.doc_kind = doc.kind;
            form.doc_number = doc.number;
            form.doc_issuer = doc.issuer;
            form.doc_issued_on = doc.issued_on.to_string();
            form.doc_expires_on = doc.expires_on.to_string();
        }
        form
    }
}

/// The SPID `idCard` attribute: `<type> <number> <issuer…> <issued> <expires>`, dates
/// `YYYY-MM-DD`, e.g. `cartaIdentita AA1234567 ComuneRoma 2020-01-01 2030-01-01`.
pub fn parse_id_card(value: &str) -> Option<IdDocument> {
    let parts: Vec<&str> = value.split_whitespace().collect();
    let (expires, rest) = parts.split_last()?;
    let (issued, rest) = rest.split_last()?;
    let (kind, rest) = rest.split_first()?;
    let (number, issuer) = rest.split_first()?;
    if issuer.is_empty() {
        return None;
    }
    let kind = match kind.to_lowercase().as_str() {
        "cartaidentita" => "Carta d'identità",
        "cartaidentitaelettronica" | "cie" => "Carta d'identità elettronica",
        "passaporto" => "Passaporto",
        "patenteguida" | "patente" => "Patente di guida",
        _ => return None,
    };
    Some(IdDocument {
        kind: kind.to_owned(),
        number: (*number).to_owned(),
        issuer: issuer.join(" "),
        issued_on: NaiveDate::parse_from_str(issued, "%Y-%m-%d").ok()?,
        expires_on: NaiveDate::parse_from_str(expires, "%Y-%m-%d").ok()?,
    })
}

impl RecoveryForm {
    /// Validates the question and that the answer was typed twice the same way
    /// (after the normalization answers are compared with).
    pub fn validate(&self) -> Result<RecoveryData, FieldErrors> {
        let mut check = Check {
            errors: FieldErrors::new(),
        };
        let question = check.text("question", &self.question, "Domanda");
        if !check.errors.contains_key("question") && question.chars().count() < 5 {
            check
                .errors
                .insert("question", "Domanda: almeno 5 caratteri.".to_owned());
        }
        let answer = check.text("answer", &self.answer, "Risposta");
        let normalized = super::cp::normalize_answer(&answer);
        if !check.errors.contains_key("answer") && normalized.chars().count() < 2 {
            check
                .errors
                .insert("answer", "Risposta: almeno 2 lettere o cifre.".to_owned());
        }
        if normalized != super::cp::normalize_answer(&self.answer_repeat) {
            check.errors.insert(
                "answer_repeat",
                "Le due risposte non coincidono.".to_owned(),
            );
        }
        if check.errors.is_empty() {
            Ok(RecoveryData { question, answer })
        } else {
            Err(check.errors)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()
    }

    fn good() -> RequestForm {
        RequestForm {
            contact: ContactForm {
                email: "giulia.bianchi@example.it".into(),
                mobile: "+39 333 123 4567".into(),
                landline: String::new(),
                street: "Via Roma 1".into(),
                postal_code: "00184".into(),
                municipality: "Roma".into(),
                province: "rm".into(),
                nation: "Italia".into(),
            },
            doc_kind: "Carta d'identità".into(),
            doc_number: "ca12345ab".into(),
            doc_issuer: "Comune di Roma".into(),
            doc_issued_on: "2020-03-01".into(),
            doc_expires_on: "2031-03-01".into(),
            ..RequestForm::default()
        }
    }

    fn eidas_login(attrs: &[(&str, &str)]) -> LoginSession {
        let mut login =
            LoginSession::sample("https://ficep.example", "_n", attrs, chrono::Utc::now());
        login.scheme = crate::identity::Scheme::Eidas;
        login
    }

    #[test]
    fn what_the_login_did_not_vouch_for_is_asked() {
        let spid = LoginSession::sample(
            "https://idp.example",
            "_n",
            &[
                ("fiscalNumber", "TINIT-RSSMRA80A01H501U"),
                ("dateOfBirth", "1980-01-01"),
            ],
            chrono::Utc::now(),
        );
        assert!(
            Asked::for_login(&spid).none(),
            "the code gives place and sex"
        );
        let minimum = eidas_login(&[("spidCode", "ES/IT/1"), ("dateOfBirth", "1990-05-04")]);
        assert_eq!(
            Asked::for_login(&minimum),
            Asked {
                birth_date: false,
                birth_place: true,
                sex: true
            }
        );
        let full = eidas_login(&[
            ("spidCode", "ES/IT/1"),
            ("dateOfBirth", "1990-05-04"),
            ("placeOfBirth", "Madrid"),
            ("gender", "F"),
        ]);
        assert!(Asked::for_login(&full).none());
    }

    #[test]
    fn asked_personal_data_is_required_and_checked() {
        let asked = Asked {
            birth_date: true,
            birth_place: true,
            sex: true,
        };
        let errors = good().validate(today(), asked).unwrap_err();
        let fields: Vec<&str> = errors.keys().copied().collect();
        assert_eq!(fields, ["birth_date", "birth_place", "sex"]);
        let mut form = good();
        form.birth_date = "2030-01-01".into();
        form.birth_place = "Madrid, España".into();
        form.sex = "X".into();
        let errors = form.validate(today(), asked).unwrap_err();
        assert_eq!(
            errors.keys().copied().collect::<Vec<_>>(),
            ["birth_date", "sex"]
        );
        form.birth_date = "1990-05-04".into();
        form.sex = "f".into();
        let data = form.validate(today(), asked).unwrap();
        assert_eq!(
            data.personal,
            PersonalData {
                birth_date: NaiveDate::from_ymd_opt(1990, 5, 4),
                birth_place: Some("Madrid, España".into()),
                sex: Some("F".into()),
            }
        );
        // Not asked: whatever is posted is ignored.
        let ignored = form.validate(today(), Asked::default()).unwrap();
        assert_eq!(ignored.personal, PersonalData::default());
    }

    #[test]
    fn a_complete_request_is_normalized() {
        let data = good().validate(today(), Asked::default()).unwrap();
        assert_eq!(data.contact.phones.mobile.as_deref(), Some("+393331234567"));
        assert_eq!(data.contact.phones.landline, None);
        assert_eq!(data.contact.domicile.province, "RM");
        assert_eq!(data.id_document.number, "CA12345AB");
    }

    #[test]
    fn each_bad_field_gets_its_own_message() {
        type Breaker = fn(&mut RequestForm);
        let cases: Vec<(Breaker, &str)> = vec![
            (|f| f.contact.email = "nobody".into(), "email"),
            (|f| f.contact.email = "a b@example.it".into(), "email"),
            (|f| f.contact.mobile = "12".into(), "mobile"),
            (|f| f.contact.mobile = String::new(), "mobile"),
            (|f| f.contact.landline = "06-abc".into(), "landline"),
            (|f| f.contact.street = "  ".into(), "street"),
            (|f| f.contact.postal_code = "0018".into(), "postal_code"),
            (|f| f.contact.province = "Roma".into(), "province"),
            (|f| f.contact.municipality = String::new(), "municipality"),
            (|f| f.doc_kind = "Tessera".into(), "doc_kind"),
            (|f| f.doc_number = "A 1".into(), "doc_number"),
            (|f| f.doc_issuer = String::new(), "doc_issuer"),
            (|f| f.doc_issued_on = "01/03/2020".into(), "doc_issued_on"),
            (|f| f.doc_issued_on = "2027-01-01".into(), "doc_issued_on"),
            (|f| f.doc_expires_on = "2025-01-01".into(), "doc_expires_on"),
            (|f| f.contact.street = "x".repeat(MAX_FIELD + 1), "street"),
        ];
        for (break_it, field) in cases {
            let mut form = good();
            break_it(&mut form);
            let errors = form.validate(today(), Asked::default()).unwrap_err();
            assert!(errors.contains_key(field), "{field}: {errors:?}");
            assert_eq!(errors.len(), 1, "{field}: {errors:?}");
        }
    }

    #[test]
    fn abroad_needs_no_italian_cap_or_province() {
        let mut form = good();
        form.contact.nation = "Francia".into();
        form.contact.postal_code = "75001".into();
        form.contact.province = String::new();
        assert!(form.validate(today(), Asked::default()).is_ok());
    }

    #[test]
    fn id_card_attribute_is_parsed() {
        let doc =
            parse_id_card("cartaIdentita AA1234567 Comune di Roma 2020-01-01 2030-01-01").unwrap();
        assert_eq!(doc.kind, "Carta d'identità");
        assert_eq!(doc.number, "AA1234567");
        assert_eq!(doc.issuer, "Comune di Roma");
        assert!(parse_id_card("passaporto X").is_none());
        assert!(parse_id_card("unknown AA1 Roma 2020-01-01 2030-01-01").is_none());
    }

    #[test]
    fn recovery_answers_must_match_after_normalization() {
        let ok = RecoveryForm {
            question: DEFAULT_QUESTION.into(),
            answer: "De Santis".into(),
            answer_repeat: "  de santis ".into(),
        };
        assert!(ok.validate().is_ok());
        let mismatch = RecoveryForm {
            answer_repeat: "Santis".into(),
            ..ok.clone()
        };
        assert!(
            mismatch
                .validate()
                .unwrap_err()
                .contains_key("answer_repeat")
        );
        let short = RecoveryForm {
            question: "?".into(),
            ..ok
        };
        assert!(short.validate().unwrap_err().contains_key("question"));
    }
}
