//! Real `redis-server` child processes for tests: each on a free port on 127.0.0.1, in its
//! own temp dir, without persistence. A server can be stopped, restarted on the same port
//! and dir, or frozen (SIGSTOP) to test outages. Besides a plain server the harness
//! starts a single-node Redis Cluster, a replica and a Sentinel (`redis-server --sentinel`).

use std::ffi::OsString;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::free_port;

/// How long a server gets to become ready, or to go away.
const DEADLINE: Duration = Duration::from_secs(10);
/// How long a new cluster node gets to report `cluster_state:ok` (Redis holds a fresh
/// master back for about 2 s).
const CLUSTER_DEADLINE: Duration = Duration::from_secs(15);
/// Interval between two checks of a condition.
const POLL: Duration = Duration::from_millis(20);

/// A `redis-server` owned by a test; killed on drop.
pub struct RedisServer {
    port: u16,
    dir: TempDir,
    /// Arguments after the program name, reused verbatim by [`restart`](Self::restart).
    args: Vec<OsString>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a plain server on a free port and waits until it answers `PING`.
    ///
    /// Panics if `redis-server` is not installed (`make test` installs it) or does not
    /// become ready within 10 s.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments (e.g. `["--replicaof", ...]`).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let dir = temp_dir();
        let port = free_port();
        let mut args: Vec<OsString> = vec!["--port".into(), port.to_string().into()];
        args.extend(["--bind", "127.0.0.1"].map(OsString::from));
        args.push("--dir".into());
        args.push(dir.path().into());
        args.extend(["--save", "", "--appendonly", "no", "--daemonize", "no"].map(OsString::from));
        args.push("--logfile".into());
        args.push(dir.path().join("redis.log").into());
        args.extend(extra.iter().map(OsString::from));
        let mut server = RedisServer {
            port,
            dir,
            args,
            child: None,
        };
        server.spawn();
        server
    }

    /// Starts a one-node Redis Cluster owning all 16384 slots and waits for
    /// `cluster_state:ok`. Its cluster config survives [`restart`](Self::restart).
    pub fn start_cluster_node() -> RedisServer {
        let server = Self::start_with(&[
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-announce-ip",
            "127.0.0.1",
        ]);
        let added = server.command(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]);
        assert_eq!(added.as_deref(), Some("OK"), "CLUSTER ADDSLOTSRANGE");
        server.wait_for_cluster_ok();
        server
    }

    /// Starts a replica of `master` and waits until replication is up.
    pub fn start_replica_of(master: &RedisServer) -> RedisServer {
        let master_port = master.port.to_string();
        let replica = Self::start_with(&["--replicaof", "127.0.0.1", &master_port]);
        wait_for(DEADLINE, "the replica to sync with its master", || {
            replica
                .command(&["INFO", "replication"])
                .is_some_and(|info| info.contains("master_link_status:up"))
        });
        replica
    }

    /// Starts a Sentinel monitoring `master` as `name` (quorum 1, 500 ms to declare it
    /// down) and waits until it knows the master and `replicas` of its replicas.
    pub fn start_sentinel(name: &str, master: &RedisServer, replicas: usize) -> RedisServer {
        let dir = temp_dir();
        let port = free_port();
        let conf = dir.path().join("sentinel.conf");
        let text = format!(
            "port {port}\nbind 127.0.0.1\ndir {dir}\nlogfile {log}\n\
             sentinel monitor {name} 127.0.0.1 {master} 1\n\
             sentinel down-after-milliseconds {name} 500\n\
             sentinel failover-timeout {name} 5000\n",
            dir = dir.path().display(),
            log = dir.path().join("redis.log").display(),
            master = master.port,
        );
        std::fs::write(&conf, text).expect("write sentinel.conf");
        let mut sentinel = RedisServer {
            port,
            dir,
            args: vec![conf.into(), "--sentinel".into()],
            child: None,
        };
        sentinel.spawn();
        wait_for(DEADLINE, "the sentinel to discover the replicas", || {
            sentinel
                .command_values(&["SENTINEL", "REPLICAS", name])
                .is_some_and(|found| found.len() >= replicas)
        });
        sentinel
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server and waits until its port refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        wait_for(DEADLINE, "redis-server to release its port", || {
            matches!(
                TcpStream::connect_timeout(&self.addr(), POLL),
                Err(err) if err.kind() == ErrorKind::ConnectionRefused
            )
        });
    }

    /// Starts the server again on the same port, arguments and directory, and waits
    /// until ready (for a cluster node, until the cluster is ok again).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
        if self.args.iter().any(|arg| arg == "--cluster-enabled") {
            self.wait_for_cluster_ok();
        }
    }

    /// Freezes the process (SIGSTOP): connections stay open but nothing answers.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Resumes a frozen process (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    /// Runs one command on a fresh connection and returns a status, bulk-string or
    /// integer reply as text; `None` if the server cannot be reached or replied otherwise.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        match self.query(args)? {
            ::redis::Value::Okay => Some("OK".to_owned()),
            ::redis::Value::SimpleString(text) => Some(text),
            ::redis::Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
            ::redis::Value::VerbatimString { text, .. } => Some(text),
            ::redis::Value::Int(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// Like [`command`](Self::command), for a command that replies with an array.
    fn command_values(&self, args: &[&str]) -> Option<Vec<::redis::Value>> {
        match self.query(args)? {
            ::redis::Value::Array(values) => Some(values),
            _ => None,
        }
    }

    fn query(&self, args: &[&str]) -> Option<::redis::Value> {
        let client = ::redis::Client::open(self.url()).ok()?;
        let mut conn = client
            .get_connection_with_timeout(Duration::from_millis(500))
            .ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut cmd = ::redis::cmd(args.first()?);
        for arg in args.iter().skip(1) {
            cmd.arg(*arg);
        }
        cmd.query(&mut conn).ok()
    }

    fn wait_for_cluster_ok(&self) {
        wait_for(CLUSTER_DEADLINE, "cluster_state:ok", || {
            self.command(&["CLUSTER", "INFO"])
                .is_some_and(|info| info.contains("cluster_state:ok"))
        });
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("redis-server is running").id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(err) if err.kind() == ErrorKind::NotFound => panic!(
                "redis-server is not on PATH; the integration tests need a real Redis \
                 (`make test` installs it, or `apt-get install redis-server`)"
            ),
            Err(err) => panic!("cannot start redis-server: {err}"),
        };
        self.child = Some(child);
        let ready = poll_until(DEADLINE, || {
            self.assert_running();
            self.command(&["PING"]).as_deref() == Some("PONG")
        });
        assert!(
            ready,
            "redis-server on port {} not ready within {DEADLINE:?}\n{}",
            self.port,
            self.log()
        );
    }

    /// Panics with the server log if the process has exited (e.g. its port was taken).
    fn assert_running(&mut self) {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            panic!("redis-server exited with {status}\n{}", self.log());
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A frozen process still dies on SIGKILL.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn temp_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("polis-redis-")
        .tempdir()
        .expect("create a temp dir for redis-server")
}

/// Polls `condition` every 20 ms until it holds or `deadline` passes; returns whether it held.
pub fn poll_until(deadline: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if condition() {
            return true;
        }
        if start.elapsed() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// [`poll_until`], panicking with `what` on timeout.
fn wait_for(deadline: Duration, what: &str, condition: impl FnMut() -> bool) {
    assert!(
        poll_until(deadline, condition),
        "timed out waiting for {what}"
    );
}
