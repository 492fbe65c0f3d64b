//! The gateway's background jobs: the Redis persistence check, the metadata refresh
//! loops, the transaction log's pruning, the certificate-expiry watch and the daily
//! inactivity campaign.

use std::sync::Arc;

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

/// The gateway's periodic jobs: the transaction log's pruning, the certificate-expiry
/// watch and, with `[campaign]`, the daily inactivity campaign.
pub fn spawn_jobs(cfg: &Config, gateway: &Gateway, state: Arc<dyn StateStore>) {
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
