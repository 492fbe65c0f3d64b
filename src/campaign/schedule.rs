//! The daily campaign inside the gateway: once a day, after `run_at_hour` (Italian
//! time), one replica takes the lease `polis:campaign:lease:<name>` in the state store
//! (`put_if_absent`, renewed while it runs) and runs the rule; the day is then marked
//! done (`polis:campaign:done:<name>:<date>`), so neither this replica nor another runs
//! it again that day. The lease only saves work: two runs at once would still send no
//! notice twice (the claims are in the database) nor revoke twice (compare-and-set).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Timelike as _;

use super::{Campaign, CampaignError, CsvReport, Progress, Rule, RunOptions, report_name};
use crate::clock::{rome, rome_today};
use crate::state::StateStore;

/// How long a lease lives unless renewed (a crashed replica's lease expires).
pub const LEASE_TTL: Duration = Duration::from_secs(15 * 60);
/// How often the job looks at the clock.
const CHECK_EVERY: Duration = Duration::from_secs(5 * 60);
/// How long a day stays marked done.
const DONE_TTL: Duration = Duration::from_secs(3 * 86_400);

/// The `[campaign]` section: the rule, when and how fast.
#[derive(Debug, Clone)]
pub struct ScheduleSettings {
    /// The rule run every day.
    pub rule: Rule,
    /// Not before this hour of the day, Italian time (0–23).
    pub run_at_hour: u32,
    /// Batch size, mail rate, concurrency.
    pub options: RunOptions,
    /// Where the CSV report of each run is written.
    pub report_dir: PathBuf,
}

/// What [`run_once`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ran {
    /// Too early in the day, or today is done already.
    NotDue,
    /// Another replica holds the lease.
    Leased,
    /// This replica ran it.
    Done(Progress),
}

fn lease_key(rule: &Rule) -> String {
    format!("polis:campaign:lease:{}", rule.name)
}

fn done_key(rule: &Rule, day: chrono::NaiveDate) -> String {
    format!("polis:campaign:done:{}:{day}", rule.name)
}

/// Runs today's campaign if it is due and no other replica runs it.
pub async fn run_once(
    campaign: &Arc<Campaign>,
    state: &Arc<dyn StateStore>,
    settings: &ScheduleSettings,
) -> Result<Ran, CampaignError> {
    let now = campaign.clock.now();
    let today = rome_today(now);
    let done = done_key(&settings.rule, today);
    if rome(now).hour() < settings.run_at_hour || state.get(&done).await?.is_some() {
        return Ok(Ran::NotDue);
    }
    let token = crate::saml::ids::new_token(16);
    let lease = lease_key(&settings.rule);
    if !state
        .put_if_absent(&lease, token.as_bytes(), LEASE_TTL)
        .await?
    {
        return Ok(Ran::Leased);
    }
    let renew = tokio::spawn(renew_lease(state.clone(), lease.clone(), token.clone()));
    let result = run_with_report(campaign, settings, now).await;
    renew.abort();
    if result.is_ok() {
        state.put(&done, b"1", DONE_TTL).await?;
    }
    state.delete_if_equals(&lease, token.as_bytes()).await?;
    result.map(Ran::Done)
}

async fn run_with_report(
    campaign: &Arc<Campaign>,
    settings: &ScheduleSettings,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Progress, CampaignError> {
    std::fs::create_dir_all(&settings.report_dir)
        .map_err(|e| CampaignError::Report(format!("{}: {e}", settings.report_dir.display())))?;
    let path = settings.report_dir.join(report_name(&settings.rule, now));
    let file = std::fs::File::create(&path)
        .map_err(|e| CampaignError::Report(format!("{}: {e}", path.display())))?;
    let mut report = CsvReport::new(std::io::BufWriter::new(file))?;
    let progress = campaign
        .run(
            &settings.rule,
            &settings.options,
            &mut |row| report.row(row),
            &mut |p| tracing::debug!(scanned = p.scanned, "campaign page"),
        )
        .await?;
    report.finish()?;
    tracing::info!(
        campaign = %settings.rule.name,
        scanned = progress.scanned,
        notified = progress.notified,
        revoked = progress.revoked,
        failed = progress.failed,
        report = %path.display(),
        "inactivity campaign done"
    );
    Ok(progress)
}

/// Keeps the lease while the run lasts (given back and taken again by its owner only).
async fn renew_lease(state: Arc<dyn StateStore>, key: String, token: String) {
    let mut every = tokio::time::interval(LEASE_TTL / 3);
    every.tick().await;
    loop {
        every.tick().await;
        let renewed = match state.delete_if_equals(&key, token.as_bytes()).await {
            Ok(true) => state
                .put_if_absent(&key, token.as_bytes(), LEASE_TTL)
                .await
                .unwrap_or(false),
            _ => false,
        };
        if !renewed {
            tracing::warn!(lease = %key, "campaign lease lost; the run goes on (claims keep notices single)");
            return;
        }
    }
}

/// The job: checks every few minutes, runs when due. Never returns.
pub async fn run_daily(
    campaign: Arc<Campaign>,
    state: Arc<dyn StateStore>,
    settings: ScheduleSettings,
) {
    let mut every = tokio::time::interval(CHECK_EVERY);
    loop {
        every.tick().await;
        match run_once(&campaign, &state, &settings).await {
            Ok(Ran::Done(_) | Ran::NotDue | Ran::Leased) => {}
            Err(e) => {
                tracing::error!(code = e.code(), error = %e, "inactivity campaign failed; retried at the next check")
            }
        }
    }
}
