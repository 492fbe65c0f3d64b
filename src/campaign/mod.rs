//! Inactivity campaigns (seeds: the periodic revocation of unused accounts; today's rule
//! is revocation after 15 months without access).
//!
//! A run streams the accounts past `not_enabled` that the [`Rule`] may concern from the
//! database in pages of `batch_size` (keyset pagination: memory stays bounded whatever
//! the number of accounts) and, for each, does what [`Rule::decide`] says for today:
//!
//! - **a notice** (`--notify-days`, e.g. 90, 60, 30, 10 and 1 days before the
//!   deadline): its record `(account, deadline, days)` is *claimed* in the database
//!   before the mail is handed to the mail server, and marked sent once it took it. A
//!   claim that exists is never sent again, so a rerun, a second replica or a crash in
//!   the middle sends no notice twice; a send the mail server refused with "nothing
//!   delivered" gives its claim back for the next run; one a crash interrupted stays
//!   claimed and unconfirmed (at most once, never twice).
//! - **the revocation** at the deadline ([`EnablementService::revoke`]): sessions and
//!   tokens end, the person is told at the next login and can do the abilitazione
//!   again at once. Nobody with an address is revoked without a notice sent at least
//!   the smallest notice's days before.
//!
//! Mail goes out at most `mails_per_second`. Each run writes one CSV row per account it
//! acted on (or, with `dry_run`, would act on, changing nothing) and counts
//! `polis_campaign_accounts_total{action}`. `schedule` runs it daily inside the gateway
//! on one replica (a lease in the state store).

mod notice;
mod report;
mod rule;
/// The daily run inside the gateway, under a lease.
pub mod schedule;

use std::num::NonZeroU32;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::accounts::{AccountError, AccountStore, Dormant, NoticeKey};
use crate::clock::{SharedClock, rome_today};
use crate::enablement::{EnablementError, EnablementService, Revocation, RevokedBy};
use crate::mail::{MailError, Mailer};

pub use report::{CsvReport, ReportRow};
pub use rule::{Action, Rule, RuleError, Window};

/// How a run goes.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Change nothing and send nothing; report what would be done.
    pub dry_run: bool,
    /// Accounts read per database page.
    pub batch_size: u32,
    /// Notices handed to the mail server per second at most (`None`: no limit).
    pub mails_per_second: Option<NonZeroU32>,
    /// Accounts worked on at once.
    pub concurrency: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            batch_size: 1000,
            mails_per_second: NonZeroU32::new(20),
            concurrency: 8,
        }
    }
}

/// What a run did (or, dry, would do).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Accounts read from the database.
    pub scanned: u64,
    /// Notices sent.
    pub notified: u64,
    /// Notices already claimed by an earlier run (sent, or interrupted).
    pub already_notified: u64,
    /// Enablements revoked.
    pub revoked: u64,
    /// Accounts whose mail or revocation failed (retried by the next run).
    pub failed: u64,
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    /// The account database failed.
    #[error(transparent)]
    Accounts(#[from] AccountError),
    /// The state store failed (the lease).
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The report could not be written.
    #[error("campaign report: {0}")]
    Report(String),
}

impl CampaignError {
    /// Stable code for logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Accounts(e) => e.code(),
            Self::State(_) => "POLIS_STATE_UNAVAILABLE",
            Self::Report(_) => "POLIS_CAMPAIGN_REPORT",
        }
    }
}

/// Runs inactivity campaigns.
pub struct Campaign {
    accounts: Arc<dyn AccountStore>,
    enablement: Arc<EnablementService>,
    mailer: Arc<dyn Mailer>,
    public_url: String,
    clock: SharedClock,
}

impl std::fmt::Debug for Campaign {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Campaign").finish_non_exhaustive()
    }
}

/// One account's outcome.
enum Outcome {
    Nothing,
    Notified { days: u32, revoke_on: NaiveDate },
    AlreadyNotified { days: u32 },
    Revoked,
    Failed(String),
}

impl Campaign {
    /// The service; `public_url` is quoted in the notices.
    pub fn new(
        accounts: Arc<dyn AccountStore>,
        enablement: Arc<EnablementService>,
        mailer: Arc<dyn Mailer>,
        public_url: String,
        clock: SharedClock,
    ) -> Self {
        Self {
            accounts,
            enablement,
            mailer,
            public_url,
            clock,
        }
    }

    /// The same service sending through `mailer` (another transport, a test's).
    pub fn with_mailer(&self, mailer: Arc<dyn Mailer>) -> Arc<Self> {
        Arc::new(Self {
            accounts: self.accounts.clone(),
            enablement: self.enablement.clone(),
            mailer,
            public_url: self.public_url.clone(),
            clock: self.clock.clone(),
        })
    }

    /// Runs `rule` for today (Italian civil date of the clock). Rows go to `report`;
    /// `progress` is called after each page. Stops at the first database failure
    /// (a rerun resumes: what was done is recorded).
    pub async fn run(
        self: &Arc<Self>,
        rule: &Rule,
        options: &RunOptions,
        report: &mut (dyn FnMut(&ReportRow) -> Result<(), CampaignError> + Send),
        progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<Progress, CampaignError> {
        let now = self.clock.now();
        let today = rome_today(now);
        let before = rule.scan_before(today);
        let limiter = options.mails_per_second.map(|rate| {
            Arc::new(governor::RateLimiter::direct(governor::Quota::per_second(
                rate,
            )))
        });
        let gate = Arc::new(Semaphore::new(options.concurrency.max(1)));
        let mut totals = Progress::default();
        let mut after: Option<Uuid> = None;
        let metrics = RunMetrics::start(&rule.name, options.dry_run);
        loop {
            let page = self
                .accounts
                .dormant_page(before, after, options.batch_size.max(1))
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            totals.scanned += page.len() as u64;
            metrics.scanned(page.len());
            let mut tasks = tokio::task::JoinSet::new();
            for account in page {
                let this = self.clone();
                let rule = rule.clone();
                let gate = gate.clone();
                let limiter = limiter.clone();
                let dry = options.dry_run;
                tasks.spawn(async move {
                    let _slot = gate.acquire_owned().await;
                    let outcome = this
                        .one(&rule, today, &account, dry, limiter.as_deref())
                        .await;
                    (account, outcome)
                });
            }
            while let Some(done) = tasks.join_next().await {
                let (account, outcome) =
                    done.map_err(|e| CampaignError::Report(format!("worker: {e}")))?;
                let outcome = outcome?;
                if let Some(row) = tally(&mut totals, rule, &account, &outcome) {
                    metrics.acted(row.action);
                    report(&row)?;
                }
            }
            progress(&totals);
        }
        metrics.finished(self.clock.now());
        Ok(totals)
    }

    /// What today brings to one account.
    async fn one(
        &self,
        rule: &Rule,
        today: NaiveDate,
        account: &Dormant,
        dry: bool,
        limiter: Option<&governor::DefaultDirectRateLimiter>,
    ) -> Result<Outcome, CampaignError> {
        let last_day = rome_today(account.last_active);
        let deadline = rule.deadline(last_day);
        let first_sent = if today >= deadline {
            self.accounts
                .first_notice_sent(account.id, deadline)
                .await?
                .map(rome_today)
        } else {
            None
        };
        let has_email = account.email.is_some();
        match rule.decide(today, deadline, first_sent, has_email) {
            Action::Nothing => Ok(Outcome::Nothing),
            Action::Notice { days, revoke_on } if dry => Ok(Outcome::Notified { days, revoke_on }),
            Action::Notice { days, revoke_on } => {
                let key = NoticeKey {
                    account: account.id,
                    deadline,
                    days,
                };
                self.notify(rule, &key, account, revoke_on, limiter).await
            }
            Action::Revoke if dry => Ok(Outcome::Revoked),
            Action::Revoke => Ok(self.revoke(rule, account, last_day).await),
        }
    }

    async fn notify(
        &self,
        rule: &Rule,
        key: &NoticeKey,
        account: &Dormant,
        revoke_on: NaiveDate,
        limiter: Option<&governor::DefaultDirectRateLimiter>,
    ) -> Result<Outcome, CampaignError> {
        if !self
            .accounts
            .claim_notice(key, &rule.name, self.clock.now())
            .await?
        {
            return Ok(Outcome::AlreadyNotified { days: key.days });
        }
        if let Some(limiter) = limiter {
            limiter.until_ready().await;
        }
        let mail = notice::mail(account, revoke_on, &self.public_url);
        match mail {
            Ok(mail) => match self.mailer.send(&mail).await {
                Ok(()) => {
                    self.accounts.notice_sent(key, self.clock.now()).await?;
                    Ok(Outcome::Notified {
                        days: key.days,
                        revoke_on,
                    })
                }
                Err(e) => {
                    if nothing_delivered(&e) {
                        self.accounts.release_notice(key).await?;
                    }
                    Ok(Outcome::Failed(format!("{}: {e}", e.code())))
                }
            },
            Err(e) => {
                self.accounts.release_notice(key).await?;
                Ok(Outcome::Failed(format!("{}: {e}", e.code())))
            }
        }
    }

    async fn revoke(&self, rule: &Rule, account: &Dormant, last_day: NaiveDate) -> Outcome {
        let cause = Revocation {
            by: RevokedBy::Campaign {
                name: rule.name.clone(),
            },
            reason: notice::revocation_reason(rule, last_day),
        };
        match self.enablement.revoke(account.id, cause).await {
            Ok(_) => Outcome::Revoked,
            // Enabled again meanwhile, or already revoked by the help desk.
            Err(EnablementError::Step(_)) => Outcome::Nothing,
            Err(e) => Outcome::Failed(format!("{}: {e}", e.code())),
        }
    }
}

/// A run's progress in `/metrics` (a dry run counts nothing): accounts read and acted on
/// by campaign, whether one is running, when one last finished. A run that stops on an
/// error leaves `polis_campaign_running` at 0 too (the guard's drop).
struct RunMetrics {
    campaign: String,
    dry: bool,
}

/// What a run may do to an account, each exported from the start (at 0).
const ACTIONS: [&str; 4] = ["notified", "already_notified", "revoked", "failed"];

impl RunMetrics {
    fn start(campaign: &str, dry: bool) -> Self {
        let this = Self {
            campaign: campaign.to_owned(),
            dry,
        };
        if !dry {
            for action in ACTIONS {
                this.counter(action).increment(0);
            }
            metrics::counter!("polis_campaign_scanned_total", "campaign" => this.campaign.clone())
                .increment(0);
            this.running().set(1.0);
        }
        this
    }

    fn counter(&self, action: &'static str) -> metrics::Counter {
        metrics::counter!(
            "polis_campaign_accounts_total",
            "campaign" => self.campaign.clone(),
            "action" => action
        )
    }

    fn running(&self) -> metrics::Gauge {
        metrics::gauge!("polis_campaign_running", "campaign" => self.campaign.clone())
    }

    fn scanned(&self, n: usize) {
        if !self.dry {
            metrics::counter!("polis_campaign_scanned_total", "campaign" => self.campaign.clone())
                .increment(n as u64);
        }
    }

    fn acted(&self, action: &'static str) {
        if !self.dry {
            self.counter(action).increment(1);
        }
    }

    fn finished(&self, now: DateTime<Utc>) {
        if !self.dry {
            metrics::gauge!(
                "polis_campaign_last_finished_timestamp_seconds",
                "campaign" => self.campaign.clone()
            )
            .set(now.timestamp() as f64);
        }
    }
}

impl Drop for RunMetrics {
    fn drop(&mut self) {
        if !self.dry {
            self.running().set(0.0);
        }
    }
}

/// Whether a failed send certainly delivered nothing (so its claim can be given back).
/// A refusal for good keeps its claim: retrying would be refused again.
fn nothing_delivered(e: &MailError) -> bool {
    matches!(
        e,
        MailError::Unavailable(_) | MailError::InvalidAddress(_) | MailError::Config(_)
    )
}

/// Counts an outcome and gives its report row (none for accounts left alone).
fn tally(
    totals: &mut Progress,
    rule: &Rule,
    account: &Dormant,
    outcome: &Outcome,
) -> Option<ReportRow> {
    let deadline = rule.deadline(rome_today(account.last_active));
    let (action, detail) = match outcome {
        Outcome::Nothing => return None,
        Outcome::Notified { days, revoke_on } => {
            totals.notified += 1;
            (
                "notified",
                format!("{days} days; revocation on {revoke_on}"),
            )
        }
        Outcome::AlreadyNotified { days } => {
            totals.already_notified += 1;
            ("already_notified", format!("{days} days"))
        }
        Outcome::Revoked => {
            totals.revoked += 1;
            ("revoked", String::new())
        }
        Outcome::Failed(why) => {
            totals.failed += 1;
            ("failed", why.clone())
        }
    };
    Some(ReportRow {
        account: account.id,
        username: account.username.clone(),
        last_active: account.last_active,
        deadline,
        action,
        detail,
    })
}

/// The moment a row was written, for the report's name.
pub fn report_name(rule: &Rule, at: DateTime<Utc>) -> String {
    format!("{}-{}.csv", rule.name, at.format("%Y%m%dT%H%M%SZ"))
}
