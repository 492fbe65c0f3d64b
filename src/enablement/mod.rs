//! The SPID abilitazione (Path 2 of the domain spec) and the Codice Personale.
//!
//! - [`machine`]: the pure state machine (state + event → next state + effects);
//! - [`cp`]: temporary CP, CP rules, HMAC and argon2;
//! - [`forms`]: the posted forms, validated with Italian field messages;
//! - [`EnablementService`]: one method per use case of the pages (the page data of a
//!   step, a submitted form and where it leads), applying the machine's effects (store
//!   writes, PDFs, e-mail); it reads the time only from its [`Clock`](crate::clock::Clock).
//!   Its parts: `login` (a verified SPID login → its account), `steps` (which page fits
//!   which state, the forms of steps 1–3, the personal-area contacts), `delivery` (the
//!   transitions that mail a temporary CP, under the send claim), `codes` (the
//!   temporary-CP change, the CP change and check, the recovery, with their lock
//!   counters), `revoke` (revoking an enablement: campaign, help desk), `documents`
//!   (the e-mail and the PDFs), `error` ([`EnablementError`]).
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
/// The conditions of use and the privacy notice, with their version.
pub mod terms;

mod codes;
mod delivery;
mod documents;
mod error;
mod locks;
mod login;
mod revoke;
mod steps;
#[cfg(test)]
pub(crate) mod testing;

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use crate::accounts::{Account, AccountStore};
use crate::clock::SharedClock;
use crate::mail::Mailer;
use crate::state::StateStore;

use cp::CpKey;

pub use crate::accounts::RevokedBy;
pub use error::EnablementError;
pub use locks::{Counter, Lock, Locks};
pub use revoke::{MAX_REASON_CHARS, Revocation};
pub use steps::{Page, Refusal, Step};

/// SPID and CIE attributes without which no account is written.
pub const REQUIRED_ATTRIBUTES: [&str; 3] = ["fiscalNumber", "name", "familyName"];
/// eIDAS (FICEP) attributes without which no account is written: the identifier comes
/// in `spidCode`.
pub const EIDAS_REQUIRED_ATTRIBUTES: [&str; 3] = ["spidCode", "name", "familyName"];

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
    /// The texts «Accetto» accepts; their version is recorded with the account.
    terms: Arc<terms::Terms>,
    /// Where the time comes from.
    clock: SharedClock,
}

impl std::fmt::Debug for EnablementService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnablementService")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// How long a claim on a mail-sending transition lives if its owner never releases it
/// (a crashed replica): longer than storing the state and sending one message can take,
/// since the send is cut off after 60 s.
pub const SEND_CLAIM_TTL: Duration = Duration::from_secs(120);
/// How often a login retries its account update when the account changed meanwhile.
const LOGIN_UPDATE_TRIES: usize = 5;

fn to_std(d: chrono::Duration) -> Duration {
    d.to_std().unwrap_or(Duration::ZERO)
}

/// The reference code printed on the forms: stable per account.
pub fn reference_code(account: &Account) -> String {
    let digest = hex::encode_upper(openssl::sha::sha256(account.id.as_bytes()));
    let short: String = digest.chars().take(10).collect();
    format!("IOL-{short}")
}

/// Counts an abilitazione step reached (`polis_enablement_steps_total{state}`).
fn count_step(state: crate::accounts::EnablementState) {
    metrics::counter!("polis_enablement_steps_total", "state" => state.as_str()).increment(1);
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
        clock: SharedClock,
    ) -> Self {
        Self {
            argon2,
            accounts,
            state,
            mailer,
            key: Arc::new(key),
            settings,
            terms: Arc::new(terms::Terms::demo()),
            clock,
        }
    }

    /// The service with the operator's texts instead of the built-in demo ones.
    #[must_use]
    pub fn with_terms(mut self, terms: terms::Terms) -> Self {
        self.terms = Arc::new(terms);
        self
    }

    /// The conditions of use and the privacy notice in force.
    pub fn terms(&self) -> &terms::Terms {
        &self.terms
    }

    /// Readiness: one round trip to the account database. Any failure reads as
    /// unavailable (`/readyz` answers 503, never 500).
    pub async fn ready(&self) -> Result<(), EnablementError> {
        self.accounts.ping().await.map_err(|e| {
            EnablementError::Accounts(crate::accounts::AccountError::Unavailable(e.to_string()))
        })
    }

    /// The account store.
    pub fn accounts(&self) -> &Arc<dyn AccountStore> {
        &self.accounts
    }

    /// The settings.
    pub fn settings(&self) -> &EnablementSettings {
        &self.settings
    }

    /// The account of a session.
    pub async fn account(&self, id: Uuid) -> Result<Account, EnablementError> {
        self.accounts
            .find_by_id(id)
            .await?
            .ok_or(EnablementError::AccountGone)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::accounts::FiscalCode;

    #[test]
    fn reference_codes_are_stable_and_short() {
        let cf = FiscalCode::parse("RSSMRA80A01H501U").unwrap();
        let a = crate::accounts::tests_support::sample(cf);
        assert_eq!(reference_code(&a), reference_code(&a.clone()));
        assert_eq!(reference_code(&a).len(), 14);
    }
}
