//! Mapping a verified login to its POLIS account, per scheme: the required
//! attributes, the identity (SPID and CIE: the codice fiscale; eIDAS: the identifier
//! FICEP sends in `spidCode`, and no codice fiscale), `link_or_create`, and the update
//! of what the scheme vouches for.

use chrono::{DateTime, Utc};

use crate::accounts::{Account, AccountError, FiscalCode, IdentityKey, NewAccount};
use crate::identity::{LoginSession, Scheme};

use super::{
    EIDAS_REQUIRED_ATTRIBUTES, EnablementError, EnablementService, LOGIN_UPDATE_TRIES,
    REQUIRED_ATTRIBUTES,
};

/// Longest opaque part of an eIDAS identifier (the eIDAS SAML attribute profile
/// bounds the PersonIdentifier at 256 characters).
const EIDAS_ID_MAX: usize = 256;

/// How fresh the last-access stamps are kept: a login writes them only when they are
/// older than this (or in the future), so a burst of logins is not a burst of
/// committed transactions. Inactivity is counted in months.
pub(crate) const LAST_ACCESS_RESOLUTION: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// Whether a login at `now` must write the account's and the identity's last access.
fn needs_touch(account: &Account, key: &IdentityKey, now: DateTime<Utc>) -> bool {
    let stale =
        |t: Option<DateTime<Utc>>| t.is_none_or(|t| t > now || now - t >= LAST_ACCESS_RESOLUTION);
    let identity = account
        .identities
        .iter()
        .find(|i| i.scheme == key.scheme && i.subject == key.subject);
    stale(account.last_access_at) || identity.is_none_or(|i| stale(i.last_login_at))
}

impl EnablementService {
    /// Maps a verified login to its account: found by its identity (or, for SPID and
    /// CIE, by codice fiscale) and updated with what the scheme vouches for (names,
    /// birth data, sex; the e-mail only when the account has none), or created.
    /// Writes nothing when required attributes are missing or the codice fiscale /
    /// eIDAS identifier is invalid.
    pub async fn login(
        &self,
        login: &LoginSession,
        now: DateTime<Utc>,
    ) -> Result<Account, EnablementError> {
        let (vouched, key) = login_identity(login)?;
        let (mut account, created) = self.accounts.link_or_create(&vouched, &key).await?;
        if !created {
            for attempt in 0..LOGIN_UPDATE_TRIES {
                let mut updated = account.clone();
                apply_vouched(&mut updated, &vouched);
                if updated == account {
                    break;
                }
                match self.accounts.update(&updated).await {
                    Ok(stored) => {
                        account = stored;
                        break;
                    }
                    Err(AccountError::Conflict) if attempt + 1 < LOGIN_UPDATE_TRIES => {
                        account = self
                            .accounts
                            .find_by_id(account.id)
                            .await?
                            .ok_or(EnablementError::AccountGone)?;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if needs_touch(&account, &key, now) {
            self.accounts
                .touch_last_access(account.id, Some(&key), now)
                .await?;
            account.last_access_at = Some(now);
            for identity in &mut account.identities {
                if identity.scheme == key.scheme && identity.subject == key.subject {
                    identity.last_login_at = Some(now);
                }
            }
        }
        Ok(account)
    }
}

/// The account data and the identity of a login, checked for its scheme.
fn login_identity(login: &LoginSession) -> Result<(NewAccount, IdentityKey), EnablementError> {
    let required: &[&'static str] = match login.scheme {
        Scheme::Spid | Scheme::Cie => &REQUIRED_ATTRIBUTES,
        Scheme::Eidas => &EIDAS_REQUIRED_ATTRIBUTES,
    };
    let missing: Vec<&'static str> = required
        .iter()
        .copied()
        .filter(|name| login.attribute(name).is_none_or(|v| v.trim().is_empty()))
        .collect();
    if !missing.is_empty() {
        return Err(EnablementError::MissingAttributes(missing));
    }
    match login.scheme {
        Scheme::Spid | Scheme::Cie => {
            let raw = login.fiscal_code().unwrap_or_default();
            let fiscal_code =
                FiscalCode::parse(&raw).map_err(|_| EnablementError::InvalidFiscalCode)?;
            let key = IdentityKey::new(login.scheme, fiscal_code.as_str());
            Ok((vouched_data(login, Some(fiscal_code)), key))
        }
        Scheme::Eidas => {
            // A codice fiscale a foreign node might send is not trusted to link accounts:
            // an eIDAS identity only ever reaches the account it created.
            let identifier = login
                .eidas_identifier()
                .filter(|id| valid_eidas_identifier(id))
                .ok_or(EnablementError::InvalidEidasIdentifier)?;
            let key = IdentityKey::new(Scheme::Eidas, identifier);
            let mut vouched = vouched_data(login, None);
            vouched.spid_code = None;
            Ok((vouched, key))
        }
    }
}

/// `CC/CC/id`: the issuing and the receiving country (two uppercase ASCII letters
/// each), then a non-empty opaque identifier of at most [`EIDAS_ID_MAX`] characters
/// without control characters or white space at its ends.
pub(crate) fn valid_eidas_identifier(identifier: &str) -> bool {
    let country = |c: &str| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase());
    let mut parts = identifier.splitn(3, '/');
    let (Some(from), Some(to), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    country(from)
        && country(to)
        && !id.is_empty()
        && id.chars().count() <= EIDAS_ID_MAX
        && !id.chars().any(char::is_control)
        && id.trim() == id
}

fn attr(login: &LoginSession, name: &str) -> Option<String> {
    login
        .attribute(name)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// What a login vouches for, as account data.
fn vouched_data(login: &LoginSession, fiscal_code: Option<FiscalCode>) -> NewAccount {
    let mut new = NewAccount::without_fiscal_code(
        attr(login, "name").unwrap_or_default(),
        attr(login, "familyName").unwrap_or_default(),
    );
    new.birth_date = attr(login, "dateOfBirth")
        .and_then(|d| chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok());
    // The codice fiscale the scheme vouches for encodes the place of birth and sex:
    // CIE's minimum set carries neither attribute.
    new.birth_place = attr(login, "placeOfBirth")
        .or_else(|| fiscal_code.as_ref().map(FiscalCode::birth_place_code));
    new.sex =
        attr(login, "gender").or_else(|| fiscal_code.as_ref().map(|code| code.sex().to_owned()));
    new.fiscal_code = fiscal_code;
    new.email = attr(login, "email");
    new.spid_level = Some(login.level.number());
    new.spid_code = attr(login, "spidCode");
    new
}

/// Updates an existing account with what the login vouches for; keeps the rest.
fn apply_vouched(account: &mut Account, vouched: &NewAccount) {
    account.given_name = vouched.given_name.clone();
    account.family_name = vouched.family_name.clone();
    if vouched.birth_date.is_some() {
        account.birth_date = vouched.birth_date;
    }
    if vouched.birth_place.is_some() {
        account.birth_place = vouched.birth_place.clone();
    }
    if vouched.sex.is_some() {
        account.sex = vouched.sex.clone();
    }
    if account.email.is_none() {
        account.email = vouched.email.clone();
    }
    account.spid_level = vouched.spid_level;
    if vouched.spid_code.is_some() {
        account.spid_code = vouched.spid_code.clone();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn login(attrs: &[(&str, &str)]) -> LoginSession {
        LoginSession::sample("https://idp.example", "_n", attrs, Utc::now())
    }

    #[test]
    fn vouched_data_updates_identity_and_keeps_the_rest() {
        let cf = FiscalCode::parse("RSSMRA80A01H501U").unwrap();
        let l = login(&[
            ("name", "Mario"),
            ("familyName", "Rossi"),
            ("dateOfBirth", "1980-01-01"),
            ("email", "spid@example.it"),
            ("spidCode", "ABCD123"),
        ]);
        let vouched = vouched_data(&l, Some(cf.clone()));
        let mut account = Account {
            email: Some("kept@example.it".into()),
            given_name: "MARIO".into(),
            ..crate::accounts::tests_support::sample(cf)
        };
        apply_vouched(&mut account, &vouched);
        assert_eq!(account.given_name, "Mario");
        assert_eq!(account.email.as_deref(), Some("kept@example.it"));
        assert_eq!(account.spid_code.as_deref(), Some("ABCD123"));
        assert_eq!(account.spid_level, Some(2));
        assert_eq!(
            account.birth_date,
            chrono::NaiveDate::from_ymd_opt(1980, 1, 1)
        );
    }

    #[test]
    fn the_last_access_is_written_at_most_once_a_minute() {
        let cf = FiscalCode::parse("RSSMRA80A01H501U").unwrap();
        let key = IdentityKey::new(Scheme::Spid, cf.as_str());
        let now = Utc::now();
        let mut account = crate::accounts::tests_support::sample(cf);
        account.identities = vec![crate::accounts::LinkedIdentity {
            scheme: Scheme::Spid,
            subject: key.subject.clone(),
            linked_at: now,
            last_login_at: None,
        }];
        account.last_access_at = None;
        assert!(needs_touch(&account, &key, now), "never stamped");
        let stamp = |a: &mut Account, t| {
            a.last_access_at = Some(t);
            a.identities[0].last_login_at = Some(t);
        };
        stamp(&mut account, now - chrono::Duration::seconds(59));
        assert!(!needs_touch(&account, &key, now), "stamped 59 s ago");
        stamp(&mut account, now - chrono::Duration::seconds(60));
        assert!(needs_touch(&account, &key, now), "stamped a minute ago");
        stamp(&mut account, now + chrono::Duration::seconds(5));
        assert!(needs_touch(&account, &key, now), "a stamp from the future");
        stamp(&mut account, now);
        account.identities[0].last_login_at = None;
        assert!(
            needs_touch(&account, &key, now),
            "the identity never logged in"
        );
        let cie = IdentityKey::new(Scheme::Cie, key.subject.as_str());
        account.identities[0].last_login_at = Some(now);
        assert!(
            needs_touch(&account, &cie, now),
            "another scheme's first login"
        );
    }

    fn with_scheme(scheme: Scheme, attrs: &[(&str, &str)]) -> LoginSession {
        let mut l = login(attrs);
        l.scheme = scheme;
        l
    }

    #[test]
    fn spid_and_cie_are_keyed_by_the_fiscal_code() {
        for scheme in [Scheme::Spid, Scheme::Cie] {
            let l = with_scheme(
                scheme,
                &[
                    ("fiscalNumber", "TINIT-rssmra80a01h501u"),
                    ("name", "Mario"),
                    ("familyName", "Rossi"),
                ],
            );
            let (new, key) = login_identity(&l).unwrap();
            assert_eq!(key, IdentityKey::new(scheme, "RSSMRA80A01H501U"));
            assert_eq!(
                new.fiscal_code.as_ref().map(FiscalCode::as_str),
                Some("RSSMRA80A01H501U")
            );
            // CIE's minimum set has neither: both come from the codice fiscale.
            assert_eq!(new.birth_place.as_deref(), Some("H501"));
            assert_eq!(new.sex.as_deref(), Some("M"));
            let told = with_scheme(
                scheme,
                &[
                    ("fiscalNumber", "TINIT-RSSMRA80A01H501U"),
                    ("name", "Mario"),
                    ("familyName", "Rossi"),
                    ("placeOfBirth", "F205"),
                    ("gender", "F"),
                ],
            );
            let (new, _) = login_identity(&told).unwrap();
            assert_eq!(
                (new.birth_place.as_deref(), new.sex.as_deref()),
                (Some("F205"), Some("F")),
                "the attributes win over the code"
            );
            let bad = with_scheme(
                scheme,
                &[
                    ("fiscalNumber", "TINIT-RSSMRA80A01H501X"),
                    ("name", "Mario"),
                    ("familyName", "Rossi"),
                ],
            );
            assert!(matches!(
                login_identity(&bad),
                Err(EnablementError::InvalidFiscalCode)
            ));
            let missing = with_scheme(scheme, &[("name", "Mario"), ("familyName", "Rossi")]);
            assert!(matches!(
                login_identity(&missing),
                Err(EnablementError::MissingAttributes(names)) if names == ["fiscalNumber"]
            ));
        }
    }

    #[test]
    fn eidas_is_keyed_by_the_identifier_and_has_no_fiscal_code() {
        let l = with_scheme(
            Scheme::Eidas,
            &[
                ("spidCode", "ES/IT/02635542Y"),
                ("name", "Lucía"),
                ("familyName", "García"),
                ("dateOfBirth", "1990-05-04"),
                // Not trusted from a foreign node: never links to an Italian account.
                ("fiscalNumber", "TINIT-RSSMRA80A01H501U"),
            ],
        );
        let (new, key) = login_identity(&l).unwrap();
        assert_eq!(key, IdentityKey::new(Scheme::Eidas, "ES/IT/02635542Y"));
        assert_eq!(new.fiscal_code, None);
        assert_eq!(new.given_name, "Lucía");
        assert_eq!(new.spid_code, None);
        assert_eq!((new.birth_place, new.sex), (None, None));
        let missing = with_scheme(Scheme::Eidas, &[("name", "Lucía"), ("familyName", "G")]);
        assert!(matches!(
            login_identity(&missing),
            Err(EnablementError::MissingAttributes(names)) if names == ["spidCode"]
        ));
        for bad in [
            "ES/IT/",
            "ES/02635542Y",
            "es/IT/1",
            "ESP/IT/1",
            "ES/IT/a\u{7}b",
            "ES/IT/ 1",
        ] {
            let l = with_scheme(
                Scheme::Eidas,
                &[("spidCode", bad), ("name", "L"), ("familyName", "G")],
            );
            assert!(
                matches!(
                    login_identity(&l),
                    Err(EnablementError::InvalidEidasIdentifier)
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn eidas_identifier_shape() {
        assert!(valid_eidas_identifier("ES/IT/02635542Y"));
        assert!(valid_eidas_identifier("DE/IT/a/b+c=="));
        assert!(valid_eidas_identifier(&format!(
            "SE/IT/{}",
            "x".repeat(EIDAS_ID_MAX)
        )));
        assert!(!valid_eidas_identifier(&format!(
            "SE/IT/{}",
            "x".repeat(EIDAS_ID_MAX + 1)
        )));
        assert!(!valid_eidas_identifier(""));
        assert!(!valid_eidas_identifier("ES/IT"));
        assert!(!valid_eidas_identifier("É1/IT/x"));
    }
}
