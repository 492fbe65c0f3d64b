//! POLIS accounts: the [`Account`](crate::accounts::Account) model, codice fiscale
//! validation ([`FiscalCode`](crate::accounts::FiscalCode)), the
//! [`AccountStore`](crate::accounts::AccountStore) port and its sqlx implementation
//! ([`SqlAccountStore`](crate::accounts::SqlAccountStore): SQLite as the embedded default,
//! PostgreSQL in production, one portable migration set).
//!
//! An account has one or more identities ([`LinkedIdentity`](crate::accounts::LinkedIdentity):
//! scheme and subject, see [`Scheme`](crate::identity::Scheme)): `spid` and `cie` are
//! keyed by the codice fiscale (`fiscalNumber` without `TINIT-`), `eidas` by the eIDAS
//! PersonIdentifier. An account has a codice fiscale unless it was made by an eIDAS
//! login. [`AccountStore::link_or_create`](crate::accounts::AccountStore::link_or_create)
//! makes sure a person never gets two: a SPID and a CIE login of one codice fiscale
//! reach the same account.
//!
//! ## Usernames
//!
//! POLIS usernames look like `nome.cognome`
//! ([`username_base`](crate::accounts::username_base)): each name is lowercased, accented Latin letters lose their accent (`à` → `a`, `ß` → `ss`, `æ` → `ae`), and
//! everything that is not an ASCII letter or digit (spaces, apostrophes, hyphens, dots)
//! is **removed**, so `Niccolò` / `D'Amico` → `niccolo.damico` and `Anna Maria` /
//! `De Luca` → `annamaria.deluca`. Each part keeps at most 30 characters; an empty part
//! becomes `utente`. The first holder of a base gets it bare; later ones get the
//! smallest free numeric suffix from 2 up (`mario.rossi2`, `mario.rossi3`, …). The
//! unique index decides races: a creation that loses retries with the next suffix.
//!
//! ## Time
//!
//! Times the caller decides (temporary CP validity, enablement, last access) are passed
//! in. Only the bookkeeping stamps `created_at` and `updated_at` are read from the
//! clock by the store.

/// The help desk's audit log: who did what to which account, when and why.
mod audit;
/// Inactivity campaigns: dormant accounts and notice records.
mod dormant;
/// The codice fiscale: format, omocodia, check character, Italian field messages.
pub mod fiscal_code;
/// Place names for cadastral (Belfiore) codes: what a stored place of birth shows.
pub mod places;
/// The sqlx implementation of [`AccountStore`] on `AnyPool` (SQLite and PostgreSQL).
pub mod sql;

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::identity::Scheme;

pub use audit::{AuditEntry, AuditOutcome, HelpdeskAction, HelpdeskAudit};
pub use dormant::{CampaignStore, Dormant, NoticeKey};
pub use fiscal_code::{BirthDateHint, FiscalCode, FiscalCodeError};
pub use sql::SqlAccountStore;

/// Where a person lives (the *domicilio* of the enablement request).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domicile {
    /// Street and house number ("Via Roma 1").
    pub street: String,
    /// CAP.
    pub postal_code: String,
    /// Comune.
    pub municipality: String,
    /// Provincia (two-letter code, or empty abroad).
    pub province: String,
    /// Nazione.
    pub nation: String,
}

/// Phone numbers as POLIS asks them: a mobile and a landline, each optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phones {
    /// Cellulare.
    pub mobile: Option<String>,
    /// Telefono fisso.
    pub landline: Option<String>,
}

/// The version of the «condizioni di utilizzo» and of the privacy «informativa» a
/// person accepted with «Accetto», and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermsAcceptance {
    /// The operator's version label of the texts (`[terms] version`).
    pub version: String,
    /// When «Accetto» was pressed.
    pub accepted_at: DateTime<Utc>,
}

/// Who revoked an enablement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RevokedBy {
    /// An inactivity campaign (its name, e.g. `inactivity-15m`).
    Campaign {
        /// The campaign's name.
        name: String,
    },
    /// A help-desk operator (their codice fiscale).
    HelpDesk {
        /// The operator's codice fiscale.
        operator: String,
    },
}

/// The last revocation of an account's enablement: shown to the person at their next
/// login, kept after they do the abilitazione again (history, not state).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationRecord {
    /// When it was revoked.
    pub at: DateTime<Utc>,
    /// By whom.
    pub by: RevokedBy,
    /// Why, in words the person is shown.
    pub reason: String,
}

/// The identity document declared in the enablement request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdDocument {
    /// Document type ("carta d'identità", "passaporto", "patente di guida", …).
    pub kind: String,
    /// Document number.
    pub number: String,
    /// Issuing authority ("Comune di Roma").
    pub issuer: String,
    /// Date of issue.
    pub issued_on: NaiveDate,
    /// Expiry date.
    pub expires_on: NaiveDate,
}

/// The state of the temporary Codice Personale sent by e-mail.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TempCp {
    /// HMAC of the temporary CP under the server key (never the CP itself).
    pub hmac: String,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
    /// When it stops being accepted.
    pub expires_at: DateTime<Utc>,
}

impl fmt::Debug for TempCp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TempCp")
            .field("hmac", &"<redacted>")
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Where an account is in the SPID *abilitazione* (Path 2 of the domain spec).
///
/// Stored as snake_case text ([`as_str`](Self::as_str)); the transitions belong to the
/// enablement module, not to the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnablementState {
    /// Account exists, enablement not started.
    NotEnabled,
    /// Filling in the enablement request (domicile, phones, identity document).
    RequestData,
    /// Choosing the CP-recovery question and answer.
    RecoveryQuestion,
    /// Reviewing the data before "Conferma".
    Review,
    /// Data confirmed ("Conferma"): the final page with the warnings and the modulo di
    /// adesione is shown, waiting for "Accetto".
    Confirmed,
    /// Warnings and modulo di adesione accepted ("Accetto"); temporary CP not yet sent.
    Accepted,
    /// Temporary CP sent by e-mail; it must be changed at the next login.
    TempCpSent,
    /// Enabled to Istanze OnLine with a CP of the user's choice.
    Enabled,
}

impl EnablementState {
    /// Every state, in the order of the path.
    pub const ALL: [EnablementState; 8] = [
        Self::NotEnabled,
        Self::RequestData,
        Self::RecoveryQuestion,
        Self::Review,
        Self::Confirmed,
        Self::Accepted,
        Self::TempCpSent,
        Self::Enabled,
    ];

    /// The stored (snake_case) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotEnabled => "not_enabled",
            Self::RequestData => "request_data",
            Self::RecoveryQuestion => "recovery_question",
            Self::Review => "review",
            Self::Confirmed => "confirmed",
            Self::Accepted => "accepted",
            Self::TempCpSent => "temp_cp_sent",
            Self::Enabled => "enabled",
        }
    }
}

impl FromStr for EnablementState {
    type Err = AccountError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| AccountError::Backend(format!("unknown enablement state {text:?}")))
    }
}

impl fmt::Display for EnablementState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The key an account is found by at login: (scheme, subject). The subject is the
/// codice fiscale for `spid` and `cie`, the eIDAS PersonIdentifier for `eidas`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdentityKey {
    /// The scheme of the login.
    pub scheme: Scheme,
    /// Its subject.
    pub subject: String,
}

impl IdentityKey {
    /// `(scheme, subject)`.
    pub fn new(scheme: Scheme, subject: impl Into<String>) -> Self {
        Self {
            scheme,
            subject: subject.into(),
        }
    }
}

/// An identity linked to an account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkedIdentity {
    /// `spid`, `cie` or `eidas`.
    pub scheme: Scheme,
    /// The codice fiscale (spid, cie) or the eIDAS identifier (eidas).
    pub subject: String,
    /// When it was linked (the account's creation for identities of the previous
    /// release).
    pub linked_at: DateTime<Utc>,
    /// The last login with it (set by [`AccountStore::touch_last_access`]).
    #[serde(default)]
    pub last_login_at: Option<DateTime<Utc>>,
}

/// A POLIS account. A plain data type: read it from the store, change fields, and hand
/// it back to [`AccountStore::update`]. `Debug` never prints the hashes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Generated by the store (UUID v4).
    #[serde(with = "uuid_text")]
    pub id: Uuid,
    /// `nome.cognome[N]`, unique (see the module doc).
    pub username: String,
    /// Unique when present; `None` for an account made by an eIDAS login.
    pub fiscal_code: Option<FiscalCode>,
    /// The identities it is found by, oldest first (loaded with the account; written
    /// only by [`AccountStore::link_or_create`], never by `update`).
    #[serde(default)]
    pub identities: Vec<LinkedIdentity>,
    /// Nome.
    pub given_name: String,
    /// Cognome.
    pub family_name: String,
    /// Data di nascita.
    pub birth_date: Option<NaiveDate>,
    /// Luogo di nascita (comune or foreign state, or its code).
    pub birth_place: Option<String>,
    /// Sesso ("M" / "F" as SPID sends it).
    pub sex: Option<String>,
    /// The reference e-mail address.
    pub email: Option<String>,
    /// Domicilio.
    pub domicile: Option<Domicile>,
    /// Phone numbers.
    pub phones: Phones,
    /// Identity document.
    pub id_document: Option<IdDocument>,
    /// The CP-recovery question.
    pub recovery_question: Option<String>,
    /// Hash of the normalized recovery answer.
    pub recovery_answer_hash: Option<String>,
    /// Hash (argon2, PHC string) of the user's Codice Personale.
    pub cp_hash: Option<String>,
    /// Hashes (argon2) of earlier CPs, newest first, so a change cannot reuse them.
    pub cp_history: Vec<String>,
    /// The temporary CP in force, if any. Its wrong-attempt counter lives in the state
    /// store, shared by every replica.
    pub temp_cp: Option<TempCp>,
    /// Enablement state.
    pub enablement_state: EnablementState,
    /// When the account was created (set by the store).
    pub created_at: DateTime<Utc>,
    /// When it was last written (set by the store).
    pub updated_at: DateTime<Utc>,
    /// When the enablement completed.
    pub enabled_at: Option<DateTime<Utc>>,
    /// Last login.
    pub last_access_at: Option<DateTime<Utc>>,
    /// SPID level (1–3) of the last login.
    pub spid_level: Option<u8>,
    /// The `spidCode` attribute of the last login.
    pub spid_code: Option<String>,
    /// The terms accepted with «Accetto» (the latest acceptance).
    #[serde(default)]
    pub terms: Option<TermsAcceptance>,
    /// The last revocation of the enablement, if there was one.
    #[serde(default)]
    pub revocation: Option<RevocationRecord>,
    /// Optimistic-concurrency version: incremented by every update; an update carrying a
    /// stale version fails with [`AccountError::Conflict`].
    pub version: i64,
}

impl Account {
    /// The codice fiscale as text, if the account has one.
    pub fn fiscal_code_str(&self) -> Option<&str> {
        self.fiscal_code.as_ref().map(FiscalCode::as_str)
    }

    /// The eIDAS PersonIdentifier of its `eidas` identity, if it has one.
    pub fn eidas_identifier(&self) -> Option<&str> {
        self.identities
            .iter()
            .find(|i| i.scheme == Scheme::Eidas)
            .map(|i| i.subject.as_str())
    }
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |hash: &Option<String>| hash.as_ref().map(|_| "<redacted>");
        f.debug_struct("Account")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("fiscal_code", &self.fiscal_code)
            .field("identities", &self.identities)
            .field("given_name", &self.given_name)
            .field("family_name", &self.family_name)
            .field("birth_date", &self.birth_date)
            .field("birth_place", &self.birth_place)
            .field("sex", &self.sex)
            .field("email", &self.email)
            .field("domicile", &self.domicile)
            .field("phones", &self.phones)
            .field("id_document", &self.id_document)
            .field("recovery_question", &self.recovery_question)
            .field(
                "recovery_answer_hash",
                &redacted(&self.recovery_answer_hash),
            )
            .field("cp_hash", &redacted(&self.cp_hash))
            .field("cp_history", &self.cp_history.len())
            .field("temp_cp", &self.temp_cp)
            .field("enablement_state", &self.enablement_state)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .field("enabled_at", &self.enabled_at)
            .field("last_access_at", &self.last_access_at)
            .field("spid_level", &self.spid_level)
            .field("spid_code", &self.spid_code)
            .field("terms", &self.terms)
            .field("version", &self.version)
            .finish()
    }
}

/// The data an account is created from (SPID attributes, a fixture, the CLI).
/// The store adds the id, the username, the state [`EnablementState::NotEnabled`] and
/// the timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAccount {
    /// Codice fiscale (`None` for an eIDAS user).
    pub fiscal_code: Option<FiscalCode>,
    /// Nome.
    pub given_name: String,
    /// Cognome.
    pub family_name: String,
    /// Data di nascita.
    pub birth_date: Option<NaiveDate>,
    /// Luogo di nascita.
    pub birth_place: Option<String>,
    /// Sesso.
    pub sex: Option<String>,
    /// E-mail.
    pub email: Option<String>,
    /// Domicilio.
    pub domicile: Option<Domicile>,
    /// Phone numbers.
    pub phones: Phones,
    /// Identity document.
    pub id_document: Option<IdDocument>,
    /// SPID level of the login that creates it, if any.
    pub spid_level: Option<u8>,
    /// `spidCode` of that login.
    pub spid_code: Option<String>,
}

impl NewAccount {
    /// A new account with only the required data; the rest is empty.
    pub fn new(
        fiscal_code: FiscalCode,
        given_name: impl Into<String>,
        family_name: impl Into<String>,
    ) -> Self {
        let mut new = Self::without_fiscal_code(given_name, family_name);
        new.fiscal_code = Some(fiscal_code);
        new
    }

    /// A new account of a person without a codice fiscale (an eIDAS login).
    pub fn without_fiscal_code(
        given_name: impl Into<String>,
        family_name: impl Into<String>,
    ) -> Self {
        Self {
            fiscal_code: None,
            given_name: given_name.into(),
            family_name: family_name.into(),
            birth_date: None,
            birth_place: None,
            sex: None,
            email: None,
            domicile: None,
            phones: Phones::default(),
            id_document: None,
            spid_level: None,
            spid_code: None,
        }
    }

    /// The account a store creates from this data, before its username is drawn:
    /// `NotEnabled`, no secrets, version 1, created and updated at `now`.
    pub fn into_account(&self, id: Uuid, username: String, now: DateTime<Utc>) -> Account {
        Account {
            id,
            username,
            fiscal_code: self.fiscal_code.clone(),
            identities: Vec::new(),
            given_name: self.given_name.clone(),
            family_name: self.family_name.clone(),
            birth_date: self.birth_date,
            birth_place: self.birth_place.clone(),
            sex: self.sex.clone(),
            email: self.email.clone(),
            domicile: self.domicile.clone(),
            phones: self.phones.clone(),
            id_document: self.id_document.clone(),
            recovery_question: None,
            recovery_answer_hash: None,
            cp_hash: None,
            cp_history: Vec::new(),
            temp_cp: None,
            enablement_state: EnablementState::NotEnabled,
            created_at: now,
            updated_at: now,
            enabled_at: None,
            last_access_at: None,
            spid_level: self.spid_level,
            spid_code: self.spid_code.clone(),
            terms: None,
            revocation: None,
            version: 1,
        }
    }
}

/// A column with a UNIQUE constraint, named by [`AccountError::Duplicate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UniqueField {
    /// `fiscal_code`.
    FiscalCode,
    /// `username`.
    Username,
    /// The (scheme, subject) of an identity.
    Identity,
}

impl fmt::Display for UniqueField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::FiscalCode => "fiscal_code",
            Self::Username => "username",
            Self::Identity => "identity",
        })
    }
}

/// Why an account-store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// No account with that id.
    #[error("account not found")]
    NotFound,
    /// The account changed since it was read (stale `version`): re-read and retry.
    #[error("account changed concurrently")]
    Conflict,
    /// Another account already has this value in a unique column.
    #[error("an account with this {0} already exists")]
    Duplicate(UniqueField),
    /// The database cannot be reached or did not answer in time (→ HTTP 503).
    #[error("account store unavailable: {0}")]
    Unavailable(String),
    /// Anything else (SQL error, undecodable row, failed migration).
    #[error("account store error: {0}")]
    Backend(String),
}

impl AccountError {
    /// A stable code for logs and the user-facing error page.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "POLIS_ACCOUNT_NOT_FOUND",
            Self::Conflict => "POLIS_ACCOUNT_CONFLICT",
            Self::Duplicate(UniqueField::FiscalCode) => "POLIS_ACCOUNT_DUPLICATE_FISCAL_CODE",
            Self::Duplicate(UniqueField::Username) => "POLIS_ACCOUNT_DUPLICATE_USERNAME",
            Self::Duplicate(UniqueField::Identity) => "POLIS_ACCOUNT_DUPLICATE_IDENTITY",
            Self::Unavailable(_) => "POLIS_ACCOUNTS_UNAVAILABLE",
            Self::Backend(_) => "POLIS_ACCOUNTS_ERROR",
        }
    }
}

/// The account port. Implementations are shared as `Arc<dyn AccountStore>` and are
/// safe to call from many tasks (and many replicas) at once. The same database holds
/// the campaigns' notices and the help desk's audit log (their ports are supertraits,
/// so one `Arc<dyn AccountStore>` serves as either).
#[async_trait::async_trait]
pub trait AccountStore: CampaignStore + HelpdeskAudit + Send + Sync + 'static {
    /// Creates an account: new id, a unique `nome.cognome` username, state
    /// [`EnablementState::NotEnabled`], version 1. [`AccountError::Duplicate`]
    /// (`FiscalCode`) if the codice fiscale already has an account.
    async fn create(&self, new: &NewAccount) -> Result<Account, AccountError>;
    /// The account with this id.
    async fn find_by_id(&self, id: Uuid) -> Result<Option<Account>, AccountError>;
    /// The account with this codice fiscale.
    async fn find_by_fiscal_code(
        &self,
        fiscal_code: &FiscalCode,
    ) -> Result<Option<Account>, AccountError>;
    /// The account an identity is linked to.
    async fn find_by_identity(&self, key: &IdentityKey) -> Result<Option<Account>, AccountError>;
    /// The account with this username (exact match; usernames are lowercase).
    async fn find_by_username(&self, username: &str) -> Result<Option<Account>, AccountError>;
    /// Writes every field of `account` except `id` and `created_at`, if its `version` is
    /// still the stored one; returns the stored account (version + 1, new `updated_at`).
    /// [`AccountError::Conflict`] if the version is stale, [`AccountError::NotFound`] if
    /// the id is unknown, [`AccountError::Duplicate`] on a unique column.
    async fn update(&self, account: &Account) -> Result<Account, AccountError>;
    /// The account of the identity `key`, created from `new` if there is none; `true`
    /// when this call created it.
    ///
    /// - `spid` / `cie` (the subject must be `new.fiscal_code`): the account linked to
    ///   the identity; else the account of that codice fiscale (created if none), then
    ///   the identity is linked to it. A SPID and a CIE login of one codice fiscale
    ///   reach one account.
    /// - `eidas` (`new.fiscal_code` must be `None`): the linked account, else a new
    ///   account and its identity in one transaction.
    ///
    /// Racing calls for one person all return the one account that exists afterwards.
    /// Existing accounts are returned as stored (updating them from the login is the
    /// caller's decision).
    async fn link_or_create(
        &self,
        new: &NewAccount,
        key: &IdentityKey,
    ) -> Result<(Account, bool), AccountError>;
    /// Sets `last_access_at` (and, with `identity`, that identity's `last_login_at`)
    /// without touching `version` (logins must not make a form that is being filled in
    /// go stale). [`AccountError::NotFound`] if the id is unknown.
    async fn touch_last_access(
        &self,
        id: Uuid,
        identity: Option<&IdentityKey>,
        at: DateTime<Utc>,
    ) -> Result<(), AccountError>;
    /// Applies the embedded migrations that are not applied yet (idempotent).
    async fn migrate(&self) -> Result<(), AccountError>;
    /// Health check: one round trip to the database.
    async fn ping(&self) -> Result<(), AccountError>;
    /// How busy the connection pool is now, for admission control (`None`: the store
    /// has no pool to exhaust).
    fn pool_load(&self) -> Option<PoolLoad> {
        None
    }
}

/// Connections of an account store's pool in use, and its maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolLoad {
    /// Connections checked out now.
    pub in_use: u32,
    /// The most the pool opens.
    pub max: u32,
}

/// The `nome.cognome` base of a username, before any numeric suffix (see the module doc).
pub fn username_base(given_name: &str, family_name: &str) -> String {
    format!(
        "{}.{}",
        username_part(given_name),
        username_part(family_name)
    )
}

/// Longest a part of a username may be.
const USERNAME_PART_MAX: usize = 30;

fn username_part(name: &str) -> String {
    let mut part = String::with_capacity(name.len());
    for c in name.chars().flat_map(char::to_lowercase) {
        match fold_char(c) {
            Some(folded) => part.push_str(folded),
            None if c.is_ascii_alphanumeric() => part.push(c),
            None => {}
        }
    }
    part.truncate(USERNAME_PART_MAX);
    if part.is_empty() {
        "utente".to_owned()
    } else {
        part
    }
}

/// The ASCII letters of a lowercase accented Latin letter.
pub(crate) fn fold_char(c: char) -> Option<&'static str> {
    Some(match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'æ' => "ae",
        'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => "c",
        'ď' | 'đ' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => "e",
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => "g",
        'ĥ' | 'ħ' => "h",
        'ì' | 'í' | 'î' | 'ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => "i",
        'ĵ' => "j",
        'ķ' => "k",
        'ĺ' | 'ļ' | 'ľ' | 'ŀ' | 'ł' => "l",
        'ñ' | 'ń' | 'ņ' | 'ň' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ŏ' | 'ő' => "o",
        'œ' => "oe",
        'ŕ' | 'ŗ' | 'ř' => "r",
        'ś' | 'ŝ' | 'ş' | 'š' | 'ș' => "s",
        'ß' => "ss",
        'ţ' | 'ť' | 'ŧ' | 'ț' => "t",
        'ù' | 'ú' | 'û' | 'ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => "u",
        'ŵ' => "w",
        'ý' | 'ÿ' | 'ŷ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        _ => return None,
    })
}

/// Serde for [`Uuid`] as its hyphenated text (the `uuid` crate is built without serde).
mod uuid_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use uuid::Uuid;

    pub fn serialize<S: Serializer>(id: &Uuid, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&id.hyphenated())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Uuid, D::Error> {
        let text = String::deserialize(deserializer)?;
        Uuid::parse_str(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn username_base_folds_accents_and_drops_punctuation() {
        let cases = [
            ("Mario", "Rossi", "mario.rossi"),
            ("Niccolò", "D'Amico", "niccolo.damico"),
            ("Anna Maria", "De Luca", "annamaria.deluca"),
            ("José", "Muñoz-Pérez", "jose.munozperez"),
            ("Ærøskøbing", "Straße", "aeroskobing.strasse"),
            ("ÉLODIE", "CÔTÉ", "elodie.cote"),
            ("", "'", "utente.utente"),
            ("李", "Rossi", "utente.rossi"),
        ];
        for (given, family, expected) in cases {
            assert_eq!(username_base(given, family), expected, "{given} {family}");
        }
        let long = "a".repeat(100);
        assert_eq!(username_base(&long, "x").len(), USERNAME_PART_MAX + 2);
    }

    #[test]
    fn enablement_state_names_round_trip() {
        for state in EnablementState::ALL {
            assert_eq!(state.as_str().parse::<EnablementState>().unwrap(), state);
            assert_eq!(
                serde_json::to_string(&state).unwrap(),
                format!("\"{}\"", state.as_str())
            );
        }
        assert!("bogus".parse::<EnablementState>().is_err());
    }

    #[test]
    fn debug_hides_hashes() {
        let now = Utc::now();
        let account = Account {
            id: Uuid::new_v4(),
            username: "mario.rossi".into(),
            fiscal_code: Some(FiscalCode::parse("RSSMRA80A01H501U").unwrap()),
            identities: vec![LinkedIdentity {
                scheme: Scheme::Cie,
                subject: "RSSMRA80A01H501U".into(),
                linked_at: now,
                last_login_at: Some(now),
            }],
            given_name: "Mario".into(),
            family_name: "Rossi".into(),
            birth_date: None,
            birth_place: None,
            sex: None,
            email: None,
            domicile: None,
            phones: Phones::default(),
            id_document: None,
            recovery_question: Some("cognome da nubile della madre".into()),
            recovery_answer_hash: Some("SECRET-ANSWER-HASH".into()),
            cp_hash: Some("$argon2id$SECRET-CP-HASH".into()),
            cp_history: vec!["$argon2id$OLD-CP-HASH".into()],
            temp_cp: Some(TempCp {
                hmac: "SECRET-HMAC".into(),
                issued_at: now,
                expires_at: now,
            }),
            enablement_state: EnablementState::TempCpSent,
            created_at: now,
            updated_at: now,
            enabled_at: None,
            last_access_at: None,
            spid_level: Some(2),
            spid_code: None,
            terms: None,
            revocation: None,
            version: 1,
        };
        let debug = format!("{account:?}");
        assert!(!debug.contains("SECRET"), "{debug}");
        assert!(debug.contains("<redacted>"));
        assert!(debug.contains("mario.rossi"));
        let json = serde_json::to_value(&account).unwrap();
        assert_eq!(json["id"], account.id.to_string());
        let back: Account = serde_json::from_value(json).unwrap();
        assert_eq!(back, account);
    }

    #[test]
    fn error_codes_are_stable() {
        assert_eq!(AccountError::Conflict.code(), "POLIS_ACCOUNT_CONFLICT");
        assert_eq!(
            AccountError::Duplicate(UniqueField::FiscalCode).code(),
            "POLIS_ACCOUNT_DUPLICATE_FISCAL_CODE"
        );
        assert_eq!(
            AccountError::Unavailable(String::new()).code(),
            "POLIS_ACCOUNTS_UNAVAILABLE"
        );
    }
}

/// Sample accounts for unit tests elsewhere in the crate.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// A plain account for `fiscal_code`, state `NotEnabled`, no secrets.
    pub(crate) fn sample(fiscal_code: FiscalCode) -> Account {
        NewAccount::new(fiscal_code, "Mario", "Rossi").into_account(
            Uuid::new_v4(),
            "mario.rossi".into(),
            Utc::now(),
        )
    }
}
