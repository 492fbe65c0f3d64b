//! The steps of the abilitazione and the personal area as use cases: which page fits
//! which state ([`Page`], [`Step`]), the forms submitted (validated here, then one
//! transition of the machine and one compare-and-set write), the printable forms, and
//! the contacts of the personal area.

use uuid::Uuid;

use crate::accounts::{Account, EnablementState};

use super::cp;
use super::documents::modulo_pdf;
use super::forms::{Asked, ContactForm, RecoveryForm, RequestForm};
use super::machine::{self, Effect, Event};
use super::{EnablementError, EnablementService, Modulo};

/// The pages of the abilitazione and of the personal area, each shown only in some
/// states (any other goes to the current step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// Step 1, the request (contacts and identity document): editable until «Accetto» has
    /// sent the mail (from step 4 the account goes back to the review).
    Request,
    /// Step 2, the recovery question.
    RecoveryQuestion,
    /// Step 3, the review and «Conferma».
    Review,
    /// Step 4, the warnings, the modulo di adesione and «Accetto».
    Adesione,
    /// The printable forms (from «Conferma» on).
    Moduli,
    /// "E-mail sent".
    Sent,
    /// The mandatory change of the temporary CP and «Ripetizione invio».
    ChangeTempCp,
    /// "Abilitazione completata" and the personal area (data, CP, recovery).
    Enabled,
}

impl Page {
    /// The states in which this page is shown.
    pub fn shown_in(self) -> &'static [EnablementState] {
        use EnablementState as S;
        match self {
            Self::Request => &[
                S::NotEnabled,
                S::RequestData,
                S::RecoveryQuestion,
                S::Review,
                S::Confirmed,
                S::Accepted,
            ],
            Self::RecoveryQuestion => &[S::RecoveryQuestion, S::Review, S::Confirmed, S::Accepted],
            Self::Review => &[S::Review],
            Self::Adesione => &[S::Confirmed, S::Accepted],
            Self::Moduli => &[S::Confirmed, S::Accepted, S::TempCpSent, S::Enabled],
            Self::Sent | Self::ChangeTempCp => &[S::TempCpSent],
            Self::Enabled => &[S::Enabled],
        }
    }
}

/// What a page of an account shows, or the state whose step the person is at when the
/// page does not fit it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<T> {
    /// The page fits: its data.
    Show(T),
    /// The page does not fit an account in this state.
    Elsewhere(EnablementState),
}

/// A refused submission, with what its form needs to be shown again.
#[derive(Debug)]
pub struct Refusal<T> {
    /// Why it was refused.
    pub error: EnablementError,
    /// The data the form is shown with.
    pub shown: T,
}

impl EnablementService {
    /// The account behind `page`, or where the person is when the page does not fit.
    pub async fn page(&self, id: Uuid, page: Page) -> Result<Step<Account>, EnablementError> {
        let account = self.account(id).await?;
        Ok(if page.shown_in().contains(&account.enablement_state) {
            Step::Show(account)
        } else {
            Step::Elsewhere(account.enablement_state)
        })
    }

    /// One of the printable forms of the account, dated today.
    pub async fn modulo(&self, id: Uuid, which: Modulo) -> Result<Step<Vec<u8>>, EnablementError> {
        Ok(match self.page(id, Page::Moduli).await? {
            Step::Show(account) => Step::Show(modulo_pdf(&account, which, self.clock.now())?),
            Step::Elsewhere(state) => Step::Elsewhere(state),
        })
    }

    pub(super) async fn step(
        &self,
        id: Uuid,
        event: Event,
        write: impl FnOnce(&mut Account, &[Effect]),
    ) -> Result<Account, EnablementError> {
        let mut account = self.account(id).await?;
        let transition = machine::apply(account.enablement_state, event)?;
        write(&mut account, transition.effects);
        account.enablement_state = transition.next;
        let stored = self.accounts.update(&account).await?;
        super::count_step(stored.enablement_state);
        Ok(stored)
    }

    /// Step 1: the enablement request (contacts, identity document and the personal
    /// data `asked`, see [`Asked::for_login`]), validated against today's date.
    pub async fn submit_request(
        &self,
        id: Uuid,
        form: &RequestForm,
        asked: Asked,
    ) -> Result<Account, EnablementError> {
        let data = form
            .validate(self.clock.now().date_naive(), asked)
            .map_err(EnablementError::Form)?;
        self.step(id, Event::SubmitRequest, |account, effects| {
            data.contact.apply_to(account);
            data.personal.apply_to(account);
            account.id_document = Some(data.id_document);
            if effects.contains(&Effect::ClearTempCp) {
                account.temp_cp = None;
            }
        })
        .await
    }

    /// Step 2: the recovery question and answer (the answer is stored hashed).
    pub async fn submit_recovery(
        &self,
        id: Uuid,
        form: &RecoveryForm,
    ) -> Result<Account, EnablementError> {
        let data = form.validate().map_err(EnablementError::Form)?;
        let answer = data.answer.clone();
        let hash = self.argon2.run(move || cp::hash_answer(&answer)).await??;
        self.step(id, Event::SubmitRecovery, |account, effects| {
            account.recovery_question = Some(data.question);
            account.recovery_answer_hash = Some(hash);
            if effects.contains(&Effect::ClearTempCp) {
                account.temp_cp = None;
            }
        })
        .await
    }

    /// "Conferma" on the review page.
    pub async fn confirm(&self, id: Uuid) -> Result<Account, EnablementError> {
        self.step(id, Event::Confirm, |_, _| ()).await
    }

    /// Personal area: e-mail, phones, domicile (enabled accounts only). A refusal
    /// carries the account as read, to show the form again.
    pub async fn update_contacts(
        &self,
        id: Uuid,
        form: &ContactForm,
    ) -> Result<Step<Account>, Refusal<Option<Account>>> {
        let refused = |error, shown| Refusal { error, shown };
        let mut account = match self.page(id, Page::Enabled).await {
            Ok(Step::Show(account)) => account,
            Ok(Step::Elsewhere(state)) => return Ok(Step::Elsewhere(state)),
            Err(e) => return Err(refused(e, None)),
        };
        let data = match form.validate() {
            Ok(data) => data,
            Err(errors) => return Err(refused(EnablementError::Form(errors), Some(account))),
        };
        let read = account.clone();
        data.apply_to(&mut account);
        match self.accounts.update(&account).await {
            Ok(stored) => Ok(Step::Show(stored)),
            Err(e) => Err(refused(e.into(), Some(read))),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use chrono::TimeZone;

    use super::*;
    use crate::enablement::testing::fixture;

    fn request_form(expires_on: &str) -> RequestForm {
        RequestForm {
            contact: contact_form("mario.rossi@posta.example.it"),
            doc_kind: "Passaporto".to_owned(),
            doc_number: "YA1234567".to_owned(),
            doc_issuer: "Questura di Roma".to_owned(),
            doc_issued_on: "2020-01-15".to_owned(),
            doc_expires_on: expires_on.to_owned(),
            ..RequestForm::default()
        }
    }

    fn contact_form(email: &str) -> ContactForm {
        ContactForm {
            email: email.to_owned(),
            mobile: "+39 333 1234567".to_owned(),
            landline: String::new(),
            street: "Via Roma 1".to_owned(),
            postal_code: "00184".to_owned(),
            municipality: "Roma".to_owned(),
            province: "RM".to_owned(),
            nation: "Italia".to_owned(),
        }
    }

    #[test]
    fn every_state_has_a_page_and_the_moduli_follow_the_confirmation() {
        let pages = [
            Page::Request,
            Page::RecoveryQuestion,
            Page::Review,
            Page::Adesione,
            Page::Moduli,
            Page::Sent,
            Page::ChangeTempCp,
            Page::Enabled,
        ];
        for state in EnablementState::ALL {
            assert!(
                pages.iter().any(|p| p.shown_in().contains(&state)),
                "{state:?} has no page"
            );
        }
        assert!(!Page::Moduli.shown_in().contains(&EnablementState::Review));
        assert!(
            Page::Moduli
                .shown_in()
                .contains(&EnablementState::Confirmed)
        );
        // Editable until «Accetto» has sent the mail, not after.
        for state in [EnablementState::Confirmed, EnablementState::Accepted] {
            assert!(Page::Request.shown_in().contains(&state));
            assert!(Page::RecoveryQuestion.shown_in().contains(&state));
        }
        for state in [EnablementState::TempCpSent, EnablementState::Enabled] {
            assert!(!Page::Request.shown_in().contains(&state));
        }
    }

    #[tokio::test]
    async fn a_correction_after_conferma_goes_back_to_the_review() {
        for state in [EnablementState::Confirmed, EnablementState::Accepted] {
            let fx = fixture().await;
            let mut account = fx.account_in(state).await;
            // Accepted: a temporary CP was issued but its mail failed.
            account.temp_cp = Some(crate::accounts::TempCp {
                hmac: "mac".to_owned(),
                issued_at: chrono::Utc::now(),
                expires_at: chrono::Utc::now(),
            });
            let account = fx.accounts.update(&account).await.unwrap();
            let stored = fx
                .service
                .submit_request(account.id, &request_form("2030-01-01"), Asked::default())
                .await
                .unwrap();
            assert_eq!(
                stored.enablement_state,
                EnablementState::Review,
                "{state:?}"
            );
            assert_eq!(stored.id_document.unwrap().number, "YA1234567");
            assert_eq!(
                stored.temp_cp.is_none(),
                state == EnablementState::Accepted,
                "{state:?}: the CP whose mail failed is forgotten"
            );
        }
    }

    #[tokio::test]
    async fn a_page_shows_the_account_only_in_its_states() {
        let fx = fixture().await;
        let account = fx.account_in(EnablementState::Review).await;
        let shown = fx.service.page(account.id, Page::Review).await.unwrap();
        assert_eq!(shown, Step::Show(account.clone()));
        let other = fx.service.page(account.id, Page::Sent).await.unwrap();
        assert_eq!(other, Step::Elsewhere(EnablementState::Review));
        let gone = fx.service.page(uuid::Uuid::new_v4(), Page::Review).await;
        assert!(
            matches!(gone, Err(EnablementError::AccountGone)),
            "{gone:?}"
        );
    }

    #[tokio::test]
    async fn a_request_is_validated_against_the_clocks_date() {
        let fx = fixture().await;
        let account = fx.account_in(EnablementState::NotEnabled).await;
        // The clock says 2026-03-02: a document expiring 2026-03-01 is expired.
        let refused = fx
            .service
            .submit_request(account.id, &request_form("2026-03-01"), Asked::default())
            .await;
        match refused {
            Err(EnablementError::Form(errors)) => {
                assert!(errors.contains_key("doc_expires_on"), "{errors:?}")
            }
            other => panic!("expected field errors, got {other:?}"),
        }
        let stored = fx.service.account(account.id).await.unwrap();
        assert_eq!(stored.version, account.version, "nothing written");
        // A day earlier on the clock the same document is valid.
        fx.clock
            .set(chrono::Utc.with_ymd_and_hms(2026, 2, 28, 9, 0, 0).unwrap());
        let stored = fx
            .service
            .submit_request(account.id, &request_form("2026-03-01"), Asked::default())
            .await
            .unwrap();
        assert_eq!(stored.enablement_state, EnablementState::RecoveryQuestion);
        assert_eq!(stored.id_document.unwrap().number, "YA1234567");
    }

    #[tokio::test]
    async fn the_printable_forms_need_a_confirmed_request() {
        let fx = fixture().await;
        let account = fx.account_in(EnablementState::Review).await;
        let early = fx
            .service
            .modulo(account.id, Modulo::Adesione)
            .await
            .unwrap();
        assert_eq!(early, Step::Elsewhere(EnablementState::Review));
        fx.service.confirm(account.id).await.unwrap();
        match fx
            .service
            .modulo(account.id, Modulo::Adesione)
            .await
            .unwrap()
        {
            Step::Show(pdf) => assert!(pdf.starts_with(b"%PDF-")),
            other => panic!("expected the PDF, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn contacts_change_only_on_an_enabled_account_and_a_valid_form() {
        let fx = fixture().await;
        let account = fx.account_in(EnablementState::TempCpSent).await;
        let form = contact_form("nuovo@posta.example.it");
        let early = fx.service.update_contacts(account.id, &form).await.unwrap();
        assert_eq!(early, Step::Elsewhere(EnablementState::TempCpSent));

        let mut enabled = fx.service.account(account.id).await.unwrap();
        enabled.enablement_state = EnablementState::Enabled;
        let enabled = fx.accounts.update(&enabled).await.unwrap();
        let refusal = fx
            .service
            .update_contacts(account.id, &contact_form("not an address"))
            .await
            .unwrap_err();
        assert!(matches!(&refusal.error, EnablementError::Form(e) if e.contains_key("email")));
        assert_eq!(
            refusal.shown.as_ref(),
            Some(&enabled),
            "the account as read"
        );

        match fx.service.update_contacts(account.id, &form).await.unwrap() {
            Step::Show(stored) => {
                assert_eq!(stored.email.as_deref(), Some("nuovo@posta.example.it"));
                assert_eq!(stored.version, enabled.version + 1);
            }
            other => panic!("expected the stored account, got {other:?}"),
        }
    }
}
