//! Revoking an enablement (inactivity campaign, help desk): the account goes back to
//! `not_enabled` without its secrets, the revocation is recorded on it (shown to the
//! person at the next login, who can do the abilitazione again at once), and the
//! sessions and OpenID Connect tokens opened by its earlier logins end on every replica
//! (the mark `polis:acctrev:<account>`, read by the session store and the provider).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::machine::{self, Effect, Event};
use super::{EnablementError, EnablementService, LOGIN_UPDATE_TRIES};
use crate::accounts::{Account, AccountError, RevocationRecord, RevokedBy};
use crate::state::{ACCOUNT_REVOKED_TTL, account_revoked_key};

/// Longest reason kept, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// Why and by whom an enablement is revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// Who revokes.
    pub by: RevokedBy,
    /// Why, in words shown to the person (trimmed, at most [`MAX_REASON_CHARS`]).
    pub reason: String,
}

/// Whether anything a login of `account` opened could still be alive at `now`.
fn may_have_live_sessions(account: &Account, now: DateTime<Utc>) -> bool {
    let horizon = chrono::Duration::from_std(ACCOUNT_REVOKED_TTL).unwrap_or(chrono::Duration::MAX);
    account
        .last_access_at
        .is_some_and(|at| now.signed_duration_since(at) < horizon)
}

/// The account with its enablement revoked at `now` (the machine's `DropSecrets`).
fn revoked(mut account: Account, cause: &Revocation, now: DateTime<Utc>) -> Account {
    account.cp_hash = None;
    account.cp_history.clear();
    account.temp_cp = None;
    account.recovery_question = None;
    account.recovery_answer_hash = None;
    account.enabled_at = None;
    account.enablement_state = crate::accounts::EnablementState::NotEnabled;
    account.revocation = Some(RevocationRecord {
        at: now,
        by: cause.by.clone(),
        reason: cause.reason.clone(),
    });
    account
}

impl EnablementService {
    /// Revokes the enablement of account `id` (any state past `not_enabled`; one
    /// already `not_enabled` is [`EnablementError::Step`]). Sessions and tokens of its
    /// earlier logins are ended first, so a failure in between never leaves them
    /// alive on a revoked account. A concurrent change of the account is re-read and
    /// revoked again.
    pub async fn revoke(&self, id: Uuid, cause: Revocation) -> Result<Account, EnablementError> {
        let reason = cause.reason.trim();
        if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
            return Err(EnablementError::RevocationReason);
        }
        let cause = Revocation {
            reason: reason.to_owned(),
            ..cause
        };
        for attempt in 0..LOGIN_UPDATE_TRIES {
            let account = self.account(id).await?;
            let transition = machine::apply(account.enablement_state, Event::Revoke)?;
            debug_assert_eq!(transition.effects, &[Effect::DropSecrets]);
            let now = self.clock.now();
            if may_have_live_sessions(&account, now) {
                let mark = now.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
                self.state
                    .put(
                        &account_revoked_key(id),
                        mark.as_bytes(),
                        ACCOUNT_REVOKED_TTL,
                    )
                    .await?;
            }
            match self.accounts.update(&revoked(account, &cause, now)).await {
                Ok(stored) => {
                    let by = match cause.by {
                        RevokedBy::Campaign { .. } => "campaign",
                        RevokedBy::HelpDesk { .. } => "help_desk",
                    };
                    metrics::counter!("polis_enablement_revocations_total", "by" => by)
                        .increment(1);
                    tracing::info!(account = %id, by, "enablement revoked");
                    return Ok(stored);
                }
                Err(AccountError::Conflict) if attempt + 1 < LOGIN_UPDATE_TRIES => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AccountError::Conflict.into())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::accounts::{EnablementState, FiscalCode};
    use crate::clock::Clock as _;
    use crate::enablement::testing::fixture;

    fn help_desk(reason: &str) -> Revocation {
        Revocation {
            by: RevokedBy::HelpDesk {
                operator: "BNCLRA85C41F205X".into(),
            },
            reason: reason.into(),
        }
    }

    #[tokio::test]
    async fn a_revoked_enablement_loses_its_secrets_and_records_why() {
        let f = fixture().await;
        let account = f.enabled_account().await;
        assert!(account.cp_hash.is_some());
        let stored = f
            .service
            .revoke(account.id, help_desk("  richiesta dell'interessato  "))
            .await
            .unwrap();
        assert_eq!(stored.enablement_state, EnablementState::NotEnabled);
        assert_eq!(stored.cp_hash, None);
        assert!(stored.cp_history.is_empty());
        assert_eq!(stored.recovery_answer_hash, None);
        assert_eq!(stored.temp_cp, None);
        assert_eq!(stored.enabled_at, None);
        let record = stored.revocation.clone().unwrap();
        assert_eq!(record.reason, "richiesta dell'interessato");
        assert_eq!(record.at, f.clock.now());
        // The request data stay, to prefill the next abilitazione.
        assert_eq!(stored.id_document, account.id_document);
        // A second revocation is a stale step.
        assert!(matches!(
            f.service.revoke(account.id, help_desk("di nuovo")).await,
            Err(EnablementError::Step(_))
        ));
    }

    #[tokio::test]
    async fn live_sessions_are_marked_and_old_accounts_are_not() {
        let f = fixture().await;
        let account = f.enabled_account().await;
        f.accounts
            .touch_last_access(account.id, None, f.clock.now())
            .await
            .unwrap();
        f.service
            .revoke(account.id, help_desk("prova"))
            .await
            .unwrap();
        let mark = crate::state::account_revoked_at(f.state.as_ref(), account.id)
            .await
            .unwrap();
        assert_eq!(mark, Some(f.clock.now()));

        let cf = FiscalCode::parse("BNCGLI85M52F205H").unwrap();
        let old = f.enabled_account_for(cf).await;
        f.accounts
            .touch_last_access(old.id, None, f.clock.now() - chrono::Duration::days(9))
            .await
            .unwrap();
        f.service.revoke(old.id, help_desk("prova")).await.unwrap();
        assert_eq!(
            crate::state::account_revoked_at(f.state.as_ref(), old.id)
                .await
                .unwrap(),
            None,
            "nothing a login 9 days ago opened can be alive"
        );
    }

    #[tokio::test]
    async fn an_empty_or_overlong_reason_changes_nothing() {
        let f = fixture().await;
        let account = f.enabled_account().await;
        for reason in ["   ", &"x".repeat(MAX_REASON_CHARS + 1)] {
            assert!(matches!(
                f.service.revoke(account.id, help_desk(reason)).await,
                Err(EnablementError::RevocationReason)
            ));
        }
        let stored = f.service.account(account.id).await.unwrap();
        assert_eq!(stored, account);
    }
}
