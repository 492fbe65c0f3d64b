//! Mapping a verified SPID login to its POLIS account: required attributes, the
//! codice fiscale, `link_or_create`, and the update of what SPID vouches for.

use chrono::{DateTime, Utc};

use crate::accounts::{Account, AccountError, FiscalCode, NewAccount};
use crate::identity::LoginSession;

use super::{EnablementError, EnablementService, LOGIN_UPDATE_TRIES, REQUIRED_ATTRIBUTES};

impl EnablementService {
    /// Maps a verified SPID login to its account: found by codice fiscale and updated
    /// with what SPID vouches for (names, birth data, sex; the e-mail only when the
    /// account has none), or created. Writes nothing when required attributes are
    /// missing or the codice fiscale is invalid.
    pub async fn login(
        &self,
        login: &LoginSession,
        now: DateTime<Utc>,
    ) -> Result<Account, EnablementError> {
        let missing: Vec<&'static str> = REQUIRED_ATTRIBUTES
            .into_iter()
            .filter(|name| login.attribute(name).is_none_or(|v| v.trim().is_empty()))
            .collect();
        if !missing.is_empty() {
            return Err(EnablementError::MissingAttributes(missing));
        }
        let raw = login.fiscal_code().unwrap_or_default();
        let fiscal_code =
            FiscalCode::parse(&raw).map_err(|_| EnablementError::InvalidFiscalCode)?;
        let vouched = vouched_data(login, fiscal_code);
        let (mut account, created) = self.accounts.link_or_create(&vouched).await?;
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
        self.accounts.touch_last_access(account.id, now).await?;
        account.last_access_at = Some(now);
        Ok(account)
    }
}

fn attr(login: &LoginSession, name: &str) -> Option<String> {
    login
        .attribute(name)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// What a SPID login vouches for, as account data.
fn vouched_data(login: &LoginSession, fiscal_code: FiscalCode) -> NewAccount {
    let mut new = NewAccount::new(
        fiscal_code,
        attr(login, "name").unwrap_or_default(),
        attr(login, "familyName").unwrap_or_default(),
    );
    new.birth_date = attr(login, "dateOfBirth")
        .and_then(|d| chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok());
    new.birth_place = attr(login, "placeOfBirth");
    new.sex = attr(login, "gender");
    new.email = attr(login, "email");
    new.spid_level = Some(login.level.number());
    new.spid_code = attr(login, "spidCode");
    new
}

/// Updates an existing account with what SPID vouches for; keeps the rest.
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
        let vouched = vouched_data(&l, cf.clone());
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
}
