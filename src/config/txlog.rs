//! `[txlog]`: the directory of the SPID transaction register.

use std::path::PathBuf;

use serde::Deserialize;

/// `[txlog]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTxLog {
    /// Directory of the daily JSON-lines files.
    dir: PathBuf,
}

impl Default for RawTxLog {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("data/txlog"),
        }
    }
}

/// `[txlog]`, validated: the directory.
pub(super) fn validate(raw: RawTxLog) -> PathBuf {
    raw.dir
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::tests::load;

    #[test]
    fn the_directory_is_kept() {
        let cfg = load("[txlog]\ndir = \"/var/log/polis\"\n", &[]).unwrap();
        assert_eq!(cfg.txlog_dir, PathBuf::from("/var/log/polis"));
    }
}
