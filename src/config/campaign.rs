//! `[campaign]`: the daily inactivity campaign run inside the gateway (absent: none;
//! `polis-gateway campaign inactivity` runs one by hand either way).

use std::num::NonZeroU32;
use std::path::PathBuf;

use serde::Deserialize;

use super::checks::{in_range, invalid};
use super::{ConfigError, Context};
use crate::campaign::schedule::ScheduleSettings;
use crate::campaign::{Rule, RunOptions, Window};

/// `[campaign]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCampaign {
    /// Revocation after this many months without a login.
    #[serde(default = "default_months")]
    inactive_months: u32,
    /// Days before the deadline on which a notice goes out.
    #[serde(default = "default_days")]
    notify_days: Vec<u32>,
    /// The campaign's name in the notice records and reports.
    #[serde(default)]
    name: Option<String>,
    /// Not before this hour, Italian time.
    #[serde(default = "default_hour")]
    run_at_hour: u32,
    /// Notices per second at most.
    #[serde(default = "default_rate")]
    mails_per_second: u32,
    /// Accounts per database page.
    #[serde(default = "default_batch")]
    batch_size: u32,
    /// Accounts worked on at once.
    #[serde(default = "default_concurrency")]
    concurrency: usize,
    /// Where each run's CSV report goes (default `<data_dir>/campaigns`).
    #[serde(default)]
    report_dir: Option<PathBuf>,
}

fn default_months() -> u32 {
    15
}
fn default_days() -> Vec<u32> {
    vec![90, 60, 30, 10, 1]
}
fn default_hour() -> u32 {
    2
}
fn default_rate() -> u32 {
    20
}
fn default_batch() -> u32 {
    1000
}
fn default_concurrency() -> usize {
    8
}

/// `[campaign]`, validated.
pub(super) fn validate(
    raw: Option<RawCampaign>,
    ctx: &Context<'_>,
) -> Result<Option<ScheduleSettings>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let months = in_range("campaign.inactive_months", raw.inactive_months, 1, 120)?;
    let name = raw.name.unwrap_or_else(|| format!("inactivity-{months}m"));
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(invalid(
            "campaign.name",
            "1 to 64 letters, digits, '-', '_' or '.'",
        ));
    }
    let rule = Rule::new(name, Window::Months(months), &raw.notify_days)
        .map_err(|e| invalid("campaign.notify_days", e.to_string()))?;
    let rate = in_range("campaign.mails_per_second", raw.mails_per_second, 1, 10_000)?;
    Ok(Some(ScheduleSettings {
        rule,
        run_at_hour: in_range("campaign.run_at_hour", raw.run_at_hour, 0, 23)?,
        options: RunOptions {
            dry_run: false,
            batch_size: in_range("campaign.batch_size", raw.batch_size, 1, 100_000)?,
            mails_per_second: NonZeroU32::new(rate),
            concurrency: in_range("campaign.concurrency", raw.concurrency, 1, 256)?,
        },
        report_dir: raw
            .report_dir
            .unwrap_or_else(|| ctx.data_dir.join("campaigns")),
    }))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{err, load};

    #[test]
    fn defaults_are_the_fifteen_month_rule() {
        let cfg = load("[campaign]\n", &[]).unwrap();
        let s = cfg.campaign.unwrap();
        assert_eq!(s.rule.name, "inactivity-15m");
        assert_eq!(s.rule.notify_days(), &[90, 60, 30, 10, 1]);
        assert_eq!(s.run_at_hour, 2);
        assert!(s.report_dir.ends_with("campaigns"));
        assert!(load("", &[]).unwrap().campaign.is_none());
    }

    #[test]
    fn bad_values_name_their_key() {
        for (toml, key) in [
            (
                "[campaign]\ninactive_months = 0\n",
                "campaign.inactive_months",
            ),
            ("[campaign]\nnotify_days = []\n", "campaign.notify_days"),
            ("[campaign]\nnotify_days = [0]\n", "campaign.notify_days"),
            ("[campaign]\nrun_at_hour = 24\n", "campaign.run_at_hour"),
            ("[campaign]\nname = \"a b\"\n", "campaign.name"),
            ("[campaign]\nbogus = 1\n", "bogus"),
        ] {
            let e = err(toml, &[]);
            assert!(e.contains(key), "{toml}: {e}");
        }
    }
}
