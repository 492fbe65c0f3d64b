//! The help desk's audit log (`helpdesk_audit`, migration 0006): who (the support
//! person's codice fiscale and role), what, on which account, when and why. An entry is
//! recorded *before* its action runs (outcome [`AuditOutcome::Started`]) and then
//! finished with the outcome, so no action is taken without its record. Entries are
//! never deleted.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::AccountError;

/// What a support person did to an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HelpdeskAction {
    /// Deleted the counter of tries on the temporary CP (a locked one can be tried again).
    UnlockTempCp,
    /// Deleted the counter of tries on the CP.
    UnlockCp,
    /// Deleted the counter of tries on the recovery answer.
    UnlockRecovery,
    /// Sent a new temporary CP (the old one stops working).
    ResendTempCp,
    /// Revoked the enablement.
    Revoke,
}

impl HelpdeskAction {
    /// Every action, in the order the console lists them.
    pub const ALL: [Self; 5] = [
        Self::UnlockTempCp,
        Self::UnlockCp,
        Self::UnlockRecovery,
        Self::ResendTempCp,
        Self::Revoke,
    ];

    /// The stored (and posted) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnlockTempCp => "unlock_temp_cp",
            Self::UnlockCp => "unlock_cp",
            Self::UnlockRecovery => "unlock_recovery",
            Self::ResendTempCp => "resend_temp_cp",
            Self::Revoke => "revoke",
        }
    }

    /// What the person and the console read.
    pub fn label(self) -> &'static str {
        match self {
            Self::UnlockTempCp => "Sblocco del Codice Personale temporaneo",
            Self::UnlockCp => "Sblocco del Codice Personale",
            Self::UnlockRecovery => "Sblocco della domanda di recupero",
            Self::ResendTempCp => "Nuovo invio del Codice Personale temporaneo",
            Self::Revoke => "Revoca dell'abilitazione",
        }
    }
}

impl fmt::Display for HelpdeskAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HelpdeskAction {
    type Err = AccountError;

    fn from_str(s: &str) -> Result<Self, AccountError> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| AccountError::Backend(format!("unknown help-desk action {s:?}")))
    }
}

/// How an audited action ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditOutcome {
    /// Recorded, not finished (yet, or the replica stopped in between).
    Started,
    /// Done.
    Done,
    /// Refused or failed, with the error code; nothing changed.
    Failed(String),
}

impl AuditOutcome {
    /// The stored text: `started`, `done` or the error code.
    pub fn as_text(&self) -> &str {
        match self {
            Self::Started => "started",
            Self::Done => "done",
            Self::Failed(code) => code,
        }
    }

    /// The outcome of a stored text.
    pub fn from_text(text: &str) -> Self {
        match text {
            "started" => Self::Started,
            "done" => Self::Done,
            code => Self::Failed(code.to_owned()),
        }
    }
}

/// One entry of the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Its id (UUID v4, made by the caller).
    pub id: Uuid,
    /// When the action was asked.
    pub at: DateTime<Utc>,
    /// The support person's codice fiscale.
    pub staff: String,
    /// Their role then (`operator`, `supervisor`).
    pub role: String,
    /// What.
    pub action: HelpdeskAction,
    /// On which account.
    pub account: Uuid,
    /// Why, as typed (required).
    pub reason: String,
    /// How it ended.
    pub outcome: AuditOutcome,
}

/// The audit log's port.
#[async_trait::async_trait]
pub trait HelpdeskAudit: Send + Sync {
    /// Records `entry` (a new id). [`AccountError::Duplicate`] is never expected: ids
    /// are random.
    async fn record(&self, entry: &AuditEntry) -> Result<(), AccountError>;
    /// Sets the outcome of the entry `id`. [`AccountError::NotFound`] if there is none.
    async fn finish(&self, id: Uuid, outcome: &AuditOutcome) -> Result<(), AccountError>;
    /// The newest `limit` entries about `account`, newest first.
    async fn entries_for(&self, account: Uuid, limit: u32)
    -> Result<Vec<AuditEntry>, AccountError>;
}
