//! `[cp]`: the Codice Personale, validated into the abilitazione's own
//! [`EnablementSettings`], plus the HMAC key file `app` reads.

use std::path::PathBuf;

use serde::Deserialize;

use super::checks::{in_range, refuse_demo_material, seconds};
use super::{ConfigError, Context};
use crate::enablement::EnablementSettings;

/// `[cp]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCp {
    /// Secret (at least 32 bytes of text) the temporary CP is stored under as an HMAC.
    hmac_key_file: PathBuf,
    /// How long a temporary CP is accepted, in seconds.
    #[serde(default = "default_temp_cp_ttl")]
    temp_cp_ttl_seconds: u64,
    /// Wrong attempts before a temporary CP, the CP or the recovery answer is locked.
    #[serde(default = "default_max_attempts")]
    max_attempts: u32,
    /// How long the CP and the recovery answer stay locked after `max_attempts`, in
    /// seconds. A locked temporary CP stays locked until a new one is sent.
    #[serde(default = "default_lockout")]
    lockout_seconds: u64,
    /// Resends of the temporary CP («Ripetizione invio») one account may ask in 24
    /// hours; the first CP and recoveries do not count.
    #[serde(default = "default_max_resends")]
    max_resends_per_day: u32,
}

fn default_temp_cp_ttl() -> u64 {
    72 * 3600
}
fn default_max_attempts() -> u32 {
    5
}
fn default_lockout() -> u64 {
    900
}
fn default_max_resends() -> u32 {
    5
}

/// `[cp]`, validated.
#[derive(Debug, Clone)]
pub struct CpSection {
    /// The secret temporary CPs are stored under (HMAC).
    pub hmac_key_file: PathBuf,
    /// Lifetimes, attempts, lockout, resends; the public URL quoted in e-mails.
    pub settings: EnablementSettings,
}

/// Checks `[cp]`.
pub(super) fn validate(raw: RawCp, ctx: &Context<'_>) -> Result<CpSection, ConfigError> {
    let temp_cp_ttl = seconds(
        "cp.temp_cp_ttl_seconds",
        raw.temp_cp_ttl_seconds,
        60,
        30 * 86_400,
    )?;
    let max_attempts = in_range("cp.max_attempts", raw.max_attempts, 1, 10)?;
    let lockout = seconds("cp.lockout_seconds", raw.lockout_seconds, 60, 86_400)?;
    let max_resends_per_day = in_range("cp.max_resends_per_day", raw.max_resends_per_day, 1, 50)?;
    refuse_demo_material("cp.hmac_key_file", &raw.hmac_key_file, ctx.prod)?;
    Ok(CpSection {
        hmac_key_file: raw.hmac_key_file,
        settings: EnablementSettings {
            temp_cp_ttl,
            max_attempts,
            lockout,
            max_resends_per_day,
            public_url: ctx.public_url.to_owned(),
        },
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::{err, load};

    #[test]
    fn lifetimes_are_durations() {
        let cp = load(
            "[cp]\ntemp_cp_ttl_seconds = 3600\nmax_attempts = 3\nlockout_seconds = 120\nmax_resends_per_day = 2\n",
            &[],
        )
        .unwrap()
        .cp;
        let s = &cp.settings;
        assert_eq!(s.temp_cp_ttl, Duration::from_secs(3600));
        assert_eq!(s.max_attempts, 3);
        assert_eq!(s.lockout, Duration::from_secs(120));
        assert_eq!(s.max_resends_per_day, 2);
        assert_eq!(s.public_url, "http://localhost:8080");
        assert!(cp.hmac_key_file.ends_with("cp-hmac.key"));
    }

    #[test]
    fn bad_values_name_their_key() {
        for (toml, key) in [
            ("[cp]\ntemp_cp_ttl_seconds = 59\n", "cp.temp_cp_ttl_seconds"),
            ("[cp]\nmax_attempts = 11\n", "cp.max_attempts"),
            ("[cp]\nlockout_seconds = 86401\n", "cp.lockout_seconds"),
            ("[cp]\nmax_resends_per_day = 0\n", "cp.max_resends_per_day"),
        ] {
            let e = err(toml, &[]);
            assert!(e.contains(key), "{toml} -> {e}");
        }
    }
}
