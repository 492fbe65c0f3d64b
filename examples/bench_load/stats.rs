//! Measuring a run: outcomes of each operation, latency percentiles, CPU before and
//! after (gateway, its store, this driver), and the result rows (table + JSON).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::services::{cpu_ticks, tree_cpu_ticks};

/// One operation's outcome.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub ok: bool,
    pub status: u16,
    pub latency: Duration,
    /// Why it was refused (status, body start).
    pub detail: Option<String>,
}

impl Outcome {
    pub fn failed(latency: Duration, status: u16, detail: String) -> Outcome {
        Outcome {
            ok: false,
            status,
            latency,
            detail: Some(detail),
        }
    }
}

/// Runs `f` on every item with `c` tasks pulling from a shared queue; outcomes and the
/// wall time.
pub async fn closed_loop<T, F, Fut>(items: Vec<T>, c: usize, f: F) -> (Vec<Outcome>, Duration)
where
    T: Send + Sync + Clone + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let items = Arc::new(items);
    let next = Arc::new(AtomicUsize::new(0));
    let f = Arc::new(f);
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..c.max(1) {
        let (items, next, f) = (items.clone(), next.clone(), f.clone());
        set.spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i).cloned() else {
                    break;
                };
                out.push(f(item).await);
            }
            out
        });
    }
    let mut all = Vec::with_capacity(items.len());
    while let Some(r) = set.join_next().await {
        match r {
            Ok(v) => all.extend(v),
            Err(e) => all.push(Outcome::failed(Duration::ZERO, 0, format!("task: {e}"))),
        }
    }
    (all, start.elapsed())
}

/// Latency distribution in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

pub fn latency(outcomes: &[Outcome]) -> Latency {
    let mut l: Vec<Duration> = outcomes.iter().map(|o| o.latency).collect();
    if l.is_empty() {
        return Latency::default();
    }
    l.sort();
    let pct = |p: f64| {
        let i = ((l.len() as f64 - 1.0) * p).round() as usize;
        l.get(i).copied().unwrap_or_default().as_secs_f64() * 1000.0
    };
    Latency {
        p50: pct(0.50),
        p99: pct(0.99),
        max: pct(1.0),
    }
}

/// Status code → count.
pub fn statuses(outcomes: &[Outcome]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for o in outcomes {
        *m.entry(o.status.to_string()).or_insert(0) += 1;
    }
    m
}

/// Whose CPU time is read.
#[derive(Debug, Clone, Copy)]
pub enum StorePid {
    None,
    /// One process (redis-server).
    Single(u32),
    /// A process and its children (the postmaster and its backends).
    Tree(u32),
}

/// The processes a run measures.
#[derive(Debug, Clone, Copy)]
pub struct Meter {
    pub gateway: Option<u32>,
    pub store: StorePid,
    pub tick: f64,
}

/// CPU seconds at one instant.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    gateway: Option<f64>,
    store: Option<f64>,
    driver: f64,
}

impl Meter {
    pub fn snapshot(&self) -> Snapshot {
        let secs = |t: u64| t as f64 / self.tick;
        Snapshot {
            gateway: self
                .gateway
                .and_then(|p| cpu_ticks(&p.to_string()))
                .map(secs),
            store: match self.store {
                StorePid::None => None,
                StorePid::Single(p) => cpu_ticks(&p.to_string()).map(secs),
                StorePid::Tree(p) => Some(secs(tree_cpu_ticks(p))),
            },
            driver: cpu_ticks("self").map(secs).unwrap_or(0.0),
        }
    }
}

/// One (backend, scenario, concurrency) measurement.
pub struct Row {
    pub backend: String,
    pub scenario: &'static str,
    pub concurrency: usize,
    pub outcomes: Vec<Outcome>,
    pub wall: Duration,
    pub before: Snapshot,
    pub after: Snapshot,
}

impl Row {
    pub fn accepted(&self) -> usize {
        self.outcomes.iter().filter(|o| o.ok).count()
    }

    pub fn rejections(&self) -> usize {
        self.outcomes.len() - self.accepted()
    }

    fn per_op_ms(&self, a: Option<f64>, b: Option<f64>) -> Option<f64> {
        let n = self.accepted();
        match (a, b) {
            (Some(a), Some(b)) if n > 0 => Some((b - a) * 1000.0 / n as f64),
            _ => None,
        }
    }

    pub fn json(&self) -> Value {
        let l = latency(&self.outcomes);
        let acc = self.accepted();
        let firsts: Vec<&String> = self
            .outcomes
            .iter()
            .filter_map(|o| o.detail.as_ref())
            .take(5)
            .collect();
        json!({
            "backend": self.backend,
            "scenario": self.scenario,
            "concurrency": self.concurrency,
            "requests": self.outcomes.len(),
            "accepted": acc,
            "rejections": self.rejections(),
            "statuses": statuses(&self.outcomes),
            "wall_s": self.wall.as_secs_f64(),
            "accepted_per_s": acc as f64 / self.wall.as_secs_f64().max(1e-9),
            "latency_ms": {"p50": l.p50, "p99": l.p99, "max": l.max},
            "server_cpu_ms_per_op": self.per_op_ms(self.before.gateway, self.after.gateway),
            "server_cpu_s": self.after.gateway.zip(self.before.gateway).map(|(a, b)| a - b),
            "store_cpu_ms_per_op": self.per_op_ms(self.before.store, self.after.store),
            "driver_cpu_s": self.after.driver - self.before.driver,
            "driver_cpu_ms_per_op": self.per_op_ms(Some(self.before.driver), Some(self.after.driver)),
            "first_rejections": firsts,
        })
    }
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.prec$}"))
}

/// A readable table of the rows of one scenario.
pub fn print_table(title: &str, rows: &[&Row]) {
    if rows.is_empty() {
        return;
    }
    println!("\n== {title} ==");
    println!(
        "{:<16} {:>4} {:>6} {:>6} {:>9} {:>8} {:>8} {:>8} {:>10} {:>10} {:>10}",
        "backend",
        "c",
        "ok",
        "rej",
        "ok/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "gw ms/op",
        "store ms/op",
        "drv ms/op"
    );
    for r in rows {
        let j = r.json();
        let f = |k: &str| j.get(k).and_then(Value::as_f64);
        let l = latency(&r.outcomes);
        println!(
            "{:<16} {:>4} {:>6} {:>6} {:>9.1} {:>8.2} {:>8.2} {:>8.2} {:>10} {:>10} {:>10}",
            r.backend,
            r.concurrency,
            r.accepted(),
            r.rejections(),
            f("accepted_per_s").unwrap_or(0.0),
            l.p50,
            l.p99,
            l.max,
            opt(f("server_cpu_ms_per_op"), 3),
            opt(f("store_cpu_ms_per_op"), 3),
            opt(f("driver_cpu_ms_per_op"), 3),
        );
    }
}

/// Prometheus histograms read from a `/metrics` text.
pub mod histogram {
    /// `(le, cumulative count)` of every `metric{…}` line carrying `label`, summed
    /// over the other labels and sorted by `le` (`+Inf` last).
    pub fn buckets(text: &str, metric: &str, label: &str) -> Vec<(f64, f64)> {
        let mut out: Vec<(f64, f64)> = Vec::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(metric) else {
                continue;
            };
            let Some((labels, value)) = rest.rsplit_once(' ') else {
                continue;
            };
            if !labels.starts_with('{') || !labels.contains(label) {
                continue;
            }
            let le = labels
                .split("le=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .and_then(|s| match s {
                    "+Inf" => Some(f64::INFINITY),
                    s => s.parse().ok(),
                });
            let (Some(le), Ok(count)) = (le, value.trim().parse::<f64>()) else {
                continue;
            };
            match out.iter_mut().find(|(l, _)| *l == le) {
                Some((_, c)) => *c += count,
                None => out.push((le, count)),
            }
        }
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }

    /// `after - before`, bucket by bucket (a bucket missing before counts 0).
    pub fn diff(before: &[(f64, f64)], after: &[(f64, f64)]) -> Vec<(f64, f64)> {
        after
            .iter()
            .map(|&(le, c)| {
                let b = before
                    .iter()
                    .find(|(l, _)| *l == le)
                    .map_or(0.0, |(_, c)| *c);
                (le, c - b)
            })
            .collect()
    }

    /// Observations in a cumulative histogram (its `+Inf` bucket).
    pub fn total(h: &[(f64, f64)]) -> f64 {
        h.last().map_or(0.0, |(_, c)| *c)
    }

    /// The upper bound of the first bucket holding the `q` quantile (`None` when
    /// empty; `+Inf` is reported as `null`).
    pub fn quantile_bound(h: &[(f64, f64)], q: f64) -> Option<f64> {
        let n = total(h);
        if n <= 0.0 {
            return None;
        }
        h.iter()
            .find(|(_, c)| *c >= q * n)
            .map(|(le, _)| *le)
            .filter(|le| le.is_finite())
    }
}
