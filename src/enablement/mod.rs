//! The SPID abilitazione (Path 2 of the domain spec) and the Codice Personale.
//!
//! - [`machine`]: the pure state machine (state + event → next state + effects);
//! - [`cp`]: temporary CP, CP rules, HMAC and argon2;
//! - [`forms`]: the posted forms, validated with Italian field messages;
//! - [`EnablementService`]: maps a verified SPID login to its account and applies the
//!   machine's effects (store writes, PDFs, e-mail).
//!
//! ## Resuming after a failure
//!
//! Every step writes the account with a compare-and-set on its `version`. Issuing a
//! temporary CP first **stores** its HMAC (state `accepted`, or `temp_cp_sent` for
//! resends and recoveries) and only then sends the e-mail: if the mail server fails,
//! the person sees a 503 page and posting again issues and sends a fresh CP (the old
//! plaintext is gone by design). Nothing is ever marked as sent before it was.
//!
//! ## Counters in the state store (shared by replicas)
//!
//! - `polis:att:tcp:<account>:<hmac prefix>`: tries on one temporary CP; at
//!   `max_attempts` that CP is locked until a new one is sent (expires with it);
//! - `polis:att:cp:<account>`: current-CP tries; lock for `lockout_seconds`;
//! - `polis:att:rec:<account>`: recovery answers; lock for `lockout_seconds`;
//! - `polis:resend:<account>`: resends asked in the last 24 h.
//!
//! A try is **counted before it is evaluated**: one `incr` (a single state-store
//! command) gives it its number, and only a number within `max_attempts` gets the
//! secret verified at all; a later one is refused as locked (429) without looking at
//! the secret, so the right one is refused too once locked. N parallel tries, on one
//! replica or many, get the numbers 1..=N and evaluate at most `max_attempts` secrets.
//! A right secret resets its counter with `delete_if_equals(key, its number)`: only if
//! no other try was counted since its own, so a success in the middle of a burst of
//! parallel tries does not give that burst a fresh allowance (the right try keeps its
//! slot until the lock window ends); a success on its own starts afresh, as before.
//! The temporary CP is the exception: it is consumed by its success, so its counter
//! is never reset then (only when the right temporary CP came with a new CP that
//! breaks the rules, which costs no try).
//!
//! ## Mail sent once
//!
//! The transitions that send a temporary CP («Accetto» and its retry, «Ripetizione
//! invio», the recovery) first claim `polis:send:<account>` with `put_if_absent` and a
//! random token (TTL [`SEND_CLAIM_TTL`], longer than the send may take: it is cut off
//! at 60 s); the claim is held until the new state is stored and the mail sent (or
//! failed), then released by its owner only
//! (`delete_if_equals` with the token). A post that finds the claim taken changes
//! nothing and gets [`EnablementError::Conflict`]; a post after the release sees the
//! new state (and the `version` compare-and-set refuses a stale one). So however many
//! posts race, one sends. The claim is per account rather than per `version`: the
//! sender's own write moves the version on while the mail is still being sent, and
//! `accepted` is also the state from which a failed mail is retried.

/// Codice Personale: temporary CP, rules, hashing.
pub mod cp;
/// The posted forms and their validation.
pub mod forms;
/// The pure enablement state machine.
pub mod machine;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::accounts::{
    Account, AccountError, AccountStore, EnablementState, FiscalCode, NewAccount, TempCp,
};
use crate::identity::LoginSession;
use crate::mail::{Attachment, MailError, Mailer, OutgoingMail};
use crate::pdf::{self, FormData, PdfError};
use crate::state::{StateError, StateStore};

use cp::{CpContext, CpError, CpKey, CpRule};
use forms::{ContactData, FieldErrors, RecoveryData, RequestData};
use machine::{Effect, Event, InvalidTransition};

/// SPID attributes without which no account is written.
pub const REQUIRED_ATTRIBUTES: [&str; 3] = ["fiscalNumber", "name", "familyName"];

/// Why an enablement operation failed. Each variant has a stable [`code`](Self::code).
#[derive(Debug, thiserror::Error)]
pub enum EnablementError {
    /// The login lacks attributes an account needs.
    #[error("SPID attributes missing: {0:?}")]
    MissingAttributes(Vec<&'static str>),
    /// The `fiscalNumber` is not a valid codice fiscale.
    #[error("fiscalNumber is not a valid codice fiscale")]
    InvalidFiscalCode,
    /// The step does not fit the account's state (a stale page, a replayed form).
    #[error(transparent)]
    Step(#[from] InvalidTransition),
    /// A form with field errors.
    #[error("form has {} invalid field(s)", .0.len())]
    Form(FieldErrors),
    /// Wrong temporary CP; `remaining` tries before the lock.
    #[error("wrong temporary CP ({remaining} tries left)")]
    TempCpWrong {
        /// Tries left.
        remaining: u32,
    },
    /// Too many wrong tries on this temporary CP: ask a new one.
    #[error("temporary CP locked")]
    TempCpLocked,
    /// The temporary CP has expired: ask a new one.
    #[error("temporary CP expired")]
    TempCpExpired,
    /// The new CP breaks rules.
    #[error("the new CP breaks {} rule(s)", .0.len())]
    CpRules(Vec<CpRule>),
    /// Wrong current CP.
    #[error("wrong CP ({remaining} tries left)")]
    CpWrong {
        /// Tries left.
        remaining: u32,
    },
    /// Too many wrong CPs: wait.
    #[error("CP locked")]
    CpLocked,
    /// Wrong recovery answer.
    #[error("wrong recovery answer ({remaining} tries left)")]
    RecoveryWrong {
        /// Tries left.
        remaining: u32,
    },
    /// Too many wrong answers: wait.
    #[error("recovery locked")]
    RecoveryLocked,
    /// Too many temporary CPs sent in 24 hours.
    #[error("too many temporary CPs sent today")]
    ResendLimit,
    /// The account has no e-mail address to send the CP to.
    #[error("the account has no e-mail address")]
    NoEmail,
    /// The account changed meanwhile (another tab, a double post): reload.
    #[error("the account changed meanwhile")]
    Conflict,
    /// The account of the session no longer exists.
    #[error("account not found")]
    AccountGone,
    /// The account store failed.
    #[error(transparent)]
    Accounts(AccountError),
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The mail could not be sent (the step can be repeated).
    #[error(transparent)]
    Mail(#[from] MailError),
    /// A PDF could not be produced.
    #[error(transparent)]
    Pdf(#[from] PdfError),
    /// Hashing or key failure.
    #[error(transparent)]
    Cp(#[from] CpError),
    /// The argon2 pool is saturated (503 with Retry-After).
    #[error(transparent)]
    Busy(#[from] crate::blocking::PoolError),
    /// A blocking task failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<AccountError> for EnablementError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Conflict => Self::Conflict,
            AccountError::NotFound => Self::AccountGone,
            other => Self::Accounts(other),
        }
    }
}

impl EnablementError {
    /// A stable code for pages and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingAttributes(_) => "POLIS_SPID_ATTRIBUTES_MISSING",
            Self::InvalidFiscalCode => "POLIS_SPID_FISCAL_CODE_INVALID",
            Self::Step(e) => e.code(),
            Self::Form(_) => "POLIS_FORM_INVALID",
            Self::TempCpWrong { .. } => "POLIS_TEMP_CP_WRONG",
            Self::TempCpLocked => "POLIS_TEMP_CP_LOCKED",
            Self::TempCpExpired => "POLIS_TEMP_CP_EXPIRED",
            Self::CpRules(_) => "POLIS_CP_RULES",
            Self::CpWrong { .. } => "POLIS_CP_WRONG",
            Self::CpLocked => "POLIS_CP_LOCKED",
            Self::RecoveryWrong { .. } => "POLIS_RECOVERY_WRONG",
            Self::RecoveryLocked => "POLIS_RECOVERY_LOCKED",
            Self::ResendLimit => "POLIS_RESEND_LIMIT",
            Self::NoEmail => "POLIS_NO_EMAIL",
            Self::Conflict => "POLIS_ACCOUNT_CONFLICT",
            Self::AccountGone => "POLIS_SESSION_REQUIRED",
            Self::Accounts(e) => e.code(),
            Self::State(StateError::Unavailable(_)) => "POLIS_STATE_UNAVAILABLE",
            Self::State(_) => "POLIS_STATE_ERROR",
            Self::Mail(_) => "POLIS_MAIL_UNAVAILABLE",
            Self::Pdf(e) => e.code(),
            Self::Cp(e) => e.code(),
            Self::Busy(e) => e.code(),
            Self::Internal(_) => "POLIS_INTERNAL",
        }
    }
}

/// Settings of the service, from `[cp]`.
#[derive(Debug, Clone)]
pub struct EnablementSettings {
    /// Validity of a temporary CP.
    pub temp_cp_ttl: Duration,
    /// Wrong tries before a lock.
    pub max_attempts: u32,
    /// Lock duration for the CP and the recovery answer.
    pub lockout: Duration,
    /// Resends («Ripetizione invio») per account per 24 hours.
    pub max_resends_per_day: u32,
    /// The gateway's public URL, quoted in e-mails.
    pub public_url: String,
}

/// Which printable form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modulo {
    /// Modulo di adesione.
    Adesione,
    /// Modulo di delega.
    Delega,
}

/// The enablement service.
pub struct EnablementService {
    /// Bounded pool for argon2 (CP and recovery-answer hashes).
    argon2: crate::blocking::BlockingPool,
    accounts: Arc<dyn AccountStore>,
    state: Arc<dyn StateStore>,
    mailer: Arc<dyn Mailer>,
    key: Arc<CpKey>,
    settings: EnablementSettings,
}

impl std::fmt::Debug for EnablementService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnablementService")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

const DAY: Duration = Duration::from_secs(24 * 3600);
/// How long a claim on a mail-sending transition lives if its owner never releases it
/// (a crashed replica): longer than storing the state and sending one message can take,
/// since the send is cut off at [`SEND_DEADLINE`].
pub const SEND_CLAIM_TTL: Duration = Duration::from_secs(120);
/// The longest one temporary-CP message may take to send (each SMTP command also has
/// `mail.transport.timeout_ms`, 10 s by default); past it the send is abandoned as
/// `Unavailable` (the step can be repeated), well before the claim could expire.
const SEND_DEADLINE: Duration = Duration::from_secs(60);
/// How often a login retries its account update when the account changed meanwhile.
const LOGIN_UPDATE_TRIES: usize = 5;

fn to_std(d: chrono::Duration) -> Duration {
    d.to_std().unwrap_or(Duration::ZERO)
}

/// `dd/mm/yyyy` for the forms.
fn italian_date(d: chrono::NaiveDate) -> String {
    d.format("%d/%m/%Y").to_string()
}

/// The reference code printed on the forms: stable per account.
pub fn reference_code(account: &Account) -> String {
    let digest = hex::encode_upper(openssl::sha::sha256(account.id.as_bytes()));
    let short: String = digest.chars().take(10).collect();
    format!("IOL-{short}")
}

impl EnablementService {
    /// Builds the service.
    pub fn new(
        accounts: Arc<dyn AccountStore>,
        state: Arc<dyn StateStore>,
        mailer: Arc<dyn Mailer>,
        key: CpKey,
        settings: EnablementSettings,
        argon2: crate::blocking::BlockingPool,
    ) -> Self {
        Self {
            accounts,
            state,
            mailer,
            key: Arc::new(key),
            settings,
            argon2,
        }
    }

    /// The account store.
    pub fn accounts(&self) -> &Arc<dyn AccountStore> {
        &self.accounts
    }

    /// The settings.
    pub fn settings(&self) -> &EnablementSettings {
        &self.settings
    }

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

    /// The account of a session.
    pub async fn account(&self, id: Uuid) -> Result<Account, EnablementError> {
        self.accounts
            .find_by_id(id)
            .await?
            .ok_or(EnablementError::AccountGone)
    }

    async fn step(
        &self,
        id: Uuid,
        event: Event,
        write: impl FnOnce(&mut Account, &[Effect]),
    ) -> Result<Account, EnablementError> {
        let mut account = self.account(id).await?;
        let transition = machine::apply(account.enablement_state, event)?;
        write(&mut account, transition.effects);
        account.enablement_state = transition.next;
        Ok(self.accounts.update(&account).await?)
    }

    /// Step 2: the enablement request (contacts and identity document).
    pub async fn submit_request(
        &self,
        id: Uuid,
        data: RequestData,
    ) -> Result<Account, EnablementError> {
        self.step(id, Event::SubmitRequest, |account, _| {
            data.contact.apply_to(account);
            account.id_document = Some(data.id_document);
        })
        .await
    }

    /// Step 3: the recovery question and answer (the answer is stored hashed).
    pub async fn submit_recovery(
        &self,
        id: Uuid,
        data: RecoveryData,
    ) -> Result<Account, EnablementError> {
        let answer = data.answer.clone();
        let hash = self.argon2.run(move || cp::hash_answer(&answer)).await??;
        self.step(id, Event::SubmitRecovery, |account, _| {
            account.recovery_question = Some(data.question);
            account.recovery_answer_hash = Some(hash);
        })
        .await
    }

    /// "Conferma" on the review page.
    pub async fn confirm(&self, id: Uuid) -> Result<Account, EnablementError> {
        self.step(id, Event::Confirm, |_, _| ()).await
    }

    /// "Accetto": issues the temporary CP and sends it with both forms. Posting again
    /// after a failed mail retries with a fresh CP.
    pub async fn accept(&self, id: Uuid, now: DateTime<Utc>) -> Result<Account, EnablementError> {
        self.claimed(id, async {
            let account = self.account(id).await?;
            let event = if account.enablement_state == EnablementState::Accepted {
                Event::RetryDelivery
            } else {
                Event::Accept
            };
            let account = self.issue_and_send(account, event, now).await?;
            // Delivered: only now the state says so.
            self.step(account.id, Event::TempCpDelivered, |_, _| ())
                .await
        })
        .await
    }

    /// "Ripetizione invio Codice Personale Temporaneo": a new temporary CP replaces
    /// the old one, which stops working.
    pub async fn resend(&self, id: Uuid, now: DateTime<Utc>) -> Result<Account, EnablementError> {
        self.claimed(id, async {
            let account = self.account(id).await?;
            self.issue_and_send(account, Event::ResendTempCp, now).await
        })
        .await
    }

    /// Runs `work` (a transition that sends mail) holding the account's send claim, so
    /// that of any number of racing posts one sends (see the module documentation). A
    /// post that finds the claim taken gets [`EnablementError::Conflict`] and changes
    /// nothing. The claim is released by its owner whatever `work` returned.
    async fn claimed<T>(
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
    async fn issue_and_send(
        &self,
        mut account: Account,
        event: Event,
        now: DateTime<Utc>,
    ) -> Result<Account, EnablementError> {
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
        let account = self.accounts.update(&account).await?;
        if transition.effects.contains(&Effect::SendTempCpMail) {
            let mail = self.temp_cp_mail(&account, &email, &temp, now)?;
            tokio::time::timeout(SEND_DEADLINE, self.mailer.send(&mail))
                .await
                .map_err(|_| {
                    MailError::Unavailable(format!(
                        "no answer within {} s",
                        SEND_DEADLINE.as_secs()
                    ))
                })??;
        }
        Ok(account)
    }

    fn temp_cp_mail(
        &self,
        account: &Account,
        email: &str,
        temp: &str,
        now: DateTime<Utc>,
    ) -> Result<OutgoingMail, EnablementError> {
        let expires = account
            .temp_cp
            .as_ref()
            .map(|t| t.expires_at.format("%d/%m/%Y %H:%M UTC").to_string())
            .unwrap_or_default();
        let text_body = format!(
            "Gentile {given} {family},\n\n\
             ecco il Codice Personale temporaneo per Istanze OnLine.\n\n\
             Codice Personale temporaneo: {temp}\n\n\
             Il codice vale fino al {expires}. Al prossimo accesso con SPID su\n\
             {url} ti sarà chiesto di sostituirlo con un Codice Personale scelto da te.\n\n\
             Utente: {username}\n\
             Codice di riferimento: {reference}\n\n\
             In allegato il modulo di adesione e il modulo di delega: conservali.\n\
             Non è necessario recarsi presso una scuola: l'identità è già stata verificata\n\
             con SPID.\n\n\
             Se non hai chiesto tu questo codice, ignora questo messaggio e accedi al\n\
             servizio per modificare il tuo Codice Personale.\n\n\
             Istanze OnLine – Ministero dell'Istruzione e del Merito\n\
             (messaggio automatico, non rispondere)\n",
            given = account.given_name,
            family = account.family_name,
            url = self.settings.public_url,
            username = account.username,
            reference = reference_code(account),
        );
        let adesione = self.modulo(account, Modulo::Adesione, now)?;
        let delega = self.modulo(account, Modulo::Delega, now)?;
        Ok(OutgoingMail {
            to: vec![email.to_owned()],
            subject: "Istanze OnLine – Codice Personale temporaneo".to_owned(),
            text_body,
            html_body: None,
            attachments: vec![
                Attachment {
                    filename: "modulo-adesione.pdf".to_owned(),
                    content_type: "application/pdf".to_owned(),
                    bytes: adesione,
                },
                Attachment {
                    filename: "modulo-delega.pdf".to_owned(),
                    content_type: "application/pdf".to_owned(),
                    bytes: delega,
                },
            ],
        })
    }

    /// One of the printable forms for an account.
    pub fn modulo(
        &self,
        account: &Account,
        which: Modulo,
        now: DateTime<Utc>,
    ) -> Result<Vec<u8>, EnablementError> {
        let data = form_data(account, now);
        Ok(match which {
            Modulo::Adesione => pdf::modulo_adesione(&data)?,
            Modulo::Delega => pdf::modulo_delega(&data)?,
        })
    }

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

    fn temp_key(account: &Account, temp: &TempCp) -> String {
        let prefix: String = temp.hmac.chars().take(16).collect();
        format!("polis:att:tcp:{}:{prefix}", account.id)
    }

    /// The mandatory change of the temporary CP: checks it (lock, expiry, HMAC), the
    /// rules of the new CP, then stores the new CP (argon2) and enables the account.
    pub async fn change_temp_cp(
        &self,
        id: Uuid,
        temp_cp: &str,
        new_cp: &str,
        repeat: &str,
        now: DateTime<Utc>,
    ) -> Result<Account, EnablementError> {
        let mut account = self.account(id).await?;
        let transition = machine::apply(account.enablement_state, Event::ChangeTempCp)?;
        let temp = account
            .temp_cp
            .clone()
            .ok_or(EnablementError::TempCpExpired)?;
        if now >= temp.expires_at {
            return Err(EnablementError::TempCpExpired);
        }
        let counter = Self::temp_key(&account, &temp);
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
        // A new CP: the tries on the old one no longer matter. (The temporary CP's own
        // counter expires with it; it is consumed now.)
        self.state
            .delete(&format!("polis:att:cp:{}", account.id))
            .await?;
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
                    fiscal_code: account.fiscal_code.as_str(),
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
        let counter = format!("polis:att:cp:{}", account.id);
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
    /// e-mail and the mandatory change.
    pub async fn recover(
        &self,
        id: Uuid,
        answer: &str,
        now: DateTime<Utc>,
    ) -> Result<Account, EnablementError> {
        let account = self.account(id).await?;
        machine::apply(account.enablement_state, Event::RecoverCp)?;
        let counter = format!("polis:att:rec:{}", account.id);
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
        self.claimed(
            account.id,
            self.issue_and_send(account, Event::RecoverCp, now),
        )
        .await
    }

    /// Personal area: e-mail, phones, domicile.
    pub async fn update_contacts(
        &self,
        id: Uuid,
        data: ContactData,
    ) -> Result<Account, EnablementError> {
        let mut account = self.account(id).await?;
        data.apply_to(&mut account);
        Ok(self.accounts.update(&account).await?)
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

fn form_data(account: &Account, now: DateTime<Utc>) -> FormData {
    let domicile = account.domicile.as_ref().map(|d| {
        let province = if d.province.is_empty() {
            String::new()
        } else {
            format!(" ({})", d.province)
        };
        format!(
            "{}, {} {}{}, {}",
            d.street, d.postal_code, d.municipality, province, d.nation
        )
    });
    let phone = match (&account.phones.mobile, &account.phones.landline) {
        (Some(m), Some(l)) => Some(format!("{m} / {l}")),
        (Some(p), None) | (None, Some(p)) => Some(p.clone()),
        (None, None) => None,
    };
    let id_document = account.id_document.as_ref().map(|d| {
        format!(
            "{} n. {}, rilasciato da {} il {}, scadenza {}",
            d.kind,
            d.number,
            d.issuer,
            italian_date(d.issued_on),
            italian_date(d.expires_on)
        )
    });
    FormData {
        given_name: account.given_name.clone(),
        family_name: account.family_name.clone(),
        fiscal_code: account.fiscal_code.as_str().to_owned(),
        birth_date: account.birth_date.map(italian_date),
        birth_place: account.birth_place.clone(),
        email: account.email.clone(),
        domicile,
        phone,
        id_document,
        reference_code: reference_code(account),
        date: italian_date(now.date_naive()),
        username: Some(account.username.clone()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::BTreeMap;

    use super::*;
    use crate::saml::Level;

    fn login(attrs: &[(&str, &str)]) -> LoginSession {
        LoginSession {
            idp_entity_id: "https://idp.example".into(),
            name_id: "_n".into(),
            name_qualifier: "https://idp.example".into(),
            session_index: None,
            level: Level::L2,
            attributes: attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), vec![(*v).to_owned()]))
                .collect::<BTreeMap<_, _>>(),
            authenticated_at: Utc::now(),
        }
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

    #[test]
    fn reference_codes_are_stable_and_short() {
        let cf = FiscalCode::parse("RSSMRA80A01H501U").unwrap();
        let a = crate::accounts::tests_support::sample(cf);
        assert_eq!(reference_code(&a), reference_code(&a.clone()));
        assert_eq!(reference_code(&a).len(), 14);
    }
}
