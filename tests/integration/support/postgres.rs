//! A real PostgreSQL server for tests: `initdb` in a temp dir, `postgres` as a child
//! process on a free loopback port (socket in the same temp dir), trust authentication
//! for the `postgres` superuser, durability off (`fsync`, `synchronous_commit`,
//! `full_page_writes`). One database per test via [`PostgresServer::create_database`].
//!
//! **Root**: PostgreSQL refuses to run as root. When the effective uid is 0 (containers,
//! CI), the temp dir is chowned to the `postgres` system user (created by the Debian
//! package) and `initdb`, `postgres`, `pg_ctl` and `psql` run through
//! `runuser -u postgres --` (or `su -s /bin/sh postgres -c` when `runuser` is missing).
//!
//! **Cleanup**: `Drop` stops the server (`pg_ctl stop -m immediate`) and removes the
//! dir. A server kept in a `static` is never dropped, so each server also has a watchdog
//! shell that blocks reading a pipe only this process holds open; when the test binary
//! exits (even by a crash) the pipe closes and the watchdog stops the server and removes
//! the dir. No polling, no stray servers.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::free_port;

/// How long the server gets to accept connections.
const DEADLINE: Duration = Duration::from_secs(20);
/// Interval between two readiness probes.
const POLL: Duration = Duration::from_millis(25);
/// The superuser `initdb` creates (trust authentication, no password).
const SUPERUSER: &str = "postgres";
/// The system account PostgreSQL runs as when the tests run as root.
const SYSTEM_USER: &str = "postgres";

/// A PostgreSQL server owned by a test (or a test binary, through a `static`).
pub struct PostgresServer {
    port: u16,
    bin: PathBuf,
    /// `Some(user)` when every PostgreSQL program runs as `user` (the tests run as root).
    run_as: Option<String>,
    dir: Option<TempDir>,
    child: Option<Child>,
    /// Write end of the watchdog's pipe; dropping it (or exiting) wakes the watchdog.
    watchdog: Option<(Child, ChildStdin)>,
    /// How long `start` took, from `initdb` to the first successful connection.
    pub startup: Duration,
}

impl PostgresServer {
    /// The one server of this test binary, started on first use (stopped by its
    /// watchdog at exit); each test creates its own database on it.
    pub fn shared() -> &'static PostgresServer {
        static SERVER: std::sync::OnceLock<PostgresServer> = std::sync::OnceLock::new();
        SERVER.get_or_init(|| {
            let server = PostgresServer::start();
            eprintln!("postgres ready in {:?}", server.startup);
            server
        })
    }

    /// Runs `initdb` and starts `postgres`, then waits until it accepts connections.
    ///
    /// Panics if the PostgreSQL binaries are missing ("make test installs postgresql")
    /// or the server is not ready within 20 s (with its log).
    pub fn start() -> PostgresServer {
        let started = Instant::now();
        let bin = find_bin_dir().unwrap_or_else(|| {
            panic!(
                "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or in \
                 /usr/lib/postgresql/*/bin: make test installs postgresql \
                 (or `apt-get install postgresql`)"
            )
        });
        let run_as = is_root().then(|| SYSTEM_USER.to_owned());
        let dir = tempfile::Builder::new()
            .prefix("polis-pg-")
            .tempdir()
            .expect("create a temp dir for postgres");
        if let Some(user) = &run_as {
            chown_to(dir.path(), user);
        }
        let mut server = PostgresServer {
            port: free_port(),
            bin,
            run_as,
            dir: Some(dir),
            child: None,
            watchdog: None,
            startup: Duration::ZERO,
        };
        server.init_db();
        server.start_watchdog();
        server.spawn();
        server.startup = started.elapsed();
        server
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// Creates an empty database `name` (letters, digits, `_`) and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        assert!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "database name {name:?} must be [A-Za-z0-9_]+"
        );
        self.psql(&format!("CREATE DATABASE \"{name}\""));
        self.url_for(name)
    }

    /// Drops the database `name`, ending its open connections (an outage of one
    /// gateway's database).
    pub fn drop_database(&self, name: &str) {
        self.psql(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"));
    }

    fn url_for(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/{database}?sslmode=disable",
            self.port
        )
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().expect("temp dir present").path()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir().join("postgres.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// A command for the PostgreSQL program `program`, as the right user.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.run_as {
            None => Command::new(path),
            Some(user) if Path::new("/usr/sbin/runuser").exists() || on_path("runuser") => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(path);
                command
            }
            Some(user) => {
                // `su -c` takes one shell string: "$0" "$@" keeps every argument whole.
                let mut command = Command::new("su");
                command
                    .args(["-s", "/bin/sh", user, "-c", "exec \"$0\" \"$@\""])
                    .arg(path);
                command
            }
        }
    }

    fn init_db(&self) {
        let output = self
            .command("initdb")
            .arg("-D")
            .arg(self.data_dir())
            .args([
                "-U",
                SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "-N",
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run initdb");
        assert!(
            output.status.success(),
            "initdb failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.log_path()).expect("create postgres.log");
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-k")
            .arg(self.dir())
            .arg("-p")
            .arg(self.port.to_string())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(err) if err.kind() == ErrorKind::NotFound => {
                panic!("cannot run postgres: {err}; make test installs postgresql")
            }
            Err(err) => panic!("cannot start postgres: {err}"),
        };
        self.child = Some(child);
        let start = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("postgres exited with {status}\n{}", self.log());
            }
            if self.accepts_connections() {
                return;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "postgres on port {} not ready within {DEADLINE:?}\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(POLL);
        }
    }

    /// The port is open and a query succeeds (not just "the database system is starting up").
    fn accepts_connections(&self) -> bool {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            return false;
        }
        self.try_psql("SELECT 1").is_ok()
    }

    fn psql(&self, sql: &str) {
        if let Err(err) = self.try_psql(sql) {
            panic!("psql {sql:?} failed: {err}\n{}", self.log());
        }
    }

    fn try_psql(&self, sql: &str) -> Result<(), String> {
        let output = self
            .command("psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args([
                "-U",
                SUPERUSER,
                "-d",
                "postgres",
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
            ])
            .args(["-c", sql])
            .stdin(Stdio::null())
            .output()
            .map_err(|err| err.to_string())?;
        if output.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    /// A shell that waits for EOF on its stdin, then stops the server and removes the dir.
    fn start_watchdog(&mut self) {
        const SCRIPT: &str = r#"read -r _ignored
if [ -n "$3" ]; then
  runuser -u "$3" -- "$1" stop -D "$2/data" -m immediate >/dev/null 2>&1 ||
    su -s /bin/sh "$3" -c "exec \"$1\" stop -D \"$2/data\" -m immediate" >/dev/null 2>&1
else
  "$1" stop -D "$2/data" -m immediate >/dev/null 2>&1
fi
rm -rf "$2""#;
        let mut child = Command::new("sh")
            .args(["-c", SCRIPT, "polis-pg-watchdog"])
            .arg(self.bin.join("pg_ctl"))
            .arg(self.dir())
            .arg(self.run_as.clone().unwrap_or_default())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the postgres watchdog shell");
        let stdin = child.stdin.take().expect("watchdog stdin is piped");
        self.watchdog = Some((child, stdin));
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let stopped = self
                .command("pg_ctl")
                .arg("stop")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", "immediate"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success());
            if !stopped {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        if let Some((mut watchdog, stdin)) = self.watchdog.take() {
            drop(stdin);
            let _ = watchdog.wait();
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

/// The first directory holding `initdb`, `pg_ctl`, `postgres` and `psql`: the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian keeps them off PATH), then PATH.
fn find_bin_dir() -> Option<PathBuf> {
    let has_all = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres", "psql"]
            .iter()
            .all(|program| dir.join(program).is_file())
    };
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    debian.sort();
    let from_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    debian
        .into_iter()
        .rev()
        .map(|(_, dir)| dir)
        .chain(from_path)
        .find(|dir| has_all(dir))
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Whether this process runs as root (effective uid 0), read from /proc (no libc).
fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|uids| uids.split_whitespace().nth(1))
        .is_some_and(|euid| euid == "0")
}

/// Gives `path` to `user` (its primary group too), so PostgreSQL can write there.
fn chown_to(path: &Path, user: &str) {
    let id = |flag: &str| -> u32 {
        let output = Command::new("id")
            .args([flag, user])
            .output()
            .expect("run id");
        assert!(
            output.status.success(),
            "the system user {user:?} does not exist; PostgreSQL refuses to run as root and \
             make test installs postgresql (which creates it)"
        );
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("numeric id")
    };
    std::os::unix::fs::chown(path, Some(id("-u")), Some(id("-g"))).expect("chown the temp dir");
}
