//! The help-desk console's use cases (`/assistenza`): who may use it, looking a person
//! up, what the console shows of an account, and the actions, each audited.
//!
//! - **Access** ([`HelpdeskService::staff`]): the support person's own browser
//!   session, opened by a SPID (or CIE) login of level 2 or more, whose codice fiscale
//!   `[helpdesk]` lists as an operator or a supervisor. The only way to a [`Staff`].
//! - **Roles** ([`Role::may`]): an operator looks people up, unlocks the temporary CP,
//!   the CP and the recovery answer, and sends a new temporary CP; a supervisor also
//!   revokes an enablement (it drops the person's secrets and ends their sessions:
//!   not undone by another click). Nobody acts on their own account.
//! - **What is shown** ([`Dossier`]): the account as [`Profile`] — every secret only as
//!   "set / not set", no hash, no HMAC, nothing the console could leak —, the lock
//!   counters (read without counting), the last logins from the transaction log
//!   ([`LoginHistory`]) and the account's audit entries.
//! - **Actions** ([`HelpdeskService::act`]): a reason is required (at most
//!   [`MAX_REASON_CHARS`], no control characters). The audit entry is recorded
//!   *before* the action runs and finished with its outcome, so an action whose record
//!   cannot be written is not taken. The person reads the done ones, without the
//!   support person's identity, in their personal area ([`HelpdeskService::interventions`]).

mod history;

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

pub use crate::enablement::MAX_REASON_CHARS;
pub use crate::txlog::{LoginSummary, TxOutcome};
pub use history::{LoginHistory, TxLogHistory};

use crate::accounts::{
    Account, AccountError, AccountStore, AuditEntry, AuditOutcome, EnablementState, FiscalCode,
    HelpdeskAction, HelpdeskAudit, RevocationRecord,
};
use crate::clock::SharedClock;
use crate::enablement::{EnablementError, EnablementService, Lock, Locks, Revocation, RevokedBy};
use crate::identity::LoginSession;

/// How many logins the console lists.
pub const LOGINS_SHOWN: usize = 10;
/// How many audit entries the console and the personal area list.
pub const AUDIT_SHOWN: u32 = 50;

/// `[helpdesk]`: who holds which role, and how far back the last logins are read.
/// Empty lists: the console is off (`/assistenza` answers 404).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HelpdeskSettings {
    /// Codici fiscali of the operators (upper case, validated).
    pub operators: BTreeSet<String>,
    /// Codici fiscali of the supervisors (upper case, validated).
    pub supervisors: BTreeSet<String>,
    /// Days of the transaction log the last logins are read from.
    pub login_history_days: u32,
}

impl HelpdeskSettings {
    /// Whether anyone may use the console.
    pub fn enabled(&self) -> bool {
        !(self.operators.is_empty() && self.supervisors.is_empty())
    }

    /// The role of a codice fiscale, if it has one.
    pub fn role_of(&self, fiscal_code: &str) -> Option<Role> {
        if self.supervisors.contains(fiscal_code) {
            Some(Role::Supervisor)
        } else if self.operators.contains(fiscal_code) {
            Some(Role::Operator)
        } else {
            None
        }
    }
}

/// A role of the help desk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Looks up, unlocks, sends a new temporary CP.
    Operator,
    /// What an operator does, and revokes an enablement.
    Supervisor,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::Supervisor => "supervisor",
        }
    }

    /// The Italian label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Operator => "operatore",
            Self::Supervisor => "supervisore",
        }
    }

    /// Whether this role may take `action`.
    pub fn may(self, action: HelpdeskAction) -> bool {
        match action {
            HelpdeskAction::Revoke => self == Self::Supervisor,
            HelpdeskAction::UnlockTempCp
            | HelpdeskAction::UnlockCp
            | HelpdeskAction::UnlockRecovery
            | HelpdeskAction::ResendTempCp => true,
        }
    }
}

/// A support person allowed in the console: built only by [`HelpdeskService::staff`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staff {
    fiscal_code: String,
    role: Role,
}

impl Staff {
    /// Their codice fiscale.
    pub fn fiscal_code(&self) -> &str {
        &self.fiscal_code
    }

    /// Their role.
    pub fn role(&self) -> Role {
        self.role
    }
}

/// Why a console request was refused. Each variant has a stable [`code`](Self::code).
#[derive(Debug, thiserror::Error)]
pub enum HelpdeskError {
    /// The session's login is below level 2.
    #[error("the help desk needs a level 2 login")]
    Level,
    /// The session's codice fiscale holds no role (or the login has none).
    #[error("not a member of the help desk")]
    Forbidden,
    /// The role may not take this action.
    #[error("the role {0} may not {1}")]
    Role(&'static str, HelpdeskAction),
    /// A support person acting on their own account.
    #[error("a help-desk action on one's own account")]
    OwnAccount,
    /// The lookup text is neither a codice fiscale nor a username.
    #[error("not a codice fiscale or a username")]
    Query,
    /// No such account.
    #[error("no such account")]
    NotFound,
    /// The reason is missing, too long or has control characters.
    #[error("the reason is required (at most {MAX_REASON_CHARS} characters)")]
    Reason,
    /// The action does not fit the account now (the message says why, in Italian).
    #[error("not applicable: {0}")]
    NotApplicable(&'static str),
    /// The enablement service refused or failed.
    #[error(transparent)]
    Enablement(#[from] EnablementError),
    /// The account database (audit log) failed.
    #[error(transparent)]
    Accounts(#[from] AccountError),
    /// The transaction log could not be read.
    #[error("transaction log: {0}")]
    History(String),
}

impl HelpdeskError {
    /// A stable code for pages and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Level => "POLIS_HELPDESK_LEVEL",
            Self::Forbidden => "POLIS_HELPDESK_FORBIDDEN",
            Self::Role(..) => "POLIS_HELPDESK_ROLE",
            Self::OwnAccount => "POLIS_HELPDESK_OWN_ACCOUNT",
            Self::Query => "POLIS_HELPDESK_QUERY",
            Self::NotFound => "POLIS_HELPDESK_NOT_FOUND",
            Self::Reason => "POLIS_HELPDESK_REASON",
            Self::NotApplicable(_) => "POLIS_HELPDESK_NOT_APPLICABLE",
            Self::Enablement(e) => e.code(),
            Self::Accounts(e) => e.code(),
            Self::History(_) => "POLIS_TXLOG_UNREADABLE",
        }
    }
}

/// An account as the console shows it: no secret, no hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The account id.
    pub id: Uuid,
    /// The username.
    pub username: String,
    /// The codice fiscale (none for an eIDAS account).
    pub fiscal_code: Option<String>,
    /// The eIDAS identifier, for an eIDAS account.
    pub eidas_identifier: Option<String>,
    /// Nome and cognome.
    pub name: String,
    /// The reference e-mail address.
    pub email: Option<String>,
    /// The state.
    pub state: EnablementState,
    /// Whether a CP is set.
    pub has_cp: bool,
    /// Whether a recovery answer is set.
    pub has_recovery: bool,
    /// When the temporary CP in force was issued and expires.
    pub temp_cp: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Enabled.
    pub enabled_at: Option<DateTime<Utc>>,
    /// Last login.
    pub last_access_at: Option<DateTime<Utc>>,
    /// The last revocation.
    pub revocation: Option<RevocationRecord>,
}

impl Profile {
    fn of(account: &Account) -> Self {
        Self {
            id: account.id,
            username: account.username.clone(),
            fiscal_code: account.fiscal_code_str().map(str::to_owned),
            eidas_identifier: account.eidas_identifier().map(str::to_owned),
            name: format!("{} {}", account.given_name, account.family_name),
            email: account.email.clone(),
            state: account.enablement_state,
            has_cp: account.cp_hash.is_some(),
            has_recovery: account.recovery_answer_hash.is_some(),
            temp_cp: account
                .temp_cp
                .as_ref()
                .map(|t| (t.issued_at, t.expires_at)),
            created_at: account.created_at,
            enabled_at: account.enabled_at,
            last_access_at: account.last_access_at,
            revocation: account.revocation.clone(),
        }
    }
}

/// What the console shows of an account.
#[derive(Debug, Clone)]
pub struct Dossier {
    /// The account, without secrets.
    pub profile: Profile,
    /// Its lock counters.
    pub locks: Locks,
    /// Its last logins, newest first (none for an account without codice fiscale).
    pub logins: Vec<LoginSummary>,
    /// Its audit entries, newest first.
    pub audit: Vec<AuditEntry>,
    /// The actions the support person may take on it now.
    pub actions: Vec<HelpdeskAction>,
}

/// An intervention as the person reads it: when, what, why (not who).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intervention {
    /// When.
    pub at: DateTime<Utc>,
    /// What.
    pub action: HelpdeskAction,
    /// Why.
    pub reason: String,
}

/// The console's service.
pub struct HelpdeskService {
    settings: HelpdeskSettings,
    enablement: Arc<EnablementService>,
    audit: Arc<dyn HelpdeskAudit>,
    history: Arc<dyn LoginHistory>,
    clock: SharedClock,
}

impl std::fmt::Debug for HelpdeskService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelpdeskService")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The reason as kept: trimmed; refused when empty, too long or with control
/// characters other than line breaks and tabs.
fn checked_reason(reason: &str) -> Result<String, HelpdeskError> {
    let reason = reason.trim();
    let bad = |c: char| c.is_control() && !matches!(c, '\n' | '\r' | '\t');
    if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS || reason.chars().any(bad) {
        return Err(HelpdeskError::Reason);
    }
    Ok(reason.to_owned())
}

/// Why `action` does not fit `account` now, if it does not.
fn not_applicable(account: &Account, action: HelpdeskAction) -> Option<&'static str> {
    match action {
        HelpdeskAction::UnlockTempCp if account.temp_cp.is_none() => {
            Some("Non c'è un Codice Personale temporaneo in vigore da sbloccare.")
        }
        HelpdeskAction::ResendTempCp if account.enablement_state != EnablementState::TempCpSent => {
            Some(
                "Un nuovo Codice Personale temporaneo si può inviare solo mentre la persona deve ancora sostituire quello ricevuto.",
            )
        }
        HelpdeskAction::ResendTempCp if account.email.is_none() => {
            Some("L'account non ha un indirizzo e-mail a cui inviare il Codice Personale.")
        }
        HelpdeskAction::Revoke if account.enablement_state == EnablementState::NotEnabled => Some(
            "L'account non è abilitato né ha un'abilitazione in corso: non c'è nulla da revocare.",
        ),
        _ => None,
    }
}

impl HelpdeskService {
    /// The service over the enablement (accounts, counters, mail), the audit log and
    /// the login history.
    pub fn new(
        settings: HelpdeskSettings,
        enablement: Arc<EnablementService>,
        audit: Arc<dyn HelpdeskAudit>,
        history: Arc<dyn LoginHistory>,
        clock: SharedClock,
    ) -> Self {
        Self {
            settings,
            enablement,
            audit,
            history,
            clock,
        }
    }

    /// Whether the console is on (someone holds a role).
    pub fn enabled(&self) -> bool {
        self.settings.enabled()
    }

    fn accounts(&self) -> &Arc<dyn AccountStore> {
        self.enablement.accounts()
    }

    /// The support person of a session: level 2 or more (else [`HelpdeskError::Level`]),
    /// a codice fiscale `[helpdesk]` lists (else [`HelpdeskError::Forbidden`]).
    pub fn staff(&self, login: &LoginSession) -> Result<Staff, HelpdeskError> {
        if login.level.number() < 2 {
            return Err(HelpdeskError::Level);
        }
        // An eIDAS login carries no codice fiscale of ours: no role.
        let fiscal_code = match login.scheme {
            crate::identity::Scheme::Eidas => None,
            crate::identity::Scheme::Spid | crate::identity::Scheme::Cie => login.fiscal_code(),
        };
        let fiscal_code = fiscal_code
            .and_then(|cf| FiscalCode::parse(&cf).ok())
            .ok_or(HelpdeskError::Forbidden)?;
        let role = self
            .settings
            .role_of(fiscal_code.as_str())
            .ok_or(HelpdeskError::Forbidden)?;
        Ok(Staff {
            fiscal_code: fiscal_code.as_str().to_owned(),
            role,
        })
    }

    /// The account of a codice fiscale or a username (any case, spaces around ignored).
    pub async fn lookup(&self, staff: &Staff, query: &str) -> Result<Uuid, HelpdeskError> {
        let query = query.trim();
        let found = if let Ok(cf) = FiscalCode::parse(&query.to_ascii_uppercase()) {
            self.accounts().find_by_fiscal_code(&cf).await?
        } else if is_username(query) {
            self.accounts()
                .find_by_username(&query.to_ascii_lowercase())
                .await?
        } else {
            return Err(HelpdeskError::Query);
        };
        let account = found.ok_or(HelpdeskError::NotFound)?;
        tracing::info!(target: "helpdesk", staff = staff.fiscal_code(), account = %account.id, "lookup");
        Ok(account.id)
    }

    async fn account(&self, id: Uuid) -> Result<Account, HelpdeskError> {
        self.accounts()
            .find_by_id(id)
            .await?
            .ok_or(HelpdeskError::NotFound)
    }

    /// What the console shows of account `id` to `staff`.
    pub async fn dossier(&self, staff: &Staff, id: Uuid) -> Result<Dossier, HelpdeskError> {
        let account = self.account(id).await?;
        let locks = self.enablement.locks(&account).await?;
        let logins = match account.fiscal_code_str() {
            Some(cf) => {
                let days = chrono::Days::new(u64::from(self.settings.login_history_days));
                let today = self.clock.now().date_naive();
                let from = today.checked_sub_days(days).unwrap_or(NaiveDate::MIN);
                self.history.recent(cf, from, LOGINS_SHOWN).await?
            }
            None => Vec::new(),
        };
        let audit = self.audit.entries_for(id, AUDIT_SHOWN).await?;
        let own = account.fiscal_code_str() == Some(staff.fiscal_code());
        // An unlock is offered only where something was counted.
        let counted = |action| match lock_of(action) {
            Some(lock) => locks.counter(lock).is_some_and(|c| c.tries > 0),
            None => true,
        };
        let actions = HelpdeskAction::ALL
            .into_iter()
            .filter(|a| !own && staff.role.may(*a) && not_applicable(&account, *a).is_none())
            .filter(|a| counted(*a))
            .collect();
        tracing::info!(target: "helpdesk", staff = staff.fiscal_code(), account = %id, "account shown");
        Ok(Dossier {
            profile: Profile::of(&account),
            locks,
            logins,
            audit,
            actions,
        })
    }

    /// Takes `action` on account `id` for `reason`, recorded in the audit log before it
    /// runs and finished with its outcome. Returns the account as it is afterwards.
    pub async fn act(
        &self,
        staff: &Staff,
        id: Uuid,
        action: HelpdeskAction,
        reason: &str,
    ) -> Result<Profile, HelpdeskError> {
        if !staff.role.may(action) {
            return Err(HelpdeskError::Role(staff.role.as_str(), action));
        }
        let reason = checked_reason(reason)?;
        let account = self.account(id).await?;
        if account.fiscal_code_str() == Some(staff.fiscal_code()) {
            return Err(HelpdeskError::OwnAccount);
        }
        if let Some(why) = not_applicable(&account, action) {
            return Err(HelpdeskError::NotApplicable(why));
        }
        let entry = AuditEntry {
            id: Uuid::new_v4(),
            at: self.clock.now(),
            staff: staff.fiscal_code.clone(),
            role: staff.role.as_str().to_owned(),
            action,
            account: id,
            reason: reason.clone(),
            outcome: AuditOutcome::Started,
        };
        self.audit.record(&entry).await?;
        let outcome = self.run(staff, account, action, reason).await;
        let finished = match &outcome {
            Ok(_) => AuditOutcome::Done,
            Err(e) => AuditOutcome::Failed(e.code().to_owned()),
        };
        if let Err(e) = self.audit.finish(entry.id, &finished).await {
            // The entry stays `started`: the account shows what happened.
            tracing::error!(target: "helpdesk", entry = %entry.id, "audit outcome not written: {e}");
        }
        tracing::info!(target: "helpdesk", staff = staff.fiscal_code(), account = %id, %action, outcome = finished.as_text(), "action");
        outcome.map(|account| Profile::of(&account))
    }

    async fn run(
        &self,
        staff: &Staff,
        account: Account,
        action: HelpdeskAction,
        reason: String,
    ) -> Result<Account, HelpdeskError> {
        match action {
            HelpdeskAction::ResendTempCp => {
                self.enablement
                    .resend(account.id)
                    .await
                    .map_err(|e| match e {
                        EnablementError::Step(_) => HelpdeskError::NotApplicable(
                            "Lo stato dell'account è cambiato: ricarica la pagina.",
                        ),
                        other => other.into(),
                    })
            }
            HelpdeskAction::Revoke => {
                let by = RevokedBy::HelpDesk {
                    operator: staff.fiscal_code.clone(),
                };
                let cause = Revocation { by, reason };
                Ok(self.enablement.revoke(account.id, cause).await?)
            }
            HelpdeskAction::UnlockTempCp
            | HelpdeskAction::UnlockCp
            | HelpdeskAction::UnlockRecovery => {
                let cleared = match lock_of(action) {
                    Some(lock) => self.enablement.unlock(&account, lock).await?,
                    None => false,
                };
                if !cleared {
                    return Err(HelpdeskError::NotApplicable(
                        "Non c'è un Codice Personale temporaneo in vigore da sbloccare.",
                    ));
                }
                Ok(account)
            }
        }
    }

    /// The interventions on account `id` the person reads in their personal area: the
    /// done ones, newest first, without who took them.
    pub async fn interventions(&self, id: Uuid) -> Result<Vec<Intervention>, HelpdeskError> {
        Ok(self
            .audit
            .entries_for(id, AUDIT_SHOWN)
            .await?
            .into_iter()
            .filter(|e| e.outcome == AuditOutcome::Done)
            .map(|e| Intervention {
                at: e.at,
                action: e.action,
                reason: e.reason,
            })
            .collect())
    }
}

/// The counter an unlock action clears.
fn lock_of(action: HelpdeskAction) -> Option<Lock> {
    match action {
        HelpdeskAction::UnlockTempCp => Some(Lock::TempCp),
        HelpdeskAction::UnlockCp => Some(Lock::Cp),
        HelpdeskAction::UnlockRecovery => Some(Lock::Recovery),
        HelpdeskAction::ResendTempCp | HelpdeskAction::Revoke => None,
    }
}

/// A username as the store makes them: ASCII letters, digits and dots, at most 64.
fn is_username(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text.contains('.')
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;
    use crate::clock::Clock as _;
    use crate::enablement::testing::{Fixture, fixture};
    use crate::identity::Scheme;
    use crate::saml::Level;

    const OPERATOR: &str = "BNCGLI85M52F205H";
    const SUPERVISOR: &str = "VRDLCU72T10L219N";
    const PERSON: &str = "RSSMRA80A01H501U";

    /// A history that remembers what it was asked.
    #[derive(Default)]
    struct Asked(Mutex<Vec<(String, NaiveDate, usize)>>);

    #[async_trait::async_trait]
    impl LoginHistory for Asked {
        async fn recent(
            &self,
            fiscal_code: &str,
            from: NaiveDate,
            limit: usize,
        ) -> Result<Vec<LoginSummary>, HelpdeskError> {
            self.0
                .lock()
                .unwrap()
                .push((fiscal_code.to_owned(), from, limit));
            Ok(Vec::new())
        }
    }

    struct Desk {
        service: HelpdeskService,
        enablement: Arc<EnablementService>,
        accounts: Arc<dyn AccountStore>,
        audit: Arc<dyn HelpdeskAudit>,
        history: Arc<Asked>,
        clock: Arc<crate::clock::ManualClock>,
    }

    async fn desk() -> Desk {
        let Fixture {
            service,
            accounts,
            clock,
            ..
        } = fixture().await;
        let enablement = Arc::new(service);
        let audit: Arc<dyn HelpdeskAudit> = accounts.clone();
        let history = Arc::new(Asked::default());
        let settings = HelpdeskSettings {
            operators: [OPERATOR.to_owned()].into(),
            supervisors: [SUPERVISOR.to_owned()].into(),
            login_history_days: 90,
        };
        let service = HelpdeskService::new(
            settings,
            enablement.clone(),
            audit.clone(),
            history.clone(),
            clock.clone(),
        );
        Desk {
            service,
            enablement,
            accounts,
            audit,
            history,
            clock,
        }
    }

    fn login(scheme: Scheme, level: Level, cf: &str) -> LoginSession {
        let mut attributes = BTreeMap::new();
        attributes.insert("fiscalNumber".to_owned(), vec![format!("TINIT-{cf}")]);
        LoginSession {
            scheme,
            idp_entity_id: "https://idp.example".into(),
            name_id: "n".into(),
            name_qualifier: "q".into(),
            session_index: None,
            level,
            attributes,
            authenticated_at: chrono::Utc::now(),
        }
    }

    fn staff(desk: &Desk, cf: &str) -> Staff {
        desk.service
            .staff(&login(Scheme::Spid, Level::L2, cf))
            .unwrap()
    }

    async fn person(desk: &Desk, state: EnablementState) -> Account {
        let mut new = crate::accounts::NewAccount::new(
            FiscalCode::parse(PERSON).unwrap(),
            "Mario".to_owned(),
            "Rossi".to_owned(),
        );
        new.email = Some("mario.rossi@posta.example.it".to_owned());
        let mut account = desk.accounts.create(&new).await.unwrap();
        account.enablement_state = state;
        account.cp_hash = Some(crate::secrets::hash_secret("Giusto2026x").unwrap());
        desk.accounts.update(&account).await.unwrap()
    }

    #[tokio::test]
    async fn only_listed_codici_fiscali_at_level_two_get_in() {
        let desk = desk().await;
        let s = desk
            .service
            .staff(&login(Scheme::Spid, Level::L2, OPERATOR))
            .unwrap();
        assert_eq!((s.fiscal_code(), s.role()), (OPERATOR, Role::Operator));
        let s = desk
            .service
            .staff(&login(Scheme::Cie, Level::L3, SUPERVISOR))
            .unwrap();
        assert_eq!(s.role(), Role::Supervisor);
        let low = desk
            .service
            .staff(&login(Scheme::Spid, Level::L1, OPERATOR));
        assert!(matches!(low, Err(HelpdeskError::Level)), "{low:?}");
        let unlisted = desk.service.staff(&login(Scheme::Spid, Level::L2, PERSON));
        assert!(
            matches!(unlisted, Err(HelpdeskError::Forbidden)),
            "{unlisted:?}"
        );
        let eidas = desk
            .service
            .staff(&login(Scheme::Eidas, Level::L2, OPERATOR));
        assert!(matches!(eidas, Err(HelpdeskError::Forbidden)), "{eidas:?}");
        assert!(!HelpdeskSettings::default().enabled());
    }

    #[tokio::test]
    async fn an_unlock_is_audited_before_and_after_and_the_person_sees_it() {
        let desk = desk().await;
        let account = person(&desk, EnablementState::Enabled).await;
        for _ in 0..5 {
            let _ = desk.enablement.verify_cp(&account, "Sbagliato1x").await;
        }
        let op = staff(&desk, OPERATOR);
        assert_eq!(
            desk.service
                .lookup(&op, " rssmra80a01h501u ")
                .await
                .unwrap(),
            account.id
        );
        assert_eq!(
            desk.service.lookup(&op, &account.username).await.unwrap(),
            account.id
        );
        let dossier = desk.service.dossier(&op, account.id).await.unwrap();
        assert!(dossier.locks.cp.locked);
        assert!(dossier.profile.has_cp);
        assert!(
            !dossier.actions.contains(&HelpdeskAction::Revoke),
            "operators do not revoke"
        );
        let asked = desk.history.0.lock().unwrap().clone();
        let from = desk.clock.now().date_naive() - chrono::Days::new(90);
        assert_eq!(asked, vec![(PERSON.to_owned(), from, LOGINS_SHOWN)]);

        desk.service
            .act(
                &op,
                account.id,
                HelpdeskAction::UnlockCp,
                "  Telefonata: CP dimenticato ",
            )
            .await
            .unwrap();
        desk.enablement
            .verify_cp(&account, "Giusto2026x")
            .await
            .unwrap();
        let entries = desk.audit.entries_for(account.id, 10).await.unwrap();
        assert_eq!(entries.len(), 1);
        let e = &entries[0];
        assert_eq!(
            (
                e.staff.as_str(),
                e.role.as_str(),
                e.action,
                e.reason.as_str(),
                &e.outcome
            ),
            (
                OPERATOR,
                "operator",
                HelpdeskAction::UnlockCp,
                "Telefonata: CP dimenticato",
                &AuditOutcome::Done
            )
        );
        assert_eq!(e.at, desk.clock.now());
        let seen = desk.service.interventions(account.id).await.unwrap();
        assert_eq!(
            seen,
            vec![Intervention {
                at: e.at,
                action: HelpdeskAction::UnlockCp,
                reason: "Telefonata: CP dimenticato".to_owned()
            }]
        );
    }

    #[tokio::test]
    async fn refused_actions_change_nothing_and_record_nothing() {
        let desk = desk().await;
        let account = person(&desk, EnablementState::Enabled).await;
        let op = staff(&desk, OPERATOR);
        for reason in ["", "   ", "a\u{0}b", &"x".repeat(MAX_REASON_CHARS + 1)] {
            let r = desk
                .service
                .act(&op, account.id, HelpdeskAction::UnlockCp, reason)
                .await;
            assert!(matches!(r, Err(HelpdeskError::Reason)), "{reason:?}: {r:?}");
        }
        let r = desk
            .service
            .act(&op, account.id, HelpdeskAction::Revoke, "abuso")
            .await;
        assert!(matches!(r, Err(HelpdeskError::Role(..))), "{r:?}");
        let r = desk
            .service
            .act(&op, account.id, HelpdeskAction::ResendTempCp, "x")
            .await;
        assert!(matches!(r, Err(HelpdeskError::NotApplicable(_))), "{r:?}");
        let r = desk
            .service
            .act(&op, account.id, HelpdeskAction::UnlockTempCp, "x")
            .await;
        assert!(matches!(r, Err(HelpdeskError::NotApplicable(_))), "{r:?}");
        let r = desk
            .service
            .act(&op, Uuid::new_v4(), HelpdeskAction::UnlockCp, "x")
            .await;
        assert!(matches!(r, Err(HelpdeskError::NotFound)), "{r:?}");
        assert!(
            desk.audit
                .entries_for(account.id, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(matches!(
            desk.service.lookup(&op, "<script>").await,
            Err(HelpdeskError::Query)
        ));
        assert!(matches!(
            desk.service.lookup(&op, "nessuno.qui").await,
            Err(HelpdeskError::NotFound)
        ));
    }

    #[tokio::test]
    async fn nobody_acts_on_their_own_account() {
        let desk = desk().await;
        let mut new = crate::accounts::NewAccount::new(
            FiscalCode::parse(OPERATOR).unwrap(),
            "Giulia".to_owned(),
            "Bianchi".to_owned(),
        );
        new.email = Some("g@posta.example.it".to_owned());
        let own = desk.accounts.create(&new).await.unwrap();
        let op = staff(&desk, OPERATOR);
        let r = desk
            .service
            .act(&op, own.id, HelpdeskAction::UnlockCp, "mio")
            .await;
        assert!(matches!(r, Err(HelpdeskError::OwnAccount)), "{r:?}");
        assert!(
            desk.service
                .dossier(&op, own.id)
                .await
                .unwrap()
                .actions
                .is_empty()
        );
    }

    /// An audit log that refuses every record.
    struct Down;

    #[async_trait::async_trait]
    impl HelpdeskAudit for Down {
        async fn record(&self, _: &AuditEntry) -> Result<(), AccountError> {
            Err(AccountError::Unavailable("down".into()))
        }
        async fn finish(&self, _: Uuid, _: &AuditOutcome) -> Result<(), AccountError> {
            Err(AccountError::Unavailable("down".into()))
        }
        async fn entries_for(&self, _: Uuid, _: u32) -> Result<Vec<AuditEntry>, AccountError> {
            Err(AccountError::Unavailable("down".into()))
        }
    }

    #[tokio::test]
    async fn no_record_no_action() {
        let desk = desk().await;
        let account = person(&desk, EnablementState::Enabled).await;
        for _ in 0..5 {
            let _ = desk.enablement.verify_cp(&account, "Sbagliato1x").await;
        }
        let blind = HelpdeskService::new(
            desk.service.settings.clone(),
            desk.enablement.clone(),
            Arc::new(Down),
            desk.history.clone(),
            desk.clock.clone(),
        );
        let op = staff(&desk, OPERATOR);
        let r = blind
            .act(&op, account.id, HelpdeskAction::UnlockCp, "sblocco")
            .await;
        assert!(
            matches!(
                r,
                Err(HelpdeskError::Accounts(AccountError::Unavailable(_)))
            ),
            "{r:?}"
        );
        let locks = desk.enablement.locks(&account).await.unwrap();
        assert!(
            locks.cp.locked,
            "the unlock was not taken without its record"
        );
    }

    #[tokio::test]
    async fn a_supervisor_revokes_and_the_revocation_names_the_help_desk() {
        let desk = desk().await;
        let account = person(&desk, EnablementState::Enabled).await;
        let sup = staff(&desk, SUPERVISOR);
        let profile = desk
            .service
            .act(
                &sup,
                account.id,
                HelpdeskAction::Revoke,
                "Richiesta della persona",
            )
            .await
            .unwrap();
        assert_eq!(profile.state, EnablementState::NotEnabled);
        assert!(!profile.has_cp);
        let record = profile.revocation.unwrap();
        assert_eq!(
            record.by,
            RevokedBy::HelpDesk {
                operator: SUPERVISOR.to_owned()
            }
        );
        assert_eq!(record.reason, "Richiesta della persona");
        let entries = desk.audit.entries_for(account.id, 10).await.unwrap();
        assert_eq!(entries[0].outcome, AuditOutcome::Done);
    }

    #[tokio::test]
    async fn a_resend_sends_a_new_temporary_cp_and_a_failure_is_recorded() {
        let desk = desk().await;
        let account = person(&desk, EnablementState::Confirmed).await;
        desk.enablement.accept(account.id).await.unwrap();
        let op = staff(&desk, OPERATOR);
        let before = desk.accounts.find_by_id(account.id).await.unwrap().unwrap();
        desk.service
            .act(
                &op,
                account.id,
                HelpdeskAction::ResendTempCp,
                "Mail non arrivata",
            )
            .await
            .unwrap();
        let after = desk.accounts.find_by_id(account.id).await.unwrap().unwrap();
        assert_ne!(before.temp_cp.unwrap().hmac, after.temp_cp.unwrap().hmac);
        // The daily limit (5) stops the sixth send: recorded as failed, not shown.
        for _ in 0..4 {
            desk.service
                .act(&op, account.id, HelpdeskAction::ResendTempCp, "ancora")
                .await
                .unwrap();
        }
        let r = desk
            .service
            .act(&op, account.id, HelpdeskAction::ResendTempCp, "ancora")
            .await;
        assert!(
            matches!(
                r,
                Err(HelpdeskError::Enablement(EnablementError::ResendLimit))
            ),
            "{r:?}"
        );
        let entries = desk.audit.entries_for(account.id, 10).await.unwrap();
        assert_eq!(entries.len(), 6);
        assert!(
            entries
                .iter()
                .any(|e| e.outcome == AuditOutcome::Failed("POLIS_RESEND_LIMIT".into()))
        );
        assert_eq!(
            desk.service.interventions(account.id).await.unwrap().len(),
            5
        );
    }
}
