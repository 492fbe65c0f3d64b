//! `polis-gateway campaign inactivity`: one run of an inactivity campaign by hand, on
//! the configured database, state store and mail server.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;

use super::{Config, build_gateway, state_store};
use crate::campaign::{CsvReport, Progress, Rule, RunOptions, report_name};
use crate::clock::SystemClock;

/// Runs `rule` now; the CSV report goes to `report` (default: `<data_dir>/campaigns/`),
/// progress lines to standard error.
pub async fn campaign_inactivity(
    cfg: &Config,
    rule: &Rule,
    options: &RunOptions,
    report: Option<PathBuf>,
) -> anyhow::Result<(Progress, PathBuf)> {
    let clock = SystemClock::shared();
    let gateway = build_gateway(cfg, state_store(cfg)?, clock.clone()).await?;
    let path = match report {
        Some(path) => path,
        None => {
            let dir = cfg.data_dir.join("campaigns");
            std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
            dir.join(report_name(rule, clock.now()))
        }
    };
    let file = std::fs::File::create(&path).with_context(|| path.display().to_string())?;
    let mut csv = CsvReport::new(std::io::BufWriter::new(file))?;
    let started = std::time::Instant::now();
    let progress = gateway
        .campaign
        .run(rule, options, &mut |row| csv.row(row), &mut |p| {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(
                err,
                "{:>8.1} s  scanned {}  notified {}  already {}  revoked {}  failed {}",
                started.elapsed().as_secs_f64(),
                p.scanned,
                p.notified,
                p.already_notified,
                p.revoked,
                p.failed
            );
        })
        .await?;
    csv.finish()?;
    Ok((progress, path))
}
