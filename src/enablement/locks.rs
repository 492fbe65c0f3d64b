//! The lock counters as the help desk reads and clears them: the tries on the temporary
//! CP, on the CP and on the recovery answer (State keys in the module documentation of
//! `enablement`; the names are made here and nowhere else). Reading never counts a try;
//! unlocking deletes the counter, so the next try is number 1 again.

use uuid::Uuid;

use crate::accounts::{Account, TempCp};

use super::{EnablementError, EnablementService};

/// `polis:att:cp:<account>`: tries on the current CP.
pub(super) fn cp_key(id: Uuid) -> String {
    format!("polis:att:cp:{id}")
}

/// `polis:att:rec:<account>`: tries on the recovery answer.
pub(super) fn recovery_key(id: Uuid) -> String {
    format!("polis:att:rec:{id}")
}

/// `polis:att:tcp:<account>:<hmac prefix>`: tries on one temporary CP (it changes with
/// each new CP).
pub(super) fn temp_key(id: Uuid, temp: &TempCp) -> String {
    let prefix: String = temp.hmac.chars().take(16).collect();
    format!("polis:att:tcp:{id}:{prefix}")
}

/// One of the three counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lock {
    /// Tries on the temporary CP in force.
    TempCp,
    /// Tries on the CP.
    Cp,
    /// Tries on the recovery answer.
    Recovery,
}

/// A counter as it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    /// Tries counted in the current window (0: none, or no counter).
    pub tries: u64,
    /// Whether the next try is refused without being evaluated.
    pub locked: bool,
}

/// The three counters of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locks {
    /// The temporary CP's, when one is in force.
    pub temp_cp: Option<Counter>,
    /// The CP's.
    pub cp: Counter,
    /// The recovery answer's.
    pub recovery: Counter,
    /// The tries allowed before a lock (`cp.max_attempts`).
    pub max_attempts: u32,
}

impl Locks {
    /// The counter of `lock` (`None`: no temporary CP in force).
    pub fn counter(&self, lock: Lock) -> Option<Counter> {
        match lock {
            Lock::TempCp => self.temp_cp,
            Lock::Cp => Some(self.cp),
            Lock::Recovery => Some(self.recovery),
        }
    }
}

impl EnablementService {
    /// The key of `lock` for `account`; `None` for the temporary CP when none is in force.
    fn lock_key(account: &Account, lock: Lock) -> Option<String> {
        match lock {
            Lock::TempCp => account.temp_cp.as_ref().map(|t| temp_key(account.id, t)),
            Lock::Cp => Some(cp_key(account.id)),
            Lock::Recovery => Some(recovery_key(account.id)),
        }
    }

    async fn counter(&self, key: &str) -> Result<Counter, EnablementError> {
        let tries = match self.state.get(key).await? {
            None => 0,
            Some(bytes) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(|text| text.parse::<u64>().ok())
                .ok_or_else(|| EnablementError::Internal(format!("{key} is not a counter")))?,
        };
        // The `max_attempts`-th wrong try locks (see `codes`): so does reaching it.
        let locked = tries >= u64::from(self.settings.max_attempts);
        Ok(Counter { tries, locked })
    }

    /// The lock counters of `account`, read without counting anything.
    pub async fn locks(&self, account: &Account) -> Result<Locks, EnablementError> {
        let temp_cp = match Self::lock_key(account, Lock::TempCp) {
            Some(key) => Some(self.counter(&key).await?),
            None => None,
        };
        Ok(Locks {
            temp_cp,
            cp: self.counter(&cp_key(account.id)).await?,
            recovery: self.counter(&recovery_key(account.id)).await?,
            max_attempts: self.settings.max_attempts,
        })
    }

    /// Deletes the counter of `lock`: the person may try again at once. `Ok(false)`
    /// when there is no temporary CP whose counter could be cleared.
    pub async fn unlock(&self, account: &Account, lock: Lock) -> Result<bool, EnablementError> {
        let Some(key) = Self::lock_key(account, lock) else {
            return Ok(false);
        };
        self.state.delete(&key).await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::accounts::EnablementState;
    use crate::enablement::testing::fixture;

    #[tokio::test]
    async fn counters_are_read_without_counting_and_cleared_by_unlock() {
        let fx = fixture().await;
        let mut account = fx.account_in(EnablementState::Enabled).await;
        account.cp_hash = Some(crate::secrets::hash_secret("Giusto2026x").unwrap());
        let account = fx.accounts.update(&account).await.unwrap();
        let locks = fx.service.locks(&account).await.unwrap();
        assert_eq!(locks.temp_cp, None);
        assert_eq!(
            locks.cp,
            Counter {
                tries: 0,
                locked: false
            }
        );
        for _ in 0..5 {
            let _ = fx.service.verify_cp(&account, "Sbagliato1x").await;
        }
        let locks = fx.service.locks(&account).await.unwrap();
        assert_eq!(
            locks.cp,
            Counter {
                tries: 5,
                locked: true
            }
        );
        assert_eq!(
            locks.recovery,
            Counter {
                tries: 0,
                locked: false
            }
        );
        let again = fx.service.locks(&account).await.unwrap();
        assert_eq!(again.cp.tries, 5, "reading counts nothing");
        let refused = fx.service.verify_cp(&account, "Giusto2026x").await;
        assert!(
            matches!(refused, Err(EnablementError::CpLocked)),
            "{refused:?}"
        );
        assert!(fx.service.unlock(&account, Lock::Cp).await.unwrap());
        assert_eq!(fx.service.locks(&account).await.unwrap().cp.tries, 0);
        fx.service.verify_cp(&account, "Giusto2026x").await.unwrap();
        assert!(!fx.service.unlock(&account, Lock::TempCp).await.unwrap());
    }
}
