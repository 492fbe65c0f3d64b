//! The transitions that issue a temporary CP and mail it («Accetto» and its retry,
//! «Ripetizione invio», the recovery), each under the account's send claim so that of
//! any number of racing posts one sends (see "Mail sent once" in the module
//! documentation of `enablement`).

use std::time::Duration;

use uuid::Uuid;

use crate::accounts::{Account, EnablementState, TempCp};
use crate::mail::MailError;

use super::cp;
use super::machine::{self, Effect, Event};
use super::{EnablementError, EnablementService, SEND_CLAIM_TTL};

const DAY: Duration = Duration::from_secs(24 * 3600);
/// The longest one temporary-CP message may take to send (each SMTP command also has
/// `mail.transport.timeout_ms`, 10 s by default); past it the send is abandoned as
/// `Unavailable` (the step can be repeated), well before the claim could expire.
const SEND_DEADLINE: Duration = Duration::from_secs(60);

impl EnablementService {
    /// "Accetto": issues the temporary CP and sends it with both forms. Posting again
    /// after a failed mail retries with a fresh CP.
    pub async fn accept(&self, id: Uuid) -> Result<Account, EnablementError> {
        self.claimed(id, async {
            let account = self.account(id).await?;
            let event = if account.enablement_state == EnablementState::Accepted {
                Event::RetryDelivery
            } else {
                Event::Accept
            };
            let account = self.issue_and_send(account, event).await?;
            // Delivered: only now the state says so.
            self.step(account.id, Event::TempCpDelivered, |_, _| ())
                .await
        })
        .await
    }

    /// "Ripetizione invio Codice Personale Temporaneo": a new temporary CP replaces
    /// the old one, which stops working.
    pub async fn resend(&self, id: Uuid) -> Result<Account, EnablementError> {
        self.claimed(id, async {
            let account = self.account(id).await?;
            self.issue_and_send(account, Event::ResendTempCp).await
        })
        .await
    }

    /// Runs `work` (a transition that sends mail) holding the account's send claim, so
    /// that of any number of racing posts one sends (see the module documentation). A
    /// post that finds the claim taken gets [`EnablementError::Conflict`] and changes
    /// nothing. The claim is released by its owner whatever `work` returned.
    pub(super) async fn claimed<T>(
        &self,
        id: Uuid,
        work: impl std::future::Future<Output = Result<T, EnablementError>>,
    ) -> Result<T, EnablementError> {
        let key = format!("polis:send:{id}");
        let token = crate::saml::ids::new_token(16);
        if !self
            .state
            .put_if_absent(&key, token.as_bytes(), SEND_CLAIM_TTL)
            .await?
        {
            return Err(EnablementError::Conflict);
        }
        let outcome = work.await;
        if let Err(e) = self.state.delete_if_equals(&key, token.as_bytes()).await {
            // The claim expires by itself; the work is done either way.
            tracing::warn!(target: "enablement", "send claim not released: {e}");
        }
        outcome
    }

    /// Applies `event` (which must issue and send a temporary CP): checks the daily
    /// limit, stores the HMAC with the new state, then sends the mail.
    pub(super) async fn issue_and_send(
        &self,
        mut account: Account,
        event: Event,
    ) -> Result<Account, EnablementError> {
        let now = self.clock.now();
        let transition = machine::apply(account.enablement_state, event)?;
        let email = account.email.clone().ok_or(EnablementError::NoEmail)?;
        if event == Event::ResendTempCp {
            // Counted (one INCR) before anything is stored or sent, under the send claim:
            // the limit stops mail bombing even when sends fail, and a racing post that
            // lost the claim does not use up the allowance.
            let sent = self
                .state
                .incr(&format!("polis:resend:{}", account.id), DAY)
                .await?;
            if sent > u64::from(self.settings.max_resends_per_day) {
                return Err(EnablementError::ResendLimit);
            }
        }
        let temp = cp::generate_temp_cp();
        let ttl = chrono::Duration::from_std(self.settings.temp_cp_ttl)
            .map_err(|e| EnablementError::Internal(e.to_string()))?;
        account.temp_cp = Some(TempCp {
            hmac: self.key.mac(&temp),
            issued_at: now,
            expires_at: now + ttl,
        });
        account.enablement_state = transition.next;
        if matches!(event, Event::Accept | Event::RetryDelivery) {
            // «Accetto» accepts the texts in force now: their version goes with it.
            account.terms = Some(crate::accounts::TermsAcceptance {
                version: self.terms.version.clone(),
                accepted_at: now,
            });
        }
        let account = self.accounts.update(&account).await?;
        if transition.effects.contains(&Effect::SendTempCpMail) {
            let mail = self.temp_cp_mail(&account, &email, &temp, now)?;
            let sent = tokio::time::timeout(SEND_DEADLINE, self.mailer.send(&mail))
                .await
                .map_err(|_| {
                    MailError::Unavailable(format!(
                        "no answer within {} s",
                        SEND_DEADLINE.as_secs()
                    ))
                })
                .and_then(|r| r);
            let outcome = match &sent {
                Ok(()) => "sent",
                Err(e) => e.code(),
            };
            metrics::counter!("polis_mail_total", "kind" => "temp_cp", "outcome" => outcome)
                .increment(1);
            sent?;
        }
        super::count_step(account.enablement_state);
        Ok(account)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::clock::Clock as _;
    use crate::enablement::testing::{TEMP_CP_TTL, fixture};

    #[tokio::test]
    async fn accetto_issues_the_temporary_cp_at_the_clocks_time() {
        let fx = fixture().await;
        let account = fx.account_in(EnablementState::Confirmed).await;
        let now = fx.clock.now();
        let sent = fx.service.accept(account.id).await.unwrap();
        assert_eq!(sent.enablement_state, EnablementState::TempCpSent);
        let temp = sent.temp_cp.unwrap();
        assert_eq!(temp.issued_at, now);
        assert_eq!(
            temp.expires_at,
            now + chrono::Duration::from_std(TEMP_CP_TTL).unwrap()
        );
        let mails = fx.mails.sent();
        assert_eq!(mails.len(), 1);
        assert!(
            // 09:00 UTC is 10:00 in Rome in March (CET, before the switch to CEST).
            mails[0]
                .text_body
                .contains("5 marzo 2026, 10:00 (ora italiana)"),
            "the expiry in the message: {}",
            mails[0].text_body
        );
        // A second «Accetto» is a stale step and sends nothing.
        let again = fx.service.accept(account.id).await;
        assert!(matches!(again, Err(EnablementError::Step(_))), "{again:?}");
        assert_eq!(fx.mails.sent().len(), 1);
    }

    #[tokio::test]
    async fn resends_stop_at_the_daily_limit() {
        let fx = fixture().await;
        let account = fx.account_in(EnablementState::TempCpSent).await;
        for n in 1..=5 {
            fx.service.resend(account.id).await.unwrap();
            assert_eq!(fx.mails.sent().len(), n);
        }
        let refused = fx.service.resend(account.id).await;
        assert!(
            matches!(refused, Err(EnablementError::ResendLimit)),
            "{refused:?}"
        );
        assert_eq!(fx.mails.sent().len(), 5, "no sixth message");
    }
}
