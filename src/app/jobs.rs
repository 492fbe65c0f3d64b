//! The gateway's background jobs: the Redis persistence check, the metadata refresh
//! loops, the transaction log's pruning, the certificate-expiry watch, the dependency
//! probe and the daily inactivity campaign.

use std::sync::Arc;
use std::time::Duration;

use super::{Config, Gateway, configured_certificates, state_persistence_warning};
use crate::clock::SystemClock;
use crate::federation::{self, Federation};
use crate::state::{StateStore, StoreSettings};

/// Logs a warning at start when Redis persists by snapshots only (or cannot be checked).
/// Runs in the background: the gateway starts while Redis is down.
pub fn spawn_persistence_check(cfg: &Config, state: Arc<dyn StateStore>) {
    if !matches!(cfg.state, StoreSettings::Redis(_)) {
        return;
    }
    tokio::spawn(async move {
        match state_persistence_warning(state.as_ref()).await {
            Ok(Some(warning)) => tracing::warn!(target: "state", "{warning}"),
            Ok(None) => tracing::info!(target: "state", "Redis persistence: supported"),
            Err(e) => {
                tracing::warn!(target: "state", "cannot check how Redis persists its data: {e}")
            }
        }
    });
}

/// Spawns the periodic refresh of every remote metadata source: the AgID registry and
/// each `[[federation.remote]]` entry. First fetch at start, then every period; a
/// failure keeps the source's last good copy until its validUntil.
pub fn spawn_metadata_refresh(cfg: &Config, federation: Arc<Federation>) {
    if let Some(reg) = cfg.federation.registry.clone() {
        let fed = federation.clone();
        spawn_refresh(reg.url.to_string(), reg.refresh_every, move |client| {
            let (fed, reg) = (fed.clone(), reg.clone());
            async move { federation::refresh_registry(&fed, &reg, &client).await }
        });
    }
    for src in cfg.federation.remote.clone() {
        let fed = federation.clone();
        spawn_refresh(src.url.to_string(), src.refresh_every, move |client| {
            let (fed, src) = (fed.clone(), src.clone());
            async move { federation::refresh_remote(&fed, &src, &client).await }
        });
    }
}

/// One source's refresh loop, logging each outcome.
fn spawn_refresh<F, Fut>(source: String, period: std::time::Duration, refresh: F)
where
    F: Fn(reqwest::Client) -> Fut + Send + 'static,
    Fut: std::future::Future<
            Output = Result<federation::RegistryUpdate, federation::FederationError>,
        > + Send,
{
    tokio::spawn(async move {
        let client = match federation::metadata_client() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(target: "federation", "{e}");
                return;
            }
        };
        let mut every = tokio::time::interval(period);
        loop {
            every.tick().await;
            match refresh(client.clone()).await {
                Ok(u) => tracing::info!(
                    target: "federation",
                    "{source} refreshed: {} IdPs ({} added, {} removed, {} with new keys)",
                    u.idps, u.added.len(), u.removed.len(), u.keys_changed.len()
                ),
                Err(e) => tracing::error!(
                    target: "federation",
                    "refresh of {source} failed, keeping the last good copy until its validUntil: {e}"
                ),
            }
        }
    });
}

/// How often the dependency probe runs.
const PROBE_EVERY: Duration = Duration::from_secs(15);
/// How long one check may take before it counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Every `period`: pings the state store and the account database and checks the mail
/// transport (an SMTP greeting, or the outbox directory), each within 5 s, for
/// `polis_dependency_up{dependency}` (1 or 0) and
/// `polis_dependency_check_duration_seconds{dependency}`. A change of state is logged
/// once (down with its reason, up again), not at every round.
pub fn spawn_dependency_probe(gateway: &Gateway, state: Arc<dyn StateStore>, period: Duration) {
    let accounts = gateway.accounts.clone();
    let mailer = gateway.mailer.clone();
    tokio::spawn(async move {
        let mut up = [None::<bool>; 3];
        let mut every = tokio::time::interval(period);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let [s, d, m] = &mut up;
            probe("state", state.ping(), s).await;
            probe("database", accounts.ping(), d).await;
            probe("mail", mailer.check(), m).await;
        }
    });
}

async fn probe<E: std::fmt::Display>(
    dependency: &'static str,
    check: impl std::future::Future<Output = Result<(), E>>,
    was_up: &mut Option<bool>,
) {
    let started = std::time::Instant::now();
    let failure = match tokio::time::timeout(PROBE_TIMEOUT, check).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
    };
    metrics::histogram!("polis_dependency_check_duration_seconds", "dependency" => dependency)
        .record(started.elapsed().as_secs_f64());
    let up = failure.is_none();
    metrics::gauge!("polis_dependency_up", "dependency" => dependency).set(if up {
        1.0
    } else {
        0.0
    });
    if *was_up != Some(up) {
        match (&failure, *was_up) {
            (Some(why), _) => tracing::error!(target: "health", "{dependency} is down: {why}"),
            (None, Some(false)) => tracing::info!(target: "health", "{dependency} is up again"),
            (None, _) => {}
        }
        *was_up = Some(up);
    }
}

/// The gateway's periodic jobs: the transaction log's pruning, the certificate-expiry
/// watch, the dependency probe and, with `[campaign]`, the daily inactivity campaign.
pub fn spawn_jobs(cfg: &Config, gateway: &Gateway, state: Arc<dyn StateStore>) {
    spawn_dependency_probe(gateway, state.clone(), PROBE_EVERY);
    crate::txlog::spawn_pruning(
        cfg.txlog_dir.clone(),
        cfg.txlog_retention_months,
        SystemClock::shared(),
    );
    crate::telemetry::spawn_certificate_watch(
        configured_certificates(cfg),
        gateway.federation.clone(),
        SystemClock::shared(),
    );
    if let Some(settings) = cfg.campaign.clone() {
        tokio::spawn(crate::campaign::schedule::run_daily(
            gateway.campaign.clone(),
            state,
            settings,
        ));
    }
}
