//! The secrets of the abilitazione: the mandatory change of the temporary CP, the
//! personal-area CP change, the check of the current CP (also for `/oidc/cp`) and the
//! recovery by the security answer, each behind its lock counter in the state store
//! (counted before it is evaluated: see the module documentation of `enablement`).

use std::time::Duration;

use uuid::Uuid;

use crate::accounts::{Account, EnablementState};

use super::cp::{self, CpContext};
use super::locks;
use super::machine::{self, Event, InvalidTransition};
use super::{EnablementError, EnablementService, Refusal, to_std};

impl EnablementService {
    /// Counts a try *before* it is evaluated (one `incr`): `Some(its number)` when it is
    /// within `max_attempts` and may be evaluated, `None` when the counter is locked.
    async fn count_try(&self, key: &str, ttl: Duration) -> Result<Option<u64>, EnablementError> {
        let count = self.state.incr(key, ttl).await?;
        Ok((count <= u64::from(self.settings.max_attempts)).then_some(count))
    }

    /// The tries left after the wrong try number `count` (0 = now locked).
    fn remaining(&self, count: u64) -> u32 {
        let max = u64::from(self.settings.max_attempts);
        u32::try_from(max.saturating_sub(count)).unwrap_or(0)
    }

    /// A right secret on try number `count`: reset the counter, but only if no other try
    /// was counted since (a burst of parallel tries keeps its count).
    async fn forgive(&self, key: &str, count: u64) -> Result<(), EnablementError> {
        self.state
            .delete_if_equals(key, count.to_string().as_bytes())
            .await?;
        Ok(())
    }

    /// The mandatory change of the temporary CP: checks it (lock, expiry, HMAC), the
    /// rules of the new CP, then stores the new CP (argon2) and enables the account.
    pub async fn change_temp_cp(
        &self,
        id: Uuid,
        temp_cp: &str,
        new_cp: &str,
        repeat: &str,
    ) -> Result<Account, EnablementError> {
        let now = self.clock.now();
        let mut account = self.account(id).await?;
        let transition = machine::apply(account.enablement_state, Event::ChangeTempCp)?;
        let temp = account
            .temp_cp
            .clone()
            .ok_or(EnablementError::TempCpExpired)?;
        if now >= temp.expires_at {
            return Err(EnablementError::TempCpExpired);
        }
        let counter = locks::temp_key(account.id, &temp);
        let ttl = to_std(temp.expires_at - now) + Duration::from_secs(60);
        let Some(count) = self.count_try(&counter, ttl).await? else {
            return Err(EnablementError::TempCpLocked);
        };
        if !self.key.verify(temp_cp, &temp.hmac) {
            let remaining = self.remaining(count);
            return Err(if remaining == 0 {
                EnablementError::TempCpLocked
            } else {
                EnablementError::TempCpWrong { remaining }
            });
        }
        // The temporary CP is right. A new CP that breaks the rules costs no try; on
        // success the counter is left alone: the temporary CP is consumed with this
        // write, and parallel tries still in flight against it must not get a fresh
        // allowance (its HMAC check is instant, so "nothing counted since" would
        // often hold here).
        let hash = match self
            .checked_new_cp(&account, Some(temp_cp.to_owned()), new_cp, repeat)
            .await
        {
            Ok(hash) => hash,
            Err(e) => {
                self.forgive(&counter, count).await?;
                return Err(e);
            }
        };
        if let Some(old) = account.cp_hash.take() {
            cp::push_history(&mut account.cp_history, old);
        }
        account.cp_hash = Some(hash);
        account.temp_cp = None;
        account.enablement_state = transition.next;
        if account.enabled_at.is_none() {
            account.enabled_at = Some(now);
        }
        let account = self.accounts.update(&account).await?;
        super::count_step(account.enablement_state);
        // A new CP: the tries on the old one no longer matter. (The temporary CP's own
        // counter expires with it; it is consumed now.)
        self.state.delete(&locks::cp_key(account.id)).await?;
        Ok(account)
    }

    /// Checks the rules for a new CP and hashes it (off the async threads).
    async fn checked_new_cp(
        &self,
        account: &Account,
        temp_cp: Option<String>,
        new_cp: &str,
        repeat: &str,
    ) -> Result<String, EnablementError> {
        let account = account.clone();
        let new_cp = new_cp.to_owned();
        let repeat = repeat.to_owned();
        self.argon2
            .run(move || {
                let mut history = account.cp_history.clone();
                if let Some(current) = &account.cp_hash {
                    history.insert(0, current.clone());
                }
                let ctx = CpContext {
                    temp_cp: temp_cp.as_deref(),
                    username: &account.username,
                    given_name: &account.given_name,
                    family_name: &account.family_name,
                    // The personal code: the codice fiscale, or the eIDAS identifier.
                    fiscal_code: account
                        .fiscal_code_str()
                        .or(account.eidas_identifier())
                        .unwrap_or_default(),
                    previous_hashes: &history,
                };
                cp::check_new_cp(&new_cp, &repeat, &ctx).map_err(EnablementError::CpRules)?;
                Ok(crate::secrets::hash_secret(&new_cp).map_err(cp::CpError::from)?)
            })
            .await?
    }

    /// Verifies the account's current CP with the shared lock counter; `Ok(())` when
    /// it is right.
    pub async fn verify_cp(&self, account: &Account, current: &str) -> Result<(), EnablementError> {
        let counter = locks::cp_key(account.id);
        let Some(count) = self.count_try(&counter, self.settings.lockout).await? else {
            return Err(EnablementError::CpLocked);
        };
        let hash = account.cp_hash.clone().unwrap_or_default();
        let current = current.to_owned();
        if self
            .argon2
            .run(move || crate::secrets::verify_secret(&current, &hash))
            .await?
        {
            self.forgive(&counter, count).await?;
            return Ok(());
        }
        let remaining = self.remaining(count);
        Err(if remaining == 0 {
            EnablementError::CpLocked
        } else {
            EnablementError::CpWrong { remaining }
        })
    }

    /// Personal area: change the CP, the current one required.
    pub async fn change_cp(
        &self,
        id: Uuid,
        current: &str,
        new_cp: &str,
        repeat: &str,
    ) -> Result<Account, EnablementError> {
        let mut account = self.account(id).await?;
        if account.enablement_state != EnablementState::Enabled {
            return Err(InvalidTransition {
                state: account.enablement_state,
                event: Event::ChangeTempCp,
            }
            .into());
        }
        self.verify_cp(&account, current).await?;
        let hash = self.checked_new_cp(&account, None, new_cp, repeat).await?;
        if let Some(old) = account.cp_hash.take() {
            cp::push_history(&mut account.cp_history, old);
        }
        account.cp_hash = Some(hash);
        Ok(self.accounts.update(&account).await?)
    }

    /// "Recupero codice personale": the recovery answer, then a new temporary CP by
    /// e-mail and the mandatory change. A refusal carries the question, to show the
    /// form again.
    pub async fn recover(&self, id: Uuid, answer: &str) -> Result<Account, Refusal<String>> {
        let account = self.account(id).await.map_err(|error| Refusal {
            error,
            shown: String::new(),
        })?;
        let question = account.recovery_question.clone().unwrap_or_default();
        self.recover_account(account, answer)
            .await
            .map_err(|error| Refusal {
                error,
                shown: question,
            })
    }

    async fn recover_account(
        &self,
        account: Account,
        answer: &str,
    ) -> Result<Account, EnablementError> {
        machine::apply(account.enablement_state, Event::RecoverCp)?;
        let counter = locks::recovery_key(account.id);
        let Some(count) = self.count_try(&counter, self.settings.lockout).await? else {
            return Err(EnablementError::RecoveryLocked);
        };
        let hash = account.recovery_answer_hash.clone().unwrap_or_default();
        let typed = answer.to_owned();
        if !self
            .argon2
            .run(move || cp::verify_answer(&typed, &hash))
            .await?
        {
            let remaining = self.remaining(count);
            return Err(if remaining == 0 {
                EnablementError::RecoveryLocked
            } else {
                EnablementError::RecoveryWrong { remaining }
            });
        }
        self.forgive(&counter, count).await?;
        // The stale `account` read above is refused by the version compare-and-set if
        // another post moved it on meanwhile.
        let id = account.id;
        self.claimed(id, self.issue_and_send(account, Event::RecoverCp))
            .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::enablement::testing::{TEMP_CP_TTL, fixture};

    fn temp_cp_in(text: &str) -> String {
        text.lines()
            .find_map(|l| l.strip_prefix("Codice Personale temporaneo: "))
            .unwrap()
            .trim()
            .to_owned()
    }

    #[tokio::test]
    async fn a_temporary_cp_expires_when_the_clock_passes_its_ttl() {
        let fx = fixture().await;
        let account = fx.account_in(EnablementState::Confirmed).await;
        fx.service.accept(account.id).await.unwrap();
        let temp = temp_cp_in(&fx.mails.sent()[0].text_body);
        fx.clock
            .advance(chrono::Duration::from_std(TEMP_CP_TTL).unwrap());
        let refused = fx
            .service
            .change_temp_cp(account.id, &temp, "Scuola2026x", "Scuola2026x")
            .await;
        assert!(
            matches!(refused, Err(EnablementError::TempCpExpired)),
            "{refused:?}"
        );
        let stored = fx.service.account(account.id).await.unwrap();
        assert_eq!(stored.enablement_state, EnablementState::TempCpSent);
        assert!(stored.cp_hash.is_none());
    }

    #[tokio::test]
    async fn a_refused_recovery_carries_the_question() {
        let fx = fixture().await;
        let mut account = fx.account_in(EnablementState::Enabled).await;
        account.recovery_question = Some("Il nome del primo gatto".to_owned());
        account.recovery_answer_hash = Some(cp::hash_answer("Micio").unwrap());
        let account = fx.accounts.update(&account).await.unwrap();
        let refusal = fx.service.recover(account.id, "Fido").await.unwrap_err();
        assert!(
            matches!(
                refusal.error,
                EnablementError::RecoveryWrong { remaining: 4 }
            ),
            "{:?}",
            refusal.error
        );
        assert_eq!(refusal.shown, "Il nome del primo gatto");
        assert!(fx.mails.sent().is_empty());

        let sent = fx.service.recover(account.id, " micio ").await.unwrap();
        assert_eq!(sent.enablement_state, EnablementState::TempCpSent);
        assert_eq!(fx.mails.sent().len(), 1);
    }
}
