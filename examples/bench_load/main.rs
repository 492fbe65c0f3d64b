//! `make bench-load`: the gateway under load, over real HTTP.
//!
//! For each backend (`memory-sqlite`, `redis-sqlite`, `memory-postgres`) the driver
//! starts its own redis-server / PostgreSQL on loopback ports in temp dirs, writes a
//! gateway config trusting a bench IdP whose key it holds, and starts
//! `<gateway-bin> serve` pinned to one core (`taskset -c 1`; the Makefile pins the
//! driver to core 0). Then the scenarios:
//!
//! - `acs`: N pending requests created up front (GET /login), one Response signed per
//!   pending, then POST /acs at concurrency c; accepted = 303 to `/login/complete`;
//! - `full`: whole OIDC logins (authorize → /login → ACS → /login/complete → resume →
//!   POST /oidc/token), accepted only with an access token;
//! - `memory`: VmRSS of the gateway (memory state) or Redis `used_memory` before and
//!   after BENCH_PENDING pending requests;
//! - `overload` (memory-sqlite): in-flight logins (POST /acs) at the saturation rate R
//!   of `full` while new logins arrive at 2R, open loop, for ~10 s.
//!
//! Each run reports accepted, rejections, accepted/s, p50/p99/max latency, the
//! gateway's CPU per accepted operation (utime + stime from /proc), the store's and the
//! driver's. Tables on stdout, everything as JSON in `--out`. Exit status 1 if any
//! operation was refused or overload saw a 5xx; 2 on a setup error.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod client;
mod scenarios;
mod services;
mod setup;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use scenarios::Target;
use services::{Gateway, Postgres, Redis};
use setup::{BenchIdp, StateBackend};
use stats::{Meter, Row, StorePid};

const USAGE: &str = "\
bench-load: load benchmark of polis-gateway over HTTP

options:
  --gateway-bin PATH    the gateway to measure (default target/release/polis-gateway)
  --backends LIST       memory-sqlite,redis-sqlite,memory-postgres (env BENCH_BACKENDS)
  --scenarios LIST      acs,full,memory,overload (default all; env BENCH_SCENARIOS)
  --out PATH            JSON results (default target/bench-load/results.json)
  --gateway-url URL     drive an already-running gateway instead (acs scenario only;
                        it must trust the IdP metadata written next to --out)
  --sp-entity-id ID     with --gateway-url: its SP entityID (default the URL)
  --idp-entity-id ID    the bench IdP's entityID (default http://127.0.0.1:9/bench-idp)
  --no-metrics          no [metrics] listener (for gateway builds that predate it)
  --argon2-client-secret  the OIDC client's secret as an argon2id hash, no HMAC key
                        (for gateway builds older than HMAC client secrets)
environment:
  BENCH_CONCURRENCY     concurrencies (default 1,16,64)
  BENCH_N               ACS posts per measured run (default 10000; at c=1: BENCH_N_C1, 2000)
  BENCH_N_FULL          full logins per measured run (default 3000; at c=1: BENCH_N_C1)
  BENCH_PENDING         pending requests of the memory scenario (default 100000)
  BENCH_OVERLOAD_SECONDS  length of the overload run (default 10)
  BENCH_OVERLOAD_NEW    what a new login does in overload: acs (the default: once
                        admitted, POST /acs with a Response signed then) or login
                        (GET /login only, which alone does not saturate the gateway)
  BENCH_GATEWAY_CPU     taskset CPU list of the gateway (default 1; none: not pinned)
";

struct Opts {
    gateway_bin: PathBuf,
    backends: Vec<String>,
    scenarios: Vec<String>,
    out: PathBuf,
    gateway_url: Option<String>,
    sp_entity_id: Option<String>,
    idp_entity_id: String,
    concurrency: Vec<usize>,
    n_acs: usize,
    n_full: usize,
    n_c1: usize,
    pending: usize,
    overload_seconds: f64,
    overload_then_acs: bool,
    gateway_cpu: Option<String>,
    /// Give the gateway a `[metrics]` listener and keep its `/metrics` in the JSON
    /// (`--no-metrics` for builds older than `[metrics]`, which refuse the section).
    metrics: bool,
    /// Store the bench client's secret as argon2id (`--argon2-client-secret`).
    argon2_client_secret: bool,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={v:?} is not a number")),
        _ => Ok(default),
    }
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|x| x.trim().to_owned())
        .filter(|x| !x.is_empty())
        .collect()
}

fn parse_opts() -> anyhow::Result<Opts> {
    let mut o = Opts {
        gateway_bin: "target/release/polis-gateway".into(),
        backends: list(&env_or(
            "BENCH_BACKENDS",
            "memory-sqlite,redis-sqlite,memory-postgres",
        )),
        scenarios: list(&env_or("BENCH_SCENARIOS", "acs,full,memory,overload")),
        out: "target/bench-load/results.json".into(),
        gateway_url: None,
        sp_entity_id: None,
        idp_entity_id: "http://127.0.0.1:9/bench-idp".into(),
        concurrency: Vec::new(),
        n_acs: env_num("BENCH_N", 10_000)?,
        n_full: env_num("BENCH_N_FULL", env_num("BENCH_N", 3000)?)?,
        n_c1: env_num("BENCH_N_C1", 2000)?,
        pending: env_num("BENCH_PENDING", 100_000)?,
        overload_seconds: env_num("BENCH_OVERLOAD_SECONDS", 10.0)?,
        overload_then_acs: match env_or("BENCH_OVERLOAD_NEW", "acs").as_str() {
            "login" => false,
            "acs" => true,
            other => bail!("BENCH_OVERLOAD_NEW={other:?}: login or acs"),
        },
        gateway_cpu: Some(env_or("BENCH_GATEWAY_CPU", "1")).filter(|c| c != "none"),
        metrics: true,
        argon2_client_secret: false,
    };
    for c in list(&env_or("BENCH_CONCURRENCY", "1,16,64")) {
        o.concurrency.push(
            c.parse()
                .with_context(|| format!("BENCH_CONCURRENCY: {c:?}"))?,
        );
    }
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--gateway-bin" => o.gateway_bin = val()?.into(),
            "--backends" => o.backends = list(&val()?),
            "--scenarios" => o.scenarios = list(&val()?),
            "--out" => o.out = val()?.into(),
            "--gateway-url" => o.gateway_url = Some(val()?.trim_end_matches('/').to_owned()),
            "--sp-entity-id" => o.sp_entity_id = Some(val()?),
            "--idp-entity-id" => o.idp_entity_id = val()?,
            "--no-metrics" => o.metrics = false,
            "--argon2-client-secret" => o.argon2_client_secret = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown option {other:?}\n{USAGE}"),
        }
    }
    for b in &o.backends {
        if ![
            "memory-sqlite",
            "redis-sqlite",
            "memory-postgres",
            "redis-postgres",
        ]
        .contains(&b.as_str())
        {
            bail!("unknown backend {b:?}");
        }
    }
    for s in &o.scenarios {
        if !["acs", "full", "memory", "overload"].contains(&s.as_str()) {
            bail!("unknown scenario {s:?}");
        }
    }
    Ok(o)
}

impl Opts {
    fn wants(&self, s: &str) -> bool {
        self.scenarios.iter().any(|x| x == s)
    }

    fn n_for(&self, n: usize) -> impl Fn(usize) -> usize + use<> {
        let c1 = self.n_c1.min(n);
        move |c| if c <= 1 { c1 } else { n }
    }
}

/// One backend's processes (the gateway first: it is dropped first).
struct Backend {
    gateway: Gateway,
    redis: Option<Redis>,
    _postgres: Option<Postgres>,
    target: Arc<Target>,
    _tmp: tempfile::TempDir,
}

async fn start_backend(o: &Opts, name: &str, idp: &Arc<BenchIdp>) -> anyhow::Result<Backend> {
    let (state, db) = name.split_once('-').context("backend name")?;
    let tmp = tempfile::Builder::new().prefix("bench-load-").tempdir()?;
    let redis = match state {
        "redis" => Some(Redis::start()?),
        _ => None,
    };
    let postgres = match db {
        "postgres" => Some(Postgres::start()?),
        _ => None,
    };
    let database_url = match &postgres {
        Some(pg) => pg.create_database("polis_bench")?,
        None => format!("sqlite://{}", tmp.path().join("polis.db").display()),
    };
    let state_backend = match &redis {
        Some(r) => StateBackend::Redis(r.url()),
        None => StateBackend::Memory,
    };
    let gw = format!("http://127.0.0.1:{}", services::free_port()?);
    let metrics_addr = match o.metrics {
        true => Some(format!("127.0.0.1:{}", services::free_port()?)),
        false => None,
    };
    let files = setup::write_config(
        tmp.path(),
        &gw,
        idp,
        &state_backend,
        &database_url,
        metrics_addr.as_deref(),
        o.argon2_client_secret,
    )?;
    let gateway =
        Gateway::start(&o.gateway_bin, o.gateway_cpu.as_deref(), &files.config, &gw).await?;
    let store = match (&redis, &postgres) {
        (Some(r), _) => StorePid::Single(r.pid()),
        (None, Some(pg)) => pg.postmaster_pid().map_or(StorePid::None, StorePid::Tree),
        _ => StorePid::None,
    };
    let target = Arc::new(Target {
        backend: name.to_owned(),
        gw: gw.clone(),
        sp_entity_id: gw.clone(),
        acs_url: format!("{gw}/acs"),
        idp: idp.clone(),
        client: client::http_client()?,
        meter: Meter {
            gateway: Some(gateway.pid()),
            store,
            tick: services::clock_ticks(),
        },
        outbox: Some(files.outbox),
        client_secret: Some(files.client_secret),
        metrics_url: metrics_addr.map(|a| format!("http://{a}/metrics")),
    });
    eprintln!(
        "[{name}] {} pid {} at {gw} (log {})",
        gateway.name(),
        gateway.pid(),
        gateway.log.display()
    );
    Ok(Backend {
        gateway,
        redis,
        _postgres: postgres,
        target,
        _tmp: tmp,
    })
}

struct Results {
    rows: Vec<Row>,
    memory: Vec<Value>,
    overload: Vec<Value>,
    metrics: serde_json::Map<String, Value>,
    errors: Vec<String>,
}

async fn run_backend(
    o: &Opts,
    name: &str,
    idp: &Arc<BenchIdp>,
    res: &mut Results,
) -> anyhow::Result<()> {
    let timed = ["acs", "full", "overload"];
    if timed.iter().any(|s| o.wants(s)) {
        let mut b = start_backend(o, name, idp).await?;
        let r = run_scenarios(o, name, &mut b, res).await;
        save_log(o, &b, name);
        r?;
    }
    // On a fresh gateway and store: what the other scenarios allocated does not count.
    if o.wants("memory") {
        let b = start_backend(o, name, idp).await?;
        let pid = name.starts_with("memory-").then(|| b.gateway.pid());
        let r = scenarios::memory(&b.target, pid, b.redis.as_ref(), o.pending).await;
        save_log(o, &b, &format!("{name}-memory"));
        res.memory.push(r?);
    }
    Ok(())
}

/// The gateway's log next to the results (warnings and errors: POLIS_LOG=warn).
fn save_log(o: &Opts, b: &Backend, name: &str) {
    if let Some(dir) = o.out.parent() {
        let _ = std::fs::copy(&b.gateway.log, dir.join(format!("gateway-{name}.log")));
    }
}

async fn run_scenarios(
    o: &Opts,
    name: &str,
    b: &mut Backend,
    res: &mut Results,
) -> anyhow::Result<()> {
    let t = b.target.clone();
    if o.wants("acs") {
        let rows = scenarios::acs(&t, &o.concurrency, o.n_for(o.n_acs), 64).await?;
        res.rows.extend(rows);
    }
    let mut best_full = None::<f64>;
    if o.wants("full") {
        let rows = scenarios::full(&t, &o.concurrency, o.n_for(o.n_full), 16).await?;
        for r in &rows {
            let rate = r.accepted() as f64 / r.wall.as_secs_f64().max(1e-9);
            best_full = Some(best_full.map_or(rate, |b| b.max(rate)));
        }
        res.rows.extend(rows);
    }
    if o.wants("overload") && name == "memory-sqlite" {
        let rate = match best_full {
            Some(r) => r,
            None => {
                eprintln!("[{name}] overload: measuring the full-login rate at c=64");
                let rows = scenarios::full(&t, &[64], |_| 300, 16).await?;
                rows.first()
                    .map(|r| r.accepted() as f64 / r.wall.as_secs_f64().max(1e-9))
                    .unwrap_or(10.0)
            }
        };
        let v = scenarios::overload(&t, rate, o.overload_seconds, o.overload_then_acs).await?;
        eprintln!("[{name}] overload: {v}");
        if v.get("errors_5xx").and_then(Value::as_u64).unwrap_or(0) > 0 {
            res.errors.push(format!("{name}: overload saw 5xx answers"));
        }
        res.overload.push(v);
    }
    if let Some(m) = scenarios::scrape_metrics(&t).await {
        res.metrics.insert(name.to_owned(), Value::String(m));
    }
    if !b.gateway.alive() {
        bail!(
            "the gateway exited during the runs; log:\n{}",
            std::fs::read_to_string(&b.gateway.log).unwrap_or_default()
        );
    }
    Ok(())
}

/// `--gateway-url`: the acs scenario against a gateway the driver did not start.
async fn run_remote(
    o: &Opts,
    url: &str,
    idp: &Arc<BenchIdp>,
    res: &mut Results,
) -> anyhow::Result<()> {
    let sp = o.sp_entity_id.clone().unwrap_or_else(|| url.to_owned());
    let t = Arc::new(Target {
        backend: "remote".into(),
        gw: url.to_owned(),
        acs_url: format!("{url}/acs"),
        sp_entity_id: sp,
        idp: idp.clone(),
        client: client::http_client()?,
        meter: Meter {
            gateway: None,
            store: StorePid::None,
            tick: services::clock_ticks(),
        },
        outbox: None,
        client_secret: None,
        metrics_url: None,
    });
    if o.wants("acs") {
        res.rows
            .extend(scenarios::acs(&t, &o.concurrency, o.n_for(o.n_acs), 64).await?);
    }
    if let Some(m) = scenarios::scrape_metrics(&t).await {
        res.metrics.insert("remote".into(), Value::String(m));
    }
    Ok(())
}

async fn run(o: Opts) -> anyhow::Result<Vec<String>> {
    let started_at = chrono::Utc::now().to_rfc3339();
    let idp = Arc::new(BenchIdp::new(&o.idp_entity_id)?);
    if let Some(dir) = o.out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        std::fs::write(dir.join("idp-metadata.xml"), &idp.metadata)?;
    }
    let mut res = Results {
        rows: Vec::new(),
        memory: Vec::new(),
        overload: Vec::new(),
        metrics: serde_json::Map::new(),
        errors: Vec::new(),
    };
    let outcome = match &o.gateway_url {
        Some(url) => run_remote(&o, url, &idp, &mut res).await,
        None => {
            if !o.gateway_bin.is_file() {
                bail!(
                    "{} not found (cargo build --release)",
                    o.gateway_bin.display()
                );
            }
            let mut r = Ok(());
            for name in &o.backends {
                r = run_backend(&o, name, &idp, &mut res)
                    .await
                    .with_context(|| format!("backend {name}"));
                if r.is_err() {
                    break;
                }
            }
            r
        }
    };
    // Tables and JSON also for what ran before an error.
    for scenario in ["acs", "full"] {
        let rows: Vec<&Row> = res.rows.iter().filter(|r| r.scenario == scenario).collect();
        stats::print_table(
            &format!("{scenario} (server CPU = gateway utime+stime per accepted op)"),
            &rows,
        );
    }
    print_memory(&res.memory);
    print_overload(&res.overload);
    for r in &res.rows {
        if r.rejections() > 0 {
            res.errors.push(format!(
                "{} {} c={}: {} rejections",
                r.backend,
                r.scenario,
                r.concurrency,
                r.rejections()
            ));
        }
    }
    let doc = json!({
        "gateway_bin": o.gateway_bin,
        "gateway_url": o.gateway_url,
        "gateway_cpu": o.gateway_cpu,
        "argon2_client_secret": o.argon2_client_secret,
        "started_at": started_at,
        "options": {
            "backends": o.backends,
            "scenarios": o.scenarios,
            "concurrency": o.concurrency,
            "n_acs": o.n_acs,
            "n_full": o.n_full,
            "n_c1": o.n_c1,
            "pending": o.pending,
            "overload_seconds": o.overload_seconds,
            "overload_new": if o.overload_then_acs { "acs" } else { "login" },
        },
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "runs": res.rows.iter().map(Row::json).collect::<Vec<_>>(),
        "memory": res.memory,
        "overload": res.overload,
        "metrics": res.metrics,
        "errors": res.errors,
        "setup_error": outcome.as_ref().err().map(|e| format!("{e:#}")),
    });
    std::fs::write(&o.out, serde_json::to_string_pretty(&doc)?)
        .with_context(|| format!("write {}", o.out.display()))?;
    println!("\nresults: {}", o.out.display());
    outcome?;
    Ok(res.errors)
}

fn num(v: &Value, path: &[&str]) -> String {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    match v {
        Value::Number(n) if n.is_f64() => format!("{:.2}", n.as_f64().unwrap_or(0.0)),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn print_memory(rows: &[Value]) {
    if rows.is_empty() {
        return;
    }
    println!("\n== memory (pending requests created with GET /login, c=64) ==");
    println!(
        "{:<16} {:>8} {:>8} {:>10} {:>12} {:>12} {:>14} {:>10}",
        "backend",
        "created",
        "logins/s",
        "KiB/pend",
        "RSS before",
        "RSS after",
        "redis B/pend",
        "statuses"
    );
    for m in rows {
        println!(
            "{:<16} {:>8} {:>8} {:>10} {:>12} {:>12} {:>14} {:>10}",
            m["backend"].as_str().unwrap_or_default(),
            num(m, &["created"]),
            num(m, &["logins_per_s"]),
            num(m, &["kib_per_pending"]),
            num(m, &["gateway_rss_kib", "before"]),
            num(m, &["gateway_rss_kib", "after"]),
            num(m, &["redis_bytes_per_pending"]),
            m["statuses"]
        );
    }
}

fn print_overload(rows: &[Value]) {
    for v in rows {
        println!(
            "\n== overload ({}): R = {}/s for {} s, gateway CPU {} of a core, driver CPU {} ==",
            v["backend"].as_str().unwrap_or_default(),
            num(v, &["rate_per_s"]),
            num(v, &["seconds"]),
            num(v, &["server_cpu_utilisation"]),
            num(v, &["driver_cpu_utilisation"]),
        );
        if v["server_acs"].is_object() {
            println!(
                "  the gateway's own ACS time (polis_acs_duration_seconds, accepted): {} Responses, p50 ≤ {} ms, p99 ≤ {} ms",
                num(v, &["server_acs", "count"]),
                num(v, &["server_acs", "p50_le_ms"]),
                num(v, &["server_acs", "p99_le_ms"]),
            );
        }
        println!(
            "  in-flight POST /acs: sent {} of {} accepted {} p50 {} ms p99 {} ms max {} ms statuses {} (Retry-After {})",
            num(v, &["inflight", "sent"]),
            num(v, &["inflight", "target"]),
            num(v, &["inflight", "accepted"]),
            num(v, &["inflight", "latency_ms", "p50"]),
            num(v, &["inflight", "latency_ms", "p99"]),
            num(v, &["inflight", "latency_ms", "max"]),
            v["inflight"]["statuses"],
            num(v, &["inflight", "with_retry_after"]),
        );
        println!(
            "  new GET /login at 2R: sent {} of {} statuses {} shed with Retry-After {} p99 {} ms",
            num(v, &["new_logins", "sent"]),
            num(v, &["new_logins", "target"]),
            v["new_logins"]["statuses"],
            num(v, &["new_logins", "shed_with_retry_after"]),
            num(v, &["new_logins", "latency_ms", "p99"]),
        );
        if v["new_logins"]["then_acs"] == Value::Bool(true) {
            println!(
                "  newcomers' POST /acs: sent {} accepted {} p99 {} ms max {} ms statuses {} (Retry-After {})",
                num(v, &["new_logins", "acs", "sent"]),
                num(v, &["new_logins", "acs", "accepted"]),
                num(v, &["new_logins", "acs", "latency_ms", "p99"]),
                num(v, &["new_logins", "acs", "latency_ms", "max"]),
                v["new_logins"]["acs"]["statuses"],
                num(v, &["new_logins", "acs", "with_retry_after"]),
            );
        }
        println!(
            "  5xx (other than 503 + Retry-After to new logins): {}",
            num(v, &["errors_5xx"])
        );
    }
}

fn main() -> ExitCode {
    let o = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench-load: {e:#}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench-load: tokio runtime: {e}");
            return ExitCode::from(2);
        }
    };
    // Ctrl-C or SIGTERM drops the run, and with it every child process (their Drop guards).
    let result = rt.block_on(async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => return Err(anyhow::anyhow!("SIGTERM handler: {e}")),
            };
        tokio::select! {
            r = run(o) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
            _ = term.recv() => Err(anyhow::anyhow!("terminated")),
        }
    });
    match result {
        Ok(errors) if errors.is_empty() => ExitCode::SUCCESS,
        Ok(errors) => {
            for e in errors {
                eprintln!("bench-load: FAILED: {e}");
            }
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("bench-load: {e:#}");
            ExitCode::from(2)
        }
    }
}
