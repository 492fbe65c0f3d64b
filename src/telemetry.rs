//! Prometheus metrics: the process-wide recorder behind the `metrics` facade (every
//! module records with `metrics::counter!` / `histogram!` and names nothing here), the
//! gauges sampled when `/metrics` is scraped, and the text exposition.
//!
//! The recorder is installed once per process; every gateway built in the process
//! (the tests build several) shares it. Labels only ever carry bounded values: the
//! IdP of a *stored* pending request (never one read from an unverified message),
//! levels, schemes and our own error codes.

use std::sync::{Arc, OnceLock};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram buckets of latencies, seconds (ACS, logins).
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];

/// Buckets of a whole login, seconds: the person's time at the IdP dominates.
const LOGIN_BUCKETS: [f64; 11] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's recorder, installed on first use; `None` if another recorder was
/// installed first (then nothing is exported, and nothing else changes).
pub fn recorder() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&LATENCY_BUCKETS)
                .ok()?
                .set_buckets_for_metric(
                    Matcher::Full("polis_login_duration_seconds".to_owned()),
                    &LOGIN_BUCKETS,
                )
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .clone()
}

/// A gauge refreshed at every scrape from a live source (pools, queues, counters
/// kept elsewhere).
pub type Sampler = Box<dyn Fn() + Send + Sync>;

/// What `/metrics` renders: the recorder and the samplers run before each render.
pub struct Metrics {
    handle: PrometheusHandle,
    samplers: Vec<Sampler>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("samplers", &self.samplers.len())
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// Over the process's recorder; `None` when it cannot be installed.
    pub fn new() -> Option<Self> {
        recorder().map(|handle| Self {
            handle,
            samplers: Vec::new(),
        })
    }

    /// Adds a sampler run before every render.
    #[must_use]
    pub fn with_sampler(mut self, sampler: Sampler) -> Self {
        self.samplers.push(sampler);
        self
    }

    /// The Prometheus text exposition of everything recorded, the samplers run first.
    pub fn render(&self) -> String {
        for sample in &self.samplers {
            sample();
        }
        self.handle.run_upkeep();
        self.handle.render()
    }
}

/// A count as a gauge value (saturating: no count here comes near 2³²).
fn as_f64(n: usize) -> f64 {
    f64::from(u32::try_from(n).unwrap_or(u32::MAX))
}

/// `polis_pending_requests`: the logins between `/login` and the ACS the state store
/// holds, when it counts them cheaply (the memory store; Redis would need a scan of its
/// keys, so with Redis the gauge is absent: `polis_logins_started_total` against
/// `polis_logins_finished_total` tells the same story).
pub fn pending_sampler(state: Arc<dyn crate::state::StateStore>) -> Sampler {
    Box::new(move || {
        if let Some(n) = state.pending_requests() {
            metrics::gauge!("polis_pending_requests").set(as_f64(n));
        }
    })
}

/// The samplers of admission control and the verification pool.
pub fn admission_sampler(admission: Arc<crate::admission::Admission>) -> Sampler {
    Box::new(move || {
        let s = admission.stats();
        metrics::gauge!("polis_login_requests_in_flight").set(as_f64(s.in_flight));
        metrics::gauge!("polis_verify_pool_waiting").set(as_f64(s.verify_waiting));
        metrics::gauge!("polis_verify_pool_running").set(as_f64(s.verify_running));
        if let (Some(in_use), Some(max)) = (s.db_in_use, s.db_max) {
            metrics::gauge!("polis_db_connections_in_use").set(f64::from(in_use));
            metrics::gauge!("polis_db_connections_max").set(f64::from(max));
        }
        metrics::counter!("polis_admission_refused_total").absolute(s.refused);
    })
}

/// The sampler of the argon2 pool (CP and recovery-answer hashes): jobs waiting and
/// running.
pub fn argon2_sampler(pool: crate::blocking::BlockingPool) -> Sampler {
    Box::new(move || {
        metrics::gauge!("polis_argon2_pool_waiting").set(as_f64(pool.waiting()));
        metrics::gauge!("polis_argon2_pool_running").set(as_f64(pool.running()));
    })
}

/// The sampler of the transaction log's writer.
pub fn txlog_sampler(txlog: Arc<crate::txlog::FileTxLog>) -> Sampler {
    Box::new(move || {
        let s = txlog.stats();
        metrics::counter!("polis_txlog_records_total").absolute(s.records);
        metrics::counter!("polis_txlog_syncs_total").absolute(s.syncs);
    })
}

/// The sampler of certificate expiry: `polis_certificate_expiry_days{kind, name}` for
/// the configured certificates and every trusted IdP's signing certificates (the
/// smallest when an IdP has several: the one a rollover replaces next).
pub fn certificate_sampler(
    configured: Vec<crate::federation::expiry::CertExpiry>,
    federation: Arc<crate::federation::Federation>,
    clock: crate::clock::SharedClock,
) -> Sampler {
    Box::new(move || {
        let now = clock.now();
        let mut all = configured.clone();
        all.extend(crate::federation::expiry::idp_certificates(&federation));
        let mut soonest: std::collections::BTreeMap<(&'static str, String), i64> =
            std::collections::BTreeMap::new();
        for c in &all {
            let days = c.days_left(now);
            soonest
                .entry((c.kind, c.name.clone()))
                .and_modify(|d| *d = (*d).min(days))
                .or_insert(days);
        }
        for ((kind, name), days) in soonest {
            #[allow(clippy::cast_precision_loss)]
            metrics::gauge!("polis_certificate_expiry_days", "kind" => kind, "name" => name)
                .set(days as f64);
        }
    })
}

/// Logs the certificates close to expiry (30/7/1 days: `federation::expiry`) at start
/// and then daily: the configured ones and every trusted IdP's.
pub fn spawn_certificate_watch(
    configured: Vec<crate::federation::expiry::CertExpiry>,
    federation: Arc<crate::federation::Federation>,
    clock: crate::clock::SharedClock,
) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(24 * 3600));
        loop {
            every.tick().await;
            let mut all = configured.clone();
            all.extend(crate::federation::expiry::idp_certificates(&federation));
            crate::federation::expiry::log_expiries(&all, clock.now());
        }
    });
}
