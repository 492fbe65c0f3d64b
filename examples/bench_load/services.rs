//! The processes a benchmark run owns: redis-server, PostgreSQL and the gateway, each
//! on a free loopback port in a temp dir, each stopped on drop (also on error). And the
//! `/proc` readers: CPU time (utime + stime) and VmRSS of a pid.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Interval between two readiness probes.
const POLL: Duration = Duration::from_millis(20);

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind a free port")?;
    Ok(l.local_addr()?.port())
}

/// Polls `ok` every 20 ms until it holds or `deadline` passes (then the error names `what`).
pub fn wait_until(
    deadline: Duration,
    what: &str,
    mut ok: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        if ok()? {
            return Ok(());
        }
        if start.elapsed() > deadline {
            bail!("{what} not ready within {deadline:?}");
        }
        std::thread::sleep(POLL);
    }
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 when it cannot be read).
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(100.0)
}

/// utime + stime of `pid` ("self" for this process), in clock ticks.
pub fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state is field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The parent pid of `pid`.
fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// CPU ticks of `root` and every process whose parent is `root` (PostgreSQL's backends).
pub fn tree_cpu_ticks(root: u32) -> u64 {
    let mut total = cpu_ticks(&root.to_string()).unwrap_or(0);
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if ppid(pid) == Some(root) {
                total += cpu_ticks(&pid.to_string()).unwrap_or(0);
            }
        }
    }
    total
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A child process killed (and reaped) on drop.
pub struct Guard {
    pub child: Child,
    pub name: &'static str,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `redis-server` without persistence.
pub struct Redis {
    pub port: u16,
    guard: Guard,
    _dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> anyhow::Result<Redis> {
        let dir = tempfile::Builder::new().prefix("bench-redis-").tempdir()?;
        let port = free_port()?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir.path())
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--logfile")
            .arg(dir.path().join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start redis-server (make bench-load installs it)")?;
        let redis = Redis {
            port,
            guard: Guard {
                child,
                name: "redis-server",
            },
            _dir: dir,
        };
        wait_until(Duration::from_secs(10), "redis-server", || {
            Ok(redis.command(&["PING"]).is_ok_and(|r| r.contains("PONG")))
        })?;
        Ok(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.guard.child.id()
    }

    /// One command over RESP; the raw reply text.
    pub fn command(&self, args: &[&str]) -> anyhow::Result<String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes())?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut out = Vec::new();
        // Simple replies end at the first CRLF; bulk replies carry their length.
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(buf.get(..n).unwrap_or_default());
            let text = String::from_utf8_lossy(&out);
            if let Some(len) = text.strip_prefix('$') {
                let (len, body) = len.split_once("\r\n").unwrap_or((len, ""));
                let len: usize = len.trim().parse().unwrap_or(0);
                if body.len() >= len {
                    break;
                }
            } else if text.ends_with("\r\n") {
                break;
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// `used_memory` from `INFO memory`, bytes.
    pub fn used_memory(&self) -> anyhow::Result<u64> {
        let info = self.command(&["INFO", "memory"])?;
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .context("no used_memory in INFO memory")
    }
}

/// A PostgreSQL server: `initdb` in a temp dir, `postgres` on a free loopback port,
/// as the `postgres` user when root. [`Postgres::start`] turns durability off (as in
/// the integration tests), [`Postgres::start_durable`] keeps PostgreSQL's defaults
/// (fsync, synchronous commit, full pages: what production runs).
pub struct Postgres {
    pub port: u16,
    bin: PathBuf,
    run_as: Option<String>,
    dir: tempfile::TempDir,
    guard: Option<Guard>,
}

impl Postgres {
    pub fn start() -> anyhow::Result<Postgres> {
        Self::start_with(false)
    }

    /// A server that syncs its commits (PostgreSQL's defaults); `bench-campaign`'s.
    #[allow(dead_code)]
    pub fn start_durable() -> anyhow::Result<Postgres> {
        Self::start_with(true)
    }

    fn start_with(durable: bool) -> anyhow::Result<Postgres> {
        let bin = find_pg_bin().context(
            "PostgreSQL binaries (initdb, postgres, pg_ctl, psql) not found: \
             make bench-load installs postgresql",
        )?;
        let run_as = is_root().then(|| "postgres".to_owned());
        let dir = tempfile::Builder::new().prefix("bench-pg-").tempdir()?;
        if run_as.is_some() {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()?;
            if !status.success() {
                bail!("chown of the PostgreSQL dir to postgres failed");
            }
        }
        let mut pg = Postgres {
            port: free_port()?,
            bin,
            run_as,
            dir,
            guard: None,
        };
        let out = pg
            .command("initdb")
            .arg("-D")
            .arg(pg.data_dir())
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"])
            .args(["--no-locale", "-N"])
            .stdin(Stdio::null())
            .output()
            .context("run initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let log = std::fs::File::create(pg.dir.path().join("postgres.log"))?;
        let mut postgres = pg.command("postgres");
        postgres
            .arg("-D")
            .arg(pg.data_dir())
            .arg("-k")
            .arg(pg.dir.path())
            .args(["-p", &pg.port.to_string()])
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=300",
            ]);
        if !durable {
            postgres
                .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
                .args(["-c", "full_page_writes=off"]);
        }
        let child = postgres
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("start postgres")?;
        pg.guard = Some(Guard {
            child,
            name: "postgres",
        });
        wait_until(Duration::from_secs(30), "postgres", || {
            Ok(pg.psql("SELECT 1").is_ok())
        })
        .with_context(|| pg.log())?;
        Ok(pg)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// The postmaster's pid (from `postmaster.pid`).
    pub fn postmaster_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data_dir().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.run_as {
            None => Command::new(path),
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
        }
    }

    pub fn psql(&self, sql: &str) -> anyhow::Result<()> {
        let out = self
            .command("psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-X", "-q"])
            .args(["-v", "ON_ERROR_STOP=1", "-c", sql])
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            bail!("psql: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// Creates database `name` and returns its URL.
    pub fn create_database(&self, name: &str) -> anyhow::Result<String> {
        self.psql(&format!("CREATE DATABASE \"{name}\""))?;
        Ok(format!(
            "postgres://postgres@127.0.0.1:{}/{name}?sslmode=disable",
            self.port
        ))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.guard.is_some() {
            let _ = self
                .command("pg_ctl")
                .arg("stop")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", "immediate"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        // The guard kills what is left and reaps it.
        self.guard = None;
    }
}

fn find_pg_bin() -> Option<PathBuf> {
    let has_all = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres", "psql"]
            .iter()
            .all(|p| dir.join(p).is_file())
    };
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .collect();
    debian.sort();
    let path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    debian
        .into_iter()
        .rev()
        .map(|(_, d)| d)
        .chain(path)
        .find(|d| has_all(d))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|u| u.split_whitespace().nth(1))
        .is_some_and(|euid| euid == "0")
}

/// The gateway as a child process: `taskset -c <cpu> <bin> serve -c <config>` (taskset
/// execs, so the child's pid is the gateway's); its output goes to `gateway.log`.
pub struct Gateway {
    pub log: PathBuf,
    guard: Guard,
}

impl Gateway {
    pub async fn start(
        bin: &Path,
        cpu: Option<&str>,
        config: &Path,
        url: &str,
    ) -> anyhow::Result<Gateway> {
        let log = config.with_extension("log");
        let out = std::fs::File::create(&log)?;
        let mut cmd = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpu]).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let child = cmd
            .arg("serve")
            .arg("-c")
            .arg(config)
            .env("POLIS_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let mut gw = Gateway {
            log,
            guard: Guard {
                child,
                name: "polis-gateway",
            },
        };
        let client = reqwest::Client::new();
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = gw.guard.child.try_wait() {
                bail!(
                    "the gateway exited with {status}:\n{}",
                    std::fs::read_to_string(&gw.log).unwrap_or_default()
                );
            }
            let health = client.get(format!("{url}/healthz")).send().await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return Ok(gw);
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!(
                    "the gateway did not answer /healthz within 60 s:\n{}",
                    std::fs::read_to_string(&gw.log).unwrap_or_default()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.guard.child.id()
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.guard.child.try_wait(), Ok(None))
    }

    pub fn name(&self) -> &'static str {
        self.guard.name
    }
}
