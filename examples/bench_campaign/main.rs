//! `make bench-campaign`: one inactivity campaign over `BENCH_CAMPAIGN_ACCOUNTS`
//! synthetic accounts (2,000,000 by default, the seeds' figure) on PostgreSQL, with the
//! notices going to the mail outbox.
//!
//! The driver starts its own PostgreSQL with the server's durable defaults (fsync and
//! synchronous commit on: every claim, "sent" mark and revocation is a committed
//! transaction, as in production), applies the gateway's migrations, loads the accounts
//! with `COPY` (enabled, a valid codice fiscale and an e-mail address each, last seen on
//! 15 June 2015; the SPID identity rows too) and builds the gateway from
//! `config/demo.toml` plus that database and an outbox in a temp dir. Then the seeds'
//! campaign — «unused since 1 November 2015, revoked on 11 December» — runs in this
//! process through `Campaign::run`, exactly what `polis-gateway campaign inactivity`
//! calls, under a clock placed on each day of the campaign:
//!
//! 1. every notice day of `BENCH_CAMPAIGN_DAYS` (default `30,1`): one notice to each
//!    account, written to the outbox (fsync of the file and of the directory);
//! 2. the first notice day again: the rerun, which must send nothing;
//! 3. the deadline: every enablement revoked.
//!
//! Per phase: wall time, accounts per second, CPU of this process and of PostgreSQL,
//! peak RSS of this process (its high-water mark reset before the phase), the outbox's
//! files and bytes; the database's size at the end. A table on stdout, JSON in
//! `target/bench-campaign/`. Exit status 1 if a phase did not do what it should (every
//! account notified once per day, nothing twice, everybody revoked), 2 on a setup error.
//! `BENCH_CAMPAIGN_CONCURRENCY` (8) and `BENCH_CAMPAIGN_BATCH` (1000) as in
//! `[campaign]`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[allow(dead_code)]
#[path = "../bench_load/services.rs"]
mod services;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDate, Utc};
use polis_gateway::accounts::FiscalCode;
use polis_gateway::campaign::{CsvReport, Progress, Rule, RunOptions, Window};
use polis_gateway::clock::{ManualClock, rome_midnight};
use polis_gateway::config::Config;
use polis_gateway::state::MemoryStore;
use serde_json::{Value, json};
use services::{Postgres, clock_ticks, cpu_ticks, tree_cpu_ticks};

/// The seeds' campaign: accounts unused since this day...
const SINCE: (i32, u32, u32) = (2015, 11, 1);
/// ...are revoked on this one.
const DEADLINE: (i32, u32, u32) = (2015, 12, 11);
/// When every synthetic account was last seen (before `SINCE`).
const LAST_SEEN: &str = "2015-06-15T09:00:00.000000000Z";
/// When they were created and enabled.
const CREATED: &str = "2012-03-01T09:00:00.000000000Z";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={v}: not a valid value")),
        Err(_) => Ok(default),
    }
}

struct Settings {
    accounts: u64,
    days: Vec<u32>,
    options: RunOptions,
}

fn settings() -> anyhow::Result<Settings> {
    let days: String = env_or("BENCH_CAMPAIGN_DAYS", "30,1".to_owned())?;
    let days = days
        .split(',')
        .map(|d| d.trim().parse::<u32>())
        .collect::<Result<Vec<_>, _>>()
        .context("BENCH_CAMPAIGN_DAYS: days separated by commas")?;
    Ok(Settings {
        accounts: env_or("BENCH_CAMPAIGN_ACCOUNTS", 2_000_000)?,
        days,
        options: RunOptions {
            dry_run: false,
            batch_size: env_or("BENCH_CAMPAIGN_BATCH", 1000)?,
            // The outbox takes what it gets: the rate limit is the mail server's concern.
            mails_per_second: None,
            concurrency: env_or("BENCH_CAMPAIGN_CONCURRENCY", 8)?,
        },
    })
}

/// `VmHWM` and `VmRSS` of this process, KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Resets the peak RSS to the current RSS (Linux ≥ 4.0).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Files and bytes in the outbox.
fn outbox_size(dir: &Path) -> (u64, u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    entries.flatten().fold((0, 0), |(n, bytes), e| {
        let len = e.metadata().map(|m| m.len()).unwrap_or(0);
        (n + 1, bytes + len)
    })
}

/// A valid codice fiscale per `i` (distinct for every `i` < 26³ · 100 · 12 · 28):
/// surname and name letters, year, month and day from `i`, born in Rome, the check
/// character the validator accepts.
fn fiscal_code(i: u64) -> String {
    const MONTHS: &[u8] = b"ABCDEHLMPRST";
    let letter = |n: u64| char::from(b'A' + (n % 26) as u8);
    let mut n = i;
    let surname: String = (0..3)
        .map(|_| {
            let c = letter(n);
            n /= 26;
            c
        })
        .collect();
    let year = n % 100;
    n /= 100;
    let month = char::from(MONTHS[(n % 12) as usize]);
    n /= 12;
    let day = 1 + n % 28;
    let body = format!("{surname}MRA{year:02}{month}{day:02}H501");
    ('A'..='Z')
        .map(|check| format!("{body}{check}"))
        .find(|code| FiscalCode::parse(code).is_ok())
        .unwrap_or_else(|| panic!("no check character for {body}"))
}

/// The accounts from `bench_seed`: created and enabled at `$1`, last seen at `$2`.
const SEED_ACCOUNTS: &str = "INSERT INTO accounts (id, username, fiscal_code, \
     given_name, family_name, birth_date, birth_place, sex, email, phones_json, \
     recovery_question, recovery_answer_hash, cp_hash, cp_history_json, enablement_state, \
     created_at, updated_at, enabled_at, last_access_at, spid_level, version) \
     SELECT md5('bench-' || i)::uuid::text, 'persona.prova' || i, cf, 'Persona', \
     'Di Prova', '1980-01-01', 'H501', 'M', 'persona' || i || '@bench.example.it', \
     '{\"mobile\":null,\"landline\":null}', 'Nome del primo animale', \
     '$argon2id$v=19$m=19456,t=2,p=1$YmVuY2gtc2FsdA$YmVuY2gtbm90LWEtcmVhbC1oYXNo', \
     '$argon2id$v=19$m=19456,t=2,p=1$YmVuY2gtc2FsdA$YmVuY2gtbm90LWEtcmVhbC1oYXNo', \
     '[]', 'enabled', $1, $1, $1, $2, 2, 1 FROM bench_seed";

/// Loads `n` enabled accounts (and their SPID identities) with COPY.
async fn seed(url: &str, n: u64) -> anyhow::Result<f64> {
    use sqlx::Connection as _;
    let started = Instant::now();
    let mut conn = sqlx::PgConnection::connect(url).await?;
    sqlx::query("CREATE UNLOGGED TABLE bench_seed (i BIGINT NOT NULL, cf TEXT NOT NULL)")
        .execute(&mut conn)
        .await?;
    let mut copy = conn
        .copy_in_raw("COPY bench_seed (i, cf) FROM STDIN WITH (FORMAT csv)")
        .await?;
    let mut chunk = String::with_capacity(1 << 20);
    for i in 0..n {
        chunk.push_str(&format!("{i},{}\n", fiscal_code(i)));
        if chunk.len() > (1 << 20) - 64 {
            copy.send(chunk.as_bytes()).await?;
            chunk.clear();
        }
    }
    copy.send(chunk.as_bytes()).await?;
    copy.finish().await?;
    sqlx::query(SEED_ACCOUNTS)
        .bind(CREATED)
        .bind(LAST_SEEN)
        .execute(&mut conn)
        .await?;
    sqlx::query(
        "INSERT INTO account_identities (scheme, subject, account_id, linked_at, \
         last_login_at) SELECT 'spid', fiscal_code, id, created_at, last_access_at \
         FROM accounts",
    )
    .execute(&mut conn)
    .await?;
    sqlx::query("DROP TABLE bench_seed")
        .execute(&mut conn)
        .await?;
    sqlx::query("VACUUM ANALYZE").execute(&mut conn).await?;
    Ok(started.elapsed().as_secs_f64())
}

struct Bench {
    pg: Postgres,
    url: String,
    outbox: PathBuf,
    reports: PathBuf,
    clock: Arc<ManualClock>,
    gateway: polis_gateway::app::Gateway,
    ticks: f64,
}

/// One phase: the campaign run on `day` (noon, Italian time).
struct Phase {
    name: String,
    progress: Progress,
    seconds: f64,
    cpu_self: f64,
    cpu_pg: f64,
    peak_rss_kib: u64,
    outbox_files: u64,
}

impl Bench {
    async fn run(
        &self,
        name: String,
        day: NaiveDate,
        rule: &Rule,
        options: &RunOptions,
    ) -> anyhow::Result<Phase> {
        self.clock
            .set(rome_midnight(day) + chrono::Duration::hours(12));
        let report = self.reports.join(format!("{name}.csv"));
        let file = std::fs::File::create(&report)?;
        let mut csv = CsvReport::new(std::io::BufWriter::new(file))?;
        reset_peak_rss();
        let pg_pid = self.pg.postmaster_pid().context("postmaster pid")?;
        let (self0, pg0) = (cpu_ticks("self").unwrap_or(0), tree_cpu_ticks(pg_pid));
        let started = Instant::now();
        let mut last_line = Instant::now();
        let progress = self
            .gateway
            .campaign
            .run(rule, options, &mut |row| csv.row(row), &mut |p| {
                if last_line.elapsed().as_secs() >= 10 {
                    last_line = Instant::now();
                    eprintln!(
                        "  {name}: {:>7.0} s  scanned {}  notified {}  already {}  revoked {}  failed {}",
                        started.elapsed().as_secs_f64(),
                        p.scanned, p.notified, p.already_notified, p.revoked, p.failed
                    );
                }
            })
            .await?;
        let seconds = started.elapsed().as_secs_f64();
        csv.finish()?;
        let (peak, _) = memory_kib();
        let (self1, pg1) = (cpu_ticks("self").unwrap_or(0), tree_cpu_ticks(pg_pid));
        Ok(Phase {
            name,
            progress,
            seconds,
            cpu_self: (self1.saturating_sub(self0)) as f64 / self.ticks,
            cpu_pg: (pg1.saturating_sub(pg0)) as f64 / self.ticks,
            peak_rss_kib: peak,
            outbox_files: outbox_size(&self.outbox).0,
        })
    }
}

async fn setup(accounts: u64, work: &Path) -> anyhow::Result<(Bench, f64)> {
    let pg = Postgres::start_durable()?;
    let url = pg.create_database("bench_campaign")?;
    let data = work.join("data");
    std::fs::create_dir_all(&data)?;
    let overlay = work.join("bench.toml");
    std::fs::write(
        &overlay,
        format!(
            "data_dir = {data:?}\n[database]\nurl = {url:?}\nmax_connections = 16\n",
            data = data.display().to_string(),
        ),
    )?;
    let cfg = Config::load(&[PathBuf::from("config/demo.toml"), overlay])
        .context("config/demo.toml + the bench's database (run from the repository root)")?;
    polis_gateway::app::migrate(&cfg).await?;
    eprintln!("seeding {accounts} accounts…");
    let seeded = seed(&url, accounts).await?;
    eprintln!("seeded in {seeded:.1} s");
    let clock = ManualClock::at(Utc::now());
    let gateway =
        polis_gateway::app::build_gateway(&cfg, Arc::new(MemoryStore::new()), clock.clone())
            .await?;
    let reports = work.join("reports");
    std::fs::create_dir_all(&reports)?;
    Ok((
        Bench {
            pg,
            url,
            outbox: data.join("outbox"),
            reports,
            clock,
            gateway,
            ticks: clock_ticks(),
        },
        seeded,
    ))
}

fn date((y, m, d): (i32, u32, u32)) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

async fn database_bytes(url: &str) -> anyhow::Result<i64> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let (bytes,): (i64,) = sqlx::query_as("SELECT pg_database_size(current_database())")
        .fetch_one(&mut conn)
        .await?;
    Ok(bytes)
}

/// What each phase must have done, or why not.
fn check(phase: &Phase, n: u64, expected: (u64, u64, u64)) -> Option<String> {
    let p = &phase.progress;
    let got = (p.notified, p.already_notified, p.revoked);
    (got != expected || p.failed != 0 || p.scanned != n).then(|| {
        format!(
            "{}: (notified, already, revoked) = {got:?}, {} failed, {} scanned; expected {expected:?}, 0, {n}",
            phase.name, p.failed, p.scanned
        )
    })
}

async fn bench() -> anyhow::Result<(Value, Vec<String>)> {
    let s = settings()?;
    let work = tempfile::Builder::new()
        .prefix("bench-campaign-")
        .tempdir()?;
    let (b, seeded) = setup(s.accounts, work.path()).await?;
    let deadline = date(DEADLINE);
    let rule = Rule::new(
        "bench-2015".into(),
        Window::Since {
            since: date(SINCE),
            deadline,
        },
        &s.days,
    )?;
    let mut days = s.days.clone();
    days.sort_unstable_by(|a, b| b.cmp(a));
    let n = s.accounts;
    let mut phases = Vec::new();
    let mut problems = Vec::new();
    for (i, d) in days.iter().enumerate() {
        let day = deadline - chrono::Days::new(u64::from(*d));
        let phase = b
            .run(format!("notice-{d}d"), day, &rule, &s.options)
            .await?;
        problems.extend(check(&phase, n, (n, 0, 0)));
        if i == 0 {
            let again = b.run(format!("rerun-{d}d"), day, &rule, &s.options).await?;
            problems.extend(check(&again, n, (0, n, 0)));
            phases.push(phase);
            phases.push(again);
        } else {
            phases.push(phase);
        }
    }
    let phase = b
        .run("deadline".into(), deadline, &rule, &s.options)
        .await?;
    problems.extend(check(&phase, n, (0, 0, n)));
    phases.push(phase);
    let expected_files = n * days.len() as u64;
    let (files, bytes) = outbox_size(&b.outbox);
    if files != expected_files {
        problems.push(format!(
            "the outbox holds {files} mails, {expected_files} expected"
        ));
    }
    let db = database_bytes(&b.url).await?;
    print_table(n, seeded, &phases, files, bytes, db);
    let rows: Vec<Value> = phases.iter().map(phase_json).collect();
    Ok((
        json!({
            "accounts": n,
            "notify_days": s.days,
            "concurrency": s.options.concurrency,
            "batch_size": s.options.batch_size,
            "postgres": "durable defaults (fsync, synchronous_commit on)",
            "seed_seconds": seeded,
            "phases": rows,
            "outbox": {"files": files, "bytes": bytes},
            "database_bytes": db,
            "problems": problems,
        }),
        problems,
    ))
}

fn phase_json(p: &Phase) -> Value {
    json!({
        "phase": p.name,
        "seconds": p.seconds,
        "accounts_per_second": p.progress.scanned as f64 / p.seconds.max(1e-9),
        "scanned": p.progress.scanned,
        "notified": p.progress.notified,
        "already_notified": p.progress.already_notified,
        "revoked": p.progress.revoked,
        "failed": p.progress.failed,
        "cpu_seconds_campaign": p.cpu_self,
        "cpu_seconds_postgres": p.cpu_pg,
        "peak_rss_kib": p.peak_rss_kib,
        "outbox_files_after": p.outbox_files,
    })
}

fn print_table(n: u64, seeded: f64, phases: &[Phase], files: u64, bytes: u64, db: i64) {
    println!(
        "\ninactivity campaign, {n} accounts on PostgreSQL (durable), seeded in {seeded:.0} s\n"
    );
    println!(
        "| phase | wall s | accounts/s | notified | already | revoked | failed | CPU s (campaign / PostgreSQL) | peak RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for p in phases {
        let g = &p.progress;
        println!(
            "| {} | {:.1} | {:.0} | {} | {} | {} | {} | {:.1} / {:.1} | {:.1} |",
            p.name,
            p.seconds,
            g.scanned as f64 / p.seconds.max(1e-9),
            g.notified,
            g.already_notified,
            g.revoked,
            g.failed,
            p.cpu_self,
            p.cpu_pg,
            p.peak_rss_kib as f64 / 1024.0
        );
    }
    let total: f64 = phases.iter().map(|p| p.seconds).sum();
    println!(
        "\nwhole campaign {total:.0} s; outbox {files} mails, {:.0} MiB; database {:.0} MiB",
        bytes as f64 / 1048576.0,
        db as f64 / 1048576.0
    );
}

fn write_json(value: &Value) -> anyhow::Result<PathBuf> {
    let dir = PathBuf::from("target/bench-campaign");
    std::fs::create_dir_all(&dir)?;
    let stamp: DateTime<Utc> = Utc::now();
    let path = dir.join(format!("campaign-{}.json", stamp.format("%Y%m%dT%H%M%SZ")));
    std::fs::write(&path, serde_json::to_string_pretty(value)?)?;
    Ok(path)
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = async {
        let (value, problems) = bench().await?;
        let path = write_json(&value)?;
        println!("JSON: {}", path.display());
        if !problems.is_empty() {
            bail!("{}", problems.join("\n"));
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-campaign: {e:#}");
            if e.to_string().contains("expected") {
                ExitCode::from(1)
            } else {
                ExitCode::from(2)
            }
        }
    }
}
