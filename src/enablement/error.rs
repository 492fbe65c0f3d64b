//! [`EnablementError`]: why an enablement operation failed, each variant with a stable
//! code for pages and logs.

use crate::accounts::AccountError;
use crate::mail::MailError;
use crate::pdf::PdfError;
use crate::state::StateError;

use super::cp::{CpError, CpRule};
use super::forms::FieldErrors;
use super::machine::InvalidTransition;

/// Why an enablement operation failed. Each variant has a stable [`code`](Self::code).
#[derive(Debug, thiserror::Error)]
pub enum EnablementError {
    /// The login lacks attributes an account needs.
    #[error("SPID attributes missing: {0:?}")]
    MissingAttributes(Vec<&'static str>),
    /// The `fiscalNumber` is not a valid codice fiscale.
    #[error("fiscalNumber is not a valid codice fiscale")]
    InvalidFiscalCode,
    /// The eIDAS identifier (`spidCode` of an eIDAS login) is not `CC/CC/identifier`.
    #[error("spidCode is not a valid eIDAS identifier")]
    InvalidEidasIdentifier,
    /// A revocation without a reason, or with one over
    /// [`MAX_REASON_CHARS`](super::MAX_REASON_CHARS) characters.
    #[error("a revocation needs a reason of at most 500 characters")]
    RevocationReason,
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
            Self::InvalidEidasIdentifier => "POLIS_EIDAS_IDENTIFIER_INVALID",
            Self::Step(e) => e.code(),
            Self::RevocationReason => "POLIS_REVOCATION_REASON",
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
