//! `[session]`: validated into the session store's own [`SessionSettings`], plus the
//! cookie key file `app` reads.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::checks::{invalid, refuse_demo_material, seconds};
use super::{ConfigError, Context};
use crate::session::SessionSettings;

/// `[session]` as written: an encrypted cookie naming a record in the state store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSession {
    /// Secret (at least 32 bytes of text, e.g. `openssl rand -base64 64`) the session
    /// cookie is encrypted and authenticated with. Replicas share it.
    cookie_key_file: PathBuf,
    /// A session unused this long ends, in seconds.
    #[serde(default = "default_idle_timeout")]
    idle_timeout_seconds: u64,
    /// A session ends this long after the SPID login whatever happens, in seconds.
    #[serde(default = "default_absolute_timeout")]
    absolute_timeout_seconds: u64,
}

fn default_idle_timeout() -> u64 {
    1800
}
fn default_absolute_timeout() -> u64 {
    8 * 3600
}

/// `[session]`, validated.
#[derive(Debug, Clone)]
pub struct SessionSection {
    /// The secret the session cookie key is derived from.
    pub cookie_key_file: PathBuf,
    /// Idle and absolute timeouts.
    pub settings: SessionSettings,
}

/// Checks `[session]`.
pub(super) fn validate(raw: RawSession, ctx: &Context<'_>) -> Result<SessionSection, ConfigError> {
    let idle_timeout = seconds(
        "session.idle_timeout_seconds",
        raw.idle_timeout_seconds,
        ctx.min_timeout(),
        86_400,
    )?;
    if raw.absolute_timeout_seconds < raw.idle_timeout_seconds
        || raw.absolute_timeout_seconds > 7 * 86_400
    {
        return Err(invalid(
            "session.absolute_timeout_seconds",
            "must be between session.idle_timeout_seconds and 604800",
        ));
    }
    refuse_demo_material("session.cookie_key_file", &raw.cookie_key_file, ctx.prod)?;
    Ok(SessionSection {
        cookie_key_file: raw.cookie_key_file,
        settings: SessionSettings {
            idle_timeout,
            absolute_timeout: Duration::from_secs(raw.absolute_timeout_seconds),
        },
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::{err, load};

    #[test]
    fn timeouts_are_durations() {
        let s = load(
            "[session]\nidle_timeout_seconds = 600\nabsolute_timeout_seconds = 3600\n",
            &[],
        )
        .unwrap()
        .session;
        assert_eq!(s.settings.idle_timeout, Duration::from_secs(600));
        assert_eq!(s.settings.absolute_timeout, Duration::from_secs(3600));
        assert!(s.cookie_key_file.ends_with("session-cookie.key"));
    }

    #[test]
    fn the_absolute_timeout_is_not_shorter_than_the_idle_one() {
        let e = err(
            "[session]\nidle_timeout_seconds = 600\nabsolute_timeout_seconds = 599\n",
            &[],
        );
        assert!(e.contains("session.absolute_timeout_seconds"), "{e}");
        let e = err("[session]\nidle_timeout_seconds = 86401\n", &[]);
        assert!(e.contains("session.idle_timeout_seconds"), "{e}");
    }
}
