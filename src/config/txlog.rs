//! `[txlog]`: the directory of the SPID transaction register and how long it is kept.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;
use super::checks::in_range;
use crate::txlog::MIN_RETENTION_MONTHS;

/// `[txlog]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTxLog {
    /// Directory of the daily JSON-lines files.
    #[serde(default = "default_dir")]
    dir: PathBuf,
    /// Daily files older than this many months are deleted by the gateway (daily) and
    /// by `polis-gateway txlog prune`: at least 24 (the register's legal retention).
    #[serde(default = "default_retention")]
    retention_months: u32,
}

fn default_dir() -> PathBuf {
    PathBuf::from("data/txlog")
}

fn default_retention() -> u32 {
    MIN_RETENTION_MONTHS
}

impl Default for RawTxLog {
    fn default() -> Self {
        Self {
            dir: default_dir(),
            retention_months: default_retention(),
        }
    }
}

/// `[txlog]`, validated: the directory and the retention in months.
pub(super) fn validate(raw: RawTxLog) -> Result<(PathBuf, u32), ConfigError> {
    let months = in_range(
        "txlog.retention_months",
        raw.retention_months,
        MIN_RETENTION_MONTHS,
        1200,
    )?;
    Ok((raw.dir, months))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::tests::{err, load};

    #[test]
    fn the_directory_is_kept() {
        let cfg = load("[txlog]\ndir = \"/var/log/polis\"\n", &[]).unwrap();
        assert_eq!(cfg.txlog_dir, PathBuf::from("/var/log/polis"));
        assert_eq!(cfg.txlog_retention_months, 24);
    }

    #[test]
    fn the_retention_is_at_least_24_months() {
        let cfg = load("[txlog]\nretention_months = 36\n", &[]).unwrap();
        assert_eq!(cfg.txlog_retention_months, 36);
        let e = err("[txlog]\nretention_months = 12\n", &[]);
        assert!(e.contains("txlog.retention_months"), "{e}");
    }
}
